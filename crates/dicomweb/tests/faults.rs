//! Faults of a DICOMweb server, played by a tiny HTTP server of the test's own on
//! loopback: broken connections, truncated or malformed bodies, error statuses, stalls.
//! Every error must leave the target folder empty.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dicom_files::synthetic::SyntheticSeries;
use dicom_series::ports::{
    Archive, DicomCredentials, DicomServer, DicomSource, FetchError, SeriesArchive, SeriesArchiver,
    SeriesKey,
};
use dicomweb::{DicomWebOptions, DicomWebSource};
use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const BOUNDARY: &str = "test-boundary-42";

/// What the server does with one request.
struct Reply {
    /// Status line and headers, without the blank line.
    head: String,
    body: Vec<u8>,
    /// Keep the connection open this long after writing, then close.
    stall: Option<Duration>,
}

/// A request as seen by the server.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    headers: Vec<(String, String)>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Starts a server answering each request with `reply`; returns its DICOMweb root and the
/// requests it saw.
async fn serve(
    reply: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let reply = Arc::new(reply);
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let reply = reply.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&request).into_owned();
                let mut lines = text.split("\r\n");
                let path = lines
                    .next()
                    .and_then(|l| l.split(' ').nth(1))
                    .unwrap_or("")
                    .to_string();
                let headers = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
                    .collect();
                let request = Seen { path, headers };
                log.lock().unwrap().push(request.clone());
                let answer = reply(&request);
                let mut out = answer.head.into_bytes();
                out.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
                out.extend_from_slice(&answer.body);
                let _ = socket.write_all(&out).await;
                let _ = socket.flush().await;
                if let Some(stall) = answer.stall {
                    tokio::time::sleep(stall).await;
                }
                let _ = socket.shutdown().await;
            });
        }
    });
    (format!("http://{addr}/dicom-web"), seen)
}

fn series() -> SyntheticSeries {
    SyntheticSeries::new("CT", 3).with_size(32, 32)
}

fn key(series: &SyntheticSeries) -> SeriesKey {
    SeriesKey {
        study_instance_uid: series.study_instance_uid.clone(),
        series_instance_uid: series.series_instance_uid.clone(),
    }
}

/// A listing request: the series' metadata, or (on servers without it) a QIDO-RS search.
fn is_listing(path: &str) -> bool {
    path.ends_with("/metadata") || path.contains("/instances?")
}

/// The answer listing the first `count` instances (DICOM JSON: the metadata and the QIDO-RS
/// search give the same attributes the same way).
fn listing(series: &SyntheticSeries, count: usize) -> Reply {
    let items: Vec<_> = (0..count)
        .map(|i| {
            serde_json::json!({
                "00080018": {"vr": "UI", "Value": [series.sop_instance_uid(i)]},
                "00200013": {"vr": "IS", "Value": [i + 1]},
                "00080060": {"vr": "CS", "Value": ["CT"]},
            })
        })
        .collect();
    let body = serde_json::to_vec(&items).unwrap();
    Reply {
        head: format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/dicom+json\r\nContent-Length: {}",
            body.len()
        ),
        body,
        stall: None,
    }
}

/// A multipart body of the given part contents, with or without the closing delimiter.
fn multipart(parts: &[Vec<u8>], close: bool) -> Vec<u8> {
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Type: application/dicom\r\nContent-Length: {}\r\n\r\n",
                part.len()
            )
            .as_bytes(),
        );
        body.extend_from_slice(part);
        body.extend_from_slice(b"\r\n");
    }
    if close {
        body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    }
    body
}

fn wado(body: Vec<u8>, announced_length: usize) -> Reply {
    Reply {
        head: format!(
            "HTTP/1.1 200 OK\r\nContent-Type: multipart/related; type=\"application/dicom\"; boundary={BOUNDARY}\r\nContent-Length: {announced_length}"
        ),
        body,
        stall: None,
    }
}

fn status(line: &str, text: &str) -> Reply {
    Reply {
        head: format!(
            "HTTP/1.1 {line}\r\nContent-Type: text/plain\r\nContent-Length: {}",
            text.len()
        ),
        body: text.as_bytes().to_vec(),
        stall: None,
    }
}

fn instances(series: &SyntheticSeries) -> Vec<Vec<u8>> {
    (0..series.len())
        .map(|i| series.instance_bytes(i).unwrap())
        .collect()
}

