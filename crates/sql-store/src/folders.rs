//! [`FolderStore`]: folders (picture sets), their pictures, and deletions with their blobs.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use chrono::Utc;
use datastore::{
    ArchiveDestination, Folder, FolderContents, FolderDeletion, FolderStore, ImportSession,
    ImportedPicture, PictureSummary, StoreError, StoredPicture,
};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect,
};
use uuid::Uuid;

use crate::SqlStore;
use crate::connection::stored_time;
use crate::entities::{
    blob_deletion, import_session, inference, inference_box, picture, picture_set,
};
use crate::error::store_error;

/// Ids per `IN (...)` list: well below the bound-parameter limits of SQLite and Postgres.
const IDS_PER_QUERY: usize = 500;

fn to_import(row: import_session::Model) -> Result<ImportSession, StoreError> {
    let count = |what: &str, value: i64| {
        u32::try_from(value).map_err(|_| crate::error::out_of_range(what, value))
    };
    Ok(ImportSession {
        id: row.id,
        user_id: row.user_id,
        folder_id: row.picture_set_id,
        expected_pictures: count("expected pictures", row.expected_pictures)?,
        received_pictures: count("received pictures", row.received_pictures)?,
    })
}

fn to_folder(row: picture_set::Model) -> Folder {
    Folder {
        id: row.id,
        user_id: row.user_id,
        container: row.container,
        name: row.name,
    }
}

#[async_trait]
impl FolderStore for SqlStore {
    async fn list_folders(&self, user_id: Uuid) -> Result<Vec<FolderContents>, StoreError> {
        let db = self.connection();
        let sets = picture_set::Entity::find()
            .filter(picture_set::Column::UserId.eq(user_id))
            .order_by_asc(picture_set::Column::Name)
            .all(db)
            .await
            .map_err(store_error)?;
        let set_ids: Vec<Uuid> = sets.iter().map(|s| s.id).collect();
        let pictures = pictures_of(db, &set_ids).await?;
        let picture_ids: Vec<Uuid> = pictures.iter().map(|p| p.id).collect();
        let latest = latest_inferences(db, &picture_ids).await?;
        let verified = verified_pictures(db, &pictures, &latest).await?;

        let mut by_set: HashMap<Uuid, Vec<PictureSummary>> = HashMap::new();
        for p in pictures {
            by_set
                .entry(p.picture_set_id)
                .or_default()
                .push(PictureSummary {
                    id: p.id,
                    has_inference: latest.contains_key(&p.id),
                    verified: verified.contains(&p.id),
                });
        }
        Ok(sets
            .into_iter()
            .map(|set| FolderContents {
                pictures: by_set.remove(&set.id).unwrap_or_default(),
                folder: to_folder(set),
            })
            .collect())
    }

    async fn create_folder(
        &self,
        user_id: Uuid,
        container: &str,
        name: &str,
    ) -> Result<Folder, StoreError> {
        let row = picture_set::Model {
            id: Uuid::new_v4(),
            user_id,
            container: container.to_owned(),
            name: name.to_owned(),
        };
        picture_set::Entity::insert(row.clone().into_active_model())
            .exec_without_returning(self.connection())
            .await
            .map_err(store_error)?;
        Ok(to_folder(row))
    }

    async fn find_or_create_folder(
        &self,
        user_id: Uuid,
        container: &str,
        name: &str,
    ) -> Result<Folder, StoreError> {
        find_or_create_set(self.connection(), Uuid::new_v4(), user_id, container, name)
            .await
            .map(to_folder)
    }

    async fn find_folder_by_name(
        &self,
        user_id: Uuid,
        name: &str,
    ) -> Result<Option<Folder>, StoreError> {
        Ok(picture_set::Entity::find()
            .filter(picture_set::Column::UserId.eq(user_id))
            .filter(picture_set::Column::Container.eq(user_id.to_string()))
            .filter(picture_set::Column::Name.eq(name))
            .one(self.connection())
            .await
            .map_err(store_error)?
            .map(to_folder))
    }

    async fn find_folder(&self, id: Uuid) -> Result<Option<Folder>, StoreError> {
        Ok(picture_set::Entity::find_by_id(id)
            .one(self.connection())
            .await
            .map_err(store_error)?
            .map(to_folder))
    }

