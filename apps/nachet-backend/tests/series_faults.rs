//! Faults around DICOM series predictions: the DICOM server stopping during a retrieval,
//! the ML app down, the backend killed in the middle of a job, and an ML app that never
//! reports.
//!
//! Needs `TEST_ORTHANC_URL` (`./deploy/run-tests.sh` sets it).

mod series_support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dicom_files::synthetic::SyntheticSeries;
use series_support::*;

const WAIT: Duration = Duration::from_secs(90);

/// "Orthanc stopped during retrieval": retried, then failed with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dicom_server_that_stops_during_retrieval_is_retried_then_the_run_fails_with_the_reason()
{
    let h = start(Db::Sqlite, fast_series()).await;
    let proxy = FaultProxy::start(orthanc_address()).await;
    let org = h.client().add_organization(&proxy.dicomweb()).await;
    let series = uploaded(SyntheticSeries::new("MR", 20).with_size(128, 128)).await;
    proxy.throttle(200_000);

    let id = h.client().predict_queued(&org, &series).await;
    let start = Instant::now();
    while proxy.passed() < 100_000 {
        assert!(start.elapsed() < WAIT, "the retrieval never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(h.client().series(&id).await["state"], "in_progress");
    proxy.stop();

    let done = h.client().wait_final(&id, WAIT).await;
    assert_eq!(done["state"], "failed", "{}", brief(&done));
    assert_eq!(done["attempts"], 3);
    let reason = done["lastError"].as_str().unwrap();
    assert!(
        reason.starts_with("gave up after 3 attempts; last error: retrieving study")
            && reason.contains(&proxy.dicomweb()),
        "{reason}"
    );
    assert_eq!(h.ml_app().received_total(), 0);
    assert!(h.scratch_files().is_empty(), "{:?}", h.scratch_files());
    h.stop().await;
}

/// "The ML app down": retried until it is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ml_app_that_is_down_is_retried_until_it_answers() {
    let port = free_port();
    let mut settings = fast_series();
    settings.max_attempts = 20;
    external_ml_app(&mut settings, &format!("http://127.0.0.1:{port}"));
    let h = start(Db::Sqlite, settings).await;
    let org = h.client().add_organization(&orthanc_dicomweb()).await;
    let series = uploaded(SyntheticSeries::new("MR", 3)).await;
    let id = h.client().predict_queued(&org, &series).await;

    let retrying = h
        .client()
        .wait_for(&id, WAIT, |s| {
            s["attempts"].as_u64() >= Some(2) && s["lastError"].is_string()
        })
        .await;
    assert_eq!(retrying["state"], "in_progress");
    assert!(
        retrying["lastError"]
            .as_str()
            .unwrap()
            .starts_with("sending to the ML app test-ml-app at"),
        "{}",
        brief(&retrying)
    );

    let ml_app = reference_ml_app::start(
        reference_ml_app::Options::new(h.backend.url().to_owned(), CALLBACK_TOKEN).with_port(port),
    )
    .await
    .unwrap();
    let done = h.client().wait_final(&id, WAIT).await;
    assert_eq!(done["state"], "completed", "{}", brief(&done));
    assert!(done["attempts"].as_u64().unwrap() >= 2);
    assert_eq!(ml_app.received_total(), 1);
    ml_app.stop().await;
    h.stop().await;
}

/// "A callback that never came left the series in_progress forever."
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_series_whose_ml_app_never_reports_fails_at_the_deadline() {
    let port = free_port();
    let mut settings = fast_series();
    settings.report_timeout_seconds = 2;
    external_ml_app(&mut settings, &format!("http://127.0.0.1:{port}"));
    let h = start(Db::Sqlite, settings).await;
    let ml_app = reference_ml_app::start(
        reference_ml_app::Options::new(h.backend.url().to_owned(), CALLBACK_TOKEN)
            .with_port(port)
            .without_callbacks(),
    )
    .await
    .unwrap();
    let org = h.client().add_organization(&orthanc_dicomweb()).await;
    let series = uploaded(SyntheticSeries::new("MR", 2)).await;
    let id = h.client().predict_queued(&org, &series).await;

    let sent = h
        .client()
        .wait_for(&id, WAIT, |s| s["submittedAt"].is_string())
        .await;
    let done = h.client().wait_final(&id, WAIT).await;
    assert_eq!(done["state"], "failed", "{}", brief(&done));
    assert_eq!(
        done["lastError"],
        "the ML app test-ml-app did not report within 2s"
    );
    assert_eq!(done["reportDeadline"], sent["reportDeadline"]);
    assert_eq!(ml_app.received_total(), 1);
    ml_app.stop().await;
    h.stop().await;
}

// ---- the backend killed in the middle of a job ----

struct BackendProcess {
    child: Child,
    url: String,
}

impl BackendProcess {
    /// Starts the backend binary on `port`, with its data in `dir`.
    async fn start(dir: &Path, database_url: &str, port: u16, ml_app_url: &str) -> Self {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("backend.log"))
            .unwrap();
        let env = process_env(dir).await;
        let child = Command::new(env!("CARGO_BIN_EXE_nachet-backend"))
            .env_remove("NACHET_CONFIG")
            .envs(env)
            .env("RUST_LOG", "info")
            .env("NACHET__DATA_DIR", dir)
            .env("NACHET__SERVER__PORT", port.to_string())
            .env("NACHET__DATABASE__URL", database_url)
            .env("NACHET__BLOB__ROOT", dir.join("blobs"))
            .env("NACHET__ADMIN__TOKEN", ADMIN_TOKEN)
            .env("NACHET__SERIES__LEASE_SECONDS", "2")
            .env("NACHET__SERIES__POLL_INTERVAL_MS", "100")
            .env("NACHET__SERIES__RETRY_FIRST_DELAY_MS", "200")
            .env("NACHET__SERIES__ML_APP__NAME", "test-ml-app")
            .env("NACHET__SERIES__ML_APP__URL", ml_app_url)
            .env("NACHET__SERIES__ML_APP__CALLBACK_TOKEN", CALLBACK_TOKEN)
            .env("NACHET__SERIES__ML_APP__MODEL_TYPES", MODEL_TYPES)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let mut process = Self { child, url };
        let http = reqwest::Client::new();
        let start = Instant::now();
        loop {
            if let Ok(answer) = http.get(format!("{}/health", process.url)).send().await
                && answer.status().is_success()
            {
                return process;
            }
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!(
                    "the backend exited ({status}): {}",
                    std::fs::read_to_string(dir.join("backend.log")).unwrap_or_default()
                );
            }
            assert!(start.elapsed() < WAIT, "the backend did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL: no chance to give anything back or clean anything up.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for BackendProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// "Work ran in in-process background tasks: lost on restart": the backend is killed
/// while it retrieves a series; restarted, it finishes the job, and the ML app receives the
/// series exactly once for the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_killed_mid_job_finishes_it_after_a_restart_and_sends_the_series_once() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = test_support::fresh_sqlite_url(&dir);
    let port = free_port();
    let ml_app = reference_ml_app::start(reference_ml_app::Options::new(
        format!("http://127.0.0.1:{port}"),
        CALLBACK_TOKEN,
    ))
    .await
    .unwrap();
    let proxy = FaultProxy::start(orthanc_address()).await;
    // About 5 MB at 1 MB/s: the retrieval takes a few seconds.
    let series = uploaded(SyntheticSeries::new("MR", 40).with_size(256, 256)).await;
    proxy.throttle(1_000_000);

    let backend = BackendProcess::start(dir.path(), &database_url, port, &ml_app.url).await;
    let api = Client::new(&backend.url);
    let org = api.add_organization(&proxy.dicomweb()).await;
    let id = api.predict_queued(&org, &series).await;
    let start = Instant::now();
    while proxy.passed() < 1_000_000 {
        assert!(start.elapsed() < WAIT, "the retrieval never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = api.series(&id).await;
    assert_eq!(before["state"], "in_progress");
    assert_eq!(before["attempts"], 1);
    assert!(
        !scratch_files(dir.path()).is_empty(),
        "the retrieval writes to the scratch folder"
    );
    backend.kill();
    assert_eq!(
        ml_app.received_total(),
        0,
        "killed before anything was sent"
    );

    proxy.throttle(0);
    let backend = BackendProcess::start(dir.path(), &database_url, port, &ml_app.url).await;
    let api = Client::new(&backend.url);
    let done = api.wait_final(&id, WAIT).await;
    assert_eq!(done["state"], "completed", "{}", brief(&done));
    assert_eq!(done["attempts"], 2);
    assert_eq!(done["runId"], before["runId"]);
    let run = done["runId"].as_str().unwrap();
    assert_eq!(ml_app.received(&id, Some(run)), 1);
    assert_eq!(ml_app.received_total(), 1);
    assert_eq!(done["result"]["output"].as_array().map(Vec::len), Some(40));
    // The killed process's partial download went when the new one started.
    assert!(
        scratch_files(dir.path()).is_empty(),
        "{:?}",
        scratch_files(dir.path())
    );
    backend.kill();
    ml_app.stop().await;
}

fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Measures (run by hand: `cargo test -p nachet-backend --test series_faults -- --ignored
/// --nocapture`): the backend's peak memory while it sends a 1,000-instance series, and the
/// time from the request to the ML app's acceptance next to a plain WADO-RS download.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check; slow"]
async fn peak_memory_and_time_of_a_1000_instance_series() {
    let instances = 1000;
    let series = uploaded(SyntheticSeries::new("MR", instances).with_size(256, 256)).await;
    let bytes: usize = series.instance_bytes(0).unwrap().len() * instances;

    let started = Instant::now();
    let mut answer = reqwest::Client::new()
        .get(format!(
            "{}/studies/{}/series/{}",
            orthanc_dicomweb(),
            series.study_instance_uid,
            series.series_instance_uid
        ))
        .header("Accept", "multipart/related; type=\"application/dicom\"")
        .send()
        .await
        .unwrap();
    let mut downloaded = 0usize;
    while let Some(chunk) = answer.chunk().await.unwrap() {
        downloaded += chunk.len();
    }
    let plain = started.elapsed();

    let dir = tempfile::tempdir().unwrap();
    let database_url = test_support::fresh_sqlite_url(&dir);
    let port = free_port();
    let ml_app = reference_ml_app::start(reference_ml_app::Options::new(
        format!("http://127.0.0.1:{port}"),
        CALLBACK_TOKEN,
    ))
    .await
    .unwrap();
    let backend = BackendProcess::start(dir.path(), &database_url, port, &ml_app.url).await;
    let pid = backend.child.id();
    let api = Client::new(&backend.url);
    let org = api.add_organization(&orthanc_dicomweb()).await;
    let idle = memory_kib(pid, "VmHWM:");

    let started = Instant::now();
    let id = api.predict_queued(&org, &series).await;
    let sent = api
        .wait_for(&id, Duration::from_secs(600), |s| {
            s["submittedAt"].is_string()
        })
        .await;
    let to_ml_app = started.elapsed();
    let peak = memory_kib(pid, "VmHWM:");
    assert_eq!(sent["state"], "in_progress");
    println!(
        "series: {instances} instances, {:.1} MB of DICOM; plain WADO-RS download of {:.1} MB: {:.2?}",
        bytes as f64 / 1e6,
        downloaded as f64 / 1e6,
        plain
    );
    println!(
        "backend: request to ML app acceptance (list, retrieve, zip, upload): {to_ml_app:.2?}; peak RSS {:.1} MB (idle {:.1} MB, +{:.1} MB)",
        peak as f64 / 1024.0,
        idle as f64 / 1024.0,
        (peak - idle) as f64 / 1024.0
    );
    let done = api.wait_final(&id, Duration::from_secs(600)).await;
    assert_eq!(done["state"], "completed", "{}", brief(&done));
    backend.kill();
    ml_app.stop().await;
}
