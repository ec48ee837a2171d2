//! DICOM series predictions (contract 2.1): JSON to the domain and back, and the domain's
//! errors to statuses, in one place ([`ApiError`]).
//!
//! - `POST /api/studies/series/predict`: ask for a prediction; `202` with the series.
//! - `PUT /api/studies/series/{series_id}/status`: the ML app reports, with
//!   `Authorization: Bearer <its callback token>`.
//! - `GET /api/studies/series/{series_id}`: state, model type, result, attempts, last error,
//!   times.
//!
//! The organizations' admin routes are in [`super::admin`], with every admin route.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, post, put, web};
use chrono::{DateTime, Utc};
use dicom_series::{
    PredictDecision, PredictRequest, PredictionService, ReportedStatus, RunId, Series, SeriesId,
    StatusReport,
};
use secrecy::{ExposeSecret, SecretString};

use super::auth::{bearer_token, same_secret};
use super::body;
use super::error::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What the series routes need.
pub struct SeriesApi {
    service: Arc<PredictionService>,
    /// Each configured ML app's name and callback token.
    ml_app_tokens: Vec<(String, SecretString)>,
}

impl SeriesApi {
    pub(super) fn service(&self) -> &PredictionService {
        &self.service
    }

    pub fn new(
        service: Arc<PredictionService>,
        ml_app_tokens: Vec<(String, SecretString)>,
    ) -> Self {
        Self {
            service,
            ml_app_tokens,
        }
    }

    /// The ML app whose callback token the request carries.
    fn calling_ml_app(&self, request: &HttpRequest) -> Result<&str, ApiError> {
        let given = bearer_token(request).ok_or_else(|| {
            ApiError::unauthorized(
                "send the ML app's callback token as Authorization: Bearer <token>",
            )
        })?;
        // Every token is compared, so the time taken says nothing about which one matched.
        let mut caller = None;
        for (name, token) in &self.ml_app_tokens {
            if same_secret(given, token.expose_secret()) {
                caller = Some(name.as_str());
            }
        }
        caller.ok_or_else(|| ApiError::unauthorized("the callback token is not valid"))
    }
}

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(predict)
        .service(report_status)
        .service(get_series);
}

// ---- wire shapes ----

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PredictBody {
    #[schema(min_length = 1)]
    organization: String,
    /// A DICOM UID: digits separated by dots, at most 64 characters.
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)*$", max_length = 64)]
    study_instance_uid: String,
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)*$", max_length = 64)]
    series_instance_uid: String,
    model_type: String,
    #[serde(default)]
    predict_again: bool,
    /// Free text passed on to the ML app: at most 64 characters, no control characters.
    #[serde(default)]
    #[schema(max_length = 64, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    body_part: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PredictAnswer {
    #[schema(value_type = String, format = Uuid)]
    series_id: SeriesId,
    #[schema(value_type = String)]
    state: &'static str,
    model_type: Option<String>,
    #[schema(value_type = Option<String>, format = Uuid)]
    run_id: Option<RunId>,
    /// `queued`: a new run was queued; `already_predicted`: answered from the stored result;
    /// `already_running`: a run is queued or in progress and is not sent twice.
    #[schema(value_type = String)]
    decision: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    result: Option<Value>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusBody {
    status: String,
    model_type: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    result: Value,
    run_id: Option<String>,
}

/// A series as `GET` shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeriesView {
    #[schema(value_type = String, format = Uuid)]
    series_id: SeriesId,
    organization_id: String,
    study_instance_uid: String,
    series_instance_uid: String,
    #[schema(value_type = String)]
    state: &'static str,
    model_type: Option<String>,
    body_part: Option<String>,
    #[schema(value_type = Option<Object>)]
    result: Option<Value>,
    #[schema(value_type = Option<String>, format = Uuid)]
    run_id: Option<RunId>,
    ml_app: Option<String>,
    attempts: u32,
    last_error: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    requested_at: Option<DateTime<Utc>>,
    started_at: Option<DateTime<Utc>>,
    submitted_at: Option<DateTime<Utc>>,
    report_deadline: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

impl From<Series> for SeriesView {
    fn from(series: Series) -> Self {
        let run = series.run.as_ref();
        Self {
            series_id: series.id,
            organization_id: series.organization_id.to_string(),
            study_instance_uid: series.key.study_instance_uid.clone(),
            series_instance_uid: series.key.series_instance_uid.clone(),
            state: series.state.as_str(),
            model_type: run.map(|r| r.model_type.clone()),
            body_part: run.and_then(|r| r.body_part.clone()),
            result: series.result.clone(),
            run_id: run.map(|r| r.id),
            ml_app: run.map(|r| r.ml_app.clone()),
            attempts: run.map_or(0, |r| r.attempts),
            last_error: run.and_then(|r| r.last_error.clone()),
            created_at: series.created_at,
            updated_at: series.updated_at,
            requested_at: run.map(|r| r.requested_at),
            started_at: run.and_then(|r| r.started_at),
            submitted_at: run.and_then(|r| r.submitted_at),
            report_deadline: run.and_then(|r| r.report_deadline),
            finished_at: run.and_then(|r| r.finished_at),
        }
    }
}

