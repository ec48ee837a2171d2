//! The metrics operators scrape at `/metrics` (`http/ops.rs` renders them), and where they
//! are measured: at the ports, by decorators the wiring puts around the adapters
//! ([`MeteredModels`], [`MeteredDicomSource`], [`MeteredMlApp`]), so that no domain crate
//! knows of Prometheus; at the HTTP edge (requests, `/inf` admission and outcome); and, at
//! scrape time, from what the services and the store say now.
//!
//! | metric | labels | what |
//! | --- | --- | --- |
//! | `nachet_http_requests_total`, `nachet_http_request_duration_seconds` | route, method (, status) | every answer |
//! | `nachet_inf_requests_total`, `nachet_inf_duration_seconds` | pipeline, outcome | `/inf` after its turn: how it ended, and its work time |
//! | `nachet_inf_queue_wait_seconds` | | time an `/inf` request waited for its turn |
//! | `nachet_inf_refused_total` | reason | `/inf` requests refused with 503 (`queue_full`, `waited_too_long`) |
//! | `nachet_inf_working`, `nachet_inf_waiting`, `nachet_inf_waiting_bytes` | | now |
//! | `nachet_model_call_duration_seconds`, `nachet_model_call_errors_total` | model, kind (, error) | each model endpoint call (one per crop for classifiers) |
//! | `nachet_model_call_sent_bytes_total` | model, kind | base64 bytes sent to models |
//! | `nachet_codec_busy_seconds_total` | | time the codec threads spent on base64, hashing, decoding, encoding |
//! | `nachet_series` | state | DICOM series by prediction state (the shared database's: the same on every replica) |
//! | `nachet_series_jobs`, `nachet_series_jobs_claimed`, `nachet_series_oldest_job_age_seconds` | phase | the durable job queue (the shared database's) |
//! | `nachet_series_phase_duration_seconds`, `nachet_series_phase_total` | phase (series_search, retrieval, upload), outcome | this replica's attempts, phase by phase |
//! | `nachet_series_bytes_total` | direction (retrieved, sent) | series archive bytes this replica moved |
//! | `nachet_catalogue_info` | version | the pipeline catalogue version loaded (value 1) |

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use dicom_series::ports::{
    Archive, DicomSearch, DicomServer, DicomSource, FetchError, MlApp, MlAppEndpoint,
    PredictionRequest, SeriesArchive, SeriesKey, SeriesListing, StudyListing, SubmitError,
};
use inference::{DetectedBox, ModelCallError, ModelClient, RankedLabel};
use pipeline::ModelDefinition;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};

