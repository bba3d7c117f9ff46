//! The state one fan-out worker owns, and what its connections and its fan-out loop ask
//! of it: clients joining and leaving, commands (subscribe, unsubscribe), replies and
//! control frames, ticks, writes and sweeps.
//!
//! Single-threaded by construction (`Rc<RefCell<Core>>` on the worker's current-thread
//! runtime): the fan-out loop and the connection tasks borrow it in turn and never hold
//! the borrow across an `await`. `Core` is a composition of parts, each with its own
//! rules in its own module, and only this module has an `impl Core`:
//!
//! - [`SymbolIndex`] ([`super::index`]): per-symbol state, subscriber lists and depth
//!   groups, and the encoding of every frame made of them;
//! - [`ClientTable`] ([`super::clients`]) of [`super::client::Client`]s, each owning its
//!   outbox, subscriptions and marks, and the rules of conflation;
//! - [`FrameSlab`]: the pooled, shared frames;
//! - [`WriteScheduler`] ([`super::write`]): the flush list under the coalescing policy;
//! - [`Throttle`] ([`super::conflate`]): throttle deadlines;
//! - [`Clock`] and the current [`PassTime`] ([`super::clock`]).
//!
//! The data path (ticks in, frames offered, marks served) is [`super::fanout`]'s, over
//! an [`Outlet`] of these parts; writing a client is [`super::write`]'s; judging
//! liveness is [`super::liveness`]'s. No locks anywhere, and in steady state no
//! allocation per event (see `engine/tests/alloc.rs`).

use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::auth::Grant;
use crate::config::EngineConfig;
use crate::feed::ResyncReply;
use crate::frames::{FrameId, FrameSlab};
use crate::latency::StageRecorder;
use crate::protocol::command::{Channel, ChannelSet, ErrorCode};
use crate::protocol::version::{self, Version};
use crate::protocol::{encode, frame};
use crate::state::SymbolState;
use crate::stats::{CloseReason, WorkerStats};
use crate::symbol::{SymbolId, SymbolRegistry};
use crate::tick::{now_ns, Tick};

use super::busy::BusyMeter;
use super::client::{Client, Offer};
pub use super::clients::ClientKey;
use super::clients::{ClientTable, Conn, Secure};
use super::clock::{Clock, PassTime};
use super::conflate::Throttle;
use super::fanout::{self, GapCause, Outlet};
use super::index::SymbolIndex;
use super::liveness::{self, Limits, Verdict, PING_PAYLOAD};
use super::write::{self, WriteScheduler, BATCH_CHECK_EVERY, MAX_BATCH};

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

/// What a version 2 `subscribe` adds for trade recovery (both `None` in version 1).
#[derive(Clone, Copy, Debug, Default)]
pub struct Recovery<'a> {
    /// The epoch the client's seqs belong to.
    pub epoch: Option<&'a str>,
    /// Per symbol name, the last trade seq the client holds.
    pub since: Option<&'a [(String, u64)]>,
}

