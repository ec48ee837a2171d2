use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

/// A blob's place: `/`-separated segments, none empty, none `.` or `..`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobKey(String);

impl BlobKey {
    /// Builds a key from segments, each checked by [`BlobKey::check_segment`].
    pub fn from_segments<S: AsRef<str>>(segments: &[S]) -> Result<Self, String> {
        let mut parts = Vec::with_capacity(segments.len());
        for segment in segments {
            let segment = segment.as_ref();
            Self::check_segment(segment)?;
            parts.push(segment);
        }
        if parts.is_empty() {
            return Err("a blob key needs at least one segment".into());
        }
        Ok(Self(parts.join("/")))
    }

    /// Parses a `/`-separated key.
    pub fn parse(key: &str) -> Result<Self, String> {
        let segments: Vec<&str> = key.split('/').collect();
        Self::from_segments(&segments)
    }

    /// A segment may hold any printable text but `/`, `\`, and may not be `.` or `..`.
    pub fn check_segment(segment: &str) -> Result<(), String> {
        if segment.is_empty() {
            return Err("is empty".into());
        }
        if segment == "." || segment == ".." {
            return Err(format!("\"{segment}\" is not allowed"));
        }
        if segment.len() > 255 {
            return Err("is longer than 255 bytes".into());
        }
        if let Some(c) = segment
            .chars()
            .find(|c| *c == '/' || *c == '\\' || c.is_control())
        {
            return Err(format!("may not contain {c:?}"));
        }
        Ok(())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BlobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobInfo {
    pub key: BlobKey,
    pub size: u64,
    pub last_modified: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("no blob at {0}")]
    NotFound(BlobKey),
    #[error("a blob already exists at {0}")]
    AlreadyExists(BlobKey),
    #[error("blob storage error: {0}")]
    Storage(String),
}

/// Bytes by key: local disk, memory, or Azure Blob behind one interface.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Writes a blob, replacing what was there.
    async fn put(&self, key: &BlobKey, bytes: Bytes) -> Result<(), BlobError>;
    /// Writes a blob only if none exists at `key`; of concurrent writers exactly one wins.
    async fn put_new(&self, key: &BlobKey, bytes: Bytes) -> Result<(), BlobError>;
    async fn get(&self, key: &BlobKey) -> Result<Bytes, BlobError>;
    /// Deletes a blob; deleting a missing blob is not an error.
    async fn delete(&self, key: &BlobKey) -> Result<(), BlobError>;
    /// Every blob whose key starts with the segments of `prefix`, ordered by key.
    async fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>, BlobError>;
}
