//! Seed inference: a picture through a pipeline of models, into boxes (contract 1).
//!
//! - [`picture`]: the data URL is checked and the picture decoded once, off the executor.
//! - [`runner`]: each model's output feeds the next; per-crop calls run concurrently, bounded.
//! - [`result`]: the last model's boxes become pixels, overlap flags and colours (contract 1.4).
//! - [`service`]: the `/inf` use case: check, run, process, then store everything or nothing.
//! - [`stored`]: a saved inference rebuilt from its rows, with what people verified since.
//! - [`dataset`]: the verified pictures and a COCO document, out to an archive.
//! - [`feedback`]: a person verifies, corrects, deletes or adds boxes.
//! - [`folders`]: the user's folders and pictures; deleting them with their blobs.
//!
//! Architecture invariant: no I/O but through ports ([`ports::ModelClient`] here, the
//! `datastore` ports for records and blobs). Codec work runs on a bounded blocking pool
//! ([`codec::CodecPool`]), never on the async executor's threads.

pub mod admission;
pub mod codec;
pub mod dataset;
pub mod feedback;
pub mod folders;
pub mod picture;
pub mod ports;
pub mod result;
pub mod runner;
pub mod service;
pub mod stored;

pub use admission::{Admission, AdmissionSettings, Admitted, Refused};
pub use codec::CodecPool;
pub use dataset::{DatasetError, DatasetService, DatasetSink, ExportSummary};
pub use feedback::{BoxFeedback, DrawnCorners, FeedbackError, FeedbackService, SpeciesName};
pub use folders::{
    DeletionMode, FolderError, FolderPorts, FolderService, FolderSettings, LabelledUpload,
    PictureWithInference,
};
pub use picture::{CheckedPicture, DecodedPicture, PictureError, PictureFormat, PictureLimits};
pub use ports::{DetectedBox, ModelCallError, ModelClient, NormalizedBox, RankedLabel};
pub use result::{Color, ColorFormat, ProcessedBox, ProcessedResult, process};
pub use runner::{Detection, PipelineRunner, RunError, StepError};
pub use service::{
    InferError, InferenceRequest, InferenceResponse, InferenceService, Ports, ServiceSettings,
};
