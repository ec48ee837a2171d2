//! The HTTP surface.
//!
//! | route | answer |
//! | --- | --- |
//! | `POST /predict?seriesId=&modality=&modelType=&bodyPart=&runId=` with multipart field `file` (the series ZIP) | `202 {"status": "accepted", ...}` at once; the result comes later through the status callback |
//! | `GET /health` | `200 {"status": "ok", "referenceModel": true}` |
//!
//! `seriesId`, `modality` and `modelType` are required, `bodyPart` and `runId` optional
//! (`runId` is echoed in the callback). A missing parameter, an unknown model type (the
//! answer names the known ones), or a body without the `file` field is a `400` with
//! `{"error": "..."}`. The upload is streamed to a temporary file, never held in memory.
//! The work then runs in the background ([`crate::analysis`]) and its outcome goes to the
//! backend ([`crate::callback`]); the temporary file is removed when it is done.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_multipart::Multipart;
use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{App, HttpResponse, HttpServer, ResponseError, web};
use futures::StreamExt;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::analysis::{self, Outcome, Status};
use crate::callback::{self, Callback, Delivery};
use crate::models::{self, ModelType};

/// How to start the app.
#[derive(Clone, Debug)]
pub struct Options {
    /// The backend's base URL; callbacks go to `{backend_url}/api/studies/series/{id}/status`.
    pub backend_url: String,
    /// Sent as `Authorization: Bearer {callback_token}` with every callback.
    pub callback_token: String,
    /// Port to listen on; `None` lets the system pick a free one.
    pub port: Option<u16>,
    /// Address to listen on (`127.0.0.1` by [`Options::new`]).
    pub host: IpAddr,
    /// `false`: never call back (to test the backend's callback deadline); the work is
    /// still done and recorded.
    pub call_back: bool,
    /// Callback tries in all.
    pub callback_attempts: u32,
    /// Wait before the second callback try, doubled for each further one.
    pub callback_backoff: Duration,
    /// Where uploads are kept while they are processed (the system's temporary folder
    /// when `None`).
    pub upload_dir: Option<PathBuf>,
}

impl Options {
    /// Calls back `backend_url` with `callback_token`: 6 tries, 0.5 s backoff doubled
    /// (about 15 s in all), on `127.0.0.1` and a free port.
    pub fn new(backend_url: impl Into<String>, callback_token: impl Into<String>) -> Self {
        Options {
            backend_url: backend_url.into(),
            callback_token: callback_token.into(),
            port: None,
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            call_back: true,
            callback_attempts: 6,
            callback_backoff: Duration::from_millis(500),
            upload_dir: None,
        }
    }

    pub fn with_port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    pub fn with_host(mut self, host: IpAddr) -> Self {
        self.host = host;
        self
    }

    /// Never call back (the work is still done and recorded).
    pub fn without_callbacks(mut self) -> Self {
        self.call_back = false;
        self
    }

    pub fn with_callback_retries(mut self, attempts: u32, backoff: Duration) -> Self {
        self.callback_attempts = attempts;
        self.callback_backoff = backoff;
        self
    }

    pub fn with_upload_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.upload_dir = Some(dir.into());
        self
    }
}

/// A prediction the app has finished (test hook).
#[derive(Clone, Debug, PartialEq)]
pub struct Finished {
    pub series_id: String,
    pub run_id: Option<String>,
    pub model_type: String,
    pub outcome: Outcome,
    /// `None` when callbacks are off.
    pub delivery: Option<Delivery>,
}

/// What tests can observe.
#[derive(Debug, Default)]
struct Record {
    /// Accepted predictions per (seriesId, runId).
    received: Mutex<HashMap<(String, Option<String>), usize>>,
    finished: Mutex<Vec<Finished>>,
    in_flight: AtomicUsize,
}

/// A running app. Dropping it asks the server to stop (without waiting); call
/// [`RunningMlApp::stop`] to wait until it has.
#[derive(Debug)]
pub struct RunningMlApp {
    /// Base URL, e.g. `http://127.0.0.1:40123` (no trailing slash).
    pub url: String,
    pub addr: SocketAddr,
    handle: ServerHandle,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    record: Arc<Record>,
}

impl RunningMlApp {
    /// `{url}/predict`.
    pub fn predict_url(&self) -> String {
        format!("{}/predict", self.url)
    }

