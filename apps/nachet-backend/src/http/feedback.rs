//! `/feedback-positive` and `/feedback-negative` (contract 1.8, rules in 1.9): the
//! frontend's field names, one box a call (several are accepted, applied together).
//! Each answers 200 with the inference as it stands after the feedback.

use actix_web::{post, web};
use inference::{BoxFeedback, DrawnCorners, FeedbackService, InferenceResponse, SpeciesName};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::body;
use super::caller::Caller;
use super::error::{ApiError, ErrorBody};

pub fn routes(config: &mut web::ServiceConfig) {
    config.service(feedback_positive).service(feedback_negative);
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PositiveBody {
    /// The caller's user id.
    #[schema(format = Uuid)]
    user_id: String,
    inference_id: String,
    boxes: Vec<PositiveBox>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PositiveBox {
    box_id: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NegativeBody {
    /// The caller's user id.
    #[schema(format = Uuid)]
    user_id: String,
    inference_id: String,
    boxes: Vec<NegativeBox>,
}

/// One box: `boxId: ""` draws a new box; `classId: ""` with `label: ""` deletes the box
/// (not a seed); `classId` names a species of `/seeds`; else `label` is a species typed by
/// hand (in literal double quotes, as the frontend sends it, or not).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NegativeBox {
    #[serde(default)]
    class_id: Option<String>,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    box_id: Option<String>,
    /// Pixels; decimals are rounded, and the box is clamped into the picture.
    #[serde(rename = "box", default)]
    corners: Option<CornersBody>,
    /// "Seed not Detected", "Wrong Seed", "No Seed", "Multi Seed", "Wrong Seed not in List".
    #[serde(default)]
    comment: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CornersBody {
    top_x: f64,
    top_y: f64,
    bottom_x: f64,
    bottom_y: f64,
}

/// Confirms boxes: each one's species is its top candidate.
#[utoipa::path(
    request_body = PositiveBody,
    responses(
        (status = 200, body = InferenceResponse, description = "The inference as it stands now"),
        (status = 400, body = ErrorBody, description = "A box that is not the inference's, or a malformed id"),
        (status = 401, body = ErrorBody, description = "No valid identity"),
        (status = 403, body = ErrorBody, description = "Another user's id or inference"),
        (status = 404, body = ErrorBody, description = "No such inference"),
        (status = 409, body = ErrorBody, description = "A box already verified"),
    )
)]
#[post("/feedback-positive")]
pub async fn feedback_positive(
    feedback: web::Data<FeedbackService>,
    caller: Caller,
    body: body::Json<PositiveBody>,
) -> Result<web::Json<InferenceResponse>, ApiError> {
    let body = body.into_inner();
    caller.check_named("userId", &body.user_id)?;
    let inference_id = id("inferenceId", &body.inference_id)?;
    let boxes = body
        .boxes
        .iter()
        .map(|b| {
            Ok(BoxFeedback::Confirm {
                box_id: id("boxId", &b.box_id)?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(web::Json(
        feedback.apply(caller.id, inference_id, boxes, None).await?,
    ))
}

/// Corrects, deletes or adds boxes.
#[utoipa::path(
    request_body = NegativeBody,
    responses(
        (status = 200, body = InferenceResponse, description = "The inference as it stands now"),
        (status = 400, body = ErrorBody, description = "A box that is not the inference's, an unknown classId, a box with no area"),
        (status = 401, body = ErrorBody, description = "No valid identity"),
        (status = 403, body = ErrorBody, description = "Another user's id or inference"),
        (status = 404, body = ErrorBody, description = "No such inference"),
        (status = 409, body = ErrorBody, description = "A box already verified, or the same box already added"),
    )
)]
#[post("/feedback-negative")]
pub async fn feedback_negative(
    feedback: web::Data<FeedbackService>,
    caller: Caller,
    body: body::Json<NegativeBody>,
) -> Result<web::Json<InferenceResponse>, ApiError> {
    let body = body.into_inner();
    caller.check_named("userId", &body.user_id)?;
    let inference_id = id("inferenceId", &body.inference_id)?;
    let mut comments: Vec<String> = Vec::new();
    let mut boxes = Vec::with_capacity(body.boxes.len());
    for b in body.boxes {
        if let Some(comment) = b
            .comment
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())
            && !comments.iter().any(|c| c == comment)
        {
            comments.push(comment.to_owned());
        }
        boxes.push(negative(b)?);
    }
    let comment = (!comments.is_empty()).then(|| comments.join("; "));
    Ok(web::Json(
        feedback
            .apply(caller.id, inference_id, boxes, comment)
            .await?,
    ))
}

/// The frontend's negative box as what the analyst means.
fn negative(b: NegativeBox) -> Result<BoxFeedback, ApiError> {
    let given = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let species = match (given(&b.class_id), given(&b.label)) {
        (Some(class_id), _) => Some(SpeciesName::Id(id("classId", &class_id)?)),
        (None, Some(label)) => Some(SpeciesName::Typed(label)),
        (None, None) => None,
    };
    let corners = b.corners.map(|c| DrawnCorners {
        top_x: c.top_x,
        top_y: c.top_y,
        bottom_x: c.bottom_x,
        bottom_y: c.bottom_y,
    });
    match (given(&b.box_id), species) {
        (None, Some(species)) => Ok(BoxFeedback::Add {
            species,
            corners: corners.ok_or_else(|| {
                ApiError::bad_request("box: a new box (boxId \"\") needs its corners")
            })?,
        }),
        (None, None) => Err(ApiError::bad_request(
            "classId, label: a new box (boxId \"\") needs a species",
        )),
        (Some(box_id), None) => Ok(BoxFeedback::Delete {
            box_id: id("boxId", &box_id)?,
        }),
        (Some(box_id), Some(species)) => Ok(BoxFeedback::Correct {
            box_id: id("boxId", &box_id)?,
            species,
            corners,
        }),
    }
}

fn id(field: &str, given: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(given.trim())
        .map_err(|_| ApiError::bad_request(format!("{field}: \"{given}\" is not an id")))
}
