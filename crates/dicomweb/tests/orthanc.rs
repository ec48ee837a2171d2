//! Retrieval from a real Orthanc (DICOMweb plugin) and archiving, end to end: the ZIP's
//! entries must be byte-identical to the instances Orthanc stores.
//!
//! Needs `TEST_ORTHANC_URL` and `TEST_DICOM_FILES` (`./deploy/run-tests.sh` sets them).

use std::collections::HashSet;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use dicom_files::synthetic::SyntheticSeries;
use dicom_series::ports::{
    Archive, DicomCredentials, DicomServer, DicomSource, FetchError, InstanceListing,
    SeriesArchive, SeriesArchiver, SeriesKey, SeriesListing,
};
use dicomweb::{DicomWebOptions, DicomWebSource};
use futures::StreamExt;
use series_zip::ZipArchiver;

fn orthanc() -> String {
    test_support::orthanc_url()
}

fn dicomweb() -> DicomServer {
    DicomServer {
        root: format!("{}/dicom-web", orthanc()),
        credentials: DicomCredentials::None,
    }
}

fn source() -> DicomWebSource {
    DicomWebSource::new(DicomWebOptions::default()).unwrap()
}

/// Uploads Part-10 files to Orthanc, 8 at a time.
async fn upload(files: Vec<Vec<u8>>) {
    let client = reqwest::Client::new();
    let url = format!("{}/instances", orthanc());
    let results: Vec<_> = futures::stream::iter(files)
        .map(|bytes| {
            let client = client.clone();
            let url = url.clone();
            async move {
                let response = client.post(&url).body(bytes).send().await?;
                response.error_for_status()
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    for result in results {
        result.unwrap_or_else(|e| panic!("upload to Orthanc at {url} failed: {e}"));
    }
}

async fn upload_series(series: &SyntheticSeries) {
    let files = (0..series.len())
        .map(|i| series.instance_bytes(i).unwrap())
        .collect();
    upload(files).await;
}

/// The file Orthanc stores for an instance (REST API, not DICOMweb).
async fn stored_file(client: &reqwest::Client, sop_instance_uid: &str) -> Vec<u8> {
    let found: serde_json::Value = client
        .post(format!("{}/tools/lookup", orthanc()))
        .body(sop_instance_uid.to_string())
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    let id =
        found
            .as_array()
            .unwrap()
            .iter()
            .find(|item| item["Type"] == "Instance")
            .unwrap_or_else(|| {
                panic!("Orthanc does not know instance {sop_instance_uid}: {found}")
            })["ID"]
            .as_str()
            .unwrap()
            .to_string();
    client
        .get(format!("{}/instances/{id}/file", orthanc()))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

/// Finds a series (series search), then retrieves it straight into a ZIP in a fresh folder
/// under `work`, the archive expecting as many instances as the search counts (what one
/// attempt of the worker does). Returns what the search found and the archive.
async fn retrieve_and_archive(key: &SeriesKey, work: &Path, run: &str) -> (SeriesListing, Archive) {
    let out_dir = work.join(format!("{run}-out"));
    std::fs::create_dir_all(&out_dir).unwrap();
    let found = source()
        .find_series(&dicomweb(), key)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("Orthanc's series search does not find {key:?}"));
    assert_eq!(found.series_instance_uid, key.series_instance_uid);
    let expected = found.number_of_instances.map(u64::from);
    let writer = ZipArchiver::new().create(key, &out_dir).await.unwrap();
    let archive = source()
        .retrieve_series(&dicomweb(), key, SeriesArchive::new(expected, writer))
        .await
        .unwrap();
    // Only the finished archive is in the folder.
    let files: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files, vec![archive.path.clone()]);
    (found, archive)
}

/// Every entry of the archive: (name, bytes).
fn entries(archive: &Archive) -> Vec<(String, Vec<u8>)> {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&archive.path).unwrap()).unwrap();
    (0..zip.len())
        .map(|i| {
            let mut entry = zip.by_index(i).unwrap();
            assert_eq!(entry.compression(), zip::CompressionMethod::Stored);
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            (entry.name().unwrap().to_string(), bytes)
        })
        .collect()
}

