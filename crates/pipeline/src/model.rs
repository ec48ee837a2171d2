use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// How long a model call may take when its definition does not say.
pub const DEFAULT_MODEL_TIMEOUT: Duration = Duration::from_secs(30);

/// What a model does and which wire format it speaks (contract 1.5).
///
/// The reference system inferred this from the model's name; here it is an explicit field
/// of the model's definition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Whole picture in, boxes labelled "seed" out; the next model gets one crop per box.
    SeedDetector,
    /// One crop in, a ranking of species out; labels every box.
    Classifier,
    /// As the classifier, but only for boxes whose label is in `reclassify_labels`.
    ReClassifier,
    /// Whole picture in, labelled boxes out (`[{"boxes": [...]}]`); final.
    OneShotDetector,
    /// Sends nothing; one fixed box labelled `Ambrosia artemisiifolia`, score 1.0; final.
    Test,
}

impl ModelKind {
    pub const ALL: [ModelKind; 5] = [
        ModelKind::SeedDetector,
        ModelKind::Classifier,
        ModelKind::ReClassifier,
        ModelKind::OneShotDetector,
        ModelKind::Test,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::SeedDetector => "seed_detector",
            ModelKind::Classifier => "classifier",
            ModelKind::ReClassifier => "re_classifier",
            ModelKind::OneShotDetector => "one_shot_detector",
            ModelKind::Test => "test",
        }
    }

    /// Models of this kind look at the whole picture and produce boxes.
    pub fn produces_boxes(self) -> bool {
        matches!(
            self,
            ModelKind::SeedDetector | ModelKind::OneShotDetector | ModelKind::Test
        )
    }

    /// Models of this kind need boxes from an earlier step.
    pub fn needs_boxes(self) -> bool {
        matches!(self, ModelKind::Classifier | ModelKind::ReClassifier)
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ModelKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ModelKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = ModelKind::ALL.iter().map(|k| k.as_str()).collect();
                format!(
                    "unknown model kind \"{s}\" (known kinds: {})",
                    known.join(", ")
                )
            })
    }
}

/// Descriptive fields of a model, shown to people, never used to call it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelMetadata {
    pub task: String,
    pub endpoint_name: String,
    pub description: String,
    pub created_by: String,
    pub creation_date: String,
    pub job_name: String,
    pub dataset_description: String,
    pub accuracy: Option<f64>,
}

/// One model endpoint, decrypted and ready to call.
///
/// `endpoint` and `api_key` are secrets: `Debug` never prints them.
#[derive(Clone)]
pub struct ModelDefinition {
    pub name: String,
    pub version: String,
    pub kind: ModelKind,
    pub endpoint: SecretString,
    pub api_key: SecretString,
    /// Sent as `Content-Type`.
    pub content_type: String,
    /// The *name* of the routing header; its value is the model's name
    /// (Azure ML: `azureml-model-deployment`).
    pub deployment_platform: String,
    pub timeout: Duration,
    /// How many times a failed call is retried (transient failures only).
    pub retries: u32,
    /// For [`ModelKind::ReClassifier`]: the labels whose boxes it re-classifies.
    pub reclassify_labels: BTreeSet<String>,
    /// For per-crop models: how each crop is encoded before it is sent.
    pub crop_encoding: CropEncoding,
    pub metadata: ModelMetadata,
}

/// How a crop is encoded for a per-crop model (classifier, re-classifier).
///
/// Crops are encoded once per box and request, so the choice is a trade between the
/// server's CPU and the bytes sent across the network to the model. Lossless choices give
/// the model the same pixels whatever their compression.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CropEncoding {
    /// The picture's own format (contract 1.5); a PNG crop at [`PngCompression::Balanced`].
    #[default]
    Source,
    /// PNG (lossless) at the given compression.
    Png(PngCompression),
    /// JPEG at quality 90 (lossy: the model sees other pixels than the picture's).
    Jpeg,
}

/// PNG compression of a crop: more compression, fewer bytes, more CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PngCompression {
    /// Fast deflate, no row filter: the most bytes (about three times `Balanced`'s for a
    /// photo's crop), and no less CPU: deflate has all those bytes to go through.
    Fast,
    /// Fast deflate, each row stored as its difference from the row above (PNG's Up
    /// filter): a photo's crop in about a third of `Fast`'s bytes, in the least CPU (a
    /// 638 x 559 crop: 3.0 ms, against 3.7 ms with a filter chosen per row for 2 % fewer
    /// bytes, and 4.3 ms unfiltered).
    #[default]
    Balanced,
    /// Thorough deflate with adaptive row filters: a few percent fewer bytes, several times
    /// the CPU.
    High,
}

impl CropEncoding {
    pub const ALL: [CropEncoding; 5] = [
        CropEncoding::Source,
        CropEncoding::Png(PngCompression::Fast),
        CropEncoding::Png(PngCompression::Balanced),
        CropEncoding::Png(PngCompression::High),
        CropEncoding::Jpeg,
    ];

    /// Its name in a catalogue document (`crop_encoding`).
    pub fn as_str(self) -> &'static str {
        match self {
            CropEncoding::Source => "source",
            CropEncoding::Png(PngCompression::Fast) => "png_fast",
            CropEncoding::Png(PngCompression::Balanced) => "png_balanced",
            CropEncoding::Png(PngCompression::High) => "png_high",
            CropEncoding::Jpeg => "jpeg",
        }
    }
}

impl fmt::Display for CropEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CropEncoding {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CropEncoding::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = CropEncoding::ALL.iter().map(|e| e.as_str()).collect();
                format!(
                    "unknown crop encoding \"{s}\" (known: {})",
                    known.join(", ")
                )
            })
    }
}

impl fmt::Debug for ModelDefinition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelDefinition")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("kind", &self.kind)
            .field("endpoint", &"[secret]")
            .field("api_key", &"[secret]")
            .field("content_type", &self.content_type)
            .field("deployment_platform", &self.deployment_platform)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("crop_encoding", &self.crop_encoding)
            .finish_non_exhaustive()
    }
}
