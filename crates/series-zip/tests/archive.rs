//! The series ZIP: names, exact bytes, atomic appearance.

use std::io::Read;
use std::path::{Path, PathBuf};

use dicom_files::synthetic::SyntheticSeries;
use dicom_series::ports::{RetrievedInstance, SeriesArchiver, SeriesKey};
use series_zip::{ZipArchiver, archive_file_name, entry_names};

fn instance(uid: &str, modality: Option<&str>, number: Option<i64>) -> RetrievedInstance {
    RetrievedInstance {
        path: PathBuf::from(format!("/nowhere/{uid}.dcm")),
        sop_instance_uid: uid.to_string(),
        modality: modality.map(String::from),
        instance_number: number,
        size: 0,
    }
}

fn names(instances: &[RetrievedInstance]) -> Vec<String> {
    entry_names(instances).into_iter().map(|(_, n)| n).collect()
}

#[test]
fn missing_and_repeated_numbers_get_distinct_deterministic_names() {
    let instances = vec![
        instance("1.9", Some("CT"), Some(2)),
        instance("1.3", Some("CT"), None),
        instance("1.1", Some("CT"), Some(2)),
        instance("1.5", Some("CT"), Some(1)),
        instance("1.2", Some("CT"), None),
        instance("1.4", Some("CT"), Some(2)),
        instance("1.6", Some("CT"), Some(-1)),
        instance("1.7", None, Some(1)),
        instance("1.8", Some(" M R "), Some(10)),
    ];
    let got = names(&instances);
    assert_eq!(
        got,
        vec![
            "CT_-1.dcm",
            "CT_1.dcm",
            "OT_1.dcm",
            "CT_2.dcm",   // 1.1
            "CT_2_2.dcm", // 1.4
            "CT_2_3.dcm", // 1.9
            "MR_10.dcm",
            "CT_unnumbered_1.dcm", // 1.2
            "CT_unnumbered_2.dcm", // 1.3
        ]
    );
    let order: Vec<&str> = entry_names(&instances)
        .into_iter()
        .map(|(i, _)| instances[i].sop_instance_uid.as_str())
        .collect();
    assert_eq!(
        order,
        vec![
            "1.6", "1.5", "1.7", "1.1", "1.4", "1.9", "1.8", "1.2", "1.3"
        ]
    );

    // The same set in any order gives the same (uid -> name) pairs.
    let pairs = |list: &[RetrievedInstance]| {
        let mut p: Vec<(String, String)> = entry_names(list)
            .into_iter()
            .map(|(i, n)| (list[i].sop_instance_uid.clone(), n))
            .collect();
        p.sort();
        p
    };
    let mut reversed = instances.clone();
    reversed.reverse();
    let mut rotated = instances.clone();
    rotated.rotate_left(4);
    assert_eq!(pairs(&instances), pairs(&reversed));
    assert_eq!(pairs(&instances), pairs(&rotated));
    let mut unique = got.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), got.len());
}

#[test]
fn archive_names_come_from_the_uids() {
    let key = SeriesKey {
        study_instance_uid: "1.2.840.1".into(),
        series_instance_uid: "1.2.840.1.2".into(),
    };
    assert_eq!(archive_file_name(&key), "dicom_1.2.840.1_1.2.840.1.2.zip");
    let hostile = SeriesKey {
        study_instance_uid: "../../etc".into(),
        series_instance_uid: "x/y".into(),
    };
    assert_eq!(archive_file_name(&hostile), "dicom_.._.._etc_x_y.zip");
}

/// Writes a synthetic series and describes its files as retrieved instances.
fn retrieved(series: &SyntheticSeries, dir: &Path) -> Vec<RetrievedInstance> {
    series.write_retrieved(dir).unwrap()
}

