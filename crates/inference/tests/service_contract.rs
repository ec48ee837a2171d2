//! `InferenceService` against mocked models and stores (contracts 1.2, 1.3, 1.6): what a
//! successful `/inf` writes and in which order, what every failure leaves behind, overload,
//! and `/get-user-id`.
//!
//! A mocked port without an expectation panics at its first call: a test that sets none
//! on a port asserts that the port is never called.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::Utc;
use datastore::{
    BlobError, BlobInfo, BlobKey, BlobStore, MockFolderStore, MockInferenceStore, MockSeedStore,
    MockUserStore, NewInference, Seed, StoreError, User,
};
use inference::runner::StepFailure;
use inference::{
    CodecPool, ColorFormat, InferError, InferenceRequest, InferenceService, ModelCallError,
    ModelClient, PictureError, PictureLimits, Ports, ServiceSettings,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::*;
use uuid::Uuid;

const USER: Uuid = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
const CONTAINER: &str = "user-0123";
const FOLDER: &str = "field samples";

const AMBROSIA_TRIFIDA: Uuid = Uuid::from_u128(1);
const BRASSICA_NAPUS: Uuid = Uuid::from_u128(2);
const CIRSIUM_ARVENSE: Uuid = Uuid::from_u128(3);

// --- fixture -------------------------------------------------------------------------------

// `datastore` generates `MockBlobStore` in its private `blob` module without re-exporting
// it, so it is not reachable from here; this is the same mock.
mockall::mock! {
    pub BlobStore {}
    #[async_trait]
    impl BlobStore for BlobStore {
        async fn put(&self, key: &BlobKey, bytes: Bytes) -> Result<(), BlobError>;
        async fn put_new(&self, key: &BlobKey, bytes: Bytes) -> Result<(), BlobError>;
        async fn get(&self, key: &BlobKey) -> Result<Bytes, BlobError>;
        async fn delete(&self, key: &BlobKey) -> Result<(), BlobError>;
        async fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>, BlobError>;
    }
}

/// A write to a store, as the mocks saw it.
#[derive(Clone, Debug, PartialEq)]
enum Write {
    PutNew(String, Bytes),
    Delete(String),
    Save(Box<NewInference>),
}

type Log = Arc<Mutex<Vec<Write>>>;

/// The mocked stores, and the log of every write they received, in order.
struct Stores {
    users: MockUserStore,
    seeds: MockSeedStore,
    inferences: MockInferenceStore,
    folders: MockFolderStore,
    blobs: MockBlobStore,
    log: Log,
}

impl Stores {
    fn new() -> Self {
        Self {
            users: MockUserStore::new(),
            seeds: MockSeedStore::new(),
            inferences: MockInferenceStore::new(),
            folders: no_folder_yet(),
            blobs: MockBlobStore::new(),
            log: Log::default(),
        }
    }

    fn writes(&self) -> Log {
        self.log.clone()
    }

    /// `find_by_id(USER)` finds the user, `times` times.
    fn known_user(&mut self, times: usize) {
        self.users
            .expect_find_by_id()
            .withf(|id| *id == USER)
            .times(times)
            .returning(|id| Ok(Some(user(id, "ann@example.com"))));
    }

    /// `list_seeds` may be read any number of times (a read, never a write).
    fn seeds_listed(&mut self) {
        self.seeds.expect_list_seeds().returning(|| {
            Ok(vec![
                seed(AMBROSIA_TRIFIDA, "Ambrosia trifida"),
                seed(BRASSICA_NAPUS, "Brassica napus"),
                seed(CIRSIUM_ARVENSE, "Cirsium arvense"),
            ])
        });
    }

    /// `put_new` of the blob whose key ends with `suffix`, once, answering `outcome`.
    fn put_new(&mut self, suffix: &'static str, outcome: fn() -> Result<(), BlobError>) {
        let log = self.log.clone();
        self.blobs
            .expect_put_new()
            .withf(move |key, _| key.as_str().ends_with(suffix))
            .times(1)
            .returning(move |key, bytes| {
                log.lock()
                    .unwrap()
                    .push(Write::PutNew(key.to_string(), bytes));
                outcome()
            });
    }

    /// `delete` of the blob whose key ends with `suffix`, once, answering `outcome`.
    fn delete(&mut self, suffix: &'static str, outcome: fn() -> Result<(), BlobError>) {
        let log = self.log.clone();
        self.blobs
            .expect_delete()
            .withf(move |key| key.as_str().ends_with(suffix))
            .times(1)
            .returning(move |key| {
                log.lock().unwrap().push(Write::Delete(key.to_string()));
                outcome()
            });
    }

    /// `save_inference`, `times` times, answering `outcome`.
    fn save(&mut self, times: usize, outcome: fn() -> Result<(), StoreError>) {
        let log = self.log.clone();
        self.inferences
            .expect_save_inference()
            .times(times)
            .returning(move |inference| {
                log.lock()
                    .unwrap()
                    .push(Write::Save(Box::new(inference.clone())));
                outcome()
            });
    }
}

/// The user has no folder yet: `/inf` makes one by name, with the rows.
fn no_folder_yet() -> MockFolderStore {
    let mut folders = MockFolderStore::new();
    folders
        .expect_find_folder_by_name()
        .returning(|_, _| Ok(None));
    folders
}

fn user(id: Uuid, email: &str) -> User {
    User {
        id,
        email: email.to_owned(),
        registered_at: Utc::now(),
    }
}

fn seed(id: Uuid, name: &str) -> Seed {
    Seed {
        id,
        name: name.to_owned(),
    }
}

fn settings() -> ServiceSettings {
    ServiceSettings {
        max_crop_calls: 4,
        register_unknown_users: false,
    }
}

fn service(
    models: Arc<dyn ModelClient>,
    stores: Stores,
    settings: ServiceSettings,
) -> InferenceService {
    InferenceService::new(
        registry(),
        Ports {
            models,
            users: Arc::new(stores.users),
            seeds: Arc::new(stores.seeds),
            inferences: Arc::new(stores.inferences),
            folders: Arc::new(stores.folders),
            blobs: Arc::new(stores.blobs),
        },
        CodecPool::new(
            2,
            PictureLimits {
                max_pixels: 50_000_000,
            },
        ),
        settings,
    )
}

/// A service whose ports all refuse any call.
fn untouchable_service() -> InferenceService {
    service(Arc::new(MockModels::new()), Stores::new(), settings())
}

fn request() -> InferenceRequest {
    InferenceRequest {
        pipeline_name: DETECT_CLASSIFY.into(),
        image: png_data_url(WIDTH, HEIGHT).into(),
        image_dims: [WIDTH, HEIGHT],
        folder_name: FOLDER.into(),
        container_name: CONTAINER.into(),
        user_id: USER,
        validator: None,
        area_ratio: 0.5,
        color_format: ColorFormat::Hex,
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Three boxes on the test picture, far enough apart not to overlap, each found by the
/// first pixel of its crop: x 0..32 × y 0..32, x 64..96 × y 16..48, x 96..128 × y 32..64.
fn three_boxes() -> Vec<inference::DetectedBox> {
    let at = |top_x, top_y, bottom_x, bottom_y| inference::DetectedBox {
        bbox: inference::NormalizedBox {
            top_x,
            top_y,
            bottom_x,
            bottom_y,
        },
        label: "seed".into(),
        score: 0.5,
    };
    vec![
        at(0.0, 0.0, 0.25, 0.5),
        at(0.5, 0.25, 0.75, 0.75),
        at(0.75, 0.5, 1.0, 1.0),
    ]
}

/// The detector finds [`three_boxes`]; the classifier names them by their crop's origin.
fn models_finding_three_seeds() -> MockModels {
    let mut models = MockModels::new();
    models
        .expect_detect()
        .withf(|model, _| model.name == DETECTOR)
        .times(1)
        .returning(|_, _| Ok(three_boxes()));
    models
        .expect_classify()
        .withf(|model, _| model.name == CLASSIFIER)
        .times(3)
        .returning(|_, crop| {
            Ok(match Crop::decode(&crop).origin {
                (0, 0) => ranking(&[
                    ("13 Ambrosia trifida", 0.91),
                    ("99 Unknownus plantus", 0.05),
                ]),
                (64, 16) => ranking(&[("2 Brassica napus", 0.8)]),
                (96, 32) => ranking(&[("13 Ambrosia trifida", 0.7), ("7 Cirsium arvense", 0.2)]),
                other => panic!("a crop at {other:?}, where no box is"),
            })
        });
    models
}

fn model_failing(error: ModelCallError) -> MockModels {
    let mut models = MockModels::new();
    models
        .expect_detect()
        .times(1)
        .returning(move |_, _| Err(error.clone()));
    models
}

fn writes(log: &Log) -> Vec<Write> {
    log.lock().unwrap().clone()
}

fn keys(log: &Log) -> Vec<String> {
    writes(log)
        .into_iter()
        .map(|w| match w {
            Write::PutNew(key, _) => format!("put_new {key}"),
            Write::Delete(key) => format!("delete {key}"),
            Write::Save(inference) => format!("save {}", inference.id),
        })
        .collect()
}

// --- success -------------------------------------------------------------------------------

#[tokio::test]
async fn a_successful_inference_writes_the_picture_then_the_result_then_the_rows() {
    let mut stores = Stores::new();
    stores.known_user(1);
    stores.seeds_listed();
    stores.put_new(".png", || Ok(()));
    stores.put_new(".result.json", || Ok(()));
    stores.save(1, || Ok(()));
    let log = stores.writes();
    let service = service(Arc::new(models_finding_three_seeds()), stores, settings());
    let png = png_bytes(WIDTH, HEIGHT);
    let sha = sha256_hex(&png);
    let request = InferenceRequest {
        // A validator is compared without regard to case.
        validator: Some(sha.to_uppercase()),
        ..request()
    };

    let response = service.infer(request).await.unwrap();

    // The order of the writes, and nothing else written or deleted.
    let writes = writes(&log);
    let [
        Write::PutNew(picture_key, picture_bytes),
        Write::PutNew(result_key, result_bytes),
        Write::Save(record),
    ] = writes.as_slice()
    else {
        panic!(
            "expected put_new picture, put_new result, save; got {:?}",
            keys(&log)
        );
    };

    // The picture blob: the bytes as sent, in the user's folder, named by the picture's id.
    assert_eq!(picture_bytes.as_ref(), png.as_slice());
    let picture_id = record.picture.id;
    assert_eq!(
        picture_key,
        &format!(
            "{CONTAINER}/{}/{picture_id}.png",
            record.picture.picture_set_id
        )
    );
    assert_eq!(&response.filename, picture_key);
    assert_eq!(&record.picture.blob_key, picture_key);
    assert_eq!(record.picture.sha256, sha);
    assert_eq!(record.picture.content_type, "image/png");
    assert_eq!(
        (record.picture.width, record.picture.height),
        (WIDTH, HEIGHT)
    );
    assert_eq!(record.picture.container, CONTAINER);
    assert_eq!(record.picture.picture_set, FOLDER);
    assert_eq!(record.picture.user_id, USER);

    // The result blob: beside the picture, the response document itself.
    assert_eq!(
        result_key,
        &format!(
            "{CONTAINER}/{}/{picture_id}.result.json",
            record.picture.picture_set_id
        )
    );
    assert_eq!(&record.result_blob_key, result_key);
    let response_json = serde_json::to_value(&response).unwrap();
    let result_json: Value = serde_json::from_slice(result_bytes).unwrap();
    assert_eq!(result_json, response_json);
    assert_eq!(record.result, response_json);

    // The rows: ids consistent with the response.
    assert_eq!(record.id, response.inference_id);
    assert_eq!(record.user_id, USER);
    assert_eq!(record.pipeline_id, recorded_id(DETECT_CLASSIFY));
    assert_eq!(response.pipeline_id, recorded_id(DETECT_CLASSIFY));
    assert_eq!(record.boxes.len(), response.boxes.len());
    for (i, (row, answer)) in record.boxes.iter().zip(&response.boxes).enumerate() {
        assert_eq!(row.id, answer.box_id, "box {i}");
        assert_eq!(row.position as usize, i + 1, "box {i}");
        assert_eq!(row.label, answer.label, "box {i}");
        assert_eq!(row.score, answer.score, "box {i}");
        assert_eq!(row.overlapping, answer.overlapping, "box {i}");
        assert_eq!(
            (row.top_x, row.top_y, row.bottom_x, row.bottom_y),
            (
                answer.bbox.top_x,
                answer.bbox.top_y,
                answer.bbox.bottom_x,
                answer.bbox.bottom_y
            ),
            "box {i}"
        );
        assert_eq!(answer.top_id, row.candidates[0].id, "box {i}: top_id");
        let row_candidates: Vec<(Uuid, &str, f64)> = row
            .candidates
            .iter()
            .map(|c| (c.id, c.label.as_str(), c.score))
            .collect();
        let answer_candidates: Vec<(Uuid, &str, f64)> = answer
            .top_n
            .iter()
            .map(|c| (c.object_id, c.label.as_str(), c.score))
            .collect();
        assert_eq!(row_candidates, answer_candidates, "box {i}: topN");
    }
    let mut ids: Vec<Uuid> = vec![record.id, picture_id];
    for row in &record.boxes {
        ids.push(row.id);
        ids.extend(row.candidates.iter().map(|c| c.id));
    }
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        ids.len(),
        "every saved row has its own id"
    );

    // Candidates point at the seed species their label names; an unknown name at none.
    let seed_ids: Vec<Vec<Option<Uuid>>> = record
        .boxes
        .iter()
        .map(|b| b.candidates.iter().map(|c| c.seed_id).collect())
        .collect();
    assert_eq!(
        seed_ids,
        vec![
            vec![Some(AMBROSIA_TRIFIDA), None],
            vec![Some(BRASSICA_NAPUS)],
            vec![Some(AMBROSIA_TRIFIDA), Some(CIRSIUM_ARVENSE)],
        ]
    );

    // The response itself (contract 1.3, 1.4).
    assert_eq!(response.total_boxes, 3);
    assert_eq!(
        response.label_occurrence,
        BTreeMap::from([
            ("Ambrosia trifida".to_owned(), 2),
            ("Brassica napus".to_owned(), 1)
        ])
    );
    assert_eq!(
        response_json["models"],
        json!([{"name": DETECTOR, "version": "3"}, {"name": CLASSIFIER, "version": "7"}])
    );
    let boxes: Vec<Value> = response_json["boxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            json!([
                b["box"],
                b["label"],
                b["score"],
                b["color"],
                b["overlapping"],
                b["overlappingIndices"],
                b["topN"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| json!([c["label"], c["score"]]))
                    .collect::<Vec<_>>()
            ])
        })
        .collect();
    assert_eq!(
        boxes,
        vec![
            json!([{"topX": 5, "topY": 5, "bottomX": 32, "bottomY": 32}, "Ambrosia trifida", 0.91,
                   "#ED1C24", false, [], [["Ambrosia trifida", 0.91], ["Unknownus plantus", 0.05]]]),
            json!([{"topX": 64, "topY": 16, "bottomX": 96, "bottomY": 48}, "Brassica napus", 0.8,
                   "#005AFF", false, [], [["Brassica napus", 0.8]]]),
            json!([{"topX": 96, "topY": 32, "bottomX": 123, "bottomY": 59}, "Ambrosia trifida", 0.7,
                   "#ED1C24", false, [], [["Ambrosia trifida", 0.7], ["Cirsium arvense", 0.2]]]),
        ]
    );
}

