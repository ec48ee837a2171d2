//! Seed identification endpoints (contract 1.1): the frontend's field names, kept as they are.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, get, post, web};
use inference::{ColorFormat, InferenceRequest, InferenceResponse, InferenceService};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use super::caller::Caller;
use super::error::{ApiError, ErrorBody};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(health)
        .service(model_endpoints_metadata)
        .service(get_user_id)
        .service(seeds)
        .service(inf)
        .service(image_validation);
}

/// Answers at once: no I/O, so it stays instant however busy the server is.
#[utoipa::path(responses((status = 200, description = "The server is up")))]
#[get("/health")]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

#[derive(Serialize, ToSchema)]
pub struct PipelineMetadataBody {
    pipeline_id: Uuid,
    pipeline_name: String,
    /// The same as `pipeline_name`: the frontend reads this key.
    model_name: String,
    /// Model names, in call order.
    models: Vec<String>,
    default: bool,
    version: String,
    description: String,
    created_by: String,
    creation_date: String,
    job_name: String,
    dataset_description: String,
    accuracy: Option<f64>,
}

/// The pipelines served now (never an endpoint URL or key).
#[utoipa::path(responses((status = 200, body = Vec<PipelineMetadataBody>)))]
#[get("/model-endpoints-metadata")]
pub async fn model_endpoints_metadata(
    service: web::Data<InferenceService>,
) -> web::Json<Vec<PipelineMetadataBody>> {
    let set = service.registry().current();
    web::Json(
        set.pipelines()
            .iter()
            .map(|p| {
                let d = &p.definition;
                PipelineMetadataBody {
                    pipeline_id: p.id,
                    pipeline_name: d.name.clone(),
                    model_name: d.name.clone(),
                    models: d.models.clone(),
                    default: d.default,
                    version: d.version.clone(),
                    description: d.metadata.description.clone(),
                    created_by: d.metadata.created_by.clone(),
                    creation_date: d.metadata.creation_date.clone(),
                    job_name: d.metadata.job_name.clone(),
                    dataset_description: d.metadata.dataset_description.clone(),
                    accuracy: d.metadata.accuracy,
                }
            })
            .collect(),
    )
}

#[derive(Deserialize, ToSchema)]
pub struct EmailBody {
    /// The frontend always sends `""`: the caller is known from the login proxy. A
    /// non-empty email must be the caller's own.
    email: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct UserIdBody {
    user_id: Uuid,
}

/// The caller's user id (the caller is known from the login proxy; see `identity`).
#[utoipa::path(
    request_body = EmailBody,
    responses(
        (status = 200, body = UserIdBody),
        (status = 401, body = ErrorBody, description = "No valid identity (e.g. a missing, expired or forged login cookie)"),
        (status = 403, body = ErrorBody, description = "Another user's email, or a user not registered here (registration off)"),
    )
)]
#[post("/get-user-id")]
pub async fn get_user_id(
    caller: Caller,
    body: web::Json<EmailBody>,
) -> Result<web::Json<UserIdBody>, ApiError> {
    if let Some(email) = body.into_inner().email.filter(|e| !e.trim().is_empty())
        && !email.trim().eq_ignore_ascii_case(&caller.email)
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "email: you are signed in as {}, not {}; /get-user-id gives only your own id",
                caller.email,
                email.trim()
            ),
        ));
    }
    Ok(web::Json(UserIdBody { user_id: caller.id }))
}

#[derive(Serialize, ToSchema)]
pub struct SeedBody {
    seed_id: Uuid,
    seed_name: String,
}

#[derive(Serialize, ToSchema)]
pub struct SeedsBody {
    seeds: Vec<SeedBody>,
}

/// Every seed species the classifiers may name.
#[utoipa::path(responses((status = 200, body = SeedsBody)))]
#[get("/seeds")]
pub async fn seeds(service: web::Data<InferenceService>) -> Result<web::Json<SeedsBody>, ApiError> {
    let seeds = service.seeds().await?;
    Ok(web::Json(SeedsBody {
        seeds: seeds
            .into_iter()
            .map(|s| SeedBody {
                seed_id: s.id,
                seed_name: s.name,
            })
            .collect(),
    }))
}

/// The `/inf` body (contract 1.2). Read field by field so that each problem is named.
#[derive(ToSchema)]
#[allow(dead_code)] // Only documents the body; the handler reads a JSON object.
pub struct InfBody {
    /// The pipeline's name.
    model_name: String,
    /// `data:image/<type>;base64,<data>`
    image: String,
    /// `[width, height]` in pixels.
    #[schema(rename = "imageDims")]
    image_dims: [u32; 2],
    /// A folder's name (created when missing) or its `picture_set_id`.
    folder_name: String,
    /// The caller's user id.
    container_name: Uuid,
    /// The caller's user id (the frontend's key); `userId` is accepted too.
    user_id: Uuid,
    validator: Option<String>,
    /// Default 0.5.
    area_ratio: Option<f64>,
    /// `hex` (default) or `rgb`.
    color_format: Option<String>,
}

