//! The JSON bodies of the Azure ML seed model endpoints (contract 1.5), as served here.
//!
//! | deployment | request | response |
//! | --- | --- | --- |
//! | seed detector | [`DetectorRequest`] | [`DetectorResponse`] |
//! | classifier | the crop's base64 text as the raw body | `Vec<`[`LabelScore`]`>` |
//! | one-shot detector | [`DetectorRequest`] | `Vec<`[`DetectorResponse`]`>` with one item |

use serde::{Deserialize, Serialize};

/// A box in coordinates normalized to 0..1 (x by the image's width, y by its height).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BoxCoords {
    #[serde(rename = "topX")]
    pub top_x: f64,
    #[serde(rename = "topY")]
    pub top_y: f64,
    #[serde(rename = "bottomX")]
    pub bottom_x: f64,
    #[serde(rename = "bottomY")]
    pub bottom_y: f64,
}

/// One box of a detector's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredBox {
    #[serde(rename = "box")]
    pub coords: BoxCoords,
    pub label: String,
    pub score: f64,
}

/// A detector's answer: `{"boxes": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectorResponse {
    pub boxes: Vec<ScoredBox>,
}

/// One entry of a classifier's answer: `{"label": "13 Ambrosia trifida", "score": 0.4}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelScore {
    pub label: String,
    pub score: f64,
}

/// A detector's request:
/// `{"input_data": {"columns": ["image"], "index": [0], "data": ["<base64 image>"]}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectorRequest {
    pub input_data: InputData,
}

/// Azure ML's pandas "split" layout. `data` holds one row; a row is either the image's
/// base64 text itself or a list of column values (then the `"image"` column is used).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputData {
    #[serde(default)]
    pub columns: Vec<String>,
    #[serde(default)]
    pub index: Vec<serde_json::Value>,
    pub data: Vec<serde_json::Value>,
}

impl DetectorRequest {
    /// The request for one image, given as base64 text.
    pub fn new(image_base64: String) -> Self {
        DetectorRequest {
            input_data: InputData {
                columns: vec!["image".to_string()],
                index: vec![serde_json::Value::from(0)],
                data: vec![serde_json::Value::String(image_base64)],
            },
        }
    }

    /// The base64 text of the request's single image, or what is wrong with the request.
    pub fn image_base64(&self) -> Result<&str, String> {
        let data = &self.input_data.data;
        let row = match data.as_slice() {
            [row] => row,
            [] => return Err("input_data.data is empty; it must hold one image".to_string()),
            _ => {
                return Err(format!(
                    "input_data.data holds {} rows; this endpoint scores one image per call",
                    data.len()
                ));
            }
        };
        match row {
            serde_json::Value::String(text) => Ok(text),
            serde_json::Value::Array(values) => {
                let column = match self.input_data.columns.iter().position(|c| c == "image") {
                    Some(i) => i,
                    None if values.len() == 1 => 0,
                    None => {
                        return Err(
                            "input_data.columns has no \"image\" column to pick from the row"
                                .to_string(),
                        );
                    }
                };
                values
                    .get(column)
                    .and_then(serde_json::Value::as_str)
                    .ok_or_else(|| {
                        format!("input_data.data[0][{column}] (the image) is not a string")
                    })
            }
            other => Err(format!(
                "input_data.data[0] must be the image's base64 text, not {}",
                json_kind(other)
            )),
        }
    }
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_shapes() {
        let r = DetectorRequest::new("abc".into());
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"input_data": {"columns": ["image"], "index": [0], "data": ["abc"]}})
        );
        assert_eq!(r.image_base64(), Ok("abc"));

        let nested: DetectorRequest = serde_json::from_value(
            json!({"input_data": {"columns": ["id", "image"], "data": [[7, "xyz"]]}}),
        )
        .unwrap();
        assert_eq!(nested.image_base64(), Ok("xyz"));

        let two: DetectorRequest =
            serde_json::from_value(json!({"input_data": {"data": ["a", "b"]}})).unwrap();
        assert!(two.image_base64().unwrap_err().contains("2 rows"));

        let number: DetectorRequest =
            serde_json::from_value(json!({"input_data": {"data": [5]}})).unwrap();
        assert!(number.image_base64().unwrap_err().contains("a number"));
    }

    #[test]
    fn box_field_names() {
        let b = ScoredBox {
            coords: BoxCoords {
                top_x: 0.1,
                top_y: 0.2,
                bottom_x: 0.3,
                bottom_y: 0.4,
            },
            label: "seed".into(),
            score: 0.9,
        };
        assert_eq!(
            serde_json::to_value(&b).unwrap(),
            json!({"box": {"topX": 0.1, "topY": 0.2, "bottomX": 0.3, "bottomY": 0.4},
                   "label": "seed", "score": 0.9})
        );
    }
}
