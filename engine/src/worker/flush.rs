//! When a worker writes the clients that got frames: the write-coalescing policy.
//!
//! Writing costs one system call per client per round, whatever the round carries, and
//! on loopback that call (the kernel's TCP send and the receiver's delivery) is most of
//! a delivery's cost. So a worker under load gathers frames for a while and writes each
//! client once per *round* with everything it got, and a lightly loaded worker writes at
//! once, so light load pays no latency for it.
//!
//! The policy measures, per window of [`WINDOW`], the frames queued to clients
//! (deliveries) and the time one write takes. Their product is the share of the core the
//! worker would spend writing if every delivery were its own write: the *projected
//! write load*. Below [`LOAD_LOW`] the coalescing window is 0 (write after every pass);
//! from there it grows linearly to the configured latency budget at [`LOAD_HIGH`]. The
//! projection does not depend on the window in force (deliveries are counted, not
//! writes), so the policy does not oscillate between the two regimes. And a window only
//! pays when it gathers company: when the clients that get data get less than
//! [`MIN_FRAMES_PER_WRITE`] frames per window each (a slow stream to many clients), the
//! window stays 0, since waiting would add latency and save no write.
//!
//! Each client is due one window after its oldest unwritten frame was queued: the
//! worker keeps the clients waiting to be written in the order they got their first
//! frame (a FIFO is then sorted by deadline) and writes those that are due after each
//! pass. Writes spread over time instead of bunching into one long round, so a frame
//! waits at most about the window (plus the worker's backlog when it is saturated,
//! which the growing batches then shrink). Owned by the worker thread; no allocation,
//! two clock reads per batch of writes.

use std::time::{Duration, Instant};

/// How often the projected load is re-evaluated.
pub const WINDOW: Duration = Duration::from_millis(100);

/// Projected write load (share of a core) below which clients are written at once.
pub const LOAD_LOW: f64 = 0.2;

/// Projected write load at and above which the full latency budget is used.
pub const LOAD_HIGH: f64 = 0.5;

/// Frames a window must gather per client write for coalescing to pay.
pub const MIN_FRAMES_PER_WRITE: f64 = 2.0;

/// Cost assumed for one write before any was measured, ns.
const INITIAL_WRITE_COST_NS: f64 = 1_000.0;

/// The write-coalescing policy of one worker (see the module doc).
#[derive(Debug)]
pub struct FlushPolicy {
    budget: Duration,
    window: Duration,
    window_start: Instant,
    deliveries: u64,
    writes: u64,
    write_ns: u64,
    write_cost_ns: f64,
    load: f64,
    /// Distinct clients that got deliveries this window, and the window's number (a
    /// client remembers the last window it was counted in).
    receivers: u64,
    epoch: u32,
    frames_per_client_s: f64,
}

impl FlushPolicy {
    /// A policy with the configured latency budget (0 disables coalescing), at `now`.
    pub fn new(budget: Duration, now: Instant) -> FlushPolicy {
        FlushPolicy {
            budget,
            window: Duration::ZERO,
            window_start: now,
            deliveries: 0,
            writes: 0,
            write_ns: 0,
            write_cost_ns: INITIAL_WRITE_COST_NS,
            load: 0.0,
            receivers: 0,
            epoch: 1,
            frames_per_client_s: 0.0,
        }
    }

    /// Notes frames queued to clients.
    pub fn note_deliveries(&mut self, n: u64) {
        self.deliveries += n;
    }

    /// Notes a delivery to a client whose last counted window is `*seen`: counts the
    /// client once per window.
    pub fn note_receiver(&mut self, seen: &mut u32) {
        self.deliveries += 1;
        if *seen != self.epoch {
            *seen = self.epoch;
            self.receivers += 1;
        }
    }

    /// Notes a batch of writes: `writes` calls in `elapsed`.
    pub fn note_writes(&mut self, writes: u64, elapsed: Duration) {
        self.writes += writes;
        self.write_ns += elapsed.as_nanos() as u64;
    }

    /// When a client whose oldest unwritten frame was queued at `since` is due.
    pub fn due_at(&self, since: Instant) -> Instant {
        since + self.window
    }