/// Runs a picture through a pipeline and stores the picture and the result.
#[utoipa::path(
    request_body = InfBody,
    responses(
        (status = 200, body = InferenceResponse),
        (status = 400, body = ErrorBody, description = "A missing or invalid argument, an unknown pipeline, an image that does not decode"),
        (status = 401, body = ErrorBody, description = "No valid identity"),
        (status = 403, body = ErrorBody, description = "Another user's id, container or folder"),
        (status = 404, body = ErrorBody, description = "Unknown user, or no folder of that id"),
        (status = 413, body = ErrorBody, description = "Body over the size limit"),
        (status = 415, body = ErrorBody, description = "Image type not accepted"),
        (status = 502, body = ErrorBody, description = "A model failed (names the step and model)"),
        (status = 503, body = ErrorBody, description = "Too many inferences at once"),
        (status = 504, body = ErrorBody, description = "A model did not answer in time (names the step and model)"),
    )
)]
#[post("/inf")]
pub async fn inf(
    service: web::Data<InferenceService>,
    caller: Caller,
    body: web::Json<Map<String, Value>>,
) -> Result<web::Json<InferenceResponse>, ApiError> {
    let request = inference_request(body.into_inner(), &caller)?;
    Ok(web::Json(service.infer(request).await?))
}

fn inference_request(
    mut body: Map<String, Value>,
    caller: &Caller,
) -> Result<InferenceRequest, ApiError> {
    const REQUIRED: [&str; 5] = [
        "model_name",
        "image",
        "imageDims",
        "folder_name",
        "container_name",
    ];
    let present = |body: &Map<String, Value>, k: &str| body.get(k).is_some_and(|v| !v.is_null());
    // The frontend sends `user_id`; the seed document wrote `userId`. Either will do, and
    // each one sent must be the caller.
    let named_users: Vec<&str> = ["user_id", "userId"]
        .into_iter()
        .filter(|k| present(&body, k))
        .collect();
    let missing: Vec<&str> = REQUIRED
        .into_iter()
        .chain(named_users.is_empty().then_some("user_id"))
        .filter(|k| !present(&body, k))
        .collect();
    if !missing.is_empty() {
        return Err(ApiError::bad_request(format!(
            "missing argument{}: {}",
            if missing.len() > 1 { "s" } else { "" },
            missing.join(", ")
        )));
    }
    let mut text = |key: &str| -> Result<String, ApiError> {
        match body.remove(key) {
            Some(Value::String(s)) => Ok(s),
            other => Err(ApiError::bad_request(format!(
                "{key}: expected a string, got {}",
                type_name(other.as_ref())
            ))),
        }
    };
    let pipeline_name = text("model_name")?;
    let image = text("image")?;
    let folder_name = text("folder_name")?;
    let container_name = text("container_name")?;
    caller.check_named("container_name", &container_name)?;
    for key in named_users {
        caller.check_named(key, &text(key)?)?;
    }
    let image_dims = dimensions(body.remove("imageDims"))?;
    let validator = match body.remove("validator") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "validator: expected a string, got {}",
                type_name(Some(&other))
            )));
        }
    };
    let area_ratio = match body.remove("area_ratio") {
        None | Some(Value::Null) => 0.5,
        Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "area_ratio: expected a number, got {}",
                type_name(Some(&other))
            )));
        }
    };
    let color_format = match body.remove("color_format") {
        None | Some(Value::Null) => ColorFormat::Hex,
        Some(Value::String(s)) if s == "hex" => ColorFormat::Hex,
        Some(Value::String(s)) if s == "rgb" => ColorFormat::Rgb,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "color_format: expected \"hex\" or \"rgb\", got {other}"
            )));
        }
    };
    Ok(InferenceRequest {
        pipeline_name,
        image,
        image_dims,
        folder_name,
        container_name,
        user_id: caller.id,
        validator,
        area_ratio,
        color_format,
    })
}

#[derive(Deserialize, ToSchema)]
pub struct ImageBody {
    /// `data:image/<type>;base64,<data>`, as `/inf` takes it.
    image: String,
}

/// Checks a picture as `/inf` would and answers `[sha256]`: send it as `/inf`'s `validator`
/// to make sure the picture inferred is the one checked.
#[utoipa::path(
    request_body = ImageBody,
    responses(
        (status = 200, body = Vec<String>, description = "The picture's SHA-256 (hex), alone in a list"),
        (status = 400, body = ErrorBody, description = "Not a data URL, or the bytes do not decode"),
        (status = 401, body = ErrorBody, description = "No valid identity"),
        (status = 415, body = ErrorBody, description = "Image type not accepted"),
    )
)]
#[post("/image-validation")]
pub async fn image_validation(
    service: web::Data<InferenceService>,
    _caller: Caller,
    body: web::Json<ImageBody>,
) -> Result<web::Json<[String; 1]>, ApiError> {
    let sha256 = service.image_sha256(body.into_inner().image).await?;
    Ok(web::Json([sha256]))
}

fn dimensions(value: Option<Value>) -> Result<[u32; 2], ApiError> {
    let wrong =
        || ApiError::bad_request("imageDims: expected [width, height], two positive integers");
    let Some(Value::Array(items)) = value else {
        return Err(wrong());
    };
    let numbers: Vec<u32> = items
        .iter()
        .map(|v| {
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n > 0)
        })
        .collect::<Option<_>>()
        .ok_or_else(wrong)?;
    <[u32; 2]>::try_from(numbers).map_err(|_| wrong())
}

fn type_name(value: Option<&Value>) -> &'static str {
    match value {
        None | Some(Value::Null) => "null",
        Some(Value::Bool(_)) => "a boolean",
        Some(Value::Number(_)) => "a number",
        Some(Value::String(_)) => "a string",
        Some(Value::Array(_)) => "a list",
        Some(Value::Object(_)) => "an object",
    }
}
