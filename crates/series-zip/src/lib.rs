//! The series ZIP of contract 2.3, with the `zip` crate (pinned; only this crate uses it to
//! write).
//!
//! [`ZipArchiver`] opens `dicom_{study}_{series}.zip` in the folder it is given as a
//! [`ZipEntryWriter`], which the DICOM source fills entry by entry as the instances arrive
//! (the entry names are the domain's: see [`dicom_series::archive`]):
//!
//! - entries are *stored* (no compression: DICOM pixel data hardly compresses, and the
//!   archive is built on the critical path); the `zip` crate computes each entry's CRC-32 as
//!   the bytes go through and, the file being seekable, goes back to write the CRC and sizes
//!   into the entry's local header when the entry ends (no data descriptor). Each byte is
//!   written to disk once, through one bounded buffer: memory does not grow with an
//!   instance or the series;
//! - an entry announced at 4 GiB or more is written as zip64 (an entry that turns out that
//!   large without having been announced fails the archive), and the archive switches to
//!   zip64 by itself when its offsets pass 4 GiB;
//! - an entry announced with a size must get exactly that many bytes;
//! - entries whose final name is known only at the end (a series with missing or repeated
//!   InstanceNumbers) are renamed when the archive finishes: the archive is copied once
//!   more, each entry's bytes as they are (`raw_copy_file_rename`: CRC, sizes and options
//!   kept), into a new temporary file; a series whose every entry was named on arrival
//!   skips this;
//! - the archive is written under a temporary name (`.dicom_..._{uuid}.partial` in the same
//!   folder) and renamed to its final name only when complete (not synced: it lives only as
//!   long as its attempt, in a scratch folder never used again); a writer dropped before
//!   [`finish`](ArchiveWriter::finish) (any error, a cancelled attempt) removes its file,
//!   so nothing partial is ever visible under the final name.
//!
//! [`archive_files`] archives files already on disk (tests, tools).

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use dicom_series::io_reason;
use dicom_series::ports::{Archive, ArchiveError, ArchiveWriter, SeriesArchiver, SeriesKey};
use zip::CompressionMethod;
use zip::write::SimpleFileOptions;

/// Copy buffer of [`archive_files`].
pub const COPY_BUFFER_BYTES: usize = 256 * 1024;
/// Output buffer of the archive file.
pub const OUTPUT_BUFFER_BYTES: usize = 1024 * 1024;
/// Entries of this size or more are written as zip64.
const ZIP64_ENTRY_THRESHOLD: u64 = u32::MAX as u64;

/// See the [crate documentation](crate).
#[derive(Clone, Debug, Default)]
pub struct ZipArchiver;

impl ZipArchiver {
    pub fn new() -> Self {
        ZipArchiver
    }
}

#[async_trait]
impl SeriesArchiver for ZipArchiver {
    async fn create(
        &self,
        series: &SeriesKey,
        dir: &Path,
    ) -> Result<Box<dyn ArchiveWriter>, ArchiveError> {
        let series = series.clone();
        let dir = dir.to_path_buf();
        let writer = tokio::task::spawn_blocking(move || ZipEntryWriter::create(&series, &dir))
            .await
            .map_err(|e| ArchiveError::Write(format!("the archiving thread failed: {e}")))??;
        Ok(Box::new(writer))
    }
}

/// `dicom_{study}_{series}.zip`; characters other than letters, digits, `.`, `-` and `_`
/// (never in a valid UID) become `_`, so a UID cannot reach outside the folder.
pub fn archive_file_name(series: &SeriesKey) -> String {
    format!(
        "dicom_{}_{}.zip",
        file_name_safe(&series.study_instance_uid),
        file_name_safe(&series.series_instance_uid)
    )
}

fn file_name_safe(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Removes the temporary file unless [`Partial::keep`] was called.
struct Partial {
    path: PathBuf,
    kept: bool,
}

impl Partial {
    fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.kept
            && let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), "cannot remove a partial archive: {e}");
        }
    }
}

