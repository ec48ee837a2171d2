//! `inf_load`: `/inf` under load, against the codec limit of the same machine. A benchmark
//! (it prints numbers to compare), not a test.
//!
//! One command runs, in one process tree:
//! - stub model servers of its own (a detector answering the 10 boxes of the picture, a
//!   classifier answering a top-5), instant or answering after 50 ms: they do no image work,
//!   so the cores are the backend's;
//! - the backend in release (this package's binary, built by `cargo bench`) as a child
//!   process on SQLite and local disk in a temporary folder, its
//!   pipelines pointing at the stubs;
//! - the codec-only limit: the codec work of one request alone (base64, SHA-256, one PNG
//!   decode, 10 crops encoded as the catalogue says, base64), on one thread per core, with
//!   the backend's own code (`inference::CheckedPicture`);
//! - a load generator (C clients, each sending `/inf` after `/inf`) and a `/health` poller.
//!
//! It prints one row per stub latency and client count: req/s, latency p50/p99, refusals,
//! the ratio to the codec limit, the backend's peak resident memory and the part of it per
//! client above idle, the bytes the models received per request, and `/health` p99.
//!
//! ```sh
//! cargo bench -p nachet-backend --bench inf_load
//! INF_LOAD_SECONDS=20 INF_LOAD_CLIENTS=1,8,64,256 INF_LOAD_LATENCIES=0,50 \
//!     INF_LOAD_CROP_ENCODING=png_fast cargo bench -p nachet-backend --bench inf_load
//! ```
//!
//! Environment (defaults in brackets): `INF_LOAD_SECONDS` [10] per row, `INF_LOAD_CLIENTS`
//! [1,8,64,256], `INF_LOAD_LATENCIES` [0,50] stub latencies in ms, `INF_LOAD_CROP_ENCODING`
//! [source] the classifier's `crop_encoding`, `INF_LOAD_HEALTH_MS` [20] `/health` interval.
//! Backend settings can be changed with `NACHET__...` variables, which the child inherits.
//!
//! Without `--bench` (as `cargo test --all-targets` or nextest run it) it does nothing.

use std::io::Cursor;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use base64::Engine;
use bytes::Bytes;
use futures::future::join_all;
use image::imageops::{self, FilterType};
use image::{DynamicImage, ImageFormat, Rgba, RgbaImage};
use inference::{CheckedPicture, NormalizedBox, PictureLimits};
use pipeline::CropEncoding;
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};

const SEED_PHOTO: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../docs/examples/seed-photo-1310_1.png"
);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// What the reference system sent to its models for this picture (issue 9).
const REFERENCE_BYTES_TO_MODELS: f64 = 1.57e6;

struct Options {
    seconds: u64,
    clients: Vec<usize>,
    latencies: Vec<u64>,
    crop_encoding: CropEncoding,
    health_interval: Duration,
}

impl Options {
    fn from_env() -> Self {
        Options {
            seconds: env_or("INF_LOAD_SECONDS", 10).max(1),
            clients: list("INF_LOAD_CLIENTS", "1,8,64,256"),
            latencies: list("INF_LOAD_LATENCIES", "0,50"),
            crop_encoding: std::env::var("INF_LOAD_CROP_ENCODING")
                .ok()
                .map(|e| e.parse().expect("INF_LOAD_CROP_ENCODING"))
                .unwrap_or_default(),
            health_interval: Duration::from_millis(env_or("INF_LOAD_HEALTH_MS", 20).max(1)),
        }
    }
}

fn env_or<T: FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn list<T: FromStr>(name: &str, default: &str) -> Vec<T> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_owned())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return; // test listing (nextest): no tests here
    }
    if !args.iter().any(|a| a == "--bench") {
        eprintln!(
            "inf_load: a benchmark; run it with `cargo bench -p nachet-backend --bench inf_load`"
        );
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(Options::from_env()));
}

