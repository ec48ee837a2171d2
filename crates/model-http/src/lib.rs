//! Model endpoints over HTTP: the adapter of [`inference::ModelClient`].
//!
//! One module per model kind of contract 1.5, each with its exact body and answer shape.
//! Every call carries `Content-Type: <content_type>`, `Authorization: Bearer <api_key>` and
//! the routing header named by the model's `deployment_platform`, valued with its name,
//! and the W3C trace context of the call (`traceparent`; see the `telemetry` crate).
//!
//! Architecture invariant: this crate knows the wire formats and nothing of what the
//! pipeline does with the answers (that is `inference`'s runner).

mod classifier;
mod detector;
mod one_shot;
mod test_model;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use inference::{DetectedBox, ModelCallError, ModelClient, RankedLabel};
use pipeline::{ModelDefinition, ModelKind};
use secrecy::ExposeSecret;
use serde::Deserialize;
use telemetry::WithTraceContext;

/// Calls model endpoints with one shared connection pool.
#[derive(Clone)]
pub struct HttpModelClient {
    http: reqwest::Client,
    /// Calls sent again because their pooled connection had been closed by the server.
    stale_connection_retries: Arc<AtomicU64>,
}

impl HttpModelClient {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .expect("a reqwest client with static settings builds");
        Self {
            http,
            stale_connection_retries: Arc::default(),
        }
    }

    /// How many calls were sent again on a fresh connection because the server had closed
    /// the pooled one they were sent on.
    pub fn stale_connection_retries(&self) -> u64 {
        self.stale_connection_retries.load(Ordering::Relaxed)
    }

    /// Sends a request once more, at once, when it failed on a pooled keep-alive connection
    /// that the server had closed (a race every keep-alive client meets under load). The
    /// calls are idempotent; this is not one of the model's `retries`.
    async fn send(
        &self,
        model: &ModelDefinition,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, reqwest::Error> {
        let again = request.try_clone();
        match request.send().await {
            Err(error) if is_stale_connection(&error) && again.is_some() => {
                self.stale_connection_retries
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(model = %model.name, %error, "the model server had closed a pooled connection; sending again");
                again.expect("checked above").send().await
            }
            other => other,
        }
    }

    /// POSTs `body` to the model, retrying transient failures `model.retries` times, and
    /// returns the answer's bytes when it is a 2xx.
    async fn post(&self, model: &ModelDefinition, body: Bytes) -> Result<Bytes, ModelCallError> {
        let attempt = || async {
            let request = self
                .http
                .post(model.endpoint.expose_secret())
                .timeout(model.timeout)
                .header(reqwest::header::CONTENT_TYPE, &model.content_type)
                .bearer_auth(model.api_key.expose_secret())
                .header(model.deployment_platform.as_str(), model.name.as_str())
                .with_trace_context()
                .body(body.clone());
            let response = self
                .send(model, request)
                .await
                .map_err(|e| call_error(model, e))?;
            let status = response.status();
            let bytes = response.bytes().await.map_err(|e| call_error(model, e))?;
            if !status.is_success() {
                let text = String::from_utf8_lossy(&bytes);
                return Err(ModelCallError::Status {
                    status: status.as_u16(),
                    body: text.chars().take(300).collect(),
                });
            }
            Ok(bytes)
        };
        attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(100))
                    .with_max_times(model.retries as usize)
                    .with_jitter(),
            )
            .when(is_transient)
            .notify(|error, wait| {
                tracing::warn!(model = %model.name, %error, ?wait, "model call failed; retrying");
            })
            .await
    }
}

impl Default for HttpModelClient {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl ModelClient for HttpModelClient {
    async fn detect(
        &self,
        model: &ModelDefinition,
        picture_base64: Bytes,
    ) -> Result<Vec<DetectedBox>, ModelCallError> {
        match model.kind {
            ModelKind::SeedDetector => {
                let answer = self.post(model, detector::body(&picture_base64)).await?;
                detector::boxes(&answer)
            }
            ModelKind::OneShotDetector => {
                let answer = self.post(model, detector::body(&picture_base64)).await?;
                one_shot::boxes(&answer)
            }
            ModelKind::Test => Ok(test_model::boxes()),
            other => Err(wrong_kind(model, other, "detect")),
        }
    }

    async fn classify(
        &self,
        model: &ModelDefinition,
        crop_base64: Bytes,
    ) -> Result<Vec<RankedLabel>, ModelCallError> {
        match model.kind {
            ModelKind::Classifier | ModelKind::ReClassifier => {
                let answer = self.post(model, classifier::body(crop_base64)).await?;
                classifier::ranking(&answer)
            }
            other => Err(wrong_kind(model, other, "classify")),
        }
    }
}

fn wrong_kind(model: &ModelDefinition, kind: ModelKind, what: &str) -> ModelCallError {
    ModelCallError::BadResponse(format!(
        "model \"{}\" is a {kind}, which cannot {what}",
        model.name
    ))
}

fn call_error(model: &ModelDefinition, error: reqwest::Error) -> ModelCallError {
    if error.is_timeout() {
        ModelCallError::Timeout(model.timeout)
    } else if error.is_connect() {
        ModelCallError::Unreachable(format!("connection failed: {}", source_chain(&error)))
    } else {
        ModelCallError::Unreachable(source_chain(&error))
    }
}

fn source_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The server closed the pooled connection the request went out on, before answering.
fn is_stale_connection(error: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(hyper) = cause.downcast_ref::<hyper::Error>() {
            return hyper.is_incomplete_message();
        }
        source = cause.source();
    }
    false
}

/// Connection failures, timeouts and 5xx answers may pass on retry; the rest will not.
fn is_transient(error: &ModelCallError) -> bool {
    match error {
        ModelCallError::Timeout(_) | ModelCallError::Unreachable(_) => true,
        ModelCallError::Status { status, .. } => *status >= 500,
        ModelCallError::BadResponse(_) => false,
    }
}

/// A box as the detectors write it: normalized corners.
#[derive(Deserialize)]
struct WireBox {
    #[serde(rename = "box")]
    bbox: WireCorners,
    label: String,
    score: f64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireCorners {
    top_x: f64,
    top_y: f64,
    bottom_x: f64,
    bottom_y: f64,
}

impl From<WireBox> for DetectedBox {
    fn from(b: WireBox) -> Self {
        DetectedBox {
            bbox: inference::NormalizedBox {
                top_x: b.bbox.top_x,
                top_y: b.bbox.top_y,
                bottom_x: b.bbox.bottom_x,
                bottom_y: b.bbox.bottom_y,
            },
            label: b.label,
            score: b.score,
        }
    }
}

fn parse<'a, T: Deserialize<'a>>(answer: &'a [u8], expected: &str) -> Result<T, ModelCallError> {
    serde_json::from_slice(answer).map_err(|e| {
        let text = String::from_utf8_lossy(answer);
        ModelCallError::BadResponse(format!(
            "expected {expected}: {e} (answer began: {:?})",
            text.chars().take(120).collect::<String>()
        ))
    })
}
