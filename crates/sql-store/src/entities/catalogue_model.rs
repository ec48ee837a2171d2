use sea_orm::entity::prelude::*;

/// One version of a model; unique by (name, version).
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "catalogue_models")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    pub version: String,
    pub kind: String,
    /// Descriptive fields only, never the endpoint or the key.
    #[sea_orm(column_type = "JsonBinary")]
    pub metadata: Json,
}

impl ActiveModelBehavior for ActiveModel {}
