//! The pipeline catalogue of the running backend (contract 1.7): the version loaded at start,
//! and switching to another version while running.
//!
//! At start, in this order:
//! - a version is configured (`NACHET_BLOB_PIPELINE_VERSION` or `catalogue.version`): that
//!   stored version, decrypted with `NACHET_BLOB_PIPELINE_DECRYPTION_KEY`;
//! - else `pipelines.source = "reference"` (the embedded default): the catalogue of the
//!   reference model servers is published as a stored version `0.0.N` (a new N only when it
//!   changed, e.g. the servers' port) with a key generated on first start and kept in
//!   `data_dir`, then loaded like any other version;
//! - else `pipelines.source = "file"`: a plain document, not stored.
//!
//! Many replicas, one catalogue: the version every replica should run is recorded in the
//! database ([`ChosenVersion`]). A start whose configured (or published reference) version
//! differs from the configuration seen last chooses it; a start with the same
//! configuration (a restart) loads what was chosen since, e.g. by an administrator. A
//! switch through the admin API chooses its version. Every replica polls the choice every
//! `catalogue_poll_seconds` ([`Catalogues::follow`]) and switches when it differs from the
//! version it runs.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use catalogue_store::{CatalogueSettings, FernetCipher};
use pipeline::ports::{CatalogueRecorder, ChosenVersion, PublishVersionError};
use pipeline::{
    Catalogue, CatalogueDocument, CatalogueLoader, CatalogueVersions, LoadCatalogueError,
    PipelineRegistry, PipelineSet, VersionSummary, validate_document,
};
use reference_models::ReferenceModels;
use secrecy::{ExposeSecret, SecretString};

use crate::config::{PipelineSettings, Settings};
use crate::reference_catalogue;

/// The name of the key file the embedded default keeps in `data_dir`.
pub const REFERENCE_KEY_FILE: &str = "pipeline-catalogue.key";

/// Versions of the embedded default's catalogue are `0.0.N`.
const REFERENCE_MAJOR_MINOR: &str = "0.0.";

/// The running catalogue and the way to switch it.
pub struct Catalogues {
    registry: Arc<PipelineRegistry>,
    /// `None` when the catalogue is a plain file and no key is configured: nothing to switch to.
    loader: Option<CatalogueLoader>,
    chosen: Arc<dyn ChosenVersion>,
}

/// Why a switch did not happen; the running version stays.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    #[error(
        "this backend serves a plain catalogue file (pipelines.source = \"file\") and has no \
         stored versions to switch to: set {} to use them",
        pipeline::KEY_ENV
    )]
    NoStoredVersions,
    #[error(transparent)]
    Load(#[from] LoadCatalogueError),
    #[error("{0}")]
    List(String),
}

impl Catalogues {
    pub fn registry(&self) -> &Arc<PipelineRegistry> {
        &self.registry
    }

    fn loader(&self) -> Result<&CatalogueLoader, SwitchError> {
        self.loader.as_ref().ok_or(SwitchError::NoStoredVersions)
    }

    /// Makes `version` the running one, here and (within `catalogue_poll_seconds`) on every
    /// replica; requests in flight finish on the one they hold.
    pub async fn switch(&self, version: &str) -> Result<Arc<PipelineSet>, SwitchError> {
        let set = self.switch_here(version).await?;
        if let Err(e) = self.chosen.choose(version, None).await {
            // This replica runs it; the others keep theirs until a choice is recorded.
            tracing::warn!(
                version,
                "could not record the version for the other replicas: {e}"
            );
        }
        Ok(set)
    }

    async fn switch_here(&self, version: &str) -> Result<Arc<PipelineSet>, SwitchError> {
        let set = self.loader()?.switch(&self.registry, version).await?;
        tracing::info!(
            version = set.catalogue_version(),
            pipelines = ?set.names(),
            "pipeline catalogue switched"
        );
        Ok(set)
    }

