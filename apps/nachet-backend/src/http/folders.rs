//! The user's folders and stored pictures (contract 1.8): the frontend's field names, kept
//! as they are. Every body names the caller's own storage (`container_name`), and every
//! success is 200 (the frontend counts nothing else as success).

use actix_web::{post, web};
use inference::{DeletionMode, FolderService, InferenceResponse, LabelledUpload};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::body::{self, WholeU32};
use super::caller::Caller;
use super::error::{ApiError, ErrorBody};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(get_directories)
        .service(create_dir)
        .service(del)
        .service(get_picture)
        .service(delete_request)
        .service(delete_permanently)
        .service(delete_with_archive)
        .service(new_batch_import)
        .service(upload_picture);
}

#[derive(Deserialize, ToSchema)]
pub struct ContainerBody {
    /// The caller's user id.
    #[schema(format = Uuid)]
    container_name: String,
}

#[derive(Serialize, ToSchema)]
pub struct DirectoriesBody {
    folders: Vec<FolderBody>,
}

#[derive(Serialize, ToSchema)]
pub struct FolderBody {
    folder_name: String,
    picture_set_id: Uuid,
    nb_pictures: usize,
    pictures: Vec<PictureSummaryBody>,
}

#[derive(Serialize, ToSchema)]
pub struct PictureSummaryBody {
    picture_id: Uuid,
    inference_exists: bool,
    /// Its inference is verified box by box: the picture is training data.
    is_validation: bool,
}

/// The caller's folders, each with its pictures ("General" always exists).
#[utoipa::path(
    request_body = ContainerBody,
    responses(
        (status = 200, body = DirectoriesBody),
        (status = 401, body = ErrorBody, description = "No valid identity"),
        (status = 403, body = ErrorBody, description = "Another user's container"),
    )
)]
#[post("/get-directories")]
pub async fn get_directories(
    folders: web::Data<FolderService>,
    caller: Caller,
    body: body::Json<ContainerBody>,
) -> Result<web::Json<DirectoriesBody>, ApiError> {
    caller.check_named("container_name", &body.container_name)?;
    let list = folders.list(caller.id).await?;
    Ok(web::Json(DirectoriesBody {
        folders: list
            .into_iter()
            .map(|contents| FolderBody {
                folder_name: contents.folder.name,
                picture_set_id: contents.folder.id,
                nb_pictures: contents.pictures.len(),
                pictures: contents
                    .pictures
                    .into_iter()
                    .map(|p| PictureSummaryBody {
                        picture_id: p.id,
                        inference_exists: p.has_inference,
                        is_validation: p.verified,
                    })
                    .collect(),
            })
            .collect(),
    }))
}

/// A folder name as the schema says it (the rule is `inference::folders::check_folder_name`):
/// 1 to 255 characters, no control characters, `/` or `\`, no white space at either end (Rust's white
/// space, spelled out: a pattern's `\s` differs between regex dialects).
pub(super) fn folder_name() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(inference::folders::MAX_FOLDER_NAME_CHARS))
        .pattern(Some(r"^[^\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\x00-\x1f\x7f-\x9f/\\]([^\x00-\x1f\x7f-\x9f/\\]*[^\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\x00-\x1f\x7f-\x9f/\\])?$"))
        .build()
}

