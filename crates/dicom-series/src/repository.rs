//! Where organizations and series are kept.

use async_trait::async_trait;

use crate::ids::{OrganizationId, SeriesId};
use crate::organization::Organization;
use crate::queue::NewJob;
use crate::series::Series;
use crate::state::PredictionState;

/// Which series [`SeriesRepository::list_series`] returns: every condition given holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeriesFilter {
    pub organization: Option<OrganizationId>,
    pub study_instance_uid: Option<String>,
    pub state: Option<PredictionState>,
    /// At most this many, after skipping `offset` (most recently updated first).
    pub limit: u64,
    pub offset: u64,
}

/// The database failed. The message is for operators' logs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("database error: {0}")]
pub struct StoreError(pub String);

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CreateOrganizationError {
    #[error("an organization named {0:?} already exists")]
    DuplicateName(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UpdateSeriesError {
    /// Someone else changed the series since it was read: read it again and decide again.
    #[error("the series changed since it was read")]
    Stale,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait OrganizationRepository: Send + Sync {
    async fn create_organization(
        &self,
        organization: &Organization,
    ) -> Result<(), CreateOrganizationError>;

    async fn find_organization(
        &self,
        id: OrganizationId,
    ) -> Result<Option<Organization>, StoreError>;

    /// Exact match on the name.
    async fn find_organization_by_name(
        &self,
        name: &str,
    ) -> Result<Option<Organization>, StoreError>;

    /// Every organization's name, sorted (for answers that list the ones that exist).
    async fn organization_names(&self) -> Result<Vec<String>, StoreError>;
}

#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait SeriesRepository: Send + Sync {
    async fn find_series(&self, id: SeriesId) -> Result<Option<Series>, StoreError>;

    /// The stored series of `series.organization_id` with the same study *and* series UID;
    /// if there is none, stores `series` as given and returns it. Two concurrent calls for
    /// the same series return the same row.
    async fn find_or_insert_series(&self, series: &Series) -> Result<Series, StoreError>;

    /// Stores `series` if the stored revision is still `series.revision`, and the stored
    /// revision becomes `series.revision + 1`; otherwise [`UpdateSeriesError::Stale`] and
    /// nothing changes.
    async fn update_series(&self, series: &Series) -> Result<(), UpdateSeriesError>;

    /// The series `filter` selects, most recently updated first (then by id, so that pages
    /// do not overlap).
    async fn list_series(&self, filter: &SeriesFilter) -> Result<Vec<Series>, StoreError>;

    /// How many series are in each state (states without any are left out).
    async fn count_by_state(&self) -> Result<Vec<(PredictionState, u64)>, StoreError>;

    /// [`update_series`](Self::update_series) and [`NewJob`] queued in one transaction:
    /// both happen or neither does.
    async fn update_series_and_enqueue(
        &self,
        series: &Series,
        job: &NewJob,
    ) -> Result<(), UpdateSeriesError>;
}
