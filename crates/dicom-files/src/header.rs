//! Part-10 checks and header reading.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use dicom::core::{Length, Tag};
use dicom::dictionary_std::tags;
use dicom::encoding::decode::{Decode, file_header_decoder};
use dicom::encoding::text::{DefaultCharacterSetCodec, TextCodec};
use dicom::encoding::transfer_syntax::{Codec, TransferSyntaxIndex};
use dicom::object::file::ReadPreamble;
use dicom::object::{DefaultDicomObject, OpenFileOptions};
use dicom::parser::DataSetReader;
use dicom::parser::dataset::DataToken;
use dicom::transfer_syntax::TransferSyntaxRegistry;

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
    /// What a search shows of the instance's patient, study and series.
    pub described: Described,
}

/// Descriptive attributes, each `None` when absent or empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Described {
    pub patient_id: Option<String>,
    pub patient_name: Option<String>,
    pub study_date: Option<String>,
    pub study_description: Option<String>,
    pub accession_number: Option<String>,
    pub series_number: Option<i64>,
    pub series_description: Option<String>,
    pub series_date: Option<String>,
    pub body_part: Option<String>,
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

/// [`read_instance_header`] of the bytes of `source` (a file, bytes in a `Cursor`); `name`
/// only names them in errors. Reads no further than the pixel data, twice: first to refuse
/// a value that declares more bytes than are left, before the `dicom` crate would allocate
/// that much, then to parse the header.
pub fn read_instance_header_from(
    mut source: impl Read + Seek,
    name: &Path,
) -> Result<InstanceHeader, HeaderError> {
    let io_error = |source| HeaderError::Io {
        path: name.to_path_buf(),
        source,
    };
    let parse_error = |message| HeaderError::Parse {
        path: name.to_path_buf(),
        message,
    };
    let size = source.seek(SeekFrom::End(0)).map_err(io_error)?;
    source.rewind().map_err(io_error)?;
    let mut prefix = Vec::with_capacity(PART10_PREFIX_LEN);
    (&mut source)
        .take(PART10_PREFIX_LEN as u64)
        .read_to_end(&mut prefix)
        .map_err(io_error)?;
    check_part10_prefix(&prefix).map_err(|reason| HeaderError::NotPart10 {
        path: name.to_path_buf(),
        reason,
    })?;
    check_declared_lengths(&mut source, size).map_err(parse_error)?;

    // The preamble is read and checked: the file meta group starts at the magic code.
    source
        .seek(SeekFrom::Start(PART10_PREFIX_LEN as u64))
        .map_err(io_error)?;
    let object = OpenFileOptions::new()
        .read_preamble(ReadPreamble::Never)
        .read_until(tags::PIXEL_DATA)
        .from_reader(DICM_MAGIC.chain(source))
        .map_err(|e| parse_error(e.to_string()))?;
    header_of(&object, name)
}

