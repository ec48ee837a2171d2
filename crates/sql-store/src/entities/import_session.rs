use sea_orm::entity::prelude::*;

/// A batch of labelled pictures the frontend announced, and how many arrived.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "import_sessions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: Uuid,
    pub picture_set_id: Uuid,
    pub expected_pictures: i64,
    pub received_pictures: i64,
    pub created_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}
