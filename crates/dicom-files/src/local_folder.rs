//! A DICOM source over a local folder: the embedded default's DICOM server.

use std::io::Read;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use dicom_series::ports::{
    Archive, DicomServer, DicomSource, FetchError, InstanceListing, SeriesArchive, SeriesKey,
};

use crate::header::{InstanceHeader, is_part10, read_instance_header};

/// [`DicomSource`] over a folder of Part-10 files: [`DicomServer::root`] is the folder (the
/// credentials are ignored). Every regular file under it, in any layout of subfolders, is
/// considered; files that are not Part-10 and hidden files (name starting with `.`) are
/// skipped. Each call scans the folder again, reading headers only, so files added later
/// are found. Retrieval copies the series' files, in path order, into the archive it is
/// given, through a bounded buffer.
#[derive(Clone, Debug, Default)]
pub struct LocalFolderSource;

impl LocalFolderSource {
    pub fn new() -> Self {
        LocalFolderSource
    }
}

#[async_trait]
impl DicomSource for LocalFolderSource {
    async fn list_instances(
        &self,
        server: &DicomServer,
        series: &SeriesKey,
    ) -> Result<Vec<InstanceListing>, FetchError> {
        let root = PathBuf::from(&server.root);
        let series = series.clone();
        let found = run_blocking(move || scan(&root, &series)).await?;
        Ok(found
            .into_iter()
            .map(|(_, header)| InstanceListing {
                sop_instance_uid: header.sop_instance_uid,
                instance_number: header.instance_number,
                modality: header.modality,
            })
            .collect())
    }

    async fn retrieve_series(
        &self,
        server: &DicomServer,
        series: &SeriesKey,
        archive: SeriesArchive,
    ) -> Result<Archive, FetchError> {
        let root = PathBuf::from(&server.root);
        let series = series.clone();
        run_blocking(move || {
            let found = scan(&root, &series)?;
            if found.is_empty() {
                return Err(FetchError::Permanent(format!(
                    "the local DICOM folder {} holds no instance of study {} series {}",
                    root.display(),
                    series.study_instance_uid,
                    series.series_instance_uid
                )));
            }
            copy_all(found, archive)
        })
        .await
    }
}

pub(crate) async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, FetchError> + Send + 'static,
) -> Result<T, FetchError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| FetchError::Transient(format!("the folder scan did not finish: {e}")))?
}

/// The Part-10 files under `root` that belong to `series`, sorted by path.
fn scan(root: &Path, series: &SeriesKey) -> Result<Vec<(PathBuf, InstanceHeader)>, FetchError> {
    scan_where(root, |header| {
        header.study_instance_uid == series.study_instance_uid
            && header.series_instance_uid == series.series_instance_uid
    })
}

/// The Part-10 files under `root` whose header `keep` accepts, sorted by path.
pub(crate) fn scan_where(
    root: &Path,
    keep: impl Fn(&InstanceHeader) -> bool,
) -> Result<Vec<(PathBuf, InstanceHeader)>, FetchError> {
    if !root.is_dir() {
        return Err(FetchError::Permanent(format!(
            "the local DICOM folder {} does not exist or is not a folder",
            root.display()
        )));
    }
    let mut found = Vec::new();
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let entries = std::fs::read_dir(&folder)
            .map_err(|e| FetchError::Permanent(format!("cannot list {}: {e}", folder.display())))?;
        for entry in entries {
            let entry = entry.map_err(|e| {
                FetchError::Permanent(format!("cannot list {}: {e}", folder.display()))
            })?;
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let path = entry.path();
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            if file_type.is_dir() {
                folders.push(path);
                continue;
            }
            // Files, and symbolic links to files (links to folders are not followed).
            if !path.is_file() || path.is_dir() {
                continue;
            }
            match is_part10(&path) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(path = %path.display(), "skipping an unreadable file: {e}");
                    continue;
                }
            }
            match read_instance_header(&path) {
                Ok(header) if keep(&header) => found.push((path, header)),
                Ok(_) => {}
                Err(e) => tracing::warn!("skipping a DICOM file whose header cannot be read: {e}"),
            }
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

/// Copies the files into the archive (on error, dropping it removes what was written).
fn copy_all(
    found: Vec<(PathBuf, InstanceHeader)>,
    mut archive: SeriesArchive,
) -> Result<Archive, FetchError> {
    let mut buffer = vec![0u8; COPY_BUFFER_BYTES];
    for (source, header) in found {
        let cannot_read = |e: std::io::Error| {
            FetchError::Permanent(format!("cannot read {}: {e}", source.display()))
        };
        let mut file = std::fs::File::open(&source).map_err(cannot_read)?;
        let size = file.metadata().map_err(cannot_read)?.len();
        archive.begin_instance(&header.sop_instance_uid, Some(size))?;
        loop {
            let read = file.read(&mut buffer).map_err(cannot_read)?;
            if read == 0 {
                break;
            }
            archive.write(&buffer[..read])?;
        }
    }
    Ok(archive.finish()?)
}

/// Copy buffer of a retrieval.
const COPY_BUFFER_BYTES: usize = 256 * 1024;
