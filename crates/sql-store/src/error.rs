//! Database errors as the domain's [`StoreError`].

use datastore::StoreError;
use sea_orm::{DbErr, SqlErr};

/// A unique violation is a [`StoreError::Conflict`]; anything else is a
/// [`StoreError::Database`].
pub(crate) fn store_error(error: DbErr) -> StoreError {
    match error.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(message)) => StoreError::Conflict(message),
        _ => StoreError::Database(error.to_string()),
    }
}

/// A stored value that does not fit the domain's type (a sign of a foreign writer).
pub(crate) fn out_of_range(what: &str, value: i64) -> StoreError {
    StoreError::Database(format!("stored {what} {value} is out of range"))
}
