//! The seed use cases: `/inf`, `/get-user-id`, `/seeds`, `/image-validation`, and reading a
//! saved inference back.
//!
//! What a failed `/inf` leaves behind: nothing. Once the request is checked, the picture is
//! written to blob storage while the models work (it does not depend on them); after the
//! models, the result document goes to blob storage, then every row goes to the database in
//! one transaction. If the models, a blob write or the transaction fail, the blobs already
//! written are deleted again, and so is the picture of a request dropped on the way (its
//! client left). (Only a crash between the picture's write and the end of the transaction
//! can leave blobs without rows; never rows without blobs.)

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;
use datastore::{
    BlobError, BlobKey, BlobStore, Folder, FolderStore, InferenceStore, NewBox, NewCandidate,
    NewInference, NewPicture, SeedStore, StoreError, UserStore,
};
use pipeline::PipelineRegistry;
use serde::Serialize;
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::codec::CodecPool;
use crate::picture::PictureError;
use crate::ports::ModelClient;
use crate::result::{Color, ColorFormat, process};
use crate::runner::{PipelineRunner, RunError, StepError};

#[derive(Clone, Debug)]
pub struct ServiceSettings {
    /// Per-crop model calls running at once, across every request.
    pub max_crop_calls: usize,
    /// `/get-user-id` registers an unknown email instead of refusing it.
    pub register_unknown_users: bool,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        Self {
            max_crop_calls: 64,
            register_unknown_users: false,
        }
    }
}

/// A `/inf` request whose fields are all present (contract 1.2).
#[derive(Clone, Debug)]
pub struct InferenceRequest {
    pub pipeline_name: String,
    /// `data:image/<type>;base64,<data>` (a view of the request's body: never copied).
    pub image: Bytes,
    /// `[width, height]` as the client measured it.
    pub image_dims: [u32; 2],
    pub folder_name: String,
    pub container_name: String,
    pub user_id: Uuid,
    /// SHA-256 (hex) from an earlier image pre-check, if any.
    pub validator: Option<String>,
    pub area_ratio: f64,
    pub color_format: ColorFormat,
}

/// The `/inf` response (contract 1.3); also the result document kept in blob storage.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Serialize)]
pub struct InferenceResponse {
    pub filename: String,
    pub boxes: Vec<ResponseBox>,
    #[serde(rename = "labelOccurrence")]
    pub label_occurrence: BTreeMap<String, usize>,
    #[serde(rename = "totalBoxes")]
    pub total_boxes: usize,
    pub models: Vec<ModelRef>,
    pub inference_id: Uuid,
    pub pipeline_id: Uuid,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Serialize)]
pub struct ModelRef {
    pub name: String,
    pub version: String,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Serialize)]
pub struct ResponseBox {
    #[serde(rename = "box")]
    pub bbox: BoxCoordinates,
    pub label: String,
    pub score: f64,
    #[serde(rename = "topN")]
    pub top_n: Vec<TopCandidate>,
    pub overlapping: bool,
    #[serde(rename = "overlappingIndices")]
    pub overlapping_indices: Vec<usize>,
    /// `"#RRGGBB"`, or `[r, g, b]` with `color_format: "rgb"`.
    #[cfg_attr(feature = "openapi", schema(value_type = Object, example = "#ED1C24"))]
    pub color: Color,
    pub box_id: Uuid,
    pub top_id: Uuid,
    /// The seed id (as in `/seeds`) of the box's label; null when it names no known species.
    pub object_type_id: Option<Uuid>,
    /// A person verified the box (feedback); verified boxes are drawn green.
    pub is_verified: bool,
    /// A person said it is not a seed: still listed, so that the frontend can grey it.
    pub is_deleted: bool,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BoxCoordinates {
    pub top_x: i64,
    pub top_y: i64,
    pub bottom_x: i64,
    pub bottom_y: i64,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Serialize)]
pub struct TopCandidate {
    pub label: String,
    pub score: f64,
    pub object_id: Uuid,
}

#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error("{field}: {message}")]
    InvalidField {
        field: &'static str,
        message: String,
    },
    #[error("unknown pipeline \"{name}\" (known pipelines: {})", known.join(", "))]
    UnknownPipeline { name: String, known: Vec<String> },
    #[error("unknown user id {0}: get one from /get-user-id")]
    UnknownUser(Uuid),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("unknown email \"{0}\": this backend does not register users on request")]
    UnknownEmail(String),
    #[error("image: {0}")]
    UnsupportedImage(PictureError),
    #[error("image: {0}")]
    BadImage(PictureError),
    #[error("{0}")]
    Model(StepError),
    #[error("could not save the inference (nothing was kept): {0}")]
    Storage(String),
}

