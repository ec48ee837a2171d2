//! Folders the frontend manages, boxes a person verifies, and blobs waiting to be deleted.
//!
//! - `inference_boxes` gains its verification: when and by whom, and the verified
//!   candidate (the species; none for a box deleted as "not a seed"); and whether a person
//!   drew it. An inference is verified when it has boxes and every one is.
//! - `blob_deletions` is the durable list of blobs whose rows are already gone: a deletion
//!   removes rows and queues their blobs in one transaction, then deletes the blobs and
//!   forgets them; whatever fails in between is retried, so neither half is left orphaned.
//!
//! SQLite adds one column per statement, and a column added later cannot carry a foreign
//! key there: `verified_by` and `verified_candidate_id` are checked by the store instead.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum InferenceBoxes {
    Table,
    VerifiedAt,
    VerifiedBy,
    VerifiedCandidateId,
    DrawnByPerson,
}

#[derive(DeriveIden)]
enum BlobDeletions {
    Table,
    BlobKey,
    QueuedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let columns = [
            timestamp_with_time_zone_null(InferenceBoxes::VerifiedAt),
            uuid_null(InferenceBoxes::VerifiedBy),
            uuid_null(InferenceBoxes::VerifiedCandidateId),
            boolean(InferenceBoxes::DrawnByPerson)
                .default(false)
                .to_owned(),
        ];
        for mut column in columns {
            manager
                .alter_table(
                    Table::alter()
                        .table(InferenceBoxes::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(BlobDeletions::Table)
                    .col(text(BlobDeletions::BlobKey).primary_key())
                    .col(timestamp_with_time_zone(BlobDeletions::QueuedAt))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(BlobDeletions::Table).to_owned())
            .await?;
        for column in [
            InferenceBoxes::DrawnByPerson,
            InferenceBoxes::VerifiedCandidateId,
            InferenceBoxes::VerifiedBy,
            InferenceBoxes::VerifiedAt,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(InferenceBoxes::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
