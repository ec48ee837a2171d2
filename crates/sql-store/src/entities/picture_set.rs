use sea_orm::entity::prelude::*;

/// A user's folder of pictures; unique by (user_id, container, name).
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "picture_sets")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: Uuid,
    pub container: String,
    pub name: String,
}

impl ActiveModelBehavior for ActiveModel {}
