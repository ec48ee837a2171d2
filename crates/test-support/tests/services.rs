//! Proves that the services started by `deploy/run-tests.sh` answer, with the settings
//! that `test-support` hands to the other crates' tests.

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use sea_orm::{ConnectionTrait, Database, Statement};

#[tokio::test]
async fn postgres_gives_each_test_a_fresh_database() {
    let first = test_support::fresh_postgres_database().await;
    let second = test_support::fresh_postgres_database().await;
    assert_ne!(first, second);
    assert!(first.starts_with("postgres://"), "{first}");

    let db = Database::connect(first.as_str()).await.unwrap();
    let backend = db.get_database_backend();
    let row = db
        .query_one_raw(Statement::from_string(
            backend,
            "SELECT 1::int4 AS one, current_database() AS name",
        ))
        .await
        .unwrap()
        .expect("one row");
    assert_eq!(row.try_get_by_index::<i32>(0).unwrap(), 1);
    let name: String = row.try_get_by_index(1).unwrap();
    assert!(first.ends_with(&format!("/{name}")), "{first} vs {name}");
    // The database is empty and writable.
    db.execute_unprepared("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    db.close().await.unwrap();
}

#[tokio::test]
async fn sqlite_url_opens_a_new_file_database() {
    let dir = tempfile::tempdir().unwrap();
    let url = test_support::fresh_sqlite_url(&dir);
    assert_ne!(url, test_support::fresh_sqlite_url(&dir));
    let db = Database::connect(url.as_str()).await.unwrap();
    db.execute_unprepared("CREATE TABLE t (id integer PRIMARY KEY); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    db.close().await.unwrap();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[tokio::test]
async fn azurite_roundtrip_in_a_prefix_of_its_own() {
    let store = test_support::azurite_store();
    let other = test_support::azurite_store();
    let location = Path::from("folder/blob.bin");

    store
        .put(&location, b"hello azurite".to_vec().into())
        .await
        .unwrap();
    let bytes = store.get(&location).await.unwrap().bytes().await.unwrap();
    assert_eq!(&bytes[..], b"hello azurite");

    let listed: Vec<_> = store.list(None).try_collect().await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].location, location);
    assert_eq!(listed[0].size, 13);
    // Another store has another prefix: it sees nothing of the first one's blobs.
    let seen_by_other: Vec<_> = other.list(None).try_collect().await.unwrap();
    assert!(seen_by_other.is_empty(), "{seen_by_other:?}");

    store.delete(&location).await.unwrap();
    let after: Vec<_> = store.list(None).try_collect().await.unwrap();
    assert!(after.is_empty(), "{after:?}");
    assert!(matches!(
        store.get(&location).await,
        Err(object_store::Error::NotFound { .. })
    ));
}

#[test]
fn azurite_settings_name_the_test_container() {
    let settings = test_support::azurite_settings();
    assert_eq!(settings.account, "devstoreaccount1");
    assert!(settings.endpoint.starts_with("http://"), "{settings:?}");
    assert!(!settings.endpoint.ends_with('/'));
    assert!(!settings.container.is_empty());
}

#[tokio::test]
async fn orthanc_answers_and_stores_a_real_dicom_file() {
    let base = test_support::orthanc_url();
    let client = reqwest::Client::new();

    let system: serde_json::Value = client
        .get(format!("{base}/system"))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(system["Version"].is_string(), "{system}");
    assert_eq!(system["PluginsEnabled"], true, "{system}");

    // A real DICOM file from pydicom's test files, uploaded and found through DICOMweb.
    let file = test_support::dicom_test_files().join("CT_small.dcm");
    let body = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let uploaded: serde_json::Value = client
        .post(format!("{base}/instances"))
        .body(body)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    let instance_id = uploaded["ID"].as_str().expect("instance ID").to_string();
    let study = client
        .get(format!("{base}/instances/{instance_id}/study"))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let study_uid = study["MainDicomTags"]["StudyInstanceUID"]
        .as_str()
        .expect("StudyInstanceUID")
        .to_string();

    let found: serde_json::Value = client
        .get(format!("{base}/dicom-web/studies"))
        .query(&[("StudyInstanceUID", study_uid.as_str())])
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found.as_array().map(Vec::len), Some(1), "{found}");

    // Leave Orthanc as it was (other tests share it). Another test run may upload the same
    // file at the same moment; a 404 then only means it was faster.
    let deleted = client
        .delete(format!("{base}/instances/{instance_id}"))
        .send()
        .await
        .unwrap();
    assert!(
        deleted.status().is_success() || deleted.status() == reqwest::StatusCode::NOT_FOUND,
        "{}",
        deleted.status()
    );
}

#[test]
fn dicom_test_files_hold_real_dicom() {
    let dir = test_support::dicom_test_files();
    let bytes = std::fs::read(dir.join("CT_small.dcm")).unwrap();
    // Preamble of 128 bytes, then the magic "DICM".
    assert_eq!(&bytes[128..132], b"DICM");
}

#[test]
#[should_panic(expected = "is not set: run ./deploy/run-tests.sh")]
fn a_missing_variable_fails_loudly() {
    test_support::required_env("TEST_SUPPORT_SURELY_UNSET_VARIABLE");
}
