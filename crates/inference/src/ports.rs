//! What the runner needs from model endpoints.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pipeline::ModelDefinition;

/// Box corners as fractions (0..1) of the picture's width and height.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NormalizedBox {
    pub top_x: f64,
    pub top_y: f64,
    pub bottom_x: f64,
    pub bottom_y: f64,
}

/// A label with its score, as a classifier ranks them (best first).
#[derive(Clone, Debug, PartialEq)]
pub struct RankedLabel {
    pub label: String,
    pub score: f64,
}

/// A box found by a detector.
#[derive(Clone, Debug, PartialEq)]
pub struct DetectedBox {
    pub bbox: NormalizedBox,
    pub label: String,
    pub score: f64,
}

/// Why one call to a model did not give a usable answer.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ModelCallError {
    #[error("did not answer within {0:?}")]
    Timeout(Duration),
    #[error("could not be reached: {0}")]
    Unreachable(String),
    #[error("answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("answered in an unexpected format: {0}")]
    BadResponse(String),
}

/// Calls model endpoints, speaking each model kind's wire format (contract 1.5).
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait ModelClient: Send + Sync {
    /// Whole-picture models (seed detector, one-shot detector, test): boxes out.
    /// `picture_base64` is the picture's base64 text (often a view of the request's body).
    async fn detect(
        &self,
        model: &ModelDefinition,
        picture_base64: Bytes,
    ) -> Result<Vec<DetectedBox>, ModelCallError>;

    /// Per-crop models (classifier, re-classifier): a ranking, best first.
    /// `crop_base64` is the crop's base64 text.
    async fn classify(
        &self,
        model: &ModelDefinition,
        crop_base64: Bytes,
    ) -> Result<Vec<RankedLabel>, ModelCallError>;
}
