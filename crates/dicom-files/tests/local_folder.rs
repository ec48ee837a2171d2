//! The local-folder DICOM source and header reading, on real files (pydicom's test files)
//! and synthetic series.

use std::path::Path;

use dicom_files::synthetic::SyntheticSeries;
use dicom_files::{LocalFolderSource, is_part10, read_instance_header};
use dicom_series::ports::{
    Archive, ArchiveError, ArchiveWriter, DicomCredentials, DicomServer, DicomSource, FetchError,
    SeriesArchive, SeriesKey,
};

fn server(root: &Path) -> DicomServer {
    DicomServer {
        root: root.display().to_string(),
        credentials: DicomCredentials::None,
    }
}

fn key(series: &SyntheticSeries) -> SeriesKey {
    SeriesKey {
        study_instance_uid: series.study_instance_uid.clone(),
        series_instance_uid: series.series_instance_uid.clone(),
    }
}

#[test]
fn headers_of_real_files() {
    let files = test_support::dicom_test_files();
    let ct = read_instance_header(&files.join("CT_small.dcm")).unwrap();
    assert_eq!(ct.modality.as_deref(), Some("CT"));
    assert!(
        ct.sop_instance_uid.starts_with("1.3.6.1.4.1.5962"),
        "{ct:?}"
    );
    assert!(!ct.series_instance_uid.is_empty());
    let mr = read_instance_header(&files.join("MR_small.dcm")).unwrap();
    assert_eq!(mr.modality.as_deref(), Some("MR"));
    // MR_small.dcm has a TIFF header in its preamble: still Part-10.
    assert!(is_part10(&files.join("MR_small.dcm")).unwrap());
}

#[test]
fn a_file_that_is_not_dicom_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("page.dcm");
    std::fs::write(&path, "<html>not found</html>".repeat(20)).unwrap();
    let err = read_instance_header(&path).unwrap_err().to_string();
    assert!(err.contains("is not a DICOM Part-10 file"), "{err}");
    assert!(!is_part10(&path).unwrap());
}

#[tokio::test]
async fn lists_and_copies_one_series_from_a_nested_folder() {
    let root = tempfile::tempdir().unwrap();
    let wanted = SyntheticSeries::new("CT", 5).with_instance_numbers(vec![
        Some(2),
        None,
        Some(2),
        Some(1),
        Some(7),
    ]);
    let same_study_other_series = SyntheticSeries::new("CT", 3).with_uids(
        wanted.study_instance_uid.clone(),
        dicom_files::synthetic::new_uid(),
    );
    wanted.write(&root.path().join("a/b")).unwrap();
    same_study_other_series
        .write(&root.path().join("a/other"))
        .unwrap();
    std::fs::copy(
        test_support::dicom_test_files().join("CT_small.dcm"),
        root.path().join("CT_small.dcm"),
    )
    .unwrap();
    std::fs::write(root.path().join("a/notes.txt"), "not DICOM").unwrap();

    let source = LocalFolderSource::new();
    let listed = source
        .list_instances(&server(root.path()), &key(&wanted))
        .await
        .unwrap();
    assert_eq!(listed.len(), 5);
    let mut numbers: Vec<_> = listed.iter().map(|l| l.instance_number).collect();
    numbers.sort();
    assert_eq!(numbers, vec![None, Some(1), Some(2), Some(2), Some(7)]);

    let (writer, entries) = Entries::new();
    let archive = source
        .retrieve_series(
            &server(root.path()),
            &key(&wanted),
            SeriesArchive::new(&listed, Box::new(writer)),
        )
        .await
        .unwrap();
    assert_eq!(archive.entries.len(), 5);
    let entries = entries.lock().unwrap();
    // In path order, under the listing's names, with the files' bytes.
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "CT_2.dcm",
            "CT_unnumbered_1.dcm",
            "CT_2_2.dcm",
            "CT_1.dcm",
            "CT_7.dcm"
        ]
    );
    for (index, (_, bytes)) in entries.iter().enumerate() {
        let original = root.path().join(format!("a/b/{index:05}.dcm"));
        assert_eq!(*bytes, std::fs::read(original).unwrap());
    }
}

type Written = std::sync::Arc<std::sync::Mutex<Vec<(String, Vec<u8>)>>>;

/// Entries in memory.
struct Entries(Written);

impl Entries {
    fn new() -> (Self, Written) {
        let written = Written::default();
        (Entries(written.clone()), written)
    }
}

impl ArchiveWriter for Entries {
    fn start_entry(&mut self, name: &str, _: Option<u64>) -> Result<(), ArchiveError> {
        self.0.lock().unwrap().push((name.to_string(), Vec::new()));
        Ok(())
    }
    fn write(&mut self, bytes: &[u8]) -> Result<(), ArchiveError> {
        let mut entries = self.0.lock().unwrap();
        entries.last_mut().unwrap().1.extend_from_slice(bytes);
        Ok(())
    }
    fn finish(self: Box<Self>) -> Result<Archive, ArchiveError> {
        let entries = self.0.lock().unwrap();
        Ok(Archive {
            path: "a.zip".into(),
            file_name: "a.zip".into(),
            entries: entries.iter().map(|e| e.0.clone()).collect(),
            size: 0,
        })
    }
}

#[tokio::test]
async fn an_unknown_series_or_folder_is_a_permanent_error() {
    let root = tempfile::tempdir().unwrap();
    SyntheticSeries::new("MR", 2).write(root.path()).unwrap();
    let unknown = SeriesKey {
        study_instance_uid: "1.2.3".into(),
        series_instance_uid: "1.2.3.4".into(),
    };
    let source = LocalFolderSource::new();
    assert!(
        source
            .list_instances(&server(root.path()), &unknown)
            .await
            .unwrap()
            .is_empty()
    );
    let (writer, entries) = Entries::new();
    match source
        .retrieve_series(
            &server(root.path()),
            &unknown,
            SeriesArchive::new(&[], Box::new(writer)),
        )
        .await
    {
        Err(FetchError::Permanent(message)) => {
            assert!(
                message.contains("holds no instance of study 1.2.3 series 1.2.3.4"),
                "{message}"
            )
        }
        other => panic!("expected a permanent error, got {other:?}"),
    }
    assert!(entries.lock().unwrap().is_empty());

    let missing = root.path().join("missing");
    match source.list_instances(&server(&missing), &unknown).await {
        Err(FetchError::Permanent(message)) => {
            assert!(message.contains("does not exist"), "{message}")
        }
        other => panic!("expected a permanent error, got {other:?}"),
    }
}
