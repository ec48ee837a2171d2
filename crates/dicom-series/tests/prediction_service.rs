//! Contract tests of the use cases behind the endpoints, against mocks of the repository
//! and queue ports (every step failing in turn) and against the in-memory store.

mod common;

use std::sync::Arc;

use common::*;
use dicom_series::queue::MockJobQueue;
use dicom_series::repository::{MockOrganizationRepository, MockSeriesRepository};
use dicom_series::*;
use mockall::Sequence;
use mockall::predicate::*;
use serde_json::json;
use tokio::sync::Notify;

struct Setup {
    store: MemoryStore,
    clock: ManualClock,
    service: PredictionService,
    queued: Arc<Notify>,
}

async fn setup() -> Setup {
    let store = MemoryStore::default();
    store
        .create_organization(&organization("Hospital A"))
        .await
        .unwrap();
    store
        .create_organization(&organization("Clinic B"))
        .await
        .unwrap();
    let clock = ManualClock::new();
    let queued = Arc::new(Notify::new());
    let service = PredictionService::new(
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        ml_apps(),
        Arc::new(clock.clone()),
        queued.clone(),
    );
    Setup {
        store,
        clock,
        service,
        queued,
    }
}

fn service_with(
    organizations: MockOrganizationRepository,
    series: MockSeriesRepository,
    queue: MockJobQueue,
) -> PredictionService {
    PredictionService::new(
        Arc::new(organizations),
        Arc::new(series),
        Arc::new(queue),
        ml_apps(),
        Arc::new(ManualClock::new()),
        Arc::new(Notify::new()),
    )
}

fn org_repo_with(org: Organization) -> MockOrganizationRepository {
    let mut organizations = MockOrganizationRepository::new();
    let by_name = org.clone();
    organizations
        .expect_find_organization_by_name()
        .returning(move |_| Ok(Some(by_name.clone())));
    organizations
        .expect_find_organization()
        .returning(move |_| Ok(Some(org.clone())));
    organizations
}

/// Marks the run as sent, as the worker does, through the in-memory store.
fn begin(store: &MemoryStore, id: SeriesId) -> RunId {
    let mut series = store.series(id);
    let run = series.run.as_ref().unwrap().id;
    series.begin_attempt(run, t0()).unwrap();
    store.put_series(series);
    run
}

fn report(run: RunId, status: ReportedStatus) -> StatusReport {
    StatusReport {
        run_id: run,
        status,
        model_type: MODEL.into(),
        result: json!({"output": [{"slice": 1, "classification": "no tumor", "accuracy": 0.9}]}),
    }
}

#[tokio::test]
async fn an_unknown_model_type_is_refused_with_the_known_ones_and_nothing_is_stored() {
    // Mocks without expectations: any call to a port fails the test.
    let service = service_with(
        MockOrganizationRepository::new(),
        MockSeriesRepository::new(),
        MockJobQueue::new(),
    );
    let mut request = predict_request("Hospital A", "1.2.3.4", false);
    request.model_type = "liver_magic".into();
    let err = service.predict(&dev(), &request).await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, PredictError::UnknownModelType { .. }));
    assert!(message.contains("liver_magic"), "{message}");
    assert!(
        message.contains("brain_tumor_classification, chest_xray_classification"),
        "{message}"
    );
}

#[tokio::test]
async fn an_unknown_organization_is_refused_without_naming_the_others() {
    let s = setup().await;
    for given in ["Hospital Z", "5f0e2a52-52b4-4c1c-9d5e-1f5c3b1f0a11"] {
        let err = s
            .service
            .predict(&dev(), &predict_request(given, "1.2.3.4", false))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, PredictError::UnknownOrganization { given: g } if g == given),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            !message.contains("Clinic B") && !message.contains("Hospital A"),
            "{message}"
        );
    }
    assert_eq!(s.store.0.lock().unwrap().series.len(), 0);
}

#[tokio::test]
async fn an_organization_is_found_by_id_or_by_name() {
    let s = setup().await;
    let id = s.store.0.lock().unwrap().organizations[1].id;
    let by_id = s
        .service
        .predict(&dev(), &predict_request(&id.to_string(), "1.2.3.4", false))
        .await
        .unwrap();
    assert_eq!(by_id.series.organization_id, id);
    let by_name = s
        .service
        .predict(&dev(), &predict_request("Clinic B", "1.2.3.5", false))
        .await
        .unwrap();
    assert_eq!(by_name.series.organization_id, id);
}

