//! The use cases the HTTP layer calls: ask for a prediction, take an ML app's report, read
//! a series, add an organization.

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::Notify;

use crate::access::{Member, Membership, NotAMember, OrganizationAccessError, organization_of};
use crate::change::{ChangeError, change_series};
use crate::ids::{RunId, SeriesId};
use crate::ml_apps::MlAppDirectory;
use crate::organization::{InvalidOrganization, Organization};
use crate::ports::DicomCredentials;
use crate::queue::{JobQueue, NewJob};
use crate::repository::{
    CreateOrganizationError, OrganizationRepository, SeriesFilter, SeriesRepository, StoreError,
    UpdateSeriesError,
};
use crate::series::{Applied, InvalidRequest, PredictionRun, Series, TransitionError, series_key};
use crate::state::{PredictionState, ReportedStatus};
use crate::time::Clock;

/// `POST /api/studies/series/predict`, checked for shape by the HTTP layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PredictRequest {
    /// The organization's id or name.
    pub organization: String,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub model_type: String,
    pub predict_again: bool,
    pub body_part: Option<String>,
}

/// What `predict` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PredictDecision {
    /// A new run was queued.
    Queued,
    /// The series already has a result for this model type (`predictAgain` was false).
    AlreadyPredicted,
    /// A run of the series is queued or in progress (`predictAgain` was false): it is not
    /// sent twice.
    AlreadyRunning,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PredictOutcome {
    pub series: Series,
    pub decision: PredictDecision,
}

