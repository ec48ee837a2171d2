//! Adapters for the pipeline catalogue's ports: [`FernetCipher`] (the `SecretCipher`) and
//! [`BlobCatalogueStore`] (the `CatalogueStore` over any `datastore::BlobStore`, writing
//! `pipelines/{version}.json`, create-only), and [`CatalogueSettings`], the catalogue's
//! part of the configuration, shared by the backend and the `nachet-catalogue` tool.
//!
//! Architecture invariant: no catalogue rules here; those are the `pipeline` crate's. This
//! crate only moves bytes and keys.

mod cipher;
mod settings;
mod store;

pub use cipher::{FernetCipher, InvalidKey};
pub use settings::{CatalogueSettings, CatalogueSetupError, describe};
pub use store::{BlobCatalogueStore, VERSIONS_FOLDER};