#[tokio::test]
async fn malformed_uids_and_body_parts_are_refused_before_any_storage() {
    let service = service_with(
        MockOrganizationRepository::new(),
        MockSeriesRepository::new(),
        MockJobQueue::new(),
    );
    let err = service
        .predict(&dev(), &predict_request("Hospital A", "1.2.x", false))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("seriesInstanceUid"), "{err}");
    let mut request = predict_request("Hospital A", "1.2.3", false);
    request.body_part = Some("x".repeat(65));
    assert!(matches!(
        service.predict(&dev(), &request).await,
        Err(PredictError::Invalid(_))
    ));
}

#[tokio::test]
async fn predict_stores_the_series_first_then_the_run_with_its_job() {
    let org = organization("Hospital A");
    let mut series_repo = MockSeriesRepository::new();
    let mut order = Sequence::new();
    series_repo
        .expect_find_or_insert_series()
        .times(1)
        .in_sequence(&mut order)
        .returning(|s| Ok(s.clone()));
    series_repo
        .expect_update_series_and_enqueue()
        .times(1)
        .in_sequence(&mut order)
        .withf(|series, job| {
            let run = series.run.as_ref().unwrap();
            series.state == PredictionState::NotStarted
                && run.id == job.run_id
                && series.id == job.series_id
                && run.model_type == MODEL
                && run.ml_app == APP
                && series.revision == 0
        })
        .returning(|_, _| Ok(()));
    let service = service_with(org_repo_with(org), series_repo, MockJobQueue::new());
    let mut request = predict_request("Hospital A", "1.2.3.4", false);
    request.body_part = Some(" HEAD ".into());
    let outcome = service.predict(&dev(), &request).await.unwrap();
    assert_eq!(outcome.decision, PredictDecision::Queued);
    assert_eq!(outcome.series.state, PredictionState::NotStarted);
    assert_eq!(outcome.series.revision, 1);
    assert_eq!(
        outcome.series.run.unwrap().body_part.as_deref(),
        Some("HEAD")
    );
}

#[tokio::test]
async fn a_queued_prediction_wakes_a_worker() {
    let s = setup().await;
    let woken = s.queued.clone();
    let wait = tokio::spawn(async move { woken.notified().await });
    tokio::task::yield_now().await;
    s.service
        .predict(&dev(), &predict_request("Hospital A", "1.2.3.4", false))
        .await
        .unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), wait)
        .await
        .expect("the worker was not woken")
        .unwrap();
}

#[tokio::test]
async fn when_the_job_cannot_be_queued_the_failure_is_recorded_on_the_series() {
    let org = organization("Hospital A");
    let mut series_repo = MockSeriesRepository::new();
    series_repo
        .expect_find_or_insert_series()
        .returning(|s| Ok(s.clone()));
    series_repo
        .expect_update_series_and_enqueue()
        .returning(|_, _| Err(StoreError("disk full".into()).into()));
    series_repo
        .expect_update_series()
        .times(1)
        .withf(|s| {
            s.state == PredictionState::Failed
                && s.run.as_ref().unwrap().last_error.as_deref()
                    == Some("the prediction could not be queued: database error: disk full")
        })
        .returning(|_| Ok(()));
    let service = service_with(org_repo_with(org), series_repo, MockJobQueue::new());
    let err = service
        .predict(&dev(), &predict_request("Hospital A", "1.2.3.4", false))
        .await
        .unwrap_err();
    assert!(matches!(err, PredictError::NotQueued { .. }), "{err}");
}

#[tokio::test]
async fn a_database_failure_on_the_series_row_is_an_error_not_a_silence() {
    let org = organization("Hospital A");
    let mut series_repo = MockSeriesRepository::new();
    series_repo
        .expect_find_or_insert_series()
        .returning(|_| Err(StoreError("connection refused".into())));
    let service = service_with(org_repo_with(org), series_repo, MockJobQueue::new());
    let err = service
        .predict(&dev(), &predict_request("Hospital A", "1.2.3.4", false))
        .await
        .unwrap_err();
    assert!(matches!(err, PredictError::Store(_)));

    let mut organizations = MockOrganizationRepository::new();
    organizations
        .expect_find_organization_by_name()
        .returning(|_| Err(StoreError("connection refused".into())));
    let service = service_with(
        organizations,
        MockSeriesRepository::new(),
        MockJobQueue::new(),
    );
    assert!(matches!(
        service
            .predict(&dev(), &predict_request("Hospital A", "1.2.3.4", false))
            .await,
        Err(PredictError::Store(_))
    ));
}

