//! When to try again: exponential backoff with jitter, within a time window (so that a
//! DICOM server or an ML app that restarts, which takes minutes, is waited for), and up to a
//! number of attempts.

use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all at most, the first included (1 = never retry).
    pub max_attempts: u32,
    /// No attempt begins later than this after the first attempt began: the schedule's
    /// span. The attempts follow from it (with the defaults, about 20 in 15 minutes).
    pub window: Duration,
    /// The wait after the first failed attempt, before jitter.
    pub first_delay: Duration,
    /// No wait is longer than this, before jitter.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 1000,
            window: Duration::from_secs(15 * 60),
            first_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Whether another attempt may follow attempt number `attempt` (1-based) by the count
    /// alone.
    pub fn allows_another(&self, attempt: u32) -> bool {
        attempt < self.max_attempts
    }

    /// The wait before the attempt after failed attempt number `attempt`, `since_first`
    /// after the first attempt began; `None` when no attempt follows (the count is reached,
    /// or the next one would begin after the window).
    pub fn next_attempt(&self, attempt: u32, since_first: Duration) -> Option<Duration> {
        if !self.allows_another(attempt) {
            return None;
        }
        let delay = self.random_delay(attempt);
        (since_first + delay <= self.window).then_some(delay)
    }

    /// The wait after failed attempt number `attempt` (1-based): `first_delay * 2^(attempt-1)`,
    /// capped at `max_delay`, then scaled by `jitter` clamped to 0.0..=1.0 into its upper half
    /// ("equal jitter": at least half the delay, so that retries still back off, and spread
    /// so that many failed jobs do not all come back at once).
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(31);
        let base = self
            .first_delay
            .checked_mul(1u32 << exponent)
            .unwrap_or(self.max_delay)
            .min(self.max_delay);
        base.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }

    /// [`delay`](Self::delay) with a random jitter.
    pub fn random_delay(&self, attempt: u32) -> Duration {
        self.delay(attempt, fastrand::f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_jitter_stays_in_the_upper_half() {
        let policy = RetryPolicy {
            max_attempts: 10,
            window: Duration::from_secs(3600),
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(10),
        };
        let full: Vec<u64> = (1..=6).map(|a| policy.delay(a, 1.0).as_secs()).collect();
        assert_eq!(full, [1, 2, 4, 8, 10, 10]);
        assert_eq!(policy.delay(3, 0.0), Duration::from_secs(2));
        assert_eq!(policy.delay(u32::MAX, 1.0), Duration::from_secs(10));
        for _ in 0..100 {
            let d = policy.random_delay(2);
            assert!(
                d >= Duration::from_secs(1) && d <= Duration::from_secs(2),
                "{d:?}"
            );
        }
    }

    #[test]
    fn attempts_stop_at_the_limit() {
        let policy = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        assert!(policy.allows_another(1));
        assert!(policy.allows_another(2));
        assert!(!policy.allows_another(3));
        assert_eq!(policy.next_attempt(3, Duration::ZERO), None);
    }

    #[test]
    fn the_default_schedule_spans_its_window() {
        let policy = RetryPolicy::default();
        assert!(policy.window >= Duration::from_secs(10 * 60));
        // Attempts follow one another, each delay the shortest (jitter 0) or the longest
        // (jitter 1), until the next would begin after the window.
        for jitter in [0.0, 1.0] {
            let (mut elapsed, mut attempt) = (Duration::ZERO, 1);
            loop {
                let delay = policy.delay(attempt, jitter);
                if elapsed + delay > policy.window {
                    break;
                }
                elapsed += delay;
                attempt += 1;
            }
            // The last attempt begins in the window's last minute: a server that comes
            // back within the window is found.
            assert!(
                elapsed > policy.window - policy.max_delay,
                "{jitter}: {elapsed:?}"
            );
            assert!((10..=40).contains(&attempt), "{jitter}: {attempt}");
        }
        assert!(
            policy
                .next_attempt(1, Duration::from_secs(60))
                .is_some_and(|d| d >= Duration::from_secs(1) && d <= Duration::from_secs(2))
        );
        assert_eq!(policy.next_attempt(5, policy.window), None);
    }
}
