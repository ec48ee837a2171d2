//! A series and its prediction runs: the state machine of contract 2.1.
//!
//! ```text
//!              start_run (a new run; the old one becomes stale)
//!   any state ───────────────────────────────────────────────▶ not_started
//!   not_started ── begin_attempt (before the ML app is called) ─▶ in_progress
//!   in_progress ── begin_attempt (a retry)                    ─▶ in_progress
//!   in_progress ── report(run, status) ──▶ completed | not_supported | failed
//!   not_started | in_progress ── fail(run, reason) ──────────▶ failed
//! ```
//!
//! Every transition but `start_run` names its run and is refused for any other run. A
//! final state is never left within a run: a repeated identical report changes nothing, a
//! different one is refused, and a late `fail` (the deadline, a retry giving up) after a
//! report leaves the report in place.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::ids::{OrganizationId, RunId, SeriesId};
use crate::ports::SeriesKey;
use crate::state::{PredictionState, ReportedStatus};

/// A DICOM UID: dot-separated runs of digits, at most 64 characters (PS3.5 §9.1).
pub fn check_uid(what: &str, uid: &str) -> Result<(), InvalidRequest> {
    let ok = !uid.is_empty()
        && uid.len() <= 64
        && uid
            .split('.')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(InvalidRequest(format!(
            "{what} {uid:?} is not a DICOM UID (digits separated by dots, at most 64 characters)"
        )))
    }
}

/// The study and series UIDs of a request, checked.
pub fn series_key(study: &str, series: &str) -> Result<SeriesKey, InvalidRequest> {
    let (study, series) = (study.trim(), series.trim());
    check_uid("studyInstanceUid", study)?;
    check_uid("seriesInstanceUid", series)?;
    Ok(SeriesKey {
        study_instance_uid: study.to_string(),
        series_instance_uid: series.to_string(),
    })
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidRequest(pub String);

/// One series of one study of one organization, with its latest run.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub id: SeriesId,
    pub organization_id: OrganizationId,
    pub key: SeriesKey,
    pub state: PredictionState,
    /// What the ML app reported for the current run (any status), as it sent it.
    pub result: Option<Value>,
    /// The current run; `None` until the first prediction is asked for.
    pub run: Option<PredictionRun>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Bumped by every stored change; a store refuses a write made from an older revision.
    pub revision: i64,
}

/// One attempt of the backend to get a prediction for a series.
#[derive(Clone, Debug, PartialEq)]
pub struct PredictionRun {
    pub id: RunId,
    pub model_type: String,
    pub body_part: Option<String>,
    /// The configured ML app this run goes to.
    pub ml_app: String,
    /// How many times a worker began sending this run.
    pub attempts: u32,
    /// Why the last attempt failed, or why the run failed.
    pub last_error: Option<String>,
    pub requested_at: DateTime<Utc>,
    /// When the series first went `in_progress` in this run.
    pub started_at: Option<DateTime<Utc>>,
    /// When the ML app accepted the series.
    pub submitted_at: Option<DateTime<Utc>>,
    /// When the run fails if the ML app has not reported by then.
    pub report_deadline: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl PredictionRun {
    pub fn new(
        model_type: &str,
        body_part: Option<&str>,
        ml_app: &str,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id: RunId::new(),
            model_type: model_type.to_string(),
            body_part: body_part.map(str::to_string),
            ml_app: ml_app.to_string(),
            attempts: 0,
            last_error: None,
            requested_at: now,
            started_at: None,
            submitted_at: None,
            report_deadline: None,
            finished_at: None,
        }
    }
}

/// Whether a transition changed anything (and so needs storing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    Changed,
    Unchanged,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("the series has no prediction run")]
    NoRun,
    #[error("run {given} is not the series' current run ({current})")]
    StaleRun { given: RunId, current: RunId },
    #[error("run {run} already ended {state}")]
    RunFinished { run: RunId, state: PredictionState },
    #[error("the report names model type {reported:?} but run {run} is for {expected:?}")]
    ModelTypeMismatch {
        run: RunId,
        reported: String,
        expected: String,
    },
    #[error("run {run} has not been sent to an ML app yet, so it cannot have a result")]
    NotSent { run: RunId },
    #[error("run {run} already ended {state}; a different report cannot replace it")]
    AlreadyReported { run: RunId, state: PredictionState },
}

impl Series {
    /// A series seen for the first time: `not_started`, no run.
    pub fn new(organization_id: OrganizationId, key: SeriesKey, now: DateTime<Utc>) -> Self {
        Self {
            id: SeriesId::new(),
            organization_id,
            key,
            state: PredictionState::NotStarted,
            result: None,
            run: None,
            created_at: now,
            updated_at: now,
            revision: 0,
        }
    }

