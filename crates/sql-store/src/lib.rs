//! The datastore and catalogue ports on a SQL database, SQLite or Postgres, through sea-orm.
//!
//! [`SqlStore`] implements [`datastore::UserStore`], [`datastore::SeedStore`],
//! [`datastore::InferenceStore`], [`datastore::FolderStore`], [`datastore::DatasetStore`] and [`pipeline::ports::CatalogueRecorder`]. The schema is
//! the `migrations` crate's ([`SqlStore::migrate`]). ORM types stay inside this crate: every
//! store converts rows to the domain's records at its border.
//!
//! One module per store; a new store adds a module and its `impl` on [`SqlStore`].

mod catalogue;
mod connection;
mod dataset;
mod entities;
mod error;
mod feedback;
mod folders;
mod inferences;
mod seeds;
mod series;
mod users;

pub use connection::SqlStore;
pub use migrations::seeds::{SEED_NAMESPACE, SEED_SPECIES, seed_id};
pub use series::JobQueueStats;
