use sea_orm::entity::prelude::*;

/// One `topN` entry of a box; unique by (box_id, rank), rank 1 is the top candidate.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "box_candidates")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub box_id: Uuid,
    pub rank: i64,
    pub label: String,
    pub score: f64,
    pub seed_id: Option<Uuid>,
    pub is_top: bool,
}

impl ActiveModelBehavior for ActiveModel {}
