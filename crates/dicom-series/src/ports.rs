//! What the DICOM series domain needs from outside.
//!
//! Retrieval and archiving work on local files so that memory never grows with a series:
//! the source streams each instance to its own file, the archiver streams those files into
//! one ZIP file, the ML app client streams that file out.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

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
    /// For the local-folder source of the embedded default: a folder path.
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

/// One instance as listed by a search (QIDO-RS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceListing {
    pub sop_instance_uid: String,
    pub instance_number: Option<i64>,
}

/// One instance of a series, written whole to a local Part-10 file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetrievedInstance {
    pub path: PathBuf,
    pub sop_instance_uid: String,
    pub modality: Option<String>,
    pub instance_number: Option<i64>,
    /// Bytes in the file.
    pub size: u64,
}

/// Whether trying again later may succeed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// Connection refused or reset, 5xx, timeout: worth retrying.
    #[error("{0}")]
    Transient(String),
    /// Not found, unauthorized, not DICOM, inconsistent series: retrying will not help.
    #[error("{0}")]
    Permanent(String),
}

#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait DicomSource: Send + Sync {
    /// The instances the server lists for the series (QIDO-RS).
    async fn list_instances(
        &self,
        server: &DicomServer,
        series: &SeriesKey,
    ) -> Result<Vec<InstanceListing>, FetchError>;

    /// Writes every instance of the series into `dir` (which exists and is empty), one
    /// Part-10 file per instance, as the bytes arrive (WADO-RS, one streamed request).
    /// Each file holds exactly the instance's bytes, never MIME framing.
    async fn retrieve_series(
        &self,
        server: &DicomServer,
        series: &SeriesKey,
        dir: &Path,
    ) -> Result<Vec<RetrievedInstance>, FetchError>;
}

/// What [`SeriesArchiver::archive`] produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Archive {
    pub path: PathBuf,
    /// `dicom_{study}_{series}.zip` (contract 2.3).
    pub file_name: String,
    /// Entry names, in the order written (one per instance, distinct, deterministic).
    pub entries: Vec<String>,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("could not build the series archive: {0}")]
pub struct ArchiveError(pub String);

#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait SeriesArchiver: Send + Sync {
    /// Streams the instances into the ZIP of contract 2.3 inside `dir`. The file appears
    /// under its final name only when it is complete; on error nothing is left behind.
    async fn archive(
        &self,
        series: &SeriesKey,
        instances: &[RetrievedInstance],
        dir: &Path,
    ) -> Result<Archive, ArchiveError>;
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
