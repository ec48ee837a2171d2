//! The reference computation: honest statistics of the pixels, and a fixed, documented
//! threshold. It is **not** a trained model and its labels mean nothing medically.
//!
//! For every entry of the ZIP, in ZIP order, the instance is parsed whole with the `dicom`
//! crate (pixel data included). Its stored pixel values (uncompressed pixel data of 8, 16
//! or 32 bits allocated, masked to BitsStored, signed when PixelRepresentation is 1; every
//! frame and sample) are rescaled with RescaleSlope and RescaleIntercept when present.
//! Then:
//!
//! 1. per slice: `mean`, `std` (population), `min`, `max` of the rescaled values;
//! 2. the series threshold: `series_min + BRIGHT_LEVEL * (series_max - series_min)`, with
//!    [`BRIGHT_LEVEL`] = 0.75 of the series' value range;
//! 3. per slice: `score` = the fraction of its pixels strictly above the threshold, and
//!    `classification` = `"bright_region"` when `score >= POSITIVE_FRACTION` (1 %), else
//!    `"no_bright_region"`; segmentation model types also report those pixels as
//!    `segmentedPixels` / `segmentedFraction`. `accuracy` is `null`: a reference model has
//!    none.
//!
//! The answer is [`Outcome`]: `completed` with `{"output": [...], "summary": {...}}`,
//! `not_supported` when the model type does not take the series' modality (the one
//! requested or one found in an instance), or `failed` with the reason when the ZIP or an
//! instance cannot be read.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use dicom::core::value::Value;
use dicom::core::{PrimitiveValue, Tag};
use dicom::dictionary_std::tags;
use dicom::object::file::ReadPreamble;
use dicom::object::{DefaultDicomObject, OpenFileOptions};
use serde::Serialize;
use serde_json::{Value as Json, json};

use crate::models::{ModelType, Task};

/// Level of the threshold within the series' value range.
pub const BRIGHT_LEVEL: f64 = 0.75;
/// Fraction of a slice's pixels above the threshold from which it is `bright_region`.
pub const POSITIVE_FRACTION: f64 = 0.01;
/// Words that say what this is, in every result.
pub const REFERENCE_NOTE: &str = "reference model for development and tests, not a trained model: per-slice pixel statistics and a fixed threshold (pixels above 75% of the series' value range; a slice is bright_region when at least 1% of its pixels are)";

/// The status reported to the backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Completed,
    NotSupported,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Completed => "completed",
            Status::NotSupported => "not_supported",
            Status::Failed => "failed",
        }
    }
}

/// What the model answers.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub status: Status,
    pub result: Json,
}

impl Outcome {
    fn failed(reason: impl Into<String>) -> Self {
        Outcome {
            status: Status::Failed,
            result: json!({ "reason": reason.into(), "note": REFERENCE_NOTE }),
        }
    }

    fn not_supported(model: &ModelType, modality: &str, where_: &str) -> Self {
        Outcome {
            status: Status::NotSupported,
            result: json!({
                "reason": format!(
                    "model type {} takes {} series, not {modality:?} ({where_})",
                    model.name,
                    model.modalities.join(" or ")
                ),
                "modelType": model.name,
                "modality": modality,
                "acceptedModalities": model.modalities,
                "note": REFERENCE_NOTE,
            }),
        }
    }
}

/// One slice's statistics.
#[derive(Clone, Debug, PartialEq)]
struct SliceStats {
    entry: String,
    instance_number: Option<i64>,
    pixels: u64,
    mean: f64,
    std: f64,
    min: f64,
    max: f64,
}

/// Runs the reference model on the ZIP at `zip_path` for `model`, the series being of
/// `modality` according to the request. Blocking (CPU and disk): run it off the async
/// threads.
pub fn analyse(zip_path: &Path, model: &ModelType, modality: &str) -> Outcome {
    if !model.takes(modality) {
        return Outcome::not_supported(model, modality, "the requested modality");
    }
    match run(zip_path, model) {
        Ok(outcome) => outcome,
        Err(reason) => Outcome::failed(reason),
    }
}

