//! Liveness sweeps: server pings after silence, dead peers closed with `1001`, clients
//! that read nothing closed with `1008`, and so are clients whose token's `exp` passed
//! (within one sweep period of it, at most a second).
//!
//! A sweep runs on the worker thread a few times per ping interval (see
//! [`sweep_period`]), a slice of the client table per housekeeping tick, and reads time
//! only through the worker's [`super::clock::Clock`],
//! so tests run it on a manual clock. Any frame from the client counts as a sign of life
//! (`Core::heard`); progress is the socket taking bytes, having nothing to take, or the
//! peer acknowledging more bytes (`TCP_INFO`), so a client that reads anything within
//! the idle limit is never closed as idle.

use std::time::{Duration, Instant};

use crate::config::EngineConfig;
use crate::stats::CloseReason;

use super::client::Client;

/// Payload of the server's pings.
pub const PING_PAYLOAD: &[u8] = b"tickwire";

/// How often a worker sweeps: a quarter of the shortest limit, between 10 ms and 1 s.
pub fn sweep_period(cfg: &EngineConfig) -> Duration {
    Duration::from_millis((cfg.idle_timeout_ms / 4).clamp(10, 1000))
        .min(cfg.ping_interval() / 4)
        .max(Duration::from_millis(10))
}

/// What a sweep does about one client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing now.
    Fine,
    /// Send a server ping.
    Ping,
    /// Close it for `reason` with `message`, dropping what is queued.
    Close(CloseReason, &'static str),
}

/// The limits a sweep applies, from the engine's configuration.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Silence after which the server pings.
    pub ping_interval: Duration,
    /// Silence after which the peer is dead.
    pub pong_timeout: Duration,
    /// Time without progress, with data pending, after which the reader is idle.
    pub idle_timeout: Duration,
}

impl Limits {
    /// The limits `cfg` sets.
    pub fn of(cfg: &EngineConfig) -> Limits {
        Limits {
            ping_interval: cfg.ping_interval(),
            pong_timeout: cfg.pong_timeout(),
            idle_timeout: cfg.idle_timeout(),
        }
    }
}

/// Judges one client at `now`: an expired token, a dead peer, an idle reader, a ping
/// due. Reads the bytes the peer acknowledged while data is pending, since bytes it
/// acknowledged count as progress even while the socket stays too full to take more
/// writes (a slow reader is not idle).
pub fn check(client: &mut Client, now: Instant, limits: &Limits) -> Verdict {
    if client.closing.is_some() {
        return Verdict::Fine;
    }
    if client.secure.as_ref().is_some_and(|s| now >= s.expires) {
        // Queued data is dropped: the token no longer covers it.
        return Verdict::Close(CloseReason::Policy, "token expired");
    }
    // Records TLS encrypted and the socket has not taken are pending too.
    let pending = client.has_pending() || client.tls().is_some_and(|t| t.wants_write());
    if pending {
        if let Ok(acked) = tickwire_sockopt::bytes_acked(&client.conn.stream) {
            if acked != client.liveness.acked {
                client.liveness.acked = acked;
                client.liveness.last_progress = now;
            }
        }
    }
    let live = client.liveness;
    let silent = now.saturating_duration_since(live.last_heard);
    if silent >= limits.pong_timeout {
        return Verdict::Close(CloseReason::GoingAway, "no pong");
    }
    let stalled =
        pending && now.saturating_duration_since(live.last_progress) >= limits.idle_timeout;
    if stalled {
        return Verdict::Close(
            CloseReason::Policy,
            "client read nothing for the idle limit",
        );
    }
    let ping_due = silent >= limits.ping_interval
        && live
            .last_ping
            .is_none_or(|p| now.saturating_duration_since(p) >= limits.ping_interval);
    if ping_due {
        Verdict::Ping
    } else {
        Verdict::Fine
    }
}

/// Slots to sweep per housekeeping tick of `tick` so that a table of `slots` is swept
/// once per `period` (at least one slot a tick).
pub fn sweep_slice(slots: u32, tick: Duration, period: Duration) -> u32 {
    if period <= tick {
        return slots.max(1);
    }
    // Whole ticks only: the table is covered within the period, never later.
    let ticks = period.as_nanos() / tick.as_nanos().max(1);
    let per_tick = u128::from(slots).div_ceil(ticks.max(1));
    u32::try_from(per_tick).unwrap_or(u32::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slice_covers_the_table_once_per_period() {
        let (tick, period) = (Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(sweep_slice(1000, tick, period), 100);
        assert_eq!(
            sweep_slice(1001, tick, period),
            101,
            "rounded up, never short"
        );
        assert_eq!(sweep_slice(0, tick, period), 1);
        // 250 ms is two whole ticks of 100: covered in 200 ms, not 300.
        assert_eq!(sweep_slice(1000, tick, Duration::from_millis(250)), 500);
        assert_eq!(
            sweep_slice(5000, Duration::from_millis(10), Duration::from_millis(10)),
            5000
        );
    }
}
