//! Which ML app serves which model type.

use std::collections::BTreeMap;

use crate::ports::MlAppEndpoint;

/// One configured ML app: the model types it runs. Its callback secret stays in the HTTP
/// layer, which authenticates a callback and names the app it came from.
#[derive(Clone, Debug)]
pub struct MlAppRoute {
    /// A short name, recorded on each run (`reference`, `radiology-2`, ...).
    pub name: String,
    pub endpoint: MlAppEndpoint,
    pub model_types: Vec<String>,
}

/// The configured ML apps, each model type served by exactly one.
#[derive(Clone, Debug, Default)]
pub struct MlAppDirectory {
    apps: Vec<MlAppRoute>,
    by_model_type: BTreeMap<String, usize>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid ML app configuration: {0}")]
pub struct InvalidMlApps(pub String);

impl MlAppDirectory {
    pub fn new(apps: Vec<MlAppRoute>) -> Result<Self, InvalidMlApps> {
        let mut by_model_type = BTreeMap::new();
        let mut names = std::collections::BTreeSet::new();
        for (index, app) in apps.iter().enumerate() {
            if app.name.trim().is_empty() {
                return Err(InvalidMlApps("an ML app has an empty name".into()));
            }
            if !names.insert(app.name.as_str()) {
                return Err(InvalidMlApps(format!(
                    "two ML apps are named {:?}",
                    app.name
                )));
            }
            if !(app.endpoint.url.starts_with("http://")
                || app.endpoint.url.starts_with("https://"))
            {
                return Err(InvalidMlApps(format!(
                    "ML app {:?}: url {:?} is not an http(s) URL",
                    app.name, app.endpoint.url
                )));
            }
            if app.model_types.is_empty() {
                return Err(InvalidMlApps(format!(
                    "ML app {:?} serves no model type",
                    app.name
                )));
            }
            for model_type in &app.model_types {
                if model_type.trim().is_empty() || model_type.trim() != model_type {
                    return Err(InvalidMlApps(format!(
                        "ML app {:?}: model type {model_type:?} is empty or has surrounding spaces",
                        app.name
                    )));
                }
                if let Some(other) = by_model_type.insert(model_type.clone(), index) {
                    return Err(InvalidMlApps(format!(
                        "model type {model_type:?} is served by both {:?} and {:?}",
                        apps[other].name, app.name
                    )));
                }
            }
        }
        Ok(Self {
            apps,
            by_model_type,
        })
    }

    /// The ML app that runs `model_type`.
    pub fn route(&self, model_type: &str) -> Option<&MlAppRoute> {
        self.by_model_type.get(model_type).map(|&i| &self.apps[i])
    }

    /// Every model type some app serves, sorted.
    pub fn model_types(&self) -> Vec<String> {
        self.by_model_type.keys().cloned().collect()
    }

    pub fn apps(&self) -> &[MlAppRoute] {
        &self.apps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(name: &str, model_types: &[&str]) -> MlAppRoute {
        MlAppRoute {
            name: name.into(),
            endpoint: MlAppEndpoint {
                url: "http://ml.local".into(),
            },
            model_types: model_types.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn routes_each_model_type_to_its_app() {
        let directory = MlAppDirectory::new(vec![
            app("a", &["chest_xray_classification"]),
            app(
                "b",
                &["brain_tumor_segmentation", "lung_tumor_segmentation"],
            ),
        ])
        .unwrap();
        assert_eq!(
            directory.route("lung_tumor_segmentation").unwrap().name,
            "b"
        );
        assert!(directory.route("unknown").is_none());
        assert_eq!(
            directory.model_types(),
            [
                "brain_tumor_segmentation",
                "chest_xray_classification",
                "lung_tumor_segmentation"
            ]
        );
    }

    #[test]
    fn a_model_type_served_twice_is_refused() {
        let err = MlAppDirectory::new(vec![app("a", &["x"]), app("b", &["x"])]).unwrap_err();
        assert!(err.to_string().contains("both"));
        assert!(MlAppDirectory::new(vec![app("a", &["x"]), app("a", &["y"])]).is_err());
        assert!(MlAppDirectory::new(vec![app("a", &[])]).is_err());
    }
}
