//! What the backend tells operators about itself, beside `/metrics`: log lines and traces.
//!
//! - [`init`] installs the one `tracing` subscriber of the process: log lines on standard
//!   output (filtered by `RUST_LOG`, `info` by default), each carrying the fields of the
//!   spans it was written in — a request's `request_id` and `trace_id` among them — and,
//!   always, an OpenTelemetry layer that gives every span a W3C trace context, so that an
//!   incoming `traceparent` is continued (`tracing-actix-web` reads it) and outgoing calls
//!   carry it. With `[telemetry] otlp_endpoint` set, finished spans are exported there
//!   (OTLP over HTTP/protobuf).
//! - [`inject`] / [`WithTraceContext`] are where the trace context goes out: every adapter
//!   that calls another service (model endpoints, the DICOM server, the ML app) sends its
//!   requests through them, so that the callee's spans join the caller's trace.
//!
//! The domain crates know none of this: they open `tracing` spans, nothing more.

mod init;

pub use init::{TelemetryError, TelemetryGuard, TelemetrySettings, init, init_with_writer};

use opentelemetry::propagation::Injector;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Writes the W3C trace context of the current span (`traceparent`, and `tracestate` when it
/// has one) into `headers`. Writes nothing when the span has no trace context (outside any
/// span, or when [`init`] was not called, as in most tests).
pub fn inject(headers: &mut HeaderMap) {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(headers));
    });
}

/// `request.with_trace_context()`: the request carries the current span's trace context
/// (see [`inject`]). Call it where the request is built, inside the span of the call.
pub trait WithTraceContext {
    fn with_trace_context(self) -> Self;
}

impl WithTraceContext for reqwest::RequestBuilder {
    fn with_trace_context(self) -> Self {
        let mut headers = HeaderMap::new();
        inject(&mut headers);
        if headers.is_empty() {
            self
        } else {
            self.headers(headers)
        }
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}
