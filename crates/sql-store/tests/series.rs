//! The DICOM series ports on `SqlStore` (organizations, series, the job queue), each check
//! run against SQLite in memory, SQLite in a file, and PostgreSQL (`TEST_DATABASE_URL`).

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use dicom_series::ports::DicomCredentials;
use dicom_series::*;
use secrecy::ExposeSecret;
use serde_json::json;
use sql_store::SqlStore;

pub struct TestDb {
    pub store: SqlStore,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

async fn migrated(url: String, dir: Option<tempfile::TempDir>) -> TestDb {
    let store = SqlStore::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    store.migrate().await.expect("migrating");
    TestDb {
        store,
        url,
        _dir: dir,
    }
}

async fn sqlite_memory() -> TestDb {
    migrated("sqlite::memory:".into(), None).await
}

async fn sqlite_file() -> TestDb {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let url = test_support::fresh_sqlite_url(&dir);
    migrated(url, Some(dir)).await
}

async fn postgres() -> TestDb {
    migrated(test_support::fresh_postgres_database().await, None).await
}

fn t(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
}

async fn an_organization(store: &SqlStore, name: &str) -> Organization {
    let org = Organization::new(
        name,
        "http://pacs.test/dicom-web",
        basic_credentials("reader", "pa:ss word"),
        t(0),
    )
    .unwrap();
    store.create_organization(&org).await.unwrap();
    org
}

async fn a_series(store: &SqlStore, org: &Organization, series_uid: &str) -> Series {
    let key = series_key("1.2.840.1", series_uid).unwrap();
    store
        .find_or_insert_series(&Series::new(org.id, key, t(0)))
        .await
        .unwrap()
}

/// Starts a run on `series` and queues its job, due at `due`.
async fn queued(store: &SqlStore, mut series: Series, due: DateTime<Utc>) -> (Series, RunId) {
    let run = PredictionRun::new(
        "brain_tumor_classification",
        Some("HEAD"),
        "reference",
        t(0),
    );
    let run_id = run.id;
    series.start_run(run, t(0));
    store
        .update_series_and_enqueue(
            &series,
            &NewJob {
                run_id,
                series_id: series.id,
                run_after: due,
            },
        )
        .await
        .unwrap();
    series.revision += 1;
    (series, run_id)
}

fn lease(now: DateTime<Utc>) -> DateTime<Utc> {
    now + Duration::seconds(60)
}

// ---- the checks ----

pub async fn organizations_round_trip_with_their_credentials(store: &SqlStore) {
    let basic = an_organization(store, "Hospital A").await;
    let bearer = Organization::new(
        "Clinic B",
        "https://b.test/dicom-web",
        bearer_credentials("tok"),
        t(1),
    )
    .unwrap();
    store.create_organization(&bearer).await.unwrap();
    let none = Organization::new(
        "Demo",
        "http://127.0.0.1:8083/dicom-web",
        DicomCredentials::None,
        t(2),
    )
    .unwrap();
    store.create_organization(&none).await.unwrap();

    let found = store.find_organization(basic.id).await.unwrap().unwrap();
    assert_eq!(found.name, basic.name);
    assert_eq!(found.dicom_server.root, "http://pacs.test/dicom-web");
    assert_eq!(found.created_at, t(0));
    match found.dicom_server.credentials {
        DicomCredentials::Basic { username, password } => {
            assert_eq!(username, "reader");
            assert_eq!(password.expose_secret(), "pa:ss word");
        }
        other => panic!("{other:?}"),
    }
    let found = store
        .find_organization_by_name("Clinic B")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, bearer.id);
    assert!(matches!(
        found.dicom_server.credentials,
        DicomCredentials::Bearer { token } if token.expose_secret() == "tok"
    ));
    let found = store
        .find_organization_by_name("Demo")
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        found.dicom_server.credentials,
        DicomCredentials::None
    ));
    assert!(
        store
            .find_organization_by_name("demo")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .find_organization(OrganizationId::new())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store.organization_names().await.unwrap(),
        ["Clinic B", "Demo", "Hospital A"]
    );
}

