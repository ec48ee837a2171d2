//! The Nachet frontend's calls (contract 1.8, feedback and batch import aside), end to end
//! with exactly the bodies it sends, checking every field it reads: the app on port 0, the
//! reference model servers over real HTTP, real databases and blob storage.

mod common;

use common::*;
use image::ImageFormat;
use serde_json::{Value, json};

/// The frontend's `/inf` body: `user_id` and `container_name`, never `userId`.
fn frontend_inf(user: &str, folder: &str, image: String, dims: [u32; 2]) -> Value {
    json!({
        "model_name": DEFAULT_PIPELINE,
        "image": image,
        "imageDims": dims,
        "folder_name": folder,
        "user_id": user,
        "container_name": user,
    })
}

async fn directories(t: &TestBackend, user: &str) -> Vec<Value> {
    let (status, answer) = post_json(
        &t.http,
        t.url("/get-directories"),
        json!({"container_name": user}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    answer["folders"].as_array().unwrap().clone()
}

fn folder<'a>(folders: &'a [Value], name: &str) -> &'a Value {
    folders
        .iter()
        .find(|f| f["folder_name"] == name)
        .unwrap_or_else(|| panic!("no folder {name} in {folders:?}"))
}

/// Every route the frontend calls, in the order a technician's session calls them.
async fn a_technicians_session(t: &TestBackend) {
    // Who am I: always `{"email": ""}`.
    let (status, answer) = post_json(&t.http, t.url("/get-user-id"), json!({"email": ""})).await;
    assert_eq!(status, 200, "{answer}");
    let user = answer["user_id"].as_str().unwrap().to_owned();
    assert_eq!(user, t.user(TECH).await, "the same id every time");

    // A fresh user has "General", empty.
    let folders = directories(t, &user).await;
    assert_eq!(folders.len(), 1, "{folders:?}");
    let general = folder(&folders, "General");
    assert_eq!(general["nb_pictures"], 0);
    let general_id = general["picture_set_id"].as_str().unwrap().to_owned();

    // A picture into "General" by name, as the frontend's first call does.
    let photo = photo_bytes();
    let (status, answer) = post_json(
        &t.http,
        t.url("/inf"),
        frontend_inf(&user, "General", data_url("image/png", &photo), [638, 559]),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let seeds: Value = t
        .http
        .get(t.url("/seeds"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let first_inference = answer["inference_id"].as_str().unwrap().to_owned();
    for b in answer["boxes"].as_array().unwrap() {
        for key in [
            "box",
            "label",
            "score",
            "topN",
            "box_id",
            "object_type_id",
            "overlapping",
            "overlappingIndices",
            "is_verified",
        ] {
            assert!(b.get(key).is_some(), "missing {key} in {b}");
        }
        assert_eq!(b["is_verified"], false);
        let seed = seeds["seeds"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["seed_name"] == b["label"])
            .expect("the reference classifier names known species");
        assert_eq!(b["object_type_id"], seed["seed_id"], "{b}");
    }

    // A folder of its own, then a TIFF picture into it by its picture_set_id.
    let (status, created) = post_json(
        &t.http,
        t.url("/create-dir"),
        json!({"container_name": user, "folder_name": "Lot 42"}),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let (status, again) = post_json(
        &t.http,
        t.url("/create-dir"),
        json!({"container_name": user, "folder_name": "Lot 42"}),
    )
    .await;
    assert_eq!(status, 409, "{again}");
    let lot_id = created["picture_set_id"].as_str().unwrap().to_owned();
    let tiff = encode(&seed_photo(), ImageFormat::Tiff);
    let tiff_url = data_url("image/tiff", &tiff);

    // The pre-check's SHA-256, sent back as `validator`: a mismatch is refused, saying so.
    let (status, validated) = post_json(
        &t.http,
        t.url("/image-validation"),
        json!({"image": tiff_url}),
    )
    .await;
    assert_eq!(status, 200, "{validated}");
    let sha256 = validated[0].as_str().unwrap().to_owned();
    assert_eq!(sha256.len(), 64);
    let mut wrong = frontend_inf(&user, &lot_id, tiff_url.clone(), [638, 559]);
    wrong["validator"] = "0".repeat(64).into();
    let (status, refused) = post_json(&t.http, t.url("/inf"), wrong).await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("validator"),
        "{refused}"
    );
    let mut right = frontend_inf(&user, &lot_id, tiff_url, [638, 559]);
    right["validator"] = sha256.into();
    let (status, tiff_answer) = post_json(&t.http, t.url("/inf"), right).await;
    assert_eq!(status, 200, "{tiff_answer}");

    let folders = directories(t, &user).await;
    assert_eq!(folders.len(), 2);
    let general = folder(&folders, "General");
    assert_eq!(general["picture_set_id"], general_id.as_str());
    assert_eq!(general["nb_pictures"], 1);
    let lot = folder(&folders, "Lot 42");
    assert_eq!(lot["picture_set_id"], lot_id.as_str());
    assert_eq!(lot["nb_pictures"], 1);
    let picture = &lot["pictures"][0];
    assert_eq!(picture["inference_exists"], true);
    assert_eq!(picture["is_validation"], false);
    let picture_id = picture["picture_id"].as_str().unwrap().to_owned();

    // The stored picture comes back with its inference.
    let (status, stored) = post_json(
        &t.http,
        t.url("/get-picture"),
        json!({"container_name": user, "picture_id": picture_id}),
    )
    .await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["picture_id"], picture_id.as_str());
    assert_eq!(stored["image"], data_url("image/tiff", &tiff).as_str());
    let inference = &stored["inference"];
    assert_eq!(inference["inference_id"], tiff_answer["inference_id"]);
    assert_eq!(
        inference["boxes"], tiff_answer["boxes"],
        "rebuilt as answered"
    );
    assert_eq!(inference["labelOccurrence"], tiff_answer["labelOccurrence"]);
    assert_eq!(inference["models"], tiff_answer["models"]);

    // Deleting: nothing verified, so no question; the folder, its rows and blobs go.
    let blobs_before = t.blob_keys().await.len();
    let (status, answer) = post_json(
        &t.http,
        t.url("/delete-request"),
        json!({"container_name": user, "folder_uuid": lot_id}),
    )
    .await;
    assert_eq!((status, answer), (200, json!(false)));
    let (status, answer) = post_json(
        &t.http,
        t.url("/del"),
        json!({"container_name": user, "folder_name": lot_id}),
    )
    .await;
    assert_eq!((status, answer), (200, json!(true)));
    assert_eq!(t.blob_keys().await.len(), blobs_before - 2);
    assert_eq!(t.count("pictures").await, 1);
    assert_eq!(t.count("inferences").await, 1);
    assert_eq!(t.count("blob_deletions").await, 0);
    let folders = directories(t, &user).await;
    assert_eq!(folders.len(), 1);

    // "General" stays; a deleted folder is gone.
    let (status, answer) = post_json(
        &t.http,
        t.url("/delete-permanently"),
        json!({"container_name": user, "folder_uuid": general_id}),
    )
    .await;
    assert_eq!(status, 409, "{answer}");
    let (status, answer) = post_json(
        &t.http,
        t.url("/delete-with-archive"),
        json!({"container_name": user, "folder_uuid": lot_id}),
    )
    .await;
    assert_eq!(status, 404, "{answer}");

    // A folder with a picture, deleted permanently.
    let (_, created) = post_json(
        &t.http,
        t.url("/create-dir"),
        json!({"container_name": user, "folder_name": "Lot 43"}),
    )
    .await;
    let lot_id = created["picture_set_id"].as_str().unwrap().to_owned();
    let (status, _) = post_json(
        &t.http,
        t.url("/inf"),
        frontend_inf(&user, &lot_id, data_url("image/png", &photo), [638, 559]),
    )
    .await;
    assert_eq!(status, 200);
    let (status, answer) = post_json(
        &t.http,
        t.url("/delete-permanently"),
        json!({"container_name": user, "folder_uuid": lot_id}),
    )
    .await;
    assert_eq!((status, answer), (200, json!(true)));
    assert_eq!(t.count("pictures").await, 1);
    assert_eq!(t.blob_keys().await.len(), blobs_before - 2);

    // The first inference is still there, and still reads back.
    let general = folder(&directories(t, &user).await, "General").clone();
    let (status, stored) = post_json(
        &t.http,
        t.url("/get-picture"),
        json!({"container_name": user, "picture_id": general["pictures"][0]["picture_id"]}),
    )
    .await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(
        stored["inference"]["inference_id"],
        first_inference.as_str()
    );
}

#[tokio::test]
async fn a_technicians_session_on_sqlite_and_local_disk() {
    let t = start(Db::Sqlite, Blobs::LocalDisk).await;
    a_technicians_session(&t).await;
    t.backend.stop().await;
}

#[tokio::test]
async fn a_technicians_session_on_postgres_and_azurite() {
    let t = start(Db::Postgres, Blobs::Azurite).await;
    a_technicians_session(&t).await;
    t.backend.stop().await;
}

/// Rows and blobs, to see that a refused request changed nothing.
async fn footprint(t: &TestBackend) -> (i64, i64, i64, usize) {
    (
        t.count("picture_sets").await,
        t.count("pictures").await,
        t.count("inferences").await,
        t.blob_keys().await.len(),
    )
}

async fn nobody_touches_anothers_storage(t: &TestBackend) {
    let alice = t.user(TECH).await;
    let mallory_client = t.client_as("mallory@example.org");
    let mallory = t.user("mallory@example.org").await;
    let (_, created) = post_json(
        &t.http,
        t.url("/create-dir"),
        json!({"container_name": alice, "folder_name": "Alice's lot"}),
    )
    .await;
    let alice_folder = created["picture_set_id"].as_str().unwrap().to_owned();
    let photo = data_url("image/png", &photo_bytes());
    let (status, _) = post_json(
        &t.http,
        t.url("/inf"),
        frontend_inf(&alice, &alice_folder, photo.clone(), [638, 559]),
    )
    .await;
    assert_eq!(status, 200);
    let alice_picture =
        folder(&directories(t, &alice).await, "Alice's lot")["pictures"][0]["picture_id"]
            .as_str()
            .unwrap()
            .to_owned();
    // Mallory's own General exists, so that listing it changes nothing below.
    let _ = post_json(
        &mallory_client,
        t.url("/get-directories"),
        json!({"container_name": mallory}),
    )
    .await;
    let before = footprint(t).await;

    let attempts = [
        // Alice's storage, named as Mallory's.
        (
            "/inf",
            frontend_inf(&alice, "General", photo.clone(), [638, 559]),
        ),
        ("/inf", {
            let mut body = frontend_inf(&mallory, "General", photo.clone(), [638, 559]);
            body["container_name"] = alice.clone().into();
            body
        }),
        ("/inf", {
            let mut body = frontend_inf(&mallory, "General", photo.clone(), [638, 559]);
            body["user_id"] = alice.clone().into();
            body
        }),
        ("/get-directories", json!({"container_name": alice})),
        (
            "/create-dir",
            json!({"container_name": alice, "folder_name": "x"}),
        ),
        (
            "/del",
            json!({"container_name": alice, "folder_name": alice_folder}),
        ),
        (
            "/get-picture",
            json!({"container_name": alice, "picture_id": alice_picture}),
        ),
        (
            "/delete-request",
            json!({"container_name": alice, "folder_uuid": alice_folder}),
        ),
        (
            "/delete-permanently",
            json!({"container_name": alice, "folder_uuid": alice_folder}),
        ),
        (
            "/delete-with-archive",
            json!({"container_name": alice, "folder_uuid": alice_folder}),
        ),
        // Mallory's own storage, but Alice's folder or picture.
        (
            "/inf",
            frontend_inf(&mallory, &alice_folder, photo.clone(), [638, 559]),
        ),
        (
            "/del",
            json!({"container_name": mallory, "folder_name": alice_folder}),
        ),
        (
            "/get-picture",
            json!({"container_name": mallory, "picture_id": alice_picture}),
        ),
        (
            "/delete-request",
            json!({"container_name": mallory, "folder_uuid": alice_folder}),
        ),
        (
            "/delete-permanently",
            json!({"container_name": mallory, "folder_uuid": alice_folder}),
        ),
        (
            "/delete-with-archive",
            json!({"container_name": mallory, "folder_uuid": alice_folder}),
        ),
        ("/get-user-id", json!({"email": TECH})),
    ];
    for (path, body) in attempts {
        let (status, answer) = post_json(&mallory_client, t.url(path), body.clone()).await;
        assert_eq!(status, 403, "{path} {body}: {answer}");
        assert!(answer["error"].is_string(), "{answer}");
        assert_eq!(footprint(t).await, before, "{path} changed nothing");
    }
}

#[tokio::test]
async fn nobody_touches_anothers_storage_on_sqlite() {
    let t = start(Db::Sqlite, Blobs::LocalDisk).await;
    nobody_touches_anothers_storage(&t).await;
    t.backend.stop().await;
}

#[tokio::test]
async fn nobody_touches_anothers_storage_on_postgres_and_azurite() {
    let t = start(Db::Postgres, Blobs::Azurite).await;
    nobody_touches_anothers_storage(&t).await;
    t.backend.stop().await;
}

/// Folder names never reach blob storage (keys hold ids), so a name that would grow past a
/// file system's limit once encoded on disk is stored like any other.
#[tokio::test]
async fn long_folder_names_fit_any_store() {
    let t = start(Db::Sqlite, Blobs::LocalDisk).await;
    let user = t.user(TECH).await;
    for name in ["é".repeat(127), "~".repeat(100), "%".repeat(200)] {
        let (status, created) = post_json(
            &t.http,
            t.url("/create-dir"),
            json!({"container_name": user, "folder_name": name}),
        )
        .await;
        assert_eq!(status, 200, "{created}");
        let (status, answer) = post_json(
            &t.http,
            t.url("/inf"),
            frontend_inf(
                &user,
                &name,
                data_url("image/png", &photo_bytes()),
                [638, 559],
            ),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        let key = answer["filename"].as_str().unwrap();
        assert!(
            key.starts_with(&format!(
                "{user}/{}/",
                created["picture_set_id"].as_str().unwrap()
            )),
            "{key}"
        );
    }
    t.backend.stop().await;
}
