//! The catalogue document as people write it (JSON or YAML), and its conversion to a
//! [`Catalogue`].
//!
//! Every field is read leniently (all optional, documented spelling variants accepted) so
//! that *all* problems can be reported at once, each with its place in the document. Only a
//! document the parser cannot read at all (bad syntax, a value of the wrong type) stops at
//! the first problem; that error names its place and the line and column.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize};

use crate::catalogue::{
    Catalogue, CatalogueError, CatalogueErrors, PipelineDefinition, PipelineMetadata,
    is_semantic_version, not_semantic_version,
};
use crate::model::{
    CropEncoding, DEFAULT_MODEL_TIMEOUT, ModelDefinition, ModelKind, ModelMetadata,
};

/// The longest `timeout_seconds` a model may have.
pub const MAX_MODEL_TIMEOUT: Duration = Duration::from_secs(600);
/// The most `retries` a model may have.
pub const MAX_MODEL_RETRIES: u32 = 10;

/// The tasks of contract 1.7.
pub const TASKS: [&str; 3] = ["object-detection", "classification", "segmentation"];

/// A catalogue document, every field optional so that all that is missing can be reported.
///
/// Serialized, it is the canonical form: the first documented spelling of each field,
/// absent fields left out.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CatalogueDocument {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipelines: Option<Vec<PipelineEntry>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<ModelEntry>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PipelineEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creation_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    #[serde(alias = "dataset", skip_serializing_if = "Option::is_none")]
    pub dataset_description: Option<String>,
    /// `Some(None)` is an explicit `null`: the accuracy is unknown.
    #[serde(
        alias = "Accuracy",
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub accuracy: Option<Option<f64>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_name: Option<String>,
    /// What this backend adds: the wire format to speak (contract 1.5).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(alias = "tasks", skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// Plain in a document people write; a Fernet token in a stored version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Plain in a document people write; a Fernet token in a stored version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment_platform: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creation_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    #[serde(alias = "dataset", skip_serializing_if = "Option::is_none")]
    pub dataset_description: Option<String>,
    /// `Some(None)` is an explicit `null`: the accuracy is unknown.
    #[serde(
        alias = "Accuracy",
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub accuracy: Option<Option<f64>>,
    /// Optional: seconds a call may take (default 30).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<f64>,
    /// Optional: retries of a transiently failed call (default 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// For a re_classifier: the labels whose boxes it re-classifies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reclassify_labels: Option<Vec<String>>,
    /// Optional, for per-crop models: how crops are encoded for it (default `source`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crop_encoding: Option<String>,
}

/// Tells a present `null` (`Some(None)`) from an absent field (`None`, by `default`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// The two fields of a model that are secrets, stored encrypted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretField {
    Endpoint,
    ApiKey,
}

/// The syntax a document is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DocumentFormat {
    Json,
    Yaml,
}

impl DocumentFormat {
    /// YAML for a name ending in `.yaml` or `.yml`, JSON otherwise.
    pub fn from_file_name(name: &str) -> Self {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".yaml") || lower.ends_with(".yml") {
            DocumentFormat::Yaml
        } else {
            DocumentFormat::Json
        }
    }
}

impl fmt::Display for DocumentFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DocumentFormat::Json => "JSON",
            DocumentFormat::Yaml => "YAML",
        })
    }
}

/// A field the document has that the catalogue does not know (a typo, most often): it is
/// ignored, and worth telling the author.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownField {
    /// e.g. `models[0].deployement_platform`
    pub path: String,
}

impl fmt::Display for UnknownField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: unknown field, ignored", self.path)
    }
}

/// A parsed document and the fields it had that were ignored.
#[derive(Clone, Debug)]
pub struct ParsedDocument {
    pub document: CatalogueDocument,
    pub unknown_fields: Vec<UnknownField>,
}

impl CatalogueDocument {
    /// Parses a JSON document.
    pub fn from_json(text: &str) -> Result<Self, CatalogueErrors> {
        Self::parse(text, DocumentFormat::Json).map(|parsed| parsed.document)
    }

    /// Parses a YAML document.
    pub fn from_yaml(text: &str) -> Result<Self, CatalogueErrors> {
        Self::parse(text, DocumentFormat::Yaml).map(|parsed| parsed.document)
    }

