//! The HTTP server: Azure ML's scoring surface for the three deployments.
//!
//! | route | answer |
//! | --- | --- |
//! | `POST /score` with `azureml-model-deployment: <deployment>` | the deployment's answer |
//! | `POST /{deployment}/score` | the same, for clients that route by path |
//! | `GET /health` | `200 {"status": "ok"}` |
//!
//! Every scoring call needs `Authorization: Bearer <api_key>` (else 401). An unknown or
//! missing deployment is a 404 (missing header: 400) whose JSON names the deployments;
//! a body the deployment cannot use is a 400 saying what is wrong. Errors are JSON
//! objects `{"error": "<message>"}`.
//!
//! [`Behaviour`] makes a server fail or answer late on purpose, for testing clients.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, ResponseError, web};
use serde_json::json;

use crate::deployments::{BadRequest, DEPLOYMENTS, Deployment, ROUTING_HEADER};

/// Largest request body accepted (a 4000 x 3000 PNG in base64 fits easily).
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// How every scoring call of a server behaves. `/health` always answers 200 at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Behaviour {
    /// Score requests.
    #[default]
    Normal,
    /// Answer every scoring call with HTTP 500 (before any check of key or body), to
    /// test how clients handle a failing model.
    AlwaysFail,
    /// Wait this long before handling every scoring call (then behave normally), to test
    /// clients' timeouts. The wait does not hold a thread.
    Delay(Duration),
}

/// How to start a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The key callers must send as `Authorization: Bearer <api_key>`.
    pub api_key: String,
    /// The port to listen on; `None` lets the system pick a free one.
    pub port: Option<u16>,
    /// Address to listen on (`127.0.0.1` by [`Options::new`]).
    pub host: IpAddr,
    pub behaviour: Behaviour,
}

