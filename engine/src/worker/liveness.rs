//! Liveness sweeps: server pings after silence, dead peers closed with `1001`, clients
//! that read nothing closed with `1008`, and so are clients whose token's `exp` passed
//! (within one sweep period of it, at most a second).
//!
//! A sweep runs on the worker thread a few times per ping interval (see
//! [`sweep_period`]) and reads time only through the worker's [`super::clock::Clock`],
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
    /// (`1008`).
    pub fn sweep(&mut self, now: Instant) {
        let ping_interval = self.cfg.ping_interval();
        let pong_timeout = self.cfg.pong_timeout();
        let idle_timeout = self.cfg.idle_timeout();
        for key in self.clients.keys() {
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
    }
}
