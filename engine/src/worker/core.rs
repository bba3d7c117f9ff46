//! The state one fan-out worker owns, and what its connections ask of it: clients
//! joining and leaving, commands (subscribe, unsubscribe) and control replies.
//!
//! Single-threaded by construction (`Rc<RefCell<Core>>` on the worker's current-thread
//! runtime): the fan-out loop and the connection tasks borrow it in turn and never hold
//! the borrow across an `await`. The data it owns is split by concern:
//!
//! - [`super::clients`]: the client table (outboxes, liveness, command limits);
//! - [`super::index`]: per-symbol state and who subscribes, with book depth groups;
//! - [`super::conflate`]: subscription marks and the throttle deadlines;
//! - [`super::flush`]: when the clients that got frames are written;
//! - [`super::clock`]: the one seam for time.
//!
//! The data path itself (ticks in, frames offered, marks served) is in
//! [`super::fanout`]; writing sockets is in [`super::write`]; pings, dead peers and idle
//! readers in [`super::liveness`]. No locks anywhere, and in steady state no allocation
//! per event (see `engine/tests/alloc.rs`).

use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::EngineConfig;
use crate::frames::{FrameId, FrameKind, FrameSlab, FrameTag};
use crate::latency::StageRecorder;
use crate::protocol::command::{Channel, ChannelSet, ErrorCode};
use crate::protocol::{encode, frame};
use crate::state::{Level, SymbolState};
use crate::stats::{CloseReason, WorkerStats};
use crate::symbol::{SymbolId, SymbolRegistry};
use crate::tick::{now_ns, BookSide};

pub use super::clients::ClientKey;
use super::clients::{Client, Clients, Conn, Secure};
use super::clock::Clock;
use super::conflate::Throttle;
use super::flush::FlushPolicy;
use super::index::{remove_key, SymbolSlot};
use crate::auth::Grant;

/// What a subscribe or unsubscribe did, for the reply.
#[derive(Debug, Default)]
pub struct SubscribeOutcome {
    /// Symbols the command applied to.
    pub applied: Vec<SymbolId>,
    /// Names the engine does not carry.
    pub unknown: Vec<String>,
    /// Symbols the engine carries that the connection's token does not allow.
    pub unauthorized: Vec<String>,
}

/// The worker's state; see the module doc.
pub struct Core {
    pub(super) cfg: Arc<EngineConfig>,
    pub(super) registry: Arc<SymbolRegistry>,
    pub(super) symbols: Vec<SymbolSlot>,
    pub(super) clients: Clients,
    pub(super) frames: FrameSlab,
    /// Clients that got frames since their last write, with when the first of them was
    /// queued: in time order, so the front is the first due.
    pub(super) flush_list: VecDeque<(ClientKey, Instant)>,
    pub(super) flush: FlushPolicy,
    pub(super) diff_bids: Vec<Level>,
    pub(super) diff_asks: Vec<Level>,
    pub(super) throttle: Throttle,
    pub(super) clock: Clock,
    /// Monotonic time of the current pass.
    pub(super) now: Instant,
    /// Wall clock (ns) of the current pass: the queueing time of its frames.
    pub(super) clock_ns: u64,
    pub(super) latency: StageRecorder,
    pub(super) stats: Arc<WorkerStats>,
    /// Vectored write calls made (for the flush policy's cost measurement).
    pub(super) write_calls: u64,
    /// The staleness limit, ns.
    pub(super) stale_ns: u64,
    /// The engine's per-symbol interest counters, when something follows them.
    pub(super) interest: Option<Arc<crate::interest::Interest>>,
}

impl Core {
    /// A worker core for `registry`'s symbols, on the system clock.
    pub fn new(
        cfg: Arc<EngineConfig>,
        registry: Arc<SymbolRegistry>,
        stats: Arc<WorkerStats>,
    ) -> Core {
        Core::with_clock(cfg, registry, stats, Clock::system())
    }

