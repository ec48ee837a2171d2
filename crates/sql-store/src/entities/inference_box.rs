use sea_orm::entity::prelude::*;

/// One box of an inference; unique by (inference_id, position).
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "inference_boxes")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub inference_id: Uuid,
    pub position: i64,
    pub top_x: i64,
    pub top_y: i64,
    pub bottom_x: i64,
    pub bottom_y: i64,
    pub label: String,
    pub score: f64,
    pub overlapping: bool,
}

impl ActiveModelBehavior for ActiveModel {}