/// The worker's state; see the module doc.
pub struct Core {
    cfg: Arc<EngineConfig>,
    symbols: SymbolIndex,
    clients: ClientTable,
    frames: FrameSlab,
    writes: WriteScheduler,
    throttle: Throttle,
    clock: Clock,
    pass: PassTime,
    latency: StageRecorder,
    stats: Arc<WorkerStats>,
    /// The epoch of the seqs this worker serves (version 2).
    epoch: Arc<str>,
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
        let now = clock.now();
        Core {
            writes: WriteScheduler::new(
                Duration::from_micros(cfg.flush_budget_us),
                f64::from(cfg.busy_target_pct) / 100.0,
                now,
            ),
            pass: PassTime {
                now,
                queued_ns: now_ns(),
                stale_ns: cfg.staleness_limit_ms.saturating_mul(1_000_000),
            },
            symbols: {
                let mut symbols = SymbolIndex::new(registry);
                symbols.set_trade_history(cfg.trade_history);
                symbols
            },
            cfg,
            epoch: version::fresh_epoch().into(),
            clients: ClientTable::default(),
            frames: FrameSlab::new(),
            throttle: Throttle::default(),
            clock,
            latency: StageRecorder::new(stats.latency.clone()),
            stats,
        }
    }

    /// Sets the epoch this worker's clients are told (the engine's; a fresh one by
    /// default).
    pub fn set_epoch(&mut self, epoch: Arc<str>) {
        self.epoch = epoch;
    }

    /// The epoch this worker's clients are told.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// The protocol version the client at `key` speaks (version 1 for a gone client).
    pub fn client_version(&self, key: ClientKey) -> Version {
        self.clients.get(key).map_or(Version::V1, |c| c.version)
    }

    /// Reports this worker's first and last subscribers of each symbol to `interest`.
    pub fn set_interest(&mut self, interest: Arc<crate::interest::Interest>) {
        self.symbols.set_interest(interest);
    }

    /// The symbol index beside the other parts, borrowed apart for the data path.
    fn outlet(&mut self) -> (&mut SymbolIndex, Outlet<'_>) {
        let Core {
            symbols,
            clients,
            frames,
            writes,
            throttle,
            clock,
            pass,
            latency,
            stats,
            ..
        } = self;
        let out = Outlet {
            clients,
            frames,
            writes,
            throttle,
            clock,
            pass: *pass,
            latency,
            stats,
        };
        (symbols, out)
    }

    /// Starts a fan-out pass: reads the clocks once for everything the pass queues.
    pub fn begin_pass(&mut self) {
        self.pass.now = self.clock.now();
        self.pass.queued_ns = now_ns();
        self.writes.begin_pass(self.pass.now, &self.stats);
    }

    /// Measures the worker's busy share with `meter` (which its runtime's park hooks
    /// feed, on the same clock as this core's), so that writes coalesce only when the
    /// core needs it. The policy starts afresh from the meter's reading now.
    pub fn set_busy_meter(&mut self, meter: Arc<BusyMeter>) {
        self.writes.set_busy_meter(meter, self.clock.now());
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
        self.symbols.registry()
    }

    /// Frames currently alive in the pool (for tests and stats).
    pub fn live_frames(&self) -> usize {
        self.frames.live()
    }

    /// The symbol's current state in this worker.
    pub fn symbol_state(&self, symbol: SymbolId) -> Option<&SymbolState> {
        self.symbols.get(symbol).map(|s| &s.state)
    }

    /// The coalescing window in force (0: clients are written after every pass).
    pub fn coalesce_window(&self) -> Duration {
        self.writes.window()
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
        self.join_client(conn, grant, Version::V1)
    }

    /// Adds a client that speaks `version`, with no token.
    pub fn add_client_speaking(&mut self, conn: Rc<Conn>, version: Version) -> ClientKey {
        self.join_client(conn, None, version)
    }

    /// Adds a client that speaks `version`, with its token's grant (`None` on an open
    /// engine).
    pub fn join_client(
        &mut self,
        conn: Rc<Conn>,
        grant: Option<Grant>,
        version: Version,
    ) -> ClientKey {
        let now = self.clock.now();
        let mut client = Client::new(
            conn,
            self.cfg.outbox_budget_bytes,
            self.cfg.commands_per_s,
            self.cfg.snapshot_bytes_per_s,
            now,
        );
        client.version = version;
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
        if self.clients.get(key).is_none() {
            return;
        }
        self.unsubscribe_all(key);
        if let Some(mut client) = self.clients.remove(key) {
            client.release(&mut self.frames);
            if client.closing.is_none() {
                self.stats.count_close(CloseReason::Client);
            }
            self.stats
                .clients
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Ends every subscription of the client.
    fn unsubscribe_all(&mut self, key: ClientKey) {
        let symbols: Vec<SymbolId> = match self.clients.get(key) {
            Some(c) => c.subs().symbols().collect(),
            None => return,
        };
        for symbol in symbols {
            self.unsubscribe_one(key, symbol, ChannelSet::ALL);
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
        if self.clients.get(key).is_none_or(|c| c.closing.is_some()) {
            return;
        }
        self.unsubscribe_all(key);
        let now = now_ns();
        let Some(client) = self.clients.get_mut(key) else {
            return;
        };
        client.close(reason, &mut self.frames, discard, now, |frames| {
            code.map(|code| frames.control(|buf| frame::close_frame(buf, code, message)))
        });
        self.stats.count_close(reason);
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

    /// Marks the client holds (subscriptions owed a catch-up, replays included).
    pub fn client_marks(&self, key: ClientKey) -> u32 {
        self.clients.get(key).map_or(0, Client::marked)
    }

    /// Whether the client has anything left to write (queued frames, a pong).
    pub fn has_pending(&self, key: ClientKey) -> bool {
        self.clients.get(key).is_some_and(Client::has_pending)
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
            if !c.set_pong(&mut self.frames, id) {
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
        self.pass.queued_ns = now_ns();
        let Some(c) = self.clients.get_mut(key) else {
            self.frames.release(id);
            return;
        };
        let queued = c.push_reply(&mut self.frames, id, self.pass.queued_ns);
        self.frames.release(id);
        if !queued {
            self.close_client(
                key,
                CloseReason::Policy,
                "replies waiting past twice the outbox budget: the client's commands cause replies faster than it reads them",
                true,
            );
            return;
        }
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
        let options = (depth, throttle_ms);
        self.subscribe_with(key, id, channels, names, options, Recovery::default())
    }

    /// [`Core::subscribe`] with `(depth, throttle_ms)` and version 2's `recovery`: a
    /// version 2 client is told the epoch, and, when its `since` names a symbol whose
    /// trades it subscribes here and its `epoch` is this one, the trades after its seq
    /// are replayed from the history before any later live trade (both run on this
    /// thread, between two ticks), then the live ones follow.
    pub fn subscribe_with(
        &mut self,
        key: ClientKey,
        id: Option<i64>,
        channels: ChannelSet,
        names: &[String],
        (depth, throttle_ms): (u16, u32),
        recovery: Recovery<'_>,
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
            match self.symbols.registry().lookup(name) {
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
                    .subs()
                    .get(s)
                    .map_or(ChannelSet::default(), |c| c.channels);
                channels.iter().filter(|ch| !held.contains(*ch)).count()
            })
            .sum();
        let pairs = client.pairs() as usize;
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
        let registry = self.symbols.registry().clone();
        let names: Vec<&str> = outcome
            .applied
            .iter()
            .map(|&s| registry.info(s).name.as_str())
            .collect();
        let Some(client) = self.clients.get(key) else {
            return Ok(outcome);
        };
        let v2 = client.version.is_v2();
        // Recovery per applied symbol named in `since`: only for trades not held yet (a
        // held stream goes on as it is), and only in this epoch.
        let epoch_matches = recovery.epoch == Some(&*self.epoch);
        let recover: Vec<(SymbolId, Option<u64>)> = match recovery.since {
            Some(since) if v2 => outcome
                .applied
                .iter()
                .filter_map(|&s| {
                    let name = registry.info(s).name.as_str();
                    let (_, seq) = since.iter().find(|(n, _)| n == name)?;
                    let held = client
                        .subs()
                        .get(s)
                        .is_some_and(|sub| sub.channels.contains(Channel::Trades));
                    let ok = epoch_matches && channels.contains(Channel::Trades) && !held;
                    Some((s, ok.then_some(*seq)))
                })
                .collect(),
            _ => Vec::new(),
        };
        if v2 {
            let recovered: Option<Vec<(&str, bool)>> = recovery.since.map(|_| {
                recover
                    .iter()
                    .map(|&(s, seq)| (registry.info(s).name.as_str(), seq.is_some()))
                    .collect()
            });
            let epoch = self.epoch.clone();
            self.send_control(key, |buf| {
                encode::subscribed_v2(buf, id, channels, &names, &epoch, recovered.as_deref())
            });
        } else {
            self.send_control(key, |buf| encode::subscribed(buf, id, channels, &names));
        }
        let mut snapshot_bytes = 0;
        for &symbol in &outcome.applied {
            snapshot_bytes += self.subscribe_one(key, symbol, channels, depth, throttle_ms);
            let since = recover
                .iter()
                .find(|(s, _)| *s == symbol)
                .and_then(|(_, seq)| *seq);
            if let Some(since) = since {
                let last = self.symbols.get(symbol).map_or(0, |s| s.state.trade_seq);
                if let Some(client) = self.clients.get_mut(key) {
                    client.recover(symbol, since.saturating_add(1), last);
                }
            }
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
        let joined = client.subscribe(symbol, channels, depth, throttle_ms, &self.stats);
        let version = client.version;
        self.symbols.add_subscriber(
            key,
            symbol,
            channels,
            joined.held,
            (depth, joined.old_depth),
            version,
        );
        // Snapshots, in channel order; a fresh snapshot supersedes pending ticker and
        // book marks and goes out at once: the throttle interval starts when it is
        // queued.
        let (symbols, mut out) = self.outlet();
        let mut snapshot_bytes = 0;
        if channels.contains(Channel::Ticker) {
            let frame = symbols.ticker_frame(symbol, out.frames);
            snapshot_bytes += out.frames.len(frame);
            out.offer(key, symbol, Offer::State(Channel::Ticker), frame);
        }
        if channels.contains(Channel::Book) {
            let frame = symbols.book_snapshot_frame(symbol, depth, out.frames);
            snapshot_bytes += out.frames.len(frame);
            out.offer(key, symbol, Offer::State(Channel::Book), frame);
            out.frames.release(frame);
        }
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
            match self.symbols.registry().lookup(name) {
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
        let Some((left, depth)) = client.unsubscribe(symbol, channels, &self.stats) else {
            return;
        };
        self.symbols
            .remove_subscriber(key, symbol, left, depth, &mut self.frames);
    }

    // ---- the data path ---------------------------------------------------------------

    /// Applies one tick from a ring and queues the frames it causes for the subscribers.
    pub fn on_tick(&mut self, tick: &Tick) {
        let (symbols, mut out) = self.outlet();
        fanout::on_tick(symbols, &mut out, tick);
    }

    /// Adopts a feed's authoritative state and writes every client (see
    /// [`fanout::resync`]).
    pub fn resync(&mut self, reply: ResyncReply, cause: GapCause) {
        let (symbols, mut out) = self.outlet();
        fanout::resync(symbols, &mut out, reply, cause);
        self.flush_all();
    }

    /// Hands the throttled subscriptions whose interval has ended to their client's
    /// catch-up queue and writes them.
    pub fn fire_timers(&mut self, now: Instant) {
        let (_, mut out) = self.outlet();
        if out.fire_timers(now) {
            self.flush_all();
        }
    }

    /// When the next throttle deadline is due, if any.
    pub fn next_timer(&self) -> Option<Instant> {
        self.throttle.next_due()
    }

    // ---- writing ---------------------------------------------------------------------

    /// Writes the clients that are due: those whose oldest unwritten frame has waited
    /// the coalescing window (at once when the worker is lightly loaded).
    pub fn flush_due(&mut self) {
        let now = self.pass.now;
        let window = self.writes.window();
        self.write_batch(now, |since| since + window <= now, Some(MAX_BATCH));
    }

    /// When the next client is due, if one waits.
    pub fn flush_deadline(&self) -> Option<Instant> {
        self.writes.deadline()
    }

    /// Writes every client that got frames since its last write.
    pub fn flush_all(&mut self) {
        let now = self.clock.now();
        self.write_batch(now, |_| true, None);
    }

    /// Same as [`Core::flush_all`] (the name the harness tests use).
    pub fn flush_pending(&mut self) {
        self.flush_all();
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
        if self.writes.next_due(&due).is_none() {
            return;
        }
        // Real time, not the worker's clock: this bounds the batch's real cost.
        let started = Instant::now();
        let mut written = 0u32;
        while let Some(key) = self.writes.next_due(&due) {
            written += 1;
            if written.is_multiple_of(BATCH_CHECK_EVERY)
                && limit.is_some_and(|l| started.elapsed() >= l)
            {
                break;
            }
            let Some(client) = self.writes.take_front(&mut self.clients) else {
                continue;
            };
            if !client.blocked && self.flush_client_at(key, now).is_err() {
                // The peer is gone; its connection task removes it.
                self.close_client(key, CloseReason::Client, "", true);
            }
        }
        WorkerStats::add(&self.stats.flush_rounds, 1);
    }

    /// Writes one client now (a reply to its command), unless its socket is full.
    fn write_now(&mut self, key: ClientKey) {
        if self.clients.get(key).is_none_or(|c| c.blocked) {
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
        let (symbols, mut out) = self.outlet();
        write::flush_client(symbols, &mut out, key, now)
    }

    // ---- liveness --------------------------------------------------------------------

    /// Pings silent clients, closes dead peers (`1001`), idle readers and expired tokens
    /// (`1008`): every client at once.
    pub fn sweep(&mut self, now: Instant) {
        self.sweep_slots(now, 0, self.clients.slots());
    }

    /// [`Core::sweep`] for the clients in `count` slots from slot `from`; returns the slot
    /// to go on from (0 after the last). The worker sweeps its table in slices spread
    /// over the sweep period ([`liveness::sweep_slice`]), so that no fan-out pass waits
    /// for a whole sweep (about 0.7 µs a client, 0.7 ms for a thousand).
    pub fn sweep_slots(&mut self, now: Instant, from: u32, count: u32) -> u32 {
        let limits = Limits::of(&self.cfg);
        let end = from.saturating_add(count).min(self.clients.slots());
        for index in from..end {
            let Some(key) = self.clients.key_at(index) else {
                continue;
            };
            let Some(client) = self.clients.get_mut(key) else {
                continue;
            };
            match liveness::check(client, now, &limits) {
                Verdict::Fine => {}
                Verdict::Ping => self.send_ping(key, PING_PAYLOAD),
                Verdict::Close(reason, message) => self.close_client(key, reason, message, true),
            }
        }
        if end >= self.clients.slots() {
            0
        } else {
            end
        }
    }
}
