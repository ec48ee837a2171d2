//! Domain errors to HTTP answers, in one place. Every error answer is `{"error": "..."}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use inference::{FeedbackError, FolderError, InferError};
use serde::Serialize;

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What was wrong, and what to do about it.
    pub error: String,
}

/// An error answer: a status and a message for the client.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        error_response(self.status, &self.message, None)
    }
}

/// Every error answer of the API: logged, `{"error": message}` plus an optional list under
/// its own key (e.g. `"known": [...]`), and `WWW-Authenticate: Bearer` on a 401.
pub fn error_response(
    status: StatusCode,
    message: &str,
    list: Option<(&str, &[String])>,
) -> HttpResponse {
    if status.is_server_error() {
        tracing::error!(%status, error = %message, "request failed");
    } else {
        tracing::info!(%status, error = %message, "request refused");
    }
    let mut body = serde_json::Map::new();
    body.insert("error".into(), message.into());
    if let Some((key, items)) = list {
        body.insert(key.into(), items.into());
    }
    let mut response = HttpResponse::build(status);
    if status == StatusCode::UNAUTHORIZED {
        response.insert_header((actix_web::http::header::WWW_AUTHENTICATE, "Bearer"));
    }
    response.json(body)
}

impl From<InferError> for ApiError {
    fn from(error: InferError) -> Self {
        let status = match &error {
            InferError::InvalidField { .. }
            | InferError::UnknownPipeline { .. }
            | InferError::BadImage(_) => StatusCode::BAD_REQUEST,
            InferError::UnsupportedImage(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            InferError::UnknownUser(_) | InferError::UnknownEmail(_) | InferError::NotFound(_) => {
                StatusCode::NOT_FOUND
            }
            InferError::Forbidden(_) => StatusCode::FORBIDDEN,
            InferError::Model(step) if step.is_timeout() => StatusCode::GATEWAY_TIMEOUT,
            InferError::Model(_) => StatusCode::BAD_GATEWAY,
            InferError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            InferError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, error.to_string())
    }
}

impl From<FolderError> for ApiError {
    fn from(error: FolderError) -> Self {
        let status = match &error {
            FolderError::InvalidName(_) | FolderError::Invalid { .. } => StatusCode::BAD_REQUEST,
            FolderError::AlreadyExists(_)
            | FolderError::DefaultFolder(_)
            | FolderError::BatchFull(_) => StatusCode::CONFLICT,
            FolderError::NotFound(_) => StatusCode::NOT_FOUND,
            FolderError::Forbidden(_) => StatusCode::FORBIDDEN,
            FolderError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, error.to_string())
    }
}

impl From<FeedbackError> for ApiError {
    fn from(error: FeedbackError) -> Self {
        let status = match &error {
            FeedbackError::Invalid { .. } => StatusCode::BAD_REQUEST,
            FeedbackError::NotFound(_) => StatusCode::NOT_FOUND,
            FeedbackError::Forbidden(_) => StatusCode::FORBIDDEN,
            FeedbackError::AlreadyVerified(_) => StatusCode::CONFLICT,
            FeedbackError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, error.to_string())
    }
}

/// Body errors of actix's JSON extractor (too large, not JSON, wrong content type).
pub fn json_error(error: actix_web::error::JsonPayloadError, limit: usize) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as E;
    let api = match &error {
        E::OverflowKnownLength { length, limit } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is {length} bytes, over the limit of {limit} bytes"),
        ),
        E::Overflow { .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is over the limit of {limit} bytes"),
        ),
        E::ContentType => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be JSON, sent with Content-Type: application/json",
        ),
        E::Deserialize(e) => ApiError::bad_request(format!("the body is not valid JSON: {e}")),
        other => ApiError::bad_request(format!("could not read the body: {other}")),
    };
    api.into()
}
