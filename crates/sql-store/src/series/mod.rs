//! The DICOM series ports on [`SqlStore`](crate::SqlStore):
//! [`OrganizationRepository`](dicom_series::OrganizationRepository),
//! [`SeriesRepository`](dicom_series::SeriesRepository) and the durable
//! [`JobQueue`](dicom_series::JobQueue).
//!
//! A series row carries its current run; every write checks and bumps `revision`, so two
//! writers never overwrite each other's state change. The queue claims with one `UPDATE ...
//! RETURNING` guarded by the lease: on Postgres the candidate row is picked with
//! `FOR UPDATE SKIP LOCKED`, so concurrent workers take different jobs; SQLite has a single
//! writer, which serializes claims.

mod organizations;
mod queue;

pub use queue::JobQueueStats;
mod rows;

use dicom_series::StoreError;
use sea_orm::DbErr;

fn db_error(error: DbErr) -> StoreError {
    StoreError(error.to_string())
}