    /// Parses a document, collecting the fields it ignores. A parser error names the place
    /// (`pipelines[0].default`) and the line and column.
    pub fn parse(text: &str, format: DocumentFormat) -> Result<ParsedDocument, CatalogueErrors> {
        let mut unknown_fields = Vec::new();
        let mut on_ignored = |path: serde_ignored::Path<'_>| {
            unknown_fields.push(UnknownField {
                path: ignored_path(&path),
            });
        };
        let result = match format {
            DocumentFormat::Json => {
                let mut deserializer = serde_json::Deserializer::from_str(text);
                let document = serde_path_to_error::deserialize(serde_ignored::Deserializer::new(
                    &mut deserializer,
                    &mut on_ignored,
                ))
                .map_err(|e| parser_error(format, e));
                document.and_then(|document| {
                    deserializer
                        .end()
                        .map(|()| document)
                        .map_err(|e| parser_error_at("", format, &e))
                })
            }
            DocumentFormat::Yaml => {
                let deserializer = yaml_serde::Deserializer::from_str(text);
                serde_path_to_error::deserialize(serde_ignored::Deserializer::new(
                    deserializer,
                    &mut on_ignored,
                ))
                .map_err(|e| parser_error(format, e))
            }
        };
        let document: CatalogueDocument = result.map_err(|e| CatalogueErrors(vec![e]))?;
        // The order fields are visited in depends on serde_json's map features; sort so
        // that reports are the same in every build.
        unknown_fields.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(ParsedDocument {
            document,
            unknown_fields,
        })
    }

    /// The document as canonical JSON (how a version is stored).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a catalogue document always serializes")
    }

    /// The document as YAML.
    pub fn to_yaml(&self) -> String {
        yaml_serde::to_string(self).expect("a catalogue document always serializes")
    }

    /// The text of the document in `format`.
    pub fn to_text(&self, format: DocumentFormat) -> String {
        match format {
            DocumentFormat::Json => self.to_json(),
            DocumentFormat::Yaml => self.to_yaml(),
        }
    }

    /// Applies `change` to every `endpoint` and `api_key` that is present and not empty,
    /// with the value's place in the document. Returns each failure with its place.
    pub fn map_secrets<E>(
        &mut self,
        mut change: impl FnMut(&str, &str) -> Result<String, E>,
    ) -> Vec<(String, E)> {
        let mut failures = Vec::new();
        for (i, model) in self.models.iter_mut().flatten().enumerate() {
            for (field, value) in [
                ("endpoint", &mut model.endpoint),
                ("api_key", &mut model.api_key),
            ] {
                let Some(text) = value.as_mut().filter(|text| !text.is_empty()) else {
                    continue;
                };
                let path = format!("models[{i}].{field}");
                match change(&path, text) {
                    Ok(changed) => *text = changed,
                    Err(e) => failures.push((path, e)),
                }
            }
        }
        failures
    }

    /// The canonical document of a validated catalogue; each `endpoint` and `api_key` is
    /// written as `seal` makes it (encrypted to store, masked to show, or plain).
    pub fn from_catalogue(
        catalogue: &Catalogue,
        seal: &mut dyn FnMut(SecretField, &str) -> String,
    ) -> Self {
        let mut optional_secret = |field: SecretField, secret: &SecretString| {
            let plain = secret.expose_secret();
            (!plain.is_empty()).then(|| seal(field, plain))
        };
        let models = catalogue
            .models()
            .iter()
            .map(|m| ModelEntry {
                model_name: Some(m.name.clone()),
                kind: Some(m.kind.to_string()),
                task: Some(m.metadata.task.clone()),
                endpoint: optional_secret(SecretField::Endpoint, &m.endpoint),
                api_key: optional_secret(SecretField::ApiKey, &m.api_key),
                content_type: non_empty(&m.content_type),
                deployment_platform: non_empty(&m.deployment_platform),
                endpoint_name: non_empty(&m.metadata.endpoint_name),
                version: Some(m.version.clone()),
                description: Some(m.metadata.description.clone()),
                created_by: Some(m.metadata.created_by.clone()),
                creation_date: Some(m.metadata.creation_date.clone()),
                job_name: Some(m.metadata.job_name.clone()),
                dataset_description: Some(m.metadata.dataset_description.clone()),
                accuracy: Some(m.metadata.accuracy),
                timeout_seconds: (m.timeout != DEFAULT_MODEL_TIMEOUT)
                    .then_some(m.timeout.as_secs_f64()),
                retries: (m.retries != 0).then_some(m.retries),
                reclassify_labels: (!m.reclassify_labels.is_empty())
                    .then(|| m.reclassify_labels.iter().cloned().collect()),
                crop_encoding: (m.crop_encoding != CropEncoding::default())
                    .then(|| m.crop_encoding.to_string()),
            })
            .collect();
        let pipelines = catalogue
            .pipelines()
            .iter()
            .map(|p| PipelineEntry {
                pipeline_name: Some(p.name.clone()),
                models: Some(p.models.clone()),
                default: Some(p.default),
                version: Some(p.version.clone()),
                description: Some(p.metadata.description.clone()),
                created_by: Some(p.metadata.created_by.clone()),
                creation_date: Some(p.metadata.creation_date.clone()),
                job_name: Some(p.metadata.job_name.clone()),
                dataset_description: Some(p.metadata.dataset_description.clone()),
                accuracy: Some(p.metadata.accuracy),
            })
            .collect();
        CatalogueDocument {
            version: Some(catalogue.version().to_owned()),
            date: Some(catalogue.date().to_owned()),
            pipelines: Some(pipelines),
            models: Some(models),
        }
    }

    /// Checks the document and builds the catalogue, turning each `endpoint` and `api_key`
    /// into its plain value with `reveal` (the identity for a plain document, decryption for
    /// a stored version). Reports every problem, each with its place.
    pub fn into_catalogue(
        self,
        reveal: &dyn Fn(&str) -> Result<String, String>,
    ) -> Result<Catalogue, CatalogueErrors> {
        let mut errors = Vec::new();
        let version = required(&mut errors, self.version, "version".into());
        // Told with the entries' errors; without them, `Catalogue::new` tells it.
        let version_error = (!version.is_empty() && !is_semantic_version(&version))
            .then(|| not_semantic_version(&version));
        let date = required(&mut errors, self.date, "date".into());

        let mut models = Vec::new();
        match self.models {
            None => errors.push(CatalogueError::new("models", MISSING)),
            Some(entries) => {
                for (i, entry) in entries.into_iter().enumerate() {
                    if let Some(model) = model_definition(&mut errors, i, entry, reveal) {
                        models.push(model);
                    }
                }
            }
        }

        let mut pipelines = Vec::new();
        match self.pipelines {
            None => errors.push(CatalogueError::new("pipelines", MISSING)),
            Some(entries) => {
                for (i, entry) in entries.into_iter().enumerate() {
                    if let Some(pipeline) = pipeline_definition(&mut errors, i, entry) {
                        pipelines.push(pipeline);
                    }
                }
            }
        }

        // Rules that need the whole catalogue are only meaningful once each entry is sound.
        if !errors.is_empty() {
            errors.splice(0..0, version_error);
            return Err(CatalogueErrors(errors));
        }
        Catalogue::new(version, date, pipelines, models)
    }
}

