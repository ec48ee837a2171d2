use sea_orm::entity::prelude::*;

/// The models of a pipeline, in call order (`position` from 0).
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "pipeline_models")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub pipeline_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub position: i32,
    pub model_id: Uuid,
}

impl ActiveModelBehavior for ActiveModel {}