#[derive(Deserialize, ToSchema)]
pub struct CreateDirBody {
    #[schema(format = Uuid)]
    container_name: String,
    /// The new folder's name: one line of text, no spaces at either end.
    #[schema(schema_with = folder_name)]
    folder_name: String,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedFolderBody {
    folder_name: String,
    picture_set_id: Uuid,
}

/// Creates a folder.
#[utoipa::path(
    request_body = CreateDirBody,
    responses(
        (status = 200, body = CreatedFolderBody),
        (status = 400, body = ErrorBody, description = "Not a usable folder name"),
        (status = 401, body = ErrorBody, description = "No valid identity"),
        (status = 403, body = ErrorBody, description = "Another user's container"),
        (status = 409, body = ErrorBody, description = "The caller already has a folder of that name"),
    )
)]
#[post("/create-dir")]
pub async fn create_dir(
    folders: web::Data<FolderService>,
    caller: Caller,
    body: body::Json<CreateDirBody>,
) -> Result<web::Json<CreatedFolderBody>, ApiError> {
    caller.check_named("container_name", &body.container_name)?;
    let folder = folders.create(caller.id, &body.folder_name).await?;
    Ok(web::Json(CreatedFolderBody {
        folder_name: folder.name,
        picture_set_id: folder.id,
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct DelBody {
    #[schema(format = Uuid)]
    container_name: String,
    /// The folder's `picture_set_id` (the frontend's key name).
    folder_name: String,
}

/// Deletes a folder: its verified pictures go to the archive (training data), the rest is
/// deleted with its blobs. Answers `true`.
#[utoipa::path(
    request_body = DelBody,
    responses(
        (status = 200, body = bool),
        (status = 400, body = ErrorBody, description = "folder_name is not a picture_set_id"),
        (status = 401, body = ErrorBody, description = "No valid identity"),
        (status = 403, body = ErrorBody, description = "Another user's container or folder"),
        (status = 404, body = ErrorBody, description = "No such folder"),
        (status = 409, body = ErrorBody, description = "The default folder cannot be deleted"),
    )
)]
#[post("/del")]
pub async fn del(
    folders: web::Data<FolderService>,
    caller: Caller,
    body: body::Json<DelBody>,
) -> Result<web::Json<bool>, ApiError> {
    caller.check_named("container_name", &body.container_name)?;
    let folder_id = folder_id("folder_name", &body.folder_name)?;
    folders
        .delete(caller.id, folder_id, DeletionMode::Archive)
        .await?;
    Ok(web::Json(true))
}

#[derive(Deserialize, ToSchema)]
pub struct FolderUuidBody {
    #[schema(format = Uuid)]
    container_name: String,
    /// The folder's `picture_set_id`.
    folder_uuid: String,
}

/// `true` when the folder holds verified pictures: ask the user whether to archive them
/// (`/delete-with-archive`) or to delete everything (`/delete-permanently`).
#[utoipa::path(
    request_body = FolderUuidBody,
    responses(
        (status = 200, body = bool),
        (status = 400, body = ErrorBody, description = "folder_uuid is not a picture_set_id"),
        (status = 401, body = ErrorBody, description = "No valid identity"),
        (status = 403, body = ErrorBody, description = "Another user's container or folder"),
        (status = 404, body = ErrorBody, description = "No such folder"),
    )
)]
#[post("/delete-request")]
pub async fn delete_request(
    folders: web::Data<FolderService>,
    caller: Caller,
    body: body::Json<FolderUuidBody>,
) -> Result<web::Json<bool>, ApiError> {
    caller.check_named("container_name", &body.container_name)?;
    let folder_id = folder_id("folder_uuid", &body.folder_uuid)?;
    Ok(web::Json(
        folders.holds_verified(caller.id, folder_id).await?,
    ))
}

/// Deletes a folder and everything in it, verified pictures too. Answers `true`.
#[utoipa::path(
    request_body = FolderUuidBody,
    responses(
        (status = 200, body = bool),
        (status = 400, body = ErrorBody, description = "folder_uuid is not a picture_set_id"),
        (status = 401, body = ErrorBody, description = "No valid identity"),
        (status = 403, body = ErrorBody, description = "Another user's container or folder"),
        (status = 404, body = ErrorBody, description = "No such folder"),
        (status = 409, body = ErrorBody, description = "The default folder cannot be deleted"),
    )
)]
#[post("/delete-permanently")]
pub async fn delete_permanently(
    folders: web::Data<FolderService>,
    caller: Caller,
    body: body::Json<FolderUuidBody>,
) -> Result<web::Json<bool>, ApiError> {
    delete_folder(&folders, &caller, &body, DeletionMode::Permanently).await
}

