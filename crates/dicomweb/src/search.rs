//! [`DicomSearch`] over QIDO-RS: a patient's studies, a study's series (also one series,
//! for [`crate::DicomWebSource::find_series`]).

use std::collections::HashMap;

use async_trait::async_trait;
use dicom_series::ports::{DicomSearch, DicomServer, FetchError, SeriesListing, StudyListing};
use reqwest::StatusCode;
use serde_json::Value;

use crate::{DicomWebSource, QIDO_ACCEPT, answer_excerpt, error_chain};

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
        items_of(&body)
            .map_err(|detail| malformed(server, detail))?
            .iter()
            .enumerate()
            .map(|(index, item)| {
                Ok(StudyListing {
                    study_instance_uid: text(item, "0020000D").ok_or_else(|| {
                        malformed(server, format!("study {index} has no Study Instance UID"))
                    })?,
                    patient_id: text(item, "00100020"),
                    patient_name: text(item, "00100010"),
                    study_date: text(item, "00080020"),
                    study_description: text(item, "00081030"),
                    accession_number: text(item, "00080050"),
                    modalities: texts(item, "00080061"),
                    number_of_series: count(item, "00201206"),
                    number_of_instances: count(item, "00201208"),
                })
            })
            .collect()
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
            .timeout(self.options.search_timeout)
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

/// The items of a QIDO-RS answer (DICOM JSON, PS3.18 F.2); an answer of nothing but white
/// space has none.
fn items_of(body: &[u8]) -> Result<Vec<HashMap<String, Value>>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    serde_json::from_slice(body).map_err(|e| format!("a body that is not a DICOM JSON list: {e}"))
}

/// Parses the answer of a QIDO-RS series search.
pub fn parse_series(body: &[u8]) -> Result<Vec<SeriesListing>, String> {
    items_of(body)?
        .iter()
        .enumerate()
        .map(|(index, item)| {
            Ok(SeriesListing {
                series_instance_uid: text(item, "0020000E")
                    .ok_or_else(|| format!("series {index} has no Series Instance UID"))?,
                modality: text(item, "00080060"),
                series_number: text(item, "00200011").and_then(|n| n.parse().ok()),
                series_description: text(item, "0008103E"),
                number_of_instances: count(item, "00201209"),
                body_part: text(item, "00180015"),
                series_date: text(item, "00080021"),
            })
        })
        .collect()
}

fn malformed(server: &DicomServer, detail: String) -> FetchError {
    FetchError::Permanent(format!(
        "the DICOM server at {} answered a search with {detail}",
        server.root.trim_end_matches('/')
    ))
}

/// The values of attribute `tag` as text: strings trimmed, numbers written out, person
/// names by their alphabetic form; empty ones left out.
fn texts(item: &HashMap<String, Value>, tag: &str) -> Vec<String> {
    let Some(values) = item
        .get(tag)
        .and_then(|attribute| attribute.get("Value"))
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    values
        .iter()
        .filter_map(|value| match value {
            Value::String(s) => Some(s.trim().to_owned()),
            Value::Number(n) => Some(n.to_string()),
            Value::Object(name) => name
                .get("Alphabetic")
                .and_then(Value::as_str)
                .map(|s| s.trim().to_owned()),
            _ => None,
        })
        .filter(|s| !s.is_empty())
        .collect()
}

fn text(item: &HashMap<String, Value>, tag: &str) -> Option<String> {
    texts(item, tag).into_iter().next()
}

fn count(item: &HashMap<String, Value>, tag: &str) -> Option<u32> {
    text(item, tag).and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_read_whatever_their_json_form() {
        let item: HashMap<String, Value> = serde_json::from_str(
            r#"{
                "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]},
                "00080061": {"vr": "CS", "Value": ["CT", "", "MR"]},
                "00201208": {"vr": "IS", "Value": [42]},
                "00201206": {"vr": "IS", "Value": [" 3 "]},
                "00081030": {"vr": "LO"}
            }"#,
        )
        .unwrap();
        assert_eq!(text(&item, "00100010").as_deref(), Some("Doe^Jane"));
        assert_eq!(texts(&item, "00080061"), ["CT", "MR"]);
        assert_eq!(count(&item, "00201208"), Some(42));
        assert_eq!(count(&item, "00201206"), Some(3));
        assert_eq!(text(&item, "00081030"), None);
        assert_eq!(text(&item, "0020000D"), None);
    }
}
