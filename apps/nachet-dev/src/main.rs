//! `cargo run -p nachet-dev`: the backend with stand-ins for everything a deployment provides
//! (see the crate's documentation). Not for production: the server binary is
//! `nachet-backend`.

use anyhow::Context;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let (mut settings, stand_in_settings) = nachet_dev::load_settings()?;
    let _telemetry = telemetry::init(&settings.telemetry)?;
    let listener = nachet_backend::bind(&settings)?;
    let address = listener.local_addr()?;
    let stand_ins = nachet_dev::StandIns::start(&stand_in_settings, &mut settings, address)
        .await
        .context("cannot start the development stand-ins")?;
    tracing::warn!(
        "development backend: the models, the ML app and the DICOM server are stand-ins, not trained models"
    );
    let backend = nachet_backend::start_on(listener, settings).await?;
    let served = backend.wait().await;
    stand_ins.stop().await;
    served
}
