//! [`DatasetStore`]: the verified pictures and their verified seeds, a page at a time.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use datastore::{
    Corners, DatasetBox, DatasetCursor, DatasetFilter, DatasetPage, DatasetPicture, DatasetStore,
    PictureLabel, StoreError,
};
use sea_orm::sea_query::{Condition, Expr, ExprTrait};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use crate::SqlStore;
use crate::connection::stored_time;
use crate::entities::{box_candidate, inference_box, picture, picture_set, user};
use crate::error::{out_of_range, store_error};
use crate::folders::{latest_inferences, verified_pictures};

#[async_trait]
impl DatasetStore for SqlStore {
    async fn dataset_page(
        &self,
        filter: &DatasetFilter,
        after: Option<DatasetCursor>,
        limit: usize,
    ) -> Result<DatasetPage, StoreError> {
        let db = self.connection();
        let mut query = picture::Entity::find();
        if let Some(user_id) = filter.user_id {
            query = query.filter(picture::Column::UserId.eq(user_id));
        }
        if let Some(folder_id) = filter.folder_id {
            query = query.filter(picture::Column::PictureSetId.eq(folder_id));
        }
        if let Some(from) = filter.from {
            query = query.filter(picture::Column::CreatedAt.gte(stored_time(from)));
        }
        if let Some(to) = filter.to {
            query = query.filter(picture::Column::CreatedAt.lt(stored_time(to)));
        }
        if let Some(cursor) = after {
            let at = stored_time(cursor.created_at);
            query = query.filter(
                Condition::any().add(picture::Column::CreatedAt.gt(at)).add(
                    Condition::all()
                        .add(picture::Column::CreatedAt.eq(at))
                        .add(picture::Column::Id.gt(cursor.picture_id)),
                ),
            );
        }
        let scanned = query
            .order_by_asc(picture::Column::CreatedAt)
            .order_by_asc(picture::Column::Id)
            .limit(limit as u64)
            .all(db)
            .await
            .map_err(store_error)?;
        let next = (scanned.len() == limit).then(|| {
            let last = scanned.last().expect("a full page has a last picture");
            DatasetCursor {
                created_at: last.created_at,
                picture_id: last.id,
            }
        });

        let ids: Vec<Uuid> = scanned.iter().map(|p| p.id).collect();
        let latest = latest_inferences(db, &ids).await?;
        let verified = verified_pictures(db, &scanned, &latest).await?;
        let kept: Vec<picture::Model> = scanned
            .into_iter()
            .filter(|p| verified.contains(&p.id))
            .collect();
        if kept.is_empty() {
            return Ok(DatasetPage {
                pictures: Vec::new(),
                next,
            });
        }

        // The verified seed boxes of the kept pictures' latest inferences.
        let inference_ids: Vec<Uuid> = kept
            .iter()
            .filter_map(|p| latest.get(&p.id))
            .copied()
            .collect();
        let boxes = inference_box::Entity::find()
            .filter(inference_box::Column::InferenceId.is_in(inference_ids))
            .filter(inference_box::Column::VerifiedCandidateId.is_not_null())
            .order_by_asc(inference_box::Column::Position)
            .all(db)
            .await
            .map_err(store_error)?;
        let candidate_ids: Vec<Uuid> = boxes
            .iter()
            .filter_map(|b| b.verified_candidate_id)
            .collect();
        let species: HashMap<Uuid, Uuid> = box_candidate::Entity::find()
            .select_only()
            .column(box_candidate::Column::Id)
            .column(box_candidate::Column::SeedId)
            .filter(box_candidate::Column::Id.is_in(candidate_ids))
            .filter(Expr::col(box_candidate::Column::SeedId).is_not_null())
            .into_tuple::<(Uuid, Option<Uuid>)>()
            .all(db)
            .await
            .map_err(store_error)?
            .into_iter()
            .filter_map(|(candidate, seed)| Some((candidate, seed?)))
            .collect();

        let mut people: HashSet<Uuid> = kept.iter().map(|p| p.user_id).collect();
        people.extend(boxes.iter().filter_map(|b| b.verified_by));
        let emails: HashMap<Uuid, String> = user::Entity::find()
            .filter(user::Column::Id.is_in(people))
            .all(db)
            .await
            .map_err(store_error)?
            .into_iter()
            .map(|u| (u.id, u.email))
            .collect();
        let set_ids: HashSet<Uuid> = kept.iter().map(|p| p.picture_set_id).collect();
        let folders: HashMap<Uuid, String> = picture_set::Entity::find()
            .filter(picture_set::Column::Id.is_in(set_ids))
            .all(db)
            .await
            .map_err(store_error)?
            .into_iter()
            .map(|s| (s.id, s.name))
            .collect();

        let mut by_inference: HashMap<Uuid, Vec<DatasetBox>> = HashMap::new();
        for b in boxes {
            // A box confirmed as a label that names no species (e.g. a detector's "seed")
            // is not a species annotation.
            let (Some(seed_id), Some(by), Some(at)) = (
                b.verified_candidate_id
                    .and_then(|c| species.get(&c).copied()),
                b.verified_by,
                b.verified_at,
            ) else {
                continue;
            };
            by_inference
                .entry(b.inference_id)
                .or_default()
                .push(DatasetBox {
                    corners: Corners {
                        top_x: b.top_x,
                        top_y: b.top_y,
                        bottom_x: b.bottom_x,
                        bottom_y: b.bottom_y,
                    },
                    seed_id,
                    drawn_by_person: b.drawn_by_person,
                    verified_by: emails.get(&by).cloned().unwrap_or_else(|| by.to_string()),
                    verified_at: at,
                });
        }

        let pictures = kept
            .into_iter()
            .map(|p| {
                let dimension =
                    |what: &str, v: i64| u32::try_from(v).map_err(|_| out_of_range(what, v));
                let label = match (p.labelled_seed_id, p.zoom_level, p.nb_seeds) {
                    (Some(seed_id), Some(zoom_level), Some(nb_seeds)) => Some(PictureLabel {
                        seed_id,
                        zoom_level,
                        nb_seeds: u32::try_from(nb_seeds)
                            .map_err(|_| out_of_range("seed count", nb_seeds))?,
                    }),
                    _ => None,
                };
                Ok(DatasetPicture {
                    id: p.id,
                    owner_email: emails.get(&p.user_id).cloned().unwrap_or_default(),
                    folder_name: folders.get(&p.picture_set_id).cloned().unwrap_or_default(),
                    blob_key: p.blob_key,
                    content_type: p.content_type,
                    width: dimension("picture width", p.width)?,
                    height: dimension("picture height", p.height)?,
                    created_at: p.created_at,
                    label,
                    boxes: latest
                        .get(&p.id)
                        .and_then(|i| by_inference.remove(i))
                        .unwrap_or_default(),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(DatasetPage { pictures, next })
    }
}
