//! `open` from settings: local disk creates its folder; Azure reaches Azurite from the
//! same settings a deployment would use (`TEST_AZURITE_URL`, `TEST_AZURITE_CONTAINER`).

use blob_store::{BlobError, BlobKey, BlobSettings, BlobStore, open};
use bytes::Bytes;
use secrecy::SecretString;

fn key(text: &str) -> BlobKey {
    BlobKey::parse(text).unwrap()
}

#[tokio::test]
async fn local_disk_creates_its_missing_root_and_writes_inside_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("not").join("yet").join("there");
    assert!(!root.exists());

    let store = open(&BlobSettings::LocalDisk { root: root.clone() }).unwrap();
    assert!(root.is_dir(), "open creates the root");

    let k = key("users/1/seed photo.jpg");
    store.put(&k, Bytes::from_static(b"jpeg")).await.unwrap();
    assert_eq!(
        std::fs::read(root.join("users/1/seed photo.jpg")).unwrap(),
        b"jpeg"
    );

    // Opening again over existing blobs sees them.
    let again = open(&BlobSettings::LocalDisk { root: root.clone() }).unwrap();
    assert_eq!(again.get(&k).await.unwrap(), Bytes::from_static(b"jpeg"));

    // Deleting the last blob of a folder lets a blob take the folder's name.
    again.delete(&k).await.unwrap();
    let folder = key("users/1");
    again
        .put(&folder, Bytes::from_static(b"now a blob"))
        .await
        .unwrap();
    assert_eq!(
        again.get(&folder).await.unwrap(),
        Bytes::from_static(b"now a blob")
    );
}

#[tokio::test]
async fn local_disk_root_that_is_a_file_is_a_storage_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    assert!(matches!(
        open(&BlobSettings::LocalDisk { root: file }),
        Err(BlobError::Storage(_))
    ));
}

fn azurite_settings(prefix: Option<String>) -> BlobSettings {
    let azurite = test_support::azurite_settings();
    BlobSettings::Azure {
        account: azurite.account,
        access_key: SecretString::from(azurite.key),
        container: azurite.container,
        endpoint: Some(azurite.endpoint),
        prefix,
    }
}

#[tokio::test]
async fn azure_from_settings_reaches_azurite_under_its_prefix() {
    let prefix = format!("open-test-{}", test_support::unique_suffix());
    // Settings as a deployment writes them (TOML-like JSON), with the prefix.
    let azurite = test_support::azurite_settings();
    let settings: BlobSettings = serde_json::from_value(serde_json::json!({
        "kind": "azure",
        "account": azurite.account,
        "access_key": azurite.key,
        "container": azurite.container,
        "endpoint": format!("{}/", azurite.endpoint),
        "prefix": format!("/{prefix}/app/"),
    }))
    .unwrap();
    let store = open(&settings).unwrap();

    let k = key("users/42/seed.jpg");
    store
        .put_new(&k, Bytes::from_static(b"\x00\xffjpeg"))
        .await
        .unwrap();
    assert!(matches!(
        store.put_new(&k, Bytes::from_static(b"again")).await,
        Err(BlobError::AlreadyExists(_))
    ));
    assert_eq!(
        store.get(&k).await.unwrap(),
        Bytes::from_static(b"\x00\xffjpeg")
    );
    let listed = store.list("users").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].key.as_str(), listed[0].size),
        ("users/42/seed.jpg", 6)
    );

    // The same container without a prefix sees the blob under the prefix.
    let whole = open(&azurite_settings(None)).unwrap();
    let outside = whole.list(&prefix).await.unwrap();
    let keys: Vec<&str> = outside.iter().map(|b| b.key.as_str()).collect();
    assert_eq!(keys, vec![format!("{prefix}/app/users/42/seed.jpg")]);

    store.delete(&k).await.unwrap();
    assert!(matches!(store.get(&k).await, Err(BlobError::NotFound(_))));
    assert!(whole.list(&prefix).await.unwrap().is_empty());
}

#[tokio::test]
async fn azure_with_a_wrong_key_is_a_storage_error_not_a_missing_blob() {
    let BlobSettings::Azure {
        account,
        container,
        endpoint,
        ..
    } = azurite_settings(None)
    else {
        unreachable!()
    };
    let wrong = BlobSettings::Azure {
        account,
        // Valid base64, wrong key.
        access_key: SecretString::from("d3Jvbmcga2V5IGZvciBhenVyaXRl"),
        container,
        endpoint,
        prefix: Some(format!("open-test-{}", test_support::unique_suffix())),
    };
    let store = open(&wrong).unwrap();
    let k = key("a/b");
    match store.put(&k, Bytes::from_static(b"x")).await {
        Err(BlobError::Storage(message)) => {
            assert!(
                message.contains("a/b"),
                "the message names the key: {message}"
            )
        }
        other => panic!("expected a storage error, got {other:?}"),
    }
    assert!(matches!(store.get(&k).await, Err(BlobError::Storage(_))));
}

#[tokio::test]
async fn azure_with_a_missing_container_is_a_storage_error_not_a_missing_blob() {
    let BlobSettings::Azure {
        account,
        access_key,
        endpoint,
        ..
    } = azurite_settings(None)
    else {
        unreachable!()
    };
    let store = open(&BlobSettings::Azure {
        account,
        access_key,
        container: format!("missing-{}", test_support::unique_suffix()),
        endpoint,
        prefix: None,
    })
    .unwrap();
    let k = key("a/b");
    let body = || Bytes::from_static(b"x");
    let results = [
        ("get", store.get(&k).await.map(drop)),
        ("delete", store.delete(&k).await),
        ("put", store.put(&k, body()).await),
        ("put_new", store.put_new(&k, body()).await),
        ("list", store.list("a").await.map(drop)),
    ];
    for (call, result) in results {
        match result {
            Err(BlobError::Storage(message)) => assert!(
                message.contains("ContainerNotFound")
                    || message.contains("container does not exist"),
                "{call}: {message}"
            ),
            other => panic!("{call}: expected a storage error, got {other:?}"),
        }
    }
}
