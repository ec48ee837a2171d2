//! Helpers of the DICOM series end-to-end tests: a backend on port 0 (in this process, or
//! as a child process that a test can kill), series uploaded to the test Orthanc, a TCP
//! proxy in front of Orthanc that slows, cuts or stops it, and polling of a series' state.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blob_store::BlobSettings;
use dicom_files::synthetic::SyntheticSeries;
use futures::StreamExt;
use nachet_backend::series::SeriesSettings;
use nachet_backend::{Backend, Settings};
use nachet_dev::StandIns;
use reference_ml_app::RunningMlApp;
use secrecy::SecretString;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub const ADMIN_TOKEN: &str = "series-admin-token";
pub const CALLBACK_TOKEN: &str = "series-callback-token";
pub const MODEL: &str = "brain_tumor_classification";
pub const MODEL_TYPES: &str = "chest_xray_classification,brain_tumor_classification,brain_tumor_segmentation,lung_tumor_segmentation,abdominal_organs_segmentation";

#[derive(Clone, Copy, Debug)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Series settings for tests: short leases, retries and polls; the development access (no
/// token) and, unless a test names one, the reference ML app.
pub fn fast_series() -> SeriesSettings {
    let (settings, _) = nachet_dev::default_settings();
    SeriesSettings {
        workers: 2,
        lease_seconds: 3,
        poll_interval_ms: 100,
        max_attempts: 3,
        retry_window_seconds: 60,
        retry_first_delay_ms: 200,
        retry_max_delay_seconds: 1,
        report_timeout_seconds: 120,
        ..settings.series
    }
}

/// The ML app at `url`, reporting with [`CALLBACK_TOKEN`].
pub fn external_ml_app(series: &mut SeriesSettings, url: &str) {
    series.ml_app.name = "test-ml-app".into();
    series.ml_app.url = Some(url.to_string());
    series.ml_app.callback_token = Some(SecretString::from(CALLBACK_TOKEN));
    series.ml_app.model_types = MODEL_TYPES.split(',').map(str::to_string).collect();
}

/// The variables a backend *process* needs beyond its folders and ML app: a catalogue
/// published into `{dir}/blobs` (reference models at an address nothing listens on: series
/// tests call no seed model) and the development identity.
pub async fn process_env(dir: &Path) -> Vec<(&'static str, String)> {
    let (mut settings, _) = nachet_dev::default_settings();
    settings.data_dir = dir.to_owned();
    settings.blob = BlobSettings::LocalDisk {
        root: dir.join("blobs"),
    };
    let catalogue = nachet_dev::reference_catalogue("http://127.0.0.1:9", &SecretString::from("k"));
    nachet_dev::catalogue::publish_into(&mut settings, &catalogue)
        .await
        .unwrap();
    nachet_dev::development_env(&settings)
}

pub struct Harness {
    pub backend: Backend,
    /// The reference models and, unless the settings named an ML app, the reference ML app.
    pub stand_ins: StandIns,
    pub http: reqwest::Client,
    pub dir: TempDir,
    pub database_url: String,
}

pub async fn database_url(db: Db, dir: &TempDir) -> String {
    match db {
        Db::Sqlite => test_support::fresh_sqlite_url(dir),
        Db::Postgres => test_support::fresh_postgres_database().await,
    }
}

pub fn settings(dir: &Path, database_url: &str, series: SeriesSettings) -> Settings {
    let (mut settings, _) = nachet_dev::default_settings();
    settings.server.port = 0;
    settings.data_dir = dir.to_owned();
    settings.database.url = SecretString::from(database_url.to_string());
    settings.blob = BlobSettings::LocalDisk {
        root: dir.join("blobs"),
    };
    settings.admin.token = Some(SecretString::from(ADMIN_TOKEN));
    settings.series = series;
    settings
}

pub async fn start(db: Db, series: SeriesSettings) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let database_url = database_url(db, &dir).await;
    start_on(dir, database_url, series).await
}

/// A backend on an existing data folder and database (a restart).
pub async fn start_on(dir: TempDir, database_url: String, series: SeriesSettings) -> Harness {
    let (_, mut options) = nachet_dev::default_settings();
    options.demo_dicom = false;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (backend, stand_ins, _) = nachet_dev::start_on(
        listener,
        &options,
        settings(dir.path(), &database_url, series),
    )
    .await
    .unwrap();
    Harness {
        backend,
        stand_ins,
        http: reqwest::Client::new(),
        dir,
        database_url,
    }
}

