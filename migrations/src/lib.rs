//! The database schema, as sea-orm migrations that run on SQLite and Postgres alike.
//!
//! Add a migration as a new module named `mYYYYMMDD_NNNNNN_what` and append it to
//! [`Migrator::migrations`]; never edit a migration that has been released.

pub use sea_orm_migration::prelude::*;

pub mod seeds;

mod m20261122_000001_create_tables;
mod m20261122_000002_seed_species;
mod m20261123_000001_dicom_series;
mod m20261201_000001_folders_and_verification;
mod m20261201_000002_feedback_and_import;
mod m20261202_000001_catalogue_active;

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_create_tables::Migration),
            Box::new(m20261122_000002_seed_species::Migration),
            Box::new(m20261123_000001_dicom_series::Migration),
            Box::new(m20261201_000001_folders_and_verification::Migration),
            Box::new(m20261201_000002_feedback_and_import::Migration),
            Box::new(m20261202_000001_catalogue_active::Migration),
        ]
    }
}
