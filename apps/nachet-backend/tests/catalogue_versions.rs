//! Catalogue versions in the running backend: loading at start (also through the binary with
//! the contract's variable names, and refusing to start without what production needs),
//! switching under load with the admin API, the development stand-ins' own key and version.
//! Reference model servers on free ports, SQLite and local disk in a temporary folder.

use std::io::Cursor;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use catalogue_store::{CatalogueSettings, FernetCipher};
use nachet_backend::{Backend, Settings};
use nachet_dev::StandIns;
use pipeline::{CatalogueDocument, CatalogueVersions, validate_document};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

const ADMIN_TOKEN: &str = "admin-token-for-tests";
const MODELS_KEY: &str = "reference-models-dev-key";

fn settings(dir: &Path, key: Option<&SecretString>) -> Settings {
    let (mut settings, _) = nachet_dev::default_settings();
    settings.data_dir = dir.to_path_buf();
    settings.server.port = 0;
    settings.database.url = SecretString::from(format!(
        "sqlite://{}?mode=rwc",
        dir.join("db.sqlite").display()
    ));
    settings.blob = blob_store::BlobSettings::LocalDisk {
        root: dir.join("blobs"),
    };
    settings.catalogue = CatalogueSettings {
        container: Some("nachet-pipelines".into()),
        version: None,
        decryption_key: key.cloned(),
    };
    settings.admin.token = Some(SecretString::from(ADMIN_TOKEN));
    settings
}

/// A backend with the development stand-ins: reference models (on `models_port`, or a free
/// port), their catalogue published unless the settings name a version, the reference ML app.
struct Dev {
    backend: Backend,
    stand_ins: StandIns,
}

impl Dev {
    fn url(&self) -> &str {
        self.backend.url()
    }

    fn models_url(&self) -> String {
        self.stand_ins.models.url.clone()
    }

    async fn stop(self) {
        self.backend.stop().await;
        self.stand_ins.stop().await;
    }
}

async fn start(settings: Settings, models_port: Option<u16>) -> Dev {
    let (_, mut options) = nachet_dev::default_settings();
    options.demo_dicom = false;
    options.models_port = models_port;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let (backend, stand_ins, _) = nachet_dev::start_on(listener, &options, settings)
        .await
        .unwrap();
    Dev { backend, stand_ins }
}

/// A catalogue with one pipeline `seeds` (detector + classifier) at `models_url`.
fn catalogue_document(
    version: &str,
    pipeline_version: &str,
    models_url: &str,
) -> CatalogueDocument {
    let model = |name: &str, kind: &str, task: &str| {
        json!({
            "model_name": name, "kind": kind, "task": task,
            "endpoint": format!("{models_url}/score"), "api_key": MODELS_KEY,
            "content_type": "application/json",
            "deployment_platform": reference_models::ROUTING_HEADER,
            "version": "1", "dataset_description": "", "accuracy": null
        })
    };
    serde_json::from_value(json!({
        "version": version,
        "date": "2026-11-22",
        "pipelines": [{
            "pipeline_name": "seeds",
            "models": [reference_models::SEED_DETECTOR, reference_models::SEED_CLASSIFIER],
            "default": true,
            "version": pipeline_version,
            "description": format!("catalogue {version}"),
            "dataset_description": "", "accuracy": null
        }],
        "models": [
            model(reference_models::SEED_DETECTOR, "seed_detector", "object-detection"),
            model(reference_models::SEED_CLASSIFIER, "classifier", "classification"),
        ]
    }))
    .unwrap()
}

fn versions(settings: &Settings, key: &SecretString) -> CatalogueVersions {
    CatalogueSettings {
        decryption_key: Some(key.clone()),
        ..settings.catalogue.clone()
    }
    .versions(&settings.blob)
    .unwrap()
}

async fn publish(versions: &CatalogueVersions, document: CatalogueDocument) {
    versions
        .publish(&validate_document(document, None).unwrap())
        .await
        .unwrap();
}

