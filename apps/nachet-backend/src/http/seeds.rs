//! Seed identification endpoints (contract 1.1): the frontend's field names, kept as they are.

use std::borrow::Cow;
use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError, get, post, web};
use bytes::Bytes;
use inference::{
    Admission, ColorFormat, InferenceRequest, InferenceResponse, InferenceService, Refused,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::body::{self, BodyLimit, WholeU32};
use super::caller::Caller;
use super::disconnect;
use super::error::{ApiError, ErrorBody};
use super::folders::folder_name;
use super::ops::Ops;
use crate::metrics::ReasonLabels;
use crate::work::{self, WorkRuntime};

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
    body: body::Json<EmailBody>,
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

/// The `/inf` body (contract 1.2), read by serde and documented from the same type.
///
/// Every required field is an `Option` so that all missing ones are named at once
/// ("missing arguments: image, user_id"); a repeated key is refused (serde's derive does).
/// `image`, about a megabyte, is borrowed from the body, never copied.
#[derive(Deserialize, ToSchema)]
pub struct InfBody<'a> {
    /// The pipeline's name.
    #[schema(required = true, nullable = false, min_length = 1)]
    model_name: Option<String>,
    /// `data:image/<type>;base64,<data>`
    #[serde(borrow)]
    #[schema(value_type = String, required = true, nullable = false, pattern = "^data:image/[A-Za-z0-9.+-]+;base64,")]
    image: Option<Cow<'a, str>>,
    /// `[width, height]` in pixels, as a browser measures the picture.
    #[serde(rename = "imageDims")]
    #[schema(schema_with = image_dims, required = true)]
    image_dims: Option<Vec<WholeU32>>,
    /// A folder's name (created when missing) or its `picture_set_id`.
    #[schema(schema_with = folder_name, required = true)]
    folder_name: Option<String>,
    /// The caller's user id.
    #[schema(value_type = Uuid, required = true, nullable = false)]
    container_name: Option<String>,
    /// The caller's user id (the frontend's key); `userId` is accepted instead.
    #[schema(value_type = Uuid, required = true, nullable = false)]
    user_id: Option<String>,
    /// The caller's user id (the seed document's key).
    #[serde(rename = "userId")]
    #[schema(value_type = Option<Uuid>, nullable = false)]
    user_id_camel: Option<String>,
    /// The SHA-256 (hex) that `/image-validation` gave for this picture.
    #[schema(pattern = "^[0-9a-fA-F]{64}$")]
    validator: Option<String>,
    /// Boxes overlapping by more than this share of the smaller one are flagged. Default 0.5.
    #[schema(exclusive_minimum = 0.0, maximum = 1.0)]
    area_ratio: Option<f64>,
    /// Default `hex`.
    color_format: Option<ColorFormatBody>,
}

/// `imageDims`: two whole numbers from 1.
fn image_dims() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(1))
                .maximum(Some(u32::MAX)),
        )
        .min_items(Some(2))
        .max_items(Some(2))
        .build()
}

#[derive(Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum ColorFormatBody {
    Hex,
    Rgb,
}

