//! The reference models over real HTTP, on a free port of 127.0.0.1.

mod common;

use std::time::{Duration, Instant};

use common::{
    SEED_CORE, SEED_OUTER, base64, jpeg_bytes, png_bytes, seed_photo, seed_photo_bytes, tiled,
};
use image::{Rgba, RgbaImage};
use reference_models::wire::{BoxCoords, DetectorRequest, DetectorResponse, LabelScore};
use reference_models::{
    Behaviour, DEPLOYMENTS, Options, ROUTING_HEADER, ReferenceModels, SEED_CLASSIFIER,
    SEED_DETECTOR, SEED_DETECTOR_6, SPECIES, start,
};
use serde_json::Value;

const KEY: &str = "test-key";

async fn server() -> ReferenceModels {
    start(Options::new(KEY)).await.expect("server starts")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// POST /score routed by header, as the backend calls Azure ML.
async fn call(
    models: &ReferenceModels,
    deployment: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    client()
        .post(models.score_url())
        .header(ROUTING_HEADER, deployment)
        .header("Authorization", format!("Bearer {KEY}"))
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .expect("request sent")
}

async fn detect(models: &ReferenceModels, image_file: &[u8]) -> DetectorResponse {
    let body = serde_json::to_vec(&DetectorRequest::new(base64(image_file))).unwrap();
    let response = call(models, SEED_DETECTOR, "application/json", body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    response.json().await.unwrap()
}

/// A normalized box in pixels (left, top, right, bottom).
fn pixels(b: &BoxCoords, width: u32, height: u32) -> (f64, f64, f64, f64) {
    let (w, h) = (f64::from(width), f64::from(height));
    (b.top_x * w, b.top_y * h, b.bottom_x * w, b.bottom_y * h)
}

fn contains(outer: (f64, f64, f64, f64), inner: (u32, u32, u32, u32)) -> bool {
    outer.0 <= f64::from(inner.0)
        && outer.1 <= f64::from(inner.1)
        && outer.2 >= f64::from(inner.2)
        && outer.3 >= f64::from(inner.3)
}

#[tokio::test]
async fn health_answers_without_a_key() {
    let models = server().await;
    let response = client()
        .get(format!("{}/health", models.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    models.stop().await;
}

#[tokio::test]
async fn the_seed_photo_has_one_box_around_its_seed() {
    let models = server().await;
    let result = detect(&models, &seed_photo_bytes()).await;
    assert_eq!(result.boxes.len(), 1, "{result:?}");
    let b = &result.boxes[0];
    assert_eq!(b.label, "seed");
    assert!(b.score > 0.0 && b.score <= 1.0, "{b:?}");
    let px = pixels(&b.coords, 638, 559);
    assert!(contains(px, SEED_CORE), "box {px:?} misses the seed");
    let (l, t, r, bt) = SEED_OUTER;
    assert!(
        contains((f64::from(l), f64::from(t), f64::from(r), f64::from(bt)), {
            (
                px.0 as u32,
                px.1 as u32,
                px.2.ceil() as u32,
                px.3.ceil() as u32,
            )
        }),
        "box {px:?} is much larger than the seed"
    );

    // The same image as a data URL, and again: the same answer.
    let data_url = format!("data:image/png;base64,{}", base64(&seed_photo_bytes()));
    let body = serde_json::to_vec(&DetectorRequest::new(data_url)).unwrap();
    let again: DetectorResponse = call(&models, SEED_DETECTOR, "application/json", body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again, result);

    // As a JPEG (compression noise, no alpha): still one box around the seed.
    let jpeg = detect(&models, &jpeg_bytes(&seed_photo())).await;
    assert_eq!(jpeg.boxes.len(), 1, "{jpeg:?}");
    assert!(contains(pixels(&jpeg.boxes[0].coords, 638, 559), SEED_CORE));
    models.stop().await;
}

#[tokio::test]
async fn six_tiles_of_the_photo_give_six_boxes_in_place() {
    let models = server().await;
    let single = detect(&models, &seed_photo_bytes()).await.boxes[0].coords;
    let single = pixels(&single, 638, 559);

    let (canvas, corners) = tiled(&seed_photo(), 3, 2, 40);
    let (width, height) = canvas.dimensions();
    let result = detect(&models, &png_bytes(&canvas)).await;
    assert_eq!(result.boxes.len(), 6, "{result:?}");
    // Reading order: the top row left to right, then the bottom row.
    for (b, &(x, y)) in result.boxes.iter().zip(&corners) {
        let got = pixels(&b.coords, width, height);
        let expected = (
            single.0 + f64::from(x),
            single.1 + f64::from(y),
            single.2 + f64::from(x),
            single.3 + f64::from(y),
        );
        let worst = [
            got.0 - expected.0,
            got.1 - expected.1,
            got.2 - expected.2,
            got.3 - expected.3,
        ]
        .into_iter()
        .fold(0.0f64, |m, d| m.max(d.abs()));
        assert!(
            worst <= 8.0,
            "tile at {x},{y}: box {got:?}, expected about {expected:?}"
        );
    }
    models.stop().await;
}

#[tokio::test]
async fn a_white_picture_has_no_box() {
    let models = server().await;
    let white = RgbaImage::from_pixel(640, 480, Rgba([255, 255, 255, 255]));
    let result = detect(&models, &png_bytes(&white)).await;
    assert_eq!(result.boxes, vec![]);
    // A transparent picture is background too.
    let clear = RgbaImage::from_pixel(64, 48, Rgba([0, 0, 0, 0]));
    assert_eq!(detect(&models, &png_bytes(&clear)).await.boxes, vec![]);
    models.stop().await;
}

/// The photo cropped at the detector's box, as a PNG file.
async fn seed_crop(models: &ReferenceModels) -> Vec<u8> {
    let b = detect(models, &seed_photo_bytes()).await.boxes[0].coords;
    let (l, t, r, bt) = pixels(&b, 638, 559);
    let crop = image::imageops::crop_imm(
        &seed_photo(),
        l as u32,
        t as u32,
        (r - l) as u32,
        (bt - t) as u32,
    )
    .to_image();
    png_bytes(&crop)
}

fn check_top5(labels: &[LabelScore]) {
    assert_eq!(labels.len(), 5, "{labels:?}");
    for entry in labels {
        let (index, name) = entry.label.split_once(' ').expect("'<n> <name>'");
        let index: usize = index.parse().expect("leading class index");
        assert_eq!(SPECIES[index].name, name, "{entry:?}");
        assert!(entry.score > 0.0 && entry.score <= 1.0);
    }
    assert!(labels.windows(2).all(|w| w[0].score >= w[1].score));
    assert!(labels.iter().map(|l| l.score).sum::<f64>() <= 1.0 + 1e-9);
}

#[tokio::test]
async fn the_classifier_answers_five_species_best_first() {
    let models = server().await;
    let crop = base64(&seed_crop(&models).await);

    let first: Vec<LabelScore> = call(&models, SEED_CLASSIFIER, "text/plain", crop.clone())
        .await
        .json()
        .await
        .unwrap();
    check_top5(&first);

    // Deterministic, and the same when the base64 text comes as a JSON string.
    let again: Vec<LabelScore> = call(&models, SEED_CLASSIFIER, "application/json", crop.clone())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again, first);
    let quoted = serde_json::to_string(&crop).unwrap();
    let from_json: Vec<LabelScore> = call(&models, SEED_CLASSIFIER, "application/json", quoted)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(from_json, first);
    println!("classifier on the seed photo's crop: {first:?}");
    models.stop().await;
}

#[tokio::test]
async fn the_one_shot_detector_labels_boxes_with_species() {
    let models = server().await;
    let (canvas, _) = tiled(&seed_photo(), 2, 1, 30);
    let body = serde_json::to_vec(&DetectorRequest::new(base64(&png_bytes(&canvas)))).unwrap();
    // Routed by path this time.
    let response = client()
        .post(models.deployment_url(SEED_DETECTOR_6))
        .bearer_auth(KEY)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let result: Vec<DetectorResponse> = response.json().await.unwrap();
    assert_eq!(result.len(), 1, "a list with one object");
    let boxes = &result[0].boxes;
    assert_eq!(boxes.len(), 2, "{boxes:?}");
    for b in boxes {
        assert!(
            SPECIES.iter().any(|s| s.name == b.label),
            "not a species name: {:?}",
            b.label
        );
        assert!(b.score > 0.0 && b.score <= 1.0);
    }
    // Two copies of one seed get one species.
    assert_eq!(boxes[0].label, boxes[1].label);
    println!("one-shot detector on two copies of the photo: {boxes:?}");
    models.stop().await;
}

#[tokio::test]
async fn a_wrong_or_missing_key_is_401() {
    let models = server().await;
    let body = serde_json::to_vec(&DetectorRequest::new(base64(&seed_photo_bytes()))).unwrap();
    for auth in [Some("Bearer wrong"), Some(KEY), None] {
        let mut request = client()
            .post(models.score_url())
            .header(ROUTING_HEADER, SEED_DETECTOR)
            .body(body.clone());
        if let Some(auth) = auth {
            request = request.header("Authorization", auth);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{auth:?}");
        let error: Value = response.json().await.unwrap();
        assert!(error["error"].as_str().unwrap().contains("API key"));
    }
    models.stop().await;
}

#[tokio::test]
async fn an_unknown_deployment_is_404_naming_the_deployments() {
    let models = server().await;
    let by_header = call(&models, "seed-detectr", "application/json", "{}").await;
    let by_path = client()
        .post(models.deployment_url("swin"))
        .bearer_auth(KEY)
        .body("{}")
        .send()
        .await
        .unwrap();
    for response in [by_header, by_path] {
        assert_eq!(response.status(), 404);
        let error: Value = response.json().await.unwrap();
        let message = error["error"].as_str().unwrap();
        for name in DEPLOYMENTS {
            assert!(message.contains(name), "{message}");
        }
        assert_eq!(error["deployments"], serde_json::json!(DEPLOYMENTS));
    }
    // No routing header at all: 400, also naming them.
    let response = client()
        .post(models.score_url())
        .bearer_auth(KEY)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert!(error["error"].as_str().unwrap().contains(ROUTING_HEADER));
    models.stop().await;
}

#[tokio::test]
async fn malformed_bodies_are_400_saying_why() {
    let models = server().await;
    let cases: [(&str, String, &str); 5] = [
        (
            SEED_DETECTOR,
            serde_json::to_string(&DetectorRequest::new("%%% not base64 %%%".into())).unwrap(),
            "base64",
        ),
        (SEED_DETECTOR, "{\"image\": \"abc\"}".into(), "input_data"),
        (SEED_DETECTOR_6, "not json".into(), "input_data"),
        (SEED_CLASSIFIER, "%%% not base64 %%%".into(), "base64"),
        (
            SEED_CLASSIFIER,
            base64(b"plain text, not an image"),
            "decode",
        ),
    ];
    for (deployment, body, expected) in cases {
        let response = call(&models, deployment, "application/json", body.clone()).await;
        assert_eq!(response.status(), 400, "{deployment} {body}");
        let error: Value = response.json().await.unwrap();
        let message = error["error"].as_str().unwrap();
        assert!(message.contains(expected), "{deployment}: {message}");
    }
    models.stop().await;
}

#[tokio::test]
async fn always_fail_answers_500() {
    let models = start(Options::new(KEY).with_behaviour(Behaviour::AlwaysFail))
        .await
        .unwrap();
    let body = serde_json::to_vec(&DetectorRequest::new(base64(&seed_photo_bytes()))).unwrap();
    for deployment in DEPLOYMENTS {
        let response = call(&models, deployment, "application/json", body.clone()).await;
        assert_eq!(response.status(), 500);
        let error: Value = response.json().await.unwrap();
        assert!(error["error"].as_str().unwrap().contains("fail"));
    }
    models.stop().await;
}

#[tokio::test]
async fn delay_answers_after_the_delay_and_health_stays_quick() {
    let delay = Duration::from_millis(400);
    let models = start(Options::new(KEY).with_behaviour(Behaviour::Delay(delay)))
        .await
        .unwrap();
    let body = serde_json::to_vec(&DetectorRequest::new(base64(&seed_photo_bytes()))).unwrap();
    let started = Instant::now();
    let slow = call(&models, SEED_DETECTOR, "application/json", body);
    let health = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let asked = Instant::now();
        let response = client()
            .get(format!("{}/health", models.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        asked.elapsed()
    };
    let (response, health_time) = tokio::join!(slow, health);
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() >= delay, "{:?}", started.elapsed());
    let result: DetectorResponse = response.json().await.unwrap();
    assert_eq!(result.boxes.len(), 1);
    assert!(health_time < Duration::from_millis(300), "{health_time:?}");
    models.stop().await;
}

#[tokio::test]
async fn health_stays_quick_while_models_work() {
    let models = server().await;
    let (canvas, _) = tiled(&seed_photo(), 3, 2, 40);
    let body = serde_json::to_vec(&DetectorRequest::new(base64(&png_bytes(&canvas)))).unwrap();
    let work = futures::future::join_all(
        (0..4).map(|_| call(&models, SEED_DETECTOR_6, "application/json", body.clone())),
    );
    let health = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let asked = Instant::now();
        let response = client()
            .get(format!("{}/health", models.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        asked.elapsed()
    };
    let (responses, health_time) = tokio::join!(work, health);
    for response in responses {
        assert_eq!(response.status(), 200);
    }
    // Generous: the point is that health does not wait for the scoring work.
    assert!(health_time < Duration::from_secs(1), "{health_time:?}");
    models.stop().await;
}
