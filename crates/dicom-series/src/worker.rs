//! The background worker: claims a job, sends its series, and ends runs that fail or whose
//! report does not come.
//!
//! One attempt: mark the series `in_progress` (stored before anything is sent), ask the
//! DICOM server's series search how many instances the series has (and its modality),
//! retrieve them straight into a ZIP in a fresh temporary folder (one streamed pass: each
//! instance is written once, into its entry, as it arrives, named from its own header; see
//! [`crate::archive`]), check that as many came as counted, send the finished archive to
//! the ML app, record the submission, and give the job back to be claimed at the report
//! deadline. A transient failure gives the job back for a later attempt (backoff
//! with jitter) until the attempts run out; a permanent one fails the run at once. The
//! temporary folder goes when the attempt ends, however it ends.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tracing::Instrument;

use crate::change::{ChangeError, change_series};
use crate::ml_apps::MlAppDirectory;
use crate::ports::{
    DicomSource, FetchError, MlApp, PredictionRequest, SeriesArchive, SeriesArchiver, SubmitError,
};
use crate::queue::{ClaimedJob, JobPhase, JobQueue, LeaseError};
use crate::repository::{OrganizationRepository, SeriesRepository, StoreError};
use crate::retry::RetryPolicy;
use crate::scratch::ScratchSpace;
use crate::series::{Applied, PredictionRun, Series, TransitionError};
use crate::time::{Clock, after, human_duration};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerSettings {
    /// How long a claim lasts without being extended; a worker that dies loses its jobs to
    /// other workers after this long. Extended every third of it while working.
    pub lease: Duration,
    /// How often an idle worker looks for due jobs (it is also woken when a job is queued
    /// in this process).
    pub poll_interval: Duration,
    pub retry: RetryPolicy,
    /// How long the ML app has to report after accepting a series.
    pub report_timeout: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
            retry: RetryPolicy::default(),
            report_timeout: Duration::from_secs(30 * 60),
        }
    }
}

/// Everything outside that the worker uses.
#[derive(Clone)]
pub struct WorkerPorts {
    pub organizations: Arc<dyn OrganizationRepository>,
    pub series: Arc<dyn SeriesRepository>,
    pub queue: Arc<dyn JobQueue>,
    pub source: Arc<dyn DicomSource>,
    pub archiver: Arc<dyn SeriesArchiver>,
    pub ml_app: Arc<dyn MlApp>,
    pub scratch: Arc<dyn ScratchSpace>,
    pub clock: Arc<dyn Clock>,
}

/// What handling one claimed job came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    /// The ML app accepted the series; the job waits for the report deadline.
    Submitted,
    /// The ML app reported before the submission was even recorded; the job is done.
    SubmittedAndReported,
    /// A transient failure; attempt `attempt + 1` is due after `delay`.
    RetryLater {
        attempt: u32,
        delay: Duration,
        error: String,
    },
    /// The run ended `failed`.
    Failed { reason: String },
    /// Claimed before its deadline (e.g. after a restart); given back until then.
    StillWaiting,
    /// The run was already over or replaced by a newer one; the job was dropped.
    Obsolete,
    /// Another worker took the job over (this worker's lease ran out); nothing was sent
    /// after that.
    LeaseLost,
}

/// Why an attempt did not get the series to the ML app.
#[derive(Debug)]
enum AttemptError {
    Transient(String),
    Permanent(String),
    LeaseLost,
    Store(StoreError),
}

impl From<StoreError> for AttemptError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

pub struct JobWorker {
    name: String,
    ports: WorkerPorts,
    ml_apps: MlAppDirectory,
    settings: WorkerSettings,
    job_queued: Arc<Notify>,
}

impl JobWorker {
    /// `name` identifies the worker in the queue's leases and in logs (e.g. host and pid).
    pub fn new(
        name: impl Into<String>,
        ports: WorkerPorts,
        ml_apps: MlAppDirectory,
        settings: WorkerSettings,
        job_queued: Arc<Notify>,
    ) -> Self {
        Self {
            name: name.into(),
            ports,
            ml_apps,
            settings,
            job_queued,
        }
    }

