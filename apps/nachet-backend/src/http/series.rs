//! DICOM series predictions (contract 2.1): JSON to the domain and back, and the domain's
//! errors to statuses, in one place ([`ApiError`]).
//!
//! - `POST /api/studies/series/predict`: ask for a prediction; `202` with the series.
//! - `PUT /api/studies/series/{series_id}/status`: the ML app reports, with
//!   `Authorization: Bearer <its callback token>`.
//! - `GET /api/studies/series/{series_id}`: state, model type, result, attempts, last error,
//!   times.
//! - `POST /api/studies/series/{series_id}/retry`: a failed series, run again.
//! - `GET /api/studies?patientId=&organization=`: a patient's studies (QIDO-RS).
//! - `GET /api/studies/{study}/series?organization=`: a study's series, each with its
//!   prediction state (contract 2.6).
//! - `GET /api/jobs`: every series and its current run, paged (administrators).
//!
//! Every route but the ML app's callback is a [`SeriesCaller`]'s, limited to their
//! organizations ([`super::series_access`]).
//!
//! The organizations' admin routes are in [`super::admin`], with every admin route.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, post, put, web};
use chrono::{DateTime, Utc};
use dicom_series::ports::StudyListing;
use dicom_series::{
    OrganizationId, PredictDecision, PredictOutcome, PredictRequest, PredictionService,
    PredictionState, ReportedStatus, RunId, Series, SeriesFilter, SeriesId, StatusReport,
    StudySeries, StudyService,
};
use secrecy::{ExposeSecret, SecretString};

use super::auth::{bearer_token, same_secret};
use super::body;
use super::error::{ApiError, ErrorBody};
use super::series_access::{SeriesAdmin, SeriesCaller};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What the series routes need.
pub struct SeriesApi {
    service: Arc<PredictionService>,
    studies: StudyService,
    /// Each configured ML app's name and callback token.
    ml_app_tokens: Vec<(String, SecretString)>,
}

impl SeriesApi {
    pub(super) fn service(&self) -> &PredictionService {
        &self.service
    }

    pub fn new(
        service: Arc<PredictionService>,
        studies: StudyService,
        ml_app_tokens: Vec<(String, SecretString)>,
    ) -> Self {
        Self {
            service,
            studies,
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
        .service(get_series)
        .service(retry)
        .service(find_studies)
        .service(study_series)
        .service(jobs);
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
        (status = 400, body = ErrorBody, description = "Invalid body or unknown model type (lists the known ones)"),
        (status = 401, body = ErrorBody, description = "No valid access token"),
        (status = 403, body = ErrorBody, description = "Not a member of that organization"),
        (status = 404, body = ErrorBody, description = "None of the caller's organizations has that name"),
        (status = 503, body = ErrorBody, description = "The database is unavailable"),
    ),
    security((), ("bearer" = []))
)]
#[post("/api/studies/series/predict")]
pub async fn predict(
    api: web::Data<SeriesApi>,
    caller: SeriesCaller,
    body: body::Json<PredictBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let outcome = api
        .service
        .predict(
            &caller.0,
            &PredictRequest {
                organization: body.organization,
                study_instance_uid: body.study_instance_uid,
                series_instance_uid: body.series_instance_uid,
                model_type: body.model_type,
                predict_again: body.predict_again,
                body_part: body.body_part,
            },
        )
        .await?;
    Ok(HttpResponse::Accepted().json(PredictAnswer::from(outcome)))
}

impl From<PredictOutcome> for PredictAnswer {
    fn from(outcome: PredictOutcome) -> Self {
        let series = outcome.series;
        let decision = match outcome.decision {
            PredictDecision::Queued => "queued",
            PredictDecision::AlreadyPredicted => "already_predicted",
            PredictDecision::AlreadyRunning => "already_running",
        };
        PredictAnswer {
            series_id: series.id,
            state: series.state.as_str(),
            model_type: series.model_type().map(str::to_string),
            run_id: series.run.as_ref().map(|r| r.id),
            decision,
            result: series.result,
        }
    }
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
    responses(
        (status = 200, body = SeriesView),
        (status = 401, body = ErrorBody, description = "No valid access token"),
        (status = 404, body = ErrorBody, description = "No series of that id in the caller's organizations"),
        (status = 503, body = ErrorBody, description = "The database is unavailable"),
    ),
    security((), ("bearer" = []))
)]
#[get("/api/studies/series/{series_id}")]
pub async fn get_series(
    api: web::Data<SeriesApi>,
    caller: SeriesCaller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let series = api
        .service
        .find_series(&caller.0, parse_series_id(&path)?)
        .await?;
    Ok(HttpResponse::Ok().json(SeriesView::from(series)))
}

