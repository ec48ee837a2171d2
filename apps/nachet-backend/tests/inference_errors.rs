//! `/inf` refusals and failures: each check of contract 1.2 with its status and message,
//! models that fail or hang, and what a failed request leaves behind (nothing).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use image::ImageFormat;
use reference_models::{Behaviour, Options, ReferenceModels};
use serde_json::Value;

async fn post(t: &TestBackend, body: &Value) -> (u16, String) {
    let response = t.http.post(t.url("/inf")).json(body).send().await.unwrap();
    let status = response.status().as_u16();
    let answer: Value = response.json().await.unwrap();
    (
        status,
        answer["error"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Nothing of a failed request is kept: no rows, no blobs.
async fn assert_nothing_kept(t: &TestBackend) {
    for table in [
        "inferences",
        "pictures",
        "picture_sets",
        "inference_boxes",
        "box_candidates",
    ] {
        assert_eq!(t.count(table).await, 0, "rows left in {table}");
    }
    assert_eq!(t.blob_keys().await, Vec::<String>::new());
}

/// Nothing of a request dropped on the way is kept, once its picture's write (which went on
/// while the models worked) has ended and been undone.
async fn assert_nothing_kept_soon(t: &TestBackend) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !t.blob_keys().await.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_nothing_kept(t).await;
}

#[tokio::test]
async fn each_check_of_the_request_has_its_status_and_message() {
    let t = start(Db::Sqlite, Blobs::LocalDisk).await;
    let user = t.user("tech@example.org").await;
    let photo = data_url("image/png", &photo_bytes());
    let good = inf_body(DEFAULT_PIPELINE, &user, photo.clone(), [638, 559]);

    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("image");
    missing.as_object_mut().unwrap().remove("user_id");
    let (status, error) = post(&t, &missing).await;
    assert_eq!(
        (status, error.as_str()),
        (400, "missing arguments: image, user_id")
    );

    let mut unknown = good.clone();
    unknown["model_name"] = "swin-x".into();
    let (status, error) = post(&t, &unknown).await;
    assert_eq!(status, 400);
    assert!(
        error.contains("unknown pipeline \"swin-x\"") && error.contains(DEFAULT_PIPELINE),
        "{error}"
    );

    let mut no_header = good.clone();
    no_header["image"] = photo.trim_start_matches("data:image/png;base64,").into();
    let (status, error) = post(&t, &no_header).await;
    assert_eq!(status, 400);
    assert!(error.contains("not a data URL"), "{error}");

    let mut svg = good.clone();
    svg["image"] = "data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=".into();
    let (status, error) = post(&t, &svg).await;
    assert_eq!(status, 415);
    assert!(error.contains("\"svg+xml\" is not accepted"), "{error}");

    let mut not_png = good.clone();
    not_png["image"] = data_url("image/png", &encode(&seed_photo(), ImageFormat::Jpeg)).into();
    let (status, error) = post(&t, &not_png).await;
    assert_eq!(status, 400);
    assert!(error.contains("does not decode as image/png"), "{error}");

    let mut dims = good.clone();
    dims["imageDims"] = serde_json::json!([640, 480]);
    let (status, error) = post(&t, &dims).await;
    assert_eq!(status, 400);
    assert!(
        error.contains("imageDims: [640, 480] does not match the image, which is [638, 559]"),
        "{error}"
    );

    let mut stranger = good.clone();
    stranger["userId"] = "3f1c7a52-9a0e-4a8e-9d55-0d8a7c3e1b11".into();
    let (status, error) = post(&t, &stranger).await;
    assert_eq!(status, 403);
    assert!(
        error.contains("userId: 3f1c7a52") && error.contains("not your user id"),
        "{error}"
    );

    let mut folder = good.clone();
    folder["folder_name"] = "../other".into();
    let (status, error) = post(&t, &folder).await;
    assert_eq!(status, 400);
    assert!(error.starts_with("folder_name:"), "{error}");

    let mut ratio = good.clone();
    ratio["area_ratio"] = 1.5.into();
    assert_eq!(post(&t, &ratio).await.0, 400);

    let mut validator = good.clone();
    validator["validator"] = "0".repeat(64).into();
    let (status, error) = post(&t, &validator).await;
    assert_eq!(status, 400);
    assert!(error.contains("validator"), "{error}");

    assert_nothing_kept(&t).await;
    t.backend.stop().await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_with_413() {
    let (mut settings, dir) = settings(Db::Sqlite, Blobs::LocalDisk).await;
    settings.server.max_body_bytes = 100_000;
    let t = start_with(settings, dir).await;
    let user = t.user("tech@example.org").await;
    let body = inf_body(
        DEFAULT_PIPELINE,
        &user,
        data_url("image/png", &photo_bytes()),
        [638, 559],
    );
    let (status, error) = post(&t, &body).await;
    assert_eq!(status, 413);
    assert!(error.contains("over the limit of 100000 bytes"), "{error}");
    assert_nothing_kept(&t).await;
    t.backend.stop().await;
}

/// A backend whose default pipeline's classifier is served by `classifier`.
async fn backend_with_classifier(
    classifier: &ReferenceModels,
    timeout_seconds: f64,
) -> TestBackend {
    backend_with_classifier_and(&classifier.url, timeout_seconds, |_| {}).await
}

/// [`backend_with_classifier`] with the classifier at `classifier_url`, the settings changed
/// by `adjust` first.
async fn backend_with_classifier_and(
    classifier_url: &str,
    timeout_seconds: f64,
    adjust: impl FnOnce(&mut nachet_backend::Settings),
) -> TestBackend {
    let (mut settings, dir) = settings(Db::Sqlite, Blobs::LocalDisk).await;
    adjust(&mut settings);
    let detector = reference_models::start(Options::new("k")).await.unwrap();
    let model = |name: &str, kind: &str, url: &str| {
        serde_json::json!({
            "model_name": name, "kind": kind, "task": "classification",
            "endpoint": format!("{url}/score"), "api_key": "k",
            "content_type": "application/json", "deployment_platform": "azureml-model-deployment",
            "endpoint_name": name, "version": "1", "timeout_seconds": timeout_seconds,
            "description": "", "created_by": "test", "creation_date": "2026-11-22", "job_name": "",
            "dataset_description": "", "accuracy": null,
        })
    };
    let catalogue = serde_json::json!({
        "version": "0.0.1", "date": "2026-11-22",
        "models": [model("seed-detector", "seed_detector", &detector.url), model("seed-classifier", "classifier", classifier_url)],
        "pipelines": [{
            "pipeline_name": "flaky", "models": ["seed-detector", "seed-classifier"], "default": true, "version": "1",
            "description": "", "created_by": "test", "creation_date": "2026-11-22", "job_name": "",
            "dataset_description": "", "accuracy": null,
        }],
    });
    let catalogue: pipeline::CatalogueDocument = serde_json::from_value(catalogue).unwrap();
    let catalogue = pipeline::validate_document(catalogue, None).unwrap();
    nachet_dev::catalogue::publish_into(&mut settings, &catalogue)
        .await
        .unwrap();
    let t = start_with(settings, dir).await;
    std::mem::forget(detector); // serves until the test process ends
    t
}

#[tokio::test]
async fn a_model_that_answers_500_gives_502_naming_the_step_and_model() {
    let failing = reference_models::start(Options::new("k").with_behaviour(Behaviour::AlwaysFail))
        .await
        .unwrap();
    let t = backend_with_classifier(&failing, 10.0).await;
    let user = t.user("tech@example.org").await;
    let (status, error) = post(
        &t,
        &inf_body(
            "flaky",
            &user,
            data_url("image/png", &photo_bytes()),
            [638, 559],
        ),
    )
    .await;
    assert_eq!(status, 502);
    assert!(
        error.contains("step 2 of pipeline \"flaky\", model \"seed-classifier\""),
        "{error}"
    );
    assert!(error.contains("HTTP 500"), "{error}");
    assert_nothing_kept(&t).await;
    t.backend.stop().await;
}

#[tokio::test]
async fn a_model_that_hangs_gives_504_within_the_configured_timeout() {
    let hanging = reference_models::start(
        Options::new("k").with_behaviour(Behaviour::Delay(Duration::from_secs(60))),
    )
    .await
    .unwrap();
    let t = backend_with_classifier(&hanging, 1.0).await;
    let user = t.user("tech@example.org").await;
    let started = Instant::now();
    let (status, error) = post(
        &t,
        &inf_body(
            "flaky",
            &user,
            data_url("image/png", &photo_bytes()),
            [638, 559],
        ),
    )
    .await;
    let elapsed = started.elapsed();
    assert_eq!(status, 504);
    assert!(
        error.contains("model \"seed-classifier\"") && error.contains("did not answer within 1s"),
        "{error}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "answered after {elapsed:?}"
    );
    assert_nothing_kept(&t).await;
    t.backend.stop().await;
}

#[tokio::test]
async fn a_model_server_that_is_down_gives_502() {
    let gone = reference_models::start(Options::new("k")).await.unwrap();
    let t = backend_with_classifier(&gone, 5.0).await;
    gone.stop().await;
    let user = t.user("tech@example.org").await;
    let (status, error) = post(
        &t,
        &inf_body(
            "flaky",
            &user,
            data_url("image/png", &photo_bytes()),
            [638, 559],
        ),
    )
    .await;
    assert_eq!(status, 502);
    assert!(error.contains("could not be reached"), "{error}");
    assert_nothing_kept(&t).await;
    t.backend.stop().await;
}

/// Picture bombs (small files of huge pictures) are refused from their header, at once,
/// without the memory their pixels would take.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn picture_bombs_are_refused_before_decoding() {
    let t = start(Db::Sqlite, Blobs::LocalDisk).await;
    let user = t.user("tech@example.org").await;
    for side in [20_000, 13_000] {
        let bomb = png_bomb(side);
        assert!(bomb.len() < 1_000_000, "{} bytes", bomb.len());
        let body = inf_body(
            DEFAULT_PIPELINE,
            &user,
            data_url("image/png", &bomb),
            [side, side],
        );
        let before = resident_bytes();
        let started = std::time::Instant::now();
        let (status, error) = post(&t, &body).await;
        let elapsed = started.elapsed();
        let growth = resident_bytes().saturating_sub(before);
        assert_eq!(status, 400, "{error}");
        assert!(
            error.contains(&format!(
                "{side}x{side} pixels, over the limit of 50000000 pixels"
            )),
            "{error}"
        );
        assert!(
            elapsed < Duration::from_secs(1),
            "answered after {elapsed:?}"
        );
        assert!(growth < 50 << 20, "resident memory grew by {growth} bytes");
    }
    assert_nothing_kept(&t).await;
    t.backend.stop().await;
}

/// Base64 wrapped at 76 characters (as MIME tools write it) is the same picture.
#[tokio::test]
async fn mime_wrapped_base64_is_accepted() {
    let t = start(Db::Sqlite, Blobs::LocalDisk).await;
    let user = t.user("tech@example.org").await;
    let url = data_url("image/png", &photo_bytes());
    let (header, payload) = url.split_once(',').unwrap();
    let lines: Vec<&str> = payload
        .as_bytes()
        .chunks(76)
        .map(|line| std::str::from_utf8(line).unwrap())
        .collect();
    let wrapped = format!("{header},{}", lines.join("\r\n"));
    let (status, error) = post(&t, &inf_body(DEFAULT_PIPELINE, &user, wrapped, [638, 559])).await;
    assert_eq!(status, 200, "{error}");
    t.backend.stop().await;
}

// --- admission --------------------------------------------------------------------------

/// Sends a request's head declaring a body of `length` bytes, and never the body; returns
/// the answer's head as text, read until the blank line.
async fn head_without_body(t: &TestBackend, length: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = t.backend.url().trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /inf HTTP/1.1\r\nHost: test\r\n{IDENTITY_HEADER}: {TECH}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buffer).await.unwrap();
        assert!(n > 0, "the server closed without an answer");
        answer.extend_from_slice(&buffer[..n]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn beyond_the_queue_a_request_is_refused_with_503_and_retry_after_before_its_body_is_read() {
    let slow = reference_models::start(
        Options::new("k").with_behaviour(Behaviour::Delay(Duration::from_millis(1500))),
    )
    .await
    .unwrap();
    let t = backend_with_classifier_and(&slow.url, 10.0, |settings| {
        settings.inference.max_in_flight = 1;
        settings.inference.queue_requests = 1;
        settings.inference.retry_after_seconds = 3;
    })
    .await;
    let user = t.user(TECH).await;
    let body = inf_body(
        "flaky",
        &user,
        data_url("image/png", &photo_bytes()),
        [638, 559],
    );
    let send = |body: Value| {
        let (http, url) = (t.http.clone(), t.url("/inf"));
        tokio::spawn(async move { http.post(url).json(&body).send().await.unwrap().status() })
    };
    let working = send(body.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let waiting = send(body.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The third is refused from its head alone: its megabyte is never sent, so a server
    // that read bodies first would never answer.
    let head = tokio::time::timeout(Duration::from_secs(5), head_without_body(&t, 1_000_000))
        .await
        .expect("the refusal must not wait for the body");
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 3\r\n"),
        "{head}"
    );

    // The one that waited is served once the first is done.
    assert_eq!(working.await.unwrap(), 200);
    assert_eq!(waiting.await.unwrap(), 200);
    t.backend.stop().await;
    std::mem::forget(slow);
}

#[tokio::test]
async fn a_repeated_key_in_the_inf_body_is_refused_not_resolved() {
    let t = start(Db::Sqlite, Blobs::LocalDisk).await;
    let user = t.user(TECH).await;
    let good = inf_body(
        DEFAULT_PIPELINE,
        &user,
        data_url("image/png", &photo_bytes()),
        [638, 559],
    )
    .to_string();
    // The same key twice: the first value is the real pipeline, the last one too.
    let repeated = good.replacen(
        "{",
        &format!("{{\"model_name\": \"{DEFAULT_PIPELINE}\", "),
        1,
    );
    let response = t
        .http
        .post(t.url("/inf"))
        .header("content-type", "application/json")
        .body(repeated)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let answer: Value = response.json().await.unwrap();
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("duplicate field `model_name`"),
        "{answer}"
    );
    assert_nothing_kept(&t).await;
    t.backend.stop().await;
}

// --- abandoned requests --------------------------------------------------------------------

/// A classifier that reads each call and never answers; counts the calls and the
/// connections still open.
struct HangingModel {
    url: String,
    calls: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
}

async fn hanging_model() -> HangingModel {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (calls, open) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (calls_seen, open_seen) = (calls.clone(), open.clone());
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let (calls, open) = (calls_seen.clone(), open_seen.clone());
            open.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 64 * 1024];
                let mut counted = false;
                // Until the caller closes the connection.
                while let Ok(n) = stream.read(&mut buffer).await {
                    if n == 0 {
                        break;
                    }
                    if !counted {
                        counted = true;
                        calls.fetch_add(1, Ordering::SeqCst);
                    }
                }
                open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    HangingModel { url, calls, open }
}

#[tokio::test]
async fn a_request_whose_client_is_gone_stops_its_model_calls() {
    let hanging = hanging_model().await;
    let t = backend_with_classifier_and(&hanging.url, 30.0, |_| {}).await;
    let user = t.user(TECH).await;
    // Ten seeds: ten classifier calls, all hanging.
    let body = inf_body(
        "flaky",
        &user,
        data_url("image/png", &encode(&tiled_photo(5, 2), ImageFormat::Png)),
        [638 * 5, 559 * 2],
    );
    let impatient = client_as(TECH);
    let gave_up = impatient
        .post(t.url("/inf"))
        .json(&body)
        .timeout(Duration::from_secs(3))
        .send()
        .await;
    assert!(gave_up.is_err(), "the client gives up first: {gave_up:?}");
    assert!(
        hanging.calls.load(Ordering::SeqCst) > 0,
        "the classifier was being called when the client left"
    );
    // The model calls of the abandoned request are dropped: their connections close long
    // before the model's 30 s timeout.
    let deadline = Instant::now() + Duration::from_secs(5);
    while hanging.open.load(Ordering::SeqCst) > 0 {
        assert!(
            Instant::now() < deadline,
            "{} model connections still open 5 s after the client left",
            hanging.open.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_nothing_kept_soon(&t).await;
    t.backend.stop().await;
}
