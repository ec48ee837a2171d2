//! A trace of one `/inf` reaches an OTLP/HTTP receiver: the request's span continues the
//! caller's `traceparent`, with a span per pipeline step and per model call inside it, and
//! the models receive the trace context. Alone in its test binary: the subscriber, with its
//! exporter, is global to the process.

mod common;
mod tracing_support;

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use telemetry::TelemetrySettings;
use tracing_support::*;

/// A span as received, with the `service.name` of its resource.
#[derive(Clone, Debug)]
struct Received {
    service: String,
    span: Span,
}

/// An OTLP/HTTP receiver: `POST /v1/traces`, protobuf.
struct Receiver {
    url: String,
    spans: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start() -> Self {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = web::Data::new(spans.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(web::PayloadConfig::new(64 << 20))
                .route("/v1/traces", web::post().to(receive))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        Self { url, spans }
    }

    /// The spans of trace `trace_id` received so far.
    fn trace(&self, trace_id: &str) -> Vec<Received> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .filter(|r| hex(&r.span.trace_id) == trace_id)
            .cloned()
            .collect()
    }
}

async fn receive(
    request: actix_web::HttpRequest,
    body: web::Bytes,
    spans: web::Data<Arc<Mutex<Vec<Received>>>>,
) -> HttpResponse {
    let content_type = request
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type != "application/x-protobuf" {
        return HttpResponse::UnsupportedMediaType().finish();
    }
    let Ok(export) = ExportTraceServiceRequest::decode(body) else {
        return HttpResponse::BadRequest().finish();
    };
    let mut spans = spans.lock().unwrap();
    for resource_spans in export.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|a| a.key == "service.name")
            .and_then(|a| text(a.value.as_ref()?.value.as_ref()?))
            .unwrap_or_default();
        for scope_spans in resource_spans.scope_spans {
            spans.extend(scope_spans.spans.into_iter().map(|span| Received {
                service: service.clone(),
                span,
            }));
        }
    }
    HttpResponse::Ok()
        .content_type("application/x-protobuf")
        .body(ExportTraceServiceResponse::default().encode_to_vec())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::StringValue(s) => Some(s.clone()),
        Value::IntValue(i) => Some(i.to_string()),
        _ => None,
    }
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| text(a.value.as_ref()?.value.as_ref()?))
}

#[tokio::test]
async fn a_trace_of_one_inf_reaches_the_otlp_receiver_with_a_span_per_step_and_the_models_carry_it()
{
    let receiver = Receiver::start().await;
    let models = StubModels::start().await;
    let lines = Lines::default();
    let writer = lines.clone();
    let settings = TelemetrySettings {
        otlp_endpoint: Some(receiver.url.clone()),
        service_name: "nachet-under-test".into(),
        sample_ratio: 1.0,
    };
    let telemetry =
        Arc::new(telemetry::init_with_writer(&settings, move || writer.clone()).unwrap());
    let t = backend_on(&models).await;

    let request_id = traced_inf(&t).await;

    // The request's span ends once its answer is sent; the exporter sends every few
    // seconds, or when flushed (which blocks: not on this runtime's thread).
    let deadline = Instant::now() + Duration::from_secs(20);
    let spans = loop {
        let flushing = telemetry.clone();
        tokio::task::spawn_blocking(move || flushing.flush())
            .await
            .unwrap();
        let spans = receiver.trace(TRACE_ID);
        if spans.iter().any(|r| r.span.kind == SpanKind::Server as i32) {
            break spans;
        }
        assert!(
            Instant::now() < deadline,
            "the request's span never came: {spans:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let names: Vec<&str> = spans.iter().map(|r| r.span.name.as_str()).collect();
    assert!(
        spans.iter().all(|r| r.service == "nachet-under-test"),
        "{spans:#?}"
    );

    // The request continues the caller's span.
    let server: Vec<&Span> = spans
        .iter()
        .map(|r| &r.span)
        .filter(|s| s.kind == SpanKind::Server as i32)
        .collect();
    assert_eq!(server.len(), 1, "{names:?}");
    let server = server[0];
    assert_eq!(server.name, "POST /inf");
    assert_eq!(hex(&server.parent_span_id), CALLER_SPAN);
    assert_eq!(
        attribute(server, "request_id").as_deref(),
        Some(request_id.as_str())
    );

    // One span per step, in the request's, naming the step, the model and its kind.
    let steps: Vec<&Span> = spans
        .iter()
        .map(|r| &r.span)
        .filter(|s| s.name == "pipeline step")
        .collect();
    let mut described: Vec<(String, String, String, String)> = steps
        .iter()
        .map(|s| {
            assert_eq!(s.parent_span_id, server.span_id, "{s:?}");
            (
                attribute(s, "step").unwrap(),
                attribute(s, "model").unwrap(),
                attribute(s, "kind").unwrap(),
                attribute(s, "pipeline").unwrap(),
            )
        })
        .collect();
    described.sort();
    let step = |n: &str, model: &str, kind: &str| {
        (n.into(), model.into(), kind.into(), PIPELINE.to_owned())
    };
    assert_eq!(
        described,
        vec![
            step("1", "detector", "seed_detector"),
            step("2", "classifier", "classifier")
        ],
        "{names:?}"
    );

    // A span per model call (the detector's, one per crop), each in its step's span.
    let calls: Vec<&Span> = spans
        .iter()
        .map(|r| &r.span)
        .filter(|s| s.name == "model call")
        .collect();
    assert_eq!(calls.len(), 3, "{names:?}");
    for call in &calls {
        let step = steps
            .iter()
            .find(|s| s.span_id == call.parent_span_id)
            .unwrap_or_else(|| panic!("a model call outside the steps: {call:?}"));
        assert_eq!(attribute(call, "model"), attribute(step, "model"));
    }

    // The models received the trace context of their call's span.
    let call_ids: Vec<String> = calls.iter().map(|s| hex(&s.span_id)).collect();
    for parent in assert_models_continued_the_trace(&models) {
        assert!(
            call_ids.contains(&parent),
            "{parent} is no model call span ({call_ids:?})"
        );
    }

    assert_log_line_names_the_request(&lines, &request_id);
    t.backend.stop().await;
}
