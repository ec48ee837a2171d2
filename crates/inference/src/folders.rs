//! The user's folders (picture sets) and pictures: listing, creating, reading a picture
//! back, importing labelled pictures in batches, and deleting a folder with its blobs.
//!
//! Every operation is the caller's: a folder or picture of another user is refused
//! ([`FolderError::Forbidden`]). Every user has a folder named by
//! [`FolderSettings::default_folder`] ("General"); it is created when first listed and
//! cannot be deleted.
//!
//! What a deletion leaves: nothing, once it has run to its end. Rows go and their blobs are
//! queued in one transaction; then the blobs are deleted and forgotten. A blob that could
//! not be deleted stays queued and is deleted by the next deletion or by
//! [`FolderService::delete_queued_blobs`] (run at start). A failed transaction changes
//! nothing in either place.
//!
//! Verified pictures are training data: deleting with [`DeletionMode::Archive`] moves them
//! to the archive owner's storage (a folder of their own per deleted folder) instead.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::Utc;
use datastore::{
    ArchiveDestination, BlobError, BlobKey, BlobStore, Folder, FolderContents, FolderDeletion,
    FolderStore, ImportedPicture, InferenceStore, PictureLabel, SeedStore, StoreError,
    StoredPicture, UserStore,
};
use futures::StreamExt;
use uuid::Uuid;

use crate::codec::CodecPool;
use crate::service::InferenceResponse;

/// Blob deletions that run at once.
const BLOB_DELETIONS_AT_ONCE: usize = 8;
/// Queued blob deletions taken per round by [`FolderService::delete_queued_blobs`].
const QUEUED_PER_ROUND: usize = 500;

#[derive(Clone, Debug, serde::Deserialize)]
pub struct FolderSettings {
    /// The folder every user has, which cannot be deleted.
    pub default_folder: String,
    /// Email of the account that receives verified pictures of deleted folders
    /// (registered when first needed).
    pub archive_owner: String,
}

/// What becomes of a deleted folder's verified pictures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeletionMode {
    /// They move to the archive owner; the rest is deleted.
    Archive,
    /// Everything is deleted.
    Permanently,
}

/// A stored picture as a data URL, and its latest inference as it stands now.
#[derive(Clone, Debug)]
pub struct PictureWithInference {
    pub picture: StoredPicture,
    /// `data:<content type>;base64,<bytes>`, as `/inf` takes it.
    pub data_url: String,
    pub inference: Option<InferenceResponse>,
}

#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error(
        "the batch has received the {0} pictures it announced: open another with /new-batch-import"
    )]
    BatchFull(u32),
    #[error("you already have a folder named \"{0}\"")]
    AlreadyExists(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("the folder \"{0}\" is every user's default folder: it cannot be deleted")]
    DefaultFolder(String),
    #[error("storage error: {0}")]
    Storage(String),
}

impl From<StoreError> for FolderError {
    fn from(error: StoreError) -> Self {
        FolderError::Storage(error.to_string())
    }
}

impl From<BlobError> for FolderError {
    fn from(error: BlobError) -> Self {
        FolderError::Storage(error.to_string())
    }
}

pub struct FolderService {
    folders: Arc<dyn FolderStore>,
    inferences: Arc<dyn InferenceStore>,
    users: Arc<dyn UserStore>,
    seeds: Arc<dyn SeedStore>,
    blobs: Arc<dyn BlobStore>,
    codec: CodecPool,
    settings: FolderSettings,
}

/// The adapters the folder use cases work through.
pub struct FolderPorts {
    pub folders: Arc<dyn FolderStore>,
    pub inferences: Arc<dyn InferenceStore>,
    pub users: Arc<dyn UserStore>,
    pub seeds: Arc<dyn SeedStore>,
    pub blobs: Arc<dyn BlobStore>,
}

/// A labelled picture of a batch import, as the frontend sends it.
#[derive(Clone, Debug)]
pub struct LabelledUpload {
    pub session_id: Uuid,
    /// `data:image/<type>;base64,<data>`, checked as `/inf` checks it.
    pub image: String,
    /// The species: a seed id, or (without one) a known species' name.
    pub seed_id: Option<Uuid>,
    pub seed_name: Option<String>,
    pub zoom_level: f64,
    pub nb_seeds: u32,
}

