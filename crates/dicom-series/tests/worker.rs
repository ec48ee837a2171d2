//! Contract tests of the job worker against mocks of the DICOM source, the archiver and the
//! ML app (each failing in turn, transiently and permanently), the in-memory store, and
//! scratch folders that are checked to be gone after every attempt.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use dicom_series::ports::{
    Archive, ArchiveError, DicomServer, DicomSource, FetchError, MlApp, MlAppEndpoint,
    MockDicomSource, MockMlApp, MockSeriesArchiver, PredictionRequest, SeriesArchive, SeriesKey,
    SeriesListing, SubmitError,
};
use dicom_series::repository::MockSeriesRepository;
use dicom_series::*;
use serde_json::json;
use tokio::sync::Notify;

const LEASE: Duration = Duration::from_secs(60);

fn settings() -> WorkerSettings {
    WorkerSettings {
        lease: LEASE,
        poll_interval: Duration::from_millis(10),
        retry: RetryPolicy {
            max_attempts: 3,
            window: Duration::from_secs(3600),
            first_delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(60),
        },
        report_timeout: Duration::from_secs(30 * 60),
    }
}

struct Harness {
    store: MemoryStore,
    clock: ManualClock,
    scratch: TrackedScratch,
    service: PredictionService,
    organization: Organization,
}

impl Harness {
    async fn new() -> Self {
        let store = MemoryStore::default();
        let organization = organization("Hospital A");
        store.create_organization(&organization).await.unwrap();
        let clock = ManualClock::new();
        let service = PredictionService::new(
            Arc::new(store.clone()),
            Arc::new(store.clone()),
            Arc::new(store.clone()),
            ml_apps(),
            Arc::new(clock.clone()),
            Arc::new(Notify::new()),
        );
        Self {
            store,
            clock,
            scratch: TrackedScratch::new(),
            service,
            organization,
        }
    }

    fn ports(
        &self,
        source: impl DicomSource + 'static,
        archiver: impl dicom_series::ports::SeriesArchiver + 'static,
        ml_app: impl MlApp + 'static,
    ) -> WorkerPorts {
        WorkerPorts {
            organizations: Arc::new(self.store.clone()),
            series: Arc::new(self.store.clone()),
            queue: Arc::new(self.store.clone()),
            source: Arc::new(source),
            archiver: Arc::new(archiver),
            ml_app: Arc::new(ml_app),
            scratch: Arc::new(self.scratch.clone()),
            clock: Arc::new(self.clock.clone()),
        }
    }

    fn worker(
        &self,
        source: impl DicomSource + 'static,
        archiver: impl dicom_series::ports::SeriesArchiver + 'static,
        ml_app: impl MlApp + 'static,
    ) -> JobWorker {
        JobWorker::new(
            "worker-1",
            self.ports(source, archiver, ml_app),
            ml_apps(),
            settings(),
            Arc::new(Notify::new()),
        )
    }

    async fn predict(&self) -> (SeriesId, RunId) {
        let outcome = self
            .service
            .predict(&dev(), &predict_request("Hospital A", "1.2.3.4", false))
            .await
            .unwrap();
        (outcome.series.id, outcome.series.run.unwrap().id)
    }
}

/// A series of `n` instances of `modality`, as counted by the series search and sent.
fn source_of(n: usize, modality: Option<&'static str>) -> MockDicomSource {
    let mut source = MockDicomSource::new();
    source
        .expect_find_series()
        .returning(move |_, _| Ok(Some(found(n as u32, modality))));
    source
        .expect_retrieve_series()
        .returning(move |_, _, archive| feed(archive, listing_of(n, modality)));
    source
}

fn archiver() -> MockSeriesArchiver {
    let mut archiver = MockSeriesArchiver::new();
    archiver
        .expect_create()
        .returning(|key, dir| Ok(stand_in(key, dir)));
    archiver
}

fn accepting_ml_app() -> MockMlApp {
    let mut ml_app = MockMlApp::new();
    ml_app.expect_submit().returning(|_, _, _| Ok(()));
    ml_app
}

fn failed_reason(store: &MemoryStore, id: SeriesId) -> String {
    let series = store.series(id);
    assert_eq!(series.state, PredictionState::Failed);
    series.run.unwrap().last_error.unwrap()
}

#[tokio::test]
async fn a_job_s_calls_run_in_a_span_of_their_own() {
    // This test's thread only (a current-thread runtime polls everything on it).
    let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry());
    let h = Harness::new().await;
    h.predict().await;
    let span = || tracing::Span::current().metadata().map(|m| m.name());
    let mut source = MockDicomSource::new();
    source.expect_find_series().times(1).returning(move |_, _| {
        assert_eq!(span(), Some("series job"));
        Ok(Some(found(2, Some("MR"))))
    });
    source
        .expect_retrieve_series()
        .returning(move |_, _, archive| {
            assert_eq!(span(), Some("series job"));
            feed(archive, listing_of(2, Some("MR")))
        });
    let mut ml_app = MockMlApp::new();
    ml_app.expect_submit().times(1).returning(move |_, _, _| {
        assert_eq!(span(), Some("series job"));
        Ok(())
    });
    let worker = h.worker(source, archiver(), ml_app);
    assert_eq!(
        worker.run_once().await.unwrap(),
        Some(JobOutcome::Submitted)
    );
    assert_eq!(span(), None);
}

