//! The tool end to end: the real binary, configured as the backend is, on local disk and on
//! Azurite (started by `deploy/run-tests.sh`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use std::io::Write as _;

const BIN: &str = env!("CARGO_BIN_EXE_nachet-catalogue");
const CONTAINER: &str = "nachet-pipelines";

const DOCUMENT: &str = r#"# A catalogue as an operator writes it.
version: 0.1.4
date: "2024-03-12"
pipelines:
  - pipeline_name: swin transformer and 6 seeds detector
    models: [seed-detector, swin]
    default: true
    version: "1"
    description: detect the seeds, then name each
    created_by: Nachet
    creation_date: "2024-03-01"
    job_name: swin-job
    dataset: quarantine seeds   # the reference system's spelling
    Accuracy: 0.96
models:
  - model_name: seed-detector
    kind: seed_detector
    tasks: object-detection
    endpoint: https://plaintext-endpoint.example/score
    api_key: plaintext-api-key-0123456789
    content_type: application/json
    deployment_platform: azureml-model-deployment
    version: "1"
    dataset_description: ""
    accuracy: null
  - model_name: swin
    kind: classifier
    task: classification
    endpoint: https://plaintext-endpoint.example/swin/score
    api_key: swin-plaintext-api-key-abcd
    content_type: application/json
    deployment_platform: azureml-model-deployment
    version: "2"
    dataset_description: ""
    accuracy: null
    timeout_seconds: 20
"#;

/// The tool with a clean environment: only what the test gives it.
struct Tool {
    env: Vec<(String, String)>,
    dir: tempfile::TempDir,
}

