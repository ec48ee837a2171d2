//! The series ZIP of contract 2.3, with the `zip` crate (pinned; only this crate uses it to
//! write).
//!
//! [`ZipArchiver`] writes `dicom_{study}_{series}.zip` into the folder it is given, one
//! entry per instance holding the instance's Part-10 bytes exactly:
//!
//! - entries are *stored* (no compression: DICOM pixel data hardly compresses, and the
//!   archive is built on the critical path), each copied from its file through a bounded
//!   buffer, so memory does not grow with an instance or the series; an entry of 4 GiB or
//!   more is written as zip64, and the archive switches to zip64 by itself when its
//!   offsets pass 4 GiB;
//! - the work runs on a blocking thread (`spawn_blocking`);
//! - the archive is written under a temporary name (`.dicom_..._{uuid}.partial` in the same
//!   folder), synced, and renamed to its final name only when complete; on any error the
//!   temporary file is removed, so nothing partial is ever visible under the final name;
//! - each file must still hold the size recorded at retrieval, else the archive fails.
//!
//! # Entry names ([`entry_names`])
//!
//! Instances are sorted by (InstanceNumber, SOP Instance UID), instances without an
//! InstanceNumber last; then, with `M` the instance's Modality (letters and digits only,
//! `OT` when missing or empty):
//!
//! - the first instance with number `n` is `M_n.dcm` (e.g. `CT_1.dcm`, `CT_-2.dcm`);
//! - further instances with the same `M` and `n` are `M_n_2.dcm`, `M_n_3.dcm`, ... in SOP
//!   Instance UID order;
//! - instances without InstanceNumber are `M_unnumbered_1.dcm`, `M_unnumbered_2.dcm`, ...
//!   in SOP Instance UID order.
//!
//! The names are distinct (the modality has no `_`, so the parts cannot run into each
//! other) and depend only on the set of instances, never on the order they were retrieved
//! in: the same series gives the same names on every run.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use dicom_series::io_reason;
use dicom_series::ports::{Archive, ArchiveError, RetrievedInstance, SeriesArchiver, SeriesKey};
use zip::CompressionMethod;
use zip::write::SimpleFileOptions;

/// Copy buffer for each entry.
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
    async fn archive(
        &self,
        series: &SeriesKey,
        instances: &[RetrievedInstance],
        dir: &Path,
    ) -> Result<Archive, ArchiveError> {
        let series = series.clone();
        let instances = instances.to_vec();
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || write_archive(&series, &instances, &dir))
            .await
            .map_err(|e| ArchiveError(format!("the archiving thread failed: {e}")))?
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

/// The modality part of an entry name: letters and digits of the Modality, `OT` (other)
/// when that leaves nothing.
pub fn modality_part(modality: Option<&str>) -> String {
    let cleaned: String = modality
        .unwrap_or("")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    if cleaned.is_empty() {
        "OT".to_string()
    } else {
        cleaned
    }
}

/// The entries of the archive in the order written: (index into `instances`, name). See the
/// [crate documentation](crate#entry-names-entry_names) for the rule.
pub fn entry_names(instances: &[RetrievedInstance]) -> Vec<(usize, String)> {
    let mut order: Vec<usize> = (0..instances.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&instances[a], &instances[b]);
        // Numbered first (false < true), then by number, then by UID.
        (
            a.instance_number.is_none(),
            a.instance_number,
            &a.sop_instance_uid,
        )
            .cmp(&(
                b.instance_number.is_none(),
                b.instance_number,
                &b.sop_instance_uid,
            ))
    });
    let mut seen: HashMap<String, usize> = HashMap::new();
    order
        .into_iter()
        .map(|index| {
            let instance = &instances[index];
            let modality = modality_part(instance.modality.as_deref());
            let name = match instance.instance_number {
                Some(number) => {
                    let base = format!("{modality}_{number}");
                    let count = seen.entry(base.clone()).or_insert(0);
                    *count += 1;
                    if *count == 1 {
                        format!("{base}.dcm")
                    } else {
                        format!("{base}_{count}.dcm")
                    }
                }
                None => {
                    let base = format!("{modality}_unnumbered");
                    let count = seen.entry(base.clone()).or_insert(0);
                    *count += 1;
                    format!("{base}_{count}.dcm")
                }
            };
            (index, name)
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

/// Writes the archive (blocking); see the [crate documentation](crate).
pub fn write_archive(
    series: &SeriesKey,
    instances: &[RetrievedInstance],
    dir: &Path,
) -> Result<Archive, ArchiveError> {
    if instances.is_empty() {
        return Err(ArchiveError("the series has no instance to archive".into()));
    }
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
        ArchiveError(format!("cannot create the archive: {}", io_reason(&e)))
    })?;
    let mut zip = zip::ZipWriter::new(BufWriter::with_capacity(OUTPUT_BUFFER_BYTES, file));
    let names = entry_names(instances);
    let mut buffer = vec![0u8; COPY_BUFFER_BYTES];
    for (index, name) in &names {
        let instance = &instances[*index];
        let options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Stored)
            .last_modified_time(zip::DateTime::default())
            .unix_permissions(0o644)
            .large_file(instance.size >= ZIP64_ENTRY_THRESHOLD);
        zip.start_file(name.as_str(), options)
            .map_err(|e| ArchiveError(format!("cannot start entry {name}: {e}")))?;
        let mut source = File::open(&instance.path).map_err(|e| {
            tracing::warn!(path = %instance.path.display(), error = %e, "cannot open an instance");
            ArchiveError(format!(
                "cannot open instance {}: {}",
                instance.sop_instance_uid,
                io_reason(&e)
            ))
        })?;
        let mut copied: u64 = 0;
        loop {
            let read = source.read(&mut buffer).map_err(|e| {
                ArchiveError(format!(
                    "cannot read instance {}: {}",
                    instance.sop_instance_uid,
                    io_reason(&e)
                ))
            })?;
            if read == 0 {
                break;
            }
            zip.write_all(&buffer[..read])
                .map_err(|e| ArchiveError(format!("cannot write entry {name}: {e}")))?;
            copied += read as u64;
        }
        if copied != instance.size {
            return Err(ArchiveError(format!(
                "instance {} holds {copied} bytes, not the {} retrieved",
                instance.sop_instance_uid, instance.size
            )));
        }
    }
    let output = zip
        .finish()
        .map_err(|e| ArchiveError(format!("cannot finish the archive: {e}")))?;
    let file = output.into_inner().map_err(|e| {
        ArchiveError(format!(
            "cannot write the archive: {}",
            io_reason(e.error())
        ))
    })?;
    file.sync_all()
        .map_err(|e| ArchiveError(format!("cannot sync the archive: {}", io_reason(&e))))?;
    let size = file
        .metadata()
        .map_err(|e| ArchiveError(format!("cannot read the archive's size: {e}")))?
        .len();
    drop(file);
    std::fs::rename(&partial.path, &final_path).map_err(|e| {
        tracing::warn!(from = %partial.path.display(), to = %final_path.display(), error = %e, "cannot rename an archive");
        ArchiveError(format!("cannot put the finished archive in place: {}", io_reason(&e)))
    })?;
    partial.keep();
    tracing::debug!(path = %final_path.display(), entries = names.len(), size, "series archive written");
    Ok(Archive {
        path: final_path,
        file_name,
        entries: names.into_iter().map(|(_, name)| name).collect(),
        size,
    })
}
