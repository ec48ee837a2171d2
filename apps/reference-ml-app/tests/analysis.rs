//! The reference computation on real (pydicom's) and synthetic instances.

use std::io::Write;
use std::path::{Path, PathBuf};

use dicom_files::synthetic::{SyntheticSeries, new_uid};
use reference_ml_app::analysis::analyse;
use reference_ml_app::{Status, model_type};
use serde_json::Value;

/// A stored ZIP of the given (entry name, file) pairs.
fn zip_of(dir: &Path, entries: &[(&str, PathBuf)]) -> PathBuf {
    let path = dir.join(format!("{}.zip", new_uid()));
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    for (name, file) in entries {
        zip.start_file(
            *name,
            zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored),
        )
        .unwrap();
        zip.write_all(&std::fs::read(file).unwrap()).unwrap();
    }
    zip.finish().unwrap();
    path
}

fn real(name: &str) -> PathBuf {
    test_support::dicom_test_files().join(name)
}

fn run(zip: &Path, model: &str, modality: &str) -> (Status, Value) {
    let outcome = analyse(zip, model_type(model).unwrap(), modality);
    (outcome.status, outcome.result)
}

#[test]
fn synthetic_ct_slices_are_labelled_from_their_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let series = SyntheticSeries::new("CT", 9).with_size(64, 64);
    let files = series.write(&dir.path().join("files")).unwrap();
    let names: Vec<String> = (1..=9).map(|n| format!("CT_{n}.dcm")).collect();
    let entries: Vec<(&str, PathBuf)> = names
        .iter()
        .map(String::as_str)
        .zip(files.iter().cloned())
        .collect();
    let zip = zip_of(dir.path(), &entries);
    let (status, result) = run(&zip, "lung_tumor_segmentation", "CT");
    assert_eq!(status, Status::Completed, "{result}");
    assert_eq!(result["referenceModel"], true);
    let output = result["output"].as_array().unwrap();
    assert_eq!(output.len(), 9);
    for (index, slice) in output.iter().enumerate() {
        assert_eq!(slice["slice"], index + 1);
        assert_eq!(slice["entry"], names[index]);
        assert_eq!(slice["instanceNumber"], index + 1);
        assert!(slice["accuracy"].is_null());
        assert_eq!(slice["pixels"], 64 * 64);
        // Slices 0 and 8 have no disk; the others a disk of 2000+ stored, 976+ HU.
        let expected = if index % 8 == 0 {
            "no_bright_region"
        } else {
            "bright_region"
        };
        assert_eq!(slice["classification"], expected, "slice {index}: {slice}");
        assert!(slice["segmentedFraction"].as_f64().is_some());
    }
    // Rescaled with the intercept: the background starts at 900 - 1024 HU.
    assert_eq!(output[0]["min"], -124.0);
    assert_eq!(result["summary"]["slices"], 9);
    assert_eq!(result["summary"]["positiveSlices"], 7);
    assert_eq!(result["summary"]["classification"], "bright_region");
}

#[test]
fn real_ct_and_mr_instances_give_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let zip = zip_of(dir.path(), &[("CT_1.dcm", real("CT_small.dcm"))]);
    let (status, result) = run(&zip, "abdominal_organs_segmentation", "CT");
    assert_eq!(status, Status::Completed, "{result}");
    let slice = &result["output"][0];
    assert_eq!(slice["pixels"], 128 * 128);
    assert!(slice["std"].as_f64().unwrap() > 0.0, "{slice}");
    assert!(slice["min"].as_f64().unwrap() < slice["max"].as_f64().unwrap());

    // The same MR image in three encodings gives the same statistics.
    let mut stats = Vec::new();
    for file in [
        "MR_small.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_implicit.dcm",
    ] {
        let zip = zip_of(dir.path(), &[("MR_1.dcm", real(file))]);
        let (status, result) = run(&zip, "brain_tumor_classification", "MR");
        assert_eq!(status, Status::Completed, "{file}: {result}");
        let s = &result["output"][0];
        stats.push((
            s["mean"].clone(),
            s["std"].clone(),
            s["min"].clone(),
            s["max"].clone(),
        ));
    }
    assert_eq!(stats[0], stats[1], "big endian");
    assert_eq!(stats[0], stats[2], "implicit VR");
}

#[test]
fn a_modality_the_model_does_not_take_is_not_supported() {
    let dir = tempfile::tempdir().unwrap();
    let zip = zip_of(dir.path(), &[("CT_1.dcm", real("CT_small.dcm"))]);
    // The requested modality.
    let (status, result) = run(&zip, "chest_xray_classification", "CT");
    assert_eq!(status, Status::NotSupported);
    assert!(
        result["reason"].as_str().unwrap().contains("CR or DX"),
        "{result}"
    );
    // The modality found in the instances, when the request claims another.
    let (status, result) = run(&zip, "brain_tumor_segmentation", "MR");
    assert_eq!(status, Status::NotSupported);
    assert!(
        result["reason"].as_str().unwrap().contains("CT_1.dcm"),
        "{result}"
    );
}

#[test]
fn unreadable_uploads_fail_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.zip");
    std::fs::write(&garbage, b"PK\x03\x04 this is not really a zip").unwrap();
    let (status, result) = run(&garbage, "lung_tumor_segmentation", "CT");
    assert_eq!(status, Status::Failed);
    assert!(
        result["reason"]
            .as_str()
            .unwrap()
            .contains("not a readable ZIP"),
        "{result}"
    );

    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not DICOM at all").unwrap();
    let zip = zip_of(dir.path(), &[("CT_1.dcm", text)]);
    let (status, result) = run(&zip, "lung_tumor_segmentation", "CT");
    assert_eq!(status, Status::Failed);
    assert!(
        result["reason"].as_str().unwrap().contains("CT_1.dcm"),
        "{result}"
    );

    let zip = zip_of(dir.path(), &[("MR_1.dcm", real("MR_small_RLE.dcm"))]);
    let (status, result) = run(&zip, "brain_tumor_segmentation", "MR");
    assert_eq!(status, Status::Failed);
    assert!(
        result["reason"].as_str().unwrap().contains("compressed"),
        "{result}"
    );

    let empty = zip_of(dir.path(), &[]);
    let (status, result) = run(&empty, "lung_tumor_segmentation", "CT");
    assert_eq!(status, Status::Failed);
    assert!(
        result["reason"].as_str().unwrap().contains("no instance"),
        "{result}"
    );
}
