//! Part-10 checks and header reading.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use dicom::dictionary_std::tags;
use dicom::object::file::ReadPreamble;
use dicom::object::{DefaultDicomObject, OpenFileOptions};

/// Length of the Part-10 preamble (any bytes, often zeros).
pub const PREAMBLE_LEN: usize = 128;
/// The magic code that follows the preamble.
pub const DICM_MAGIC: &[u8; 4] = b"DICM";
/// Bytes needed to tell a Part-10 file: preamble plus magic code.
pub const PART10_PREFIX_LEN: usize = PREAMBLE_LEN + DICM_MAGIC.len();

/// The attributes that identify an instance and name it in an archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceHeader {
    /// SOP Instance UID (0008,0018); the file meta group's Media Storage SOP Instance UID
    /// when the data set lacks it.
    pub sop_instance_uid: String,
    /// Study Instance UID (0020,000D).
    pub study_instance_uid: String,
    /// Series Instance UID (0020,000E).
    pub series_instance_uid: String,
    /// Modality (0008,0060); `None` when absent or empty.
    pub modality: Option<String>,
    /// Instance Number (0020,0013); `None` when absent, empty or not an integer.
    pub instance_number: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is not a DICOM Part-10 file: {reason}")]
    NotPart10 { path: PathBuf, reason: String },
    #[error("cannot parse the DICOM header of {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path} has no {attribute}")]
    Missing {
        path: PathBuf,
        attribute: &'static str,
    },
}

/// Checks that `prefix` (the first bytes of a file) is a Part-10 prefix: at least
/// [`PART10_PREFIX_LEN`] bytes with `DICM` at offset 128. The error says what was found.
pub fn check_part10_prefix(prefix: &[u8]) -> Result<(), String> {
    if prefix.len() < PART10_PREFIX_LEN {
        return Err(format!(
            "{} bytes, shorter than the 128-byte preamble and 'DICM'",
            prefix.len()
        ));
    }
    let magic = &prefix[PREAMBLE_LEN..PART10_PREFIX_LEN];
    if magic != DICM_MAGIC {
        return Err(format!(
            "no 'DICM' after the 128-byte preamble (found {:?}; first bytes {:?})",
            String::from_utf8_lossy(magic),
            String::from_utf8_lossy(&prefix[..prefix.len().min(40)])
        ));
    }
    Ok(())
}

/// Whether the file at `path` starts with a Part-10 prefix (I/O errors are errors).
pub fn is_part10(path: &Path) -> io::Result<bool> {
    let mut prefix = Vec::with_capacity(PART10_PREFIX_LEN);
    File::open(path)?
        .take(PART10_PREFIX_LEN as u64)
        .read_to_end(&mut prefix)?;
    Ok(check_part10_prefix(&prefix).is_ok())
}