#[tokio::test]
async fn a_series_is_marked_in_progress_then_retrieved_archived_and_sent() {
    let h = Harness::new().await;
    let (series_id, run_id) = h.predict().await;

    let mut source = MockDicomSource::new();
    let org = h.organization.clone();
    source
        .expect_find_series()
        .times(1)
        .withf(move |server: &DicomServer, key: &SeriesKey| {
            server.root == org.dicom_server.root && *key == common::key("1.2.3.4")
        })
        .returning(|_, _| Ok(Some(found(3, Some("MR")))));
    let mut archiver = MockSeriesArchiver::new();
    archiver
        .expect_create()
        .times(1)
        .withf(|key: &SeriesKey, dir: &Path| {
            // The archive goes into a fresh, empty folder.
            *key == common::key("1.2.3.4")
                && dir.is_dir()
                && std::fs::read_dir(dir).unwrap().next().is_none()
        })
        .returning(|key, dir| Ok(stand_in(key, dir)));
    let store = h.store.clone();
    let org = h.organization.clone();
    source
        .expect_retrieve_series()
        .times(1)
        .withf(
            move |server: &DicomServer, key: &SeriesKey, archive: &SeriesArchive| {
                server.root == org.dicom_server.root
                    && *key == common::key("1.2.3.4")
                    && archive.received() == 0
            },
        )
        .returning(move |_, _, mut archive: SeriesArchive| {
            assert_eq!(store.series(series_id).state, PredictionState::InProgress);
            // Named from each instance's header, written as the instances arrive.
            let instances = listing_of(3, Some("MR"));
            for i in [2, 0, 1] {
                archive.begin_instance(instances[i].clone(), None)?;
                archive.write(b"DICM")?;
            }
            Ok(archive.finish()?)
        });
    let mut ml_app = MockMlApp::new();
    let store = h.store.clone();
    ml_app
        .expect_submit()
        .times(1)
        .withf(
            move |endpoint: &MlAppEndpoint, request: &PredictionRequest, archive: &Archive| {
                endpoint.url == "http://ml.test"
                    && request.series_id == series_id.0
                    && request.run_id == run_id.0
                    && request.modality == "MR"
                    && request.model_type == MODEL
                    && archive.path.exists()
                    && archive.file_name == "dicom_1.2.3_1.2.3.4.zip"
                    && archive.entries == ["MR_3.dcm", "MR_1.dcm", "MR_2.dcm"]
            },
        )
        .returning(move |_, _, _| {
            // Recorded before the ML app is called: a report, however fast, finds it.
            assert_eq!(store.series(series_id).state, PredictionState::InProgress);
            Ok(())
        });

    let worker = h.worker(source, archiver, ml_app);
    assert_eq!(
        worker.run_once().await.unwrap(),
        Some(JobOutcome::Submitted)
    );

    let series = h.store.series(series_id);
    assert_eq!(series.state, PredictionState::InProgress);
    let run = series.run.unwrap();
    assert_eq!(run.attempts, 1);
    let deadline = t0() + chrono::Duration::minutes(30);
    assert_eq!(run.submitted_at, Some(t0()));
    assert_eq!(run.report_deadline, Some(deadline));
    let job = h.store.job(run_id).unwrap();
    assert_eq!(job.phase, JobPhase::AwaitReport);
    assert_eq!(job.run_after, deadline);
    assert!(job.lease.is_none());
    assert_eq!(h.scratch.created().len(), 1);
    h.scratch.assert_all_removed();
    // Nothing is due until the deadline.
    assert_eq!(worker.run_once().await.unwrap(), None);
}

/// An ML app that reports through the service before it even answers the submission.
struct InstantMlApp {
    service: PredictionService,
    status: ReportedStatus,
}

#[async_trait]
impl MlApp for InstantMlApp {
    async fn submit(
        &self,
        _: &MlAppEndpoint,
        request: &PredictionRequest,
        _: &Archive,
    ) -> Result<(), SubmitError> {
        self.service
            .report(
                APP,
                SeriesId(request.series_id),
                StatusReport {
                    run_id: RunId(request.run_id),
                    status: self.status,
                    model_type: request.model_type.clone(),
                    result: json!({"output": "fast"}),
                },
            )
            .await
            .expect("the instant report is accepted");
        Ok(())
    }
}

