//! Reference model servers for Nachet: small, deterministic stand-ins for the seed models
//! that speak exactly the Azure ML wire formats of the real endpoints (contract 1.5), so
//! the backend can be developed and tested against real HTTP without Azure.
//!
//! **These are not trained models.** The detector is classical thresholding (dark seeds on
//! a light background) and the classifier compares a few measured features with
//! hand-set species prototypes. Their answers are honest functions of the pixels, stable
//! from call to call, and carry no accuracy.
//!
//! Deployments ([`DEPLOYMENTS`]): [`SEED_DETECTOR`], [`SEED_CLASSIFIER`],
//! [`SEED_DETECTOR_6`]; see [`server`] for the HTTP surface and [`wire`] for the bodies.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use reference_models::{Behaviour, Options, start};
//! let models = start(Options::new("dev-key")).await?;
//! println!("POST {}/score with azureml-model-deployment: seed-detector", models.url);
//! models.stop().await;
//! // A server whose every scoring call answers 500:
//! let failing = start(Options::new("dev-key").with_behaviour(Behaviour::AlwaysFail)).await?;
//! failing.stop().await;
//! # Ok(()) }
//! ```

pub mod classifier;
pub mod deployments;
pub mod detector;
pub mod picture;
pub mod segment;
pub mod server;
pub mod species;
pub mod wire;

pub use deployments::{
    DEPLOYMENTS, Deployment, ROUTING_HEADER, SEED_CLASSIFIER, SEED_DETECTOR, SEED_DETECTOR_6,
    SEED_LABEL,
};
pub use server::{Behaviour, Options, ReferenceModels, start};
pub use species::SPECIES;
