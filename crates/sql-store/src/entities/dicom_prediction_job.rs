use sea_orm::entity::prelude::*;

/// One job per prediction run. Times in microseconds since the Unix epoch.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "dicom_prediction_jobs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub run_id: Uuid,
    pub series_id: Uuid,
    /// `send` or `await_report`.
    pub phase: String,
    pub run_after_us: i64,
    pub lease_owner: Option<String>,
    pub claim_token: Option<Uuid>,
    pub lease_until_us: Option<i64>,
    pub claims: i64,
    pub created_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}
