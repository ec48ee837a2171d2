//! Model endpoints over HTTP: the adapter of [`inference::ModelClient`].
//!
//! One module per model kind of contract 1.5, each with its exact body and answer shape.
//! Every call carries `Content-Type: <content_type>`, `Authorization: Bearer <api_key>` and
//! the routing header named by the model's `deployment_platform`, valued with its name.
//!
//! Architecture invariant: this crate knows the wire formats and nothing of what the
//! pipeline does with the answers (that is `inference`'s runner).

mod classifier;
mod detector;
mod one_shot;
mod test_model;

use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use inference::{DetectedBox, ModelCallError, ModelClient, RankedLabel};
use pipeline::{ModelDefinition, ModelKind};
use secrecy::ExposeSecret;
use serde::Deserialize;

/// Calls model endpoints with one shared connection pool.
#[derive(Clone)]
pub struct HttpModelClient {
    http: reqwest::Client,
}

impl HttpModelClient {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .expect("a reqwest client with static settings builds");
        Self { http }
    }

    /// POSTs `body` to the model, retrying transient failures `model.retries` times, and
    /// returns the answer's bytes when it is a 2xx.
    async fn post(
        &self,
        model: &ModelDefinition,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, ModelCallError> {
        let attempt = || async {
            let response = self
                .http
                .post(model.endpoint.expose_secret())
                .timeout(model.timeout)
                .header(reqwest::header::CONTENT_TYPE, &model.content_type)
                .bearer_auth(model.api_key.expose_secret())
                .header(model.deployment_platform.as_str(), model.name.as_str())
                .body(body.clone())
                .send()
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
            Ok(bytes.to_vec())
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
        picture_base64: &str,
    ) -> Result<Vec<DetectedBox>, ModelCallError> {
        match model.kind {
            ModelKind::SeedDetector => {
                let answer = self.post(model, detector::body(picture_base64)).await?;
                detector::boxes(&answer)
            }
            ModelKind::OneShotDetector => {
                let answer = self.post(model, detector::body(picture_base64)).await?;
                one_shot::boxes(&answer)
            }
            ModelKind::Test => Ok(test_model::boxes()),
            other => Err(wrong_kind(model, other, "detect")),
        }
    }

    async fn classify(
        &self,
        model: &ModelDefinition,
        crop_base64: &str,
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