// ---- handlers ----

#[utoipa::path(
    request_body = PredictBody,
    responses(
        (status = 202, body = PredictAnswer, description = "Queued, or answered from the stored result"),
        (status = 400, description = "Invalid body or unknown model type (lists the known ones)"),
        (status = 404, description = "Unknown organization (lists the known ones)"),
    )
)]
#[post("/api/studies/series/predict")]
pub async fn predict(
    api: web::Data<SeriesApi>,
    body: body::Json<PredictBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let outcome = api
        .service
        .predict(&PredictRequest {
            organization: body.organization,
            study_instance_uid: body.study_instance_uid,
            series_instance_uid: body.series_instance_uid,
            model_type: body.model_type,
            predict_again: body.predict_again,
            body_part: body.body_part,
        })
        .await?;
    let series = outcome.series;
    let decision = match outcome.decision {
        PredictDecision::Queued => "queued",
        PredictDecision::AlreadyPredicted => "already_predicted",
        PredictDecision::AlreadyRunning => "already_running",
    };
    Ok(HttpResponse::Accepted().json(PredictAnswer {
        series_id: series.id,
        state: series.state.as_str(),
        model_type: series.model_type().map(str::to_string),
        run_id: series.run.as_ref().map(|r| r.id),
        decision,
        result: series.result,
    }))
}

/// Authenticated before the body is even read: without the ML app's token, nothing is
/// looked at and nothing changes.
#[utoipa::path(
    request_body = StatusBody,
    params(("series_id" = String, Path, description = "The series id answered by predict")),
    responses(
        (status = 200, body = SeriesView),
        (status = 400, description = "Unknown status or missing runId"),
        (status = 401, description = "No or wrong ML app credentials; nothing changed"),
        (status = 403, description = "The run belongs to another ML app"),
        (status = 404, description = "Unknown series"),
        (status = 409, description = "A run that is no longer current, or already finished"),
    ),
    security(("bearer" = []))
)]
#[put("/api/studies/series/{series_id}/status")]
pub async fn report_status(
    api: web::Data<SeriesApi>,
    request: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let caller = api.calling_ml_app(&request)?;
    let series_id = parse_series_id(&path)?;
    let body: StatusBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the body is not a status report: {e}")))?;
    let status: ReportedStatus = body
        .status
        .parse()
        .map_err(|e: dicom_series::UnknownStatus| ApiError::bad_request(e.to_string()))?;
    let run_id = body
        .run_id
        .as_deref()
        .ok_or_else(|| {
            ApiError::bad_request(
                "runId is missing: report the runId the prediction request carried",
            )
        })?
        .parse::<RunId>()
        .map_err(|_| ApiError::bad_request("runId is not a UUID"))?;
    let (series, _) = api
        .service
        .report(
            caller,
            series_id,
            StatusReport {
                run_id,
                status,
                model_type: body.model_type,
                result: body.result,
            },
        )
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "seriesId": series.id,
        "state": series.state.as_str(),
    })))
}

#[utoipa::path(
    params(("series_id" = String, Path)),
    responses((status = 200, body = SeriesView), (status = 404, description = "Unknown series"))
)]
#[get("/api/studies/series/{series_id}")]
pub async fn get_series(
    api: web::Data<SeriesApi>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let series = api.service.find_series(parse_series_id(&path)?).await?;
    Ok(HttpResponse::Ok().json(SeriesView::from(series)))
}

/// A malformed id names no series: 404, like an unknown one.
fn parse_series_id(given: &str) -> Result<SeriesId, ApiError> {
    given.parse().map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("series {given:?} does not exist (a series id is a UUID)"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_series::PredictError;

    #[test]
    fn an_unknown_model_type_lists_the_known_ones_an_unknown_organization_does_not() {
        let error = ApiError::from(PredictError::UnknownModelType {
            given: "x".into(),
            known: vec!["a".into(), "b".into()],
        });
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            error.list,
            Some(("known", vec!["a".to_string(), "b".to_string()]))
        );
        let error = ApiError::from(PredictError::UnknownOrganization { given: "x".into() });
        assert_eq!(error.status, StatusCode::NOT_FOUND);
        assert_eq!(error.list, None, "other organizations are never named");
    }
}
