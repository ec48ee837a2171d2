//! What the DICOM series domain needs from outside.
//!
//! One pass: the worker asks the server how many instances the series has (one series
//! search); the source streams each instance it retrieves straight into its entry of the
//! archive the archiver opened on disk, named from the instance's own header
//! ([`SeriesArchive`]); the ML app client streams that one file out. Memory never grows
//! with an instance or a series.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

pub use crate::archive::SeriesArchive;

/// A series within an organization: study *and* series UID (the reference system matched on
/// the study alone and updated the wrong series).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SeriesKey {
    pub study_instance_uid: String,
    pub series_instance_uid: String,
}

/// How to reach an organization's DICOM server.
#[derive(Clone, Debug)]
pub struct DicomServer {
    /// DICOMweb root, e.g. `http://pacs.example.org/dicom-web` (no trailing slash needed).
    pub root: String,
    pub credentials: DicomCredentials,
}

#[derive(Clone, Debug, Default)]
pub enum DicomCredentials {
    #[default]
    None,
    Basic {
        username: String,
        password: SecretString,
    },
    Bearer {
        token: SecretString,
    },
}

/// What names an instance's archive entry, read from the instance's Part-10 header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceListing {
    pub sop_instance_uid: String,
    /// Instance Number (0020,0013); `None` when the instance has none.
    pub instance_number: Option<i64>,
    /// Modality (0008,0060); `None` when the instance has none.
    pub modality: Option<String>,
}

/// Whether trying again later may succeed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// Connection refused or reset, 5xx, timeout, a full disk: worth retrying.
    #[error("{0}")]
    Transient(String),
    /// Not found, unauthorized, not DICOM, an inconsistent series: retrying will not help.
    #[error("{0}")]
    Permanent(String),
}

impl From<ArchiveError> for FetchError {
    /// A write failure is transient; an inconsistent series is permanent.
    fn from(error: ArchiveError) -> Self {
        match error {
            ArchiveError::Write(_) => FetchError::Transient(error.to_string()),
            ArchiveError::Inconsistent(_) => FetchError::Permanent(error.to_string()),
        }
    }
}

#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait DicomSource: Send + Sync {
    /// The series as the server's series search (QIDO-RS) lists it, above all its number
    /// of instances and its modality; `None` when the server does not know it.
    async fn find_series(
        &self,
        server: &DicomServer,
        series: &SeriesKey,
    ) -> Result<Option<SeriesListing>, FetchError>;

    /// Retrieves every instance of the series into `archive` as its bytes arrive (WADO-RS,
    /// one streamed request): for each instance [`SeriesArchive::begin_instance`] with its
    /// SOP Instance UID, InstanceNumber and Modality (read from the instance's first bytes),
    /// then its Part-10 bytes exactly (never MIME framing) through
    /// [`SeriesArchive::write`]; at the end [`SeriesArchive::finish`], whose archive it
    /// returns. Those calls do blocking file I/O: make them from a blocking thread. On an
    /// error, dropping `archive` removes what was written.
    async fn retrieve_series(
        &self,
        server: &DicomServer,
        series: &SeriesKey,
        archive: SeriesArchive,
    ) -> Result<Archive, FetchError>;
}

/// What an [`ArchiveWriter`] produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Archive {
    pub path: PathBuf,
    /// `dicom_{study}_{series}.zip` (contract 2.3).
    pub file_name: String,
    /// Entry names, in the order written (one per instance, distinct, deterministic).
    pub entries: Vec<String>,
    pub size: u64,
    /// The modality most instances name ([`crate::archive::modality_of`]); set by
    /// [`SeriesArchive::finish`], not by the writer.
    pub modality: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    /// Writing the archive failed (a full disk...): worth retrying.
    #[error("could not build the series archive: {0}")]
    Write(String),
    /// The source sent the same instance twice, or not as many as the server counts.
    #[error("{0}")]
    Inconsistent(String),
}