#[tokio::test]
async fn without_predict_again_a_run_in_progress_is_not_sent_twice() {
    let s = setup().await;
    let first = s
        .service
        .predict(&dev(), &predict_request("Hospital A", "1.2.3.4", false))
        .await
        .unwrap();
    // Queued, not yet started; then in progress.
    for step in 0..2 {
        if step == 1 {
            begin(&s.store, first.series.id);
        }
        let again = s
            .service
            .predict(&dev(), &predict_request("Hospital A", "1.2.3.4", false))
            .await
            .unwrap();
        assert_eq!(again.decision, PredictDecision::AlreadyRunning);
        assert_eq!(again.series.id, first.series.id);
        assert_eq!(s.store.job_count(), 1);
    }
}

#[tokio::test]
async fn racing_requests_queue_one_run_only() {
    // The second writer loses the revision check, reads again, and finds the run.
    let org = organization("Hospital A");
    let fresh = Series::new(org.id, key("1.2.3.4"), t0());
    let mut running = fresh.clone();
    running.start_run(PredictionRun::new(MODEL, None, APP, t0()), t0());
    running.revision = 1;
    let mut series_repo = MockSeriesRepository::new();
    let returned = fresh.clone();
    series_repo
        .expect_find_or_insert_series()
        .returning(move |_| Ok(returned.clone()));
    series_repo
        .expect_update_series_and_enqueue()
        .times(1)
        .returning(|_, _| Err(UpdateSeriesError::Stale));
    series_repo
        .expect_find_series()
        .with(eq(fresh.id))
        .returning(move |_| Ok(Some(running.clone())));
    let service = service_with(org_repo_with(org), series_repo, MockJobQueue::new());
    let outcome = service
        .predict(&dev(), &predict_request("Hospital A", "1.2.3.4", false))
        .await
        .unwrap();
    assert_eq!(outcome.decision, PredictDecision::AlreadyRunning);
}

#[tokio::test]
async fn without_predict_again_a_completed_series_is_answered_from_its_result() {
    let s = setup().await;
    let first = s
        .service
        .predict(&dev(), &predict_request("Hospital A", "1.2.3.4", false))
        .await
        .unwrap();
    let run = begin(&s.store, first.series.id);
    s.service
        .report(APP, first.series.id, report(run, ReportedStatus::Completed))
        .await
        .unwrap();

    let again = s
        .service
        .predict(&dev(), &predict_request("Hospital A", "1.2.3.4", false))
        .await
        .unwrap();
    assert_eq!(again.decision, PredictDecision::AlreadyPredicted);
    assert_eq!(again.series.state, PredictionState::Completed);
    assert_eq!(
        again.series.result,
        Some(report(run, ReportedStatus::Completed).result)
    );
    assert_eq!(s.store.job_count(), 0);

    // Another model type is another prediction.
    let mut other = predict_request("Hospital A", "1.2.3.4", false);
    other.model_type = "chest_xray_classification".into();
    let other = s.service.predict(&dev(), &other).await.unwrap();
    assert_eq!(other.decision, PredictDecision::Queued);
}

#[tokio::test]
async fn without_predict_again_a_failed_series_is_tried_again() {
    let s = setup().await;
    let first = s
        .service
        .predict(&dev(), &predict_request("Hospital A", "1.2.3.4", false))
        .await
        .unwrap();
    let run = begin(&s.store, first.series.id);
    s.service
        .report(APP, first.series.id, report(run, ReportedStatus::Failed))
        .await
        .unwrap();
    let again = s
        .service
        .predict(&dev(), &predict_request("Hospital A", "1.2.3.4", false))
        .await
        .unwrap();
    assert_eq!(again.decision, PredictDecision::Queued);
}

