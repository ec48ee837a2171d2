//! The [`datastore::BlobStore`] port over [`object_store`]: one adapter,
//! [`ObjectBlobStore`], for any [`ObjectStore`], and [`BlobSettings`] + [`open`] to build
//! one of three backends from configuration (local disk, memory, Azure Blob).
//!
//! # Keys
//!
//! A [`BlobKey`]'s segments become the segments of an object path the way
//! `object_store` encodes arbitrary strings ([`Path::from_iter`]): characters that are
//! unsafe in some store (`%`, `#`, `?`, `*`, `<`, `>`, `|`, `"`, `[`, `]`, `{`, `}`, `^`,
//! `` ` ``, `~`) are written percent-encoded (`a#1` is stored as `a%231`), and decoded
//! again by [`BlobStore::list`]. Spaces and non-ASCII text are stored as they are.
//! The encoding matters on local disk, which otherwise refuses (and hides from listings)
//! a file name ending in `#` and digits, its marker of an unfinished upload.
//!
//! # Limits of the backends
//!
//! On local disk a key cannot be both a blob and a "folder": with a blob at `a/b`,
//! writing `a/b/c` fails with [`BlobError::Storage`] (and the other way round). Memory and
//! Azure Blob allow both.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ClientOptions, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutPayload};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

pub use datastore::{BlobError, BlobInfo, BlobKey, BlobStore};

/// Where blobs are kept, as read from configuration (`kind` selects the backend):
///
/// ```toml
/// [blobs]
/// kind = "azure"
/// account = "devstoreaccount1"
/// access_key = "..."
/// container = "pictures"
/// endpoint = "http://127.0.0.1:10000/devstoreaccount1"  # optional
/// prefix = "nachet"                                     # optional
/// ```
///
/// `Debug` never shows the access key.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum BlobSettings {
    /// Files under `root` (created if missing; default `.data/blobs`), one file per blob.
    LocalDisk {
        #[serde(default = "default_local_root")]
        root: PathBuf,
    },
    /// In this process's memory; gone when it exits. For tests and trials.
    Memory,
    /// An existing Azure Blob container, authorised with the account's shared key.
    Azure {
        account: String,
        access_key: SecretString,
        container: String,
        /// Blob endpoint including the account for Azurite, e.g.
        /// `http://127.0.0.1:10000/devstoreaccount1`. `None`: the real Azure endpoint
        /// `https://{account}.blob.core.windows.net`. An explicit `http://` endpoint is
        /// allowed (meant for Azurite on loopback).
        #[serde(default)]
        endpoint: Option<String>,
        /// Keeps every blob under this `/`-separated folder of the container.
        #[serde(default)]
        prefix: Option<String>,
    },
}

fn default_local_root() -> PathBuf {
    PathBuf::from(".data/blobs")
}

/// Builds the store `settings` describe. Nothing is contacted yet: a wrong Azure key or a
/// missing container shows on the first call.
/// See the Azure arm of [`open`].
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);

