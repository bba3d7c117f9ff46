//! Writing clients: each due client on the flush list gets one vectored write (more when
//! it has over [`crate::outbox::MAX_IOVECS`] frames), and overload marks are served as
//! outboxes drain.
//!
//! Runs on the worker thread. Every write is non-blocking: a socket that takes less than
//! offered marks its client blocked and wakes its connection task, which waits for
//! writability and calls [`Core::flush_client`] again; the worker never waits for a
//! client. When a client is due is [`super::flush`]'s decision: [`Core::flush_due`] at the
//! end of each fan-out pass. Replies to a client's own command are written at once
//! ([`Core::write_now`]), outside rounds.

use std::io;
use std::time::{Duration, Instant};

use crate::latency::Stage;
use crate::outbox::WriteOutcome;
use crate::stats::{CloseReason, WorkerStats};
use crate::tick::now_ns;

use super::clients::ClientKey;
use super::core::Core;
use super::fanout::note_peak;
use super::send;

/// Longest a pass spends writing due clients before it reads the rings again.
pub const MAX_BATCH: Duration = Duration::from_micros(500);

impl Core {
    /// Writes the clients that are due: those whose oldest unwritten frame has waited
    /// the coalescing window (at once when the worker is lightly loaded).
    pub fn flush_due(&mut self) {
        let now = self.now;
        let window = self.flush.window();
        self.write_batch(now, |since| since + window <= now, Some(MAX_BATCH));
    }

    /// When the next client is due, if one waits.
    pub fn flush_deadline(&self) -> Option<Instant> {
        self.flush_list
            .front()
            .map(|&(_, since)| self.flush.due_at(since))
    }

    /// Writes every client that got frames since its last write.
    pub fn flush_all(&mut self) {
        let now = self.clock.now();
        self.write_batch(now, |_| true, None);
    }

    /// Writes clients from the front of the flush list while `due` says so, for at most
    /// `limit` of real time: the rest wait for the next pass, so that a round of many
    /// due clients (all of a symbol's subscribers get each trade at once, so they fall
    /// due together) does not hold the ring unread for milliseconds. `now` is the
    /// batch's time for liveness (one clock read per batch, not per write).
    fn write_batch(
        &mut self,
        now: Instant,
        due: impl Fn(Instant) -> bool,
        limit: Option<Duration>,
    ) {
        if !self
            .flush_list
            .front()
            .is_some_and(|&(_, since)| due(since))
        {
            return;
        }
        // Real time, not the worker's clock: this bounds the batch's real cost.
        let started = Instant::now();
        let mut written = 0u32;
        while let Some(&(key, since)) = self.flush_list.front() {
            if !due(since) {
                break;
            }
            written += 1;
            if written.is_multiple_of(32) && limit.is_some_and(|l| started.elapsed() >= l) {
                break;
            }
            self.flush_list.pop_front();
            let Some(c) = self.clients.get_mut(key) else {
                continue;
            };
            c.in_flush_list = false;
            if !c.blocked && self.flush_client_at(key, now).is_err() {
                // The peer is gone; its connection task removes it.
                self.close_client(key, CloseReason::Client, "", true);
            }
        }
        WorkerStats::add(&self.stats.flush_rounds, 1);
    }

    /// Same as [`Core::flush_all`] (the name the harness tests use).
    pub fn flush_pending(&mut self) {
        self.flush_all();
    }

    /// Writes one client now (a reply to its command), unless its socket is full.
    pub(super) fn write_now(&mut self, key: ClientKey) {
        let Some(c) = self.clients.get(key) else {
            return;
        };
        if c.blocked {
            return;
        }
        if self.flush_client(key).is_err() {
            self.close_client(key, CloseReason::Client, "", true);
        }
    }

    /// Writes what the socket takes; serves overload marks as room appears. Returns
    /// `Ok(true)` when everything is written, `Ok(false)` when the socket is full.
    pub fn flush_client(&mut self, key: ClientKey) -> io::Result<bool> {
        let now = self.clock.now();
        self.flush_client_at(key, now)
    }

    /// [`Core::flush_client`] at a time the caller has read (`now`, for liveness).
    fn flush_client_at(&mut self, key: ClientKey, now: Instant) -> io::Result<bool> {
        let mut bytes = 0u64;
        let result = loop {
            let frames = &mut self.frames;
            let Some(client) = self.clients.get_mut(key) else {
                return Ok(true);
            };
            let stream = &client.conn.stream;
            let before = client.outbox.pending_bytes();
            let frames_before = client.outbox.frames_written();
            let calls_before = client.outbox.writes();
            let latency = &mut self.latency;
            let mut wall = 0;
            let on_written = |ingest_ts: u64, queued_ns: u64| {
                if wall == 0 {
                    wall = now_ns();
                }
                if ingest_ts != 0 {
                    latency.record(Stage::TickToWire, wall.saturating_sub(ingest_ts));
                }
                latency.record(Stage::OutboxWait, wall.saturating_sub(queued_ns));
            };
            // A plain socket takes the gathered frames as they are; TLS encrypts them
            // first (worker/tls.rs). A blocked client's retry goes through tokio's
            // readiness, which its `WouldBlock` must clear (worker/send.rs).
            let send: send::SendFn = if client.blocked {
                send::send_when_ready
            } else {
                send::send_now
            };
            let outcome = match client.conn.tls.as_deref() {
                None => client
                    .outbox
                    .write_to(frames, |iov| send(stream, iov), on_written),
                Some(tls) => tls.write_outbox(stream, &mut client.outbox, frames, on_written),
            };
            let calls = client.outbox.writes() - calls_before;
            self.write_calls += calls;
            WorkerStats::add(&self.stats.writes, calls);
            let written = before - client.outbox.pending_bytes();
            bytes += written as u64;
            WorkerStats::add(
                &self.stats.messages_sent,
                client.outbox.frames_written() - frames_before,
            );
            if written > 0 || client.outbox.is_empty() {
                client.liveness.last_progress = now;
            }
            note_peak(&self.stats, client);
            match outcome {
                Ok(WriteOutcome::Drained) => {
                    client.blocked = false;
                    if client.dirty.is_empty() || client.closing.is_some() {
                        break Ok(true);
                    }
                    let pending = client.dirty.len();
                    self.serve_marks(key);
                    let Some(client) = self.clients.get(key) else {
                        return Ok(true);
                    };
                    if client.dirty.len() == pending && client.outbox.is_empty() {
                        break Ok(true);
                    }
                }
                Ok(WriteOutcome::Blocked) => {
                    if !client.blocked {
                        client.blocked = true;
                        client.conn.signal.notify();
                    }
                    break Ok(false);
                }
                Err(e) => break Err(e),
            }
        };
        WorkerStats::add(&self.stats.bytes_sent, bytes);
        if let Some(c) = self.clients.get(key) {
            if c.closing.is_some() && c.outbox.is_empty() {
                c.conn.signal.notify();
            }
        }
        result
    }
}