#[tokio::test]
async fn a_report_that_arrives_before_the_submission_returns_is_kept() {
    for status in [
        ReportedStatus::Completed,
        ReportedStatus::NotSupported,
        ReportedStatus::Failed,
    ] {
        let h = Harness::new().await;
        let (series_id, run_id) = h.predict().await;
        let ml_app = InstantMlApp {
            service: h.service.clone(),
            status,
        };
        let worker = h.worker(source_of(2, Some("CT")), archiver(), ml_app);
        assert_eq!(
            worker.run_once().await.unwrap(),
            Some(JobOutcome::SubmittedAndReported)
        );
        let series = h.store.series(series_id);
        assert_eq!(series.state, status.state());
        assert_eq!(series.result, Some(json!({"output": "fast"})));
        assert!(series.run.unwrap().submitted_at.is_some());
        assert!(h.store.job(run_id).is_none());
        h.scratch.assert_all_removed();
    }
}

#[tokio::test]
async fn transient_retrieval_failures_are_retried_with_backoff_then_fail_with_the_reason() {
    let h = Harness::new().await;
    let (series_id, run_id) = h.predict().await;
    let mut source = MockDicomSource::new();
    source
        .expect_find_series()
        .returning(|_, _| Ok(Some(found(2, Some("CT")))));
    source
        .expect_retrieve_series()
        .times(3)
        .returning(|_, _, mut archive| {
            // Part of the series arrived before the connection dropped.
            archive.begin_instance(listing(2)[0].clone(), None)?;
            archive.write(b"DI")?;
            Err(FetchError::Transient("connection reset by peer".into()))
        });
    let worker = h.worker(source, archiver(), MockMlApp::new());

    for attempt in 1..=2u32 {
        let outcome = worker.run_once().await.unwrap().unwrap();
        let JobOutcome::RetryLater {
            attempt: a,
            delay,
            error,
        } = outcome
        else {
            panic!("{outcome:?}")
        };
        assert_eq!(a, attempt);
        let base = Duration::from_secs(10 * 2u64.pow(attempt - 1));
        assert!(delay >= base / 2 && delay <= base, "{delay:?}");
        assert!(error.contains("connection reset by peer"), "{error}");
        let series = h.store.series(series_id);
        assert_eq!(series.state, PredictionState::InProgress);
        assert_eq!(series.run.as_ref().unwrap().attempts, attempt);
        assert!(
            series
                .run
                .unwrap()
                .last_error
                .unwrap()
                .contains("connection reset")
        );
        let job = h.store.job(run_id).unwrap();
        assert_eq!(job.phase, JobPhase::Send);
        assert_eq!(
            job.run_after,
            h.clock.now() + chrono::Duration::from_std(delay).unwrap()
        );
        // The partial download is gone: nothing partial is reused.
        h.scratch.assert_all_removed();
        // Not due before its delay.
        assert_eq!(worker.run_once().await.unwrap(), None);
        h.clock.advance(delay);
    }
    let outcome = worker.run_once().await.unwrap().unwrap();
    assert!(matches!(outcome, JobOutcome::Failed { .. }), "{outcome:?}");
    let reason = failed_reason(&h.store, series_id);
    assert!(reason.starts_with("gave up after 3 attempts; last error: retrieving study 1.2.3 series 1.2.3.4 from the DICOM server http://pacs.test/dicom-web of Hospital A: connection reset by peer"), "{reason}");
    assert!(h.store.job(run_id).is_none());
    h.scratch.assert_all_removed();
}

#[tokio::test]
async fn a_permanent_retrieval_failure_fails_at_once_with_the_reason() {
    let h = Harness::new().await;
    let (series_id, run_id) = h.predict().await;
    let mut source = MockDicomSource::new();
    source
        .expect_find_series()
        .returning(|_, _| Ok(Some(found(2, Some("CT")))));
    source
        .expect_retrieve_series()
        .times(1)
        .returning(|_, _, _| {
            Err(FetchError::Permanent(
                "401 Unauthorized: check the organization's credentials".into(),
            ))
        });
    let worker = h.worker(source, archiver(), MockMlApp::new());
    assert!(matches!(
        worker.run_once().await.unwrap(),
        Some(JobOutcome::Failed { .. })
    ));
    assert!(
        failed_reason(&h.store, series_id)
            .contains("401 Unauthorized: check the organization's credentials")
    );
    assert!(h.store.job(run_id).is_none());
    h.scratch.assert_all_removed();
}

#[tokio::test]
async fn series_search_failures_are_retried_or_failed_like_retrievals() {
    for (error, retried) in [
        (
            FetchError::Transient("503 Service Unavailable".into()),
            true,
        ),
        (FetchError::Permanent("404 Not Found".into()), false),
    ] {
        let h = Harness::new().await;
        let (series_id, _) = h.predict().await;
        let mut source = MockDicomSource::new();
        let e = error.clone();
        source
            .expect_find_series()
            .returning(move |_, _| Err(e.clone()));
        let worker = h.worker(source, MockSeriesArchiver::new(), MockMlApp::new());
        let outcome = worker.run_once().await.unwrap().unwrap();
        assert_eq!(
            matches!(outcome, JobOutcome::RetryLater { .. }),
            retried,
            "{outcome:?}"
        );
        let series = h.store.series(series_id);
        assert!(
            series
                .run
                .unwrap()
                .last_error
                .unwrap()
                .contains(&error.to_string())
        );
    }
}