    /// The run is waiting to be sent or being sent, or waiting for its report.
    pub fn has_active_run(&self) -> bool {
        self.run.is_some() && !self.state.is_final()
    }

    pub fn model_type(&self) -> Option<&str> {
        self.run.as_ref().map(|run| run.model_type.as_str())
    }

    fn current_run(&mut self, run_id: RunId) -> Result<&mut PredictionRun, TransitionError> {
        match &mut self.run {
            None => Err(TransitionError::NoRun),
            Some(run) if run.id != run_id => Err(TransitionError::StaleRun {
                given: run_id,
                current: run.id,
            }),
            Some(run) => Ok(run),
        }
    }

    /// Starts a new run, whatever the state: the previous run (and its result) is replaced,
    /// and reports for it are refused from now on. Whether to start one is the caller's
    /// policy (see [`crate::PredictionService`]).
    pub fn start_run(&mut self, run: PredictionRun, now: DateTime<Utc>) {
        self.state = PredictionState::NotStarted;
        self.result = None;
        self.run = Some(run);
        self.updated_at = now;
    }

    /// A worker begins an attempt to send the run. Recorded before anything is sent, so
    /// that a report, however fast, finds the series `in_progress`. Returns the attempt's
    /// number (1 for the first).
    pub fn begin_attempt(
        &mut self,
        run_id: RunId,
        now: DateTime<Utc>,
    ) -> Result<u32, TransitionError> {
        let state = self.state;
        let run = self.current_run(run_id)?;
        if state.is_final() {
            return Err(TransitionError::RunFinished { run: run_id, state });
        }
        run.attempts += 1;
        run.started_at.get_or_insert(now);
        let attempt = run.attempts;
        self.state = PredictionState::InProgress;
        self.updated_at = now;
        Ok(attempt)
    }