/// Checks the archive against Orthanc: one entry per instance, each byte-identical to
/// Orthanc's stored file, a Part-10 file that parses whole (no MIME framing).
async fn check_against_orthanc(archive: &Archive, expected_count: usize) -> Vec<String> {
    let entries = entries(archive);
    assert_eq!(entries.len(), expected_count);
    let names: Vec<String> = entries.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(names, archive.entries);
    assert_eq!(
        names.iter().collect::<HashSet<_>>().len(),
        names.len(),
        "entry names must be distinct"
    );
    let client = reqwest::Client::new();
    let checks = futures::stream::iter(entries)
        .map(|(name, bytes)| {
            let client = client.clone();
            async move {
                assert_eq!(&bytes[128..132], b"DICM", "{name}");
                let object = dicom::object::OpenFileOptions::new()
                    .read_preamble(dicom::object::file::ReadPreamble::Always)
                    .from_reader(&bytes[..])
                    .unwrap_or_else(|e| panic!("{name} does not parse: {e}"));
                let uid = object
                    .element(dicom::dictionary_std::tags::SOP_INSTANCE_UID)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .trim_end_matches('\0')
                    .to_string();
                let stored = stored_file(&client, &uid).await;
                assert!(
                    stored == bytes,
                    "{name} differs from Orthanc's file of {uid}"
                );
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>();
    checks.await;
    names
}

/// What names an entry, read from its bytes with the `dicom` crate.
fn naming_of(name: &str, bytes: &[u8]) -> InstanceListing {
    let object = dicom::object::OpenFileOptions::new()
        .read_preamble(dicom::object::file::ReadPreamble::Always)
        .from_reader(bytes)
        .unwrap_or_else(|e| panic!("{name} does not parse: {e}"));
    let text = |tag| {
        object
            .element_opt(tag)
            .unwrap()
            .map(|e| {
                e.to_str()
                    .unwrap()
                    .trim_end_matches('\0')
                    .trim()
                    .to_string()
            })
            .filter(|s| !s.is_empty())
    };
    InstanceListing {
        sop_instance_uid: text(dicom::dictionary_std::tags::SOP_INSTANCE_UID).unwrap(),
        instance_number: text(dicom::dictionary_std::tags::INSTANCE_NUMBER)
            .map(|n| n.parse().unwrap()),
        modality: text(dicom::dictionary_std::tags::MODALITY),
    }
}

/// Checks that each entry is named as [`dicom_series::entry_names`] names the set of
/// instances the archive holds, read from the entries' own headers.
fn assert_named_from_headers(archive: &Archive) {
    let entries = entries(archive);
    let instances: Vec<InstanceListing> = entries
        .iter()
        .map(|(name, bytes)| naming_of(name, bytes))
        .collect();
    let mut expected = vec![String::new(); instances.len()];
    for (index, name) in dicom_series::entry_names(&instances) {
        expected[index] = name;
    }
    let names: Vec<String> = entries.into_iter().map(|(name, _)| name).collect();
    assert_eq!(names, expected);
}

fn key_of(series: &SyntheticSeries) -> SeriesKey {
    SeriesKey {
        study_instance_uid: series.study_instance_uid.clone(),
        series_instance_uid: series.series_instance_uid.clone(),
    }
}

#[tokio::test]
async fn real_pydicom_files_come_back_byte_identical() {
    let files = test_support::dicom_test_files();
    let work = tempfile::tempdir().unwrap();
    // Two uncompressed files, two compressed ones (JPEG 2000, RLE) that must come back as
    // stored, not transcoded, and a deflated one (its whole data set is deflated: the header
    // is read through the dicom crate's inflater).
    for name in [
        "CT_small.dcm",
        "MR_small.dcm",
        "JPEG2000.dcm",
        "SC_rgb_rle.dcm",
        "image_dfl.dcm",
    ] {
        let path = files.join(name);
        upload(vec![std::fs::read(&path).unwrap()]).await;
        let header = dicom_files::read_instance_header(&path).unwrap();
        let modality = dicom_series::modality_part(header.modality.as_deref());
        let modality = modality.as_str();
        let key = SeriesKey {
            study_instance_uid: header.study_instance_uid.clone(),
            series_instance_uid: header.series_instance_uid.clone(),
        };
        let (found, archive) = retrieve_and_archive(&key, work.path(), name).await;
        assert_eq!(found.number_of_instances, Some(1), "{name}");
        assert_eq!(found.modality, header.modality, "{name}");
        // Named from the instance's own header (read here from the original file).
        let expected_name = match header.instance_number {
            Some(n) => format!("{modality}_{n}.dcm"),
            None => format!("{modality}_unnumbered_1.dcm"),
        };
        let from_header = dicom_series::entry_names(&[InstanceListing {
            sop_instance_uid: header.sop_instance_uid.clone(),
            instance_number: header.instance_number,
            modality: header.modality.clone(),
        }]);
        assert_eq!(from_header, [(0, expected_name.clone())], "{name}");
        assert_eq!(archive.entries, vec![expected_name]);
        assert_eq!(archive.modality, header.modality, "{name}");
        check_against_orthanc(&archive, 1).await;
        // Orthanc keeps the file as uploaded: the entry is also the original file.
        assert_eq!(entries(&archive)[0].1, std::fs::read(&path).unwrap());
    }
}

#[tokio::test]
async fn missing_and_repeated_instance_numbers_get_distinct_stable_names() {
    let numbers = vec![
        Some(1),
        None,
        Some(2),
        Some(2),
        None,
        Some(3),
        Some(2),
        Some(10),
        None,
        Some(4),
    ];
    let series = SyntheticSeries::new("CT", numbers.len())
        .with_size(48, 48)
        .with_instance_numbers(numbers);
    upload_series(&series).await;
    let key = key_of(&series);
    let work = tempfile::tempdir().unwrap();
    let (found, first) = retrieve_and_archive(&key, work.path(), "first").await;
    assert_eq!(found.number_of_instances, Some(10));
    assert_eq!(found.modality.as_deref(), Some("CT"));
    assert_named_from_headers(&first);
    let mut names = check_against_orthanc(&first, 10).await;
    names.sort_by_key(|n| {
        let number = n.trim_start_matches("CT_").trim_end_matches(".dcm");
        let (number, repeat) = number.split_once('_').unwrap_or((number, "1"));
        (
            number.parse::<i64>().unwrap_or(i64::MAX),
            repeat.parse::<i64>().unwrap_or(0),
            n.clone(),
        )
    });
    assert_eq!(
        names,
        vec![
            "CT_1.dcm",
            "CT_2.dcm",
            "CT_2_2.dcm",
            "CT_2_3.dcm",
            "CT_3.dcm",
            "CT_4.dcm",
            "CT_10.dcm",
            "CT_unnumbered_1.dcm",
            "CT_unnumbered_2.dcm",
            "CT_unnumbered_3.dcm",
        ]
    );
    // A second run names every instance the same.
    let (_, second) = retrieve_and_archive(&key, work.path(), "second").await;
    let by_uid = |archive: &Archive| {
        let mut pairs: Vec<(String, String)> = entries(archive)
            .into_iter()
            .map(|(name, bytes)| {
                let object = dicom::object::OpenFileOptions::new()
                    .read_preamble(dicom::object::file::ReadPreamble::Always)
                    .from_reader(&bytes[..])
                    .unwrap();
                let uid = object
                    .element(dicom::dictionary_std::tags::SOP_INSTANCE_UID)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .trim_end_matches('\0')
                    .to_string();
                (uid, name)
            })
            .collect();
        pairs.sort();
        pairs
    };
    assert_eq!(by_uid(&first), by_uid(&second));
    assert_eq!(
        std::fs::read(&first.path).unwrap(),
        std::fs::read(&second.path).unwrap()
    );
}

#[tokio::test]
async fn a_series_of_a_thousand_instances() {
    let mut numbers: Vec<Option<i64>> = (1..=1000).map(Some).collect();
    numbers[10] = None;
    numbers[500] = None;
    numbers[20] = Some(20); // a repeat of instance 20
    let series = SyntheticSeries::new("CT", 1000)
        .with_size(64, 64)
        .with_instance_numbers(numbers);
    upload_series(&series).await;
    let key = key_of(&series);
    let work = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let (found, archive) = retrieve_and_archive(&key, work.path(), "big").await;
    let took = started.elapsed();
    assert_eq!(found.number_of_instances, Some(1000));
    assert_named_from_headers(&archive);
    let names = check_against_orthanc(&archive, 1000).await;
    assert!(names.contains(&"CT_20_2.dcm".to_string()));
    assert!(names.contains(&"CT_unnumbered_2.dcm".to_string()));
    assert!(!names.contains(&"CT_11.dcm".to_string()));
    eprintln!(
        "1,000 instances ({} bytes of ZIP) retrieved and archived in {took:?}",
        archive.size
    );
}

#[tokio::test]
async fn an_unknown_series_is_permanent() {
    let key = SeriesKey {
        study_instance_uid: dicom_files::synthetic::new_uid(),
        series_instance_uid: dicom_files::synthetic::new_uid(),
    };
    assert_eq!(source().find_series(&dicomweb(), &key).await, Ok(None));
    let dir = tempfile::tempdir().unwrap();
    let writer = ZipArchiver::new().create(&key, dir.path()).await.unwrap();
    match source()
        .retrieve_series(&dicomweb(), &key, SeriesArchive::new(None, writer))
        .await
    {
        Err(FetchError::Permanent(message)) => {
            assert!(message.contains("does not exist"), "{message}");
            assert!(message.contains(&key.series_instance_uid), "{message}");
        }
        other => panic!("expected a permanent error, got {other:?}"),
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    // Orthanc's WADO-RS itself answers 404 for it.
    let status = reqwest::Client::new()
        .get(format!(
            "{}/studies/{}/series/{}",
            dicomweb().root,
            key.study_instance_uid,
            key.series_instance_uid
        ))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 404);
}

#[tokio::test]
async fn an_archive_expecting_another_count_is_refused_and_leaves_no_file() {
    let series = SyntheticSeries::new("CT", 3).with_size(32, 32);
    upload_series(&series).await;
    let key = key_of(&series);
    let found = source()
        .find_series(&dicomweb(), &key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.number_of_instances, Some(3));
    // A count that is not what Orthanc sends (as if the series had changed between the
    // search and the retrieval).
    for expected in [4, 2] {
        let dir = tempfile::tempdir().unwrap();
        let writer = ZipArchiver::new().create(&key, dir.path()).await.unwrap();
        match source()
            .retrieve_series(
                &dicomweb(),
                &key,
                SeriesArchive::new(Some(expected), writer),
            )
            .await
        {
            Err(FetchError::Permanent(message)) => {
                assert!(
                    message.contains(&format!(
                        "the server counts {expected} instances in the series (QIDO-RS) but sent 3 (WADO-RS)"
                    )),
                    "{message}"
                );
                assert!(message.contains(&key.series_instance_uid), "{message}");
            }
            other => panic!("expected a permanent error, got {other:?}"),
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
