//! The runtime `/inf`'s work runs on, apart from the HTTP workers.
//!
//! Each actix HTTP worker is a single-threaded runtime that notices a newly readable
//! connection only between its tasks (tokio polls for I/O after up to 61 task polls). When
//! the same workers also carried every model call (writing a 1.5 MB body to the detector,
//! ten crops to the classifier, reading the answers), the rows and the blobs of dozens of
//! `/inf` requests, a `GET /health` could wait several milliseconds behind them. So a
//! worker only reads an `/inf` body and writes its answer; parsing it and the use case
//! itself run here, on a multi-threaded runtime of their own ([`WorkRuntime::run`]).

use std::future::Future;

use tokio::runtime::Runtime;
use tracing::Instrument;

/// The work runtime; shut down (without waiting for its tasks) when dropped.
pub struct WorkRuntime {
    runtime: Option<Runtime>,
}

impl WorkRuntime {
    /// A runtime of `threads` threads (the cores when 0).
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("inference-work")
            .enable_all()
            .build()?;
        Ok(Self {
            runtime: Some(runtime),
        })
    }

    /// Runs `work` here, in the current span, and waits for it. Dropping the returned
    /// future (a client that left) aborts the work, as if it had run on the caller's thread.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, Stopped> {
        struct AbortOnDrop(tokio::task::AbortHandle);
        impl Drop for AbortOnDrop {
            fn drop(&mut self) {
                self.0.abort();
            }
        }
        let task = self
            .runtime
            .as_ref()
            .expect("the runtime lives until dropped")
            .spawn(work.in_current_span());
        let _abort = AbortOnDrop(task.abort_handle());
        match task.await {
            Ok(value) => Ok(value),
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            // Cancelled: only when the runtime shuts down.
            Err(_) => Err(Stopped),
        }
    }
}

impl Drop for WorkRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Dropping a runtime blocks, which an async context (where the server stops)
            // forbids; what it was running is abandoned like a dropped request.
            runtime.shutdown_background();
        }
    }
}

/// Why [`WorkRuntime::run`] has no answer.
#[derive(Debug)]
pub struct Stopped;

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn work_runs_there_and_a_dropped_caller_aborts_it() {
        let work = WorkRuntime::new(1).unwrap();
        let name = work
            .run(async { std::thread::current().name().map(str::to_owned) })
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("inference-work"));

        let finished = Arc::new(AtomicBool::new(false));
        let waiting = work.run({
            let finished = finished.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                finished.store(true, Ordering::SeqCst);
            }
        });
        // The caller gives up after 20 ms: the work must not go on.
        assert!(
            tokio::time::timeout(Duration::from_millis(20), waiting)
                .await
                .is_err()
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(!finished.load(Ordering::SeqCst));
    }
}
