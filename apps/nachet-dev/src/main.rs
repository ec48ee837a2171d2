//! `cargo run -p nachet-dev`: the backend with stand-ins for everything a deployment provides
//! (see the crate's documentation). Not for production: the server binary is
//! `nachet-backend`.

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let (settings, stand_in_settings) = nachet_dev::load_settings()?;
    let _telemetry = telemetry::init(&settings.telemetry)?;
    let listener = nachet_backend::bind(&settings)?;
    let (backend, stand_ins, _) =
        nachet_dev::start_on(listener, &stand_in_settings, settings).await?;
    tracing::warn!(
        "development backend: the models, the ML app and the DICOM server are stand-ins, not trained models"
    );
    let served = backend.wait().await;
    stand_ins.stop().await;
    served
}
