//! `dicom_retrieval`: a CT-like series (default 1,000 instances of 512 x 512 x 16 bits,
//! about 0.5 MB each) is uploaded to Orthanc, then retrieved two ways, each in a child
//! process of its own so that its peak memory (VmHWM) is its own:
//!
//! - `baseline`: the runtime and HTTP client only;
//! - `search`: the series search alone (`DicomWebSource::find_series`, one QIDO-RS
//!   request for the series' number of instances; part of `zip`, before its download);
//! - `plain`: one streamed download of the series' WADO-RS URL to a file (reqwest), the
//!   floor for any retrieval;
//! - `zip`: the series search, then `DicomWebSource::retrieve_series` straight into a
//!   `ZipArchiver` archive (multipart parsing, each part named from its own header and
//!   written into its entry as it arrives, the whole checked against the search's count),
//!   as the backend does.
//!
//! ```sh
//! eval "$(deploy/services.sh env)"   # or any Orthanc with DICOMweb: TEST_ORTHANC_URL
//! cargo bench -p dicomweb --bench dicom_retrieval
//! BENCH_INSTANCES=200 BENCH_SIZE=256 BENCH_ROUNDS=3 cargo bench -p dicomweb --bench dicom_retrieval
//! ```
//!
//! Without `--bench` (as `cargo test --all-targets` or nextest run it) it does nothing.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use dicom_files::synthetic::SyntheticSeries;
use dicom_series::ports::{
    DicomCredentials, DicomServer, DicomSource, SeriesArchive, SeriesArchiver, SeriesKey,
};
use dicomweb::{DicomWebOptions, DicomWebSource, WADO_ACCEPT};
use futures::StreamExt;
use series_zip::ZipArchiver;

const CHILD: &str = "DICOM_RETRIEVAL_CHILD";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Ok(mode) = std::env::var(CHILD) {
        child(&mode);
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return; // test listing (nextest): no tests here
    }
    if !args.iter().any(|a| a == "--bench") {
        eprintln!(
            "dicom_retrieval: a benchmark; run it with `cargo bench -p dicomweb --bench dicom_retrieval`"
        );
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(parent());
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn parent() {
    let orthanc = test_support::orthanc_url();
    let count = env_number("BENCH_INSTANCES", 1000);
    let size = env_number("BENCH_SIZE", 512) as u16;
    let series = SyntheticSeries::new("CT", count).with_size(size, size);
    let started = Instant::now();
    let client = reqwest::Client::new();
    let uploads: Vec<_> = futures::stream::iter(0..count)
        .map(|index| {
            let client = client.clone();
            let url = format!("{orthanc}/instances");
            let bytes = series.instance_bytes(index).unwrap();
            async move {
                client
                    .post(url)
                    .body(bytes)
                    .send()
                    .await
                    .and_then(|r| r.error_for_status())
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    for upload in uploads {
        upload.unwrap_or_else(|e| panic!("upload to {orthanc} failed: {e}"));
    }
    let instance_bytes = series.instance_bytes(0).unwrap().len();
    println!(
        "uploaded {count} instances of {size}x{size}x16 bit ({instance_bytes} bytes each, {:.0} MB) to {orthanc} in {:.1} s",
        (count * instance_bytes) as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );

    let work = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    println!("mode   seconds   peak RSS (VmHWM)   bytes");
    let rounds = env_number("BENCH_ROUNDS", 2);
    let modes = ["baseline", "search"]
        .into_iter()
        .chain((0..rounds).flat_map(|_| ["plain", "zip"]));
    for mode in modes {
        let dir = work.path().join(format!("{mode}-{}", uuid_like()));
        std::fs::create_dir_all(&dir).unwrap();
        let output = Command::new(&exe)
            .env(CHILD, mode)
            .env("BENCH_ROOT", format!("{orthanc}/dicom-web"))
            .env("BENCH_STUDY", &series.study_instance_uid)
            .env("BENCH_SERIES", &series.series_instance_uid)
            .env("BENCH_DIR", &dir)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{mode} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        print!("{}", String::from_utf8_lossy(&output.stdout));
        std::io::stdout().flush().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    // Leave Orthanc as it was.
    let found: serde_json::Value = client
        .post(format!("{orthanc}/tools/lookup"))
        .body(series.series_instance_uid.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    if let Some(id) = found[0]["ID"].as_str() {
        let _ = client.delete(format!("{orthanc}/series/{id}")).send().await;
    }
}

fn uuid_like() -> String {
    format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// Peak resident memory of this process, in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn child(mode: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let root = std::env::var("BENCH_ROOT").unwrap();
    let key = SeriesKey {
        study_instance_uid: std::env::var("BENCH_STUDY").unwrap(),
        series_instance_uid: std::env::var("BENCH_SERIES").unwrap(),
    };
    let dir = PathBuf::from(std::env::var("BENCH_DIR").unwrap());
    let started = Instant::now();
    let (bytes, detail) = runtime.block_on(async {
        match mode {
            "baseline" => (0, "runtime and HTTP client only".to_string()),
            "search" => series_search(&root, &key).await,
            "plain" => plain_download(&root, &key, &dir).await,
            "zip" => retrieve_and_zip(&root, &key, &dir).await,
            other => panic!("unknown mode {other}"),
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{mode:<8} {seconds:>6.2}   {:>8.1} MiB        {bytes}  ({detail})",
        peak_rss_kib() as f64 / 1024.0
    );
}

async fn series_search(root: &str, key: &SeriesKey) -> (u64, String) {
    let server = DicomServer {
        root: root.to_string(),
        credentials: DicomCredentials::None,
    };
    let found = DicomWebSource::new(DicomWebOptions::default())
        .unwrap()
        .find_series(&server, key)
        .await
        .unwrap()
        .expect("the series search finds the series");
    (
        found.number_of_instances.map_or(0, u64::from),
        "series search alone (instances counted)".to_string(),
    )
}

async fn plain_download(root: &str, key: &SeriesKey, dir: &Path) -> (u64, String) {
    let url = format!(
        "{root}/studies/{}/series/{}",
        key.study_instance_uid, key.series_instance_uid
    );
    let response = reqwest::Client::new()
        .get(url)
        .header("accept", WADO_ACCEPT)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let mut file = std::io::BufWriter::with_capacity(
        256 * 1024,
        std::fs::File::create(dir.join("series.multipart")).unwrap(),
    );
    let mut body = response.bytes_stream();
    let mut bytes = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.unwrap();
        bytes += chunk.len() as u64;
        file.write_all(&chunk).unwrap();
    }
    file.flush().unwrap();
    (bytes, "WADO-RS body streamed to one file".to_string())
}

async fn retrieve_and_zip(root: &str, key: &SeriesKey, dir: &Path) -> (u64, String) {
    let server = DicomServer {
        root: root.to_string(),
        credentials: DicomCredentials::None,
    };
    let started = Instant::now();
    let source = DicomWebSource::new(DicomWebOptions::default()).unwrap();
    let found = source
        .find_series(&server, key)
        .await
        .unwrap()
        .expect("the series search finds the series");
    let search = started.elapsed().as_secs_f64();
    let writer = ZipArchiver::new().create(key, dir).await.unwrap();
    let expected = found.number_of_instances.map(u64::from);
    let archive = source
        .retrieve_series(&server, key, SeriesArchive::new(expected, writer))
        .await
        .unwrap();
    let retrieved = started.elapsed().as_secs_f64() - search;
    (
        archive.size,
        format!(
            "{} instances; series search {search:.2} s, retrieval into the ZIP {retrieved:.2} s",
            archive.entries.len()
        ),
    )
}
