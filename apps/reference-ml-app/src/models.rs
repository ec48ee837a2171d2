//! The model types the reference ML app answers for, and the modalities each takes.
//!
//! | model type | task | modalities |
//! | --- | --- | --- |
//! | `chest_xray_classification` | classification | CR, DX |
//! | `brain_tumor_classification` | classification | MR |
//! | `brain_tumor_segmentation` | segmentation | MR |
//! | `lung_tumor_segmentation` | segmentation | CT |
//! | `abdominal_organs_segmentation` | segmentation | CT |
//!
//! A series of another modality is answered `not_supported`. Whatever the model type, the
//! computation is the same reference computation (see [`crate::analysis`]); segmentation
//! types also report the pixels above the threshold as the "segmented" region.

/// What a model type produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    Classification,
    Segmentation,
}

/// One model type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelType {
    pub name: &'static str,
    pub task: Task,
    /// DICOM Modality values (0008,0060) the model takes.
    pub modalities: &'static [&'static str],
}

impl ModelType {
    /// Whether the model takes this modality (case-insensitive, surrounding spaces ignored).
    pub fn takes(&self, modality: &str) -> bool {
        let modality = modality.trim();
        self.modalities
            .iter()
            .any(|m| m.eq_ignore_ascii_case(modality))
    }
}

/// Every model type, in the order of the table above.
pub const MODEL_TYPES: &[ModelType] = &[
    ModelType {
        name: "chest_xray_classification",
        task: Task::Classification,
        modalities: &["CR", "DX"],
    },
    ModelType {
        name: "brain_tumor_classification",
        task: Task::Classification,
        modalities: &["MR"],
    },
    ModelType {
        name: "brain_tumor_segmentation",
        task: Task::Segmentation,
        modalities: &["MR"],
    },
    ModelType {
        name: "lung_tumor_segmentation",
        task: Task::Segmentation,
        modalities: &["CT"],
    },
    ModelType {
        name: "abdominal_organs_segmentation",
        task: Task::Segmentation,
        modalities: &["CT"],
    },
];

/// The model type named `name` (exact match).
pub fn model_type(name: &str) -> Option<&'static ModelType> {
    MODEL_TYPES.iter().find(|m| m.name == name)
}

/// The names of every model type, comma-separated (for error messages).
pub fn model_type_names() -> String {
    MODEL_TYPES
        .iter()
        .map(|m| m.name)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        assert!(model_type("chest_xray_classification").unwrap().takes("dx"));
        assert!(!model_type("chest_xray_classification").unwrap().takes("CT"));
        assert!(model_type("lung_tumor_segmentation").unwrap().takes(" CT "));
        assert!(model_type("brain_tumor_segmentation").unwrap().takes("MR"));
        assert!(model_type("nope").is_none());
        assert_eq!(MODEL_TYPES.len(), 5);
        assert!(model_type_names().contains("abdominal_organs_segmentation"));
    }
}
