//! `nachet-catalogue`: publish and inspect versions of the pipeline catalogue (contract 1.7),
//! with the key and the blob store of the backend's own configuration.

mod settings;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use catalogue_store::FernetCipher;
use clap::{Parser, Subcommand, ValueEnum};
use pipeline::ports::{PublishVersionError, SecretCipher};
use pipeline::{Catalogue, CatalogueDocument, DocumentFormat, SecretField, validate_document};
use secrecy::{ExposeSecret, SecretString};

/// Prints a line to standard output; a reader that went away (`| head`) ends nothing badly.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

const AFTER_HELP: &str = "\
Configuration (the backend's own; see the README):
  NACHET_BLOB_PIPELINE_NAME             container (folder on local disk) of pipelines/{version}.json
  NACHET_BLOB_PIPELINE_DECRYPTION_KEY   Fernet key of the endpoints and API keys (make one: keygen)
  NACHET_BLOB_PIPELINE_VERSION          the version the backend loads (not used here)
  the blob store: [blob] of the backend's configuration: NACHET_CONFIG=FILE, NACHET__BLOB__*
  (by default the folder .data/blobs, as for the backend started in the same folder)

Publishing a new version: validate FILE, insert FILE, then switch the running backend
to it (POST /api/admin/pipelines/reload) or set NACHET_BLOB_PIPELINE_VERSION and restart.";