/// Refuses a value that declares more bytes than are left in `source` (positioned just
/// after the magic code, `size` bytes in all), before the `dicom` crate reads it: the crate
/// allocates and zeroes the declared length of a value before reading it, so that a file
/// of a few hundred bytes declaring a 4 GB element would cost 4 GB of memory (found by
/// fuzzing). Walks the element headers as the crate reads them: the file meta group, then
/// the data set in its transfer syntax up to the pixel data. Anything else it cannot read
/// is left for the crate to report.
fn check_declared_lengths(source: impl Read, size: u64) -> Result<(), String> {
    let position = Cell::new(PART10_PREFIX_LEN as u64);
    let mut source = Counting {
        inner: io::BufReader::new(source),
        position: &position,
    };
    let too_long = |what: String, len: u32, position: u64| {
        format!(
            "{what} declares {len} bytes, more than the {} left",
            size.saturating_sub(position)
        )
    };
    let fits = |len: u32, position: u64| u64::from(len) <= size.saturating_sub(position);

    // The file meta group, always explicit VR little endian, as `FileMetaTable` reads it:
    // its group length first, then elements until that many bytes are read.
    let decoder = file_header_decoder();
    let Ok((header, _)) = decoder.decode_header(&mut source) else {
        return Ok(());
    };
    let mut group_length = [0u8; 4];
    if header.tag != Tag(0x0002, 0x0000)
        || header.len != Length(4)
        || source.read_exact(&mut group_length).is_err()
    {
        return Ok(());
    }
    let group_length = u64::from(u32::from_le_bytes(group_length));
    let meta_start = position.get();
    let mut transfer_syntax = String::new();
    while position.get() - meta_start < group_length {
        let Ok((header, _)) = decoder.decode_header(&mut source) else {
            return Ok(());
        };
        let Some(len) = header.len.get() else {
            return Ok(());
        };
        if !fits(len, position.get()) {
            return Err(too_long(
                format!("element {}", header.tag),
                len,
                position.get(),
            ));
        }
        if header.tag == tags::TRANSFER_SYNTAX_UID {
            // Read as the crate reads it, whatever its length (it fits in the file), so
            // that both see the same transfer syntax.
            let mut uid = vec![0; len as usize];
            let Ok(text) = source
                .read_exact(&mut uid)
                .map(|()| DefaultCharacterSetCodec.decode(&uid))
            else {
                return Ok(());
            };
            let Ok(text) = text else {
                return Ok(());
            };
            transfer_syntax = text;
        } else if io::copy(&mut (&mut source).take(u64::from(len)), &mut io::sink()).is_err() {
            return Ok(());
        }
    }

    // The data set. With a data set codec (deflate), lengths are of the inflated bytes and
    // the file size does not bound them; the crate reads none such without its feature.
    let uid = transfer_syntax.trim_end_matches(|c: char| c.is_whitespace() || c == '\0');
    let Some(syntax) = TransferSyntaxRegistry.get(uid) else {
        return Ok(());
    };
    if matches!(syntax.codec(), Codec::Dataset(_)) {
        return Ok(());
    }
    let Ok(reader) = DataSetReader::new_with_ts(&mut source, syntax) else {
        return Ok(());
    };
    // Per open sequence, whether it is encapsulated pixel data (whose items are values).
    let mut open: Vec<bool> = Vec::new();
    for token in reader {
        // The reader reads a value when asked for the token after its header.
        let at = position.get();
        let Ok(token) = token else {
            return Ok(());
        };
        let (what, len) = match token {
            // The crate stops at the pixel data of the data set (`read_until`); inside
            // sequences, every value is read.
            DataToken::ElementHeader(header)
                if open.is_empty() && header.tag >= tags::PIXEL_DATA =>
            {
                return Ok(());
            }
            DataToken::SequenceStart { tag, .. } if open.is_empty() && tag >= tags::PIXEL_DATA => {
                return Ok(());
            }
            DataToken::PixelSequenceStart if open.is_empty() => return Ok(()),
            DataToken::ElementHeader(header) => (format!("element {}", header.tag), header.len),
            DataToken::ItemStart { len } if open.last() == Some(&true) => {
                ("a pixel data fragment".to_string(), len)
            }
            DataToken::SequenceStart { .. } => {
                open.push(false);
                continue;
            }
            DataToken::PixelSequenceStart => {
                open.push(true);
                continue;
            }
            DataToken::SequenceEnd => {
                open.pop();
                continue;
            }
            _ => continue,
        };
        if let Some(len) = len.get()
            && !fits(len, at)
        {
            return Err(too_long(what, len, at));
        }
    }
    Ok(())
}

/// Read [`identify_instance`] through the SOP Instance UID (0008,0018): enough to know which
/// instance a part is.
pub const THROUGH_SOP_INSTANCE_UID: Tag = Tag(0x0008, 0x0019);
/// Read [`identify_instance`] through the Instance Number (0020,0013), Modality included.
pub const THROUGH_INSTANCE_NUMBER: Tag = Tag(0x0020, 0x0014);
/// The most of an instance's first bytes [`identify_instance`] is given before it must
/// decide (a header is a few kilobytes; this bounds the memory of one part).
pub const MAX_IDENTITY_PREFIX: usize = 4 * 1024 * 1024;
/// Longest value read before the stop tag of a deflated data set, whose inflated size the
/// bytes received do not bound.
const MAX_INFLATED_VALUE: u32 = 16 * 1024 * 1024;

/// What an instance's first bytes say about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceIdentity {
    /// SOP Instance UID (0008,0018), or the file meta group's Media Storage SOP Instance UID
    /// when the data set lacks it.
    pub sop_instance_uid: String,
    /// Transfer Syntax UID (0002,0010).
    pub transfer_syntax: String,
    /// Modality (0008,0060), when read and present.
    pub modality: Option<String>,
    /// Instance Number (0020,0013), when read and present (and an integer).
    pub instance_number: Option<i64>,
}