    /// Re-evaluates the window once per [`WINDOW`]; call once per fan-out pass.
    pub fn update(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed < WINDOW {
            return;
        }
        if self.writes > 0 {
            self.write_cost_ns = self.write_ns as f64 / self.writes as f64;
        }
        let secs = elapsed.as_secs_f64();
        self.load = self.deliveries as f64 * self.write_cost_ns / (secs * 1e9);
        self.frames_per_client_s = if self.receivers == 0 {
            0.0
        } else {
            self.deliveries as f64 / self.receivers as f64 / secs
        };
        let share = ((self.load - LOAD_LOW) / (LOAD_HIGH - LOAD_LOW)).clamp(0.0, 1.0);
        let window = self.budget.mul_f64(share);
        let gathered = self.frames_per_client_s * window.as_secs_f64();
        self.window = if gathered >= MIN_FRAMES_PER_WRITE {
            window
        } else {
            Duration::ZERO
        };
        self.window_start = now;
        self.epoch = self.epoch.wrapping_add(1).max(1);
        self.receivers = 0;
        self.deliveries = 0;
        self.writes = 0;
        self.write_ns = 0;
    }

    /// The coalescing window in force (0: write after every pass).
    pub fn window(&self) -> Duration {
        self.window
    }

    /// The projected write load of the last window (share of a core).
    pub fn load(&self) -> f64 {
        self.load
    }

    /// The measured cost of one write, ns.
    pub fn write_cost_ns(&self) -> f64 {
        self.write_cost_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One window of `deliveries` frames written in `writes` writes of `cost_ns` each.
    fn window(p: &mut FlushPolicy, now: &mut Instant, deliveries: u64, writes: u64, cost_ns: u64) {
        // Ten clients share the deliveries.
        let mut seen = [0u32; 10];
        for i in 0..deliveries {
            p.note_receiver(&mut seen[(i % 10) as usize]);
        }
        p.note_writes(writes, Duration::from_nanos(writes * cost_ns));
        *now += WINDOW;
        p.update(*now);
    }

    #[test]
    fn light_load_writes_at_once_and_heavy_load_uses_the_budget() {
        let mut now = Instant::now();
        let budget = Duration::from_millis(4);
        let mut p = FlushPolicy::new(budget, now);
        // 10k deliveries/s at 1 µs a write: 1% of a core.
        window(&mut p, &mut now, 1_000, 1_000, 1_000);
        assert_eq!(p.window(), Duration::ZERO);
        assert_eq!(p.due_at(now), now, "written at once");
        // 1M deliveries/s at 1 µs: the write load would be a whole core.
        window(&mut p, &mut now, 100_000, 100_000, 1_000);
        assert_eq!(p.window(), budget);
        assert_eq!(p.due_at(now), now + budget);
        // Coalescing cuts the writes, not the projection: the window holds.
        window(&mut p, &mut now, 100_000, 25_000, 1_200);
        assert_eq!(p.window(), budget, "no oscillation once writes are batched");
        // In between, the window grows linearly: 350k/s at 1.2 µs = 0.42 of a core.
        window(&mut p, &mut now, 35_000, 35_000, 1_200);
        let expect = budget.mul_f64((0.42 - LOAD_LOW) / (LOAD_HIGH - LOAD_LOW));
        let diff = p.window().abs_diff(expect);
        assert!(
            diff < Duration::from_micros(5),
            "{:?} vs {expect:?}",
            p.window()
        );
    }

    #[test]
    fn a_window_that_would_gather_no_company_stays_closed() {
        let mut now = Instant::now();
        let budget = Duration::from_millis(4);
        let mut p = FlushPolicy::new(budget, now);
        // A busy worker, but each of 10,000 clients gets 100 frames/s: 0.4 per window.
        let mut seen = vec![0u32; 10_000];
        for i in 0..100_000u64 {
            p.note_receiver(&mut seen[(i % 10_000) as usize]);
        }
        p.note_writes(100_000, Duration::from_millis(800));
        now += Duration::from_secs(1);
        p.update(now);
        assert!(p.load() > LOAD_HIGH);
        assert_eq!(p.window(), Duration::ZERO, "waiting would save no write");
    }

    #[test]
    fn zero_budget_never_coalesces() {
        let mut now = Instant::now();
        let mut p = FlushPolicy::new(Duration::ZERO, now);
        window(&mut p, &mut now, 1_000_000, 1_000_000, 1_000);
        assert_eq!(p.window(), Duration::ZERO);
        assert_eq!(p.due_at(now), now);
    }
}
