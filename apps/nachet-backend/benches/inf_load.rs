//! `inf_load`: a load tool against a running backend, not a timed test.
//!
//! It starts the backend in this process on the embedded default (SQLite and local disk in
//! a temporary folder, the reference model servers and the server on free ports), registers
//! a user, then measures:
//!
//! 1. sequential `/inf` latency of the seed photo (638 x 559 PNG, one seed);
//! 2. the same for a 1600 x 1200 PNG of 10 scaled-down copies of the photo on white;
//! 3. `/inf` throughput with that picture under C concurrent clients (C = 4, then 8), while
//!    another task polls `GET /health` every 50 ms: `/health` must stay instant under load.
//!
//! ```sh
//! cargo bench -p nachet-backend --bench inf_load
//! INF_LOAD_SECONDS=30 INF_LOAD_CONCURRENCY=2,4,8,16 cargo bench -p nachet-backend --bench inf_load
//! ```
//!
//! Environment variables (defaults in brackets): `INF_LOAD_SECONDS` [15] load per
//! concurrency level, `INF_LOAD_CONCURRENCY` [4,8], `INF_LOAD_SEQUENTIAL` [30] measured
//! sequential requests, `INF_LOAD_WARMUP` [3] unmeasured ones before them,
//! `INF_LOAD_HEALTH_MS` [50] interval of the `/health` poll.
//!
//! Without `--bench` (as `cargo test --all-targets` or nextest run it) it does nothing.

use std::io::Cursor;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use blob_store::BlobSettings;
use futures::future::join_all;
use image::imageops::{self, FilterType};
use image::{DynamicImage, ImageFormat, Rgba, RgbaImage};
use nachet_backend::Settings;
use reqwest::header::CONTENT_TYPE;
use secrecy::SecretString;
use serde_json::{Value, json};

const SEED_PHOTO: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../docs/examples/seed-photo-1310_1.png"
);
const PIPELINE: &str = "Reference detector + classifier";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

struct Options {
    seconds: u64,
    concurrency: Vec<usize>,
    sequential: usize,
    warmup: usize,
    health_interval: Duration,
}

impl Options {
    fn from_env() -> Self {
        let concurrency = std::env::var("INF_LOAD_CONCURRENCY")
            .unwrap_or_else(|_| "4,8".to_owned())
            .split(',')
            .filter_map(|c| c.trim().parse().ok())
            .filter(|&c| c > 0)
            .collect();
        Options {
            seconds: env_or("INF_LOAD_SECONDS", 15),
            concurrency,
            sequential: env_or("INF_LOAD_SEQUENTIAL", 30).max(1),
            warmup: env_or("INF_LOAD_WARMUP", 3),
            health_interval: Duration::from_millis(env_or("INF_LOAD_HEALTH_MS", 50).max(1)),
        }
    }
}

fn env_or<T: FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// A picture ready to send: its `/inf` body, serialized once.
struct Picture {
    name: &'static str,
    png_bytes: usize,
    body: Arc<Vec<u8>>,
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

async fn run(options: Options) {
    // The backend, as the tests' `common::start(Db::Sqlite, Blobs::LocalDisk)` starts it.
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::defaults();
    settings.server.port = 0;
    settings.reference_models.port = None;
    settings.data_dir = dir.path().to_owned();
    settings.database.url = SecretString::from(format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("nachet.sqlite").display()
    ));
    settings.blob = BlobSettings::LocalDisk {
        root: dir.path().join("blobs"),
    };
    let started = Instant::now();
    let backend = nachet_backend::start(settings).await.unwrap();
    let startup = started.elapsed();
    let url = backend.url.clone();

    let http = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .unwrap();
    // Its own client, so that its requests never wait for a pooled /inf connection.
    let health_http = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .unwrap();

