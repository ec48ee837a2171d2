//! The exact requests each model kind sends, and how answers and failures are read, against a
//! real HTTP server that records what it receives.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use inference::{ModelCallError, ModelClient, NormalizedBox};
use model_http::HttpModelClient;
use pipeline::{ModelDefinition, ModelKind, ModelMetadata};
use secrecy::SecretString;

#[derive(Clone, Debug)]
struct Recorded {
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the fake endpoint answers to every call.
#[derive(Clone)]
struct Script {
    status: u16,
    body: &'static str,
    delay: Duration,
    /// Calls answered with 503 before the scripted answer.
    failures_first: usize,
}

struct Server {
    url: String,
    calls: Arc<Mutex<Vec<Recorded>>>,
}

async fn start(script: Script) -> Server {
    let calls: Arc<Mutex<Vec<Recorded>>> = Arc::default();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/score", listener.local_addr().unwrap());
    let recorded = calls.clone();
    let server = HttpServer::new(move || {
        let recorded = recorded.clone();
        let script = script.clone();
        App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
            let recorded = recorded.clone();
            let script = script.clone();
            async move {
                let n = {
                    let mut calls = recorded.lock().unwrap();
                    calls.push(Recorded {
                        path: req.path().to_owned(),
                        headers: req
                            .headers()
                            .iter()
                            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_owned()))
                            .collect(),
                        body: String::from_utf8_lossy(&body).into_owned(),
                    });
                    calls.len()
                };
                tokio::time::sleep(script.delay).await;
                let status = if n <= script.failures_first {
                    503
                } else {
                    script.status
                };
                HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                    .content_type("application/json")
                    .body(script.body)
            }
        }))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    Server { url, calls }
}

fn ok(body: &'static str) -> Script {
    Script {
        status: 200,
        body,
        delay: Duration::ZERO,
        failures_first: 0,
    }
}

fn model(kind: ModelKind, endpoint: &str) -> ModelDefinition {
    ModelDefinition {
        name: "model-a".into(),
        version: "1".into(),
        kind,
        endpoint: SecretString::from(endpoint.to_owned()),
        api_key: SecretString::from("key-123".to_owned()),
        content_type: "application/json".into(),
        deployment_platform: "azureml-model-deployment".into(),
        timeout: Duration::from_secs(5),
        retries: 0,
        reclassify_labels: BTreeSet::new(),
        crop_encoding: pipeline::CropEncoding::default(),
        metadata: ModelMetadata::default(),
    }
}

#[tokio::test]
async fn the_seed_detector_sends_input_data_and_reads_normalized_boxes() {
    let server = start(ok(
        r#"{"boxes": [{"box": {"topX": 0.1, "topY": 0.2, "bottomX": 0.3, "bottomY": 0.4}, "label": "seed", "score": 0.97}]}"#,
    ))
    .await;
    let boxes = HttpModelClient::new()
        .detect(
            &model(ModelKind::SeedDetector, &server.url),
            bytes::Bytes::from_static(b"QUJD"),
        )
        .await
        .unwrap();
    assert_eq!(boxes.len(), 1);
    assert_eq!(
        boxes[0].bbox,
        NormalizedBox {
            top_x: 0.1,
            top_y: 0.2,
            bottom_x: 0.3,
            bottom_y: 0.4
        }
    );
    assert_eq!((boxes[0].label.as_str(), boxes[0].score), ("seed", 0.97));

    let call = server.calls.lock().unwrap()[0].clone();
    assert_eq!(call.path, "/score");
    assert_eq!(call.header("content-type"), Some("application/json"));
    assert_eq!(call.header("authorization"), Some("Bearer key-123"));
    assert_eq!(call.header("azureml-model-deployment"), Some("model-a"));
    let body: serde_json::Value = serde_json::from_str(&call.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"input_data": {"columns": ["image"], "index": [0], "data": ["QUJD"]}})
    );
}

