//! Settings: built-in defaults (the embedded default), then a file, then environment variables.

use std::path::PathBuf;

use blob_store::BlobSettings;
use secrecy::SecretString;
use serde::{Deserialize, Deserializer};

const DEFAULTS: &str = include_str!("../config/default.toml");

#[derive(Clone, Debug, Deserialize)]
pub struct Settings {
    pub data_dir: PathBuf,
    /// How often each replica looks at the catalogue version chosen for all of them.
    pub catalogue_poll_seconds: u64,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub blob: BlobSettings,
    pub pipelines: PipelineSettings,
    pub reference_models: ReferenceModelSettings,
    pub inference: InferenceSettings,
    pub users: UserSettings,
    /// Who the caller is (login proxy cookie, proxy header, or a development user).
    pub identity: crate::http::identity::IdentitySettings,
    /// Browsers' cross-origin calls (the Nachet frontend's development setup).
    pub cors: CorsSettings,
    /// The users' folders: the default one, and who receives archived verified pictures.
    pub folders: inference::FolderSettings,
    /// Stored catalogue versions (`NACHET_BLOB_PIPELINE_*` too); see `crate::catalogue`.
    #[serde(default)]
    pub catalogue: catalogue_store::CatalogueSettings,
    /// The admin API (`/api/admin/...`); see `crate::http::admin`.
    #[serde(default)]
    pub admin: crate::http::admin::AdminSettings,
    /// DICOM series predictions; see `crate::series_wiring`.
    #[serde(default)]
    pub series: crate::series_wiring::SeriesSettings,
    /// Log lines and traces: trace context, optional OTLP export (the `telemetry` crate).
    #[serde(default)]
    pub telemetry: telemetry::TelemetrySettings,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    pub max_body_bytes: usize,
}

#[derive(Clone, Deserialize)]
pub struct DatabaseSettings {
    /// May hold a password: never printed.
    pub url: SecretString,
}

impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatabaseSettings { url: [secret] }")
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum PipelineSettings {
    /// A catalogue of the reference model servers started beside the backend.
    Reference,
    /// A plain JSON catalogue document (development; endpoints and keys in clear).
    File { path: PathBuf },
}

#[derive(Clone, Debug, Deserialize)]
pub struct ReferenceModelSettings {
    pub enabled: bool,
    pub port: Option<u16>,
    pub api_key: SecretString,
}

#[derive(Clone, Debug, Deserialize)]
pub struct InferenceSettings {
    /// `/inf` requests worked on at once (0: four per core).
    pub max_in_flight: usize,
    /// Requests waiting for their turn, and their declared body bytes together.
    pub queue_requests: usize,
    pub queue_bytes: u64,
    pub queue_wait_seconds: u64,
    pub retry_after_seconds: u64,
    /// Per-crop model calls at once, across every request.
    pub max_crop_calls: usize,
    pub codec_threads: usize,
    /// Pictures over this many pixels are refused from their header, before decoding.
    pub max_picture_pixels: u64,
}

#[derive(Clone, Debug, Deserialize)]
pub struct UserSettings {
    pub register_unknown: bool,
}

#[derive(Clone, Debug, Deserialize)]
pub struct CorsSettings {
    /// Origins whose browsers may call (`scheme://host:port`; a list or "a,b").
    #[serde(deserialize_with = "list_or_comma_separated")]
    pub allowed_origins: Vec<String>,
}

/// A list of strings, or one comma-separated string (as environment variables give it).
pub(crate) fn list_or_comma_separated<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        List(Vec<String>),
        One(String),
    }
    Ok(match Either::deserialize(d)? {
        Either::List(list) => list,
        Either::One(one) => one.split(',').map(str::to_string).collect(),
    }
    .into_iter()
    .map(|s| s.trim().to_string())
    .filter(|s| !s.is_empty())
    .collect())
}

impl Settings {
    /// Defaults, then the TOML file named by `NACHET_CONFIG` (if set), then `NACHET__*`
    /// environment variables (`__` separates sections: `NACHET__SERVER__PORT=9000`).
    pub fn load() -> Result<Self, config::ConfigError> {
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        if let Ok(path) = std::env::var("NACHET_CONFIG") {
            builder = builder.add_source(config::File::with_name(&path).required(true));
        }
        builder
            .add_source(
                config::Environment::with_prefix("NACHET")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true),
            )
            .build()?
            .try_deserialize()
    }

    /// The built-in defaults alone (tests start from these).
    pub fn defaults() -> Self {
        config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .build()
            .and_then(config::Config::try_deserialize)
            .expect("the built-in defaults are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults with `toml` over them, as a deployment's file is layered.
    fn layered(toml: &str) -> Result<Settings, config::ConfigError> {
        config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .add_source(config::File::from_str(toml, config::FileFormat::Toml))
            .build()?
            .try_deserialize()
    }

    #[test]
    fn each_mode_of_a_setting_can_be_chosen_over_the_defaults() {
        // A key of one mode left in the defaults would be refused by another mode.
        let settings = layered(
            "[series.access]\nmode = \"jwt\"\njwks_url = \"https://idp.example.org/jwks\"\n",
        )
        .unwrap();
        assert!(matches!(
            settings.series.access,
            crate::http::series_access::SeriesAccessSettings::Jwt(_)
        ));
        let settings = layered("[identity]\nmode = \"header\"\nheader = \"X-Email\"\n").unwrap();
        assert!(matches!(
            settings.identity,
            crate::http::identity::IdentitySettings::Header { .. }
        ));
    }
}