    /// A worker core on a given clock (tests use [`Clock::manual`]).
    pub fn with_clock(
        cfg: Arc<EngineConfig>,
        registry: Arc<SymbolRegistry>,
        stats: Arc<WorkerStats>,
        clock: Clock,
    ) -> Core {
        let symbols = (0..registry.len()).map(|_| SymbolSlot::default()).collect();
        let now = clock.now();
        let stale_ns = cfg.staleness_limit_ms.saturating_mul(1_000_000);
        let mut core = Core {
            flush: FlushPolicy::new(Duration::from_micros(cfg.flush_budget_us), now),
            cfg,
            registry,
            symbols,
            clients: Clients::default(),
            frames: FrameSlab::new(),
            flush_list: VecDeque::new(),
            diff_bids: Vec::new(),
            diff_asks: Vec::new(),
            throttle: Throttle::default(),
            clock,
            now,
            clock_ns: now_ns(),
            latency: StageRecorder::new(stats.latency.clone()),
            stats,
            write_calls: 0,
            stale_ns: 0,
            interest: None,
        };
        core.stale_ns = stale_ns;
        core
    }

    /// Reports this worker's first and last subscribers of each symbol to `interest`.
    pub fn set_interest(&mut self, interest: Arc<crate::interest::Interest>) {
        self.interest = Some(interest);
    }

    /// Brings the interest counter of `symbol` up to date after its subscribers changed.
    fn note_interest(&mut self, symbol: SymbolId) {
        let Some(interest) = &self.interest else {
            return;
        };
        let slot = &mut self.symbols[symbol.index()];
        let has = slot.has_subscribers();
        if has != slot.interested {
            slot.interested = has;
            interest.set(symbol, has);
        }
    }

    /// Starts a fan-out pass: reads the clocks once for everything the pass queues.
    pub fn begin_pass(&mut self) {
        self.now = self.clock.now();
        self.clock_ns = now_ns();
        self.flush.update(self.now);
        WorkerStats::set(
            &self.stats.coalesce_window_us,
            self.flush.window().as_micros() as u64,
        );
    }

    /// The worker's clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Publishes this worker's latency interval when a second has passed.
    pub fn publish_latency(&mut self, now_ns: u64) {
        self.latency.publish_if_due(now_ns);
    }

    /// The worker's counters.
    pub fn stats(&self) -> &Arc<WorkerStats> {
        &self.stats
    }

    /// The symbol registry.
    pub fn registry(&self) -> &Arc<SymbolRegistry> {
        &self.registry
    }

    /// Frames currently alive in the pool (for tests and stats).
    pub fn live_frames(&self) -> usize {
        self.frames.live()
    }

    /// The symbol's current state in this worker.
    pub fn symbol_state(&self, symbol: SymbolId) -> Option<&SymbolState> {
        self.symbols.get(symbol.index()).map(|s| &s.state)
    }

    /// The coalescing window in force (0: clients are written after every pass).
    pub fn coalesce_window(&self) -> Duration {
        self.flush.window()
    }

    // ---- clients ----------------------------------------------------------------------

    /// Registers a connected client (no token).
    pub fn add_client(&mut self, conn: Rc<Conn>) -> ClientKey {
        self.add_secure_client(conn, None)
    }

    /// Registers a connected client with its token's grant (its TLS session, if any,
    /// is in `conn`). The token's `exp` (wall clock) becomes a deadline on the worker's
    /// clock.
    pub fn add_secure_client(&mut self, conn: Rc<Conn>, grant: Option<Grant>) -> ClientKey {
        let now = self.clock.now();
        let mut client = Client::new(
            conn,
            self.cfg.outbox_budget_bytes,
            self.cfg.commands_per_s,
            self.cfg.snapshot_bytes_per_s,
            now,
        );
        if let Some(g) = grant {
            let left_ns = g
                .expires_at_s
                .saturating_mul(1_000_000_000)
                .saturating_sub(now_ns());
            client.secure = Some(Box::new(Secure {
                expires: now + Duration::from_nanos(left_ns),
                scope: g.scope,
            }));
        }
        WorkerStats::add(&self.stats.clients, 1);
        WorkerStats::add(&self.stats.connections_total, 1);
        self.clients.insert(client)
    }

