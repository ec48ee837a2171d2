//! Classifier (Swin) and re-classifier: one crop's base64 text as the raw body, a ranking out.

use bytes::Bytes;
use inference::{ModelCallError, RankedLabel};
use serde::Deserialize;

use crate::parse;

pub(crate) fn body(crop_base64: Bytes) -> Bytes {
    crop_base64
}

#[derive(Deserialize)]
struct WireLabel {
    label: String,
    score: f64,
}

/// `[{"label": "13 Ambrosia trifida", "score": 0.9}, ...]`, best first.
pub(crate) fn ranking(answer: &[u8]) -> Result<Vec<RankedLabel>, ModelCallError> {
    let labels: Vec<WireLabel> = parse(answer, r#"[{"label", "score"}]"#)?;
    Ok(labels
        .into_iter()
        .map(|l| RankedLabel {
            label: l.label,
            score: l.score,
        })
        .collect())
}
