//! The backend's own configuration (`nachet_backend::Settings`): the same defaults, file
//! (`NACHET_CONFIG`) and variables, so the tool finds the versions the backend loads.

use anyhow::Context as _;
use blob_store::BlobSettings;
use catalogue_store::CatalogueSettings;

pub struct Settings {
    pub blobs: BlobSettings,
    pub catalogue: CatalogueSettings,
}

pub fn load() -> anyhow::Result<Settings> {
    let settings = nachet_backend::Settings::load()
        .context("invalid configuration (the NACHET_CONFIG file or a NACHET__* variable)")?;
    Ok(Settings {
        blobs: settings.blob,
        catalogue: settings.catalogue.with_contract_environment(),
    })
}