#[tokio::test]
async fn predict_again_starts_a_new_run_and_the_old_run_can_no_longer_report() {
    let s = setup().await;
    let first = s
        .service
        .predict(&dev(), &predict_request("Hospital A", "1.2.3.4", false))
        .await
        .unwrap();
    let old_run = begin(&s.store, first.series.id);
    let again = s
        .service
        .predict(&dev(), &predict_request("Hospital A", "1.2.3.4", true))
        .await
        .unwrap();
    assert_eq!(again.decision, PredictDecision::Queued);
    let new_run = again.series.run.as_ref().unwrap().id;
    assert_ne!(new_run, old_run);

    let before = s.store.series(first.series.id);
    let err = s
        .service
        .report(
            APP,
            first.series.id,
            report(old_run, ReportedStatus::Completed),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, ReportError::Rejected(TransitionError::StaleRun { .. })),
        "{err}"
    );
    assert_eq!(s.store.series(first.series.id), before);
}

#[tokio::test]
async fn two_series_of_one_study_keep_their_own_state() {
    let s = setup().await;
    let a = s
        .service
        .predict(&dev(), &predict_request("Hospital A", "1.2.3.4", false))
        .await
        .unwrap();
    let b = s
        .service
        .predict(&dev(), &predict_request("Hospital A", "1.2.3.5", false))
        .await
        .unwrap();
    assert_ne!(a.series.id, b.series.id);
    let run_a = begin(&s.store, a.series.id);
    begin(&s.store, b.series.id);
    s.service
        .report(APP, a.series.id, report(run_a, ReportedStatus::Completed))
        .await
        .unwrap();
    assert_eq!(
        s.store.series(a.series.id).state,
        PredictionState::Completed
    );
    assert_eq!(
        s.store.series(b.series.id).state,
        PredictionState::InProgress
    );
    // A's run cannot report on B.
    assert!(matches!(
        s.service
            .report(APP, b.series.id, report(run_a, ReportedStatus::Completed))
            .await,
        Err(ReportError::Rejected(TransitionError::StaleRun { .. }))
    ));
}

#[tokio::test]
async fn a_report_for_an_unknown_series_is_not_found() {
    let s = setup().await;
    let missing = SeriesId::new();
    assert!(matches!(
        s.service
            .report(APP, missing, report(RunId::new(), ReportedStatus::Completed))
            .await,
        Err(ReportError::SeriesNotFound(id)) if id == missing
    ));
}

#[tokio::test]
async fn a_report_is_stored_once_and_repeats_change_nothing() {
    let s = setup().await;
    let first = s
        .service
        .predict(&dev(), &predict_request("Hospital A", "1.2.3.4", false))
        .await
        .unwrap();
    let run = begin(&s.store, first.series.id);
    s.clock.advance(std::time::Duration::from_secs(5));
    let (series, applied) = s
        .service
        .report(APP, first.series.id, report(run, ReportedStatus::Completed))
        .await
        .unwrap();
    assert_eq!(applied, Applied::Changed);
    assert_eq!(series.state, PredictionState::Completed);
    let stored = s.store.series(first.series.id);
    assert_eq!(stored, series);
    assert_eq!(
        stored.run.unwrap().finished_at,
        Some(t0() + chrono::Duration::seconds(5))
    );

    let (_, applied) = s
        .service
        .report(APP, first.series.id, report(run, ReportedStatus::Completed))
        .await
        .unwrap();
    assert_eq!(applied, Applied::Unchanged);
    let err = s
        .service
        .report(APP, first.series.id, report(run, ReportedStatus::Failed))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        ReportError::Rejected(TransitionError::AlreadyReported { .. })
    ));
    assert_eq!(s.store.series(first.series.id), series);
}

#[tokio::test]
async fn a_report_from_another_ml_app_is_refused() {
    let s = setup().await;
    let first = s
        .service
        .predict(&dev(), &predict_request("Hospital A", "1.2.3.4", false))
        .await
        .unwrap();
    let run = begin(&s.store, first.series.id);
    let before = s.store.series(first.series.id);
    let err = s
        .service
        .report(
            "someone-else",
            first.series.id,
            report(run, ReportedStatus::Completed),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ReportError::WrongMlApp { .. }), "{err}");
    assert_eq!(s.store.series(first.series.id), before);
}