#[tokio::test]
async fn a_series_the_server_does_not_know_or_counts_empty_fails_with_what_to_check() {
    for answer in [None, Some(found(0, Some("CT")))] {
        let h = Harness::new().await;
        let (series_id, run_id) = h.predict().await;
        let mut source = MockDicomSource::new();
        source
            .expect_find_series()
            .times(1)
            .returning(move |_, _| Ok(answer.clone()));
        // Nothing is retrieved, archived or sent.
        source.expect_retrieve_series().times(0);
        let worker = h.worker(source, MockSeriesArchiver::new(), MockMlApp::new());
        assert!(matches!(
            worker.run_once().await.unwrap(),
            Some(JobOutcome::Failed { .. })
        ));
        assert_eq!(
            failed_reason(&h.store, series_id),
            "the DICOM server http://pacs.test/dicom-web of Hospital A has no instance of study 1.2.3 series 1.2.3.4; check the UIDs and the organization's DICOMweb root"
        );
        // Failed at once, not retried.
        assert_eq!(h.store.series(series_id).run.unwrap().attempts, 1);
        assert!(h.store.job(run_id).is_none());
        assert!(h.scratch.created().is_empty());
    }
}

#[tokio::test]
async fn fewer_or_more_instances_than_the_server_counts_fail_and_are_never_sent() {
    for sent in [4, 6] {
        let h = Harness::new().await;
        let (series_id, run_id) = h.predict().await;
        let mut source = MockDicomSource::new();
        source
            .expect_find_series()
            .returning(|_, _| Ok(Some(found(5, Some("CT")))));
        source
            .expect_retrieve_series()
            .times(1)
            .returning(move |_, _, archive| feed(archive, listing(sent)));
        // No expectation: a submission would fail the test.
        let worker = h.worker(source, archiver(), MockMlApp::new());
        let outcome = worker.run_once().await.unwrap().unwrap();
        assert!(matches!(outcome, JobOutcome::Failed { .. }), "{outcome:?}");
        assert_eq!(
            failed_reason(&h.store, series_id),
            format!(
                "retrieving study 1.2.3 series 1.2.3.4 from the DICOM server http://pacs.test/dicom-web of Hospital A: the server counts 5 instances in the series (QIDO-RS) but sent {sent} (WADO-RS)"
            )
        );
        assert!(h.store.job(run_id).is_none());
        h.scratch.assert_all_removed();
    }
}

#[tokio::test]
async fn a_series_search_that_does_not_count_accepts_what_the_source_sends() {
    let h = Harness::new().await;
    h.predict().await;
    let mut source = MockDicomSource::new();
    source.expect_find_series().returning(|_, _| {
        Ok(Some(SeriesListing {
            number_of_instances: None,
            ..found(0, Some("CT"))
        }))
    });
    source
        .expect_retrieve_series()
        .times(1)
        .returning(|_, _, archive| feed(archive, listing(3)));
    let mut ml_app = MockMlApp::new();
    ml_app
        .expect_submit()
        .times(1)
        .withf(|_, _, archive: &Archive| archive.entries == ["CT_1.dcm", "CT_2.dcm", "CT_3.dcm"])
        .returning(|_, _, _| Ok(()));
    let worker = h.worker(source, archiver(), ml_app);
    assert_eq!(
        worker.run_once().await.unwrap(),
        Some(JobOutcome::Submitted)
    );
    h.scratch.assert_all_removed();
}

#[tokio::test]
async fn an_instance_sent_twice_fails_and_is_never_sent() {
    let h = Harness::new().await;
    let (series_id, _) = h.predict().await;
    let mut source = MockDicomSource::new();
    source
        .expect_find_series()
        .returning(|_, _| Ok(Some(found(2, Some("CT")))));
    source
        .expect_retrieve_series()
        .returning(|_, _, mut archive| {
            let instances = listing(2);
            archive.begin_instance(instances[0].clone(), None)?;
            archive.write(b"DICM")?;
            archive.begin_instance(instances[0].clone(), None)?;
            Ok(archive.finish()?)
        });
    let worker = h.worker(source, archiver(), MockMlApp::new());
    let outcome = worker.run_once().await.unwrap().unwrap();
    assert!(matches!(outcome, JobOutcome::Failed { .. }), "{outcome:?}");
    let error = failed_reason(&h.store, series_id);
    assert!(error.ends_with("sent instance 1.2.3.4.0 twice"), "{error}");
    h.scratch.assert_all_removed();
}