fn server(root: &str) -> DicomServer {
    DicomServer {
        root: root.to_string(),
        credentials: DicomCredentials::None,
    }
}

fn source() -> DicomWebSource {
    DicomWebSource::new(DicomWebOptions {
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_millis(500),
        search_timeout: Duration::from_secs(5),
    })
    .unwrap()
}

fn assert_empty(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
}

/// Retrieves the series, as listed, into a ZIP in `dir`.
async fn retrieve_into(
    root: &str,
    series: &SyntheticSeries,
    dir: &Path,
) -> Result<Archive, FetchError> {
    let writer = series_zip::ZipArchiver::new()
        .create(&key(series), dir)
        .await
        .unwrap();
    source()
        .retrieve_series(
            &server(root),
            &key(series),
            SeriesArchive::new(&series.listing(), writer),
        )
        .await
}

/// Every entry of the archive: (name, bytes).
fn entries(archive: &Archive) -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&archive.path).unwrap()).unwrap();
    (0..zip.len())
        .map(|i| {
            let mut entry = zip.by_index(i).unwrap();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            (entry.name().unwrap().to_string(), bytes)
        })
        .collect()
}

async fn retrieve_with(
    reply: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    series: &SyntheticSeries,
) -> (Result<Archive, FetchError>, tempfile::TempDir) {
    let (root, _) = serve(reply).await;
    let dir = tempfile::tempdir().unwrap();
    let result = retrieve_into(&root, series, dir.path()).await;
    (result, dir)
}

#[tokio::test]
async fn a_well_formed_answer_is_retrieved() {
    let s = series();
    let parts = instances(&s);
    let body = multipart(&parts, true);
    let len = body.len();
    let listed = s.clone();
    let (result, dir) = retrieve_with(
        move |req| {
            if is_listing(&req.path) {
                listing(&listed, 3)
            } else {
                wado(body.clone(), len)
            }
        },
        &s,
    )
    .await;
    let archive = result.unwrap();
    assert_eq!(archive.path.parent(), Some(dir.path()));
    let entries = entries(&archive);
    assert_eq!(entries.len(), 3);
    for (i, part) in parts.iter().enumerate() {
        assert_eq!(entries[i].0, format!("CT_{}.dcm", i + 1));
        assert_eq!(&entries[i].1, part);
    }
}

#[tokio::test]
async fn a_connection_closed_mid_body_is_an_error_and_leaves_no_file() {
    let s = series();
    let body = multipart(&instances(&s), true);
    // Announce the whole body, send the first part and half of the second, then close.
    let cut = body.len() / 2;
    let len = body.len();
    let listed = s.clone();
    let (result, dir) = retrieve_with(
        move |req| {
            if is_listing(&req.path) {
                listing(&listed, 3)
            } else {
                wado(body[..cut].to_vec(), len)
            }
        },
        &s,
    )
    .await;
    match result {
        Err(FetchError::Transient(message)) => {
            assert!(message.contains("failed in transit"), "{message}")
        }
        other => panic!("expected a transient error, got {other:?}"),
    }
    assert_empty(dir.path());
}

#[tokio::test]
async fn a_complete_answer_without_closing_delimiter_is_permanent() {
    let s = series();
    let body = multipart(&instances(&s), false);
    let len = body.len();
    let listed = s.clone();
    let (result, dir) = retrieve_with(
        move |req| {
            if is_listing(&req.path) {
                listing(&listed, 3)
            } else {
                wado(body.clone(), len)
            }
        },
        &s,
    )
    .await;
    match result {
        Err(FetchError::Permanent(message)) => {
            assert!(message.contains("truncated"), "{message}")
        }
        other => panic!("expected a permanent error, got {other:?}"),
    }
    assert_empty(dir.path());
}

#[tokio::test]
async fn a_part_that_is_not_dicom_is_permanent() {
    let s = series();
    let mut parts = instances(&s);
    parts[1] = b"<html><body>Internal proxy error</body></html>".repeat(5);
    let body = multipart(&parts, true);
    let len = body.len();
    let listed = s.clone();
    let (result, dir) = retrieve_with(
        move |req| {
            if is_listing(&req.path) {
                listing(&listed, 3)
            } else {
                wado(body.clone(), len)
            }
        },
        &s,
    )
    .await;
    match result {
        Err(FetchError::Permanent(message)) => {
            assert!(message.contains("part 2"), "{message}");
            assert!(message.contains("not a DICOM Part-10 file"), "{message}");
        }
        other => panic!("expected a permanent error, got {other:?}"),
    }
    assert_empty(dir.path());
}