impl Harness {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.backend.url())
    }

    /// The reference ML app this backend started.
    pub fn ml_app(&self) -> &RunningMlApp {
        self.stand_ins
            .ml_app
            .as_ref()
            .expect("the stand-ins run the reference ML app")
    }

    pub async fn stop(self) -> (TempDir, String) {
        self.backend.stop().await;
        self.stand_ins.stop().await;
        (self.dir, self.database_url)
    }

    pub fn client(&self) -> Client {
        Client {
            base: self.backend.url().to_owned(),
            http: self.http.clone(),
        }
    }

    /// Files left in the scratch folders (lock files aside).
    pub fn scratch_files(&self) -> Vec<PathBuf> {
        scratch_files(self.dir.path())
    }
}

pub fn scratch_files(data_dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.file_name().is_some_and(|n| n != ".lock") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&data_dir.join("series-work"), &mut files);
    files
}

/// HTTP calls to a backend.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
}

impl Client {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.to_string(),
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Adds an organization whose DICOM server is at `root`; returns its name.
    pub async fn add_organization(&self, root: &str) -> String {
        let name = format!("org-{}", test_support::unique_suffix());
        let answer = self
            .http
            .post(self.url("/api/admin/organizations"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({ "name": name, "dicomwebRoot": root }))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 201, "{}", answer.text().await.unwrap());
        name
    }

    pub async fn predict(
        &self,
        organization: &str,
        study: &str,
        series: &str,
        again: bool,
    ) -> (u16, Value) {
        let answer = self
            .http
            .post(self.url("/api/studies/series/predict"))
            .json(&json!({
                "organization": organization,
                "studyInstanceUid": study,
                "seriesInstanceUid": series,
                "modelType": MODEL,
                "predictAgain": again,
            }))
            .send()
            .await
            .unwrap();
        let status = answer.status().as_u16();
        (status, answer.json().await.unwrap())
    }

    /// Asks for a prediction that must be queued; returns the series id.
    pub async fn predict_queued(&self, organization: &str, series: &SyntheticSeries) -> String {
        let (status, answer) = self
            .predict(
                organization,
                &series.study_instance_uid,
                &series.series_instance_uid,
                false,
            )
            .await;
        assert_eq!(status, 202, "{answer}");
        assert_eq!(answer["decision"], "queued", "{answer}");
        answer["seriesId"].as_str().unwrap().to_string()
    }