/// Deletes a folder; its verified pictures move to the archive owner's storage (training
/// data). Answers `true`.
#[utoipa::path(
    request_body = FolderUuidBody,
    responses(
        (status = 200, body = bool),
        (status = 400, body = ErrorBody, description = "folder_uuid is not a picture_set_id"),
        (status = 401, body = ErrorBody, description = "No valid identity"),
        (status = 403, body = ErrorBody, description = "Another user's container or folder"),
        (status = 404, body = ErrorBody, description = "No such folder"),
        (status = 409, body = ErrorBody, description = "The default folder cannot be deleted"),
    )
)]
#[post("/delete-with-archive")]
pub async fn delete_with_archive(
    folders: web::Data<FolderService>,
    caller: Caller,
    body: body::Json<FolderUuidBody>,
) -> Result<web::Json<bool>, ApiError> {
    delete_folder(&folders, &caller, &body, DeletionMode::Archive).await
}

async fn delete_folder(
    folders: &FolderService,
    caller: &Caller,
    body: &FolderUuidBody,
    mode: DeletionMode,
) -> Result<web::Json<bool>, ApiError> {
    caller.check_named("container_name", &body.container_name)?;
    let folder_id = folder_id("folder_uuid", &body.folder_uuid)?;
    folders.delete(caller.id, folder_id, mode).await?;
    Ok(web::Json(true))
}

#[derive(Deserialize, ToSchema)]
pub struct GetPictureBody {
    #[schema(format = Uuid)]
    container_name: String,
    picture_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct PictureBody {
    picture_id: Uuid,
    /// The latest inference as it stands now (what people verified shows); null if none.
    inference: Option<InferenceResponse>,
    /// `data:<type>;base64,<bytes>`.
    image: String,
}

/// A stored picture with its latest inference.
#[utoipa::path(
    request_body = GetPictureBody,
    responses(
        (status = 200, body = PictureBody),
        (status = 400, body = ErrorBody, description = "picture_id is not an id"),
        (status = 401, body = ErrorBody, description = "No valid identity"),
        (status = 403, body = ErrorBody, description = "Another user's container or picture"),
        (status = 404, body = ErrorBody, description = "No such picture"),
    )
)]
#[post("/get-picture")]
pub async fn get_picture(
    folders: web::Data<FolderService>,
    caller: Caller,
    body: body::Json<GetPictureBody>,
) -> Result<web::Json<PictureBody>, ApiError> {
    caller.check_named("container_name", &body.container_name)?;
    let picture_id = Uuid::parse_str(body.picture_id.trim()).map_err(|_| {
        ApiError::bad_request(format!(
            "picture_id: \"{}\" is not a picture id (from /get-directories)",
            body.picture_id
        ))
    })?;
    let found = folders.picture(caller.id, picture_id).await?;
    Ok(web::Json(PictureBody {
        picture_id: found.picture.id,
        inference: found.inference,
        image: found.data_url,
    }))
}

fn folder_id(field: &str, given: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(given.trim()).map_err(|_| {
        ApiError::bad_request(format!(
            "{field}: \"{given}\" is not a folder's picture_set_id (from /get-directories)"
        ))
    })
}

#[derive(Deserialize, ToSchema)]
pub struct NewBatchImportBody {
    #[schema(format = Uuid)]
    user_id: String,
    #[schema(format = Uuid)]
    container_name: String,
    /// The folder the pictures go into (created when missing).
    #[schema(schema_with = folder_name)]
    folder_name: String,
    /// How many pictures the batch will send (> 0).
    #[schema(value_type = u32, minimum = 1)]
    nb_pictures: WholeU32,
}

#[derive(Serialize, ToSchema)]
pub struct BatchImportBody {
    session_id: Uuid,
}