const MISSING: &str = "missing field";

fn model_definition(
    errors: &mut Vec<CatalogueError>,
    i: usize,
    m: ModelEntry,
    reveal: &dyn Fn(&str) -> Result<String, String>,
) -> Option<ModelDefinition> {
    let at = |field: &str| format!("models[{i}].{field}");
    let before = errors.len();
    let name = required(errors, m.model_name, at("model_name"));
    let kind = match m.kind {
        None => {
            errors.push(CatalogueError::new(
                at("kind"),
                format!("missing field (one of: {})", kind_names()),
            ));
            None
        }
        Some(text) => match text.parse::<ModelKind>() {
            Ok(kind) => Some(kind),
            Err(message) => {
                errors.push(CatalogueError::new(at("kind"), message));
                None
            }
        },
    };
    let task = match m.task {
        None => {
            errors.push(CatalogueError::new(
                at("task"),
                format!(
                    "missing field (one of: {}; the spelling \"tasks\" is also accepted)",
                    TASKS.join(", ")
                ),
            ));
            String::new()
        }
        Some(task) if !TASKS.contains(&task.as_str()) => {
            errors.push(CatalogueError::new(
                at("task"),
                format!(
                    "unknown task \"{task}\" (known tasks: {})",
                    TASKS.join(", ")
                ),
            ));
            task
        }
        Some(task) => task,
    };
    let calls_endpoint = kind != Some(ModelKind::Test);
    let (endpoint, content_type, deployment_platform) = if calls_endpoint {
        (
            required(errors, m.endpoint, at("endpoint")),
            required(errors, m.content_type, at("content_type")),
            required(errors, m.deployment_platform, at("deployment_platform")),
        )
    } else {
        (
            m.endpoint.unwrap_or_default(),
            m.content_type.unwrap_or_default(),
            m.deployment_platform.unwrap_or_default(),
        )
    };
    let model_version = required(errors, m.version, at("version"));
    let dataset_description = present_field(
        errors,
        m.dataset_description,
        at("dataset_description"),
        "a text, possibly empty; the spelling \"dataset\" is also accepted",
    );
    let accuracy = present_field(
        errors,
        m.accuracy,
        at("accuracy"),
        "a number, or null when unknown; the spelling \"Accuracy\" is also accepted",
    );
    check_accuracy(errors, accuracy, at("accuracy"));

    let endpoint = revealed(errors, reveal, &endpoint, at("endpoint"));
    if !endpoint.is_empty() && !is_http_url(&endpoint) {
        errors.push(CatalogueError::new(
            at("endpoint"),
            "is not an http:// or https:// URL",
        ));
    }
    let api_key = revealed(
        errors,
        reveal,
        m.api_key.as_deref().unwrap_or_default(),
        at("api_key"),
    );

    let timeout = match m.timeout_seconds {
        None => DEFAULT_MODEL_TIMEOUT,
        Some(s) if s > 0.0 && s <= MAX_MODEL_TIMEOUT.as_secs_f64() => Duration::from_secs_f64(s),
        Some(s) => {
            errors.push(CatalogueError::new(
                at("timeout_seconds"),
                format!(
                    "{s} is not a number of seconds above 0 and at most {}",
                    MAX_MODEL_TIMEOUT.as_secs()
                ),
            ));
            DEFAULT_MODEL_TIMEOUT
        }
    };
    let retries = m.retries.unwrap_or(0);
    if retries > MAX_MODEL_RETRIES {
        errors.push(CatalogueError::new(
            at("retries"),
            format!("{retries} is more than {MAX_MODEL_RETRIES}"),
        ));
    }
    let reclassify_labels: BTreeSet<String> = m
        .reclassify_labels
        .unwrap_or_default()
        .into_iter()
        .collect();
    match kind {
        Some(ModelKind::ReClassifier) if reclassify_labels.is_empty() => {
            errors.push(CatalogueError::new(
                at("reclassify_labels"),
                "a re_classifier needs the list of labels whose boxes it re-classifies",
            ));
        }
        Some(kind) if kind != ModelKind::ReClassifier && !reclassify_labels.is_empty() => {
            errors.push(CatalogueError::new(
                at("reclassify_labels"),
                format!("only a re_classifier re-classifies labels, and this model is a {kind}"),
            ));
        }
        _ => {}
    }
    let crop_encoding = match m.crop_encoding.as_deref().map(str::parse::<CropEncoding>) {
        None => CropEncoding::default(),
        Some(Ok(encoding)) if kind.is_none_or(ModelKind::needs_boxes) => encoding,
        Some(Ok(_)) => {
            errors.push(CatalogueError::new(
                at("crop_encoding"),
                "only a per-crop model (classifier, re_classifier) gets crops",
            ));
            CropEncoding::default()
        }
        Some(Err(message)) => {
            errors.push(CatalogueError::new(at("crop_encoding"), message));
            CropEncoding::default()
        }
    };

    let kind = kind?;
    if errors.len() > before {
        return None;
    }
    Some(ModelDefinition {
        name,
        version: model_version,
        kind,
        endpoint: SecretString::from(endpoint),
        api_key: SecretString::from(api_key),
        content_type,
        deployment_platform,
        timeout,
        retries,
        reclassify_labels,
        crop_encoding,
        metadata: ModelMetadata {
            task,
            endpoint_name: m.endpoint_name.unwrap_or_default(),
            description: m.description.unwrap_or_default(),
            created_by: m.created_by.unwrap_or_default(),
            creation_date: m.creation_date.unwrap_or_default(),
            job_name: m.job_name.unwrap_or_default(),
            dataset_description,
            accuracy,
        },
    })
}

