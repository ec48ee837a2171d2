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
    /// When a person verified the box; `None` until then.
    pub verified_at: Option<DateTimeUtc>,
    pub verified_by: Option<Uuid>,
    /// The verified species' candidate; `None` for a verified box deleted as "not a seed".
    pub verified_candidate_id: Option<Uuid>,
    /// The analyst's reason, as the frontend sends it ("Wrong Seed", "No Seed", ...).
    pub verification_comment: Option<String>,
    /// Drawn by a person (a seed the detector missed).
    pub drawn_by_person: bool,
}

impl ActiveModelBehavior for ActiveModel {}