#[tokio::test]
async fn fewer_instances_than_listed_is_permanent() {
    let s = series();
    let body = multipart(&instances(&s)[..2], true);
    let len = body.len();
    let listed = s.clone();
    let (result, dir) = retrieve_with(
        move |req| {
            if is_listing(&req.path) {
                listing(&listed, 3)
            } else {
                wado(body.clone(), len)
            }
        },
        &s,
    )
    .await;
    match result {
        Err(FetchError::Permanent(message)) => {
            assert!(message.contains("listed 3 instances"), "{message}");
            assert!(message.contains("sent 2"), "{message}");
        }
        other => panic!("expected a permanent error, got {other:?}"),
    }
    assert_empty(dir.path());
}

#[tokio::test]
async fn error_statuses_are_classified() {
    let s = series();
    let cases: [(&str, bool, &str); 5] = [
        ("404 Not Found", false, "the series does not exist there"),
        ("401 Unauthorized", false, "credentials"),
        ("403 Forbidden", false, "credentials"),
        ("503 Service Unavailable", true, "503"),
        ("500 Internal Server Error", true, "500"),
    ];
    for (line, transient, expected) in cases {
        let listed = s.clone();
        let line_owned = line.to_string();
        let (result, dir) = retrieve_with(
            move |req| {
                if is_listing(&req.path) {
                    listing(&listed, 3)
                } else {
                    status(&line_owned, "no such series here")
                }
            },
            &s,
        )
        .await;
        let message = match (result, transient) {
            (Err(FetchError::Transient(m)), true) | (Err(FetchError::Permanent(m)), false) => m,
            (other, _) => panic!("{line}: unexpected {other:?}"),
        };
        assert!(message.contains(expected), "{line}: {message}");
        assert!(
            message.contains(&s.series_instance_uid),
            "{line}: {message}"
        );
        assert!(message.contains("no such series here"), "{line}: {message}");
        assert_empty(dir.path());
    }
}

#[tokio::test]
async fn an_answer_that_is_not_multipart_is_permanent() {
    let s = series();
    let listed = s.clone();
    let (result, dir) = retrieve_with(
        move |req| {
            if is_listing(&req.path) {
                listing(&listed, 3)
            } else {
                Reply {
                    head: "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2"
                        .into(),
                    body: b"{}".to_vec(),
                    stall: None,
                }
            }
        },
        &s,
    )
    .await;
    match result {
        Err(FetchError::Permanent(message)) => {
            assert!(message.contains("not multipart/related"), "{message}")
        }
        other => panic!("expected a permanent error, got {other:?}"),
    }
    assert_empty(dir.path());
}

#[tokio::test]
async fn a_stalled_body_times_out_as_transient() {
    let s = series();
    let body = multipart(&instances(&s), true);
    let half = body[..body.len() / 2].to_vec();
    let len = body.len();
    let listed = s.clone();
    let (result, dir) = retrieve_with(
        move |req| {
            if is_listing(&req.path) {
                listing(&listed, 3)
            } else {
                let mut reply = wado(half.clone(), len);
                reply.stall = Some(Duration::from_secs(5));
                reply
            }
        },
        &s,
    )
    .await;
    match result {
        Err(FetchError::Transient(message)) => assert!(message.contains("timed out"), "{message}"),
        other => panic!("expected a transient timeout, got {other:?}"),
    }
    assert_empty(dir.path());
}

#[tokio::test]
async fn nothing_listening_is_transient() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let root = format!("http://127.0.0.1:{port}/dicom-web");
    let s = series();
    let dir = tempfile::tempdir().unwrap();
    for result in [
        source()
            .list_instances(&server(&root), &key(&s))
            .await
            .map(|l| l.len()),
        retrieve_into(&root, &s, dir.path())
            .await
            .map(|a| a.entries.len()),
    ] {
        match result {
            Err(FetchError::Transient(message)) => {
                assert!(message.contains("cannot connect"), "{message}")
            }
            other => panic!("expected a transient error, got {other:?}"),
        }
    }
    assert_empty(dir.path());
}

