//! Synthetic DICOM series written with the `dicom` crate (`InMemDicomObject` +
//! `FileMetaTableBuilder`), for tests, benchmarks and `nachet-dev`'s demo series.
//!
//! [`demo_series`] / [`ensure_demo_series`] give a demo CT series (fixed
//! UIDs [`DEMO_STUDY_UID`], [`DEMO_SERIES_UID`]).
//!
//! Each instance is a valid Part-10 file (Explicit VR Little Endian) of a single-frame,
//! 16-bit, MONOCHROME2 image (BitsStored 12). CT instances carry RescaleIntercept -1024 and
//! RescaleSlope 1, as real CT does. The pixels are a deterministic function of the
//! instance's index ([`pixel_value`]): a faint diagonal gradient, plus a bright centred disk
//! whose radius cycles with the index (none on every eighth instance), so that anything
//! computed from the pixels differs from slice to slice and is the same on every run.
//!
//! ```no_run
//! # fn demo(dir: &std::path::Path) -> Result<(), dicom_files::synthetic::SyntheticError> {
//! use dicom_files::synthetic::SyntheticSeries;
//! // 20 CT instances, 64 x 64, numbered 1..=20 except the third (no InstanceNumber) and
//! // the fourth (a second 2).
//! let mut numbers: Vec<Option<i64>> = (1..=20).map(Some).collect();
//! numbers[2] = None;
//! numbers[3] = Some(2);
//! let series = SyntheticSeries::new("CT", 20).with_instance_numbers(numbers);
//! let paths = series.write(dir)?;
//! assert_eq!(paths.len(), 20);
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};

use dicom::core::{DataElement, PrimitiveValue, VR};
use dicom::dictionary_std::{tags, uids};
use dicom::object::meta::FileMetaTableBuilder;
use dicom::object::{FileDicomObject, InMemDicomObject};

/// Background pixels: `BACKGROUND_BASE + ((row + col + 3 * index) % 64) * 4`.
pub const BACKGROUND_BASE: u16 = 900;
/// Disk pixels: `DISK_BASE + index % 100` (with BitsStored 12, at most 4095).
pub const DISK_BASE: u16 = 2000;

#[derive(Debug, thiserror::Error)]
pub enum SyntheticError {
    #[error("invalid synthetic series: {0}")]
    Invalid(String),
    #[error("cannot build instance {index}: {message}")]
    Build { index: usize, message: String },
    #[error("cannot write {path}: {message}")]
    Write { path: PathBuf, message: String },
}

/// A synthetic series: one instance per entry of `instance_numbers`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntheticSeries {
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    /// `None` writes no Modality element.
    pub modality: Option<String>,
    pub rows: u16,
    pub columns: u16,
    /// InstanceNumber of each instance, in order; `None` writes no InstanceNumber, and a
    /// value may repeat.
    pub instance_numbers: Vec<Option<i64>>,
    pub patient_id: String,
    pub patient_name: String,
    pub series_description: String,
}

impl SyntheticSeries {
    /// `count` instances of `modality`, 64 x 64, numbered 1..=count, with fresh UIDs.
    pub fn new(modality: &str, count: usize) -> Self {
        SyntheticSeries {
            study_instance_uid: new_uid(),
            series_instance_uid: new_uid(),
            modality: Some(modality.to_string()),
            rows: 64,
            columns: 64,
            instance_numbers: (1..=count as i64).map(Some).collect(),
            patient_id: "SYNTHETIC".to_string(),
            patient_name: "Synthetic^Series".to_string(),
            series_description: "synthetic series written with the dicom crate".to_string(),
        }
    }

    pub fn with_uids(mut self, study: impl Into<String>, series: impl Into<String>) -> Self {
        self.study_instance_uid = study.into();
        self.series_instance_uid = series.into();
        self
    }

    pub fn with_size(mut self, rows: u16, columns: u16) -> Self {
        self.rows = rows;
        self.columns = columns;
        self
    }

    /// Replaces the instance numbers (and so the number of instances).
    pub fn with_instance_numbers(mut self, numbers: Vec<Option<i64>>) -> Self {
        self.instance_numbers = numbers;
        self
    }

    pub fn without_modality(mut self) -> Self {
        self.modality = None;
        self
    }

    pub fn len(&self) -> usize {
        self.instance_numbers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.instance_numbers.is_empty()
    }

    /// SOP Instance UID of the instance at `index`: `{series uid}.{index + 1}`.
    pub fn sop_instance_uid(&self, index: usize) -> String {
        format!("{}.{}", self.series_instance_uid, index + 1)
    }

    /// Size in bytes of one instance's pixel data.
    pub fn pixel_data_len(&self) -> usize {
        self.rows as usize * self.columns as usize * 2
    }

