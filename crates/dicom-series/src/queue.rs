//! The durable job queue: one job per prediction run, leased to one worker at a time.
//!
//! A worker claims a due job for a lease; while it works it extends the lease; it then gives
//! the job back for later (a retry, or the wait for the ML app's report) or completes it. A
//! worker that dies simply stops extending: once the lease has run out, another worker
//! claims the job. Every change a worker makes names its claim, so a worker that lost its
//! lease cannot change a job another worker now holds.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{RunId, SeriesId};
use crate::repository::StoreError;

/// What a job's worker has to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobPhase {
    /// Retrieve, archive and send the series.
    Send,
    /// Sent; due at the report deadline, to fail the run if the ML app has not reported.
    AwaitReport,
}

impl JobPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Send => "send",
            Self::AwaitReport => "await_report",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "send" => Some(Self::Send),
            "await_report" => Some(Self::AwaitReport),
            _ => None,
        }
    }
}

/// A job to queue: the run to send, due from `run_after`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewJob {
    /// The job's id is its run's id: one job per run.
    pub run_id: RunId,
    pub series_id: SeriesId,
    pub run_after: DateTime<Utc>,
}

/// Proof of a claim: changes to the job must present it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClaimToken(pub Uuid);

/// A job as a worker holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimedJob {
    pub run_id: RunId,
    pub series_id: SeriesId,
    pub phase: JobPhase,
    /// How many times the job has been claimed, this claim included.
    pub claims: u32,
    pub token: ClaimToken,
    pub lease_until: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// The lease ran out and the job was claimed again, or the job is gone.
    #[error("the job's lease was lost")]
    Lost,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Claims one job that is due (`run_after <= now`) and not leased (never, or the lease
    /// ran out by `now`), earliest due first, leased to `worker` until `lease_until`. Two
    /// workers never hold the same job at once.
    async fn claim(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<ClaimedJob>, StoreError>;

    /// Keeps the job leased until `lease_until`.
    async fn extend_lease(
        &self,
        job: &ClaimedJob,
        lease_until: DateTime<Utc>,
    ) -> Result<(), LeaseError>;

    /// Gives the job back, to be claimed again from `run_after` in `phase`.
    async fn release(
        &self,
        job: &ClaimedJob,
        phase: JobPhase,
        run_after: DateTime<Utc>,
    ) -> Result<(), LeaseError>;

    /// Removes the job: its run is over.
    async fn complete(&self, job: &ClaimedJob) -> Result<(), LeaseError>;

    /// Removes the job of `run` if no worker holds it at `now` (its report arrived while it
    /// waited for the deadline). A job being worked on is left to its worker.
    async fn discard_waiting(&self, run: RunId, now: DateTime<Utc>) -> Result<(), StoreError>;
}
