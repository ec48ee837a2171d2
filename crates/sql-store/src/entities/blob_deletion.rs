use sea_orm::entity::prelude::*;

/// A blob whose rows are gone and that is still to be deleted.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "blob_deletions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub blob_key: String,
    pub queued_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}
