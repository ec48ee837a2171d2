//! The catalogue's part of the configuration, shared by the backend and `nachet-catalogue`
//! so that both find the same versions with the same key.

use std::sync::Arc;

use blob_store::BlobSettings;
use pipeline::{CONTAINER_ENV, CatalogueVersions, KEY_ENV, VERSION_ENV};
use secrecy::SecretString;
use serde::Deserialize;

use crate::{BlobCatalogueStore, FernetCipher, InvalidKey};

/// Where the catalogue versions are, which one to load, and the key (contract 1.7).
///
/// ```toml
/// [catalogue]
/// container = "nachet-pipelines"   # NACHET_BLOB_PIPELINE_NAME
/// version = "0.1.4"                # NACHET_BLOB_PIPELINE_VERSION
/// decryption_key = "..."           # NACHET_BLOB_PIPELINE_DECRYPTION_KEY
/// ```
///
/// `Debug` never shows the key.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogueSettings {
    /// The blob container holding `pipelines/{version}.json` (a folder of that name under
    /// the root for local disk). `None`: the blob store's own container.
    #[serde(default)]
    pub container: Option<String>,
    /// The version the backend loads at start.
    #[serde(default)]
    pub version: Option<String>,
    /// The Fernet key the versions' endpoints and API keys are encrypted with.
    #[serde(default)]
    pub decryption_key: Option<SecretString>,
}

/// Something missing or wrong in the catalogue's configuration, with what to set.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueSetupError {
    #[error(
        "no catalogue decryption key: set {KEY_ENV} (or catalogue.decryption_key) to the key \
         the versions were inserted with; make a new one with `nachet-catalogue keygen`"
    )]
    MissingKey,
    #[error("{KEY_ENV} (catalogue.decryption_key) is {0}")]
    InvalidKey(InvalidKey),
    #[error(
        "no catalogue version to load: set {VERSION_ENV} (or catalogue.version) to one of \
         the versions `nachet-catalogue list` shows"
    )]
    MissingVersion,
    #[error("cannot open the catalogue's blob store ({CONTAINER_ENV}): {0}")]
    Blobs(String),
}

impl CatalogueSettings {
    /// The contract's three variables, when set, override what the configuration says.
    pub fn with_contract_environment(self) -> Self {
        self.with_environment(|name| std::env::var(name).ok())
    }

    /// As [`with_contract_environment`](Self::with_contract_environment), reading variables
    /// with `var`.
    pub fn with_environment(mut self, var: impl Fn(&str) -> Option<String>) -> Self {
        let var = |name| var(name).filter(|value: &String| !value.trim().is_empty());
        if let Some(container) = var(CONTAINER_ENV) {
            self.container = Some(container);
        }
        if let Some(version) = var(VERSION_ENV) {
            self.version = Some(version);
        }
        if let Some(key) = var(KEY_ENV) {
            self.decryption_key = Some(SecretString::from(key));
        }
        self
    }

    /// The version to load at start.
    pub fn version(&self) -> Result<&str, CatalogueSetupError> {
        self.version
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or(CatalogueSetupError::MissingVersion)
    }

    /// The cipher of the configured key.
    pub fn cipher(&self) -> Result<FernetCipher, CatalogueSetupError> {
        let key = self
            .decryption_key
            .as_ref()
            .ok_or(CatalogueSetupError::MissingKey)?;
        FernetCipher::new(key).map_err(CatalogueSetupError::InvalidKey)
    }

    /// The blob settings of the catalogue's container: those of the backend's blob store,
    /// with the container (Azure) or a folder of that name (local disk) of `container`.
    pub fn blob_settings(&self, blobs: &BlobSettings) -> BlobSettings {
        let Some(container) = self.container.as_deref().filter(|c| !c.trim().is_empty()) else {
            return blobs.clone();
        };
        match blobs.clone() {
            BlobSettings::LocalDisk { root } => BlobSettings::LocalDisk {
                root: root.join(container),
            },
            BlobSettings::Memory => BlobSettings::Memory,
            BlobSettings::Azure {
                account,
                access_key,
                endpoint,
                prefix,
                ..
            } => BlobSettings::Azure {
                account,
                access_key,
                container: container.to_owned(),
                endpoint,
                prefix,
            },
        }
    }

