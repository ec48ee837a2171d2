//! Domain errors to HTTP answers, in one place, for every area: one [`ApiError`], a `From`
//! for each use case's error. Every error answer is `{"error": "..."}` (plus, for an unknown
//! name, the list of those that exist). One status per kind of failure: the database or blob
//! storage unavailable is 503 everywhere, and a 5xx body says what failed and what to do,
//! never the underlying message (that is logged).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use datastore::StoreError;
use dicom_series::{
    AddOrganizationError, FindSeriesError, PredictError, ReportError, TransitionError,
};
use inference::{FeedbackError, FolderError, InferError, Refused};
use serde::Serialize;

use crate::catalogue::SwitchError;

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
    /// What exists, when a name was unknown: `(key, names)`, e.g. `("known", [...])`.
    pub list: Option<(&'static str, Vec<String>)>,
    /// For the log only: the underlying failure of a 5xx.
    pub detail: Option<String>,
    /// Sent as `Retry-After` (a 503 of overload).
    pub retry_after: Option<std::time::Duration>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            list: None,
            detail: None,
            retry_after: None,
        }
    }

    fn with_list(mut self, key: &'static str, names: Vec<String>) -> Self {
        self.list = Some((key, names));
        self
    }

    /// 503: a store the request needs is unavailable; the reason is logged, not answered.
    pub fn unavailable(what: &str, detail: impl std::fmt::Display) -> Self {
        let mut error = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{what} is unavailable; try again in a moment"),
        );
        error.detail = Some(detail.to_string());
        error
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 413: the body (of `length` bytes, when declared) is over `limit`.
    pub fn too_large(length: Option<usize>, limit: usize) -> Self {
        let message = match length {
            Some(length) => format!("the body is {length} bytes, over the limit of {limit} bytes"),
            None => format!("the body is over the limit of {limit} bytes"),
        };
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }

    /// 415: the body is not declared as JSON.
    pub fn not_json() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be JSON, sent with Content-Type: application/json",
        )
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
        if let Some(detail) = &self.detail {
            tracing::error!(status = %self.status, %detail, "the underlying failure");
        }
        let list = self
            .list
            .as_ref()
            .map(|(key, names)| (*key, names.as_slice()));
        let mut response = error_response(self.status, &self.message, list);
        if let Some(wait) = self.retry_after {
            response.headers_mut().insert(
                actix_web::http::header::RETRY_AFTER,
                wait.as_secs().max(1).into(),
            );
        }
        response
    }
}

/// Refusals logged per second at most; the rest are counted into the next line logged.
const REFUSALS_LOGGED_PER_SECOND: u32 = 10;

static REFUSALS: RateLimit = RateLimit::new(REFUSALS_LOGGED_PER_SECOND);

/// At most `per_second` lines a second; the next line logged says how many were skipped.
struct RateLimit {
    per_second: u32,
    /// (the second, lines logged in it, lines skipped since the last one logged)
    window: std::sync::Mutex<(u64, u32, u64)>,
}

impl RateLimit {
    const fn new(per_second: u32) -> Self {
        Self {
            per_second,
            window: std::sync::Mutex::new((0, 0, 0)),
        }
    }

    /// `Some(lines skipped before this one)` when this line may be logged.
    fn admit(&self) -> Option<u64> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if window.0 != now {
            window.0 = now;
            window.1 = 0;
        }
        if window.1 >= self.per_second {
            window.2 += 1;
            return None;
        }
        window.1 += 1;
        Some(std::mem::take(&mut window.2))
    }
}

/// Every error answer of the API: logged (refusals at most a few a second), `{"error": message}` plus an optional list under
/// its own key (e.g. `"known": [...]`), and `WWW-Authenticate: Bearer` on a 401.
pub fn error_response(
    status: StatusCode,
    message: &str,
    list: Option<(&str, &[String])>,
) -> HttpResponse {
    // A refusal is the client's business (or, for 503, load): logged, but a flood of them
    // must not flood the log. A server fault is logged every time, once.
    if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
        tracing::error!(%status, error = %message, "request failed");
    } else if let Some(suppressed) = REFUSALS.admit() {
        if status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::warn!(%status, error = %message, suppressed, "request refused");
        } else {
            tracing::info!(%status, error = %message, suppressed, "request refused");
        }
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
            InferError::Storage(detail) => {
                return ApiError::unavailable("storage (database or blobs)", detail);
            }
        };
        ApiError::new(status, error.to_string())
    }
}

/// 503 with `Retry-After`, decided before the body was read.
impl From<Refused> for ApiError {
    fn from(refused: Refused) -> Self {
        let mut error = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, refused.to_string());
        error.retry_after = Some(refused.retry_after());
        error
    }
}