    async fn count_verified_pictures(&self, folder_id: Uuid) -> Result<usize, StoreError> {
        let db = self.connection();
        let pictures = pictures_of(db, &[folder_id]).await?;
        let ids: Vec<Uuid> = pictures.iter().map(|p| p.id).collect();
        let latest = latest_inferences(db, &ids).await?;
        Ok(verified_pictures(db, &pictures, &latest).await?.len())
    }

    async fn find_picture(&self, id: Uuid) -> Result<Option<StoredPicture>, StoreError> {
        let db = self.connection();
        let Some(row) = picture::Entity::find_by_id(id)
            .one(db)
            .await
            .map_err(store_error)?
        else {
            return Ok(None);
        };
        let latest = latest_inferences(db, &[id]).await?;
        Ok(Some(StoredPicture {
            id: row.id,
            user_id: row.user_id,
            folder_id: row.picture_set_id,
            blob_key: row.blob_key,
            content_type: row.content_type,
            sha256: row.sha256,
            latest_inference: latest.get(&id).copied(),
        }))
    }

    async fn delete_folder(
        &self,
        folder_id: Uuid,
        archive: Option<ArchiveDestination>,
    ) -> Result<FolderDeletion, StoreError> {
        let txn = self.begin_write().await?;
        let pictures = pictures_of(&txn, &[folder_id]).await?;
        let ids: Vec<Uuid> = pictures.iter().map(|p| p.id).collect();
        let latest = latest_inferences(&txn, &ids).await?;
        let keep: HashSet<Uuid> = match archive {
            Some(_) => verified_pictures(&txn, &pictures, &latest).await?,
            None => HashSet::new(),
        };

        let mut deletion = FolderDeletion::default();
        if let Some(archive) = archive.as_ref().filter(|_| !keep.is_empty()) {
            let destination = find_or_create_set(
                &txn,
                Uuid::new_v4(),
                archive.owner,
                &archive.owner.to_string(),
                &archive.folder_name,
            )
            .await?;
            let kept: Vec<Uuid> = keep.iter().copied().collect();
            for chunk in kept.chunks(IDS_PER_QUERY) {
                picture::Entity::update_many()
                    .col_expr(picture::Column::PictureSetId, Expr::value(destination.id))
                    .col_expr(picture::Column::UserId, Expr::value(archive.owner))
                    .filter(picture::Column::Id.is_in(chunk.to_vec()))
                    .exec(&txn)
                    .await
                    .map_err(store_error)?;
            }
            deletion.archived_pictures = kept.len();
        }

        let doomed: Vec<&picture::Model> =
            pictures.iter().filter(|p| !keep.contains(&p.id)).collect();
        let doomed_ids: Vec<Uuid> = doomed.iter().map(|p| p.id).collect();
        let mut blobs: Vec<String> = doomed.iter().map(|p| p.blob_key.clone()).collect();
        for chunk in doomed_ids.chunks(IDS_PER_QUERY) {
            let inferences = inference::Entity::find()
                .filter(inference::Column::PictureId.is_in(chunk.to_vec()))
                .all(&txn)
                .await
                .map_err(store_error)?;
            blobs.extend(inferences.into_iter().map(|i| i.result_blob_key));
            // Boxes and candidates go with their inference (ON DELETE CASCADE).
            inference::Entity::delete_many()
                .filter(inference::Column::PictureId.is_in(chunk.to_vec()))
                .exec(&txn)
                .await
                .map_err(store_error)?;
            picture::Entity::delete_many()
                .filter(picture::Column::Id.is_in(chunk.to_vec()))
                .exec(&txn)
                .await
                .map_err(store_error)?;
        }
        picture_set::Entity::delete_by_id(folder_id)
            .exec(&txn)
            .await
            .map_err(store_error)?;

        let queued_at = stored_time(Utc::now());
        for chunk in blobs.chunks(IDS_PER_QUERY) {
            blob_deletion::Entity::insert_many(chunk.iter().map(|key| {
                blob_deletion::Model {
                    blob_key: key.clone(),
                    queued_at,
                }
                .into_active_model()
            }))
            .on_conflict_do_nothing_on([blob_deletion::Column::BlobKey])
            .exec_without_returning(&txn)
            .await
            .map_err(store_error)?;
        }
        txn.commit().await.map_err(store_error)?;
        deletion.deleted_pictures = doomed_ids.len();
        deletion.queued_blobs = blobs;
        Ok(deletion)
    }

