//! The 15 seed species of the reference database (contract 1.6), under fixed ids
//! ([`crate::seeds::seed_id`]), so that every database agrees on them.

use sea_orm_migration::prelude::*;

use crate::seeds::{SEED_SPECIES, seed_id};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Seeds {
    Table,
    Id,
    Name,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut insert = Query::insert();
        insert
            .into_table(Seeds::Table)
            .columns([Seeds::Id, Seeds::Name]);
        for name in SEED_SPECIES {
            insert.values_panic([seed_id(name).into(), name.into()]);
        }
        manager.execute(insert).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let ids: Vec<_> = SEED_SPECIES.iter().map(|name| seed_id(name)).collect();
        manager
            .execute(
                Query::delete()
                    .from_table(Seeds::Table)
                    .and_where(Expr::col(Seeds::Id).is_in(ids))
                    .to_owned(),
            )
            .await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