impl FolderService {
    pub fn new(ports: FolderPorts, codec: CodecPool, settings: FolderSettings) -> Self {
        Self {
            folders: ports.folders,
            inferences: ports.inferences,
            users: ports.users,
            seeds: ports.seeds,
            blobs: ports.blobs,
            codec,
            settings,
        }
    }

    /// `/get-directories`: the caller's folders with their pictures; the default one exists.
    pub async fn list(&self, caller: Uuid) -> Result<Vec<FolderContents>, FolderError> {
        self.folders
            .find_or_create_folder(caller, &caller.to_string(), &self.settings.default_folder)
            .await?;
        Ok(self.folders.list_folders(caller).await?)
    }

    /// `/create-dir`.
    pub async fn create(&self, caller: Uuid, name: &str) -> Result<Folder, FolderError> {
        valid_folder_name(name)?;
        match self
            .folders
            .create_folder(caller, &caller.to_string(), name)
            .await
        {
            Err(StoreError::Conflict(_)) => Err(FolderError::AlreadyExists(name.to_owned())),
            other => Ok(other?),
        }
    }

    /// `/delete-request`: whether deleting the folder concerns verified pictures (the
    /// frontend then asks whether to archive them).
    pub async fn holds_verified(&self, caller: Uuid, folder_id: Uuid) -> Result<bool, FolderError> {
        let folder = self.own_folder(caller, folder_id).await?;
        Ok(self.folders.count_verified_pictures(folder.id).await? > 0)
    }

    /// `/del`, `/delete-with-archive` (archive), `/delete-permanently`.
    pub async fn delete(
        &self,
        caller: Uuid,
        folder_id: Uuid,
        mode: DeletionMode,
    ) -> Result<FolderDeletion, FolderError> {
        let folder = self.own_folder(caller, folder_id).await?;
        if folder.name == self.settings.default_folder {
            return Err(FolderError::DefaultFolder(folder.name));
        }
        let archive = match mode {
            DeletionMode::Permanently => None,
            DeletionMode::Archive => Some(self.archive_destination(&folder).await?),
        };
        let deletion = self.folders.delete_folder(folder.id, archive).await?;
        tracing::info!(
            folder = %folder.id,
            deleted = deletion.deleted_pictures,
            archived = deletion.archived_pictures,
            "folder deleted"
        );
        self.delete_blobs(&deletion.queued_blobs).await;
        Ok(deletion)
    }

    /// `/get-picture`: a picture of the caller's, its bytes and its latest inference.
    pub async fn picture(
        &self,
        caller: Uuid,
        picture_id: Uuid,
    ) -> Result<PictureWithInference, FolderError> {
        let picture = self
            .folders
            .find_picture(picture_id)
            .await?
            .ok_or_else(|| FolderError::NotFound(format!("no picture {picture_id}")))?;
        if picture.user_id != caller {
            return Err(FolderError::Forbidden(format!(
                "the picture {picture_id} is another user's"
            )));
        }
        let key = BlobKey::parse(&picture.blob_key).map_err(FolderError::Storage)?;
        let bytes = self.blobs.get(&key).await?;
        let content_type = picture.content_type.clone();
        let data_url = self
            .codec
            .run(move || data_url(&content_type, &bytes))
            .await;
        let inference = match picture.latest_inference {
            Some(id) => self
                .inferences
                .find_inference(id)
                .await?
                .map(|stored| crate::stored::rebuild(&stored)),
            None => None,
        };
        Ok(PictureWithInference {
            picture,
            data_url,
            inference,
        })
    }

    /// `/new-batch-import`: a batch of `expected` labelled pictures into the caller's folder
    /// of that name (created when missing). Returns the batch's id.
    pub async fn open_import(
        &self,
        caller: Uuid,
        folder_name: &str,
        expected: u32,
    ) -> Result<Uuid, FolderError> {
        valid_folder_name(folder_name)?;
        if expected == 0 {
            return Err(FolderError::Invalid {
                field: "nb_pictures",
                message: "a batch announces at least one picture".into(),
            });
        }
        let (session, _) = self
            .folders
            .open_import(caller, &caller.to_string(), folder_name, expected)
            .await?;
        Ok(session.id)
    }