fn run(zip_path: &Path, model: &ModelType) -> Result<Outcome, String> {
    // Pass 1: per-slice statistics, and the modality of each instance.
    let mut slices: Vec<SliceStats> = Vec::new();
    let mut unsupported: Option<(String, String)> = None;
    for_each_instance(zip_path, |entry, object| {
        if let Some(found) = text(object, tags::MODALITY)
            && !model.takes(&found)
            && unsupported.is_none()
        {
            unsupported = Some((entry.to_string(), found));
        }
        let values = pixel_values(object).map_err(|e| format!("entry {entry}: {e}"))?;
        slices.push(stats(entry, object, &values));
        Ok(())
    })?;
    if let Some((entry, found)) = unsupported {
        return Ok(Outcome::not_supported(
            model,
            &found,
            &format!("the Modality of entry {entry}"),
        ));
    }
    if slices.is_empty() {
        return Err("the ZIP holds no instance".to_string());
    }
    let series_min = slices.iter().map(|s| s.min).fold(f64::INFINITY, f64::min);
    let series_max = slices
        .iter()
        .map(|s| s.max)
        .fold(f64::NEG_INFINITY, f64::max);
    let threshold = series_min + BRIGHT_LEVEL * (series_max - series_min);

    // Pass 2: pixels above the series threshold.
    let mut above: Vec<u64> = Vec::with_capacity(slices.len());
    for_each_instance(zip_path, |entry, object| {
        let values = pixel_values(object).map_err(|e| format!("entry {entry}: {e}"))?;
        above.push(values.iter().filter(|v| **v > threshold).count() as u64);
        Ok(())
    })?;

    let mut positive = 0usize;
    let output: Vec<Json> = slices
        .iter()
        .zip(&above)
        .enumerate()
        .map(|(index, (slice, &count))| {
            let score = count as f64 / slice.pixels.max(1) as f64;
            let label = if score >= POSITIVE_FRACTION {
                positive += 1;
                "bright_region"
            } else {
                "no_bright_region"
            };
            let mut item = json!({
                "slice": index + 1,
                "entry": slice.entry,
                "instanceNumber": slice.instance_number,
                "classification": label,
                "accuracy": Json::Null,
                "score": round(score),
                "pixels": slice.pixels,
                "mean": round(slice.mean),
                "std": round(slice.std),
                "min": slice.min,
                "max": slice.max,
            });
            if model.task == Task::Segmentation {
                item["segmentedPixels"] = json!(count);
                item["segmentedFraction"] = json!(round(score));
            }
            item
        })
        .collect();
    let total_pixels: u64 = slices.iter().map(|s| s.pixels).sum();
    let series_mean =
        slices.iter().map(|s| s.mean * s.pixels as f64).sum::<f64>() / total_pixels.max(1) as f64;
    Ok(Outcome {
        status: Status::Completed,
        result: json!({
            "model": "reference-ml-app",
            "referenceModel": true,
            "note": REFERENCE_NOTE,
            "modelType": model.name,
            "output": output,
            "summary": {
                "slices": slices.len(),
                "classification": if positive > 0 { "bright_region" } else { "no_bright_region" },
                "positiveSlices": positive,
                "threshold": round(threshold),
                "brightLevel": BRIGHT_LEVEL,
                "positiveFraction": POSITIVE_FRACTION,
                "mean": round(series_mean),
                "min": series_min,
                "max": series_max,
            },
        }),
    })
}

/// Opens the ZIP and parses each entry whole, in ZIP order.
fn for_each_instance(
    zip_path: &Path,
    mut visit: impl FnMut(&str, &DefaultDicomObject) -> Result<(), String>,
) -> Result<(), String> {
    let file = File::open(zip_path).map_err(|e| format!("cannot open the upload: {e}"))?;
    let mut archive = zip::ZipArchive::new(BufReader::new(file))
        .map_err(|e| format!("the upload is not a readable ZIP: {e}"))?;
    for index in 0..archive.len() {
        let entry = archive
            .by_index(index)
            .map_err(|e| format!("cannot read ZIP entry {}: {e}", index + 1))?;
        if entry.is_dir() {
            continue;
        }
        let name = entry
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| format!("#{}", index + 1));
        let object = OpenFileOptions::new()
            .read_preamble(ReadPreamble::Always)
            .from_reader(BufReader::with_capacity(256 * 1024, entry))
            .map_err(|e| format!("entry {name} is not a readable DICOM Part-10 file: {e}"))?;
        visit(&name, &object)?;
    }
    Ok(())
}

fn stats(entry: &str, object: &DefaultDicomObject, values: &[f64]) -> SliceStats {
    let n = values.len() as f64;
    let (mut sum, mut min, mut max) = (0.0, f64::INFINITY, f64::NEG_INFINITY);
    for &v in values {
        sum += v;
        min = min.min(v);
        max = max.max(v);
    }
    let mean = if values.is_empty() { 0.0 } else { sum / n };
    let variance = if values.is_empty() {
        0.0
    } else {
        values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n
    };
    SliceStats {
        entry: entry.to_string(),
        instance_number: text(object, tags::INSTANCE_NUMBER).and_then(|v| v.parse().ok()),
        pixels: values.len() as u64,
        mean,
        std: variance.sqrt(),
        min: if values.is_empty() { 0.0 } else { min },
        max: if values.is_empty() { 0.0 } else { max },
    }
}