/// A ZIP being written entry by entry (blocking); see the [crate documentation](crate).
pub struct ZipEntryWriter {
    // Dropped before `partial`, which then removes the file.
    zip: zip::ZipWriter<BufWriter<File>>,
    partial: Partial,
    final_path: PathBuf,
    file_name: String,
    entries: Vec<String>,
    /// Bytes announced for the current entry, and bytes written to it.
    current: Option<(Option<u64>, u64)>,
}

impl ZipEntryWriter {
    /// Creates the temporary file of the archive of `series` in `dir`.
    pub fn create(series: &SeriesKey, dir: &Path) -> Result<Self, ArchiveError> {
        let file_name = archive_file_name(series);
        let final_path = dir.join(&file_name);
        let partial = Partial {
            path: dir.join(format!(
                ".{file_name}.{}.partial",
                uuid::Uuid::new_v4().simple()
            )),
            kept: false,
        };
        let file = File::create(&partial.path).map_err(|e| {
            tracing::warn!(path = %partial.path.display(), error = %e, "cannot create an archive");
            ArchiveError::Write(format!("cannot create the archive: {}", io_reason(&e)))
        })?;
        Ok(Self {
            zip: zip::ZipWriter::new(BufWriter::with_capacity(OUTPUT_BUFFER_BYTES, file)),
            partial,
            final_path,
            file_name,
            entries: Vec::new(),
            current: None,
        })
    }

    /// Checks that the current entry got the bytes it announced.
    fn end_entry(&mut self) -> Result<(), ArchiveError> {
        if let Some((Some(announced), written)) = self.current.take()
            && announced != written
        {
            let name = self.entries.last().map_or("", String::as_str);
            return Err(ArchiveError::Write(format!(
                "entry {name} got {written} bytes, not the {announced} announced"
            )));
        }
        Ok(())
    }
}

impl ArchiveWriter for ZipEntryWriter {
    fn start_entry(&mut self, name: &str, size: Option<u64>) -> Result<(), ArchiveError> {
        self.end_entry()?;
        let options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Stored)
            .last_modified_time(zip::DateTime::default())
            .unix_permissions(0o644)
            .large_file(size.is_some_and(|size| size >= ZIP64_ENTRY_THRESHOLD));
        self.zip
            .start_file(name, options)
            .map_err(|e| ArchiveError::Write(format!("cannot start entry {name}: {e}")))?;
        self.entries.push(name.to_string());
        self.current = Some((size, 0));
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), ArchiveError> {
        let Some((_, written)) = self.current.as_mut() else {
            return Err(ArchiveError::Write(
                "bytes written before any entry was started".into(),
            ));
        };
        *written += bytes.len() as u64;
        self.zip.write_all(bytes).map_err(|e| {
            let name = self.entries.last().map_or("", String::as_str);
            ArchiveError::Write(format!("cannot write entry {name}: {}", io_reason(&e)))
        })
    }

    fn finish(mut self: Box<Self>, names: &[String]) -> Result<Archive, ArchiveError> {
        self.end_entry()?;
        if self.entries.is_empty() {
            return Err(ArchiveError::Write(
                "the series has no instance to archive".into(),
            ));
        }
        if names.len() != self.entries.len() {
            return Err(ArchiveError::Write(format!(
                "{} names for {} entries",
                names.len(),
                self.entries.len()
            )));
        }
        let ZipEntryWriter {
            zip,
            partial,
            final_path,
            file_name,
            entries,
            ..
        } = *self;
        let mut file = close(zip)?;
        // Kept until the archive is in place: dropped on the way, it removes its file.
        let mut written = partial;
        if entries != names {
            tracing::debug!(
                renamed = entries.iter().zip(names).filter(|(a, b)| a != b).count(),
                "entries named only at the end (missing or repeated InstanceNumbers): renaming"
            );
            let renamed = rename_entries(&written.path, names)?;
            drop(std::mem::replace(&mut written, renamed.0));
            file = renamed.1;
        }
        let size = file
            .metadata()
            .map_err(|e| ArchiveError::Write(format!("cannot read the archive's size: {e}")))?
            .len();
        drop(file);
        std::fs::rename(&written.path, &final_path).map_err(|e| {
            tracing::warn!(from = %written.path.display(), to = %final_path.display(), error = %e, "cannot rename an archive");
            ArchiveError::Write(format!(
                "cannot put the finished archive in place: {}",
                io_reason(&e)
            ))
        })?;
        written.keep();
        tracing::debug!(path = %final_path.display(), entries = names.len(), size, "series archive written");
        Ok(Archive {
            path: final_path,
            file_name,
            entries: names.to_vec(),
            size,
            modality: None,
        })
    }
}

