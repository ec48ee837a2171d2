//! The ML app client (contract 2.4): [`HttpMlApp`] sends
//! `POST {ml_app}/predict?seriesId=&modality=&modelType=&bodyPart=&runId=` (`bodyPart` left
//! out when there is none) with the series ZIP as the multipart field `file` (file name
//! `archive.file_name`, content type `application/zip`), streamed from disk with a bounded
//! buffer: the archive is never read into memory.
//!
//! Any 2xx answer means the ML app accepted the job (its result comes later through the
//! status callback). Errors ([`SubmitError`]): connection refused or reset, timeouts, 408,
//! 429 and 5xx are `Transient`; other 4xx (and other non-2xx answers) are `Permanent` and
//! carry the ML app's answer; a missing archive file is `Permanent`.
//!
//! The request carries the W3C trace context of the job attempt (`traceparent`; see the
//! `telemetry` crate).

use std::time::Duration;

use async_trait::async_trait;
use dicom_series::ports::{Archive, MlApp, MlAppEndpoint, PredictionRequest, SubmitError};
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use telemetry::WithTraceContext;
use tokio_util::io::ReaderStream;

/// Read size of the upload stream.
const UPLOAD_CHUNK_BYTES: usize = 256 * 1024;

/// Timeouts of an [`HttpMlApp`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpMlAppOptions {
    /// Time to establish a connection.
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes of the answer, reset after each read.
    pub read_timeout: Duration,
    /// Longest time for the whole request, upload included (a ZIP can be gigabytes: keep
    /// it generous).
    pub total_timeout: Duration,
}

impl Default for HttpMlAppOptions {
    fn default() -> Self {
        HttpMlAppOptions {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(120),
            total_timeout: Duration::from_secs(30 * 60),
        }
    }
}

/// See the [crate documentation](crate). Cheap to clone (shares one HTTP client).
#[derive(Clone, Debug)]
pub struct HttpMlApp {
    client: reqwest::Client,
    options: HttpMlAppOptions,
}

impl HttpMlApp {
    pub fn new(options: HttpMlAppOptions) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .read_timeout(options.read_timeout)
            .build()?;
        Ok(HttpMlApp { client, options })
    }
}

/// The query of `POST /predict`, in order; `bodyPart` only when present.
pub fn predict_query(request: &PredictionRequest) -> Vec<(&'static str, String)> {
    let mut query = vec![
        ("seriesId", request.series_id.to_string()),
        ("modality", request.modality.clone()),
        ("modelType", request.model_type.clone()),
    ];
    if let Some(body_part) = &request.body_part {
        query.push(("bodyPart", body_part.clone()));
    }
    query.push(("runId", request.run_id.to_string()));
    query
}

#[async_trait]
impl MlApp for HttpMlApp {
    async fn submit(
        &self,
        endpoint: &MlAppEndpoint,
        request: &PredictionRequest,
        archive: &Archive,
    ) -> Result<(), SubmitError> {
        let url = format!("{}/predict", endpoint.url.trim_end_matches('/'));
        let file = tokio::fs::File::open(&archive.path).await.map_err(|e| {
            tracing::warn!(path = %archive.path.display(), error = %e, "cannot open the series archive");
            SubmitError::Permanent(format!(
                "cannot open the series archive: {}",
                dicom_series::io_reason(&e)
            ))
        })?;
        let length = file
            .metadata()
            .await
            .map_err(|e| {
                SubmitError::Permanent(format!(
                    "cannot read the size of {}: {e}",
                    archive.path.display()
                ))
            })?
            .len();
        let body =
            reqwest::Body::wrap_stream(ReaderStream::with_capacity(file, UPLOAD_CHUNK_BYTES));
        let part = Part::stream_with_length(body, length)
            .file_name(archive.file_name.clone())
            .mime_str("application/zip")
            .map_err(|e| SubmitError::Permanent(format!("invalid content type: {e}")))?;
        let form = Form::new().part("file", part);
        let response = self
            .client
            .post(&url)
            .query(&predict_query(request))
            .multipart(form)
            .with_trace_context()
            .timeout(self.options.total_timeout)
            .send()
            .await
            .map_err(|e| transport_error(&url, &e))?;
        let status = response.status();
        if status.is_success() {
            tracing::debug!(%url, series_id = %request.series_id, run_id = %request.run_id, %status, "the ML app accepted the series");
            return Ok(());
        }
        let answer = response.text().await.unwrap_or_default();
        let answer: String = answer.trim().chars().take(1000).collect();
        let message = format!(
            "the ML app at {} answered {status} to the prediction request for series {} ({}, {}): {}",
            endpoint.url,
            request.series_id,
            request.modality,
            request.model_type,
            if answer.is_empty() {
                "(no answer text)"
            } else {
                answer.as_str()
            }
        );
        if status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
        {
            Err(SubmitError::Transient(message))
        } else {
            Err(SubmitError::Permanent(message))
        }
    }
}

fn transport_error(url: &str, error: &reqwest::Error) -> SubmitError {
    let mut detail = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        detail.push_str(": ");
        detail.push_str(&inner.to_string());
        source = inner.source();
    }
    if error.is_builder() {
        SubmitError::Permanent(format!("the ML app URL {url} is not usable: {detail}"))
    } else if error.is_timeout() {
        SubmitError::Transient(format!("the ML app at {url} timed out: {detail}"))
    } else if error.is_connect() {
        SubmitError::Transient(format!("cannot connect to the ML app at {url}: {detail}"))
    } else {
        SubmitError::Transient(format!(
            "sending the series to the ML app at {url} failed: {detail}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_part_is_left_out_when_absent() {
        let mut request = PredictionRequest {
            series_id: uuid_of(1),
            run_id: uuid_of(2),
            modality: "CT".into(),
            model_type: "lung_tumor_segmentation".into(),
            body_part: None,
        };
        let names: Vec<_> = predict_query(&request).iter().map(|(n, _)| *n).collect();
        assert_eq!(names, vec!["seriesId", "modality", "modelType", "runId"]);
        request.body_part = Some("CHEST".into());
        let query = predict_query(&request);
        assert_eq!(query[3], ("bodyPart", "CHEST".to_string()));
        assert_eq!(query[0].1, request.series_id.to_string());
    }

    fn uuid_of(n: u128) -> uuid::Uuid {
        uuid::Uuid::from_u128(n)
    }
}
