//! The "test" kind of the reference system: no call at all, one fixed box.

use inference::{DetectedBox, NormalizedBox};

pub(crate) fn boxes() -> Vec<DetectedBox> {
    vec![DetectedBox {
        bbox: NormalizedBox {
            top_x: 0.25,
            top_y: 0.25,
            bottom_x: 0.75,
            bottom_y: 0.75,
        },
        label: "Ambrosia artemisiifolia".into(),
        score: 1.0,
    }]
}
