//! The development catalogue: pipelines over the reference model servers, published as a
//! stored version `0.0.N` (a new N only when it changed, e.g. the servers' port), encrypted
//! with a key made on first start and kept in `data_dir`, then named in the settings like
//! any deployment's version.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use catalogue_store::{CatalogueSettings, FernetCipher};
use nachet_backend::Settings;
use pipeline::ports::PublishVersionError;
use pipeline::{Catalogue, CatalogueDocument, CatalogueVersions, validate_document};
use secrecy::{ExposeSecret, SecretString};

/// The key file kept in `data_dir`.
pub const KEY_FILE: &str = "pipeline-catalogue.key";

/// Versions of the development catalogue are `0.0.N`.
const MAJOR_MINOR: &str = "0.0.";

/// Publishes `catalogue` into the settings' catalogue store and names that version and its
/// key in `settings`; nothing when the settings already name a version.
pub async fn publish_into(settings: &mut Settings, catalogue: &Catalogue) -> anyhow::Result<()> {
    let configured = settings.catalogue.clone().with_contract_environment();
    if configured.version().is_ok() {
        tracing::info!(
            "a catalogue version is configured: the reference catalogue is not published"
        );
        return Ok(());
    }
    std::fs::create_dir_all(&settings.data_dir).with_context(|| {
        format!(
            "cannot create the data folder {}",
            settings.data_dir.display()
        )
    })?;
    let key = key(&configured, &settings.data_dir)?;
    let cipher = FernetCipher::new(&key).map_err(|e| {
        anyhow!(
            "the catalogue key in {} {e}",
            settings.data_dir.join(KEY_FILE).display()
        )
    })?;
    let versions = CatalogueVersions::new(
        Arc::new(configured.store(&settings.blob)?),
        Arc::new(cipher),
    );
    let version = publish(&versions, catalogue).await?;
    settings.catalogue.version = Some(version);
    settings.catalogue.decryption_key = Some(key);
    Ok(())
}

/// The configured key, or the one kept in `data_dir` (made on first start).
fn key(catalogue: &CatalogueSettings, data_dir: &Path) -> anyhow::Result<SecretString> {
    if let Some(key) = &catalogue.decryption_key {
        return Ok(key.clone());
    }
    let path = data_dir.join(KEY_FILE);
    for _ in 0..2 {
        match std::fs::read_to_string(&path) {
            Ok(text) => return Ok(SecretString::from(text.trim().to_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
        let key = FernetCipher::generate_key();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(&path) {
            Ok(mut file) => {
                writeln!(file, "{}", key.expose_secret())
                    .and_then(|()| file.sync_all())
                    .with_context(|| format!("cannot write {}", path.display()))?;
                tracing::info!(path = %path.display(), "made the development catalogue key");
                return Ok(key);
            }
            // Another process made it first: read theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
        }
    }
    Err(anyhow!("cannot read or create {}", path.display()))
}

/// Publishes `catalogue` as the next `0.0.N`, unless the latest `0.0.N` already says the
/// same; returns the version to load.
pub async fn publish(
    versions: &CatalogueVersions,
    catalogue: &Catalogue,
) -> anyhow::Result<String> {
    let wanted = without_version(catalogue);
    // Another process on the same store may publish the same number at once: try again.
    for _ in 0..3 {
        let latest = versions
            .list()
            .await?
            .iter()
            .filter_map(|v| v.version.strip_prefix(MAJOR_MINOR)?.parse::<u64>().ok())
            .max();
        if let Some(patch) = latest {
            let version = format!("{MAJOR_MINOR}{patch}");
            // A version this key cannot open (the key file was lost) is simply not reused.
            if let Ok(stored) = versions.open(&version).await
                && without_version(&stored) == wanted
            {
                return Ok(version);
            }
        }
        let version = format!("{MAJOR_MINOR}{}", latest.map_or(1, |p| p + 1));
        let mut document = wanted.clone();
        document.version = Some(version.clone());
        let catalogue = validate_document(document, None)
            .map_err(|e| anyhow!("the development catalogue is invalid: {e}"))?;
        match versions.publish(&catalogue).await {
            Ok(()) => {
                tracing::info!(%version, "published the development catalogue");
                return Ok(version);
            }
            Err(PublishVersionError::AlreadyExists { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(anyhow!(
        "cannot publish the development catalogue: other processes keep publishing versions"
    ))
}

/// The plain document of a catalogue, without its version, to compare contents.
fn without_version(catalogue: &Catalogue) -> CatalogueDocument {
    let mut document =
        CatalogueDocument::from_catalogue(catalogue, &mut |_, plain| plain.to_owned());
    document.version = None;
    document
}
