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
//! writes), so the policy does not oscillate between the two regimes.
//!
//! A round starts when the first client joins the list of clients to write; it is due
//! when it is the window old. No frame waits longer than the window for company (plus
//! the round's own writing). Owned by the worker thread; no allocation, two clock reads
//! per round.

use std::time::{Duration, Instant};

/// How often the projected load is re-evaluated.
pub const WINDOW: Duration = Duration::from_millis(100);

/// Projected write load (share of a core) below which clients are written at once.
pub const LOAD_LOW: f64 = 0.2;

/// Projected write load at and above which the full latency budget is used.
pub const LOAD_HIGH: f64 = 0.5;

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
    round_start: Option<Instant>,
    load: f64,
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
            round_start: None,
            load: 0.0,
        }
    }

    /// Notes frames queued to clients.
    pub fn note_deliveries(&mut self, n: u64) {
        self.deliveries += n;
    }

    /// Notes a round that made `writes` writes in `elapsed`.
    pub fn note_round(&mut self, writes: u64, elapsed: Duration) {
        self.writes += writes;
        self.write_ns += elapsed.as_nanos() as u64;
        self.round_start = None;
    }

    /// Notes that a client is waiting to be written (starts the round's clock).
    pub fn pending(&mut self, now: Instant) {
        self.round_start.get_or_insert(now);
    }

    /// Whether the round should be written now.
    pub fn due(&self, now: Instant) -> bool {
        match self.round_start {
            Some(start) => now.saturating_duration_since(start) >= self.window,
            None => false,
        }
    }

    /// When the pending round is due, if one is pending.
    pub fn deadline(&self) -> Option<Instant> {
        self.round_start.map(|s| s + self.window)
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
        self.load = self.deliveries as f64 * self.write_cost_ns / elapsed.as_nanos() as f64;
        let share = ((self.load - LOAD_LOW) / (LOAD_HIGH - LOAD_LOW)).clamp(0.0, 1.0);
        self.window = self.budget.mul_f64(share);
        self.window_start = now;
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
        p.note_deliveries(deliveries);
        p.note_round(writes, Duration::from_nanos(writes * cost_ns));
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
        // 1M deliveries/s at 1 µs: the write load would be a whole core.
        window(&mut p, &mut now, 100_000, 100_000, 1_000);
        assert_eq!(p.window(), budget);
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
    fn a_round_is_due_one_window_after_its_first_client() {
        let mut now = Instant::now();
        let budget = Duration::from_millis(2);
        let mut p = FlushPolicy::new(budget, now);
        window(&mut p, &mut now, 100_000, 100_000, 1_000);
        assert!(!p.due(now), "nothing pending");
        p.pending(now);
        p.pending(now + Duration::from_millis(1));
        assert_eq!(
            p.deadline(),
            Some(now + budget),
            "the first client starts it"
        );
        assert!(!p.due(now + Duration::from_millis(1)));
        assert!(p.due(now + budget));
        p.note_round(10, Duration::from_micros(10));
        assert_eq!(p.deadline(), None);
    }

    #[test]
    fn zero_budget_never_coalesces() {
        let mut now = Instant::now();
        let mut p = FlushPolicy::new(Duration::ZERO, now);
        window(&mut p, &mut now, 1_000_000, 1_000_000, 1_000);
        assert_eq!(p.window(), Duration::ZERO);
        p.pending(now);
        assert!(p.due(now));
    }
}