#[derive(Parser)]
#[command(
    name = "nachet-catalogue",
    version,
    about = "Publish and inspect versions of Nachet's pipeline catalogue",
    long_about = "Publish and inspect versions of Nachet's pipeline catalogue: JSON or YAML \
                  documents of pipelines and the model endpoints they call, stored as \
                  pipelines/{version}.json with every endpoint and API key Fernet-encrypted. \
                  Versions are never overwritten.",
    after_help = AFTER_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a new random Fernet key, for NACHET_BLOB_PIPELINE_DECRYPTION_KEY.
    Keygen,
    /// Check a catalogue document and say what is wrong, where; writes nothing.
    #[command(
        long_about = "Check a catalogue document (JSON, or YAML for .yaml/.yml) and list every \
                      problem with its place, e.g. `pipelines[1].models[0]: no model named \
                      \"swin-x\" in this catalogue`. Writes nothing and needs no blob store. \
                      Values encrypted with the configured key (see `encrypt`) are accepted."
    )]
    Validate {
        /// The document: JSON, or YAML for .yaml/.yml.
        file: PathBuf,
        /// Read the document in this syntax whatever its name.
        #[arg(long, value_enum)]
        format: Option<Syntax>,
    },
    /// Validate a document, encrypt its endpoints and API keys, and publish it.
    #[command(
        long_about = "Validate a document, encrypt every endpoint and api_key with the \
                      configured key, and write it as pipelines/{version}.json in the \
                      catalogue's container. An existing version is never overwritten: give \
                      the document a new version instead."
    )]
    Insert {
        /// The document: JSON, or YAML for .yaml/.yml.
        file: PathBuf,
        /// Read the document in this syntax whatever its name.
        #[arg(long, value_enum)]
        format: Option<Syntax>,
    },
    /// List the stored versions with their dates and pipelines (no key needed).
    List,
    /// Print a stored version, decrypted; API keys are masked unless --reveal-keys.
    Show {
        /// The version, e.g. 0.1.4.
        version: String,
        /// Print the API keys in clear.
        #[arg(long)]
        reveal_keys: bool,
        /// The syntax to print.
        #[arg(long, value_enum, default_value = "json")]
        format: Syntax,
    },
    /// Encrypt one value with the configured key (reads standard input without VALUE).
    #[command(
        long_about = "Encrypt one value with the configured key, for editing a document by \
                      hand; `insert` accepts values encrypted this way. Without VALUE, reads \
                      one line from standard input, which keeps the secret out of the shell's \
                      history."
    )]
    Encrypt {
        /// The value; omit it to read standard input.
        value: Option<String>,
    },
    /// Decrypt one token with the configured key (reads standard input without TOKEN).
    Decrypt {
        /// The token; omit it to read standard input.
        token: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Syntax {
    Json,
    Yaml,
}

impl From<Syntax> for DocumentFormat {
    fn from(syntax: Syntax) -> Self {
        match syntax {
            Syntax::Json => DocumentFormat::Json,
            Syntax::Yaml => DocumentFormat::Yaml,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime starts");
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Keygen => {
            out!("{}", FernetCipher::generate_key().expose_secret());
            Ok(())
        }
        Command::Validate { file, format } => {
            let settings = settings::load()?;
            // The key is optional here: with one, values encrypted with it are accepted.
            let cipher = settings.catalogue.cipher().ok();
            let catalogue = read_catalogue(
                &file,
                format,
                cipher.as_ref().map(|c| c as &dyn SecretCipher),
            )?;
            out!(
                "{}: valid catalogue version {}",
                file.display(),
                catalogue.version()
            );
            print_summary(&catalogue);
            Ok(())
        }
        Command::Insert { file, format } => {
            let settings = settings::load()?;
            let versions = settings.catalogue.versions(&settings.blobs)?;
            let catalogue = versions
                .validate(parse_file(&file, format)?)
                .map_err(|errors| anyhow::anyhow!("{} is invalid: {errors}", file.display()))?;
            match versions.publish(&catalogue).await {
                Ok(()) => {}
                Err(error @ PublishVersionError::AlreadyExists { .. }) => bail!("{error}"),
                Err(error) => return Err(error.into()),
            }
            out!(
                "inserted catalogue version {} as pipelines/{}.json in {}",
                catalogue.version(),
                catalogue.version(),
                versions.location().trim_start_matches("pipelines/ of ")
            );
            print_summary(&catalogue);
            Ok(())
        }
        Command::List => {
            let settings = settings::load()?;
            let store = settings.catalogue.store(&settings.blobs)?;
            // Listing reads no secret: any key will do.
            let versions = pipeline::CatalogueVersions::new(
                Arc::new(store),
                Arc::new(FernetCipher::new(&FernetCipher::generate_key())?),
            );
            let list = versions.list().await?;
            if list.is_empty() {
                out!("no catalogue version in {}", versions.location());
            }
            for version in list {
                out!("{version}");
            }
            Ok(())
        }
        Command::Show {
            version,
            reveal_keys,
            format,
        } => {
            let settings = settings::load()?;
            let versions = settings.catalogue.versions(&settings.blobs)?;
            let catalogue = versions.open(&version).await?;
            let document =
                CatalogueDocument::from_catalogue(&catalogue, &mut |field, plain| match field {
                    SecretField::ApiKey if !reveal_keys => mask(plain),
                    _ => plain.to_owned(),
                });
            out!("{}", document.to_text(format.into()).trim_end());
            Ok(())
        }
        Command::Encrypt { value } => {
            let cipher = settings::load()?.catalogue.cipher()?;
            let value = value_or_stdin(value, "VALUE")?;
            out!("{}", cipher.encrypt(value.expose_secret()));
            Ok(())
        }
        Command::Decrypt { token } => {
            let cipher = settings::load()?.catalogue.cipher()?;
            let token = value_or_stdin(token, "TOKEN")?;
            let plain = cipher.decrypt(token.expose_secret()).map_err(|e| {
                anyhow::anyhow!(
                    "cannot decrypt: the token {e}{}",
                    match e {
                        pipeline::ports::DecryptError::WrongKey => format!(
                            "; check {} (it must be the key the value was encrypted with)",
                            pipeline::KEY_ENV
                        ),
                        pipeline::ports::DecryptError::NotAToken(_) => String::new(),
                    }
                )
            })?;
            out!("{plain}");
            Ok(())
        }
    }
}

fn parse_file(file: &Path, format: Option<Syntax>) -> anyhow::Result<CatalogueDocument> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let format = format.map_or_else(
        || DocumentFormat::from_file_name(&file.to_string_lossy()),
        DocumentFormat::from,
    );
    let parsed = CatalogueDocument::parse(&text, format)
        .map_err(|errors| anyhow::anyhow!("{} is invalid: {errors}", file.display()))?;
    for unknown in &parsed.unknown_fields {
        eprintln!("warning: {}: {unknown}", file.display());
    }
    Ok(parsed.document)
}

fn read_catalogue(
    file: &Path,
    format: Option<Syntax>,
    cipher: Option<&dyn SecretCipher>,
) -> anyhow::Result<Catalogue> {
    validate_document(parse_file(file, format)?, cipher)
        .map_err(|errors| anyhow::anyhow!("{} is invalid: {errors}", file.display()))
}

fn print_summary(catalogue: &Catalogue) {
    out!("  date: {}", catalogue.date());
    for pipeline in catalogue.pipelines() {
        out!(
            "  pipeline {}{}: {}",
            pipeline.name,
            if pipeline.default { " (default)" } else { "" },
            pipeline.models.join(" -> ")
        );
    }
    for model in catalogue.models() {
        out!(
            "  model {} ({}, version {})",
            model.name,
            model.kind,
            model.version
        );
    }
    let unused = catalogue.unused_models();
    if !unused.is_empty() {
        let names: Vec<&str> = unused.into_iter().collect();
        eprintln!("warning: no pipeline uses the models {}", names.join(", "));
    }
}

/// The last four characters of a long key, for telling keys apart; nothing of a short one.
fn mask(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() >= 16 {
        format!(
            "****{}",
            chars[chars.len() - 4..].iter().collect::<String>()
        )
    } else {
        "****".to_owned()
    }
}

fn value_or_stdin(value: Option<String>, name: &str) -> anyhow::Result<SecretString> {
    let value = match value {
        Some(value) => value,
        None => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .with_context(|| format!("cannot read {name} from standard input"))?;
            text.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    if value.is_empty() {
        bail!("{name} is empty");
    }
    Ok(SecretString::from(value))
}