    async fn open_import(
        &self,
        user_id: Uuid,
        container: &str,
        folder_name: &str,
        expected_pictures: u32,
    ) -> Result<(ImportSession, Folder), StoreError> {
        let txn = self.begin_write().await?;
        let set = find_or_create_set(&txn, Uuid::new_v4(), user_id, container, folder_name).await?;
        let session = import_session::Model {
            id: Uuid::new_v4(),
            user_id,
            picture_set_id: set.id,
            expected_pictures: i64::from(expected_pictures),
            received_pictures: 0,
            created_at: stored_time(Utc::now()),
        };
        import_session::Entity::insert(session.clone().into_active_model())
            .exec_without_returning(&txn)
            .await
            .map_err(store_error)?;
        txn.commit().await.map_err(store_error)?;
        Ok((to_import(session)?, to_folder(set)))
    }

    async fn find_import(&self, id: Uuid) -> Result<Option<ImportSession>, StoreError> {
        import_session::Entity::find_by_id(id)
            .one(self.connection())
            .await
            .map_err(store_error)?
            .map(to_import)
            .transpose()
    }

    async fn save_imported_picture(&self, new: &ImportedPicture) -> Result<(), StoreError> {
        let txn = self.begin_write().await?;
        let counted = import_session::Entity::update_many()
            .col_expr(
                import_session::Column::ReceivedPictures,
                Expr::col(import_session::Column::ReceivedPictures).add(1),
            )
            .filter(import_session::Column::Id.eq(new.session_id))
            .filter(
                Expr::col(import_session::Column::ReceivedPictures)
                    .lt(Expr::col(import_session::Column::ExpectedPictures)),
            )
            .exec(&txn)
            .await
            .map_err(store_error)?;
        if counted.rows_affected == 0 {
            let _ = txn.rollback().await;
            return Err(StoreError::Conflict(format!(
                "the batch {} has received every picture it announced",
                new.session_id
            )));
        }
        let session = import_session::Entity::find_by_id(new.session_id)
            .one(&txn)
            .await
            .map_err(store_error)?
            .ok_or_else(|| StoreError::Database(format!("no batch {}", new.session_id)))?;
        picture::Entity::insert(
            picture::Model {
                id: new.id,
                picture_set_id: session.picture_set_id,
                user_id: new.user_id,
                blob_key: new.blob_key.clone(),
                sha256: new.sha256.clone(),
                content_type: new.content_type.clone(),
                width: i64::from(new.width),
                height: i64::from(new.height),
                created_at: stored_time(new.created_at),
                labelled_seed_id: Some(new.label.seed_id),
                zoom_level: Some(new.label.zoom_level),
                nb_seeds: Some(i64::from(new.label.nb_seeds)),
            }
            .into_active_model(),
        )
        .exec_without_returning(&txn)
        .await
        .map_err(store_error)?;
        txn.commit().await.map_err(store_error)
    }

    async fn queued_blob_deletions(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        Ok(blob_deletion::Entity::find()
            .order_by_asc(blob_deletion::Column::QueuedAt)
            .order_by_asc(blob_deletion::Column::BlobKey)
            .limit(limit as u64)
            .all(self.connection())
            .await
            .map_err(store_error)?
            .into_iter()
            .map(|row| row.blob_key)
            .collect())
    }

    async fn forget_blob_deletions(&self, keys: &[String]) -> Result<(), StoreError> {
        for chunk in keys.chunks(IDS_PER_QUERY) {
            blob_deletion::Entity::delete_many()
                .filter(blob_deletion::Column::BlobKey.is_in(chunk.to_vec()))
                .exec(self.connection())
                .await
                .map_err(store_error)?;
        }
        Ok(())
    }
}

