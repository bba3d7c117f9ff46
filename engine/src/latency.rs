//! Latency histograms for every stage of the data path.
//!
//! Each thread that measures (a feed, a worker) owns a [`StageRecorder`]: plain
//! HdrHistograms with fixed bounds (1 ns to 1 hour, 2 significant digits), so recording
//! is a few arithmetic operations, takes no lock and never allocates (values past the
//! bound are clamped). Once a second the owner folds its interval into a shared
//! [`LatencySlot`] — cumulative since start, and a rolling window of the last 5–10 s —
//! under a mutex that is touched once a second per thread, never per event, and never
//! waited for: when a reader holds it, the owner keeps its interval and tries again on
//! its next call. Readers (the engine's stats thread) add a slot's histograms into
//! their merge under the lock, without copying them, off the hot path.

use std::sync::{Arc, Mutex};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// Highest trackable value: one hour in ns.
const HIGHEST_NS: u64 = 3_600_000_000_000;
/// Significant decimal digits kept: every value within 1% (HdrHistogram keeps 1/128).
/// Not 3: a worker records two values per delivery, and at 3 digits the buckets that a
/// millisecond-scale stage touches span ~40 KiB per histogram (loading the count was
/// half of a record's cost at 1000 clients;
/// docs/decisions/0004-latency-histograms-two-digits.md). At 2 they span ~5 KiB, and
/// each histogram is 36 KiB instead of 264 KiB (the engine's idle RSS fell from 33 to
/// 16 MiB).
const SIGFIG: u8 = 2;
/// The rolling window is the current half plus the previous one.
const HALF_WINDOW_NS: u64 = 5_000_000_000;

/// A measured stage of the data path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Frame received by the feed thread → its ticks pushed to the ring.
    FeedDecode,
    /// Venue event time → `ingest_ts` (venue clock; ms-level meaning).
    ExchangeToIngest,
    /// `ingest_ts` → frame encoded in a worker.
    IngestToEncode,
    /// `ingest_ts` → the vectored write that carried the frame returned (per delivery).
    TickToWire,
    /// Time a frame waited in a client's outbox (per delivery).
    OutboxWait,
}

impl Stage {
    /// Every stage, in report order.
    pub const ALL: [Stage; 5] = [
        Stage::FeedDecode,
        Stage::ExchangeToIngest,
        Stage::IngestToEncode,
        Stage::TickToWire,
        Stage::OutboxWait,
    ];

    /// Name in `/stats`, metrics and reports.
    pub fn name(self) -> &'static str {
        match self {
            Stage::FeedDecode => "feed_decode",
            Stage::ExchangeToIngest => "exchange_to_ingest",
            Stage::IngestToEncode => "ingest_to_encode",
            Stage::TickToWire => "tick_to_wire",
            Stage::OutboxWait => "outbox_wait",
        }
    }

    /// One-line description, for metrics help and reports.
    pub fn help(self) -> &'static str {
        match self {
            Stage::FeedDecode => "Feed thread: venue frame received to ticks published.",
            Stage::ExchangeToIngest => "Venue event time to ingest time (venue clock).",
            Stage::IngestToEncode => "Ingest time to frame encoded in a worker.",
            Stage::TickToWire => {
                "Ingest time to the write that carried the frame returned, per delivery."
            }
            Stage::OutboxWait => "Time a frame waited in a client's outbox, per delivery.",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A histogram with the engine's bounds.
#[allow(clippy::expect_used)] // invariant: constant bounds that hdrhistogram accepts
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_NS, SIGFIG).expect("valid histogram bounds")
}

/// What a thread has published: cumulative and windowed histograms per stage.
#[derive(Debug)]
pub struct Published {
    /// Since start.
    pub cumulative: Vec<Histogram<u64>>,
    window_prev: Vec<Histogram<u64>>,
    window_cur: Vec<Histogram<u64>>,
    window_started_ns: u64,
}

impl Published {
    fn new() -> Self {
        let set = || {
            Stage::ALL
                .iter()
                .map(|_| new_histogram())
                .collect::<Vec<_>>()
        };
        Published {
            cumulative: set(),
            window_prev: set(),
            window_cur: set(),
            window_started_ns: 0,
        }
    }

    /// The rolling window of `stage` (the last 5 to 10 s), merged into `into`.
    pub fn add_window(&self, stage: Stage, into: &mut Histogram<u64>) {
        let i = stage.index();
        // Same bounds everywhere: `add` cannot fail.
        let _ = into.add(&self.window_prev[i]);
        let _ = into.add(&self.window_cur[i]);
    }
}

impl Default for Published {
    fn default() -> Self {
        Published::new()
    }
}

/// The shared side of one thread's recorder.
pub type LatencySlot = Arc<Mutex<Published>>;

/// A new, empty slot.
pub fn new_slot() -> LatencySlot {
    Arc::new(Mutex::new(Published::new()))
}

/// Per-thread recorder; see the module doc.
#[derive(Debug)]
pub struct StageRecorder {
    interval: Vec<Histogram<u64>>,
    slot: LatencySlot,
    last_publish_ns: u64,
}

impl StageRecorder {
    /// A recorder publishing into `slot`.
    pub fn new(slot: LatencySlot) -> Self {
        StageRecorder {
            interval: Stage::ALL.iter().map(|_| new_histogram()).collect(),
            slot,
            last_publish_ns: 0,
        }
    }