    /// Predictions accepted (202) for this series and run.
    pub fn received(&self, series_id: &str, run_id: Option<&str>) -> usize {
        let key = (series_id.to_string(), run_id.map(String::from));
        *lock(&self.record.received).get(&key).unwrap_or(&0)
    }

    /// Predictions accepted in all.
    pub fn received_total(&self) -> usize {
        lock(&self.record.received).values().sum()
    }

    /// The predictions finished so far (outcome computed, callback done or skipped).
    pub fn finished(&self) -> Vec<Finished> {
        lock(&self.record.finished).clone()
    }

    /// Predictions accepted and not yet finished.
    pub fn in_flight(&self) -> usize {
        self.record.in_flight.load(Ordering::SeqCst)
    }

    /// Waits until `count` predictions have finished, or `timeout` passes; returns them.
    pub async fn wait_finished(&self, count: usize, timeout: Duration) -> Vec<Finished> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let finished = self.finished();
            if finished.len() >= count || tokio::time::Instant::now() >= deadline {
                return finished;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops accepting connections, lets requests in progress finish (up to 5 s), and
    /// returns once the server has stopped. Background work already accepted goes on in
    /// the runtime.
    pub async fn stop(mut self) {
        self.handle.stop(true).await;
        if let Some(task) = self.task.take() {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("reference ML app ended with: {e}"),
                Err(e) => tracing::warn!("reference ML app task failed: {e}"),
            }
        }
    }

    /// Waits until the server stops (for a binary that serves until killed).
    pub async fn wait(&mut self) -> std::io::Result<()> {
        match self.task.take() {
            Some(task) => task.await.map_err(std::io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for RunningMlApp {
    fn drop(&mut self) {
        if self.task.is_some() {
            drop(self.handle.stop(false));
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct AppState {
    runtime: tokio::runtime::Handle,
    client: reqwest::Client,
    callback: Callback,
    call_back: bool,
    upload_dir: PathBuf,
    record: Arc<Record>,
}

/// Starts the app and returns once it listens. Must be called inside a Tokio runtime: the
/// HTTP server runs as a task of it (two worker threads of its own), and so does the
/// background work. An empty callback token or a backend URL that is not a URL is refused
/// (`InvalidInput`).
pub async fn start(options: Options) -> std::io::Result<RunningMlApp> {
    let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, m);
    if options.callback_token.trim().is_empty() {
        return Err(invalid("the callback token must not be empty".into()));
    }
    callback::status_url(&options.backend_url, "x").map_err(invalid)?;
    let upload_dir = options
        .upload_dir
        .clone()
        .unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&upload_dir)?;
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(std::io::Error::other)?;
    let record = Arc::new(Record::default());
    let state = web::Data::new(AppState {
        runtime: tokio::runtime::Handle::current(),
        client,
        callback: Callback {
            backend_url: options.backend_url.clone(),
            token: options.callback_token.clone(),
            attempts: options.callback_attempts,
            backoff: options.callback_backoff,
        },
        call_back: options.call_back,
        upload_dir,
        record: record.clone(),
    });
    let listener = TcpListener::bind((options.host, options.port.unwrap_or(0)))?;
    let addr = listener.local_addr()?;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/health", web::get().to(health))
            .route("/predict", web::post().to(predict))
            .default_service(web::to(not_found))
    })
    .workers(2)
    .disable_signals()
    .shutdown_timeout(5)
    .listen(listener)?
    .run();
    let handle = server.handle();
    let task = tokio::spawn(server);
    tracing::info!(%addr, call_back = options.call_back, "reference ML app listening");
    Ok(RunningMlApp {
        url: format!("http://{addr}"),
        addr,
        handle,
        task: Some(task),
        record,
    })
}

#[derive(Debug, thiserror::Error)]
enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Internal(String),
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(json!({ "error": self.to_string() }))
    }
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok", "referenceModel": true }))
}

async fn not_found() -> HttpResponse {
    HttpResponse::NotFound().json(json!({
        "error": "not found: POST /predict?seriesId=&modality=&modelType=&bodyPart=&runId= with the series ZIP as multipart field 'file', or GET /health"
    }))
}

/// The query of `POST /predict`.
struct PredictQuery {
    series_id: String,
    modality: String,
    model: &'static ModelType,
    body_part: Option<String>,
    run_id: Option<String>,
}

fn parse_query(query: &HashMap<String, String>) -> Result<PredictQuery, ApiError> {
    let get = |name: &str| {
        query
            .get(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let required = |name: &str| {
        get(name).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "the query parameter {name} is required (POST /predict?seriesId=&modality=&modelType=&bodyPart=&runId=)"
            ))
        })
    };
    let series_id = required("seriesId")?;
    let modality = required("modality")?;
    let model_type = required("modelType")?;
    let model = models::model_type(&model_type).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "unknown modelType {model_type:?}; the model types are: {}",
            models::model_type_names()
        ))
    })?;
    Ok(PredictQuery {
        series_id,
        modality,
        model,
        body_part: get("bodyPart"),
        run_id: get("runId"),
    })
}