    /// `/upload-picture`: a labelled picture of an open batch, verified on arrival. A batch
    /// that was not opened, another user's, or one that has received every picture it
    /// announced is refused, and nothing is kept.
    pub async fn upload(&self, caller: Uuid, upload: LabelledUpload) -> Result<Uuid, FolderError> {
        let session = self
            .folders
            .find_import(upload.session_id)
            .await?
            .ok_or_else(|| {
                FolderError::NotFound(format!(
                    "session_id: no batch {} (open one with /new-batch-import)",
                    upload.session_id
                ))
            })?;
        if session.user_id != caller {
            return Err(FolderError::Forbidden(format!(
                "session_id: the batch {} is another user's",
                session.id
            )));
        }
        if session.received_pictures >= session.expected_pictures {
            return Err(FolderError::BatchFull(session.expected_pictures));
        }
        let label = PictureLabel {
            seed_id: self
                .species(upload.seed_id, upload.seed_name.as_deref())
                .await?,
            zoom_level: upload.zoom_level,
            nb_seeds: upload.nb_seeds,
        };
        if !(label.zoom_level.is_finite() && label.zoom_level > 0.0) {
            return Err(FolderError::Invalid {
                field: "zoom_level",
                message: format!("{} is not a positive number", label.zoom_level),
            });
        }
        let folder = self
            .folders
            .find_folder(session.folder_id)
            .await?
            .ok_or_else(|| {
                FolderError::NotFound(format!("the batch's folder {} is gone", session.folder_id))
            })?;
        let picture = self
            .codec
            .validate(upload.image.into())
            .await
            .map_err(|e| FolderError::Invalid {
                field: "image",
                message: e.to_string(),
            })?;
        let id = Uuid::new_v4();
        let key = BlobKey::from_segments(&[
            folder.container.as_str(),
            &folder.id.to_string(),
            &format!("{id}.{}", picture.format.extension()),
        ])
        .map_err(FolderError::Storage)?;
        self.blobs.put_new(&key, picture.bytes.clone()).await?;
        let saved = self
            .folders
            .save_imported_picture(&ImportedPicture {
                session_id: session.id,
                id,
                user_id: caller,
                blob_key: key.to_string(),
                sha256: picture.sha256.clone(),
                content_type: picture.format.mime_type().to_owned(),
                width: picture.width,
                height: picture.height,
                label,
                created_at: Utc::now(),
            })
            .await;
        if let Err(error) = saved {
            if let Err(undo) = self.blobs.delete(&key).await {
                tracing::error!(%key, %undo, "could not delete the blob of a refused upload");
            }
            return Err(match error {
                StoreError::Conflict(_) => FolderError::BatchFull(session.expected_pictures),
                other => other.into(),
            });
        }
        Ok(id)
    }

    /// A seed id that exists, or the id of a known species named (case-insensitively).
    async fn species(&self, id: Option<Uuid>, name: Option<&str>) -> Result<Uuid, FolderError> {
        let seeds = self.seeds.list_seeds().await?;
        let found = match (id, name.map(str::trim).filter(|n| !n.is_empty())) {
            (Some(id), _) => seeds.iter().find(|s| s.id == id),
            (None, Some(name)) => seeds.iter().find(|s| s.name.eq_ignore_ascii_case(name)),
            (None, None) => {
                return Err(FolderError::Invalid {
                    field: "seed_id",
                    message: "missing: name the pictures' species (see /seeds)".into(),
                });
            }
        };
        found.map(|s| s.id).ok_or_else(|| FolderError::Invalid {
            field: "seed_id",
            message: format!(
                "{} is no known species (see /seeds)",
                id.map_or_else(
                    || format!("\"{}\"", name.unwrap_or_default()),
                    |i| i.to_string()
                )
            ),
        })
    }

