//! Helpers of the many-replicas test (`tests/replicas.rs`): the settings of a replica (all
//! in [`replica_env`]), replicas as child processes of the server binary, nginx in front of
//! them, a stub ML app that counts what it receives, and reads of the shared database, of
//! `/metrics` and of nginx's access log.
//!
//! Only the binary, its HTTP API and the database are used: nothing of the server's
//! library, so that the test keeps its meaning whatever the wiring inside becomes.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use futures::StreamExt;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::{Value, json};
use tokio::sync::watch;

pub const ADMIN_TOKEN: &str = "replicas-admin-token";
pub const CALLBACK_TOKEN: &str = "replicas-ml-app-callback-token";
/// The HS256 secret of the radiologists' JWTs (`series.access.mode = "jwt"`).
pub const ACCESS_SECRET: &str = "replicas-radiologist-jwt-secret";
/// The header an authenticating proxy would set (`identity.mode = "header"`).
pub const IDENTITY_HEADER: &str = "X-Forwarded-Email";
pub const ML_APP_NAME: &str = "stub-ml-app";
pub const MODEL: &str = "brain_tumor_classification";
pub const MODELS_KEY: &str = "replicas-models-key";
/// A worker's claim on a job lasts this long unless extended (every third of it).
pub const LEASE_SECONDS: u64 = 3;
pub const CATALOGUE_POLL_SECONDS: u64 = 1;
/// How long the stub ML app "works" on a series before it reports.
pub const REPORT_DELAY: Duration = Duration::from_millis(500);

/// What every replica shares.
pub struct Shared {
    pub database_url: String,
    /// The blob prefix (in the Azurite test container) of this test: pictures and catalogue.
    pub blob_prefix: String,
    pub catalogue_version: String,
    pub catalogue_key: String,
    pub ml_app_url: String,
}

