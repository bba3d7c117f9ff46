//! Writing clients: the [`WriteScheduler`] keeps the clients that got frames in the
//! order they got their first unwritten one and says when each is due (under
//! [`super::flush`]'s coalescing policy); [`flush_client`] writes one client, serving its
//! marks as its outbox drains, with one vectored write per [`crate::outbox::MAX_IOVECS`]
//! frames.
//!
//! Runs on the worker thread. Every write is non-blocking: a socket that takes less than
//! offered marks its client blocked and wakes its connection task, which waits for
//! writability and asks for the client to be written again; the worker never waits for
//! a client. Due clients are written at the end of each fan-out pass, for at most
//! [`MAX_BATCH`]; replies to a client's own command are written at once, outside rounds.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::frames::FrameSlab;
use crate::latency::{Stage, StageRecorder};
use crate::outbox::WriteOutcome;
use crate::stats::WorkerStats;
use crate::tick::now_ns;

use super::busy::BusyMeter;
use super::client::{note_peak_bytes, Client};
use super::clients::{ClientKey, ClientTable};
use super::fanout::Outlet;
use super::flush::FlushPolicy;
use super::index::SymbolIndex;

/// Longest a pass spends writing due clients before it reads the rings again.
pub const MAX_BATCH: Duration = Duration::from_micros(500);

/// Writes per round between two looks at the time a round has taken.
pub const BATCH_CHECK_EVERY: u32 = 32;

/// When the worker's clients are written: the flush list under the coalescing policy.
pub struct WriteScheduler {
    /// Clients that got frames since their last write, with when the first of them was
    /// queued: in time order, so the front is the first due.
    list: VecDeque<(ClientKey, Instant)>,
    policy: FlushPolicy,
    /// The busy share the policy holds the worker under, 0..1.
    target: f64,
    /// The worker thread's parked time; without one (a core driven by a test) the
    /// window stays closed.
    busy: Option<Arc<BusyMeter>>,
}

impl WriteScheduler {
    /// A scheduler with the longest coalescing window `max` and the busy share to hold
    /// the worker under, `target` (0..1), starting at `now` with no busy meter.
    pub fn new(max: Duration, target: f64, now: Instant) -> WriteScheduler {
        WriteScheduler {
            list: VecDeque::new(),
            policy: FlushPolicy::new(max, target, now, Duration::ZERO),
            target,
            busy: None,
        }
    }

    /// Measures the worker's busy share with `meter` (which its runtime's park hooks
    /// feed, on the same clock as `now`), so that writes coalesce only when the core
    /// needs it. The policy starts afresh from the meter's reading now.
    pub fn set_busy_meter(&mut self, meter: Arc<BusyMeter>, now: Instant) {
        self.policy = FlushPolicy::new(self.policy.max(), self.target, now, meter.parked(now));
        self.busy = Some(meter);
    }

    /// Re-decides the window at the start of a pass (when a meter measures the worker)
    /// and publishes it and the busy share.
    pub fn begin_pass(&mut self, now: Instant, stats: &WorkerStats) {
        if let Some(meter) = &self.busy {
            self.policy.update(now, meter.parked(now));
            WorkerStats::set(
                &stats.coalesce_window_us,
                self.policy.window().as_micros() as u64,
            );
            WorkerStats::set(
                &stats.busy_permille,
                (self.policy.busy() * 1000.0).round() as u64,
            );
        }
    }

    /// The coalescing window in force (0: clients are written after every pass).
    pub fn window(&self) -> Duration {
        self.policy.window()
    }

    /// Puts the client on the flush list, unless it is on it already: it is due one
    /// window after `since`, the time of its first unwritten frame.
    pub fn enlist(&mut self, key: ClientKey, client: &mut Client, since: Instant) {
        if client.enlist() {
            self.list.push_back((key, since));
        }
    }

    /// Counts a delivery to `client` in the policy's measure.
    pub fn delivered(&mut self, client: &mut Client) {
        client.count_delivery(&mut self.policy);
    }

    /// When the next client is due, if one waits.
    pub fn deadline(&self) -> Option<Instant> {
        self.list
            .front()
            .map(|&(_, since)| self.policy.due_at(since))
    }

    /// The first client on the list, if `due` says it is due (given when its first
    /// unwritten frame was queued).
    pub fn next_due(&self, due: impl Fn(Instant) -> bool) -> Option<ClientKey> {
        self.list
            .front()
            .filter(|&&(_, since)| due(since))
            .map(|&(key, _)| key)
    }

    /// Takes the first client off the list to be written; `None` when it has left.
    pub fn take_front<'c>(&mut self, clients: &'c mut ClientTable) -> Option<&'c mut Client> {
        let (key, _) = self.list.pop_front()?;
        let client = clients.get_mut(key)?;
        client.delist();
        Some(client)
    }
}

/// Writes what the client's socket takes and serves its marks as room appears. Returns
/// `Ok(true)` when everything is written, `Ok(false)` when the socket is full. `now` is
/// the caller's time for liveness (one clock read per round, not per write).
pub fn flush_client(
    symbols: &mut SymbolIndex,
    out: &mut Outlet<'_>,
    key: ClientKey,
    now: Instant,
) -> io::Result<bool> {
    let mut bytes = 0u64;
    let result = loop {
        let Some(client) = out.clients.get_mut(key) else {
            return Ok(true);
        };
        let before = client.outbox().pending_bytes();
        let outcome = write_once(client, out.frames, out.latency, out.stats, now);
        let Some(client) = out.clients.get_mut(key) else {
            return Ok(true);
        };
        bytes += (before - client.outbox().pending_bytes()) as u64;
        match outcome {
            Ok(WriteOutcome::Drained) => {
                client.blocked = false;
                if client.owed() == 0 || client.closing.is_some() {
                    break Ok(true);
                }
                let pending = client.owed();
                out.serve_marks(symbols, key);
                let Some(client) = out.clients.get(key) else {
                    return Ok(true);
                };
                if client.owed() == pending && !client.has_pending() {
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
    WorkerStats::add(&out.stats.bytes_sent, bytes);
    if let Some(c) = out.clients.get(key) {
        if c.closing.is_some() && !c.has_pending() {
            c.conn.signal.notify();
        }
    }
    result
}

/// One write of `client` (one or more calls while the socket takes frames), with its
/// latency stages and counters.
fn write_once(
    client: &mut Client,
    frames: &mut FrameSlab,
    latency: &mut StageRecorder,
    stats: &WorkerStats,
    now: Instant,
) -> io::Result<WriteOutcome> {
    let before = client.outbox().pending_bytes();
    let frames_before = client.outbox().frames_written();
    let calls_before = client.outbox().writes();
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
    let outcome = client.write(frames, on_written);
    WorkerStats::add(&stats.writes, client.outbox().writes() - calls_before);
    WorkerStats::add(
        &stats.messages_sent,
        client.outbox().frames_written() - frames_before,
    );
    if before > client.outbox().pending_bytes() || !client.has_pending() {
        client.liveness.last_progress = now;
    }
    note_peak_bytes(stats, client.outbox().peak_bytes());
    outcome
}