    /// Deletes the blobs still queued (after a failure of an earlier deletion). Returns how
    /// many remain queued because they could not be deleted now.
    pub async fn delete_queued_blobs(&self) -> Result<usize, FolderError> {
        loop {
            let queued = self.folders.queued_blob_deletions(QUEUED_PER_ROUND).await?;
            let round = queued.len();
            let deleted = self.delete_blobs(&queued).await;
            // Stop when the queue is drained, or when nothing more can be deleted now.
            if round < QUEUED_PER_ROUND || deleted == 0 {
                return Ok(round - deleted);
            }
        }
    }

    async fn own_folder(&self, caller: Uuid, folder_id: Uuid) -> Result<Folder, FolderError> {
        match self.folders.find_folder(folder_id).await? {
            Some(folder) if folder.user_id == caller => Ok(folder),
            Some(_) => Err(FolderError::Forbidden(format!(
                "the folder {folder_id} is another user's"
            ))),
            None => Err(FolderError::NotFound(format!(
                "no folder {folder_id} (list them with /get-directories)"
            ))),
        }
    }

    async fn archive_destination(
        &self,
        folder: &Folder,
    ) -> Result<ArchiveDestination, FolderError> {
        let email = &self.settings.archive_owner;
        let owner = match self.users.find_by_email(email).await? {
            Some(user) => user,
            None => self.users.register(email).await?,
        };
        let from = self
            .users
            .find_by_id(folder.user_id)
            .await?
            .map_or_else(|| folder.user_id.to_string(), |u| u.email);
        Ok(ArchiveDestination {
            owner: owner.id,
            folder_name: format!("{} (archived from {from}, {})", folder.name, folder.id),
        })
    }

    /// Deletes blobs whose rows are gone, then forgets them; those that fail stay queued.
    /// Returns how many were deleted.
    async fn delete_blobs(&self, keys: &[String]) -> usize {
        let results: Vec<(String, Result<(), String>)> =
            futures::stream::iter(keys.iter().cloned())
                .map(|key| async move {
                    let outcome = match BlobKey::parse(&key) {
                        Ok(blob) => self.blobs.delete(&blob).await.map_err(|e| e.to_string()),
                        // Not a key this backend could have written: nothing to delete.
                        Err(_) => Ok(()),
                    };
                    (key, outcome)
                })
                .buffer_unordered(BLOB_DELETIONS_AT_ONCE)
                .collect()
                .await;
        let mut deleted = Vec::with_capacity(results.len());
        for (key, outcome) in results {
            match outcome {
                Ok(()) => deleted.push(key),
                Err(error) => {
                    tracing::warn!(%key, %error, "could not delete a blob; it stays queued for a later attempt");
                }
            }
        }
        if let Err(error) = self.folders.forget_blob_deletions(&deleted).await {
            // Deleting a missing blob is not an error: the next attempt forgets them.
            tracing::warn!(%error, "could not forget deleted blobs; they will be deleted again");
        }
        deleted.len()
    }
}

/// A folder name is one line of printable text of 1 to 255 characters, without `/` or `\`
/// (it reads like a path), that neither starts nor ends with a space. It is only ever shown, never part of a blob key (keys hold the
/// folder's id).
pub fn check_folder_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".into());
    }
    if name.chars().count() > MAX_FOLDER_NAME_CHARS {
        return Err(format!("is longer than {MAX_FOLDER_NAME_CHARS} characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_control() || *c == '/' || *c == '\\')
    {
        return Err(format!("may not contain {c:?}"));
    }
    if name.trim() != name {
        return Err(format!("\"{name}\" starts or ends with spaces"));
    }
    Ok(())
}

fn valid_folder_name(name: &str) -> Result<(), FolderError> {
    check_folder_name(name).map_err(|message| FolderError::Invalid {
        field: "folder_name",
        message,
    })
}

/// The longest folder name, in characters.
pub const MAX_FOLDER_NAME_CHARS: usize = 255;

fn data_url(content_type: &str, bytes: &[u8]) -> String {
    format!("data:{content_type};base64,{}", BASE64.encode(bytes))
}
