//! Feedback and batch import (contract 1.9).
//!
//! - `inference_boxes.verification_comment`: the analyst's reason ("Wrong Seed", "No Seed").
//! - `pictures` imported already labelled carry their label: the species, the zoom level and
//!   the number of seeds. Such a picture is verified on arrival (it has no inference).
//! - `import_sessions`: a batch the frontend announced (`/new-batch-import`) with the number
//!   of pictures it will send, and how many arrived; it belongs to its folder.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum InferenceBoxes {
    Table,
    VerificationComment,
}

#[derive(DeriveIden)]
enum Pictures {
    Table,
    LabelledSeedId,
    ZoomLevel,
    NbSeeds,
}

#[derive(DeriveIden)]
enum ImportSessions {
    Table,
    Id,
    UserId,
    PictureSetId,
    ExpectedPictures,
    ReceivedPictures,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum PictureSets {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(InferenceBoxes::Table)
                    .add_column(text_null(InferenceBoxes::VerificationComment))
                    .to_owned(),
            )
            .await?;
        for mut column in [
            uuid_null(Pictures::LabelledSeedId),
            double_null(Pictures::ZoomLevel),
            big_integer_null(Pictures::NbSeeds),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Pictures::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(ImportSessions::Table)
                    .col(pk_uuid(ImportSessions::Id))
                    .col(uuid(ImportSessions::UserId))
                    .col(uuid(ImportSessions::PictureSetId))
                    .col(big_integer(ImportSessions::ExpectedPictures))
                    .col(big_integer(ImportSessions::ReceivedPictures))
                    .col(timestamp_with_time_zone(ImportSessions::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_import_sessions_user")
                            .from(ImportSessions::Table, ImportSessions::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_import_sessions_picture_set")
                            .from(ImportSessions::Table, ImportSessions::PictureSetId)
                            .to(PictureSets::Table, PictureSets::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_import_sessions_picture_set")
                    .table(ImportSessions::Table)
                    .col(ImportSessions::PictureSetId)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ImportSessions::Table).to_owned())
            .await?;
        for column in [
            Pictures::NbSeeds,
            Pictures::ZoomLevel,
            Pictures::LabelledSeedId,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Pictures::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(InferenceBoxes::Table)
                    .drop_column(InferenceBoxes::VerificationComment)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