/// Runs a failed series again, with the model type and body part of its failed run.
#[utoipa::path(
    params(("series_id" = String, Path)),
    responses(
        (status = 202, body = PredictAnswer, description = "Queued again"),
        (status = 401, body = ErrorBody, description = "No valid access token"),
        (status = 404, body = ErrorBody, description = "No series of that id in the caller's organizations"),
        (status = 409, body = ErrorBody, description = "The series is not failed"),
        (status = 503, body = ErrorBody, description = "The database is unavailable"),
    ),
    security((), ("bearer" = []))
)]
#[post("/api/studies/series/{series_id}/retry")]
pub async fn retry(
    api: web::Data<SeriesApi>,
    caller: SeriesCaller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let outcome = api
        .service
        .retry(&caller.0, parse_series_id(&path)?)
        .await?;
    Ok(HttpResponse::Accepted().json(PredictAnswer::from(outcome)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StudiesQuery {
    /// The patient's id (PatientID, 0010,0020): no wildcards.
    #[param(
        min_length = 1,
        max_length = 64,
        pattern = r"^[^*?\\\x00-\x1f\x7f-\x9f]*[^*?\\\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\x00-\x1f\x7f-\x9f][^*?\\\x00-\x1f\x7f-\x9f]*$"
    )]
    patient_id: String,
    /// One of the caller's organizations, by name or id.
    #[param(min_length = 1)]
    organization: String,
}

/// A study as the study search answers it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StudyView {
    study_instance_uid: String,
    patient_id: Option<String>,
    patient_name: Option<String>,
    /// `YYYYMMDD`.
    study_date: Option<String>,
    study_description: Option<String>,
    accession_number: Option<String>,
    modalities: Vec<String>,
    number_of_series: Option<u32>,
    number_of_instances: Option<u32>,
}