#[tokio::test]
async fn a_picture_without_seeds_is_saved_as_an_empty_result() {
    let mut models = MockModels::new();
    models.expect_detect().times(1).returning(|_, _| Ok(vec![]));
    models.expect_classify().never();
    let mut stores = Stores::new();
    stores.known_user(1);
    stores.seeds_listed();
    stores.put_new(".png", || Ok(()));
    stores.put_new(".result.json", || Ok(()));
    stores.save(1, || Ok(()));
    let log = stores.writes();
    let service = service(Arc::new(models), stores, settings());

    let response = service.infer(request()).await.unwrap();

    assert_eq!(response.total_boxes, 0);
    assert!(response.boxes.is_empty() && response.label_occurrence.is_empty());
    let Some(Write::Save(record)) = writes(&log).pop() else {
        panic!("the inference is saved last: {:?}", keys(&log));
    };
    assert!(record.boxes.is_empty());
    assert_eq!(record.id, response.inference_id);
}

// --- refused before any work ---------------------------------------------------------------

#[tokio::test]
async fn an_unknown_pipeline_is_refused_with_the_known_names_and_no_store_call() {
    let error = untouchable_service()
        .infer(InferenceRequest {
            pipeline_name: "resnet".into(),
            ..request()
        })
        .await
        .unwrap_err();

    let InferError::UnknownPipeline { name, known } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(name, "resnet");
    let known: HashSet<&str> = known.iter().map(String::as_str).collect();
    assert_eq!(
        known,
        HashSet::from([DETECT_CLASSIFY, DETECT_CLASSIFY_RECLASSIFY, ONE_SHOT])
    );
    let message = error.to_string();
    for name in [
        "resnet",
        DETECT_CLASSIFY,
        DETECT_CLASSIFY_RECLASSIFY,
        ONE_SHOT,
    ] {
        assert!(message.contains(name), "{message}");
    }
}

