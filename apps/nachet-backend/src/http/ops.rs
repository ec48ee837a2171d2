//! What operators watch, beside the instant `GET /health` (liveness):
//!
//! - `GET /ready` (readiness): the database answers, blob storage answers, a catalogue is
//!   loaded — 200, or 503 naming what is not ready;
//! - `GET /metrics`: Prometheus text. HTTP requests by route pattern, method and status, with
//!   latency histograms (the [`observe`] middleware); `/inf` requests worked on and
//!   waiting; series by prediction state; the catalogue version loaded.
//!
//! Every answer carries `X-Request-Id`, the id every log line of its request carries
//! (`request_id`, from `tracing-actix-web`), so that a user's report finds its logs. The
//! lines carry the request's `trace_id` too: the caller's, when the request came with a
//! W3C `traceparent` (the `telemetry` crate continues it, passes it on to the models and
//! exports the spans when `[telemetry] otlp_endpoint` is set).

use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse, get, web};
use datastore::BlobStore;
use dicom_series::PredictionService;
use inference::Admission;
use pipeline::PipelineRegistry;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde_json::json;
use sql_store::SqlStore;

/// Each readiness check gives up after this long (the probe must answer).
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: String,
}

/// What `/ready` and `/metrics` look at, and the metrics themselves.
pub struct Ops {
    store: Arc<SqlStore>,
    blobs: Arc<dyn BlobStore>,
    registry: Arc<PipelineRegistry>,
    admission: Arc<Admission>,
    series: Arc<PredictionService>,
    metrics: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram>,
    inf_working: Gauge,
    inf_waiting: Gauge,
    inf_waiting_bytes: Gauge,
    series_by_state: Family<StateLabels, Gauge>,
    catalogue: Family<VersionLabels, Gauge<i64, AtomicI64>>,
}

impl Ops {
    pub fn new(
        store: Arc<SqlStore>,
        blobs: Arc<dyn BlobStore>,
        registry: Arc<PipelineRegistry>,
        admission: Arc<Admission>,
        series: Arc<PredictionService>,
    ) -> Self {
        let mut metrics = Registry::with_prefix("nachet");
        let requests = Family::<RequestLabels, Counter>::default();
        metrics.register(
            "http_requests",
            "HTTP requests answered, by route pattern, method and status",
            requests.clone(),
        );
        let durations = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
        });
        metrics.register(
            "http_request_duration_seconds",
            "Time from the request's head to the answer's head, by route pattern and method",
            durations.clone(),
        );
        let inf_working = Gauge::default();
        metrics.register(
            "inf_working",
            "/inf requests worked on now",
            inf_working.clone(),
        );
        let inf_waiting = Gauge::default();
        metrics.register(
            "inf_waiting",
            "/inf requests waiting for a slot, bodies unread",
            inf_waiting.clone(),
        );
        let inf_waiting_bytes = Gauge::default();
        metrics.register(
            "inf_waiting_bytes",
            "Declared body bytes of the /inf requests waiting",
            inf_waiting_bytes.clone(),
        );
        let series_by_state = Family::<StateLabels, Gauge>::default();
        metrics.register(
            "series",
            "DICOM series by prediction state",
            series_by_state.clone(),
        );
        let catalogue = Family::<VersionLabels, Gauge<i64, AtomicI64>>::default();
        metrics.register(
            "catalogue_info",
            "The pipeline catalogue version loaded (value 1)",
            catalogue.clone(),
        );
        Self {
            store,
            blobs,
            registry,
            admission,
            series,
            metrics,
            requests,
            durations,
            inf_working,
            inf_waiting,
            inf_waiting_bytes,
            series_by_state,
            catalogue,
        }
    }

    /// Counts one answer. `route` is the route's pattern (`/api/studies/series/{series_id}`),
    /// never the path itself, so that the label set stays small.
    pub fn record(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                method: method.to_owned(),
                status,
            })
            .inc();
        self.durations
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
                method: method.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// What is not ready, if anything.
    async fn not_ready(&self) -> Vec<String> {
        let database = async {
            match tokio::time::timeout(CHECK_TIMEOUT, self.store.ping()).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(format!("database: {e}")),
                Err(_) => Some(format!("database: no answer within {CHECK_TIMEOUT:?}")),
            }
        };
        let blobs = async {
            match tokio::time::timeout(CHECK_TIMEOUT, self.blobs.list("ready-probe/")).await {
                Ok(Ok(_)) => None,
                Ok(Err(e)) => Some(format!("blob storage: {e}")),
                Err(_) => Some(format!("blob storage: no answer within {CHECK_TIMEOUT:?}")),
            }
        };
        let (database, blobs) = tokio::join!(database, blobs);
        let catalogue = self
            .registry
            .current()
            .catalogue_version()
            .is_empty()
            .then(|| "catalogue: no pipeline catalogue is loaded".to_owned());
        [database, blobs, catalogue].into_iter().flatten().collect()
    }

    async fn refresh(&self) {
        self.inf_working.set(self.admission.working() as i64);
        let (waiting, bytes) = self.admission.waiting();
        self.inf_waiting.set(waiting as i64);
        self.inf_waiting_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.catalogue.clear();
        self.catalogue
            .get_or_create(&VersionLabels {
                version: self.registry.current().catalogue_version().to_owned(),
            })
            .set(1);
        match self.series.count_by_state().await {
            Ok(counts) => {
                self.series_by_state.clear();
                for (state, count) in counts {
                    self.series_by_state
                        .get_or_create(&StateLabels {
                            state: state.as_str().to_owned(),
                        })
                        .set(i64::try_from(count).unwrap_or(i64::MAX));
                }
            }
            Err(e) => tracing::warn!("metrics: cannot count the series by state: {e}"),
        }
    }
}

