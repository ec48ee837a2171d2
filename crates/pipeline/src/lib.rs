//! Pipelines of model endpoints.
//!
//! A *pipeline* is an ordered list of 1..n models; each model's output feeds the next
//! (contract 1.5). Pipelines come from a *catalogue* document (contract 1.7), kept in a store
//! as immutable, versioned documents whose endpoints and API keys are encrypted. This crate
//! holds the catalogue's document and validation, the set of pipelines the backend serves
//! right now ([`PipelineRegistry`]), the use cases on versions ([`CatalogueVersions`],
//! [`CatalogueLoader`]) and the ports they need ([`ports`]).
//!
//! Architecture invariant: no I/O here. No web framework, ORM, HTTP client, storage SDK or
//! cipher implementation: those are adapters behind [`ports`].

mod active;
mod catalogue;
pub mod document;
mod model;
pub mod ports;
mod versions;

pub use active::{ActiveModel, ActivePipeline, PipelineRegistry, PipelineSet, RecordedIds};
pub use catalogue::{
    Catalogue, CatalogueError, CatalogueErrors, PipelineDefinition, PipelineMetadata,
    is_semantic_version,
};
pub use document::{CatalogueDocument, DocumentFormat, ParsedDocument, SecretField, UnknownField};
pub use model::{
    CropEncoding, DEFAULT_MODEL_TIMEOUT, ModelDefinition, ModelKind, ModelMetadata, PngCompression,
};
pub use versions::{
    CONTAINER_ENV, CatalogueLoader, CatalogueVersions, KEY_ENV, LoadCatalogueError,
    OpenVersionError, VERSION_ENV, VersionSummary, compare_versions, validate_document,
};
