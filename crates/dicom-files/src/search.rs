//! [`DicomSearch`] over the local folder: the folder is scanned (headers only) and its
//! instances grouped into studies and series, as a DICOM server's search would list them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use async_trait::async_trait;
use dicom_series::ports::{DicomSearch, DicomServer, FetchError, SeriesListing, StudyListing};

use crate::header::InstanceHeader;
use crate::local_folder::{LocalFolderSource, run_blocking, scan_where};

#[async_trait]
impl DicomSearch for LocalFolderSource {
    async fn search_studies(
        &self,
        server: &DicomServer,
        patient_id: &str,
    ) -> Result<Vec<StudyListing>, FetchError> {
        let root = PathBuf::from(&server.root);
        let patient_id = patient_id.to_owned();
        let found = run_blocking(move || {
            scan_where(&root, |h| {
                h.described.patient_id.as_deref() == Some(&patient_id)
            })
        })
        .await?;
        let mut studies: BTreeMap<String, Vec<InstanceHeader>> = BTreeMap::new();
        for (_, header) in found {
            studies
                .entry(header.study_instance_uid.clone())
                .or_default()
                .push(header);
        }
        Ok(studies
            .into_iter()
            .map(|(study_instance_uid, instances)| {
                let first = &instances[0].described;
                let series: BTreeSet<&str> = instances
                    .iter()
                    .map(|h| h.series_instance_uid.as_str())
                    .collect();
                let modalities: BTreeSet<String> = instances
                    .iter()
                    .filter_map(|h| h.modality.clone())
                    .collect();
                StudyListing {
                    study_instance_uid,
                    patient_id: first.patient_id.clone(),
                    patient_name: first.patient_name.clone(),
                    study_date: first.study_date.clone(),
                    study_description: first.study_description.clone(),
                    accession_number: first.accession_number.clone(),
                    modalities: modalities.into_iter().collect(),
                    number_of_series: u32::try_from(series.len()).ok(),
                    number_of_instances: u32::try_from(instances.len()).ok(),
                }
            })
            .collect())
    }

    async fn search_series(
        &self,
        server: &DicomServer,
        study_instance_uid: &str,
    ) -> Result<Vec<SeriesListing>, FetchError> {
        let root = PathBuf::from(&server.root);
        let study = study_instance_uid.to_owned();
        let found =
            run_blocking(move || scan_where(&root, |h| h.study_instance_uid == study)).await?;
        let mut series: BTreeMap<String, Vec<InstanceHeader>> = BTreeMap::new();
        for (_, header) in found {
            series
                .entry(header.series_instance_uid.clone())
                .or_default()
                .push(header);
        }
        let listed: Vec<SeriesListing> = series
            .into_iter()
            .map(|(series_instance_uid, instances)| {
                let first = &instances[0];
                SeriesListing {
                    series_instance_uid,
                    modality: first.modality.clone(),
                    series_number: first.described.series_number,
                    series_description: first.described.series_description.clone(),
                    number_of_instances: u32::try_from(instances.len()).ok(),
                    body_part: first.described.body_part.clone(),
                    series_date: first.described.series_date.clone(),
                }
            })
            .collect();
        Ok(listed)
    }
}