    /// The Part-10 file of the instance at `index`, in memory (one instance only).
    pub fn instance_bytes(&self, index: usize) -> Result<Vec<u8>, SyntheticError> {
        let object = self.instance(index)?;
        let mut bytes = Vec::with_capacity(self.pixel_data_len() + 1024);
        object
            .write_all(&mut bytes)
            .map_err(|e| SyntheticError::Build {
                index,
                message: e.to_string(),
            })?;
        Ok(bytes)
    }

    /// Writes every instance into `dir` (created if needed) as `{index:05}.dcm`, one at a
    /// time, and returns the paths in index order.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, SyntheticError> {
        std::fs::create_dir_all(dir).map_err(|e| SyntheticError::Write {
            path: dir.to_path_buf(),
            message: e.to_string(),
        })?;
        (0..self.len())
            .map(|index| {
                let path = dir.join(format!("{index:05}.dcm"));
                self.instance(index)?
                    .write_to_file(&path)
                    .map_err(|e| SyntheticError::Write {
                        path: path.clone(),
                        message: e.to_string(),
                    })?;
                Ok(path)
            })
            .collect()
    }

    /// The series' study and series UIDs.
    pub fn key(&self) -> dicom_series::ports::SeriesKey {
        dicom_series::ports::SeriesKey {
            study_instance_uid: self.study_instance_uid.clone(),
            series_instance_uid: self.series_instance_uid.clone(),
        }
    }

    /// The series as a DICOM server lists it.
    pub fn listing(&self) -> Vec<dicom_series::ports::InstanceListing> {
        (0..self.len())
            .map(|i| dicom_series::ports::InstanceListing {
                sop_instance_uid: self.sop_instance_uid(i),
                instance_number: self.instance_numbers[i],
                modality: self.modality.clone(),
            })
            .collect()
    }

    /// Writes every instance, in order, into an archive of the series (blocking), as a
    /// DICOM source would.
    pub fn archive_into(
        &self,
        writer: Box<dyn dicom_series::ports::ArchiveWriter>,
    ) -> Result<dicom_series::ports::Archive, SyntheticError> {
        let failed = |e: dicom_series::ports::ArchiveError| SyntheticError::Write {
            path: PathBuf::from("(archive)"),
            message: e.to_string(),
        };
        let mut archive = dicom_series::SeriesArchive::new(Some(self.len() as u64), writer);
        for (index, instance) in self.listing().into_iter().enumerate() {
            let bytes = self.instance_bytes(index)?;
            archive
                .begin_instance(instance, Some(bytes.len() as u64))
                .map_err(failed)?;
            archive.write(&bytes).map_err(failed)?;
        }
        archive.finish().map_err(failed)
    }

    /// The instance at `index` as a DICOM object with its file meta group.
    pub fn instance(
        &self,
        index: usize,
    ) -> Result<FileDicomObject<InMemDicomObject>, SyntheticError> {
        if index >= self.len() {
            return Err(SyntheticError::Invalid(format!(
                "instance {index} of a series of {}",
                self.len()
            )));
        }
        if self.rows == 0 || self.columns == 0 {
            return Err(SyntheticError::Invalid(format!(
                "an image of {} x {} pixels",
                self.rows, self.columns
            )));
        }
        let modality = self.modality.as_deref();
        let mut object = InMemDicomObject::new_empty();
        let mut put = |tag, vr, value: PrimitiveValue| {
            object.put(DataElement::new(tag, vr, value));
        };
        put(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100".into());
        put(
            tags::IMAGE_TYPE,
            VR::CS,
            PrimitiveValue::Strs(["DERIVED", "SECONDARY"].map(String::from).into()),
        );
        put(tags::SOP_CLASS_UID, VR::UI, sop_class_uid(modality).into());
        put(
            tags::SOP_INSTANCE_UID,
            VR::UI,
            self.sop_instance_uid(index).into(),
        );
        put(tags::STUDY_DATE, VR::DA, "20240101".into());
        put(tags::STUDY_TIME, VR::TM, "120000".into());
        if let Some(modality) = modality {
            put(tags::MODALITY, VR::CS, modality.into());
        }
        put(
            tags::SERIES_DESCRIPTION,
            VR::LO,
            self.series_description.as_str().into(),
        );
        put(
            tags::PATIENT_NAME,
            VR::PN,
            self.patient_name.as_str().into(),
        );
        put(tags::PATIENT_ID, VR::LO, self.patient_id.as_str().into());
        put(
            tags::STUDY_INSTANCE_UID,
            VR::UI,
            self.study_instance_uid.as_str().into(),
        );
        put(
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            self.series_instance_uid.as_str().into(),
        );
        put(tags::STUDY_ID, VR::SH, "1".into());
        put(tags::SERIES_NUMBER, VR::IS, "1".into());
        if let Some(number) = self.instance_numbers[index] {
            put(tags::INSTANCE_NUMBER, VR::IS, number.to_string().into());
        }
        put(tags::SAMPLES_PER_PIXEL, VR::US, 1_u16.into());
        put(
            tags::PHOTOMETRIC_INTERPRETATION,
            VR::CS,
            "MONOCHROME2".into(),
        );
        put(tags::ROWS, VR::US, self.rows.into());
        put(tags::COLUMNS, VR::US, self.columns.into());
        put(tags::BITS_ALLOCATED, VR::US, 16_u16.into());
        put(tags::BITS_STORED, VR::US, 12_u16.into());
        put(tags::HIGH_BIT, VR::US, 11_u16.into());
        put(tags::PIXEL_REPRESENTATION, VR::US, 0_u16.into());
        if modality == Some("CT") {
            put(tags::RESCALE_INTERCEPT, VR::DS, "-1024".into());
            put(tags::RESCALE_SLOPE, VR::DS, "1".into());
            put(tags::RESCALE_TYPE, VR::LO, "HU".into());
        }
        let pixels: Vec<u16> = (0..self.rows)
            .flat_map(|row| (0..self.columns).map(move |col| (row, col)))
            .map(|(row, col)| pixel_value(index, row, col, self.rows, self.columns))
            .collect();
        put(tags::PIXEL_DATA, VR::OW, PrimitiveValue::U16(pixels.into()));

        object
            .with_meta(FileMetaTableBuilder::new().transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN))
            .map_err(|e| SyntheticError::Build {
                index,
                message: e.to_string(),
            })
    }
}

