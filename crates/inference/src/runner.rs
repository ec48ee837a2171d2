//! Runs a picture through a pipeline: each model's output feeds the next (contract 1.5).

use std::sync::Arc;

use futures::stream::{self, StreamExt, TryStreamExt};
use pipeline::{ActivePipeline, ModelDefinition, ModelKind};

use crate::codec::CodecPool;
use crate::picture::DecodedPicture;
use crate::ports::{ModelCallError, ModelClient, NormalizedBox, RankedLabel};

/// A box as it moves through the pipeline.
#[derive(Clone, Debug, PartialEq)]
pub struct Detection {
    pub bbox: NormalizedBox,
    pub label: String,
    pub score: f64,
    /// Best first; a detector's box has its own label as its only candidate.
    pub top_n: Vec<RankedLabel>,
}

/// Which step of which pipeline failed, and how.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("step {step} of pipeline \"{pipeline}\", model \"{model}\", {failure}")]
pub struct StepError {
    pub pipeline: String,
    /// 1-based.
    pub step: usize,
    pub model: String,
    pub failure: StepFailure,
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum StepFailure {
    #[error("{0}")]
    Call(#[from] ModelCallError),
    #[error("could not prepare its input: {0}")]
    Input(String),
}

impl StepError {
    pub fn is_timeout(&self) -> bool {
        matches!(self.failure, StepFailure::Call(ModelCallError::Timeout(_)))
    }
}

pub struct PipelineRunner {
    models: Arc<dyn ModelClient>,
    codec: CodecPool,
    /// How many per-crop calls of one request run at once.
    crop_concurrency: usize,
}

impl PipelineRunner {
    pub fn new(models: Arc<dyn ModelClient>, codec: CodecPool, crop_concurrency: usize) -> Self {
        Self {
            models,
            codec,
            crop_concurrency: crop_concurrency.max(1),
        }
    }

    /// The last model's boxes, in the order the detector gave them.
    pub async fn run(
        &self,
        pipeline: &ActivePipeline,
        picture: &DecodedPicture,
    ) -> Result<Vec<Detection>, StepError> {
        let mut boxes: Vec<Detection> = Vec::new();
        for (i, model) in pipeline.models.iter().enumerate() {
            let model = &model.definition;
            let fail = |failure: StepFailure| StepError {
                pipeline: pipeline.definition.name.clone(),
                step: i + 1,
                model: model.name.clone(),
                failure,
            };
            match model.kind {
                ModelKind::SeedDetector | ModelKind::OneShotDetector | ModelKind::Test => {
                    let found = self
                        .models
                        .detect(model, &picture.base64)
                        .await
                        .map_err(|e| fail(e.into()))?;
                    // Until a classifier ranks it, a box's only candidate is its own label.
                    boxes = found
                        .into_iter()
                        .map(|b| Detection {
                            top_n: vec![RankedLabel {
                                label: b.label.clone(),
                                score: b.score,
                            }],
                            bbox: b.bbox,
                            label: b.label,
                            score: b.score,
                        })
                        .collect();
                }
                ModelKind::Classifier | ModelKind::ReClassifier => {
                    boxes = self.classify(model, picture, boxes).await.map_err(fail)?;
                }
            }
        }
        Ok(boxes)
    }

    /// Ranks each box's crop (a re-classifier: only boxes whose label it re-classifies);
    /// calls run concurrently, at most `crop_concurrency` at a time, results in box order.
    async fn classify(
        &self,
        model: &ModelDefinition,
        picture: &DecodedPicture,
        boxes: Vec<Detection>,
    ) -> Result<Vec<Detection>, StepFailure> {
        stream::iter(boxes)
            .map(|detection| async move {
                let wanted = model.kind == ModelKind::Classifier
                    || model.reclassify_labels.contains(&detection.label);
                if !wanted {
                    return Ok(detection);
                }
                let crop = {
                    let picture = picture.clone();
                    let bbox = detection.bbox;
                    self.codec
                        .run(move || picture.crop_base64(&bbox))
                        .await
                        .map_err(StepFailure::Input)?
                };
                let ranking = self.models.classify(model, &crop).await?;
                Ok(ranked(detection, ranking)?)
            })
            .buffered(self.crop_concurrency)
            .try_collect()
            .await
    }
}

/// The box takes the first entry's label and score; `topN` is the ranking. Labels lose
/// their leading class number (`"13 Ambrosia trifida"` → `"Ambrosia trifida"`).
fn ranked(detection: Detection, ranking: Vec<RankedLabel>) -> Result<Detection, ModelCallError> {
    let top_n: Vec<RankedLabel> = ranking
        .into_iter()
        .take(5)
        .map(|r| RankedLabel {
            label: species_name(&r.label).to_owned(),
            score: r.score,
        })
        .collect();
    let best = top_n
        .first()
        .ok_or_else(|| ModelCallError::BadResponse("an empty ranking".into()))?;
    Ok(Detection {
        label: best.label.clone(),
        score: best.score,
        bbox: detection.bbox,
        top_n,
    })
}

/// `"13 Ambrosia trifida"` → `"Ambrosia trifida"`; a label without a number is kept.
pub fn species_name(label: &str) -> &str {
    let label = label.trim();
    match label.split_once(' ') {
        Some((number, rest))
            if !number.is_empty() && number.chars().all(|c| c.is_ascii_digit()) =>
        {
            rest.trim_start()
        }
        _ => label,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_class_numbers_are_removed() {
        assert_eq!(species_name("13 Ambrosia trifida"), "Ambrosia trifida");
        assert_eq!(species_name("Ambrosia trifida"), "Ambrosia trifida");
        assert_eq!(species_name("seed"), "seed");
        assert_eq!(species_name("2x Brassica"), "2x Brassica");
    }
}