/// Every setting of a replica, as environment variables (the only configuration a replica
/// gets: its environment is cleared first). One place, so that a renamed or new setting is
/// changed once.
pub fn replica_env(shared: &Shared, port: u16, data_dir: &Path) -> Vec<(String, String)> {
    let azurite = test_support::azurite_settings();
    let vars: Vec<(&str, String)> = vec![
        ("RUST_LOG", "info".into()),
        ("NO_COLOR", "1".into()),
        ("NACHET__SERVER__HOST", "127.0.0.1".into()),
        ("NACHET__SERVER__PORT", port.to_string()),
        ("NACHET__DATA_DIR", data_dir.display().to_string()),
        ("NACHET__DATABASE__URL", shared.database_url.clone()),
        ("NACHET__BLOB__KIND", "azure".into()),
        ("NACHET__BLOB__ACCOUNT", azurite.account),
        ("NACHET__BLOB__ACCESS_KEY", azurite.key),
        ("NACHET__BLOB__CONTAINER", azurite.container),
        ("NACHET__BLOB__ENDPOINT", azurite.endpoint),
        ("NACHET__BLOB__PREFIX", shared.blob_prefix.clone()),
        // The catalogue: a stored version, the model servers the test runs.
        (
            "NACHET__CATALOGUE__VERSION",
            shared.catalogue_version.clone(),
        ),
        (
            "NACHET__CATALOGUE__DECRYPTION_KEY",
            shared.catalogue_key.clone(),
        ),
        (
            "NACHET__CATALOGUE_POLL_SECONDS",
            CATALOGUE_POLL_SECONDS.to_string(),
        ),
        ("NACHET__ADMIN__TOKEN", ADMIN_TOKEN.into()),
        // Who calls: a proxy's header for the seed routes, HS256 JWTs for the series.
        ("NACHET__IDENTITY__MODE", "header".into()),
        ("NACHET__IDENTITY__HEADER", IDENTITY_HEADER.into()),
        ("NACHET__SERIES__ACCESS__MODE", "jwt".into()),
        ("NACHET__SERIES__ACCESS__HS256_SECRET", ACCESS_SECRET.into()),
        // DICOM series: every replica works jobs, with short leases and polls.
        ("NACHET__SERIES__WORKERS", "2".into()),
        ("NACHET__SERIES__LEASE_SECONDS", LEASE_SECONDS.to_string()),
        ("NACHET__SERIES__POLL_INTERVAL_MS", "200".into()),
        ("NACHET__SERIES__RETRY_FIRST_DELAY_MS", "200".into()),
        ("NACHET__SERIES__RETRY_MAX_DELAY_SECONDS", "1".into()),
        ("NACHET__SERIES__ML_APP__NAME", ML_APP_NAME.into()),
        ("NACHET__SERIES__ML_APP__URL", shared.ml_app_url.clone()),
        (
            "NACHET__SERIES__ML_APP__CALLBACK_TOKEN",
            CALLBACK_TOKEN.into(),
        ),
        ("NACHET__SERIES__ML_APP__MODEL_TYPES", MODEL.into()),
    ];
    vars.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// A port nothing listens on (yet).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The last `lines` lines of a file (for failure messages).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---- replicas ----

/// One backend process. Dropping it kills it.
pub struct Replica {
    pub index: usize,
    pub port: u16,
    pub url: String,
    pub pid: u32,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Replica {
    /// Starts the server binary with only `env` (and `PATH`), its output to `{dir}/replica-N.log`.
    pub fn spawn(index: usize, shared: &Shared, dir: &Path) -> Self {
        let port = free_port();
        let data_dir = dir.join(format!("replica-{index}"));
        std::fs::create_dir_all(&data_dir).unwrap();
        let log = dir.join(format!("replica-{index}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_nachet-backend"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(replica_env(shared, port, &data_dir))
            .current_dir(&data_dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("cannot start the nachet-backend binary");
        Self {
            index,
            port,
            url: format!("http://127.0.0.1:{port}"),
            pid: child.id(),
            log,
            child: Some(child),
        }
    }

    pub fn is_alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Waits until `GET /ready` answers 200; panics with the log's end if the process exits
    /// or `timeout` passes.
    pub async fn wait_ready(&mut self, http: &reqwest::Client, timeout: Duration) {
        let started = Instant::now();
        loop {
            if let Ok(answer) = http.get(format!("{}/ready", self.url)).send().await
                && answer.status() == 200
            {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "replica {} exited before it was ready ({status}):\n{}",
                    self.index,
                    tail(&self.log, 40)
                );
            }
            assert!(
                started.elapsed() < timeout,
                "replica {} was not ready within {timeout:?}:\n{}",
                self.index,
                tail(&self.log, 40)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL: no chance to give anything back or clean anything up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("cannot kill the replica");
            child.wait().unwrap();
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---- nginx ----

const NGINX_BINARIES: [&str; 2] = ["/usr/sbin/nginx", "/usr/local/sbin/nginx"];

/// nginx, or a panic saying how to install it (no silent skip).
pub fn nginx_binary() -> PathBuf {
    if let Ok(path) = std::env::var("NGINX_BIN") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "NGINX_BIN={} is not a file: the many-replicas test needs nginx",
            path.display()
        );
        return path;
    }
    let on_path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("nginx")).collect())
        .unwrap_or_default();
    NGINX_BINARIES
        .iter()
        .map(PathBuf::from)
        .chain(on_path)
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "nginx is not installed (looked at {NGINX_BINARIES:?} and PATH; or set NGINX_BIN): \
                 the many-replicas test puts nginx in front of the replicas. Install it with \
                 `deploy/services.sh install` (apt package nginx-light or nginx)"
            )
        })
}

/// nginx in front of the replicas, round robin, all its files in its own folder. Dropping
/// it kills it.
pub struct Nginx {
    pub url: String,
    pub dir: PathBuf,
    child: Option<Child>,
}

impl Nginx {
    pub async fn start(dir: &Path, upstreams: &[u16]) -> Self {
        let binary = nginx_binary();
        let dir = dir.join("nginx");
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let d = dir.display();
        // Temporary-file folders of the modules this build has (each must be writable: the
        // defaults are under /var/lib/nginx).
        let version = Command::new(&binary)
            .arg("-V")
            .output()
            .expect("cannot run nginx -V");
        let build = String::from_utf8_lossy(&version.stderr).into_owned();
        // `-e` (the error log before the configuration is read) exists from 1.19.5; older
        // versions try their built-in path first and only warn when it is not writable.
        let knows_e = build
            .split("nginx/")
            .nth(1)
            .and_then(|v| v.split_whitespace().next())
            .map(|v| {
                v.split('.')
                    .map(|n| n.parse::<u32>().unwrap_or(0))
                    .collect::<Vec<_>>()
            })
            .is_some_and(|v| v >= vec![1, 19, 5]);
        let mut temp_paths = format!(
            "client_body_temp_path {d}/client_body_temp;\n    proxy_temp_path {d}/proxy_temp;\n"
        );
        for module in ["fastcgi", "uwsgi", "scgi"] {
            if !build.contains(&format!("--without-http_{module}_module")) {
                writeln!(temp_paths, "    {module}_temp_path {d}/{module}_temp;").unwrap();
            }
        }
        let servers: String = upstreams
            .iter()
            .map(|p| format!("        server 127.0.0.1:{p} max_fails=1 fail_timeout=10s;\n"))
            .collect();
        // One process (no master/worker split, so no user switch and one pid to kill);
        // request bodies and answers kept in memory; a replica that refuses connections
        // is skipped for the next (nginx never re-sends a POST it has begun to send).
        let config = format!(
            "daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 512; }}
http {{
    log_format replicas '$request_method|$request_uri|$status|$upstream_addr|$upstream_status';
    access_log {d}/access.log replicas;
    {temp_paths}
    client_max_body_size 32m;
    client_body_buffer_size 32m;
    proxy_max_temp_file_size 0;
    upstream replicas {{
{servers}    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://replicas;
            proxy_http_version 1.1;
            proxy_connect_timeout 2s;
            proxy_send_timeout 60s;
            proxy_read_timeout 60s;
            proxy_next_upstream error timeout;
        }}
    }}
}}
"
        );
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config).unwrap();
        let prefix = format!("{d}/");
        let log = std::fs::File::create(dir.join("stderr.log")).unwrap();
        let mut command = Command::new(&binary);
        command.arg("-p").arg(&prefix).arg("-c").arg(&conf);
        if knows_e {
            command.arg("-e").arg(dir.join("error.log"));
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let mut nginx = Self {
            url: format!("http://127.0.0.1:{port}"),
            dir,
            child: Some(child),
        };
        let started = Instant::now();
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return nginx;
            }
            if let Some(Ok(Some(status))) = nginx.child.as_mut().map(Child::try_wait) {
                panic!(
                    "nginx exited at start ({status}):\n{}\n{}",
                    tail(&nginx.dir.join("stderr.log"), 20),
                    tail(&nginx.dir.join("error.log"), 20)
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "nginx did not listen within 20 s:\n{}",
                tail(&nginx.dir.join("error.log"), 20)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every request nginx has logged.
    pub fn access_log(&self) -> Vec<AccessEntry> {
        std::fs::read_to_string(self.dir.join("access.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(AccessEntry::parse)
            .collect()
    }

    pub fn error_log_tail(&self, lines: usize) -> String {
        tail(&self.dir.join("error.log"), lines)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One line of nginx's access log.
#[derive(Clone, Debug)]
pub struct AccessEntry {
    pub method: String,
    pub uri: String,
    /// What the client got.
    pub status: u16,
    /// The replica that answered last (`127.0.0.1:port`), and what it answered.
    pub upstream: Option<String>,
    pub upstream_status: Option<u16>,
    /// Every replica tried, in order.
    pub tried: Vec<String>,
}

impl AccessEntry {
    pub fn parse(line: &str) -> Option<Self> {
        let fields: Vec<&str> = line.split('|').collect();
        let [method, uri, status, addrs, statuses] = fields[..] else {
            return None;
        };
        // `127.0.0.1:1, 127.0.0.1:2` and `502, 200` (`:` separates internal redirects).
        let tried: Vec<String> = addrs
            .split(", ")
            .map(str::trim)
            .filter(|s| !s.is_empty() && *s != "-")
            .map(str::to_owned)
            .collect();
        Some(Self {
            method: method.to_owned(),
            uri: uri.to_owned(),
            status: status.parse().ok()?,
            upstream: tried.last().cloned(),
            upstream_status: statuses
                .split([',', ':'])
                .map(str::trim)
                .rfind(|s| !s.is_empty() && *s != "-")
                .and_then(|s| s.parse().ok()),
            tried,
        })
    }

    /// The port of the replica that answered last.
    pub fn upstream_port(&self) -> Option<u16> {
        self.upstream.as_deref()?.rsplit(':').next()?.parse().ok()
    }
}

// ---- the stub ML app ----

/// One series received by the stub ML app.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub series_id: String,
    pub run_id: String,
    pub at: Instant,
    pub bytes: usize,
}

/// How a report to the backend ended.
#[derive(Clone, Debug)]
pub struct Report {
    pub series_id: String,
    pub status: Option<u16>,
    pub attempts: u32,
}

struct StubState {
    runtime: tokio::runtime::Handle,
    http: reqwest::Client,
    /// Reports go there (nginx).
    backend_url: Mutex<String>,
    deliveries: Mutex<Vec<Delivery>>,
    refused: Mutex<Vec<String>>,
    reports: Mutex<Vec<Report>>,
    hold_next: AtomicBool,
    held: Mutex<Option<Delivery>>,
    gate: watch::Sender<bool>,
}

/// An ML app (contract 2.4) that takes the series ZIP, counts each delivery per series and
/// run, answers 202, and reports `completed` to the backend [`REPORT_DELAY`] later, with
/// the callback token, retrying while the backend cannot be reached. One delivery can be
/// held ([`StubMlApp::hold_next`]): its answer and its report wait until
/// [`StubMlApp::release`], so that the job that sent it stays claimed meanwhile.
pub struct StubMlApp {
    pub url: String,
    state: Arc<StubState>,
    handle: actix_web::dev::ServerHandle,
}

impl StubMlApp {
    pub async fn start() -> Self {
        let (gate, _) = watch::channel(false);
        let state = Arc::new(StubState {
            runtime: tokio::runtime::Handle::current(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            backend_url: Mutex::new(String::new()),
            deliveries: Mutex::default(),
            refused: Mutex::default(),
            reports: Mutex::default(),
            hold_next: AtomicBool::new(false),
            held: Mutex::new(None),
            gate,
        });
        let data = web::Data::from(state.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/predict", web::post().to(stub_predict))
        })
        .workers(2)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            url: format!("http://{addr}"),
            state,
            handle,
        }
    }

    /// Where the reports go.
    pub fn report_to(&self, backend_url: &str) {
        *self.state.backend_url.lock().unwrap() = backend_url.to_owned();
    }

    pub fn hold_next(&self) {
        self.state.hold_next.store(true, Ordering::SeqCst);
    }

    pub fn held(&self) -> Option<Delivery> {
        self.state.held.lock().unwrap().clone()
    }

    pub fn release(&self) {
        self.state.gate.send_replace(true);
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.state.deliveries.lock().unwrap().clone()
    }

    /// Deliveries per (series id, run id).
    pub fn deliveries_per_run(&self) -> BTreeMap<(String, String), usize> {
        let mut counts = BTreeMap::new();
        for d in self.deliveries() {
            *counts.entry((d.series_id, d.run_id)).or_insert(0) += 1;
        }
        counts
    }

    /// Requests that were not a valid prediction request.
    pub fn refused(&self) -> Vec<String> {
        self.state.refused.lock().unwrap().clone()
    }

    pub fn reports(&self) -> Vec<Report> {
        self.state.reports.lock().unwrap().clone()
    }

    pub async fn stop(self) {
        self.release();
        self.handle.stop(false).await;
    }
}

async fn stub_predict(
    state: web::Data<StubState>,
    query: web::Query<HashMap<String, String>>,
    mut payload: web::Payload,
) -> HttpResponse {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        match chunk {
            Ok(chunk) => body.extend_from_slice(&chunk),
            Err(e) => {
                // A sender killed in the middle of its upload: nothing was delivered.
                return HttpResponse::BadRequest().json(json!({"error": e.to_string()}));
            }
        }
    }
    let get = |name: &str| query.get(name).cloned().unwrap_or_default();
    let (series_id, run_id, model_type) = (get("seriesId"), get("runId"), get("modelType"));
    let contains = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    let problem = if series_id.is_empty() || run_id.is_empty() {
        Some("seriesId or runId missing")
    } else if model_type != MODEL || get("modality") != "MR" {
        Some("unexpected modelType or modality")
    } else if !contains(b"name=\"file\"") || !contains(b"PK\x03\x04") {
        Some("no ZIP in the multipart field `file`")
    } else {
        None
    };
    if let Some(problem) = problem {
        state
            .refused
            .lock()
            .unwrap()
            .push(format!("{problem}: {:?}", query.0));
        return HttpResponse::BadRequest().json(json!({ "error": problem }));
    }
    let delivery = Delivery {
        series_id: series_id.clone(),
        run_id: run_id.clone(),
        at: Instant::now(),
        bytes: body.len(),
    };
    state.deliveries.lock().unwrap().push(delivery.clone());
    let held = state.hold_next.swap(false, Ordering::SeqCst);
    if held {
        *state.held.lock().unwrap() = Some(delivery);
    }
    let mut gate = state.gate.subscribe();
    // The work goes on whatever happens to this request (its sender may be killed).
    let worker = state.clone();
    let body = json!({
        "status": "completed",
        "modelType": model_type,
        "runId": run_id,
        "result": {"stub": true, "label": "no finding"},
    });
    state.runtime.spawn({
        let mut gate = gate.clone();
        let series_id = series_id.clone();
        async move {
            if held {
                let _ = gate.wait_for(|open| *open).await;
            }
            tokio::time::sleep(REPORT_DELAY).await;
            let report = deliver_report(&worker, &series_id, &body).await;
            worker.reports.lock().unwrap().push(report);
        }
    });
    if held {
        let _ = tokio::time::timeout(Duration::from_secs(60), gate.wait_for(|open| *open)).await;
    }
    HttpResponse::Accepted().json(json!({"status": "accepted", "seriesId": series_id}))
}

/// `PUT {backend}/api/studies/series/{id}/status`, retried on connection errors, 5xx, 408
/// and 429 (a replica may have died under it).
async fn deliver_report(state: &StubState, series_id: &str, body: &Value) -> Report {
    let url = format!(
        "{}/api/studies/series/{series_id}/status",
        state.backend_url.lock().unwrap()
    );
    let mut wait = Duration::from_millis(100);
    let mut last = None;
    for attempt in 1..=30 {
        match state
            .http
            .put(&url)
            .bearer_auth(CALLBACK_TOKEN)
            .json(body)
            .send()
            .await
        {
            Ok(answer) => {
                let status = answer.status().as_u16();
                last = Some(status);
                if !(status >= 500 || status == 408 || status == 429) {
                    return Report {
                        series_id: series_id.to_owned(),
                        status: Some(status),
                        attempts: attempt,
                    };
                }
            }
            Err(_) => last = None,
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(1));
    }
    Report {
        series_id: series_id.to_owned(),
        status: last,
        attempts: 30,
    }
}

// ---- the shared database ----

/// A job of the queue as the database holds it.
#[derive(Clone, Debug)]
pub struct JobRow {
    pub run_id: uuid::Uuid,
    pub series_id: uuid::Uuid,
    pub phase: String,
    pub lease_owner: Option<String>,
    pub lease_until_us: Option<i64>,
    pub claims: i64,
}

pub struct Database(DatabaseConnection);

impl Database {
    pub async fn connect(url: &str) -> Self {
        Self(
            sea_orm::Database::connect(url)
                .await
                .unwrap_or_else(|e| panic!("cannot connect to the test database: {e}")),
        )
    }

    async fn rows(&self, sql: &str) -> Vec<sea_orm::QueryResult> {
        self.0
            .query_all_raw(Statement::from_string(
                self.0.get_database_backend(),
                sql.to_owned(),
            ))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub async fn count(&self, table: &str) -> i64 {
        let rows = self
            .rows(&format!("SELECT COUNT(*) AS n FROM {table}"))
            .await;
        rows[0].try_get("", "n").unwrap()
    }

    pub async fn jobs(&self) -> Vec<JobRow> {
        self.rows(
            "SELECT run_id, series_id, phase, lease_owner, lease_until_us, claims \
             FROM dicom_prediction_jobs ORDER BY run_id",
        )
        .await
        .into_iter()
        .map(|row| JobRow {
            run_id: row.try_get("", "run_id").unwrap(),
            series_id: row.try_get("", "series_id").unwrap(),
            phase: row.try_get("", "phase").unwrap(),
            lease_owner: row.try_get("", "lease_owner").unwrap(),
            lease_until_us: row.try_get("", "lease_until_us").unwrap(),
            claims: row.try_get("", "claims").unwrap(),
        })
        .collect()
    }

    /// Closes the connection, then drops the database (the test's own, once it passed).
    pub async fn drop_database(self, url: &str) {
        let _ = self.0.close().await;
        // `postgres://user@host:port/name`
        let name = url.rsplit('/').next().unwrap().split('?').next().unwrap();
        assert!(name.starts_with("test_"), "not a test database: {url}");
        let server = sea_orm::Database::connect(test_support::required_env("TEST_DATABASE_URL"))
            .await
            .unwrap();
        server
            .execute_unprepared(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
            .await
            .unwrap_or_else(|e| panic!("cannot drop the test database {name}: {e}"));
        let _ = server.close().await;
    }

    /// Series by prediction state.
    pub async fn series_by_state(&self) -> BTreeMap<String, i64> {
        self.rows("SELECT state, COUNT(*) AS n FROM dicom_series GROUP BY state")
            .await
            .into_iter()
            .map(|row| {
                (
                    row.try_get::<String>("", "state").unwrap(),
                    row.try_get::<i64>("", "n").unwrap(),
                )
            })
            .collect()
    }
}

/// Whether a job's lease owner is a worker of the process `pid` (the workers are named
/// `{host}-{pid}-{n}`).
pub fn owned_by(job: &JobRow, pid: u32) -> bool {
    job.lease_owner
        .as_deref()
        .is_some_and(|owner| owner.contains(&format!("-{pid}-")))
}

// ---- /metrics ----

/// One sample of the Prometheus text: name, labels, value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// The samples of a Prometheus / OpenMetrics text.
pub fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some(split) = line.find(['{', ' ']) else {
            continue;
        };
        let (name, rest) = line.split_at(split);
        let (labels, rest) = match rest.strip_prefix('{') {
            Some(inner) => parse_labels(inner).unwrap_or_else(|| panic!("bad labels: {line}")),
            None => (BTreeMap::new(), rest),
        };
        let value = rest.split_whitespace().next().unwrap_or_default();
        if let Ok(value) = value.parse::<f64>() {
            samples.push(Sample {
                name: name.to_owned(),
                labels,
                value,
            });
        }
    }
    samples
}

/// `key="value",...}` (values may hold `{`, `}`, `,` and escapes), and what follows `}`.
fn parse_labels(mut rest: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    loop {
        rest = rest.trim_start_matches(',');
        if let Some(after) = rest.strip_prefix('}') {
            return Some((labels, after));
        }
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut escaped = false;
        let mut end = None;
        for (i, c) in after.char_indices() {
            match (escaped, c) {
                (true, c) => {
                    value.push(if c == 'n' { '\n' } else { c });
                    escaped = false;
                }
                (false, '\\') => escaped = true,
                (false, '"') => {
                    end = Some(i + 1);
                    break;
                }
                (false, c) => value.push(c),
            }
        }
        labels.insert(key.to_owned(), value);
        rest = &after[end?..];
    }
}

/// The value of the sample `name` whose labels include `labels`, if any.
pub fn sample(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

// ---- requests ----

/// A bearer JWT of a radiologist of `organization` (HS256 with [`ACCESS_SECRET`]).
pub fn radiologist_token(organization: &str) -> String {
    let exp = chrono::Utc::now().timestamp() + 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({ "sub": "radiologist", "organization": [organization], "exp": exp }),
        &jsonwebtoken::EncodingKey::from_secret(ACCESS_SECRET.as_bytes()),
    )
    .unwrap()
}

/// Uploads a series' Part-10 files to the test Orthanc.
pub async fn upload_to_orthanc(series: &dicom_files::synthetic::SyntheticSeries) {
    let http = reqwest::Client::new();
    let url = format!("{}/instances", test_support::orthanc_url());
    let uploads = (0..series.len()).map(|i| {
        let bytes = series.instance_bytes(i).unwrap();
        let (http, url) = (http.clone(), url.clone());
        async move { http.post(&url).body(bytes).send().await?.error_for_status() }
    });
    for result in futures::future::join_all(uploads).await {
        result.unwrap_or_else(|e| panic!("upload to Orthanc at {url} failed: {e}"));
    }
}

/// Polls `check` every `every` until it gives `Some`, or panics with `what` after `timeout`.
pub async fn poll<T, F, Fut>(what: &str, timeout: Duration, every: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            started.elapsed() < timeout,
            "{what}: not within {timeout:?}"
        );
        tokio::time::sleep(every).await;
    }
}
