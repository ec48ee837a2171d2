//! [`InferenceStore`]: a picture, its inference, boxes and candidates, saved whole.

use std::collections::HashMap;

use async_trait::async_trait;
use datastore::{
    BoxVerification, Feedback, InferenceStore, NewBox, NewCandidate, NewInference, NewPicture,
    StoreError,
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder,
};
use uuid::Uuid;

use crate::SqlStore;
use crate::connection::stored_time;
use crate::entities::{box_candidate, inference, inference_box, picture, picture_set};
use crate::error::{out_of_range, store_error};
use crate::folders::find_or_create_set;

/// Rows per multi-row INSERT: well below the bound-parameter limits of SQLite and Postgres.
const ROWS_PER_INSERT: usize = 500;

#[async_trait]
impl InferenceStore for SqlStore {
    /// One transaction: the picture set is found or created, then the picture, the
    /// inference, its boxes and their candidates are inserted. On any error nothing stays.
    ///
    /// Times are kept to the microsecond.
    async fn save_inference(&self, new: &NewInference) -> Result<(), StoreError> {
        let txn = self.begin_write().await?;
        match insert_inference(&txn, new).await {
            Ok(()) => txn.commit().await.map_err(store_error),
            Err(error) => {
                if let Err(rollback) = txn.rollback().await {
                    tracing::warn!(%rollback, "rolling back a failed save_inference");
                }
                Err(error)
            }
        }
    }