    /// Removes a client whose connection has ended, releasing everything it held.
    pub fn remove_client(&mut self, key: ClientKey) {
        let symbols: Vec<SymbolId> = match self.clients.get(key) {
            Some(c) => c.subs.symbols().collect(),
            None => return,
        };
        for symbol in symbols {
            self.unsubscribe_one(key, symbol, ChannelSet::ALL);
        }
        if let Some(mut client) = self.clients.remove(key) {
            client.outbox.clear(&mut self.frames);
            if client.closing.is_none() {
                self.stats.count_close(CloseReason::Client);
            }
            self.stats
                .clients
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Whether the client is gone or closing (its task should wind down).
    pub fn is_closing(&self, key: ClientKey) -> bool {
        self.clients.get(key).is_none_or(|c| c.closing.is_some())
    }

    /// Whether the client is gone.
    pub fn is_gone(&self, key: ClientKey) -> bool {
        self.clients.get(key).is_none()
    }

    /// Starts closing a client: no more data is queued; what is queued is dropped when
    /// `discard` (a protocol violation or an unresponsive peer), and a close frame with
    /// the reason's code follows. The connection task flushes it and ends the connection.
    pub fn close_client(
        &mut self,
        key: ClientKey,
        reason: CloseReason,
        message: &str,
        discard: bool,
    ) {
        self.close_client_with(key, reason, reason.code(), message, discard);
    }

    /// [`Core::close_client`] with an explicit close code (an echo of the client's).
    pub fn close_client_with(
        &mut self,
        key: ClientKey,
        reason: CloseReason,
        code: Option<u16>,
        message: &str,
        discard: bool,
    ) {
        let Some(client) = self.clients.get(key) else {
            return;
        };
        if client.closing.is_some() {
            return;
        }
        let symbols: Vec<SymbolId> = client.subs.symbols().collect();
        for symbol in symbols {
            self.unsubscribe_one(key, symbol, ChannelSet::ALL);
        }
        let now = now_ns();
        let frames = &mut self.frames;
        let Some(client) = self.clients.get_mut(key) else {
            return;
        };
        client.closing = Some(reason);
        client.dirty = Default::default();
        client.marked = 0;
        if discard {
            client.outbox.discard_unsent(frames);
        }
        self.stats.count_close(reason);
        if let Some(code) = code {
            let id = frames.control(|buf| frame::close_frame(buf, code, message));
            client.outbox.push(frames, id, now);
            frames.release(id);
        }
        client.conn.signal.notify();
    }

    /// The client's connection (socket and wake-up), for its connection task.
    pub fn conn(&self, key: ClientKey) -> Option<Rc<Conn>> {
        self.clients.get(key).map(|c| c.conn.clone())
    }

    /// Whether the client's socket is full and its task should wait for writability.
    pub fn is_blocked(&self, key: ClientKey) -> bool {
        self.clients.get(key).is_some_and(|c| c.blocked)
    }

    /// Whether the client has anything left to write (queued frames, a pong).
    pub fn has_pending(&self, key: ClientKey) -> bool {
        self.clients.get(key).is_some_and(|c| !c.outbox.is_empty())
    }

    /// Notes that a frame arrived from the client (any frame is a sign of life).
    pub fn heard(&mut self, key: ClientKey) {
        let now = self.clock.now();
        if let Some(c) = self.clients.get_mut(key) {
            c.liveness.last_heard = now;
        }
    }

    /// Takes one token from the client's command budget; false when rate limited.
    pub fn take_command_token(&mut self, key: ClientKey) -> bool {
        let rate = self.cfg.commands_per_s;
        let now = self.clock.now();
        self.clients
            .get_mut(key)
            .is_some_and(|c| c.limiter.take(rate, self.cfg.snapshot_bytes_per_s, now))
    }

    /// Keys of every client (for sweeps).
    pub fn client_keys(&self) -> Vec<ClientKey> {
        self.clients.keys()
    }

    /// Slots in the client table, taken or free (the range [`Core::sweep_slots`] walks).
    pub fn client_slots(&self) -> u32 {
        self.clients.slots()
    }

    /// Clients connected to this worker.
    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    /// Heap bytes the worker holds for one client beyond its table slot (tests).
    pub fn client_heap_bytes(&self, key: ClientKey) -> Option<usize> {
        self.clients.get(key).map(Client::heap_bytes)
    }

    // ---- replies ----------------------------------------------------------------------

    /// Queues an `error` reply; returns false when the client passed the error limit and
    /// is being closed with 1008.
    pub fn send_error(
        &mut self,
        key: ClientKey,
        id: Option<i64>,
        code: ErrorCode,
        message: &str,
    ) -> bool {
        let limit = self.cfg.max_errors_per_10s as usize;
        let now = self.clock.now();
        let Some(c) = self.clients.get_mut(key) else {
            return false;
        };
        if c.errors.note(now) > limit {
            self.close_client(key, CloseReason::Policy, "too many errors", false);
            return false;
        }
        WorkerStats::add(&self.stats.errors_sent, 1);
        self.send_control(key, |buf| encode::error(buf, id, code, message));
        true
    }

    /// Queues a reply to a command and writes the client. Replies bypass conflation
    /// (they are small and rate limited), but not without bound: a client whose
    /// unwritten bytes pass twice its budget reads nothing and is closed with 1008.
    pub fn send_control(&mut self, key: ClientKey, encode: impl FnOnce(&mut Vec<u8>)) {
        if self.is_closing(key) {
            return;
        }
        let id = self.frames.text(encode);
        self.push_control(key, id);
    }

    /// Answers a client ping: at most one pong waits per client, the newest replacing
    /// one not yet started.
    pub fn send_pong(&mut self, key: ClientKey, payload: &[u8]) {
        if self.is_closing(key) {
            return;
        }
        let id = self.frames.control(|buf| frame::pong_frame(buf, payload));
        if let Some(c) = self.clients.get_mut(key) {
            if !c.outbox.set_pong(&mut self.frames, id) {
                WorkerStats::add(&self.stats.pongs_dropped, 1);
            }
        }
        self.frames.release(id);
        self.write_now(key);
    }

    /// Sends `payload` back as one frame of `opcode` (text or binary), like a reply: the
    /// test-only echo endpoint. The same outbox, bound and write path as replies.
    pub fn send_echo(&mut self, key: ClientKey, opcode: frame::OpCode, payload: &[u8]) {
        if self.is_closing(key) {
            return;
        }
        let id = self.frames.control(|buf| {
            frame::begin(buf);
            buf.extend_from_slice(payload);
            frame::finish(buf, opcode)
        });
        self.push_control(key, id);
    }

    /// Sends a server ping (liveness check).
    pub fn send_ping(&mut self, key: ClientKey, payload: &[u8]) {
        if self.is_closing(key) {
            return;
        }
        let now = self.clock.now();
        let id = self.frames.control(|buf| frame::ping_frame(buf, payload));
        if let Some(c) = self.clients.get_mut(key) {
            c.liveness.last_ping = Some(now);
        }
        self.push_control(key, id);
    }

    /// Queues a frame the caller holds outside the budget (up to twice it), drops the
    /// caller's reference and writes the client.
    fn push_control(&mut self, key: ClientKey, id: FrameId) {
        self.clock_ns = now_ns();
        let len = self.frames.len(id);
        let Some(c) = self.clients.get_mut(key) else {
            self.frames.release(id);
            return;
        };
        let cap = 2 * c.outbox.budget_bytes();
        if c.outbox.pending_bytes() + len > cap && !c.outbox.is_empty() {
            self.frames.release(id);
            self.close_client(
                key,
                CloseReason::Policy,
                "replies waiting past twice the outbox budget: the client's commands cause replies faster than it reads them",
                true,
            );
            return;
        }
        c.outbox.push(&mut self.frames, id, self.clock_ns);
        self.frames.release(id);
        self.write_now(key);
    }

    // ---- subscriptions ----------------------------------------------------------------

    /// Applies a subscribe for every (symbol, channel) pair; queues the `subscribed`
    /// reply and a snapshot per pair where one exists. Returns `Err` with the error to send
    /// when the pair limit would be passed (nothing is applied then).
    pub fn subscribe(
        &mut self,
        key: ClientKey,
        id: Option<i64>,
        channels: ChannelSet,
        names: &[String],
        depth: u16,
        throttle_ms: u32,
    ) -> Result<SubscribeOutcome, (ErrorCode, String)> {
        let mut outcome = SubscribeOutcome::default();
        // Snapshot bytes are budgeted apart from the command count: one resubscribe of
        // thousands of deep books costs the worker what thousands of commands would.
        let (rate, snapshot_rate, now) = (
            self.cfg.commands_per_s,
            self.cfg.snapshot_bytes_per_s,
            self.clock.now(),
        );
        let Some(c) = self.clients.get_mut(key) else {
            return Ok(outcome);
        };
        if !c.limiter.snapshots_allowed(rate, snapshot_rate, now) {
            return Err((
                ErrorCode::RateLimited,
                format!(
                    "subscribes caused more snapshot bytes than the limit ({snapshot_rate} per second): nothing applied, try again later"
                ),
            ));
        }
        let Some(client) = self.clients.get(key) else {
            return Ok(outcome);
        };
        for name in names {
            match self.registry.lookup(name) {
                Some(_) if !client.may_subscribe(name) => {
                    if !outcome.unauthorized.contains(name) {
                        outcome.unauthorized.push(name.clone());
                    }
                }
                Some(s) if !outcome.applied.contains(&s) => outcome.applied.push(s),
                Some(_) => {}
                None => outcome.unknown.push(name.clone()),
            }
        }
        let new_pairs: usize = outcome
            .applied
            .iter()
            .map(|&s| {
                let held = client
                    .subs
                    .get(s)
                    .map_or(ChannelSet::default(), |c| c.channels);
                channels.iter().filter(|ch| !held.contains(*ch)).count()
            })
            .sum();
        let pairs = client.pairs as usize;
        if pairs + new_pairs > self.cfg.max_subscriptions {
            return Err((
                ErrorCode::TooManySubscriptions,
                format!(
                    "subscribing to {new_pairs} more symbol-channel pairs would pass the limit of {} (holding {pairs})",
                    self.cfg.max_subscriptions
                ),
            ));
        }
        if !outcome.unknown.is_empty() {
            let message = format!("no such symbol: {}", outcome.unknown.join(", "));
            if !self.send_error(key, id, ErrorCode::UnknownSymbol, &message) {
                return Ok(outcome);
            }
        }
        if !outcome.unauthorized.is_empty() {
            let message = format!(
                "not allowed by this connection's token: {}",
                outcome.unauthorized.join(", ")
            );
            if !self.send_error(key, id, ErrorCode::Unauthorized, &message) {
                return Ok(outcome);
            }
        }
        if outcome.applied.is_empty() {
            return Ok(outcome);
        }
        let registry = self.registry.clone();
        let names: Vec<&str> = outcome
            .applied
            .iter()
            .map(|&s| registry.info(s).name.as_str())
            .collect();
        self.send_control(key, |buf| encode::subscribed(buf, id, channels, &names));
        let mut snapshot_bytes = 0;
        for &symbol in &outcome.applied {
            snapshot_bytes += self.subscribe_one(key, symbol, channels, depth, throttle_ms);
        }
        if let Some(c) = self.clients.get_mut(key) {
            c.limiter.charge_snapshots(snapshot_bytes);
        }
        self.write_now(key);
        Ok(outcome)
    }

    /// Applies one symbol's pairs and queues their snapshots; returns the snapshots' bytes.
    fn subscribe_one(
        &mut self,
        key: ClientKey,
        symbol: SymbolId,
        channels: ChannelSet,
        depth: u16,
        throttle_ms: u32,
    ) -> usize {
        let Some(client) = self.clients.get_mut(key) else {
            return 0;
        };
        let sub = client.subs.entry(symbol);
        let before = sub.marks();
        let held = sub.channels;
        let old_depth = sub.depth;
        for ch in channels.iter() {
            if !held.contains(ch) {
                client.pairs += 1;
                WorkerStats::add(&self.stats.subscriptions, 1);
            }
            sub.channels.insert(ch);
        }
        // A fresh snapshot supersedes pending ticker and book marks, and goes out at once:
        // the throttle interval starts when it is queued (`offer` sets the deadline).
        let throttled = u32::from(throttle_ms > 0);
        if channels.contains(Channel::Ticker) {
            sub.ticker_dirty = false;
            client.throttled = client.throttled + throttled - u32::from(sub.ticker_throttle_ms > 0);
            sub.ticker_throttle_ms = throttle_ms;
            sub.ticker_next = None;
        }
        if channels.contains(Channel::Book) {
            sub.book_stale = false;
            sub.depth = depth;
            client.throttled = client.throttled + throttled - u32::from(sub.book_throttle_ms > 0);
            sub.book_throttle_ms = throttle_ms;
            sub.book_next = None;
        }
        client.marked = client.marked + sub.marks() as u32 - before as u32;
        let slot = &mut self.symbols[symbol.index()];
        if channels.contains(Channel::Ticker) && !held.contains(Channel::Ticker) {
            slot.ticker_subs.push(key);
        }
        if channels.contains(Channel::Trades) && !held.contains(Channel::Trades) {
            slot.trade_subs.push(key);
        }
        if channels.contains(Channel::Book) {
            if held.contains(Channel::Book) {
                slot.leave_group(key, old_depth);
            }
            slot.join_group(key, depth);
        }
        // Snapshots, in channel order.
        let mut snapshot_bytes = 0;
        if channels.contains(Channel::Ticker) {
            let frame = self.ticker_frame(symbol);
            snapshot_bytes += self.frames.len(frame);
            self.offer(key, symbol, Channel::Ticker, frame);
        }
        if channels.contains(Channel::Book) {
            let frame = self.book_snapshot_frame(symbol, depth);
            snapshot_bytes += self.frames.len(frame);
            self.offer(key, symbol, Channel::Book, frame);
            self.frames.release(frame);
        }
        self.note_interest(symbol);
        snapshot_bytes
    }

    /// Removes pairs; returns the symbols it applied to and the unknown names. Pairs the
    /// client did not hold are not an error.
    pub fn unsubscribe(
        &mut self,
        key: ClientKey,
        channels: ChannelSet,
        names: &[String],
    ) -> SubscribeOutcome {
        let mut outcome = SubscribeOutcome::default();
        for name in names {
            match self.registry.lookup(name) {
                Some(s) => {
                    if !outcome.applied.contains(&s) {
                        outcome.applied.push(s);
                        self.unsubscribe_one(key, s, channels);
                    }
                }
                None => outcome.unknown.push(name.clone()),
            }
        }
        outcome
    }

    fn unsubscribe_one(&mut self, key: ClientKey, symbol: SymbolId, channels: ChannelSet) {
        let Some(client) = self.clients.get_mut(key) else {
            return;
        };
        let Some(sub) = client.subs.get_mut(symbol) else {
            return;
        };
        let before = sub.marks();
        let slot = &mut self.symbols[symbol.index()];
        for ch in channels.iter().filter(|ch| sub.channels.contains(*ch)) {
            client.pairs -= 1;
            self.stats
                .subscriptions
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            match ch {
                Channel::Ticker => {
                    remove_key(&mut slot.ticker_subs, key);
                    sub.ticker_dirty = false;
                    client.throttled -= u32::from(sub.ticker_throttle_ms > 0);
                    sub.ticker_throttle_ms = 0;
                }
                Channel::Trades => {
                    remove_key(&mut slot.trade_subs, key);
                    sub.gap = None;
                    sub.gap_upstream = false;
                }
                Channel::Book => {
                    slot.leave_group(key, sub.depth);
                    sub.book_stale = false;
                    client.throttled -= u32::from(sub.book_throttle_ms > 0);
                    sub.book_throttle_ms = 0;
                }
            }
        }
        for ch in channels.iter() {
            sub.channels.remove(ch);
        }
        let empty = sub.channels.is_empty();
        client.marked = client.marked + sub.marks() as u32 - before as u32;
        if empty {
            client.subs.remove(symbol);
        }
        if slot.ticker_subs.is_empty() {
            if let Some(f) = slot.ticker_frame.take() {
                self.frames.release(f);
            }
        }
        self.note_interest(symbol);
    }

    // ---- encoding ---------------------------------------------------------------------

    /// The symbol's latest ticker frame (encoded now if it is not yet); borrowed, not
    /// retained.
    pub(super) fn ticker_frame(&mut self, symbol: SymbolId) -> FrameId {
        let slot = &mut self.symbols[symbol.index()];
        if let Some(f) = slot.ticker_frame {
            return f;
        }
        let id = self.frames.text(|buf| {
            encode::ticker(buf, self.registry.info(symbol), &slot.state.ticker);
        });
        self.frames
            .set_tag(id, FrameTag::data(FrameKind::Ticker, symbol));
        slot.ticker_frame = Some(id);
        id
    }

    /// A fresh snapshot frame of `symbol` at `depth`; the caller owns one reference.
    pub(super) fn book_snapshot_frame(&mut self, symbol: SymbolId, depth: u16) -> FrameId {
        let state = &self.symbols[symbol.index()].state;
        let d = usize::from(depth);
        let id = self.frames.text(|buf| {
            encode::book(
                buf,
                self.registry.info(symbol),
                state.book_seq,
                true,
                state.book.top(BookSide::Bid, d),
                state.book.top(BookSide::Ask, d),
                state.book_ts,
                state.book_ingest_ts,
            );
        });
        self.frames
            .set_tag(id, FrameTag::data(FrameKind::Book, symbol));
        id
    }
}
