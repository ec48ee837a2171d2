//! Faults of a DICOMweb server, played by a tiny HTTP server of the test's own on
//! loopback: broken connections, truncated or malformed bodies, error statuses, stalls.
//! Every error must leave the target folder empty.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dicom_files::synthetic::SyntheticSeries;
use dicom_series::ports::{
    Archive, DicomCredentials, DicomServer, DicomSource, FetchError, SeriesArchive, SeriesArchiver,
    SeriesKey, SeriesListing,
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

/// The series search (QIDO-RS `studies/{study}/series?SeriesInstanceUID=...`).
fn is_series_search(path: &str) -> bool {
    path.contains("/series?")
}

/// The path of the series search `find_series` sends.
fn series_search_path(series: &SyntheticSeries) -> String {
    format!(
        "/dicom-web/studies/{}/series?SeriesInstanceUID={}&includefield=0008103E&includefield=00201209&includefield=00180015&includefield=00080021",
        series.study_instance_uid, series.series_instance_uid
    )
}

/// The path of the series' WADO-RS retrieval.
fn wado_path(series: &SyntheticSeries) -> String {
    format!(
        "/dicom-web/studies/{}/series/{}",
        series.study_instance_uid, series.series_instance_uid
    )
}

/// A DICOM JSON answer (200, application/dicom+json).
fn dicom_json(items: serde_json::Value) -> Reply {
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

/// The series search's answer: the series, counting `count` instances.
fn series_search(series: &SyntheticSeries, count: usize) -> Reply {
    dicom_json(serde_json::json!([{
        "0020000E": {"vr": "UI", "Value": [series.series_instance_uid]},
        "00080060": {"vr": "CS", "Value": ["CT"]},
        "00201209": {"vr": "IS", "Value": [count]},
    }]))
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

/// Retrieves the series from `server` into a ZIP in `dir`, the archive expecting
/// `expected` instances (what the series search would count).
async fn retrieve_from(
    server: &DicomServer,
    series: &SyntheticSeries,
    expected: Option<u64>,
    dir: &Path,
) -> Result<Archive, FetchError> {
    let writer = series_zip::ZipArchiver::new()
        .create(&key(series), dir)
        .await
        .unwrap();
    source()
        .retrieve_series(server, &key(series), SeriesArchive::new(expected, writer))
        .await
}

/// Retrieves the series into a ZIP in `dir`, the archive expecting all its instances.
async fn retrieve_into(
    root: &str,
    series: &SyntheticSeries,
    dir: &Path,
) -> Result<Archive, FetchError> {
    retrieve_from(&server(root), series, Some(series.len() as u64), dir).await
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

/// Retrieves the series from a server answering with `reply`, the archive expecting
/// `expected` instances; checks that the retrieval made no request but the series' WADO-RS.
async fn retrieve_expecting(
    reply: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    series: &SyntheticSeries,
    expected: Option<u64>,
) -> (Result<Archive, FetchError>, tempfile::TempDir) {
    let (root, seen) = serve(reply).await;
    let dir = tempfile::tempdir().unwrap();
    let result = retrieve_from(&server(&root), series, expected, dir.path()).await;
    let paths: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(paths, [wado_path(series)], "only the WADO-RS request");
    (result, dir)
}

/// [`retrieve_expecting`] all the series' instances.
async fn retrieve_with(
    reply: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    series: &SyntheticSeries,
) -> (Result<Archive, FetchError>, tempfile::TempDir) {
    retrieve_expecting(reply, series, Some(series.len() as u64)).await
}

#[tokio::test]
async fn a_well_formed_answer_is_retrieved() {
    let s = series();
    let parts = instances(&s);
    let body = multipart(&parts, true);
    let len = body.len();
    let (result, dir) = retrieve_with(move |_| wado(body.clone(), len), &s).await;
    let archive = result.unwrap();
    assert_eq!(archive.path.parent(), Some(dir.path()));
    assert_eq!(archive.modality.as_deref(), Some("CT"));
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
    let (result, dir) = retrieve_with(move |_| wado(body[..cut].to_vec(), len), &s).await;
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
    let (result, dir) = retrieve_with(move |_| wado(body.clone(), len), &s).await;
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
    let (result, dir) = retrieve_with(move |_| wado(body.clone(), len), &s).await;
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
async fn fewer_instances_than_the_series_search_counts_is_permanent() {
    let s = series();
    let body = multipart(&instances(&s)[..2], true);
    let len = body.len();
    // The archive expects the 3 instances the series search counts; the server sends 2.
    let (result, dir) = retrieve_with(move |_| wado(body.clone(), len), &s).await;
    match result {
        Err(FetchError::Permanent(message)) => {
            assert!(
                message.contains("the server counts 3 instances in the series"),
                "{message}"
            );
            assert!(message.contains("sent 2"), "{message}");
            assert!(message.contains(&s.series_instance_uid), "{message}");
        }
        other => panic!("expected a permanent error, got {other:?}"),
    }
    assert_empty(dir.path());
}

#[tokio::test]
async fn more_instances_than_counted_or_one_sent_twice_is_permanent() {
    let s = series();
    let parts = instances(&s);
    // All 3 sent, 2 counted.
    let body = multipart(&parts, true);
    let len = body.len();
    let (result, dir) = retrieve_expecting(move |_| wado(body.clone(), len), &s, Some(2)).await;
    match result {
        Err(FetchError::Permanent(message)) => {
            assert!(
                message.contains("the server counts 2 instances in the series"),
                "{message}"
            );
            assert!(message.contains("sent 3"), "{message}");
        }
        other => panic!("expected a permanent error, got {other:?}"),
    }
    assert_empty(dir.path());

    // As many sent as counted, but the second one twice.
    let twice = vec![parts[0].clone(), parts[1].clone(), parts[1].clone()];
    let body = multipart(&twice, true);
    let len = body.len();
    let (result, dir) = retrieve_with(move |_| wado(body.clone(), len), &s).await;
    match result {
        Err(FetchError::Permanent(message)) => {
            assert!(
                message.contains(&format!("sent instance {} twice", s.sop_instance_uid(1))),
                "{message}"
            );
            assert!(message.contains(&s.series_instance_uid), "{message}");
        }
        other => panic!("expected a permanent error, got {other:?}"),
    }
    assert_empty(dir.path());
}

#[tokio::test]
async fn without_a_count_what_the_server_sends_is_the_series() {
    let s = series();
    let parts = instances(&s);
    let body = multipart(&parts[..2], true);
    let len = body.len();
    let (result, _dir) = retrieve_expecting(move |_| wado(body.clone(), len), &s, None).await;
    let archive = result.unwrap();
    assert_eq!(archive.entries, ["CT_1.dcm", "CT_2.dcm"]);
    let entries = entries(&archive);
    assert_eq!(entries[0].1, parts[0]);
    assert_eq!(entries[1].1, parts[1]);
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
        let line_owned = line.to_string();
        let (result, dir) =
            retrieve_with(move |_| status(&line_owned, "no such series here"), &s).await;
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
    let (result, dir) = retrieve_with(
        move |_| Reply {
            head: "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2".into(),
            body: b"{}".to_vec(),
            stall: None,
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
    let (result, dir) = retrieve_with(
        move |_| {
            let mut reply = wado(half.clone(), len);
            reply.stall = Some(Duration::from_secs(5));
            reply
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
    match source().find_series(&server(&root), &key(&s)).await {
        Err(FetchError::Transient(message)) => {
            assert!(message.contains("the series search"), "{message}");
            assert!(message.contains(&root), "{message}");
            assert!(message.contains("Connection refused"), "{message}");
        }
        other => panic!("expected a transient error, got {other:?}"),
    }
    let dir = tempfile::tempdir().unwrap();
    match retrieve_into(&root, &s, dir.path()).await {
        Err(FetchError::Transient(message)) => {
            assert!(message.contains("cannot connect"), "{message}")
        }
        other => panic!("expected a transient error, got {other:?}"),
    }
    assert_empty(dir.path());
}

#[tokio::test]
async fn credentials_are_sent_and_gzip_is_not_asked_for() {
    let s = series();
    let found = s.clone();
    let body = multipart(&instances(&s), true);
    let len = body.len();
    let (root, seen) = serve(move |req| {
        if is_series_search(&req.path) {
            series_search(&found, 3)
        } else {
            wado(body.clone(), len)
        }
    })
    .await;
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
    for server in [&basic, &bearer] {
        let listed = source().find_series(server, &key(&s)).await.unwrap();
        assert_eq!(listed.unwrap().number_of_instances, Some(3));
        let dir = tempfile::tempdir().unwrap();
        let archive = retrieve_from(server, &s, Some(3), dir.path())
            .await
            .unwrap();
        assert_eq!(archive.entries.len(), 3);
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4, "one search and one retrieval each: {seen:?}");
    // base64("pacs:s3cret")
    for request in &seen[..2] {
        assert_eq!(
            request.header("authorization"),
            Some("Basic cGFjczpzM2NyZXQ="),
            "{request:?}"
        );
    }
    for request in &seen[2..] {
        assert_eq!(
            request.header("authorization"),
            Some("Bearer tok-123"),
            "{request:?}"
        );
    }
    for search in [&seen[0], &seen[2]] {
        assert_eq!(search.path, series_search_path(&s));
        assert_eq!(search.header("accept"), Some("application/dicom+json"));
    }
    for retrieval in [&seen[1], &seen[3]] {
        assert_eq!(retrieval.path, wado_path(&s));
    }
    for request in &seen {
        assert!(request.header("accept-encoding").is_none(), "{request:?}");
    }
}

#[tokio::test]
async fn the_series_search_finds_the_series_or_none() {
    let s = series();
    let other = dicom_files::synthetic::new_uid();
    let find = |reply: Reply| {
        let reply = Mutex::new(Some(reply));
        let key = key(&s);
        async move {
            let (root, seen) = serve(move |_| {
                reply
                    .lock()
                    .unwrap()
                    .take()
                    .unwrap_or_else(|| status("500 Internal Server Error", "asked twice"))
            })
            .await;
            let found = source().find_series(&server(&root), &key).await;
            assert_eq!(seen.lock().unwrap().len(), 1, "one series search");
            found
        }
    };

    // Another series only, an empty list, no content, not found: none.
    let another = serde_json::json!([{
        "0020000E": {"vr": "UI", "Value": [other]},
        "00080060": {"vr": "CS", "Value": ["CT"]},
        "00201209": {"vr": "IS", "Value": [3]},
    }]);
    assert_eq!(find(dicom_json(another.clone())).await, Ok(None));
    assert_eq!(find(dicom_json(serde_json::json!([]))).await, Ok(None));
    assert_eq!(
        find(Reply {
            head: "HTTP/1.1 204 No Content".into(),
            body: Vec::new(),
            stall: None,
        })
        .await,
        Ok(None)
    );
    assert_eq!(
        find(status("404 Not Found", "no such study")).await,
        Ok(None)
    );

    // The series among others: its count (a number or a numeric string) and modality.
    let mut items = another.as_array().unwrap().clone();
    items.push(serde_json::json!({
        "0020000E": {"vr": "UI", "Value": [s.series_instance_uid]},
        "00080060": {"vr": "CS", "Value": ["MR"]},
        "00201209": {"vr": "IS", "Value": ["12"]},
        "0008103E": {"vr": "LO", "Value": ["axial"]},
    }));
    assert_eq!(
        find(dicom_json(serde_json::Value::Array(items))).await,
        Ok(Some(SeriesListing {
            series_instance_uid: s.series_instance_uid.clone(),
            modality: Some("MR".into()),
            number_of_instances: Some(12),
            series_description: Some("axial".into()),
            ..SeriesListing::default()
        }))
    );
    assert_eq!(
        find(series_search(&s, 3))
            .await
            .unwrap()
            .unwrap()
            .number_of_instances,
        Some(3)
    );
    // A server that does not count.
    let uncounted = find(dicom_json(serde_json::json!([{
        "0020000E": {"vr": "UI", "Value": [s.series_instance_uid]},
    }])))
    .await
    .unwrap()
    .unwrap();
    assert_eq!(uncounted.number_of_instances, None);

    // Errors: a server error is transient, a refusal or a body that is not DICOM JSON
    // permanent.
    match find(status("503 Service Unavailable", "busy")).await {
        Err(FetchError::Transient(message)) => assert!(message.contains("503"), "{message}"),
        other => panic!("expected a transient error, got {other:?}"),
    }
    match find(status("401 Unauthorized", "who are you")).await {
        Err(FetchError::Permanent(message)) => {
            assert!(message.contains("credentials"), "{message}")
        }
        other => panic!("expected a permanent error, got {other:?}"),
    }
    match find(dicom_json(serde_json::json!({"not": "a list"}))).await {
        Err(FetchError::Permanent(message)) => {
            assert!(message.contains("not a DICOM JSON list"), "{message}")
        }
        other => panic!("expected a permanent error, got {other:?}"),
    }
}

#[tokio::test]
async fn the_stored_transfer_syntax_is_asked_for_with_a_fallback_on_406() {
    let s = series();
    let body = multipart(&instances(&s), true);
    let len = body.len();
    let (root, seen) = serve(move |req| {
        if req
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
    let requests: Vec<(String, String)> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|r| (r.path.clone(), r.header("accept").unwrap_or("").to_string()))
        .collect();
    assert_eq!(
        requests,
        vec![
            (
                wado_path(&s),
                "multipart/related; type=\"application/dicom\"; transfer-syntax=*".to_string()
            ),
            (
                wado_path(&s),
                "multipart/related; type=\"application/dicom\"".to_string()
            ),
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
    let (result, dir) = retrieve_with(
        move |_| Reply {
            head: format!(
                "HTTP/1.1 200 OK\r\nContent-Type: multipart/related; type=\"application/dicom\"; boundary={BOUNDARY}"
            ),
            body: cut.clone(),
            stall: None,
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
async fn missing_and_repeated_instance_numbers_are_named_from_the_headers() {
    // Missing and repeated numbers, in an order where early names depend on later
    // instances: entries are renamed when the archive finishes.
    let s = SyntheticSeries::new("MR", 6)
        .with_size(32, 32)
        .with_instance_numbers(vec![Some(7), None, Some(5), Some(7), None, Some(5)]);
    let parts = instances(&s);
    let body = multipart(&parts, true);
    let len = body.len();
    // retrieve_with checks that the WADO-RS request is the only one: nothing is listed.
    let (result, _dir) = retrieve_with(move |_| wado(body.clone(), len), &s).await;
    let archive = result.unwrap();
    let mut expected = vec![String::new(); s.len()];
    for (index, name) in dicom_series::entry_names(&s.listing()) {
        expected[index] = name;
    }
    // Entries in arrival order, each under the name the whole set gives it.
    assert_eq!(
        expected,
        [
            "MR_7.dcm",
            "MR_unnumbered_1.dcm",
            "MR_5.dcm",
            "MR_7_2.dcm",
            "MR_unnumbered_2.dcm",
            "MR_5_2.dcm"
        ]
    );
    assert_eq!(archive.entries, expected);
    assert_eq!(archive.modality.as_deref(), Some("MR"));
    let entries = entries(&archive);
    assert_eq!(entries.len(), parts.len());
    for ((name, bytes), (part, expected)) in entries.iter().zip(parts.iter().zip(&expected)) {
        assert_eq!(name, expected);
        assert!(bytes == part, "{name} differs from its instance");
    }
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