pub fn open(settings: &BlobSettings) -> Result<ObjectBlobStore, BlobError> {
    let store: Arc<dyn ObjectStore> = match settings {
        BlobSettings::LocalDisk { root } => {
            std::fs::create_dir_all(root).map_err(|e| {
                BlobError::Storage(format!(
                    "cannot create the blob folder {}: {e}",
                    root.display()
                ))
            })?;
            let store = LocalFileSystem::new_with_prefix(root)
                .map_err(|e| {
                    BlobError::Storage(format!(
                        "cannot use {} as a blob folder: {e}",
                        root.display()
                    ))
                })?
                // Deleting a folder's last blob removes the folders it leaves empty, so a
                // blob may later take a deleted folder's name.
                .with_automatic_cleanup(true)
                // A write that returned is on disk.
                .with_fsync(true);
            Arc::new(store)
        }
        BlobSettings::Memory => Arc::new(InMemory::new()),
        BlobSettings::Azure {
            account,
            access_key,
            container,
            endpoint,
            prefix,
        } => {
            let mut builder = MicrosoftAzureBuilder::new()
                .with_client_options(
                    // A pooled connection idle longer than this is not reused. Node servers
                    // (Azurite) and many proxies close idle keep-alive connections after
                    // 5 s; a write sent on one they just closed fails, and a create-only
                    // write cannot be retried blindly. Azure's own idle timeout is longer:
                    // the cost here is a new connection after 4 s of quiet.
                    ClientOptions::new().with_pool_idle_timeout(POOL_IDLE_TIMEOUT),
                )
                .with_account(account)
                .with_access_key(access_key.expose_secret())
                .with_container_name(container);
            if let Some(endpoint) = endpoint {
                let url = url::Url::parse(endpoint).map_err(|e| {
                    BlobError::Storage(format!("the Azure endpoint {endpoint:?} is not a URL: {e}"))
                })?;
                if url.scheme() == "http" {
                    if !is_loopback(&url) {
                        tracing::warn!(
                            endpoint = %endpoint,
                            "the Azure blob endpoint uses plain http on a non-loopback host"
                        );
                    }
                    builder = builder.with_allow_http(true);
                }
                builder = builder.with_endpoint(endpoint.trim_end_matches('/').to_string());
            }
            let azure = builder.build().map_err(|e| {
                BlobError::Storage(format!(
                    "cannot configure Azure Blob (account {account}, container {container}): {e}"
                ))
            })?;
            match prefix.as_deref().map(|p| p.trim_matches('/')) {
                Some(prefix) if !prefix.is_empty() => {
                    let prefix = folder_path(prefix).map_err(|e| {
                        BlobError::Storage(format!("the Azure prefix {prefix:?} {e}"))
                    })?;
                    Arc::new(PrefixStore::new(azure, prefix))
                }
                _ => Arc::new(azure),
            }
        }
    };
    Ok(ObjectBlobStore::new(store))
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// [`BlobStore`] over any [`ObjectStore`]. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct ObjectBlobStore {
    store: Arc<dyn ObjectStore>,
}

impl ObjectBlobStore {
    /// Wraps any object store, e.g. a [`PrefixStore`] to keep blobs under a folder.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store }
    }

    /// The object store underneath.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }
}

impl fmt::Debug for ObjectBlobStore {
    /// Shows the store's `Display` (kind, account, container), never its `Debug`: that of
    /// `MicrosoftAzure` prints the access key's bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectBlobStore")
            .field("store", &format_args!("{}", self.store))
            .finish()
    }
}

/// The object path of a key: one path segment per key segment, encoded by `object_store`.
fn object_path(key: &BlobKey) -> Path {
    Path::from_iter(key.as_str().split('/'))
}

/// The object path of a `/`-separated folder; empty segments at either end are ignored.
fn folder_path(prefix: &str) -> Result<Path, String> {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(Path::ROOT);
    }
    let key = BlobKey::parse(trimmed).map_err(|e| format!("is not a valid key prefix: {e}"))?;
    Ok(object_path(&key))
}

