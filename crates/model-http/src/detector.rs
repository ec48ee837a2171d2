//! Seed detector (object detection): the whole picture in, normalized boxes out.

use bytes::{Bytes, BytesMut};
use inference::{DetectedBox, ModelCallError};
use serde::Deserialize;

use crate::{WireBox, parse};

/// `{"input_data": {"columns": ["image"], "index": [0], "data": ["<base64 image>"]}}`
///
/// Base64 text needs no escaping in a JSON string, so it is copied in as it is (one copy of
/// a megabyte, not a serializer's pass over it); text that needs escaping goes through
/// serde_json.
pub(crate) fn body(picture_base64: &[u8]) -> Bytes {
    const BEFORE: &[u8] = br#"{"input_data": {"columns": ["image"], "index": [0], "data": [""#;
    const AFTER: &[u8] = br#""]}}"#;
    // What JSON would escape: a quote, a backslash, a control character. Folded over every
    // byte without stopping early, so that it compiles to vector instructions (a megabyte
    // in a few dozen microseconds, on the async executor's thread).
    let plain = !picture_base64.iter().fold(false, |escape, &b| {
        escape | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if !plain {
        let text = String::from_utf8_lossy(picture_base64);
        return serde_json::to_vec(&serde_json::json!({
            "input_data": {"columns": ["image"], "index": [0], "data": [text]}
        }))
        .expect("a JSON value serializes")
        .into();
    }
    let mut body = BytesMut::with_capacity(BEFORE.len() + picture_base64.len() + AFTER.len());
    body.extend_from_slice(BEFORE);
    body.extend_from_slice(picture_base64);
    body.extend_from_slice(AFTER);
    body.freeze()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_the_contract_s_json_whatever_the_text() {
        for text in ["QUJD+/9=", "not \"base64\"\\\n"] {
            let body: serde_json::Value = serde_json::from_slice(&body(text.as_bytes())).unwrap();
            assert_eq!(
                body,
                serde_json::json!({"input_data": {"columns": ["image"], "index": [0], "data": [text]}})
            );
        }
    }
}
