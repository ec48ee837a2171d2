//! Publishing, listing, opening and loading catalogue versions, over in-memory fakes of the
//! store and the cipher (the real adapters are tested in `catalogue-store`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use pipeline::ports::{
    CatalogueRecorder, CatalogueStore, DecryptError, ListVersionsError, PublishVersionError,
    ReadVersionError, RecordCatalogueError, SecretCipher, StoredVersion,
};
use pipeline::{
    Catalogue, CatalogueDocument, CatalogueLoader, CatalogueVersions, LoadCatalogueError,
    OpenVersionError, PipelineRegistry, PipelineSet, RecordedIds,
};
use secrecy::ExposeSecret;
use uuid::Uuid;

/// Versions in memory; `publish` is create-only like the real store.
#[derive(Default)]
struct MemoryStore {
    documents: Mutex<BTreeMap<String, String>>,
}

#[async_trait]
impl CatalogueStore for MemoryStore {
    fn location(&self) -> String {
        "memory".into()
    }

    async fn versions(&self) -> Result<Vec<StoredVersion>, ListVersionsError> {
        Ok(self
            .documents
            .lock()
            .unwrap()
            .keys()
            .map(|version| StoredVersion {
                version: version.clone(),
                published_at: Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap(),
            })
            .collect())
    }

    async fn read(&self, version: &str) -> Result<String, ReadVersionError> {
        self.documents
            .lock()
            .unwrap()
            .get(version)
            .cloned()
            .ok_or_else(|| ReadVersionError::NotFound {
                version: version.into(),
                location: "memory".into(),
            })
    }

    async fn publish(&self, version: &str, document: String) -> Result<(), PublishVersionError> {
        let mut documents = self.documents.lock().unwrap();
        if documents.contains_key(version) {
            return Err(PublishVersionError::AlreadyExists {
                version: version.into(),
                location: "memory".into(),
            });
        }
        documents.insert(version.into(), document);
        Ok(())
    }
}

/// Reversible and keyed: `sealed:<key>:<reversed text>`.
struct ToyCipher(&'static str);

impl SecretCipher for ToyCipher {
    fn encrypt(&self, plain: &str) -> String {
        format!(
            "sealed:{}:{}",
            self.0,
            plain.chars().rev().collect::<String>()
        )
    }

    fn decrypt(&self, token: &str) -> Result<String, DecryptError> {
        let rest = token
            .strip_prefix("sealed:")
            .ok_or_else(|| DecryptError::NotAToken("no prefix".into()))?;
        let (key, body) = rest.split_once(':').unwrap();
        if key != self.0 {
            return Err(DecryptError::WrongKey);
        }
        Ok(body.chars().rev().collect())
    }
}

fn document(version: &str, pipeline: &str) -> CatalogueDocument {
    let text = format!(
        r#"{{
  "version": "{version}", "date": "2024-03-12",
  "pipelines": [{{"pipeline_name": "{pipeline}", "models": ["detector"], "default": true,
                  "version": "1", "dataset_description": "", "accuracy": null}}],
  "models": [{{"model_name": "detector", "kind": "one_shot_detector", "task": "object-detection",
               "endpoint": "https://secret-host.example/score", "api_key": "very-secret-key",
               "content_type": "application/json",
               "deployment_platform": "azureml-model-deployment", "version": "1",
               "dataset_description": "", "accuracy": null}}]
}}"#
    );
    CatalogueDocument::from_json(&text).unwrap()
}

fn versions(store: &Arc<MemoryStore>, key: &'static str) -> CatalogueVersions {
    CatalogueVersions::new(store.clone(), Arc::new(ToyCipher(key)))
}

async fn publish(versions: &CatalogueVersions, version: &str, pipeline: &str) -> Catalogue {
    let catalogue = versions.validate(document(version, pipeline)).unwrap();
    versions.publish(&catalogue).await.unwrap();
    catalogue
}

#[tokio::test]
async fn a_published_version_opens_with_its_secrets_and_stores_none_in_clear() {
    let store = Arc::new(MemoryStore::default());
    let versions = versions(&store, "k1");
    publish(&versions, "0.1.4", "first").await;

    let stored = store.read("0.1.4").await.unwrap();
    assert!(!stored.contains("secret-host"), "{stored}");
    assert!(!stored.contains("very-secret-key"), "{stored}");
    assert!(stored.contains("sealed:k1:"), "{stored}");

    let catalogue = versions.open("0.1.4").await.unwrap();
    let model = catalogue.model("detector").unwrap();
    assert_eq!(
        model.endpoint.expose_secret(),
        "https://secret-host.example/score"
    );
    assert_eq!(model.api_key.expose_secret(), "very-secret-key");
}