/// Opens a batch of already-labelled pictures; send each with `/upload-picture`.
#[utoipa::path(
    request_body = NewBatchImportBody,
    responses(
        (status = 200, body = BatchImportBody),
        (status = 400, body = ErrorBody, description = "nb_pictures is 0, or not a usable folder name"),
        (status = 401, body = ErrorBody, description = "No valid identity"),
        (status = 403, body = ErrorBody, description = "Another user's id or container"),
    )
)]
#[post("/new-batch-import")]
pub async fn new_batch_import(
    folders: web::Data<FolderService>,
    caller: Caller,
    body: body::Json<NewBatchImportBody>,
) -> Result<web::Json<BatchImportBody>, ApiError> {
    caller.check_named("user_id", &body.user_id)?;
    caller.check_named("container_name", &body.container_name)?;
    let session_id = folders
        .open_import(caller.id, &body.folder_name, body.nb_pictures.0)
        .await?;
    Ok(web::Json(BatchImportBody { session_id }))
}

/// A number as JSON number or as text (form fields often arrive as text).
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum NumberOrText {
    Number(f64),
    Text(String),
}

impl NumberOrText {
    fn value(&self, field: &str) -> Result<f64, ApiError> {
        match self {
            Self::Number(n) => Ok(*n),
            Self::Text(text) => text
                .trim()
                .parse()
                .map_err(|_| ApiError::bad_request(format!("{field}: \"{text}\" is not a number"))),
        }
    }
}

#[derive(Deserialize, ToSchema)]
pub struct UploadPictureBody {
    #[schema(format = Uuid)]
    container_name: String,
    #[schema(format = Uuid)]
    user_id: String,
    /// The species, as in `/seeds`; without it, `seed_name` must name a known species.
    #[serde(default)]
    seed_id: Option<String>,
    #[serde(default)]
    seed_name: Option<String>,
    zoom_level: NumberOrText,
    nb_seeds: NumberOrText,
    session_id: String,
    /// `data:image/<type>;base64,<data>`.
    #[schema(pattern = "^data:image/[A-Za-z0-9.+-]+;base64,")]
    image: String,
}

/// A labelled picture of an open batch; it is verified on arrival. Answers `true`.
#[utoipa::path(
    request_body = UploadPictureBody,
    responses(
        (status = 200, body = bool),
        (status = 400, body = ErrorBody, description = "An unknown species, a bad number, an image that does not decode"),
        (status = 401, body = ErrorBody, description = "No valid identity"),
        (status = 403, body = ErrorBody, description = "Another user's id, container or batch"),
        (status = 404, body = ErrorBody, description = "No such batch"),
        (status = 409, body = ErrorBody, description = "The batch has received every picture it announced"),
    )
)]
#[post("/upload-picture")]
pub async fn upload_picture(
    folders: web::Data<FolderService>,
    caller: Caller,
    body: body::Json<UploadPictureBody>,
) -> Result<web::Json<bool>, ApiError> {
    let body = body.into_inner();
    caller.check_named("user_id", &body.user_id)?;
    caller.check_named("container_name", &body.container_name)?;
    let nb_seeds = body.nb_seeds.value("nb_seeds")?;
    if !(nb_seeds >= 0.0 && nb_seeds.fract() == 0.0 && nb_seeds <= f64::from(u32::MAX)) {
        return Err(ApiError::bad_request(format!(
            "nb_seeds: {nb_seeds} is not a count of seeds"
        )));
    }
    let seed_id = match body
        .seed_id
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        Some(text) => Some(Uuid::parse_str(text).map_err(|_| {
            ApiError::bad_request(format!("seed_id: \"{text}\" is not a seed id (see /seeds)"))
        })?),
        None => None,
    };
    let session_id = Uuid::parse_str(body.session_id.trim()).map_err(|_| {
        ApiError::bad_request(format!(
            "session_id: \"{}\" is not a batch id (from /new-batch-import)",
            body.session_id
        ))
    })?;
    folders
        .upload(
            caller.id,
            LabelledUpload {
                session_id,
                image: body.image,
                seed_id,
                seed_name: body.seed_name,
                zoom_level: body.zoom_level.value("zoom_level")?,
                nb_seeds: nb_seeds as u32,
            },
        )
        .await?;
    Ok(web::Json(true))
}
