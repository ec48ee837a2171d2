//! The process's subscriber: log lines, trace context, optional OTLP export.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use serde::Deserialize;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, fmt};

/// How long the last spans may take to leave when the process stops.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Settings section `[telemetry]`. Every key has a default: nothing is exported unless
/// `otlp_endpoint` is set.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySettings {
    /// The OTLP/HTTP receiver (an OpenTelemetry collector, Jaeger, Tempo, ...), such as
    /// `http://otel-collector:4318`: finished spans are POSTed to `{otlp_endpoint}/v1/traces`
    /// as protobuf (a URL that already ends in `/v1/traces` is used as it is). Unset: no
    /// export; an incoming `traceparent` is continued and passed on all the same. Headers
    /// the receiver wants (an API key) come from `OTEL_EXPORTER_OTLP_HEADERS`
    /// (`key=value,key2=value2`).
    pub otlp_endpoint: Option<String>,
    /// The exported spans' `service.name`.
    pub service_name: String,
    /// The fraction of new traces exported, from 0.0 to 1.0. A request that comes with a
    /// `traceparent` follows its caller's decision (the flag `-01`: exported) instead.
    pub sample_ratio: f64,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: "nachet-backend".to_owned(),
            sample_ratio: 1.0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid setting telemetry.{setting}: {reason}")]
    Setting {
        setting: &'static str,
        reason: String,
    },
    #[error("a tracing subscriber is already installed in this process: {0}")]
    AlreadyInstalled(String),
}

/// Keeps the exporter running; dropping it sends the spans not yet sent (waiting at most a
/// few seconds) and stops exporting. Keep it until the process ends.
#[must_use = "dropping the guard stops the export at once"]
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl TelemetryGuard {
    /// Sends the finished spans not yet sent, now (they go every few seconds otherwise).
    /// Blocks the calling thread until they are sent: not on an async executor's thread.
    pub fn flush(&self) {
        if let Err(error) = self.provider.force_flush() {
            tracing::warn!(%error, "could not send the last spans to the OTLP receiver");
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Err(error) = self.provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
            tracing::warn!(%error, "could not send the last spans to the OTLP receiver");
        }
    }
}

/// Installs the process's subscriber, writing log lines to standard output (with colours
/// when it is a terminal). See the [crate documentation](crate).
pub fn init(settings: &TelemetrySettings) -> Result<TelemetryGuard, TelemetryError> {
    use std::io::IsTerminal;
    install(settings, std::io::stdout, std::io::stdout().is_terminal())
}

/// [`init`] with the log lines written to `writer` instead (tests read them).
pub fn init_with_writer<W>(
    settings: &TelemetrySettings,
    writer: W,
) -> Result<TelemetryGuard, TelemetryError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    install(settings, writer, false)
}

fn install<W>(
    settings: &TelemetrySettings,
    writer: W,
    ansi: bool,
) -> Result<TelemetryGuard, TelemetryError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let provider = tracer_provider(settings)?;
    let exporting = settings.endpoint().is_some();
    // `tracing-actix-web` reads the incoming `traceparent` with the global propagator, and
    // `inject` writes with it.
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let tracer = provider.tracer(env!("CARGO_PKG_NAME"));
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::registry()
        .with(filter)
        // The default format writes, before each message, every span it is in with its
        // fields: a request's `request_id` and `trace_id` are on each of its lines.
        .with(fmt::layer().with_writer(writer).with_ansi(ansi))
        .with(tracing_opentelemetry::layer().with_tracer(tracer))
        .try_init()
        .map_err(|e| TelemetryError::AlreadyInstalled(e.to_string()))?;
    if exporting {
        tracing::info!(
            endpoint = settings.endpoint(),
            service = %settings.service_name,
            sample_ratio = settings.sample_ratio,
            "exporting traces (OTLP over HTTP)"
        );
    }
    Ok(TelemetryGuard { provider })
}

impl TelemetrySettings {
    fn endpoint(&self) -> Option<&str> {
        self.otlp_endpoint
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty())
    }
}

/// Every span gets a trace context (so that it can be passed on), whether exported or not.
fn tracer_provider(settings: &TelemetrySettings) -> Result<SdkTracerProvider, TelemetryError> {
    if !(0.0..=1.0).contains(&settings.sample_ratio) {
        return Err(TelemetryError::Setting {
            setting: "sample_ratio",
            reason: format!("{} is not between 0.0 and 1.0", settings.sample_ratio),
        });
    }
    if settings.service_name.trim().is_empty() {
        return Err(TelemetryError::Setting {
            setting: "service_name",
            reason: "it is empty".to_owned(),
        });
    }
    let mut builder = SdkTracerProvider::builder()
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            settings.sample_ratio,
        ))))
        .with_resource(
            Resource::builder()
                .with_service_name(settings.service_name.clone())
                .build(),
        );
    if let Some(endpoint) = settings.endpoint() {
        let invalid = |reason: String| TelemetryError::Setting {
            setting: "otlp_endpoint",
            reason,
        };
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(invalid(format!(
                "{endpoint:?} is not an http:// or https:// URL"
            )));
        }
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(traces_url(endpoint))
            .build()
            .map_err(|e| invalid(format!("{endpoint:?}: {e}")))?;
        builder = builder.with_batch_exporter(exporter);
    }
    Ok(builder.build())
}

/// Where the spans are POSTed: the OTLP/HTTP path of traces under the receiver's URL.
fn traces_url(endpoint: &str) -> String {
    let endpoint = endpoint.trim_end_matches('/');
    if endpoint.ends_with("/v1/traces") {
        endpoint.to_owned()
    } else {
        format!("{endpoint}/v1/traces")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_path_is_added_once() {
        assert_eq!(
            traces_url("http://collector:4318"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://collector:4318/"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("https://otlp.example.org/v1/traces"),
            "https://otlp.example.org/v1/traces"
        );
    }

    #[test]
    fn settings_have_defaults_and_refuse_unknown_keys() {
        let settings: TelemetrySettings = serde_json::from_str("{}").unwrap();
        assert_eq!(settings, TelemetrySettings::default());
        assert_eq!(settings.service_name, "nachet-backend");
        assert!(serde_json::from_str::<TelemetrySettings>(r#"{"endpoint": "x"}"#).is_err());
    }

    #[test]
    fn invalid_settings_are_named() {
        let refused = |settings: TelemetrySettings| match tracer_provider(&settings) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted {settings:?}"),
        };
        let message = refused(TelemetrySettings {
            sample_ratio: 1.5,
            ..Default::default()
        });
        assert!(message.contains("telemetry.sample_ratio"), "{message}");
        let message = refused(TelemetrySettings {
            otlp_endpoint: Some("collector:4318".into()),
            ..Default::default()
        });
        assert!(message.contains("telemetry.otlp_endpoint"), "{message}");
    }
}