/// Runs a picture through a pipeline and stores the picture and the result.
///
/// A request waits for its turn before its body is read; beyond the queue it is refused at
/// once with 503 and `Retry-After`.
#[utoipa::path(
    request_body = InfBody,
    responses(
        (status = 200, body = InferenceResponse),
        (status = 400, body = ErrorBody, description = "A missing or invalid argument, an unknown pipeline, an image that does not decode or is over the pixel limit"),
        (status = 401, body = ErrorBody, description = "No valid identity"),
        (status = 403, body = ErrorBody, description = "Another user's id, container or folder"),
        (status = 404, body = ErrorBody, description = "Unknown user, or no folder of that id"),
        (status = 413, body = ErrorBody, description = "Body over the size limit"),
        (status = 415, body = ErrorBody, description = "Image type not accepted, or a body that is not JSON"),
        (status = 502, body = ErrorBody, description = "A model failed (names the step and model)"),
        (status = 503, body = ErrorBody, description = "Too many inferences running and waiting; try again after `Retry-After` seconds"),
        (status = 504, body = ErrorBody, description = "A model did not answer in time (names the step and model)"),
    )
)]
#[post("/inf")]
#[allow(clippy::too_many_arguments)] // actix extractors, one per thing the route uses
pub async fn inf(
    service: web::Data<InferenceService>,
    work: web::Data<WorkRuntime>,
    admission: web::Data<Admission>,
    ops: web::Data<Ops>,
    limit: web::Data<BodyLimit>,
    caller: Caller,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<web::Json<InferenceResponse>, ApiError> {
    let declared = body::declared_length(&request, limit.0)?;
    body::require_json(&request)?;
    let metrics = ops.metrics();
    let work = async {
        let waiting = Instant::now();
        let admitted = admission.admit(declared.unwrap_or(limit.0) as u64).await;
        metrics
            .inf_queue_wait
            .observe(waiting.elapsed().as_secs_f64());
        let _admitted = admitted.inspect_err(|refused| {
            let reason = match refused {
                Refused::QueueFull { .. } => "queue_full",
                Refused::WaitedTooLong { .. } => "waited_too_long",
            };
            metrics
                .inf_refused
                .get_or_create(&ReasonLabels {
                    reason: reason.into(),
                })
                .inc();
        })?;
        let working = Instant::now();
        let mut pipeline = String::new();
        let answer: Result<web::Json<InferenceResponse>, ApiError> = async {
            // This HTTP worker reads the body; the rest runs on the work runtime (see
            // `crate::work`), so that the worker stays free for other requests.
            let body = body::read(payload, declared, limit.0).await?;
            let (service, caller) = (service.clone(), caller.clone());
            let (named, answer) = work
                .run(async move {
                    let inference = inference_request(&body, &caller)?;
                    let named = inference.pipeline_name.clone();
                    Ok::<_, ApiError>((named, service.infer(inference).await))
                })
                .await
                .map_err(|work::Stopped| ApiError::unavailable("the server", "it is stopping"))??;
            pipeline = named;
            Ok(web::Json(answer?))
        }
        .await;
        // A refused request's pipeline name is whatever the caller sent: not a label (each
        // new value would be a new series on the operators' side).
        let (pipeline, outcome) = match &answer {
            Ok(_) => (pipeline.as_str(), "ok".to_owned()),
            Err(error) if error.status_code().is_client_error() => {
                ("-", error.status_code().as_u16().to_string())
            }
            Err(error) => (pipeline.as_str(), error.status_code().as_u16().to_string()),
        };
        metrics.record_inf(pipeline, &outcome, working.elapsed());
        answer
    };
    // A client that leaves takes its request's work with it: its place in the queue, its
    // model calls, its codec jobs not yet started.
    tokio::select! {
        answer = work => answer,
        () = disconnect::closed(&request) => Err(ApiError::bad_request(
            "the client closed the connection; the inference was abandoned and nothing was kept",
        )),
    }
}

fn inference_request(body: &Bytes, caller: &Caller) -> Result<InferenceRequest, ApiError> {
    let fields: InfBody = body::parse_json(body)?;
    let mut missing = Vec::new();
    let mut need = |name: &'static str, present: bool| {
        if !present {
            missing.push(name);
        }
    };
    need("model_name", fields.model_name.is_some());
    need("image", fields.image.is_some());
    need("imageDims", fields.image_dims.is_some());
    need("folder_name", fields.folder_name.is_some());
    need("container_name", fields.container_name.is_some());
    need(
        "user_id",
        fields.user_id.is_some() || fields.user_id_camel.is_some(),
    );
    if !missing.is_empty() {
        return Err(ApiError::bad_request(format!(
            "missing argument{}: {}",
            if missing.len() > 1 { "s" } else { "" },
            missing.join(", ")
        )));
    }
    let (Some(pipeline_name), Some(image), Some(dims), Some(folder_name), Some(container_name)) = (
        fields.model_name,
        fields.image,
        fields.image_dims,
        fields.folder_name,
        fields.container_name,
    ) else {
        unreachable!("every required field was checked above")
    };
    caller.check_named("container_name", &container_name)?;
    // The frontend sends `user_id`; the seed document wrote `userId`. Either will do, and
    // each one sent must be the caller.
    for (key, named) in [
        ("user_id", &fields.user_id),
        ("userId", &fields.user_id_camel),
    ] {
        if let Some(named) = named {
            caller.check_named(key, named)?;
        }
    }
    let image_dims = <[WholeU32; 2]>::try_from(dims)
        .ok()
        .map(|[width, height]| [width.0, height.0])
        .filter(|d| d.iter().all(|&n| n > 0))
        .ok_or_else(|| {
            ApiError::bad_request("imageDims: expected [width, height], two positive integers")
        })?;
    let image = match image {
        Cow::Borrowed(text) => body.slice_ref(text.as_bytes()),
        // Escapes in the JSON string (e.g. `\/`): the text had to be unescaped into a copy.
        Cow::Owned(text) => Bytes::from(text),
    };
    Ok(InferenceRequest {
        pipeline_name,
        image,
        image_dims,
        folder_name,
        container_name,
        user_id: caller.id,
        validator: fields.validator,
        area_ratio: fields.area_ratio.unwrap_or(0.5),
        color_format: match fields.color_format {
            None | Some(ColorFormatBody::Hex) => ColorFormat::Hex,
            Some(ColorFormatBody::Rgb) => ColorFormat::Rgb,
        },
    })
}

#[derive(Deserialize, ToSchema)]
pub struct ImageBody {
    /// `data:image/<type>;base64,<data>`, as `/inf` takes it.
    #[schema(pattern = "^data:image/[A-Za-z0-9.+-]+;base64,")]
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
    body: body::Json<ImageBody>,
) -> Result<web::Json<[String; 1]>, ApiError> {
    let sha256 = service.image_sha256(body.into_inner().image.into()).await?;
    Ok(web::Json([sha256]))
}
