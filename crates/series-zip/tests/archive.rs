//! The ZIP of contract 2.3 written entry by entry: stored entries holding the instance
//! bytes exactly, renamed at the end when told, nothing left behind when unfinished, zip64
//! for an announced 4 GiB entry. (The entry names are the domain's: `dicom_series::archive`.)

use std::io::Read;
use std::path::Path;

use dicom_files::synthetic::SyntheticSeries;
use dicom_series::ports::{ArchiveError, ArchiveWriter, SeriesArchiver, SeriesKey};
use series_zip::{ZipArchiver, archive_file_name, archive_files};

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

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

async fn writer(series: &SyntheticSeries, dir: &Path) -> Box<dyn ArchiveWriter> {
    ZipArchiver::new().create(&series.key(), dir).await.unwrap()
}

#[tokio::test]
async fn entries_hold_the_instance_bytes_exactly_and_are_stored() {
    let out = tempfile::tempdir().unwrap();
    let series = SyntheticSeries::new("CT", 6).with_instance_numbers(vec![
        Some(3),
        None,
        Some(3),
        Some(1),
        None,
        Some(2),
    ]);
    let archive = series
        .archive_into(writer(&series, out.path()).await)
        .unwrap();
    assert_eq!(archive.file_name, archive_file_name(&series.key()));
    assert_eq!(archive.path, out.path().join(&archive.file_name));
    assert_eq!(listing(out.path()), vec![archive.file_name.clone()]);
    assert_eq!(
        archive.size,
        std::fs::metadata(&archive.path).unwrap().len()
    );
    // In the order the instances came.
    assert_eq!(
        archive.entries,
        vec![
            "CT_3.dcm",
            "CT_unnumbered_1.dcm",
            "CT_3_2.dcm",
            "CT_1.dcm",
            "CT_unnumbered_2.dcm",
            "CT_2.dcm",
        ]
    );

    let mut zip = zip::ZipArchive::new(std::fs::File::open(&archive.path).unwrap()).unwrap();
    assert_eq!(zip.len(), 6);
    for (index, name) in archive.entries.iter().enumerate() {
        let mut entry = zip.by_name(name).unwrap();
        assert_eq!(entry.compression(), zip::CompressionMethod::Stored);
        let mut bytes = Vec::new();
        // Reading checks the CRC-32 computed while writing.
        entry.read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes, series.instance_bytes(index).unwrap(), "{name}");
        assert_eq!(&bytes[128..132], b"DICM");
    }

    // A second run gives the same names and the same bytes.
    let again = tempfile::tempdir().unwrap();
    let second = series
        .archive_into(writer(&series, again.path()).await)
        .unwrap();
    assert_eq!(second.entries, archive.entries);
    assert_eq!(
        std::fs::read(&second.path).unwrap(),
        std::fs::read(&archive.path).unwrap()
    );
}

#[tokio::test]
async fn an_unfinished_or_failed_archive_leaves_nothing_behind() {
    let out = tempfile::tempdir().unwrap();
    let series = SyntheticSeries::new("MR", 5);

    // Dropped in the middle of an entry (a cut download, a cancelled attempt).
    let mut archive = writer(&series, out.path()).await;
    archive.start_entry("MR_1.dcm", None).unwrap();
    archive.write(b"DICM").unwrap();
    assert_eq!(listing(out.path()).len(), 1, "the partial file exists");
    assert!(listing(out.path())[0].ends_with(".partial"));
    drop(archive);
    assert!(listing(out.path()).is_empty(), "{:?}", listing(out.path()));

    // An entry that gets fewer bytes than announced.
    let mut archive = writer(&series, out.path()).await;
    archive.start_entry("MR_1.dcm", Some(10)).unwrap();
    archive.write(b"DICM").unwrap();
    let err = archive.finish(&["MR_1.dcm".to_string()]).unwrap_err();
    assert!(
        matches!(&err, ArchiveError::Write(m) if m.contains("got 4 bytes, not the 10")),
        "{err}"
    );
    assert!(listing(out.path()).is_empty(), "{:?}", listing(out.path()));

    // An output folder that does not exist.
    let err = ZipArchiver::new()
        .create(&series.key(), &out.path().join("missing"))
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("cannot create"), "{err}");
    // A series' lastError shows this to clients: never the server's folders.
    assert!(
        !err.to_string().contains(&*out.path().to_string_lossy()),
        "{err}"
    );

    // No instance at all.
    assert!(writer(&series, out.path()).await.finish(&[]).is_err());
    assert!(listing(out.path()).is_empty());
}

