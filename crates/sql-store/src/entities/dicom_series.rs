use sea_orm::entity::prelude::*;

/// A series and its current prediction run (the run's columns are null until the first).
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "dicom_series")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub organization_id: Uuid,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub state: String,
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub result: Option<Json>,
    pub run_id: Option<Uuid>,
    pub model_type: Option<String>,
    pub body_part: Option<String>,
    pub ml_app: Option<String>,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub requested_at: Option<DateTimeUtc>,
    pub started_at: Option<DateTimeUtc>,
    pub submitted_at: Option<DateTimeUtc>,
    pub report_deadline: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub revision: i64,
}

impl ActiveModelBehavior for ActiveModel {}
