//! Prediction states of a series (contract 2.1) and the statuses an ML app may report.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a series stands. `NotStarted` and `InProgress` belong to a run that is still going;
/// the other three end a run (see [`crate::Series`] for the transitions).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictionState {
    /// Known, and maybe queued, but not yet being sent.
    NotStarted,
    /// Being retrieved, archived and sent, or sent and waiting for the ML app's report.
    InProgress,
    NotSupported,
    Failed,
    Completed,
}

impl PredictionState {
    pub const ALL: [PredictionState; 5] = [
        Self::NotStarted,
        Self::InProgress,
        Self::NotSupported,
        Self::Failed,
        Self::Completed,
    ];

    /// The run that reached this state is over.
    pub fn is_final(self) -> bool {
        matches!(self, Self::NotSupported | Self::Failed | Self::Completed)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotStarted => "not_started",
            Self::InProgress => "in_progress",
            Self::NotSupported => "not_supported",
            Self::Failed => "failed",
            Self::Completed => "completed",
        }
    }
}

impl fmt::Display for PredictionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown prediction state {given:?}; the states are not_started, in_progress, not_supported, failed, completed"
)]
pub struct UnknownState {
    pub given: String,
}

impl FromStr for PredictionState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownState {
                given: s.to_string(),
            })
    }
}

/// What an ML app may report in its status callback: only the states that end a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportedStatus {
    NotSupported,
    Completed,
    Failed,
}

impl ReportedStatus {
    pub fn state(self) -> PredictionState {
        match self {
            Self::NotSupported => PredictionState::NotSupported,
            Self::Completed => PredictionState::Completed,
            Self::Failed => PredictionState::Failed,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown status {given:?}; an ML app may report not_supported, completed or failed")]
pub struct UnknownStatus {
    pub given: String,
}

impl FromStr for ReportedStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "not_supported" => Ok(Self::NotSupported),
            "completed" => Ok(Self::Completed),
            "failed" => Ok(Self::Failed),
            _ => Err(UnknownStatus {
                given: s.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_names() {
        for state in PredictionState::ALL {
            assert_eq!(state.as_str().parse::<PredictionState>(), Ok(state));
            assert_eq!(
                serde_json::to_value(state).unwrap(),
                serde_json::json!(state.as_str())
            );
        }
        assert!("done".parse::<PredictionState>().is_err());
    }

    #[test]
    fn only_final_states_may_be_reported() {
        assert_eq!("completed".parse(), Ok(ReportedStatus::Completed));
        assert_eq!("not_supported".parse(), Ok(ReportedStatus::NotSupported));
        assert_eq!("failed".parse(), Ok(ReportedStatus::Failed));
        for not_reportable in ["in_progress", "not_started", "COMPLETED", ""] {
            let err = not_reportable.parse::<ReportedStatus>().unwrap_err();
            assert!(
                err.to_string()
                    .contains("not_supported, completed or failed")
            );
        }
        assert!(
            [
                ReportedStatus::NotSupported,
                ReportedStatus::Completed,
                ReportedStatus::Failed
            ]
            .iter()
            .all(|s| s.state().is_final())
        );
    }
}
