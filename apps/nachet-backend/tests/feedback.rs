//! Feedback (contract 1.9) with the frontend's exact bodies, on SQLite and Postgres: every
//! case, the answers' boxes, the verified state of the inference and the picture, refusals,
//! and all-or-nothing.

mod common;

use common::*;
use image::ImageFormat;
use serde_json::{Value, json};

/// A user and an inference of six boxes in the folder "Lot 9": (user, inference, folder).
async fn six_seeds(t: &TestBackend) -> (String, Value, String) {
    let user = t.user(TECH).await;
    let picture = tiled_photo(3, 2);
    let dims = [picture.width(), picture.height()];
    let (status, answer) = post_json(
        &t.http,
        t.url("/inf"),
        json!({
            "model_name": DEFAULT_PIPELINE,
            "image": data_url("image/png", &encode(&picture, ImageFormat::Png)),
            "imageDims": dims,
            "folder_name": "Lot 9",
            "user_id": user,
            "container_name": user,
        }),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["boxes"].as_array().unwrap().len(), 6);
    let folders = directories(t, &user).await;
    let folder = folders
        .iter()
        .find(|f| f["folder_name"] == "Lot 9")
        .unwrap();
    (
        user,
        answer,
        folder["picture_set_id"].as_str().unwrap().to_owned(),
    )
}

async fn directories(t: &TestBackend, user: &str) -> Vec<Value> {
    let (status, answer) = post_json(
        &t.http,
        t.url("/get-directories"),
        json!({"container_name": user}),
    )
    .await;
    assert_eq!(status, 200);
    answer["folders"].as_array().unwrap().clone()
}

async fn picture_validated(t: &TestBackend, user: &str) -> bool {
    let folders = directories(t, user).await;
    let folder = folders
        .iter()
        .find(|f| f["folder_name"] == "Lot 9")
        .unwrap();
    folder["pictures"][0]["is_validation"].as_bool().unwrap()
}

