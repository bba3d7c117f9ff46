//! When a worker writes the clients that got frames: the write-coalescing policy.
//!
//! Writing costs one system call per client per write, whatever the write carries, and
//! on loopback that call (the kernel's TCP send and the receiver's delivery) is most of
//! a delivery's cost. Gathering a client's frames for a while and writing them at once
//! saves calls, and costs the frames the wait. So the wait (the *coalescing window*) is
//! bought only when the core needs it:
//!
//! - The worker's **busy share** is measured over every [`PERIOD`]: the time its thread
//!   did not spend parked ([`super::busy`]), against the time that passed. Time the
//!   kernel gave the core to another thread counts as busy, since that is room the
//!   worker did not have.
//! - While the share is at or under the target (`busy_target_pct`, default 70%), the
//!   window is 0: every pass writes the clients it queued for, at once. A saturated
//!   worker still batches by itself then, since its passes grow longer and gather more
//!   frames each (the way uWebSockets corks per loop iteration).
//! - Over the target, the window doubles (from [`MIN_WINDOW`]) each period until the
//!   share is back under the target, never past the maximum (`flush_budget_us`,
//!   default 16 ms). After growing it holds [`HOLD_PERIODS`] periods, so that the
//!   longer window has taken effect before it is judged.
//! - Under [`SHRINK_BELOW`] of the target, the window halves each period (each period
//!   that passed, when the worker was parked through several) and closes below
//!   [`MIN_WINDOW`]. So the smallest window that keeps the core under the target is
//!   found from both sides, and a window never outlives its load by more than
//!   [`close_within`] (260 ms at the default maximum and target, once the load is down
//!   to half the target).
//! - A window that gathers no company is never opened: when the clients that get data
//!   get so few frames that even the maximum window would gather under
//!   [`MIN_FRAMES_PER_WRITE`] each, waiting would save no write, and the window stays 0.
//!
//! Each client is due one window after its oldest unwritten frame was queued: the
//! worker keeps the clients waiting to be written in the order they got their first
//! frame (a FIFO is then sorted by deadline) and writes those that are due after each
//! pass, so a frame waits at most about the window. Owned by the worker thread; no
//! allocation, one clock read per pass.
//!
//! An earlier policy opened the window from a *projected* write load (deliveries × the
//! measured cost of one write). A window's writes carry more frames and cost more each,
//! so an open window inflated its own projection and stayed open on an idle core; this
//! one measures the core instead (why, and the figures:
//! `docs/decisions/0008-coalescing-by-measured-busy-share.md`).

use std::time::{Duration, Instant};

/// How often the busy share is measured and the window re-decided.
pub const PERIOD: Duration = Duration::from_millis(20);

/// The smallest open window; a shrinking window below it closes.
pub const MIN_WINDOW: Duration = Duration::from_micros(250);

/// Periods a window holds after growing before it may shrink.
pub const HOLD_PERIODS: u32 = 2;

/// Share of the target under which the window shrinks (between it and the target the
/// window holds: the hysteresis that keeps it from flapping).
pub const SHRINK_BELOW: f64 = 0.8;

/// Frames the maximum window must gather per client for coalescing to pay.
pub const MIN_FRAMES_PER_WRITE: f64 = 2.0;

/// Weight of the newest period in the smoothed busy share (an exponential average with
/// a time constant of about three periods): one busy period of a worker that is under
/// the target on average does not open a window (a hundred clients at 60% busy opened
/// one now and then, and those moments were the p99).
pub const SMOOTHING: f64 = 0.3;

/// The longest an open window can outlive the load that opened it, once the load has
/// fallen to half the target `target` (0..1) or less, for a maximum window of `max`: the
/// hold, the periods the smoothed share takes to fall under [`SHRINK_BELOW`] of the
/// target, then one halving per period down to [`MIN_WINDOW`].
pub fn close_within(max: Duration, target: f64) -> Duration {
    let mut halvings = 0u32;
    let mut w = max;
    while w >= MIN_WINDOW {
        w /= 2;
        halvings += 1;
    }
    let (floor, mut share, mut lag) = (target / 2.0, 1.0, 0u32);
    while share >= target * SHRINK_BELOW {
        share = floor + (share - floor) * (1.0 - SMOOTHING);
        lag += 1;
    }
    PERIOD * (HOLD_PERIODS + lag + halvings)
}

/// The write-coalescing policy of one worker (see the module doc).
#[derive(Debug)]
pub struct FlushPolicy {
    max: Duration,
    target: f64,
    window: Duration,
    period_start: Instant,
    parked_at_start: Duration,
    /// The busy share of the last period, and its smoothed value (what the window follows).
    period_busy: f64,
    smoothed: f64,
    hold: u32,
    deliveries: u64,
    /// Distinct clients that got deliveries this period, and the period's number (a
    /// client remembers the last period it was counted in).
    receivers: u64,
    epoch: u32,
    frames_per_client_s: f64,
}

