//! Deleting a folder when the database or blob storage fails midway: neither half is left.
//!
//! The folders are made through the real `/inf`; the deletion runs through a
//! `FolderService` over the backend's own database and blob storage, with a failure
//! injected on one side.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use common::*;
use datastore::{
    ArchiveDestination, BlobError, BlobInfo, BlobKey, BlobStore, Folder, FolderContents,
    FolderDeletion, FolderStore, ImportSession, ImportedPicture, StoreError, StoredPicture,
};
use inference::{
    CodecPool, DeletionMode, FolderPorts, FolderService, FolderSettings, PictureLimits,
};
use serde_json::json;
use uuid::Uuid;

/// The backend's blob storage, whose deletions fail while `failing` is set.
struct FlakyBlobs {
    inner: Arc<dyn BlobStore>,
    failing: AtomicBool,
}

#[async_trait]
impl BlobStore for FlakyBlobs {
    async fn put(&self, key: &BlobKey, bytes: Bytes) -> Result<(), BlobError> {
        self.inner.put(key, bytes).await
    }
    async fn put_new(&self, key: &BlobKey, bytes: Bytes) -> Result<(), BlobError> {
        self.inner.put_new(key, bytes).await
    }
    async fn get(&self, key: &BlobKey) -> Result<Bytes, BlobError> {
        self.inner.get(key).await
    }
    async fn delete(&self, key: &BlobKey) -> Result<(), BlobError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(BlobError::Storage("injected: blob storage is down".into()));
        }
        self.inner.delete(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>, BlobError> {
        self.inner.list(prefix).await
    }
}

/// The backend's database, whose folder deletion fails (its transaction never commits).
struct FailingDeletion(Arc<sql_store::SqlStore>);

#[async_trait]
impl FolderStore for FailingDeletion {
    async fn list_folders(&self, user_id: Uuid) -> Result<Vec<FolderContents>, StoreError> {
        self.0.list_folders(user_id).await
    }
    async fn create_folder(&self, u: Uuid, c: &str, n: &str) -> Result<Folder, StoreError> {
        self.0.create_folder(u, c, n).await
    }
    async fn find_or_create_folder(&self, u: Uuid, c: &str, n: &str) -> Result<Folder, StoreError> {
        self.0.find_or_create_folder(u, c, n).await
    }
    async fn find_folder(&self, id: Uuid) -> Result<Option<Folder>, StoreError> {
        self.0.find_folder(id).await
    }
    async fn find_folder_by_name(&self, u: Uuid, n: &str) -> Result<Option<Folder>, StoreError> {
        self.0.find_folder_by_name(u, n).await
    }
    async fn count_verified_pictures(&self, id: Uuid) -> Result<usize, StoreError> {
        self.0.count_verified_pictures(id).await
    }
    async fn find_picture(&self, id: Uuid) -> Result<Option<StoredPicture>, StoreError> {
        self.0.find_picture(id).await
    }
    async fn delete_folder(
        &self,
        _: Uuid,
        _: Option<ArchiveDestination>,
    ) -> Result<FolderDeletion, StoreError> {
        Err(StoreError::Database(
            "injected: the connection dropped".into(),
        ))
    }
    async fn open_import(
        &self,
        u: Uuid,
        c: &str,
        n: &str,
        expected: u32,
    ) -> Result<(ImportSession, Folder), StoreError> {
        self.0.open_import(u, c, n, expected).await
    }
    async fn find_import(&self, id: Uuid) -> Result<Option<ImportSession>, StoreError> {
        self.0.find_import(id).await
    }
    async fn save_imported_picture(&self, picture: &ImportedPicture) -> Result<(), StoreError> {
        self.0.save_imported_picture(picture).await
    }
    async fn queued_blob_deletions(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        self.0.queued_blob_deletions(limit).await
    }
    async fn forget_blob_deletions(&self, keys: &[String]) -> Result<(), StoreError> {
        self.0.forget_blob_deletions(keys).await
    }
}

fn settings() -> FolderSettings {
    FolderSettings {
        default_folder: "General".into(),
        archive_owner: "archive@nachet.local".into(),
    }
}

