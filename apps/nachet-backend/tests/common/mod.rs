//! Helpers of the app's end-to-end tests: a backend on port 0 with the development
//! stand-ins (`nachet-dev`: reference model servers and their published catalogue, the
//! reference ML app), over the database and blob storage a test chooses.

#![allow(dead_code)]

use std::io::Cursor;
use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use blob_store::BlobSettings;
use image::{DynamicImage, ImageFormat, RgbImage, Rgba, RgbaImage};
use nachet_backend::{Backend, Settings};
use nachet_dev::StandIns;
use sea_orm::{ConnectionTrait, Statement};
use secrecy::{ExposeSecret, SecretString};
use sql_store::SqlStore;
use std::sync::Arc;
use tempfile::TempDir;

pub const SEED_PHOTO: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../docs/examples/seed-photo-1310_1.png"
);

pub enum Db {
    Sqlite,
    Postgres,
}

pub enum Blobs {
    LocalDisk,
    Azurite,
}

pub struct TestBackend {
    pub backend: Backend,
    /// The reference models (`stand_ins.models.url`) and the reference ML app.
    pub stand_ins: StandIns,
    /// The settings it was started with, the stand-ins' filled in (port 0: use `backend.url()`).
    pub settings: Settings,
    /// The backend's database and blob storage, opened by the test.
    pub store: Arc<SqlStore>,
    pub blobs: Arc<dyn datastore::BlobStore>,
    pub http: reqwest::Client,
    /// Holds the data folder until the test ends.
    pub dir: TempDir,
}