/// Study Instance UID of the demo series ([`demo_series`]), fixed so that documentation
/// can name it.
pub const DEMO_STUDY_UID: &str = "2.25.92834429778127272953255075500809486819";
/// Series Instance UID of the demo series ([`demo_series`]).
pub const DEMO_SERIES_UID: &str = "2.25.322150395311766848766797408493014267706";

/// A demo series: 16 CT instances of 128 x 128, numbered 1..=16, with
/// the fixed UIDs [`DEMO_STUDY_UID`] and [`DEMO_SERIES_UID`]; the same bytes on every
/// machine.
pub fn demo_series() -> SyntheticSeries {
    let mut series = SyntheticSeries::new("CT", 16)
        .with_size(128, 128)
        .with_uids(DEMO_STUDY_UID, DEMO_SERIES_UID);
    series.patient_id = "DEMO".to_string();
    series.patient_name = "Demo^Synthetic".to_string();
    series.series_description = "synthetic demo CT series (not a patient)".to_string();
    series
}

/// Writes the demo series into `{root}/demo-ct/` unless it is already complete there
/// (a folder of the expected number of `.dcm` files); returns the folder. A partial
/// folder (an interrupted first start) is written again.
pub fn ensure_demo_series(root: &Path) -> Result<PathBuf, SyntheticError> {
    let series = demo_series();
    let dir = root.join("demo-ct");
    let complete = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "dcm"))
                .count()
                == series.len()
        })
        .unwrap_or(false);
    if !complete {
        // Write next to the final folder, then move it in place: never half a series.
        let staging = root.join(format!(".demo-ct-{}", uuid::Uuid::new_v4().simple()));
        let written = series.write(&staging).and_then(|_| {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::rename(&staging, &dir).map_err(|e| SyntheticError::Write {
                path: dir.clone(),
                message: e.to_string(),
            })
        });
        if written.is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        written?;
    }
    Ok(dir)
}

/// The stored value of pixel (`row`, `col`) of the instance at `index` in a `rows` x `cols`
/// image: a gradient background, and a bright disk centred in the image whose radius is
/// `(index % 8) / 16` of the smaller side (no disk when `index % 8 == 0`).
pub fn pixel_value(index: usize, row: u16, col: u16, rows: u16, cols: u16) -> u16 {
    let radius = (index % 8) as f64 / 16.0 * f64::from(rows.min(cols));
    let dy = f64::from(row) + 0.5 - f64::from(rows) / 2.0;
    let dx = f64::from(col) + 0.5 - f64::from(cols) / 2.0;
    if dx * dx + dy * dy < radius * radius {
        DISK_BASE + (index % 100) as u16
    } else {
        BACKGROUND_BASE + ((usize::from(row) + usize::from(col) + 3 * index) % 64) as u16 * 4
    }
}

/// A new UID under the `2.25` root (a random UUID as a decimal integer), at most 44
/// characters, leaving room for suffixes within the 64 allowed.
pub fn new_uid() -> String {
    format!("2.25.{}", uuid::Uuid::new_v4().as_u128())
}

