//! [`JobQueue`] on SQL: durable, one job per run, claimed with a lease.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use dicom_series::{
    ClaimToken, ClaimedJob, JobPhase, JobQueue, LeaseError, NewJob, RunId, SeriesId, StoreError,
};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, Statement, Value,
};
use uuid::Uuid;

use super::db_error;
use crate::SqlStore;
use crate::connection::stored_time;
use crate::entities::dicom_prediction_job as job;

fn micros(time: DateTime<Utc>) -> i64 {
    time.timestamp_micros()
}

pub(super) fn new_job_row(new: &NewJob) -> job::Model {
    job::Model {
        run_id: new.run_id.0,
        series_id: new.series_id.0,
        phase: JobPhase::Send.as_str().to_string(),
        run_after_us: micros(new.run_after),
        lease_owner: None,
        claim_token: None,
        lease_until_us: None,
        claims: 0,
        created_at: stored_time(Utc::now()),
    }
}

/// The row picked is due and not leased; the outer guard repeats the lease condition so
/// that a row claimed between the pick and the update is not taken twice.
fn claim_statement(
    backend: DbBackend,
    worker: &str,
    token: Uuid,
    now: i64,
    lease_until: i64,
) -> Statement {
    let (sql, values): (&str, Vec<Value>) = match backend {
        DbBackend::Postgres => (
            "UPDATE dicom_prediction_jobs \
             SET lease_owner = $1, claim_token = $2, lease_until_us = $3, claims = claims + 1 \
             WHERE run_id = ( \
                 SELECT run_id FROM dicom_prediction_jobs \
                 WHERE run_after_us <= $4 AND (lease_until_us IS NULL OR lease_until_us <= $4) \
                 ORDER BY run_after_us, run_id \
                 LIMIT 1 \
                 FOR UPDATE SKIP LOCKED) \
             AND (lease_until_us IS NULL OR lease_until_us <= $4) \
             RETURNING run_id, series_id, phase, claims",
            vec![worker.into(), token.into(), lease_until.into(), now.into()],
        ),
        _ => (
            "UPDATE dicom_prediction_jobs \
             SET lease_owner = ?, claim_token = ?, lease_until_us = ?, claims = claims + 1 \
             WHERE run_id = ( \
                 SELECT run_id FROM dicom_prediction_jobs \
                 WHERE run_after_us <= ? AND (lease_until_us IS NULL OR lease_until_us <= ?) \
                 ORDER BY run_after_us, run_id \
                 LIMIT 1) \
             AND (lease_until_us IS NULL OR lease_until_us <= ?) \
             RETURNING run_id, series_id, phase, claims",
            vec![
                worker.into(),
                token.into(),
                lease_until.into(),
                now.into(),
                now.into(),
                now.into(),
            ],
        ),
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// The job of `claimed` as long as `claimed` still holds it.
fn held(claimed: &ClaimedJob) -> Condition {
    Condition::all()
        .add(job::Column::RunId.eq(claimed.run_id.0))
        .add(job::Column::ClaimToken.eq(claimed.token.0))
}

fn lost_unless_one(rows: u64) -> Result<(), LeaseError> {
    if rows == 1 {
        Ok(())
    } else {
        Err(LeaseError::Lost)
    }
}

#[async_trait]
impl JobQueue for SqlStore {
    async fn claim(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<ClaimedJob>, StoreError> {
        let db = self.connection();
        let token = Uuid::new_v4();
        let statement = claim_statement(
            db.get_database_backend(),
            worker,
            token,
            micros(now),
            micros(lease_until),
        );
        let Some(row) = db.query_one_raw(statement).await.map_err(db_error)? else {
            return Ok(None);
        };
        let run_id: Uuid = row.try_get("", "run_id").map_err(db_error)?;
        let series_id: Uuid = row.try_get("", "series_id").map_err(db_error)?;
        let phase: String = row.try_get("", "phase").map_err(db_error)?;
        let claims: i64 = row.try_get("", "claims").map_err(db_error)?;
        let phase = JobPhase::parse(&phase)
            .ok_or_else(|| StoreError(format!("job {run_id} has an unknown phase {phase:?}")))?;
        Ok(Some(ClaimedJob {
            run_id: RunId(run_id),
            series_id: SeriesId(series_id),
            phase,
            claims: u32::try_from(claims).unwrap_or(u32::MAX),
            token: ClaimToken(token),
            lease_until,
        }))
    }

    async fn extend_lease(
        &self,
        claimed: &ClaimedJob,
        lease_until: DateTime<Utc>,
    ) -> Result<(), LeaseError> {
        let updated = job::Entity::update_many()
            .col_expr(job::Column::LeaseUntilUs, Expr::value(micros(lease_until)))
            .filter(held(claimed))
            .exec(self.connection())
            .await
            .map_err(db_error)?;
        lost_unless_one(updated.rows_affected)
    }

    async fn release(
        &self,
        claimed: &ClaimedJob,
        phase: JobPhase,
        run_after: DateTime<Utc>,
    ) -> Result<(), LeaseError> {
        let updated = job::Entity::update_many()
            .col_expr(job::Column::Phase, Expr::value(phase.as_str()))
            .col_expr(job::Column::RunAfterUs, Expr::value(micros(run_after)))
            .col_expr(job::Column::LeaseOwner, Expr::value(Option::<String>::None))
            .col_expr(job::Column::ClaimToken, Expr::value(Option::<Uuid>::None))
            .col_expr(job::Column::LeaseUntilUs, Expr::value(Option::<i64>::None))
            .filter(held(claimed))
            .exec(self.connection())
            .await
            .map_err(db_error)?;
        lost_unless_one(updated.rows_affected)
    }

    async fn complete(&self, claimed: &ClaimedJob) -> Result<(), LeaseError> {
        let deleted = job::Entity::delete_many()
            .filter(held(claimed))
            .exec(self.connection())
            .await
            .map_err(db_error)?;
        lost_unless_one(deleted.rows_affected)
    }

    async fn discard_waiting(&self, run: RunId, now: DateTime<Utc>) -> Result<(), StoreError> {
        job::Entity::delete_many()
            .filter(job::Column::RunId.eq(run.0))
            .filter(
                Condition::any()
                    .add(job::Column::LeaseUntilUs.is_null())
                    .add(job::Column::LeaseUntilUs.lte(micros(now))),
            )
            .exec(self.connection())
            .await
            .map_err(db_error)?;
        Ok(())
    }
}

/// How the job queue stands, for operators (`/metrics`): not a port, the app reads it
/// straight from the store it wired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobQueueStats {
    /// Jobs by phase (`send`, `await_report`, ...).
    pub by_phase: Vec<(String, u64)>,
    /// Jobs a worker holds a lease on now.
    pub claimed: u64,
    /// When the oldest job still queued was created.
    pub oldest_created_at: Option<DateTime<Utc>>,
}

impl SqlStore {
    pub async fn job_queue_stats(&self) -> Result<JobQueueStats, StoreError> {
        use sea_orm::{QueryOrder, QuerySelect};
        let by_phase: Vec<(String, i64)> = job::Entity::find()
            .select_only()
            .column(job::Column::Phase)
            .column_as(job::Column::RunId.count(), "count")
            .group_by(job::Column::Phase)
            .into_tuple()
            .all(self.connection())
            .await
            .map_err(db_error)?;
        let claimed = sea_orm::PaginatorTrait::count(
            job::Entity::find().filter(job::Column::LeaseUntilUs.gt(micros(Utc::now()))),
            self.connection(),
        )
        .await
        .map_err(db_error)?;
        let oldest = job::Entity::find()
            .order_by_asc(job::Column::CreatedAt)
            .one(self.connection())
            .await
            .map_err(db_error)?;
        Ok(JobQueueStats {
            by_phase: by_phase
                .into_iter()
                .map(|(phase, count)| (phase, u64::try_from(count).unwrap_or(0)))
                .collect(),
            claimed,
            oldest_created_at: oldest.map(|row| row.created_at.with_timezone(&Utc)),
        })
    }
}
