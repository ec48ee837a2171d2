//! `/inf` end to end: the app on port 0, the reference model servers over real HTTP, and
//! real databases and blob storage.

mod common;

use std::collections::BTreeMap;

use common::*;
use datastore::InferenceStore;
use image::ImageFormat;
use serde_json::Value;
use uuid::Uuid;

/// Checks every field of contract 1.3 and that each id and blob it names exists.
async fn check_response(t: &TestBackend, answer: &Value, dims: [u32; 2], expected_boxes: usize) {
    for key in [
        "filename",
        "boxes",
        "labelOccurrence",
        "totalBoxes",
        "models",
        "inference_id",
        "pipeline_id",
    ] {
        assert!(answer.get(key).is_some(), "missing {key} in {answer}");
    }
    let boxes = answer["boxes"].as_array().unwrap();
    assert_eq!(boxes.len(), expected_boxes, "{answer}");
    assert_eq!(answer["totalBoxes"], boxes.len());
    let occurrences: BTreeMap<String, u64> =
        serde_json::from_value(answer["labelOccurrence"].clone()).unwrap();
    assert_eq!(occurrences.values().sum::<u64>() as usize, boxes.len());
    assert_eq!(
        answer["models"],
        serde_json::json!([{"name": "seed-detector", "version": "1"}, {"name": "seed-classifier", "version": "1"}])
    );

    let inference_id = Uuid::parse_str(answer["inference_id"].as_str().unwrap()).unwrap();
    let stored = t
        .store
        .find_inference(inference_id)
        .await
        .unwrap()
        .expect("the inference row exists");
    assert_eq!(
        stored.pipeline_id.to_string(),
        answer["pipeline_id"].as_str().unwrap()
    );
    assert_eq!(stored.boxes.len(), boxes.len());

    for (i, b) in boxes.iter().enumerate() {
        for key in [
            "box",
            "label",
            "score",
            "topN",
            "overlapping",
            "overlappingIndices",
            "color",
            "box_id",
            "top_id",
        ] {
            assert!(b.get(key).is_some(), "box {i}: missing {key} in {b}");
        }
        let corners = &b["box"];
        let (x0, y0, x1, y1) = (
            corners["topX"].as_i64().unwrap(),
            corners["topY"].as_i64().unwrap(),
            corners["bottomX"].as_i64().unwrap(),
            corners["bottomY"].as_i64().unwrap(),
        );
        assert!(
            5 <= x0 && x0 < x1 && x1 <= i64::from(dims[0]) - 5,
            "{corners}"
        );
        assert!(
            5 <= y0 && y0 < y1 && y1 <= i64::from(dims[1]) - 5,
            "{corners}"
        );
        let top_n = b["topN"].as_array().unwrap();
        assert!((1..=5).contains(&top_n.len()));
        assert_eq!(b["top_id"], top_n[0]["object_id"]);
        assert_eq!(b["label"], top_n[0]["label"]);
        let label = b["label"].as_str().unwrap();
        assert!(
            !label.starts_with(char::is_numeric),
            "the class number is removed: {label}"
        );
        assert!(b["color"].as_str().unwrap().starts_with('#'));
        let row = &stored.boxes[i];
        assert_eq!(row.id.to_string(), b["box_id"].as_str().unwrap());
        assert_eq!(
            (row.top_x, row.top_y, row.bottom_x, row.bottom_y),
            (x0, y0, x1, y1)
        );
        let candidate_ids: Vec<String> = row.candidates.iter().map(|c| c.id.to_string()).collect();
        let answer_ids: Vec<String> = top_n
            .iter()
            .map(|c| c["object_id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(candidate_ids, answer_ids);
        assert!(
            row.candidates[0].seed_id.is_some(),
            "the classifier names known species"
        );
    }

    // The picture and the result document are in blob storage, beside each other.
    let picture_key = datastore::BlobKey::parse(answer["filename"].as_str().unwrap()).unwrap();
    assert_eq!(stored.picture.blob_key, picture_key.to_string());
    let picture = t.blobs.get(&picture_key).await.unwrap();
    assert!(!picture.is_empty());
    let result_key = datastore::BlobKey::parse(&stored.result_blob_key).unwrap();
    let result: Value = serde_json::from_slice(&t.blobs.get(&result_key).await.unwrap()).unwrap();
    assert_eq!(&result, answer, "the stored result is the answer");
}

async fn photo_through_inf(t: &TestBackend) -> Value {
    let user = t.user("tech@example.org").await;
    let body = inf_body(
        DEFAULT_PIPELINE,
        &user,
        data_url("image/png", &photo_bytes()),
        [638, 559],
    );
    let response = t.http.post(t.url("/inf")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn the_seed_photo_on_sqlite_and_local_disk() {
    let t = start(Db::Sqlite, Blobs::LocalDisk).await;
    let answer = photo_through_inf(&t).await;
    check_response(&t, &answer, [638, 559], 1).await;
    assert_eq!(t.count("inferences").await, 1);
    assert_eq!(t.blob_keys().await.len(), 2);
    t.backend.stop().await;
}

#[tokio::test]
async fn the_seed_photo_on_postgres_and_azurite() {
    let t = start(Db::Postgres, Blobs::Azurite).await;
    let answer = photo_through_inf(&t).await;
    check_response(&t, &answer, [638, 559], 1).await;
    t.backend.stop().await;
}

#[tokio::test]
async fn a_picture_of_six_seeds_gives_six_boxes_on_postgres_and_azurite() {
    let t = start(Db::Postgres, Blobs::Azurite).await;
    let user = t.user("tech@example.org").await;
    let picture = tiled_photo(3, 2);
    let dims = [picture.width(), picture.height()];
    let body = inf_body(
        DEFAULT_PIPELINE,
        &user,
        data_url("image/png", &encode(&picture, ImageFormat::Png)),
        dims,
    );
    let response = t.http.post(t.url("/inf")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    check_response(&t, &answer, dims, 6).await;
    // Six copies of one seed: one label, one colour, no overlap.
    let boxes = answer["boxes"].as_array().unwrap();
    assert!(
        boxes
            .iter()
            .all(|b| b["label"] == boxes[0]["label"] && b["color"] == boxes[0]["color"])
    );
    assert!(boxes.iter().all(|b| b["overlapping"] == false));
    t.backend.stop().await;
}

#[tokio::test]
async fn a_jpeg_in_rgb_colours_through_the_one_shot_pipeline() {
    let t = start(Db::Sqlite, Blobs::LocalDisk).await;
    let user = t.user("tech@example.org").await;
    let picture = tiled_photo(2, 1);
    let mut body = inf_body(
        "Reference 6 seeds detector",
        &user,
        data_url("image/jpeg", &encode(&picture, ImageFormat::Jpeg)),
        [picture.width(), picture.height()],
    );
    body["color_format"] = "rgb".into();
    let response = t.http.post(t.url("/inf")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["totalBoxes"], 2);
    assert_eq!(
        answer["boxes"][0]["color"],
        serde_json::json!([0xED, 0x1C, 0x24])
    );
    assert!(answer["filename"].as_str().unwrap().ends_with(".jpg"));
    t.backend.stop().await;
}

#[tokio::test]
async fn the_other_endpoints_of_the_frontend() {
    let t = start(Db::Sqlite, Blobs::LocalDisk).await;
    let health = t.http.get(t.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    let seeds: Value = t
        .http
        .get(t.url("/seeds"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = seeds["seeds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["seed_name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 15);
    assert!(names.contains(&"Ambrosia trifida"));
    assert!(seeds["seeds"][0]["seed_id"].is_string());

    let first = t.user("Tech@Example.org ").await;
    assert_eq!(
        first,
        t.user("tech@example.org").await,
        "emails are trimmed and case-blind"
    );
    let bad = t
        .http
        .post(t.url("/get-user-id"))
        .json(&serde_json::json!({"email": "nobody"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 403, "only the caller's own email");

    let metadata = t
        .http
        .get(t.url("/model-endpoints-metadata"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let pipelines: Value = serde_json::from_str(&metadata).unwrap();
    let default: Vec<&Value> = pipelines
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["default"] == true)
        .collect();
    assert_eq!(default.len(), 1);
    assert_eq!(default[0]["pipeline_name"], DEFAULT_PIPELINE);
    assert_eq!(default[0]["model_name"], DEFAULT_PIPELINE);
    assert_eq!(
        default[0]["models"],
        serde_json::json!(["seed-detector", "seed-classifier"])
    );
    for key in [
        "pipeline_id",
        "version",
        "description",
        "created_by",
        "creation_date",
        "job_name",
        "dataset_description",
        "accuracy",
    ] {
        assert!(default[0].get(key).is_some(), "missing {key}");
    }
    let models_url = &t.stand_ins.models.url;
    assert!(
        !metadata.contains(models_url.as_str()),
        "no endpoint URL is shown"
    );
    assert!(
        !metadata.contains("reference-models-dev-key"),
        "no API key is shown"
    );

    let openapi: Value = t
        .http
        .get(t.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/inf",
        "/health",
        "/seeds",
        "/get-user-id",
        "/model-endpoints-metadata",
        "/image-validation",
        "/get-directories",
        "/create-dir",
        "/del",
        "/get-picture",
        "/delete-request",
        "/delete-permanently",
        "/delete-with-archive",
        "/api/studies/series/predict",
        "/api/studies/series/{series_id}/status",
        "/api/studies/series/{series_id}",
        "/api/admin/organizations",
        "/api/admin/pipelines/reload",
    ] {
        assert!(openapi["paths"].get(path).is_some(), "{path} is documented");
    }
    let swagger = t.http.get(t.url("/swagger-ui/")).send().await.unwrap();
    assert_eq!(swagger.status(), 200);
    t.backend.stop().await;
}

/// A phone photo: stored sideways with an EXIF orientation. `imageDims` are what a browser
/// shows and measures; the boxes come back in that frame.
#[tokio::test]
async fn a_photo_turned_by_its_exif_orientation_is_seen_as_shown() {
    let t = start(Db::Sqlite, Blobs::LocalDisk).await;
    let user = t.user("tech@example.org").await;
    // Two seeds side by side in the stored frame; shown turned 90°, one above the other.
    let stored = tiled_photo(2, 1);
    let (w, h) = (stored.width(), stored.height());
    let jpeg = jpeg_with_orientation(&stored, 6);
    let body = inf_body(
        DEFAULT_PIPELINE,
        &user,
        data_url("image/jpeg", &jpeg),
        [h, w],
    );
    let response = t.http.post(t.url("/inf")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    let boxes = answer["boxes"].as_array().unwrap();
    assert_eq!(boxes.len(), 2, "{answer}");
    for b in boxes {
        assert!(b["box"]["bottomX"].as_i64().unwrap() <= i64::from(h), "{b}");
    }
    let (a, b) = (&boxes[0]["box"], &boxes[1]["box"]);
    let apart =
        a["bottomY"].as_i64() <= b["topY"].as_i64() || b["bottomY"].as_i64() <= a["topY"].as_i64();
    assert!(apart, "one above the other: {a} {b}");
    // Its stored dimensions are not what the browser measured.
    let stored_dims = inf_body(
        DEFAULT_PIPELINE,
        &user,
        data_url("image/jpeg", &jpeg),
        [w, h],
    );
    let response = t
        .http
        .post(t.url("/inf"))
        .json(&stored_dims)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    t.backend.stop().await;
}
