//! The backend on a development machine, in one command (`cargo run -p nachet-dev`).
//!
//! Nothing here is in the production path: this crate starts stand-ins for what a
//! deployment provides, then hands `nachet_backend::start_on` ordinary settings that point
//! at them, exactly as a deployment's settings point at real services:
//!
//! - the **reference model servers** (`apps/reference-models`, not trained models), and a
//!   catalogue of pipelines over them published as a stored, Fernet-encrypted version
//!   `0.0.N` ([`catalogue`]) with a key made on first start and kept in `data_dir`;
//! - the **reference ML app** (`apps/reference-ml-app`), which calls the backend back;
//! - a **DICOMweb server** of one synthetic MR series ([`demo_dicom`]), registered as the
//!   organization `demo`.
//!
//! Its settings are the server's, with `development.toml` (this crate's folder) laid over the
//! defaults: the development identity on both sides, and the `[development]` section.
//! Tests use [`StandIns`] the same way.

pub mod catalogue;
pub mod demo_dicom;
mod reference_catalogue;

use std::net::{SocketAddr, TcpListener};

use anyhow::Context;
use nachet_backend::{Backend, Settings};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

pub use reference_catalogue::reference_catalogue;

/// The default pipeline of the development catalogue (reference detector, then classifier).
pub const DEFAULT_PIPELINE: &str = "Reference detector + classifier";

/// The settings nachet-dev lays over the server's defaults.
pub const DEVELOPMENT_TOML: &str = include_str!("../development.toml");

/// `[development]`: the stand-ins.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandInSettings {
    /// Port of the reference model servers; a free one when unset.
    #[serde(default)]
    pub models_port: Option<u16>,
    /// The API key the catalogue gives the reference models.
    pub models_api_key: String,
    /// Port of the reference ML app; a free one when unset.
    #[serde(default)]
    pub ml_app_port: Option<u16>,
    /// Serve the demo series over DICOMweb and register the organization `demo`.
    pub demo_dicom: bool,
    /// Port of the demo DICOMweb server (0: a free one).
    pub dicom_port: u16,
}

#[derive(Deserialize)]
struct DevelopmentSection {
    development: StandInSettings,
}

/// The server's settings and the stand-ins', from the defaults, `development.toml`,
/// `NACHET_CONFIG` and `NACHET__*` variables.
pub fn load_settings() -> anyhow::Result<(Settings, StandInSettings)> {
    let settings: Settings = settings::load(Some(DEVELOPMENT_TOML))
        .context("invalid settings (the NACHET_CONFIG file or a NACHET__* variable)")?;
    let section: DevelopmentSection =
        settings::load(Some(DEVELOPMENT_TOML)).context("invalid settings in [development]")?;
    Ok((settings, section.development))
}

/// The built-in development settings alone (no file, no variables): what tests start from.
pub fn default_settings() -> (Settings, StandInSettings) {
    let settings = settings::layered(&[DEVELOPMENT_TOML]).expect("development.toml is valid");
    let section: DevelopmentSection =
        settings::layered(&[DEVELOPMENT_TOML]).expect("development.toml is valid");
    (settings, section.development)
}

/// The `NACHET__*` variables that give a server *process* what `settings` name beyond the
/// defaults: the catalogue version and its key (as [`catalogue::publish_into`] set them),
/// and the development identity on both sides. Tests and benchmarks that start the
/// `nachet-backend` binary add their own (the ML app, ports, folders).
pub fn development_env(settings: &Settings) -> Vec<(&'static str, String)> {
    use nachet_backend::http::identity::IdentitySettings;
    use nachet_backend::http::series_access::SeriesAccessSettings;
    let mut env = Vec::new();
    if let Some(version) = &settings.catalogue.version {
        env.push(("NACHET__CATALOGUE__VERSION", version.clone()));
    }
    if let Some(key) = &settings.catalogue.decryption_key {
        env.push((
            "NACHET__CATALOGUE__DECRYPTION_KEY",
            key.expose_secret().to_owned(),
        ));
    }
    if let Some(IdentitySettings::Development { email }) = &settings.identity {
        env.push(("NACHET__IDENTITY__MODE", "development".into()));
        env.push(("NACHET__IDENTITY__EMAIL", email.clone()));
    }
    if let Some(SeriesAccessSettings::Development { user }) = &settings.series.access {
        env.push(("NACHET__SERIES__ACCESS__MODE", "development".into()));
        env.push(("NACHET__SERIES__ACCESS__USER", user.clone()));
    }
    env
}

