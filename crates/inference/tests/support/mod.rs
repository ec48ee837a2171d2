//! Shared by the contract tests: a mocked `ModelClient`, a catalogue of pipelines, and
//! small PNG pictures whose pixels tell where they were cut from.
//!
//! Each test file uses only part of this module.
#![allow(dead_code)]

use std::io::Cursor;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use image::{DynamicImage, ImageFormat, Rgb, RgbImage};
use inference::{DetectedBox, ModelCallError, ModelClient, NormalizedBox, RankedLabel};
use mockall::mock;
use pipeline::{CatalogueDocument, ModelDefinition, PipelineRegistry, PipelineSet, RecordedIds};
use serde_json::{Value, json};
use uuid::Uuid;

mock! {
    pub Models {}
    #[async_trait]
    impl ModelClient for Models {
        async fn detect(
            &self,
            model: &ModelDefinition,
            picture_base64: Bytes,
        ) -> Result<Vec<DetectedBox>, ModelCallError>;
        async fn classify(
            &self,
            model: &ModelDefinition,
            crop_base64: Bytes,
        ) -> Result<Vec<RankedLabel>, ModelCallError>;
    }
}

// --- the catalogue -------------------------------------------------------------------------

/// Seed detector, then classifier.
pub const DETECT_CLASSIFY: &str = "swin transformer and seed detector";
/// Seed detector, classifier, then a re-classifier of the Bromus boxes.
pub const DETECT_CLASSIFY_RECLASSIFY: &str = "swin with bromus ensemble";
/// One model: the one-shot detector.
pub const ONE_SHOT: &str = "6 seeds detector";

pub const DETECTOR: &str = "seed-detector";
pub const CLASSIFIER: &str = "swin";
pub const RECLASSIFIER: &str = "bromus-ensemble";
pub const ONE_SHOT_MODEL: &str = "seed-detector-6";

/// Labels the re-classifier looks at again.
pub const RECLASSIFIED: [&str; 2] = ["Bromus secalinus", "Bromus hordeaceus"];

fn model(name: &str, kind: &str, task: &str, version: &str) -> Value {
    let mut model = json!({
        "model_name": name,
        "kind": kind,
        "task": task,
        "endpoint": format!("https://models.example/{name}/score"),
        "api_key": format!("key-of-{name}"),
        "content_type": "application/json",
        "deployment_platform": "azureml-model-deployment",
        "endpoint_name": format!("{name}-endpoint"),
        "version": version,
        "description": "",
        "created_by": "",
        "creation_date": "",
        "job_name": "",
        "dataset_description": "",
        "accuracy": null
    });
    if kind == "re_classifier" {
        model["reclassify_labels"] = json!(RECLASSIFIED);
    }
    model
}

fn pipeline_entry(name: &str, models: &[&str], default: bool) -> Value {
    json!({
        "pipeline_name": name,
        "models": models,
        "default": default,
        "version": "1",
        "description": "",
        "created_by": "",
        "creation_date": "",
        "job_name": "",
        "dataset_description": "",
        "accuracy": 0.9
    })
}

/// The database id recorded for a pipeline or model (stable per name).
pub fn recorded_id(name: &str) -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes())
}

/// Every pipeline of the test catalogue, with ids.
pub fn pipeline_set() -> PipelineSet {
    let document = json!({
        "version": "0.1.4",
        "date": "2024-03-12",
        "pipelines": [
            pipeline_entry(DETECT_CLASSIFY, &[DETECTOR, CLASSIFIER], true),
            pipeline_entry(DETECT_CLASSIFY_RECLASSIFY, &[DETECTOR, CLASSIFIER, RECLASSIFIER], false),
            pipeline_entry(ONE_SHOT, &[ONE_SHOT_MODEL], false),
        ],
        "models": [
            model(DETECTOR, "seed_detector", "object-detection", "3"),
            model(CLASSIFIER, "classifier", "classification", "7"),
            model(RECLASSIFIER, "re_classifier", "classification", "2"),
            model(ONE_SHOT_MODEL, "one_shot_detector", "object-detection", "1"),
        ]
    });
    let catalogue = CatalogueDocument::from_json(&document.to_string())
        .expect("the test catalogue parses")
        .into_catalogue(&|plain| Ok(plain.to_owned()))
        .expect("the test catalogue is valid");
    let ids = RecordedIds {
        pipelines: catalogue
            .pipelines()
            .iter()
            .map(|p| (p.name.clone(), recorded_id(&p.name)))
            .collect(),
        models: catalogue
            .models()
            .iter()
            .map(|m| (m.name.clone(), recorded_id(&m.name)))
            .collect(),
    };
    PipelineSet::new(&catalogue, &ids)
}

pub fn registry() -> Arc<PipelineRegistry> {
    Arc::new(PipelineRegistry::new(pipeline_set()))
}

// --- pictures ------------------------------------------------------------------------------