    /// Records one value in ns (clamped to the bounds). No lock, no allocation.
    #[inline]
    pub fn record(&mut self, stage: Stage, ns: u64) {
        self.interval[stage.index()].saturating_record(ns);
    }

    /// Publishes the interval when a second has passed since the last publish.
    pub fn publish_if_due(&mut self, now_ns: u64) {
        if now_ns.saturating_sub(self.last_publish_ns) >= 1_000_000_000 {
            self.publish(now_ns);
        }
    }

    /// Folds the interval into the shared slot and starts a new one. Never waits: when
    /// a reader holds the slot, the interval is kept and folded on a later call.
    pub fn publish(&mut self, now_ns: u64) {
        let mut guard = match self.slot.try_lock() {
            Ok(guard) => guard,
            // A poisoned slot only means a reader panicked mid-read; the data is still good.
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        self.last_publish_ns = now_ns;
        let p = &mut *guard;
        if now_ns.saturating_sub(p.window_started_ns) >= HALF_WINDOW_NS {
            std::mem::swap(&mut p.window_prev, &mut p.window_cur);
            p.window_cur.iter_mut().for_each(Histogram::reset);
            p.window_started_ns = now_ns;
        }
        for (i, h) in self.interval.iter_mut().enumerate() {
            if h.is_empty() {
                continue;
            }
            let _ = p.cumulative[i].add(&*h);
            let _ = p.window_cur[i].add(&*h);
            h.reset();
        }
    }
}

/// Merges `stage` over `slots`: (cumulative, window).
///
/// Adds straight from each slot under its lock: the lock is held for three additions
/// (each a pass over the counts, skipped when empty), and no copy of a slot's histograms
/// is made. Copying first (a 270 KiB allocation and memcpy per histogram, 48 of them per
/// refresh) kept the stats thread on the CPU for 2 to 4 ms a second, on the core a worker
/// shares with it. The slot's owner never waits for the lock: it offers its figures
/// again later.
pub fn merged(slots: &[LatencySlot], stage: Stage) -> (Histogram<u64>, Histogram<u64>) {
    let mut cumulative = new_histogram();
    let mut window = new_histogram();
    let i = stage.index();
    for slot in slots {
        let p = slot.lock().unwrap_or_else(|e| e.into_inner());
        // Same bounds everywhere: `add` cannot fail.
        let _ = cumulative.add(&p.cumulative[i]);
        p.add_window(stage, &mut window);
    }
    (cumulative, window)
}

/// The summary `/stats` shows: count, min, p50, p90, p99, p999, p9999, max (ns).
pub fn summary(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!({"count": 0, "min": null, "p50": null, "p90": null, "p99": null, "p999": null, "p9999": null, "max": null});
    }
    let [p50, p90, p99, p999, p9999] = quantiles(h);
    json!({
        "count": h.len(),
        "min": h.min(),
        "p50": p50,
        "p90": p90,
        "p99": p99,
        "p999": p999,
        "p9999": p9999,
        "max": h.max(),
    })
}

/// The values at [`SUMMARY_QUANTILES`], in one pass over the counts (five calls of
/// `value_at_quantile` would make five).
pub fn quantiles(h: &Histogram<u64>) -> [u64; 5] {
    let mut out = [0; 5];
    for (slot, v) in out.iter_mut().zip(h.value_at_quantiles(SUMMARY_QUANTILES)) {
        *slot = v;
    }
    out
}

/// The quantiles a summary shows, ascending (as `value_at_quantiles` needs them).
pub const SUMMARY_QUANTILES: [f64; 5] = [0.5, 0.9, 0.99, 0.999, 0.9999];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_fold_into_cumulative_and_a_rolling_window() {
        let slot = new_slot();
        let mut r = StageRecorder::new(slot.clone());
        for v in 1..=100 {
            r.record(Stage::TickToWire, v * 1_000);
        }
        r.record(Stage::TickToWire, u64::MAX); // clamped, not lost
        r.publish(1_000_000_000);
        let (c, w) = merged(std::slice::from_ref(&slot), Stage::TickToWire);
        assert_eq!((c.len(), w.len()), (101, 101));
        // 101 values: the median is the 51st, 51,000 ns, within 2 significant digits.
        assert!(
            c.value_at_quantile(0.5).abs_diff(51_000) <= 510,
            "{}",
            c.value_at_quantile(0.5)
        );
        assert_eq!(
            c.max(),
            c.highest_equivalent(HIGHEST_NS),
            "a huge value is clamped, not lost"
        );
        // Two half-windows later the old values have left the window, not the total.
        r.record(Stage::TickToWire, 7);
        r.publish(7_000_000_000);
        r.publish(13_000_000_000);
        let (c, w) = merged(&[slot], Stage::TickToWire);
        assert_eq!((c.len(), w.len()), (102, 1));
        let s = summary(&c);
        assert_eq!(s["count"], 102);
        for (q, key) in SUMMARY_QUANTILES
            .iter()
            .zip(["p50", "p90", "p99", "p999", "p9999"])
        {
            assert_eq!(
                s[key],
                c.value_at_quantile(*q),
                "{key}: one pass gives what one call does"
            );
        }
        assert!(s["p50"].as_u64() <= s["p99"].as_u64() && s["p99"].as_u64() <= s["max"].as_u64());
    }
}
