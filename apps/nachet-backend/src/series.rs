//! The series area (`dicom-series`, `http/series.rs`), wired: the adapters behind the
//! `dicom-series` ports, the prediction and study services behind the HTTP routes, and the
//! background workers.
//!
//! - DICOM server: DICOMweb (`dicomweb`), the only kind there is.
//! - Archiver: `series-zip`; ML app client: `ml-app-http`; repositories and job queue:
//!   `sql-store`.
//! - Scratch folders: one folder per process under `series.scratch_dir`, held with a file
//!   lock; at start, the folders of processes that died (lock free) are removed, so even a
//!   killed backend leaves no partial download behind for long.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use anyhow::Context;
use async_trait::async_trait;
use dicom_series::ports::MlAppEndpoint;
use dicom_series::{
    JobWorker, MlAppDirectory, MlAppRoute, PredictionService, RetryPolicy, ScratchDir,
    ScratchError, ScratchSpace, StudyService, SystemClock, WorkerPorts, WorkerSettings,
};
use dicomweb::{DicomWebOptions, DicomWebSource};
use ml_app_http::{HttpMlApp, HttpMlAppOptions};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sql_store::SqlStore;
use tokio::sync::{Notify, watch};

use crate::http::series::SeriesApi;
use crate::http::series_access::SeriesAccessSettings;
use crate::metrics::{MeteredDicomSource, MeteredMlApp, Metrics};

/// `[series]` of the settings (defaults in `crates/settings/default.toml`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeriesSettings {
    /// Background workers in this process (0: this process only serves the API).
    pub workers: usize,
    /// How long a worker's claim on a job lasts unless extended (extended every third).
    pub lease_seconds: u64,
    /// How often an idle worker looks for due jobs.
    pub poll_interval_ms: u64,
    /// Attempts to send a series at most, the first included.
    pub max_attempts: u32,
    /// Transient failures are retried until this long after the first attempt began (a
    /// DICOM server or ML app that restarts is waited for): the span of the schedule.
    pub retry_window_seconds: u64,
    /// Wait after the first failed attempt; doubled each time up to
    /// `retry_max_delay_seconds`, with jitter.
    pub retry_first_delay_ms: u64,
    pub retry_max_delay_seconds: u64,
    /// How long the ML app has to report after accepting a series.
    pub report_timeout_seconds: u64,
    /// Where series are downloaded and zipped; `{data_dir}/series-work` when unset.
    #[serde(default)]
    pub scratch_dir: Option<PathBuf>,
    pub dicomweb_connect_timeout_seconds: u64,
    /// Longest silence of a DICOM server in the middle of an answer.
    pub dicomweb_read_timeout_seconds: u64,
    pub ml_app: MlAppSettings,
    /// Who may call the radiologist's routes (`http::series_access`). Required.
    #[serde(default, deserialize_with = "crate::config::chosen_mode")]
    pub access: Option<SeriesAccessSettings>,
}

/// `[series.ml_app]`: the ML app, its callback token and its model types (all required but
/// the name).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlAppSettings {
    /// Recorded on each run, shown by `GET /api/studies/series/{id}`.
    pub name: String,
    /// The ML app's base URL (`{url}/predict`).
    #[serde(default)]
    pub url: Option<String>,
    /// The secret the ML app sends back as `Authorization: Bearer ...` on status callbacks.
    #[serde(default)]
    pub callback_token: Option<SecretString>,
    /// The model types the app runs (a list, or one comma-separated string).
    #[serde(deserialize_with = "crate::config::list_or_comma_separated")]
    pub model_types: Vec<String>,
}

impl std::fmt::Debug for MlAppSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MlAppSettings")
            .field("name", &self.name)
            .field("url", &self.url)
            .field(
                "callback_token",
                &self.callback_token.as_ref().map(|_| "[secret]"),
            )
            .field("model_types", &self.model_types)
            .finish()
    }
}