impl From<FolderError> for ApiError {
    fn from(error: FolderError) -> Self {
        let status = match &error {
            FolderError::Invalid { .. } => StatusCode::BAD_REQUEST,
            FolderError::AlreadyExists(_)
            | FolderError::DefaultFolder(_)
            | FolderError::BatchFull(_) => StatusCode::CONFLICT,
            FolderError::NotFound(_) => StatusCode::NOT_FOUND,
            FolderError::Forbidden(_) => StatusCode::FORBIDDEN,
            FolderError::Storage(detail) => {
                return ApiError::unavailable("storage (database or blobs)", detail);
            }
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
            FeedbackError::Storage(detail) => {
                return ApiError::unavailable("the database", detail);
            }
        };
        ApiError::new(status, error.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        ApiError::unavailable("the database", error)
    }
}

impl From<dicom_series::StoreError> for ApiError {
    fn from(error: dicom_series::StoreError) -> Self {
        ApiError::unavailable("the database", error)
    }
}

impl From<PredictError> for ApiError {
    fn from(error: PredictError) -> Self {
        let message = error.to_string();
        match error {
            PredictError::Invalid(_) => Self::bad_request(message),
            PredictError::UnknownOrganization { .. } => Self::new(StatusCode::NOT_FOUND, message),
            PredictError::NotAMember(_) => Self::new(StatusCode::FORBIDDEN, message),
            PredictError::UnknownModelType { known, .. } => {
                Self::new(StatusCode::BAD_REQUEST, message).with_list("known", known)
            }
            PredictError::NotQueued { .. } => Self::new(StatusCode::SERVICE_UNAVAILABLE, message),
            PredictError::Store(e) => e.into(),
        }
    }
}

impl From<dicom_series::OrganizationAccessError> for ApiError {
    fn from(error: dicom_series::OrganizationAccessError) -> Self {
        use dicom_series::OrganizationAccessError as E;
        let message = error.to_string();
        match error {
            E::NotAMember(_) => Self::new(StatusCode::FORBIDDEN, message),
            E::Unknown { .. } => Self::new(StatusCode::NOT_FOUND, message),
            E::Store(e) => e.into(),
        }
    }
}

impl From<dicom_series::StudyError> for ApiError {
    fn from(error: dicom_series::StudyError) -> Self {
        use dicom_series::StudyError as E;
        match error {
            E::Invalid(e) => Self::bad_request(e.to_string()),
            E::Organization(e) => e.into(),
            // The DICOM server's failure is the answer: what failed and why.
            E::DicomServer(e) => Self::new(StatusCode::BAD_GATEWAY, e.to_string()),
            E::Store(e) => e.into(),
        }
    }
}

impl From<dicom_series::RetryError> for ApiError {
    fn from(error: dicom_series::RetryError) -> Self {
        use dicom_series::RetryError as E;
        match error {
            E::Find(e) => e.into(),
            E::NotFailed { .. } => Self::new(StatusCode::CONFLICT, error.to_string()),
            E::Predict(e) => e.into(),
        }
    }
}

impl From<ReportError> for ApiError {
    fn from(error: ReportError) -> Self {
        let message = error.to_string();
        match error {
            ReportError::SeriesNotFound(_) => Self::new(StatusCode::NOT_FOUND, message),
            ReportError::WrongMlApp { .. } => Self::new(StatusCode::FORBIDDEN, message),
            ReportError::Rejected(
                TransitionError::StaleRun { .. }
                | TransitionError::NoRun
                | TransitionError::ModelTypeMismatch { .. }
                | TransitionError::NotSent { .. }
                | TransitionError::AlreadyReported { .. }
                | TransitionError::RunFinished { .. },
            ) => Self::new(StatusCode::CONFLICT, message),
            ReportError::Store(e) => e.into(),
        }
    }
}

impl From<FindSeriesError> for ApiError {
    fn from(error: FindSeriesError) -> Self {
        match error {
            FindSeriesError::NotFound(_) => Self::new(StatusCode::NOT_FOUND, error.to_string()),
            FindSeriesError::Store(e) => e.into(),
        }
    }
}

impl From<AddOrganizationError> for ApiError {
    fn from(error: AddOrganizationError) -> Self {
        let message = error.to_string();
        match error {
            AddOrganizationError::Invalid(_) => Self::bad_request(message),
            AddOrganizationError::DuplicateName(_) => Self::new(StatusCode::CONFLICT, message),
            AddOrganizationError::Store(e) => e.into(),
        }
    }
}

impl From<SwitchError> for ApiError {
    fn from(error: SwitchError) -> Self {
        use pipeline::{LoadCatalogueError, OpenVersionError};
        let message = error.to_string();
        match error {
            SwitchError::List(detail) => Self::unavailable("the catalogue store", detail),
            SwitchError::NotRecorded { reason, .. } => {
                let mut error = Self::new(StatusCode::SERVICE_UNAVAILABLE, message);
                error.detail = Some(reason);
                error
            }
            SwitchError::Load(LoadCatalogueError::Open(open)) => match open {
                OpenVersionError::NotFound { available, .. } => {
                    Self::new(StatusCode::NOT_FOUND, message)
                        .with_list("available_versions", available)
                }
                OpenVersionError::WrongKey { .. } => Self::new(StatusCode::CONFLICT, message),
                OpenVersionError::Invalid { .. } => {
                    Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
                }
                OpenVersionError::Storage(detail) => {
                    Self::unavailable("the catalogue store", detail)
                }
            },
            SwitchError::Load(LoadCatalogueError::Record(detail)) => {
                Self::unavailable("the database", detail)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_refusals_logs_a_few_lines_a_second_and_counts_the_rest() {
        let limit = RateLimit::new(3);
        let admitted: Vec<Option<u64>> = (0..10).map(|_| limit.admit()).collect();
        // Within one second (the test may straddle two: then the count restarts).
        let logged = admitted.iter().filter(|a| a.is_some()).count();
        assert!((3..=6).contains(&logged), "{admitted:?}");
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert!(limit.admit().is_some_and(|skipped| skipped > 0));
    }
}