/// Why [`identify_instance`] cannot identify an instance.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Not a Part-10 file at all, or a file meta group that cannot be read.
    #[error("not a DICOM Part-10 file: {0}")]
    NotPart10(String),
    /// The meta group names the instance, but its data set cannot be read.
    #[error(
        "instance {sop_instance_uid} (transfer syntax {transfer_syntax}) cannot be read: {reason}"
    )]
    Unreadable {
        sop_instance_uid: String,
        transfer_syntax: String,
        reason: String,
    },
}

/// Identifies an instance from its first bytes, reading its data set (in any transfer
/// syntax the `dicom` crate reads, deflated included) up to `through` (exclusive: e.g.
/// [`THROUGH_SOP_INSTANCE_UID`]). `complete`: `prefix` is the whole instance.
///
/// `Ok(None)`: more bytes are needed (never when `complete`, nor once `prefix` holds
/// [`MAX_IDENTITY_PREFIX`] bytes). A value declared longer than the bytes there are is not
/// read (see [`read_instance_header_from`]).
pub fn identify_instance(
    prefix: &[u8],
    complete: bool,
    through: Tag,
) -> Result<Option<InstanceIdentity>, IdentityError> {
    let last_try = complete || prefix.len() >= MAX_IDENTITY_PREFIX;
    let more = |error: IdentityError| if last_try { Err(error) } else { Ok(None) };
    if prefix.len() < PART10_PREFIX_LEN {
        return more(IdentityError::NotPart10(format!(
            "{} bytes, shorter than the 128-byte preamble and 'DICM'",
            prefix.len()
        )));
    }
    check_part10_prefix(prefix).map_err(IdentityError::NotPart10)?;

    let mut meta_bytes = io::Cursor::new(&prefix[PREAMBLE_LEN..]);
    let meta = match dicom::object::FileMetaTable::from_reader(&mut meta_bytes) {
        Ok(meta) => meta,
        Err(e) => return more(IdentityError::NotPart10(format!("file meta group: {e}"))),
    };
    let data_set_start = PREAMBLE_LEN + meta_bytes.position() as usize;
    let media_uid = non_empty(meta.media_storage_sop_instance_uid());
    let transfer_syntax = meta.transfer_syntax().to_string();
    let unreadable = |reason: String| IdentityError::Unreadable {
        sop_instance_uid: media_uid.clone().unwrap_or_else(|| "(unnamed)".into()),
        transfer_syntax: transfer_syntax.clone(),
        reason,
    };
    let Some(syntax) = TransferSyntaxRegistry.get(&transfer_syntax) else {
        return Err(unreadable(
            "the transfer syntax is unknown to the DICOM parser".into(),
        ));
    };
    let deflated = match syntax.codec() {
        Codec::Dataset(None) => {
            return Err(unreadable(
                "the DICOM parser cannot read data sets of this transfer syntax".into(),
            ));
        }
        Codec::Dataset(Some(_)) => true,
        _ => false,
    };
    if !deflated
        && let Err(reason) = check_declared_lengths(
            io::Cursor::new(&prefix[PART10_PREFIX_LEN..]),
            prefix.len() as u64,
        )
    {
        return more(unreadable(reason));
    }

    let data_set = &prefix[data_set_start..];
    let source: Box<dyn Read> = match syntax.codec() {
        Codec::Dataset(Some(adapter)) => {
            adapter.adapt_reader(Box::new(io::Cursor::new(data_set.to_vec())))
        }
        _ => Box::new(io::Cursor::new(data_set.to_vec())),
    };
    let reader = match DataSetReader::new_with_ts(source, syntax) {
        Ok(reader) => reader,
        Err(e) => return more(unreadable(e.to_string())),
    };
    let mut found = Found::default();
    let mut depth = 0usize;
    let mut wanted: Option<Tag> = None;
    let mut reached = false;
    for token in reader {
        let token = match token {
            Ok(token) => token,
            Err(e) => return more(unreadable(e.to_string())),
        };
        match token {
            DataToken::ElementHeader(header) if depth == 0 && header.tag >= through => {
                reached = true;
                break;
            }
            DataToken::SequenceStart { tag, .. } if depth == 0 && tag >= through => {
                reached = true;
                break;
            }
            DataToken::PixelSequenceStart if depth == 0 => {
                reached = true;
                break;
            }
            DataToken::ElementHeader(header) => {
                if deflated
                    && let Some(len) = header.len.get()
                    && len > MAX_INFLATED_VALUE
                {
                    return Err(unreadable(format!(
                        "element {} declares {len} bytes",
                        header.tag
                    )));
                }
                wanted = (depth == 0).then_some(header.tag);
            }
            DataToken::PrimitiveValue(value) => {
                if let Some(tag) = wanted.take() {
                    found.note(tag, &value);
                }
            }
            DataToken::SequenceStart { .. } | DataToken::PixelSequenceStart => depth += 1,
            DataToken::SequenceEnd => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    // The data set ended before `through`: all of it was read only if the prefix is whole.
    if !reached && !complete {
        return more(unreadable("the data set ends early".into()));
    }
    let Some(sop_instance_uid) = found.sop_instance_uid.or(media_uid.clone()) else {
        return Err(unreadable("it has no SOP Instance UID (0008,0018)".into()));
    };
    Ok(Some(InstanceIdentity {
        sop_instance_uid,
        transfer_syntax,
        modality: found.modality,
        instance_number: found.instance_number,
    }))
}

#[derive(Default)]
struct Found {
    sop_instance_uid: Option<String>,
    modality: Option<String>,
    instance_number: Option<i64>,
}

impl Found {
    fn note(&mut self, tag: Tag, value: &dicom::core::PrimitiveValue) {
        let text = non_empty(&value.to_str());
        if tag == tags::SOP_INSTANCE_UID {
            self.sop_instance_uid = text;
        } else if tag == tags::MODALITY {
            self.modality = text;
        } else if tag == tags::INSTANCE_NUMBER {
            self.instance_number = text.and_then(|t| t.parse().ok());
        }
    }
}

/// Counts the bytes read through it: the position in the file.
struct Counting<'a, R> {
    inner: R,
    position: &'a Cell<u64>,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.position.set(self.position.get() + n as u64);
        Ok(n)
    }
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
    let described = Described {
        patient_id: text(object, tags::PATIENT_ID),
        patient_name: text(object, tags::PATIENT_NAME),
        study_date: text(object, tags::STUDY_DATE),
        study_description: text(object, tags::STUDY_DESCRIPTION),
        accession_number: text(object, tags::ACCESSION_NUMBER),
        series_number: text(object, tags::SERIES_NUMBER).and_then(|n| n.parse().ok()),
        series_description: text(object, tags::SERIES_DESCRIPTION),
        series_date: text(object, tags::SERIES_DATE),
        body_part: text(object, tags::BODY_PART_EXAMINED),
    };
    Ok(InstanceHeader {
        sop_instance_uid,
        study_instance_uid,
        series_instance_uid,
        modality,
        instance_number,
        described,
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
    use std::io::Cursor;

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
        let from_bytes = read_instance_header_from(Cursor::new(&bytes), name).unwrap();
        assert_eq!(from_bytes, read_instance_header(&paths[1]).unwrap());
        assert_eq!(from_bytes.sop_instance_uid, series.sop_instance_uid(1));
        assert_eq!(from_bytes.modality.as_deref(), Some("MR"));

        // Cut inside the file meta group: a parse error that names the bytes.
        let err = read_instance_header_from(Cursor::new(&bytes[..PART10_PREFIX_LEN + 20]), name)
            .unwrap_err();
        assert!(matches!(err, HeaderError::Parse { .. }), "{err:?}");
        assert!(err.to_string().contains("part 2"), "{err}");
        let err = read_instance_header_from(Cursor::new(&bytes[..100]), name).unwrap_err();
        assert!(matches!(err, HeaderError::NotPart10 { .. }), "{err:?}");
    }

    /// A synthetic instance's bytes, and where its data set starts (after the meta group).
    fn instance() -> (Vec<u8>, usize) {
        let series = crate::synthetic::SyntheticSeries::new("CT", 1).with_size(2, 2);
        let bytes = series.instance_bytes(0).unwrap();
        // (0002,0000) UL, 4 bytes: the length of the rest of the meta group.
        let group_length = u32::from_le_bytes(bytes[140..144].try_into().unwrap());
        (bytes, 144 + group_length as usize)
    }

    fn refused(bytes: &[u8]) -> String {
        match read_instance_header_from(Cursor::new(bytes), Path::new("part 1")) {
            Err(HeaderError::Parse { message, .. }) => message,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_value_longer_than_the_file_is_refused_before_it_is_read() {
        // What fuzzing found: a 443-byte file whose (0002,0002) had an unknown VR, so a
        // 4-byte length (3.5 GB); the dicom crate allocated and zeroed all of it. The same
        // with UN, in the meta group, then in the data set.
        let (bytes, data_set) = instance();
        let mut meta = bytes[..158].to_vec();
        assert_eq!(
            &meta[144..148],
            b"\x02\x00\x01\x00",
            "(0002,0001) comes first"
        );
        meta.extend_from_slice(b"\x02\x00\x02\x00UN\x00\x00\xf0\xff\xff\xff1.2.840");
        let message = refused(&meta);
        assert!(
            message.contains("element (0002,0002) declares 4294967280 bytes, more than the 7 left"),
            "{message}"
        );

        let mut data = bytes[..data_set].to_vec();
        data.extend_from_slice(b"\x08\x00\x18\x00UT\x00\x00\xf0\xff\xff\xff1.2.3");
        let message = refused(&data);
        assert!(
            message.contains("element (0008,0018) declares 4294967280 bytes, more than the 5 left"),
            "{message}"
        );

        // The pixel data is not read: a file cut inside it still has a header.
        let cut = &bytes[..bytes.len() - 1];
        let header = read_instance_header_from(Cursor::new(cut), Path::new("cut")).unwrap();
        assert_eq!(header.modality.as_deref(), Some("CT"));
    }

    /// A Part-10 file of Implicit VR Little Endian whose Transfer Syntax UID value is
    /// `transfer_syntax`, then `data_set`.
    fn part10(transfer_syntax: &[u8], data_set: &[u8]) -> Vec<u8> {
        let mut meta = b"\x02\x00\x01\x00OB\x00\x00\x02\x00\x00\x00\x00\x01".to_vec();
        for (element, value) in [
            (0x0002u16, &b"1.2.840.10008.5.1.4.1.1.7\0"[..]),
            (0x0003, b"1.2.3.4\0"),
            (0x0010, transfer_syntax),
        ] {
            meta.extend_from_slice(&[0x02, 0x00]);
            meta.extend_from_slice(&element.to_le_bytes());
            meta.extend_from_slice(b"UI");
            meta.extend_from_slice(&(value.len() as u16).to_le_bytes());
            meta.extend_from_slice(value);
        }
        let mut bytes = vec![0; PREAMBLE_LEN];
        bytes.extend_from_slice(DICM_MAGIC);
        bytes.extend_from_slice(b"\x02\x00\x00\x00UL\x04\x00");
        bytes.extend_from_slice(&(meta.len() as u32).to_le_bytes());
        bytes.extend(meta);
        bytes.extend_from_slice(data_set);
        bytes
    }

    /// An element of an Implicit VR Little Endian data set.
    fn implicit(group: u16, element: u16, len: u32, value: &[u8]) -> Vec<u8> {
        let mut bytes = [group.to_le_bytes(), element.to_le_bytes()].concat();
        bytes.extend_from_slice(&len.to_le_bytes());
        bytes.extend_from_slice(value);
        bytes
    }

    #[test]
    fn the_transfer_syntax_is_read_as_the_dicom_crate_reads_it() {
        // Found by fuzzing: a Transfer Syntax UID padded to 84 bytes was not read by the
        // length check (it took at most 64), so the data set went unchecked; the crate
        // trims the padding (NULs, spaces) and reads it.
        let nuls = [&b"1.2.840.10008.1.2"[..], &[0; 67]].concat();
        let spaces = [&b"1.2.840.10008.1.2"[..], &[b' '; 71]].concat();
        for transfer_syntax in [nuls, spaces] {
            let sane = [
                implicit(0x0008, 0x0018, 6, b"1.2.3\0"),
                implicit(0x0020, 0x000D, 4, b"1.2\0"),
                implicit(0x0020, 0x000E, 6, b"1.2.4\0"),
            ]
            .concat();
            let header = read_instance_header_from(
                Cursor::new(part10(&transfer_syntax, &sane)),
                Path::new("sane"),
            )
            .unwrap();
            assert_eq!(header.sop_instance_uid, "1.2.3");

            let huge = implicit(0x0008, 0x0018, 0xFFFF_FFF0, b"1.2.3");
            let message = refused(&part10(&transfer_syntax, &huge));
            assert!(
                message.contains(
                    "element (0008,0018) declares 4294967280 bytes, more than the 5 left"
                ),
                "{message}"
            );
        }
    }
}