/// Insert-if-absent (with `id_if_new`), then read: safe against a concurrent creation of
/// the same folder.
pub(crate) async fn find_or_create_set<C: ConnectionTrait>(
    db: &C,
    id_if_new: Uuid,
    user_id: Uuid,
    container: &str,
    name: &str,
) -> Result<picture_set::Model, StoreError> {
    picture_set::Entity::insert(
        picture_set::Model {
            id: id_if_new,
            user_id,
            container: container.to_owned(),
            name: name.to_owned(),
        }
        .into_active_model(),
    )
    .on_conflict_do_nothing_on([
        picture_set::Column::UserId,
        picture_set::Column::Container,
        picture_set::Column::Name,
    ])
    .exec_without_returning(db)
    .await
    .map_err(store_error)?;

    picture_set::Entity::find()
        .filter(picture_set::Column::UserId.eq(user_id))
        .filter(picture_set::Column::Container.eq(container))
        .filter(picture_set::Column::Name.eq(name))
        .one(db)
        .await
        .map_err(store_error)?
        .ok_or_else(|| {
            StoreError::Database(format!(
                "the picture set {name:?} of container {container:?} vanished right after its creation"
            ))
        })
}

/// The pictures of some folders, oldest first.
async fn pictures_of<C: ConnectionTrait>(
    db: &C,
    set_ids: &[Uuid],
) -> Result<Vec<picture::Model>, StoreError> {
    let mut pictures = Vec::new();
    for chunk in set_ids.chunks(IDS_PER_QUERY) {
        let mut rows = picture::Entity::find()
            .filter(picture::Column::PictureSetId.is_in(chunk.to_vec()))
            .order_by_asc(picture::Column::CreatedAt)
            .order_by_asc(picture::Column::Id)
            .all(db)
            .await
            .map_err(store_error)?;
        pictures.append(&mut rows);
    }
    Ok(pictures)
}

/// The latest inference of each picture that has one: picture id → inference id.
pub(crate) async fn latest_inferences<C: ConnectionTrait>(
    db: &C,
    picture_ids: &[Uuid],
) -> Result<HashMap<Uuid, Uuid>, StoreError> {
    let mut latest = HashMap::new();
    for chunk in picture_ids.chunks(IDS_PER_QUERY) {
        // Oldest first, so that the last one written into the map is the latest.
        let rows: Vec<(Uuid, Uuid)> = inference::Entity::find()
            .select_only()
            .column(inference::Column::PictureId)
            .column(inference::Column::Id)
            .filter(inference::Column::PictureId.is_in(chunk.to_vec()))
            .order_by_asc(inference::Column::CreatedAt)
            .order_by_asc(inference::Column::Id)
            .into_tuple()
            .all(db)
            .await
            .map_err(store_error)?;
        latest.extend(rows);
    }
    Ok(latest)
}

/// The verified ones of `pictures`: labelled on import, or whose latest inference is.
pub(crate) async fn verified_pictures<C: ConnectionTrait>(
    db: &C,
    pictures: &[picture::Model],
    latest: &HashMap<Uuid, Uuid>,
) -> Result<HashSet<Uuid>, StoreError> {
    let inferences: Vec<Uuid> = latest.values().copied().collect();
    let verified = verified_inferences(db, &inferences).await?;
    Ok(pictures
        .iter()
        .filter(|p| {
            p.labelled_seed_id.is_some() || latest.get(&p.id).is_some_and(|i| verified.contains(i))
        })
        .map(|p| p.id)
        .collect())
}

/// Those of `inference_ids` that are verified: they have boxes, and every box is verified.
async fn verified_inferences<C: ConnectionTrait>(
    db: &C,
    inference_ids: &[Uuid],
) -> Result<HashSet<Uuid>, StoreError> {
    let mut boxes_seen: HashSet<Uuid> = HashSet::new();
    let mut unverified: HashSet<Uuid> = HashSet::new();
    for chunk in inference_ids.chunks(IDS_PER_QUERY) {
        let rows: Vec<(Uuid, Option<chrono::DateTime<Utc>>)> = inference_box::Entity::find()
            .select_only()
            .column(inference_box::Column::InferenceId)
            .column(inference_box::Column::VerifiedAt)
            .filter(inference_box::Column::InferenceId.is_in(chunk.to_vec()))
            .into_tuple()
            .all(db)
            .await
            .map_err(store_error)?;
        for (inference_id, verified_at) in rows {
            boxes_seen.insert(inference_id);
            if verified_at.is_none() {
                unverified.insert(inference_id);
            }
        }
    }
    Ok(boxes_seen.difference(&unverified).copied().collect())
}
