//! A stand-in backend for tests: records the status callbacks it receives
//! (`PUT /api/studies/series/{id}/status`) and answers them with scripted statuses.

use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};

/// One callback received.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedCallback {
    /// The `{id}` of the path.
    pub series_id: String,
    /// The `Authorization` header, as sent.
    pub authorization: Option<String>,
    /// The body (JSON; `Null` when it was not JSON).
    pub body: serde_json::Value,
    /// The status answered.
    pub answered: u16,
}

#[derive(Debug, Default)]
struct Shared {
    received: Mutex<Vec<ReceivedCallback>>,
    /// Statuses to answer, in order; 200 once used up.
    script: Mutex<Vec<u16>>,
}

/// A running recorder; dropping it stops the server.
#[derive(Debug)]
pub struct CallbackRecorder {
    /// Base URL to give the ML app as its backend.
    pub url: String,
    handle: ServerHandle,
    shared: Arc<Shared>,
}

impl CallbackRecorder {
    /// Starts a recorder on 127.0.0.1 and a free port, answering 200 to every callback.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with_script(Vec::new()).await
    }

    /// Starts a recorder that answers the first callbacks with `statuses`, in order, and
    /// 200 after.
    pub async fn start_with_script(statuses: Vec<u16>) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            received: Mutex::new(Vec::new()),
            script: Mutex::new(statuses),
        });
        let data = web::Data::from(shared.clone());
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let addr = listener.local_addr()?;
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/api/studies/series/{id}/status", web::put().to(record))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)?
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(CallbackRecorder {
            url: format!("http://{addr}"),
            handle,
            shared,
        })
    }

    /// The callbacks received so far.
    pub fn received(&self) -> Vec<ReceivedCallback> {
        self.shared
            .received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits until `count` callbacks have arrived or `timeout` passes; returns them.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<ReceivedCallback> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let received = self.received();
            if received.len() >= count || tokio::time::Instant::now() >= deadline {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the server and waits until it has stopped.
    pub async fn stop(self) {
        self.handle.stop(true).await;
    }
}

impl Drop for CallbackRecorder {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

async fn record(
    shared: web::Data<Shared>,
    request: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let answered = {
        let mut script = shared.script.lock().unwrap_or_else(|p| p.into_inner());
        if script.is_empty() {
            200
        } else {
            script.remove(0)
        }
    };
    shared
        .received
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(ReceivedCallback {
            series_id: path.into_inner(),
            authorization: request
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(String::from),
            body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
            answered,
        });
    HttpResponse::build(StatusCode::from_u16(answered).unwrap_or(StatusCode::OK))
        .json(serde_json::json!({ "recorded": true }))
}