#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait SeriesArchiver: Send + Sync {
    /// A new, empty ZIP of contract 2.3 for the series inside `dir`, to be written entry by
    /// entry. The file appears under its final name only when finished; until then, and if
    /// the writer is dropped unfinished, nothing is left behind.
    async fn create(
        &self,
        series: &SeriesKey,
        dir: &Path,
    ) -> Result<Box<dyn ArchiveWriter>, ArchiveError>;
}

/// One archive being written, entry after entry, front to back. Blocking (file I/O): used
/// from the sources' blocking threads through [`SeriesArchive`].
pub trait ArchiveWriter: Send {
    /// Ends the current entry, if any, and starts entry `name`; `size` is its length when
    /// known in advance (an entry of 4 GiB or more needs it).
    fn start_entry(&mut self, name: &str, size: Option<u64>) -> Result<(), ArchiveError>;
    /// The next bytes of the current entry.
    fn write(&mut self, bytes: &[u8]) -> Result<(), ArchiveError>;
    /// Ends the last entry and completes the archive under its final name, each entry
    /// under its name in `names` (one per entry, in the order written): an entry written
    /// under another name is renamed, which costs one more pass over the archive.
    fn finish(self: Box<Self>, names: &[String]) -> Result<Archive, ArchiveError>;
}

/// The query of `POST {ml_app}/predict` (contract 2.4), plus the run it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PredictionRequest {
    /// The backend's series id, which the ML app names in its status callback.
    pub series_id: uuid::Uuid,
    /// Which run of the series this is; the callback must name it (`runId`).
    pub run_id: uuid::Uuid,
    pub modality: String,
    pub model_type: String,
    pub body_part: Option<String>,
}

/// How to reach an ML app.
#[derive(Clone, Debug)]
pub struct MlAppEndpoint {
    /// Base URL; the client calls `{url}/predict`.
    pub url: String,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// Connection refused, 5xx, timeout: worth retrying.
    #[error("{0}")]
    Transient(String),
    /// 4xx and other answers that will not change on retry.
    #[error("{0}")]
    Permanent(String),
}

#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait MlApp: Send + Sync {
    /// Sends the archive as multipart field `file`, streamed from disk. Ok means the ML app
    /// accepted the job; its result comes later through the status callback.
    async fn submit(
        &self,
        endpoint: &MlAppEndpoint,
        request: &PredictionRequest,
        archive: &Archive,
    ) -> Result<(), SubmitError>;
}

/// A study as a study search (QIDO-RS) lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StudyListing {
    pub study_instance_uid: String,
    pub patient_id: Option<String>,
    pub patient_name: Option<String>,
    /// `YYYYMMDD`, as DICOM writes dates.
    pub study_date: Option<String>,
    pub study_description: Option<String>,
    pub accession_number: Option<String>,
    pub modalities: Vec<String>,
    pub number_of_series: Option<u32>,
    pub number_of_instances: Option<u32>,
}

/// A series as a series search (QIDO-RS) lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeriesListing {
    pub series_instance_uid: String,
    pub modality: Option<String>,
    pub series_number: Option<i64>,
    pub series_description: Option<String>,
    pub number_of_instances: Option<u32>,
    pub body_part: Option<String>,
    /// `YYYYMMDD`, as DICOM writes dates.
    pub series_date: Option<String>,
}

/// Searches an organization's DICOM server, for people choosing what to predict.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait DicomSearch: Send + Sync {
    /// The studies of a patient (QIDO-RS `studies?PatientID=`).
    async fn search_studies(
        &self,
        server: &DicomServer,
        patient_id: &str,
    ) -> Result<Vec<StudyListing>, FetchError>;

    /// The series of a study (QIDO-RS `studies/{study}/series`); none when the server
    /// does not know the study.
    async fn search_series(
        &self,
        server: &DicomServer,
        study_instance_uid: &str,
    ) -> Result<Vec<SeriesListing>, FetchError>;
}