impl FlushPolicy {
    /// A policy with the longest window `max` (0 disables coalescing) and the busy share
    /// to hold the worker under, `target` (0..1), starting at `now` with `parked` as
    /// the thread's parked time so far.
    pub fn new(max: Duration, target: f64, now: Instant, parked: Duration) -> FlushPolicy {
        FlushPolicy {
            max,
            target: target.clamp(0.05, 1.0),
            window: Duration::ZERO,
            period_start: now,
            parked_at_start: parked,
            period_busy: 0.0,
            smoothed: 0.0,
            hold: 0,
            deliveries: 0,
            receivers: 0,
            epoch: 1,
            frames_per_client_s: 0.0,
        }
    }

    /// Notes a delivery to a client whose last counted period is `*seen`: counts the
    /// client once per period.
    pub fn note_receiver(&mut self, seen: &mut u32) {
        self.deliveries += 1;
        if *seen != self.epoch {
            *seen = self.epoch;
            self.receivers += 1;
        }
    }

    /// When a client whose oldest unwritten frame was queued at `since` is due.
    pub fn due_at(&self, since: Instant) -> Instant {
        since + self.window
    }

    /// Re-decides the window once per [`PERIOD`]; call once per fan-out pass with the
    /// thread's total parked time so far (on the same clock as `now`).
    pub fn update(&mut self, now: Instant, parked: Duration) {
        let elapsed = now.saturating_duration_since(self.period_start);
        if elapsed < PERIOD {
            return;
        }
        let idle = parked.saturating_sub(self.parked_at_start).min(elapsed);
        self.period_busy = 1.0 - idle.as_secs_f64() / elapsed.as_secs_f64();
        let secs = elapsed.as_secs_f64();
        self.frames_per_client_s = if self.receivers == 0 {
            0.0
        } else {
            self.deliveries as f64 / self.receivers as f64 / secs
        };
        // A worker parked through many periods decides once for all of them.
        let periods = (elapsed.as_nanos() / PERIOD.as_nanos()).min(64) as u32;
        let keep = (1.0 - SMOOTHING).powi(periods.max(1) as i32);
        self.smoothed = self.period_busy + (self.smoothed - self.period_busy) * keep;
        self.decide(periods);
        self.period_start = now;
        self.parked_at_start = parked;
        self.epoch = self.epoch.wrapping_add(1).max(1);
        self.receivers = 0;
        self.deliveries = 0;
    }

    fn decide(&mut self, periods: u32) {
        let gathers = self.frames_per_client_s * self.max.as_secs_f64();
        if self.max.is_zero() || gathers < MIN_FRAMES_PER_WRITE {
            self.window = Duration::ZERO;
            self.hold = 0;
            return;
        }
        if self.smoothed > self.target {
            self.window = (self.window * 2).max(MIN_WINDOW).min(self.max);
            self.hold = HOLD_PERIODS;
            return;
        }
        let held = self.hold.min(periods);
        self.hold -= held;
        if self.smoothed < self.target * SHRINK_BELOW {
            for _ in held..periods {
                self.window /= 2;
                if self.window < MIN_WINDOW {
                    self.window = Duration::ZERO;
                    break;
                }
            }
        }
    }

    /// The coalescing window in force (0: write after every pass).
    pub fn window(&self) -> Duration {
        self.window
    }

    /// The smoothed busy share (0..1) that the window follows (see [`SMOOTHING`]).
    pub fn busy(&self) -> f64 {
        self.smoothed
    }

