//! The pipelines the backend serves right now.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use uuid::Uuid;

use crate::catalogue::{Catalogue, PipelineDefinition};
use crate::model::ModelDefinition;

/// A model as recorded in the database: inferences point at its id.
#[derive(Clone, Debug)]
pub struct ActiveModel {
    pub id: Uuid,
    pub definition: Arc<ModelDefinition>,
}

#[derive(Clone, Debug)]
pub struct ActivePipeline {
    /// The database id of this pipeline version; stable when the same version is loaded again.
    pub id: Uuid,
    pub definition: PipelineDefinition,
    /// The models, in call order.
    pub models: Vec<ActiveModel>,
}

/// One loaded catalogue version, with database ids. Immutable: switching versions builds a
/// new set, and a request keeps the set it started with until it ends.
#[derive(Debug)]
pub struct PipelineSet {
    catalogue_version: String,
    pipelines: Vec<ActivePipeline>,
}

/// Database ids of a recorded catalogue, by pipeline name and by model name.
#[derive(Clone, Debug, Default)]
pub struct RecordedIds {
    pub pipelines: HashMap<String, Uuid>,
    pub models: HashMap<String, Uuid>,
}

impl PipelineSet {
    /// Joins a catalogue with the ids its pipelines and models were recorded under.
    ///
    /// Panics if `ids` lacks an entry: the recorder returns one for every pipeline and model.
    pub fn new(catalogue: &Catalogue, ids: &RecordedIds) -> Self {
        let models: HashMap<&str, ActiveModel> = catalogue
            .models()
            .iter()
            .map(|m| {
                let id = ids.models[&m.name];
                (
                    m.name.as_str(),
                    ActiveModel {
                        id,
                        definition: Arc::new(m.clone()),
                    },
                )
            })
            .collect();
        let pipelines = catalogue
            .pipelines()
            .iter()
            .map(|p| ActivePipeline {
                id: ids.pipelines[&p.name],
                definition: p.clone(),
                models: p
                    .models
                    .iter()
                    .map(|m| models[m.as_str()].clone())
                    .collect(),
            })
            .collect();
        Self {
            catalogue_version: catalogue.version().to_owned(),
            pipelines,
        }
    }

    pub fn catalogue_version(&self) -> &str {
        &self.catalogue_version
    }

    pub fn pipelines(&self) -> &[ActivePipeline] {
        &self.pipelines
    }

    pub fn find(&self, name: &str) -> Option<&ActivePipeline> {
        self.pipelines.iter().find(|p| p.definition.name == name)
    }

    pub fn names(&self) -> Vec<&str> {
        self.pipelines
            .iter()
            .map(|p| p.definition.name.as_str())
            .collect()
    }
}

/// The current [`PipelineSet`]; swapped whole, read without locks.
pub struct PipelineRegistry {
    current: ArcSwap<PipelineSet>,
}

impl PipelineRegistry {
    pub fn new(set: PipelineSet) -> Self {
        Self {
            current: ArcSwap::from_pointee(set),
        }
    }

    /// The set to use for one whole request.
    pub fn current(&self) -> Arc<PipelineSet> {
        self.current.load_full()
    }

    /// Makes `set` current; requests that already hold the old set finish on it.
    pub fn replace(&self, set: PipelineSet) {
        self.current.store(Arc::new(set));
    }
}