/// Picture size of [`png_bytes`]: every box corner of [`grid_box`] falls on a whole pixel.
pub const WIDTH: u32 = 128;
pub const HEIGHT: u32 = 64;
/// The blue channel of every pixel of the test picture.
pub const BLUE: u8 = 7;

/// A PNG whose pixel (x, y) is `[x, y, BLUE]`: a crop's first pixel tells where it was cut.
pub fn png_bytes(width: u32, height: u32) -> Vec<u8> {
    let image = RgbImage::from_fn(width, height, |x, y| Rgb([x as u8, y as u8, BLUE]));
    let mut out = Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(image)
        .write_to(&mut out, ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

pub fn data_url(mime_subtype: &str, bytes: &[u8]) -> String {
    format!("data:image/{mime_subtype};base64,{}", BASE64.encode(bytes))
}

pub fn png_data_url(width: u32, height: u32) -> String {
    data_url("png", &png_bytes(width, height))
}

/// Box `k` of a grid on a [`WIDTH`]×[`HEIGHT`] picture, in exact binary fractions:
/// x from k/16 to (k+2)/16 (pixels 8k..8k+16), y from 2/16 to (4+k)/16 (pixels 8..16+4k).
/// Every box has its own crop origin and its own crop height. `k` ≤ 12.
pub fn grid_box(k: usize) -> NormalizedBox {
    let k = k as f64;
    NormalizedBox {
        top_x: k / 16.0,
        top_y: 2.0 / 16.0,
        bottom_x: (k + 2.0) / 16.0,
        bottom_y: (4.0 + k) / 16.0,
    }
}

/// The crop size (width, height) in pixels that box `k` of [`grid_box`] must give.
pub fn grid_crop_size(k: usize) -> (u32, u32) {
    (16, 8 + 4 * k as u32)
}

pub fn detected(k: usize, label: &str, score: f64) -> DetectedBox {
    DetectedBox {
        bbox: grid_box(k),
        label: label.to_owned(),
        score,
    }
}

/// What a crop sent to a per-crop model turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crop {
    /// The picture pixel the crop starts at (read from its first pixel).
    pub origin: (u32, u32),
    pub size: (u32, u32),
}

impl Crop {
    /// Decodes a crop as a PNG; panics if it is not one.
    pub fn decode(crop_base64: &[u8]) -> Crop {
        let bytes = BASE64
            .decode(crop_base64)
            .expect("a crop is sent as base64");
        let image = image::load_from_memory_with_format(&bytes, ImageFormat::Png)
            .expect("a crop of a PNG is a PNG")
            .to_rgb8();
        let first = image.get_pixel(0, 0);
        assert_eq!(first[2], BLUE, "the crop is cut from the test picture");
        Crop {
            origin: (u32::from(first[0]), u32::from(first[1])),
            size: image.dimensions(),
        }
    }

    /// Which [`grid_box`] this crop was cut at.
    pub fn grid_index(&self) -> usize {
        (self.origin.0 / 8) as usize
    }
}

pub fn ranking(entries: &[(&str, f64)]) -> Vec<RankedLabel> {
    entries
        .iter()
        .map(|(label, score)| RankedLabel {
            label: (*label).to_owned(),
            score: *score,
        })
        .collect()
}

// --- timing --------------------------------------------------------------------------------

/// Wraps the mocked models with delays, and counts the calls in flight.
///
/// A mockall expectation answers synchronously, so a delay inside it would block the whole
/// task and hide any concurrency; the delays are awaited here, around the mocked call.
pub struct Timed {
    pub inner: MockModels,
    pub detect_delay: Duration,
    /// The delay of a per-crop call, by the crop's grid index.
    pub classify_delay: Box<dyn Fn(usize) -> Duration + Send + Sync>,
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    /// Grid indices of the crops in the order their answers arrived.
    pub answered: Mutex<Vec<usize>>,
    /// Signalled when a detection starts.
    pub detect_started: tokio::sync::Notify,
}

impl Timed {
    pub fn new(inner: MockModels) -> Self {
        Self {
            inner,
            detect_delay: Duration::ZERO,
            classify_delay: Box::new(|_| Duration::ZERO),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            answered: Mutex::new(Vec::new()),
            detect_started: tokio::sync::Notify::new(),
        }
    }

    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    pub fn answered(&self) -> Vec<usize> {
        self.answered.lock().unwrap().clone()
    }
}

#[async_trait]
impl ModelClient for Timed {
    async fn detect(
        &self,
        model: &ModelDefinition,
        picture_base64: Bytes,
    ) -> Result<Vec<DetectedBox>, ModelCallError> {
        self.detect_started.notify_one();
        tokio::time::sleep(self.detect_delay).await;
        self.inner.detect(model, picture_base64).await
    }

    async fn classify(
        &self,
        model: &ModelDefinition,
        crop_base64: Bytes,
    ) -> Result<Vec<RankedLabel>, ModelCallError> {
        let index = Crop::decode(&crop_base64).grid_index();
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep((self.classify_delay)(index)).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let answer = self.inner.classify(model, crop_base64).await;
        self.answered.lock().unwrap().push(index);
        answer
    }
}