fn round(value: f64) -> f64 {
    (value * 1e4).round() / 1e4
}

fn text(object: &DefaultDicomObject, tag: Tag) -> Option<String> {
    let value = object.element_opt(tag).ok()??.to_str().ok()?;
    let trimmed = value.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

fn uint(object: &DefaultDicomObject, tag: Tag) -> Option<u32> {
    object.element_opt(tag).ok()??.to_int::<u32>().ok()
}

fn float(object: &DefaultDicomObject, tag: Tag) -> Option<f64> {
    object.element_opt(tag).ok()??.to_float64().ok()
}

/// The rescaled pixel values of every frame and sample.
pub fn pixel_values(object: &DefaultDicomObject) -> Result<Vec<f64>, String> {
    let rows = uint(object, tags::ROWS).ok_or("no Rows (0028,0010)")? as usize;
    let columns = uint(object, tags::COLUMNS).ok_or("no Columns (0028,0011)")? as usize;
    let bits_allocated =
        uint(object, tags::BITS_ALLOCATED).ok_or("no BitsAllocated (0028,0100)")?;
    let bits_stored = uint(object, tags::BITS_STORED)
        .unwrap_or(bits_allocated)
        .clamp(1, bits_allocated.max(1));
    let signed = uint(object, tags::PIXEL_REPRESENTATION).unwrap_or(0) == 1;
    let samples = uint(object, tags::SAMPLES_PER_PIXEL).unwrap_or(1).max(1) as usize;
    let frames = text(object, tags::NUMBER_OF_FRAMES)
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let slope = float(object, tags::RESCALE_SLOPE).unwrap_or(1.0);
    let intercept = float(object, tags::RESCALE_INTERCEPT).unwrap_or(0.0);
    let count = rows * columns * samples * frames;

    let element = object
        .element_opt(tags::PIXEL_DATA)
        .map_err(|e| e.to_string())?
        .ok_or("no Pixel Data (7FE0,0010)")?;
    let stored: Vec<i64> = match element.value() {
        Value::PixelSequence(_) => {
            return Err(format!(
                "compressed (encapsulated) pixel data in transfer syntax {}: the reference model reads only uncompressed pixel data",
                object.meta().transfer_syntax().trim_end_matches('\0')
            ));
        }
        Value::Sequence(_) => return Err("Pixel Data is a sequence".to_string()),
        Value::Primitive(primitive) => raw_values(primitive, bits_allocated)?,
    };
    if stored.len() < count {
        return Err(format!(
            "{} pixel values for {rows} x {columns} x {samples} samples x {frames} frames",
            stored.len()
        ));
    }
    let mask: i64 = if bits_stored >= 63 {
        -1
    } else {
        (1i64 << bits_stored) - 1
    };
    let sign_bit: i64 = 1i64 << (bits_stored - 1);
    Ok(stored[..count]
        .iter()
        .map(|&raw| {
            let mut value = raw & mask;
            if signed && value & sign_bit != 0 {
                value -= 1i64 << bits_stored;
            }
            value as f64 * slope + intercept
        })
        .collect())
}

/// The stored values, unsigned, of BitsAllocated bits each.
fn raw_values(primitive: &PrimitiveValue, bits_allocated: u32) -> Result<Vec<i64>, String> {
    Ok(match (bits_allocated, primitive) {
        (16, PrimitiveValue::U16(v)) => v.iter().map(|&x| i64::from(x)).collect(),
        (16, PrimitiveValue::I16(v)) => v.iter().map(|&x| i64::from(x as u16)).collect(),
        (32, PrimitiveValue::U32(v)) => v.iter().map(|&x| i64::from(x)).collect(),
        (32, PrimitiveValue::I32(v)) => v.iter().map(|&x| i64::from(x as u32)).collect(),
        (8 | 16 | 32, other) => {
            let bytes = other.to_bytes();
            match bits_allocated {
                8 => bytes.iter().map(|&b| i64::from(b)).collect(),
                16 => bytes
                    .chunks_exact(2)
                    .map(|c| i64::from(u16::from_le_bytes([c[0], c[1]])))
                    .collect(),
                _ => bytes
                    .chunks_exact(4)
                    .map(|c| i64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                    .collect(),
            }
        }
        (bits, _) => {
            return Err(format!(
                "BitsAllocated {bits}: the reference model reads 8, 16 or 32 bits"
            ));
        }
    })
}