#[tokio::test]
async fn the_modality_sent_is_the_series_search_s_else_the_instances_one() {
    for (searched, instances, sent) in [
        // The series search wins.
        (Some("CT"), [Some("MR"), Some("MR"), Some("MR")], "CT"),
        // Without it (or blank), the one most instances name.
        (None, [Some("MR"), Some("SR"), Some("MR")], "MR"),
        (Some(" "), [None, Some("PT"), Some("PT")], "PT"),
    ] {
        let h = Harness::new().await;
        let (series_id, _) = h.predict().await;
        let mut source = MockDicomSource::new();
        source
            .expect_find_series()
            .returning(move |_, _| Ok(Some(found(3, searched))));
        source
            .expect_retrieve_series()
            .returning(move |_, _, archive| {
                let mut listed = listing(3);
                for (instance, modality) in listed.iter_mut().zip(instances) {
                    instance.modality = modality.map(str::to_string);
                }
                feed(archive, listed)
            });
        let received = Arc::new(Mutex::new(Vec::new()));
        let mut ml_app = MockMlApp::new();
        let requests = received.clone();
        ml_app
            .expect_submit()
            .times(1)
            .returning(move |_, request: &PredictionRequest, _| {
                requests.lock().unwrap().push(request.modality.clone());
                Ok(())
            });
        let worker = h.worker(source, archiver(), ml_app);
        assert_eq!(
            worker.run_once().await.unwrap(),
            Some(JobOutcome::Submitted),
            "{searched:?} {instances:?}"
        );
        assert_eq!(*received.lock().unwrap(), [sent]);
        assert_eq!(h.store.series(series_id).state, PredictionState::InProgress);
    }
}

#[tokio::test]
async fn a_series_without_modality_fails_with_the_reason() {
    let h = Harness::new().await;
    let (series_id, run_id) = h.predict().await;
    // Neither the series search nor any instance names one; no expectation on the ML app.
    let worker = h.worker(source_of(2, None), archiver(), MockMlApp::new());
    assert!(matches!(
        worker.run_once().await.unwrap(),
        Some(JobOutcome::Failed { .. })
    ));
    assert_eq!(
        failed_reason(&h.store, series_id),
        "neither the series search nor any instance of study 1.2.3 series 1.2.3.4 names its Modality (0008,0060); the ML app needs it"
    );
    assert!(h.store.job(run_id).is_none());
    assert_eq!(h.scratch.created().len(), 1);
    h.scratch.assert_all_removed();
}

#[tokio::test]
async fn an_archive_failure_is_retried_and_leaves_nothing_behind() {
    let h = Harness::new().await;
    let (series_id, _) = h.predict().await;
    let mut archiver = MockSeriesArchiver::new();
    archiver.expect_create().times(1).returning(|_, dir| {
        std::fs::write(dir.join("partial.zip.tmp"), b"PK").unwrap();
        Err(ArchiveError::Write("No space left on device".into()))
    });
    let mut source = MockDicomSource::new();
    source
        .expect_find_series()
        .returning(|_, _| Ok(Some(found(3, Some("CT")))));
    let worker = h.worker(source, archiver, MockMlApp::new());
    let outcome = worker.run_once().await.unwrap().unwrap();
    assert!(
        matches!(outcome, JobOutcome::RetryLater { .. }),
        "{outcome:?}"
    );
    assert!(
        h.store
            .series(series_id)
            .run
            .unwrap()
            .last_error
            .unwrap()
            .contains("No space left")
    );
    h.scratch.assert_all_removed();
}

#[tokio::test]
async fn an_ml_app_that_is_down_is_retried_and_a_later_attempt_sends() {
    let h = Harness::new().await;
    let (series_id, run_id) = h.predict().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let mut ml_app = MockMlApp::new();
    let counter = calls.clone();
    ml_app.expect_submit().times(2).returning(move |_, _, _| {
        if counter.fetch_add(1, Ordering::SeqCst) == 0 {
            Err(SubmitError::Transient("connection refused".into()))
        } else {
            Ok(())
        }
    });
    let worker = h.worker(source_of(2, Some("CT")), archiver(), ml_app);
    let Some(JobOutcome::RetryLater { delay, error, .. }) = worker.run_once().await.unwrap() else {
        panic!()
    };
    assert_eq!(
        error,
        "sending to the ML app reference at http://ml.test: connection refused"
    );
    h.clock.advance(delay);
    assert_eq!(
        worker.run_once().await.unwrap(),
        Some(JobOutcome::Submitted)
    );
    let run = h.store.series(series_id).run.unwrap();
    assert_eq!(run.attempts, 2);
    assert_eq!(h.store.job(run_id).unwrap().phase, JobPhase::AwaitReport);
    // One folder an attempt, each gone.
    assert_eq!(h.scratch.created().len(), 2);
    h.scratch.assert_all_removed();
}

#[tokio::test]
async fn an_ml_app_that_refuses_the_series_fails_it_with_its_answer() {
    let h = Harness::new().await;
    let (series_id, _) = h.predict().await;
    let mut ml_app = MockMlApp::new();
    ml_app
        .expect_submit()
        .times(1)
        .returning(|_, _, _| Err(SubmitError::Permanent("422: unknown modelType".into())));
    let worker = h.worker(source_of(2, Some("CT")), archiver(), ml_app);
    assert!(matches!(
        worker.run_once().await.unwrap(),
        Some(JobOutcome::Failed { .. })
    ));
    assert_eq!(
        failed_reason(&h.store, series_id),
        "sending to the ML app reference at http://ml.test: 422: unknown modelType"
    );
    h.scratch.assert_all_removed();
}

