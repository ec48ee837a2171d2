use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub registered_at: DateTime<Utc>,
}

/// A seed species the classifiers may name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seed {
    pub id: Uuid,
    pub name: String,
}

/// A picture as it is stored: its bytes are in blob storage at `blob_key`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewPicture {
    pub id: Uuid,
    pub user_id: Uuid,
    /// The user's storage (container or namespace) that holds the picture set.
    pub container: String,
    /// The picture set (the frontend's "folder"), by name; found or created on save.
    pub picture_set: String,
    /// The picture set's id if it exists, else the id it is created with (the blob key
    /// names it).
    pub picture_set_id: Uuid,
    pub blob_key: String,
    /// Hex SHA-256 of the picture's bytes.
    pub sha256: String,
    pub content_type: String,
    pub width: u32,
    pub height: u32,
}

/// One inference with everything it produced; saved whole or not at all.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewInference {
    pub id: Uuid,
    pub user_id: Uuid,
    pub pipeline_id: Uuid,
    pub picture: NewPicture,
    /// Where the processed result document is in blob storage.
    pub result_blob_key: String,
    /// The processed result, as returned to the user.
    pub result: serde_json::Value,
    pub boxes: Vec<NewBox>,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewBox {
    pub id: Uuid,
    /// 1-based position in the result.
    pub position: u32,
    pub top_x: i64,
    pub top_y: i64,
    pub bottom_x: i64,
    pub bottom_y: i64,
    pub label: String,
    pub score: f64,
    pub overlapping: bool,
    /// Best first; the first one is the box's top candidate.
    pub candidates: Vec<NewCandidate>,
    /// A person's verdict on the box; `None` until someone verified it.
    pub verification: Option<BoxVerification>,
    /// Drawn by a person (a seed the detector missed), not found by a model.
    pub drawn_by_person: bool,
}

/// Who verified a box, when, and as what.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BoxVerification {
    pub at: DateTime<Utc>,
    pub by: Uuid,
    /// The candidate naming the verified species; `None`: deleted, "not a seed".
    pub candidate_id: Option<Uuid>,
    /// The analyst's reason, as the frontend sends it ("Wrong Seed", "No Seed", ...).
    pub comment: Option<String>,
}

/// Box corners in whole pixels of the picture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Corners {
    pub top_x: i64,
    pub top_y: i64,
    pub bottom_x: i64,
    pub bottom_y: i64,
}

/// A species a person names for a box.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NamedSpecies {
    /// A species in the database, by seed id.
    Known(Uuid),
    /// A name typed by hand that matches no known species (case-insensitively): the store
    /// creates the species, unless a concurrent call just did.
    New(String),
}

/// One change a person makes to an inference's boxes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum BoxChange {
    /// Verifies the box as its top candidate.
    Confirm { box_id: Uuid },
    /// Verifies the box as a species: one of its candidates, or a new candidate with score 0.
    Verify { box_id: Uuid, species: NamedSpecies },
    /// Moves the box (with a `Verify` of the same box in the same feedback).
    Move { box_id: Uuid, corners: Corners },
    /// Verifies the box as "not a seed": it stays listed, marked.
    Delete { box_id: Uuid },
    /// A seed the detector missed, drawn by a person: a new verified box.
    Add {
        box_id: Uuid,
        corners: Corners,
        species: NamedSpecies,
    },
}

/// What one feedback call changes, all in one transaction, by whom and when.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Feedback {
    pub inference_id: Uuid,
    pub by: Uuid,
    pub at: DateTime<Utc>,
    pub comment: Option<String>,
    pub changes: Vec<BoxChange>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewCandidate {
    pub id: Uuid,
    pub label: String,
    pub score: f64,
    /// The seed species this label names, when it names a known one.
    pub seed_id: Option<Uuid>,
}

/// A user's folder of pictures (a "picture set"); names are unique per user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Folder {
    pub id: Uuid,
    pub user_id: Uuid,
    /// The user's storage that holds the folder's blobs.
    pub container: String,
    pub name: String,
}

/// A folder and what the frontend shows of its pictures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderContents {
    pub folder: Folder,
    /// Oldest first.
    pub pictures: Vec<PictureSummary>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PictureSummary {
    pub id: Uuid,
    pub has_inference: bool,
    /// Labelled on import, or its latest inference has boxes and a person verified every
    /// one of them.
    pub verified: bool,
}

/// A stored picture and where its bytes are.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredPicture {
    pub id: Uuid,
    pub user_id: Uuid,
    pub folder_id: Uuid,
    pub blob_key: String,
    pub content_type: String,
    pub sha256: String,
    /// The latest inference of the picture, if any.
    pub latest_inference: Option<Uuid>,
}

/// Where a deletion moves the verified pictures it keeps for training.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveDestination {
    /// The archive's owner, who gets the pictures.
    pub owner: Uuid,
    /// The owner's folder that receives them (created; unique per archived folder).
    pub folder_name: String,
}

/// What a folder deletion did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FolderDeletion {
    pub deleted_pictures: usize,
    pub archived_pictures: usize,
    /// Blobs of the deleted rows, queued for deletion in the same transaction.
    pub queued_blobs: Vec<String>,
}

/// A batch of labelled pictures the frontend announced (`/new-batch-import`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportSession {
    pub id: Uuid,
    pub user_id: Uuid,
    pub folder_id: Uuid,
    pub expected_pictures: u32,
    pub received_pictures: u32,
}

/// What a trusted person says of an imported picture: it is verified on arrival.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PictureLabel {
    pub seed_id: Uuid,
    pub zoom_level: f64,
    pub nb_seeds: u32,
}

/// A picture imported in a batch, already labelled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImportedPicture {
    pub session_id: Uuid,
    pub id: Uuid,
    pub user_id: Uuid,
    pub blob_key: String,
    pub sha256: String,
    pub content_type: String,
    pub width: u32,
    pub height: u32,
    pub label: PictureLabel,
    pub created_at: DateTime<Utc>,
}

/// Which verified pictures a dataset export takes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DatasetFilter {
    /// One user's pictures; `None`: everyone's (administrators).
    pub user_id: Option<Uuid>,
    /// One folder.
    pub folder_id: Option<Uuid>,
    /// Pictures taken at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Pictures taken before this time.
    pub to: Option<DateTime<Utc>>,
}

/// Where a paged read of the dataset stopped: the last picture scanned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DatasetCursor {
    pub created_at: DateTime<Utc>,
    pub picture_id: Uuid,
}

/// A verified picture and its verified seeds, as training data.
#[derive(Clone, Debug, PartialEq)]
pub struct DatasetPicture {
    pub id: Uuid,
    pub owner_email: String,
    pub folder_name: String,
    pub blob_key: String,
    pub content_type: String,
    pub width: u32,
    pub height: u32,
    pub created_at: DateTime<Utc>,
    /// Labelled on import (such a picture has no boxes).
    pub label: Option<PictureLabel>,
    /// The boxes verified as seeds (boxes deleted as "not a seed" are left out).
    pub boxes: Vec<DatasetBox>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DatasetBox {
    pub corners: Corners,
    pub seed_id: Uuid,
    pub drawn_by_person: bool,
    pub verified_by: String,
    pub verified_at: DateTime<Utc>,
}

/// One page of a dataset read: the verified pictures among those scanned, and where to go on
/// (`None`: nothing is left).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DatasetPage {
    pub pictures: Vec<DatasetPicture>,
    pub next: Option<DatasetCursor>,
}