/// The key of an object path: the inverse of [`object_path`].
fn blob_key(path: &Path) -> Result<BlobKey, String> {
    let segments = path
        .parts()
        .map(|part| percent_decode(part.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    BlobKey::from_segments(&segments)
}

/// Decodes `%XX` escapes; any other `%` is kept as it is.
fn percent_decode(text: &str) -> Result<String, String> {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("{text:?} does not decode to UTF-8"))
}

/// Azure answers 404 for a missing container as for a missing blob, and `object_store`
/// makes both `NotFound`; only the text tells them apart (`ContainerNotFound` in a body,
/// or the batch delete's reason). A missing container is a configuration error, never
/// "no such blob".
fn is_missing_container(error: &object_store::Error) -> bool {
    let text = error.to_string();
    text.contains("ContainerNotFound") || text.contains("container does not exist")
}

fn storage_error(action: &str, key: &dyn fmt::Display, error: object_store::Error) -> BlobError {
    BlobError::Storage(format!("cannot {action} {key}: {error}"))
}

fn info(meta: ObjectMeta) -> Result<BlobInfo, String> {
    Ok(BlobInfo {
        key: blob_key(&meta.location)?,
        size: meta.size,
        last_modified: meta.last_modified,
    })
}

#[async_trait]
impl BlobStore for ObjectBlobStore {
    async fn put(&self, key: &BlobKey, bytes: Bytes) -> Result<(), BlobError> {
        self.store
            .put(&object_path(key), PutPayload::from_bytes(bytes))
            .await
            .map(drop)
            .map_err(|e| storage_error("write", key, e))
    }

    async fn put_new(&self, key: &BlobKey, bytes: Bytes) -> Result<(), BlobError> {
        let result = self
            .store
            .put_opts(
                &object_path(key),
                PutPayload::from_bytes(bytes),
                PutMode::Create.into(),
            )
            .await;
        match result {
            Ok(_) => Ok(()),
            // `Precondition` too: a store may report a failed If-None-Match that way.
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => {
                Err(BlobError::AlreadyExists(key.clone()))
            }
            Err(e) => Err(storage_error("create", key, e)),
        }
    }

    async fn get(&self, key: &BlobKey) -> Result<Bytes, BlobError> {
        let fetched = async { self.store.get(&object_path(key)).await?.bytes().await };
        match fetched.await {
            Ok(bytes) => Ok(bytes),
            Err(e @ object_store::Error::NotFound { .. }) if !is_missing_container(&e) => {
                Err(BlobError::NotFound(key.clone()))
            }
            Err(e) => Err(storage_error("read", key, e)),
        }
    }

    async fn delete(&self, key: &BlobKey) -> Result<(), BlobError> {
        match self.store.delete(&object_path(key)).await {
            Ok(()) => Ok(()),
            Err(e @ object_store::Error::NotFound { .. }) if !is_missing_container(&e) => Ok(()),
            Err(e) => Err(storage_error("delete", key, e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>, BlobError> {
        let folder = folder_path(prefix)
            .map_err(|e| BlobError::Storage(format!("cannot list {prefix:?}: it {e}")))?;
        let listing = async {
            let folder = (!folder.is_root()).then_some(&folder);
            self.store
                .list(folder)
                .try_collect::<Vec<ObjectMeta>>()
                .await
        };
        // `list` gives the objects below the folder; a blob whose key is the prefix
        // itself also starts with the prefix's segments, so look for it too.
        let exact = async {
            if folder.is_root() {
                return Ok(None);
            }
            match self.store.head(&folder).await {
                Ok(meta) => Ok(Some(meta)),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        };
        let (listing, exact) = futures::join!(listing, exact);
        let list_error = |e| storage_error("list", &format_args!("{prefix:?}"), e);
        let mut metas = listing.map_err(list_error)?;
        metas.extend(exact.map_err(list_error)?);

        let mut blobs = Vec::with_capacity(metas.len());
        for meta in metas {
            match info(meta) {
                Ok(info) => blobs.push(info),
                // An object this adapter did not write, with a name no key maps to.
                Err(e) => tracing::warn!(prefix, "blob list skips an object: {e}"),
            }
        }
        blobs.sort_by(|a, b| a.key.cmp(&b.key));
        blobs.dedup_by(|a, b| a.key == b.key);
        Ok(blobs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_paths_and_back() {
        for key in [
            "a",
            "users/42/pictures/seed 1.jpg",
            "ünï/çødé/種子.png",
            "odd/100%/a#1/b?c/*<>|\"[]{}^`~",
            "dots/.hidden/a..b/.../x.",
            "percent/%41%zz%",
        ] {
            let key = BlobKey::parse(key).unwrap();
            let path = object_path(&key);
            assert_eq!(path.parts().count(), key.as_str().split('/').count());
            // The path survives the way stores hand it back (parsed from text).
            let reparsed = Path::parse(path.as_ref()).unwrap();
            assert_eq!(blob_key(&reparsed).unwrap(), key, "path {path}");
        }
    }

    #[test]
    fn a_hash_and_digits_never_end_a_file_name() {
        // LocalFileSystem treats `name#123` as an unfinished upload.
        let path = object_path(&BlobKey::parse("a/b#123").unwrap());
        assert_eq!(path.as_ref(), "a/b%23123");
    }

    #[test]
    fn folder_paths_ignore_outer_slashes_and_refuse_bad_segments() {
        assert_eq!(folder_path("").unwrap(), Path::ROOT);
        assert_eq!(folder_path("/").unwrap(), Path::ROOT);
        assert_eq!(folder_path("/a/b/").unwrap().as_ref(), "a/b");
        assert!(folder_path("a//b").is_err());
        assert!(folder_path("a/../b").is_err());
    }

    #[test]
    fn debug_of_azure_settings_and_store_hides_the_key() {
        let key = "c2VjcmV0LWtleS1ieXRlcw==";
        let settings: BlobSettings = serde_json::from_value(serde_json::json!({
            "kind": "azure",
            "account": "acct",
            "access_key": key,
            "container": "box",
        }))
        .unwrap();
        let shown = format!("{settings:?}");
        assert!(!shown.contains(key), "{shown}");
        assert!(shown.contains("acct"), "{shown}");

        let store = open(&settings).unwrap();
        let shown = format!("{store:?}");
        assert!(!shown.contains(key), "{shown}");
        // Not even the decoded bytes (`MicrosoftAzure`'s own Debug prints them).
        assert!(!shown.contains("115, 101, 99"), "{shown}");
        assert!(shown.contains("MicrosoftAzure"), "{shown}");
    }

    #[test]
    fn settings_read_every_kind() {
        let local: BlobSettings =
            serde_json::from_value(serde_json::json!({"kind": "local_disk", "root": "/tmp/x"}))
                .unwrap();
        assert!(
            matches!(local, BlobSettings::LocalDisk { root } if root == std::path::Path::new("/tmp/x"))
        );
        let memory: BlobSettings =
            serde_json::from_value(serde_json::json!({"kind": "memory"})).unwrap();
        assert!(matches!(memory, BlobSettings::Memory));
        let azure: BlobSettings = serde_json::from_value(serde_json::json!({
            "kind": "azure", "account": "a", "access_key": "aw==", "container": "c",
            "endpoint": "http://127.0.0.1:10000/devstoreaccount1", "prefix": "p/q",
        }))
        .unwrap();
        assert!(matches!(
            azure,
            BlobSettings::Azure { endpoint: Some(_), prefix: Some(p), .. } if p == "p/q"
        ));
        assert!(serde_json::from_value::<BlobSettings>(serde_json::json!({"kind": "s3"})).is_err());
    }

    #[test]
    fn open_refuses_a_bad_azure_prefix_or_endpoint() {
        let azure = |endpoint: Option<&str>, prefix: Option<&str>| BlobSettings::Azure {
            account: "a".into(),
            access_key: SecretString::from("aw=="),
            container: "c".into(),
            endpoint: endpoint.map(Into::into),
            prefix: prefix.map(Into::into),
        };
        assert!(matches!(
            open(&azure(None, Some("a/../b"))),
            Err(BlobError::Storage(_))
        ));
        assert!(matches!(
            open(&azure(Some("not a url"), None)),
            Err(BlobError::Storage(_))
        ));
        assert!(
            open(&azure(
                Some("http://127.0.0.1:1/devstoreaccount1"),
                Some("/p/")
            ))
            .is_ok()
        );
    }
}
