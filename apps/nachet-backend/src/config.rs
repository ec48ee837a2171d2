//! The server's settings: where they come from and their defaults are the `settings` crate's
//! (`crates/settings/default.toml`, then `NACHET_CONFIG`, then `NACHET__*` variables); this
//! module is their types, and [`Settings::missing`], what a deployment must give.

use std::path::PathBuf;

use blob_store::BlobSettings;
use secrecy::{ExposeSecret, SecretString};
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};

use crate::http::identity::IdentitySettings;

#[derive(Clone, Debug, Deserialize)]
pub struct Settings {
    pub data_dir: PathBuf,
    /// How often each replica looks at the catalogue version chosen for all of them.
    pub catalogue_poll_seconds: u64,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub blob: BlobSettings,
    pub inference: InferenceSettings,
    pub users: UserSettings,
    /// Who the caller is (login proxy cookie, proxy header, or a development user). Required.
    #[serde(default, deserialize_with = "chosen_mode")]
    pub identity: Option<IdentitySettings>,
    /// Browsers' cross-origin calls (the Nachet frontend's development setup).
    pub cors: CorsSettings,
    /// The users' folders: the default one, and who receives archived verified pictures.
    pub folders: inference::FolderSettings,
    /// The stored catalogue version loaded at start and its key (`NACHET_BLOB_PIPELINE_*`
    /// too); see `crate::catalogue`. The version and the key are required.
    #[serde(default)]
    pub catalogue: catalogue_store::CatalogueSettings,
    /// The admin API (`/api/admin/...`); see `crate::http::admin`.
    #[serde(default)]
    pub admin: crate::http::admin::AdminSettings,
    /// DICOM series predictions; see `crate::series`.
    pub series: crate::series::SeriesSettings,
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

/// A section chosen by its `mode` key (`[identity]`, `[series.access]`), which has no
/// default: `None` when the section sets nothing, and [`Settings::missing`] says so.
pub(crate) fn chosen_mode<'de, D: Deserializer<'de>, T: DeserializeOwned>(
    d: D,
) -> Result<Option<T>, D::Error> {
    let section = serde_json::Value::deserialize(d)?;
    match &section {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::Object(keys) if keys.is_empty() => Ok(None),
        serde_json::Value::Object(keys) if !keys.contains_key("mode") => {
            Err(D::Error::custom(format!(
                "`mode` is not set, but other keys are ({}): set the mode first",
                keys.keys().cloned().collect::<Vec<_>>().join(", ")
            )))
        }
        _ => T::deserialize(section).map(Some).map_err(D::Error::custom),
    }
}

impl Settings {
    /// The defaults, then `NACHET_CONFIG`, then `NACHET__*` variables (the `settings` crate).
    pub fn load() -> Result<Self, config::ConfigError> {
        settings::load(None)
    }

    /// The built-in defaults alone (tests start from these and fill in what is required).
    pub fn defaults() -> Self {
        settings::layered(&[]).expect("the built-in defaults are valid")
    }

    /// What a deployment must give and these settings do not, one line each naming the
    /// setting and what it is for; empty when the server can start.
    pub fn missing(&self) -> Vec<String> {
        let mut missing = Vec::new();
        let catalogue = self.catalogue.clone().with_contract_environment();
        if catalogue.version().is_err() {
            missing.push(format!(
                "catalogue.version (or {}): the pipeline catalogue version to load, published \
                 with `nachet-catalogue insert`",
                pipeline::VERSION_ENV
            ));
        }
        if catalogue
            .decryption_key
            .as_ref()
            .is_none_or(|key| key.expose_secret().trim().is_empty())
        {
            missing.push(format!(
                "catalogue.decryption_key (or {}): the Fernet key of the catalogue versions",
                pipeline::KEY_ENV
            ));
        }
        if self.identity.is_none() {
            missing.push(
                "identity.mode: who the seed routes' callers are (vouch, header or development)"
                    .into(),
            );
        }
        if self.series.access.is_none() {
            missing.push(
                "series.access.mode: who the radiologist's routes' callers are (jwt or \
                 development)"
                    .into(),
            );
        }
        let ml_app = &self.series.ml_app;
        if ml_app
            .url
            .as_deref()
            .is_none_or(|url| url.trim().is_empty())
        {
            missing.push("series.ml_app.url: the ML app series are sent to".into());
        }
        if ml_app
            .callback_token
            .as_ref()
            .is_none_or(|token| token.expose_secret().trim().is_empty())
        {
            missing.push(
                "series.ml_app.callback_token: the secret the ML app's status callbacks carry"
                    .into(),
            );
        }
        if ml_app.model_types.is_empty() {
            missing.push("series.ml_app.model_types: the model types the ML app runs".into());
        }
        missing
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::series_access::SeriesAccessSettings;

    /// The defaults with `toml` over them, as a deployment's file is layered.
    fn layered(toml: &str) -> Result<Settings, config::ConfigError> {
        settings::layered(&[toml])
    }

    #[test]
    fn each_mode_of_a_setting_can_be_chosen_over_the_defaults() {
        let settings = layered(
            "[series.access]\nmode = \"jwt\"\njwks_url = \"https://idp.example.org/jwks\"\n",
        )
        .unwrap();
        assert!(matches!(
            settings.series.access,
            Some(SeriesAccessSettings::Jwt(_))
        ));
        let settings = layered("[identity]\nmode = \"header\"\nheader = \"X-Email\"\n").unwrap();
        assert!(matches!(
            settings.identity,
            Some(IdentitySettings::Header { .. })
        ));
    }

    #[test]
    fn the_defaults_name_every_setting_a_deployment_must_give() {
        let missing = Settings::defaults().missing().join("\n");
        for setting in [
            "catalogue.version",
            "catalogue.decryption_key",
            "identity.mode",
            "series.access.mode",
            "series.ml_app.url",
            "series.ml_app.callback_token",
            "series.ml_app.model_types",
        ] {
            assert!(missing.contains(setting), "{setting} not in:\n{missing}");
        }
    }

    #[test]
    fn a_mode_section_without_its_mode_is_refused_by_name() {
        let error = layered("[identity]\nheader = \"X-Email\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("`mode` is not set"), "{error}");
        assert!(error.contains("header"), "{error}");
    }
}
