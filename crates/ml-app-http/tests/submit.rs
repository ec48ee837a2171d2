//! The ML app client against the reference ML app over real HTTP, which then calls back a
//! stand-in backend.

use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::time::Duration;

use dicom_files::synthetic::SyntheticSeries;
use dicom_series::ports::{
    Archive, MlApp, MlAppEndpoint, PredictionRequest, SeriesArchiver, SubmitError,
};
use ml_app_http::{HttpMlApp, HttpMlAppOptions};
use reference_ml_app::{CallbackRecorder, Options, start};
use series_zip::ZipArchiver;
use uuid::Uuid;

const TOKEN: &str = "ml-app-secret";
const WAIT: Duration = Duration::from_secs(30);

async fn archive_of(dir: &Path, modality: &str, count: usize) -> Archive {
    let series = SyntheticSeries::new(modality, count).with_size(32, 32);
    let writer = ZipArchiver::new().create(&series.key(), dir).await.unwrap();
    series.archive_into(writer).unwrap()
}

fn request(modality: &str, model_type: &str) -> PredictionRequest {
    PredictionRequest {
        series_id: Uuid::new_v4(),
        run_id: Uuid::new_v4(),
        modality: modality.to_string(),
        model_type: model_type.to_string(),
        body_part: None,
    }
}

fn client() -> HttpMlApp {
    HttpMlApp::new(HttpMlAppOptions {
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(10),
        total_timeout: Duration::from_secs(60),
    })
    .unwrap()
}

#[tokio::test]
async fn a_submitted_series_is_called_back_with_the_token() {
    let backend = CallbackRecorder::start().await.unwrap();
    let app = start(Options::new(&backend.url, TOKEN)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let archive = archive_of(dir.path(), "CT", 5).await;
    let mut request = request("CT", "lung_tumor_segmentation");
    request.body_part = Some("CHEST".into());

    client()
        .submit(
            &MlAppEndpoint {
                url: app.url.clone(),
            },
            &request,
            &archive,
        )
        .await
        .unwrap();
    let received = backend.wait_for(1, WAIT).await;
    assert_eq!(received.len(), 1);
    let callback = &received[0];
    assert_eq!(callback.series_id, request.series_id.to_string());
    assert_eq!(
        callback.authorization.as_deref(),
        Some("Bearer ml-app-secret")
    );
    assert_eq!(callback.body["status"], "completed", "{}", callback.body);
    assert_eq!(callback.body["modelType"], "lung_tumor_segmentation");
    assert_eq!(callback.body["runId"], request.run_id.to_string());
    let output = callback.body["result"]["output"].as_array().unwrap();
    assert_eq!(output.len(), 5);
    let entries: Vec<&str> = output
        .iter()
        .map(|o| o["entry"].as_str().unwrap())
        .collect();
    assert_eq!(entries, archive.entries);
    assert_eq!(
        app.received(
            &request.series_id.to_string(),
            Some(&request.run_id.to_string())
        ),
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn a_modality_the_model_does_not_take_is_called_back_not_supported() {
    let backend = CallbackRecorder::start().await.unwrap();
    let app = start(Options::new(&backend.url, TOKEN)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let archive = archive_of(dir.path(), "CT", 2).await;
    let request = request("CT", "chest_xray_classification");
    client()
        .submit(
            &MlAppEndpoint {
                url: app.url.clone(),
            },
            &request,
            &archive,
        )
        .await
        .unwrap();
    let received = backend.wait_for(1, WAIT).await;
    assert_eq!(received[0].body["status"], "not_supported");
    app.stop().await;
}

#[tokio::test]
async fn a_corrupt_zip_is_called_back_failed() {
    let backend = CallbackRecorder::start().await.unwrap();
    let app = start(Options::new(&backend.url, TOKEN)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut archive = archive_of(dir.path(), "CT", 2).await;
    // Cut the archive in half: the central directory is gone.
    let bytes = std::fs::read(&archive.path).unwrap();
    std::fs::write(&archive.path, &bytes[..bytes.len() / 2]).unwrap();
    archive.size = (bytes.len() / 2) as u64;
    let request = request("CT", "abdominal_organs_segmentation");
    client()
        .submit(
            &MlAppEndpoint {
                url: app.url.clone(),
            },
            &request,
            &archive,
        )
        .await
        .unwrap();
    let received = backend.wait_for(1, WAIT).await;
    assert_eq!(received[0].body["status"], "failed");
    let reason = received[0].body["result"]["reason"].as_str().unwrap();
    assert!(reason.contains("ZIP"), "{reason}");
    app.stop().await;
}

#[tokio::test]
async fn a_4xx_is_permanent_with_the_answer() {
    let backend = CallbackRecorder::start().await.unwrap();
    let app = start(Options::new(&backend.url, TOKEN)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let archive = archive_of(dir.path(), "CT", 1).await;
    let request = request("CT", "unknown_model");
    match client()
        .submit(
            &MlAppEndpoint {
                url: app.url.clone(),
            },
            &request,
            &archive,
        )
        .await
    {
        Err(SubmitError::Permanent(message)) => {
            assert!(message.contains("400"), "{message}");
            assert!(message.contains("unknown modelType"), "{message}");
        }
        other => panic!("expected a permanent error, got {other:?}"),
    }
    assert_eq!(app.received_total(), 0);
    app.stop().await;
}

#[tokio::test]
async fn an_ml_app_that_is_down_is_transient() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let dir = tempfile::tempdir().unwrap();
    let archive = archive_of(dir.path(), "CT", 1).await;
    match client()
        .submit(
            &MlAppEndpoint { url },
            &request("CT", "lung_tumor_segmentation"),
            &archive,
        )
        .await
    {
        Err(SubmitError::Transient(message)) => {
            assert!(message.contains("cannot connect"), "{message}")
        }
        other => panic!("expected a transient error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_5xx_is_transient_and_a_missing_archive_permanent() {
    use actix_web::{App, HttpResponse, HttpServer, web};
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = HttpServer::new(|| {
        App::new().route(
            "/predict",
            web::post().to(|body: web::Bytes| async move {
                let _ = body;
                HttpResponse::ServiceUnavailable().body("model loading, try later")
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    tokio::spawn(server);

    let dir = tempfile::tempdir().unwrap();
    let archive = archive_of(dir.path(), "CT", 1).await;
    let request = request("CT", "lung_tumor_segmentation");
    match client()
        .submit(&MlAppEndpoint { url: url.clone() }, &request, &archive)
        .await
    {
        Err(SubmitError::Transient(message)) => {
            assert!(message.contains("503"), "{message}");
            assert!(message.contains("model loading"), "{message}");
        }
        other => panic!("expected a transient error, got {other:?}"),
    }

    let mut missing = archive.clone();
    missing.path = dir.path().join("gone.zip");
    assert!(matches!(
        client()
            .submit(&MlAppEndpoint { url }, &request, &missing)
            .await,
        Err(SubmitError::Permanent(_))
    ));
    handle.stop(false).await;
}