/// Starts the stand-ins, then the server on `listener` with the settings they filled in;
/// gives back both and those settings (what `main` runs, and what tests start).
pub async fn start_on(
    listener: TcpListener,
    options: &StandInSettings,
    mut settings: Settings,
) -> anyhow::Result<(Backend, StandIns, Settings)> {
    let stand_ins = StandIns::start(options, &mut settings, listener.local_addr()?)
        .await
        .context("cannot start the development stand-ins")?;
    let backend = nachet_backend::start_on(listener, settings.clone()).await?;
    Ok((backend, stand_ins, settings))
}

/// The running stand-ins.
pub struct StandIns {
    pub models: reference_models::ReferenceModels,
    /// `None` when the settings name an ML app of their own.
    pub ml_app: Option<reference_ml_app::RunningMlApp>,
    pub dicom: Option<demo_dicom::DemoDicomServer>,
}

impl StandIns {
    /// Starts the stand-ins and fills `settings` with what points at them: the catalogue
    /// version and its key (unless the settings name a version), the ML app's URL, callback
    /// token and model types (unless the settings name an ML app URL). `backend` is the address the backend will
    /// listen on: the ML app calls it back. The demo organization is written to the
    /// settings' database.
    pub async fn start(
        options: &StandInSettings,
        settings: &mut Settings,
        backend: SocketAddr,
    ) -> anyhow::Result<StandIns> {
        let mut models_options = reference_models::Options::new(options.models_api_key.clone());
        if let Some(port) = options.models_port {
            models_options = models_options.with_port(port);
        }
        let models = reference_models::start(models_options)
            .await
            .context("cannot start the reference model servers ([development] models_port)")?;
        tracing::info!(url = %models.url, "reference model servers started (not trained models)");

        let catalogue = reference_catalogue(
            &models.url,
            &SecretString::from(options.models_api_key.clone()),
        );
        catalogue::publish_into(settings, &catalogue).await?;

        let ml_app = if settings.series.ml_app.url.is_none() {
            Some(start_ml_app(options, settings, backend).await?)
        } else {
            None
        };

        let dicom = if options.demo_dicom {
            let server = demo_dicom::DemoDicomServer::start(options.dicom_port)
                .await
                .context("cannot start the demo DICOMweb server ([development] dicom_port)")?;
            demo_dicom::register_demo_organization(settings, &server.root()).await?;
            Some(server)
        } else {
            None
        };
        Ok(StandIns {
            models,
            ml_app,
            dicom,
        })
    }

    pub async fn stop(self) {
        self.models.stop().await;
        if let Some(ml_app) = self.ml_app {
            ml_app.stop().await;
        }
        if let Some(dicom) = self.dicom {
            dicom.stop().await;
        }
    }
}

/// The reference ML app, calling back `backend`, named in `settings`.
async fn start_ml_app(
    options: &StandInSettings,
    settings: &mut Settings,
    backend: SocketAddr,
) -> anyhow::Result<reference_ml_app::RunningMlApp> {
    let token = settings
        .series
        .ml_app
        .callback_token
        .clone()
        .unwrap_or_else(|| SecretString::from(random_secret()));
    let mut callback = backend;
    if callback.ip().is_unspecified() {
        callback.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let mut ml_options = reference_ml_app::Options::new(
        format!("http://{callback}"),
        token.expose_secret().to_string(),
    );
    if let Some(port) = options.ml_app_port {
        ml_options = ml_options.with_port(port);
    }
    let ml_app = reference_ml_app::start(ml_options)
        .await
        .context("cannot start the reference ML app ([development] ml_app_port)")?;
    tracing::info!(url = %ml_app.url, "reference ML app started (not a trained model)");
    let ml = &mut settings.series.ml_app;
    ml.url = Some(ml_app.url.clone());
    ml.callback_token = Some(token);
    if ml.model_types.is_empty() {
        ml.model_types = reference_ml_app::MODEL_TYPES
            .iter()
            .map(|m| m.name.to_string())
            .collect();
    }
    Ok(ml_app)
}

fn random_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}
