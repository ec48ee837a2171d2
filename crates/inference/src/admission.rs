//! Admission of `/inf` requests: how many are worked on at once, how many wait, and which
//! are refused, decided from the request's declared size before its body is read.
//!
//! A request is *worked on* (its body read, its picture decoded, its models called) only
//! while it holds one of `working` slots. Beyond them, requests wait in a queue bounded by
//! a count and by their declared body bytes (the work waiting); beyond the queue, or after
//! waiting `max_wait`, they are refused at once, which costs the server nothing: their
//! bodies were never read. Without the queue, a burst is refused although the server would
//! have served it a moment later; without the bound, a flood of refusals that each read a
//! megabyte first (the reference system) takes the CPU the admitted requests needed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Clone, Debug, PartialEq)]
pub struct AdmissionSettings {
    /// Requests worked on at once.
    pub working: usize,
    /// Requests that may wait for a slot.
    pub queue_requests: usize,
    /// Declared body bytes of the waiting requests, all together.
    pub queue_bytes: u64,
    /// Longest a request waits for a slot before it is refused.
    pub max_wait: Duration,
    /// What a refused client is told to wait before trying again.
    pub retry_after: Duration,
}

/// Why a request was not admitted; the client should try again after `retry_after`.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Refused {
    #[error(
        "the server is busy: {working} inferences are running and {waiting} are waiting, the most it queues; try again in {} s",
        retry_after.as_secs()
    )]
    QueueFull {
        working: usize,
        waiting: usize,
        retry_after: Duration,
    },
    #[error(
        "the server is busy: this inference waited {} s for its turn; try again in {} s",
        waited.as_secs(),
        retry_after.as_secs()
    )]
    WaitedTooLong {
        waited: Duration,
        retry_after: Duration,
    },
}

impl Refused {
    pub fn retry_after(&self) -> Duration {
        match self {
            Refused::QueueFull { retry_after, .. } | Refused::WaitedTooLong { retry_after, .. } => {
                *retry_after
            }
        }
    }
}

/// The slot of an admitted request; dropping it lets the next waiting request in.
#[derive(Debug)]
pub struct Admitted {
    _slot: OwnedSemaphorePermit,
}

#[derive(Debug)]
pub struct Admission {
    slots: Arc<Semaphore>,
    /// (requests waiting, their declared bytes)
    waiting: Mutex<(usize, u64)>,
    settings: AdmissionSettings,
}

