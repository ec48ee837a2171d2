//! [`SeriesRepository`] on SQL.

use async_trait::async_trait;
use dicom_series::ports::SeriesKey;
use dicom_series::{
    NewJob, OrganizationId, PredictionRun, PredictionState, RunId, Series, SeriesFilter, SeriesId,
    SeriesRepository, StoreError, UpdateSeriesError,
};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use super::db_error;
use super::queue::new_job_row;
use crate::SqlStore;
use crate::connection::stored_time;
use crate::entities::dicom_series as row;

fn to_row(series: &Series, revision: i64) -> row::Model {
    let run = series.run.as_ref();
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| t.map(stored_time);
    row::Model {
        id: series.id.0,
        organization_id: series.organization_id.0,
        study_instance_uid: series.key.study_instance_uid.clone(),
        series_instance_uid: series.key.series_instance_uid.clone(),
        state: series.state.as_str().to_string(),
        result: series.result.clone(),
        run_id: run.map(|r| r.id.0),
        model_type: run.map(|r| r.model_type.clone()),
        body_part: run.and_then(|r| r.body_part.clone()),
        ml_app: run.map(|r| r.ml_app.clone()),
        attempts: run.map_or(0, |r| i64::from(r.attempts)),
        last_error: run.and_then(|r| r.last_error.clone()),
        requested_at: time(run.map(|r| r.requested_at)),
        started_at: time(run.and_then(|r| r.started_at)),
        submitted_at: time(run.and_then(|r| r.submitted_at)),
        report_deadline: time(run.and_then(|r| r.report_deadline)),
        finished_at: time(run.and_then(|r| r.finished_at)),
        created_at: stored_time(series.created_at),
        updated_at: stored_time(series.updated_at),
        revision,
    }
}

fn from_row(row: row::Model) -> Result<Series, StoreError> {
    let broken = |what: String| StoreError(format!("series {} has {what} in the database", row.id));
    let state: PredictionState = row
        .state
        .parse()
        .map_err(|e| broken(format!("an unknown state ({e})")))?;
    let run = match (row.run_id, &row.model_type, &row.ml_app, row.requested_at) {
        (Some(id), Some(model_type), Some(ml_app), Some(requested_at)) => Some(PredictionRun {
            id: RunId(id),
            model_type: model_type.clone(),
            body_part: row.body_part.clone(),
            ml_app: ml_app.clone(),
            attempts: u32::try_from(row.attempts)
                .map_err(|_| broken(format!("{} attempts", row.attempts)))?,
            last_error: row.last_error.clone(),
            requested_at,
            started_at: row.started_at,
            submitted_at: row.submitted_at,
            report_deadline: row.report_deadline,
            finished_at: row.finished_at,
        }),
        (None, ..) => None,
        _ => {
            return Err(broken(
                "a run without its model type, ML app or time".into(),
            ));
        }
    };
    Ok(Series {
        id: SeriesId(row.id),
        organization_id: OrganizationId(row.organization_id),
        key: SeriesKey {
            study_instance_uid: row.study_instance_uid,
            series_instance_uid: row.series_instance_uid,
        },
        state,
        result: row.result,
        run,
        created_at: row.created_at,
        updated_at: row.updated_at,
        revision: row.revision,
    })
}

/// Writes `series` over the stored row if its revision is still `series.revision`.
async fn write(db: &impl ConnectionTrait, series: &Series) -> Result<(), UpdateSeriesError> {
    let active: row::ActiveModel = to_row(series, series.revision + 1).into();
    let written = row::Entity::update_many()
        .set(active.reset_all())
        .filter(row::Column::Id.eq(series.id.0))
        .filter(row::Column::Revision.eq(series.revision))
        .exec(db)
        .await
        .map_err(db_error)?;
    if written.rows_affected == 1 {
        Ok(())
    } else {
        Err(UpdateSeriesError::Stale)
    }
}

#[async_trait]
impl SeriesRepository for SqlStore {
    async fn find_series(&self, id: SeriesId) -> Result<Option<Series>, StoreError> {
        row::Entity::find_by_id(id.0)
            .one(self.connection())
            .await
            .map_err(db_error)?
            .map(from_row)
            .transpose()
    }

    async fn list_series(&self, filter: &SeriesFilter) -> Result<Vec<Series>, StoreError> {
        let mut query = row::Entity::find();
        if let Some(organization) = filter.organization {
            query = query.filter(row::Column::OrganizationId.eq(organization.0));
        }
        if let Some(study) = &filter.study_instance_uid {
            query = query.filter(row::Column::StudyInstanceUid.eq(study));
        }
        if let Some(state) = filter.state {
            query = query.filter(row::Column::State.eq(state.as_str()));
        }
        query
            .order_by_desc(row::Column::UpdatedAt)
            .order_by_asc(row::Column::Id)
            .offset(filter.offset)
            .limit(filter.limit)
            .all(self.connection())
            .await
            .map_err(db_error)?
            .into_iter()
            .map(from_row)
            .collect()
    }

    async fn count_by_state(&self) -> Result<Vec<(PredictionState, u64)>, StoreError> {
        let rows: Vec<(String, i64)> = row::Entity::find()
            .select_only()
            .column(row::Column::State)
            .column_as(row::Column::Id.count(), "count")
            .group_by(row::Column::State)
            .into_tuple()
            .all(self.connection())
            .await
            .map_err(db_error)?;
        rows.into_iter()
            .map(|(state, count)| {
                let state = state
                    .parse()
                    .map_err(|e| StoreError(format!("a series has an unknown state ({e})")))?;
                Ok((state, u64::try_from(count).unwrap_or(0)))
            })
            .collect()
    }

    /// Insert-if-absent, then read: of concurrent calls for one series, one inserts and
    /// all return that row.
    async fn find_or_insert_series(&self, series: &Series) -> Result<Series, StoreError> {
        let active: row::ActiveModel = to_row(series, series.revision).into();
        row::Entity::insert(active)
            .on_conflict_do_nothing_on([
                row::Column::OrganizationId,
                row::Column::StudyInstanceUid,
                row::Column::SeriesInstanceUid,
            ])
            .exec_without_returning(self.connection())
            .await
            .map_err(db_error)?;
        let found = row::Entity::find()
            .filter(row::Column::OrganizationId.eq(series.organization_id.0))
            .filter(row::Column::StudyInstanceUid.eq(&series.key.study_instance_uid))
            .filter(row::Column::SeriesInstanceUid.eq(&series.key.series_instance_uid))
            .one(self.connection())
            .await
            .map_err(db_error)?
            .ok_or_else(|| {
                StoreError(format!(
                    "series {} vanished right after its insert",
                    series.id
                ))
            })?;
        from_row(found)
    }

    async fn update_series(&self, series: &Series) -> Result<(), UpdateSeriesError> {
        write(self.connection(), series).await
    }

    async fn update_series_and_enqueue(
        &self,
        series: &Series,
        job: &NewJob,
    ) -> Result<(), UpdateSeriesError> {
        let txn = self
            .begin_write()
            .await
            .map_err(|e| StoreError(e.to_string()))?;
        write(&txn, series).await?;
        let job: crate::entities::dicom_prediction_job::ActiveModel = new_job_row(job).into();
        crate::entities::dicom_prediction_job::Entity::insert(job)
            .exec_without_returning(&txn)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(())
    }
}
