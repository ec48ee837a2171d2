//! Header reading on real files (pydicom's test files).

use dicom_files::{is_part10, read_instance_header};

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
