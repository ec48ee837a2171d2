//! The seeds area (`inference`, `datastore`, `http/seeds.rs` and its neighbours), wired: the
//! use cases over the SQL store, blob storage and the model endpoints (`model-http`), and
//! `/inf`'s admission.

use std::sync::Arc;

use actix_web::web;
use inference::{
    Admission, AdmissionSettings, CodecPool, DatasetService, FeedbackService, FolderPorts,
    FolderService, InferenceService, Ports, ServiceSettings,
};
use pipeline::PipelineRegistry;
use sql_store::SqlStore;

use crate::config::{InferenceSettings, Settings};
use crate::metrics::{MeteredModels, Metrics};
use crate::work::WorkRuntime;

/// The seed use cases, as the HTTP routes take them.
#[derive(Clone)]
pub struct SeedServices {
    pub inference: web::Data<InferenceService>,
    pub admission: web::Data<Admission>,
    pub folders: web::Data<FolderService>,
    pub feedback: web::Data<FeedbackService>,
    pub dataset: web::Data<DatasetService>,
    /// The codec threads' pool (operators see how busy it is).
    pub codec: CodecPool,
    /// Where `/inf`'s work runs, apart from the HTTP workers.
    pub work: web::Data<WorkRuntime>,
}

pub async fn start(
    settings: &Settings,
    registry: Arc<PipelineRegistry>,
    store: Arc<SqlStore>,
    blobs: Arc<dyn datastore::BlobStore>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<SeedServices> {
    let work = WorkRuntime::new(0)
        .map_err(|e| anyhow::anyhow!("cannot start the inference work runtime: {e}"))?;
    let limits = inference::PictureLimits {
        max_pixels: settings.inference.max_picture_pixels,
    };
    let codec = match settings.inference.codec_threads {
        0 => CodecPool::per_core(limits),
        n => CodecPool::new(n, limits),
    };
    let inference = InferenceService::new(
        registry,
        Ports {
            models: Arc::new(MeteredModels {
                inner: Arc::new(model_http::HttpModelClient::new()),
                metrics,
            }),
            users: store.clone(),
            seeds: store.clone(),
            inferences: store.clone(),
            folders: store.clone(),
            blobs: blobs.clone(),
        },
        codec.clone(),
        ServiceSettings {
            max_crop_calls: settings.inference.max_crop_calls,
            register_unknown_users: settings.users.register_unknown,
        },
    );
    let folders = FolderService::new(
        FolderPorts {
            folders: store.clone(),
            inferences: store.clone(),
            users: store.clone(),
            seeds: store.clone(),
            blobs: blobs.clone(),
        },
        codec.clone(),
        settings.folders.clone(),
    );
    // Blobs of deletions that an earlier run could not finish.
    match folders.delete_queued_blobs().await {
        Ok(0) => {}
        Ok(left) => tracing::warn!(
            left,
            "some blobs of deleted folders could not be deleted yet"
        ),
        Err(error) => tracing::warn!(%error, "could not read the blobs queued for deletion"),
    }
    Ok(SeedServices {
        inference: web::Data::new(inference),
        admission: web::Data::new(Admission::new(admission_settings(&settings.inference))),
        folders: web::Data::new(folders),
        feedback: web::Data::new(FeedbackService::new(store.clone(), store.clone())),
        dataset: web::Data::new(DatasetService::new(store.clone(), store, blobs)),
        codec,
        work: web::Data::new(work),
    })
}

/// `/inf` admission from the settings: four requests per core worked on by default, enough
/// to keep the codec pool busy while others wait for their models.
fn admission_settings(inference: &InferenceSettings) -> AdmissionSettings {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    AdmissionSettings {
        working: match inference.max_in_flight {
            0 => 4 * cores,
            n => n,
        },
        queue_requests: inference.queue_requests,
        queue_bytes: inference.queue_bytes,
        max_wait: std::time::Duration::from_secs(inference.queue_wait_seconds),
        retry_after: std::time::Duration::from_secs(inference.retry_after_seconds.max(1)),
    }
}
