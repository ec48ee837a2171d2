//! DICOM series predictions (contract 2).
//!
//! A frontend asks for a prediction on one series ([`PredictionService::predict`]); the
//! series is stored at once and a job is queued. A [`JobWorker`] claims the job, marks the
//! series `in_progress`, retrieves the series from the organization's DICOM server, archives
//! it and sends it to the ML app; the ML app reports back ([`PredictionService::report`]).
//! [`Series`] holds the state machine that keeps late, repeated and stale reports from
//! moving a series backwards.
//!
//! Architecture invariant: no I/O here. No web framework, ORM, HTTP client, storage SDK or
//! DICOM parser; the outside is reached through the ports: [`ports`] (DICOM source,
//! archiver, ML app), [`repository`], [`queue`], [`scratch`] and [`time::Clock`].

pub mod access;
pub mod archive;
mod change;
pub mod ids;
pub mod ml_apps;
pub mod organization;
pub mod ports;
pub mod queue;
pub mod repository;
pub mod retry;
pub mod scratch;
pub mod series;
pub mod service;
pub mod state;
pub mod studies;
pub mod time;
pub mod worker;

pub use access::{Member, Membership, NotAMember, OrganizationAccessError};
pub use archive::{SeriesArchive, entry_names, modality_of, modality_part};
pub use ids::{OrganizationId, RunId, SeriesId};
pub use ml_apps::{InvalidMlApps, MlAppDirectory, MlAppRoute};
pub use organization::{
    InvalidOrganization, Organization, OrganizationName, basic_credentials, bearer_credentials,
    credentials_kind,
};
pub use queue::{ClaimToken, ClaimedJob, JobPhase, JobQueue, LeaseError, NewJob};
pub use repository::{
    CreateOrganizationError, OrganizationRepository, SeriesFilter, SeriesRepository, StoreError,
    UpdateSeriesError,
};
pub use retry::RetryPolicy;
pub use scratch::{ScratchDir, ScratchError, ScratchSpace, io_reason};
pub use series::{Applied, InvalidRequest, PredictionRun, Series, TransitionError, series_key};
pub use service::{
    AddOrganizationError, FindSeriesError, PredictDecision, PredictError, PredictOutcome,
    PredictRequest, PredictionService, ReportError, RetryError, StatusReport,
};
pub use state::{PredictionState, ReportedStatus, UnknownState, UnknownStatus};
pub use studies::{StudyError, StudySeries, StudyService};
pub use time::{Clock, SystemClock, human_duration};
pub use worker::{JobOutcome, JobWorker, WorkerPorts, WorkerSettings};
