//! Catalogue versions through the real adapters: Fernet, and blob storage on local disk and
//! on Azurite (started by `deploy/run-tests.sh`; these tests fail without it).

use std::sync::Arc;

use async_trait::async_trait;
use blob_store::BlobSettings;
use catalogue_store::{BlobCatalogueStore, CatalogueSettings, FernetCipher};
use datastore::BlobStore;
use pipeline::ports::{CatalogueRecorder, PublishVersionError, RecordCatalogueError};
use pipeline::{
    Catalogue, CatalogueDocument, CatalogueLoader, CatalogueVersions, OpenVersionError,
    PipelineRegistry, RecordedIds, validate_document,
};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

const ENDPOINT: &str = "https://plaintext-endpoint.example/score";
const API_KEY: &str = "plaintext-api-key-0123456789";

fn document(version: &str, pipeline: &str) -> CatalogueDocument {
    CatalogueDocument::from_yaml(&format!(
        r#"
version: "{version}"
date: "2024-03-12"
pipelines:
  - pipeline_name: "{pipeline}"
    models: [detector, classifier]
    default: true
    version: "1"
    dataset_description: seeds
    accuracy: 0.9
models:
  - model_name: detector
    kind: seed_detector
    task: object-detection
    endpoint: "{ENDPOINT}"
    api_key: "{API_KEY}"
    content_type: application/json
    deployment_platform: azureml-model-deployment
    version: "1"
    dataset_description: ""
    accuracy: null
  - model_name: classifier
    kind: classifier
    task: classification
    endpoint: "{ENDPOINT}/classifier"
    api_key: "{API_KEY}-2"
    content_type: application/json
    deployment_platform: azureml-model-deployment
    version: "2"
    dataset_description: ""
    accuracy: null
"#
    ))
    .unwrap()
}

fn catalogue(version: &str, pipeline: &str) -> Catalogue {
    validate_document(document(version, pipeline), None).unwrap()
}

struct Backend {
    name: &'static str,
    blobs: BlobSettings,
    settings: CatalogueSettings,
    _dir: Option<tempfile::TempDir>,
}

impl Backend {
    fn versions(&self) -> CatalogueVersions {
        self.settings.versions(&self.blobs).unwrap()
    }

    fn with_key(&self, key: SecretString) -> CatalogueVersions {
        let settings = CatalogueSettings {
            decryption_key: Some(key),
            ..self.settings.clone()
        };
        settings.versions(&self.blobs).unwrap()
    }

    /// The catalogue's container, read directly.
    fn raw(&self) -> Arc<dyn BlobStore> {
        Arc::new(blob_store::open(&self.settings.blob_settings(&self.blobs)).unwrap())
    }
}

fn local_disk() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    Backend {
        name: "local disk",
        blobs: BlobSettings::LocalDisk {
            root: dir.path().to_path_buf(),
        },
        settings: CatalogueSettings {
            container: Some("nachet-pipelines".into()),
            version: None,
            decryption_key: Some(FernetCipher::generate_key()),
        },
        _dir: Some(dir),
    }
}

fn azurite() -> Backend {
    let azurite = test_support::azurite_settings();
    Backend {
        name: "Azurite",
        blobs: BlobSettings::Azure {
            account: azurite.account,
            access_key: SecretString::from(azurite.key),
            container: "not-the-catalogue".into(),
            endpoint: Some(azurite.endpoint),
            prefix: Some(format!("test-{}", test_support::unique_suffix())),
        },
        settings: CatalogueSettings {
            container: Some(azurite.container),
            version: None,
            decryption_key: Some(FernetCipher::generate_key()),
        },
        _dir: None,
    }
}

fn backends() -> Vec<Backend> {
    vec![local_disk(), azurite()]
}

struct DerivedIds;

#[async_trait]
impl CatalogueRecorder for DerivedIds {
    async fn record(&self, catalogue: &Catalogue) -> Result<RecordedIds, RecordCatalogueError> {
        let id = |name: &str| Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes());
        Ok(RecordedIds {
            pipelines: catalogue
                .pipelines()
                .iter()
                .map(|p| (p.name.clone(), id(&p.name)))
                .collect(),
            models: catalogue
                .models()
                .iter()
                .map(|m| (m.name.clone(), id(&m.name)))
                .collect(),
        })
    }
}

