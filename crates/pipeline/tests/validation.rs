//! The catalogue document (contract 1.7): every rule, each with its message and place.

use pipeline::{
    Catalogue, CatalogueDocument, CatalogueErrors, DocumentFormat, ModelKind, validate_document,
};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

fn valid() -> Value {
    json!({
        "version": "0.1.4",
        "date": "2024-03-12",
        "pipelines": [
            {
                "pipeline_name": "swin transformer and 6 seeds detector",
                "models": ["seed-detector", "swin"],
                "default": true,
                "version": "1",
                "description": "detect seeds, then name each",
                "created_by": "Amir Ardalan Kalantari Dehaghi",
                "creation_date": "2023-12-01",
                "job_name": "swin-job",
                "dataset_description": "quarantine seeds",
                "accuracy": 0.96
            },
            {
                "pipeline_name": "6 seeds detector",
                "models": ["seed-detector-6"],
                "default": false,
                "version": "1",
                "description": "",
                "created_by": "",
                "creation_date": "",
                "job_name": "",
                "dataset_description": "",
                "accuracy": null
            }
        ],
        "models": [
            model("seed-detector", "seed_detector", "object-detection"),
            model("swin", "classifier", "classification"),
            model("seed-detector-6", "one_shot_detector", "object-detection")
        ]
    })
}

fn model(name: &str, kind: &str, task: &str) -> Value {
    json!({
        "model_name": name,
        "kind": kind,
        "task": task,
        "endpoint": format!("https://models.example/{name}/score"),
        "api_key": format!("key-of-{name}"),
        "content_type": "application/json",
        "deployment_platform": "azureml-model-deployment",
        "endpoint_name": format!("{name}-endpoint"),
        "version": "1",
        "description": "",
        "created_by": "",
        "creation_date": "",
        "job_name": "",
        "dataset_description": "",
        "accuracy": null
    })
}

fn check(document: &Value) -> Result<Catalogue, CatalogueErrors> {
    let document = CatalogueDocument::from_json(&document.to_string())?;
    validate_document(document, None)
}

/// The error messages (`path: message`) of an invalid document.
fn errors(document: &Value) -> Vec<String> {
    match check(document) {
        Ok(_) => panic!("the document was accepted"),
        Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
    }
}

fn assert_error(document: &Value, expected: &str) {
    let errors = errors(document);
    assert!(
        errors.iter().any(|e| e == expected),
        "expected the error\n  {expected}\ngot\n  {}",
        errors.join("\n  ")
    );
}

#[test]
fn a_valid_document_gives_its_catalogue() {
    let catalogue = check(&valid()).unwrap();
    assert_eq!(catalogue.version(), "0.1.4");
    assert_eq!(catalogue.pipelines().len(), 2);
    let swin = catalogue.model("swin").unwrap();
    assert_eq!(swin.kind, ModelKind::Classifier);
    assert_eq!(
        swin.endpoint.expose_secret(),
        "https://models.example/swin/score"
    );
    assert_eq!(swin.api_key.expose_secret(), "key-of-swin");
    assert_eq!(swin.timeout, pipeline::DEFAULT_MODEL_TIMEOUT);
    assert_eq!(swin.retries, 0);
}