    async fn find_inference(&self, id: Uuid) -> Result<Option<NewInference>, StoreError> {
        let db = self.connection();
        let Some(row) = inference::Entity::find_by_id(id)
            .one(db)
            .await
            .map_err(store_error)?
        else {
            return Ok(None);
        };
        let picture_row = picture::Entity::find_by_id(row.picture_id)
            .one(db)
            .await
            .map_err(store_error)?
            .ok_or_else(|| missing("picture", row.picture_id))?;
        let set = picture_set::Entity::find_by_id(picture_row.picture_set_id)
            .one(db)
            .await
            .map_err(store_error)?
            .ok_or_else(|| missing("picture set", picture_row.picture_set_id))?;
        let boxes = inference_box::Entity::find()
            .filter(inference_box::Column::InferenceId.eq(id))
            .order_by_asc(inference_box::Column::Position)
            .all(db)
            .await
            .map_err(store_error)?;
        let candidates = find_candidates(db, &boxes).await?;

        let mut by_box: HashMap<Uuid, Vec<NewCandidate>> = HashMap::new();
        for candidate in candidates {
            by_box
                .entry(candidate.box_id)
                .or_default()
                .push(NewCandidate {
                    id: candidate.id,
                    label: candidate.label,
                    score: candidate.score,
                    seed_id: candidate.seed_id,
                });
        }
        let boxes = boxes
            .into_iter()
            .map(|b| {
                let verification = verification(&b);
                Ok(NewBox {
                    id: b.id,
                    position: to_u32("box position", b.position)?,
                    top_x: b.top_x,
                    top_y: b.top_y,
                    bottom_x: b.bottom_x,
                    bottom_y: b.bottom_y,
                    label: b.label,
                    score: b.score,
                    overlapping: b.overlapping,
                    candidates: by_box.remove(&b.id).unwrap_or_default(),
                    verification,
                    drawn_by_person: b.drawn_by_person,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;

        Ok(Some(NewInference {
            id: row.id,
            user_id: row.user_id,
            pipeline_id: row.pipeline_id,
            picture: NewPicture {
                id: picture_row.id,
                user_id: picture_row.user_id,
                container: set.container,
                picture_set: set.name,
                picture_set_id: set.id,
                blob_key: picture_row.blob_key,
                sha256: picture_row.sha256,
                content_type: picture_row.content_type,
                width: to_u32("picture width", picture_row.width)?,
                height: to_u32("picture height", picture_row.height)?,
            },
            result_blob_key: row.result_blob_key,
            result: row.result,
            boxes,
            created_at: row.created_at,
        }))
    }

    async fn record_feedback(&self, feedback: &Feedback) -> Result<(), StoreError> {
        crate::feedback::record(self, feedback).await
    }
}

async fn insert_inference(txn: &DatabaseTransaction, new: &NewInference) -> Result<(), StoreError> {
    let created_at = stored_time(new.created_at);
    let picture_set_id = find_or_create_set(
        txn,
        new.picture.picture_set_id,
        new.picture.user_id,
        &new.picture.container,
        &new.picture.picture_set,
    )
    .await?
    .id;

    picture::Entity::insert(
        picture::Model {
            id: new.picture.id,
            picture_set_id,
            user_id: new.picture.user_id,
            blob_key: new.picture.blob_key.clone(),
            sha256: new.picture.sha256.clone(),
            content_type: new.picture.content_type.clone(),
            width: i64::from(new.picture.width),
            height: i64::from(new.picture.height),
            created_at,
            labelled_seed_id: None,
            zoom_level: None,
            nb_seeds: None,
        }
        .into_active_model(),
    )
    .exec_without_returning(txn)
    .await
    .map_err(store_error)?;

    inference::Entity::insert(
        inference::Model {
            id: new.id,
            picture_id: new.picture.id,
            user_id: new.user_id,
            pipeline_id: new.pipeline_id,
            result: new.result.clone(),
            result_blob_key: new.result_blob_key.clone(),
            created_at,
        }
        .into_active_model(),
    )
    .exec_without_returning(txn)
    .await
    .map_err(store_error)?;

    let boxes: Vec<inference_box::Model> = new
        .boxes
        .iter()
        .map(|b| inference_box::Model {
            id: b.id,
            inference_id: new.id,
            position: i64::from(b.position),
            top_x: b.top_x,
            top_y: b.top_y,
            bottom_x: b.bottom_x,
            bottom_y: b.bottom_y,
            label: b.label.clone(),
            score: b.score,
            overlapping: b.overlapping,
            verified_at: b.verification.as_ref().map(|v| stored_time(v.at)),
            verified_by: b.verification.as_ref().map(|v| v.by),
            verified_candidate_id: b.verification.as_ref().and_then(|v| v.candidate_id),
            verification_comment: b.verification.as_ref().and_then(|v| v.comment.clone()),
            drawn_by_person: b.drawn_by_person,
        })
        .collect();
    insert_in_chunks::<inference_box::Entity, _>(txn, boxes).await?;

    let candidates: Vec<box_candidate::Model> = new
        .boxes
        .iter()
        .flat_map(|b| {
            b.candidates
                .iter()
                .zip(1_i64..)
                .map(move |(c, rank)| box_candidate::Model {
                    id: c.id,
                    box_id: b.id,
                    rank,
                    label: c.label.clone(),
                    score: c.score,
                    seed_id: c.seed_id,
                    is_top: rank == 1,
                })
        })
        .collect();
    insert_in_chunks::<box_candidate::Entity, _>(txn, candidates).await?;
    Ok(())
}

/// Inserts `rows` a few hundred per statement (SQLite and Postgres cap bound parameters).
async fn insert_in_chunks<E, M>(txn: &DatabaseTransaction, rows: Vec<M>) -> Result<(), StoreError>
where
    E: EntityTrait,
    M: IntoActiveModel<E::ActiveModel> + Clone,
{
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        E::insert_many(
            chunk
                .iter()
                .cloned()
                .map(IntoActiveModel::into_active_model),
        )
        .exec_without_returning(txn)
        .await
        .map_err(store_error)?;
    }
    Ok(())
}

/// The candidates of `boxes`, by box then rank.
async fn find_candidates<C: ConnectionTrait>(
    db: &C,
    boxes: &[inference_box::Model],
) -> Result<Vec<box_candidate::Model>, StoreError> {
    let mut candidates = Vec::new();
    for chunk in boxes.chunks(ROWS_PER_INSERT) {
        let ids: Vec<Uuid> = chunk.iter().map(|b| b.id).collect();
        let mut rows = box_candidate::Entity::find()
            .filter(box_candidate::Column::BoxId.is_in(ids))
            .order_by_asc(box_candidate::Column::BoxId)
            .order_by_asc(box_candidate::Column::Rank)
            .all(db)
            .await
            .map_err(store_error)?;
        candidates.append(&mut rows);
    }
    Ok(candidates)
}

fn verification(row: &inference_box::Model) -> Option<BoxVerification> {
    match (row.verified_at, row.verified_by) {
        (Some(at), Some(by)) => Some(BoxVerification {
            at,
            by,
            candidate_id: row.verified_candidate_id,
            comment: row.verification_comment.clone(),
        }),
        _ => None,
    }
}

fn to_u32(what: &str, value: i64) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| out_of_range(what, value))
}

fn missing(what: &str, id: Uuid) -> StoreError {
    StoreError::Database(format!("the {what} {id} of a saved inference is missing"))
}
