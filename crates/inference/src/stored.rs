//! A saved inference as the frontend reads it again (`/get-picture`, and after feedback):
//! rebuilt from its rows, so that what a person verified since shows.
//!
//! Labels, scores, `top_id`, `is_verified`, `is_deleted` and `object_type_id` come from the
//! rows (the verified candidate wins over the model's top one; a box deleted as "not a seed"
//! stays listed, marked, and is not counted in `labelOccurrence`); colours and label counts are computed
//! again over the current labels with the palette of contract 1.4, in the colour format the
//! `/inf` request chose; overlap indices, file name and models come from the result document
//! written at `/inf` time.

use std::collections::{BTreeMap, HashMap};

use datastore::{NewBox, NewCandidate, NewInference};
use serde_json::Value;
use uuid::Uuid;

use crate::result::{Color, ColorFormat};
use crate::service::{BoxCoordinates, InferenceResponse, ModelRef, ResponseBox, TopCandidate};

/// The response of a saved inference, as it stands now.
pub fn rebuild(stored: &NewInference) -> InferenceResponse {
    let document = &stored.result;
    let format = color_format(document);
    let overlapping_indices = overlapping_indices(document);

    let mut colors: HashMap<String, Color> = HashMap::new();
    let mut label_occurrence = BTreeMap::new();
    let mut boxes = Vec::with_capacity(stored.boxes.len());
    for b in &stored.boxes {
        let (chosen, score) = chosen_candidate(b);
        let deleted = b
            .verification
            .as_ref()
            .is_some_and(|v| v.candidate_id.is_none());
        let label = chosen.map_or_else(|| b.label.clone(), |c| c.label.clone());
        let next = colors.len();
        let color = *colors
            .entry(label.clone())
            .or_insert_with(|| Color::for_label_index(next, format));
        if !deleted {
            *label_occurrence.entry(label.clone()).or_insert(0) += 1;
        }
        boxes.push(ResponseBox {
            bbox: BoxCoordinates {
                top_x: b.top_x,
                top_y: b.top_y,
                bottom_x: b.bottom_x,
                bottom_y: b.bottom_y,
            },
            label,
            score: score.unwrap_or(b.score),
            top_n: b
                .candidates
                .iter()
                .map(|c| TopCandidate {
                    label: c.label.clone(),
                    score: c.score,
                    object_id: c.id,
                })
                .collect(),
            overlapping: b.overlapping,
            overlapping_indices: overlapping_indices.get(&b.id).cloned().unwrap_or_default(),
            color,
            box_id: b.id,
            top_id: chosen.map_or(Uuid::nil(), |c| c.id),
            object_type_id: chosen.and_then(|c| c.seed_id).filter(|_| !deleted),
            is_verified: b.verification.is_some(),
            is_deleted: deleted,
        });
    }
    InferenceResponse {
        filename: document["filename"]
            .as_str()
            .map_or_else(|| stored.picture.blob_key.clone(), str::to_owned),
        total_boxes: boxes.len(),
        boxes,
        label_occurrence,
        models: serde_json::from_value::<Vec<ModelRefDocument>>(document["models"].clone())
            .unwrap_or_default()
            .into_iter()
            .map(|m| ModelRef {
                name: m.name,
                version: m.version,
            })
            .collect(),
        inference_id: stored.id,
        pipeline_id: stored.pipeline_id,
    }
}

/// The candidate a box stands for, and the score to show: the verified one (score 1, a
/// person's certainty) once verified as a species, else the model's top one with the box's
/// own score (a box deleted as "not a seed" keeps what the model said).
fn chosen_candidate(b: &NewBox) -> (Option<&NewCandidate>, Option<f64>) {
    let verified = b
        .verification
        .as_ref()
        .and_then(|v| v.candidate_id)
        .and_then(|id| b.candidates.iter().find(|c| c.id == id));
    match verified {
        Some(candidate) => (Some(candidate), Some(1.0)),
        None => (b.candidates.first(), None),
    }
}

#[derive(serde::Deserialize)]
struct ModelRefDocument {
    name: String,
    version: String,
}

/// The colour format the `/inf` request chose, read off its result document.
fn color_format(document: &Value) -> ColorFormat {
    match document["boxes"][0]["color"] {
        Value::Array(_) => ColorFormat::Rgb,
        _ => ColorFormat::Hex,
    }
}

/// `overlappingIndices` of each box of the result document, by box id.
fn overlapping_indices(document: &Value) -> HashMap<Uuid, Vec<usize>> {
    let Some(boxes) = document["boxes"].as_array() else {
        return HashMap::new();
    };
    boxes
        .iter()
        .filter_map(|b| {
            let id = b["box_id"].as_str().and_then(|s| Uuid::parse_str(s).ok())?;
            let indices = serde_json::from_value(b["overlappingIndices"].clone()).ok()?;
            Some((id, indices))
        })
        .collect()
}
