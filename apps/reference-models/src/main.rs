//! `reference-models`: serves the reference seed models over HTTP until interrupted.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use reference_models::{Behaviour, DEPLOYMENTS, Options, ROUTING_HEADER, start};

/// Reference seed model servers speaking the Azure ML wire formats (for development and
/// tests: thresholding and hand-set prototypes, not trained models).
///
/// POST /score with the azureml-model-deployment header, or POST /{deployment}/score;
/// deployments: seed-detector, seed-classifier, seed-detector-6. GET /health.
#[derive(Debug, Parser)]
#[command(name = "reference-models", version)]
struct Args {
    /// Port to listen on (0: any free port).
    #[arg(long, env = "REFERENCE_MODELS_PORT", default_value_t = 8081)]
    port: u16,
    /// Address to listen on.
    #[arg(long, env = "REFERENCE_MODELS_HOST", default_value = "127.0.0.1")]
    host: IpAddr,
    /// API key callers must send as 'Authorization: Bearer <KEY>'.
    #[arg(long, env = "REFERENCE_MODELS_API_KEY", hide_env_values = true)]
    api_key: String,
    /// Answer every scoring call with HTTP 500 (to test clients).
    #[arg(long, conflicts_with = "delay_ms")]
    always_fail: bool,
    /// Wait this many milliseconds before answering every scoring call (to test clients).
    #[arg(long, value_name = "MS")]
    delay_ms: Option<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let behaviour = match (args.always_fail, args.delay_ms) {
        (true, _) => Behaviour::AlwaysFail,
        (false, Some(ms)) => Behaviour::Delay(Duration::from_millis(ms)),
        (false, None) => Behaviour::Normal,
    };
    let options = Options::new(args.api_key)
        .with_host(args.host)
        .with_port(args.port)
        .with_behaviour(behaviour);
    let mut models = start(options)
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    println!(
        "reference models on {} (POST /score with '{ROUTING_HEADER}', or POST /{{deployment}}/score); deployments: {}",
        models.url,
        DEPLOYMENTS.join(", ")
    );
    tokio::select! {
        ended = models.wait() => ended.context("the server stopped")?,
        () = shutdown_signal() => {
            tracing::info!("stopping");
            models.stop().await;
        }
    }
    Ok(())
}

/// Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!("cannot listen for ctrl-c: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
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
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