impl Options {
    /// Normal behaviour on `127.0.0.1` and a free port.
    pub fn new(api_key: impl Into<String>) -> Self {
        Options {
            api_key: api_key.into(),
            port: None,
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            behaviour: Behaviour::Normal,
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

    pub fn with_behaviour(mut self, behaviour: Behaviour) -> Self {
        self.behaviour = behaviour;
        self
    }
}

/// A running server. Dropping it asks the server to stop (without waiting); call
/// [`ReferenceModels::stop`] to wait until it has.
#[derive(Debug)]
pub struct ReferenceModels {
    /// Base URL, e.g. `http://127.0.0.1:40123` (no trailing slash); the scoring URL is
    /// `{url}/score`.
    pub url: String,
    /// The address listened on.
    pub addr: SocketAddr,
    handle: ServerHandle,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl ReferenceModels {
    /// The URL to POST scoring calls to (with the routing header): `{url}/score`.
    pub fn score_url(&self) -> String {
        format!("{}/score", self.url)
    }

    /// The path-routed scoring URL of one deployment: `{url}/{deployment}/score`.
    pub fn deployment_url(&self, deployment: &str) -> String {
        format!("{}/{deployment}/score", self.url)
    }

    /// Stops accepting connections, lets calls in progress finish (up to 5 s), and
    /// returns once the server has stopped.
    pub async fn stop(mut self) {
        self.handle.stop(true).await;
        if let Some(task) = self.task.take() {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("reference models server ended with: {e}"),
                Err(e) => tracing::warn!("reference models server task failed: {e}"),
            }
        }
    }

    /// Waits until the server stops (it stops only when asked, so this is for a binary
    /// that serves until killed).
    pub async fn wait(&mut self) -> std::io::Result<()> {
        match self.task.take() {
            Some(task) => task.await.map_err(std::io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for ReferenceModels {
    fn drop(&mut self) {
        // The command is sent when `stop` is called (the returned future only waits for
        // the end); sending it to a server that has stopped already does nothing.
        drop(self.handle.stop(false));
    }
}

/// Starts a server on `options.host` and `options.port` (a free port when `None`) and
/// returns once it is listening. Must be called inside a Tokio runtime; the server runs
/// as a task of that runtime with two worker threads of its own. It does not install
/// signal handlers: the caller decides when to [`ReferenceModels::stop`].
/// An empty `api_key` is refused (`InvalidInput`).
pub async fn start(options: Options) -> std::io::Result<ReferenceModels> {
    if options.api_key.trim().is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the reference models need a non-empty API key",
        ));
    }
    let listener = TcpListener::bind((options.host, options.port.unwrap_or(0)))?;
    let addr = listener.local_addr()?;
    let state = web::Data::new(State {
        bearer: format!("Bearer {}", options.api_key),
        behaviour: options.behaviour,
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
            .route("/health", web::get().to(health))
            .route("/score", web::post().to(score_by_header))
            .route("/{deployment}/score", web::post().to(score_by_path))
            .default_service(web::to(not_found))
    })
    .workers(2)
    .disable_signals()
    .shutdown_timeout(5)
    .listen(listener)?
    .run();
    let handle = server.handle();
    let task = tokio::spawn(server);
    tracing::info!(%addr, behaviour = ?options.behaviour, "reference models listening");
    Ok(ReferenceModels {
        url: format!("http://{addr}"),
        addr,
        handle,
        task: Some(task),
    })
}

struct State {
    /// The whole expected `Authorization` value.
    bearer: String,
    behaviour: Behaviour,
}

/// An error answer: status and `{"error": message}` (plus the deployment names on 404).
#[derive(Debug, thiserror::Error)]
enum ApiError {
    #[error(
        "missing or wrong API key: send the header 'Authorization: Bearer <api_key>' with the key this server was started with"
    )]
    Unauthorized,
    #[error("no deployment named {0:?}; the deployments are: {names}", names = DEPLOYMENTS.join(", "))]
    UnknownDeployment(String),
    #[error("no '{ROUTING_HEADER}' header naming the deployment (or use POST /{{deployment}}/score); the deployments are: {names}", names = DEPLOYMENTS.join(", "))]
    MissingDeployment,
    #[error("{0}")]
    BadRequest(#[from] BadRequest),
    #[error("this server was started to fail every scoring call (Behaviour::AlwaysFail)")]
    Failing,
    #[error("internal error: {0}")]
    Internal(String),
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::UnknownDeployment(_) => StatusCode::NOT_FOUND,
            ApiError::MissingDeployment | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Failing | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let body = match self {
            ApiError::UnknownDeployment(_) | ApiError::MissingDeployment => {
                json!({"error": self.to_string(), "deployments": DEPLOYMENTS})
            }
            _ => json!({"error": self.to_string()}),
        };
        let mut response = HttpResponse::build(self.status_code());
        if matches!(self, ApiError::Unauthorized) {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        response.json(body)
    }
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn not_found(request: HttpRequest) -> HttpResponse {
    HttpResponse::NotFound().json(json!({
        "error": format!(
            "no route {} {}; use POST /score with the '{ROUTING_HEADER}' header, \
             POST /{{deployment}}/score, or GET /health",
            request.method(),
            request.path()
        ),
        "deployments": DEPLOYMENTS,
    }))
}

async fn score_by_header(
    request: HttpRequest,
    body: web::Bytes,
    state: web::Data<State>,
) -> Result<HttpResponse, ApiError> {
    let name = request
        .headers()
        .get(ROUTING_HEADER)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string());
    score(&request, name, body, &state).await
}

async fn score_by_path(
    request: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<State>,
) -> Result<HttpResponse, ApiError> {
    score(&request, Some(path.into_inner()), body, &state).await
}

async fn score(
    request: &HttpRequest,
    deployment: Option<String>,
    body: web::Bytes,
    state: &State,
) -> Result<HttpResponse, ApiError> {
    match state.behaviour {
        Behaviour::Normal => {}
        Behaviour::AlwaysFail => return Err(ApiError::Failing),
        Behaviour::Delay(delay) => tokio::time::sleep(delay).await,
    }
    if !authorized(request.headers().get(header::AUTHORIZATION), &state.bearer) {
        return Err(ApiError::Unauthorized);
    }
    let name = deployment.ok_or(ApiError::MissingDeployment)?;
    let deployment = Deployment::from_name(&name).ok_or(ApiError::UnknownDeployment(name))?;
    let started = Instant::now();
    let body_len = body.len();
    let answer = web::block(move || deployment.score(&body))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let elapsed = started.elapsed();
    match answer {
        Ok(json) => {
            tracing::debug!(deployment = deployment.name(), body_len, ?elapsed, "scored");
            Ok(HttpResponse::Ok()
                .content_type("application/json")
                .body(json))
        }
        Err(e) => {
            tracing::debug!(deployment = deployment.name(), body_len, "bad request: {e}");
            Err(ApiError::BadRequest(e))
        }
    }
}

/// `Authorization: Bearer <key>` with the scheme in any case.
fn authorized(value: Option<&HeaderValue>, expected: &str) -> bool {
    let Some(value) = value.map(HeaderValue::as_bytes) else {
        return false;
    };
    let expected = expected.as_bytes();
    let scheme = b"Bearer ".len();
    value.len() == expected.len()
        && value[..scheme].eq_ignore_ascii_case(&expected[..scheme])
        && value[scheme..] == expected[scheme..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_check() {
        let ok = |v: &str| authorized(Some(&HeaderValue::from_str(v).unwrap()), "Bearer k3y");
        assert!(ok("Bearer k3y"));
        assert!(ok("bearer k3y"));
        assert!(!ok("Bearer k3"));
        assert!(!ok("Bearer K3Y"));
        assert!(!ok("Basic k3y"));
        assert!(!ok("k3y"));
        assert!(!authorized(None, "Bearer k3y"));
    }
}
