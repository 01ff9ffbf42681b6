//! The host's one way of waiting before trying again: units restarting, transports
//! reconnecting, background tasks retrying.

use std::time::Duration;

/// The delay before try `attempt + 1` of something that failed `attempt` times: doubling from
/// `base_ms`, capped at `max_ms`, with up to 10% jitter so that what failed together does not
/// all come back together (a route's retries, the outbox's rows).
pub fn retry_delay(base_ms: u64, max_ms: u64, attempt: u32) -> Duration {
    let factor = 1u64 << attempt.min(30);
    let ms = base_ms.saturating_mul(factor).min(max_ms);
    Duration::from_millis(ms + rand::random_range(0..=ms / 10))
}

/// Capped exponential backoff with jitter: the host's one way of waiting before trying again
/// (units, transports reconnecting), over `backon`'s.
#[derive(Debug)]
pub struct Backoff {
    builder: backon::ExponentialBuilder,
    delays: backon::ExponentialBackoff,
    max: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        use backon::BackoffBuilder as _;
        let builder = backon::ExponentialBuilder::default()
            .with_min_delay(initial)
            .with_max_delay(max)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times();
        Backoff {
            delays: builder.build(),
            builder,
            max,
        }
    }

    /// The next wait: doubling from `initial` up to `max`, with jitter.
    pub fn next_delay(&mut self) -> Duration {
        self.delays.next().unwrap_or(self.max)
    }

    /// Starts again from the shortest wait (after a run that lasted).
    pub fn reset(&mut self) {
        use backon::BackoffBuilder as _;
        self.delays = self.builder.build();
    }
}

impl Clone for Backoff {
    /// A backoff that starts again from the shortest wait.
    fn clone(&self) -> Self {
        use backon::BackoffBuilder as _;
        Backoff {
            builder: self.builder,
            delays: self.builder.build(),
            max: self.max,
        }
    }
}
