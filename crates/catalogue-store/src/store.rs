//! Catalogue versions as blobs `pipelines/{version}.json` in one blob store (for Azure: the
//! container named by `NACHET_BLOB_PIPELINE_NAME`).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use datastore::{BlobError, BlobKey, BlobStore};
use pipeline::ports::{
    CatalogueStore, ListVersionsError, PublishVersionError, ReadVersionError, StoredVersion,
};

/// The folder of the versions inside the store.
pub const VERSIONS_FOLDER: &str = "pipelines";

/// The [`CatalogueStore`] over any [`BlobStore`].
#[derive(Clone)]
pub struct BlobCatalogueStore {
    blobs: Arc<dyn BlobStore>,
    /// Says where the store is, for messages (e.g. `container "nachet-pipelines"`).
    store_name: String,
}

impl BlobCatalogueStore {
    pub fn new(blobs: Arc<dyn BlobStore>, store_name: impl Into<String>) -> Self {
        Self {
            blobs,
            store_name: store_name.into(),
        }
    }

    /// `pipelines/{version}.json`.
    pub fn key(version: &str) -> Result<BlobKey, String> {
        BlobKey::from_segments(&[VERSIONS_FOLDER.to_owned(), format!("{version}.json")])
    }

    fn version_of(key: &BlobKey) -> Option<String> {
        let name = key
            .as_str()
            .strip_prefix(VERSIONS_FOLDER)?
            .strip_prefix('/')?;
        let version = name.strip_suffix(".json")?;
        (!version.is_empty() && !version.contains('/')).then(|| version.to_owned())
    }
}

#[async_trait]
impl CatalogueStore for BlobCatalogueStore {
    fn location(&self) -> String {
        format!("{VERSIONS_FOLDER}/ of {}", self.store_name)
    }

    async fn versions(&self) -> Result<Vec<StoredVersion>, ListVersionsError> {
        let blobs = self
            .blobs
            .list(VERSIONS_FOLDER)
            .await
            .map_err(|e| ListVersionsError {
                location: self.location(),
                reason: e.to_string(),
            })?;
        Ok(blobs
            .into_iter()
            .filter_map(|blob| {
                Some(StoredVersion {
                    version: Self::version_of(&blob.key)?,
                    published_at: blob.last_modified,
                })
            })
            .collect())
    }

    async fn read(&self, version: &str) -> Result<String, ReadVersionError> {
        let not_found = || ReadVersionError::NotFound {
            version: version.to_owned(),
            location: self.location(),
        };
        let storage = |reason: String| ReadVersionError::Storage {
            version: version.to_owned(),
            location: self.location(),
            reason,
        };
        // A version that cannot be a key was never written.
        let key = Self::key(version).map_err(|_| not_found())?;
        match self.blobs.get(&key).await {
            Ok(bytes) => String::from_utf8(bytes.to_vec())
                .map_err(|_| storage(format!("{key} is not UTF-8 text"))),
            Err(BlobError::NotFound(_)) => Err(not_found()),
            Err(e) => Err(storage(e.to_string())),
        }
    }

    async fn publish(&self, version: &str, document: String) -> Result<(), PublishVersionError> {
        let storage = |reason: String| PublishVersionError::Storage {
            version: version.to_owned(),
            location: self.location(),
            reason,
        };
        let key = Self::key(version)
            .map_err(|e| storage(format!("\"{version}\" cannot name a blob: {e}")))?;
        match self.blobs.put_new(&key, Bytes::from(document)).await {
            Ok(()) => Ok(()),
            Err(BlobError::AlreadyExists(_)) => Err(PublishVersionError::AlreadyExists {
                version: version.to_owned(),
                location: self.location(),
            }),
            Err(e) => Err(storage(e.to_string())),
        }
    }
}