impl From<StoreError> for InferError {
    fn from(error: StoreError) -> Self {
        InferError::Storage(error.to_string())
    }
}

pub struct InferenceService {
    registry: Arc<PipelineRegistry>,
    runner: PipelineRunner,
    codec: CodecPool,
    users: Arc<dyn UserStore>,
    seeds: Arc<dyn SeedStore>,
    inferences: Arc<dyn InferenceStore>,
    folders: Arc<dyn FolderStore>,
    blobs: Arc<dyn BlobStore>,
    settings: ServiceSettings,
    /// Seed ids by lower-case name; seeds change only with migrations.
    seed_ids: OnceCell<HashMap<String, Uuid>>,
}

/// The adapters the service works through.
pub struct Ports {
    pub models: Arc<dyn ModelClient>,
    pub users: Arc<dyn UserStore>,
    pub seeds: Arc<dyn SeedStore>,
    pub inferences: Arc<dyn InferenceStore>,
    pub folders: Arc<dyn FolderStore>,
    pub blobs: Arc<dyn BlobStore>,
}

impl InferenceService {
    pub fn new(
        registry: Arc<PipelineRegistry>,
        ports: Ports,
        codec: CodecPool,
        settings: ServiceSettings,
    ) -> Self {
        Self {
            registry,
            runner: PipelineRunner::new(ports.models, codec.clone(), settings.max_crop_calls),
            codec,
            users: ports.users,
            seeds: ports.seeds,
            inferences: ports.inferences,
            folders: ports.folders,
            blobs: ports.blobs,
            settings,
            seed_ids: OnceCell::new(),
        }
    }

    pub fn registry(&self) -> &PipelineRegistry {
        &self.registry
    }

    /// `/get-user-id`: the id of a user by email (registered first when the setting allows).
    pub async fn user_id(&self, email: &str) -> Result<Uuid, InferError> {
        let email = email.trim().to_lowercase();
        // RFC 5321 caps an address at 254 bytes; no space or control character belongs in one.
        let well_formed = email.len() <= 254
            && !email.chars().any(|c| c.is_whitespace() || c.is_control())
            && matches!(email.split_once('@'), Some((local, domain))
                if !local.is_empty() && !domain.is_empty() && !domain.contains('@'));
        if !well_formed {
            return Err(InferError::InvalidField {
                field: "email",
                message: format!("\"{email}\" is not an email address"),
            });
        }
        if let Some(user) = self.users.find_by_email(&email).await? {
            return Ok(user.id);
        }
        if !self.settings.register_unknown_users {
            return Err(InferError::UnknownEmail(email));
        }
        Ok(self.users.register(&email).await?.id)
    }

    /// The id of a registered user (never registers: for administrators naming a user).
    pub async fn existing_user(&self, email: &str) -> Result<Uuid, InferError> {
        let email = email.trim().to_lowercase();
        match self.users.find_by_email(&email).await? {
            Some(user) => Ok(user.id),
            None => Err(InferError::NotFound(format!("no user {email}"))),
        }
    }

    /// `/seeds`.
    pub async fn seeds(&self) -> Result<Vec<datastore::Seed>, InferError> {
        Ok(self.seeds.list_seeds().await?)
    }