/// Latency buckets, in seconds, for everything from a model call to a series upload.
const BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0,
];

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// A family of histograms with [`BUCKETS`], one per label set.
fn timed<L: Clone + std::hash::Hash + Eq>() -> Family<L, Histogram> {
    Family::new_with_constructor(histogram as fn() -> Histogram)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PipelineLabels {
    pub pipeline: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub model: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelErrorLabels {
    pub model: String,
    pub kind: String,
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseOutcomeLabels {
    pub phase: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    pub direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    pub version: String,
}

/// Every metric of the process, registered once; the handles are cheap clones.
pub struct Metrics {
    pub registry: Registry,
    pub http_requests: Family<RequestLabels, Counter>,
    pub http_durations: Family<RouteLabels, Histogram>,
    pub inf_requests: Family<PipelineLabels, Counter>,
    pub inf_durations: Family<PipelineLabels, Histogram>,
    pub inf_queue_wait: Histogram,
    pub inf_refused: Family<ReasonLabels, Counter>,
    pub inf_working: Gauge,
    pub inf_waiting: Gauge,
    pub inf_waiting_bytes: Gauge,
    pub model_durations: Family<ModelLabels, Histogram>,
    pub model_errors: Family<ModelErrorLabels, Counter>,
    pub model_sent_bytes: Family<ModelLabels, Counter>,
    pub codec_busy_seconds: Counter<f64, AtomicU64>,
    pub series_by_state: Family<StateLabels, Gauge>,
    pub series_jobs: Family<PhaseLabels, Gauge>,
    pub series_jobs_claimed: Gauge,
    pub series_oldest_job_age: Gauge<f64, AtomicU64>,
    pub series_phase_durations: Family<PhaseOutcomeLabels, Histogram>,
    pub series_phases: Family<PhaseOutcomeLabels, Counter>,
    pub series_bytes: Family<DirectionLabels, Counter>,
    pub catalogue: Family<VersionLabels, Gauge<i64, AtomicI64>>,
}

/// Registers `metric` under `name` and gives back a handle to it.
fn registered<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("nachet");
        Self {
            http_requests: registered(
                &mut r,
                "http_requests",
                "HTTP requests answered, by route pattern, method and status",
                Family::default(),
            ),
            http_durations: registered(
                &mut r,
                "http_request_duration_seconds",
                "Time from the request's head to the answer's head, by route pattern and method",
                timed(),
            ),
            inf_requests: registered(
                &mut r,
                "inf_requests",
                "/inf requests that got their turn, by pipeline and how they ended",
                Family::default(),
            ),
            inf_durations: registered(
                &mut r,
                "inf_duration_seconds",
                "/inf work time after its turn (body, checks, models, storage), by pipeline and outcome",
                timed(),
            ),
            inf_queue_wait: registered(
                &mut r,
                "inf_queue_wait_seconds",
                "Time an /inf request waited for its turn, its body unread",
                histogram(),
            ),
            inf_refused: registered(
                &mut r,
                "inf_refused",
                "/inf requests refused with 503 before their body was read, by reason",
                Family::default(),
            ),
            inf_working: registered(
                &mut r,
                "inf_working",
                "/inf requests worked on now",
                Gauge::default(),
            ),
            inf_waiting: registered(
                &mut r,
                "inf_waiting",
                "/inf requests waiting for a slot, bodies unread",
                Gauge::default(),
            ),
            inf_waiting_bytes: registered(
                &mut r,
                "inf_waiting_bytes",
                "Declared body bytes of the /inf requests waiting",
                Gauge::default(),
            ),
            model_durations: registered(
                &mut r,
                "model_call_duration_seconds",
                "Model endpoint calls (one per crop for classifiers), by model and kind",
                timed(),
            ),
            model_errors: registered(
                &mut r,
                "model_call_errors",
                "Failed model endpoint calls, by model, kind and error (timeout, unreachable, status, bad_response)",
                Family::default(),
            ),
            model_sent_bytes: registered(
                &mut r,
                "model_call_sent_bytes",
                "Base64 picture and crop bytes sent to model endpoints",
                Family::default(),
            ),
            codec_busy_seconds: registered(
                &mut r,
                "codec_busy_seconds",
                "Time the codec threads spent on base64, hashing, decoding and encoding",
                Counter::default(),
            ),
            series_by_state: registered(
                &mut r,
                "series",
                "DICOM series by prediction state (the shared database's)",
                Family::default(),
            ),
            series_jobs: registered(
                &mut r,
                "series_jobs",
                "Series prediction jobs in the durable queue, by phase (the shared database's)",
                Family::default(),
            ),
            series_jobs_claimed: registered(
                &mut r,
                "series_jobs_claimed",
                "Series prediction jobs some worker holds a lease on",
                Gauge::default(),
            ),
            series_oldest_job_age: registered(
                &mut r,
                "series_oldest_job_age_seconds",
                "Age of the oldest job in the queue (0 when it is empty)",
                Gauge::default(),
            ),
            series_phase_durations: registered(
                &mut r,
                "series_phase_duration_seconds",
                "Time of each phase of this replica's series attempts (series_search, retrieval, upload), by outcome",
                timed(),
            ),
            series_phases: registered(
                &mut r,
                "series_phase",
                "This replica's series attempt phases, by phase and outcome (ok, transient, permanent)",
                Family::default(),
            ),
            series_bytes: registered(
                &mut r,
                "series_bytes",
                "Series archive bytes this replica retrieved from DICOM servers and sent to ML apps",
                Family::default(),
            ),
            catalogue: registered(
                &mut r,
                "catalogue_info",
                "The pipeline catalogue version loaded (value 1)",
                Family::default(),
            ),
            // Last: every field above borrowed it to register its metric.
            registry: r,
        }
    }

    pub fn record_http(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        self.http_requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                method: method.to_owned(),
                status,
            })
            .inc();
        self.http_durations
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
                method: method.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// An `/inf` request that got its turn: `outcome` is `ok` or what ended it.
    pub fn record_inf(&self, pipeline: &str, outcome: &str, elapsed: Duration) {
        let labels = PipelineLabels {
            pipeline: pipeline.to_owned(),
            outcome: outcome.to_owned(),
        };
        self.inf_requests.get_or_create(&labels).inc();
        self.inf_durations
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    fn record_phase(&self, phase: &str, outcome: &str, elapsed: Duration) {
        let labels = PhaseOutcomeLabels {
            phase: phase.to_owned(),
            outcome: outcome.to_owned(),
        };
        self.series_phases.get_or_create(&labels).inc();
        self.series_phase_durations
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    fn add_series_bytes(&self, direction: &str, bytes: u64) {
        self.series_bytes
            .get_or_create(&DirectionLabels {
                direction: direction.to_owned(),
            })
            .inc_by(bytes);
    }
}

/// [`ModelClient`] with each call timed and counted.
pub struct MeteredModels {
    pub inner: Arc<dyn ModelClient>,
    pub metrics: Arc<Metrics>,
}

impl MeteredModels {
    fn record<T>(
        &self,
        model: &ModelDefinition,
        sent: usize,
        started: Instant,
        result: &Result<T, ModelCallError>,
    ) {
        let labels = ModelLabels {
            model: model.name.clone(),
            kind: model.kind.as_str().to_owned(),
        };
        self.metrics
            .model_durations
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        self.metrics
            .model_sent_bytes
            .get_or_create(&labels)
            .inc_by(sent as u64);
        if let Err(error) = result {
            let error = match error {
                ModelCallError::Timeout(_) => "timeout",
                ModelCallError::Unreachable(_) => "unreachable",
                ModelCallError::Status { .. } => "status",
                ModelCallError::BadResponse(_) => "bad_response",
            };
            self.metrics
                .model_errors
                .get_or_create(&ModelErrorLabels {
                    model: labels.model,
                    kind: labels.kind,
                    error: error.to_owned(),
                })
                .inc();
        }
    }
}

#[async_trait]
impl ModelClient for MeteredModels {
    async fn detect(
        &self,
        model: &ModelDefinition,
        picture_base64: Bytes,
    ) -> Result<Vec<DetectedBox>, ModelCallError> {
        let (started, sent) = (Instant::now(), picture_base64.len());
        let result = self.inner.detect(model, picture_base64).await;
        self.record(model, sent, started, &result);
        result
    }

    async fn classify(
        &self,
        model: &ModelDefinition,
        crop_base64: Bytes,
    ) -> Result<Vec<RankedLabel>, ModelCallError> {
        let (started, sent) = (Instant::now(), crop_base64.len());
        let result = self.inner.classify(model, crop_base64).await;
        self.record(model, sent, started, &result);
        result
    }
}

fn fetch_outcome<T>(result: &Result<T, FetchError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(FetchError::Transient(_)) => "transient",
        Err(FetchError::Permanent(_)) => "permanent",
    }
}

/// The DICOM server's ports, with the series search and retrieval phases timed and counted.
pub struct MeteredDicomSource<S> {
    pub inner: S,
    pub metrics: Arc<Metrics>,
}

#[async_trait]
impl<S: DicomSource + DicomSearch> DicomSource for MeteredDicomSource<S> {
    async fn find_series(
        &self,
        server: &DicomServer,
        series: &SeriesKey,
    ) -> Result<Option<SeriesListing>, FetchError> {
        let started = Instant::now();
        let result = self.inner.find_series(server, series).await;
        self.metrics
            .record_phase("series_search", fetch_outcome(&result), started.elapsed());
        result
    }

    async fn retrieve_series(
        &self,
        server: &DicomServer,
        series: &SeriesKey,
        archive: SeriesArchive,
    ) -> Result<Archive, FetchError> {
        let started = Instant::now();
        let result = self.inner.retrieve_series(server, series, archive).await;
        self.metrics
            .record_phase("retrieval", fetch_outcome(&result), started.elapsed());
        if let Ok(archive) = &result {
            self.metrics.add_series_bytes("retrieved", archive.size);
        }
        result
    }
}

#[async_trait]
impl<S: DicomSource + DicomSearch> DicomSearch for MeteredDicomSource<S> {
    async fn search_studies(
        &self,
        server: &DicomServer,
        patient_id: &str,
    ) -> Result<Vec<StudyListing>, FetchError> {
        self.inner.search_studies(server, patient_id).await
    }

    async fn search_series(
        &self,
        server: &DicomServer,
        study_instance_uid: &str,
    ) -> Result<Vec<SeriesListing>, FetchError> {
        self.inner.search_series(server, study_instance_uid).await
    }
}

/// [`MlApp`] with each upload timed and counted.
pub struct MeteredMlApp {
    pub inner: Arc<dyn MlApp>,
    pub metrics: Arc<Metrics>,
}

#[async_trait]
impl MlApp for MeteredMlApp {
    async fn submit(
        &self,
        endpoint: &MlAppEndpoint,
        request: &PredictionRequest,
        archive: &Archive,
    ) -> Result<(), SubmitError> {
        let started = Instant::now();
        let result = self.inner.submit(endpoint, request, archive).await;
        let outcome = match &result {
            Ok(()) => "ok",
            Err(SubmitError::Transient(_)) => "transient",
            Err(_) => "permanent",
        };
        self.metrics
            .record_phase("upload", outcome, started.elapsed());
        if result.is_ok() {
            self.metrics.add_series_bytes("sent", archive.size);
        }
        result
    }
}
