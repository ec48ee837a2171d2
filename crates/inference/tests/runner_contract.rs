//! `PipelineRunner` against a mocked `ModelClient` (contract 1.5): what each model gets, how
//! its answer becomes boxes, the bounded concurrency of per-crop calls, and a failure at
//! every step.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use inference::runner::StepFailure;
use inference::{
    CheckedPicture, CodecPool, Detection, ModelCallError, ModelClient, PictureLimits,
    PipelineRunner, RankedLabel, RunError, StepError,
};
use pipeline::{ModelKind, PipelineSet};
use support::*;

fn picture() -> CheckedPicture {
    CheckedPicture::from_data_url(
        &png_data_url(WIDTH, HEIGHT).into(),
        &PictureLimits {
            max_pixels: 50_000_000,
        },
    )
    .unwrap()
}

fn runner(models: Arc<dyn ModelClient>, max_crop_calls: usize) -> PipelineRunner {
    PipelineRunner::new(
        models,
        CodecPool::new(
            2,
            PictureLimits {
                max_pixels: 50_000_000,
            },
        ),
        max_crop_calls,
    )
}

async fn run(
    models: Arc<dyn ModelClient>,
    max_crop_calls: usize,
    pipeline: &str,
) -> Result<Vec<Detection>, StepError> {
    let set: PipelineSet = pipeline_set();
    let pipeline = set
        .find(pipeline)
        .expect("a pipeline of the test catalogue");
    runner(models, max_crop_calls)
        .run(pipeline, &picture())
        .await
        .map_err(|e| match e {
            RunError::Step(step) => step,
            RunError::Picture(e) => panic!("the test picture is refused: {e}"),
        })
}

/// A detector that finds `n` grid boxes labelled "seed", expecting the whole picture.
fn expect_seed_boxes(models: &mut MockModels, n: usize) {
    let expected_base64 = picture().upright_base64().unwrap();
    models
        .expect_detect()
        .withf(move |model, picture| {
            model.name == DETECTOR
                && model.kind == ModelKind::SeedDetector
                && *picture == expected_base64
        })
        .times(1)
        .returning(move |_, _| Ok((0..n).map(|k| detected(k, "seed", 0.5)).collect()));
}

/// The classifier's answer for grid box `k`: a label of its own, numbered as the model does.
fn classifier_answer(k: usize) -> Vec<RankedLabel> {
    match k {
        0 => ranking(&[
            ("13 Ambrosia trifida", 0.91),
            ("14 Ambrosia psilostachya", 0.06),
        ]),
        1 => ranking(&[("2 Brassica napus", 0.8)]),
        2 => ranking(&[
            ("7 Cirsium arvense", 0.40),
            ("8 Cirsium vulgare", 0.20),
            ("Carduus nutans", 0.15),
            ("10 Bromus secalinus", 0.10),
            ("11 Bromus hordeaceus", 0.08),
            ("12 Bromus japonicus", 0.05),
            ("15 Lolium temulentum", 0.02),
        ]),
        k => ranking(&[(&format!("{k} Species {k}"), 1.0 - k as f64 / 100.0)]),
    }
}

/// The label box `k` must end with, from [`classifier_answer`].
fn classifier_label(k: usize) -> String {
    match k {
        0 => "Ambrosia trifida".into(),
        1 => "Brassica napus".into(),
        2 => "Cirsium arvense".into(),
        k => format!("Species {k}"),
    }
}

/// A classifier that answers [`classifier_answer`] for each crop and records what it got.
fn expect_classifier(models: &mut MockModels, calls: usize) -> Arc<Mutex<Vec<Crop>>> {
    let crops = Arc::new(Mutex::new(Vec::new()));
    let seen = crops.clone();
    models
        .expect_classify()
        .withf(|model, _| model.name == CLASSIFIER && model.kind == ModelKind::Classifier)
        .times(calls)
        .returning(move |_, crop| {
            let crop = Crop::decode(&crop);
            seen.lock().unwrap().push(crop);
            Ok(classifier_answer(crop.grid_index()))
        });
    crops
}

fn labels(detections: &[Detection]) -> Vec<&str> {
    detections.iter().map(|d| d.label.as_str()).collect()
}

fn sorted(crops: &Mutex<Vec<Crop>>) -> Vec<Crop> {
    let mut crops = crops.lock().unwrap().clone();
    crops.sort_by_key(|c| c.origin);
    crops
}