    /// `/inf`: checks, runs the pipeline, processes the result, stores all or nothing.
    ///
    /// Everything about the request is checked (the picture's header against `imageDims`,
    /// the validator, the user, the folder) before a model is called or a pixel decoded.
    pub async fn infer(&self, request: InferenceRequest) -> Result<InferenceResponse, InferError> {
        check_request(&request)?;
        // The set of pipelines this request uses to its end, even if a new version loads.
        let pipelines = self.registry.current();
        let pipeline =
            pipelines
                .find(&request.pipeline_name)
                .ok_or_else(|| InferError::UnknownPipeline {
                    name: request.pipeline_name.clone(),
                    known: pipelines.names().into_iter().map(str::to_owned).collect(),
                })?;
        let picture = self
            .codec
            .check(request.image.clone())
            .await
            .map_err(picture_error)?;
        let [width, height] = request.image_dims;
        if [picture.width, picture.height] != request.image_dims {
            return Err(InferError::InvalidField {
                field: "imageDims",
                message: format!(
                    "[{width}, {height}] does not match the image, which is [{}, {}]",
                    picture.width, picture.height
                ),
            });
        }
        if let Some(validator) = &request.validator
            && !validator.eq_ignore_ascii_case(&picture.sha256)
        {
            return Err(InferError::InvalidField {
                field: "validator",
                message: "does not match the SHA-256 of the image: send the image that was checked"
                    .into(),
            });
        }
        if self.users.find_by_id(request.user_id).await?.is_none() {
            return Err(InferError::UnknownUser(request.user_id));
        }
        let folder = self.folder(&request).await?;
        let picture_id = Uuid::new_v4();
        let picture_key = blob_key(
            &request.container_name,
            folder.id,
            &format!("{picture_id}.{}", picture.format.extension()),
        )?;
        let result_key = blob_key(
            &request.container_name,
            folder.id,
            &format!("{picture_id}.result.json"),
        )?;

        // The picture is written while the models work: a 1 MB write with its fsync is off
        // the request's critical path.
        let mut picture_blob = PictureBlob::write(
            self.blobs.clone(),
            picture_key.clone(),
            picture.bytes.clone(),
        );
        let detections = self.runner.run(pipeline, &picture).await;
        let written = picture_blob.written().await;
        let detections = match (detections, written) {
            (Ok(detections), Ok(())) => detections,
            (Err(e), _) => {
                picture_blob.discard().await;
                return Err(match e {
                    RunError::Picture(e) => picture_error(e),
                    RunError::Step(e) => InferError::Model(e),
                });
            }
            (Ok(_), Err(e)) => return Err(e),
        };
        let processed = process(
            &detections,
            width,
            height,
            request.area_ratio,
            request.color_format,
        );

        let seed_ids = match self.seed_ids().await {
            Ok(seed_ids) => seed_ids,
            Err(e) => {
                picture_blob.discard().await;
                return Err(e);
            }
        };
        let mut boxes = Vec::with_capacity(processed.boxes.len());
        let mut response_boxes = Vec::with_capacity(processed.boxes.len());
        for (i, b) in processed.boxes.iter().enumerate() {
            let candidates: Vec<NewCandidate> = b
                .top_n
                .iter()
                .map(|c| NewCandidate {
                    id: Uuid::new_v4(),
                    label: c.label.clone(),
                    score: c.score,
                    seed_id: seed_ids.get(&c.label.to_lowercase()).copied(),
                })
                .collect();
            let new_box = NewBox {
                id: Uuid::new_v4(),
                position: (i + 1) as u32,
                top_x: b.pixels.top_x,
                top_y: b.pixels.top_y,
                bottom_x: b.pixels.bottom_x,
                bottom_y: b.pixels.bottom_y,
                label: b.label.clone(),
                score: b.score,
                overlapping: b.overlapping,
                candidates,
                verification: None,
                drawn_by_person: false,
            };
            response_boxes.push(ResponseBox {
                bbox: BoxCoordinates {
                    top_x: b.pixels.top_x,
                    top_y: b.pixels.top_y,
                    bottom_x: b.pixels.bottom_x,
                    bottom_y: b.pixels.bottom_y,
                },
                label: b.label.clone(),
                score: b.score,
                top_n: new_box
                    .candidates
                    .iter()
                    .map(|c| TopCandidate {
                        label: c.label.clone(),
                        score: c.score,
                        object_id: c.id,
                    })
                    .collect(),
                overlapping: b.overlapping,
                overlapping_indices: b.overlapping_indices.clone(),
                color: b.color,
                box_id: new_box.id,
                top_id: new_box.candidates[0].id,
                object_type_id: seed_ids.get(&b.label.to_lowercase()).copied(),
                is_verified: false,
                is_deleted: false,
            });
            boxes.push(new_box);
        }
        let response = InferenceResponse {
            filename: picture_key.to_string(),
            boxes: response_boxes,
            label_occurrence: processed.label_occurrence,
            total_boxes: processed.total_boxes,
            models: pipeline
                .models
                .iter()
                .map(|m| ModelRef {
                    name: m.definition.name.clone(),
                    version: m.definition.version.clone(),
                })
                .collect(),
            inference_id: Uuid::new_v4(),
            pipeline_id: pipeline.id,
        };
        let result = match serde_json::to_value(&response) {
            Ok(result) => result,
            Err(e) => {
                picture_blob.discard().await;
                return Err(InferError::Storage(format!(
                    "could not serialize the result: {e}"
                )));
            }
        };
        let record = NewInference {
            id: response.inference_id,
            user_id: request.user_id,
            pipeline_id: pipeline.id,
            picture: NewPicture {
                id: picture_id,
                user_id: request.user_id,
                container: request.container_name.clone(),
                picture_set: folder.name,
                picture_set_id: folder.id,
                blob_key: picture_key.to_string(),
                sha256: picture.sha256.clone(),
                content_type: picture.format.mime_type().to_owned(),
                width,
                height,
            },
            result_blob_key: result_key.to_string(),
            result: result.clone(),
            boxes,
            created_at: Utc::now(),
        };
        if let Err(e) = self.store(&record, &result_key).await {
            picture_blob.discard().await;
            return Err(e);
        }
        picture_blob.keep();
        Ok(response)
    }

