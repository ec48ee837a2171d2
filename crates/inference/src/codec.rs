//! A bounded pool for codec work (base64, hashing, image decode and encode).
//!
//! Codec work is CPU-bound: on the async executor's threads it would freeze every other
//! request (the reference system's `/health` took 2 s under load). The pool runs it on
//! tokio's blocking threads, at most `size` jobs at a time, so that a burst of large
//! pictures cannot start hundreds of blocking threads. It decodes pictures within its
//! [`PictureLimits`], checked from a picture's header before any decoding.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::Semaphore;

use crate::picture::{CheckedPicture, DecodedPicture, PictureError, PictureLimits};

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

    /// Checks a picture's data URL, base64 and header (see [`CheckedPicture::from_data_url`]).
    pub async fn check(&self, data_url: Bytes) -> Result<CheckedPicture, PictureError> {
        let limits = self.limits;
        self.run(move || CheckedPicture::from_data_url(&data_url, &limits))
            .await
    }

    /// Decodes a checked picture's pixels (see [`CheckedPicture::decode`]).
    pub async fn decode(&self, picture: &CheckedPicture) -> Result<DecodedPicture, PictureError> {
        let (picture, limits) = (picture.clone(), self.limits);
        self.run(move || picture.decode(&limits)).await
    }

    /// Checks a picture and decodes it once to make sure it does (the pixels are dropped):
    /// for pictures that are stored, not inferred.
    pub async fn validate(&self, data_url: Bytes) -> Result<CheckedPicture, PictureError> {
        let limits = self.limits;
        self.run(move || {
            let picture = CheckedPicture::from_data_url(&data_url, &limits)?;
            picture.decode(&limits)?;
            Ok(picture)
        })
        .await
    }

    /// Runs `job` on a blocking thread once a slot is free; a panic in `job` resumes here.
    ///
    /// The slot is the job's, not the caller's: when the caller stops waiting (its request
    /// was abandoned), a job that has started keeps its slot until it is done, so the pool
    /// never runs more than `size` jobs; a job not started yet is not started at all.
    pub async fn run<T, F>(&self, job: F) -> T
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the codec pool's semaphore is never closed");
        let job = move || {
            let _slot = permit;
            job()
        };
        match tokio::task::spawn_blocking(job).await {
            Ok(value) => value,
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }
}
