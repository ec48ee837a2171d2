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
    /// The picture set (the frontend's "folder"); found or created on save.
    pub picture_set: String,
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
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewCandidate {
    pub id: Uuid,
    pub label: String,
    pub score: f64,
    /// The seed species this label names, when it names a known one.
    pub seed_id: Option<Uuid>,
}
