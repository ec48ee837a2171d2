//! `series_load`: a DICOM series prediction in one streamed pass, next to a plain WADO-RS
//! download of the same series. A benchmark (it prints numbers to compare), not a test.
//!
//! Against the Orthanc at `TEST_ORTHANC_URL` (`eval "$(deploy/services.sh env)"`), for each
//! size (100, 1,000 and 10,000 instances of 64 x 64 x 16 bits, about 9 kB each):
//! - the synthetic series is uploaded once, under fixed UIDs (a later run finds it there
//!   and does not upload it again);
//! - `SERIES_LOAD_ROUNDS` rounds (5), each of: plain, `GET {root}/studies/{s}/series/{s}`
//!   streamed to nowhere with reqwest (the floor for any retrieval; Orthanc warmed by one
//!   download first); the series search alone (QIDO-RS, the one request the backend makes
//!   before the download); and predict, through the backend in release (this package's
//!   binary, built by `cargo bench`) as a child process of its own on SQLite in a
//!   temporary folder, with an external ML app that is a stub in this process: from
//!   `POST /api/studies/series/predict` (a new organization each round, so a new series)
//!   to the stub having read the whole upload. The real adapters run: `dicomweb` (the
//!   series search for the count, WADO-RS into the ZIP), `series-zip`, `ml-app-http`.
//!   The table gives each one's median, the ratio of the medians, and the lowest and
//!   highest ratio of one round (a round's prediction to its own plain download);
//! - the backend's peak resident memory above its idle (VmHWM after it started, then after
//!   the last round), a fresh backend for each size.
//!
//! ```sh
//! eval "$(deploy/services.sh env)"
//! cargo bench -p nachet-backend --bench series_load
//! SERIES_LOAD_SIZES=100,1000 SERIES_LOAD_ROUNDS=9 cargo bench -p nachet-backend --bench series_load
//! ```
//!
//! Without `--bench` (as `cargo test --all-targets` or nextest run it) it does nothing.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use dicom_files::synthetic::SyntheticSeries;
use dicom_series::ports::{DicomCredentials, DicomServer, DicomSource, SeriesKey};
use dicomweb::{DicomWebOptions, DicomWebSource};
use futures::StreamExt;
use serde_json::{Value, json};

const ADMIN_TOKEN: &str = "series-load-admin";
const CALLBACK_TOKEN: &str = "series-load-callback";
const MODEL: &str = "abdominal_organs_segmentation";
const WADO_ACCEPT: &str = "multipart/related; type=\"application/dicom\"; transfer-syntax=*";
const WAIT: Duration = Duration::from_secs(30 * 60);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return; // test listing (nextest): no tests here
    }
    if !args.iter().any(|a| a == "--bench") {
        eprintln!(
            "series_load: a benchmark; run it with `cargo bench -p nachet-backend --bench series_load`"
        );
        return;
    }
    let sizes: Vec<usize> = std::env::var("SERIES_LOAD_SIZES")
        .unwrap_or_else(|_| "100,1000,10000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("SERIES_LOAD_SIZES: numbers"))
        .collect();
    let rounds: usize = std::env::var("SERIES_LOAD_ROUNDS")
        .map(|r| r.trim().parse().expect("SERIES_LOAD_ROUNDS: a number"))
        .unwrap_or(5)
        .max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(&sizes, rounds));
}

/// What the stub ML app received: (bytes of the upload, when it was read to the end).
#[derive(Default)]
struct Received(Mutex<Vec<(u64, Instant)>>);

async fn stub_predict(received: web::Data<Received>, mut body: web::Payload) -> HttpResponse {
    let mut bytes = 0u64;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(chunk) => bytes += chunk.len() as u64,
            Err(_) => return HttpResponse::BadRequest().finish(),
        }
    }
    received.0.lock().unwrap().push((bytes, Instant::now()));
    HttpResponse::Accepted().json(json!({"status": "accepted"}))
}

struct Row {
    instances: usize,
    dicom_mb: f64,
    plain: Duration,
    /// The series search alone (QIDO-RS).
    search: Duration,
    predict: Duration,
    /// The lowest and highest ratio of one round's prediction to its plain download.
    ratio_low: f64,
    ratio_high: f64,
    zip_mb: f64,
    idle_mib: f64,
    peak_above_idle_mib: f64,
}