/// The picture: 10 copies of the seed photo on a white 1600 x 1200 sheet, as a PNG, and
/// the boxes the stub detector answers for it (the copies' places).
struct Sheet {
    png_bytes: usize,
    data_url: String,
    boxes: Vec<NormalizedBox>,
}

/// 10 copies of the photo scaled to 300 px wide, in 5 columns and 2 rows of 320 x 600 cells.
fn seed_sheet() -> Sheet {
    const COLUMNS: u32 = 5;
    const ROWS: u32 = 2;
    let photo = image::open(SEED_PHOTO).unwrap();
    let (width, height) = (1600, 1200);
    let (cell_w, cell_h) = (width / COLUMNS, height / ROWS);
    let tile_w = cell_w - 20;
    let tile_h = photo.height() * tile_w / photo.width();
    let tile = imageops::resize(&photo.to_rgba8(), tile_w, tile_h, FilterType::Triangle);
    let mut canvas = RgbaImage::from_pixel(width, height, Rgba([255, 255, 255, 255]));
    let mut boxes = Vec::new();
    for row in 0..ROWS {
        for column in 0..COLUMNS {
            let x = column * cell_w + (cell_w - tile_w) / 2;
            let y = row * cell_h + (cell_h - tile_h) / 2;
            imageops::overlay(&mut canvas, &tile, i64::from(x), i64::from(y));
            boxes.push(NormalizedBox {
                top_x: f64::from(x) / f64::from(width),
                top_y: f64::from(y) / f64::from(height),
                bottom_x: f64::from(x + tile_w) / f64::from(width),
                bottom_y: f64::from(y + tile_h) / f64::from(height),
            });
        }
    }
    let mut png = Cursor::new(Vec::new());
    DynamicImage::ImageRgba8(canvas)
        .write_to(&mut png, ImageFormat::Png)
        .unwrap();
    let png = png.into_inner();
    Sheet {
        png_bytes: png.len(),
        data_url: format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(&png)
        ),
        boxes,
    }
}

// --- stub models ---------------------------------------------------------------------------

/// Bytes the stubs received (request bodies).
#[derive(Default)]
struct Received(AtomicU64);

struct Stubs {
    url: String,
    received: Arc<Received>,
}

/// `POST /{latency ms}/detect` answers the sheet's boxes, `POST /{latency ms}/classify` a
/// top-5, each after the latency; no image work.
async fn start_stubs(boxes: &[NormalizedBox]) -> Stubs {
    let detector_answer = Bytes::from(
        json!({"boxes": boxes.iter().map(|b| json!({
            "box": {"topX": b.top_x, "topY": b.top_y, "bottomX": b.bottom_x, "bottomY": b.bottom_y},
            "label": "seed", "score": 0.9,
        })).collect::<Vec<_>>()})
        .to_string(),
    );
    let classifier_answer = Bytes::from(
        json!([
            {"label": "13 Ambrosia trifida", "score": 0.61},
            {"label": "14 Ambrosia psilostachya", "score": 0.2},
            {"label": "2 Brassica napus", "score": 0.1},
            {"label": "7 Cirsium arvense", "score": 0.05},
            {"label": "10 Bromus secalinus", "score": 0.04},
        ])
        .to_string(),
    );
    let received = Arc::new(Received::default());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let state = web::Data::new((detector_answer, classifier_answer, received.clone()));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(64 << 20))
            .route(
                "/{latency}/{model}",
                web::post().to(
                    |path: web::Path<(u64, String)>,
                     body: web::Bytes,
                     state: web::Data<(Bytes, Bytes, Arc<Received>)>| async move {
                        state.2.0.fetch_add(body.len() as u64, Ordering::Relaxed);
                        drop(body);
                        let (latency, model) = path.into_inner();
                        tokio::time::sleep(Duration::from_millis(latency)).await;
                        let answer = if model == "detect" {
                            state.0.clone()
                        } else {
                            state.1.clone()
                        };
                        HttpResponse::Ok()
                            .content_type("application/json")
                            .body(answer)
                    },
                ),
            )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    Stubs { url, received }
}

