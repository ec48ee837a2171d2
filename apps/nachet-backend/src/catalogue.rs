//! The pipeline catalogue of the running backend (contract 1.7): the version loaded at start,
//! and switching to another version while running.
//!
//! At start: the configured stored version (`NACHET_BLOB_PIPELINE_VERSION` or
//! `catalogue.version`), decrypted with `NACHET_BLOB_PIPELINE_DECRYPTION_KEY` (or
//! `catalogue.decryption_key`), unless the replicas chose another since (below).
//!
//! Many replicas, one catalogue: the version every replica should run is recorded in the
//! database ([`ChosenVersion`]). A start whose configured (or published reference) version
//! differs from the configuration seen last chooses it; a start with the same
//! configuration (a restart) loads what was chosen since, e.g. by an administrator. A
//! switch through the admin API chooses its version. Every replica polls the choice every
//! `catalogue_poll_seconds` ([`Catalogues::follow`]) and switches when it differs from the
//! version it runs.

use std::sync::Arc;

use anyhow::anyhow;
use pipeline::ports::{CatalogueRecorder, ChosenVersion};
use pipeline::{
    CatalogueLoader, CatalogueVersions, LoadCatalogueError, PipelineRegistry, PipelineSet,
    VersionSummary,
};

use crate::config::Settings;

/// The running catalogue and the way to switch it.
pub struct Catalogues {
    registry: Arc<PipelineRegistry>,
    loader: CatalogueLoader,
    chosen: Arc<dyn ChosenVersion>,
}

/// Why a switch did not happen; the running version stays.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    #[error(transparent)]
    Load(#[from] LoadCatalogueError),
    #[error("{0}")]
    List(String),
    #[error(
        "this replica now runs catalogue version {version}, but the choice could not be \
         recorded for the other replicas, which keep theirs; send the same reload again"
    )]
    NotRecorded { version: String, reason: String },
}

impl Catalogues {
    pub fn registry(&self) -> &Arc<PipelineRegistry> {
        &self.registry
    }

    /// Makes `version` the running one, here and (within `catalogue_poll_seconds`) on every
    /// replica; requests in flight finish on the one they hold.
    pub async fn switch(&self, version: &str) -> Result<Arc<PipelineSet>, SwitchError> {
        let set = self.switch_here(version).await?;
        // This replica runs it; the others keep theirs until a choice is recorded, so the
        // administrator is told (and a repeated reload records it).
        self.chosen
            .choose(version, None)
            .await
            .map_err(|e| SwitchError::NotRecorded {
                version: version.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(set)
    }

    async fn switch_here(&self, version: &str) -> Result<Arc<PipelineSet>, SwitchError> {
        let set = self.loader.switch(&self.registry, version).await?;
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
        self.loader
            .versions()
            .list()
            .await
            .map_err(|e| SwitchError::List(e.to_string()))
    }
}

/// Loads the catalogue version the settings name (see the module's documentation).
pub async fn load_at_start(
    settings: &Settings,
    recorder: Arc<dyn CatalogueRecorder>,
    chosen: Arc<dyn ChosenVersion>,
) -> anyhow::Result<Catalogues> {
    let catalogue = settings.catalogue.clone().with_contract_environment();
    let version = catalogue.version()?;
    let versions = catalogue.versions(&settings.blob)?;
    load_stored(versions, recorder, chosen, version).await
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
        loader,
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
