use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "pictures")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub picture_set_id: Uuid,
    pub user_id: Uuid,
    pub blob_key: String,
    pub sha256: String,
    pub content_type: String,
    pub width: i64,
    pub height: i64,
    pub created_at: DateTimeUtc,
    /// Imported already labelled (batch import): the species, zoom level, seed count.
    pub labelled_seed_id: Option<Uuid>,
    pub zoom_level: Option<f64>,
    pub nb_seeds: Option<i64>,
}

impl ActiveModelBehavior for ActiveModel {}