    /// `/image-validation`: checks a picture as `/inf` would, and gives its SHA-256 (hex),
    /// which a later `/inf` may send as its `validator`.
    pub async fn image_sha256(&self, data_url: Bytes) -> Result<String, InferError> {
        let picture = self.codec.validate(data_url).await.map_err(picture_error)?;
        Ok(picture.sha256)
    }

    /// A saved inference as it stands now (see [`crate::stored`]), if the caller owns it.
    pub async fn find(&self, caller: Uuid, id: Uuid) -> Result<InferenceResponse, InferError> {
        let stored = self
            .inferences
            .find_inference(id)
            .await?
            .ok_or_else(|| InferError::NotFound(format!("no inference {id}")))?;
        if stored.user_id != caller {
            return Err(InferError::Forbidden(format!(
                "the inference {id} is another user's"
            )));
        }
        Ok(crate::stored::rebuild(&stored))
    }

    /// The folder `/inf` stores into: `folder_name` is a folder's id, or its name. A folder
    /// of that name that does not exist yet is made with the inference's rows (so that a
    /// failed `/inf` leaves no empty folder); its id is chosen here, for the blob keys.
    async fn folder(&self, request: &InferenceRequest) -> Result<Folder, InferError> {
        let Ok(id) = Uuid::parse_str(&request.folder_name) else {
            let existing = self
                .folders
                .find_folder_by_name(request.user_id, &request.folder_name)
                .await?;
            return Ok(existing.unwrap_or_else(|| Folder {
                id: Uuid::new_v4(),
                user_id: request.user_id,
                container: request.container_name.clone(),
                name: request.folder_name.clone(),
            }));
        };
        match self.folders.find_folder(id).await? {
            Some(folder) if folder.user_id == request.user_id => Ok(folder),
            Some(_) => Err(InferError::Forbidden(format!(
                "folder_name: the folder {id} is another user's"
            ))),
            None => Err(InferError::NotFound(format!(
                "folder_name: no folder {id} (it may have been deleted; list them with /get-directories)"
            ))),
        }
    }

    /// The result document, then the rows in one transaction (the picture is written
    /// already); deletes the result document again if the transaction fails.
    async fn store(&self, record: &NewInference, result_key: &BlobKey) -> Result<(), InferError> {
        let result_bytes =
            Bytes::from(serde_json::to_vec(&record.result).map_err(|e| {
                InferError::Storage(format!("could not serialize the result: {e}"))
            })?);
        self.blobs
            .put_new(result_key, result_bytes)
            .await
            .map_err(|e| InferError::Storage(e.to_string()))?;
        if let Err(e) = self.inferences.save_inference(record).await {
            if let Err(error) = self.blobs.delete(result_key).await {
                tracing::error!(key = %result_key, %error, "could not delete a blob of a failed inference");
            }
            return Err(e.into());
        }
        Ok(())
    }

    async fn seed_ids(&self) -> Result<&HashMap<String, Uuid>, InferError> {
        self.seed_ids
            .get_or_try_init(|| async {
                let seeds = self.seeds.list_seeds().await?;
                Ok::<_, InferError>(
                    seeds
                        .into_iter()
                        .map(|s| (s.name.to_lowercase(), s.id))
                        .collect(),
                )
            })
            .await
    }
}