/// A catalogue with one pipeline per stub latency, named `stubs {latency} ms`.
fn catalogue(stubs: &Stubs, latencies: &[u64], crop_encoding: CropEncoding) -> Value {
    let model = |name: String, kind: &str, url: String| {
        let task = if kind == "classifier" {
            "classification"
        } else {
            "object-detection"
        };
        let mut model = json!({
            "model_name": name, "kind": kind, "task": task, "endpoint": url, "api_key": "k",
            "content_type": "application/json", "deployment_platform": "azureml-model-deployment",
            "endpoint_name": name, "version": "1", "description": "", "created_by": "inf_load",
            "creation_date": "2026-12-02", "job_name": "", "dataset_description": "", "accuracy": null,
        });
        if kind == "classifier" {
            model["crop_encoding"] = crop_encoding.as_str().into();
        }
        model
    };
    let mut models = Vec::new();
    let mut pipelines = Vec::new();
    for &latency in latencies {
        let (detector, classifier) = (
            format!("detector-{latency}"),
            format!("classifier-{latency}"),
        );
        models.push(model(
            detector.clone(),
            "seed_detector",
            format!("{}/{latency}/detect", stubs.url),
        ));
        models.push(model(
            classifier.clone(),
            "classifier",
            format!("{}/{latency}/classify", stubs.url),
        ));
        pipelines.push(json!({
            "pipeline_name": format!("stubs {latency} ms"), "models": [detector, classifier],
            "default": pipelines.is_empty(), "version": "1", "description": "", "created_by": "inf_load",
            "creation_date": "2026-12-02", "job_name": "", "dataset_description": "", "accuracy": null,
        }));
    }
    json!({"version": "0.0.1", "date": "2026-12-02", "models": models, "pipelines": pipelines})
}

// --- the backend ---------------------------------------------------------------------------

struct Backend {
    child: Child,
    url: String,
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The backend's binary on SQLite and local disk, its pipelines from `catalogue` (published
/// as a stored version).
async fn start_backend(dir: &std::path::Path, catalogue: &Value) -> Backend {
    // The catalogue published as a stored version, as a deployment's is; the development
    // identity (nachet-dev's settings).
    let (mut settings, _) = nachet_dev::default_settings();
    settings.data_dir = dir.to_owned();
    settings.blob = blob_store::BlobSettings::LocalDisk {
        root: dir.join("blobs"),
    };
    let document: pipeline::CatalogueDocument = serde_json::from_value(catalogue.clone()).unwrap();
    let catalogue = pipeline::validate_document(document, None).unwrap();
    nachet_dev::catalogue::publish_into(&mut settings, &catalogue)
        .await
        .unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_nachet-backend"))
        .envs(nachet_dev::development_env(&settings))
        .env("NACHET__SERIES__ML_APP__URL", "http://127.0.0.1:9")
        .env("NACHET__SERIES__ML_APP__CALLBACK_TOKEN", "unused")
        .env("NACHET__SERIES__ML_APP__MODEL_TYPES", "unused")
        .env("NACHET__SERVER__PORT", port.to_string())
        .env("NACHET__DATA_DIR", dir)
        .env(
            "NACHET__DATABASE__URL",
            format!("sqlite://{}?mode=rwc", dir.join("nachet.sqlite").display()),
        )
        .env("NACHET__BLOB__KIND", "local_disk")
        .env("NACHET__BLOB__ROOT", dir.join("blobs"))
        .env("NACHET__SERIES__WORKERS", "0")
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or("warn".into()),
        )
        .stdout(Stdio::null())
        .spawn()
        .expect("the backend's binary starts");
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let started = Instant::now();
    while http.get(format!("{url}/health")).send().await.is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the backend exited at start ({status}); its error is above");
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the backend did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Backend { child, url }
}