#[test]
fn the_same_document_in_yaml_gives_the_same_catalogue() {
    let json_doc = CatalogueDocument::from_json(&valid().to_string()).unwrap();
    let yaml_doc = CatalogueDocument::from_yaml(&json_doc.to_yaml()).unwrap();
    assert_eq!(json_doc, yaml_doc);

    let written = r#"
version: 0.2.0
date: "2024-05-01"
pipelines:
  - pipeline_name: detector only
    models: [seed-detector]
    default: true
    version: "1"
    dataset: seeds        # the spelling variants are accepted
    Accuracy: 0.9
models:
  - model_name: seed-detector
    kind: seed_detector
    tasks: object-detection
    endpoint: http://127.0.0.1:8081/score
    api_key: dev-key
    content_type: application/json
    deployment_platform: azureml-model-deployment
    version: "3"
    dataset_description: ""
    accuracy: ~
    timeout_seconds: 12.5
    retries: 2
"#;
    let parsed = CatalogueDocument::parse(written, DocumentFormat::Yaml).unwrap();
    assert!(parsed.unknown_fields.is_empty());
    let catalogue = validate_document(parsed.document, None).unwrap();
    let pipeline = &catalogue.pipelines()[0];
    assert_eq!(pipeline.metadata.dataset_description, "seeds");
    assert_eq!(pipeline.metadata.accuracy, Some(0.9));
    let detector = catalogue.model("seed-detector").unwrap();
    assert_eq!(detector.metadata.task, "object-detection");
    assert_eq!(detector.timeout.as_secs_f64(), 12.5);
    assert_eq!(detector.retries, 2);
}

#[test]
fn the_format_follows_the_file_name() {
    assert_eq!(
        DocumentFormat::from_file_name("a.yaml"),
        DocumentFormat::Yaml
    );
    assert_eq!(
        DocumentFormat::from_file_name("A.YML"),
        DocumentFormat::Yaml
    );
    assert_eq!(
        DocumentFormat::from_file_name("a.json"),
        DocumentFormat::Json
    );
}

#[test]
fn spelling_variants_are_accepted_for_task_dataset_and_accuracy() {
    let mut doc = valid();
    let m = doc["models"][0].as_object_mut().unwrap();
    let task = m.remove("task").unwrap();
    m.insert("tasks".into(), task);
    let dataset = m.remove("dataset_description").unwrap();
    m.insert("dataset".into(), dataset);
    m.remove("accuracy");
    m.insert("Accuracy".into(), json!(0.5));
    let catalogue = check(&doc).unwrap();
    let model = catalogue.model("seed-detector").unwrap();
    assert_eq!(model.metadata.task, "object-detection");
    assert_eq!(model.metadata.accuracy, Some(0.5));
}

#[test]
fn a_field_with_none_of_its_spellings_is_named() {
    let mut doc = valid();
    doc["models"][1].as_object_mut().unwrap().remove("task");
    doc["pipelines"][0]
        .as_object_mut()
        .unwrap()
        .remove("accuracy");
    doc["pipelines"][1]
        .as_object_mut()
        .unwrap()
        .remove("dataset_description");
    let errors = errors(&doc);
    assert_eq!(
        errors,
        [
            "models[1].task: missing field (one of: object-detection, classification, \
             segmentation; the spelling \"tasks\" is also accepted)",
            "pipelines[0].accuracy: missing field (a number, or null when unknown; the \
             spelling \"Accuracy\" is also accepted)",
            "pipelines[1].dataset_description: missing field (a text, possibly empty; the \
             spelling \"dataset\" is also accepted)",
        ]
    );
}

#[test]
fn both_spellings_of_one_field_are_refused_with_the_place() {
    let mut doc = valid();
    doc["models"][0]["tasks"] = json!("classification");
    let errors = errors(&doc);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("models[0]: duplicate field `task` (line 1, column "),
        "{}",
        errors[0]
    );
}

#[test]
fn no_default_pipeline() {
    let mut doc = valid();
    doc["pipelines"][0]["default"] = json!(false);
    assert_error(
        &doc,
        "pipelines: no pipeline is the default: set \"default\": true on exactly one",
    );
}

#[test]
fn more_than_one_default_pipeline() {
    let mut doc = valid();
    doc["pipelines"][1]["default"] = json!(true);
    assert_error(
        &doc,
        "pipelines: more than one default pipeline (swin transformer and 6 seeds detector, \
         6 seeds detector): set \"default\": true on exactly one",
    );
}

