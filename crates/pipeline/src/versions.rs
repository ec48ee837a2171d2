//! Catalogue versions: publishing one, listing them, opening one, and loading one into the
//! running backend.

use std::cell::Cell;
use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::active::{PipelineRegistry, PipelineSet};
use crate::catalogue::{Catalogue, CatalogueError, CatalogueErrors};
use crate::document::CatalogueDocument;
use crate::ports::{
    CatalogueRecorder, CatalogueStore, DecryptError, ListVersionsError, PublishVersionError,
    ReadVersionError, RecordCatalogueError, SecretCipher,
};

/// The names of the backend's configuration that the messages point at (contract 1.7).
pub const VERSION_ENV: &str = "NACHET_BLOB_PIPELINE_VERSION";
pub const KEY_ENV: &str = "NACHET_BLOB_PIPELINE_DECRYPTION_KEY";
pub const CONTAINER_ENV: &str = "NACHET_BLOB_PIPELINE_NAME";

/// One stored version as `list` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct VersionSummary {
    pub version: String,
    pub published_at: DateTime<Utc>,
    /// The document's own `date`.
    pub date: Option<String>,
    pub pipelines: Vec<String>,
    pub default_pipeline: Option<String>,
    /// Why the stored document could not be read, if it could not.
    pub problem: Option<String>,
}

/// Why a stored version could not be opened, and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum OpenVersionError {
    #[error("{}", not_found_message(.version, .location, .available))]
    NotFound {
        version: String,
        location: String,
        /// The versions that do exist, oldest first.
        available: Vec<String>,
    },
    #[error(
        "catalogue version {version} was encrypted with another key: check {KEY_ENV} \
         (it must be the key the version was inserted with)"
    )]
    WrongKey { version: String },
    #[error(
        "catalogue version {version} is invalid; publish a corrected document as a new \
         version. {errors}"
    )]
    Invalid {
        version: String,
        errors: CatalogueErrors,
    },
    #[error(transparent)]
    Storage(#[from] ReadVersionError),
}

fn not_found_message(version: &str, location: &str, available: &[String]) -> String {
    if available.is_empty() {
        format!(
            "catalogue version {version} is not in {location}, which holds no version yet: \
             publish one with `nachet-catalogue insert FILE`"
        )
    } else {
        format!(
            "catalogue version {version} is not in {location}; the versions there are {}: \
             set {VERSION_ENV} to one of them, or publish {version} with \
             `nachet-catalogue insert FILE`",
            available.join(", ")
        )
    }
}