/// A user with a folder of two inferred pictures: (user, folder).
async fn a_folder_of_two_pictures(t: &TestBackend) -> (Uuid, Uuid) {
    let user = t.user(TECH).await;
    let created: serde_json::Value = t
        .http
        .post(t.url("/create-dir"))
        .json(&json!({"container_name": user, "folder_name": "Lot 7"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let folder = created["picture_set_id"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        let mut body = inf_body(
            DEFAULT_PIPELINE,
            &user,
            data_url("image/png", &photo_bytes()),
            [638, 559],
        );
        body["folder_name"] = folder.clone().into();
        let response = t.http.post(t.url("/inf")).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    (
        Uuid::parse_str(&user).unwrap(),
        Uuid::parse_str(&folder).unwrap(),
    )
}

async fn blob_storage_fails_after_the_rows_are_gone(t: &TestBackend) {
    let (user, folder) = a_folder_of_two_pictures(t).await;
    assert_eq!(t.blob_keys().await.len(), 4);
    let store = t.store.clone();
    let blobs = Arc::new(FlakyBlobs {
        inner: t.blobs.clone(),
        failing: AtomicBool::new(true),
    });
    let folders = FolderService::new(
        FolderPorts {
            folders: store.clone(),
            inferences: store.clone(),
            users: store.clone(),
            seeds: store.clone(),
            blobs: blobs.clone(),
        },
        CodecPool::new(
            1,
            PictureLimits {
                max_pixels: 50_000_000,
            },
        ),
        settings(),
    );

    let deletion = folders
        .delete(user, folder, DeletionMode::Permanently)
        .await
        .expect("the rows are deleted even though the blobs are not yet");
    assert_eq!(deletion.deleted_pictures, 2);
    assert_eq!(t.count("pictures").await, 0);
    assert_eq!(t.count("inferences").await, 0);
    assert_eq!(t.count("inference_boxes").await, 0);
    // The blobs are still there, and remembered.
    assert_eq!(t.blob_keys().await.len(), 4);
    assert_eq!(t.count("blob_deletions").await, 4);
    assert_eq!(
        folders.delete_queued_blobs().await.unwrap(),
        4,
        "still down"
    );

    // Blob storage is back: the next attempt (a deletion, or the start of the backend)
    // finishes the work.
    blobs.failing.store(false, Ordering::SeqCst);
    assert_eq!(folders.delete_queued_blobs().await.unwrap(), 0);
    assert_eq!(t.blob_keys().await, Vec::<String>::new());
    assert_eq!(t.count("blob_deletions").await, 0);
}

async fn the_database_fails_before_any_blob_is_touched(t: &TestBackend) {
    let (user, folder) = a_folder_of_two_pictures(t).await;
    let store = t.store.clone();
    let folders = FolderService::new(
        FolderPorts {
            folders: Arc::new(FailingDeletion(store.clone())),
            inferences: store.clone(),
            users: store.clone(),
            seeds: store.clone(),
            blobs: t.blobs.clone(),
        },
        CodecPool::new(
            1,
            PictureLimits {
                max_pixels: 50_000_000,
            },
        ),
        settings(),
    );
    let error = folders
        .delete(user, folder, DeletionMode::Permanently)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("injected"), "{error}");
    assert_eq!(t.count("pictures").await, 2);
    assert_eq!(t.count("inferences").await, 2);
    assert_eq!(t.count("blob_deletions").await, 0);
    assert_eq!(t.blob_keys().await.len(), 4);
}

#[tokio::test]
async fn blob_storage_fails_after_the_rows_are_gone_on_postgres_and_azurite() {
    let t = start(Db::Postgres, Blobs::Azurite).await;
    blob_storage_fails_after_the_rows_are_gone(&t).await;
    t.backend.stop().await;
}

#[tokio::test]
async fn blob_storage_fails_after_the_rows_are_gone_on_sqlite() {
    let t = start(Db::Sqlite, Blobs::LocalDisk).await;
    blob_storage_fails_after_the_rows_are_gone(&t).await;
    t.backend.stop().await;
}

#[tokio::test]
async fn the_database_fails_before_any_blob_is_touched_on_postgres_and_azurite() {
    let t = start(Db::Postgres, Blobs::Azurite).await;
    the_database_fails_before_any_blob_is_touched(&t).await;
    t.backend.stop().await;
}
