//! The admin API, every route under `/api/admin` but the dataset export (which streams a
//! ZIP as `/dataset` does, in `dataset.rs`): which catalogue version runs, which exist, and
//! switching without a restart; the organizations of the DICOM side and their servers.
//!
//! Every call needs `Authorization: Bearer <admin.token>` (`NACHET__ADMIN__TOKEN`); without a
//! configured token the admin API is off.

use std::future::{Ready, ready};
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest, HttpResponse, get, post, web};
use pipeline::PipelineSet;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use dicom_series::ports::DicomCredentials;
use dicom_series::{basic_credentials, bearer_credentials, credentials_kind};

use super::auth::{bearer_token, same_secret};
use super::body;
use super::error::ApiError;
use super::series::SeriesApi;
use super::series_access::SeriesAdmin;
use crate::catalogue::Catalogues;

/// `[admin]` of the configuration.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    /// The bearer token of the admin API; `None`: the admin API answers 403.
    #[serde(default)]
    pub token: Option<SecretString>,
}

/// What the catalogue admin routes need.
pub struct AdminApi {
    catalogues: Arc<Catalogues>,
}

impl AdminApi {
    pub fn new(catalogues: Arc<Catalogues>) -> Self {
        Self { catalogues }
    }
}

/// The admin token of the configuration (`None`, or empty: the admin API is off).
pub struct AdminToken(Option<SecretString>);

impl AdminToken {
    pub fn new(settings: &AdminSettings) -> Self {
        Self(
            settings
                .token
                .clone()
                .filter(|t| !t.expose_secret().trim().is_empty()),
        )
    }
}

/// A request that carries the admin token: the one check of every admin route, whatever
/// its area. 403 when the admin API is off, 401 without the token or with another one.
pub struct Admin;

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(admin_token_check(request).map(|()| Admin))
    }
}

/// Whether `request` carries the admin token (see [`Admin`]).
pub(super) fn admin_token_check(request: &HttpRequest) -> Result<(), ApiError> {
    let expected = request
        .app_data::<web::Data<AdminToken>>()
        .and_then(|token| token.0.clone());
    match (expected, bearer_token(request)) {
        (None, _) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "the admin API is off: set admin.token (NACHET__ADMIN__TOKEN) to use it",
        )),
        (Some(_), None) => Err(ApiError::unauthorized(
            "send the admin token as Authorization: Bearer <token>",
        )),
        (Some(expected), Some(given)) if same_secret(given, expected.expose_secret()) => Ok(()),
        (Some(_), Some(_)) => Err(ApiError::unauthorized("the admin token is not valid")),
    }
}

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(pipelines)
        .service(reload)
        .service(add_organization)
        .service(list_organizations);
}

#[derive(Serialize)]
struct RunningPipeline {
    pipeline_id: Uuid,
    pipeline_name: String,
    default: bool,
    models: Vec<String>,
}

#[derive(Serialize)]
struct RunningCatalogue {
    version: String,
    pipelines: Vec<RunningPipeline>,
}

impl From<&PipelineSet> for RunningCatalogue {
    fn from(set: &PipelineSet) -> Self {
        Self {
            version: set.catalogue_version().to_owned(),
            pipelines: set
                .pipelines()
                .iter()
                .map(|p| RunningPipeline {
                    pipeline_id: p.id,
                    pipeline_name: p.definition.name.clone(),
                    default: p.definition.default,
                    models: p.definition.models.clone(),
                })
                .collect(),
        }
    }
}

#[derive(Serialize)]
struct StoredVersionBody {
    version: String,
    published_at: chrono::DateTime<chrono::Utc>,
    date: Option<String>,
    pipelines: Vec<String>,
    default_pipeline: Option<String>,
    /// Why the stored document cannot be read, if it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<String>,
}

#[derive(Serialize)]
struct PipelinesBody {
    running: RunningCatalogue,
    versions: Vec<StoredVersionBody>,
}