/// Series predictions as they run in this process.
pub struct SeriesRuntime {
    pub service: Arc<PredictionService>,
    pub api: web::Data<SeriesApi>,
    stop_workers: watch::Sender<bool>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl SeriesRuntime {
    /// Stops the workers (a job being worked on is given back at once).
    pub async fn stop(self) {
        let _ = self.stop_workers.send(true);
        for worker in self.workers {
            let _ = worker.await;
        }
    }
}

/// Wires series predictions; the settings were checked ([`crate::Settings::missing`]).
pub async fn start(
    settings: &SeriesSettings,
    data_dir: &Path,
    store: Arc<SqlStore>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<SeriesRuntime> {
    let ml = &settings.ml_app;
    let url = ml.url.clone().context("series.ml_app.url is not set")?;
    let callback_token = ml
        .callback_token
        .clone()
        .filter(|t| !t.expose_secret().trim().is_empty())
        .context("series.ml_app.callback_token is not set")?;
    let model_types = ml.model_types.clone();
    let ml_apps = MlAppDirectory::new(vec![MlAppRoute {
        name: ml.name.clone(),
        endpoint: MlAppEndpoint {
            url: url.trim_end_matches('/').to_string(),
        },
        model_types,
    }])
    .context("invalid settings series.ml_app")?;

    let clock = Arc::new(SystemClock);
    let job_queued = Arc::new(Notify::new());
    let service = Arc::new(PredictionService::new(
        store.clone(),
        store.clone(),
        store.clone(),
        ml_apps.clone(),
        clock.clone(),
        job_queued.clone(),
    ));

    let scratch_root = settings
        .scratch_dir
        .clone()
        .unwrap_or_else(|| data_dir.join("series-work"));
    let scratch = Arc::new(ProcessScratch::open(&scratch_root).with_context(|| {
        format!(
            "cannot use the scratch folder {} (setting series.scratch_dir)",
            scratch_root.display()
        )
    })?);
    let dicomweb = DicomWebSource::new(DicomWebOptions {
        connect_timeout: Duration::from_secs(settings.dicomweb_connect_timeout_seconds),
        read_timeout: Duration::from_secs(settings.dicomweb_read_timeout_seconds),
        ..DicomWebOptions::default()
    })
    .context("cannot build the DICOMweb client")?;
    let source = Arc::new(MeteredDicomSource {
        inner: dicomweb,
        metrics: metrics.clone(),
    });
    let studies = StudyService::new(store.clone(), store.clone(), source.clone());
    let ports = WorkerPorts {
        organizations: store.clone(),
        series: store.clone(),
        queue: store.clone(),
        source,
        archiver: Arc::new(series_zip::ZipArchiver::new()),
        ml_app: Arc::new(MeteredMlApp {
            inner: Arc::new(
                HttpMlApp::new(HttpMlAppOptions::default())
                    .context("cannot build the ML app client")?,
            ),
            metrics,
        }),
        scratch,
        clock,
    };
    let worker_settings = WorkerSettings {
        lease: Duration::from_secs(settings.lease_seconds.max(1)),
        poll_interval: Duration::from_millis(settings.poll_interval_ms.max(10)),
        retry: RetryPolicy {
            max_attempts: settings.max_attempts.max(1),
            window: Duration::from_secs(settings.retry_window_seconds),
            first_delay: Duration::from_millis(settings.retry_first_delay_ms),
            max_delay: Duration::from_secs(settings.retry_max_delay_seconds),
        },
        report_timeout: Duration::from_secs(settings.report_timeout_seconds),
    };
    let (stop_workers, stopped) = watch::channel(false);
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "backend".into());
    let workers = (0..settings.workers)
        .map(|i| {
            let worker = JobWorker::new(
                format!("{host}-{}-{i}", std::process::id()),
                ports.clone(),
                ml_apps.clone(),
                worker_settings.clone(),
                job_queued.clone(),
            );
            let mut stopped = stopped.clone();
            tokio::spawn(async move {
                worker
                    .run(async move {
                        let _ = stopped.wait_for(|stop| *stop).await;
                    })
                    .await
            })
        })
        .collect();

    let api = web::Data::new(SeriesApi::new(
        service.clone(),
        studies,
        vec![(ml.name.clone(), callback_token)],
    ));
    Ok(SeriesRuntime {
        service,
        api,
        stop_workers,
        workers,
    })
}

/// Scratch folders of this process, inside `{root}/proc-XXXX/`, which is held with an
/// exclusive lock on its `.lock` file while the process lives.
pub struct ProcessScratch {
    dir: PathBuf,
    _lock: File,
}

const LOCK_FILE: &str = ".lock";

impl ProcessScratch {
    /// Removes the folders of processes that are gone, then makes this process's own.
    pub fn open(root: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(root)?;
        for entry in std::fs::read_dir(root)? {
            let entry = entry?;
            let path = entry.path();
            let is_process_folder = entry.file_type()?.is_dir()
                && entry.file_name().to_string_lossy().starts_with("proc-");
            if !is_process_folder {
                continue;
            }
            let owner_gone = match File::open(path.join(LOCK_FILE)) {
                Ok(lock) => lock.try_lock().is_ok(),
                // No lock file: a process died while creating its folder.
                Err(_) => true,
            };
            if owner_gone {
                tracing::info!(folder = %path.display(), "removing the scratch folder of a stopped process");
                if let Err(e) = std::fs::remove_dir_all(&path) {
                    tracing::warn!(folder = %path.display(), "could not remove it: {e}");
                }
            }
        }
        // Locked before it gets its `proc-` name, so no other process ever sees it unlocked.
        let making = tempfile::Builder::new()
            .prefix("init-")
            .tempdir_in(root)?
            .keep();
        let lock = File::create(making.join(LOCK_FILE))?;
        lock.lock()?;
        let suffix = making
            .file_name()
            .map(|n| n.to_string_lossy().trim_start_matches("init-").to_string())
            .unwrap_or_default();
        let dir = root.join(format!("proc-{suffix}"));
        std::fs::rename(&making, &dir)?;
        Ok(Self { dir, _lock: lock })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for ProcessScratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[async_trait]
impl ScratchSpace for ProcessScratch {
    async fn create(&self, label: &str) -> Result<ScratchDir, ScratchError> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("{label}-"))
            .tempdir_in(&self.dir)
            .map_err(|e| {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot create a scratch folder");
                ScratchError(dicom_series::io_reason(&e))
            })?;
        Ok(ScratchDir::new(dir.path().to_path_buf(), dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_process_scratch_folder_is_removed_and_a_live_one_kept() {
        let root = tempfile::tempdir().unwrap();
        let live = ProcessScratch::open(root.path()).unwrap();
        // A folder left by a killed process: its lock file is not locked by anyone.
        let dead = root.path().join("proc-dead");
        std::fs::create_dir_all(dead.join("series-x-instances")).unwrap();
        std::fs::write(dead.join(LOCK_FILE), b"").unwrap();
        std::fs::write(dead.join("series-x-instances/1.dcm"), b"partial").unwrap();

        let other = ProcessScratch::open(root.path()).unwrap();
        assert!(!dead.exists());
        assert!(live.dir().exists());
        assert!(other.dir().exists());
        let live_dir = live.dir().to_path_buf();
        drop(live);
        assert!(!live_dir.exists());
    }

    #[tokio::test]
    async fn scratch_folders_go_when_dropped() {
        let root = tempfile::tempdir().unwrap();
        let scratch = ProcessScratch::open(root.path()).unwrap();
        let dir = scratch.create("series-1").await.unwrap();
        let path = dir.path().to_path_buf();
        std::fs::write(path.join("a"), b"x").unwrap();
        drop(dir);
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn a_scratch_failure_does_not_name_the_server_s_folders() {
        let root = tempfile::tempdir().unwrap();
        let scratch = ProcessScratch::open(root.path()).unwrap();
        std::fs::remove_dir_all(scratch.dir()).unwrap();
        let error = scratch.create("series-1").await.unwrap_err().to_string();
        assert!(error.contains("not found"), "{error}");
        assert!(!error.contains(&*root.path().to_string_lossy()), "{error}");
    }

    #[test]
    fn model_types_may_be_one_comma_separated_string() {
        let settings: MlAppSettings =
            serde_json::from_value(serde_json::json!({"name": "m", "model_types": "a, b,,c"}))
                .unwrap();
        assert_eq!(settings.model_types, ["a", "b", "c"]);
        let settings: MlAppSettings =
            serde_json::from_value(serde_json::json!({"name": "m", "model_types": ["x"]})).unwrap();
        assert_eq!(settings.model_types, ["x"]);
    }
}