#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    #[error("{0}")]
    Invalid(#[from] InvalidRequest),
    /// No organization of that name or id. The answer never lists the others: they are
    /// other people's.
    #[error("unknown organization {given:?}")]
    UnknownOrganization { given: String },
    /// An organization the caller does not belong to (whether it exists or not).
    #[error("{0}")]
    NotAMember(#[from] NotAMember),
    #[error("unknown model type {given:?}; the model types are: {}", list(known))]
    UnknownModelType { given: String, known: Vec<String> },
    /// The series is recorded, but its run could not be queued; the reason is on the
    /// series when the database allowed it.
    #[error("series {series_id} could not be queued ({reason}); ask again later")]
    NotQueued { series_id: SeriesId, reason: String },
    #[error("the database is unavailable ({0}); ask again later")]
    Store(#[from] StoreError),
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "(none)".to_string()
    } else {
        names.join(", ")
    }
}

/// The status callback, its sender already authenticated as the ML app `caller`.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusReport {
    pub run_id: RunId,
    pub status: ReportedStatus,
    pub model_type: String,
    pub result: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("series {0} does not exist")]
    SeriesNotFound(SeriesId),
    /// The authenticated ML app is not the one the run was sent to.
    #[error("ML app {caller:?} reports on a run that was sent to ML app {expected:?}")]
    WrongMlApp { caller: String, expected: String },
    /// A report for another run, for another model type, or one that would move a finished
    /// run; nothing was changed.
    #[error("{0}")]
    Rejected(TransitionError),
    #[error("the database is unavailable ({0}); report again later")]
    Store(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
pub enum FindSeriesError {
    #[error("series {0} does not exist")]
    NotFound(SeriesId),
    #[error("the database is unavailable ({0}); ask again later")]
    Store(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error("{0}")]
    Find(#[from] FindSeriesError),
    /// Only a failed series is retried; another is asked for with predict.
    #[error("series {series_id} is {state}, not failed: only a failed series is retried")]
    NotFailed {
        series_id: SeriesId,
        state: PredictionState,
    },
    #[error("{0}")]
    Predict(#[from] PredictError),
}

#[derive(Debug, thiserror::Error)]
pub enum AddOrganizationError {
    #[error("{0}")]
    Invalid(#[from] InvalidOrganization),
    #[error("an organization named {0:?} already exists")]
    DuplicateName(String),
    #[error("the database is unavailable ({0}); try again later")]
    Store(#[from] StoreError),
}

/// Body parts are free text from the frontend, passed on to the ML app: at most 64
/// characters as sent, no control characters; blank is none.
fn body_part(given: Option<&str>) -> Result<Option<String>, InvalidRequest> {
    let Some(given) = given else {
        return Ok(None);
    };
    if given.chars().count() > 64 || given.chars().any(char::is_control) {
        return Err(InvalidRequest(format!(
            "bodyPart {given:?} is longer than 64 characters or has control characters"
        )));
    }
    let part = given.trim();
    Ok((!part.is_empty()).then(|| part.to_string()))
}

/// Series predictions: what the endpoints of contract 2.1 do.
#[derive(Clone)]
pub struct PredictionService {
    organizations: Arc<dyn OrganizationRepository>,
    series: Arc<dyn SeriesRepository>,
    queue: Arc<dyn JobQueue>,
    ml_apps: MlAppDirectory,
    clock: Arc<dyn Clock>,
    job_queued: Arc<Notify>,
}

impl PredictionService {
    /// `job_queued` is notified each time a job is queued, to wake an idle worker at once.
    pub fn new(
        organizations: Arc<dyn OrganizationRepository>,
        series: Arc<dyn SeriesRepository>,
        queue: Arc<dyn JobQueue>,
        ml_apps: MlAppDirectory,
        clock: Arc<dyn Clock>,
        job_queued: Arc<Notify>,
    ) -> Self {
        Self {
            organizations,
            series,
            queue,
            ml_apps,
            clock,
            job_queued,
        }
    }

    pub fn ml_apps(&self) -> &MlAppDirectory {
        &self.ml_apps
    }

    /// Asks for a prediction. The series row is stored first, so whatever fails later is
    /// recorded on it; the run and its job are then stored together.
    pub async fn predict(
        &self,
        member: &Member,
        request: &PredictRequest,
    ) -> Result<PredictOutcome, PredictError> {
        let key = series_key(&request.study_instance_uid, &request.series_instance_uid)?;
        let model_type = request.model_type.trim();
        let Some(route) = self.ml_apps.route(model_type) else {
            return Err(PredictError::UnknownModelType {
                given: request.model_type.clone(),
                known: self.ml_apps.model_types(),
            });
        };
        let body_part = body_part(request.body_part.as_deref())?;
        let organization =
            match organization_of(self.organizations.as_ref(), member, &request.organization).await
            {
                Ok(organization) => organization,
                Err(OrganizationAccessError::NotAMember(e)) => return Err(e.into()),
                Err(OrganizationAccessError::Unknown { given }) => {
                    return Err(PredictError::UnknownOrganization { given });
                }
                Err(OrganizationAccessError::Store(e)) => return Err(e.into()),
            };

        let now = self.clock.now();
        let mut series = self
            .series
            .find_or_insert_series(&Series::new(organization.id, key, now))
            .await?;
        let series_id = series.id;

        for _ in 0..8 {
            if !request.predict_again {
                if series.has_active_run() {
                    return Ok(PredictOutcome {
                        series,
                        decision: PredictDecision::AlreadyRunning,
                    });
                }
                let answered = matches!(
                    series.state,
                    PredictionState::Completed | PredictionState::NotSupported
                ) && series.model_type() == Some(model_type);
                if answered {
                    return Ok(PredictOutcome {
                        series,
                        decision: PredictDecision::AlreadyPredicted,
                    });
                }
            }

            let run = PredictionRun::new(model_type, body_part.as_deref(), &route.name, now);
            let job = NewJob {
                run_id: run.id,
                series_id,
                run_after: now,
            };
            let mut next = series.clone();
            next.start_run(run.clone(), now);
            match self.series.update_series_and_enqueue(&next, &job).await {
                Ok(()) => {
                    next.revision += 1;
                    self.job_queued.notify_one();
                    tracing::info!(%series_id, run_id = %run.id, model_type, "prediction queued");
                    return Ok(PredictOutcome {
                        series: next,
                        decision: PredictDecision::Queued,
                    });
                }
                Err(UpdateSeriesError::Stale) => {
                    series = self
                        .series
                        .find_series(series_id)
                        .await?
                        .ok_or_else(|| StoreError(format!("series {series_id} vanished")))?;
                }
                Err(UpdateSeriesError::Store(e)) => {
                    return Err(self.record_not_queued(series, run, e).await);
                }
            }
        }
        Err(StoreError(format!(
            "series {series_id} kept changing under concurrent requests"
        ))
        .into())
    }

    /// The run could not be stored with its job: record it as failed on the series, which
    /// exists, so that the failure shows there (if the database lets us).
    async fn record_not_queued(
        &self,
        series: Series,
        run: PredictionRun,
        error: StoreError,
    ) -> PredictError {
        let reason = format!("the prediction could not be queued: {error}");
        let now = self.clock.now();
        let run_id = run.id;
        let mut failed = series.clone();
        failed.start_run(run, now);
        let recorded = failed
            .fail(run_id, &reason, now)
            .map_err(|e| StoreError(e.to_string()));
        if let Ok(Applied::Changed) = recorded
            && let Err(e) = self.series.update_series(&failed).await
        {
            tracing::error!(series_id = %series.id, "could not record that the run was not queued: {e}");
        }
        PredictError::NotQueued {
            series_id: series.id,
            reason: error.to_string(),
        }
    }

    /// An ML app reports the end of a run. `caller` is the ML app the HTTP layer
    /// authenticated; only the app the run was sent to may report on it.
    pub async fn report(
        &self,
        caller: &str,
        series_id: SeriesId,
        report: StatusReport,
    ) -> Result<(Series, Applied), ReportError> {
        let now = self.clock.now();
        let series = self
            .series
            .find_series(series_id)
            .await?
            .ok_or(ReportError::SeriesNotFound(series_id))?;
        if let Some(run) = &series.run
            && run.id == report.run_id
            && run.ml_app != caller
        {
            return Err(ReportError::WrongMlApp {
                caller: caller.to_string(),
                expected: run.ml_app.clone(),
            });
        }
        let outcome = change_series(self.series.as_ref(), series_id, Some(series), |s| {
            s.report(
                report.run_id,
                report.status,
                &report.model_type,
                report.result.clone(),
                now,
            )
        })
        .await;
        let (series, applied) = match outcome {
            Ok(done) => done,
            Err(ChangeError::NotFound(id)) => return Err(ReportError::SeriesNotFound(id)),
            Err(ChangeError::Rejected(e)) => return Err(ReportError::Rejected(e)),
            Err(ChangeError::Store(e)) => return Err(e.into()),
        };
        if applied == Applied::Changed {
            tracing::info!(%series_id, run_id = %report.run_id, state = %series.state, "ML app reported");
            // The job waits for the deadline; it has nothing left to do.
            if let Err(e) = self.queue.discard_waiting(report.run_id, now).await {
                tracing::warn!(run_id = %report.run_id, "could not discard the finished job (it ends at its deadline instead): {e}");
            }
        }
        Ok((series, applied))
    }

    /// A series of one of `member`'s organizations; another organization's is not found,
    /// like one that does not exist.
    pub async fn find_series(
        &self,
        member: &Member,
        id: SeriesId,
    ) -> Result<Series, FindSeriesError> {
        let series = self
            .series
            .find_series(id)
            .await?
            .ok_or(FindSeriesError::NotFound(id))?;
        if member.organizations != Membership::Every {
            let organization = self
                .organizations
                .find_organization(series.organization_id)
                .await?;
            if !organization.is_some_and(|o| member.belongs_to(&o)) {
                return Err(FindSeriesError::NotFound(id));
            }
        }
        Ok(series)
    }

    /// Runs a failed series again, with the model type and body part of its failed run.
    pub async fn retry(&self, member: &Member, id: SeriesId) -> Result<PredictOutcome, RetryError> {
        let series = self.find_series(member, id).await?;
        let run = match (&series.state, &series.run) {
            (PredictionState::Failed, Some(run)) => run,
            (state, _) => {
                return Err(RetryError::NotFailed {
                    series_id: id,
                    state: *state,
                });
            }
        };
        let request = PredictRequest {
            organization: series.organization_id.to_string(),
            study_instance_uid: series.key.study_instance_uid.clone(),
            series_instance_uid: series.key.series_instance_uid.clone(),
            model_type: run.model_type.clone(),
            predict_again: true,
            body_part: run.body_part.clone(),
        };
        Ok(self.predict(member, &request).await?)
    }

    /// How many series are in each state (for operators' metrics).
    pub async fn count_by_state(&self) -> Result<Vec<(PredictionState, u64)>, StoreError> {
        self.series.count_by_state().await
    }

    /// Series and their current runs, for people watching the jobs (admins).
    pub async fn list_series(&self, filter: &SeriesFilter) -> Result<Vec<Series>, StoreError> {
        self.series.list_series(filter).await
    }

    pub async fn add_organization(
        &self,
        name: &str,
        dicom_root: &str,
        credentials: DicomCredentials,
    ) -> Result<Organization, AddOrganizationError> {
        let organization = Organization::new(name, dicom_root, credentials, self.clock.now())?;
        match self.organizations.create_organization(&organization).await {
            Ok(()) => Ok(organization),
            Err(CreateOrganizationError::DuplicateName(name)) => {
                Err(AddOrganizationError::DuplicateName(name))
            }
            Err(CreateOrganizationError::Store(e)) => Err(e.into()),
        }
    }

    /// Every organization's name, sorted.
    pub async fn organization_names(&self) -> Result<Vec<String>, StoreError> {
        self.organizations.organization_names().await
    }
}