/// The answer's header that names the request in the logs.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Middleware (inside `TracingLogger`, which gives each request its id): counts each answer
/// by route pattern and status, times it, and names the request in its `X-Request-Id`.
pub async fn observe(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let route = request
        .match_pattern()
        .unwrap_or_else(|| "(no route)".to_owned());
    let method = request.method().to_string();
    let request_id = request
        .extensions()
        .get::<tracing_actix_web::RequestId>()
        .map(ToString::to_string);
    let ops = request.app_data::<web::Data<Ops>>().cloned();
    let mut answer = next.call(request).await?;
    if let Some(ops) = ops {
        ops.record(&route, &method, answer.status().as_u16(), started.elapsed());
    }
    if let Some(id) = request_id.and_then(|id| HeaderValue::from_str(&id).ok()) {
        answer.headers_mut().insert(REQUEST_ID, id);
    }
    Ok(answer)
}

pub fn routes(config: &mut web::ServiceConfig) {
    config.service(ready).service(prometheus_metrics);
}

/// Whether this replica can serve: the database and blob storage answer, a catalogue is
/// loaded.
#[utoipa::path(responses(
    (status = 200, description = "Ready"),
    (status = 503, description = "Not ready: `notReady` says what"),
))]
#[get("/ready")]
pub async fn ready(ops: web::Data<Ops>) -> HttpResponse {
    let not_ready = ops.not_ready().await;
    if not_ready.is_empty() {
        HttpResponse::Ok().json(json!({"ready": true}))
    } else {
        HttpResponse::ServiceUnavailable().json(json!({"ready": false, "notReady": not_ready}))
    }
}

/// Prometheus text exposition.
#[utoipa::path(responses((status = 200, content_type = "application/openmetrics-text", description = "OpenMetrics text (Prometheus scrapes it)")))]
#[get("/metrics")]
pub async fn prometheus_metrics(ops: web::Data<Ops>) -> HttpResponse {
    ops.refresh().await;
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &ops.metrics) {
        return HttpResponse::InternalServerError()
            .json(json!({"error": format!("cannot write the metrics: {e}")}));
    }
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(text)
}