    /// Polls the version chosen for every replica and switches to it when it differs from
    /// the running one; returns when `stop` says so. A failed poll or load is logged and
    /// tried again at the next poll.
    pub async fn follow(
        &self,
        every: std::time::Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        if self.loader.is_none() {
            return;
        }
        let mut ticks = tokio::time::interval(every.max(std::time::Duration::from_millis(100)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stop.changed() => return,
            }
            let chosen = match self.chosen.chosen().await {
                Ok(Some(chosen)) => chosen.version,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(
                        "cannot read the catalogue version chosen for the replicas: {e}"
                    );
                    continue;
                }
            };
            if chosen != self.registry.current().catalogue_version()
                && let Err(e) = self.switch_here(&chosen).await
            {
                tracing::warn!(version = %chosen, "cannot switch to the catalogue version chosen for the replicas: {e}");
            }
        }
    }

    /// The stored versions, oldest first.
    pub async fn versions(&self) -> Result<Vec<VersionSummary>, SwitchError> {
        self.loader()?
            .versions()
            .list()
            .await
            .map_err(|e| SwitchError::List(e.to_string()))
    }
}

/// Loads the catalogue the settings name (see the module's documentation).
pub async fn load_at_start(
    settings: &Settings,
    recorder: Arc<dyn CatalogueRecorder>,
    chosen: Arc<dyn ChosenVersion>,
    reference_models: Option<&ReferenceModels>,
) -> anyhow::Result<Catalogues> {
    let catalogue = settings.catalogue.clone().with_contract_environment();

    if let Ok(version) = catalogue.version() {
        let versions = catalogue.versions(&settings.blob)?;
        return load_stored(versions, recorder, chosen, version).await;
    }

    match &settings.pipelines {
        PipelineSettings::Reference => {
            let models = reference_models.context(
                "pipelines.source = \"reference\" needs reference_models.enabled = true",
            )?;
            let key = reference_key(&catalogue, &settings.data_dir)?;
            let cipher = FernetCipher::new(&key).map_err(|e| {
                anyhow!(
                    "the catalogue key in {} {e}",
                    settings.data_dir.join(REFERENCE_KEY_FILE).display()
                )
            })?;
            let versions = CatalogueVersions::new(
                Arc::new(catalogue.store(&settings.blob)?),
                Arc::new(cipher),
            );
            let reference = reference_catalogue(&models.url, &settings.reference_models.api_key);
            let version = publish_reference(&versions, &reference).await?;
            load_stored(versions, recorder, chosen, &version).await
        }
        PipelineSettings::File { path } => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the catalogue file {}", path.display()))?;
            let format = pipeline::DocumentFormat::from_file_name(&path.to_string_lossy());
            let document = CatalogueDocument::parse(&text, format)
                .and_then(|parsed| validate_document(parsed.document, None))
                .with_context(|| format!("the catalogue file {} is invalid", path.display()))?;
            let ids = recorder
                .record(&document)
                .await
                .context("cannot record the catalogue's pipelines")?;
            let set = PipelineSet::new(&document, &ids);
            log_loaded(&set);
            // Stored versions can still be switched to when a key is configured.
            let loader = catalogue
                .versions(&settings.blob)
                .ok()
                .map(|versions| CatalogueLoader::new(versions, recorder));
            Ok(Catalogues {
                registry: Arc::new(PipelineRegistry::new(set)),
                loader,
                chosen,
            })
        }
    }
}