impl From<StudyListing> for StudyView {
    fn from(study: StudyListing) -> Self {
        Self {
            study_instance_uid: study.study_instance_uid,
            patient_id: study.patient_id,
            patient_name: study.patient_name,
            study_date: study.study_date,
            study_description: study.study_description,
            accession_number: study.accession_number,
            modalities: study.modalities,
            number_of_series: study.number_of_series,
            number_of_instances: study.number_of_instances,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StudiesAnswer {
    studies: Vec<StudyView>,
}

/// A patient's studies on one of the caller's organizations' DICOM server (QIDO-RS).
#[utoipa::path(
    params(StudiesQuery),
    responses(
        (status = 200, body = StudiesAnswer),
        (status = 400, body = ErrorBody, description = "No or a malformed patientId"),
        (status = 401, body = ErrorBody, description = "No valid access token"),
        (status = 403, body = ErrorBody, description = "Not a member of that organization"),
        (status = 404, body = ErrorBody, description = "None of the caller's organizations has that name"),
        (status = 502, body = ErrorBody, description = "The DICOM server failed or refused; the message says why"),
        (status = 503, body = ErrorBody, description = "The database is unavailable"),
    ),
    security((), ("bearer" = []))
)]
#[get("/api/studies")]
pub async fn find_studies(
    api: web::Data<SeriesApi>,
    caller: SeriesCaller,
    query: web::Query<StudiesQuery>,
) -> Result<HttpResponse, ApiError> {
    let studies = api
        .studies
        .search_studies(&caller.0, &query.organization, &query.patient_id)
        .await?;
    Ok(HttpResponse::Ok().json(StudiesAnswer {
        studies: studies.into_iter().map(StudyView::from).collect(),
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StudySeriesQuery {
    /// One of the caller's organizations, by name or id.
    #[param(min_length = 1)]
    organization: String,
}

/// A series of a study: as the DICOM server lists it, with its prediction.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StudySeriesView {
    series_instance_uid: String,
    /// False for a series predicted before that the DICOM server no longer lists.
    in_dicom_server: bool,
    modality: Option<String>,
    series_number: Option<i64>,
    series_description: Option<String>,
    number_of_instances: Option<u32>,
    body_part_examined: Option<String>,
    /// `YYYYMMDD`.
    series_date: Option<String>,
    /// Our id of the series; none until a prediction is asked for.
    #[schema(value_type = Option<String>, format = Uuid)]
    series_id: Option<SeriesId>,
    /// `not_started` for a series never predicted, else the series' state.
    #[schema(value_type = String)]
    state: &'static str,
    model_type: Option<String>,
    #[schema(value_type = Option<Object>)]
    result: Option<Value>,
    attempts: u32,
    last_error: Option<String>,
    requested_at: Option<DateTime<Utc>>,
    submitted_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

impl From<StudySeries> for StudySeriesView {
    fn from(item: StudySeries) -> Self {
        let in_dicom_server = item.listing.is_some();
        let listing = item.listing.unwrap_or_default();
        let series = item.series.as_ref();
        let run = series.and_then(|s| s.run.as_ref());
        Self {
            series_instance_uid: item.series_instance_uid,
            in_dicom_server,
            modality: listing.modality,
            series_number: listing.series_number,
            series_description: listing.series_description,
            number_of_instances: listing.number_of_instances,
            body_part_examined: listing.body_part,
            series_date: listing.series_date,
            series_id: series.map(|s| s.id),
            state: series.map_or("not_started", |s| s.state.as_str()),
            model_type: run.map(|r| r.model_type.clone()),
            result: series.and_then(|s| s.result.clone()),
            attempts: run.map_or(0, |r| r.attempts),
            last_error: run.and_then(|r| r.last_error.clone()),
            requested_at: run.map(|r| r.requested_at),
            submitted_at: run.and_then(|r| r.submitted_at),
            finished_at: run.and_then(|r| r.finished_at),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StudySeriesAnswer {
    study_instance_uid: String,
    series: Vec<StudySeriesView>,
}

/// A study's series on one of the caller's organizations' DICOM server (QIDO-RS), each
/// with its prediction state (contract 2.6); a frontend polls it.
#[utoipa::path(
    params(
        ("study" = String, Path, description = "The Study Instance UID", pattern = r"^[0-9]+(\.[0-9]+)*$", max_length = 64),
        StudySeriesQuery,
    ),
    responses(
        (status = 200, body = StudySeriesAnswer),
        (status = 400, body = ErrorBody, description = "Not a DICOM UID"),
        (status = 401, body = ErrorBody, description = "No valid access token"),
        (status = 403, body = ErrorBody, description = "Not a member of that organization"),
        (status = 404, body = ErrorBody, description = "None of the caller's organizations has that name"),
        (status = 502, body = ErrorBody, description = "The DICOM server failed or refused; the message says why"),
        (status = 503, body = ErrorBody, description = "The database is unavailable"),
    ),
    security((), ("bearer" = []))
)]
#[get("/api/studies/{study}/series")]
pub async fn study_series(
    api: web::Data<SeriesApi>,
    caller: SeriesCaller,
    path: web::Path<String>,
    query: web::Query<StudySeriesQuery>,
) -> Result<HttpResponse, ApiError> {
    let study = path.into_inner();
    let series = api
        .studies
        .series_of_study(&caller.0, &query.organization, &study)
        .await?;
    Ok(HttpResponse::Ok().json(StudySeriesAnswer {
        study_instance_uid: study.trim().to_owned(),
        series: series.into_iter().map(StudySeriesView::from).collect(),
    }))
}

/// Jobs per page unless asked otherwise, and at most.
const JOBS_PER_PAGE: u64 = 50;
const JOBS_PER_PAGE_MAX: u64 = 500;
const JOBS_OFFSET_MAX: u64 = 1_000_000_000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct JobsQuery {
    /// Only series in this state.
    #[param(value_type = Option<String>, pattern = "^(not_started|in_progress|completed|failed|not_supported)$")]
    state: Option<String>,
    /// Only this organization's (its id).
    #[param(value_type = Option<String>, format = Uuid)]
    organization: Option<String>,
    /// Page size (default 50, at most 500).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u64>,
    /// Series skipped (most recently updated first).
    #[param(minimum = 0, maximum = 1_000_000_000)]
    offset: Option<u64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobsAnswer {
    jobs: Vec<SeriesView>,
    /// The `offset` of the next page; none on the last page.
    next_offset: Option<u64>,
}

/// Every series and its current run (attempts, last error, times), most recently updated
/// first, for administrators.
#[utoipa::path(
    params(JobsQuery),
    responses(
        (status = 200, body = JobsAnswer),
        (status = 400, body = ErrorBody, description = "An unknown state, a malformed organization id or page"),
        (status = 401, body = ErrorBody, description = "No valid admin token or access token"),
        (status = 403, body = ErrorBody, description = "The access token does not carry the admin role"),
        (status = 503, body = ErrorBody, description = "The database is unavailable"),
    ),
    security(("bearer" = []))
)]
#[get("/api/jobs")]
pub async fn jobs(
    _admin: SeriesAdmin,
    api: web::Data<SeriesApi>,
    query: web::Query<JobsQuery>,
) -> Result<HttpResponse, ApiError> {
    let state = query
        .state
        .as_deref()
        .map(|s| {
            s.parse::<PredictionState>()
                .map_err(|e| ApiError::bad_request(format!("state: {e}")))
        })
        .transpose()?;
    let organization = query
        .organization
        .as_deref()
        .map(|o| {
            o.parse::<OrganizationId>().map_err(|_| {
                ApiError::bad_request(format!("organization: {o:?} is not an organization id"))
            })
        })
        .transpose()?;
    let limit = query.limit.unwrap_or(JOBS_PER_PAGE);
    if !(1..=JOBS_PER_PAGE_MAX).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit: {limit} is not from 1 to {JOBS_PER_PAGE_MAX}"
        )));
    }
    let offset = query.offset.unwrap_or(0);
    if offset > JOBS_OFFSET_MAX {
        return Err(ApiError::bad_request(format!(
            "offset: {offset} is over {JOBS_OFFSET_MAX}"
        )));
    }
    let mut found = api
        .service
        .list_series(&SeriesFilter {
            organization,
            study_instance_uid: None,
            state,
            limit: limit + 1,
            offset,
        })
        .await?;
    let next_offset = (found.len() as u64 > limit).then(|| offset + limit);
    found.truncate(limit as usize);
    Ok(HttpResponse::Ok().json(JobsAnswer {
        jobs: found.into_iter().map(SeriesView::from).collect(),
        next_offset,
    }))
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