fn grid_crop(k: usize) -> Crop {
    Crop {
        origin: (8 * k as u32, 8),
        size: grid_crop_size(k),
    }
}

#[tokio::test]
async fn the_detector_gets_the_picture_and_the_classifier_one_png_crop_per_box() {
    let mut models = MockModels::new();
    expect_seed_boxes(&mut models, 3);
    let crops = expect_classifier(&mut models, 3);

    let detections = run(Arc::new(models), 4, DETECT_CLASSIFY).await.unwrap();

    assert_eq!(
        sorted(&crops),
        vec![grid_crop(0), grid_crop(1), grid_crop(2)]
    );
    assert_eq!(detections.len(), 3);
    for (k, detection) in detections.iter().enumerate() {
        assert_eq!(
            detection.bbox,
            grid_box(k),
            "box {k} keeps the detector's box"
        );
    }
}

#[tokio::test]
async fn each_box_takes_the_first_label_without_its_number_and_the_ranking_as_top_n() {
    let mut models = MockModels::new();
    expect_seed_boxes(&mut models, 3);
    expect_classifier(&mut models, 3);

    let detections = run(Arc::new(models), 2, DETECT_CLASSIFY).await.unwrap();

    assert_eq!(
        labels(&detections),
        ["Ambrosia trifida", "Brassica napus", "Cirsium arvense"]
    );
    assert_eq!(detections[0].score, 0.91);
    assert_eq!(
        detections[0].top_n,
        ranking(&[("Ambrosia trifida", 0.91), ("Ambrosia psilostachya", 0.06)])
    );
    assert_eq!(detections[1].score, 0.8);
    assert_eq!(detections[1].top_n, ranking(&[("Brassica napus", 0.8)]));
    // Seven ranked: the best five are kept, in order; a label without a number stays whole.
    assert_eq!(detections[2].score, 0.40);
    assert_eq!(
        detections[2].top_n,
        ranking(&[
            ("Cirsium arvense", 0.40),
            ("Cirsium vulgare", 0.20),
            ("Carduus nutans", 0.15),
            ("Bromus secalinus", 0.10),
            ("Bromus hordeaceus", 0.08),
        ])
    );
}

#[tokio::test]
async fn boxes_keep_their_order_when_answers_arrive_out_of_order() {
    let mut models = MockModels::new();
    expect_seed_boxes(&mut models, 4);
    expect_classifier(&mut models, 4);
    let mut timed = Timed::new(models);
    let delays = [200, 10, 130, 60];
    timed.classify_delay = Box::new(move |k| Duration::from_millis(delays[k]));
    let timed = Arc::new(timed);

    let detections = run(timed.clone(), 4, DETECT_CLASSIFY).await.unwrap();

    assert_ne!(
        timed.answered(),
        vec![0, 1, 2, 3],
        "the answers must arrive out of order for this test to mean anything"
    );
    assert_eq!(
        labels(&detections),
        [
            "Ambrosia trifida",
            "Brassica napus",
            "Cirsium arvense",
            "Species 3"
        ]
    );
    for (k, detection) in detections.iter().enumerate() {
        assert_eq!(detection.bbox, grid_box(k));
    }
}

#[tokio::test]
async fn per_crop_calls_run_concurrently_up_to_the_bound() {
    for concurrency in [1, 3] {
        let mut models = MockModels::new();
        expect_seed_boxes(&mut models, 8);
        let crops = expect_classifier(&mut models, 8);
        let mut timed = Timed::new(models);
        timed.classify_delay = Box::new(|_| Duration::from_millis(60));
        let timed = Arc::new(timed);

        let detections = run(timed.clone(), concurrency, DETECT_CLASSIFY)
            .await
            .unwrap();

        assert_eq!(
            timed.max_in_flight(),
            concurrency,
            "calls in flight at once with max_crop_calls {concurrency}"
        );
        assert_eq!(sorted(&crops), (0..8).map(grid_crop).collect::<Vec<_>>());
        let expected: Vec<String> = (0..8).map(classifier_label).collect();
        assert_eq!(labels(&detections), expected);
    }
}