    let answer: Value = http
        .post(format!("{url}/get-user-id"))
        .json(&json!({ "email": "" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let user = answer["user_id"].as_str().unwrap().to_owned();

    let photo = image::open(SEED_PHOTO).unwrap();
    let pictures = [
        picture("photo 638x559, 1 seed", &photo, &user),
        picture("grid 1600x1200, 10 seeds", &seed_grid(&photo), &user),
    ];

    println!();
    println!(
        "inf_load: profile {} (cfg!(debug_assertions) = {}), {} CPUs, load average at start {}",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        cfg!(debug_assertions),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average(),
    );
    println!(
        "backend: embedded default (SQLite + local disk in a temp dir, reference models in-process), started in {} ms at {url}",
        startup.as_millis()
    );

    // Idle /health, for comparison with /health under load.
    let idle = poll_health(
        health_http.clone(),
        url.clone(),
        Instant::now() + Duration::from_secs(1),
        options.health_interval,
    )
    .await;

    println!();
    println!(
        "sequential /inf: {} requests after {} warm-ups (ms)",
        options.sequential, options.warmup
    );
    println!(
        "{:<26} {:>9} {:>6} {:>8} {:>8} {:>8} {:>8}",
        "picture", "PNG bytes", "boxes", "min", "p50", "p90", "max"
    );
    for picture in &pictures {
        // The first warm-up also counts the boxes found.
        let boxes = count_boxes(&http, &url, &picture.body).await;
        for _ in 1..options.warmup {
            send_inf(&http, &url, &picture.body).await.unwrap();
        }
        let mut latencies = Vec::with_capacity(options.sequential);
        for _ in 0..options.sequential {
            latencies.push(send_inf(&http, &url, &picture.body).await.unwrap());
        }
        latencies.sort();
        println!(
            "{:<26} {:>9} {:>6} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
            picture.name,
            picture.png_bytes,
            boxes,
            ms(latencies[0]),
            ms(percentile(&latencies, 50.0)),
            ms(percentile(&latencies, 90.0)),
            ms(latencies[latencies.len() - 1]),
        );
    }

    let grid = &pictures[1];
    println!();
    println!(
        "concurrent /inf ({}), {} s per level; GET /health polled every {} ms meanwhile (ms)",
        grid.name,
        options.seconds,
        options.health_interval.as_millis()
    );
    println!(
        "{:>4} {:>8} {:>7} {:>8} {:>8} {:>6} | {:>7} {:>8} {:>8} {:>8} {:>6}",
        "C", "requests", "req/s", "p50", "p99", "errors", "health", "p50", "p99", "max", "errors"
    );
    println!(
        "{:>4} {:>8} {:>7} {:>8} {:>8} {:>6} | {}",
        "idle",
        "",
        "",
        "",
        "",
        "",
        health_columns(&idle)
    );
    for &concurrency in &options.concurrency {
        let deadline = Instant::now() + Duration::from_secs(options.seconds);
        let health = tokio::spawn(poll_health(
            health_http.clone(),
            url.clone(),
            deadline,
            options.health_interval,
        ));
        let load = load(&http, &url, &grid.body, concurrency, deadline).await;
        let health = health.await.unwrap();
        let mut latencies = load.latencies;
        latencies.sort();
        let (p50, p99) = if latencies.is_empty() {
            (f64::NAN, f64::NAN)
        } else {
            (
                ms(percentile(&latencies, 50.0)),
                ms(percentile(&latencies, 99.0)),
            )
        };
        println!(
            "{:>4} {:>8} {:>7.2} {:>8.1} {:>8.1} {:>6} | {}",
            concurrency,
            latencies.len(),
            latencies.len() as f64 / load.elapsed.as_secs_f64(),
            p50,
            p99,
            load.errors,
            health_columns(&health),
        );
        if let Some(error) = load.first_error {
            println!("    first /inf error: {error}");
        }
        if let Some(error) = &health.first_error {
            println!("    first /health error: {error}");
        }
    }
    println!();

    backend.stop().await;
    drop(dir);
}

/// `/inf` body of a picture for the default pipeline, as a PNG data URL.
fn picture(name: &'static str, image: &DynamicImage, user: &str) -> Picture {
    let mut png = Cursor::new(Vec::new());
    image.write_to(&mut png, ImageFormat::Png).unwrap();
    let png = png.into_inner();
    let data_url = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&png)
    );
    let body = json!({
        "model_name": PIPELINE,
        "image": data_url,
        "imageDims": [image.width(), image.height()],
        "folder_name": "load test",
        "container_name": user,
        "userId": user,
    });
    Picture {
        name,
        png_bytes: png.len(),
        body: Arc::new(serde_json::to_vec(&body).unwrap()),
    }
}

/// 10 copies of the photo scaled to 300 px wide, in 5 columns and 2 rows of 320 x 600 cells
/// on a white 1600 x 1200 canvas: 20 px apart at least, never overlapping.
fn seed_grid(photo: &DynamicImage) -> DynamicImage {
    const COLUMNS: u32 = 5;
    const ROWS: u32 = 2;
    let (width, height) = (1600, 1200);
    let (cell_w, cell_h) = (width / COLUMNS, height / ROWS);
    let tile_w = cell_w - 20;
    let tile_h = photo.height() * tile_w / photo.width();
    let tile = imageops::resize(&photo.to_rgba8(), tile_w, tile_h, FilterType::Triangle);
    let mut canvas = RgbaImage::from_pixel(width, height, Rgba([255, 255, 255, 255]));
    for row in 0..ROWS {
        for column in 0..COLUMNS {
            let x = column * cell_w + (cell_w - tile_w) / 2;
            let y = row * cell_h + (cell_h - tile_h) / 2;
            imageops::overlay(&mut canvas, &tile, i64::from(x), i64::from(y));
        }
    }
    DynamicImage::ImageRgba8(canvas)
}

/// One `/inf` request, its answer read to the end: its latency, or what went wrong.
async fn send_inf(http: &reqwest::Client, url: &str, body: &[u8]) -> Result<Duration, String> {
    let started = Instant::now();
    let response = http
        .post(format!("{url}/inf"))
        .header(CONTENT_TYPE, "application/json")
        .body(body.to_vec())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let answer = response.bytes().await.map_err(|e| e.to_string())?;
    if status != reqwest::StatusCode::OK {
        return Err(format!("{status}: {}", String::from_utf8_lossy(&answer)));
    }
    Ok(started.elapsed())
}

/// The boxes `/inf` finds in a picture (the first warm-up request).
async fn count_boxes(http: &reqwest::Client, url: &str, body: &[u8]) -> u64 {
    let response = http
        .post(format!("{url}/inf"))
        .header(CONTENT_TYPE, "application/json")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let answer: Value = response.json().await.unwrap();
    answer["totalBoxes"].as_u64().unwrap()
}

struct Load {
    /// Latencies of the successful requests.
    latencies: Vec<Duration>,
    errors: usize,
    first_error: Option<String>,
    /// From the start to the end of the last request.
    elapsed: Duration,
}

/// `concurrency` clients, each sending `/inf` requests one after another until `deadline`.
async fn load(
    http: &reqwest::Client,
    url: &str,
    body: &Arc<Vec<u8>>,
    concurrency: usize,
    deadline: Instant,
) -> Load {
    let started = Instant::now();
    let clients = (0..concurrency).map(|_| {
        let (http, url, body) = (http.clone(), url.to_owned(), body.clone());
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = Vec::new();
            while Instant::now() < deadline {
                match send_inf(&http, &url, &body).await {
                    Ok(latency) => latencies.push(latency),
                    Err(error) => errors.push(error),
                }
            }
            (latencies, errors)
        })
    });
    let mut total = Load {
        latencies: Vec::new(),
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
    };
    for result in join_all(clients).await {
        let (latencies, errors) = result.unwrap();
        total.latencies.extend(latencies);
        total.errors += errors.len();
        if total.first_error.is_none() {
            total.first_error = errors.into_iter().next();
        }
    }
    total.elapsed = started.elapsed();
    total
}