impl Admission {
    pub fn new(settings: AdmissionSettings) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(settings.working.max(1))),
            waiting: Mutex::new((0, 0)),
            settings,
        }
    }

    pub fn settings(&self) -> &AdmissionSettings {
        &self.settings
    }

    /// A slot for a request of `bytes` declared body bytes: at once if one is free, else
    /// after waiting in the queue (first come, first served), or refused.
    pub async fn admit(&self, bytes: u64) -> Result<Admitted, Refused> {
        if let Ok(slot) = self.slots.clone().try_acquire_owned() {
            return Ok(Admitted { _slot: slot });
        }
        let _place = self.enqueue(bytes)?;
        let slot = tokio::time::timeout(self.settings.max_wait, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| Refused::WaitedTooLong {
                waited: self.settings.max_wait,
                retry_after: self.settings.retry_after,
            })?
            .expect("the admission semaphore is never closed");
        Ok(Admitted { _slot: slot })
    }

    /// Requests being worked on now.
    pub fn working(&self) -> usize {
        self.settings
            .working
            .max(1)
            .saturating_sub(self.slots.available_permits())
    }

    /// Requests waiting now, and their declared bytes.
    pub fn waiting(&self) -> (usize, u64) {
        *self.lock()
    }

    fn enqueue(&self, bytes: u64) -> Result<Place<'_>, Refused> {
        let mut waiting = self.lock();
        let (count, queued_bytes) = *waiting;
        // A request bigger than the whole byte bound still waits alone in an empty queue.
        let fits = count < self.settings.queue_requests
            && (count == 0 || queued_bytes.saturating_add(bytes) <= self.settings.queue_bytes);
        if !fits {
            return Err(Refused::QueueFull {
                working: self.settings.working,
                waiting: count,
                retry_after: self.settings.retry_after,
            });
        }
        *waiting = (count + 1, queued_bytes.saturating_add(bytes));
        Ok(Place {
            admission: self,
            bytes,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, u64)> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A request's place in the queue; it leaves when admitted, refused or abandoned.
struct Place<'a> {
    admission: &'a Admission,
    bytes: u64,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        let mut waiting = self.admission.lock();
        waiting.0 -= 1;
        waiting.1 -= self.bytes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(working: usize, queue_requests: usize, queue_bytes: u64) -> Admission {
        Admission::new(AdmissionSettings {
            working,
            queue_requests,
            queue_bytes,
            max_wait: Duration::from_secs(60),
            retry_after: Duration::from_secs(2),
        })
    }

    #[tokio::test]
    async fn requests_beyond_the_slots_wait_and_get_in_first_come_first_served() {
        let admission = Arc::new(admission(1, 4, 1000));
        let first = admission.admit(10).await.unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for n in 0..3 {
            let (waiter, tx) = (admission.clone(), tx.clone());
            tokio::spawn(async move {
                let slot = waiter.admit(10).await.unwrap();
                tx.send(n).unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
                drop(slot);
            });
            // Each waits before the next arrives.
            while admission.waiting().0 < n + 1 {
                tokio::task::yield_now().await;
            }
        }
        assert_eq!(admission.waiting(), (3, 30));
        drop(first);
        let order: Vec<usize> = [rx.recv().await, rx.recv().await, rx.recv().await]
            .into_iter()
            .map(Option::unwrap)
            .collect();
        assert_eq!(order, [0, 1, 2]);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(admission.waiting(), (0, 0));
    }

    #[tokio::test]
    async fn beyond_the_queue_s_count_or_bytes_a_request_is_refused_at_once() {
        let admission = Arc::new(admission(1, 2, 100));
        let _working = admission.admit(60).await.unwrap();
        let waiter = {
            let admission = admission.clone();
            tokio::spawn(async move { admission.admit(60).await.map(drop) })
        };
        while admission.waiting().0 < 1 {
            tokio::task::yield_now().await;
        }
        // 60 + 60 bytes is over the 100 the queue holds.
        let refused = admission.admit(60).await.unwrap_err();
        assert!(matches!(refused, Refused::QueueFull { waiting: 1, .. }));
        assert_eq!(refused.retry_after(), Duration::from_secs(2));
        // A small one still fits, then the count is full.
        let small = {
            let admission = admission.clone();
            tokio::spawn(async move { admission.admit(10).await.map(drop) })
        };
        while admission.waiting().0 < 2 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(
            admission.admit(1).await.unwrap_err(),
            Refused::QueueFull { waiting: 2, .. }
        ));
        waiter.abort();
        small.abort();
        let _ = (waiter.await, small.await);
        assert_eq!(
            admission.waiting(),
            (0, 0),
            "an abandoned request leaves the queue"
        );
    }

    #[tokio::test]
    async fn a_request_that_waits_too_long_is_refused() {
        let admission = Admission::new(AdmissionSettings {
            max_wait: Duration::from_millis(50),
            ..admission(1, 4, 1000).settings
        });
        let _working = admission.admit(1).await.unwrap();
        let refused = admission.admit(1).await.unwrap_err();
        assert!(
            matches!(refused, Refused::WaitedTooLong { .. }),
            "{refused:?}"
        );
        assert_eq!(admission.waiting(), (0, 0));
    }

    #[tokio::test]
    async fn a_request_bigger_than_the_byte_bound_waits_alone() {
        let admission = Arc::new(admission(1, 4, 100));
        let working = admission.admit(1).await.unwrap();
        let big = {
            let admission = admission.clone();
            tokio::spawn(async move { admission.admit(500).await.map(drop) })
        };
        while admission.waiting().0 < 1 {
            tokio::task::yield_now().await;
        }
        assert!(
            admission.admit(1).await.is_err(),
            "the queue is full of bytes"
        );
        drop(working);
        big.await.unwrap().unwrap();
    }
}
