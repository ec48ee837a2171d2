//! Connecting to SQLite or Postgres, and running the migrations.

use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use datastore::StoreError;
use migrations::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};

use crate::error::store_error;

/// How long a SQLite connection waits for another writer before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// The Postgres advisory lock held while migrating (an arbitrary constant of this app).
const MIGRATION_LOCK: i64 = 0x6e61_6368_6574; // "nachet"
/// Connections to a SQLite file (WAL: readers in parallel, one writer at a time).
const SQLITE_FILE_CONNECTIONS: u32 = 4;

/// The records of the seed backend in a SQL database (SQLite or Postgres).
///
/// Cloning is cheap: clones share one connection pool.
#[derive(Clone, Debug)]
pub struct SqlStore {
    db: DatabaseConnection,
    /// The URL, when the migrations run on a connection of their own (a SQLite file,
    /// Postgres); `None` for an in-memory SQLite database (one connection).
    own_connection_url: Option<String>,
}

/// Connects with `options`. A connection to a SQLite file sets its pragmas as it opens;
/// switching a fresh file to WAL while another process does the same can answer "database
/// is locked" at once, without SQLite's busy handler (seen one CI run in about fifteen), so
/// that answer is retried until the busy timeout has passed.
async fn open(options: ConnectOptions, url: &str) -> Result<DatabaseConnection, StoreError> {
    let deadline = std::time::Instant::now() + SQLITE_BUSY_TIMEOUT;
    loop {
        match Database::connect(options.clone()).await {
            Ok(db) => return Ok(db),
            Err(e)
                if e.to_string().contains("database is locked")
                    && std::time::Instant::now() < deadline =>
            {
                tracing::debug!(url = %redact(url), "the SQLite file is locked while opening; trying again");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => {
                return Err(StoreError::Database(format!(
                    "cannot connect to {}: {e}",
                    redact(url)
                )));
            }
        }
    }
}

impl SqlStore {
    /// Connects to `url`: `postgres://user:password@host:port/db`, `sqlite://path?mode=rwc`
    /// (a file, created if missing), or `sqlite::memory:` (a database of this store's own).
    ///
    /// SQLite runs with foreign keys on, a busy timeout, and (for a file) WAL journaling.
    /// An in-memory SQLite database lives in one connection that is never closed, so every
    /// query of this store sees the same database.
    pub async fn connect(url: &str) -> Result<SqlStore, StoreError> {
        let db = open(Self::options(url), url).await?;
        tracing::debug!(url = %redact(url), backend = ?db.get_database_backend(), "connected to the database");
        let own_connection_url = (!is_sqlite_in_memory(url)).then(|| url.to_owned());
        Ok(SqlStore {
            db,
            own_connection_url,
        })
    }

    fn options(url: &str) -> ConnectOptions {
        let mut options = ConnectOptions::new(url);
        options.sqlx_logging(false);
        if DbBackend::Sqlite.is_prefix_of(url) {
            let in_memory = is_sqlite_in_memory(url);
            options.map_sqlx_sqlite_opts(move |sqlite| {
                let sqlite = sqlite.foreign_keys(true).busy_timeout(SQLITE_BUSY_TIMEOUT);
                if in_memory {
                    sqlite
                } else {
                    sqlite
                        .journal_mode(SqliteJournalMode::Wal)
                        .synchronous(SqliteSynchronous::Normal)
                }
            });
            if in_memory {
                options
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None::<Duration>)
                    .max_lifetime(None::<Duration>);
            } else {
                options.max_connections(SQLITE_FILE_CONNECTIONS);
            }
        }
        options
    }

    /// Applies the migrations not yet applied; applying them again is a no-op.
    ///
    /// They run on a connection of their own, closed after. On a SQLite file, a pooled
    /// connection that read during the migrations could keep a snapshot of the schema from
    /// before them (seen: "ON CONFLICT clause does not match any ... UNIQUE constraint" on
    /// the first insert after migrating a fresh file, about one run in seven). Processes
    /// starting together migrate one after the other (the migrations themselves take no
    /// lock): on Postgres the connection holds an advisory lock meanwhile, on a SQLite file
    /// the process holds `{file}.migrating` locked.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let failed =
            |e: sea_orm::DbErr| StoreError::Database(format!("migrating the database: {e}"));
        let Some(url) = &self.own_connection_url else {
            return Migrator::up(&self.db, None).await.map_err(failed);
        };
        let mut options = Self::options(url);
        options.max_connections(1).min_connections(1);
        let own = open(options, url).await?;
        let postgres = own.get_database_backend() == DbBackend::Postgres;
        // SQLite has no advisory lock: processes on one file take turns on a lock file.
        let _sqlite_turn = match sqlite_file_path(url) {
            Some(path) => Some(migration_turn(path).await?),
            None => None,
        };
        if postgres {
            own.execute_unprepared(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
                .await
                .map_err(failed)?;
        }
        let migrated = Migrator::up(&own, None).await.map_err(failed);
        if postgres {
            // Closing the connection releases the lock too.
            let _ = own
                .execute_unprepared(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))
                .await;
        }
        let _ = own.close().await;
        migrated
    }

    /// Whether the database answers (for readiness probes).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.db
            .ping()
            .await
            .map_err(|e| StoreError::Database(format!("the database does not answer: {e}")))
    }

    /// The connection pool, for other adapters of this crate.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Begins a transaction that writes: on SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so that it waits for other writers instead of failing later.
    pub(crate) async fn begin_write(&self) -> Result<DatabaseTransaction, StoreError> {
        self.db
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..TransactionOptions::default()
            })
            .await
            .map_err(store_error)
    }
}

/// The precision every supported database keeps (Postgres: microseconds), so that a time
/// reads back as it was written.
pub(crate) fn stored_time(time: DateTime<Utc>) -> DateTime<Utc> {
    time.trunc_subsecs(6)
}

/// The file of a `sqlite://path?...` URL.
fn sqlite_file_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().filter(|p| !p.is_empty())?;
    (!is_sqlite_in_memory(url)).then(|| std::path::PathBuf::from(path))
}

/// Waits for this process's turn to migrate the SQLite file `path`; the turn lasts as long
/// as the returned file is open.
async fn migration_turn(path: std::path::PathBuf) -> Result<std::fs::File, StoreError> {
    let mut name = path.into_os_string();
    name.push(".migrating");
    let lock_path = std::path::PathBuf::from(name);
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)?;
        file.lock()?;
        Ok::<_, std::io::Error>(file)
    })
    .await
    .map_err(|e| StoreError::Database(format!("waiting to migrate: {e}")))?
    .map_err(|e| StoreError::Database(format!("cannot lock the database file to migrate it: {e}")))
}

fn is_sqlite_in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &credentials[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_the_password_only() {
        assert_eq!(
            redact("postgres://app:secret@db:5432/nachet"),
            "postgres://app:***@db:5432/nachet"
        );
        assert_eq!(
            redact("postgres://postgres@127.0.0.1:55432/app"),
            "postgres://postgres@127.0.0.1:55432/app"
        );
        assert_eq!(redact("sqlite::memory:"), "sqlite::memory:");
    }

    #[test]
    fn recognizes_in_memory_sqlite() {
        assert!(is_sqlite_in_memory("sqlite::memory:"));
        assert!(is_sqlite_in_memory("sqlite://?mode=memory"));
        assert!(!is_sqlite_in_memory("sqlite:///tmp/a.sqlite?mode=rwc"));
    }
}
