use anyhow::Context;
use tracing_subscriber::EnvFilter;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let settings = nachet_backend::Settings::load().context("invalid settings")?;
    let backend = nachet_backend::start(settings).await?;
    backend.wait().await
}
