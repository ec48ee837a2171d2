//! The verified dataset, out: a dataset made through the frontend's own calls (inference,
//! feedback, batch import) is exported as a ZIP over HTTP and from the command line, and
//! read back with a strict COCO check.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{Cursor, Read};

use common::*;
use image::ImageFormat;
use secrecy::SecretString;
use serde_json::{Value, json};

const ADMIN_TOKEN: &str = "admin-token-for-tests";

/// A call that must succeed: its answer.
async fn post(client: &reqwest::Client, url: String, body: Value) -> Value {
    let (status, answer) = post_json(client, url, body).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

/// The files of a ZIP, by name.
fn unzip(bytes: &[u8]) -> HashMap<String, Vec<u8>> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).expect("a ZIP archive");
    (0..archive.len())
        .map(|i| {
            let mut file = archive.by_index(i).unwrap();
            let mut content = Vec::new();
            file.read_to_end(&mut content).unwrap();
            (file.name().unwrap().into_owned(), content)
        })
        .collect()
}

/// A strict check of a COCO document against the archive's pictures; returns it.
fn coco(files: &HashMap<String, Vec<u8>>) -> Value {
    let document: Value = serde_json::from_slice(&files["annotations.json"]).unwrap();
    for key in ["info", "licenses", "images", "annotations", "categories"] {
        assert!(document.get(key).is_some(), "COCO needs {key}");
    }
    let categories: HashSet<u64> = document["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert!(c["name"].is_string() && c["supercategory"] == "seed", "{c}");
            c["id"].as_u64().unwrap()
        })
        .collect();
    let mut sizes = HashMap::new();
    for image in document["images"].as_array().unwrap() {
        let id = image["id"].as_u64().expect("integer image ids");
        let (w, h) = (
            image["width"].as_u64().unwrap(),
            image["height"].as_u64().unwrap(),
        );
        assert!(sizes.insert(id, (w, h)).is_none(), "image ids are unique");
        let name = image["file_name"].as_str().unwrap();
        let picture = image::load_from_memory(
            files
                .get(name)
                .unwrap_or_else(|| panic!("{name} is in the archive")),
        )
        .unwrap();
        assert_eq!(
            (u64::from(picture.width()), u64::from(picture.height())),
            (w, h),
            "{name}"
        );
        if let Some(category) = image.get("seed_category_id") {
            assert!(categories.contains(&category.as_u64().unwrap()));
        }
    }
    assert_eq!(
        files.len(),
        sizes.len() + 1,
        "annotations.json and one file per image"
    );
    let mut annotation_ids = HashSet::new();
    for a in document["annotations"].as_array().unwrap() {
        assert!(
            annotation_ids.insert(a["id"].as_u64().unwrap()),
            "annotation ids are unique"
        );
        let (w, h) = sizes[&a["image_id"].as_u64().expect("an image of the document")];
        assert!(
            categories.contains(&a["category_id"].as_u64().unwrap()),
            "{a}"
        );
        let bbox: Vec<u64> = a["bbox"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        let [x, y, bw, bh] = <[u64; 4]>::try_from(bbox).unwrap();
        assert!(
            bw > 0 && bh > 0 && x + bw <= w && y + bh <= h,
            "{a} inside {w}x{h}"
        );
        assert_eq!(a["area"].as_u64().unwrap(), bw * bh);
        assert_eq!(a["iscrowd"], 0);
        assert!(
            a["verified_by"].is_string()
                && a["verified_at"].is_string()
                && a["drawn_by_person"].is_boolean()
        );
    }
    document
}

