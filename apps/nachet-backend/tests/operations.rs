//! What operators watch: `/ready` says what is not ready, `/metrics` counts by route
//! pattern.

mod common;
mod series_support;

use blob_store::BlobSettings;
use common::{Blobs, Db, settings, start, start_with};
use secrecy::SecretString;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_and_metrics_on_the_embedded_default() {
    let t = start(Db::Sqlite, Blobs::LocalDisk).await;
    let ready = t.http.get(t.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.json::<Value>().await.unwrap()["ready"], true);

    for _ in 0..2 {
        t.http.get(t.url("/health")).send().await.unwrap();
    }
    let unknown = format!("/api/studies/series/{}", uuid::Uuid::new_v4());
    let answer = t.http.get(t.url(&unknown)).send().await.unwrap();
    assert_eq!(answer.status(), 404);
    // Every answer, errors included, names its request as the logs do.
    let id = answer.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    let other = t.http.get(t.url("/health")).send().await.unwrap();
    assert_ne!(other.headers()["x-request-id"].to_str().unwrap(), id);
    t.http.get(t.url("/no/such/path")).send().await.unwrap();

    let metrics = t.http.get(t.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    for expected in [
        r#"nachet_http_requests_total{route="/health",method="GET",status="200"} 3"#,
        r#"nachet_http_requests_total{route="/api/studies/series/{series_id}",method="GET",status="404"} 1"#,
        r#"nachet_http_requests_total{route="(no route)",method="GET",status="404"} 1"#,
        r#"nachet_http_request_duration_seconds_count{route="/health",method="GET"} 3"#,
        "nachet_inf_working 0",
        "nachet_inf_waiting 0",
        r#"nachet_catalogue_info{version=""#,
    ] {
        assert!(text.contains(expected), "{expected} is not in:\n{text}");
    }
    // A path is never a label: the label set stays bounded however many ids are asked.
    assert!(!text.contains(&unknown), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_names_the_blob_storage_that_does_not_answer() {
    let (mut settings, dir) = settings(Db::Sqlite, Blobs::LocalDisk).await;
    // Azurite behind a proxy that stops once the backend has started.
    let azurite = test_support::azurite_settings();
    let upstream: std::net::SocketAddr = azurite
        .endpoint
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let proxy = series_support::FaultProxy::start(upstream).await;
    settings.blob = BlobSettings::Azure {
        account: azurite.account.clone(),
        access_key: SecretString::from(azurite.key),
        container: azurite.container,
        endpoint: Some(format!("http://{}/{}", proxy.addr, azurite.account)),
        prefix: Some(format!("ready-{}", test_support::unique_suffix())),
    };
    let t = start_with(settings, dir).await;
    assert_eq!(
        t.http.get(t.url("/ready")).send().await.unwrap().status(),
        200
    );
    proxy.stop();
    let started = std::time::Instant::now();
    let ready = t.http.get(t.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    let not_ready = body["notReady"].as_array().unwrap();
    assert_eq!(not_ready.len(), 1, "{body}");
    assert!(
        not_ready[0].as_str().unwrap().starts_with("blob storage:"),
        "{body}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "the probe must answer"
    );
    // Liveness stays instant and fine.
    assert_eq!(
        t.http.get(t.url("/health")).send().await.unwrap().status(),
        200
    );
}

/// The value of the sample `line_start` (name and labels, as written) in `text`.
fn sample(text: &str, line_start: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(line_start)?.trim().parse().ok())
}

/// `/inf` and a series prediction, then `/metrics`: each measured at its port or edge, with
/// the counts the traffic gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_inferences_model_calls_and_series_phases() {
    use common::{DEFAULT_PIPELINE, TECH, data_url, inf_body, photo_bytes};
    let (settings, dir) = settings(Db::Sqlite, Blobs::LocalDisk).await;
    let (_, mut stand_ins) = nachet_dev::default_settings();
    stand_ins.dicom_port = 0;
    let t = common::start_with_stand_ins(settings, dir, &stand_ins).await;

    // One /inf that works, one that names no pipeline we know.
    let user = t.user(TECH).await;
    let photo = data_url("image/png", &photo_bytes());
    let sent_base64 = photo.len() - "data:image/png;base64,".len();
    let body = inf_body(DEFAULT_PIPELINE, &user, photo, [638, 559]);
    let answer = t.http.post(t.url("/inf")).json(&body).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    let boxes = answer.json::<Value>().await.unwrap()["boxes"]
        .as_array()
        .unwrap()
        .len();
    assert!(boxes > 0);
    let mut unknown = body.clone();
    unknown["model_name"] = "no such pipeline".into();
    let answer = t
        .http
        .post(t.url("/inf"))
        .json(&unknown)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);

    // The demo series, through the stand-in DICOMweb server and ML app.
    let predict = t
        .http
        .post(t.url("/api/studies/series/predict"))
        .json(&serde_json::json!({
            "organization": "demo", "modelType": "brain_tumor_classification",
            "studyInstanceUid": nachet_dev::demo_dicom::DEMO_STUDY_UID,
            "seriesInstanceUid": nachet_dev::demo_dicom::DEMO_SERIES_UID,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(predict.status(), 202, "{}", predict.text().await.unwrap());
    let id = predict.json::<Value>().await.unwrap()["seriesId"]
        .as_str()
        .unwrap()
        .to_owned();
    let done = series_support::Client::new(t.backend.url())
        .wait_final(&id, std::time::Duration::from_secs(60))
        .await;
    assert_eq!(done["state"], "completed", "{done}");

    // The series is completed when the ML app reports; its worker lets the job go a moment
    // later. The queue's gauges are read once it has.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let text = loop {
        let text = t
            .http
            .get(t.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let queue_empty = sample(&text, "nachet_series_jobs_claimed") == Some(0.0)
            && sample(&text, "nachet_series_oldest_job_age_seconds") == Some(0.0);
        if queue_empty || std::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let pipeline = format!(r#"{{pipeline="{DEFAULT_PIPELINE}",outcome="ok"}}"#);
    let detector = format!(
        r#"{{model="{}",kind="seed_detector"}}"#,
        reference_models::SEED_DETECTOR
    );
    let classifier = format!(
        r#"{{model="{}",kind="classifier"}}"#,
        reference_models::SEED_CLASSIFIER
    );
    for (line, expected) in [
        (format!("nachet_inf_requests_total{pipeline}"), 1.0),
        (format!("nachet_inf_duration_seconds_count{pipeline}"), 1.0),
        // The refused one is counted without the name it sent.
        (
            r#"nachet_inf_requests_total{pipeline="-",outcome="400"}"#.to_owned(),
            1.0,
        ),
        ("nachet_inf_queue_wait_seconds_count".to_owned(), 2.0),
        (
            format!("nachet_model_call_duration_seconds_count{detector}"),
            1.0,
        ),
        (
            format!("nachet_model_call_duration_seconds_count{classifier}"),
            boxes as f64,
        ),
        (
            format!("nachet_model_call_sent_bytes_total{detector}"),
            sent_base64 as f64,
        ),
        (
            r#"nachet_series_phase_total{phase="series_search",outcome="ok"}"#.to_owned(),
            1.0,
        ),
        (
            r#"nachet_series_phase_total{phase="retrieval",outcome="ok"}"#.to_owned(),
            1.0,
        ),
        (
            r#"nachet_series_phase_total{phase="upload",outcome="ok"}"#.to_owned(),
            1.0,
        ),
        (r#"nachet_series{state="completed"}"#.to_owned(), 1.0),
        ("nachet_series_jobs_claimed".to_owned(), 0.0),
        ("nachet_series_oldest_job_age_seconds".to_owned(), 0.0),
    ] {
        assert_eq!(sample(&text, &line), Some(expected), "{line} in:\n{text}");
    }
    assert!(
        !text.contains("no such pipeline"),
        "a refused name is not a label"
    );
    let retrieved = sample(&text, r#"nachet_series_bytes_total{direction="retrieved"}"#).unwrap();
    let sent = sample(&text, r#"nachet_series_bytes_total{direction="sent"}"#).unwrap();
    assert!(retrieved > 24.0 * 8192.0, "{retrieved}");
    assert_eq!(retrieved, sent, "the archive retrieved is the archive sent");
    assert!(sample(&text, "nachet_codec_busy_seconds_total").unwrap() > 0.0);
}
