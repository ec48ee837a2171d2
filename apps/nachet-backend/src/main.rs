use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// The Nachet backend. Settings: built-in defaults, then the TOML file named by
/// NACHET_CONFIG, then NACHET__<SECTION>__<KEY> variables (see the README).
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serves the REST API (what runs without a command).
    Serve,
    /// Writes the verified dataset (pictures and COCO annotations) to a new ZIP file, from
    /// the database and blob storage of the settings (docs/dataset.md).
    ExportDataset {
        /// The ZIP file to write; it must not exist.
        #[arg(long)]
        out: PathBuf,
        /// Only this user's pictures (an email); everyone's without it.
        #[arg(long)]
        user: Option<String>,
        /// Only this folder (its picture_set_id).
        #[arg(long)]
        folder: Option<uuid::Uuid>,
        /// Pictures taken at or after this time (RFC 3339, or a date: midnight UTC).
        #[arg(long)]
        from: Option<String>,
        /// Pictures taken before this time (RFC 3339, or a date: midnight UTC).
        #[arg(long)]
        to: Option<String>,
    },
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = nachet_backend::Settings::load().context("invalid settings")?;
    // Log lines and traces; the guard sends the last spans when main returns.
    let _telemetry = telemetry::init(&settings.telemetry)?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let backend = nachet_backend::start(settings).await?;
            backend.wait().await
        }
        Command::ExportDataset {
            out,
            user,
            folder,
            from,
            to,
        } => {
            let time = |field: &str, text: Option<String>| {
                text.map(|t| nachet_backend::http::dataset::time(field, &t))
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("--{e}"))
            };
            let filter = datastore::DatasetFilter {
                user_id: None,
                folder_id: folder,
                from: time("from", from)?,
                to: time("to", to)?,
            };
            let summary =
                nachet_backend::export_dataset(&settings, user.as_deref(), filter, out.clone())
                    .await?;
            println!(
                "{}: {} pictures ({} bytes), {} annotations",
                out.display(),
                summary.pictures,
                summary.picture_bytes,
                summary.annotations
            );
            Ok(())
        }
    }
}