#[tokio::test]
async fn a_value_already_encrypted_with_the_key_is_not_encrypted_twice() {
    let store = Arc::new(MemoryStore::default());
    let versions = versions(&store, "k1");
    let mut doc = document("0.1.0", "p");
    doc.models.as_mut().unwrap()[0].api_key = Some(ToyCipher("k1").encrypt("hand-made"));
    let catalogue = versions.validate(doc.clone()).unwrap();
    assert_eq!(
        catalogue.model("detector").unwrap().api_key.expose_secret(),
        "hand-made"
    );

    doc.models.as_mut().unwrap()[0].api_key = Some(ToyCipher("k2").encrypt("hand-made"));
    let errors = versions.validate(doc).unwrap_err();
    assert_eq!(
        errors.0[0].to_string(),
        "models[0].api_key: is encrypted with another key than the configured one \
         (NACHET_BLOB_PIPELINE_DECRYPTION_KEY): write the plain value, or encrypt it with the \
         configured key"
    );
}

#[tokio::test]
async fn an_existing_version_is_never_overwritten() {
    let store = Arc::new(MemoryStore::default());
    let versions = versions(&store, "k1");
    publish(&versions, "0.1.4", "first").await;
    let again = versions.validate(document("0.1.4", "second")).unwrap();
    let error = versions.publish(&again).await.unwrap_err();
    assert!(matches!(error, PublishVersionError::AlreadyExists { .. }));
    assert_eq!(
        error.to_string(),
        "catalogue version 0.1.4 already exists in memory and is never overwritten: give the \
         document a new version"
    );
    assert!(store.read("0.1.4").await.unwrap().contains("first"));
}

#[tokio::test]
async fn a_missing_version_lists_those_that_exist_in_order() {
    let store = Arc::new(MemoryStore::default());
    let versions = versions(&store, "k1");
    let error = versions.open("0.1.5").await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "catalogue version 0.1.5 is not in memory, which holds no version yet: publish one \
         with `nachet-catalogue insert FILE`"
    );

    for v in ["0.1.10", "0.1.3", "0.1.4"] {
        publish(&versions, v, "p").await;
    }
    let error = versions.open("0.1.5").await.unwrap_err();
    let OpenVersionError::NotFound { available, .. } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(available, &["0.1.3", "0.1.4", "0.1.10"]);
    assert_eq!(
        error.to_string(),
        "catalogue version 0.1.5 is not in memory; the versions there are 0.1.3, 0.1.4, \
         0.1.10: set NACHET_BLOB_PIPELINE_VERSION to one of them, or publish 0.1.5 with \
         `nachet-catalogue insert FILE`"
    );
}

#[tokio::test]
async fn another_key_is_named_as_the_problem() {
    let store = Arc::new(MemoryStore::default());
    publish(&versions(&store, "k1"), "0.1.4", "p").await;
    let error = versions(&store, "k2").open("0.1.4").await.unwrap_err();
    assert!(
        matches!(error, OpenVersionError::WrongKey { .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "catalogue version 0.1.4 was encrypted with another key: check \
         NACHET_BLOB_PIPELINE_DECRYPTION_KEY (it must be the key the version was inserted with)"
    );
}

#[tokio::test]
async fn a_stored_document_that_is_invalid_says_where() {
    let store = Arc::new(MemoryStore::default());
    let versions = versions(&store, "k1");
    // Stored by hand: plain endpoint, and the wrong version inside.
    let mut doc = document("0.1.4", "p");
    doc.models.as_mut().unwrap()[0].api_key = Some(ToyCipher("k1").encrypt("key"));
    store.publish("0.1.4", doc.to_json()).await.unwrap();
    let error = versions.open("0.1.4").await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "catalogue version 0.1.4 is invalid; publish a corrected document as a new version. \
         the catalogue is invalid:\n  - models[0].endpoint: is not an encrypted value (no prefix)"
    );

    let catalogue = versions.validate(document("0.2.0", "p")).unwrap();
    let sealed =
        CatalogueDocument::from_catalogue(&catalogue, &mut |_, p| ToyCipher("k1").encrypt(p));
    store.publish("0.3.0", sealed.to_json()).await.unwrap();
    let error = versions.open("0.3.0").await.unwrap_err();
    assert!(
        error
            .to_string()
            .ends_with("version: the document says 0.2.0 but is stored as version 0.3.0"),
        "{error}"
    );

    store.publish("0.4.0", "{ not json".into()).await.unwrap();
    let error = versions.open("0.4.0").await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("not a valid JSON catalogue document"),
        "{error}"
    );
}

