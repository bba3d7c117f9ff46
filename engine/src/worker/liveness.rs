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

use super::core::Core;

/// Payload of the server's pings.
pub const PING_PAYLOAD: &[u8] = b"tickwire";

/// How often a worker sweeps: a quarter of the shortest limit, between 10 ms and 1 s.
pub fn sweep_period(cfg: &EngineConfig) -> Duration {
    Duration::from_millis((cfg.idle_timeout_ms / 4).clamp(10, 1000))
        .min(cfg.ping_interval() / 4)
        .max(Duration::from_millis(10))
}

impl Core {
    /// Pings silent clients, closes dead peers (`1001`), idle readers and expired tokens
    /// (`1008`): every client at once.
    pub fn sweep(&mut self, now: Instant) {
        self.sweep_slots(now, 0, self.clients.slots());
    }

    /// [`Core::sweep`] for the clients in `count` slots from slot `from`; returns the slot
    /// to go on from (0 after the last). The worker sweeps its table in slices spread
    /// over the sweep period ([`sweep_slice`]), so that no fan-out pass waits for a whole
    /// sweep (about 0.7 µs a client, 0.7 ms for a thousand).
    pub fn sweep_slots(&mut self, now: Instant, from: u32, count: u32) -> u32 {
        let ping_interval = self.cfg.ping_interval();
        let pong_timeout = self.cfg.pong_timeout();
        let idle_timeout = self.cfg.idle_timeout();
        let end = from.saturating_add(count).min(self.clients.slots());
        for index in from..end {
            let Some(key) = self.clients.key_at(index) else {
                continue;
            };
            let Some(c) = self.clients.get(key) else {
                continue;
            };
            if c.closing.is_some() {
                continue;
            }
            if c.secure.as_ref().is_some_and(|s| now >= s.expires) {
                // Queued data is dropped: the token no longer covers it.
                self.close_client(key, CloseReason::Policy, "token expired", true);
                continue;
            }
            // Progress is what the peer takes: bytes it acknowledged count even while the
            // socket stays too full to take more writes (a slow reader is not idle).
            // Records TLS encrypted and the socket has not taken are pending too.
            let pending = !c.outbox.is_empty() || c.tls().is_some_and(|t| t.wants_write());
            if pending {
                if let Ok(acked) = tickwire_sockopt::bytes_acked(&c.conn.stream) {
                    if let Some(c) = self.clients.get_mut(key) {
                        if acked != c.liveness.acked {
                            c.liveness.acked = acked;
                            c.liveness.last_progress = now;
                        }
                    }
                }
            }
            let Some(c) = self.clients.get(key) else {
                continue;
            };
            let live = c.liveness;
            let silent = now.saturating_duration_since(live.last_heard);
            if silent >= pong_timeout {
                self.close_client(key, CloseReason::GoingAway, "no pong", true);
                continue;
            }
            let stalled =
                pending && now.saturating_duration_since(live.last_progress) >= idle_timeout;
            if stalled {
                self.close_client(
                    key,
                    CloseReason::Policy,
                    "client read nothing for the idle limit",
                    true,
                );
                continue;
            }
            let ping_due = silent >= ping_interval
                && live
                    .last_ping
                    .is_none_or(|p| now.saturating_duration_since(p) >= ping_interval);
            if ping_due {
                self.send_ping(key, PING_PAYLOAD);
            }
        }
        if end >= self.clients.slots() {
            0
        } else {
            end
        }
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