#[tokio::test]
async fn a_re_classifier_only_touches_boxes_with_its_labels_and_overrides_them() {
    let mut models = MockModels::new();
    expect_seed_boxes(&mut models, 4);
    models
        .expect_classify()
        .withf(|model, _| model.name == CLASSIFIER)
        .times(4)
        .returning(|_, crop| {
            Ok(match Crop::decode(&crop).grid_index() {
                0 => ranking(&[("10 Bromus secalinus", 0.6), ("12 Bromus japonicus", 0.3)]),
                1 => ranking(&[("13 Ambrosia trifida", 0.9)]),
                2 => ranking(&[("11 Bromus hordeaceus", 0.5)]),
                _ => ranking(&[("12 Bromus japonicus", 0.4), ("10 Bromus secalinus", 0.35)]),
            })
        });
    let reclassified = Arc::new(Mutex::new(Vec::new()));
    let seen = reclassified.clone();
    models
        .expect_classify()
        .withf(|model, _| model.name == RECLASSIFIER && model.kind == ModelKind::ReClassifier)
        .times(2)
        .returning(move |_, crop| {
            let crop = Crop::decode(&crop);
            seen.lock().unwrap().push(crop);
            Ok(match crop.grid_index() {
                0 => ranking(&[("11 Bromus hordeaceus", 0.88), ("10 Bromus secalinus", 0.1)]),
                _ => ranking(&[("12 Bromus japonicus", 0.7)]),
            })
        });

    let detections = run(Arc::new(models), 4, DETECT_CLASSIFY_RECLASSIFY)
        .await
        .unwrap();

    assert_eq!(sorted(&reclassified), vec![grid_crop(0), grid_crop(2)]);
    let expected = [
        // Re-classified: label, score and topN from the re-classifier.
        (
            "Bromus hordeaceus",
            0.88,
            ranking(&[("Bromus hordeaceus", 0.88), ("Bromus secalinus", 0.1)]),
        ),
        // Not a label of the re-classifier: as the classifier said.
        (
            "Ambrosia trifida",
            0.9,
            ranking(&[("Ambrosia trifida", 0.9)]),
        ),
        (
            "Bromus japonicus",
            0.7,
            ranking(&[("Bromus japonicus", 0.7)]),
        ),
        (
            "Bromus japonicus",
            0.4,
            ranking(&[("Bromus japonicus", 0.4), ("Bromus secalinus", 0.35)]),
        ),
    ];
    assert_eq!(detections.len(), expected.len());
    for (k, (detection, (label, score, top_n))) in detections.iter().zip(expected).enumerate() {
        assert_eq!(detection.label, label, "box {k}");
        assert_eq!(detection.score, score, "box {k}");
        assert_eq!(detection.top_n, top_n, "box {k}");
        assert_eq!(detection.bbox, grid_box(k), "box {k}");
    }
}

#[tokio::test]
async fn a_one_shot_pipeline_returns_the_detectors_labelled_boxes() {
    let mut models = MockModels::new();
    let expected_base64 = picture().upright_base64().unwrap();
    models
        .expect_detect()
        .withf(move |model, picture| {
            model.name == ONE_SHOT_MODEL
                && model.kind == ModelKind::OneShotDetector
                && *picture == expected_base64
        })
        .times(1)
        .returning(|_, _| {
            Ok(vec![
                detected(0, "Ambrosia artemisiifolia", 0.83),
                detected(3, "Solanum nigrum", 0.61),
            ])
        });
    models.expect_classify().never();

    let detections = run(Arc::new(models), 4, ONE_SHOT).await.unwrap();

    assert_eq!(
        detections,
        vec![
            Detection {
                bbox: grid_box(0),
                label: "Ambrosia artemisiifolia".into(),
                score: 0.83,
                top_n: ranking(&[("Ambrosia artemisiifolia", 0.83)]),
            },
            Detection {
                bbox: grid_box(3),
                label: "Solanum nigrum".into(),
                score: 0.61,
                top_n: ranking(&[("Solanum nigrum", 0.61)]),
            },
        ]
    );
}

#[tokio::test]
async fn no_box_from_the_detector_means_no_classifier_call_and_an_empty_result() {
    let mut models = MockModels::new();
    expect_seed_boxes(&mut models, 0);
    models.expect_classify().never();

    let detections = run(Arc::new(models), 4, DETECT_CLASSIFY_RECLASSIFY)
        .await
        .unwrap();

    assert!(detections.is_empty());
}

// --- failures ------------------------------------------------------------------------------

