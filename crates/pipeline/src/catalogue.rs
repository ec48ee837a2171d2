//! The catalogue: which pipelines exist and which models they call (contract 1.7).

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::ModelDefinition;

/// Descriptive fields of a pipeline, shown by `/model-endpoints-metadata`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PipelineMetadata {
    pub description: String,
    pub created_by: String,
    pub creation_date: String,
    pub job_name: String,
    pub dataset_description: String,
    pub accuracy: Option<f64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PipelineDefinition {
    pub name: String,
    /// Model names, in call order.
    pub models: Vec<String>,
    pub default: bool,
    pub version: String,
    pub metadata: PipelineMetadata,
}

/// A validated catalogue: every invariant of contract 1.7 holds.
#[derive(Clone, Debug)]
pub struct Catalogue {
    version: String,
    date: String,
    pipelines: Vec<PipelineDefinition>,
    models: Vec<ModelDefinition>,
}

/// One thing wrong with a catalogue, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogueError {
    /// Where in the document, e.g. `pipelines[1].models[0]`.
    pub path: String,
    pub message: String,
}

impl CatalogueError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for CatalogueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Everything wrong with a catalogue (never empty).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct CatalogueErrors(pub Vec<CatalogueError>);

impl fmt::Display for CatalogueErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the catalogue is invalid:")?;
        for error in &self.0 {
            write!(f, "\n  - {error}")?;
        }
        Ok(())
    }
}

/// `MAJOR.MINOR.PATCH`, each a number.
pub fn is_semantic_version(version: &str) -> bool {
    let parts: Vec<&str> = version.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

/// The error of a catalogue version that is not `MAJOR.MINOR.PATCH`.
pub(crate) fn not_semantic_version(version: &str) -> CatalogueError {
    CatalogueError::new(
        "version",
        format!("\"{version}\" is not a version of the form MAJOR.MINOR.PATCH (e.g. 0.1.4)"),
    )
}

impl Catalogue {
    /// Checks every rule of a catalogue and reports all that are broken, each with its place.
    pub fn new(
        version: String,
        date: String,
        pipelines: Vec<PipelineDefinition>,
        models: Vec<ModelDefinition>,
    ) -> Result<Self, CatalogueErrors> {
        let mut errors = Vec::new();
        if !is_semantic_version(&version) {
            errors.push(not_semantic_version(&version));
        }

        let mut model_index: HashMap<&str, usize> = HashMap::new();
        for (i, model) in models.iter().enumerate() {
            if model.name.trim().is_empty() {
                errors.push(CatalogueError::new(
                    format!("models[{i}].model_name"),
                    "is empty",
                ));
            }
            match model_index.get(model.name.as_str()) {
                Some(first) => errors.push(CatalogueError::new(
                    format!("models[{i}].model_name"),
                    format!(
                        "duplicate model name \"{}\" (also models[{first}])",
                        model.name
                    ),
                )),
                None => {
                    model_index.insert(&model.name, i);
                }
            }
            if model.kind == crate::ModelKind::ReClassifier && model.reclassify_labels.is_empty() {
                errors.push(CatalogueError::new(
                    format!("models[{i}].reclassify_labels"),
                    "a re_classifier needs the list of labels it re-classifies",
                ));
            }
        }

        let mut pipeline_names: HashMap<&str, usize> = HashMap::new();
        for (i, pipeline) in pipelines.iter().enumerate() {
            if let Some(first) = pipeline_names.get(pipeline.name.as_str()) {
                errors.push(CatalogueError::new(
                    format!("pipelines[{i}].pipeline_name"),
                    format!(
                        "duplicate pipeline name \"{}\" (also pipelines[{first}])",
                        pipeline.name
                    ),
                ));
            } else {
                pipeline_names.insert(&pipeline.name, i);
            }
            if pipeline.models.is_empty() {
                errors.push(CatalogueError::new(
                    format!("pipelines[{i}].models"),
                    "a pipeline needs at least one model",
                ));
            }
            for (j, name) in pipeline.models.iter().enumerate() {
                let Some(&m) = model_index.get(name.as_str()) else {
                    errors.push(CatalogueError::new(
                        format!("pipelines[{i}].models[{j}]"),
                        format!("no model named \"{name}\" in this catalogue"),
                    ));
                    continue;
                };
                let kind = models[m].kind;
                if j == 0 && kind.needs_boxes() {
                    errors.push(CatalogueError::new(
                        format!("pipelines[{i}].models[{j}]"),
                        format!(
                            "\"{name}\" is a {kind}: it needs boxes from an earlier model and cannot come first"
                        ),
                    ));
                }
                if j > 0 && kind.produces_boxes() {
                    errors.push(CatalogueError::new(
                        format!("pipelines[{i}].models[{j}]"),
                        format!("\"{name}\" is a {kind}: it looks at the whole picture and can only come first"),
                    ));
                }
            }
        }

        let defaults: Vec<&str> = pipelines
            .iter()
            .filter(|p| p.default)
            .map(|p| p.name.as_str())
            .collect();
        match defaults.len() {
            1 => {}
            0 => errors.push(CatalogueError::new(
                "pipelines",
                "no pipeline is the default: set \"default\": true on exactly one",
            )),
            _ => errors.push(CatalogueError::new(
                "pipelines",
                format!(
                    "more than one default pipeline ({}): set \"default\": true on exactly one",
                    defaults.join(", ")
                ),
            )),
        }

        if errors.is_empty() {
            Ok(Self {
                version,
                date,
                pipelines,
                models,
            })
        } else {
            Err(CatalogueErrors(errors))
        }
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn date(&self) -> &str {
        &self.date
    }

    pub fn pipelines(&self) -> &[PipelineDefinition] {
        &self.pipelines
    }

    pub fn models(&self) -> &[ModelDefinition] {
        &self.models
    }

    pub fn model(&self, name: &str) -> Option<&ModelDefinition> {
        self.models.iter().find(|m| m.name == name)
    }

    /// Names of the models no pipeline uses (worth a warning, not an error).
    pub fn unused_models(&self) -> BTreeSet<&str> {
        let used: BTreeSet<&str> = self
            .pipelines
            .iter()
            .flat_map(|p| p.models.iter().map(String::as_str))
            .collect();
        self.models
            .iter()
            .map(|m| m.name.as_str())
            .filter(|name| !used.contains(name))
            .collect()
    }
}