/// Tech's verified dataset: one inferred picture of six boxes (four confirmed, one
/// corrected, one deleted) plus one drawn box, an unverified picture, and a batch of two
/// labelled pictures. Returns the id of the folder "Lot 9".
async fn a_known_dataset(t: &TestBackend) -> String {
    let user = t.user(TECH).await;
    let picture = tiled_photo(3, 2);
    let inf = |folder: &str, image: String, dims: [u32; 2]| {
        json!({"model_name": DEFAULT_PIPELINE, "image": image, "imageDims": dims,
               "folder_name": folder, "user_id": user, "container_name": user})
    };
    let six = post(
        &t.http,
        t.url("/inf"),
        inf(
            "Lot 9",
            data_url("image/png", &encode(&picture, ImageFormat::Png)),
            [picture.width(), picture.height()],
        ),
    )
    .await;
    post(
        &t.http,
        t.url("/inf"),
        inf("Lot 9", data_url("image/png", &photo_bytes()), [638, 559]),
    )
    .await;
    let box_id = |i: usize| six["boxes"][i]["box_id"].clone();
    for i in 0..4 {
        post(&t.http, t.url("/feedback-positive"),
             json!({"userId": user, "inferenceId": six["inference_id"], "boxes": [{"boxId": box_id(i)}]})).await;
    }
    let seeds: Value = t
        .http
        .get(t.url("/seeds"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let brassica = seeds["seeds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["seed_name"] == "Brassica napus")
        .unwrap()["seed_id"]
        .clone();
    let negative =
        |one: Value| json!({"userId": user, "inferenceId": six["inference_id"], "boxes": [one]});
    post(&t.http, t.url("/feedback-negative"), negative(json!({"classId": brassica, "label": "Brassica napus", "boxId": box_id(4), "box": six["boxes"][4]["box"], "comment": "Wrong Seed"}))).await;
    post(&t.http, t.url("/feedback-negative"), negative(json!({"classId": "", "label": "", "boxId": box_id(5), "box": six["boxes"][5]["box"], "comment": "No Seed"}))).await;
    post(&t.http, t.url("/feedback-negative"), negative(json!({"classId": brassica, "label": "Brassica napus", "boxId": "", "box": {"topX": 3.5, "topY": 4.0, "bottomX": 60.2, "bottomY": 70.0}, "comment": "Seed not Detected"}))).await;

    let session = post(&t.http, t.url("/new-batch-import"),
        json!({"user_id": user, "container_name": user, "folder_name": "Reference set", "nb_pictures": 2})).await;
    for _ in 0..2 {
        post(
            &t.http,
            t.url("/upload-picture"),
            json!({"container_name": user, "user_id": user,
            "seed_id": brassica, "seed_name": "Brassica napus", "zoom_level": 1.5, "nb_seeds": 4,
            "session_id": session["session_id"], "image": data_url("image/png", &photo_bytes())}),
        )
        .await;
    }
    let folders = post(
        &t.http,
        t.url("/get-directories"),
        json!({"container_name": user}),
    )
    .await;
    folders["folders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["folder_name"] == "Lot 9")
        .unwrap()["picture_set_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn get_zip(request: reqwest::RequestBuilder) -> HashMap<String, Vec<u8>> {
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/zip");
    assert!(
        response.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    unzip(&response.bytes().await.unwrap())
}

async fn export_of_a_known_dataset(t: &TestBackend) {
    let lot = a_known_dataset(t).await;
    // Mallory's verified picture: not in Tech's export, in the administrators'.
    let mallory = t.client_as("mallory@example.org");
    let mallory_id = t.user("mallory@example.org").await;
    let session = post(&mallory, t.url("/new-batch-import"),
        json!({"user_id": mallory_id, "container_name": mallory_id, "folder_name": "M", "nb_pictures": 1})).await;
    post(
        &mallory,
        t.url("/upload-picture"),
        json!({"container_name": mallory_id, "user_id": mallory_id,
        "seed_name": "Lolium temulentum", "zoom_level": 2, "nb_seeds": 1,
        "session_id": session["session_id"], "image": data_url("image/png", &photo_bytes())}),
    )
    .await;

    let files = get_zip(t.http.get(t.url("/dataset"))).await;
    let document = coco(&files);
    assert_eq!(document["categories"].as_array().unwrap().len(), 15);
    let images = document["images"].as_array().unwrap();
    assert_eq!(
        images.len(),
        3,
        "the verified picture and the two imported ones"
    );
    assert_eq!(
        images
            .iter()
            .filter(|i| i["nb_seeds"] == 4 && i["zoom_level"] == 1.5)
            .count(),
        2
    );
    let annotations = document["annotations"].as_array().unwrap();
    assert_eq!(
        annotations.len(),
        6,
        "four confirmed, one corrected, one drawn; the deleted one is left out"
    );
    let drawn: Vec<&Value> = annotations
        .iter()
        .filter(|a| a["drawn_by_person"] == true)
        .collect();
    assert_eq!(drawn.len(), 1);
    assert_eq!(drawn[0]["bbox"], json!([4, 4, 56, 66]));
    assert!(annotations.iter().all(|a| a["verified_by"] == TECH));
    let brassica = document["categories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "Brassica napus")
        .unwrap()["id"]
        .clone();
    assert!(
        annotations
            .iter()
            .filter(|a| a["category_id"] == brassica)
            .count()
            >= 2
    );

    // Filters: a folder; a time range.
    let only_lot = coco(&get_zip(t.http.get(t.url(&format!("/dataset?folder={lot}")))).await);
    assert_eq!(only_lot["images"].as_array().unwrap().len(), 1);
    let later = coco(&get_zip(t.http.get(t.url("/dataset?from=2999-01-01"))).await);
    assert_eq!(later["images"].as_array().unwrap().len(), 0);
    let bad = t
        .http
        .get(t.url("/dataset?from=yesterday"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    // Everyone's, for administrators only.
    let refused = t
        .http
        .get(t.url("/api/admin/dataset"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let everyone = coco(
        &get_zip(
            t.http
                .get(t.url("/api/admin/dataset"))
                .bearer_auth(ADMIN_TOKEN),
        )
        .await,
    );
    assert_eq!(everyone["images"].as_array().unwrap().len(), 4);
    let hers = coco(
        &get_zip(
            t.http
                .get(t.url("/api/admin/dataset?user=Mallory@example.org"))
                .bearer_auth(ADMIN_TOKEN),
        )
        .await,
    );
    assert_eq!(hers["images"].as_array().unwrap().len(), 1);

    // The same from the command line.
    let out = t.dir.path().join("dataset.zip");
    let summary =
        nachet_backend::export_dataset(&t.settings, Some(TECH), Default::default(), out.clone())
            .await
            .unwrap();
    assert_eq!((summary.pictures, summary.annotations), (3, 6));
    let from_file = coco(&unzip(&std::fs::read(&out).unwrap()));
    assert_eq!(from_file["annotations"], document["annotations"]);
}

async fn with_admin(db: Db, blobs: Blobs) -> TestBackend {
    let (mut settings, dir) = settings(db, blobs).await;
    settings.admin.token = Some(SecretString::from(ADMIN_TOKEN));
    start_with(settings, dir).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_of_a_known_dataset_on_sqlite() {
    let t = with_admin(Db::Sqlite, Blobs::LocalDisk).await;
    export_of_a_known_dataset(&t).await;
    t.backend.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_of_a_known_dataset_on_postgres_and_azurite() {
    let t = with_admin(Db::Postgres, Blobs::Azurite).await;
    export_of_a_known_dataset(&t).await;
    t.backend.stop().await;
}

/// 1,000 labelled pictures of about 190 KB (190 MB) go out through `/dataset` while the
/// process's resident memory is sampled: the export must not hold the dataset. Prints the
/// throughput and the peak growth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dataset_of_1000_pictures_goes_out_in_bounded_memory() {
    use datastore::{BlobKey, FolderStore, ImportedPicture, PictureLabel, SeedStore};
    const PICTURES: usize = 1000;
    let t = start(Db::Sqlite, Blobs::LocalDisk).await;
    let user = uuid::Uuid::parse_str(&t.user(TECH).await).unwrap();
    let store = t.store.clone();
    let seed_id = store.list_seeds().await.unwrap()[0].id;
    let png = bytes::Bytes::from(noise_png(250));
    let (session, folder) = store
        .open_import(user, &user.to_string(), "Big set", PICTURES as u32)
        .await
        .unwrap();
    for _ in 0..PICTURES {
        let id = uuid::Uuid::new_v4();
        let key = BlobKey::from_segments(&[&user.to_string(), &folder.name, &format!("{id}.png")])
            .unwrap();
        t.blobs.put_new(&key, png.clone()).await.unwrap();
        store
            .save_imported_picture(&ImportedPicture {
                session_id: session.id,
                id,
                user_id: user,
                blob_key: key.to_string(),
                sha256: String::new(),
                content_type: "image/png".into(),
                width: 250,
                height: 250,
                label: PictureLabel {
                    seed_id,
                    zoom_level: 1.0,
                    nb_seeds: 3,
                },
                created_at: chrono::Utc::now(),
            })
            .await
            .unwrap();
    }
    let dataset_bytes = png.len() * PICTURES;

    let baseline = resident_bytes();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(baseline));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                peak.fetch_max(resident_bytes(), std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        })
    };
    let started = std::time::Instant::now();
    let mut response = t.http.get(t.url("/dataset")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let mut received = 0usize;
    while let Some(chunk) = response.chunk().await.unwrap() {
        received += chunk.len();
    }
    let elapsed = started.elapsed();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap();
    let growth = peak
        .load(std::sync::atomic::Ordering::Relaxed)
        .saturating_sub(baseline);
    println!(
        "dataset export: {PICTURES} pictures, {:.1} MB of pictures, {:.1} MB archive in {elapsed:.2?}: \
         {:.0} pictures/s, {:.1} MB/s; resident memory grew by at most {:.1} MB",
        dataset_bytes as f64 / 1e6,
        received as f64 / 1e6,
        PICTURES as f64 / elapsed.as_secs_f64(),
        received as f64 / 1e6 / elapsed.as_secs_f64(),
        growth as f64 / 1e6,
    );
    assert!(received > dataset_bytes, "every picture went out");
    assert!(
        growth < (dataset_bytes / 4) as u64,
        "the export held {growth} bytes for a dataset of {dataset_bytes}"
    );
    t.backend.stop().await;
}