pub async fn an_organization_name_is_taken_once(store: &SqlStore) {
    an_organization(store, "Hospital A").await;
    let again =
        Organization::new("Hospital A", "https://other", DicomCredentials::None, t(0)).unwrap();
    assert_eq!(
        store.create_organization(&again).await,
        Err(CreateOrganizationError::DuplicateName("Hospital A".into()))
    );
    assert_eq!(store.organization_names().await.unwrap(), ["Hospital A"]);
}

pub async fn each_series_of_a_study_has_its_own_row(store: &SqlStore) {
    let org = an_organization(store, "Hospital A").await;
    let other_org = an_organization(store, "Clinic B").await;
    let a = a_series(store, &org, "1.2.840.1.1").await;
    let b = a_series(store, &org, "1.2.840.1.2").await;
    let a_again = a_series(store, &org, "1.2.840.1.1").await;
    let elsewhere = a_series(store, &other_org, "1.2.840.1.1").await;
    assert_ne!(a.id, b.id);
    assert_eq!(a.id, a_again.id);
    assert_ne!(a.id, elsewhere.id);

    // A state change of one leaves the other alone.
    let (a, run) = queued(store, a, t(0)).await;
    let mut a = a;
    a.begin_attempt(run, t(1)).unwrap();
    store.update_series(&a).await.unwrap();
    assert_eq!(
        store.find_series(b.id).await.unwrap().unwrap().state,
        PredictionState::NotStarted
    );
    assert_eq!(
        store.find_series(a.id).await.unwrap().unwrap().state,
        PredictionState::InProgress
    );
}

pub async fn concurrent_inserts_of_one_series_give_one_row(store: &SqlStore) {
    let org = an_organization(store, "Hospital A").await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            let org = org.clone();
            tokio::spawn(async move { a_series(&store, &org, "1.2.840.1.1").await.id })
        })
        .collect();
    let mut ids = HashSet::new();
    for task in tasks {
        ids.insert(task.await.unwrap());
    }
    assert_eq!(ids.len(), 1);
}

pub async fn a_series_reads_back_as_written(store: &SqlStore) {
    let org = an_organization(store, "Hospital A").await;
    let fresh = a_series(store, &org, "1.2.840.1.1").await;
    assert_eq!(fresh.state, PredictionState::NotStarted);
    assert_eq!(fresh.run, None);
    assert_eq!(fresh.revision, 0);

    let (mut series, run) = queued(store, fresh, t(0)).await;
    series.begin_attempt(run, t(1)).unwrap();
    series.note_retry(run, "connection refused", t(2)).unwrap();
    series.begin_attempt(run, t(3)).unwrap();
    series.mark_submitted(run, t(1800), t(4)).unwrap();
    let result = json!({"output": [{"slice": 1, "classification": "glioma", "accuracy": 0.93}], "unicode": "é"});
    series
        .report(
            run,
            ReportedStatus::Completed,
            "brain_tumor_classification",
            result.clone(),
            t(5),
        )
        .unwrap();
    store.update_series(&series).await.unwrap();
    series.revision += 1;

    let stored = store.find_series(series.id).await.unwrap().unwrap();
    assert_eq!(stored, series);
    let stored_run = stored.run.unwrap();
    assert_eq!(stored_run.attempts, 2);
    assert_eq!(stored_run.body_part.as_deref(), Some("HEAD"));
    assert_eq!(stored_run.submitted_at, Some(t(4)));
    assert_eq!(stored.result, Some(result));
    assert!(store.find_series(SeriesId::new()).await.unwrap().is_none());
}

pub async fn a_write_from_an_old_revision_is_stale_and_changes_nothing(store: &SqlStore) {
    let org = an_organization(store, "Hospital A").await;
    let (series, run) = queued(store, a_series(store, &org, "1.2.840.1.1").await, t(0)).await;

    let mut reporter = series.clone();
    reporter.begin_attempt(run, t(1)).unwrap();
    store.update_series(&reporter).await.unwrap();

    // A writer still holding the old revision loses, whatever it wanted to write.
    let mut late = series.clone();
    late.fail(run, "late failure", t(2)).unwrap();
    assert_eq!(
        store.update_series(&late).await,
        Err(UpdateSeriesError::Stale)
    );
    let job_count_before = queue_claim_all(store, t(100)).await.len();
    let mut late_new_run = series.clone();
    late_new_run.start_run(PredictionRun::new("x", None, "reference", t(3)), t(3));
    let new_job = NewJob {
        run_id: late_new_run.run.as_ref().unwrap().id,
        series_id: series.id,
        run_after: t(0),
    };
    assert_eq!(
        store
            .update_series_and_enqueue(&late_new_run, &new_job)
            .await,
        Err(UpdateSeriesError::Stale)
    );
    // Neither the series nor the queue changed.
    let stored = store.find_series(series.id).await.unwrap().unwrap();
    assert_eq!(stored.state, PredictionState::InProgress);
    assert_eq!(stored.run.unwrap().id, run);
    assert_eq!(stored.revision, series.revision + 1);
    assert_eq!(job_count_before, 1);
    let after = queue_claim_all(store, t(10_000)).await;
    assert_eq!(after.len(), 1, "no job was added");
    assert_eq!(after[0].run_id, run);
}

