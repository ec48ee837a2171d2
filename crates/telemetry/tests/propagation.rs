//! The subscriber without OTLP export (the default): an incoming trace is continued and
//! passed on, and each log line carries the fields of its spans. One test: the subscriber is
//! global to the process.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use reqwest::header::HeaderMap;
use telemetry::{TelemetrySettings, WithTraceContext};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Log lines written to memory.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

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
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN: &str = "b7ad6b7169203331";

#[test]
fn without_export_a_trace_is_continued_passed_on_and_named_on_each_log_line() {
    let lines = Lines::default();
    let writer = lines.clone();
    let _guard =
        telemetry::init_with_writer(&TelemetrySettings::default(), move || writer.clone()).unwrap();

    // Outside any span: nothing to pass on.
    let mut headers = HeaderMap::new();
    telemetry::inject(&mut headers);
    assert!(headers.is_empty(), "{headers:?}");

    // A request that came with a trace context, as tracing-actix-web continues it.
    let incoming = HashMap::from([
        (
            "traceparent".to_owned(),
            format!("00-{TRACE_ID}-{CALLER_SPAN}-01"),
        ),
        ("tracestate".to_owned(), "vendor=opaque".to_owned()),
    ]);
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&incoming));
    let request = tracing::info_span!("HTTP request", request_id = "req-42");
    request.set_parent(parent).unwrap();
    let (headers, built) = request.in_scope(|| {
        let step = tracing::info_span!("pipeline step", step = 1);
        step.in_scope(|| {
            tracing::info!("calling the model");
            let mut headers = HeaderMap::new();
            telemetry::inject(&mut headers);
            let built = reqwest::Client::new()
                .post("http://model.invalid/score")
                .with_trace_context()
                .build()
                .unwrap();
            (headers, built)
        })
    });

    let traceparent = headers["traceparent"].to_str().unwrap();
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!((parts[0], parts[1], parts[3]), ("00", TRACE_ID, "01"));
    assert_ne!(parts[2], CALLER_SPAN, "the step's own span id goes out");
    assert_eq!(headers["tracestate"], "vendor=opaque");
    assert_eq!(built.headers()["traceparent"], traceparent);
    assert_eq!(built.headers()["tracestate"], "vendor=opaque");

    let text = lines.text();
    let line = text
        .lines()
        .find(|l| l.contains("calling the model"))
        .unwrap_or_else(|| panic!("no log line: {text}"));
    assert!(
        line.contains("request_id=\"req-42\"") || line.contains("request_id=req-42"),
        "{line}"
    );
    assert!(line.contains("step=1"), "{line}");
}
