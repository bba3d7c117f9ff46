//! The worker's one seam for time.
//!
//! Every decision a worker takes on time (throttle intervals, server pings, dead peers,
//! idle readers, the write-coalescing deadline, the command rate limit) reads
//! [`Clock::now`], never `Instant::now` directly, so tests drive that logic with a
//! [`Clock::manual`] clock they advance by hand instead of sleeping. Wall time for
//! latency (`ingest_ts` differences) is a separate matter: it is what the feed stamped,
//! read with [`crate::tick::now_ns`].
//!
//! Owned by one worker thread (`Rc`, `Cell`): no atomics, no allocation after
//! construction.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Monotonic time as the worker sees it: the system's, or a manual one for tests.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    manual: Option<Rc<Cell<Instant>>>,
}

impl Clock {
    /// The system's monotonic clock.
    pub fn system() -> Clock {
        Clock { manual: None }
    }

    /// A clock that stands still until [`Clock::advance`] moves it; clones share it.
    pub fn manual() -> Clock {
        Clock {
            manual: Some(Rc::new(Cell::new(Instant::now()))),
        }
    }

    /// Now.
    pub fn now(&self) -> Instant {
        match &self.manual {
            Some(t) => t.get(),
            None => Instant::now(),
        }
    }

    /// Moves a manual clock forward; a system clock cannot be moved and ignores it.
    pub fn advance(&self, by: Duration) {
        if let Some(t) = &self.manual {
            t.set(t.get() + by);
        }
    }

    /// Whether this is a manual (test) clock.
    pub fn is_manual(&self) -> bool {
        self.manual.is_some()
    }
}

/// The times of one fan-out pass, read once for everything it queues, with the
/// staleness limit its offers apply.
#[derive(Clone, Copy, Debug)]
pub struct PassTime {
    /// Monotonic time of the pass (throttle intervals, the flush list).
    pub now: Instant,
    /// Wall clock, ns: the queueing time of the pass's frames.
    pub queued_ns: u64,
    /// How long a queued frame may wait before the client's data is shed, ns.
    pub stale_ns: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced_and_clones_share_it() {
        let clock = Clock::manual();
        let other = clock.clone();
        let t0 = clock.now();
        assert_eq!(clock.now(), t0);
        other.advance(Duration::from_millis(250));
        assert_eq!(clock.now(), t0 + Duration::from_millis(250));
        let system = Clock::system();
        let before = system.now();
        system.advance(Duration::from_secs(3600));
        assert!(system.now() < before + Duration::from_secs(3600));
    }
}
