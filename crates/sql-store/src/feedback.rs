//! A person's feedback on an inference's boxes, applied in one transaction (contract 1.9).
//!
//! Every verification is guarded by `verified_at IS NULL` in its own `UPDATE`: of two
//! concurrent calls on one box, one verifies it and the other finds it verified and rolls
//! back whole.

use datastore::{BoxChange, Corners, Feedback, NamedSpecies, StoreError};
use sea_orm::sea_query::{Expr, ExprTrait, Func};
use sea_orm::{
    ColumnTrait, DatabaseTransaction, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
};
use uuid::Uuid;

use crate::SqlStore;
use crate::connection::stored_time;
use crate::entities::{box_candidate, inference_box, seed};
use crate::error::store_error;

/// The score of a person's verdict, and of a species a person names for a box.
const PERSON_SCORE: f64 = 1.0;
/// The score of a species added as a candidate because a person chose it over the model's.
const ADDED_CANDIDATE_SCORE: f64 = 0.0;

pub(crate) async fn record(store: &SqlStore, feedback: &Feedback) -> Result<(), StoreError> {
    let txn = store.begin_write().await?;
    match apply(&txn, feedback).await {
        Ok(()) => txn.commit().await.map_err(store_error),
        Err(error) => {
            if let Err(rollback) = txn.rollback().await {
                tracing::warn!(%rollback, "rolling back a failed feedback");
            }
            Err(error)
        }
    }
}

async fn apply(txn: &DatabaseTransaction, feedback: &Feedback) -> Result<(), StoreError> {
    for change in &feedback.changes {
        match change {
            BoxChange::Confirm { box_id } => {
                let Some(top) = candidates(txn, *box_id).await?.into_iter().next() else {
                    return Err(StoreError::Conflict(format!(
                        "the box {box_id} has no candidate to confirm: name its species instead"
                    )));
                };
                verify(txn, feedback, *box_id, Some(top.id)).await?;
            }
            BoxChange::Verify { box_id, species } => {
                let species = resolve(txn, species).await?;
                let existing = candidates(txn, *box_id)
                    .await?
                    .into_iter()
                    .find(|c| c.seed_id == Some(species.id));
                let candidate = match existing {
                    Some(candidate) => candidate.id,
                    None => add_candidate(txn, *box_id, &species, ADDED_CANDIDATE_SCORE).await?,
                };
                verify(txn, feedback, *box_id, Some(candidate)).await?;
            }
            BoxChange::Move { box_id, corners } => {
                inference_box::Entity::update_many()
                    .col_expr(inference_box::Column::TopX, Expr::value(corners.top_x))
                    .col_expr(inference_box::Column::TopY, Expr::value(corners.top_y))
                    .col_expr(
                        inference_box::Column::BottomX,
                        Expr::value(corners.bottom_x),
                    )
                    .col_expr(
                        inference_box::Column::BottomY,
                        Expr::value(corners.bottom_y),
                    )
                    .filter(inference_box::Column::Id.eq(*box_id))
                    .filter(inference_box::Column::InferenceId.eq(feedback.inference_id))
                    .filter(inference_box::Column::VerifiedAt.is_null())
                    .exec(txn)
                    .await
                    .map_err(store_error)?;
            }
            BoxChange::Delete { box_id } => verify(txn, feedback, *box_id, None).await?,
            BoxChange::Add {
                box_id,
                corners,
                species,
            } => add_box(txn, feedback, *box_id, corners, species).await?,
        }
    }
    Ok(())
}

/// Marks an unverified box of the inference verified, as `candidate` (`None`: not a seed).
async fn verify(
    txn: &DatabaseTransaction,
    feedback: &Feedback,
    box_id: Uuid,
    candidate: Option<Uuid>,
) -> Result<(), StoreError> {
    let updated = inference_box::Entity::update_many()
        .col_expr(
            inference_box::Column::VerifiedAt,
            Expr::value(stored_time(feedback.at)),
        )
        .col_expr(inference_box::Column::VerifiedBy, Expr::value(feedback.by))
        .col_expr(
            inference_box::Column::VerifiedCandidateId,
            Expr::value(candidate),
        )
        .col_expr(
            inference_box::Column::VerificationComment,
            Expr::value(feedback.comment.clone()),
        )
        .filter(inference_box::Column::Id.eq(box_id))
        .filter(inference_box::Column::InferenceId.eq(feedback.inference_id))
        .filter(inference_box::Column::VerifiedAt.is_null())
        .exec(txn)
        .await
        .map_err(store_error)?;
    if updated.rows_affected == 0 {
        return Err(StoreError::Conflict(format!(
            "the box {box_id} is already verified"
        )));
    }
    Ok(())
}

