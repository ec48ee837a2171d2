//! What a radiologist's frontend shows before and around predictions: a patient's studies,
//! and a study's series each with its prediction state (contract 2.6). The lists come from
//! the organization's DICOM server (QIDO-RS); the states from our own records.

use std::collections::HashMap;
use std::sync::Arc;

use crate::access::{Member, OrganizationAccessError, organization_of};
use crate::ports::{DicomSearch, FetchError, SeriesListing, StudyListing};
use crate::repository::{OrganizationRepository, SeriesFilter, SeriesRepository, StoreError};
use crate::series::{InvalidRequest, Series, check_uid};

/// A study holds far fewer series than this; more stored ones than this are not shown.
const MAX_SERIES_OF_A_STUDY: u64 = 10_000;

/// One series of a study: as the DICOM server lists it, and as we recorded it.
#[derive(Clone, Debug, PartialEq)]
pub struct StudySeries {
    pub series_instance_uid: String,
    /// `None` for a series we recorded that the DICOM server no longer lists.
    pub listing: Option<SeriesListing>,
    /// `None` for a series never predicted.
    pub series: Option<Series>,
}

#[derive(Debug, thiserror::Error)]
pub enum StudyError {
    #[error("{0}")]
    Invalid(#[from] InvalidRequest),
    #[error("{0}")]
    Organization(#[from] OrganizationAccessError),
    /// The DICOM server failed or refused; the message says which and why.
    #[error("{0}")]
    DicomServer(FetchError),
    #[error("the database is unavailable ({0}); ask again later")]
    Store(#[from] StoreError),
}

/// Studies and their series, limited to the caller's organizations.
#[derive(Clone)]
pub struct StudyService {
    organizations: Arc<dyn OrganizationRepository>,
    series: Arc<dyn SeriesRepository>,
    search: Arc<dyn DicomSearch>,
}

impl StudyService {
    pub fn new(
        organizations: Arc<dyn OrganizationRepository>,
        series: Arc<dyn SeriesRepository>,
        search: Arc<dyn DicomSearch>,
    ) -> Self {
        Self {
            organizations,
            series,
            search,
        }
    }

    /// The studies of patient `patient_id` on `organization`'s DICOM server.
    pub async fn search_studies(
        &self,
        member: &Member,
        organization: &str,
        patient_id: &str,
    ) -> Result<Vec<StudyListing>, StudyError> {
        let patient_id = patient_id.trim();
        if patient_id.is_empty() || patient_id.chars().count() > 64 {
            return Err(InvalidRequest(
                "patientId: give the patient's id (1 to 64 characters)".into(),
            )
            .into());
        }
        if patient_id.contains(['*', '?', '\\']) || patient_id.chars().any(char::is_control) {
            return Err(InvalidRequest(format!(
                "patientId {patient_id:?}: wildcards, backslashes and control characters are not allowed"
            ))
            .into());
        }
        let organization =
            organization_of(self.organizations.as_ref(), member, organization).await?;
        self.search
            .search_studies(&organization.dicom_server, patient_id)
            .await
            .map_err(StudyError::DicomServer)
    }

    /// The series of study `study_instance_uid` on `organization`'s DICOM server, by series
    /// number, each with our record of it; then the series we recorded that the
    /// server no longer lists.
    pub async fn series_of_study(
        &self,
        member: &Member,
        organization: &str,
        study_instance_uid: &str,
    ) -> Result<Vec<StudySeries>, StudyError> {
        let study = study_instance_uid.trim();
        check_uid("study", study)?;
        let organization =
            organization_of(self.organizations.as_ref(), member, organization).await?;
        let filter = SeriesFilter {
            organization: Some(organization.id),
            study_instance_uid: Some(study.to_owned()),
            state: None,
            limit: MAX_SERIES_OF_A_STUDY,
            offset: 0,
        };
        let (listed, recorded) = tokio::join!(
            self.search.search_series(&organization.dicom_server, study),
            self.series.list_series(&filter)
        );
        let mut listed = listed.map_err(StudyError::DicomServer)?;
        // A server's order is not specified: by series number (numbered first), then UID.
        listed.sort_by(|a, b| {
            (
                a.series_number.is_none(),
                a.series_number,
                &a.series_instance_uid,
            )
                .cmp(&(
                    b.series_number.is_none(),
                    b.series_number,
                    &b.series_instance_uid,
                ))
        });
        let mut recorded: HashMap<String, Series> = recorded?
            .into_iter()
            .map(|s| (s.key.series_instance_uid.clone(), s))
            .collect();
        let mut merged: Vec<StudySeries> = listed
            .into_iter()
            .map(|listing| StudySeries {
                series_instance_uid: listing.series_instance_uid.clone(),
                series: recorded.remove(&listing.series_instance_uid),
                listing: Some(listing),
            })
            .collect();
        let mut unlisted: Vec<Series> = recorded.into_values().collect();
        unlisted.sort_by(|a, b| a.key.series_instance_uid.cmp(&b.key.series_instance_uid));
        merged.extend(unlisted.into_iter().map(|series| StudySeries {
            series_instance_uid: series.key.series_instance_uid.clone(),
            listing: None,
            series: Some(series),
        }));
        Ok(merged)
    }
}
