//! DICOM series predictions end to end: the backend, the test Orthanc (DICOMweb) and the
//! reference ML app; and each defect of contract 2.5 shown impossible.
//!
//! Needs `TEST_ORTHANC_URL`, `TEST_DICOM_FILES` and `TEST_DATABASE_URL`
//! (`./deploy/run-tests.sh` sets them).

mod series_support;

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use dicom_files::synthetic::{SyntheticSeries, new_uid};
use futures::StreamExt;
use serde_json::{Value, json};
use series_support::*;

const WAIT: Duration = Duration::from_secs(90);

fn entries(series: &Value) -> Vec<String> {
    series["result"]["output"]
        .as_array()
        .unwrap_or_else(|| panic!("no output in {}", brief(series)))
        .iter()
        .map(|slice| slice["entry"].as_str().unwrap().to_string())
        .collect()
}

async fn end_to_end(db: Db) {
    let h = start(db, fast_series()).await;
    let api = h.client();
    let org = api.add_organization(&orthanc_dicomweb()).await;
    let series = uploaded(SyntheticSeries::new("MR", 12)).await;

    let (status, answer) = api
        .predict(
            &org,
            &series.study_instance_uid,
            &series.series_instance_uid,
            false,
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["decision"], "queued");
    assert_eq!(answer["state"], "not_started");
    assert_eq!(answer["modelType"], MODEL);
    let id = answer["seriesId"].as_str().unwrap().to_string();
    let run = answer["runId"].as_str().unwrap().to_string();

    let done = api.wait_final(&id, WAIT).await;
    assert_eq!(done["state"], "completed", "{}", brief(&done));
    assert_eq!(done["attempts"], 1);
    assert_eq!(done["lastError"], Value::Null);
    assert_eq!(done["runId"], run.as_str());
    assert_eq!(done["studyInstanceUid"], series.study_instance_uid.as_str());
    assert_eq!(
        done["seriesInstanceUid"],
        series.series_instance_uid.as_str()
    );
    for time in ["createdAt", "startedAt", "submittedAt", "finishedAt"] {
        assert!(done[time].is_string(), "{time} missing: {}", brief(&done));
    }
    // The reference ML app may report before the worker has recorded the submission's
    // deadline (it is recorded a moment later); never anything but a time.
    assert!(
        done["reportDeadline"].is_string() || done["reportDeadline"].is_null(),
        "{}",
        brief(&done)
    );
    // One entry per instance, in the order Orthanc sent them, named from its header.
    let mut names = entries(&done);
    names.sort();
    let mut expected: Vec<String> = (1..=12).map(|n| format!("MR_{n}.dcm")).collect();
    expected.sort();
    assert_eq!(names, expected);
    assert_eq!(h.ml_app().received(&id, Some(&run)), 1);

    // Asked again without predictAgain: answered from the stored result, not sent.
    let (status, again) = api
        .predict(
            &org,
            &series.study_instance_uid,
            &series.series_instance_uid,
            false,
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(again["decision"], "already_predicted");
    assert_eq!(again["seriesId"], id.as_str());
    assert_eq!(again["result"], done["result"]);
    // With predictAgain: a new run, sent once.
    let (_, rerun) = api
        .predict(
            &org,
            &series.study_instance_uid,
            &series.series_instance_uid,
            true,
        )
        .await;
    assert_eq!(rerun["decision"], "queued");
    let new_run = rerun["runId"].as_str().unwrap().to_string();
    assert_ne!(new_run, run);
    let redone = api
        .wait_for(&id, WAIT, |s| {
            s["state"] == "completed" && s["runId"] == new_run.as_str()
        })
        .await;
    assert_eq!(entries(&redone).len(), 12);
    assert_eq!(h.ml_app().received(&id, Some(&new_run)), 1);
    assert_eq!(h.ml_app().received_total(), 2);
    assert!(h.scratch_files().is_empty(), "{:?}", h.scratch_files());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prediction_runs_end_to_end_through_orthanc_on_sqlite() {
    end_to_end(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prediction_runs_end_to_end_through_orthanc_on_postgres() {
    end_to_end(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_dicom_files_are_predicted_or_not_supported() {
    let h = start(Db::Sqlite, fast_series()).await;
    let api = h.client();
    let org = api.add_organization(&orthanc_dicomweb()).await;
    let files = test_support::dicom_test_files();
    // image_dfl.dcm is Deflated Explicit VR Little Endian (its whole data set deflated): it
    // is read, sent as stored, and the ML app answers for it (whatever its modality).
    for (file, state) in [
        ("MR_small.dcm", "completed"),
        ("CT_small.dcm", "not_supported"),
        ("image_dfl.dcm", "answered"),
    ] {
        let path = files.join(file);
        upload(vec![std::fs::read(&path).unwrap()]).await;
        let header = dicom_files::read_instance_header(&path).unwrap();
        let (status, answer) = api
            .predict(
                &org,
                &header.study_instance_uid,
                &header.series_instance_uid,
                true,
            )
            .await;
        assert_eq!(status, 202, "{answer}");
        let id = answer["seriesId"].as_str().unwrap();
        let done = api.wait_final(id, WAIT).await;
        if state == "answered" {
            assert!(
                matches!(done["state"].as_str(), Some("completed" | "not_supported")),
                "{file}: {}",
                brief(&done)
            );
        } else {
            assert_eq!(done["state"], state, "{file}: {}", brief(&done));
        }
        assert!(done["result"].is_object(), "{file}: {}", brief(&done));
    }
    h.stop().await;
}

// ---- contract 2.5, defect by defect ----

/// "Work ran in in-process background tasks: lost on restart."
async fn jobs_survive_a_restart(db: Db) {
    let mut no_workers = fast_series();
    no_workers.workers = 0;
    let h = start(db, no_workers).await;
    let org = h.client().add_organization(&orthanc_dicomweb()).await;
    let series = uploaded(SyntheticSeries::new("MR", 4)).await;
    let id = h.client().predict_queued(&org, &series).await;
    assert_eq!(h.client().series(&id).await["state"], "not_started");
    let (dir, database_url) = h.stop().await;

    let h = start_on(dir, database_url, fast_series()).await;
    let done = h.client().wait_final(&id, WAIT).await;
    assert_eq!(done["state"], "completed", "{}", brief(&done));
    assert_eq!(h.ml_app().received_total(), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_jobs_survive_a_restart_on_sqlite() {
    jobs_survive_a_restart(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_jobs_survive_a_restart_on_postgres() {
    jobs_survive_a_restart(Db::Postgres).await;
}

/// "A failed download left a partial ZIP at a fixed path, which the next request reused."
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_cut_in_the_middle_is_retried_whole_and_never_reused() {
    let h = start(Db::Sqlite, fast_series()).await;
    let proxy = FaultProxy::start(orthanc_address()).await;
    let org = h.client().add_organization(&proxy.dicomweb()).await;
    let series = uploaded(SyntheticSeries::new("MR", 16).with_size(128, 128)).await;
    // Each instance is about 33 kB: the first retrieval drops after about half the series.
    proxy.cut_once_after(8 * 33_000);

    let id = h.client().predict_queued(&org, &series).await;
    let done = h.client().wait_final(&id, WAIT).await;
    assert_eq!(done["state"], "completed", "{}", brief(&done));
    assert_eq!(done["attempts"], 2, "{}", brief(&done));
    assert!(
        done["lastError"]
            .as_str()
            .unwrap()
            .contains("retrieving study"),
        "{}",
        brief(&done)
    );
    // The ML app got the whole series, once.
    assert_eq!(entries(&done).len(), 16);
    assert_eq!(h.ml_app().received_total(), 1);
    assert!(h.scratch_files().is_empty(), "{:?}", h.scratch_files());
    h.stop().await;
}

/// An ML app that reports before it even answers the submission.
#[derive(Default)]
struct InstantMlApp {
    backend: OnceLock<String>,
    /// The backend's answers to the reports.
    answers: Mutex<Vec<u16>>,
}

async fn instant_predict(
    app: web::Data<InstantMlApp>,
    query: web::Query<HashMap<String, String>>,
    mut body: web::Payload,
) -> HttpResponse {
    while let Some(chunk) = body.next().await {
        if chunk.is_err() {
            return HttpResponse::BadRequest().finish();
        }
    }
    let backend = app.backend.get().unwrap();
    let answer = reqwest::Client::new()
        .put(format!(
            "{backend}/api/studies/series/{}/status",
            query["seriesId"]
        ))
        .bearer_auth(CALLBACK_TOKEN)
        .json(&json!({
            "status": "completed",
            "modelType": query["modelType"],
            "runId": query["runId"],
            "result": {"instant": true},
        }))
        .send()
        .await
        .unwrap();
    app.answers.lock().unwrap().push(answer.status().as_u16());
    HttpResponse::Accepted().json(json!({"status": "accepted"}))
}

/// "`in_progress` was written after the ML app had accepted the job, so a fast
/// `completed` callback could be overwritten."
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_that_comes_before_the_ml_app_answers_is_kept() {
    let app = web::Data::new(InstantMlApp::default());
    let server_app = app.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(server_app.clone())
            .route("/predict", web::post().to(instant_predict))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let ml_url = format!("http://{}", server.addrs()[0]);
    let server = server.run();
    let server_handle = server.handle();
    tokio::spawn(server);

    let mut settings = fast_series();
    external_ml_app(&mut settings, &ml_url);
    let h = start(Db::Sqlite, settings).await;
    app.backend.set(h.backend.url().to_owned()).unwrap();
    let org = h.client().add_organization(&orthanc_dicomweb()).await;

    for _ in 0..3 {
        let series = uploaded(SyntheticSeries::new("MR", 2)).await;
        let id = h.client().predict_queued(&org, &series).await;
        let done = h.client().wait_final(&id, WAIT).await;
        assert_eq!(done["state"], "completed", "{}", brief(&done));
        assert_eq!(done["result"], json!({"instant": true}));
        assert!(done["submittedAt"].is_string());
        // Still completed once the worker has recorded the submission.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(h.client().series(&id).await["state"], "completed");
    }
    assert_eq!(*app.answers.lock().unwrap(), [200, 200, 200]);
    h.stop().await;
    server_handle.stop(true).await;
}

/// "The series lookup matched on the study alone, so with several series in a study the
/// status landed on the wrong one."
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_series_of_one_study_get_their_own_status() {
    let h = start(Db::Sqlite, fast_series()).await;
    let api = h.client();
    let org = api.add_organization(&orthanc_dicomweb()).await;
    let study = new_uid();
    let a = uploaded(SyntheticSeries::new("MR", 3).with_uids(&study, new_uid())).await;
    let b = uploaded(SyntheticSeries::new("MR", 5).with_uids(&study, new_uid())).await;
    let id_a = api.predict_queued(&org, &a).await;
    let id_b = api.predict_queued(&org, &b).await;
    assert_ne!(id_a, id_b);
    let done_a = api.wait_final(&id_a, WAIT).await;
    let done_b = api.wait_final(&id_b, WAIT).await;
    assert_eq!(
        (done_a["state"].as_str(), done_b["state"].as_str()),
        (Some("completed"), Some("completed"))
    );
    assert_eq!(entries(&done_a).len(), 3);
    assert_eq!(entries(&done_b).len(), 5);
    assert_eq!(done_a["seriesInstanceUid"], a.series_instance_uid.as_str());
    assert_eq!(done_b["seriesInstanceUid"], b.series_instance_uid.as_str());
    h.stop().await;
}

/// "A missing InstanceNumber became 0, giving duplicate entry names."
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_without_or_sharing_an_instance_number_get_distinct_names() {
    let h = start(Db::Sqlite, fast_series()).await;
    let api = h.client();
    let org = api.add_organization(&orthanc_dicomweb()).await;
    let numbers = vec![Some(1), None, Some(2), Some(2), None, Some(3), Some(0)];
    let series = uploaded(SyntheticSeries::new("MR", 7).with_instance_numbers(numbers)).await;
    let id = api.predict_queued(&org, &series).await;
    let done = api.wait_final(&id, WAIT).await;
    assert_eq!(done["state"], "completed", "{}", brief(&done));
    let names = entries(&done);
    assert_eq!(names.len(), 7);
    assert_eq!(names.iter().collect::<HashSet<_>>().len(), 7, "{names:?}");
    h.stop().await;
}

/// "A failure before the series row existed was recorded nowhere."
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_before_anything_is_sent_are_recorded_on_the_series() {
    let h = start(Db::Sqlite, fast_series()).await;
    let api = h.client();

    // A series the DICOM server does not have.
    let org = api.add_organization(&orthanc_dicomweb()).await;
    let (status, answer) = api.predict(&org, &new_uid(), &new_uid(), false).await;
    assert_eq!(status, 202, "{answer}");
    let done = api
        .wait_final(answer["seriesId"].as_str().unwrap(), WAIT)
        .await;
    assert_eq!(done["state"], "failed");
    let reason = done["lastError"].as_str().unwrap();
    assert!(
        reason.contains("has no instance") && reason.contains("check the UIDs"),
        "{reason}"
    );

    // A DICOM server that is not there.
    let down = api
        .add_organization(&format!("http://127.0.0.1:{}/dicom-web", free_port()))
        .await;
    let (_, answer) = api.predict(&down, &new_uid(), &new_uid(), false).await;
    let done = api
        .wait_final(answer["seriesId"].as_str().unwrap(), WAIT)
        .await;
    assert_eq!(done["state"], "failed");
    assert_eq!(done["attempts"], 3);
    let reason = done["lastError"].as_str().unwrap();
    assert!(
        reason.starts_with("gave up after 3 attempts; last error: retrieving study"),
        "{reason}"
    );
    assert_eq!(h.ml_app().received_total(), 0);

    // Unknown organization: refused at once, without naming the others; an unknown model
    // type with the ones that exist.
    let (status, answer) = api.predict("no such org", "1.2", "1.3", false).await;
    assert_eq!(status, 404);
    assert!(answer.get("known").is_none(), "{answer}");
    assert!(!answer.to_string().contains(&org), "{answer}");
    let answer: Value = api
        .http
        .post(api.url("/api/studies/series/predict"))
        .json(&json!({"organization": org, "studyInstanceUid": "1.2", "seriesInstanceUid": "1.3", "modelType": "liver_magic"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(answer["error"].as_str().unwrap().contains("liver_magic"));
    assert!(answer["known"].as_array().unwrap().contains(&json!(MODEL)));
    h.stop().await;
}

/// "The status callback had no authentication at all", and a report for another run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_callback_needs_the_ml_apps_token_and_the_current_run() {
    // The ML app takes the series and never reports: the test reports in its place.
    let mut settings = fast_series();
    let port = free_port();
    external_ml_app(&mut settings, &format!("http://127.0.0.1:{port}"));
    let h = start(Db::Sqlite, settings).await;
    let ml_app = reference_ml_app::start(
        reference_ml_app::Options::new(h.backend.url().to_owned(), CALLBACK_TOKEN)
            .with_port(port)
            .without_callbacks(),
    )
    .await
    .unwrap();
    let api = h.client();
    let org = api.add_organization(&orthanc_dicomweb()).await;
    let series = uploaded(SyntheticSeries::new("MR", 2)).await;
    let id = api.predict_queued(&org, &series).await;
    let sent = api
        .wait_for(&id, WAIT, |s| s["submittedAt"].is_string())
        .await;
    assert_eq!(sent["state"], "in_progress");
    let run = sent["runId"].as_str().unwrap().to_string();
    let report = |status: &str, run: &str| json!({"status": status, "modelType": MODEL, "runId": run, "result": {"output": []}});

    let refused = [
        (None, report("completed", &run), 401),
        (Some("not-the-token"), report("completed", &run), 401),
        (Some(ADMIN_TOKEN), report("completed", &run), 401),
        (
            Some(CALLBACK_TOKEN),
            report("completed", &uuid::Uuid::new_v4().to_string()),
            409,
        ),
        (Some(CALLBACK_TOKEN), report("done", &run), 400),
        (
            Some(CALLBACK_TOKEN),
            json!({"status": "completed", "modelType": MODEL, "result": {}}),
            400,
        ),
        (
            Some(CALLBACK_TOKEN),
            json!({"status": "completed", "modelType": "lung_tumor_segmentation", "runId": run, "result": {}}),
            409,
        ),
    ];
    for (token, body, expected) in refused {
        let (status, answer) = api.report(&id, token, body.clone()).await;
        assert_eq!(status, expected, "{token:?} {body}: {answer}");
        assert!(answer["error"].is_string(), "{answer}");
        assert_eq!(
            api.series(&id).await,
            sent,
            "a refused report changed the series"
        );
    }
    let (status, _) = api
        .report(
            &uuid::Uuid::new_v4().to_string(),
            Some(CALLBACK_TOKEN),
            report("completed", &run),
        )
        .await;
    assert_eq!(status, 404);

    let (status, answer) = api
        .report(&id, Some(CALLBACK_TOKEN), report("completed", &run))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["state"], "completed");
    let done = api.series(&id).await;
    // The same report again changes nothing; a different one is refused.
    assert_eq!(
        api.report(&id, Some(CALLBACK_TOKEN), report("completed", &run))
            .await
            .0,
        200
    );
    assert_eq!(
        api.report(&id, Some(CALLBACK_TOKEN), report("failed", &run))
            .await
            .0,
        409
    );
    assert_eq!(api.series(&id).await, done);

    // A new run: the old run's report is refused.
    let (_, rerun) = api
        .predict(
            &org,
            &series.study_instance_uid,
            &series.series_instance_uid,
            true,
        )
        .await;
    let new_run = rerun["runId"].as_str().unwrap().to_string();
    let waiting = api
        .wait_for(&id, WAIT, |s| {
            s["submittedAt"].is_string() && s["runId"] == new_run.as_str()
        })
        .await;
    let (status, answer) = api
        .report(&id, Some(CALLBACK_TOKEN), report("completed", &run))
        .await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(api.series(&id).await, waiting);
    assert_eq!(ml_app.received(&id, Some(&new_run)), 1);
    ml_app.stop().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organizations_are_added_by_the_admin_only() {
    let h = start(Db::Sqlite, fast_series()).await;
    let http = reqwest::Client::new();
    let url = h.url("/api/admin/organizations");
    let body = json!({"name": "Hospital A", "dicomwebRoot": "https://pacs.a/dicom-web", "credentials": {"type": "basic", "username": "u", "password": "secret-pw"}});
    let answer = http.post(&url).json(&body).send().await.unwrap();
    assert_eq!(answer.status(), 401);
    let answer = http
        .post(&url)
        .bearer_auth(CALLBACK_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 401);
    let answer = http
        .post(&url)
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 201);
    let text = answer.text().await.unwrap();
    assert!(!text.contains("secret-pw"), "{text}");
    let created: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(created["credentials"], "basic");
    let answer = http
        .post(&url)
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 409);
    let answer = http
        .post(&url)
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "B", "dicomwebRoot": "pacs.b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    let list: Value = http
        .get(&url)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["organizations"], json!(["Hospital A"]));
    h.stop().await;
}
