//! The tables as sea-orm entities (2.0 format). Private to the crate: the stores convert
//! them to the domain's records at the border.

pub mod blob_deletion;
pub mod box_candidate;
pub mod catalogue_model;
pub mod catalogue_pipeline;
pub mod dicom_organization;
pub mod dicom_prediction_job;
pub mod dicom_series;
pub mod import_session;
pub mod inference;
pub mod inference_box;
pub mod picture;
pub mod picture_set;
pub mod pipeline_model;
pub mod seed;
pub mod user;