#[tokio::test]
async fn an_unknown_user_is_refused_before_any_model_call_or_write() {
    let mut stores = Stores::new();
    stores
        .users
        .expect_find_by_id()
        .times(1)
        .returning(|_| Ok(None));
    let service = service(Arc::new(MockModels::new()), stores, settings());

    let error = service.infer(request()).await.unwrap_err();

    assert!(
        matches!(error, InferError::UnknownUser(id) if id == USER),
        "{error:?}"
    );
}

#[tokio::test]
async fn pictures_that_are_not_what_they_claim_are_refused_without_any_call() {
    let png = png_bytes(WIDTH, HEIGHT);
    let cases = [
        ("not a data URL", "iVBORw0KGgo=".to_owned()),
        ("bad base64", "data:image/png;base64,@@@@".to_owned()),
        ("not a PNG", data_url("png", b"GIF89a, not a png at all")),
        ("a PNG declared as JPEG", data_url("jpeg", &png)),
    ];
    for (case, image) in cases {
        let error = untouchable_service()
            .infer(InferenceRequest {
                image: image.into(),
                ..request()
            })
            .await
            .unwrap_err();
        assert!(
            matches!(error, InferError::BadImage(_)),
            "{case}: {error:?}"
        );
    }
    let error = untouchable_service()
        .infer(InferenceRequest {
            image: data_url("svg+xml", b"<svg/>").into(),
            ..request()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&error, InferError::UnsupportedImage(PictureError::UnsupportedType(t)) if t == "svg+xml"),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_picture_whose_header_reads_but_whose_pixels_do_not_is_refused_and_nothing_is_stored() {
    // The header is checked before any call; the pixels are decoded while the detector
    // works, so the detector may have been called. Nothing is written.
    let png = png_bytes(WIDTH, HEIGHT);
    let cut = &png[..png.len() - 30];
    let mut models = MockModels::new();
    models
        .expect_detect()
        .times(0..=1)
        .returning(|_, _| Ok(vec![detected(0, "seed", 0.5)]));
    models.expect_classify().never();
    let mut stores = Stores::new();
    stores.known_user(1);
    let service = service(Arc::new(models), stores, settings());

    let error = service
        .infer(InferenceRequest {
            image: data_url("png", cut).into(),
            ..request()
        })
        .await
        .unwrap_err();

    assert!(matches!(error, InferError::BadImage(_)), "{error:?}");
}

fn assert_invalid(error: InferError, expected_field: &str) {
    assert!(
        matches!(&error, InferError::InvalidField { field, .. } if *field == expected_field),
        "expected an invalid {expected_field}, got {error:?}"
    );
}

#[tokio::test]
async fn image_dims_that_do_not_match_the_picture_are_refused_without_any_call() {
    for dims in [
        [WIDTH + 1, HEIGHT],
        [WIDTH, HEIGHT - 1],
        [HEIGHT, WIDTH],
        [0, HEIGHT],
    ] {
        let error = untouchable_service()
            .infer(InferenceRequest {
                image_dims: dims,
                ..request()
            })
            .await
            .unwrap_err();
        assert_invalid(error, "imageDims");
    }
}

#[tokio::test]
async fn a_validator_of_another_picture_is_refused_without_any_call() {
    let other = sha256_hex(&png_bytes(WIDTH, HEIGHT + 1));
    for validator in [other, "not a hash".to_owned()] {
        let error = untouchable_service()
            .infer(InferenceRequest {
                validator: Some(validator),
                ..request()
            })
            .await
            .unwrap_err();
        assert_invalid(error, "validator");
    }
}

#[tokio::test]
async fn an_area_ratio_outside_0_1_is_refused_without_any_call() {
    for area_ratio in [0.0, -0.5, 1.0001, 2.0, f64::NAN, f64::INFINITY] {
        let error = untouchable_service()
            .infer(InferenceRequest {
                area_ratio,
                ..request()
            })
            .await
            .unwrap_err();
        assert_invalid(error, "area_ratio");
    }
}

#[tokio::test]
async fn folder_names_that_are_not_one_line_of_text_and_containers_that_are_not_one_segment_are_refused()
 {
    for folder in ["a/b", "a\\b", "", " padded", "two\nlines", &"x".repeat(256)] {
        let error = untouchable_service()
            .infer(InferenceRequest {
                folder_name: folder.into(),
                ..request()
            })
            .await
            .unwrap_err();
        assert_invalid(error, "folder_name");
    }
    for container in ["../other-user", ""] {
        let error = untouchable_service()
            .infer(InferenceRequest {
                container_name: container.into(),
                ..request()
            })
            .await
            .unwrap_err();
        assert_invalid(error, "container_name");
    }
}

// --- failures after the checks: what is left behind -----------------------------------------

#[tokio::test]
async fn a_failing_model_leaves_nothing_written() {
    let cases = [
        (
            model_failing(ModelCallError::Status {
                status: 500,
                body: "boom".into(),
            }),
            1,
            DETECTOR,
            false,
        ),
        (
            {
                let mut models = MockModels::new();
                models.expect_detect().returning(|_, _| Ok(three_boxes()));
                models
                    .expect_classify()
                    .returning(|_, _| Err(ModelCallError::Timeout(Duration::from_secs(30))));
                models
            },
            2,
            CLASSIFIER,
            true,
        ),
    ];
    for (models, step, model, timeout) in cases {
        let mut stores = Stores::new();
        stores.known_user(1);
        stores.seeds_listed();
        // The picture is written while the models work, and deleted again when they fail;
        // no inference expectation: saving one panics.
        stores.put_new(".png", || Ok(()));
        stores.delete(".png", || Ok(()));
        let log = stores.writes();
        let service = service(Arc::new(models), stores, settings());

        let error = service.infer(request()).await.unwrap_err();

        let writes = writes(&log);
        let [Write::PutNew(picture, _), Write::Delete(deleted)] = writes.as_slice() else {
            panic!("{:?}", keys(&log));
        };
        assert_eq!(deleted, picture, "the picture written is the one deleted");

        let InferError::Model(step_error) = &error else {
            panic!("{error:?}");
        };
        assert_eq!(step_error.pipeline, DETECT_CLASSIFY);
        assert_eq!((step_error.step, step_error.model.as_str()), (step, model));
        assert_eq!(step_error.is_timeout(), timeout);
        if !timeout {
            assert_eq!(
                step_error.failure,
                StepFailure::Call(ModelCallError::Status {
                    status: 500,
                    body: "boom".into()
                })
            );
        }
        let message = error.to_string();
        assert!(
            message.contains(model) && message.contains(&format!("step {step}")),
            "{message}"
        );
    }
}

/// Stores for the three boxes of [`models_finding_three_seeds`] up to the writes.
fn stores_after_a_successful_run() -> Stores {
    let mut stores = Stores::new();
    stores.known_user(1);
    stores.seeds_listed();
    stores
}

#[tokio::test]
async fn a_failed_picture_write_writes_nothing_else() {
    let mut stores = stores_after_a_successful_run();
    stores.put_new(".png", || Err(BlobError::Storage("disk full".into())));
    let log = stores.writes();
    let service = service(Arc::new(models_finding_three_seeds()), stores, settings());

    let error = service.infer(request()).await.unwrap_err();

    assert!(
        matches!(&error, InferError::Storage(message) if message.contains("disk full")),
        "{error:?}"
    );
    assert_eq!(writes(&log).len(), 1, "{:?}", keys(&log));
}

#[tokio::test]
async fn a_failed_result_write_deletes_the_picture() {
    let mut stores = stores_after_a_successful_run();
    stores.put_new(".png", || Ok(()));
    stores.put_new(".result.json", || {
        Err(BlobError::Storage("connection reset".into()))
    });
    stores.delete(".png", || Ok(()));
    let log = stores.writes();
    let service = service(Arc::new(models_finding_three_seeds()), stores, settings());

    let error = service.infer(request()).await.unwrap_err();

    assert!(matches!(error, InferError::Storage(_)), "{error:?}");
    let writes = writes(&log);
    let [
        Write::PutNew(picture, _),
        Write::PutNew(result, _),
        Write::Delete(deleted),
    ] = writes.as_slice()
    else {
        panic!("{:?}", keys(&log));
    };
    assert!(result.ends_with(".result.json"));
    assert_eq!(deleted, picture, "the picture written is the one deleted");
}

#[tokio::test]
async fn a_failed_save_deletes_both_blobs_and_is_a_storage_error() {
    for delete_outcome in [
        (|| Ok(())) as fn() -> Result<(), BlobError>,
        // A failing clean-up does not hide the first failure, nor stop the other clean-up.
        || Err(BlobError::Storage("unreachable".into())),
    ] {
        let mut stores = stores_after_a_successful_run();
        stores.put_new(".png", || Ok(()));
        stores.put_new(".result.json", || Ok(()));
        stores.save(1, || Err(StoreError::Database("deadlock detected".into())));
        stores.delete(".png", delete_outcome);
        stores.delete(".result.json", delete_outcome);
        let log = stores.writes();
        let service = service(Arc::new(models_finding_three_seeds()), stores, settings());

        let error = service.infer(request()).await.unwrap_err();

        assert!(
            matches!(&error, InferError::Storage(message) if message.contains("deadlock detected")),
            "{error:?}"
        );
        let writes = writes(&log);
        let written: HashSet<&String> = writes
            .iter()
            .filter_map(|w| match w {
                Write::PutNew(key, _) => Some(key),
                _ => None,
            })
            .collect();
        let deleted: HashSet<&String> = writes
            .iter()
            .filter_map(|w| match w {
                Write::Delete(key) => Some(key),
                _ => None,
            })
            .collect();
        assert_eq!(written.len(), 2);
        assert_eq!(deleted, written, "{:?}", keys(&log));
        assert!(
            matches!(writes[2], Write::Save(_)),
            "deleted after the failed save: {:?}",
            keys(&log)
        );
    }
}

// --- /get-user-id --------------------------------------------------------------------------

const ANN: Uuid = Uuid::from_u128(0xA);

fn user_service(stores: Stores, register_unknown_users: bool) -> InferenceService {
    service(
        Arc::new(MockModels::new()),
        stores,
        ServiceSettings {
            register_unknown_users,
            ..settings()
        },
    )
}

#[tokio::test]
async fn an_existing_email_gives_its_user_id_after_trimming_and_lower_casing() {
    let mut stores = Stores::new();
    stores
        .users
        .expect_find_by_email()
        .withf(|email| email == "ann@example.com")
        .times(2)
        .returning(|email| Ok(Some(user(ANN, email))));
    let service = user_service(stores, false);

    assert_eq!(service.user_id("ann@example.com").await.unwrap(), ANN);
    assert_eq!(service.user_id("  Ann@Example.COM\t\n").await.unwrap(), ANN);
}

#[tokio::test]
async fn an_unknown_email_is_refused_when_registration_is_off() {
    let mut stores = Stores::new();
    stores
        .users
        .expect_find_by_email()
        .withf(|email| email == "bob@example.com")
        .times(1)
        .returning(|_| Ok(None));
    // No `register` expectation: registering would panic.
    let service = user_service(stores, false);

    let error = service.user_id(" Bob@example.com").await.unwrap_err();

    assert!(
        matches!(&error, InferError::UnknownEmail(email) if email == "bob@example.com"),
        "{error:?}"
    );
}

#[tokio::test]
async fn an_unknown_email_is_registered_when_registration_is_on() {
    const BOB: Uuid = Uuid::from_u128(0xB);
    let mut stores = Stores::new();
    stores
        .users
        .expect_find_by_email()
        .withf(|email| email == "bob@example.com")
        .times(1)
        .returning(|_| Ok(None));
    stores
        .users
        .expect_register()
        .withf(|email| email == "bob@example.com")
        .times(1)
        .returning(|email| Ok(user(BOB, email)));
    let service = user_service(stores, true);

    assert_eq!(service.user_id("BOB@example.com ").await.unwrap(), BOB);
}

#[tokio::test]
async fn a_malformed_email_is_an_invalid_field_without_any_lookup() {
    let service = user_service(Stores::new(), true);
    for email in [
        "",
        "   ",
        "ann",
        "@example.com",
        "ann@",
        "ann@b@example.com",
        "ann\u{0}@example.com",
        "ann smith@example.com",
        &format!("{}@example.com", "a".repeat(10_000)),
    ] {
        let error = service.user_id(email).await.unwrap_err();
        assert_invalid(error, "email");
    }
}

#[tokio::test]
async fn a_failing_user_store_is_a_storage_error() {
    let mut stores = Stores::new();
    stores
        .users
        .expect_find_by_email()
        .times(1)
        .returning(|_| Err(StoreError::Database("connection refused".into())));
    let service = user_service(stores, true);

    let error = service.user_id("ann@example.com").await.unwrap_err();

    assert!(matches!(error, InferError::Storage(_)), "{error:?}");
}