/// The candidates of a box, best first.
async fn candidates(
    txn: &DatabaseTransaction,
    box_id: Uuid,
) -> Result<Vec<box_candidate::Model>, StoreError> {
    box_candidate::Entity::find()
        .filter(box_candidate::Column::BoxId.eq(box_id))
        .order_by_asc(box_candidate::Column::Rank)
        .all(txn)
        .await
        .map_err(store_error)
}

/// The seed species named: a known one, or one matched case-insensitively by name, or a
/// new one created now.
async fn resolve(
    txn: &DatabaseTransaction,
    species: &NamedSpecies,
) -> Result<seed::Model, StoreError> {
    match species {
        NamedSpecies::Known(id) => seed::Entity::find_by_id(*id)
            .one(txn)
            .await
            .map_err(store_error)?
            .ok_or_else(|| StoreError::Conflict(format!("no seed species {id}"))),
        NamedSpecies::New(name) => {
            let same_name = || {
                seed::Entity::find().filter(
                    Expr::expr(Func::lower(Expr::col(seed::Column::Name))).eq(name.to_lowercase()),
                )
            };
            if let Some(found) = same_name().one(txn).await.map_err(store_error)? {
                return Ok(found);
            }
            let created = seed::Model {
                id: Uuid::new_v4(),
                name: name.clone(),
            };
            seed::Entity::insert(created.clone().into_active_model())
                .exec_without_returning(txn)
                .await
                .map_err(store_error)?;
            tracing::info!(species = %name, id = %created.id, "a new seed species, typed by hand");
            Ok(created)
        }
    }
}

/// A new last candidate of a box, naming `species`.
async fn add_candidate(
    txn: &DatabaseTransaction,
    box_id: Uuid,
    species: &seed::Model,
    score: f64,
) -> Result<Uuid, StoreError> {
    let last_rank = candidates(txn, box_id).await?.last().map_or(0, |c| c.rank);
    let id = Uuid::new_v4();
    box_candidate::Entity::insert(
        box_candidate::Model {
            id,
            box_id,
            rank: last_rank + 1,
            label: species.name.clone(),
            score,
            seed_id: Some(species.id),
            is_top: last_rank == 0,
        }
        .into_active_model(),
    )
    .exec_without_returning(txn)
    .await
    .map_err(store_error)?;
    Ok(id)
}

/// A box drawn by a person, verified as `species`; refused when the same box (corners and
/// species) was already drawn, so that a repeated call adds nothing.
async fn add_box(
    txn: &DatabaseTransaction,
    feedback: &Feedback,
    box_id: Uuid,
    corners: &Corners,
    species: &NamedSpecies,
) -> Result<(), StoreError> {
    let species = resolve(txn, species).await?;
    let boxes = inference_box::Entity::find()
        .filter(inference_box::Column::InferenceId.eq(feedback.inference_id))
        .order_by_asc(inference_box::Column::Position)
        .all(txn)
        .await
        .map_err(store_error)?;
    for drawn in boxes.iter().filter(|b| {
        b.drawn_by_person
            && (b.top_x, b.top_y, b.bottom_x, b.bottom_y)
                == (
                    corners.top_x,
                    corners.top_y,
                    corners.bottom_x,
                    corners.bottom_y,
                )
    }) {
        let same_species = candidates(txn, drawn.id)
            .await?
            .iter()
            .any(|c| Some(c.id) == drawn.verified_candidate_id && c.seed_id == Some(species.id));
        if same_species {
            return Err(StoreError::Conflict(format!(
                "this box ({} at {},{} – {},{}) was already added, as box {}",
                species.name,
                corners.top_x,
                corners.top_y,
                corners.bottom_x,
                corners.bottom_y,
                drawn.id
            )));
        }
    }
    let position = boxes.last().map_or(0, |b| b.position) + 1;
    inference_box::Entity::insert(
        inference_box::Model {
            id: box_id,
            inference_id: feedback.inference_id,
            position,
            top_x: corners.top_x,
            top_y: corners.top_y,
            bottom_x: corners.bottom_x,
            bottom_y: corners.bottom_y,
            label: species.name.clone(),
            score: PERSON_SCORE,
            overlapping: false,
            verified_at: None,
            verified_by: None,
            verified_candidate_id: None,
            verification_comment: None,
            drawn_by_person: true,
        }
        .into_active_model(),
    )
    .exec_without_returning(txn)
    .await
    .map_err(store_error)?;
    let candidate = add_candidate(txn, box_id, &species, PERSON_SCORE).await?;
    verify(txn, feedback, box_id, Some(candidate)).await
}