    /// An attempt failed but another will follow.
    pub fn note_retry(
        &mut self,
        run_id: RunId,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<Applied, TransitionError> {
        let state = self.state;
        let run = self.current_run(run_id)?;
        if state.is_final() {
            return Ok(Applied::Unchanged);
        }
        run.last_error = Some(error.to_string());
        self.updated_at = now;
        Ok(Applied::Changed)
    }

    /// The ML app accepted the series; it must report by `deadline`. The state is left as
    /// it is: the report may already have arrived.
    pub fn mark_submitted(
        &mut self,
        run_id: RunId,
        deadline: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Applied, TransitionError> {
        let run = self.current_run(run_id)?;
        if run.submitted_at.is_some() && run.report_deadline.is_some() {
            return Ok(Applied::Unchanged);
        }
        // A report that came first recorded the submission at its own time (no later than
        // this); the deadline is recorded all the same, so that every run that was sent
        // shows one.
        run.submitted_at.get_or_insert(now);
        run.report_deadline = Some(deadline);
        self.updated_at = now;
        Ok(Applied::Changed)
    }

    /// The run ends `failed` for a reason of the backend's (retries used up, a permanent
    /// error, no report by the deadline). A run that already ended keeps its end.
    pub fn fail(
        &mut self,
        run_id: RunId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Applied, TransitionError> {
        let state = self.state;
        let run = self.current_run(run_id)?;
        if state.is_final() {
            return Ok(Applied::Unchanged);
        }
        run.last_error = Some(reason.to_string());
        run.finished_at = Some(now);
        self.state = PredictionState::Failed;
        self.updated_at = now;
        Ok(Applied::Changed)
    }

    /// The ML app reports the end of a run.
    pub fn report(
        &mut self,
        run_id: RunId,
        status: ReportedStatus,
        model_type: &str,
        result: Value,
        now: DateTime<Utc>,
    ) -> Result<Applied, TransitionError> {
        let state = self.state;
        // A JSON `null` result is no result (and reads back from storage as none).
        let result = Some(result).filter(|r| !r.is_null());
        let current_result = self.result.clone();
        let run = self.current_run(run_id)?;
        if run.model_type != model_type {
            return Err(TransitionError::ModelTypeMismatch {
                run: run_id,
                reported: model_type.to_string(),
                expected: run.model_type.clone(),
            });
        }
        match state {
            PredictionState::NotStarted => Err(TransitionError::NotSent { run: run_id }),
            PredictionState::InProgress => {
                // A report proves the ML app had the series: when it comes before the worker
                // recorded the submission, the submission is no later than the report.
                run.submitted_at.get_or_insert(now);
                run.finished_at = Some(now);
                if status == ReportedStatus::Failed {
                    run.last_error = Some(format!(
                        "the ML app {} reported that the prediction failed",
                        run.ml_app
                    ));
                }
                self.state = status.state();
                self.result = result;
                self.updated_at = now;
                Ok(Applied::Changed)
            }
            done if done == status.state() && current_result == result => Ok(Applied::Unchanged),
            done => Err(TransitionError::AlreadyReported {
                run: run_id,
                state: done,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::state::PredictionState::*;

    fn key() -> SeriesKey {
        series_key("1.2.3", "1.2.3.4").unwrap()
    }

    fn t(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
    }

    fn series_with_run() -> (Series, RunId) {
        let mut series = Series::new(OrganizationId::new(), key(), t(0));
        let run = PredictionRun::new("brain_tumor_classification", None, "reference", t(0));
        let run_id = run.id;
        series.start_run(run, t(0));
        (series, run_id)
    }

    #[test]
    fn uids_are_digits_and_dots() {
        assert!(series_key("1.2.840.10008.1", "1.2.3").is_ok());
        for bad in ["", "1..2", ".1", "1.2.", "1.2a", "../etc", &"1".repeat(65)] {
            assert!(check_uid("studyInstanceUid", bad).is_err(), "{bad:?}");
        }
        let err = series_key("1.2", "x").unwrap_err();
        assert!(err.to_string().contains("seriesInstanceUid"));
    }

    #[test]
    fn the_happy_path_goes_not_started_in_progress_completed() {
        let (mut series, run) = series_with_run();
        assert_eq!(series.state, NotStarted);
        assert!(series.has_active_run());
        assert_eq!(series.begin_attempt(run, t(1)), Ok(1));
        assert_eq!(series.state, InProgress);
        assert_eq!(
            series.mark_submitted(run, t(100), t(2)),
            Ok(Applied::Changed)
        );
        let result = json!({"output": [{"slice": 1, "classification": "none"}]});
        assert_eq!(
            series.report(
                run,
                ReportedStatus::Completed,
                "brain_tumor_classification",
                result.clone(),
                t(3)
            ),
            Ok(Applied::Changed)
        );
        assert_eq!(series.state, Completed);
        assert_eq!(series.result, Some(result));
        let run = series.run.as_ref().unwrap();
        assert_eq!(
            (
                run.started_at,
                run.submitted_at,
                run.report_deadline,
                run.finished_at
            ),
            (Some(t(1)), Some(t(2)), Some(t(100)), Some(t(3)))
        );
        assert!(!series.has_active_run());
    }

    #[test]
    fn a_report_can_arrive_before_the_submission_is_recorded() {
        let (mut series, run) = series_with_run();
        series.begin_attempt(run, t(1)).unwrap();
        series
            .report(
                run,
                ReportedStatus::Completed,
                "brain_tumor_classification",
                json!({}),
                t(2),
            )
            .unwrap();
        // The report proves the submission: never submitted after it finished.
        let recorded = series.run.as_ref().unwrap();
        assert_eq!(recorded.submitted_at, Some(t(2)));
        assert_eq!(recorded.finished_at, Some(t(2)));
        // The worker's own record afterwards adds only the deadline; the state stays
        // completed and the submission keeps the report's time.
        assert_eq!(
            series.mark_submitted(run, t(100), t(3)),
            Ok(Applied::Changed)
        );
        assert_eq!(series.state, Completed);
        let recorded = series.run.as_ref().unwrap();
        assert_eq!(recorded.submitted_at, Some(t(2)));
        assert_eq!(recorded.report_deadline, Some(t(100)));
        assert_eq!(
            series.mark_submitted(run, t(100), t(4)),
            Ok(Applied::Unchanged)
        );
    }

    #[test]
    fn a_report_before_anything_was_sent_is_refused() {
        let (mut series, run) = series_with_run();
        assert_eq!(
            series.report(
                run,
                ReportedStatus::Completed,
                "brain_tumor_classification",
                json!({}),
                t(1)
            ),
            Err(TransitionError::NotSent { run })
        );
        assert_eq!(series.state, NotStarted);
    }

    #[test]
    fn a_late_or_repeated_report_never_moves_a_finished_run() {
        for first in [
            ReportedStatus::Completed,
            ReportedStatus::NotSupported,
            ReportedStatus::Failed,
        ] {
            let (mut series, run) = series_with_run();
            series.begin_attempt(run, t(1)).unwrap();
            series
                .report(
                    run,
                    first,
                    "brain_tumor_classification",
                    json!({"a": 1}),
                    t(2),
                )
                .unwrap();
            let before = series.clone();

            // The same report again: accepted, nothing changes.
            assert_eq!(
                series.report(
                    run,
                    first,
                    "brain_tumor_classification",
                    json!({"a": 1}),
                    t(3)
                ),
                Ok(Applied::Unchanged)
            );
            // Anything else: refused.
            for other in [
                ReportedStatus::Completed,
                ReportedStatus::NotSupported,
                ReportedStatus::Failed,
            ] {
                let result = if other == first {
                    json!({"a": 2})
                } else {
                    json!({"a": 1})
                };
                assert_eq!(
                    series.report(run, other, "brain_tumor_classification", result, t(3)),
                    Err(TransitionError::AlreadyReported {
                        run,
                        state: first.state()
                    })
                );
            }
            // The backend's own late failures (deadline, retries) leave it too.
            assert_eq!(series.fail(run, "deadline", t(4)), Ok(Applied::Unchanged));
            assert_eq!(series.note_retry(run, "x", t(4)), Ok(Applied::Unchanged));
            assert_eq!(
                series.begin_attempt(run, t(4)),
                Err(TransitionError::RunFinished {
                    run,
                    state: first.state()
                })
            );
            assert_eq!(series, before);
        }
    }

    #[test]
    fn a_report_after_the_deadline_failed_the_run_is_refused() {
        let (mut series, run) = series_with_run();
        series.begin_attempt(run, t(1)).unwrap();
        series
            .fail(run, "the ML app did not report within 30m", t(2))
            .unwrap();
        assert_eq!(
            series.report(
                run,
                ReportedStatus::Completed,
                "brain_tumor_classification",
                json!({}),
                t(3)
            ),
            Err(TransitionError::AlreadyReported { run, state: Failed })
        );
        assert_eq!(series.state, Failed);
    }

    #[test]
    fn every_transition_of_a_stale_run_is_refused() {
        let (mut series, old) = series_with_run();
        series.begin_attempt(old, t(1)).unwrap();
        let new_run = PredictionRun::new("brain_tumor_classification", None, "reference", t(2));
        let new = new_run.id;
        series.start_run(new_run, t(2));
        let stale = Err(TransitionError::StaleRun {
            given: old,
            current: new,
        });
        let before = series.clone();
        assert_eq!(
            series.report(
                old,
                ReportedStatus::Completed,
                "brain_tumor_classification",
                json!({}),
                t(3)
            ),
            stale.clone()
        );
        assert_eq!(series.fail(old, "x", t(3)), stale.clone());
        assert_eq!(series.note_retry(old, "x", t(3)), stale.clone());
        assert_eq!(series.mark_submitted(old, t(9), t(3)), stale.clone());
        assert_eq!(
            series.begin_attempt(old, t(3)).map(|_| Applied::Changed),
            stale
        );
        assert_eq!(series, before);
    }

    #[test]
    fn a_report_for_another_model_type_is_refused() {
        let (mut series, run) = series_with_run();
        series.begin_attempt(run, t(1)).unwrap();
        assert!(matches!(
            series.report(
                run,
                ReportedStatus::Completed,
                "lung_tumor_segmentation",
                json!({}),
                t(2)
            ),
            Err(TransitionError::ModelTypeMismatch { .. })
        ));
        assert_eq!(series.state, InProgress);
    }

    #[test]
    fn a_series_without_a_run_accepts_no_transition_but_start_run() {
        let mut series = Series::new(OrganizationId::new(), key(), t(0));
        let any = RunId::new();
        assert_eq!(series.begin_attempt(any, t(1)), Err(TransitionError::NoRun));
        assert_eq!(series.fail(any, "x", t(1)), Err(TransitionError::NoRun));
        assert!(!series.has_active_run());
    }

    #[test]
    fn retries_count_attempts_and_keep_the_first_start() {
        let (mut series, run) = series_with_run();
        assert_eq!(series.begin_attempt(run, t(1)), Ok(1));
        series.note_retry(run, "connection refused", t(2)).unwrap();
        assert_eq!(series.begin_attempt(run, t(5)), Ok(2));
        let r = series.run.as_ref().unwrap();
        assert_eq!(r.started_at, Some(t(1)));
        assert_eq!(r.last_error.as_deref(), Some("connection refused"));
        series.fail(run, "gave up", t(6)).unwrap();
        assert_eq!(series.state, Failed);
        assert_eq!(
            series.run.as_ref().unwrap().last_error.as_deref(),
            Some("gave up")
        );
    }

    #[test]
    fn a_new_run_starts_clean() {
        let (mut series, run) = series_with_run();
        series.begin_attempt(run, t(1)).unwrap();
        series
            .report(
                run,
                ReportedStatus::Completed,
                "brain_tumor_classification",
                json!({"x": 1}),
                t(2),
            )
            .unwrap();
        series.start_run(
            PredictionRun::new(
                "chest_xray_classification",
                Some("CHEST"),
                "reference",
                t(3),
            ),
            t(3),
        );
        assert_eq!(series.state, NotStarted);
        assert_eq!(series.result, None);
        assert_eq!(series.model_type(), Some("chest_xray_classification"));
        assert_eq!(series.run.as_ref().unwrap().attempts, 0);
    }
}