async fn seeds(t: &TestBackend) -> Vec<(String, String)> {
    let answer: Value = t
        .http
        .get(t.url("/seeds"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["seeds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["seed_name"].as_str().unwrap().to_owned(),
                s["seed_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn seed_id(seeds: &[(String, String)], name: &str) -> String {
    seeds
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no species {name}"))
        .1
        .clone()
}

fn negative(user: &str, inference: &Value, one: Value) -> Value {
    json!({"userId": user, "inferenceId": inference["inference_id"], "boxes": [one]})
}

fn box_id(inference: &Value, i: usize) -> String {
    inference["boxes"][i]["box_id"].as_str().unwrap().to_owned()
}

/// Every field the frontend reads of a verified box.
fn assert_verified_as(b: &Value, label: &str, object_type_id: &str) {
    assert_eq!(b["is_verified"], true, "{b}");
    assert_eq!(b["is_deleted"], false, "{b}");
    assert_eq!(b["label"], label, "{b}");
    assert_eq!(b["score"], 1.0, "{b}");
    assert_eq!(b["object_type_id"], object_type_id, "{b}");
    let top = b["topN"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["object_id"] == b["top_id"])
        .expect("top_id is one of topN");
    assert_eq!(top["label"], label, "{b}");
}

async fn every_case_of_feedback(t: &TestBackend) {
    let (user, inference, folder) = six_seeds(t).await;
    let known = seeds(t).await;
    let url = |path: &str| t.url(path);

    // Positive: the top candidate.
    let positive = json!({"userId": user, "inferenceId": inference["inference_id"], "boxes": [{"boxId": box_id(&inference, 0)}]});
    let (status, answer) = post_json(&t.http, url("/feedback-positive"), positive.clone()).await;
    assert_eq!(status, 200, "{answer}");
    let top = &inference["boxes"][0]["topN"][0];
    let b = &answer["boxes"][0];
    assert_verified_as(
        b,
        top["label"].as_str().unwrap(),
        &seed_id(&known, top["label"].as_str().unwrap()),
    );
    assert_eq!(b["top_id"], top["object_id"]);
    assert!(
        answer["boxes"].as_array().unwrap()[1..]
            .iter()
            .all(|b| b["is_verified"] == false)
    );
    assert!(!picture_validated(t, &user).await);
    // Again: refused, nothing changed.
    let (status, refused) = post_json(&t.http, url("/feedback-positive"), positive).await;
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("already verified")
    );

    // Correction by classId to the box's second candidate: that candidate becomes the top.
    let second = &inference["boxes"][1]["topN"][1];
    let second_label = second["label"].as_str().unwrap();
    let (status, answer) = post_json(
        &t.http,
        url("/feedback-negative"),
        negative(
            &user,
            &inference,
            json!({"classId": seed_id(&known, second_label), "label": second_label, "boxId": box_id(&inference, 1),
                   "box": inference["boxes"][1]["box"], "comment": "Wrong Seed"}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_verified_as(
        &answer["boxes"][1],
        second_label,
        &seed_id(&known, second_label),
    );
    assert_eq!(answer["boxes"][1]["top_id"], second["object_id"]);
    assert_eq!(
        answer["boxes"][1]["box"], inference["boxes"][1]["box"],
        "not moved"
    );

    // Correction to a species not among the top-N: added as a candidate with score 0.
    let top_n: Vec<&str> = inference["boxes"][2]["topN"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["label"].as_str().unwrap())
        .collect();
    let (other, other_id) = known
        .iter()
        .find(|(name, _)| !top_n.contains(&name.as_str()))
        .unwrap()
        .clone();
    let (status, answer) = post_json(
        &t.http,
        url("/feedback-negative"),
        negative(
            &user,
            &inference,
            json!({"classId": other_id, "label": other, "boxId": box_id(&inference, 2),
                   "box": inference["boxes"][2]["box"], "comment": "Wrong Seed"}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let b = &answer["boxes"][2];
    assert_verified_as(b, &other, &other_id);
    assert_eq!(b["topN"].as_array().unwrap().len(), top_n.len() + 1);
    let added = b["topN"].as_array().unwrap().last().unwrap();
    assert_eq!(
        (added["label"].as_str().unwrap(), added["score"].as_f64()),
        (other.as_str(), Some(0.0))
    );

    // A species typed by hand (the frontend quotes it), moved with decimals past the edge.
    let dims = [1914.0, 1118.0];
    let (status, answer) = post_json(
        &t.http,
        url("/feedback-negative"),
        negative(
            &user,
            &inference,
            json!({"classId": "", "label": "\"Avena fatua\"", "boxId": box_id(&inference, 3),
                   "box": {"topX": 10.4, "topY": -3.2, "bottomX": 250.6, "bottomY": 99999.0},
                   "comment": "Wrong Seed not in List"}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let after = seeds(t).await;
    assert_eq!(after.len(), known.len() + 1, "one new species");
    let avena = seed_id(&after, "Avena fatua");
    assert_verified_as(&answer["boxes"][3], "Avena fatua", &avena);
    assert_eq!(
        answer["boxes"][3]["box"],
        json!({"topX": 10, "topY": 0, "bottomX": 251, "bottomY": dims[1] as i64})
    );
    // The same name in another case is the same species; so is a known one.
    let (status, answer) = post_json(
        &t.http,
        url("/feedback-negative"),
        negative(
            &user,
            &inference,
            json!({"classId": "", "label": "\"AVENA FATUA\"", "boxId": box_id(&inference, 4),
                   "box": inference["boxes"][4]["box"], "comment": "Wrong Seed not in List"}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_verified_as(&answer["boxes"][4], "Avena fatua", &avena);
    assert_eq!(seeds(t).await.len(), known.len() + 1);
    assert!(!picture_validated(t, &user).await, "one box left");

    // "No Seed": deleted, still listed, verified; not counted.
    let (status, answer) = post_json(
        &t.http,
        url("/feedback-negative"),
        negative(
            &user,
            &inference,
            json!({"classId": "", "label": "", "boxId": box_id(&inference, 5),
                   "box": inference["boxes"][5]["box"], "comment": "No Seed"}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let b = &answer["boxes"][5];
    assert_eq!(
        (b["is_verified"].clone(), b["is_deleted"].clone()),
        (json!(true), json!(true))
    );
    assert_eq!(b["object_type_id"], Value::Null);
    let counted: u64 = answer["labelOccurrence"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(counted, 5);
    assert_eq!(answer["totalBoxes"], 6, "every listed box");
    // Every box verified, a deleted one included: the picture is training data now.
    assert!(picture_validated(t, &user).await);
    let (status, holds) = post_json(
        &t.http,
        url("/delete-request"),
        json!({"container_name": user, "folder_uuid": folder}),
    )
    .await;
    assert_eq!((status, holds), (200, json!(true)));

    // A seed the detector missed; the same call again adds nothing.
    let lolium = seed_id(&known, "Lolium temulentum");
    let missed = negative(
        &user,
        &inference,
        json!({"classId": lolium, "label": "Lolium temulentum", "boxId": "",
               "box": {"topX": 700.2, "topY": 20.7, "bottomX": 800.0, "bottomY": 120.0},
               "comment": "Seed not Detected"}),
    );
    let (status, answer) = post_json(&t.http, url("/feedback-negative"), missed.clone()).await;
    assert_eq!(status, 200, "{answer}");
    let boxes = answer["boxes"].as_array().unwrap();
    assert_eq!(boxes.len(), 7);
    assert_verified_as(&boxes[6], "Lolium temulentum", &lolium);
    assert_eq!(
        boxes[6]["box"],
        json!({"topX": 700, "topY": 21, "bottomX": 800, "bottomY": 120})
    );
    let (status, refused) = post_json(&t.http, url("/feedback-negative"), missed).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(t.count("inference_boxes").await, 7);
    assert!(picture_validated(t, &user).await);

    // The stored picture shows the same.
    let picture = directories(t, &user).await;
    let picture_id = picture
        .iter()
        .find(|f| f["folder_name"] == "Lot 9")
        .unwrap()["pictures"][0]["picture_id"]
        .clone();
    let (status, stored) = post_json(
        &t.http,
        url("/get-picture"),
        json!({"container_name": user, "picture_id": picture_id}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(stored["inference"]["boxes"], answer["boxes"]);
}

#[tokio::test]
async fn every_case_of_feedback_on_sqlite() {
    let t = start(Db::Sqlite, Blobs::LocalDisk).await;
    every_case_of_feedback(&t).await;
    t.backend.stop().await;
}

#[tokio::test]
async fn every_case_of_feedback_on_postgres_and_azurite() {
    let t = start(Db::Postgres, Blobs::Azurite).await;
    every_case_of_feedback(&t).await;
    t.backend.stop().await;
}

/// Boxes, candidates, species and verifications: what a refused call must leave as it was.
async fn footprint(t: &TestBackend) -> (i64, i64, i64, i64) {
    let verified = {
        let db = t.store.connection();
        use sea_orm::{ConnectionTrait, Statement};
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT COUNT(*) AS n FROM inference_boxes WHERE verified_at IS NOT NULL",
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get::<i64>("", "n").unwrap()
    };
    (
        t.count("inference_boxes").await,
        t.count("box_candidates").await,
        t.count("seeds").await,
        verified,
    )
}

async fn refusals_change_nothing(t: &TestBackend) {
    let (user, inference, _) = six_seeds(t).await;
    let mallory = t.user("mallory@example.org").await;
    let before = footprint(t).await;
    let url = |path: &str| t.url(path);
    let a_box = box_id(&inference, 0);
    let cases = [
        // Another user's inference (Mallory names herself correctly).
        (
            t.client_as("mallory@example.org"),
            "/feedback-positive",
            json!({"userId": mallory, "inferenceId": inference["inference_id"], "boxes": [{"boxId": a_box}]}),
            403,
        ),
        (
            t.client_as("mallory@example.org"),
            "/feedback-negative",
            negative(
                &mallory,
                &inference,
                json!({"classId": "", "label": "", "boxId": a_box, "box": inference["boxes"][0]["box"], "comment": "No Seed"}),
            ),
            403,
        ),
        // Naming another user.
        (
            t.http.clone(),
            "/feedback-positive",
            json!({"userId": mallory, "inferenceId": inference["inference_id"], "boxes": [{"boxId": a_box}]}),
            403,
        ),
        // A box that is not the inference's; an unknown inference; an unknown species.
        (
            t.http.clone(),
            "/feedback-positive",
            json!({"userId": user, "inferenceId": inference["inference_id"], "boxes": [{"boxId": uuid::Uuid::new_v4()}]}),
            400,
        ),
        (
            t.http.clone(),
            "/feedback-positive",
            json!({"userId": user, "inferenceId": uuid::Uuid::new_v4(), "boxes": [{"boxId": a_box}]}),
            404,
        ),
        (
            t.http.clone(),
            "/feedback-negative",
            negative(
                &user,
                &inference,
                json!({"classId": uuid::Uuid::new_v4(), "label": "x", "boxId": a_box, "box": inference["boxes"][0]["box"], "comment": "Wrong Seed"}),
            ),
            400,
        ),
        // A new box with no area inside the picture.
        (
            t.http.clone(),
            "/feedback-negative",
            negative(
                &user,
                &inference,
                json!({"classId": "", "label": "\"Avena fatua\"", "boxId": "", "box": {"topX": -50, "topY": 10, "bottomX": -10, "bottomY": 40}, "comment": "Seed not Detected"}),
            ),
            400,
        ),
        // All or nothing: a valid correction (with a new species) and two identical new
        // boxes in one call; the second box is refused, so nothing of the call stays.
        (
            t.http.clone(),
            "/feedback-negative",
            json!({"userId": user, "inferenceId": inference["inference_id"], "boxes": [
                {"classId": "", "label": "\"Lolium perenne\"", "boxId": a_box, "box": inference["boxes"][0]["box"], "comment": "Wrong Seed not in List"},
                {"classId": "", "label": "\"Avena fatua\"", "boxId": "", "box": {"topX": 10, "topY": 10, "bottomX": 60, "bottomY": 60}, "comment": "Seed not Detected"},
                {"classId": "", "label": "\"Avena fatua\"", "boxId": "", "box": {"topX": 10, "topY": 10, "bottomX": 60, "bottomY": 60}, "comment": "Seed not Detected"},
            ]}),
            409,
        ),
    ];
    for (client, path, body, expected) in cases {
        let (status, answer) = post_json(&client, url(path), body.clone()).await;
        assert_eq!(status, expected, "{path} {body}: {answer}");
        assert!(answer["error"].is_string(), "{answer}");
        assert_eq!(footprint(t).await, before, "{path} {body} changed nothing");
    }
}

#[tokio::test]
async fn refusals_change_nothing_on_sqlite() {
    let t = start(Db::Sqlite, Blobs::LocalDisk).await;
    refusals_change_nothing(&t).await;
    t.backend.stop().await;
}

#[tokio::test]
async fn refusals_change_nothing_on_postgres() {
    let t = start(Db::Postgres, Blobs::Azurite).await;
    refusals_change_nothing(&t).await;
    t.backend.stop().await;
}

/// Deleting a folder with a verified picture keeps that picture for training, in the
/// archive owner's storage; the rest is deleted.
#[tokio::test]
async fn verified_pictures_go_to_the_archive() {
    let t = start(Db::Postgres, Blobs::Azurite).await;
    let (user, inference, folder) = six_seeds(&t).await;
    // A second, unverified picture in the same folder.
    let (status, _) = post_json(
        &t.http,
        t.url("/inf"),
        json!({"model_name": DEFAULT_PIPELINE, "image": data_url("image/png", &photo_bytes()),
               "imageDims": [638, 559], "folder_name": folder, "user_id": user, "container_name": user}),
    )
    .await;
    assert_eq!(status, 200);
    for i in 0..6 {
        let body = json!({"userId": user, "inferenceId": inference["inference_id"], "boxes": [{"boxId": box_id(&inference, i)}]});
        let (status, answer) = post_json(&t.http, t.url("/feedback-positive"), body).await;
        assert_eq!(status, 200, "{answer}");
    }
    let blobs_before = t.blob_keys().await.len();
    let (status, answer) = post_json(
        &t.http,
        t.url("/del"),
        json!({"container_name": user, "folder_name": folder}),
    )
    .await;
    assert_eq!((status, answer), (200, json!(true)));
    assert_eq!(t.count("pictures").await, 1, "the verified one stays");
    assert_eq!(t.count("inferences").await, 1);
    assert_eq!(
        t.blob_keys().await.len(),
        blobs_before - 2,
        "the other's blobs are gone"
    );
    assert!(
        directories(&t, &user)
            .await
            .iter()
            .all(|f| f["folder_name"] != "Lot 9")
    );
    // The archive owner has it, verified.
    let archive = t.user("archive@nachet.local").await;
    let (status, folders) = post_json(
        &t.client_as("archive@nachet.local"),
        t.url("/get-directories"),
        json!({"container_name": archive}),
    )
    .await;
    assert_eq!(status, 200);
    let archived = folders["folders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| {
            f["folder_name"]
                .as_str()
                .unwrap()
                .starts_with("Lot 9 (archived from tech@example.org")
        })
        .expect("an archive folder");
    assert_eq!(archived["nb_pictures"], 1);
    assert_eq!(archived["pictures"][0]["is_validation"], true);
    t.backend.stop().await;
}
