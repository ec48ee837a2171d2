//! A bounded pool for codec work (base64, hashing, image decode and encode).
//!
//! Codec work is CPU-bound: on the async executor's threads it would freeze every other
//! request (the reference system's `/health` took 2 s under load). The pool runs it on
//! tokio's blocking threads, at most `size` jobs at a time, so that a burst of large
//! pictures cannot start hundreds of blocking threads. It decodes pictures within its
//! [`PictureLimits`], checked from a picture's header before any decoding.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tokio::sync::Semaphore;

use crate::picture::{CheckedPicture, DecodedPicture, PictureError, PictureLimits};

#[derive(Clone, Debug)]
pub struct CodecPool {
    permits: Arc<Semaphore>,
    /// Decoded pictures alive at once (they are the bulk of a request's memory: 7.7 MB for
    /// a 1600 x 1200 RGBA photo); a request waits for its turn before decoding.
    decoded: Arc<Semaphore>,
    limits: PictureLimits,
    /// Time the pool's threads spent on jobs, in nanoseconds (operators' `/metrics`).
    busy_nanos: Arc<AtomicU64>,
}

impl CodecPool {
    /// `size` jobs at once; `2 * size + 1` decoded pictures alive at once, enough for the
    /// jobs to always have crops to encode while other pictures wait for their models.
    pub fn new(size: usize, limits: PictureLimits) -> Self {
        let size = size.max(1);
        Self {
            permits: Arc::new(Semaphore::new(size)),
            decoded: Arc::new(Semaphore::new(2 * size + 1)),
            limits,
            busy_nanos: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Time the pool's threads have spent on jobs since it was made: with the number of
    /// threads, how busy the codec work keeps the machine.
    pub fn busy(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.busy_nanos.load(Ordering::Relaxed))
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

    /// Decodes a checked picture's pixels (see [`CheckedPicture::decode`]), once fewer than
    /// the pool's bound of decoded pictures are alive; the picture holds its place until it
    /// (and every clone of it) is dropped.
    pub async fn decode(&self, picture: &CheckedPicture) -> Result<DecodedPicture, PictureError> {
        let place = self
            .decoded
            .clone()
            .acquire_owned()
            .await
            .expect("the decoded-picture semaphore is never closed");
        let (picture, limits) = (picture.clone(), self.limits);
        let mut decoded = self.run(move || picture.decode(&limits)).await?;
        decoded.place = Some(Arc::new(place));
        Ok(decoded)
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
        let busy = self.busy_nanos.clone();
        let job = move || {
            let _slot = permit;
            below_the_server();
            let started = std::time::Instant::now();
            let result = job();
            let spent = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            busy.fetch_add(spent, Ordering::Relaxed);
            result
        };
        match tokio::task::spawn_blocking(job).await {
            Ok(value) => value,
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }
}

/// The nice value of a thread that runs codec work: above the server's threads (0), so that
/// the HTTP workers (`/health`, reading bodies, calling models) get a core at once however
/// busy the codec work keeps both; the codec work still has every core the server leaves.
const CODEC_NICE: i32 = 10;

thread_local! {
    static LOWERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Lowers the calling (blocking) thread's priority, once per thread. On Linux a nice value
/// is a thread's own; the thread keeps it for the blocking work it runs after (files,
/// codec), which is never in a hurry. Failing to lower it changes nothing else.
fn below_the_server() {
    LOWERED.with(|lowered| {
        if !lowered.replace(true) {
            #[cfg(target_os = "linux")]
            if let Err(error) = rustix::process::setpriority_process(None, CODEC_NICE) {
                tracing::debug!(%error, "could not lower a codec thread's priority");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;
    use std::time::Duration;

    use base64::Engine;

    use super::*;

    fn picture() -> CheckedPicture {
        let mut png = Cursor::new(Vec::new());
        image::DynamicImage::new_rgb8(8, 8)
            .write_to(&mut png, image::ImageFormat::Png)
            .unwrap();
        let url = format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(png.get_ref())
        );
        CheckedPicture::from_data_url(&url.into(), &LIMITS).unwrap()
    }

    const LIMITS: PictureLimits = PictureLimits {
        max_pixels: 1_000_000,
    };

    #[tokio::test]
    async fn at_most_2_size_plus_1_pictures_are_decoded_at_once() {
        let pool = CodecPool::new(1, LIMITS);
        let picture = picture();
        let mut alive = Vec::new();
        for _ in 0..3 {
            alive.push(pool.decode(&picture).await.unwrap());
        }
        let fourth = tokio::time::timeout(Duration::from_millis(100), pool.decode(&picture)).await;
        assert!(fourth.is_err(), "a fourth decoded picture waits");
        // A clone keeps the place; dropping every copy gives it back.
        let clone = alive[0].clone();
        drop(alive.remove(0));
        assert!(
            tokio::time::timeout(Duration::from_millis(100), pool.decode(&picture))
                .await
                .is_err()
        );
        drop(clone);
        let fourth = tokio::time::timeout(Duration::from_secs(5), pool.decode(&picture)).await;
        assert!(fourth.is_ok(), "its place was given back");
    }
}