async fn predict(
    state: web::Data<AppState>,
    query: web::Query<HashMap<String, String>>,
    mut payload: Multipart,
) -> Result<HttpResponse, ApiError> {
    let query = match parse_query(&query) {
        Ok(query) => query,
        Err(e) => {
            // Read the upload before answering, so that the client sees the 400 rather
            // than a connection closed under its upload.
            drain(&mut payload).await;
            return Err(e);
        }
    };

    // Stream the `file` field to a temporary file; drain the other fields.
    let mut upload: Option<(tempfile::TempPath, u64)> = None;
    while let Some(field) = payload.next().await {
        let mut field =
            field.map_err(|e| ApiError::BadRequest(format!("bad multipart body: {e}")))?;
        if field.name() != Some("file") || upload.is_some() {
            while let Some(chunk) = field.next().await {
                chunk.map_err(|e| ApiError::BadRequest(format!("bad multipart body: {e}")))?;
            }
            continue;
        }
        let temp = tempfile::Builder::new()
            .prefix("reference-ml-app-upload-")
            .suffix(".zip")
            .tempfile_in(&state.upload_dir)
            .map_err(|e| ApiError::Internal(format!("cannot create a temporary file: {e}")))?;
        let (file, path) = temp.into_parts();
        let mut writer =
            tokio::io::BufWriter::with_capacity(256 * 1024, tokio::fs::File::from_std(file));
        let mut size = 0u64;
        while let Some(chunk) = field.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::BadRequest(format!("the upload broke off: {e}")))?;
            size += chunk.len() as u64;
            writer
                .write_all(&chunk)
                .await
                .map_err(|e| ApiError::Internal(format!("cannot store the upload: {e}")))?;
        }
        writer
            .flush()
            .await
            .map_err(|e| ApiError::Internal(format!("cannot store the upload: {e}")))?;
        upload = Some((path, size));
    }
    let (path, size) = upload.ok_or_else(|| {
        ApiError::BadRequest("the multipart body has no field named 'file' (the series ZIP)".into())
    })?;

    let record = state.record.clone();
    *lock(&record.received)
        .entry((query.series_id.clone(), query.run_id.clone()))
        .or_insert(0) += 1;
    record.in_flight.fetch_add(1, Ordering::SeqCst);
    tracing::info!(series_id = %query.series_id, run_id = ?query.run_id, model_type = query.model.name, modality = %query.modality, body_part = ?query.body_part, size, "prediction accepted");

    let answer = json!({
        "status": "accepted",
        "seriesId": query.series_id,
        "runId": query.run_id,
        "modelType": query.model.name,
        "referenceModel": true,
    });
    let client = state.client.clone();
    let callback = state.call_back.then(|| state.callback.clone());
    state.runtime.spawn(async move {
        let model = query.model;
        let modality = query.modality.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let outcome = analysis::analyse(&path, model, &modality);
            drop(path); // removes the upload
            outcome
        })
        .await
        .unwrap_or_else(|e| Outcome {
            status: Status::Failed,
            result: json!({ "reason": format!("the reference model crashed: {e}") }),
        });
        tracing::info!(series_id = %query.series_id, status = outcome.status.as_str(), "prediction done");
        let delivery = match &callback {
            Some(callback) => {
                let body = callback::body(model.name, query.run_id.as_deref(), &outcome);
                Some(callback::deliver(&client, callback, &query.series_id, &body).await)
            }
            None => None,
        };
        lock(&record.finished).push(Finished {
            series_id: query.series_id,
            run_id: query.run_id,
            model_type: model.name.to_string(),
            outcome,
            delivery,
        });
        record.in_flight.fetch_sub(1, Ordering::SeqCst);
    });
    Ok(HttpResponse::Accepted().json(answer))
}

/// Reads and drops the rest of a multipart body (errors end it).
async fn drain(payload: &mut Multipart) {
    while let Some(Ok(mut field)) = payload.next().await {
        while let Some(Ok(_)) = field.next().await {}
    }
}