struct Health {
    latencies: Vec<Duration>,
    errors: usize,
    first_error: Option<String>,
}

/// `GET /health` every `interval` until `deadline` (a late answer delays the next poll).
async fn poll_health(
    http: reqwest::Client,
    url: String,
    deadline: Instant,
    interval: Duration,
) -> Health {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut health = Health {
        latencies: Vec::new(),
        errors: 0,
        first_error: None,
    };
    loop {
        ticks.tick().await;
        if Instant::now() >= deadline {
            break;
        }
        let started = Instant::now();
        let result = match http.get(format!("{url}/health")).send().await {
            Ok(response) if response.status() == reqwest::StatusCode::OK => response
                .bytes()
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Ok(response) => Err(format!("status {}", response.status())),
            Err(error) => Err(error.to_string()),
        };
        match result {
            Ok(()) => health.latencies.push(started.elapsed()),
            Err(error) => {
                health.errors += 1;
                health.first_error.get_or_insert(error);
            }
        }
    }
    health.latencies.sort();
    health
}

/// The `/health` columns of a row: polls, p50, p99, max, errors.
fn health_columns(health: &Health) -> String {
    let latencies = &health.latencies;
    if latencies.is_empty() {
        return format!(
            "{:>7} {:>8} {:>8} {:>8} {:>6}",
            0, "-", "-", "-", health.errors
        );
    }
    format!(
        "{:>7} {:>8.2} {:>8.2} {:>8.2} {:>6}",
        latencies.len(),
        ms(percentile(latencies, 50.0)),
        ms(percentile(latencies, 99.0)),
        ms(latencies[latencies.len() - 1]),
        health.errors,
    )
}

/// Nearest-rank percentile of sorted, non-empty latencies.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}