#[tokio::test]
async fn credentials_are_sent_and_gzip_is_not_asked_for() {
    let s = series();
    let listed = s.clone();
    let (root, seen) = serve(move |_| listing(&listed, 3)).await;
    let basic = DicomServer {
        root: root.clone(),
        credentials: DicomCredentials::Basic {
            username: "pacs".into(),
            password: SecretString::from("s3cret"),
        },
    };
    let bearer = DicomServer {
        root: root.clone(),
        credentials: DicomCredentials::Bearer {
            token: SecretString::from("tok-123"),
        },
    };
    assert_eq!(
        source()
            .list_instances(&basic, &key(&s))
            .await
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        source()
            .list_instances(&bearer, &key(&s))
            .await
            .unwrap()
            .len(),
        3
    );
    let seen = seen.lock().unwrap().clone();
    // base64("pacs:s3cret")
    assert_eq!(
        seen[0].header("authorization"),
        Some("Basic cGFjczpzM2NyZXQ=")
    );
    assert_eq!(seen[1].header("authorization"), Some("Bearer tok-123"));
    assert_eq!(seen[0].header("accept"), Some("application/dicom+json"));
    assert_eq!(
        seen[0].path,
        format!(
            "/dicom-web/studies/{}/series/{}/metadata",
            s.study_instance_uid, s.series_instance_uid
        )
    );
    assert_eq!(seen.len(), 2, "one listing request each: {seen:?}");
    for request in &seen {
        assert!(request.header("accept-encoding").is_none(), "{request:?}");
    }
}

#[tokio::test]
async fn the_stored_transfer_syntax_is_asked_for_with_a_fallback_on_406() {
    let s = series();
    let body = multipart(&instances(&s), true);
    let len = body.len();
    let listed = s.clone();
    let (root, seen) = serve(move |req| {
        if is_listing(&req.path) {
            listing(&listed, 3)
        } else if req
            .header("accept")
            .unwrap_or("")
            .contains("transfer-syntax=*")
        {
            status("406 Not Acceptable", "transfer-syntax=* is not supported")
        } else {
            wado(body.clone(), len)
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let retrieved = retrieve_into(&root, &s, dir.path()).await.unwrap();
    assert_eq!(retrieved.entries.len(), 3);
    let accepts: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|r| !is_listing(&r.path))
        .map(|r| r.header("accept").unwrap_or("").to_string())
        .collect();
    assert_eq!(
        accepts,
        vec![
            "multipart/related; type=\"application/dicom\"; transfer-syntax=*",
            "multipart/related; type=\"application/dicom\"",
        ]
    );
}

#[tokio::test]
async fn a_body_without_length_that_stops_early_is_transient() {
    // Orthanc streams a large series without Content-Length and closes the connection at
    // the end: a server that stops mid-series looks like a clean end of the body.
    let s = series();
    let body = multipart(&instances(&s), true);
    let cut = body[..body.len() * 2 / 3].to_vec();
    let listed = s.clone();
    let (result, dir) = retrieve_with(
        move |req| {
            if is_listing(&req.path) {
                listing(&listed, 3)
            } else {
                Reply {
                    head: format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: multipart/related; type=\"application/dicom\"; boundary={BOUNDARY}"
                    ),
                    body: cut.clone(),
                    stall: None,
                }
            }
        },
        &s,
    )
    .await;
    match result {
        Err(FetchError::Transient(message)) => {
            assert!(message.contains("closed before"), "{message}")
        }
        other => panic!("expected a transient error, got {other:?}"),
    }
    assert_empty(dir.path());
}

#[tokio::test]
async fn a_listing_without_instance_numbers_is_completed_from_the_headers() {
    let s = SyntheticSeries::new("MR", 3)
        .with_size(32, 32)
        .with_instance_numbers(vec![Some(7), None, Some(5)]);
    let parts = instances(&s);
    let served = s.clone();
    let (root, seen) = serve(move |req| {
        if req.path.ends_with("/metadata") {
            // A server without the series' metadata: the listing falls back to QIDO-RS.
            status("404 Not Found", "no such resource")
        } else if req.path.contains("/instances?") {
            // A search that gives neither InstanceNumber nor Modality.
            let items: Vec<_> = (0..served.len())
                .map(|i| serde_json::json!({"00080018": {"vr": "UI", "Value": [served.sop_instance_uid(i)]}}))
                .collect();
            let body = serde_json::to_vec(&items).unwrap();
            Reply {
                head: format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/dicom+json\r\nContent-Length: {}",
                    body.len()
                ),
                body,
                stall: None,
            }
        } else if let Some(uid) = req.path.split("/instances/").nth(1) {
            let index = (0..served.len())
                .find(|&i| served.sop_instance_uid(i) == uid)
                .unwrap();
            let body = multipart(&parts[index..=index], true);
            let len = body.len();
            wado(body, len)
        } else {
            status("500 Internal Server Error", "only instances here")
        }
    })
    .await;
    let listed = source()
        .list_instances(&server(&root), &key(&s))
        .await
        .unwrap();
    let numbers: Vec<_> = listed.iter().map(|l| l.instance_number).collect();
    assert_eq!(numbers, [Some(7), None, Some(5)]);
    assert!(listed.iter().all(|l| l.modality.as_deref() == Some("MR")));
    let paths: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert!(
        paths[0].ends_with("/metadata") && paths[1].contains("/instances?"),
        "{paths:?}"
    );
    // One header read per instance the search said too little about.
    let reads = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.path.contains("/instances/"))
        .count();
    assert_eq!(reads, 3);
    // The same names as from a complete listing.
    assert_eq!(
        dicom_series::entry_names(&listed),
        dicom_series::entry_names(&s.listing())
    );
}