#[tokio::test]
async fn entries_are_renamed_at_the_end_as_told_bytes_and_crc_kept() {
    let out = tempfile::tempdir().unwrap();
    let series = SyntheticSeries::new("CT", 3);
    let written = ["pending-1", "CT_2.dcm", "pending-3"];
    let mut archive = writer(&series, out.path()).await;
    let mut contents = Vec::new();
    for (index, name) in written.iter().enumerate() {
        let bytes = series.instance_bytes(index).unwrap();
        archive.start_entry(name, Some(bytes.len() as u64)).unwrap();
        // In two writes, as a download arrives.
        let (head, tail) = bytes.split_at(100);
        archive.write(head).unwrap();
        archive.write(tail).unwrap();
        contents.push(bytes);
    }
    // One entry keeps its name, two change; the new names are in the order written.
    let names: Vec<String> = ["CT_3.dcm", "CT_2.dcm", "CT_1.dcm"]
        .map(String::from)
        .to_vec();
    let done = archive.finish(&names).unwrap();
    assert_eq!(done.entries, names);
    assert_eq!(done.path, out.path().join(&done.file_name));
    assert_eq!(done.size, std::fs::metadata(&done.path).unwrap().len());
    // Neither the first archive nor the renamed copy's temporary file is left.
    assert_eq!(listing(out.path()), vec![done.file_name.clone()]);

    let mut zip = zip::ZipArchive::new(std::fs::File::open(&done.path).unwrap()).unwrap();
    assert_eq!(zip.len(), 3);
    for (index, name) in names.iter().enumerate() {
        let mut entry = zip.by_index(index).unwrap();
        assert_eq!(entry.name().unwrap(), name.as_str());
        assert_eq!(entry.compression(), zip::CompressionMethod::Stored);
        assert_eq!(entry.size(), contents[index].len() as u64);
        let mut bytes = Vec::new();
        // Reading to the end checks the entry's CRC-32 against its bytes (an error if not).
        entry.read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes, contents[index], "{name}");
    }
    assert!(
        zip.by_name("pending-1").is_err() && zip.by_name("pending-3").is_err(),
        "a placeholder name is left"
    );
}

#[tokio::test]
async fn names_that_do_not_match_the_entries_are_refused_leaving_nothing_behind() {
    let out = tempfile::tempdir().unwrap();
    let series = SyntheticSeries::new("MR", 2);
    for names in [
        vec!["MR_1.dcm".to_string()],
        vec!["MR_1.dcm".into(), "MR_2.dcm".into(), "MR_3.dcm".into()],
    ] {
        let mut archive = writer(&series, out.path()).await;
        for name in ["pending-1", "pending-2"] {
            archive.start_entry(name, None).unwrap();
            archive.write(b"DICM").unwrap();
        }
        let err = archive.finish(&names).unwrap_err();
        assert_eq!(
            err,
            ArchiveError::Write(format!("{} names for 2 entries", names.len()))
        );
        assert!(listing(out.path()).is_empty(), "{:?}", listing(out.path()));
    }
}

#[test]
fn files_on_disk_are_archived_under_the_names_given() {
    let files = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let series = SyntheticSeries::new("MR", 2);
    let paths = series.write(files.path()).unwrap();
    let named = vec![
        ("MR_2.dcm".to_string(), paths[1].clone()),
        ("MR_1.dcm".to_string(), paths[0].clone()),
    ];
    let archive = archive_files(&series.key(), &named, out.path()).unwrap();
    assert_eq!(archive.entries, ["MR_2.dcm", "MR_1.dcm"]);
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&archive.path).unwrap()).unwrap();
    let mut bytes = Vec::new();
    zip.by_name("MR_1.dcm")
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    assert_eq!(bytes, std::fs::read(&paths[0]).unwrap());
}

/// An instance over 4 GiB, announced as such, needs zip64. Slow and disk-hungry (writes
/// about 4.3 GB): `cargo nextest run -p series-zip --run-ignored only`.
#[tokio::test]
#[ignore = "writes a 4.3 GB archive"]
async fn an_instance_over_4_gib_is_archived_with_zip64() {
    let files = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let series = SyntheticSeries::new("CT", 2);
    let paths = series.write(files.path()).unwrap();
    let big = files.path().join("big.dcm");
    let file = std::fs::File::create(&big).unwrap();
    let size = (4u64 << 30) + (1 << 20);
    file.set_len(size).unwrap();
    let named = vec![
        ("CT_1.dcm".to_string(), big),
        ("CT_2.dcm".to_string(), paths[1].clone()),
    ];
    let archive = archive_files(&series.key(), &named, out.path()).unwrap();
    assert!(archive.size > size);
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&archive.path).unwrap()).unwrap();
    assert_eq!(zip.by_name("CT_1.dcm").unwrap().size(), size);
    let mut small = Vec::new();
    zip.by_name("CT_2.dcm")
        .unwrap()
        .read_to_end(&mut small)
        .unwrap();
    assert_eq!(small, std::fs::read(&paths[1]).unwrap());
}