/// The running version and the stored ones.
#[utoipa::path(
    responses((status = 200, description = "The running catalogue version and the stored ones"), (status = 401, description = "No or wrong admin token")),
    security(("bearer" = []))
)]
#[get("/api/admin/pipelines")]
pub async fn pipelines(_admin: Admin, api: web::Data<AdminApi>) -> Result<HttpResponse, ApiError> {
    let running = RunningCatalogue::from(api.catalogues.registry().current().as_ref());
    let versions = api.catalogues.versions().await?;
    Ok(HttpResponse::Ok().json(PipelinesBody {
        running,
        versions: versions
            .into_iter()
            .map(|v| StoredVersionBody {
                version: v.version,
                published_at: v.published_at,
                date: v.date,
                pipelines: v.pipelines,
                default_pipeline: v.default_pipeline,
                problem: v.problem,
            })
            .collect(),
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReloadBody {
    version: String,
}

#[derive(Serialize)]
struct ReloadedBody {
    previous_version: String,
    running: RunningCatalogue,
}

/// Loads another stored version and makes it the running one, without a restart. Requests
/// in flight finish on the version they started with; on failure the running one stays.
#[utoipa::path(
    request_body = ReloadBody,
    responses(
        (status = 200, description = "Switched: the new version serves every request that starts from now"),
        (status = 401, description = "No or wrong admin token"),
        (status = 404, description = "No such version (lists those that exist); the running one stays"),
        (status = 409, description = "The version was encrypted with another key; the running one stays"),
        (status = 422, description = "The version is invalid; the running one stays"),
        (status = 503, description = "Switched on this replica, but the choice could not be recorded for the others (the database); send the same reload again"),
    ),
    security(("bearer" = []))
)]
#[post("/api/admin/pipelines/reload")]
pub async fn reload(
    // The token first: nothing about the body is told to a caller without it.
    _admin: Admin,
    api: web::Data<AdminApi>,
    body: body::Json<ReloadBody>,
) -> Result<HttpResponse, ApiError> {
    let previous = api.catalogues.registry().current();
    let set = api.catalogues.switch(body.version.trim()).await?;
    Ok(HttpResponse::Ok().json(ReloadedBody {
        previous_version: previous.catalogue_version().to_owned(),
        running: RunningCatalogue::from(set.as_ref()),
    }))
}

// ---- organizations (the DICOM side) ----

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrganizationBody {
    /// Not blank, no control characters, not a UUID (requests name an organization by id
    /// or by name).
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    name: String,
    /// The DICOMweb root (`https://pacs.example.org/dicom-web`).
    #[schema(
        pattern = r"^[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*https?://[^\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000/][^\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    dicomweb_root: String,
    #[serde(default)]
    credentials: Option<CredentialsBody>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum CredentialsBody {
    None,
    Basic {
        #[schema(min_length = 1, pattern = "^[^:]*$")]
        username: String,
        #[schema(min_length = 1)]
        password: String,
    },
    Bearer {
        #[schema(
            pattern = r"^[^\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$"
        )]
        token: String,
    },
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationAnswer {
    id: String,
    name: String,
    dicomweb_root: String,
    /// `none`, `basic` or `bearer`; the secret itself is never shown.
    #[schema(value_type = String)]
    credentials: &'static str,
}

#[utoipa::path(
    request_body = OrganizationBody,
    responses(
        (status = 201, body = OrganizationAnswer),
        (status = 400, description = "Invalid body"),
        (status = 401, description = "No or wrong admin token"),
        (status = 409, description = "The name is taken"),
    ),
    security(("bearer" = []))
)]
#[post("/api/admin/organizations")]
pub async fn add_organization(
    // The token first: nothing about the body is told to a caller without it.
    _admin: SeriesAdmin,
    api: web::Data<SeriesApi>,
    body: body::Json<OrganizationBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let credentials = match body.credentials {
        None | Some(CredentialsBody::None) => DicomCredentials::None,
        Some(CredentialsBody::Basic { username, password }) => {
            basic_credentials(&username, &password)
        }
        Some(CredentialsBody::Bearer { token }) => bearer_credentials(&token),
    };
    let organization = api
        .service()
        .add_organization(&body.name, &body.dicomweb_root, credentials)
        .await?;
    Ok(HttpResponse::Created().json(OrganizationAnswer {
        id: organization.id.to_string(),
        name: organization.name.to_string(),
        dicomweb_root: organization.dicom_server.root.clone(),
        credentials: credentials_kind(&organization.dicom_server.credentials),
    }))
}

#[utoipa::path(
    responses((status = 200, description = "The organizations' names"), (status = 401, description = "No or wrong admin token")),
    security(("bearer" = []))
)]
#[get("/api/admin/organizations")]
pub async fn list_organizations(
    _admin: SeriesAdmin,
    api: web::Data<SeriesApi>,
) -> Result<HttpResponse, ApiError> {
    let names = api.service().organization_names().await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "organizations": names })))
}