    /// The longest window the policy may choose.
    pub fn max(&self) -> Duration {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_millis(16);
    const TARGET: f64 = 0.7;

    /// A worker on a manual timeline: each period, `clients` clients get `per_client`
    /// frames each, and the thread is busy for `busy` of the period.
    struct Rig {
        p: FlushPolicy,
        now: Instant,
        parked: Duration,
        seen: Vec<u32>,
    }

    impl Rig {
        fn new(max: Duration) -> Rig {
            let now = Instant::now();
            Rig {
                p: FlushPolicy::new(max, TARGET, now, Duration::ZERO),
                now,
                parked: Duration::ZERO,
                seen: vec![0; 10],
            }
        }

        fn period(&mut self, busy: f64, per_client: u32) {
            for seen in &mut self.seen {
                for _ in 0..per_client {
                    self.p.note_receiver(seen);
                }
            }
            self.parked += PERIOD.mul_f64(1.0 - busy);
            self.now += PERIOD;
            self.p.update(self.now, self.parked);
        }
    }

    /// 1000 frames/s per client: the maximum window would gather 16 each.
    const BUSY_STREAM: u32 = 20;

    #[test]
    fn an_idle_or_lightly_loaded_worker_keeps_the_window_closed() {
        let mut r = Rig::new(MAX);
        for _ in 0..100 {
            r.period(0.0, BUSY_STREAM);
            assert_eq!(r.p.window(), Duration::ZERO);
        }
        for _ in 0..100 {
            r.period(0.65, BUSY_STREAM);
            assert_eq!(r.p.window(), Duration::ZERO, "under the target: no wait");
            assert_eq!(r.p.due_at(r.now), r.now, "written at once");
        }
        assert!((r.p.busy() - 0.65).abs() < 1e-6);
    }

    #[test]
    fn a_saturating_load_opens_the_window_and_it_never_passes_the_maximum() {
        let mut r = Rig::new(MAX);
        // The smoothed share passes 70% at the fourth saturated period (30%, 51%, 66%,
        // 76%): the window opens there, at its smallest.
        for _ in 0..3 {
            r.period(1.0, BUSY_STREAM);
            assert_eq!(r.p.window(), Duration::ZERO);
        }
        r.period(1.0, BUSY_STREAM);
        assert_eq!(
            r.p.window(),
            MIN_WINDOW,
            "open once the smoothed share is over"
        );
        let mut last = r.p.window();
        for _ in 0..200 {
            r.period(1.0, BUSY_STREAM);
            let w = r.p.window();
            assert!(w <= MAX, "{w:?} past the maximum");
            assert!(w >= last, "a saturated worker's window does not shrink");
            last = w;
        }
        assert_eq!(last, MAX, "saturation runs the window up to the maximum");
        assert_eq!(r.p.due_at(r.now), r.now + MAX);
    }

    #[test]
    fn the_window_settles_where_the_core_is_back_under_the_target() {
        // A worker whose busy share falls as the window grows: 95% at 0, 75% from 1 ms,
        // 40% from 2 ms. The smallest window that meets the target is 2 ms.
        let mut r = Rig::new(MAX);
        let busy_at = |w: Duration| {
            if w >= Duration::from_millis(2) {
                0.4
            } else if w >= Duration::from_millis(1) {
                0.75
            } else {
                0.95
            }
        };
        let mut settled = Vec::new();
        for i in 0..200 {
            let busy = busy_at(r.p.window());
            r.period(busy, BUSY_STREAM);
            if i >= 50 {
                settled.push((r.p.window(), busy));
            }
        }
        // Settled, it probes one step down now and then and comes back (the smoothed
        // share reacts over a few periods, so each step lasts several): it stays within
        // a factor of two of that window, far from the maximum, spends a good part of
        // the time at it, and the core is under the target on average.
        for (w, _) in &settled {
            assert!(
                *w >= Duration::from_millis(1) && *w <= Duration::from_millis(2),
                "{w:?}"
            );
        }
        let at_2ms = settled
            .iter()
            .filter(|(w, _)| *w == Duration::from_millis(2))
            .count();
        assert!(
            at_2ms * 3 >= settled.len(),
            "at the window that meets the target: {at_2ms} of {}",
            settled.len()
        );
        let mean = settled.iter().map(|(_, b)| b).sum::<f64>() / settled.len() as f64;
        assert!(mean <= TARGET, "mean busy {mean}");
    }

    #[test]
    fn a_load_that_drops_closes_the_window_within_the_promised_time() {
        let mut r = Rig::new(MAX);
        for _ in 0..50 {
            r.period(1.0, BUSY_STREAM);
        }
        assert_eq!(r.p.window(), MAX);
        let dropped = r.now;
        while r.p.window() > Duration::ZERO {
            r.period(0.1, BUSY_STREAM);
            assert!(
                r.now - dropped <= close_within(MAX, TARGET),
                "still {:?} after {:?}",
                r.p.window(),
                r.now - dropped
            );
        }
        assert!(close_within(MAX, TARGET) <= Duration::from_millis(260));
        // A worker parked through the drop (no pass for a second) closes at once.
        for _ in 0..50 {
            r.period(1.0, BUSY_STREAM);
        }
        assert_eq!(r.p.window(), MAX);
        r.parked += Duration::from_secs(1);
        r.now += Duration::from_secs(1);
        r.p.update(r.now, r.parked);
        assert_eq!(r.p.window(), Duration::ZERO);
    }

    #[test]
    fn a_window_that_would_gather_no_company_stays_closed() {
        // A saturated worker whose clients get 50 frames/s each (one a period): 0.8
        // frames in the longest window, so waiting saves no write.
        let mut r = Rig::new(MAX);
        for _ in 0..100 {
            r.period(1.0, 1);
            assert_eq!(r.p.window(), Duration::ZERO);
        }
    }

    #[test]
    fn zero_maximum_never_coalesces() {
        let mut r = Rig::new(Duration::ZERO);
        for _ in 0..100 {
            r.period(1.0, BUSY_STREAM);
            assert_eq!(r.p.window(), Duration::ZERO);
        }
        assert!(r.p.busy() > 0.99, "the busy share is still measured");
    }

    #[test]
    fn the_promise_grows_with_the_maximum_but_stays_short() {
        // The hold (2), the smoothed share's fall from 100% past 56% at a load of 35% or
        // less (4), then 16 ms halved 7 times.
        assert_eq!(close_within(MAX, TARGET), PERIOD * 13);
        assert!(close_within(Duration::from_secs(1), TARGET) <= Duration::from_millis(360));
        assert_eq!(close_within(Duration::ZERO, TARGET), PERIOD * 6);
    }
}
