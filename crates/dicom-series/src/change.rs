//! Read, change, write with a revision check, and again if someone else wrote first.

use crate::ids::SeriesId;
use crate::repository::{SeriesRepository, StoreError, UpdateSeriesError};
use crate::series::{Applied, Series, TransitionError};

/// How often a change is tried again after another writer changed the series first. Each
/// writer that loses a round sees the winner's write, so a handful is plenty.
const ROUNDS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ChangeError {
    #[error("series {0} does not exist")]
    NotFound(SeriesId),
    #[error(transparent)]
    Rejected(TransitionError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Applies `transition` to the series and stores the result if it changed anything.
/// `series` is a copy already read, if the caller has one. Returns the series as stored.
pub(crate) async fn change_series<F>(
    repository: &dyn SeriesRepository,
    id: SeriesId,
    mut series: Option<Series>,
    mut transition: F,
) -> Result<(Series, Applied), ChangeError>
where
    F: FnMut(&mut Series) -> Result<Applied, TransitionError> + Send,
{
    for _ in 0..ROUNDS {
        let current = match series.take() {
            Some(series) => series,
            None => repository
                .find_series(id)
                .await?
                .ok_or(ChangeError::NotFound(id))?,
        };
        let mut next = current.clone();
        match transition(&mut next).map_err(ChangeError::Rejected)? {
            Applied::Unchanged => return Ok((current, Applied::Unchanged)),
            Applied::Changed => match repository.update_series(&next).await {
                Ok(()) => {
                    next.revision += 1;
                    return Ok((next, Applied::Changed));
                }
                Err(UpdateSeriesError::Stale) => continue,
                Err(UpdateSeriesError::Store(e)) => return Err(e.into()),
            },
        }
    }
    Err(StoreError(format!(
        "series {id} kept changing under concurrent writes; gave up after {ROUNDS} rounds"
    ))
    .into())
}