fn sop_class_uid(modality: Option<&str>) -> &'static str {
    match modality {
        Some("CT") => uids::CT_IMAGE_STORAGE,
        Some("MR") => uids::MR_IMAGE_STORAGE,
        Some("CR") => uids::COMPUTED_RADIOGRAPHY_IMAGE_STORAGE,
        Some("DX") => uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
        _ => uids::SECONDARY_CAPTURE_IMAGE_STORAGE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read_instance_header;

    #[test]
    fn instances_are_part10_files_with_the_requested_attributes() {
        let dir = tempfile::tempdir().unwrap();
        let series = SyntheticSeries::new("CT", 4)
            .with_size(16, 24)
            .with_instance_numbers(vec![Some(1), None, Some(1), Some(-3)]);
        let paths = series.write(dir.path()).unwrap();
        assert_eq!(paths.len(), 4);
        let headers: Vec<_> = paths
            .iter()
            .map(|p| read_instance_header(p).unwrap())
            .collect();
        for (index, header) in headers.iter().enumerate() {
            assert_eq!(header.sop_instance_uid, series.sop_instance_uid(index));
            assert_eq!(header.study_instance_uid, series.study_instance_uid);
            assert_eq!(header.series_instance_uid, series.series_instance_uid);
            assert_eq!(header.modality.as_deref(), Some("CT"));
        }
        let numbers: Vec<_> = headers.iter().map(|h| h.instance_number).collect();
        assert_eq!(numbers, vec![Some(1), None, Some(1), Some(-3)]);

        // The file is what instance_bytes gives, and holds the pixels of pixel_value.
        let bytes = std::fs::read(&paths[3]).unwrap();
        assert_eq!(bytes, series.instance_bytes(3).unwrap());
        let object = dicom::object::open_file(&paths[3]).unwrap();
        let pixels = object
            .element(tags::PIXEL_DATA)
            .unwrap()
            .to_bytes()
            .unwrap();
        assert_eq!(pixels.len(), series.pixel_data_len());
        let first = u16::from_le_bytes([pixels[0], pixels[1]]);
        assert_eq!(first, pixel_value(3, 0, 0, 16, 24));
    }

    #[test]
    fn the_pattern_is_deterministic_and_varies_with_the_index() {
        let series = SyntheticSeries::new("MR", 9).with_size(32, 32);
        let again = series.clone();
        assert_eq!(
            series.instance_bytes(5).unwrap(),
            again.instance_bytes(5).unwrap()
        );
        assert_ne!(
            series.instance_bytes(0).unwrap()[400..],
            series.instance_bytes(1).unwrap()[400..]
        );
        // No disk on index 0 or 8, a disk at the centre otherwise.
        assert!(pixel_value(0, 16, 16, 32, 32) < DISK_BASE);
        assert!(pixel_value(8, 16, 16, 32, 32) < DISK_BASE);
        assert!(pixel_value(1, 16, 16, 32, 32) >= DISK_BASE);
        assert!(pixel_value(7, 0, 0, 32, 32) < DISK_BASE);
    }

    #[test]
    fn a_series_without_modality_has_no_modality_element() {
        let dir = tempfile::tempdir().unwrap();
        let series = SyntheticSeries::new("CT", 1).without_modality();
        let paths = series.write(dir.path()).unwrap();
        assert_eq!(read_instance_header(&paths[0]).unwrap().modality, None);
    }

    #[test]
    fn the_demo_series_is_written_once_and_found_by_the_folder_source() {
        let root = tempfile::tempdir().unwrap();
        let dir = ensure_demo_series(root.path()).unwrap();
        let first = std::fs::read(dir.join("00000.dcm")).unwrap();
        let modified = std::fs::metadata(dir.join("00000.dcm"))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(ensure_demo_series(root.path()).unwrap(), dir);
        assert_eq!(
            std::fs::metadata(dir.join("00000.dcm"))
                .unwrap()
                .modified()
                .unwrap(),
            modified,
            "not written twice"
        );
        assert_eq!(first, demo_series().instance_bytes(0).unwrap());
        let header = read_instance_header(&dir.join("00015.dcm")).unwrap();
        assert_eq!(header.study_instance_uid, DEMO_STUDY_UID);
        assert_eq!(header.series_instance_uid, DEMO_SERIES_UID);
        assert_eq!(header.instance_number, Some(16));
        // A partial folder is completed.
        std::fs::remove_file(dir.join("00003.dcm")).unwrap();
        ensure_demo_series(root.path()).unwrap();
        assert!(dir.join("00003.dcm").is_file());
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 1);
    }

    #[test]
    fn uids_are_valid_and_short_enough() {
        let uid = new_uid();
        assert!(uid.len() <= 44, "{uid}");
        assert!(uid.chars().all(|c| c.is_ascii_digit() || c == '.'));
        assert_ne!(uid, new_uid());
    }
}
