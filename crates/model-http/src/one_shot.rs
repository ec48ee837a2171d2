//! One-shot detector ("6 seeds"): as the seed detector, but its answer is wrapped in a list
//! and its boxes carry real labels.

use inference::{DetectedBox, ModelCallError};

use crate::detector::Answer;
use crate::parse;

/// `[{"boxes": [...]}]`
pub(crate) fn boxes(answer: &[u8]) -> Result<Vec<DetectedBox>, ModelCallError> {
    let answers: Vec<Answer> = parse(answer, r#"[{"boxes": [...]}]"#)?;
    Ok(answers
        .into_iter()
        .flat_map(|a| a.boxes)
        .map(DetectedBox::from)
        .collect())
}
