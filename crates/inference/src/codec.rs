//! A bounded pool for codec work (base64, hashing, image decode and encode).
//!
//! Codec work is CPU-bound: on the async executor's threads it would freeze every other
//! request (the reference system's `/health` took 2 s under load). The pool runs it on
//! tokio's blocking threads, at most `size` jobs at a time, so that a burst of large
//! pictures cannot start hundreds of blocking threads. It decodes pictures within its
//! [`PictureLimits`], checked from a picture's header before any decoding.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::picture::{DecodedPicture, PictureError, PictureLimits};

#[derive(Clone, Debug)]
pub struct CodecPool {
    permits: Arc<Semaphore>,
    limits: PictureLimits,
}

impl CodecPool {
    pub fn new(size: usize, limits: PictureLimits) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(size.max(1))),
            limits,
        }
    }

    /// One job per available core.
    pub fn per_core(limits: PictureLimits) -> Self {
        Self::new(
            std::thread::available_parallelism().map_or(2, |n| n.get()),
            limits,
        )
    }

    /// Decodes the picture of a data URL (see [`DecodedPicture::from_data_url`]).
    pub async fn decode(&self, data_url: String) -> Result<DecodedPicture, PictureError> {
        let limits = self.limits;
        self.run(move || DecodedPicture::from_data_url(&data_url, &limits))
            .await
    }

    /// Runs `job` on a blocking thread once a slot is free; a panic in `job` resumes here.
    pub async fn run<T, F>(&self, job: F) -> T
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("the codec pool's semaphore is never closed");
        match tokio::task::spawn_blocking(job).await {
            Ok(value) => value,
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }
}