/// Loads `configured`, or what was chosen since this configuration was last seen (see the
/// module's documentation).
async fn load_stored(
    versions: CatalogueVersions,
    recorder: Arc<dyn CatalogueRecorder>,
    chosen: Arc<dyn ChosenVersion>,
    configured: &str,
) -> anyhow::Result<Catalogues> {
    let loader = CatalogueLoader::new(versions, recorder);
    let recorded = chosen.chosen().await.unwrap_or_else(|e| {
        tracing::warn!("cannot read the catalogue version chosen for the replicas: {e}");
        None
    });
    let version = match recorded {
        Some(recorded) if recorded.configured.as_deref() == Some(configured) => recorded.version,
        _ => {
            if let Err(e) = chosen.choose(configured, Some(configured.to_owned())).await {
                tracing::warn!(
                    version = configured,
                    "cannot record the configured catalogue version for the replicas: {e}"
                );
            }
            configured.to_owned()
        }
    };
    let set = match loader.load(&version).await {
        Ok(set) => set,
        Err(e) if version != configured => {
            tracing::warn!(chosen = %version, configured, "cannot load the catalogue version chosen for the replicas ({e}); loading the configured one");
            loader
                .load(configured)
                .await
                .map_err(|e| anyhow!("cannot load the pipeline catalogue: {e}"))?
        }
        Err(e) => return Err(anyhow!("cannot load the pipeline catalogue: {e}")),
    };
    log_loaded(&set);
    Ok(Catalogues {
        registry: Arc::new(PipelineRegistry::new(set)),
        loader: Some(loader),
        chosen,
    })
}

fn log_loaded(set: &PipelineSet) {
    tracing::info!(
        version = set.catalogue_version(),
        pipelines = ?set.names(),
        "pipeline catalogue loaded"
    );
}

/// The configured key, or the one kept in `data_dir` (made on first start).
fn reference_key(catalogue: &CatalogueSettings, data_dir: &Path) -> anyhow::Result<SecretString> {
    if let Some(key) = &catalogue.decryption_key {
        return Ok(key.clone());
    }
    let path = data_dir.join(REFERENCE_KEY_FILE);
    for _ in 0..2 {
        match std::fs::read_to_string(&path) {
            Ok(text) => return Ok(SecretString::from(text.trim().to_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
        let key = FernetCipher::generate_key();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(&path) {
            Ok(mut file) => {
                writeln!(file, "{}", key.expose_secret())
                    .and_then(|()| file.sync_all())
                    .with_context(|| format!("cannot write {}", path.display()))?;
                tracing::info!(path = %path.display(), "made the catalogue key of the embedded default");
                return Ok(key);
            }
            // Another process made it first: read theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
        }
    }
    Err(anyhow!("cannot read or create {}", path.display()))
}

/// Publishes the reference catalogue as the next `0.0.N`, unless the latest `0.0.N` already
/// says the same; returns the version to load.
async fn publish_reference(
    versions: &CatalogueVersions,
    reference: &Catalogue,
) -> anyhow::Result<String> {
    let wanted = without_version(reference);
    // Another backend on the same store may publish the same number at once: try again.
    for _ in 0..3 {
        let latest = versions
            .list()
            .await?
            .iter()
            .filter_map(|v| {
                v.version
                    .strip_prefix(REFERENCE_MAJOR_MINOR)?
                    .parse::<u64>()
                    .ok()
            })
            .max();
        if let Some(patch) = latest {
            let version = format!("{REFERENCE_MAJOR_MINOR}{patch}");
            // A version this key cannot open (the key file was lost) is simply not reused.
            if let Ok(stored) = versions.open(&version).await
                && without_version(&stored) == wanted
            {
                return Ok(version);
            }
        }
        let version = format!("{REFERENCE_MAJOR_MINOR}{}", latest.map_or(1, |p| p + 1));
        let mut document = wanted.clone();
        document.version = Some(version.clone());
        let catalogue = validate_document(document, None)
            .map_err(|e| anyhow!("the reference catalogue is invalid: {e}"))?;
        match versions.publish(&catalogue).await {
            Ok(()) => {
                tracing::info!(%version, "published the reference catalogue");
                return Ok(version);
            }
            Err(PublishVersionError::AlreadyExists { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(anyhow!(
        "cannot publish the reference catalogue: other processes keep publishing versions"
    ))
}

/// The plain document of a catalogue, without its version, to compare contents.
fn without_version(catalogue: &Catalogue) -> CatalogueDocument {
    let mut document =
        CatalogueDocument::from_catalogue(catalogue, &mut |_, plain| plain.to_owned());
    document.version = None;
    document
}
