//! Batch import (contract 1.8): the frontend announces a batch, then fires every upload at
//! once, with no bound. All of a batch within its declared size are stored, verified on
//! arrival; the rest is refused.

mod common;

use common::*;
use futures::future::join_all;
use serde_json::{Value, json};

/// A PNG of about 2 MB.
fn two_megabytes_of_noise() -> Vec<u8> {
    let bytes = noise_png(820);
    assert!(bytes.len() > 2_000_000, "{} bytes", bytes.len());
    bytes
}

async fn a_hundred_uploads_at_once(t: &TestBackend) {
    let user = t.user(TECH).await;
    let (status, opened) = post_json(
        &t.http,
        t.url("/new-batch-import"),
        &json!({"user_id": user, "container_name": user, "folder_name": "Reference set 3", "nb_pictures": 100}),
    )
    .await;
    assert_eq!(status, 200, "{opened}");
    let session = opened["session_id"].as_str().unwrap().to_owned();
    let seeds: Value = t
        .http
        .get(t.url("/seeds"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let seed = &seeds["seeds"][3];
    let image = data_url("image/png", &two_megabytes_of_noise());
    let upload = |zoom: f64| {
        json!({"container_name": user, "user_id": user, "seed_id": seed["seed_id"],
               "seed_name": seed["seed_name"], "zoom_level": zoom, "nb_seeds": "12",
               "session_id": session, "image": image})
    };

    // Bodies made before the clock starts, so that the uploads are all in flight together.
    let bodies: Vec<Vec<u8>> = (0..100)
        .map(|i| serde_json::to_vec(&upload(1.0 + f64::from(i) / 100.0)).unwrap())
        .collect();
    let started = std::time::Instant::now();
    let answers = join_all(bodies.into_iter().map(|body| {
        let request = t
            .http
            .post(t.url("/upload-picture"))
            .header("Content-Type", "application/json")
            .body(body);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    }))
    .await;
    let elapsed = started.elapsed();
    for (status, answer) in &answers {
        assert_eq!((*status, answer), (200, &json!(true)));
    }
    println!("100 uploads of 2 MB at once: {elapsed:?}");

    let (_, folders) = post_json(
        &t.http,
        t.url("/get-directories"),
        &json!({"container_name": user}),
    )
    .await;
    let folder = folders["folders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["folder_name"] == "Reference set 3")
        .unwrap();
    assert_eq!(folder["nb_pictures"], 100);
    assert!(
        folder["pictures"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| { p["is_validation"] == true && p["inference_exists"] == false })
    );
    assert_eq!(t.blob_keys().await.len(), 100);
    assert_eq!(
        t.count(
            "pictures WHERE nb_seeds = 12 AND zoom_level >= 1 AND labelled_seed_id IS NOT NULL"
        )
        .await,
        100,
        "each picture with its species, zoom level and seed count"
    );

    // The 101st is refused, and nothing of it is kept.
    let (status, refused) = post_json(&t.http, t.url("/upload-picture"), &upload(2.0)).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(t.count("pictures").await, 100);
    assert_eq!(t.blob_keys().await.len(), 100);

    // A batch never opened; another user's batch; a species no one knows; no batch at all.
    let mut unknown = upload(1.0);
    unknown["session_id"] = uuid::Uuid::new_v4().to_string().into();
    assert_eq!(
        post_json(&t.http, t.url("/upload-picture"), &unknown)
            .await
            .0,
        404
    );
    let mallory = t.user("mallory@example.org").await;
    let mut theirs = upload(1.0);
    theirs["user_id"] = mallory.clone().into();
    theirs["container_name"] = mallory.into();
    assert_eq!(
        post_json(
            &t.client_as("mallory@example.org"),
            t.url("/upload-picture"),
            &theirs
        )
        .await
        .0,
        403
    );
    let (_, another) = post_json(
        &t.http,
        t.url("/new-batch-import"),
        &json!({"user_id": user, "container_name": user, "folder_name": "Reference set 4", "nb_pictures": 1}),
    )
    .await;
    let mut no_species = upload(1.0);
    no_species["session_id"] = another["session_id"].clone();
    no_species["seed_id"] = "".into();
    no_species["seed_name"] = "Nonexistent weed".into();
    assert_eq!(
        post_json(&t.http, t.url("/upload-picture"), &no_species)
            .await
            .0,
        400
    );
    let (status, refused) = post_json(
        &t.http,
        t.url("/new-batch-import"),
        &json!({"user_id": user, "container_name": user, "folder_name": "x", "nb_pictures": 0}),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(t.count("pictures").await, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_uploads_at_once_on_sqlite_and_local_disk() {
    let t = start(Db::Sqlite, Blobs::LocalDisk).await;
    a_hundred_uploads_at_once(&t).await;
    t.backend.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_uploads_at_once_on_postgres_and_azurite() {
    let t = start(Db::Postgres, Blobs::Azurite).await;
    a_hundred_uploads_at_once(&t).await;
    t.backend.stop().await;
}
