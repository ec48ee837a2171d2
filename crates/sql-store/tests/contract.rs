//! The contract of `SqlStore`, written once (`suite`) and run against three databases:
//! SQLite in memory, SQLite in a file, and PostgreSQL.
//!
//! Each test gets a database of its own. PostgreSQL comes from `TEST_DATABASE_URL` (see the
//! `test-support` crate): without it the `postgres::` tests fail, they never skip.

mod suite;

use sql_store::SqlStore;

/// A migrated store and whatever must live as long as its database.
pub struct TestDb {
    pub store: SqlStore,
    _dir: Option<tempfile::TempDir>,
}

async fn migrated(url: &str, dir: Option<tempfile::TempDir>) -> TestDb {
    let store = SqlStore::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    store.migrate().await.expect("migrating");
    TestDb { store, _dir: dir }
}

pub async fn sqlite_memory() -> TestDb {
    migrated("sqlite::memory:", None).await
}

pub async fn sqlite_file() -> TestDb {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let url = test_support::fresh_sqlite_url(&dir);
    migrated(&url, Some(dir)).await
}

pub async fn postgres() -> TestDb {
    let url = test_support::fresh_postgres_database().await;
    migrated(&url, None).await
}

/// One `#[tokio::test]` per check of the suite, on databases opened by `$open`.
macro_rules! contract_tests {
    ($open:path; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let db = $open().await;
                crate::suite::$check(&db.store).await;
            }
        )*
    };
}

macro_rules! contract_suite {
    ($open:path) => {
        contract_tests!(
            $open;
            migrations_run_twice_are_a_no_op,
            seeds_are_the_fifteen_species_under_fixed_ids,
            users_register_and_find,
            concurrent_registrations_of_one_email_give_one_user,
            an_inference_reads_back_as_saved,
            a_picture_set_is_reused_by_later_pictures,
            a_save_with_a_duplicate_box_id_leaves_nothing,
            a_save_for_an_unknown_user_leaves_nothing,
            saving_an_inference_twice_is_a_conflict_and_leaves_the_first,
            recording_a_catalogue_again_keeps_its_ids,
            a_new_pipeline_version_gets_a_new_id,
            the_chosen_catalogue_version_is_the_last_one_chosen,
        );
    };
}

mod sqlite_memory {
    contract_suite!(crate::sqlite_memory);
}

mod sqlite_file {
    contract_suite!(crate::sqlite_file);
}

mod postgres {
    contract_suite!(crate::postgres);
}

/// What `SqlStore::connect` sets up on SQLite, beyond the contract.
mod sqlite_settings {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    use sql_store::SqlStore;

    async fn pragma(store: &SqlStore, name: &str) -> String {
        let row = store
            .connection()
            .query_one_raw(Statement::from_string(
                DbBackend::Sqlite,
                format!("PRAGMA {name}"),
            ))
            .await
            .expect("a pragma")
            .expect("a row");
        row.try_get_by_index::<String>(0)
            .or_else(|_| row.try_get_by_index::<i64>(0).map(|n| n.to_string()))
            .expect("a value")
    }

    #[tokio::test]
    async fn a_file_runs_in_wal_mode_with_foreign_keys_and_a_busy_timeout() {
        let db = crate::sqlite_file().await;
        assert_eq!(pragma(&db.store, "journal_mode").await, "wal");
        assert_eq!(pragma(&db.store, "foreign_keys").await, "1");
        assert_eq!(pragma(&db.store, "busy_timeout").await, "10000");
    }

    #[tokio::test]
    async fn memory_has_foreign_keys_and_stores_are_separate() {
        let first = crate::sqlite_memory().await;
        let second = crate::sqlite_memory().await;
        assert_eq!(pragma(&first.store, "foreign_keys").await, "1");
        datastore::UserStore::register(&first.store, "only-here@example.org")
            .await
            .expect("register");
        let elsewhere = datastore::UserStore::find_by_email(&second.store, "only-here@example.org")
            .await
            .expect("find");
        assert_eq!(elsewhere, None);
    }
}
