//! What the pipeline domain needs from outside.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::active::RecordedIds;
use crate::catalogue::Catalogue;

#[derive(Debug, thiserror::Error)]
#[error("could not record the catalogue's pipelines in the database: {0}")]
pub struct RecordCatalogueError(pub String);

/// Records the pipelines and models of a catalogue so that inferences can point at them.
///
/// Recording the same pipeline version (name, version) or model version again returns the
/// ids it already has.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait CatalogueRecorder: Send + Sync {
    async fn record(&self, catalogue: &Catalogue) -> Result<RecordedIds, RecordCatalogueError>;
}

/// The catalogue version every replica of the backend should run, kept where all of them
/// see it: chosen by a new configuration at start and by the admin API, polled by every
/// replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChosenCatalogue {
    pub version: String,
    /// The configuration's version when it was last seen at a start.
    pub configured: Option<String>,
}

#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait ChosenVersion: Send + Sync {
    /// The version chosen last, if any was.
    async fn chosen(&self) -> Result<Option<ChosenCatalogue>, RecordCatalogueError>;

    /// Makes `version` the one every replica should run; `configured`, when given, is
    /// recorded as the configuration's version (else the recorded one stays).
    async fn choose(
        &self,
        version: &str,
        configured: Option<String>,
    ) -> Result<(), RecordCatalogueError>;
}

/// Why a value could not be decrypted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    /// A well-formed token that this key did not make (or that was altered since).
    #[error("was encrypted with another key")]
    WrongKey,
    /// Not a token at all: e.g. a plain value where an encrypted one belongs.
    #[error("is not an encrypted value ({0})")]
    NotAToken(String),
}

/// Encrypts and decrypts single values (the catalogue's endpoints and API keys) with one key.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
pub trait SecretCipher: Send + Sync {
    fn encrypt(&self, plain: &str) -> String;
    fn decrypt(&self, token: &str) -> Result<String, DecryptError>;
}

/// A catalogue version present in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredVersion {
    /// `MAJOR.MINOR.PATCH`.
    pub version: String,
    /// When it was written to the store.
    pub published_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot list the catalogue versions in {location}: {reason}")]
pub struct ListVersionsError {
    pub location: String,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadVersionError {
    #[error("catalogue version {version} is not in {location}")]
    NotFound { version: String, location: String },
    #[error("cannot read catalogue version {version} from {location}: {reason}")]
    Storage {
        version: String,
        location: String,
        reason: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum PublishVersionError {
    #[error(
        "catalogue version {version} already exists in {location} and is never overwritten: \
         give the document a new version"
    )]
    AlreadyExists { version: String, location: String },
    #[error("cannot write catalogue version {version} to {location}: {reason}")]
    Storage {
        version: String,
        location: String,
        reason: String,
    },
}

/// Where catalogue versions are kept, as stored documents (secrets encrypted).
///
/// Versions are immutable: [`publish`](Self::publish) creates, never replaces, and of
/// concurrent publishers of one version exactly one succeeds.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait CatalogueStore: Send + Sync {
    /// Where the versions are, for messages (e.g. `container "pipelines", pipelines/`).
    fn location(&self) -> String;
    async fn versions(&self) -> Result<Vec<StoredVersion>, ListVersionsError>;
    async fn read(&self, version: &str) -> Result<String, ReadVersionError>;
    async fn publish(&self, version: &str, document: String) -> Result<(), PublishVersionError>;
}
