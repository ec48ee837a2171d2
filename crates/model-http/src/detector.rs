//! Seed detector (object detection): the whole picture in, normalized boxes out.

use inference::{DetectedBox, ModelCallError};
use serde::Deserialize;

use crate::{WireBox, parse};

/// `{"input_data": {"columns": ["image"], "index": [0], "data": ["<base64 image>"]}}`
pub(crate) fn body(picture_base64: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "input_data": {"columns": ["image"], "index": [0], "data": [picture_base64]}
    }))
    .expect("a JSON value serializes")
}

#[derive(Deserialize)]
pub(crate) struct Answer {
    pub(crate) boxes: Vec<WireBox>,
}

/// `{"boxes": [{"box": {topX, topY, bottomX, bottomY}, "label", "score"}]}`
pub(crate) fn boxes(answer: &[u8]) -> Result<Vec<DetectedBox>, ModelCallError> {
    let answer: Answer = parse(answer, r#"{"boxes": [{"box": {...}, "label", "score"}]}"#)?;
    Ok(answer.boxes.into_iter().map(DetectedBox::from).collect())
}
