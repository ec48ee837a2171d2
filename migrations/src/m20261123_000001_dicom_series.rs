//! DICOM series predictions (contract 2): organizations with their DICOM servers, series
//! with their current prediction run, and the durable job queue.
//!
//! A series is one row per organization, study *and* series UID. `revision` is bumped by
//! every write and checked by the next (optimistic concurrency). The queue's times are
//! integers (microseconds since the Unix epoch) so that "due" and "lease ran out" compare
//! the same way on SQLite (where times are text) and on Postgres.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum DicomOrganizations {
    Table,
    Id,
    Name,
    DicomRoot,
    CredentialsKind,
    CredentialsUsername,
    CredentialsSecret,
    CreatedAt,
}

#[derive(DeriveIden)]
enum DicomSeries {
    Table,
    Id,
    OrganizationId,
    StudyInstanceUid,
    SeriesInstanceUid,
    State,
    Result,
    RunId,
    ModelType,
    BodyPart,
    MlApp,
    Attempts,
    LastError,
    RequestedAt,
    StartedAt,
    SubmittedAt,
    ReportDeadline,
    FinishedAt,
    CreatedAt,
    UpdatedAt,
    Revision,
}

#[derive(DeriveIden)]
enum DicomPredictionJobs {
    Table,
    RunId,
    SeriesId,
    Phase,
    RunAfterUs,
    LeaseOwner,
    ClaimToken,
    LeaseUntilUs,
    Claims,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(DicomOrganizations::Table)
                    .col(pk_uuid(DicomOrganizations::Id))
                    .col(text(DicomOrganizations::Name))
                    .col(text(DicomOrganizations::DicomRoot))
                    .col(text(DicomOrganizations::CredentialsKind))
                    .col(text_null(DicomOrganizations::CredentialsUsername))
                    .col(text_null(DicomOrganizations::CredentialsSecret))
                    .col(timestamp_with_time_zone(DicomOrganizations::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_dicom_organizations_name")
                    .table(DicomOrganizations::Table)
                    .col(DicomOrganizations::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(DicomSeries::Table)
                    .col(pk_uuid(DicomSeries::Id))
                    .col(uuid(DicomSeries::OrganizationId))
                    .col(text(DicomSeries::StudyInstanceUid))
                    .col(text(DicomSeries::SeriesInstanceUid))
                    .col(text(DicomSeries::State))
                    .col(json_binary_null(DicomSeries::Result))
                    .col(uuid_null(DicomSeries::RunId))
                    .col(text_null(DicomSeries::ModelType))
                    .col(text_null(DicomSeries::BodyPart))
                    .col(text_null(DicomSeries::MlApp))
                    .col(big_integer(DicomSeries::Attempts))
                    .col(text_null(DicomSeries::LastError))
                    .col(timestamp_with_time_zone_null(DicomSeries::RequestedAt))
                    .col(timestamp_with_time_zone_null(DicomSeries::StartedAt))
                    .col(timestamp_with_time_zone_null(DicomSeries::SubmittedAt))
                    .col(timestamp_with_time_zone_null(DicomSeries::ReportDeadline))
                    .col(timestamp_with_time_zone_null(DicomSeries::FinishedAt))
                    .col(timestamp_with_time_zone(DicomSeries::CreatedAt))
                    .col(timestamp_with_time_zone(DicomSeries::UpdatedAt))
                    .col(big_integer(DicomSeries::Revision))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_dicom_series_organization")
                            .from(DicomSeries::Table, DicomSeries::OrganizationId)
                            .to(DicomOrganizations::Table, DicomOrganizations::Id)
                            .on_delete(ForeignKeyAction::Restrict)
                            .on_update(ForeignKeyAction::NoAction),
                    )
                    .to_owned(),
            )
            .await?;
        // One row per series of a study (the reference system matched on the study alone).
        // Also the index of the organization foreign key (its first column).
        manager
            .create_index(
                Index::create()
                    .name("uq_dicom_series_organization_study_series")
                    .table(DicomSeries::Table)
                    .col(DicomSeries::OrganizationId)
                    .col(DicomSeries::StudyInstanceUid)
                    .col(DicomSeries::SeriesInstanceUid)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(DicomPredictionJobs::Table)
                    .col(pk_uuid(DicomPredictionJobs::RunId))
                    .col(uuid(DicomPredictionJobs::SeriesId))
                    .col(text(DicomPredictionJobs::Phase))
                    .col(big_integer(DicomPredictionJobs::RunAfterUs))
                    .col(text_null(DicomPredictionJobs::LeaseOwner))
                    .col(uuid_null(DicomPredictionJobs::ClaimToken))
                    .col(big_integer_null(DicomPredictionJobs::LeaseUntilUs))
                    .col(big_integer(DicomPredictionJobs::Claims))
                    .col(timestamp_with_time_zone(DicomPredictionJobs::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_dicom_prediction_jobs_series")
                            .from(DicomPredictionJobs::Table, DicomPredictionJobs::SeriesId)
                            .to(DicomSeries::Table, DicomSeries::Id)
                            .on_delete(ForeignKeyAction::Cascade)
                            .on_update(ForeignKeyAction::NoAction),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_dicom_prediction_jobs_due")
                    .table(DicomPredictionJobs::Table)
                    .col(DicomPredictionJobs::RunAfterUs)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_dicom_prediction_jobs_series")
                    .table(DicomPredictionJobs::Table)
                    .col(DicomPredictionJobs::SeriesId)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            DicomPredictionJobs::Table.into_iden(),
            DicomSeries::Table.into_iden(),
            DicomOrganizations::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
