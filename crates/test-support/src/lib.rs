//! Helpers for tests that use the real services.
//!
//! `./deploy/run-tests.sh` installs and starts PostgreSQL, Azurite (Azure Blob emulator)
//! and Orthanc (with DICOMweb) on loopback and exports the `TEST_*` variables read here.
//! During development, start them once with `deploy/services.sh start` and load the
//! variables with `eval "$(deploy/services.sh env)"`.
//!
//! A missing variable is a panic, never a silent skip: a test that needs a service and
//! does not get it must fail.

use std::path::PathBuf;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::prefix::PrefixStore;
use sea_orm::ConnectionTrait;

/// `postgres://user@host:port/db` of a server on which tests may create databases.
pub const ENV_DATABASE_URL: &str = "TEST_DATABASE_URL";
/// Azurite blob endpoint including the account, e.g. `http://127.0.0.1:10000/devstoreaccount1`.
pub const ENV_AZURITE_URL: &str = "TEST_AZURITE_URL";
/// An existing container in Azurite.
pub const ENV_AZURITE_CONTAINER: &str = "TEST_AZURITE_CONTAINER";
/// Orthanc's HTTP root, e.g. `http://127.0.0.1:18042` (DICOMweb under `/dicom-web/`).
pub const ENV_ORTHANC_URL: &str = "TEST_ORTHANC_URL";
/// A folder of real DICOM files (pydicom's test files).
pub const ENV_DICOM_FILES: &str = "TEST_DICOM_FILES";

/// Azurite's well-known development account.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
/// Azurite's well-known development key (public, documented by Microsoft).
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Reads a required variable, or panics with the way to get it.
pub fn required_env(name: &str) -> String {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => value,
        _ => panic!(
            "{name} is not set: run ./deploy/run-tests.sh, or eval \"$(deploy/services.sh env)\""
        ),
    }
}

/// A short unique name part (`uuid` v4, simple form: 32 hex digits).
pub fn unique_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Creates a new, empty PostgreSQL database `test_<uuid>` on the test server and returns
/// its URL. Each call gives a database of its own, so tests can run in parallel.
pub async fn fresh_postgres_database() -> String {
    let server_url = required_env(ENV_DATABASE_URL);
    let name = format!("test_{}", unique_suffix());

    let admin = sea_orm::Database::connect(server_url.as_str())
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {ENV_DATABASE_URL}={server_url}: {e}"));
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap_or_else(|e| panic!("cannot create database {name} on {server_url}: {e}"));
    // Closing is best effort: the database exists either way.
    let _ = admin.close().await;

    let mut url = url::Url::parse(&server_url)
        .unwrap_or_else(|e| panic!("{ENV_DATABASE_URL}={server_url} is not a URL: {e}"));
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// The URL of a new SQLite file database inside `dir` (created on first connection).
pub fn fresh_sqlite_url(dir: &tempfile::TempDir) -> String {
    let path = dir.path().join(format!("test_{}.sqlite", unique_suffix()));
    format!("sqlite://{}?mode=rwc", path.display())
}

/// What a crate needs to build its own Azure store against Azurite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzuriteSettings {
    /// Blob endpoint including the account, e.g. `http://127.0.0.1:10000/devstoreaccount1`.
    pub endpoint: String,
    /// `devstoreaccount1`.
    pub account: String,
    /// The well-known development key (base64).
    pub key: String,
    /// An existing container. Share it, but use a [`unique_suffix`] prefix per test.
    pub container: String,
}

/// Azurite's settings from `TEST_AZURITE_URL` and `TEST_AZURITE_CONTAINER`.
pub fn azurite_settings() -> AzuriteSettings {
    AzuriteSettings {
        endpoint: required_env(ENV_AZURITE_URL)
            .trim_end_matches('/')
            .to_string(),
        account: AZURITE_ACCOUNT.to_string(),
        key: AZURITE_KEY.to_string(),
        container: required_env(ENV_AZURITE_CONTAINER),
    }
}

/// An object store on the Azurite test container, confined to a prefix of its own
/// (`test-<uuid>/`), so that tests never see each other's blobs.
pub fn azurite_store() -> Arc<dyn ObjectStore> {
    let settings = azurite_settings();
    let store = MicrosoftAzureBuilder::new()
        .with_account(&settings.account)
        .with_access_key(&settings.key)
        .with_container_name(&settings.container)
        .with_endpoint(settings.endpoint.clone())
        .with_allow_http(true)
        .build()
        .unwrap_or_else(|e| panic!("cannot build an Azure store on {}: {e}", settings.endpoint));
    let prefix = format!("test-{}", unique_suffix());
    Arc::new(PrefixStore::new(store, prefix.as_str()))
}

/// Orthanc's HTTP root from `TEST_ORTHANC_URL`, without a trailing slash
/// (DICOMweb is at `{orthanc_url()}/dicom-web/`).
pub fn orthanc_url() -> String {
    required_env(ENV_ORTHANC_URL)
        .trim_end_matches('/')
        .to_string()
}

/// The folder of real DICOM files from `TEST_DICOM_FILES` (pydicom's test files,
/// e.g. `CT_small.dcm`, `MR_small.dcm`). Panics if it is not a folder.
pub fn dicom_test_files() -> PathBuf {
    let dir = PathBuf::from(required_env(ENV_DICOM_FILES));
    assert!(
        dir.is_dir(),
        "{ENV_DICOM_FILES}={} is not a folder: run ./deploy/run-tests.sh (it installs python3-pydicom)",
        dir.display()
    );
    dir
}