/// A scratch space whose disk is full.
struct FullDisk;

#[async_trait]
impl ScratchSpace for FullDisk {
    async fn create(&self, _: &str) -> Result<ScratchDir, ScratchError> {
        Err(ScratchError("No space left on device".into()))
    }
}

#[tokio::test]
async fn no_scratch_space_is_a_transient_failure() {
    let h = Harness::new().await;
    let (series_id, _) = h.predict().await;
    let mut source = MockDicomSource::new();
    source
        .expect_find_series()
        .returning(|_, _| Ok(Some(found(1, Some("CT")))));
    let mut ports = h.ports(source, MockSeriesArchiver::new(), MockMlApp::new());
    ports.scratch = Arc::new(FullDisk);
    let worker = JobWorker::new("w", ports, ml_apps(), settings(), Arc::new(Notify::new()));
    assert!(matches!(
        worker.run_once().await.unwrap(),
        Some(JobOutcome::RetryLater { .. })
    ));
    assert!(
        h.store
            .series(series_id)
            .run
            .unwrap()
            .last_error
            .unwrap()
            .contains("No space left")
    );
}

#[tokio::test]
async fn a_vanished_organization_or_model_type_fails_the_run() {
    // The organization is gone.
    let h = Harness::new().await;
    let (series_id, _) = h.predict().await;
    h.store.0.lock().unwrap().organizations.clear();
    let worker = h.worker(
        MockDicomSource::new(),
        MockSeriesArchiver::new(),
        MockMlApp::new(),
    );
    worker.run_once().await.unwrap();
    assert!(failed_reason(&h.store, series_id).contains("no longer exists"));

    // The model type is no longer configured.
    let h = Harness::new().await;
    let (series_id, _) = h.predict().await;
    let other = MlAppDirectory::new(vec![MlAppRoute {
        name: "other".into(),
        endpoint: MlAppEndpoint {
            url: "http://other.test".into(),
        },
        model_types: vec!["lung_tumor_segmentation".into()],
    }])
    .unwrap();
    let ports = h.ports(
        MockDicomSource::new(),
        MockSeriesArchiver::new(),
        MockMlApp::new(),
    );
    let worker = JobWorker::new("w", ports, other, settings(), Arc::new(Notify::new()));
    worker.run_once().await.unwrap();
    let reason = failed_reason(&h.store, series_id);
    assert!(
        reason.contains("no longer served") && reason.contains("lung_tumor_segmentation"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_run_whose_report_does_not_come_fails_at_the_deadline() {
    let h = Harness::new().await;
    let (series_id, run_id) = h.predict().await;
    let worker = h.worker(source_of(1, Some("CT")), archiver(), accepting_ml_app());
    assert_eq!(
        worker.run_once().await.unwrap(),
        Some(JobOutcome::Submitted)
    );

    h.clock.advance(Duration::from_secs(30 * 60 - 1));
    assert_eq!(worker.run_once().await.unwrap(), None);
    assert_eq!(h.store.series(series_id).state, PredictionState::InProgress);

    h.clock.advance(Duration::from_secs(1));
    assert!(matches!(
        worker.run_once().await.unwrap(),
        Some(JobOutcome::Failed { .. })
    ));
    assert_eq!(
        failed_reason(&h.store, series_id),
        "the ML app reference did not report within 30m"
    );
    assert!(h.store.job(run_id).is_none());
    // A report that comes later still is refused and changes nothing.
    let late = h
        .service
        .report(
            APP,
            series_id,
            StatusReport {
                run_id,
                status: ReportedStatus::Completed,
                model_type: MODEL.into(),
                result: json!({}),
            },
        )
        .await;
    assert!(matches!(late, Err(ReportError::Rejected(_))));
    assert_eq!(h.store.series(series_id).state, PredictionState::Failed);
}

#[tokio::test]
async fn a_job_claimed_early_after_a_restart_waits_again_for_its_deadline() {
    let h = Harness::new().await;
    let (series_id, run_id) = h.predict().await;
    let worker = h.worker(source_of(1, Some("CT")), archiver(), accepting_ml_app());
    worker.run_once().await.unwrap();
    // As if the job had been given back early (e.g. at shutdown).
    h.store
        .0
        .lock()
        .unwrap()
        .jobs
        .get_mut(&run_id)
        .unwrap()
        .run_after = h.clock.now();
    assert_eq!(
        worker.run_once().await.unwrap(),
        Some(JobOutcome::StillWaiting)
    );
    let deadline = h
        .store
        .series(series_id)
        .run
        .unwrap()
        .report_deadline
        .unwrap();
    assert_eq!(h.store.job(run_id).unwrap().run_after, deadline);
}

#[tokio::test]
async fn a_job_whose_run_was_replaced_is_dropped_without_sending() {
    let h = Harness::new().await;
    let (_, old_run) = h.predict().await;
    // The old job was queued strictly before the new one (jobs due at the same instant may
    // be claimed in any order).
    h.clock.advance(Duration::from_secs(1));
    let again = h
        .service
        .predict(&dev(), &predict_request("Hospital A", "1.2.3.4", true))
        .await
        .unwrap();
    let new_run = again.series.run.unwrap().id;
    // The old job is due first; it is dropped, then the new one is sent once.
    let mut ml_app = MockMlApp::new();
    ml_app
        .expect_submit()
        .times(1)
        .withf(move |_, request: &PredictionRequest, _| request.run_id == new_run.0)
        .returning(|_, _, _| Ok(()));
    let worker = h.worker(source_of(1, Some("CT")), archiver(), ml_app);
    assert_eq!(worker.run_once().await.unwrap(), Some(JobOutcome::Obsolete));
    assert!(h.store.job(old_run).is_none());
    assert_eq!(
        worker.run_once().await.unwrap(),
        Some(JobOutcome::Submitted)
    );
}

#[tokio::test]
async fn a_worker_that_lost_its_lease_does_not_send() {
    let h = Harness::new().await;
    let (_, run_id) = h.predict().await;
    let mut source = MockDicomSource::new();
    source
        .expect_find_series()
        .returning(|_, _| Ok(Some(found(1, Some("CT")))));
    let store = h.store.clone();
    let clock = h.clock.clone();
    source
        .expect_retrieve_series()
        .returning(move |_, _, archive| {
            // The retrieval took longer than the lease and another worker took the job over.
            clock.advance(LEASE * 2);
            let mut state = store.0.lock().unwrap();
            let row = state.jobs.get_mut(&run_id).unwrap();
            row.lease = Some((
                ClaimToken(uuid::Uuid::new_v4()),
                clock.now() + chrono::Duration::seconds(60),
                "worker-2".into(),
            ));
            feed(archive, listing(1))
        });
    // No expectation: a submission would fail the test.
    let worker = h.worker(source, archiver(), MockMlApp::new());
    assert_eq!(
        worker.run_once().await.unwrap(),
        Some(JobOutcome::LeaseLost)
    );
    // The job is still the other worker's.
    let job = h.store.job(run_id).unwrap();
    assert_eq!(job.lease.unwrap().2, "worker-2");
    h.scratch.assert_all_removed();
}

#[tokio::test]
async fn a_job_left_by_a_dead_worker_is_taken_up_after_its_lease_and_sent_once() {
    let h = Harness::new().await;
    let (series_id, run_id) = h.predict().await;
    // A worker claims the job, marks the series in progress, and dies.
    let now = h.clock.now();
    let claimed = h
        .store
        .claim(
            "dead-worker",
            now,
            now + chrono::Duration::from_std(LEASE).unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.run_id, run_id);
    let mut series = h.store.series(series_id);
    series.begin_attempt(run_id, now).unwrap();
    h.store.put_series(series);

    let submissions = Arc::new(AtomicUsize::new(0));
    let mut ml_app = MockMlApp::new();
    let counter = submissions.clone();
    ml_app.expect_submit().returning(move |_, _, _| {
        counter.fetch_add(1, Ordering::SeqCst);
        Ok(())
    });
    let worker = h.worker(source_of(2, Some("CT")), archiver(), ml_app);
    // Still leased: nothing to claim.
    assert_eq!(worker.run_once().await.unwrap(), None);
    h.clock.advance(LEASE);
    assert_eq!(
        worker.run_once().await.unwrap(),
        Some(JobOutcome::Submitted)
    );
    assert_eq!(worker.run_once().await.unwrap(), None);
    assert_eq!(submissions.load(Ordering::SeqCst), 1);
    let run = h.store.series(series_id).run.unwrap();
    assert_eq!(run.attempts, 2);
    assert_eq!(h.store.job(run_id).unwrap().claims, 2);
}

#[tokio::test]
async fn a_job_that_keeps_killing_its_workers_fails_after_the_attempts() {
    let h = Harness::new().await;
    let (series_id, run_id) = h.predict().await;
    let mut series = h.store.series(series_id);
    for _ in 0..3 {
        series.begin_attempt(run_id, t0()).unwrap();
    }
    h.store.put_series(series);
    let worker = h.worker(
        MockDicomSource::new(),
        MockSeriesArchiver::new(),
        MockMlApp::new(),
    );
    assert!(matches!(
        worker.run_once().await.unwrap(),
        Some(JobOutcome::Failed { .. })
    ));
    assert_eq!(
        failed_reason(&h.store, series_id),
        "gave up after 3 attempts; last error: the worker stopped during the attempt"
    );
}

#[tokio::test]
async fn a_database_failure_before_sending_sends_nothing_and_leaves_the_job_to_its_lease() {
    let h = Harness::new().await;
    let (series_id, run_id) = h.predict().await;
    let stored = h.store.series(series_id);
    let mut series_repo = MockSeriesRepository::new();
    series_repo
        .expect_find_series()
        .returning(move |_| Ok(Some(stored.clone())));
    series_repo
        .expect_update_series()
        .returning(|_| Err(StoreError("connection refused".into()).into()));
    let mut ports = h.ports(
        MockDicomSource::new(),
        MockSeriesArchiver::new(),
        MockMlApp::new(),
    );
    ports.series = Arc::new(series_repo);
    let worker = JobWorker::new("w", ports, ml_apps(), settings(), Arc::new(Notify::new()));
    let err = worker.run_once().await.unwrap_err();
    assert!(err.to_string().contains("connection refused"));
    // Still leased to this worker: taken up again when the lease runs out.
    assert!(h.store.job(run_id).unwrap().lease.is_some());
    assert!(h.scratch.created().is_empty());
}

/// A DICOM source whose retrieval never ends, to stop a worker mid-job.
/// It keeps the archive it was given: still open while the attempt runs.
struct EndlessSource(Arc<Mutex<Option<SeriesArchive>>>);

#[async_trait]
impl DicomSource for EndlessSource {
    async fn find_series(
        &self,
        _: &DicomServer,
        _: &SeriesKey,
    ) -> Result<Option<SeriesListing>, FetchError> {
        Ok(Some(found(1, Some("CT"))))
    }
    async fn retrieve_series(
        &self,
        _: &DicomServer,
        _: &SeriesKey,
        mut archive: SeriesArchive,
    ) -> Result<Archive, FetchError> {
        archive.begin_instance(listing(1)[0].clone(), None)?;
        archive.write(b"DI")?;
        *self.0.lock().unwrap() = Some(archive);
        std::future::pending().await
    }
}

#[tokio::test(start_paused = true)]
async fn a_long_retrieval_keeps_its_lease_and_a_shutdown_gives_the_job_back() {
    let h = Harness::new().await;
    let (_, run_id) = h.predict().await;
    let started = Arc::new(Mutex::new(None));
    let worker = Arc::new(h.worker(EndlessSource(started.clone()), archiver(), MockMlApp::new()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = {
        let worker = worker.clone();
        tokio::spawn(async move {
            worker
                .run(async {
                    let _ = stopped.await;
                })
                .await
        })
    };
    // Past several lease periods: the lease is extended each third of it.
    for _ in 0..10 {
        tokio::time::sleep(LEASE / 2).await;
        h.clock.advance(LEASE / 2);
    }
    let job = h.store.job(run_id).unwrap();
    let (_, until, holder) = job.lease.clone().unwrap();
    assert_eq!(holder, "worker-1");
    assert!(
        until > h.clock.now(),
        "the lease ran out during the retrieval"
    );
    assert!(started.lock().unwrap().is_some());
    let dir = h.scratch.created()[0].clone();
    assert!(
        std::fs::read_dir(&dir).unwrap().next().is_some(),
        "the archive is being written"
    );
    // The attempt's future owns what the source holds; here the test holds it: let go.
    started.lock().unwrap().take();

    stop.send(()).unwrap();
    running.await.unwrap();
    let job = h.store.job(run_id).unwrap();
    assert!(job.lease.is_none(), "the job was not given back");
    assert_eq!(job.phase, JobPhase::Send);
    assert!(!dir.exists(), "the partial retrieval was left behind");
    h.scratch.assert_all_removed();
}

#[tokio::test]
async fn retries_stop_at_the_end_of_the_window_whatever_the_count() {
    let h = Harness::new().await;
    let (series_id, _) = h.predict().await;
    let mut source = MockDicomSource::new();
    source
        .expect_find_series()
        .returning(|_, _| Err(FetchError::Transient("connection refused".into())));
    let mut settings = settings();
    settings.retry = RetryPolicy {
        max_attempts: 1000,
        window: Duration::from_secs(100),
        first_delay: Duration::from_secs(10),
        max_delay: Duration::from_secs(40),
    };
    let worker = JobWorker::new(
        "worker-1",
        h.ports(source, MockSeriesArchiver::new(), MockMlApp::new()),
        ml_apps(),
        settings,
        Arc::new(Notify::new()),
    );
    // Waits of 5-10, 10-20, 20-40, 20-40 s... until the next would begin after 100 s.
    let mut attempts = 0;
    loop {
        attempts += 1;
        match worker.run_once().await.unwrap().unwrap() {
            JobOutcome::RetryLater { delay, .. } => h.clock.advance(delay),
            JobOutcome::Failed { reason } => {
                assert!(
                    reason.starts_with(&format!("gave up after {attempts} attempts")),
                    "{reason}"
                );
                break;
            }
            other => panic!("{other:?}"),
        }
        assert!(attempts < 20, "the window did not end the retries");
    }
    assert!((3..=9).contains(&attempts), "{attempts}");
    let run = h.store.series(series_id).run.unwrap();
    let span = run.finished_at.unwrap() - run.started_at.unwrap();
    assert!(span <= chrono::Duration::seconds(100), "{span}");
}