impl Tool {
    fn on_local_disk() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("blobs").display().to_string();
        let mut tool = Self {
            env: Vec::new(),
            dir,
        };
        tool.set("NACHET__BLOB__KIND", "local_disk");
        tool.set("NACHET__BLOB__ROOT", &root);
        tool.set("NACHET_BLOB_PIPELINE_NAME", CONTAINER);
        let key = tool.ok(&["keygen"]);
        tool.set("NACHET_BLOB_PIPELINE_DECRYPTION_KEY", key.trim());
        tool
    }

    fn on_azurite() -> Self {
        let azurite = test_support::azurite_settings();
        let dir = tempfile::tempdir().unwrap();
        let mut tool = Self {
            env: Vec::new(),
            dir,
        };
        tool.set("NACHET__BLOB__KIND", "azure");
        tool.set("NACHET__BLOB__ACCOUNT", &azurite.account);
        tool.set("NACHET__BLOB__ACCESS_KEY", &azurite.key);
        tool.set("NACHET__BLOB__CONTAINER", "pictures-not-catalogue");
        tool.set("NACHET__BLOB__ENDPOINT", &azurite.endpoint);
        tool.set(
            "NACHET__BLOB__PREFIX",
            &format!("test-{}", test_support::unique_suffix()),
        );
        tool.set("NACHET_BLOB_PIPELINE_NAME", &azurite.container);
        let key = tool.ok(&["keygen"]);
        tool.set("NACHET_BLOB_PIPELINE_DECRYPTION_KEY", key.trim());
        tool
    }

    fn set(&mut self, name: &str, value: &str) {
        self.env.retain(|(n, _)| n != name);
        self.env.push((name.to_owned(), value.to_owned()));
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn run_with_input(&self, args: &[&str], input: Option<&str>) -> Output {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .env_clear()
            .envs(self.env.iter().map(|(n, v)| (n, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        if let Some(input) = input {
            stdin.write_all(input.as_bytes()).unwrap();
        }
        drop(stdin);
        child.wait_with_output().unwrap()
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with_input(args, None)
    }

    /// Runs a command that must succeed; its standard output.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "{args:?} failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// Runs a command that must fail; its standard error.
    fn fails(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{args:?} should fail:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stderr).unwrap()
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn every_subcommand_has_help() {
    let tool = Tool::on_local_disk();
    let top = tool.ok(&["--help"]);
    for command in [
        "keygen", "validate", "insert", "list", "show", "encrypt", "decrypt",
    ] {
        assert!(top.contains(command), "{top}");
        let help = tool.ok(&[command, "--help"]);
        assert!(
            help.contains("Usage: nachet-catalogue"),
            "{command}: {help}"
        );
    }
    assert!(top.contains("NACHET_BLOB_PIPELINE_DECRYPTION_KEY"), "{top}");
}

#[test]
fn keygen_prints_a_new_fernet_key_each_time() {
    let tool = Tool::on_local_disk();
    let (a, b) = (tool.ok(&["keygen"]), tool.ok(&["keygen"]));
    assert_eq!(a.trim().len(), 44, "{a}");
    assert_ne!(a, b);
}

#[test]
fn validate_accepts_a_good_document_and_points_at_each_problem_of_a_bad_one() {
    let tool = Tool::on_local_disk();
    let good = tool.file("catalogue.yaml", DOCUMENT);
    let out = tool.ok(&["validate", path(&good)]);
    assert!(out.contains("valid catalogue version 0.1.4"), "{out}");
    assert!(
        out.contains(
            "pipeline swin transformer and 6 seeds detector (default): seed-detector -> swin"
        ),
        "{out}"
    );

    let bad = tool.file(
        "bad.yaml",
        &DOCUMENT
            .replace(
                "models: [seed-detector, swin]",
                "models: [seed-detector, swin-x]",
            )
            .replace("kind: classifier", "kind: swin")
            .replace("version: 0.1.4", "version: 0.1"),
    );
    let err = tool.fails(&["validate", path(&bad)]);
    for expected in [
        "version: \"0.1\" is not a version of the form MAJOR.MINOR.PATCH",
        "models[1].kind: unknown model kind \"swin\"",
    ] {
        assert!(err.contains(expected), "{expected}\n{err}");
    }

    let unknown_model = tool.file(
        "unknown.yaml",
        &DOCUMENT.replace(
            "models: [seed-detector, swin]",
            "models: [seed-detector, swin-x]",
        ),
    );
    let err = tool.fails(&["validate", path(&unknown_model)]);
    assert!(
        err.contains("pipelines[0].models[1]: no model named \"swin-x\" in this catalogue"),
        "{err}"
    );

    let broken = tool.file("broken.json", "{\n  \"version\": \"0.1.4\",\n}");
    let err = tool.fails(&["validate", path(&broken)]);
    assert!(err.contains("(line 3, column 1)"), "{err}");

    let typo = tool.file(
        "typo.yaml",
        &DOCUMENT.replacen("deployment_platform", "deployement_platform", 1),
    );
    let err = tool.fails(&["validate", path(&typo)]);
    assert!(
        err.contains("models[0].deployement_platform: unknown field, ignored"),
        "{err}"
    );
    assert!(
        err.contains("models[0].deployment_platform: missing field"),
        "{err}"
    );
}

fn insert_list_show(tool: &Tool) -> String {
    let file = tool.file("catalogue.yaml", DOCUMENT);
    let out = tool.ok(&["insert", path(&file)]);
    assert!(
        out.contains("inserted catalogue version 0.1.4 as pipelines/0.1.4.json"),
        "{out}"
    );
    let err = tool.fails(&["insert", path(&file)]);
    assert!(
        err.contains("catalogue version 0.1.4 already exists") && err.contains("never overwritten"),
        "{err}"
    );

    let second = tool.file(
        "second.json",
        &CatalogueJson::from_yaml(&DOCUMENT.replace("version: 0.1.4", "version: 0.1.10")),
    );
    tool.ok(&["insert", path(&second)]);

    let list = tool.ok(&["list"]);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    assert!(lines[0].starts_with("0.1.4  published "), "{list}");
    assert!(lines[1].starts_with("0.1.10  published "), "{list}");
    assert!(
        lines[0].ends_with(
            "date 2024-03-12  pipelines: swin transformer and 6 seeds detector (default)"
        ),
        "{list}"
    );

    let shown = tool.ok(&["show", "0.1.4"]);
    let json: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(
        json["models"][0]["endpoint"],
        "https://plaintext-endpoint.example/score"
    );
    assert_eq!(json["models"][0]["api_key"], "****6789");
    assert_eq!(json["models"][1]["api_key"], "****abcd");
    assert_eq!(json["models"][1]["timeout_seconds"], 20.0);
    assert_eq!(
        json["pipelines"][0]["dataset_description"],
        "quarantine seeds"
    );

    let revealed = tool.ok(&["show", "0.1.4", "--reveal-keys", "--format", "yaml"]);
    assert!(
        revealed.contains("api_key: plaintext-api-key-0123456789"),
        "{revealed}"
    );

    let err = tool.fails(&["show", "0.2.0"]);
    assert!(
        err.contains("catalogue version 0.2.0 is not in pipelines/ of ")
            && err.contains("the versions there are 0.1.4, 0.1.10"),
        "{err}"
    );

    let mut other_key = Tool {
        env: tool.env.clone(),
        dir: tempfile::tempdir().unwrap(),
    };
    let key = tool.ok(&["keygen"]);
    other_key.set("NACHET_BLOB_PIPELINE_DECRYPTION_KEY", key.trim());
    let err = other_key.fails(&["show", "0.1.4"]);
    assert!(
        err.contains(
            "catalogue version 0.1.4 was encrypted with another key: check \
             NACHET_BLOB_PIPELINE_DECRYPTION_KEY"
        ),
        "{err}"
    );
    list
}

/// A YAML document rewritten as JSON, to insert both syntaxes.
struct CatalogueJson;

impl CatalogueJson {
    fn from_yaml(yaml: &str) -> String {
        pipeline::CatalogueDocument::from_yaml(yaml)
            .unwrap()
            .to_json()
    }
}

#[test]
fn insert_list_show_on_local_disk_store_nothing_in_clear() {
    let tool = Tool::on_local_disk();
    insert_list_show(&tool);
    let stored = tool
        .dir
        .path()
        .join("blobs")
        .join(CONTAINER)
        .join("pipelines")
        .join("0.1.4.json");
    let raw = std::fs::read_to_string(&stored).unwrap();
    assert!(!raw.contains("plaintext"), "{raw}");
    assert!(raw.contains("\"endpoint\": \"gAAAAA"), "{raw}");
}

#[tokio::test(flavor = "multi_thread")]
async fn insert_list_show_on_azurite_store_nothing_in_clear() {
    let tool = Tool::on_azurite();
    tokio::task::block_in_place(|| insert_list_show(&tool));

    // The raw blob, read with the same settings the tool had.
    let env = |name: &str| {
        tool.env
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let store = blob_store::open(&blob_store::BlobSettings::Azure {
        account: env("NACHET__BLOB__ACCOUNT"),
        access_key: env("NACHET__BLOB__ACCESS_KEY").into(),
        container: env("NACHET_BLOB_PIPELINE_NAME"),
        endpoint: Some(env("NACHET__BLOB__ENDPOINT")),
        prefix: Some(env("NACHET__BLOB__PREFIX")),
    })
    .unwrap();
    let key = datastore::BlobKey::parse("pipelines/0.1.4.json").unwrap();
    let raw = datastore::BlobStore::get(&store, &key).await.unwrap();
    let raw = String::from_utf8(raw.to_vec()).unwrap();
    assert!(!raw.contains("plaintext"), "{raw}");
    assert!(raw.contains("\"endpoint\": \"gAAAAA"), "{raw}");
}

#[test]
fn encrypt_and_decrypt_one_value() {
    let tool = Tool::on_local_disk();
    let token = tool.ok(&["encrypt", "https://secret.example/score"]);
    assert!(token.starts_with("gAAAAA"), "{token}");
    assert_eq!(
        tool.ok(&["decrypt", token.trim()]),
        "https://secret.example/score\n"
    );

    let from_stdin = tool.run_with_input(&["encrypt"], Some("typed-secret\n"));
    assert!(from_stdin.status.success());
    let token2 = String::from_utf8(from_stdin.stdout).unwrap();
    let back = tool.run_with_input(&["decrypt"], Some(&token2));
    assert_eq!(String::from_utf8(back.stdout).unwrap(), "typed-secret\n");

    // A value encrypted by hand is accepted by validate and insert, and not encrypted twice.
    let file = tool.file(
        "hand.yaml",
        &DOCUMENT.replace(
            "api_key: plaintext-api-key-0123456789",
            &format!(
                "api_key: {}",
                tool.ok(&["encrypt", "hand-made-secret-key"]).trim()
            ),
        ),
    );
    tool.ok(&["validate", path(&file)]);
    tool.ok(&["insert", path(&file)]);
    let shown = tool.ok(&["show", "0.1.4", "--reveal-keys"]);
    assert!(
        shown.contains("\"api_key\": \"hand-made-secret-key\""),
        "{shown}"
    );

    let mut other = Tool {
        env: tool.env.clone(),
        dir: tempfile::tempdir().unwrap(),
    };
    other.set(
        "NACHET_BLOB_PIPELINE_DECRYPTION_KEY",
        tool.ok(&["keygen"]).trim(),
    );
    let err = other.fails(&["decrypt", token.trim()]);
    assert!(
        err.contains("was encrypted with another key; check NACHET_BLOB_PIPELINE_DECRYPTION_KEY"),
        "{err}"
    );
    let err = tool.fails(&["decrypt", "not-a-token"]);
    assert!(err.contains("is not an encrypted value"), "{err}");
}

#[test]
fn missing_configuration_says_what_to_set() {
    let mut tool = Tool::on_local_disk();
    tool.env
        .retain(|(name, _)| name != "NACHET_BLOB_PIPELINE_DECRYPTION_KEY");
    let err = tool.fails(&["encrypt", "x"]);
    assert!(
        err.contains("no catalogue decryption key: set NACHET_BLOB_PIPELINE_DECRYPTION_KEY"),
        "{err}"
    );
    tool.set("NACHET_BLOB_PIPELINE_DECRYPTION_KEY", "too-short");
    let err = tool.fails(&["encrypt", "x"]);
    assert!(err.contains("is not a Fernet key"), "{err}");
}