#[tokio::test]
async fn a_report_retries_when_another_writer_changed_the_series_first() {
    let org = organization("Hospital A");
    let mut series = Series::new(org.id, key("1.2.3.4"), t0());
    let run = PredictionRun::new(MODEL, None, APP, t0());
    let run_id = run.id;
    series.start_run(run, t0());
    series.begin_attempt(run_id, t0()).unwrap();
    let mut newer = series.clone();
    newer.revision = 7;
    let mut series_repo = MockSeriesRepository::new();
    let mut order = Sequence::new();
    let first_read = series.clone();
    series_repo
        .expect_find_series()
        .times(1)
        .in_sequence(&mut order)
        .returning(move |_| Ok(Some(first_read.clone())));
    series_repo
        .expect_update_series()
        .times(1)
        .in_sequence(&mut order)
        .returning(|_| Err(UpdateSeriesError::Stale));
    series_repo
        .expect_find_series()
        .times(1)
        .in_sequence(&mut order)
        .returning(move |_| Ok(Some(newer.clone())));
    series_repo
        .expect_update_series()
        .times(1)
        .in_sequence(&mut order)
        .withf(|s| s.revision == 7 && s.state == PredictionState::Completed)
        .returning(|_| Ok(()));
    let mut queue = MockJobQueue::new();
    queue
        .expect_discard_waiting()
        .with(eq(run_id), always())
        .times(1)
        .returning(|_, _| Err(StoreError("gone away".into())));
    let service = service_with(MockOrganizationRepository::new(), series_repo, queue);
    // The failed discard is not the caller's problem: the job ends at its deadline.
    let (stored, applied) = service
        .report(APP, series.id, report(run_id, ReportedStatus::Completed))
        .await
        .unwrap();
    assert_eq!(applied, Applied::Changed);
    assert_eq!(stored.revision, 8);
}

#[tokio::test]
async fn a_report_the_database_cannot_store_is_an_error() {
    let org = organization("Hospital A");
    let mut series = Series::new(org.id, key("1.2.3.4"), t0());
    let run = PredictionRun::new(MODEL, None, APP, t0());
    let run_id = run.id;
    series.start_run(run, t0());
    series.begin_attempt(run_id, t0()).unwrap();
    let mut series_repo = MockSeriesRepository::new();
    series_repo
        .expect_find_series()
        .returning(move |_| Ok(Some(series.clone())));
    series_repo
        .expect_update_series()
        .returning(|_| Err(StoreError("read-only".into()).into()));
    let service = service_with(
        MockOrganizationRepository::new(),
        series_repo,
        MockJobQueue::new(),
    );
    assert!(matches!(
        service
            .report(
                APP,
                SeriesId::new(),
                report(run_id, ReportedStatus::Completed)
            )
            .await,
        Err(ReportError::Store(_))
    ));
}

#[tokio::test]
async fn a_report_removes_the_job_waiting_for_its_deadline() {
    let s = setup().await;
    let first = s
        .service
        .predict(&dev(), &predict_request("Hospital A", "1.2.3.4", false))
        .await
        .unwrap();
    let run = begin(&s.store, first.series.id);
    assert!(s.store.job(run).is_some());
    s.service
        .report(
            APP,
            first.series.id,
            report(run, ReportedStatus::NotSupported),
        )
        .await
        .unwrap();
    assert!(s.store.job(run).is_none());
    assert_eq!(
        s.store.series(first.series.id).state,
        PredictionState::NotSupported
    );
}

#[tokio::test]
async fn organizations_are_added_once_per_name() {
    let s = setup().await;
    let added = s
        .service
        .add_organization(
            "Hospital C",
            "https://pacs.c.example/dicom-web",
            bearer_credentials("token"),
        )
        .await
        .unwrap();
    assert_eq!(added.name.as_str(), "Hospital C");
    assert!(matches!(
        s.service
            .add_organization("Hospital C", "https://x", ports_none())
            .await,
        Err(AddOrganizationError::DuplicateName(_))
    ));
    assert!(matches!(
        s.service
            .add_organization("", "https://x", ports_none())
            .await,
        Err(AddOrganizationError::Invalid(_))
    ));
    assert_eq!(
        s.service.organization_names().await.unwrap(),
        ["Clinic B", "Hospital A", "Hospital C"]
    );
}

fn ports_none() -> dicom_series::ports::DicomCredentials {
    dicom_series::ports::DicomCredentials::None
}

#[tokio::test]
async fn reading_a_series_that_does_not_exist_is_not_found() {
    let s = setup().await;
    assert!(matches!(
        s.service.find_series(&dev(), SeriesId::new()).await,
        Err(FindSeriesError::NotFound(_))
    ));
}
