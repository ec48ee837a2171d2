//! What the seed backend keeps, as ports.
//!
//! Records (users, pictures, inferences, boxes, candidates, seeds) go to a database through
//! [`UserStore`], [`SeedStore`], [`InferenceStore`] and [`FolderStore`]; bytes (pictures, result documents,
//! catalogue versions) go to blob storage through [`BlobStore`].
//!
//! Architecture invariant: types and traits only. No ORM, no storage SDK, no I/O.

mod blob;
mod records;

#[cfg(feature = "mock")]
pub use blob::MockBlobStore;
pub use blob::{BlobError, BlobInfo, BlobKey, BlobStore};
pub use records::*;

use async_trait::async_trait;
use uuid::Uuid;

/// A database failure. The message is for operators' logs, not for users.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("already exists: {0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Database(String),
}

#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait UserStore: Send + Sync {
    async fn find_by_email(&self, email: &str) -> Result<Option<User>, StoreError>;
    async fn find_by_id(&self, id: Uuid) -> Result<Option<User>, StoreError>;
    /// Registers an email; if another request registered it first, returns that user.
    async fn register(&self, email: &str) -> Result<User, StoreError>;
}

#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait SeedStore: Send + Sync {
    /// Every known seed species, by name.
    async fn list_seeds(&self) -> Result<Vec<Seed>, StoreError>;
}

#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait InferenceStore: Send + Sync {
    /// Saves a picture and its inference, boxes and candidates in one transaction: either
    /// all rows exist afterwards or none does. The picture set is found or created.
    async fn save_inference(&self, inference: &NewInference) -> Result<(), StoreError>;

    /// The saved inference, as [`save_inference`](Self::save_inference) was given it, with
    /// the verification of its boxes as it stands now.
    async fn find_inference(&self, id: Uuid) -> Result<Option<NewInference>, StoreError>;

    /// Applies a person's feedback in one transaction: all of its changes or none. A change
    /// to a box already verified, or an `Add` identical to a box already added (same
    /// corners, same species), is a [`StoreError::Conflict`] and nothing is changed.
    async fn record_feedback(&self, feedback: &Feedback) -> Result<(), StoreError>;
}

/// The verified dataset, read in pages so that an export never holds it whole.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait DatasetStore: Send + Sync {
    /// The verified pictures among the next `limit` pictures (oldest first) after `after`
    /// that pass `filter`.
    async fn dataset_page(
        &self,
        filter: &DatasetFilter,
        after: Option<DatasetCursor>,
        limit: usize,
    ) -> Result<DatasetPage, StoreError>;
}

/// Folders (picture sets), their pictures, and deleting them with their blobs.
///
/// Deleting never leaves rows without blobs or blobs without rows: rows go and their blobs
/// are queued in one transaction ([`delete_folder`](Self::delete_folder)); the caller then
/// deletes the queued blobs and [forgets](Self::forget_blob_deletions) them, and whatever
/// it could not delete stays [queued](Self::queued_blob_deletions) for a later attempt.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait FolderStore: Send + Sync {
    /// Every folder of a user with its pictures, by name.
    async fn list_folders(&self, user_id: Uuid) -> Result<Vec<FolderContents>, StoreError>;
    /// Creates a folder; [`StoreError::Conflict`] when the user has one of that name.
    async fn create_folder(
        &self,
        user_id: Uuid,
        container: &str,
        name: &str,
    ) -> Result<Folder, StoreError>;
    /// The user's folder of that name, created when missing (safe against a concurrent one).
    async fn find_or_create_folder(
        &self,
        user_id: Uuid,
        container: &str,
        name: &str,
    ) -> Result<Folder, StoreError>;
    async fn find_folder(&self, id: Uuid) -> Result<Option<Folder>, StoreError>;
    /// The user's folder of that name (in the user's own container).
    async fn find_folder_by_name(
        &self,
        user_id: Uuid,
        name: &str,
    ) -> Result<Option<Folder>, StoreError>;
    /// How many pictures of the folder are verified (see [`PictureSummary::verified`]).
    async fn count_verified_pictures(&self, folder_id: Uuid) -> Result<usize, StoreError>;
    async fn find_picture(&self, id: Uuid) -> Result<Option<StoredPicture>, StoreError>;
    /// In one transaction: verified pictures move to `archive` (when given; else they are
    /// deleted too), every other picture is deleted with its inferences, the folder is
    /// deleted, and the blobs of every deleted row are queued for deletion.
    async fn delete_folder(
        &self,
        folder_id: Uuid,
        archive: Option<ArchiveDestination>,
    ) -> Result<FolderDeletion, StoreError>;
    /// Opens a batch import into the user's folder of that name (created when missing).
    async fn open_import(
        &self,
        user_id: Uuid,
        container: &str,
        folder_name: &str,
        expected_pictures: u32,
    ) -> Result<(ImportSession, Folder), StoreError>;
    async fn find_import(&self, id: Uuid) -> Result<Option<ImportSession>, StoreError>;
    /// Saves a picture of a batch, counted against the batch's expected number in the same
    /// transaction: a picture beyond it is a [`StoreError::Conflict`] and nothing is saved.
    async fn save_imported_picture(&self, picture: &ImportedPicture) -> Result<(), StoreError>;
    /// Blobs queued for deletion, oldest first, at most `limit`.
    async fn queued_blob_deletions(&self, limit: usize) -> Result<Vec<String>, StoreError>;
    /// Forgets queued blobs once they are deleted.
    async fn forget_blob_deletions(&self, keys: &[String]) -> Result<(), StoreError>;
}