/// Why a version could not become the running one. The running set is left in place.
#[derive(Debug, thiserror::Error)]
pub enum LoadCatalogueError {
    #[error(transparent)]
    Open(#[from] OpenVersionError),
    #[error(transparent)]
    Record(#[from] RecordCatalogueError),
}

/// Publishing, listing and opening catalogue versions in a store, with one key.
#[derive(Clone)]
pub struct CatalogueVersions {
    store: Arc<dyn CatalogueStore>,
    cipher: Arc<dyn SecretCipher>,
}

impl CatalogueVersions {
    pub fn new(store: Arc<dyn CatalogueStore>, cipher: Arc<dyn SecretCipher>) -> Self {
        Self { store, cipher }
    }

    /// Where the versions are kept, for messages.
    pub fn location(&self) -> String {
        self.store.location()
    }

    /// Checks a document people wrote; see [`validate_document`].
    pub fn validate(&self, document: CatalogueDocument) -> Result<Catalogue, CatalogueErrors> {
        validate_document(document, Some(self.cipher.as_ref()))
    }

    /// Stores a validated catalogue with its endpoints and API keys encrypted, as
    /// `pipelines/{version}.json`; an existing version is never replaced.
    pub async fn publish(&self, catalogue: &Catalogue) -> Result<(), PublishVersionError> {
        let sealed = CatalogueDocument::from_catalogue(catalogue, &mut |_, plain| {
            self.cipher.encrypt(plain)
        });
        self.store
            .publish(catalogue.version(), sealed.to_json())
            .await
    }

    /// Every stored version, oldest first, with its date and pipelines. Reading a version's
    /// summary needs no key: only endpoints and API keys are encrypted.
    pub async fn list(&self) -> Result<Vec<VersionSummary>, ListVersionsError> {
        let mut stored = self.store.versions().await?;
        stored.sort_by(|a, b| compare_versions(&a.version, &b.version));
        let mut summaries = Vec::with_capacity(stored.len());
        for entry in stored {
            let mut summary = VersionSummary {
                version: entry.version.clone(),
                published_at: entry.published_at,
                date: None,
                pipelines: Vec::new(),
                default_pipeline: None,
                problem: None,
            };
            match self.store.read(&entry.version).await {
                Err(e) => summary.problem = Some(e.to_string()),
                Ok(text) => match CatalogueDocument::from_json(&text) {
                    Err(e) => summary.problem = Some(e.to_string()),
                    Ok(document) => {
                        summary.date = document.date;
                        for pipeline in document.pipelines.unwrap_or_default() {
                            let name = pipeline.pipeline_name.unwrap_or_default();
                            if pipeline.default == Some(true) {
                                summary.default_pipeline = Some(name.clone());
                            }
                            summary.pipelines.push(name);
                        }
                    }
                },
            }
            summaries.push(summary);
        }
        Ok(summaries)
    }

    /// Reads a stored version, decrypts its secrets and validates it.
    pub async fn open(&self, version: &str) -> Result<Catalogue, OpenVersionError> {
        let text = match self.store.read(version).await {
            Ok(text) => text,
            Err(ReadVersionError::NotFound { location, .. }) => {
                let mut available: Vec<String> = self
                    .store
                    .versions()
                    .await
                    .map(|versions| versions.into_iter().map(|v| v.version).collect())
                    .unwrap_or_default();
                available.sort_by(|a, b| compare_versions(a, b));
                return Err(OpenVersionError::NotFound {
                    version: version.to_owned(),
                    location,
                    available,
                });
            }
            Err(e) => return Err(e.into()),
        };
        let invalid = |errors| OpenVersionError::Invalid {
            version: version.to_owned(),
            errors,
        };
        let document = CatalogueDocument::from_json(&text).map_err(invalid)?;

        let decrypted = Cell::new(0usize);
        let wrong_key = Cell::new(0usize);
        let cipher = &self.cipher;
        let result = document.into_catalogue(&|token| match cipher.decrypt(token) {
            Ok(plain) => {
                decrypted.set(decrypted.get() + 1);
                Ok(plain)
            }
            Err(DecryptError::WrongKey) => {
                wrong_key.set(wrong_key.get() + 1);
                Err(format!("{}", DecryptError::WrongKey))
            }
            Err(e) => Err(e.to_string()),
        });
        // Every secret refused: the key is not this document's. Some refused: the document
        // was put together with several keys, which only the errors' places can explain.
        if wrong_key.get() > 0 && decrypted.get() == 0 {
            return Err(OpenVersionError::WrongKey {
                version: version.to_owned(),
            });
        }
        let catalogue = result.map_err(invalid)?;
        if catalogue.version() != version {
            return Err(invalid(CatalogueErrors(vec![CatalogueError::new(
                "version",
                format!(
                    "the document says {} but is stored as version {version}",
                    catalogue.version()
                ),
            )])));
        }
        Ok(catalogue)
    }
}

/// Checks a document people wrote. Its `endpoint` and `api_key` values are plain or, when
/// a cipher is given, may also be encrypted with its key (as `nachet-catalogue encrypt`
/// makes them).
pub fn validate_document(
    document: CatalogueDocument,
    cipher: Option<&dyn SecretCipher>,
) -> Result<Catalogue, CatalogueErrors> {
    document.into_catalogue(&|value| match cipher.map(|c| c.decrypt(value)) {
        None | Some(Err(DecryptError::NotAToken(_))) => Ok(value.to_owned()),
        Some(Ok(plain)) => Ok(plain),
        Some(Err(DecryptError::WrongKey)) => Err(format!(
            "is encrypted with another key than the configured one ({KEY_ENV}): write the \
             plain value, or encrypt it with the configured key"
        )),
    })
}

/// Loads catalogue versions into the running backend: open, record, swap.
pub struct CatalogueLoader {
    versions: CatalogueVersions,
    recorder: Arc<dyn CatalogueRecorder>,
    /// One switch at a time, so that the last switch asked for is the one that stays.
    switching: futures::lock::Mutex<()>,
}

impl CatalogueLoader {
    pub fn new(versions: CatalogueVersions, recorder: Arc<dyn CatalogueRecorder>) -> Self {
        Self {
            versions,
            recorder,
            switching: futures::lock::Mutex::new(()),
        }
    }

    pub fn versions(&self) -> &CatalogueVersions {
        &self.versions
    }

    /// Opens a version and records its pipelines and models: the set to serve.
    pub async fn load(&self, version: &str) -> Result<PipelineSet, LoadCatalogueError> {
        let catalogue = self.versions.open(version).await?;
        let ids = self.recorder.record(&catalogue).await?;
        Ok(PipelineSet::new(&catalogue, &ids))
    }

    /// Makes `version` the running set. Requests in flight finish on the set they hold; on
    /// failure the running set stays.
    pub async fn switch(
        &self,
        registry: &PipelineRegistry,
        version: &str,
    ) -> Result<Arc<PipelineSet>, LoadCatalogueError> {
        let _one_at_a_time = self.switching.lock().await;
        let set = self.load(version).await?;
        registry.replace(set);
        Ok(registry.current())
    }
}

/// Orders `MAJOR.MINOR.PATCH` numerically; anything else after, by text.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    fn numbers(v: &str) -> Option<Vec<u64>> {
        crate::catalogue::is_semantic_version(v)
            .then(|| v.split('.').map(|p| p.parse().ok()).collect())
            .flatten()
    }
    match (numbers(a), numbers(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

impl fmt::Display for VersionSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}  published {}",
            self.version,
            self.published_at.format("%Y-%m-%d %H:%M:%S UTC")
        )?;
        if let Some(date) = &self.date {
            write!(f, "  date {date}")?;
        }
        if let Some(problem) = &self.problem {
            return write!(f, "  UNREADABLE: {problem}");
        }
        let names: Vec<String> = self
            .pipelines
            .iter()
            .map(|name| {
                if self.default_pipeline.as_ref() == Some(name) {
                    format!("{name} (default)")
                } else {
                    name.clone()
                }
            })
            .collect();
        write!(f, "  pipelines: {}", names.join(", "))
    }
}