/// Claims every due job (as one worker) and returns them.
async fn queue_claim_all(store: &SqlStore, now: DateTime<Utc>) -> Vec<ClaimedJob> {
    let mut claimed = Vec::new();
    while let Some(job) = store.claim("sweeper", now, lease(now)).await.unwrap() {
        claimed.push(job);
    }
    claimed
}

pub async fn a_job_is_due_at_its_time_and_claimed_once(store: &SqlStore) {
    let org = an_organization(store, "Hospital A").await;
    let (series, run) = queued(store, a_series(store, &org, "1.2.840.1.1").await, t(10)).await;
    assert_eq!(store.claim("w1", t(9), lease(t(9))).await.unwrap(), None);
    let job = store
        .claim("w1", t(10), lease(t(10)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.run_id, run);
    assert_eq!(job.series_id, series.id);
    assert_eq!(job.phase, JobPhase::Send);
    assert_eq!(job.claims, 1);
    assert_eq!(job.lease_until, lease(t(10)));
    // Leased: nobody else gets it, not even the same worker.
    assert_eq!(store.claim("w2", t(11), lease(t(11))).await.unwrap(), None);
    assert_eq!(store.claim("w1", t(69), lease(t(69))).await.unwrap(), None);
}

pub async fn an_expired_lease_lets_another_worker_take_the_job(store: &SqlStore) {
    let org = an_organization(store, "Hospital A").await;
    let (_, run) = queued(store, a_series(store, &org, "1.2.840.1.1").await, t(0)).await;
    let dead = store
        .claim("dead", t(0), lease(t(0)))
        .await
        .unwrap()
        .unwrap();
    // The lease runs out at t(60).
    assert_eq!(store.claim("w2", t(59), lease(t(59))).await.unwrap(), None);
    let taken = store
        .claim("w2", t(60), lease(t(60)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(taken.run_id, run);
    assert_eq!(taken.claims, 2);
    assert_ne!(taken.token, dead.token);
    // The first worker's claim no longer counts for anything.
    assert_eq!(
        store.extend_lease(&dead, t(500)).await,
        Err(LeaseError::Lost)
    );
    assert_eq!(
        store.release(&dead, JobPhase::Send, t(0)).await,
        Err(LeaseError::Lost)
    );
    assert_eq!(store.complete(&dead).await, Err(LeaseError::Lost));
    // The new holder's does.
    store.extend_lease(&taken, t(500)).await.unwrap();
    assert_eq!(
        store.claim("w3", t(400), lease(t(400))).await.unwrap(),
        None
    );
    store.complete(&taken).await.unwrap();
    assert_eq!(
        store.claim("w3", t(1000), lease(t(1000))).await.unwrap(),
        None
    );
}

pub async fn a_released_job_comes_back_in_its_phase_at_its_time(store: &SqlStore) {
    let org = an_organization(store, "Hospital A").await;
    let (_, run) = queued(store, a_series(store, &org, "1.2.840.1.1").await, t(0)).await;
    let job = store.claim("w1", t(0), lease(t(0))).await.unwrap().unwrap();
    store
        .release(&job, JobPhase::AwaitReport, t(1800))
        .await
        .unwrap();
    assert_eq!(store.extend_lease(&job, t(99)).await, Err(LeaseError::Lost));
    assert_eq!(
        store.claim("w1", t(1799), lease(t(1799))).await.unwrap(),
        None
    );
    let again = store
        .claim("w2", t(1800), lease(t(1800)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (again.run_id, again.phase, again.claims),
        (run, JobPhase::AwaitReport, 2)
    );
}

pub async fn jobs_are_claimed_earliest_due_first(store: &SqlStore) {
    let org = an_organization(store, "Hospital A").await;
    let (_, late) = queued(store, a_series(store, &org, "1.2.840.1.1").await, t(5)).await;
    let (_, early) = queued(store, a_series(store, &org, "1.2.840.1.2").await, t(1)).await;
    let first = store
        .claim("w", t(10), lease(t(10)))
        .await
        .unwrap()
        .unwrap();
    let second = store
        .claim("w", t(10), lease(t(10)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((first.run_id, second.run_id), (early, late));
}

pub async fn a_waiting_job_is_discarded_but_a_held_one_is_left_to_its_worker(store: &SqlStore) {
    let org = an_organization(store, "Hospital A").await;
    let (_, waiting) = queued(store, a_series(store, &org, "1.2.840.1.1").await, t(0)).await;
    let (_, held) = queued(store, a_series(store, &org, "1.2.840.1.2").await, t(100)).await;
    let job = store
        .claim("w", t(100), lease(t(100)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.run_id, waiting); // due first
    store
        .release(&job, JobPhase::AwaitReport, t(2000))
        .await
        .unwrap();
    let held_job = store
        .claim("w", t(100), lease(t(100)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(held_job.run_id, held);

    store.discard_waiting(waiting, t(101)).await.unwrap();
    store.discard_waiting(held, t(101)).await.unwrap();
    store.discard_waiting(RunId::new(), t(101)).await.unwrap();
    // The held job is still its worker's; the waiting one is gone.
    store.extend_lease(&held_job, t(200)).await.unwrap();
    store.complete(&held_job).await.unwrap();
    assert_eq!(
        store.claim("w2", t(5000), lease(t(5000))).await.unwrap(),
        None
    );
}

pub async fn two_workers_racing_for_one_job_get_it_once(store: &SqlStore) {
    let org = an_organization(store, "Hospital A").await;
    for round in 0..5 {
        let (_, run) = queued(
            store,
            a_series(store, &org, &format!("1.2.840.1.{round}")).await,
            t(0),
        )
        .await;
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let racers: Vec<_> = (0..2)
            .map(|i| {
                let store = store.clone();
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    store
                        .claim(&format!("w{i}"), t(1), lease(t(1)))
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut winners = Vec::new();
        for racer in racers {
            winners.extend(racer.await.unwrap());
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        assert_eq!(winners[0].run_id, run);
        store.complete(&winners[0]).await.unwrap();
    }
}

pub async fn many_workers_share_many_jobs_without_overlap(store: &SqlStore) {
    let org = an_organization(store, "Hospital A").await;
    let mut runs = HashSet::new();
    for i in 0..20 {
        let (_, run) = queued(
            store,
            a_series(store, &org, &format!("1.2.840.1.{i}")).await,
            t(0),
        )
        .await;
        runs.insert(run);
    }
    let workers: Vec<_> = (0..6)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                while let Some(job) = store
                    .claim(&format!("w{i}"), t(1), lease(t(1)))
                    .await
                    .unwrap()
                {
                    mine.push(job.run_id);
                    tokio::task::yield_now().await;
                }
                mine
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for worker in workers {
        claimed.extend(worker.await.unwrap());
    }
    assert_eq!(claimed.len(), 20, "every job claimed exactly once");
    assert_eq!(claimed.into_iter().collect::<HashSet<_>>(), runs);
}

macro_rules! checks {
    ($open:path; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let db = $open().await;
                crate::$check(&db.store).await;
            }
        )*
    };
}

macro_rules! suite {
    ($open:path) => {
        checks!(
            $open;
            organizations_round_trip_with_their_credentials,
            an_organization_name_is_taken_once,
            each_series_of_a_study_has_its_own_row,
            concurrent_inserts_of_one_series_give_one_row,
            a_series_reads_back_as_written,
            a_write_from_an_old_revision_is_stale_and_changes_nothing,
            a_job_is_due_at_its_time_and_claimed_once,
            an_expired_lease_lets_another_worker_take_the_job,
            a_released_job_comes_back_in_its_phase_at_its_time,
            jobs_are_claimed_earliest_due_first,
            a_waiting_job_is_discarded_but_a_held_one_is_left_to_its_worker,
            two_workers_racing_for_one_job_get_it_once,
            many_workers_share_many_jobs_without_overlap,
        );
    };
}

mod sqlite_memory {
    suite!(crate::sqlite_memory);
}

mod sqlite_file {
    suite!(crate::sqlite_file);
}

mod postgres {
    suite!(crate::postgres);

    /// Two stores on one database, as two backend processes: racing claims still give the
    /// job to one of them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_processes_racing_for_one_job_get_it_once() {
        let db = crate::postgres().await;
        let other = sql_store::SqlStore::connect(&db.url).await.unwrap();
        crate::two_processes_race(&db.store, &other).await;
    }
}

/// Jobs survive a restart: a new store on the same database finds them.
async fn jobs_survive_a_restart(db: TestDb) {
    let org = an_organization(&db.store, "Hospital A").await;
    let (series, run) = queued(
        &db.store,
        a_series(&db.store, &org, "1.2.840.1.1").await,
        t(0),
    )
    .await;
    // A worker claimed it and the process died.
    db.store
        .claim("dead", t(0), lease(t(0)))
        .await
        .unwrap()
        .unwrap();
    let url = db.url.clone();
    drop(db.store);

    let restarted = SqlStore::connect(&url).await.unwrap();
    restarted.migrate().await.unwrap();
    assert_eq!(
        restarted.claim("new", t(30), lease(t(30))).await.unwrap(),
        None
    );
    let job = restarted
        .claim("new", t(60), lease(t(60)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((job.run_id, job.series_id), (run, series.id));
    let stored = restarted.find_series(series.id).await.unwrap().unwrap();
    assert_eq!(stored.run.unwrap().id, run);
    drop(db._dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_survive_a_restart_on_sqlite() {
    jobs_survive_a_restart(sqlite_file().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_survive_a_restart_on_postgres() {
    jobs_survive_a_restart(postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_racing_for_one_job_on_sqlite_get_it_once() {
    let db = sqlite_file().await;
    let other = SqlStore::connect(&db.url).await.unwrap();
    two_processes_race(&db.store, &other).await;
}

async fn two_processes_race(a: &SqlStore, b: &SqlStore) {
    let org = an_organization(a, "Hospital A").await;
    for round in 0..10 {
        queued(
            a,
            a_series(a, &org, &format!("1.2.840.1.{round}")).await,
            t(0),
        )
        .await;
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let racers: Vec<_> = [a.clone(), b.clone()]
            .into_iter()
            .enumerate()
            .map(|(i, store)| {
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    store
                        .claim(&format!("p{i}"), t(1), lease(t(1)))
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut winners = Vec::new();
        for racer in racers {
            winners.extend(racer.await.unwrap());
        }
        assert_eq!(winners.len(), 1, "round {round}");
        a.complete(&winners[0]).await.unwrap();
    }
}

/// Replicas starting together on a fresh database: each migrates, one after the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_migrating_one_fresh_postgres_database_at_once_all_succeed() {
    let url = test_support::fresh_postgres_database().await;
    let (a, b, c) = tokio::join!(
        SqlStore::connect(&url),
        SqlStore::connect(&url),
        SqlStore::connect(&url)
    );
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    let (ra, rb, rc) = tokio::join!(a.migrate(), b.migrate(), c.migrate());
    ra.unwrap();
    rb.unwrap();
    rc.unwrap();
    // The schema is whole: an organization and a series can be written.
    let org = an_organization(&a, "Hospital A").await;
    a_series(&b, &org, "1.2.840.1.1").await;
}

/// The same on SQLite files (one writer at a time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_migrating_one_fresh_sqlite_file_at_once_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let url = test_support::fresh_sqlite_url(&dir);
    let (a, b) = tokio::join!(SqlStore::connect(&url), SqlStore::connect(&url));
    let (a, b) = (a.unwrap(), b.unwrap());
    let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
    ra.unwrap();
    rb.unwrap();
    let org = an_organization(&a, "Hospital A").await;
    a_series(&b, &org, "1.2.840.1.1").await;
}