#[tokio::test]
async fn an_instance_whose_transfer_syntax_cannot_be_read_fails_naming_both() {
    let s = series();
    let mut parts = instances(&s);
    // Explicit VR Little Endian becomes a transfer syntax no parser knows (same length).
    let explicit = b"1.2.840.10008.1.2.1\0";
    let at = parts[1]
        .windows(explicit.len())
        .position(|w| w == explicit)
        .unwrap();
    parts[1][at..at + explicit.len()].copy_from_slice(b"1.2.840.99999.9.9.9\0");
    let body = multipart(&parts, true);
    let len = body.len();
    let (result, dir) = retrieve_with(move |_| wado(body.clone(), len), &s).await;
    match result {
        Err(FetchError::Permanent(message)) => {
            assert!(message.contains("part 2"), "{message}");
            assert!(message.contains(&s.sop_instance_uid(1)), "{message}");
            assert!(message.contains("1.2.840.99999.9.9.9"), "{message}");
        }
        other => panic!("expected a permanent error, got {other:?}"),
    }
    assert_empty(dir.path());
}

#[tokio::test]
async fn a_cut_download_retried_whole_gives_a_byte_identical_archive() {
    let s = SyntheticSeries::new("CT", 6).with_size(64, 64);
    let parts = instances(&s);
    let body = multipart(&parts, true);
    let cut = body[..body.len() / 2].to_vec();
    let calls = Arc::new(Mutex::new(0usize));
    let counted = calls.clone();
    // Like Orthanc (no Content-Length): the first answer stops halfway, the next is whole.
    let (root, _) = serve(move |_| {
        let mut calls = counted.lock().unwrap();
        *calls += 1;
        Reply {
            head: format!(
                "HTTP/1.1 200 OK\r\nContent-Type: multipart/related; type=\"application/dicom\"; boundary={BOUNDARY}"
            ),
            body: if *calls == 1 { cut.clone() } else { body.clone() },
            stall: None,
        }
    })
    .await;
    let first = tempfile::tempdir().unwrap();
    match retrieve_into(&root, &s, first.path()).await {
        Err(FetchError::Transient(message)) => {
            assert!(message.contains("closed before"), "{message}")
        }
        other => panic!("expected a transient error, got {other:?}"),
    }
    assert_empty(first.path());
    // The retry starts over in a fresh folder: nothing of the cut attempt is reused.
    let retried = tempfile::tempdir().unwrap();
    let archive = retrieve_into(&root, &s, retried.path()).await.unwrap();
    let whole = tempfile::tempdir().unwrap();
    let reference = retrieve_into(&root, &s, whole.path()).await.unwrap();
    assert_eq!(
        std::fs::read(&archive.path).unwrap(),
        std::fs::read(&reference.path).unwrap()
    );
    let entries = entries(&archive);
    assert_eq!(entries.len(), 6);
    for (i, part) in parts.iter().enumerate() {
        assert_eq!(&entries[i].1, part, "entry {}", entries[i].0);
    }
}