/// Writes the central directory and flushes: the archive's file, complete. Not synced: the
/// archive lives only as long as its attempt, in a scratch folder that is never used
/// again (after a crash it is removed at the next start, never read), and it is read back
/// at once through the page cache; syncing 91 MB cost 0.16 s here, for nothing.
fn close(zip: zip::ZipWriter<BufWriter<File>>) -> Result<File, ArchiveError> {
    let output = zip
        .finish()
        .map_err(|e| ArchiveError::Write(format!("cannot finish the archive: {e}")))?;
    let file = output.into_inner().map_err(|e| {
        ArchiveError::Write(format!(
            "cannot write the archive: {}",
            io_reason(e.error())
        ))
    })?;
    Ok(file)
}

/// Copies the archive at `path` into a new temporary file beside it, each entry's bytes as
/// they are (CRC, sizes and options kept: no decompression) under its name in `names`.
fn rename_entries(path: &Path, names: &[String]) -> Result<(Partial, File), ArchiveError> {
    let unreadable = |e: &dyn std::fmt::Display| {
        ArchiveError::Write(format!(
            "cannot read back the archive to rename its entries: {e}"
        ))
    };
    let source = File::open(path).map_err(|e| unreadable(&io_reason(&e)))?;
    let mut source =
        zip::ZipArchive::new(std::io::BufReader::with_capacity(COPY_BUFFER_BYTES, source))
            .map_err(|e| unreadable(&e))?;
    let renamed = Partial {
        path: path.with_extension("renamed.partial"),
        kept: false,
    };
    let file = File::create(&renamed.path).map_err(|e| {
        ArchiveError::Write(format!("cannot create the archive: {}", io_reason(&e)))
    })?;
    let mut zip = zip::ZipWriter::new(BufWriter::with_capacity(OUTPUT_BUFFER_BYTES, file));
    for (index, name) in names.iter().enumerate() {
        let entry = source.by_index_raw(index).map_err(|e| unreadable(&e))?;
        zip.raw_copy_file_rename(entry, name)
            .map_err(|e| ArchiveError::Write(format!("cannot write entry {name}: {e}")))?;
    }
    let file = close(zip)?;
    Ok((renamed, file))
}

/// Archives files already on disk, as (entry name, path), in that order (blocking). Each
/// file is copied through a bounded buffer.
pub fn archive_files(
    series: &SeriesKey,
    files: &[(String, PathBuf)],
    dir: &Path,
) -> Result<Archive, ArchiveError> {
    let mut writer = Box::new(ZipEntryWriter::create(series, dir)?);
    let mut buffer = vec![0u8; COPY_BUFFER_BYTES];
    for (name, path) in files {
        let mut source = File::open(path).map_err(|e| {
            tracing::warn!(path = %path.display(), error = %e, "cannot open a file to archive");
            ArchiveError::Write(format!("cannot open the file of {name}: {}", io_reason(&e)))
        })?;
        let size = source.metadata().ok().map(|m| m.len());
        writer.start_entry(name, size)?;
        loop {
            let read = source.read(&mut buffer).map_err(|e| {
                ArchiveError::Write(format!("cannot read the file of {name}: {}", io_reason(&e)))
            })?;
            if read == 0 {
                break;
            }
            writer.write(&buffer[..read])?;
        }
    }
    let names: Vec<String> = files.iter().map(|(name, _)| name.clone()).collect();
    writer.finish(&names)
}