#[test]
fn a_pipeline_naming_an_unknown_model() {
    let mut doc = valid();
    doc["pipelines"][1]["models"] = json!(["swin-x"]);
    assert_eq!(
        errors(&doc),
        ["pipelines[1].models[0]: no model named \"swin-x\" in this catalogue"]
    );
}

#[test]
fn duplicate_model_and_pipeline_names() {
    let mut doc = valid();
    doc["models"][2]["model_name"] = json!("swin");
    doc["pipelines"][1]["pipeline_name"] = doc["pipelines"][0]["pipeline_name"].clone();
    doc["pipelines"][1]["models"] = json!(["seed-detector"]);
    let errors = errors(&doc);
    assert_eq!(
        errors,
        [
            "models[2].model_name: duplicate model name \"swin\" (also models[1])",
            "pipelines[1].pipeline_name: duplicate pipeline name \"swin transformer and 6 \
             seeds detector\" (also pipelines[0])",
        ]
    );
}

#[test]
fn an_unknown_kind() {
    let mut doc = valid();
    doc["models"][1]["kind"] = json!("swin");
    assert_error(
        &doc,
        "models[1].kind: unknown model kind \"swin\" (known kinds: seed_detector, classifier, \
         re_classifier, one_shot_detector, test)",
    );
}

#[test]
fn a_missing_kind_lists_the_kinds() {
    let mut doc = valid();
    doc["models"][0].as_object_mut().unwrap().remove("kind");
    assert_error(
        &doc,
        "models[0].kind: missing field (one of: seed_detector, classifier, re_classifier, \
         one_shot_detector, test)",
    );
}

#[test]
fn missing_fields_are_all_named_at_once() {
    let mut doc = valid();
    let m = doc["models"][0].as_object_mut().unwrap();
    m.remove("endpoint");
    m.remove("version");
    doc["pipelines"][0]
        .as_object_mut()
        .unwrap()
        .remove("pipeline_name");
    doc.as_object_mut().unwrap().remove("date");
    assert_eq!(
        errors(&doc),
        [
            "date: missing field",
            "models[0].endpoint: missing field",
            "models[0].version: missing field",
            "pipelines[0].pipeline_name: missing field",
        ]
    );
}

#[test]
fn missing_top_level_lists() {
    assert_eq!(
        errors(&json!({"version": "1.0.0", "date": "today"})),
        ["models: missing field", "pipelines: missing field"]
    );
}

#[test]
fn a_blank_required_field() {
    let mut doc = valid();
    doc["models"][0]["content_type"] = json!("  ");
    assert_eq!(errors(&doc), ["models[0].content_type: is empty"]);
}

#[test]
fn a_version_that_is_not_major_minor_patch() {
    for bad in ["0.1", "v0.1.4", "0.1.4-beta", "1..2", "a.b.c"] {
        let mut doc = valid();
        doc["version"] = json!(bad);
        assert_eq!(
            errors(&doc),
            [format!(
                "version: \"{bad}\" is not a version of the form MAJOR.MINOR.PATCH (e.g. 0.1.4)"
            )]
        );
    }
}

#[test]
fn an_unknown_task() {
    let mut doc = valid();
    doc["models"][0]["task"] = json!("detection");
    assert_error(
        &doc,
        "models[0].task: unknown task \"detection\" (known tasks: object-detection, \
         classification, segmentation)",
    );
}

#[test]
fn an_endpoint_that_is_not_a_url() {
    let mut doc = valid();
    doc["models"][0]["endpoint"] = json!("models.example/score");
    assert_eq!(
        errors(&doc),
        ["models[0].endpoint: is not an http:// or https:// URL"]
    );
}

#[test]
fn timeout_and_retries_out_of_range() {
    let mut doc = valid();
    doc["models"][0]["timeout_seconds"] = json!(0);
    doc["models"][1]["timeout_seconds"] = json!(601);
    doc["models"][2]["retries"] = json!(11);
    assert_eq!(
        errors(&doc),
        [
            "models[0].timeout_seconds: 0 is not a number of seconds above 0 and at most 600",
            "models[1].timeout_seconds: 601 is not a number of seconds above 0 and at most 600",
            "models[2].retries: 11 is more than 10",
        ]
    );
}