fn pipeline_definition(
    errors: &mut Vec<CatalogueError>,
    i: usize,
    p: PipelineEntry,
) -> Option<PipelineDefinition> {
    let at = |field: &str| format!("pipelines[{i}].{field}");
    let before = errors.len();
    let name = required(errors, p.pipeline_name, at("pipeline_name"));
    let pipeline_version = required(errors, p.version, at("version"));
    let dataset_description = present_field(
        errors,
        p.dataset_description,
        at("dataset_description"),
        "a text, possibly empty; the spelling \"dataset\" is also accepted",
    );
    let accuracy = present_field(
        errors,
        p.accuracy,
        at("accuracy"),
        "a number, or null when unknown; the spelling \"Accuracy\" is also accepted",
    );
    check_accuracy(errors, accuracy, at("accuracy"));
    let model_names = match p.models {
        None => {
            errors.push(CatalogueError::new(
                at("models"),
                "missing field (the names of the pipeline's models, in call order)",
            ));
            None
        }
        Some(names) => Some(names),
    };
    if errors.len() > before {
        return None;
    }
    Some(PipelineDefinition {
        name,
        models: model_names?,
        default: p.default.unwrap_or(false),
        version: pipeline_version,
        metadata: PipelineMetadata {
            description: p.description.unwrap_or_default(),
            created_by: p.created_by.unwrap_or_default(),
            creation_date: p.creation_date.unwrap_or_default(),
            job_name: p.job_name.unwrap_or_default(),
            dataset_description,
            accuracy,
        },
    })
}

