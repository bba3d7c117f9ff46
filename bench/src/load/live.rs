//! Live figures for the progress bar: clients connected, messages, and a coarse latency
//! histogram per class, shared as atomics.
//!
//! Clients never touch these per message: each keeps a [`LocalLive`] and adds it to the
//! shared [`Live`] about four times a second ([`FLUSH_EVERY`]), so the shared cache lines
//! see a few hundred updates a second, not one per message. The coarse histogram has
//! 4 sub-buckets per power of two (values within 25%): enough for a live p99, while the
//! report's figures come from the exact per-client HdrHistograms.
//! All atomics are Relaxed: they are statistics and order nothing.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// How often a client adds its local figures to the shared ones.
pub const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// Buckets of the coarse histogram: 4 for 0..=3, then 4 per power of two up to 2^64.
const BUCKETS: usize = 256;

/// The coarse bucket of a value: 4 sub-buckets per power of two.
fn bucket(v: u64) -> usize {
    if v < 4 {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros() as usize; // >= 2
    (exp - 1) * 4 + ((v >> (exp - 2)) & 3) as usize
}

/// The highest value of a coarse bucket.
fn bucket_high(i: usize) -> u64 {
    if i < 4 {
        return i as u64;
    }
    let (exp, sub) = (i / 4 + 1, (i % 4) as u128);
    let next_low = (4 + sub + 1) << (exp - 2); // u128: the top bucket's reaches 2^64
    u64::try_from(next_low - 1).unwrap_or(u64::MAX)
}

/// Shared live figures.
pub struct Live {
    /// Clients connected now.
    pub connected: AtomicUsize,
    /// Text messages received so far (all clients).
    pub messages: AtomicU64,
    /// Set once every client has ended (the progress bar then stops).
    pub finished: AtomicBool,
    /// Coarse latency counts, per class (0 fast, 1 slow).
    latency: [Box<[AtomicU64]>; 2],
}

impl Default for Live {
    fn default() -> Self {
        let hist = || (0..BUCKETS).map(|_| AtomicU64::new(0)).collect();
        Live {
            connected: AtomicUsize::new(0),
            messages: AtomicU64::new(0),
            finished: AtomicBool::new(false),
            latency: [hist(), hist()],
        }
    }
}

impl Live {
    /// The coarse `q` quantile (0..=1) of a class's latency so far, in ns; `None` before
    /// any sample.
    pub fn latency_quantile(&self, class: usize, q: f64) -> Option<u64> {
        let counts: Vec<u64> = self.latency[class]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(bucket_high(i));
            }
        }
        Some(bucket_high(BUCKETS - 1))
    }
}

/// One client's figures since its last flush.
pub struct LocalLive {
    class: usize,
    messages: u64,
    latency: Box<[u32; BUCKETS]>,
    dirty: bool,
}

impl LocalLive {
    /// Figures for a client of class `class` (0 fast, 1 slow).
    pub fn new(class: usize) -> LocalLive {
        LocalLive {
            class,
            messages: 0,
            latency: Box::new([0; BUCKETS]),
            dirty: false,
        }
    }

    /// Counts a message.
    pub fn message(&mut self) {
        self.messages += 1;
    }

    /// Counts a latency sample, ns.
    pub fn latency(&mut self, ns: u64) {
        let b = &mut self.latency[bucket(ns)];
        *b = b.saturating_add(1);
        self.dirty = true;
    }

    /// Adds everything to `live` and starts over.
    pub fn flush(&mut self, live: &Live) {
        if self.messages > 0 {
            live.messages.fetch_add(self.messages, Ordering::Relaxed);
            self.messages = 0;
        }
        if self.dirty {
            for (i, c) in self.latency.iter_mut().enumerate() {
                if *c > 0 {
                    live.latency[self.class][i].fetch_add(u64::from(*c), Ordering::Relaxed);
                    *c = 0;
                }
            }
            self.dirty = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_values_within_a_quarter() {
        for v in [
            0u64,
            1,
            3,
            4,
            5,
            7,
            8,
            100,
            1_000,
            123_456_789,
            u64::MAX / 3,
            u64::MAX,
        ] {
            let b = bucket(v);
            assert!(b < BUCKETS, "{v}");
            assert!(bucket_high(b) >= v, "{v}: high {}", bucket_high(b));
            if v >= 4 {
                assert!(bucket_high(b) as f64 <= v as f64 * 1.25 + 1.0, "{v}");
            }
            if b > 0 {
                assert!(bucket_high(b - 1) < v, "{v}");
            }
        }
    }

    #[test]
    fn quantiles_from_flushed_counts() {
        let live = Live::default();
        let mut local = LocalLive::new(1);
        assert_eq!(live.latency_quantile(1, 0.99), None);
        for v in 1..=100u64 {
            local.latency(v * 1000);
            local.message();
        }
        local.flush(&live);
        assert_eq!(live.messages.load(Ordering::Relaxed), 100);
        let p99 = live.latency_quantile(1, 0.99).unwrap();
        assert!((99_000..=124_000).contains(&p99), "{p99}");
        assert_eq!(live.latency_quantile(0, 0.99), None);
    }
}