#[tokio::test]
async fn a_failing_detector_is_step_1_with_its_model_name() {
    let mut models = MockModels::new();
    models.expect_detect().times(1).returning(|_, _| {
        Err(ModelCallError::Status {
            status: 500,
            body: "internal error".into(),
        })
    });
    models.expect_classify().never();

    let error = run(Arc::new(models), 4, DETECT_CLASSIFY).await.unwrap_err();

    assert_eq!(
        error,
        StepError {
            pipeline: DETECT_CLASSIFY.into(),
            step: 1,
            model: DETECTOR.into(),
            failure: StepFailure::Call(ModelCallError::Status {
                status: 500,
                body: "internal error".into(),
            }),
        }
    );
    assert!(!error.is_timeout());
    let message = error.to_string();
    assert!(
        message.contains("step 1") && message.contains(DETECTOR) && message.contains("500"),
        "{message}"
    );
}

#[tokio::test]
async fn a_classifier_failing_on_the_third_crop_is_step_2() {
    let mut models = MockModels::new();
    expect_seed_boxes(&mut models, 5);
    models
        .expect_classify()
        .withf(|model, _| model.name == CLASSIFIER)
        .returning(|_, crop| match Crop::decode(&crop).grid_index() {
            2 => Err(ModelCallError::Status {
                status: 503,
                body: "busy".into(),
            }),
            k => Ok(classifier_answer(k)),
        });

    let error = run(Arc::new(models), 1, DETECT_CLASSIFY).await.unwrap_err();

    assert_eq!(
        error,
        StepError {
            pipeline: DETECT_CLASSIFY.into(),
            step: 2,
            model: CLASSIFIER.into(),
            failure: StepFailure::Call(ModelCallError::Status {
                status: 503,
                body: "busy".into(),
            }),
        }
    );
}

#[tokio::test]
async fn a_failing_re_classifier_is_step_3() {
    let mut models = MockModels::new();
    expect_seed_boxes(&mut models, 1);
    models
        .expect_classify()
        .withf(|model, _| model.name == CLASSIFIER)
        .returning(|_, _| Ok(ranking(&[("10 Bromus secalinus", 0.6)])));
    models
        .expect_classify()
        .withf(|model, _| model.name == RECLASSIFIER)
        .times(1)
        .returning(|_, _| Err(ModelCallError::Unreachable("connection refused".into())));

    let error = run(Arc::new(models), 4, DETECT_CLASSIFY_RECLASSIFY)
        .await
        .unwrap_err();

    assert_eq!(
        (error.pipeline.as_str(), error.step, error.model.as_str()),
        (DETECT_CLASSIFY_RECLASSIFY, 3, RECLASSIFIER)
    );
    assert_eq!(
        error.failure,
        StepFailure::Call(ModelCallError::Unreachable("connection refused".into()))
    );
    assert!(!error.is_timeout());
}

#[tokio::test]
async fn a_timeout_is_reported_as_one_at_the_step_it_happened() {
    // At the detector.
    let mut models = MockModels::new();
    models
        .expect_detect()
        .returning(|_, _| Err(ModelCallError::Timeout(Duration::from_secs(30))));
    models.expect_classify().never();
    let error = run(Arc::new(models), 4, DETECT_CLASSIFY).await.unwrap_err();
    assert!(error.is_timeout(), "{error:?}");
    assert_eq!((error.step, error.model.as_str()), (1, DETECTOR));

    // At the classifier.
    let mut models = MockModels::new();
    expect_seed_boxes(&mut models, 2);
    models
        .expect_classify()
        .returning(|_, _| Err(ModelCallError::Timeout(Duration::from_secs(30))));
    let error = run(Arc::new(models), 4, DETECT_CLASSIFY).await.unwrap_err();
    assert!(error.is_timeout(), "{error:?}");
    assert_eq!((error.step, error.model.as_str()), (2, CLASSIFIER));
    assert_eq!(
        error.failure,
        StepFailure::Call(ModelCallError::Timeout(Duration::from_secs(30)))
    );
}

#[tokio::test]
async fn an_empty_ranking_is_a_bad_response_of_the_classifier() {
    let mut models = MockModels::new();
    expect_seed_boxes(&mut models, 2);
    models
        .expect_classify()
        .returning(|_, crop| match Crop::decode(&crop).grid_index() {
            1 => Ok(Vec::new()),
            k => Ok(classifier_answer(k)),
        });

    let error = run(Arc::new(models), 4, DETECT_CLASSIFY).await.unwrap_err();

    assert_eq!((error.step, error.model.as_str()), (2, CLASSIFIER));
    assert!(
        matches!(
            error.failure,
            StepFailure::Call(ModelCallError::BadResponse(_))
        ),
        "{error:?}"
    );
    assert!(!error.is_timeout());
}