async fn run(sizes: &[usize], rounds: usize) {
    let orthanc = std::env::var("TEST_ORTHANC_URL")
        .expect("TEST_ORTHANC_URL: eval \"$(deploy/services.sh env)\"");
    let dicomweb = format!("{orthanc}/dicom-web");

    let received = web::Data::new(Received::default());
    let stub_data = received.clone();
    let stub = HttpServer::new(move || {
        App::new()
            .app_data(stub_data.clone())
            .app_data(web::PayloadConfig::new(usize::MAX))
            .route("/predict", web::post().to(stub_predict))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let stub_url = format!("http://{}", stub.addrs()[0]);
    let stub = stub.run();
    let stub_handle = stub.handle();
    tokio::spawn(stub);

    let mut rows = Vec::new();
    for &instances in sizes {
        let series = fixed_series(instances);
        ensure_uploaded(&orthanc, &dicomweb, &series).await;
        let dicom_bytes = series.instance_bytes(0).unwrap().len() * instances;
        plain_download(&dicomweb, &series).await; // warms Orthanc's caches
        series_search(&dicomweb, &series).await;

        let dir = tempfile::tempdir().unwrap();
        let backend = BackendProcess::start(dir.path(), &stub_url).await;
        let http = reqwest::Client::new();
        let idle = memory_kib(backend.child.id(), "VmHWM:");
        // Rounds alternate a plain download and a prediction (each round a new
        // organization, so a new series): the host's noise hits both alike.
        let (mut plains, mut searches, mut predicts) = (Vec::new(), Vec::new(), Vec::new());
        let mut zip_bytes = 0;
        for round in 0..rounds {
            plains.push(plain_download(&dicomweb, &series).await);
            searches.push(series_search(&dicomweb, &series).await.0);
            let (took, bytes) =
                predict(&http, &backend.url, &dicomweb, &series, round, &received).await;
            predicts.push(took);
            zip_bytes = bytes;
        }
        let peak = memory_kib(backend.child.id(), "VmHWM:");
        drop(backend);
        let ratios: Vec<f64> = predicts
            .iter()
            .zip(&plains)
            .map(|(p, d)| p.as_secs_f64() / d.as_secs_f64())
            .collect();
        let row = Row {
            instances,
            dicom_mb: dicom_bytes as f64 / 1e6,
            plain: median(plains),
            search: median(searches),
            predict: median(predicts),
            ratio_low: ratios.iter().copied().fold(f64::INFINITY, f64::min),
            ratio_high: ratios.iter().copied().fold(0.0, f64::max),
            zip_mb: zip_bytes as f64 / 1e6,
            idle_mib: idle as f64 / 1024.0,
            peak_above_idle_mib: peak.saturating_sub(idle) as f64 / 1024.0,
        };
        eprintln!(
            "{} instances: plain {:.2} s, series search {:.3} s, predict -> ZIP received {:.2} s",
            row.instances,
            row.plain.as_secs_f64(),
            row.search.as_secs_f64(),
            row.predict.as_secs_f64()
        );
        rows.push(row);
    }
    stub_handle.stop(true).await;

    println!();
    println!(
        "| instances | DICOM MB | plain WADO-RS download (s) | the series search alone (s) | predict → ZIP received by the ML app (s) | ratio of the medians | ratio, lowest–highest round | ZIP MB | backend idle RSS (MiB) | peak RSS above idle (MiB) |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for row in &rows {
        println!(
            "| {} | {:.1} | {:.3} | {:.3} | {:.3} | {:.2}× | {:.2}–{:.2}× | {:.1} | {:.1} | {:.1} |",
            row.instances,
            row.dicom_mb,
            row.plain.as_secs_f64(),
            row.search.as_secs_f64(),
            row.predict.as_secs_f64(),
            row.predict.as_secs_f64() / row.plain.as_secs_f64(),
            row.ratio_low,
            row.ratio_high,
            row.zip_mb,
            row.idle_mib,
            row.peak_above_idle_mib
        );
    }
}

/// One prediction of `series` through the backend at `backend`, for a new organization
/// (round `round`): the time from `POST .../predict` to the stub ML app having read the
/// whole upload, and the upload's bytes.
async fn predict(
    http: &reqwest::Client,
    backend: &str,
    dicomweb: &str,
    series: &SyntheticSeries,
    round: usize,
    received: &Received,
) -> (Duration, u64) {
    let organization = format!("load-{}-{round}", series.len());
    let answer = http
        .post(format!("{backend}/api/admin/organizations"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": organization, "dicomwebRoot": dicomweb}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 201, "{}", answer.text().await.unwrap());

    received.0.lock().unwrap().clear();
    let started = Instant::now();
    let answer: Value = http
        .post(format!("{backend}/api/studies/series/predict"))
        .json(&json!({
            "organization": organization,
            "studyInstanceUid": series.study_instance_uid,
            "seriesInstanceUid": series.series_instance_uid,
            "modelType": MODEL,
            "predictAgain": true,
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["decision"], "queued", "{answer}");
    let id = answer["seriesId"].as_str().unwrap().to_string();
    let (bytes, at) = loop {
        if let Some(&first) = received.0.lock().unwrap().first() {
            break first;
        }
        if started.elapsed() > WAIT {
            panic!("the ML app stub received nothing within {WAIT:?}");
        }
        // A run that failed will never send: say why.
        if started.elapsed().as_millis() % 1000 < 10 {
            let series: Value = http
                .get(format!("{backend}/api/studies/series/{id}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_ne!(series["state"], "failed", "{series}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    (at - started, bytes)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// A CT series of `instances` instances of 64 x 64 under UIDs fixed by its size.
fn fixed_series(instances: usize) -> SyntheticSeries {
    let study = format!("2.25.9021077{instances:010}");
    let series = format!("{study}.1");
    SyntheticSeries::new("CT", instances).with_uids(study, series)
}

/// Uploads the series to Orthanc unless it is there whole already.
async fn ensure_uploaded(orthanc: &str, dicomweb: &str, series: &SyntheticSeries) {
    let client = reqwest::Client::new();
    if series_search(dicomweb, series).await.1 == Some(series.len() as u64) {
        return;
    }
    let started = Instant::now();
    eprintln!("uploading {} instances to {orthanc}...", series.len());
    let url = format!("{orthanc}/instances");
    let results: Vec<_> = futures::stream::iter(0..series.len())
        .map(|i| {
            let client = client.clone();
            let url = url.clone();
            let bytes = series.instance_bytes(i).unwrap();
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
        result.unwrap();
    }
    eprintln!("uploaded in {:.1?}", started.elapsed());
}

/// The series search the backend makes (`DicomWebSource::find_series`, the warm second of
/// two): how long it took, and the number of instances it gives.
async fn series_search(dicomweb: &str, series: &SyntheticSeries) -> (Duration, Option<u64>) {
    let source = DicomWebSource::new(DicomWebOptions::default()).unwrap();
    let server = DicomServer {
        root: dicomweb.to_string(),
        credentials: DicomCredentials::None,
    };
    let key = SeriesKey {
        study_instance_uid: series.study_instance_uid.clone(),
        series_instance_uid: series.series_instance_uid.clone(),
    };
    let mut result = (Duration::ZERO, None);
    for _ in 0..2 {
        let started = Instant::now();
        let found = source.find_series(&server, &key).await.unwrap();
        let count = found.and_then(|s| s.number_of_instances).map(u64::from);
        result = (started.elapsed(), count);
    }
    result
}

/// One WADO-RS download of the series, streamed to nowhere.
async fn plain_download(dicomweb: &str, series: &SyntheticSeries) -> Duration {
    let url = format!(
        "{dicomweb}/studies/{}/series/{}",
        series.study_instance_uid, series.series_instance_uid
    );
    let (took, bytes) = stream_to_nowhere(&url, WADO_ACCEPT).await;
    assert!(bytes > series.len() * 1000);
    took
}

/// A GET of `url` read to its end and dropped: how long it took, and its bytes.
async fn stream_to_nowhere(url: &str, accept: &str) -> (Duration, usize) {
    let started = Instant::now();
    let response = reqwest::Client::new()
        .get(url)
        .header("accept", accept)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let mut body = response.bytes_stream();
    let mut bytes = 0usize;
    while let Some(chunk) = body.next().await {
        bytes += chunk.unwrap().len();
    }
    (started.elapsed(), bytes)
}

fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The backend binary as a child process, its data in `dir`.
struct BackendProcess {
    child: Child,
    url: String,
}

impl BackendProcess {
    async fn start(dir: &Path, ml_app_url: &str) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.join("backend.log")).unwrap();
        // A catalogue is required (no seed model is called here) and the development identity.
        let (mut settings, _) = nachet_dev::default_settings();
        settings.data_dir = dir.to_owned();
        settings.blob = blob_store::BlobSettings::LocalDisk {
            root: dir.join("blobs"),
        };
        let catalogue = nachet_dev::reference_catalogue(
            "http://127.0.0.1:9",
            &secrecy::SecretString::from("k"),
        );
        nachet_dev::catalogue::publish_into(&mut settings, &catalogue)
            .await
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_nachet-backend"))
            .env_remove("NACHET_CONFIG")
            .envs(nachet_dev::development_env(&settings))
            .env("RUST_LOG", "warn")
            .env("NACHET__DATA_DIR", dir)
            .env("NACHET__SERVER__PORT", port.to_string())
            .env(
                "NACHET__DATABASE__URL",
                format!("sqlite://{}?mode=rwc", dir.join("db.sqlite").display()),
            )
            .env("NACHET__BLOB__ROOT", dir.join("blobs"))
            .env("NACHET__ADMIN__TOKEN", ADMIN_TOKEN)
            .env("NACHET__SERIES__ML_APP__NAME", "stub")
            .env("NACHET__SERIES__ML_APP__URL", ml_app_url)
            .env("NACHET__SERIES__ML_APP__CALLBACK_TOKEN", CALLBACK_TOKEN)
            .env("NACHET__SERIES__ML_APP__MODEL_TYPES", MODEL)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut process = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let http = reqwest::Client::new();
        let started = Instant::now();
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
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the backend did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for BackendProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
