//! The status callback to the backend:
//! `PUT {backend}/api/studies/series/{seriesId}/status` with
//! `Authorization: Bearer {callback_token}` and the JSON body
//! `{"status", "modelType", "result", "runId"}`.
//!
//! Connection errors, timeouts, 408, 429 and 5xx are retried with exponential backoff (the
//! backend may be restarting); a 2xx ends it, and so does any other answer (a 4xx will not
//! change: logged as a warning).

use std::time::Duration;

use serde_json::{Value as Json, json};

use crate::analysis::Outcome;

/// How to call the backend back.
#[derive(Clone, Debug)]
pub struct Callback {
    pub backend_url: String,
    pub token: String,
    /// Tries in all (at least 1).
    pub attempts: u32,
    /// Wait before the second try; doubled for each further one.
    pub backoff: Duration,
}

/// How a callback ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The backend answered 2xx.
    Delivered { status: u16, attempts: u32 },
    /// The backend answered a status that will not change on retry.
    Refused { status: u16, answer: String },
    /// Every try failed (connection errors, 5xx).
    GaveUp { attempts: u32, last_error: String },
}

/// `{backend}/api/studies/series/{series_id}/status`, the id percent-encoded as one path
/// segment.
pub fn status_url(backend_url: &str, series_id: &str) -> Result<url::Url, String> {
    let mut url = url::Url::parse(backend_url)
        .map_err(|e| format!("the backend URL {backend_url:?} is not a URL: {e}"))?;
    url.path_segments_mut()
        .map_err(|()| format!("the backend URL {backend_url:?} cannot have a path"))?
        .pop_if_empty()
        .extend(["api", "studies", "series", series_id, "status"]);
    Ok(url)
}

/// The JSON body of the callback.
pub fn body(model_type: &str, run_id: Option<&str>, outcome: &Outcome) -> Json {
    let mut body = json!({
        "status": outcome.status.as_str(),
        "modelType": model_type,
        "result": outcome.result,
    });
    if let Some(run_id) = run_id {
        body["runId"] = json!(run_id);
    }
    body
}

/// Sends the callback, retrying as described in the [module documentation](self).
pub async fn deliver(
    client: &reqwest::Client,
    callback: &Callback,
    series_id: &str,
    body: &Json,
) -> Delivery {
    let url = match status_url(&callback.backend_url, series_id) {
        Ok(url) => url,
        Err(e) => {
            return Delivery::GaveUp {
                attempts: 0,
                last_error: e,
            };
        }
    };
    let attempts = callback.attempts.max(1);
    let mut wait = callback.backoff;
    let mut last_error = String::new();
    for attempt in 1..=attempts {
        if attempt > 1 {
            tokio::time::sleep(wait).await;
            wait = wait.saturating_mul(2);
        }
        match client
            .put(url.clone())
            .bearer_auth(&callback.token)
            .json(body)
            .send()
            .await
        {
            Ok(response) if response.status().is_success() => {
                return Delivery::Delivered {
                    status: response.status().as_u16(),
                    attempts: attempt,
                };
            }
            Ok(response) => {
                let status = response.status();
                let answer = response.text().await.unwrap_or_default();
                let retry = status.is_server_error()
                    || status == reqwest::StatusCode::REQUEST_TIMEOUT
                    || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
                if !retry {
                    tracing::warn!(%url, %status, answer, "the backend refused the status callback");
                    return Delivery::Refused {
                        status: status.as_u16(),
                        answer,
                    };
                }
                last_error = format!("{status}: {answer}");
            }
            Err(e) => last_error = e.to_string(),
        }
        tracing::info!(%url, attempt, attempts, error = %last_error, "status callback failed");
    }
    tracing::warn!(%url, attempts, error = %last_error, "gave up the status callback");
    Delivery::GaveUp {
        attempts,
        last_error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_urls() {
        assert_eq!(
            status_url("http://127.0.0.1:8080", "abc").unwrap().as_str(),
            "http://127.0.0.1:8080/api/studies/series/abc/status"
        );
        assert_eq!(
            status_url("http://h/base/", "a/b c").unwrap().as_str(),
            "http://h/base/api/studies/series/a%2Fb%20c/status"
        );
        assert!(status_url("not a url", "x").is_err());
    }
}
