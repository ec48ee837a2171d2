//! Runs a picture through a pipeline: each model's output feeds the next (contract 1.5).

use std::sync::Arc;

use bytes::Bytes;
use futures::future;
use pipeline::{ActivePipeline, CropEncoding, ModelDefinition, ModelKind};
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::codec::CodecPool;
use crate::picture::{CheckedPicture, DecodedPicture, PictureError};
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

/// Why a pipeline run stopped: the picture itself (its pixels do not decode), or a step.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Picture(PictureError),
    #[error("{0}")]
    Step(StepError),
}

pub struct PipelineRunner {
    models: Arc<dyn ModelClient>,
    codec: CodecPool,
    /// Per-crop model calls running at once, across every request.
    crop_calls: Arc<Semaphore>,
}

impl PipelineRunner {
    /// `max_crop_calls`: per-crop model calls at once, all requests together.
    pub fn new(models: Arc<dyn ModelClient>, codec: CodecPool, max_crop_calls: usize) -> Self {
        Self {
            models,
            codec,
            crop_calls: Arc::new(Semaphore::new(max_crop_calls.max(1))),
        }
    }

    /// The last model's boxes, in the order the detector gave them.
    ///
    /// What does not depend on each other overlaps: the pixels (needed only for crops) are
    /// decoded while the detector works on the picture as received, and each crop is
    /// classified as soon as it is encoded, while the next ones are encoded.
    ///
    /// Each step runs in a span `pipeline step` (pipeline, 1-based step, model, kind), and
    /// each model call in a span `model call` inside it (model; `crop`: the box's index):
    /// what operators see of a request in its trace and on its log lines.
    pub async fn run(
        &self,
        pipeline: &ActivePipeline,
        picture: &CheckedPicture,
    ) -> Result<Vec<Detection>, RunError> {
        let mut pixels: Option<DecodedPicture> = None;
        let mut boxes: Vec<Detection> = Vec::new();
        for (i, model) in pipeline.models.iter().enumerate() {
            let model = &model.definition;
            let span = tracing::info_span!(
                "pipeline step",
                pipeline = %pipeline.definition.name,
                step = i + 1,
                model = %model.name,
                kind = model.kind.as_str(),
            );
            boxes = self
                .step(pipeline, i, picture, &mut pixels, boxes)
                .instrument(span)
                .await?;
        }
        Ok(boxes)
    }

    /// Step `i` (0-based) of the pipeline: the boxes of the steps before it in, its own out.
    async fn step(
        &self,
        pipeline: &ActivePipeline,
        i: usize,
        picture: &CheckedPicture,
        pixels: &mut Option<DecodedPicture>,
        boxes: Vec<Detection>,
    ) -> Result<Vec<Detection>, RunError> {
        let model = &pipeline.models[i].definition;
        // The last step that crops: after it has encoded its crops, the pixels can go.
        let last_cropping = pipeline
            .models
            .iter()
            .rposition(|m| m.definition.kind.needs_boxes());
        let needs_pixels = last_cropping.is_some();
        let fail = |failure: StepFailure| {
            RunError::Step(StepError {
                pipeline: pipeline.definition.name.clone(),
                step: i + 1,
                model: model.name.clone(),
                failure,
            })
        };
        match model.kind {
            ModelKind::SeedDetector | ModelKind::OneShotDetector | ModelKind::Test => {
                let found = match picture.upright_base64() {
                    Some(base64) if needs_pixels && pixels.is_none() => {
                        let detect = async {
                            self.models
                                .detect(model, base64)
                                .instrument(call_span(model))
                                .await
                                .map_err(|e| fail(e.into()))
                        };
                        let decode =
                            async { self.codec.decode(picture).await.map_err(RunError::Picture) };
                        let (found, decoded) = tokio::try_join!(detect, decode)?;
                        *pixels = Some(decoded);
                        found
                    }
                    Some(base64) => self
                        .models
                        .detect(model, base64)
                        .instrument(call_span(model))
                        .await
                        .map_err(|e| fail(e.into()))?,
                    // Turned by its EXIF orientation: the models get it upright.
                    None => {
                        let upright = self.pixels(pixels, picture).await?.base64.clone();
                        self.models
                            .detect(model, upright)
                            .instrument(call_span(model))
                            .await
                            .map_err(|e| fail(e.into()))?
                    }
                };
                // Until a classifier ranks it, a box's only candidate is its own label.
                Ok(found
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
                    .collect())
            }
            ModelKind::Classifier | ModelKind::ReClassifier => {
                let decoded = self.pixels(pixels, picture).await?.clone();
                if last_cropping == Some(i) {
                    *pixels = None;
                }
                self.classify(model, decoded, boxes).await.map_err(fail)
            }
        }
    }

    /// The decoded pixels, decoded now if they are not yet.
    async fn pixels<'a>(
        &self,
        pixels: &'a mut Option<DecodedPicture>,
        picture: &CheckedPicture,
    ) -> Result<&'a DecodedPicture, RunError> {
        if pixels.is_none() {
            *pixels = Some(
                self.codec
                    .decode(picture)
                    .await
                    .map_err(RunError::Picture)?,
            );
        }
        Ok(pixels.as_ref().expect("decoded above"))
    }

    /// Ranks each box's crop (a re-classifier: only boxes whose label it re-classifies).
    /// Every crop of the request at once: each is encoded on the codec pool and sent as soon
    /// as it is, within the bound on per-crop calls shared by all requests; results in box
    /// order. The first failure drops the calls still running.
    ///
    /// Each crop holds the pixels only until it is encoded: once the last is, they are freed
    /// (when no later step needs them), while the calls go on.
    async fn classify(
        &self,
        model: &ModelDefinition,
        picture: DecodedPicture,
        boxes: Vec<Detection>,
    ) -> Result<Vec<Detection>, StepFailure> {
        let encoding = model.crop_encoding;
        let calls: Vec<_> = boxes
            .into_iter()
            .enumerate()
            .map(|(index, detection)| {
                let wanted = model.kind == ModelKind::Classifier
                    || model.reclassify_labels.contains(&detection.label);
                let picture = wanted.then(|| picture.clone());
                self.classify_one(model, encoding, picture, (index, detection))
            })
            .collect();
        drop(picture);
        future::try_join_all(calls).await
    }

    /// One box: its crop encoded and ranked, or (`picture` none) the box as it is.
    async fn classify_one(
        &self,
        model: &ModelDefinition,
        encoding: CropEncoding,
        picture: Option<DecodedPicture>,
        (index, detection): (usize, Detection),
    ) -> Result<Detection, StepFailure> {
        let Some(picture) = picture else {
            return Ok(detection);
        };
        let bbox = detection.bbox;
        let crop = self
            .codec
            .run(move || picture.crop_base64(&bbox, encoding))
            .await
            .map_err(StepFailure::Input)?;
        let _call = self
            .crop_calls
            .acquire()
            .await
            .expect("the crop-call semaphore is never closed");
        let ranking = self
            .models
            .classify(model, Bytes::from(crop))
            .instrument(tracing::info_span!("model call", model = %model.name, crop = index))
            .await?;
        Ok(ranked(detection, ranking)?)
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

/// The span of one call of a model on the whole picture (a crop's names the crop too).
fn call_span(model: &ModelDefinition) -> tracing::Span {
    tracing::info_span!("model call", model = %model.name)
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
