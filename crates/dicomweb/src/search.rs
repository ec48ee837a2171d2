//! [`DicomSearch`] over QIDO-RS: a patient's studies, a study's series (also one series,
//! for [`crate::DicomWebSource::find_series`]).

use async_trait::async_trait;
use dicom_series::ports::{DicomSearch, DicomServer, FetchError, SeriesListing, StudyListing};
use reqwest::StatusCode;

use crate::qido::{parse_series, parse_studies};
use crate::source::{DicomWebSource, QIDO_ACCEPT, answer_excerpt, error_chain};

/// Study attributes asked for beyond those a study search returns by default: Study
/// Description, Modalities in Study, Number of Study Related Series and Instances.
const STUDY_FIELDS: &[&str] = &["00081030", "00080061", "00201206", "00201208"];
/// Series attributes asked for beyond the defaults: Series Description, Number of Series
/// Related Instances, Body Part Examined, Series Date.
const SERIES_FIELDS: &[&str] = &["0008103E", "00201209", "00180015", "00080021"];

#[async_trait]
impl DicomSearch for DicomWebSource {
    async fn search_studies(
        &self,
        server: &DicomServer,
        patient_id: &str,
    ) -> Result<Vec<StudyListing>, FetchError> {
        let url = format!("{}/studies", server.root.trim_end_matches('/'));
        let mut query = vec![("PatientID", patient_id)];
        query.extend(STUDY_FIELDS.iter().map(|f| ("includefield", *f)));
        let body = self
            .search(server, &url, &query, "the study search")
            .await?;
        parse_studies(&body).map_err(|detail| malformed(server, detail))
    }

    async fn search_series(
        &self,
        server: &DicomServer,
        study_instance_uid: &str,
    ) -> Result<Vec<SeriesListing>, FetchError> {
        self.series_search(server, study_instance_uid, None).await
    }
}

impl DicomWebSource {
    /// The series of a study (QIDO-RS `studies/{study}/series`), only `series_instance_uid`
    /// when given.
    pub(crate) async fn series_search(
        &self,
        server: &DicomServer,
        study_instance_uid: &str,
        series_instance_uid: Option<&str>,
    ) -> Result<Vec<SeriesListing>, FetchError> {
        let url = format!(
            "{}/studies/{study_instance_uid}/series",
            server.root.trim_end_matches('/')
        );
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(uid) = series_instance_uid {
            query.push(("SeriesInstanceUID", uid));
        }
        query.extend(SERIES_FIELDS.iter().map(|f| ("includefield", *f)));
        let body = self
            .search(server, &url, &query, "the series search")
            .await?;
        parse_series(&body).map_err(|detail| malformed(server, detail))
    }

    /// A QIDO-RS search: its answer's body, empty when the server answers 204 or 404
    /// (nothing matches).
    async fn search(
        &self,
        server: &DicomServer,
        url: &str,
        query: &[(&str, &str)],
        what: &str,
    ) -> Result<bytes::Bytes, FetchError> {
        let at = format!("the DICOM server at {}", server.root.trim_end_matches('/'));
        let response = self
            .request(server, url, QIDO_ACCEPT)
            .query(query)
            .timeout(self.options().search_timeout)
            .send()
            .await
            .map_err(|e| {
                let detail = error_chain(&e);
                if e.is_builder() {
                    FetchError::Permanent(format!(
                        "{what} cannot be sent to {at} (check the DICOMweb root URL): {detail}"
                    ))
                } else {
                    FetchError::Transient(format!("{what} on {at} failed: {detail}"))
                }
            })?;
        let status = response.status();
        if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_FOUND {
            return Ok(bytes::Bytes::new());
        }
        if !status.is_success() {
            let answer = answer_excerpt(response).await;
            let message = match status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => format!(
                    "{at} answered {what} with {status}: check the organization's DICOM server credentials{answer}"
                ),
                _ => format!("{at} answered {what} with {status}{answer}"),
            };
            return Err(
                if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                    FetchError::Transient(message)
                } else {
                    FetchError::Permanent(message)
                },
            );
        }
        response.bytes().await.map_err(|e| {
            FetchError::Transient(format!("{what} on {at} failed: {}", error_chain(&e)))
        })
    }
}

fn malformed(server: &DicomServer, detail: String) -> FetchError {
    FetchError::Permanent(format!(
        "the DICOM server at {} answered a search with {detail}",
        server.root.trim_end_matches('/')
    ))
}
