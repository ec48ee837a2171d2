//! Prints how long the detector takes (run with `--release -- --nocapture` for numbers
//! that mean anything). Checks only that the answers are right, never the times.

mod common;

use std::time::{Duration, Instant};

use common::{base64, jpeg_bytes, png_bytes, seed_photo, seed_photo_bytes};
use image::{Rgba, RgbaImage};
use reference_models::detector::detect;
use reference_models::picture::Picture;
use reference_models::wire::DetectorRequest;
use reference_models::{Deployment, classifier};

/// Median of this many runs (one in a debug build, where the times mean little anyway).
const RUNS: usize = if cfg!(debug_assertions) { 1 } else { 7 };

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn time<T>(mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut times = Vec::with_capacity(RUNS);
    let mut last = None;
    for _ in 0..RUNS {
        let started = Instant::now();
        last = Some(f());
        times.push(started.elapsed());
    }
    (median(times), last.expect("RUNS > 0"))
}

/// 1600 x 1200, white, four copies of the seed photo.
fn composed() -> RgbaImage {
    let photo = seed_photo();
    let mut canvas = RgbaImage::from_pixel(1600, 1200, Rgba([255, 255, 255, 255]));
    for (x, y) in [(60, 30), (900, 30), (60, 620), (900, 620)] {
        image::imageops::overlay(&mut canvas, &photo, x, y);
    }
    canvas
}

fn report(name: &str, file: &[u8], expected_boxes: usize) {
    let (decode_time, picture) = time(|| Picture::decode(file).unwrap());
    let (detect_time, boxes) = time(|| detect(&picture));
    assert_eq!(boxes.len(), expected_boxes, "{name}: {boxes:?}");
    let (classify_time, _) = time(|| {
        boxes
            .iter()
            .map(|b| classifier::classify(&picture, b.rect))
            .collect::<Vec<_>>()
    });
    let body = serde_json::to_vec(&DetectorRequest::new(base64(file))).unwrap();
    let (call_time, _) = time(|| Deployment::SeedDetector.score(&body).unwrap());
    let (one_shot_time, _) = time(|| Deployment::SeedDetector6.score(&body).unwrap());
    println!(
        "{name} ({}x{}, {} KiB): decode {decode_time:?}, detect {detect_time:?}, \
         classify {} boxes {classify_time:?}; whole seed-detector call (JSON + base64 + \
         decode + detect) {call_time:?}, seed-detector-6 call {one_shot_time:?}",
        picture.width(),
        picture.height(),
        file.len() / 1024,
        boxes.len(),
    );
}

#[test]
fn detector_timings() {
    let profile = if cfg!(debug_assertions) {
        "debug (times are not representative)"
    } else {
        "release"
    };
    println!("detector timings, median of {RUNS} runs, {profile} build:");
    report("seed photo png", &seed_photo_bytes(), 1);
    let big = composed();
    report("composed png", &png_bytes(&big), 4);
    report("composed jpeg", &jpeg_bytes(&big), 4);
}