#[tokio::test]
async fn list_shows_versions_dates_and_pipelines() {
    let store = Arc::new(MemoryStore::default());
    let versions = versions(&store, "k1");
    publish(&versions, "0.1.4", "swin").await;
    publish(&versions, "0.1.10", "six seeds").await;
    store.publish("0.2.0", "garbage".into()).await.unwrap();
    let list = versions.list().await.unwrap();
    let lines: Vec<String> = list.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines[0],
        "0.1.4  published 2024-01-02 03:04:05 UTC  date 2024-03-12  pipelines: swin (default)"
    );
    assert_eq!(
        lines[1],
        "0.1.10  published 2024-01-02 03:04:05 UTC  date 2024-03-12  pipelines: six seeds (default)"
    );
    assert!(
        lines[2].starts_with("0.2.0  published 2024-01-02 03:04:05 UTC  UNREADABLE: "),
        "{}",
        lines[2]
    );
}

fn ids_for(catalogue: &Catalogue) -> RecordedIds {
    let id = |kind: &str, name: &str, version: &str| {
        Uuid::new_v5(
            &Uuid::NAMESPACE_OID,
            format!("{kind}/{name}/{version}").as_bytes(),
        )
    };
    RecordedIds {
        pipelines: catalogue
            .pipelines()
            .iter()
            .map(|p| (p.name.clone(), id("p", &p.name, &p.version)))
            .collect(),
        models: catalogue
            .models()
            .iter()
            .map(|m| (m.name.clone(), id("m", &m.name, &m.version)))
            .collect(),
    }
}

/// Records nothing; gives each pipeline and model version an id derived from it, or fails.
struct FakeRecorder {
    failure: Option<&'static str>,
}

#[async_trait]
impl CatalogueRecorder for FakeRecorder {
    async fn record(&self, catalogue: &Catalogue) -> Result<RecordedIds, RecordCatalogueError> {
        match self.failure {
            Some(reason) => Err(RecordCatalogueError(reason.into())),
            None => Ok(ids_for(catalogue)),
        }
    }
}

fn recorder() -> Arc<dyn CatalogueRecorder> {
    Arc::new(FakeRecorder { failure: None })
}

#[tokio::test]
async fn switching_replaces_the_set_and_a_request_keeps_the_one_it_holds() {
    let store = Arc::new(MemoryStore::default());
    let versions = versions(&store, "k1");
    publish(&versions, "0.1.4", "old").await;
    publish(&versions, "0.1.5", "new").await;
    let loader = CatalogueLoader::new(versions, recorder());

    let registry = PipelineRegistry::new(loader.load("0.1.4").await.unwrap());
    let in_flight = registry.current();
    let now = loader.switch(&registry, "0.1.5").await.unwrap();
    assert_eq!(now.catalogue_version(), "0.1.5");
    assert_eq!(registry.current().names(), ["new"]);
    assert_eq!(in_flight.catalogue_version(), "0.1.4");
    assert_eq!(in_flight.names(), ["old"]);
}

#[tokio::test]
async fn a_failed_switch_leaves_the_running_set() {
    let store = Arc::new(MemoryStore::default());
    publish(&versions(&store, "k1"), "0.1.4", "old").await;
    publish(&versions(&store, "k2"), "0.1.5", "other key").await;
    let loader = CatalogueLoader::new(versions(&store, "k1"), recorder());
    let registry = PipelineRegistry::new(loader.load("0.1.4").await.unwrap());

    for (version, expected) in [("0.1.5", "another key"), ("9.9.9", "is not in memory")] {
        let error = loader.switch(&registry, version).await.unwrap_err();
        assert!(error.to_string().contains(expected), "{error}");
        assert_eq!(registry.current().catalogue_version(), "0.1.4");
    }

    let failing = FakeRecorder {
        failure: Some("connection refused"),
    };
    let loader = CatalogueLoader::new(versions(&store, "k1"), Arc::new(failing));
    let error = loader.switch(&registry, "0.1.4").await.unwrap_err();
    assert!(matches!(error, LoadCatalogueError::Record(_)));
    assert_eq!(
        error.to_string(),
        "could not record the catalogue's pipelines in the database: connection refused"
    );
    assert_eq!(registry.current().catalogue_version(), "0.1.4");
}

#[tokio::test]
async fn loading_the_same_version_again_keeps_the_ids() {
    let store = Arc::new(MemoryStore::default());
    let versions = versions(&store, "k1");
    publish(&versions, "0.1.4", "p").await;
    let loader = CatalogueLoader::new(versions, recorder());
    let a: PipelineSet = loader.load("0.1.4").await.unwrap();
    let b: PipelineSet = loader.load("0.1.4").await.unwrap();
    assert_eq!(a.pipelines()[0].id, b.pipelines()[0].id);
    assert_eq!(a.pipelines()[0].models[0].id, b.pipelines()[0].models[0].id);
}
