//! Feedback: a person verifies an inference box by box, and the verified labels become
//! training data (contract 1.9).
//!
//! - Confirm: the box's verified species is its top candidate.
//! - Correct: a species (a known one by id, or a name typed by hand, matched against the
//!   known names case-insensitively before a new species is made) and maybe new corners;
//!   the species is added as a candidate with score 0 when it was not among the top-N.
//! - Delete: "not a seed". The box stays listed, marked, and counts as verified.
//! - Add: a seed the detector missed, drawn by a person; a repeated identical call adds
//!   nothing.
//!
//! An inference is verified when it has boxes and every one is verified (a deleted box
//! included); its picture then counts as validated. A box already verified, a box that is
//! not the inference's, or another user's inference is refused; all of one call's changes
//! are applied in one transaction, or none.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use datastore::{
    BoxChange, Corners, Feedback, InferenceStore, NamedSpecies, NewInference, SeedStore, StoreError,
};
use uuid::Uuid;

use crate::service::InferenceResponse;

/// A species as the frontend names it.
#[derive(Clone, Debug, PartialEq)]
pub enum SpeciesName {
    /// A seed id, as in `/seeds` (the frontend's `classId`).
    Id(Uuid),
    /// Typed by hand; literal double quotes around it are dropped.
    Typed(String),
}

/// Box corners as the frontend sends them: pixels, possibly with decimals.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DrawnCorners {
    pub top_x: f64,
    pub top_y: f64,
    pub bottom_x: f64,
    pub bottom_y: f64,
}

/// What a person says of one box.
#[derive(Clone, Debug, PartialEq)]
pub enum BoxFeedback {
    /// The model's top candidate is right.
    Confirm { box_id: Uuid },
    /// The species is another one; the corners may be corrected too.
    Correct {
        box_id: Uuid,
        species: SpeciesName,
        corners: Option<DrawnCorners>,
    },
    /// Not a seed.
    Delete { box_id: Uuid },
    /// A seed the detector missed.
    Add {
        species: SpeciesName,
        corners: DrawnCorners,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum FeedbackError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("{0}")]
    AlreadyVerified(String),
    #[error("could not record the feedback (nothing was changed): {0}")]
    Storage(String),
}

impl From<StoreError> for FeedbackError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict(message) => FeedbackError::AlreadyVerified(message),
            other => FeedbackError::Storage(other.to_string()),
        }
    }
}

pub struct FeedbackService {
    inferences: Arc<dyn InferenceStore>,
    seeds: Arc<dyn SeedStore>,
}

impl FeedbackService {
    pub fn new(inferences: Arc<dyn InferenceStore>, seeds: Arc<dyn SeedStore>) -> Self {
        Self { inferences, seeds }
    }

    /// Applies one call's feedback (all or nothing) and answers the inference as it stands.
    pub async fn apply(
        &self,
        caller: Uuid,
        inference_id: Uuid,
        boxes: Vec<BoxFeedback>,
        comment: Option<String>,
    ) -> Result<InferenceResponse, FeedbackError> {
        let stored = self.own_inference(caller, inference_id).await?;
        if boxes.is_empty() {
            return Err(invalid(
                "boxes",
                "no box: send the box the feedback is about",
            ));
        }
        let known: HashMap<String, Uuid> = self
            .seeds
            .list_seeds()
            .await?
            .into_iter()
            .map(|s| (s.name.to_lowercase(), s.id))
            .collect();
        let mut changes = Vec::with_capacity(boxes.len());
        for feedback in boxes {
            match feedback {
                BoxFeedback::Confirm { box_id } => {
                    unverified_box(&stored, box_id)?;
                    changes.push(BoxChange::Confirm { box_id });
                }
                BoxFeedback::Correct {
                    box_id,
                    species,
                    corners,
                } => {
                    let current = unverified_box(&stored, box_id)?;
                    if let Some(corners) = corners {
                        let corners = clamp(&stored, corners)?;
                        if corners != current {
                            changes.push(BoxChange::Move { box_id, corners });
                        }
                    }
                    changes.push(BoxChange::Verify {
                        box_id,
                        species: named(&known, species)?,
                    });
                }
                BoxFeedback::Delete { box_id } => {
                    unverified_box(&stored, box_id)?;
                    changes.push(BoxChange::Delete { box_id });
                }
                BoxFeedback::Add { species, corners } => changes.push(BoxChange::Add {
                    box_id: Uuid::new_v4(),
                    corners: clamp(&stored, corners)?,
                    species: named(&known, species)?,
                }),
            }
        }
        self.inferences
            .record_feedback(&Feedback {
                inference_id,
                by: caller,
                at: Utc::now(),
                comment: comment
                    .map(|c| c.trim().to_owned())
                    .filter(|c| !c.is_empty()),
                changes,
            })
            .await?;
        let updated = self
            .inferences
            .find_inference(inference_id)
            .await?
            .ok_or_else(|| FeedbackError::NotFound(format!("no inference {inference_id}")))?;
        Ok(crate::stored::rebuild(&updated))
    }