/// Two dark seeds on a light background, as a data URL.
fn picture() -> (String, [u32; 2]) {
    let (w, h) = (96u32, 64u32);
    let mut img = image::RgbImage::from_pixel(w, h, image::Rgb([236, 232, 224]));
    for (cx, cy, rx, ry) in [(26.0, 30.0, 10.0, 7.0), (68.0, 34.0, 8.0, 11.0)] {
        for y in 0..h {
            for x in 0..w {
                let (dx, dy) = ((x as f64 - cx) / rx, (y as f64 - cy) / ry);
                if dx * dx + dy * dy <= 1.0 {
                    img.put_pixel(x, y, image::Rgb([92, 58, 30]));
                }
            }
        }
    }
    let mut png = Vec::new();
    img.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let data = base64::engine::general_purpose::STANDARD.encode(png);
    (format!("data:image/png;base64,{data}"), [w, h])
}

struct Client {
    http: reqwest::Client,
    url: String,
}

impl Client {
    fn new(url: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            url: url.to_owned(),
        }
    }

    async fn reload(&self, version: &str, token: Option<&str>) -> (u16, Value) {
        let mut request = self
            .http
            .post(format!("{}/api/admin/pipelines/reload", self.url))
            .json(&json!({ "version": version }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn switch(&self, version: &str) -> Value {
        let (status, body) = self.reload(version, Some(ADMIN_TOKEN)).await;
        assert_eq!(status, 200, "switch to {version}: {body}");
        body
    }

    async fn metadata(&self) -> Vec<Value> {
        self.http
            .get(format!("{}/model-endpoints-metadata", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn admin_pipelines(&self) -> Value {
        let response = self
            .http
            .get(format!("{}/api/admin/pipelines", self.url))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    async fn user_id(&self) -> String {
        let body: Value = self
            .http
            .post(format!("{}/get-user-id", self.url))
            .json(&json!({ "email": "" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["user_id"].as_str().unwrap().to_owned()
    }

    async fn infer(
        &self,
        pipeline: &str,
        user: &str,
        picture: &(String, [u32; 2]),
    ) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/inf", self.url))
            .json(&json!({
                "model_name": pipeline,
                "image": picture.0,
                "imageDims": picture.1,
                "folder_name": "catalogue-switch",
                "container_name": user,
                "userId": user,
            }))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

fn pipeline_id(running: &Value, name: &str) -> String {
    running["pipelines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pipeline_name"] == name)
        .unwrap()["pipeline_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_keep_succeeding_while_the_version_changes() {
    let dir = tempfile::tempdir().unwrap();
    let key = FernetCipher::generate_key();
    let settings = settings(dir.path(), Some(&key));
    let backend = start(settings.clone(), None).await;
    let models_url = backend.models_url();
    let store = versions(&settings, &key);
    publish(&store, catalogue_document("1.0.0", "1", &models_url)).await;
    publish(&store, catalogue_document("1.0.1", "2", &models_url)).await;

    let client = Arc::new(Client::new(backend.url()));
    let first = client.switch("1.0.0").await;
    let id_a = pipeline_id(&first["running"], "seeds");
    let second = client.switch("1.0.1").await;
    assert_eq!(second["previous_version"], "1.0.0");
    let id_b = pipeline_id(&second["running"], "seeds");
    assert_ne!(id_a, id_b, "two pipeline versions, two ids");

    let user = client.user_id().await;
    let picture = Arc::new(picture());
    let (status, body) = client.infer("seeds", &user, &picture).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["totalBoxes"].as_u64().unwrap() >= 1, "{body}");

    // Workers send requests until told to stop (bounded in count and time).
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let (client, user, picture, stop) =
                (client.clone(), user.clone(), picture.clone(), stop.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                let mut results = Vec::new();
                while !stop.load(Ordering::Relaxed)
                    && results.len() < 400
                    && started.elapsed() < Duration::from_secs(60)
                {
                    let (status, body) = client.infer("seeds", &user, &picture).await;
                    results.push((
                        status,
                        body["pipeline_id"].as_str().map(str::to_owned),
                        body,
                    ));
                }
                results
            })
        })
        .collect();

    for round in 0..8 {
        let (version, id) = if round % 2 == 0 {
            ("1.0.0", &id_a)
        } else {
            ("1.0.1", &id_b)
        };
        client.switch(version).await;
        // The metadata shows the new version at once.
        let metadata = client.metadata().await;
        assert_eq!(metadata.len(), 1);
        assert_eq!(metadata[0]["pipeline_id"].as_str().unwrap(), id);
        assert_eq!(metadata[0]["description"], format!("catalogue {version}"));
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    stop.store(true, Ordering::Relaxed);

    let mut seen = std::collections::BTreeSet::new();
    let mut count = 0;
    for worker in workers {
        for (status, pipeline, body) in worker.await.unwrap() {
            assert_eq!(status, 200, "a request failed during the switches: {body}");
            seen.insert(pipeline.unwrap());
            count += 1;
        }
    }
    eprintln!("{count} requests during 8 switches, on pipeline ids {seen:?}");
    assert!(count >= 6, "only {count} requests were made");
    assert!(
        seen.is_subset(&[id_a.clone(), id_b.clone()].into()),
        "{seen:?}"
    );
    assert_eq!(seen.len(), 2, "requests ran on both versions: {seen:?}");
    backend.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_finishes_on_the_version_it_started_with() {
    let dir = tempfile::tempdir().unwrap();
    let key = FernetCipher::generate_key();
    let settings = settings(dir.path(), Some(&key));
    let backend = start(settings.clone(), None).await;
    let fast_url = backend.models_url();
    let slow = reference_models::start(reference_models::Options::new(MODELS_KEY).with_behaviour(
        reference_models::Behaviour::Delay(Duration::from_millis(1500)),
    ))
    .await
    .unwrap();
    let store = versions(&settings, &key);
    publish(&store, catalogue_document("2.0.0", "1", &slow.url)).await;
    publish(&store, catalogue_document("2.0.1", "2", &fast_url)).await;

    let client = Arc::new(Client::new(backend.url()));
    let old = client.switch("2.0.0").await;
    let old_id = pipeline_id(&old["running"], "seeds");
    let user = client.user_id().await;
    let picture = picture();

    let in_flight = {
        let (client, user, picture) = (client.clone(), user.clone(), picture.clone());
        tokio::spawn(async move { client.infer("seeds", &user, &picture).await })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    let new = client.switch("2.0.1").await;
    let new_id = pipeline_id(&new["running"], "seeds");
    let started = Instant::now();
    let (status, body) = client.infer("seeds", &user, &picture).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["pipeline_id"].as_str().unwrap(), new_id);
    assert!(
        started.elapsed() < Duration::from_millis(1200),
        "the new version is the fast one"
    );

    let (status, body) = in_flight.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["pipeline_id"].as_str().unwrap(), old_id);
    backend.stop().await;
    slow.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_needs_its_token_and_a_failed_load_keeps_the_running_version() {
    let dir = tempfile::tempdir().unwrap();
    let key = FernetCipher::generate_key();
    let settings = settings(dir.path(), Some(&key));
    let backend = start(settings.clone(), None).await;
    let models_url = backend.models_url();
    let store = versions(&settings, &key);
    publish(&store, catalogue_document("3.0.0", "1", &models_url)).await;
    // Published with another key.
    publish(
        &versions(&settings, &FernetCipher::generate_key()),
        catalogue_document("3.0.1", "1", &models_url),
    )
    .await;

    let client = Client::new(backend.url());
    client.switch("3.0.0").await;

    let (status, body) = client.reload("3.0.0", None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        body["error"],
        "send the admin token as Authorization: Bearer <token>"
    );
    let (status, _) = client.reload("3.0.0", Some("wrong")).await;
    assert_eq!(status, 401);
    let response = client
        .http
        .get(format!("{}/api/admin/pipelines", backend.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");

    let (status, body) = client.reload("9.9.9", Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 404, "{body}");
    let message = body["error"].as_str().unwrap();
    assert!(
        message.contains("catalogue version 9.9.9 is not in pipelines/ of folder "),
        "{message}"
    );
    let available: Vec<&str> = body["available_versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        available.contains(&"3.0.0") && available.contains(&"3.0.1"),
        "{available:?}"
    );

    let (status, body) = client.reload("3.0.1", Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        body["error"],
        "catalogue version 3.0.1 was encrypted with another key: check \
         NACHET_BLOB_PIPELINE_DECRYPTION_KEY (it must be the key the version was inserted with)"
    );

    let response = client
        .http
        .post(format!("{}/api/admin/pipelines/reload", backend.url()))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body("{\"versoin\": \"3.0.0\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("`version`"),
        "{body}"
    );

    // Still the version that ran before the failures.
    let metadata = client.metadata().await;
    assert_eq!(metadata[0]["description"], "catalogue 3.0.0");
    let listed = client.admin_pipelines().await;
    assert_eq!(listed["running"]["version"], "3.0.0");
    let stored: Vec<&str> = listed["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(stored, ["0.0.1", "3.0.0", "3.0.1"]);
    backend.stop().await;
}

/// A switch whose choice cannot be recorded for the other replicas says so (503): this
/// replica runs the version, the others would not follow; the same reload, once the
/// database takes writes again, records it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_that_cannot_be_recorded_for_the_replicas_says_so() {
    use sea_orm::ConnectionTrait;
    let dir = tempfile::tempdir().unwrap();
    let key = FernetCipher::generate_key();
    let settings = settings(dir.path(), Some(&key));
    let backend = start(settings.clone(), None).await;
    let store = versions(&settings, &key);
    publish(
        &store,
        catalogue_document("4.0.0", "1", &backend.models_url()),
    )
    .await;
    let client = Client::new(backend.url());

    // Where the choice is recorded goes away.
    let db = sea_orm::Database::connect(settings.database.url.expose_secret())
        .await
        .unwrap();
    db.execute_unprepared("ALTER TABLE catalogue_active RENAME TO catalogue_active_away")
        .await
        .unwrap();
    let (status, body) = client.reload("4.0.0", Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 503, "{body}");
    let message = body["error"].as_str().unwrap();
    assert!(
        message.contains("this replica now runs catalogue version 4.0.0")
            && message.contains("could not be recorded for the other replicas"),
        "{message}"
    );
    assert_eq!(client.metadata().await[0]["description"], "catalogue 4.0.0");

    db.execute_unprepared("ALTER TABLE catalogue_active_away RENAME TO catalogue_active")
        .await
        .unwrap();
    let (status, body) = client.reload("4.0.0", Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        client.admin_pipelines().await["running"]["version"],
        "4.0.0"
    );
    backend.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_development_stand_ins_publish_their_catalogue_with_a_key_they_keep() {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(dir.path(), None);
    let port = free_port();

    let backend = start(settings.clone(), Some(port)).await;
    let key_file = dir.path().join("pipeline-catalogue.key");
    let key = std::fs::read_to_string(&key_file).unwrap();
    let client = Client::new(backend.url());
    let listed = client.admin_pipelines().await;
    assert_eq!(listed["running"]["version"], "0.0.1");
    let names: Vec<String> = client
        .metadata()
        .await
        .iter()
        .map(|p| p["pipeline_name"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        names.contains(&"Reference detector + classifier".to_owned()),
        "{names:?}"
    );
    let raw = std::fs::read_to_string(
        dir.path()
            .join("blobs/nachet-pipelines/pipelines/0.0.1.json"),
    )
    .unwrap();
    assert!(
        !raw.contains("127.0.0.1") && !raw.contains(MODELS_KEY),
        "{raw}"
    );
    backend.stop().await;

    // Same servers, same key: the same version again.
    let backend = start(settings.clone(), Some(port)).await;
    let client = Client::new(backend.url());
    assert_eq!(
        client.admin_pipelines().await["running"]["version"],
        "0.0.1"
    );
    backend.stop().await;
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), key);

    // The servers moved: a new version, still with the kept key.
    let backend = start(settings, Some(free_port())).await;
    let client = Client::new(backend.url());
    assert_eq!(
        client.admin_pipelines().await["running"]["version"],
        "0.0.2"
    );
    backend.stop().await;
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), key);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the key file is private: {mode:o}");
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What production needs besides the catalogue (the ML app is not called in these tests).
const PRODUCTION_ENV: &[(&str, &str)] = &[
    ("NACHET__IDENTITY__MODE", "header"),
    ("NACHET__IDENTITY__HEADER", "X-Forwarded-Email"),
    ("NACHET__SERIES__ACCESS__MODE", "development"),
    ("NACHET__SERIES__ML_APP__URL", "http://127.0.0.1:9"),
    ("NACHET__SERIES__ML_APP__CALLBACK_TOKEN", "callback-token"),
    ("NACHET__SERIES__ML_APP__MODEL_TYPES", "a,b"),
];

/// The binary, with only the given variables (and PATH).
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn backend_binary(dir: &Path, port: u16, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_nachet-backend"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .env("NACHET__DATA_DIR", dir.display().to_string())
        .env(
            "NACHET__DATABASE__URL",
            format!("sqlite://{}?mode=rwc", dir.join("db.sqlite").display()),
        )
        .env(
            "NACHET__BLOB__ROOT",
            dir.join("blobs").display().to_string(),
        )
        .env("NACHET__SERVER__PORT", port.to_string())
        .envs(PRODUCTION_ENV.iter().copied())
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_loads_the_version_named_by_the_contract_variables() {
    let dir = tempfile::tempdir().unwrap();
    let key = FernetCipher::generate_key();
    let settings = settings(dir.path(), Some(&key));
    let store = versions(&settings, &key);
    publish(
        &store,
        catalogue_document("0.1.4", "1", "http://127.0.0.1:9"),
    )
    .await;
    publish(
        &store,
        catalogue_document("0.1.5", "1", "http://127.0.0.1:9"),
    )
    .await;

    let contract = |version: &'static str, key: String| {
        vec![
            ("NACHET_BLOB_PIPELINE_NAME", "nachet-pipelines".to_owned()),
            ("NACHET_BLOB_PIPELINE_VERSION", version.to_owned()),
            ("NACHET_BLOB_PIPELINE_DECRYPTION_KEY", key),
        ]
    };
    let as_env = |vars: &[(&'static str, String)]| -> Vec<(&'static str, String)> { vars.to_vec() };

    let port = free_port();
    let vars = as_env(&contract("0.1.5", key.expose_secret().to_owned()));
    let env: Vec<(&str, &str)> = vars.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let _process = Process(backend_binary(dir.path(), port, &env).spawn().unwrap());
    let client = Client::new(&format!("http://127.0.0.1:{port}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let metadata = loop {
        if let Ok(response) = client
            .http
            .get(format!("{}/model-endpoints-metadata", client.url))
            .send()
            .await
        {
            break response.json::<Vec<Value>>().await.unwrap();
        }
        assert!(Instant::now() < deadline, "the backend did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(metadata[0]["description"], "catalogue 0.1.5");
    drop(_process);

    // Start-up errors say what is wrong and how to fix it.
    for (version, key, expected) in [
        (
            "0.1.6",
            key.expose_secret().to_owned(),
            "catalogue version 0.1.6 is not in pipelines/ of folder",
        ),
        (
            "0.1.4",
            FernetCipher::generate_key().expose_secret().to_owned(),
            "catalogue version 0.1.4 was encrypted with another key: check \
             NACHET_BLOB_PIPELINE_DECRYPTION_KEY",
        ),
        ("0.1.4", "not-a-key".to_owned(), "is not a Fernet key"),
    ] {
        let vars = as_env(&contract(version, key));
        let env: Vec<(&str, &str)> = vars.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let output = backend_binary(dir.path(), free_port(), &env)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{stderr}");
        assert!(
            stderr.contains(expected),
            "expected {expected:?} in:\n{stderr}"
        );
        if version == "0.1.6" {
            assert!(
                stderr.contains("the versions there are 0.1.4, 0.1.5"),
                "{stderr}"
            );
        }
    }
}

/// The production binary refuses to start without each setting a deployment must give, and
/// names it (no development stand-in fills anything in).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_refuses_to_start_without_each_production_setting() {
    let dir = tempfile::tempdir().unwrap();
    let key = FernetCipher::generate_key();
    let full: Vec<(&str, String)> = PRODUCTION_ENV
        .iter()
        .map(|(n, v)| (*n, (*v).to_owned()))
        .chain([
            ("NACHET__CATALOGUE__VERSION", "0.1.4".to_owned()),
            (
                "NACHET__CATALOGUE__DECRYPTION_KEY",
                key.expose_secret().to_owned(),
            ),
        ])
        .collect();
    for (missing, named) in [
        ("NACHET__CATALOGUE__VERSION", "catalogue.version"),
        (
            "NACHET__CATALOGUE__DECRYPTION_KEY",
            "catalogue.decryption_key",
        ),
        ("NACHET__IDENTITY__MODE", "identity.mode"),
        ("NACHET__SERIES__ACCESS__MODE", "series.access.mode"),
        ("NACHET__SERIES__ML_APP__URL", "series.ml_app.url"),
        (
            "NACHET__SERIES__ML_APP__CALLBACK_TOKEN",
            "series.ml_app.callback_token",
        ),
        (
            "NACHET__SERIES__ML_APP__MODEL_TYPES",
            "series.ml_app.model_types",
        ),
    ] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_nachet-backend"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("NO_COLOR", "1")
            .env("NACHET__DATA_DIR", dir.path().display().to_string())
            .env(
                "NACHET__DATABASE__URL",
                format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("db.sqlite").display()
                ),
            )
            .env("NACHET__SERVER__PORT", "0");
        for (name, value) in &full {
            // A mode's other keys go with it, or the section is refused for another reason.
            let left_out = *name == missing
                || (missing == "NACHET__IDENTITY__MODE" && *name == "NACHET__IDENTITY__HEADER");
            if !left_out {
                command.env(name, value);
            }
        }
        let output = command.stdout(Stdio::null()).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "started without {missing}: {stderr}"
        );
        assert!(
            stderr.contains("the settings miss what the server needs") && stderr.contains(named),
            "without {missing}, expected {named:?} in:\n{stderr}"
        );
        // Only what is missing is named.
        assert_eq!(stderr.matches("\n  - ").count(), 1, "{stderr}");
    }
    // Nothing was opened before the refusal.
    assert!(!dir.path().join("db.sqlite").exists());
}

/// Polls `client`'s running catalogue until its description is `catalogue {version}`.
async fn wait_for_version(client: &Client, version: &str) {
    let started = Instant::now();
    loop {
        let running = client.metadata().await[0]["description"].clone();
        if running == format!("catalogue {version}") {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "still running {running}, not {version}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Replicas on one database: a new configuration is chosen for all of them, an
/// administrator's switch on one reaches the others, and a restart with the same
/// configuration keeps what was switched to since.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_on_one_replica_reaches_the_others_and_a_restart_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let key = FernetCipher::generate_key();
    let mut settings = settings(dir.path(), Some(&key));
    settings.catalogue_poll_seconds = 1;
    let a = start(settings.clone(), None).await;
    let models_url = a.models_url();
    let store = versions(&settings, &key);
    publish(&store, catalogue_document("1.0.0", "1", &models_url)).await;
    publish(&store, catalogue_document("1.0.1", "2", &models_url)).await;

    // B is deployed with 1.0.0 configured: a new configuration, chosen for every replica.
    let mut configured = settings.clone();
    configured.catalogue.version = Some("1.0.0".into());
    let b = start(configured.clone(), None).await;
    let (client_a, client_b) = (Client::new(a.url()), Client::new(b.url()));
    wait_for_version(&client_b, "1.0.0").await;
    wait_for_version(&client_a, "1.0.0").await;

    // An administrator switches A: B follows.
    client_a.switch("1.0.1").await;
    wait_for_version(&client_b, "1.0.1").await;

    // B restarts with the same configuration: it runs what was switched to since.
    b.stop().await;
    let b = start(configured, None).await;
    let client_b = Client::new(b.url());
    let running = client_b.metadata().await[0]["description"].clone();
    assert_eq!(running, "catalogue 1.0.1");
    b.stop().await;
    a.stop().await;
}
