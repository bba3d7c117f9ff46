//! How busy a worker's thread is: the time it spends parked in the runtime's driver
//! (waiting for a feed, a socket or a timer) against the time it runs.
//!
//! The worker's tokio runtime calls [`BusyMeter::park`] just before it blocks and
//! [`BusyMeter::unpark`] when it wakes (its `on_thread_park` / `on_thread_unpark`
//! hooks), so everything the thread does counts as busy: the fan-out, connection
//! tasks, accepts, and the time the kernel gives the core to another thread while the
//! worker could run. That last part is the point: the coalescing policy
//! ([`super::flush`]) asks whether the *core* has room, not how much this code costs.
//!
//! One meter per worker, written and read by that worker's thread only; the atomics
//! (relaxed) are there because tokio's hooks must be `Send + Sync`, not for sharing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Parked time of one worker thread (see the module doc).
#[derive(Debug)]
pub struct BusyMeter {
    /// Times are kept as ns since `base` so that they fit an atomic.
    base: Instant,
    /// Total time parked, ns.
    parked_ns: AtomicU64,
    /// When the current park began, ns since `base`; `u64::MAX` while running.
    parked_at: AtomicU64,
}

const RUNNING: u64 = u64::MAX;

impl BusyMeter {
    /// A meter whose thread runs from `now` on.
    pub fn new(now: Instant) -> BusyMeter {
        BusyMeter {
            base: now,
            parked_ns: AtomicU64::new(0),
            parked_at: AtomicU64::new(RUNNING),
        }
    }

    fn offset(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.base).as_nanos() as u64
    }

    /// The thread is about to block at `at`.
    pub fn park(&self, at: Instant) {
        self.parked_at.store(self.offset(at), Ordering::Relaxed);
    }

    /// The thread woke at `at`.
    pub fn unpark(&self, at: Instant) {
        let since = self.parked_at.swap(RUNNING, Ordering::Relaxed);
        if since != RUNNING {
            let parked = self.offset(at).saturating_sub(since);
            self.parked_ns.fetch_add(parked, Ordering::Relaxed);
        }
    }

    /// Total time parked up to now (a park in progress counts up to `now`).
    pub fn parked(&self, now: Instant) -> Duration {
        let mut ns = self.parked_ns.load(Ordering::Relaxed);
        let since = self.parked_at.load(Ordering::Relaxed);
        if since != RUNNING {
            ns += self.offset(now).saturating_sub(since);
        }
        Duration::from_nanos(ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_the_time_between_park_and_unpark() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let m = BusyMeter::new(t0);
        assert_eq!(m.parked(t0 + ms(5)), Duration::ZERO);
        m.park(t0 + ms(5));
        assert_eq!(m.parked(t0 + ms(7)), ms(2), "a park in progress counts");
        m.unpark(t0 + ms(8));
        m.park(t0 + ms(10));
        m.unpark(t0 + ms(11));
        assert_eq!(m.parked(t0 + ms(20)), ms(4));
        // An unpark without a park (tokio calls the hook after a poll that found work)
        // adds nothing.
        m.unpark(t0 + ms(30));
        assert_eq!(m.parked(t0 + ms(30)), ms(4));
    }
}