    pub async fn series(&self, id: &str) -> Value {
        let answer = self
            .http
            .get(self.url(&format!("/api/studies/series/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        answer.json().await.unwrap()
    }

    /// Polls the series until `done` holds (panics with the last state after `timeout`).
    pub async fn wait_for(
        &self,
        id: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        loop {
            let series = self.series(id).await;
            if done(&series) {
                return series;
            }
            assert!(
                start.elapsed() < timeout,
                "series {id} did not get there within {timeout:?}; last: {}",
                brief(&series)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the run ends (completed, not_supported or failed).
    pub async fn wait_final(&self, id: &str, timeout: Duration) -> Value {
        self.wait_for(id, timeout, |s| {
            matches!(
                s["state"].as_str(),
                Some("completed" | "not_supported" | "failed")
            )
        })
        .await
    }

    pub async fn report(&self, id: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut request = self
            .http
            .put(self.url(&format!("/api/studies/series/{id}/status")))
            .json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let answer = request.send().await.unwrap();
        let status = answer.status().as_u16();
        (status, answer.json().await.unwrap_or(Value::Null))
    }
}

/// The series without its (long) result.
pub fn brief(series: &Value) -> Value {
    let mut series = series.clone();
    if let Some(output) = series["result"]["output"].as_array() {
        let n = output.len();
        series["result"]["output"] = json!(format!("[{n} slices]"));
    }
    series
}

// ---- Orthanc ----

pub fn orthanc_dicomweb() -> String {
    format!("{}/dicom-web", test_support::orthanc_url())
}

pub fn orthanc_address() -> SocketAddr {
    use std::net::ToSocketAddrs;
    let url = test_support::orthanc_url();
    let host_port = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    host_port
        .to_socket_addrs()
        .unwrap_or_else(|e| panic!("TEST_ORTHANC_URL={url}: {e}"))
        .find(SocketAddr::is_ipv4)
        .unwrap()
}

/// Uploads Part-10 files to Orthanc, 8 at a time.
pub async fn upload(files: Vec<Vec<u8>>) {
    let client = reqwest::Client::new();
    let url = format!("{}/instances", test_support::orthanc_url());
    let results: Vec<_> = futures::stream::iter(files)
        .map(|bytes| {
            let client = client.clone();
            let url = url.clone();
            async move {
                client
                    .post(&url)
                    .body(bytes)
                    .send()
                    .await?
                    .error_for_status()
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    for result in results {
        result.unwrap_or_else(|e| panic!("upload to Orthanc at {url} failed: {e}"));
    }
}

/// A synthetic series with fresh UIDs, uploaded to Orthanc.
pub async fn uploaded(series: SyntheticSeries) -> SyntheticSeries {
    let files = (0..series.len())
        .map(|i| series.instance_bytes(i).unwrap())
        .collect();
    upload(files).await;
    series
}

// ---- a proxy in front of Orthanc ----

/// A TCP proxy to `upstream` that can slow answers down, cut one answer in the middle, or
/// stop (connections cut, new ones refused) and start again on the same port.
pub struct FaultProxy {
    pub addr: SocketAddr,
    state: Arc<ProxyState>,
    accept: Mutex<Option<JoinHandle<()>>>,
}

struct ProxyState {
    upstream: SocketAddr,
    /// Bytes per second of answers; 0: no limit.
    rate: AtomicU64,
    /// Cut the first answer that grows past this many bytes; 0: never.
    cut_after: AtomicU64,
    cut_armed: AtomicBool,
    /// Answer bytes passed so far.
    passed: AtomicU64,
    connections: Mutex<Vec<JoinHandle<()>>>,
}

impl FaultProxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ProxyState {
            upstream,
            rate: AtomicU64::new(0),
            cut_after: AtomicU64::new(0),
            cut_armed: AtomicBool::new(false),
            passed: AtomicU64::new(0),
            connections: Mutex::new(Vec::new()),
        });
        let proxy = Self {
            addr,
            state,
            accept: Mutex::new(None),
        };
        proxy.serve(listener);
        proxy
    }

    /// The DICOMweb root of Orthanc through this proxy.
    pub fn dicomweb(&self) -> String {
        format!("http://{}/dicom-web", self.addr)
    }

    pub fn throttle(&self, bytes_per_second: u64) {
        self.state.rate.store(bytes_per_second, Ordering::SeqCst);
    }

    /// Cuts the connection of the first answer that passes `bytes` bytes.
    pub fn cut_once_after(&self, bytes: u64) {
        self.state.cut_after.store(bytes, Ordering::SeqCst);
        self.state.cut_armed.store(true, Ordering::SeqCst);
    }

    pub fn passed(&self) -> u64 {
        self.state.passed.load(Ordering::SeqCst)
    }

    /// Like Orthanc stopping: open connections are cut, new ones refused.
    pub fn stop(&self) {
        if let Some(accept) = self.accept.lock().unwrap().take() {
            accept.abort();
        }
        for connection in self.state.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn resume(&self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    fn serve(&self, listener: TcpListener) {
        let state = self.state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let connection = tokio::spawn(proxy_connection(client, state.clone()));
                state.connections.lock().unwrap().push(connection);
            }
        });
        *self.accept.lock().unwrap() = Some(accept);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn proxy_connection(client: TcpStream, state: Arc<ProxyState>) {
    let Ok(upstream) = TcpStream::connect(state.upstream).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let requests = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut upstream_write).await;
        let _ = upstream_write.shutdown().await;
    });
    let mut buffer = vec![0u8; 16 * 1024];
    let mut answered: u64 = 0;
    loop {
        let n = match upstream_read.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        answered += n as u64;
        let cut_after = state.cut_after.load(Ordering::SeqCst);
        if cut_after > 0 && answered > cut_after && state.cut_armed.swap(false, Ordering::SeqCst) {
            // Half of this chunk goes out, then the connection drops.
            let _ = client_write.write_all(&buffer[..n / 2]).await;
            break;
        }
        if client_write.write_all(&buffer[..n]).await.is_err() {
            break;
        }
        state.passed.fetch_add(n as u64, Ordering::SeqCst);
        let rate = state.rate.load(Ordering::SeqCst);
        if rate > 0 {
            tokio::time::sleep(Duration::from_secs_f64(n as f64 / rate as f64)).await;
        }
    }
    requests.abort();
}

/// A port nothing listens on (yet).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
