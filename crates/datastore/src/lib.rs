//! What the seed backend keeps, as ports.
//!
//! Records (users, pictures, inferences, boxes, candidates, seeds) go to a database through
//! [`UserStore`], [`SeedStore`] and [`InferenceStore`]; bytes (pictures, result documents,
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

    /// The saved inference, as [`save_inference`](Self::save_inference) was given it.
    async fn find_inference(&self, id: Uuid) -> Result<Option<NewInference>, StoreError>;
}