fn check_request(request: &InferenceRequest) -> Result<(), InferError> {
    let invalid =
        |field: &'static str, message: String| Err(InferError::InvalidField { field, message });
    if !(request.area_ratio > 0.0 && request.area_ratio <= 1.0) {
        return invalid(
            "area_ratio",
            format!("{} is not a ratio in (0, 1]", request.area_ratio),
        );
    }
    if request.image_dims.contains(&0) {
        return invalid("imageDims", "width and height must be positive".into());
    }
    if let Err(message) = crate::folders::check_folder_name(&request.folder_name) {
        return invalid("folder_name", message);
    }
    if let Err(message) = BlobKey::check_segment(&request.container_name) {
        return invalid("container_name", message);
    }
    Ok(())
}

/// `{container}/{folder id}/{file}`: ids only, so that any accepted name fits any store.
fn blob_key(container: &str, folder: Uuid, file: &str) -> Result<BlobKey, InferError> {
    BlobKey::from_segments(&[container, &folder.to_string(), file]).map_err(InferError::Storage)
}

fn picture_error(error: PictureError) -> InferError {
    match error {
        PictureError::UnsupportedType(_) => InferError::UnsupportedImage(error),
        other => InferError::BadImage(other),
    }
}

/// The picture's blob of one `/inf`, written by a task of its own while the models work,
/// and deleted again unless [`PictureBlob::keep`] is called: by [`PictureBlob::discard`] on a
/// failure, or, when the request is dropped on the way (its client left), by a task that
/// waits for the write to end first (a delete that overtook the write would leave it).
struct PictureBlob {
    blobs: Arc<dyn BlobStore>,
    key: BlobKey,
    state: PictureBlobState,
}

enum PictureBlobState {
    Writing(JoinHandle<Result<(), BlobError>>),
    /// On storage: deleted unless kept.
    Written,
    /// Failed, deleted or kept: nothing more to do.
    Settled,
}

impl PictureBlob {
    fn write(blobs: Arc<dyn BlobStore>, key: BlobKey, bytes: Bytes) -> Self {
        let write = tokio::spawn({
            let (blobs, key) = (blobs.clone(), key.clone());
            async move { blobs.put_new(&key, bytes).await }
        });
        Self {
            blobs,
            key,
            state: PictureBlobState::Writing(write),
        }
    }

    /// Waits for the write to end.
    async fn written(&mut self) -> Result<(), InferError> {
        let PictureBlobState::Writing(write) = &mut self.state else {
            return Ok(());
        };
        let outcome = match write.await {
            Ok(outcome) => outcome.map_err(|e| InferError::Storage(e.to_string())),
            Err(e) => Err(InferError::Storage(format!(
                "the picture's write did not end: {e}"
            ))),
        };
        self.state = match outcome {
            Ok(()) => PictureBlobState::Written,
            Err(_) => PictureBlobState::Settled,
        };
        outcome
    }

    /// The inference is saved: the picture stays.
    fn keep(mut self) {
        self.state = PictureBlobState::Settled;
    }

    /// The inference failed: the picture goes (once its write has ended).
    async fn discard(mut self) {
        // A failed write left nothing; its error was reported where it was awaited.
        let _ = self.written().await;
        if matches!(self.state, PictureBlobState::Written) {
            delete_picture(&*self.blobs, &self.key).await;
        }
        self.state = PictureBlobState::Settled;
    }
}

impl Drop for PictureBlob {
    fn drop(&mut self) {
        let state = std::mem::replace(&mut self.state, PictureBlobState::Settled);
        let write = match state {
            PictureBlobState::Settled => return,
            PictureBlobState::Writing(write) => Some(write),
            PictureBlobState::Written => None,
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!(key = %self.key, "a dropped inference's picture is left: no runtime to delete it");
            return;
        };
        let (blobs, key) = (self.blobs.clone(), self.key.clone());
        runtime.spawn(async move {
            let written = match write {
                Some(write) => matches!(write.await, Ok(Ok(()))),
                None => true,
            };
            if written {
                delete_picture(&*blobs, &key).await;
            }
        });
    }
}

async fn delete_picture(blobs: &dyn BlobStore, key: &BlobKey) {
    if let Err(error) = blobs.delete(key).await {
        tracing::error!(%key, %error, "could not delete the picture of a failed inference");
    }
}