#[test]
fn crop_encoding_is_a_known_one_and_only_for_per_crop_models() {
    let mut doc = valid();
    doc["models"][0]["crop_encoding"] = json!("png_fast");
    doc["models"][1]["crop_encoding"] = json!("webp");
    assert_eq!(
        errors(&doc),
        [
            "models[0].crop_encoding: only a per-crop model (classifier, re_classifier) gets crops",
            "models[1].crop_encoding: unknown crop encoding \"webp\" (known: source, png_fast, \
             png_balanced, png_high, jpeg)",
        ]
    );

    doc["models"][0]
        .as_object_mut()
        .unwrap()
        .remove("crop_encoding");
    doc["models"][1]["crop_encoding"] = json!("png_high");
    let catalogue = check(&doc).unwrap();
    assert_eq!(
        catalogue.model("swin").unwrap().crop_encoding,
        pipeline::CropEncoding::Png(pipeline::PngCompression::High)
    );
    assert_eq!(
        catalogue.model("seed-detector").unwrap().crop_encoding,
        pipeline::CropEncoding::Source,
        "the default"
    );
}

#[test]
fn reclassify_labels_belong_to_a_re_classifier_only() {
    let mut doc = valid();
    doc["models"][1]["kind"] = json!("re_classifier");
    doc["models"][0]["reclassify_labels"] = json!(["Ambrosia trifida"]);
    assert_eq!(
        errors(&doc),
        [
            "models[0].reclassify_labels: only a re_classifier re-classifies labels, and this \
             model is a seed_detector",
            "models[1].reclassify_labels: a re_classifier needs the list of labels whose boxes \
             it re-classifies",
        ]
    );

    doc["models"][0]
        .as_object_mut()
        .unwrap()
        .remove("reclassify_labels");
    doc["models"][1]["reclassify_labels"] = json!(["Ambrosia trifida", "Ambrosia psilostachya"]);
    let catalogue = check(&doc).unwrap();
    assert_eq!(catalogue.model("swin").unwrap().reclassify_labels.len(), 2);
}

#[test]
fn models_in_an_impossible_order() {
    let mut doc = valid();
    doc["pipelines"][0]["models"] = json!(["swin", "seed-detector"]);
    assert_eq!(
        errors(&doc),
        [
            "pipelines[0].models[0]: \"swin\" is a classifier: it needs boxes from an earlier \
             model and cannot come first",
            "pipelines[0].models[1]: \"seed-detector\" is a seed_detector: it looks at the \
             whole picture and can only come first",
        ]
    );
}

#[test]
fn a_test_model_needs_no_endpoint() {
    let mut doc = valid();
    doc["models"][2] = json!({
        "model_name": "seed-detector-6", "kind": "test", "task": "object-detection",
        "version": "1", "dataset_description": "", "accuracy": null
    });
    check(&doc).unwrap();
}

#[test]
fn a_json_syntax_error_points_at_its_line_and_column() {
    let text = "{\n  \"version\": \"0.1.4\",\n  \"date\": \"x\"\n  \"models\": []\n}";
    let errors = CatalogueDocument::from_json(text).unwrap_err();
    assert_eq!(
        errors.0[0].to_string(),
        "not a valid JSON catalogue document: expected `,` or `}` (line 4, column 3)"
    );
}

