//! A **reference** ML app for DICOM series, for development and tests. **It is not a
//! trained model**: it does the real work an ML app does around a model (takes the series
//! ZIP, parses every instance with the `dicom` crate, pixel data included, checks that the
//! model type takes the modality, computes a result from the pixels, and reports it to the
//! backend's authenticated status callback), but the "model" is per-slice pixel statistics
//! and a fixed threshold ([`analysis`]). Its labels carry no medical meaning.
//!
//! Contract 2.4: `POST /predict?seriesId=&modality=&modelType=&bodyPart=&runId=` with the
//! ZIP as multipart field `file` answers `202` at once; later the app calls
//! `PUT {backend}/api/studies/series/{seriesId}/status` with
//! `Authorization: Bearer {callback_token}` and `{"status", "modelType", "result", "runId"}`
//! where `status` is `completed`, `not_supported` or `failed` ([`server`], [`callback`]).
//! Model types and the modalities they take: [`models`]. For tests, [`recorder`] is a
//! stand-in backend that records the callbacks.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use reference_ml_app::{Options, start};
//! let app = start(Options::new("http://127.0.0.1:8080", "callback-secret")).await?;
//! println!("POST {}", app.predict_url());
//! // Test hooks: predictions accepted per (seriesId, runId), finished predictions.
//! assert_eq!(app.received("series-id", Some("run-id")), 0);
//! app.stop().await;
//! # Ok(()) }
//! ```

pub mod analysis;
pub mod callback;
pub mod models;
pub mod recorder;
pub mod server;

pub use analysis::{Outcome, Status};
pub use callback::Delivery;
pub use models::{MODEL_TYPES, ModelType, model_type};
pub use recorder::{CallbackRecorder, ReceivedCallback};
pub use server::{Finished, Options, RunningMlApp, start};
