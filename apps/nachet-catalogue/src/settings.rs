//! The backend's own settings (the `settings` crate: the same defaults, file `NACHET_CONFIG`
//! and `NACHET__*` variables), of which the tool reads only blob storage and the catalogue,
//! so it finds the versions the backend loads.

use anyhow::Context as _;
use blob_store::BlobSettings;
use catalogue_store::CatalogueSettings;
use serde::Deserialize;

#[derive(Deserialize)]
pub struct Settings {
    #[serde(rename = "blob")]
    pub blobs: BlobSettings,
    #[serde(default)]
    pub catalogue: CatalogueSettings,
}

pub fn load() -> anyhow::Result<Settings> {
    let settings: Settings = settings::load(None)
        .context("invalid configuration (the NACHET_CONFIG file or a NACHET__* variable)")?;
    Ok(Settings {
        blobs: settings.blobs,
        catalogue: settings.catalogue.with_contract_environment(),
    })
}