fn key(series: &SyntheticSeries) -> SeriesKey {
    series.key()
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn entries_hold_the_instance_bytes_exactly_and_are_stored() {
    let files = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let series = SyntheticSeries::new("CT", 6).with_instance_numbers(vec![
        Some(3),
        None,
        Some(3),
        Some(1),
        None,
        Some(2),
    ]);
    let instances = retrieved(&series, files.path());
    let archive = ZipArchiver::new()
        .archive(&key(&series), &instances, out.path())
        .await
        .unwrap();
    assert_eq!(archive.file_name, archive_file_name(&key(&series)));
    assert_eq!(archive.path, out.path().join(&archive.file_name));
    assert_eq!(listing(out.path()), vec![archive.file_name.clone()]);
    assert_eq!(
        archive.size,
        std::fs::metadata(&archive.path).unwrap().len()
    );
    assert_eq!(
        archive.entries,
        vec![
            "CT_1.dcm",
            "CT_2.dcm",
            "CT_3.dcm",
            "CT_3_2.dcm",
            "CT_unnumbered_1.dcm",
            "CT_unnumbered_2.dcm"
        ]
    );

    let mut zip = zip::ZipArchive::new(std::fs::File::open(&archive.path).unwrap()).unwrap();
    assert_eq!(zip.len(), 6);
    for (index, name) in entry_names(&instances) {
        let mut entry = zip.by_name(&name).unwrap();
        assert_eq!(entry.compression(), zip::CompressionMethod::Stored);
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        assert_eq!(
            bytes,
            std::fs::read(&instances[index].path).unwrap(),
            "{name}"
        );
        assert_eq!(&bytes[128..132], b"DICM");
    }

    // A second run gives the same names and the same bytes.
    let again = tempfile::tempdir().unwrap();
    let second = ZipArchiver::new()
        .archive(&key(&series), &instances, again.path())
        .await
        .unwrap();
    assert_eq!(second.entries, archive.entries);
    assert_eq!(
        std::fs::read(&second.path).unwrap(),
        std::fs::read(&archive.path).unwrap()
    );
}

#[tokio::test]
async fn an_error_mid_archive_leaves_nothing_behind() {
    let files = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let series = SyntheticSeries::new("MR", 5);
    let instances = retrieved(&series, files.path());

    // The fourth entry's file has vanished.
    let mut vanished = instances.clone();
    std::fs::remove_file(&vanished[3].path).unwrap();
    vanished[3].path = files.path().join("gone.dcm");
    let err = ZipArchiver::new()
        .archive(&key(&series), &vanished, out.path())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot open instance"), "{err}");
    // A series' lastError shows this to clients: never the server's folders.
    assert!(
        !err.to_string().contains(&*files.path().to_string_lossy()),
        "{err}"
    );
    assert!(listing(out.path()).is_empty(), "{:?}", listing(out.path()));

    // A file that changed size since retrieval.
    let mut changed = instances.clone();
    changed[1].size += 1;
    let err = ZipArchiver::new()
        .archive(&key(&series), &changed, out.path())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not the"), "{err}");
    assert!(listing(out.path()).is_empty(), "{:?}", listing(out.path()));

    // An output folder that does not exist.
    let err = ZipArchiver::new()
        .archive(&key(&series), &instances, &out.path().join("missing"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot create"), "{err}");
    assert!(
        !err.to_string().contains(&*out.path().to_string_lossy()),
        "{err}"
    );

    // No instance at all.
    assert!(
        ZipArchiver::new()
            .archive(&key(&series), &[], out.path())
            .await
            .is_err()
    );
    assert!(listing(out.path()).is_empty());
}

/// An instance over 4 GiB (a sparse file) needs zip64. Slow and disk-hungry (writes about
/// 4.3 GB): `cargo nextest run -p series-zip --run-ignored only`.
#[tokio::test]
#[ignore = "writes a 4.3 GB archive"]
async fn an_instance_over_4_gib_is_archived_with_zip64() {
    let files = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let series = SyntheticSeries::new("CT", 2);
    let mut instances = retrieved(&series, files.path());
    let big = files.path().join("big.dcm");
    let file = std::fs::File::create(&big).unwrap();
    let size = (4u64 << 30) + (1 << 20);
    file.set_len(size).unwrap();
    instances[0].path = big;
    instances[0].size = size;
    let archive = ZipArchiver::new()
        .archive(&key(&series), &instances, out.path())
        .await
        .unwrap();
    assert!(archive.size > size);
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&archive.path).unwrap()).unwrap();
    assert_eq!(zip.by_name("CT_1.dcm").unwrap().size(), size);
    let mut small = Vec::new();
    zip.by_name("CT_2.dcm")
        .unwrap()
        .read_to_end(&mut small)
        .unwrap();
    assert_eq!(small, std::fs::read(&instances[1].path).unwrap());
}