    /// Works until `shutdown` completes. A job being worked on at shutdown is given back at
    /// once (its temporary files removed), to be taken up by the next worker.
    pub async fn run(&self, shutdown: impl Future<Output = ()> + Send) {
        tokio::pin!(shutdown);
        tracing::info!(worker = %self.name, "series worker started");
        loop {
            let job = tokio::select! {
                _ = &mut shutdown => break,
                claimed = self.claim() => claimed,
            };
            match job {
                Ok(Some(job)) => {
                    tokio::select! {
                        _ = &mut shutdown => {
                            self.give_back(&job).await;
                            break;
                        }
                        outcome = self.handle(&job) => self.log_outcome(&job, outcome),
                    }
                }
                Ok(None) => {
                    tokio::select! {
                        _ = &mut shutdown => break,
                        _ = self.job_queued.notified() => {}
                        _ = tokio::time::sleep(self.settings.poll_interval) => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(worker = %self.name, "could not claim a job: {e}");
                    tokio::select! {
                        _ = &mut shutdown => break,
                        _ = tokio::time::sleep(self.settings.poll_interval) => {}
                    }
                }
            }
        }
        tracing::info!(worker = %self.name, "series worker stopped");
    }

    /// Claims one due job and handles it. `None` when no job was due.
    pub async fn run_once(&self) -> Result<Option<JobOutcome>, StoreError> {
        match self.claim().await? {
            Some(job) => Ok(Some(self.handle(&job).await?)),
            None => Ok(None),
        }
    }

    async fn claim(&self) -> Result<Option<ClaimedJob>, StoreError> {
        let now = self.ports.clock.now();
        self.ports
            .queue
            .claim(&self.name, now, after(now, self.settings.lease))
            .await
    }

    async fn give_back(&self, job: &ClaimedJob) {
        let now = self.ports.clock.now();
        if let Err(e) = self.ports.queue.release(job, job.phase, now).await {
            tracing::warn!(run_id = %job.run_id, "could not give the job back at shutdown (it is taken up when its lease runs out): {e}");
        }
    }

    fn log_outcome(&self, job: &ClaimedJob, outcome: Result<JobOutcome, StoreError>) {
        let (series_id, run_id) = (job.series_id, job.run_id);
        match outcome {
            Ok(JobOutcome::Failed { reason }) => {
                tracing::warn!(%series_id, %run_id, "prediction failed: {reason}")
            }
            Ok(JobOutcome::RetryLater {
                attempt,
                delay,
                error,
            }) => tracing::warn!(
                %series_id, %run_id, attempt,
                "attempt failed, retrying in {}: {error}", human_duration(delay)
            ),
            Ok(outcome) => tracing::info!(%series_id, %run_id, ?outcome, "job handled"),
            Err(e) => tracing::error!(
                %series_id, %run_id,
                "database error while handling the job (it is retried when its lease runs out): {e}"
            ),
        }
    }

    /// Handles a claimed job. A database error leaves the job to be claimed again when its
    /// lease runs out.
    ///
    /// In a span of its own, `series job`, the root of a trace (the request that asked for
    /// the prediction has long been answered): its log lines name the worker, series, run
    /// and claim, and its calls to the DICOM server and the ML app carry its trace context.
    pub async fn handle(&self, job: &ClaimedJob) -> Result<JobOutcome, StoreError> {
        let span = tracing::info_span!(
            parent: None,
            "series job",
            worker = %self.name,
            series_id = %job.series_id,
            run_id = %job.run_id,
            phase = job.phase.as_str(),
            claim = job.claims,
        );
        self.handle_claimed(job).instrument(span).await
    }

    async fn handle_claimed(&self, job: &ClaimedJob) -> Result<JobOutcome, StoreError> {
        let now = self.ports.clock.now();
        let Some(series) = self.ports.series.find_series(job.series_id).await? else {
            return self.complete(job, JobOutcome::Obsolete).await;
        };
        let run = match &series.run {
            Some(run) if run.id == job.run_id && !series.state.is_final() => run.clone(),
            _ => return self.complete(job, JobOutcome::Obsolete).await,
        };

        if job.phase == JobPhase::AwaitReport || run.submitted_at.is_some() {
            let deadline = run.report_deadline.unwrap_or(now);
            if now < deadline {
                return self
                    .release(
                        job,
                        JobPhase::AwaitReport,
                        deadline,
                        JobOutcome::StillWaiting,
                    )
                    .await;
            }
            let reason = format!(
                "the ML app {} did not report within {}",
                run.ml_app,
                human_duration(self.settings.report_timeout)
            );
            return self.fail(job, series, &reason).await;
        }

        let since_first = run
            .started_at
            .and_then(|first| (now - first).to_std().ok())
            .unwrap_or_default();
        if run.attempts >= self.settings.retry.max_attempts
            || (run.attempts > 0 && since_first > self.settings.retry.window)
        {
            // The previous attempts ended without a verdict (e.g. the worker died each time).
            let reason = format!(
                "gave up after {} attempts; last error: {}",
                run.attempts,
                run.last_error
                    .as_deref()
                    .unwrap_or("the worker stopped during the attempt")
            );
            return self.fail(job, series, &reason).await;
        }

        // `in_progress` is stored before anything is sent, so that a report, however fast,
        // finds the run in progress and is never overwritten.
        let begun = change_series(self.ports.series.as_ref(), series.id, Some(series), |s| {
            s.begin_attempt(job.run_id, now).map(|_| Applied::Changed)
        })
        .await;
        let series = match begun {
            Ok((series, _)) => series,
            Err(ChangeError::Rejected(_) | ChangeError::NotFound(_)) => {
                return self.complete(job, JobOutcome::Obsolete).await;
            }
            Err(ChangeError::Store(e)) => return Err(e),
        };
        let attempt = series.run.as_ref().map_or(1, |r| r.attempts);

        let sent = tokio::select! {
            sent = self.send(&series, &run, job) => sent,
            lost = self.keep_lease(job) => lost,
        };
        match sent {
            Ok(()) => self.submitted(job, &series).await,
            Err(AttemptError::LeaseLost) => Ok(JobOutcome::LeaseLost),
            Err(AttemptError::Store(e)) => Err(e),
            Err(AttemptError::Permanent(reason)) => self.fail(job, series, &reason).await,
            Err(AttemptError::Transient(error)) => {
                let now = self.ports.clock.now();
                let since_first = series
                    .run
                    .as_ref()
                    .and_then(|r| r.started_at)
                    .and_then(|first| (now - first).to_std().ok())
                    .unwrap_or_default();
                let Some(delay) = self.settings.retry.next_attempt(attempt, since_first) else {
                    tracing::info!(
                        attempt,
                        "no retry after {}: the retry window is over",
                        human_duration(since_first)
                    );
                    let reason = format!("gave up after {attempt} attempts; last error: {error}");
                    return self.fail(job, series, &reason).await;
                };
                match change_series(self.ports.series.as_ref(), series.id, Some(series), |s| {
                    s.note_retry(job.run_id, &error, now)
                })
                .await
                {
                    Ok(_) => {}
                    Err(ChangeError::Store(e)) => return Err(e),
                    Err(ChangeError::Rejected(_) | ChangeError::NotFound(_)) => {
                        return self.complete(job, JobOutcome::Obsolete).await;
                    }
                }
                let outcome = JobOutcome::RetryLater {
                    attempt,
                    delay,
                    error,
                };
                self.release(job, JobPhase::Send, after(now, delay), outcome)
                    .await
            }
        }
    }

    /// Extends the lease every third of it; returns only when the lease is lost.
    async fn keep_lease(&self, job: &ClaimedJob) -> Result<(), AttemptError> {
        loop {
            tokio::time::sleep(self.settings.lease / 3).await;
            let now = self.ports.clock.now();
            match self
                .ports
                .queue
                .extend_lease(job, after(now, self.settings.lease))
                .await
            {
                Ok(()) => {}
                Err(LeaseError::Lost) => return Err(AttemptError::LeaseLost),
                // The database may come back before the lease runs out; the next try tells.
                Err(LeaseError::Store(e)) => {
                    tracing::warn!(run_id = %job.run_id, "could not extend the lease: {e}")
                }
            }
        }
    }

    /// Counts, retrieves into an archive and sends the series. The temporary folder is
    /// removed when this returns or is cancelled.
    async fn send(
        &self,
        series: &Series,
        run: &PredictionRun,
        job: &ClaimedJob,
    ) -> Result<(), AttemptError> {
        let ports = &self.ports;
        let organization = ports
            .organizations
            .find_organization(series.organization_id)
            .await?
            .ok_or_else(|| {
                AttemptError::Permanent(format!(
                    "organization {} no longer exists",
                    series.organization_id
                ))
            })?;
        let route = self.ml_apps.route(&run.model_type).ok_or_else(|| {
            AttemptError::Permanent(format!(
                "model type {:?} is no longer served by any configured ML app (configured: {}); ask again with one of those",
                run.model_type,
                self.ml_apps.model_types().join(", ")
            ))
        })?;
        let server = &organization.dicom_server;
        let key = &series.key;
        let from_server = |e: FetchError| {
            let message = format!(
                "retrieving study {} series {} from the DICOM server {} of {}: {e}",
                key.study_instance_uid, key.series_instance_uid, server.root, organization.name
            );
            match e {
                FetchError::Transient(_) => AttemptError::Transient(message),
                FetchError::Permanent(_) => AttemptError::Permanent(message),
            }
        };

        // How many instances the series has: what the archive checks it got.
        let described = ports
            .source
            .find_series(server, key)
            .await
            .map_err(from_server)?
            .filter(|found| found.number_of_instances != Some(0))
            .ok_or_else(|| {
                AttemptError::Permanent(format!(
                    "the DICOM server {} of {} has no instance of study {} series {}; check the UIDs and the organization's DICOMweb root",
                    server.root, organization.name, key.study_instance_uid, key.series_instance_uid
                ))
            })?;
        let expected = described.number_of_instances.map(u64::from);

        // One pass: each instance goes straight into its entry of the archive as it arrives.
        let archive_dir = ports
            .scratch
            .create(&format!("series-{}-archive", run.id))
            .await
            .map_err(|e| AttemptError::Transient(format!("{e}")))?;
        let writer = ports
            .archiver
            .create(key, archive_dir.path())
            .await
            .map_err(|e| AttemptError::Transient(e.to_string()))?;
        let archive = ports
            .source
            .retrieve_series(server, key, SeriesArchive::new(expected, writer))
            .await
            .map_err(from_server)?;
        let modality = described
            .modality
            .filter(|m| !m.trim().is_empty())
            .or_else(|| archive.modality.clone())
            .ok_or_else(|| {
                AttemptError::Permanent(format!(
                    "neither the series search nor any instance of study {} series {} names its Modality (0008,0060); the ML app needs it",
                    key.study_instance_uid, key.series_instance_uid
                ))
            })?;

        // Send only while this worker still holds the job.
        let now = ports.clock.now();
        match ports
            .queue
            .extend_lease(job, after(now, self.settings.lease))
            .await
        {
            Ok(()) => {}
            Err(LeaseError::Lost) => return Err(AttemptError::LeaseLost),
            Err(LeaseError::Store(e)) => return Err(AttemptError::Store(e)),
        }
        let request = PredictionRequest {
            series_id: series.id.0,
            run_id: run.id.0,
            modality,
            model_type: run.model_type.clone(),
            body_part: run.body_part.clone(),
        };
        ports
            .ml_app
            .submit(&route.endpoint, &request, &archive)
            .await
            .map_err(|e| {
                let message = format!(
                    "sending to the ML app {} at {}: {e}",
                    route.name, route.endpoint.url
                );
                match e {
                    SubmitError::Transient(_) => AttemptError::Transient(message),
                    SubmitError::Permanent(_) => AttemptError::Permanent(message),
                }
            })?;
        drop(archive_dir);
        Ok(())
    }

    async fn submitted(&self, job: &ClaimedJob, series: &Series) -> Result<JobOutcome, StoreError> {
        let now = self.ports.clock.now();
        let deadline = after(now, self.settings.report_timeout);
        let marked = change_series(self.ports.series.as_ref(), series.id, None, |s| {
            s.mark_submitted(job.run_id, deadline, now)
        })
        .await;
        match marked {
            Ok((series, _)) if series.state.is_final() => {
                self.complete(job, JobOutcome::SubmittedAndReported).await
            }
            Ok(_) => {
                self.release(job, JobPhase::AwaitReport, deadline, JobOutcome::Submitted)
                    .await
            }
            // A newer run replaced this one meanwhile; its own job carries on.
            Err(
                ChangeError::Rejected(TransitionError::StaleRun { .. }) | ChangeError::NotFound(_),
            ) => self.complete(job, JobOutcome::Obsolete).await,
            Err(ChangeError::Rejected(e)) => Err(StoreError(format!("unexpected: {e}"))),
            Err(ChangeError::Store(e)) => Err(e),
        }
    }

    async fn fail(
        &self,
        job: &ClaimedJob,
        series: Series,
        reason: &str,
    ) -> Result<JobOutcome, StoreError> {
        let now = self.ports.clock.now();
        match change_series(self.ports.series.as_ref(), series.id, Some(series), |s| {
            s.fail(job.run_id, reason, now)
        })
        .await
        {
            Ok((_, Applied::Changed)) => {
                let outcome = JobOutcome::Failed {
                    reason: reason.to_string(),
                };
                self.complete(job, outcome).await
            }
            // Reported meanwhile, or replaced by a newer run: the run's end stands.
            Ok((_, Applied::Unchanged))
            | Err(ChangeError::Rejected(_) | ChangeError::NotFound(_)) => {
                self.complete(job, JobOutcome::Obsolete).await
            }
            Err(ChangeError::Store(e)) => Err(e),
        }
    }

    async fn complete(
        &self,
        job: &ClaimedJob,
        outcome: JobOutcome,
    ) -> Result<JobOutcome, StoreError> {
        match self.ports.queue.complete(job).await {
            Ok(()) => Ok(outcome),
            Err(LeaseError::Lost) => Ok(JobOutcome::LeaseLost),
            Err(LeaseError::Store(e)) => Err(e),
        }
    }

    async fn release(
        &self,
        job: &ClaimedJob,
        phase: JobPhase,
        run_after: chrono::DateTime<chrono::Utc>,
        outcome: JobOutcome,
    ) -> Result<JobOutcome, StoreError> {
        match self.ports.queue.release(job, phase, run_after).await {
            Ok(()) => Ok(outcome),
            Err(LeaseError::Lost) => Ok(JobOutcome::LeaseLost),
            Err(LeaseError::Store(e)) => Err(e),
        }
    }
}
