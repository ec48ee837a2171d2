//! Helpers of the tracing tests: stub model servers that record the `traceparent` of each
//! call, a backend whose one pipeline runs on them, and log lines kept in memory.
//!
//! The subscriber is global to a process: each tracing test is alone in its test binary.

#![allow(dead_code)]

use std::io::Write;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::json;

use crate::common::*;

/// The trace of the caller of `/inf`, and its span.
pub const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
pub const CALLER_SPAN: &str = "00f067aa0ba902b7";
pub const PIPELINE: &str = "traced";

/// A call a stub model received: which model, and its `traceparent` header.
#[derive(Clone, Debug)]
pub struct ModelCall {
    pub model: String,
    pub traceparent: Option<String>,
}

/// A detector that finds two seeds, and a classifier that ranks each crop; the first
/// classifier call is answered 503 (the model has one retry), so that model-http logs a
/// line inside the request.
pub struct StubModels {
    pub url: String,
    calls: Arc<Mutex<Vec<ModelCall>>>,
}

impl StubModels {
    pub async fn start() -> Self {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let failed_once = Arc::new(AtomicBool::new(false));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = web::Data::new((calls.clone(), failed_once));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(web::PayloadConfig::new(64 << 20))
                .route("/{model}/score", web::post().to(answer))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        Self { url, calls }
    }

    pub fn calls(&self) -> Vec<ModelCall> {
        self.calls.lock().unwrap().clone()
    }
}

type StubState = web::Data<(Arc<Mutex<Vec<ModelCall>>>, Arc<AtomicBool>)>;

async fn answer(
    request: HttpRequest,
    model: web::Path<String>,
    _body: web::Bytes,
    state: StubState,
) -> HttpResponse {
    let model = model.into_inner();
    let traceparent = request
        .headers()
        .get("traceparent")
        .map(|v| v.to_str().unwrap().to_owned());
    state.0.lock().unwrap().push(ModelCall {
        model: model.clone(),
        traceparent,
    });
    match model.as_str() {
        "detector" => HttpResponse::Ok().json(json!({"boxes": [
            {"box": {"topX": 0.1, "topY": 0.1, "bottomX": 0.3, "bottomY": 0.3}, "label": "seed", "score": 0.9},
            {"box": {"topX": 0.6, "topY": 0.6, "bottomX": 0.8, "bottomY": 0.8}, "label": "seed", "score": 0.8},
        ]})),
        _ if !state.1.swap(true, Ordering::SeqCst) => {
            HttpResponse::ServiceUnavailable().body("warming up")
        }
        _ => HttpResponse::Ok().json(json!([
            {"label": "13 Ambrosia trifida", "score": 0.7},
            {"label": "Ambrosia artemisiifolia", "score": 0.2},
        ])),
    }
}

/// A backend (SQLite, local disk) whose pipeline [`PIPELINE`] is the stubs' detector then
/// classifier.
pub async fn backend_on(models: &StubModels) -> TestBackend {
    let (mut settings, dir) = settings(Db::Sqlite, Blobs::LocalDisk).await;
    let model = |name: &str, kind: &str, task: &str| {
        json!({
            "model_name": name, "kind": kind, "task": task,
            "endpoint": format!("{}/{name}/score", models.url), "api_key": "k",
            "content_type": "application/json", "deployment_platform": "azureml-model-deployment",
            "endpoint_name": name, "version": "1", "timeout_seconds": 10, "retries": 1,
            "description": "", "created_by": "test", "creation_date": "2026-11-22", "job_name": "",
            "dataset_description": "", "accuracy": null,
        })
    };
    let catalogue = json!({
        "version": "0.0.1", "date": "2026-11-22",
        "models": [
            model("detector", "seed_detector", "object-detection"),
            model("classifier", "classifier", "classification"),
        ],
        "pipelines": [{
            "pipeline_name": PIPELINE, "models": ["detector", "classifier"], "default": true,
            "version": "1", "description": "", "created_by": "test", "creation_date": "2026-11-22",
            "job_name": "", "dataset_description": "", "accuracy": null,
        }],
    });
    let catalogue: pipeline::CatalogueDocument = serde_json::from_value(catalogue).unwrap();
    let catalogue = pipeline::validate_document(catalogue, None).unwrap();
    nachet_dev::catalogue::publish_into(&mut settings, &catalogue)
        .await
        .unwrap();
    start_with(settings, dir).await
}

/// One `/inf` of the seed photo, sent with the caller's trace context: its answer's
/// `X-Request-Id`.
pub async fn traced_inf(t: &TestBackend) -> String {
    let user = t.user(TECH).await;
    let body = inf_body(
        PIPELINE,
        &user,
        data_url("image/png", &photo_bytes()),
        [638, 559],
    );
    let response = t
        .http
        .post(t.url("/inf"))
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let answer = response.text().await.unwrap();
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("Ambrosia trifida"), "{answer}");
    request_id
}

/// The trace id and parent span id of a `traceparent` (version 00, sampled).
pub fn parse_traceparent(traceparent: &str) -> (String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(parts[0], "00", "{traceparent}");
    assert_eq!(parts[3], "01", "{traceparent}");
    (parts[1].to_owned(), parts[2].to_owned())
}

/// Every model call carried the caller's trace id: the detector once, the classifier once
/// per box and once more for the retried call. Returns the parent span ids they named.
pub fn assert_models_continued_the_trace(models: &StubModels) -> Vec<String> {
    let calls = models.calls();
    let count = |model: &str| calls.iter().filter(|c| c.model == model).count();
    assert_eq!(
        (count("detector"), count("classifier")),
        (1, 3),
        "{calls:?}"
    );
    calls
        .iter()
        .map(|call| {
            let traceparent = call
                .traceparent
                .as_deref()
                .unwrap_or_else(|| panic!("no traceparent: {call:?}"));
            let (trace, parent) = parse_traceparent(traceparent);
            assert_eq!(trace, TRACE_ID, "{call:?}");
            assert_ne!(
                parent, CALLER_SPAN,
                "the backend's own span goes out: {call:?}"
            );
            parent
        })
        .collect()
}

/// The log line of the retried classifier call names the request and its trace.
pub fn assert_log_line_names_the_request(lines: &Lines, request_id: &str) {
    let text = lines.text();
    let line = text
        .lines()
        .find(|l| l.contains("model call failed; retrying"))
        .unwrap_or_else(|| panic!("no retry line in the logs:\n{text}"));
    assert!(line.contains(&format!("request_id={request_id}")), "{line}");
    assert!(line.contains(&format!("trace_id={TRACE_ID}")), "{line}");
    assert!(line.contains("step=2"), "{line}");
    assert!(line.contains("model=classifier"), "{line}");
}

/// Log lines written to memory.
#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}
