//! The reference ML app over real HTTP: 202 at once, then an authenticated callback to a
//! stand-in backend.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dicom_files::synthetic::SyntheticSeries;
use dicom_series::ports::SeriesArchiver;
use reference_ml_app::{CallbackRecorder, Delivery, Options, RunningMlApp, Status, start};
use series_zip::ZipArchiver;

const TOKEN: &str = "callback-secret-1";
const WAIT: Duration = Duration::from_secs(30);

/// A ZIP of a synthetic series, as the backend builds it.
async fn series_zip(dir: &Path, modality: &str, count: usize) -> PathBuf {
    let series = SyntheticSeries::new(modality, count).with_size(32, 32);
    let writer = ZipArchiver::new().create(&series.key(), dir).await.unwrap();
    series.archive_into(writer).unwrap().path
}

async fn post(
    app: &RunningMlApp,
    query: &[(&str, &str)],
    file: Option<&Path>,
) -> (u16, serde_json::Value) {
    let mut form = reqwest::multipart::Form::new().text("note", "ignored field");
    if let Some(file) = file {
        let part = reqwest::multipart::Part::bytes(std::fs::read(file).unwrap())
            .file_name("series.zip")
            .mime_str("application/zip")
            .unwrap();
        form = form.part("file", part);
    }
    let response = reqwest::Client::new()
        .post(app.predict_url())
        .query(query)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

#[tokio::test]
async fn a_prediction_is_accepted_then_called_back_with_the_token() {
    let backend = CallbackRecorder::start().await.unwrap();
    let app = start(Options::new(&backend.url, TOKEN)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let zip = series_zip(dir.path(), "MR", 4).await;

    let (status, answer) = post(
        &app,
        &[
            ("seriesId", "series-1"),
            ("modality", "MR"),
            ("modelType", "brain_tumor_segmentation"),
            ("bodyPart", "HEAD"),
            ("runId", "run-1"),
        ],
        Some(&zip),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["status"], "accepted");
    assert_eq!(answer["referenceModel"], true);

    let received = backend.wait_for(1, WAIT).await;
    assert_eq!(received.len(), 1);
    let callback = &received[0];
    assert_eq!(callback.series_id, "series-1");
    assert_eq!(
        callback.authorization.as_deref(),
        Some("Bearer callback-secret-1")
    );
    assert_eq!(callback.body["status"], "completed", "{}", callback.body);
    assert_eq!(callback.body["modelType"], "brain_tumor_segmentation");
    assert_eq!(callback.body["runId"], "run-1");
    assert_eq!(
        callback.body["result"]["output"].as_array().unwrap().len(),
        4
    );
    assert_eq!(app.received("series-1", Some("run-1")), 1);
    assert_eq!(app.received("series-1", Some("run-2")), 0);

    let finished = app.wait_finished(1, WAIT).await;
    assert!(matches!(
        finished[0].delivery,
        Some(Delivery::Delivered {
            status: 200,
            attempts: 1
        })
    ));
    app.stop().await;
}

#[tokio::test]
async fn requests_the_app_cannot_take_are_400() {
    let backend = CallbackRecorder::start().await.unwrap();
    let app = start(Options::new(&backend.url, TOKEN)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let zip = series_zip(dir.path(), "CT", 1).await;

    let (status, answer) = post(
        &app,
        &[
            ("seriesId", "s"),
            ("modality", "CT"),
            ("modelType", "liver_magic"),
        ],
        Some(&zip),
    )
    .await;
    assert_eq!(status, 400);
    let error = answer["error"].as_str().unwrap();
    assert!(error.contains("liver_magic"), "{error}");
    assert!(error.contains("lung_tumor_segmentation"), "{error}");

    let (status, answer) = post(
        &app,
        &[("seriesId", "s"), ("modelType", "lung_tumor_segmentation")],
        Some(&zip),
    )
    .await;
    assert_eq!(status, 400);
    assert!(answer["error"].as_str().unwrap().contains("modality"));

    let (status, answer) = post(
        &app,
        &[
            ("seriesId", "s"),
            ("modality", "CT"),
            ("modelType", "lung_tumor_segmentation"),
        ],
        None,
    )
    .await;
    assert_eq!(status, 400);
    assert!(answer["error"].as_str().unwrap().contains("'file'"));

    assert_eq!(app.received_total(), 0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(backend.received().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn without_callbacks_the_work_is_done_and_nobody_is_called() {
    let backend = CallbackRecorder::start().await.unwrap();
    let app = start(Options::new(&backend.url, TOKEN).without_callbacks())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let zip = series_zip(dir.path(), "CT", 2).await;
    let (status, _) = post(
        &app,
        &[
            ("seriesId", "quiet"),
            ("modality", "CT"),
            ("modelType", "lung_tumor_segmentation"),
            ("runId", "r"),
        ],
        Some(&zip),
    )
    .await;
    assert_eq!(status, 202);
    let finished = app.wait_finished(1, WAIT).await;
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0].outcome.status, Status::Completed);
    assert_eq!(finished[0].delivery, None);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(backend.received().is_empty());
    assert_eq!(app.received("quiet", Some("r")), 1);
    app.stop().await;
}

#[tokio::test]
async fn the_callback_is_retried_while_the_backend_fails() {
    let backend = CallbackRecorder::start_with_script(vec![503, 502])
        .await
        .unwrap();
    let app = start(
        Options::new(&backend.url, TOKEN).with_callback_retries(4, Duration::from_millis(50)),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let zip = series_zip(dir.path(), "CT", 1).await;
    let (status, _) = post(
        &app,
        &[
            ("seriesId", "retry"),
            ("modality", "DX"),
            ("modelType", "lung_tumor_segmentation"),
        ],
        Some(&zip),
    )
    .await;
    assert_eq!(status, 202);
    let received = backend.wait_for(3, WAIT).await;
    let answered: Vec<u16> = received.iter().map(|r| r.answered).collect();
    assert_eq!(answered, vec![503, 502, 200]);
    // A modality the model does not take; no runId given, none sent back.
    assert_eq!(received[2].body["status"], "not_supported");
    assert!(received[2].body.get("runId").is_none());
    let finished = app.wait_finished(1, WAIT).await;
    assert!(matches!(
        finished[0].delivery,
        Some(Delivery::Delivered { attempts: 3, .. })
    ));
    app.stop().await;
}

#[tokio::test]
async fn start_refuses_bad_options() {
    assert!(
        start(Options::new("http://127.0.0.1:1", " "))
            .await
            .is_err()
    );
    assert!(start(Options::new("not a url", TOKEN)).await.is_err());
}
