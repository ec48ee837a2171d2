//! The development catalogue: pipelines over the reference model servers.

use pipeline::{Catalogue, CatalogueDocument};
use secrecy::{ExposeSecret, SecretString};

/// Two pipelines over the reference models (detector + classifier, the default; and the
/// one-shot "6 seeds" detector) and the reference system's `test` pipeline.
pub fn reference_catalogue(models_url: &str, api_key: &SecretString) -> Catalogue {
    let key = api_key.expose_secret();
    let model = |name: &str, kind: &str, task: &str, content_type: &str, description: &str| {
        serde_json::json!({
            "model_name": name,
            "kind": kind,
            "task": task,
            "endpoint": format!("{models_url}/score"),
            "api_key": key,
            "content_type": content_type,
            "deployment_platform": reference_models::ROUTING_HEADER,
            "endpoint_name": name,
            "version": "1",
            "description": description,
            "created_by": "nachet-dev",
            "creation_date": "2026-11-22",
            "job_name": "reference",
            "dataset_description": "none: a hand-written reference model, not a trained one",
            "accuracy": null,
            "timeout_seconds": 30,
        })
    };
    let pipeline = |name: &str, models: &[&str], default: bool, description: &str| {
        serde_json::json!({
            "pipeline_name": name,
            "models": models,
            "default": default,
            "version": "1",
            "description": description,
            "created_by": "nachet-dev",
            "creation_date": "2026-11-22",
            "job_name": "reference",
            "dataset_description": "none: reference models for development",
            "accuracy": null,
        })
    };
    let document = serde_json::json!({
        "version": "0.0.1",
        "date": "2026-11-22",
        "models": [
            model(reference_models::SEED_DETECTOR, "seed_detector", "object-detection", "application/json",
                "Reference seed detector: thresholding and connected components on a light background."),
            model(reference_models::SEED_CLASSIFIER, "classifier", "classification", "application/json",
                "Reference classifier: ranks the 15 known species by colour, size and shape features."),
            model(reference_models::SEED_DETECTOR_6, "one_shot_detector", "object-detection", "application/json",
                "Reference one-shot detector: the reference detector and classifier in one call."),
            model("test", "test", "object-detection", "application/json",
                "The reference system's test model: one fixed box, no call."),
        ],
        "pipelines": [
            pipeline("Reference detector + classifier", &[reference_models::SEED_DETECTOR, reference_models::SEED_CLASSIFIER], true,
                "Finds seeds on a light background, then names each one (reference models)."),
            pipeline("Reference 6 seeds detector", &[reference_models::SEED_DETECTOR_6], false,
                "Finds and names seeds in one call (reference model)."),
            pipeline("test", &["test"], false, "One fixed box; calls no model."),
        ],
    });
    serde_json::from_value::<CatalogueDocument>(document)
        .expect("the reference catalogue is a catalogue document")
        .into_catalogue(&|plain| Ok(plain.to_owned()))
        .expect("the reference catalogue is valid")
}
