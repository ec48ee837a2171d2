//! Without `[telemetry] otlp_endpoint` (the default), `/inf` works as before and the trace
//! context still flows: the caller's `traceparent` is continued to the models, and each log
//! line of the request names it. Alone in its test binary: the subscriber is global to the
//! process.

mod common;
mod tracing_support;

use telemetry::TelemetrySettings;
use tracing_support::*;

#[tokio::test]
async fn without_export_the_caller_s_trace_still_reaches_the_models_and_the_log_lines() {
    let models = StubModels::start().await;
    let lines = Lines::default();
    let writer = lines.clone();
    let _telemetry =
        telemetry::init_with_writer(&TelemetrySettings::default(), move || writer.clone()).unwrap();
    let t = backend_on(&models).await;

    let request_id = traced_inf(&t).await;

    assert_models_continued_the_trace(&models);
    assert_log_line_names_the_request(&lines, &request_id);
    t.backend.stop().await;
}