#[tokio::test]
async fn insert_list_show_load_and_nothing_in_clear() {
    for backend in backends() {
        let versions = backend.versions();
        versions.publish(&catalogue("0.1.4", "swin")).await.unwrap();
        versions
            .publish(&catalogue("0.1.5", "swin v2"))
            .await
            .unwrap();

        // The stored blob, read directly: where the contract says, with no secret in clear.
        let raw = backend
            .raw()
            .get(&BlobCatalogueStore::key("0.1.4").unwrap())
            .await
            .unwrap();
        let raw = String::from_utf8(raw.to_vec()).unwrap();
        assert!(
            !raw.contains("plaintext-endpoint"),
            "{}: {raw}",
            backend.name
        );
        assert!(
            !raw.contains("plaintext-api-key"),
            "{}: {raw}",
            backend.name
        );
        let stored: serde_json::Value = serde_json::from_str(&raw).unwrap();
        let token = stored["models"][0]["endpoint"].as_str().unwrap();
        assert!(token.starts_with("gAAAAA"), "{}: {token}", backend.name);
        assert_eq!(stored["pipelines"][0]["pipeline_name"], "swin");

        let list = versions.list().await.unwrap();
        let listed: Vec<(&str, &str, Vec<String>)> = list
            .iter()
            .map(|v| {
                (
                    v.version.as_str(),
                    v.date.as_deref().unwrap(),
                    v.pipelines.clone(),
                )
            })
            .collect();
        assert_eq!(
            listed,
            [
                ("0.1.4", "2024-03-12", vec!["swin".to_owned()]),
                ("0.1.5", "2024-03-12", vec!["swin v2".to_owned()]),
            ],
            "{}",
            backend.name
        );
        let age = chrono::Utc::now() - list[0].published_at;
        assert!(age.num_minutes().abs() < 10, "{}: {age}", backend.name);

        let shown = versions.open("0.1.4").await.unwrap();
        let detector = shown.model("detector").unwrap();
        assert_eq!(detector.endpoint.expose_secret(), ENDPOINT);
        assert_eq!(detector.api_key.expose_secret(), API_KEY);

        let loader = CatalogueLoader::new(versions, Arc::new(DerivedIds));
        let registry = PipelineRegistry::new(loader.load("0.1.4").await.unwrap());
        assert_eq!(registry.current().names(), ["swin"]);
        loader.switch(&registry, "0.1.5").await.unwrap();
        assert_eq!(registry.current().names(), ["swin v2"]);
        let current = registry.current();
        let model = &current.pipelines()[0].models[1];
        assert_eq!(
            model.definition.endpoint.expose_secret(),
            &format!("{ENDPOINT}/classifier")
        );
    }
}

#[tokio::test]
async fn another_key_is_told_as_such() {
    for backend in backends() {
        backend
            .versions()
            .publish(&catalogue("0.1.4", "p"))
            .await
            .unwrap();
        let error = backend
            .with_key(FernetCipher::generate_key())
            .open("0.1.4")
            .await
            .unwrap_err();
        assert!(
            matches!(error, OpenVersionError::WrongKey { .. }),
            "{}: {error}",
            backend.name
        );
        assert!(
            error
                .to_string()
                .contains("NACHET_BLOB_PIPELINE_DECRYPTION_KEY")
        );
    }
}

#[tokio::test]
async fn a_missing_version_lists_those_that_exist() {
    for backend in backends() {
        let versions = backend.versions();
        let error = versions.open("0.1.4").await.unwrap_err();
        assert!(
            error.to_string().contains("which holds no version yet"),
            "{}: {error}",
            backend.name
        );
        versions.publish(&catalogue("0.1.3", "p")).await.unwrap();
        versions.publish(&catalogue("0.1.10", "p")).await.unwrap();
        let error = versions.open("0.1.4").await.unwrap_err();
        let OpenVersionError::NotFound {
            available,
            location,
            ..
        } = &error
        else {
            panic!("{}: {error}", backend.name)
        };
        assert_eq!(available, &["0.1.3", "0.1.10"], "{}", backend.name);
        assert!(location.starts_with("pipelines/ of "), "{location}");
        assert!(
            error
                .to_string()
                .contains("the versions there are 0.1.3, 0.1.10"),
            "{error}"
        );
    }
}

#[tokio::test]
async fn an_existing_version_is_not_overwritten() {
    for backend in backends() {
        let versions = backend.versions();
        versions
            .publish(&catalogue("0.1.4", "first"))
            .await
            .unwrap();
        let error = versions
            .publish(&catalogue("0.1.4", "second"))
            .await
            .unwrap_err();
        assert!(
            matches!(error, PublishVersionError::AlreadyExists { .. }),
            "{}: {error}",
            backend.name
        );
        assert!(error.to_string().contains("already exists"), "{error}");
        let kept = versions.open("0.1.4").await.unwrap();
        assert_eq!(kept.pipelines()[0].name, "first", "{}", backend.name);
    }
}

#[tokio::test]
async fn of_concurrent_inserts_of_one_version_exactly_one_wins() {
    for backend in backends() {
        let versions = backend.versions();
        let attempts = (0..8).map(|i| {
            let versions = versions.clone();
            tokio::spawn(async move {
                let pipeline = format!("writer {i}");
                versions
                    .publish(&catalogue("0.2.0", &pipeline))
                    .await
                    .map(|()| pipeline)
            })
        });
        let results: Vec<_> = futures::future::join_all(attempts)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let winners: Vec<&String> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(winners.len(), 1, "{}: {results:?}", backend.name);
        for result in &results {
            if let Err(e) = result {
                assert!(
                    matches!(e, PublishVersionError::AlreadyExists { .. }),
                    "{}: {e}",
                    backend.name
                );
            }
        }
        let stored = versions.open("0.2.0").await.unwrap();
        assert_eq!(&stored.pipelines()[0].name, winners[0], "{}", backend.name);
    }
}