    /// The store of catalogue versions, on the catalogue's container.
    pub fn store(&self, blobs: &BlobSettings) -> Result<BlobCatalogueStore, CatalogueSetupError> {
        let settings = self.blob_settings(blobs);
        let store =
            blob_store::open(&settings).map_err(|e| CatalogueSetupError::Blobs(e.to_string()))?;
        Ok(BlobCatalogueStore::new(
            Arc::new(store),
            describe(&settings),
        ))
    }

    /// Versions in the configured store, with the configured key.
    pub fn versions(&self, blobs: &BlobSettings) -> Result<CatalogueVersions, CatalogueSetupError> {
        Ok(CatalogueVersions::new(
            Arc::new(self.store(blobs)?),
            Arc::new(self.cipher()?),
        ))
    }
}

/// Where a blob store is, for messages; never its key.
pub fn describe(settings: &BlobSettings) -> String {
    match settings {
        BlobSettings::LocalDisk { root } => format!("folder {}", root.display()),
        BlobSettings::Memory => "the in-memory blob store".to_owned(),
        BlobSettings::Azure {
            account,
            container,
            prefix,
            ..
        } => match prefix.as_deref().filter(|p| !p.is_empty()) {
            Some(prefix) => {
                format!("container \"{container}\" of account {account} (under {prefix}/)")
            }
            None => format!("container \"{container}\" of account {account}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    #[test]
    fn the_contract_variables_override_the_configuration() {
        let settings = CatalogueSettings {
            container: Some("from-file".into()),
            version: Some("0.1.0".into()),
            decryption_key: None,
        }
        .with_environment(|name| match name {
            "NACHET_BLOB_PIPELINE_NAME" => Some("pipelines-container".into()),
            "NACHET_BLOB_PIPELINE_VERSION" => Some("0.1.4".into()),
            "NACHET_BLOB_PIPELINE_DECRYPTION_KEY" => Some("k".into()),
            _ => None,
        });
        assert_eq!(settings.container.as_deref(), Some("pipelines-container"));
        assert_eq!(settings.version().unwrap(), "0.1.4");
        assert!(settings.decryption_key.is_some());
        assert!(!format!("{settings:?}").contains("\"k\""));
    }

    #[test]
    fn missing_settings_say_what_to_set() {
        let settings = CatalogueSettings::default().with_environment(|_| None);
        assert!(
            settings
                .version()
                .unwrap_err()
                .to_string()
                .contains("NACHET_BLOB_PIPELINE_VERSION")
        );
        let error = settings.cipher().unwrap_err().to_string();
        assert!(
            error.contains("NACHET_BLOB_PIPELINE_DECRYPTION_KEY"),
            "{error}"
        );
        let bad = CatalogueSettings {
            decryption_key: Some(SecretString::from("nope")),
            ..Default::default()
        };
        let error = bad.cipher().unwrap_err().to_string();
        assert!(error.contains("not a Fernet key"), "{error}");
    }

    #[test]
    fn the_container_is_a_folder_on_local_disk_and_a_container_on_azure() {
        let settings = CatalogueSettings {
            container: Some("cat".into()),
            ..Default::default()
        };
        let disk = BlobSettings::LocalDisk {
            root: PathBuf::from("/data"),
        };
        assert!(matches!(
            settings.blob_settings(&disk),
            BlobSettings::LocalDisk { root } if root == Path::new("/data/cat")
        ));
        let azure = BlobSettings::Azure {
            account: "a".into(),
            access_key: SecretString::from("x"),
            container: "pictures".into(),
            endpoint: None,
            prefix: None,
        };
        assert!(matches!(
            settings.blob_settings(&azure),
            BlobSettings::Azure { container, .. } if container == "cat"
        ));
        assert!(matches!(
            CatalogueSettings::default().blob_settings(&azure),
            BlobSettings::Azure { container, .. } if container == "pictures"
        ));
    }
}