#[test]
fn a_yaml_syntax_error_points_at_its_line_and_column() {
    let text = "version: 0.1.4\ndate: x\nmodels:\n  - model_name: a\n   kind: [\n";
    let errors = CatalogueDocument::from_yaml(text).unwrap_err();
    let message = errors.0[0].to_string();
    // The parser was inside `models` when it met the bad indentation of line 5.
    assert!(
        message.starts_with("models: did not find expected '-' indicator")
            && message.ends_with("(line 5, column 4)"),
        "{message}"
    );
    let errors = CatalogueDocument::from_yaml("version: 0.1.4\ndate: \"x\n").unwrap_err();
    let message = errors.0[0].to_string();
    assert!(
        message
            == "date: found unexpected end of stream, while scanning a quoted scalar at line 2 \
                column 7 (line 3, column 1)",
        "{message}"
    );
}

#[test]
fn a_value_of_the_wrong_type_names_its_place_line_and_column() {
    let mut doc = valid();
    doc["pipelines"][1]["default"] = json!("yes");
    let text = serde_json::to_string_pretty(&doc).unwrap();
    let line = text.lines().position(|l| l.contains("\"yes\"")).unwrap() + 1;
    let errors = CatalogueDocument::from_json(&text).unwrap_err();
    let message = errors.0[0].to_string();
    assert!(
        message.starts_with(
            "pipelines[1].default: invalid type: string \"yes\", expected a boolean (line "
        ) && message.contains(&format!("(line {line}, column ")),
        "{message}"
    );

    let yaml = "version: 0.1.4\ndate: x\nmodels:\n  - model_name: a\n    retries: many\n";
    let message = CatalogueDocument::from_yaml(yaml).unwrap_err().0[0].to_string();
    assert!(
        message.starts_with("models[0].retries: invalid type: string \"many\"")
            && message.contains("(line 5, column "),
        "{message}"
    );
}

#[test]
fn unknown_fields_are_reported_as_ignored() {
    let mut doc = valid();
    let m = doc["models"][0].as_object_mut().unwrap();
    let platform = m.remove("deployment_platform").unwrap();
    m.insert("deployement_platform".into(), platform);
    doc["colour"] = json!("blue");
    let parsed = CatalogueDocument::parse(&doc.to_string(), DocumentFormat::Json).unwrap();
    let unknown: Vec<String> = parsed
        .unknown_fields
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        unknown,
        [
            "colour: unknown field, ignored",
            "models[0].deployement_platform: unknown field, ignored"
        ]
    );
    // …and the field it was meant to be is missing.
    assert_eq!(
        validate_document(parsed.document, None)
            .unwrap_err()
            .0
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["models[0].deployment_platform: missing field"]
    );
}

#[test]
fn all_errors_are_listed_under_one_heading() {
    let mut doc = valid();
    doc["version"] = json!("1");
    doc["pipelines"][1]["models"] = json!(["nope"]);
    let errors = check(&doc).unwrap_err();
    assert_eq!(
        errors.to_string(),
        "the catalogue is invalid:\n  - version: \"1\" is not a version of the form \
         MAJOR.MINOR.PATCH (e.g. 0.1.4)\n  - pipelines[1].models[0]: no model named \"nope\" in \
         this catalogue"
    );
}

#[test]
fn a_catalogue_written_back_as_a_document_gives_the_same_catalogue() {
    let mut doc = valid();
    doc["models"][1]["timeout_seconds"] = json!(5);
    doc["models"][1]["retries"] = json!(1);
    let catalogue = check(&doc).unwrap();
    let written = CatalogueDocument::from_catalogue(&catalogue, &mut |_, plain| plain.to_owned());
    let again = validate_document(
        CatalogueDocument::from_json(&written.to_json()).unwrap(),
        None,
    )
    .unwrap();
    assert_eq!(again.pipelines(), catalogue.pipelines());
    let (a, b) = (
        again.model("swin").unwrap(),
        catalogue.model("swin").unwrap(),
    );
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
    assert_eq!(a.endpoint.expose_secret(), b.endpoint.expose_secret());
    assert_eq!(a.api_key.expose_secret(), b.api_key.expose_secret());
    assert_eq!(a.metadata, b.metadata);
}