fn kind_names() -> String {
    ModelKind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A field that must be present and not blank; records what is wrong otherwise.
fn required(errors: &mut Vec<CatalogueError>, value: Option<String>, path: String) -> String {
    match value {
        Some(v) if !v.trim().is_empty() => v,
        Some(_) => {
            errors.push(CatalogueError::new(path, "is empty"));
            String::new()
        }
        None => {
            errors.push(CatalogueError::new(path, MISSING));
            String::new()
        }
    }
}

/// A field that must be present, whatever its value; `expected` says what to write.
fn present_field<T: Default>(
    errors: &mut Vec<CatalogueError>,
    value: Option<T>,
    path: String,
    expected: &str,
) -> T {
    value.unwrap_or_else(|| {
        errors.push(CatalogueError::new(
            path,
            format!("missing field ({expected})"),
        ));
        T::default()
    })
}

fn check_accuracy(errors: &mut Vec<CatalogueError>, accuracy: Option<f64>, path: String) {
    if let Some(a) = accuracy
        && !(a.is_finite() && a >= 0.0)
    {
        errors.push(CatalogueError::new(
            path,
            format!("{a} is not a positive number"),
        ));
    }
}

fn is_http_url(text: &str) -> bool {
    url::Url::parse(text).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty())
    })
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

fn revealed(
    errors: &mut Vec<CatalogueError>,
    reveal: &dyn Fn(&str) -> Result<String, String>,
    stored: &str,
    path: String,
) -> String {
    if stored.is_empty() {
        return String::new();
    }
    reveal(stored).unwrap_or_else(|message| {
        errors.push(CatalogueError::new(path, message));
        String::new()
    })
}

/// `models[0].deployement_platform`, in the same form as the validation errors.
fn ignored_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        Path::Map { parent, key } => {
            let parent = ignored_path(parent);
            if parent.is_empty() {
                key.clone()
            } else {
                format!("{parent}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_path(parent),
    }
}

trait Located: fmt::Display {
    /// 1-based line and column of the error, when the parser knows them.
    fn line_column(&self) -> Option<(usize, usize)>;
    /// The text is unreadable as such: what had been read says nothing about the place.
    fn is_syntax(&self) -> bool;
}

impl Located for serde_json::Error {
    fn line_column(&self) -> Option<(usize, usize)> {
        (self.line() > 0).then(|| (self.line(), self.column()))
    }

    fn is_syntax(&self) -> bool {
        self.is_syntax() || self.is_eof()
    }
}

impl Located for yaml_serde::Error {
    fn line_column(&self) -> Option<(usize, usize)> {
        self.location().map(|l| (l.line(), l.column()))
    }

    fn is_syntax(&self) -> bool {
        false
    }
}

fn parser_error<E: Located>(
    format: DocumentFormat,
    error: serde_path_to_error::Error<E>,
) -> CatalogueError {
    let path = error.path().to_string();
    // `?` stands for a place the parser had not reached.
    let path = path.trim_end_matches('?').trim_end_matches('.');
    let path = if path.is_empty() || error.inner().is_syntax() {
        ""
    } else {
        path
    };
    parser_error_at(path, format, error.inner())
}

fn parser_error_at<E: Located>(path: &str, format: DocumentFormat, error: &E) -> CatalogueError {
    let mut message = error.to_string();
    // The YAML parser starts with the place and both parsers tell the line and column in
    // their own words; say each once, the same way for both.
    if let Some(rest) = message.strip_prefix(&format!("{path}: ")) {
        message = rest.to_owned();
    }
    let place = match error.line_column() {
        Some((line, column)) => {
            message = message.replace(&format!(" at line {line} column {column}"), "");
            format!(" (line {line}, column {column})")
        }
        None => String::new(),
    };
    let message = if path.is_empty() {
        format!("not a valid {format} catalogue document: {message}{place}")
    } else {
        format!("{message}{place}")
    };
    CatalogueError::new(path, message)
}