#[tokio::test]
async fn the_classifier_sends_the_raw_base64_and_reads_a_ranking() {
    let server = start(ok(
        r#"[{"label": "13 Ambrosia trifida", "score": 0.8}, {"label": "1 Brassica juncea", "score": 0.1}]"#,
    ))
    .await;
    let mut classifier = model(ModelKind::Classifier, &server.url);
    classifier.content_type = "application/octet-stream".into();
    classifier.deployment_platform = "x-routing".into();
    let ranking = HttpModelClient::new()
        .classify(&classifier, bytes::Bytes::from_static(b"Q1JPUA=="))
        .await
        .unwrap();
    assert_eq!(ranking.len(), 2);
    assert_eq!(ranking[0].label, "13 Ambrosia trifida");
    let call = server.calls.lock().unwrap()[0].clone();
    assert_eq!(call.body, "Q1JPUA==");
    assert_eq!(
        call.header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(
        call.header("x-routing"),
        Some("model-a"),
        "the routing header is named by deployment_platform"
    );
}

#[tokio::test]
async fn the_one_shot_detector_reads_the_list_wrapped_answer() {
    let server = start(ok(
        r#"[{"boxes": [{"box": {"topX": 0.1, "topY": 0.1, "bottomX": 0.2, "bottomY": 0.2}, "label": "Bromus secalinus", "score": 0.6}]}]"#,
    ))
    .await;
    let boxes = HttpModelClient::new()
        .detect(
            &model(ModelKind::OneShotDetector, &server.url),
            bytes::Bytes::from_static(b"QUJD"),
        )
        .await
        .unwrap();
    assert_eq!(boxes[0].label, "Bromus secalinus");
}

#[tokio::test]
async fn the_test_kind_calls_nothing_and_gives_one_fixed_box() {
    let server = start(ok("{}")).await;
    let boxes = HttpModelClient::new()
        .detect(
            &model(ModelKind::Test, &server.url),
            bytes::Bytes::from_static(b"QUJD"),
        )
        .await
        .unwrap();
    assert_eq!(boxes.len(), 1);
    assert_eq!(
        (boxes[0].label.as_str(), boxes[0].score),
        ("Ambrosia artemisiifolia", 1.0)
    );
    assert!(server.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_500_is_reported_with_its_status_and_body() {
    let server = start(Script {
        status: 500,
        body: "model crashed",
        ..ok("")
    })
    .await;
    let error = HttpModelClient::new()
        .detect(
            &model(ModelKind::SeedDetector, &server.url),
            bytes::Bytes::from_static(b"QUJD"),
        )
        .await
        .unwrap_err();
    assert_eq!(
        error,
        ModelCallError::Status {
            status: 500,
            body: "model crashed".into()
        }
    );
}

#[tokio::test]
async fn a_hanging_model_times_out_at_its_configured_timeout() {
    let server = start(Script {
        delay: Duration::from_secs(30),
        ..ok("[]")
    })
    .await;
    let mut slow = model(ModelKind::Classifier, &server.url);
    slow.timeout = Duration::from_millis(300);
    let started = Instant::now();
    let error = HttpModelClient::new()
        .classify(&slow, bytes::Bytes::from_static(b"QUJD"))
        .await
        .unwrap_err();
    assert_eq!(error, ModelCallError::Timeout(Duration::from_millis(300)));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_model_nobody_listens_for_is_unreachable() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let error = HttpModelClient::new()
        .detect(
            &model(
                ModelKind::SeedDetector,
                &format!("http://127.0.0.1:{port}/score"),
            ),
            bytes::Bytes::from_static(b"QUJD"),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, ModelCallError::Unreachable(_)), "{error:?}");
}

#[tokio::test]
async fn an_answer_of_the_wrong_shape_says_what_was_expected() {
    let server = start(ok(r#"{"predictions": []}"#)).await;
    let error = HttpModelClient::new()
        .detect(
            &model(ModelKind::SeedDetector, &server.url),
            bytes::Bytes::from_static(b"QUJD"),
        )
        .await
        .unwrap_err();
    let ModelCallError::BadResponse(message) = error else {
        panic!("{error:?}")
    };
    assert!(message.contains("boxes"), "{message}");
}

#[tokio::test]
async fn transient_failures_are_retried_as_many_times_as_configured() {
    let server = start(Script {
        failures_first: 2,
        ..ok("[]")
    })
    .await;
    let mut flaky = model(ModelKind::Classifier, &server.url);
    flaky.retries = 2;
    let ranking = HttpModelClient::new()
        .classify(&flaky, bytes::Bytes::from_static(b"QUJD"))
        .await
        .unwrap();
    assert!(ranking.is_empty());
    assert_eq!(server.calls.lock().unwrap().len(), 3);

    let server = start(Script {
        failures_first: 5,
        ..ok("[]")
    })
    .await;
    flaky.endpoint = SecretString::from(server.url.clone());
    flaky.retries = 1;
    let error = HttpModelClient::new()
        .classify(&flaky, bytes::Bytes::from_static(b"QUJD"))
        .await
        .unwrap_err();
    assert!(matches!(error, ModelCallError::Status { status: 503, .. }));
    assert_eq!(server.calls.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let server = start(Script {
        status: 401,
        body: "bad key",
        ..ok("")
    })
    .await;
    let mut m = model(ModelKind::Classifier, &server.url);
    m.retries = 3;
    let error = HttpModelClient::new()
        .classify(&m, bytes::Bytes::from_static(b"QUJD"))
        .await
        .unwrap_err();
    assert!(matches!(error, ModelCallError::Status { status: 401, .. }));
    assert_eq!(server.calls.lock().unwrap().len(), 1);
}