/// Reads the identifying attributes of the Part-10 file at `path`, parsing up to (not
/// including) the pixel data. Checks the Part-10 prefix first, so that a file that is not
/// DICOM (an HTML error page, a part that still carries MIME framing) is named as such.
pub fn read_instance_header(path: &Path) -> Result<InstanceHeader, HeaderError> {
    let file = File::open(path).map_err(|source| HeaderError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    read_instance_header_from(file, path)
}

/// [`read_instance_header`] of the bytes of `reader` (a file, bytes in memory); `name`
/// only names them in errors. Reads no further than the pixel data.
pub fn read_instance_header_from(
    mut reader: impl Read,
    name: &Path,
) -> Result<InstanceHeader, HeaderError> {
    let mut prefix = Vec::with_capacity(PART10_PREFIX_LEN);
    (&mut reader)
        .take(PART10_PREFIX_LEN as u64)
        .read_to_end(&mut prefix)
        .map_err(|source| HeaderError::Io {
            path: name.to_path_buf(),
            source,
        })?;
    check_part10_prefix(&prefix).map_err(|reason| HeaderError::NotPart10 {
        path: name.to_path_buf(),
        reason,
    })?;

    // The preamble is read and checked: the file meta group starts at the magic code.
    let object = OpenFileOptions::new()
        .read_preamble(ReadPreamble::Never)
        .read_until(tags::PIXEL_DATA)
        .from_reader(DICM_MAGIC.chain(reader))
        .map_err(|e| HeaderError::Parse {
            path: name.to_path_buf(),
            message: e.to_string(),
        })?;
    header_of(&object, name)
}

/// The identifying attributes of a parsed object (`path` only names it in errors).
pub(crate) fn header_of(
    object: &DefaultDicomObject,
    path: &Path,
) -> Result<InstanceHeader, HeaderError> {
    let missing = |attribute| HeaderError::Missing {
        path: path.to_path_buf(),
        attribute,
    };
    let sop_instance_uid = text(object, tags::SOP_INSTANCE_UID)
        .or_else(|| non_empty(object.meta().media_storage_sop_instance_uid()))
        .ok_or_else(|| missing("SOP Instance UID (0008,0018)"))?;
    let study_instance_uid = text(object, tags::STUDY_INSTANCE_UID)
        .ok_or_else(|| missing("Study Instance UID (0020,000D)"))?;
    let series_instance_uid = text(object, tags::SERIES_INSTANCE_UID)
        .ok_or_else(|| missing("Series Instance UID (0020,000E)"))?;
    let modality = text(object, tags::MODALITY);
    let instance_number = text(object, tags::INSTANCE_NUMBER).and_then(|value| {
        let parsed = value.parse::<i64>().ok();
        if parsed.is_none() {
            tracing::warn!(path = %path.display(), value, "InstanceNumber is not an integer: treated as missing");
        }
        parsed
    });
    Ok(InstanceHeader {
        sop_instance_uid,
        study_instance_uid,
        series_instance_uid,
        modality,
        instance_number,
    })
}

/// The element's value as trimmed text (DICOM pads with spaces and NULs), `None` when
/// absent, empty or not text.
fn text(object: &DefaultDicomObject, tag: dicom::core::Tag) -> Option<String> {
    let element = object.element_opt(tag).ok()??;
    let value = element.to_str().ok()?;
    non_empty(&value)
}

fn non_empty(value: &str) -> Option<String> {
    let trimmed = value.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_needs_the_preamble_and_the_magic_code() {
        let mut good = vec![0u8; PREAMBLE_LEN];
        good.extend_from_slice(b"DICM");
        assert!(check_part10_prefix(&good).is_ok());

        // Any preamble is fine (pydicom's MR_small.dcm has a TIFF header there).
        let mut tiff = b"II*\0".to_vec();
        tiff.resize(PREAMBLE_LEN, 7);
        tiff.extend_from_slice(b"DICM");
        assert!(check_part10_prefix(&tiff).is_ok());

        let short = check_part10_prefix(&good[..100]).unwrap_err();
        assert!(short.contains("100 bytes"), "{short}");

        let mut framed = b"--boundary\r\nContent-Type: application/dicom\r\n\r\n".to_vec();
        framed.extend_from_slice(&good);
        let err = check_part10_prefix(&framed).unwrap_err();
        assert!(err.contains("no 'DICM'"), "{err}");
        assert!(err.contains("--boundary"), "{err}");
    }

    #[test]
    fn bytes_in_memory_read_as_the_same_file_does() {
        let series = crate::synthetic::SyntheticSeries::new("MR", 2).with_size(4, 4);
        let dir = tempfile::tempdir().unwrap();
        let paths = series.write(dir.path()).unwrap();
        let bytes = series.instance_bytes(1).unwrap();
        let name = Path::new("part 2");
        let from_bytes = read_instance_header_from(&bytes[..], name).unwrap();
        assert_eq!(from_bytes, read_instance_header(&paths[1]).unwrap());
        assert_eq!(from_bytes.sop_instance_uid, series.sop_instance_uid(1));
        assert_eq!(from_bytes.modality.as_deref(), Some("MR"));

        // Cut inside the file meta group: a parse error that names the bytes.
        let err = read_instance_header_from(&bytes[..PART10_PREFIX_LEN + 20], name).unwrap_err();
        assert!(matches!(err, HeaderError::Parse { .. }), "{err:?}");
        assert!(err.to_string().contains("part 2"), "{err}");
        let err = read_instance_header_from(&bytes[..100], name).unwrap_err();
        assert!(matches!(err, HeaderError::NotPart10 { .. }), "{err:?}");
    }
}