/// Resident memory of a process, from `/proc`.
fn resident_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// CPU time (user + system) a process has used, from `/proc` (in USER_HZ, 100 a second).
fn cpu_time(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are the 14th and 15th fields; `fields` starts at the 3rd.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

// --- the measurements ----------------------------------------------------------------------

/// Requests per second of the codec work alone, one thread per core, for `seconds`.
fn codec_limit(sheet: &Sheet, encoding: CropEncoding, seconds: u64) -> f64 {
    let limits = PictureLimits {
        max_pixels: 50_000_000,
    };
    let data_url = Bytes::from(sheet.data_url.clone());
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let done: u64 = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let (data_url, boxes) = (data_url.clone(), &sheet.boxes);
                scope.spawn(move || {
                    let mut done = 0u64;
                    while Instant::now() < deadline {
                        let picture = CheckedPicture::from_data_url(&data_url, &limits).unwrap();
                        let pixels = picture.decode(&limits).unwrap();
                        for bbox in boxes {
                            std::hint::black_box(pixels.crop_base64(bbox, encoding).unwrap());
                        }
                        done += 1;
                    }
                    done
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    done as f64 / started.elapsed().as_secs_f64()
}

struct Row {
    latency: u64,
    clients: usize,
    ok: usize,
    refused: usize,
    other_errors: usize,
    first_error: Option<String>,
    elapsed: Duration,
    latencies: Vec<Duration>,
    peak_rss: u64,
    bytes_to_models: u64,
    health: Vec<Duration>,
    health_errors: usize,
    /// CPU time of the backend, and of this process (clients, stubs, poller), in the row.
    backend_cpu: Duration,
    bench_cpu: Duration,
}

async fn run(options: Options) {
    let sheet = Arc::new(seed_sheet());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!();
    println!(
        "inf_load: {} build, {cores} CPUs, load average at start {}",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        load_average(),
    );
    println!(
        "picture: 1600x1200 PNG of 10 seeds, {} bytes ({} bytes as a data URL); classifier crop_encoding {}",
        sheet.png_bytes,
        sheet.data_url.len(),
        options.crop_encoding
    );

    let stubs = start_stubs(&sheet.boxes).await;
    let dir = tempfile::tempdir().unwrap();
    let backend = start_backend(
        dir.path(),
        &catalogue(&stubs, &options.latencies, options.crop_encoding),
    )
    .await;
    let pid = backend.child.id();
    let http = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .pool_max_idle_per_host(1024)
        .build()
        .unwrap();
    let user: Value = http
        .post(format!("{}/get-user-id", backend.url))
        .json(&json!({"email": ""}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let user = user["user_id"].as_str().unwrap().to_owned();
    let body = |latency: u64| {
        Bytes::from(
            json!({
                "model_name": format!("stubs {latency} ms"),
                "image": sheet.data_url,
                "imageDims": [1600, 1200],
                "folder_name": "load test",
                "container_name": user,
                "user_id": user,
            })
            .to_string(),
        )
    };
    // Warm up: connections, SQLite, the allocator.
    for &latency in &options.latencies {
        for _ in 0..3 {
            send_inf(&http, &backend.url, body(latency)).await.unwrap();
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = resident_bytes(pid);

    let limit = tokio::task::spawn_blocking({
        let (sheet, encoding, seconds) = (sheet.clone(), options.crop_encoding, options.seconds);
        move || codec_limit(&sheet, encoding, seconds)
    })
    .await
    .unwrap();
    println!(
        "codec-only limit: {limit:.1} req/s on {cores} threads ({:.1} ms of CPU a request); backend idle resident memory {:.0} MiB",
        cores as f64 * 1000.0 / limit,
        mib(idle_rss)
    );
    println!();
    println!(
        "{:>5} {:>5} {:>7} {:>7} {:>7} {:>8} {:>8} {:>6} | {:>8} {:>9} | {:>9} {:>5} | {:>9} | {:>7} {:>7}",
        "stub",
        "C",
        "ok",
        "503",
        "req/s",
        "p50 ms",
        "p99 ms",
        "limit",
        "peak MiB",
        "MiB/clnt",
        "to models",
        "x ref",
        "health99",
        "srv cpu",
        "gen cpu"
    );

    let mut rows = Vec::new();
    for &latency in &options.latencies {
        for &clients in &options.clients {
            let row = measure(
                &options,
                &http,
                &backend,
                &stubs,
                body(latency),
                latency,
                clients,
            )
            .await;
            print_row(&row, limit, idle_rss);
            rows.push(row);
            // Let the backend settle between rows.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    println!();
    println!(
        "stub: model latency (ms); C: clients; limit: req/s over the codec-only limit; \
         MiB/clnt: (peak - idle) resident memory / C; to models: bytes the models received \
         per request; x ref: that over the reference system's {:.2} MB; health99: /health p99 (ms); \
         srv cpu, gen cpu: CPU ms a request of the backend, and of this process (clients, stubs)",
        REFERENCE_BYTES_TO_MODELS / 1e6
    );
    for row in rows.iter().filter(|r| r.first_error.is_some()) {
        println!(
            "  stub {} ms, {} clients, first error: {}",
            row.latency,
            row.clients,
            row.first_error.as_deref().unwrap_or_default()
        );
    }
    drop(backend);
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    options: &Options,
    http: &reqwest::Client,
    backend: &Backend,
    stubs: &Stubs,
    body: Bytes,
    latency: u64,
    clients: usize,
) -> Row {
    let pid = backend.child.id();
    let deadline = Instant::now() + Duration::from_secs(options.seconds);
    let received_before = stubs.received.0.load(Ordering::Relaxed);
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = tokio::spawn({
        let peak = peak.clone();
        async move {
            while Instant::now() < deadline {
                peak.fetch_max(resident_bytes(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
    });
    let health = std::thread::spawn({
        let (url, interval) = (backend.url.clone(), options.health_interval);
        move || poll_health(&url, deadline, interval)
    });
    let started = Instant::now();
    let (backend_cpu, bench_cpu) = (cpu_time(&pid.to_string()), cpu_time("self"));
    let workers = (0..clients).map(|_| {
        let (http, url, body) = (http.clone(), backend.url.clone(), body.clone());
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            let (mut refused, mut errors, mut first_error) = (0, 0, None);
            while Instant::now() < deadline {
                match send_inf(&http, &url, body.clone()).await {
                    Ok(latency) => latencies.push(latency),
                    Err((503, _)) => {
                        refused += 1;
                        // As a client told to retry later would.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err((_, error)) => {
                        errors += 1;
                        first_error.get_or_insert(error);
                    }
                }
            }
            (latencies, refused, errors, first_error)
        })
    });
    let mut row = Row {
        latency,
        clients,
        ok: 0,
        refused: 0,
        other_errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
        peak_rss: 0,
        bytes_to_models: 0,
        health: Vec::new(),
        health_errors: 0,
        backend_cpu: Duration::ZERO,
        bench_cpu: Duration::ZERO,
    };
    for result in join_all(workers).await {
        let (latencies, refused, errors, first_error) = result.unwrap();
        row.latencies.extend(latencies);
        row.refused += refused;
        row.other_errors += errors;
        if row.first_error.is_none() {
            row.first_error = first_error;
        }
    }
    row.elapsed = started.elapsed();
    row.backend_cpu = cpu_time(&pid.to_string()) - backend_cpu;
    row.bench_cpu = cpu_time("self") - bench_cpu;
    row.ok = row.latencies.len();
    row.latencies.sort();
    sampler.await.unwrap();
    row.peak_rss = peak.load(Ordering::Relaxed);
    row.bytes_to_models = stubs.received.0.load(Ordering::Relaxed) - received_before;
    let (health, health_errors) = health.join().unwrap();
    row.health = health;
    row.health_errors = health_errors;
    row
}

fn print_row(row: &Row, limit: f64, idle_rss: u64) {
    let rate = row.ok as f64 / row.elapsed.as_secs_f64();
    let pct = |p: f64, sorted: &[Duration]| {
        if sorted.is_empty() {
            f64::NAN
        } else {
            ms(percentile(sorted, p))
        }
    };
    let per_request = if row.ok == 0 {
        f64::NAN
    } else {
        row.bytes_to_models as f64 / row.ok as f64
    };
    println!(
        "{:>5} {:>5} {:>7} {:>7} {:>7.1} {:>8.1} {:>8.1} {:>5.0}% | {:>8.0} {:>9.2} | {:>9.0} {:>5.2} | {:>9.2} | {:>7.1} {:>7.1}{}",
        row.latency,
        row.clients,
        row.ok,
        row.refused,
        rate,
        pct(50.0, &row.latencies),
        pct(99.0, &row.latencies),
        100.0 * rate / limit,
        mib(row.peak_rss),
        mib(row.peak_rss.saturating_sub(idle_rss)) / row.clients as f64,
        per_request,
        per_request / REFERENCE_BYTES_TO_MODELS,
        pct(99.0, &row.health),
        ms(row.backend_cpu) / row.ok.max(1) as f64,
        ms(row.bench_cpu) / row.ok.max(1) as f64,
        if row.other_errors + row.health_errors > 0 {
            format!(
                "  ({} errors, {} /health errors)",
                row.other_errors, row.health_errors
            )
        } else {
            String::new()
        }
    );
}

/// One `/inf` request, its answer read to the end: its latency, or its status and error.
async fn send_inf(
    http: &reqwest::Client,
    url: &str,
    body: Bytes,
) -> Result<Duration, (u16, String)> {
    let started = Instant::now();
    let response = http
        .post(format!("{url}/inf"))
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| (0, e.to_string()))?;
    let status = response.status();
    let answer = response.bytes().await.map_err(|e| (0, e.to_string()))?;
    if status != reqwest::StatusCode::OK {
        return Err((
            status.as_u16(),
            format!("{status}: {}", String::from_utf8_lossy(&answer)),
        ));
    }
    Ok(started.elapsed())
}

/// `GET /health` every `interval` until `deadline`, from a thread of its own over one
/// keep-alive connection, so that the load generator's tasks never delay a poll: sorted
/// latencies, and errors.
fn poll_health(url: &str, deadline: Instant, interval: Duration) -> (Vec<Duration>, usize) {
    use std::io::{BufRead, BufReader, Read, Write};
    let address = url.trim_start_matches("http://");
    let (mut latencies, mut errors) = (Vec::new(), 0);
    let mut connection: Option<BufReader<std::net::TcpStream>> = None;
    while Instant::now() < deadline {
        let started = Instant::now();
        let answer = (|| -> std::io::Result<()> {
            if connection.is_none() {
                let stream = std::net::TcpStream::connect(address)?;
                stream.set_nodelay(true)?;
                connection = Some(BufReader::new(stream));
            }
            let reader = connection.as_mut().expect("connected above");
            reader
                .get_mut()
                .write_all(b"GET /health HTTP/1.1\r\nHost: bench\r\n\r\n")?;
            let mut length = 0;
            let mut line = String::new();
            reader.read_line(&mut line)?;
            if !line.starts_with("HTTP/1.1 200") {
                return Err(std::io::Error::other(line));
            }
            loop {
                line.clear();
                reader.read_line(&mut line)?;
                if line == "\r\n" || line.is_empty() {
                    break;
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            reader.read_exact(&mut vec![0; length])
        })();
        match answer {
            Ok(()) => latencies.push(started.elapsed()),
            Err(_) => {
                errors += 1;
                connection = None;
            }
        }
        std::thread::sleep(interval.saturating_sub(started.elapsed()));
    }
    latencies.sort();
    (latencies, errors)
}

/// Nearest-rank percentile of sorted, non-empty latencies.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}