impl TestBackend {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.backend.url())
    }

    /// Stops the backend, then the stand-ins.
    pub async fn stop(self) {
        self.backend.stop().await;
        self.stand_ins.stop().await;
    }

    /// Rows in a table of the backend's database.
    pub async fn count(&self, table: &str) -> i64 {
        let db = self.store.connection();
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                format!("SELECT COUNT(*) AS n FROM {table}"),
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get("", "n").unwrap()
    }

    /// Every blob key in the backend's blob storage but the catalogue versions.
    pub async fn blob_keys(&self) -> Vec<String> {
        self.blobs
            .list("")
            .await
            .unwrap()
            .into_iter()
            .map(|b| b.key.to_string())
            .filter(|key| !key.starts_with("pipelines/"))
            .collect()
    }

    /// A client whose requests are `email`'s (the test backends trust the proxy header
    /// [`IDENTITY_HEADER`]).
    pub fn client_as(&self, email: &str) -> reqwest::Client {
        client_as(email)
    }

    /// The id of the user `email` (registered on first sight), as the frontend asks it.
    pub async fn user(&self, email: &str) -> String {
        let answer: serde_json::Value = self
            .client_as(email)
            .post(self.url("/get-user-id"))
            .json(&serde_json::json!({ "email": "" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["user_id"].as_str().unwrap().to_owned()
    }
}

/// The header that says who the caller is, as an authenticating proxy would set it.
pub const IDENTITY_HEADER: &str = "X-Forwarded-Email";
/// The user of [`TestBackend::http`].
pub const TECH: &str = "tech@example.org";

pub fn client_as(email: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(IDENTITY_HEADER, email.parse().unwrap());
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

/// Settings of a test backend: port 0, a fresh data folder, callers known from the
/// [`IDENTITY_HEADER`] header; the stand-ins fill in the rest at start ([`start_with`]).
pub async fn settings(db: Db, blobs: Blobs) -> (Settings, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (mut settings, _) = nachet_dev::default_settings();
    settings.server.port = 0;
    settings.identity = Some(nachet_backend::http::identity::IdentitySettings::Header {
        header: IDENTITY_HEADER.into(),
    });
    settings.data_dir = dir.path().to_owned();
    settings.database.url = SecretString::from(match db {
        Db::Sqlite => test_support::fresh_sqlite_url(&dir),
        Db::Postgres => test_support::fresh_postgres_database().await,
    });
    settings.blob = match blobs {
        Blobs::LocalDisk => BlobSettings::LocalDisk {
            root: dir.path().join("blobs"),
        },
        Blobs::Azurite => {
            let azurite = test_support::azurite_settings();
            BlobSettings::Azure {
                account: azurite.account,
                access_key: SecretString::from(azurite.key),
                container: azurite.container,
                endpoint: Some(azurite.endpoint),
                prefix: Some(format!("e2e-{}", test_support::unique_suffix())),
            }
        }
    };
    (settings, dir)
}

pub async fn start(db: Db, blobs: Blobs) -> TestBackend {
    let (settings, dir) = settings(db, blobs).await;
    start_with(settings, dir).await
}

/// Starts the stand-ins (reference models on port 0, their catalogue published unless the
/// settings name a version, the reference ML app; no demo DICOM server), then the backend.
pub async fn start_with(settings: Settings, dir: TempDir) -> TestBackend {
    let (_, mut stand_in_settings) = nachet_dev::default_settings();
    stand_in_settings.demo_dicom = false;
    start_with_stand_ins(settings, dir, &stand_in_settings).await
}

pub async fn start_with_stand_ins(
    settings: Settings,
    dir: TempDir,
    stand_in_settings: &nachet_dev::StandInSettings,
) -> TestBackend {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (backend, stand_ins, settings) =
        nachet_dev::start_on(listener, stand_in_settings, settings)
            .await
            .unwrap();
    let store = Arc::new(
        SqlStore::connect(settings.database.url.expose_secret())
            .await
            .unwrap(),
    );
    let blobs: Arc<dyn datastore::BlobStore> = Arc::new(blob_store::open(&settings.blob).unwrap());
    TestBackend {
        backend,
        stand_ins,
        settings,
        store,
        blobs,
        http: client_as(TECH),
        dir,
    }
}

pub fn seed_photo() -> DynamicImage {
    image::open(SEED_PHOTO).unwrap()
}

/// `columns` × `rows` copies of the seed photo on one white canvas.
pub fn tiled_photo(columns: u32, rows: u32) -> DynamicImage {
    let tile = seed_photo().to_rgba8();
    let (w, h) = tile.dimensions();
    let mut canvas = RgbaImage::from_pixel(w * columns, h * rows, Rgba([255, 255, 255, 255]));
    for row in 0..rows {
        for column in 0..columns {
            image::imageops::overlay(
                &mut canvas,
                &tile,
                i64::from(column * w),
                i64::from(row * h),
            );
        }
    }
    DynamicImage::ImageRgba8(canvas)
}

pub fn encode(picture: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    match format {
        ImageFormat::Jpeg => DynamicImage::ImageRgb8(picture.to_rgb8()).write_to(&mut out, format),
        _ => picture.write_to(&mut out, format),
    }
    .unwrap();
    out.into_inner()
}

pub fn data_url(mime: &str, bytes: &[u8]) -> String {
    format!("data:{mime};base64,{}", BASE64.encode(bytes))
}

pub fn photo_bytes() -> Vec<u8> {
    std::fs::read(PathBuf::from(SEED_PHOTO)).unwrap()
}

/// A valid `/inf` body for the default pipeline.
pub fn inf_body(
    pipeline: &str,
    user_id: &str,
    data_url: String,
    dims: [u32; 2],
) -> serde_json::Value {
    serde_json::json!({
        "model_name": pipeline,
        "image": data_url,
        "imageDims": dims,
        "folder_name": "field trial 7",
        "container_name": user_id,
        "user_id": user_id,
    })
}

pub const DEFAULT_PIPELINE: &str = "Reference detector + classifier";

/// A real PNG "bomb": a grey `side`×`side` picture of zeros, a few hundred KiB that would
/// decode to `side`² bytes.
pub fn png_bomb(side: u32) -> Vec<u8> {
    use std::io::Write;
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc.sum().to_be_bytes());
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut header = Vec::new();
    header.extend_from_slice(&side.to_be_bytes());
    header.extend_from_slice(&side.to_be_bytes());
    header.extend_from_slice(&[8, 0, 0, 0, 0]); // 8-bit grey, no interlace
    chunk(&mut png, b"IHDR", &header);
    let mut pixels = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let row = vec![0u8; side as usize + 1]; // filter byte, then the row
    for _ in 0..side {
        pixels.write_all(&row).unwrap();
    }
    chunk(&mut png, b"IDAT", &pixels.finish().unwrap());
    chunk(&mut png, b"IEND", &[]);
    png
}

/// This process's resident memory, in bytes.
pub fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// A JPEG whose EXIF orientation tag says `orientation` (6: shown turned 90° clockwise),
/// as phone cameras write them.
pub fn jpeg_with_orientation(picture: &DynamicImage, orientation: u16) -> Vec<u8> {
    let jpeg = encode(picture, ImageFormat::Jpeg);
    // TIFF header (little endian), one IFD entry: 0x0112 Orientation, SHORT, 1, value.
    let mut tiff = b"II*\0\x08\0\0\0\x01\0\x12\x01\x03\0\x01\0\0\0".to_vec();
    tiff.extend_from_slice(&orientation.to_le_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec(); // SOI
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// POSTs a JSON body: the status and the JSON answer (a non-JSON answer as a string).
pub async fn post_json(
    client: &reqwest::Client,
    url: String,
    body: impl serde::Serialize,
) -> (u16, serde_json::Value) {
    let response = client.post(url).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

/// A PNG of noise (it does not compress): about `side * side * 3` bytes.
pub fn noise_png(side: u32) -> Vec<u8> {
    let mut state = 0x9e37_79b9_u32;
    let picture = RgbImage::from_fn(side, side, |_, _| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let [r, g, b, _] = state.to_le_bytes();
        image::Rgb([r, g, b])
    });
    encode(&DynamicImage::ImageRgb8(picture), ImageFormat::Png)
}
