//! The three deployments: request body in, JSON response body out (no HTTP here).

use crate::classifier::{self, TOP_N};
use crate::detector;
use crate::picture::{ImageInputError, Picture};
use crate::wire::{DetectorRequest, DetectorResponse, LabelScore, ScoredBox};

/// Object detection: boxes labelled `"seed"`.
pub const SEED_DETECTOR: &str = "seed-detector";
/// Classification of one crop: the top 5 of 15 species.
pub const SEED_CLASSIFIER: &str = "seed-classifier";
/// One-shot detection ("6 seeds"): boxes labelled with species.
pub const SEED_DETECTOR_6: &str = "seed-detector-6";
/// Every deployment name, in this order.
pub const DEPLOYMENTS: [&str; 3] = [SEED_DETECTOR, SEED_CLASSIFIER, SEED_DETECTOR_6];

/// Azure ML's routing header: its value names the deployment that scores the request.
pub const ROUTING_HEADER: &str = "azureml-model-deployment";

/// The label of every box of [`SEED_DETECTOR`].
pub const SEED_LABEL: &str = "seed";

/// A request the deployment cannot score; the message says what is wrong (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

impl From<ImageInputError> for BadRequest {
    fn from(e: ImageInputError) -> Self {
        BadRequest(e.to_string())
    }
}

/// One of the deployments served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Deployment {
    SeedDetector,
    SeedClassifier,
    SeedDetector6,
}

impl Deployment {
    pub const ALL: [Deployment; 3] = [
        Deployment::SeedDetector,
        Deployment::SeedClassifier,
        Deployment::SeedDetector6,
    ];

    /// The deployment of that exact name.
    pub fn from_name(name: &str) -> Option<Deployment> {
        Deployment::ALL.into_iter().find(|d| d.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Deployment::SeedDetector => SEED_DETECTOR,
            Deployment::SeedClassifier => SEED_CLASSIFIER,
            Deployment::SeedDetector6 => SEED_DETECTOR_6,
        }
    }

    /// Scores one request body and returns the JSON response body. CPU-bound (decoding
    /// and image processing): call it off the async executor.
    pub fn score(self, body: &[u8]) -> Result<Vec<u8>, BadRequest> {
        let json = match self {
            Deployment::SeedDetector => {
                serde_json::to_vec(&seed_detector(&detector_picture(body)?))
            }
            Deployment::SeedClassifier => {
                serde_json::to_vec(&seed_classifier(&classifier_picture(body)?))
            }
            Deployment::SeedDetector6 => {
                serde_json::to_vec(&[seed_detector_6(&detector_picture(body)?)])
            }
        };
        Ok(json.expect("response types always serialize"))
    }
}

/// [`SEED_DETECTOR`]'s answer for a picture.
pub fn seed_detector(picture: &Picture) -> DetectorResponse {
    let boxes = detector::detect(picture)
        .into_iter()
        .map(|d| ScoredBox {
            coords: d.normalized(picture.width(), picture.height()),
            label: SEED_LABEL.to_string(),
            score: d.score,
        })
        .collect();
    DetectorResponse { boxes }
}

/// [`SEED_CLASSIFIER`]'s answer for a crop: the [`TOP_N`] best species, best first.
pub fn seed_classifier(crop: &Picture) -> Vec<LabelScore> {
    classifier::classify(crop, crop.bounds())
        .into_iter()
        .take(TOP_N)
        .map(|p| LabelScore {
            label: p.label(),
            score: round_score(p.score),
        })
        .collect()
}

/// [`SEED_DETECTOR_6`]'s answer for a picture (the caller wraps it in a one-item list):
/// each detected box is labelled with the species name (no index) of the classifier's
/// best answer for the box's crop, and scored with the product of the detection score and
/// that answer's probability.
pub fn seed_detector_6(picture: &Picture) -> DetectorResponse {
    let boxes = detector::detect(picture)
        .into_iter()
        .map(|d| {
            let best = classifier::classify(picture, d.rect)
                .into_iter()
                .next()
                .expect("the classifier ranks every species");
            ScoredBox {
                coords: d.normalized(picture.width(), picture.height()),
                label: best.species().to_string(),
                score: round_score(d.score * best.score),
            }
        })
        .collect();
    DetectorResponse { boxes }
}

/// Four decimals; never 0 (a model's score is a positive confidence).
fn round_score(score: f64) -> f64 {
    ((score * 10_000.0).round() / 10_000.0).max(0.0001)
}

/// The picture of a detector request body.
fn detector_picture(body: &[u8]) -> Result<Picture, BadRequest> {
    let request: DetectorRequest = serde_json::from_slice(body).map_err(|e| {
        BadRequest(format!(
            "the body is not a detector request ({e}); expected JSON \
             {{\"input_data\": {{\"columns\": [\"image\"], \"index\": [0], \
             \"data\": [\"<base64 image>\"]}}}}"
        ))
    })?;
    let text = request.image_base64().map_err(BadRequest)?;
    Ok(Picture::from_base64(text.as_bytes())?)
}

/// The picture of a classifier request body: the crop's base64 text as the raw body
/// (also accepted: that text as a JSON string, or a detector-style request).
fn classifier_picture(body: &[u8]) -> Result<Picture, BadRequest> {
    let body = body.trim_ascii();
    match body.first() {
        None => Err(BadRequest(
            "the body is empty; expected the crop image's base64 text".to_string(),
        )),
        Some(b'"') => {
            let text: String = serde_json::from_slice(body).map_err(|e| {
                BadRequest(format!(
                    "the body starts with '\"' but is not a JSON string: {e}"
                ))
            })?;
            Ok(Picture::from_base64(text.as_bytes())?)
        }
        Some(b'{') => detector_picture(body),
        Some(_) => Ok(Picture::from_base64(body)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for d in Deployment::ALL {
            assert_eq!(Deployment::from_name(d.name()), Some(d));
        }
        assert_eq!(Deployment::from_name("nope"), None);
        assert_eq!(DEPLOYMENTS, Deployment::ALL.map(Deployment::name));
    }

    #[test]
    fn bad_bodies_say_what_is_wrong() {
        let e = Deployment::SeedDetector.score(b"{}").unwrap_err();
        assert!(e.0.contains("input_data"), "{e}");
        let e = Deployment::SeedDetector
            .score(br#"{"input_data": {"data": ["@@@"]}}"#)
            .unwrap_err();
        assert!(e.0.contains("base64"), "{e}");
        let e = Deployment::SeedClassifier.score(b"aGVsbG8=").unwrap_err();
        assert!(e.0.contains("decode"), "{e}");
        let e = Deployment::SeedClassifier.score(b"  ").unwrap_err();
        assert!(e.0.contains("empty"), "{e}");
    }
}
