use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "inferences")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub picture_id: Uuid,
    pub user_id: Uuid,
    pub pipeline_id: Uuid,
    #[sea_orm(column_type = "JsonBinary")]
    pub result: Json,
    pub result_blob_key: String,
    pub created_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}
