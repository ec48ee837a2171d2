//! The catalogue version every replica should run: one row, written when a version is
//! chosen (by a new configuration at start, or by the admin API), polled by every replica
//! (see the app's `catalogue.rs`). `configured_version` is the configuration's version that
//! was last seen, so that a restart with the same configuration keeps what an administrator
//! chose since.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum CatalogueActive {
    Table,
    Id,
    Version,
    ConfiguredVersion,
    ChosenAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(CatalogueActive::Table)
                    .if_not_exists()
                    // Always 1: the table holds one row.
                    .col(integer(CatalogueActive::Id).primary_key())
                    .col(text(CatalogueActive::Version))
                    .col(text_null(CatalogueActive::ConfiguredVersion))
                    .col(timestamp_with_time_zone(CatalogueActive::ChosenAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(CatalogueActive::Table).to_owned())
            .await
    }
}
