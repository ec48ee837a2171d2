//! What operators watch, beside the instant `GET /health` (liveness):
//!
//! - `GET /ready` (readiness): the database answers, blob storage answers, a catalogue is
//!   loaded — 200, or 503 naming what is not ready;
//! - `GET /metrics`: Prometheus text of `crate::metrics` (the table there says what each
//!   metric is and where it is measured); HTTP requests are recorded by the [`observe`]
//!   middleware, what is "now" (queues, series by state, the catalogue) when scraped.
//!
//! Every answer carries `X-Request-Id`, the id every log line of its request carries
//! (`request_id`, from `tracing-actix-web`), so that a user's report finds its logs. The
//! lines carry the request's `trace_id` too: the caller's, when the request came with a
//! W3C `traceparent` (the `telemetry` crate continues it, passes it on to the models and
//! exports the spans when `[telemetry] otlp_endpoint` is set).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse, get, web};
use datastore::BlobStore;
use dicom_series::PredictionService;
use inference::{Admission, CodecPool};
use pipeline::PipelineRegistry;
use serde_json::json;
use sql_store::SqlStore;

use crate::metrics::{Metrics, PhaseLabels, StateLabels, VersionLabels};

/// Each readiness check gives up after this long (the probe must answer).
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What `/ready` and `/metrics` look at.
pub struct Ops {
    store: Arc<SqlStore>,
    blobs: Arc<dyn BlobStore>,
    registry: Arc<PipelineRegistry>,
    admission: Arc<Admission>,
    codec: CodecPool,
    series: Arc<PredictionService>,
    metrics: Arc<Metrics>,
}

impl Ops {
    pub fn new(
        store: Arc<SqlStore>,
        blobs: Arc<dyn BlobStore>,
        registry: Arc<PipelineRegistry>,
        admission: Arc<Admission>,
        codec: CodecPool,
        series: Arc<PredictionService>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            store,
            blobs,
            registry,
            admission,
            codec,
            series,
            metrics,
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

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

    /// Sets what is "now": `/inf` queues, codec time, series and jobs, the catalogue.
    async fn refresh(&self) {
        let m = &self.metrics;
        m.inf_working.set(self.admission.working() as i64);
        let (waiting, bytes) = self.admission.waiting();
        m.inf_waiting.set(waiting as i64);
        m.inf_waiting_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        // The pool keeps the total; the counter shows it (set, not added: two scrapes at once
        // cannot count a stretch twice).
        m.codec_busy_seconds
            .inner()
            .store(self.codec.busy().as_secs_f64().to_bits(), Ordering::Relaxed);
        m.catalogue.clear();
        m.catalogue
            .get_or_create(&VersionLabels {
                version: self.registry.current().catalogue_version().to_owned(),
            })
            .set(1);
        match self.series.count_by_state().await {
            Ok(counts) => {
                m.series_by_state.clear();
                for (state, count) in counts {
                    m.series_by_state
                        .get_or_create(&StateLabels {
                            state: state.as_str().to_owned(),
                        })
                        .set(i64::try_from(count).unwrap_or(i64::MAX));
                }
            }
            Err(e) => tracing::warn!("metrics: cannot count the series by state: {e}"),
        }
        match self.store.job_queue_stats().await {
            Ok(stats) => {
                m.series_jobs.clear();
                for (phase, count) in stats.by_phase {
                    m.series_jobs
                        .get_or_create(&PhaseLabels { phase })
                        .set(i64::try_from(count).unwrap_or(i64::MAX));
                }
                m.series_jobs_claimed
                    .set(i64::try_from(stats.claimed).unwrap_or(i64::MAX));
                let age = stats.oldest_created_at.map_or(0.0, |created| {
                    (chrono::Utc::now() - created).num_milliseconds().max(0) as f64 / 1000.0
                });
                m.series_oldest_job_age.set(age);
            }
            Err(e) => tracing::warn!("metrics: cannot read the job queue: {e}"),
        }
    }
}

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
        ops.metrics()
            .record_http(&route, &method, answer.status().as_u16(), started.elapsed());
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
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &ops.metrics.registry) {
        return HttpResponse::InternalServerError()
            .json(json!({"error": format!("cannot write the metrics: {e}")}));
    }
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(text)
}