    async fn own_inference(
        &self,
        caller: Uuid,
        inference_id: Uuid,
    ) -> Result<NewInference, FeedbackError> {
        let stored = self
            .inferences
            .find_inference(inference_id)
            .await?
            .ok_or_else(|| FeedbackError::NotFound(format!("no inference {inference_id}")))?;
        if stored.user_id != caller {
            return Err(FeedbackError::Forbidden(format!(
                "the inference {inference_id} is another user's"
            )));
        }
        Ok(stored)
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> FeedbackError {
    FeedbackError::Invalid {
        field,
        message: message.into(),
    }
}

/// The corners of a box of the inference that no one has verified yet.
fn unverified_box(stored: &NewInference, box_id: Uuid) -> Result<Corners, FeedbackError> {
    let b = stored
        .boxes
        .iter()
        .find(|b| b.id == box_id)
        .ok_or_else(|| {
            invalid(
                "boxId",
                format!("{box_id} is not a box of the inference {}", stored.id),
            )
        })?;
    if b.verification.is_some() {
        return Err(FeedbackError::AlreadyVerified(format!(
            "the box {box_id} is already verified"
        )));
    }
    Ok(Corners {
        top_x: b.top_x,
        top_y: b.top_y,
        bottom_x: b.bottom_x,
        bottom_y: b.bottom_y,
    })
}

/// Rounded to whole pixels, clamped into the picture, corners put in order; a box with no
/// area is refused.
fn clamp(stored: &NewInference, drawn: DrawnCorners) -> Result<Corners, FeedbackError> {
    let values = [drawn.top_x, drawn.top_y, drawn.bottom_x, drawn.bottom_y];
    if values.iter().any(|v| !v.is_finite()) {
        return Err(invalid("box", "coordinates must be numbers"));
    }
    let (width, height) = (
        f64::from(stored.picture.width),
        f64::from(stored.picture.height),
    );
    let x = |v: f64| v.round().clamp(0.0, width) as i64;
    let y = |v: f64| v.round().clamp(0.0, height) as i64;
    let (x0, x1) = (x(drawn.top_x), x(drawn.bottom_x));
    let (y0, y1) = (y(drawn.top_y), y(drawn.bottom_y));
    let corners = Corners {
        top_x: x0.min(x1),
        top_y: y0.min(y1),
        bottom_x: x0.max(x1),
        bottom_y: y0.max(y1),
    };
    if corners.top_x == corners.bottom_x || corners.top_y == corners.bottom_y {
        return Err(invalid(
            "box",
            format!(
                "[{}, {}, {}, {}] has no area inside the {}x{} picture",
                drawn.top_x, drawn.top_y, drawn.bottom_x, drawn.bottom_y, width, height
            ),
        ));
    }
    Ok(corners)
}

/// A known species by id or by name (case-insensitively), or a new name.
fn named(
    known: &HashMap<String, Uuid>,
    species: SpeciesName,
) -> Result<NamedSpecies, FeedbackError> {
    match species {
        SpeciesName::Id(id) => {
            if known.values().any(|k| *k == id) {
                Ok(NamedSpecies::Known(id))
            } else {
                Err(invalid(
                    "classId",
                    format!("{id} is no seed species (see /seeds)"),
                ))
            }
        }
        SpeciesName::Typed(name) => {
            let name = name.trim().trim_matches('"').trim().to_owned();
            if name.is_empty() {
                return Err(invalid("label", "the species name is empty"));
            }
            Ok(match known.get(&name.to_lowercase()) {
                Some(id) => NamedSpecies::Known(*id),
                None => NamedSpecies::New(name),
            })
        }
    }
}
