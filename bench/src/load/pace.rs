//! The token bucket that paces a slow client's reads (`--slow-read-bps`).
//!
//! Tokens are bytes. They accrue at `rate` per second up to `capacity`; a read may take
//! at most the whole tokens there are, and takes as many as it got. The bucket starts
//! full. Time is given by the caller as a [`Duration`] since any fixed origin (the client
//! uses the time since its subscribe), so tests drive it with a fake clock. Nothing here
//! allocates, blocks or reads a clock.
//!
//! Over any span `t` from the start, a reader that obeys the bucket reads at most
//! `capacity + rate × t` bytes.

use std::time::Duration;

/// Bytes a paced reader may read, refilled over time.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate_bps: u64,
    capacity: u64,
    /// Tokens, in bytes × 10^9 (byte-nanoseconds per second): whole arithmetic, no drift.
    tokens_nano: u128,
    last: Duration,
}

const NANOS: u128 = 1_000_000_000;

impl TokenBucket {
    /// A full bucket: `rate_bps` bytes per second (at least 1), holding at most
    /// `capacity` bytes (at least 1), as of `now`.
    pub fn new(rate_bps: u64, capacity: u64, now: Duration) -> TokenBucket {
        let capacity = capacity.max(1);
        TokenBucket {
            rate_bps: rate_bps.max(1),
            capacity,
            tokens_nano: u128::from(capacity) * NANOS,
            last: now,
        }
    }

    /// The bucket for `rate_bps` holding `burst` worth of it.
    pub fn with_burst(rate_bps: u64, burst: Duration, now: Duration) -> TokenBucket {
        let capacity = (u128::from(rate_bps) * burst.as_nanos() / NANOS) as u64;
        TokenBucket::new(rate_bps, capacity, now)
    }

    /// Most bytes it holds.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Adds what accrued since the last call (a clock going backwards adds nothing).
    pub fn refill(&mut self, now: Duration) {
        if now > self.last {
            let accrued = (now - self.last).as_nanos() * u128::from(self.rate_bps);
            let cap = u128::from(self.capacity) * NANOS;
            self.tokens_nano = (self.tokens_nano + accrued).min(cap);
            self.last = now;
        }
    }

    /// Whole bytes that may be read now.
    pub fn available(&mut self, now: Duration) -> u64 {
        self.refill(now);
        (self.tokens_nano / NANOS) as u64
    }

    /// Takes `bytes` that were read (at most what [`TokenBucket::available`] said).
    pub fn take(&mut self, bytes: u64) {
        self.tokens_nano = self.tokens_nano.saturating_sub(u128::from(bytes) * NANOS);
    }

    /// How long from `now` until the bucket is full again (zero when it is).
    pub fn until_full(&mut self, now: Duration) -> Duration {
        self.refill(now);
        let missing = u128::from(self.capacity) * NANOS - self.tokens_nano;
        let ns = missing.div_ceil(u128::from(self.rate_bps));
        Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn starts_full_and_refills_at_the_rate_up_to_the_capacity() {
        let mut b = TokenBucket::with_burst(1000, Duration::from_millis(100), Duration::ZERO);
        assert_eq!(b.capacity(), 100);
        assert_eq!(b.available(Duration::ZERO), 100);
        b.take(100);
        assert_eq!(b.available(Duration::ZERO), 0);
        assert_eq!(b.available(MS), 1);
        assert_eq!(b.available(MS * 30), 30);
        assert_eq!(b.until_full(MS * 30), MS * 70);
        assert_eq!(b.available(Duration::from_secs(60)), 100, "capped");
        assert_eq!(b.until_full(Duration::from_secs(60)), Duration::ZERO);
        // Backwards time adds nothing and takes nothing.
        b.take(40);
        assert_eq!(b.available(Duration::from_secs(1)), 60);
    }

    #[test]
    fn fractions_of_a_byte_are_kept_not_lost() {
        // 3 bytes/s: a byte every 333.3 ms; after 1 s exactly 3.
        let mut b = TokenBucket::new(3, 10, Duration::ZERO);
        b.take(10);
        let mut read = 0;
        for step in 1..=100 {
            let n = b.available(MS * 10 * step);
            b.take(n);
            read += n;
        }
        assert_eq!(read, 3);
    }

    /// A reader that waits until the bucket is full and then reads what it allows, as a
    /// paced slow client does, against a socket that always has data (or, every third
    /// read, only a little): what it read by time t never exceeds capacity + rate × t,
    /// and it keeps up with the rate.
    #[test]
    fn a_paced_reader_never_reads_more_than_the_rate_allows() {
        for (rate, burst_ms) in [(1000u64, 100u64), (50_000, 100), (7, 100), (300, 1)] {
            let mut b = TokenBucket::with_burst(rate, MS * burst_ms as u32, Duration::ZERO);
            let (mut now, mut read, mut reads) = (Duration::ZERO, 0u64, 0u64);
            let end = Duration::from_secs(20);
            while now < end {
                now += b.until_full(now);
                let allowed = b.available(now);
                assert!(allowed >= 1);
                // Every third read the socket has less than the bucket allows.
                let got = if reads % 3 == 2 {
                    allowed.div_ceil(3)
                } else {
                    allowed
                };
                b.take(got);
                read += got;
                reads += 1;
                let bound = b.capacity() + (u128::from(rate) * now.as_nanos() / NANOS) as u64;
                assert!(
                    read <= bound,
                    "rate {rate}: {read} bytes by {now:?} > {bound}"
                );
            }
            let floor = rate * 20 - rate * 20 / 10;
            assert!(
                read >= floor,
                "rate {rate}: read {read} in 20 s, under {floor}"
            );
        }
    }
}
