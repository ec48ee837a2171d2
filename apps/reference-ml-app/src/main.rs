//! `reference-ml-app`: serves the reference ML app until interrupted.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use reference_ml_app::{MODEL_TYPES, Options, start};

/// A REFERENCE ML app for DICOM series, for development and tests: NOT a trained model.
///
/// POST /predict?seriesId=&modality=&modelType=&bodyPart=&runId= with the series ZIP as
/// multipart field 'file' answers 202; the app then parses every instance, computes
/// per-slice pixel statistics and a fixed-threshold label, and calls back
/// PUT {backend}/api/studies/series/{seriesId}/status with 'Authorization: Bearer TOKEN'.
/// Model types: chest_xray_classification (CR, DX), brain_tumor_classification (MR),
/// brain_tumor_segmentation (MR), lung_tumor_segmentation (CT),
/// abdominal_organs_segmentation (CT). GET /health.
#[derive(Debug, Parser)]
#[command(name = "reference-ml-app", version)]
struct Args {
    /// Port to listen on (0: any free port).
    #[arg(long, env = "REFERENCE_ML_APP_PORT", default_value_t = 8082)]
    port: u16,
    /// Address to listen on.
    #[arg(long, env = "REFERENCE_ML_APP_HOST", default_value = "127.0.0.1")]
    host: IpAddr,
    /// The backend's base URL, for the status callbacks.
    #[arg(
        long,
        env = "REFERENCE_ML_APP_BACKEND_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    backend_url: String,
    /// Secret sent as 'Authorization: Bearer <TOKEN>' with every status callback.
    #[arg(long, env = "REFERENCE_ML_APP_CALLBACK_TOKEN", hide_env_values = true)]
    callback_token: String,
    /// Never call back (to test the backend's callback deadline).
    #[arg(long)]
    no_callback: bool,
    /// Callback tries in all (retried on connection errors and 5xx).
    #[arg(long, default_value_t = 6)]
    callback_attempts: u32,
    /// Wait before the second callback try, in milliseconds (doubled for each further one).
    #[arg(long, default_value_t = 500, value_name = "MS")]
    callback_backoff_ms: u64,
    /// Folder for uploads being processed (default: the system's temporary folder).
    #[arg(long, env = "REFERENCE_ML_APP_UPLOAD_DIR")]
    upload_dir: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let mut options = Options::new(args.backend_url.clone(), args.callback_token)
        .with_host(args.host)
        .with_port(args.port)
        .with_callback_retries(
            args.callback_attempts,
            Duration::from_millis(args.callback_backoff_ms),
        );
    if args.no_callback {
        options = options.without_callbacks();
    }
    if let Some(dir) = args.upload_dir {
        options = options.with_upload_dir(dir);
    }
    let mut app = start(options)
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    println!(
        "reference ML app (a reference model, not a trained one) on {}: POST /predict; model types: {}; callbacks to {}",
        app.url,
        MODEL_TYPES
            .iter()
            .map(|m| m.name)
            .collect::<Vec<_>>()
            .join(", "),
        args.backend_url
    );
    tokio::select! {
        ended = app.wait() => ended.context("the server stopped")?,
        () = shutdown_signal() => {
            tracing::info!("stopping");
            app.stop().await;
        }
    }
    Ok(())
}

/// Ctrl-C, or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!("cannot listen for ctrl-c: {e}");
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
