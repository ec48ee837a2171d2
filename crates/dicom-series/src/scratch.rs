//! Temporary folders for one attempt: the retrieved instances and the ZIP live there.

use std::any::Any;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

/// A fresh, empty folder that is removed when this value is dropped, whatever ends the
/// attempt: success, an error, a panic, or the attempt being cancelled.
pub struct ScratchDir {
    path: PathBuf,
    // Whatever removes the folder on drop (e.g. a `tempfile::TempDir`).
    _remover: Box<dyn Any + Send + Sync>,
}

impl ScratchDir {
    pub fn new(path: PathBuf, remover: impl Any + Send + Sync) -> Self {
        Self {
            path,
            _remover: Box::new(remover),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl std::fmt::Debug for ScratchDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ScratchDir").field(&self.path).finish()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("could not create a temporary folder: {0}")]
pub struct ScratchError(pub String);

/// What went wrong in an I/O error, without the path that some libraries (tempfile) put in
/// its text: a series' `lastError` is shown to clients and never names the server's files
/// (the adapters log the path).
pub fn io_reason(error: &std::io::Error) -> String {
    match error.raw_os_error() {
        Some(code) => std::io::Error::from_raw_os_error(code).to_string(),
        None => error.kind().to_string(),
    }
}

#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait ScratchSpace: Send + Sync {
    /// A new empty folder, never one used before. `label` may appear in its name.
    async fn create(&self, label: &str) -> Result<ScratchDir, ScratchError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_io_reason_keeps_the_cause_and_drops_the_path() {
        let with_path = std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            "No space left on device at path \"/var/tmp/nachet/proc-1/series-x\"",
        );
        assert_eq!(io_reason(&with_path), "no storage space");
        let os = std::io::Error::from_raw_os_error(28);
        assert!(io_reason(&os).starts_with("No space left on device"));
    }
}
