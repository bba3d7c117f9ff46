//! The state one fan-out worker owns: per-symbol market state, the subscription index,
//! its clients' outboxes and the pool of shared frames.
//!
//! Single-threaded by construction (`Rc<RefCell<Core>>` on the worker's current-thread
//! runtime): the fan-out task and the connection tasks borrow it in turn and never hold
//! the borrow across an `await`. No locks, and in steady state no allocation per event:
//! a tick is applied to the symbol's state, encoded once per channel (once per depth
//! group for books) into a pooled frame, and that frame is referenced by every
//! subscriber's outbox.
//!
//! Overload policy (guarantees 1–4 of the protocol): a frame goes into an outbox only
//! while it fits the client's byte budget. Otherwise the subscription is marked: a ticker
//! as dirty (the latest ticker goes out when there is room again), a book as stale (a
//! fresh snapshot goes out instead of the missed updates), trades as a gap (one `gap`
//! naming the exact skipped seqs, then trades resume). Marks are kept in the client's
//! `dirty` queue and served in order as its socket drains.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io;
use std::net::Shutdown;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use crate::config::EngineConfig;
use crate::feed::ResyncReply;
use crate::frames::{FrameId, FrameSlab};
use crate::latency::{Stage, StageRecorder};
use crate::outbox::{Outbox, WriteOutcome};
use crate::protocol::command::{Channel, ChannelSet, ErrorCode};
use crate::protocol::{encode, frame};
use crate::state::{Level, SymbolState};
use crate::stats::{CloseReason, WorkerStats};
use crate::symbol::{SymbolId, SymbolRegistry};
use crate::tick::{now_ns, BookSide, Event, Tick};

use super::signal::LocalSignal;

/// Identifies a client slot; the generation guards against a reused slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientKey {
    index: u32,
    generation: u32,
}

/// One subscription's options and overload marks.
#[derive(Clone, Copy, Debug, Default)]
struct ClientSub {
    channels: ChannelSet,
    depth: u16,
    ticker_throttle_ms: u32,
    book_throttle_ms: u32,
    /// Earliest time the next throttled ticker / book message may go.
    ticker_next: Option<Instant>,
    book_next: Option<Instant>,
    ticker_dirty: bool,
    book_stale: bool,
    /// Skipped trade seqs not yet reported: `(from, to)` inclusive.
    gap: Option<(u64, u64)>,
}

impl ClientSub {
    fn marks(&self) -> usize {
        usize::from(self.ticker_dirty)
            + usize::from(self.book_stale)
            + usize::from(self.gap.is_some())
    }
}

/// A connected WebSocket client, as the worker sees it.
pub struct Client {
    generation: u32,
    stream: Rc<TcpStream>,
    outbox: Outbox,
    subs: HashMap<SymbolId, ClientSub>,
    pairs: usize,
    /// Subscriptions holding an overload mark; 0 lets the fan-out skip the lookup.
    marked: usize,
    /// Throttled (symbol, channel) pairs; 0 lets the fan-out skip the lookup.
    throttled: usize,
    dirty: VecDeque<(SymbolId, Channel)>,
    in_flush_list: bool,
    blocked: bool,
    closing: Option<CloseReason>,
    writer: Rc<LocalSignal>,
    /// Last time the socket took bytes or had nothing pending.
    last_progress: Instant,
    /// Last time a frame arrived from the client.
    pub(crate) last_heard: Instant,
    /// When the last server ping went out.
    pub(crate) last_ping: Option<Instant>,
    /// Command rate limiter (tokens, last refill).
    tokens: f64,
    refilled: Instant,
    errors: VecDeque<Instant>,
}

/// A throttle deadline: (due, client index, generation, symbol, channel index).
type ThrottleTimer = (Instant, u32, u32, u32, usize);

/// Members of one book depth window of a symbol: they share update frames.
#[derive(Debug)]
struct DepthGroup {
    depth: u16,
    bids: Vec<Level>,
    asks: Vec<Level>,
    members: Vec<ClientKey>,
}

#[derive(Default)]
struct SymbolSlot {
    state: SymbolState,
    /// The latest ticker, encoded while anyone subscribes to it.
    ticker_frame: Option<FrameId>,
    ticker_subs: Vec<ClientKey>,
    trade_subs: Vec<ClientKey>,
    book_groups: Vec<DepthGroup>,
}

/// What a subscribe or unsubscribe did, for the reply.
#[derive(Debug, Default)]
pub struct SubscribeOutcome {
    /// Symbols the command applied to.
    pub applied: Vec<SymbolId>,
    /// Names the engine does not carry.
    pub unknown: Vec<String>,
}

/// The worker's state; see the module doc.
pub struct Core {
    cfg: Arc<EngineConfig>,
    registry: Arc<SymbolRegistry>,
    symbols: Vec<SymbolSlot>,
    clients: Vec<Option<Client>>,
    generations: Vec<u32>,
    free_clients: Vec<u32>,
    frames: FrameSlab,
    flush_list: Vec<ClientKey>,
    diff_bids: Vec<Level>,
    diff_asks: Vec<Level>,
    /// Throttle deadlines of marked subscriptions: (due, client index, generation,
    /// symbol, channel). Only subscriptions with a pending state are here, so idle and
    /// unthrottled clients cost nothing.
    timers: BinaryHeap<Reverse<ThrottleTimer>>,
    /// Wall clock (ns) of the current fan-out batch: the queueing time of its frames.
    clock_ns: u64,
    latency: StageRecorder,
    stats: Arc<WorkerStats>,
}

/// Whether `a` comes before `b` on `side` (better price).
fn better(side: BookSide, a: i64, b: i64) -> bool {
    match side {
        BookSide::Bid => a > b,
        BookSide::Ask => a < b,
    }
}

/// Appends to `out` the changes that turn window `old` into `new` (both best first),
/// then makes `old` a copy of `new`. Removed levels get size 0.
fn window_diff(side: BookSide, old: &mut Vec<Level>, new: &[Level], out: &mut Vec<Level>) {
    out.clear();
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        match (old.get(i), new.get(j)) {
            (Some(o), Some(n)) if o.price == n.price => {
                if o.size != n.size {
                    out.push(*n);
                }
                i += 1;
                j += 1;
            }
            (Some(o), Some(n)) if better(side, o.price, n.price) => {
                out.push(Level {
                    price: o.price,
                    size: 0,
                });
                i += 1;
            }
            (Some(o), None) => {
                out.push(Level {
                    price: o.price,
                    size: 0,
                });
                i += 1;
            }
            (_, Some(n)) => {
                out.push(*n);
                j += 1;
            }
            (None, None) => break,
        }
    }
    old.clear();
    old.extend_from_slice(new);
}

impl Core {
    /// A worker core for `registry`'s symbols.
    pub fn new(
        cfg: Arc<EngineConfig>,
        registry: Arc<SymbolRegistry>,
        stats: Arc<WorkerStats>,
    ) -> Core {
        let symbols = (0..registry.len()).map(|_| SymbolSlot::default()).collect();
        Core {
            cfg,
            registry,
            symbols,
            clients: Vec::new(),
            generations: Vec::new(),
            free_clients: Vec::new(),
            frames: FrameSlab::new(),
            flush_list: Vec::new(),
            diff_bids: Vec::new(),
            diff_asks: Vec::new(),
            timers: BinaryHeap::new(),
            clock_ns: now_ns(),
            latency: StageRecorder::new(stats.latency.clone()),
            stats,
        }
    }

    /// Sets the wall clock of the fan-out batch about to run (ns since the epoch).
    pub fn set_clock(&mut self, now_ns: u64) {
        self.clock_ns = now_ns;
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

    fn client(&self, key: ClientKey) -> Option<&Client> {
        self.clients
            .get(key.index as usize)?
            .as_ref()
            .filter(|c| c.generation == key.generation)
    }

    fn client_mut(&mut self, key: ClientKey) -> Option<&mut Client> {
        self.clients
            .get_mut(key.index as usize)?
            .as_mut()
            .filter(|c| c.generation == key.generation)
    }

    /// Registers a connected client.
    pub fn add_client(&mut self, stream: Rc<TcpStream>, writer: Rc<LocalSignal>) -> ClientKey {
        let now = Instant::now();
        let index = self.free_clients.pop().unwrap_or_else(|| {
            self.clients.push(None);
            self.generations.push(0);
            (self.clients.len() - 1) as u32
        });
        let generation = self.generations[index as usize].wrapping_add(1);
        self.generations[index as usize] = generation;
        self.clients[index as usize] = Some(Client {
            generation,
            stream,
            outbox: Outbox::new(self.cfg.outbox_budget_bytes),
            subs: HashMap::new(),
            pairs: 0,
            marked: 0,
            throttled: 0,
            dirty: VecDeque::new(),
            in_flush_list: false,
            blocked: false,
            closing: None,
            writer,
            last_progress: now,
            last_heard: now,
            last_ping: None,
            tokens: f64::from(self.cfg.commands_per_s),
            refilled: now,
            errors: VecDeque::new(),
        });
        WorkerStats::add(&self.stats.clients, 1);
        WorkerStats::add(&self.stats.connections_total, 1);
        ClientKey { index, generation }
    }

    /// Removes a client whose connection has ended, releasing everything it held.
    pub fn remove_client(&mut self, key: ClientKey) {
        let symbols: Vec<SymbolId> = match self.client(key) {
            Some(c) => c.subs.keys().copied().collect(),
            None => return,
        };
        for symbol in symbols {
            self.unsubscribe_one(key, symbol, ChannelSet::ALL);
        }
        if let Some(mut client) = self.clients[key.index as usize].take() {
            client.outbox.clear(&mut self.frames);
            if client.closing.is_none() {
                self.stats.count_close(CloseReason::Client);
            }
            self.free_clients.push(key.index);
            self.stats
                .clients
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Whether the client is gone or closing (its tasks should wind down).
    pub fn is_closing(&self, key: ClientKey) -> bool {
        self.client(key).is_none_or(|c| c.closing.is_some())
    }

    /// Starts closing a client: no more data is queued; what is queued is dropped when
    /// `discard` (a protocol violation or an unresponsive peer), and a close frame with
    /// the reason's code follows. The writer task flushes it and ends the connection.
    pub fn close_client(
        &mut self,
        key: ClientKey,
        reason: CloseReason,
        message: &str,
        discard: bool,
    ) {
        let Some(client) = self.client(key) else {
            return;
        };
        if client.closing.is_some() {
            return;
        }
        let symbols: Vec<SymbolId> = client.subs.keys().copied().collect();
        for symbol in symbols {
            self.unsubscribe_one(key, symbol, ChannelSet::ALL);
        }
        let now = now_ns();
        let frames = &mut self.frames;
        let Some(client) = live(&mut self.clients, key) else {
            return;
        };
        client.closing = Some(reason);
        client.dirty.clear();
        if discard {
            client.outbox.discard_unsent(frames);
        }
        self.stats.count_close(reason);
        if let Some(code) = reason.code() {
            let id = frames.control(|buf| frame::close_frame(buf, code, message));
            client.outbox.push(frames, id, now);
            frames.release(id);
        }
        client.writer.notify();
    }

    /// The client's socket, for its connection tasks.
    pub fn stream(&self, key: ClientKey) -> Option<Rc<TcpStream>> {
        self.client(key).map(|c| c.stream.clone())
    }

    /// Notes that a frame arrived from the client.
    pub fn heard(&mut self, key: ClientKey) {
        if let Some(c) = self.client_mut(key) {
            c.last_heard = Instant::now();
        }
    }

    /// Takes one token from the client's command budget; false when rate limited.
    pub fn take_command_token(&mut self, key: ClientKey) -> bool {
        let rate = f64::from(self.cfg.commands_per_s);
        let Some(c) = self.client_mut(key) else {
            return false;
        };
        let now = Instant::now();
        let refill = now.duration_since(c.refilled).as_secs_f64() * rate;
        c.tokens = (c.tokens + refill).min(rate);
        c.refilled = now;
        if c.tokens >= 1.0 {
            c.tokens -= 1.0;
            true
        } else {
            false
        }
    }

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
        let Some(c) = self.client_mut(key) else {
            return false;
        };
        let now = Instant::now();
        while c
            .errors
            .front()
            .is_some_and(|t| now.duration_since(*t).as_secs() >= 10)
        {
            c.errors.pop_front();
        }
        c.errors.push_back(now);
        if c.errors.len() > limit {
            self.close_client(key, CloseReason::Policy, "too many errors", false);
            return false;
        }
        WorkerStats::add(&self.stats.errors_sent, 1);
        self.send_control(key, |buf| encode::error(buf, id, code, message));
        true
    }

    /// Queues a control reply (not subject to conflation: replies are small and rate
    /// limited) and flushes.
    pub fn send_control(&mut self, key: ClientKey, encode: impl FnOnce(&mut Vec<u8>)) {
        if self.is_closing(key) {
            return;
        }
        let id = self.frames.text(encode);
        self.push_control(key, id);
    }

    /// Queues a ping or pong control frame and flushes.
    pub fn send_ping_pong(&mut self, key: ClientKey, ping: bool, payload: &[u8]) {
        if self.is_closing(key) {
            return;
        }
        let id = self.frames.control(|buf| {
            if ping {
                frame::ping_frame(buf, payload)
            } else {
                frame::pong_frame(buf, payload)
            }
        });
        if ping {
            if let Some(c) = self.client_mut(key) {
                c.last_ping = Some(Instant::now());
            }
        }
        self.push_control(key, id);
    }

    /// Queues a frame the caller holds, outside the budget, drops the caller's reference
    /// and flushes.
    fn push_control(&mut self, key: ClientKey, id: FrameId) {
        self.clock_ns = now_ns();
        if let Some(c) = live(&mut self.clients, key) {
            c.outbox.push(&mut self.frames, id, self.clock_ns);
        }
        self.frames.release(id);
        self.mark_for_flush(key);
        self.flush_pending();
    }

    fn mark_for_flush(&mut self, key: ClientKey) {
        if let Some(c) = live(&mut self.clients, key) {
            if !c.in_flush_list {
                c.in_flush_list = true;
                self.flush_list.push(key);
            }
        }
    }

    // ---- subscriptions -------------------------------------------------------------

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
        for name in names {
            match self.registry.lookup(name) {
                Some(s) if !outcome.applied.contains(&s) => outcome.applied.push(s),
                Some(_) => {}
                None => outcome.unknown.push(name.clone()),
            }
        }
        let Some(client) = self.client(key) else {
            return Ok(outcome);
        };
        let new_pairs: usize = outcome
            .applied
            .iter()
            .map(|s| {
                let held = client
                    .subs
                    .get(s)
                    .map_or(ChannelSet::default(), |c| c.channels);
                channels.iter().filter(|ch| !held.contains(*ch)).count()
            })
            .sum();
        if client.pairs + new_pairs > self.cfg.max_subscriptions {
            return Err((
                ErrorCode::TooManySubscriptions,
                format!(
                    "subscribing to {new_pairs} more symbol-channel pairs would pass the limit of {} (holding {})",
                    self.cfg.max_subscriptions, client.pairs
                ),
            ));
        }
        if !outcome.unknown.is_empty() {
            let message = format!("no such symbol: {}", outcome.unknown.join(", "));
            if !self.send_error(key, id, ErrorCode::UnknownSymbol, &message) {
                return Ok(outcome);
            }
        }
        if outcome.applied.is_empty() {
            return Ok(outcome);
        }
        let names: Vec<&str> = outcome
            .applied
            .iter()
            .map(|&s| self.registry.info(s).name.as_str())
            .collect();
        let reply_names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        let reply_refs: Vec<&str> = reply_names.iter().map(String::as_str).collect();
        self.send_control(key, |buf| {
            encode::subscribed(buf, id, channels, &reply_refs)
        });
        for &symbol in &outcome.applied {
            self.subscribe_one(key, symbol, channels, depth, throttle_ms);
        }
        self.flush_pending();
        Ok(outcome)
    }

    fn subscribe_one(
        &mut self,
        key: ClientKey,
        symbol: SymbolId,
        channels: ChannelSet,
        depth: u16,
        throttle_ms: u32,
    ) {
        let Some(client) = live(&mut self.clients, key) else {
            return;
        };
        let sub = client.subs.entry(symbol).or_default();
        let before = sub.marks();
        let held = sub.channels;
        let old_depth = sub.depth;
        for ch in channels.iter() {
            if !held.contains(ch) {
                client.pairs += 1;
                WorkerStats::add(&self.stats.subscriptions, 1);
            }
        }
        for ch in channels.iter() {
            sub.channels.insert(ch);
        }
        // A fresh snapshot supersedes pending ticker and book marks, and goes out at once:
        // the throttle interval starts when it is queued (`offer` sets the deadline).
        let next = None;
        if channels.contains(Channel::Ticker) {
            sub.ticker_dirty = false;
            client.throttled = client.throttled + usize::from(throttle_ms > 0)
                - usize::from(sub.ticker_throttle_ms > 0);
            sub.ticker_throttle_ms = throttle_ms;
            sub.ticker_next = next;
        }
        if channels.contains(Channel::Book) {
            sub.book_stale = false;
            sub.depth = depth;
            client.throttled = client.throttled + usize::from(throttle_ms > 0)
                - usize::from(sub.book_throttle_ms > 0);
            sub.book_throttle_ms = throttle_ms;
            sub.book_next = next;
        }
        client.marked = client.marked + sub.marks() - before;
        let slot = &mut self.symbols[symbol.index()];
        if channels.contains(Channel::Ticker) && !held.contains(Channel::Ticker) {
            slot.ticker_subs.push(key);
        }
        if channels.contains(Channel::Trades) && !held.contains(Channel::Trades) {
            slot.trade_subs.push(key);
        }
        if channels.contains(Channel::Book) {
            if held.contains(Channel::Book) {
                Self::leave_group(slot, key, old_depth);
            }
            Self::join_group(slot, key, depth);
        }
        // Snapshots, in channel order.
        if channels.contains(Channel::Ticker) {
            let frame = self.ticker_frame(symbol);
            self.offer(key, symbol, Channel::Ticker, frame);
        }
        if channels.contains(Channel::Book) {
            let frame = self.book_snapshot_frame(symbol, depth);
            self.offer(key, symbol, Channel::Book, frame);
            self.frames.release(frame);
        }
    }

    fn join_group(slot: &mut SymbolSlot, key: ClientKey, depth: u16) {
        if let Some(g) = slot.book_groups.iter_mut().find(|g| g.depth == depth) {
            g.members.push(key);
            return;
        }
        let d = usize::from(depth);
        slot.book_groups.push(DepthGroup {
            depth,
            bids: slot.state.book.top(BookSide::Bid, d).to_vec(),
            asks: slot.state.book.top(BookSide::Ask, d).to_vec(),
            members: vec![key],
        });
    }

    fn leave_group(slot: &mut SymbolSlot, key: ClientKey, depth: u16) {
        if let Some(gi) = slot.book_groups.iter().position(|g| g.depth == depth) {
            let g = &mut slot.book_groups[gi];
            if let Some(mi) = g.members.iter().position(|k| *k == key) {
                g.members.swap_remove(mi);
            }
            if g.members.is_empty() {
                slot.book_groups.swap_remove(gi);
            }
        }
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
        let Some(client) = live(&mut self.clients, key) else {
            return;
        };
        let Some(sub) = client.subs.get_mut(&symbol) else {
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
                    client.throttled -= usize::from(sub.ticker_throttle_ms > 0);
                    sub.ticker_throttle_ms = 0;
                }
                Channel::Trades => {
                    remove_key(&mut slot.trade_subs, key);
                    sub.gap = None;
                }
                Channel::Book => {
                    Self::leave_group(slot, key, sub.depth);
                    sub.book_stale = false;
                    client.throttled -= usize::from(sub.book_throttle_ms > 0);
                    sub.book_throttle_ms = 0;
                }
            }
        }
        for ch in channels.iter() {
            sub.channels.remove(ch);
        }
        client.marked = client.marked + sub.marks() - before;
        if sub.channels.is_empty() {
            client.subs.remove(&symbol);
        }
        if slot.ticker_subs.is_empty() {
            if let Some(f) = slot.ticker_frame.take() {
                self.frames.release(f);
            }
        }
    }

    // ---- encoding -------------------------------------------------------------------

    /// The symbol's latest ticker frame (encoded now if it is not yet); borrowed, not
    /// retained.
    fn ticker_frame(&mut self, symbol: SymbolId) -> FrameId {
        let slot = &mut self.symbols[symbol.index()];
        if let Some(f) = slot.ticker_frame {
            return f;
        }
        let id = self.frames.text(|buf| {
            encode::ticker(buf, self.registry.info(symbol), &slot.state.ticker);
        });
        slot.ticker_frame = Some(id);
        id
    }

    /// Notes a live event frame: its ingest time (for tick-to-wire) and the encode latency.
    fn encoded(&mut self, id: FrameId, ingest_ts: u64) {
        self.frames.set_ingest_ts(id, ingest_ts);
        self.latency
            .record(Stage::IngestToEncode, now_ns().saturating_sub(ingest_ts));
        WorkerStats::add(&self.stats.frames_encoded, 1);
    }

    /// A fresh snapshot frame of `symbol` at `depth`; the caller owns one reference.
    fn book_snapshot_frame(&mut self, symbol: SymbolId, depth: u16) -> FrameId {
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
        id
    }

    // ---- fan-out --------------------------------------------------------------------

    /// Applies one tick from a ring and queues the frames it causes for the subscribers.
    pub fn on_tick(&mut self, tick: &Tick) {
        let symbol = tick.symbol;
        let Some(slot) = self.symbols.get_mut(symbol.index()) else {
            return;
        };
        let applied = slot.state.apply(tick);
        if let Event::Trade {
            seq,
            price,
            size,
            side,
            trade_id,
        } = tick.event
        {
            if !slot.trade_subs.is_empty() {
                let id = self.frames.text(|buf| {
                    encode::trade(
                        buf,
                        self.registry.info(symbol),
                        seq,
                        price,
                        size,
                        side,
                        trade_id,
                        tick.ts,
                        tick.ingest_ts,
                    );
                });
                self.encoded(id, tick.ingest_ts);
                for i in 0..self.symbols[symbol.index()].trade_subs.len() {
                    let key = self.symbols[symbol.index()].trade_subs[i];
                    self.offer_trade(key, symbol, seq, id);
                }
                self.frames.release(id);
            }
        }
        if applied.book_done {
            self.fan_out_book(symbol);
        }
        if applied.ticker {
            let slot = &mut self.symbols[symbol.index()];
            if let Some(old) = slot.ticker_frame.take() {
                self.frames.release(old);
            }
            if !self.symbols[symbol.index()].ticker_subs.is_empty() {
                let frame = self.ticker_frame(symbol);
                self.encoded(frame, tick.ingest_ts);
                for i in 0..self.symbols[symbol.index()].ticker_subs.len() {
                    let key = self.symbols[symbol.index()].ticker_subs[i];
                    self.offer(key, symbol, Channel::Ticker, frame);
                }
            }
        }
    }

    fn fan_out_book(&mut self, symbol: SymbolId) {
        for gi in 0..self.symbols[symbol.index()].book_groups.len() {
            let id = {
                let Core {
                    registry,
                    symbols,
                    frames,
                    diff_bids,
                    diff_asks,
                    ..
                } = self;
                let slot = &mut symbols[symbol.index()];
                let state = &slot.state;
                let group = &mut slot.book_groups[gi];
                let d = usize::from(group.depth);
                window_diff(
                    BookSide::Bid,
                    &mut group.bids,
                    state.book.top(BookSide::Bid, d),
                    diff_bids,
                );
                window_diff(
                    BookSide::Ask,
                    &mut group.asks,
                    state.book.top(BookSide::Ask, d),
                    diff_asks,
                );
                let id = frames.text(|buf| {
                    encode::book(
                        buf,
                        registry.info(symbol),
                        state.book_seq,
                        false,
                        diff_bids,
                        diff_asks,
                        state.book_ts,
                        state.book_ingest_ts,
                    );
                });
                id
            };
            let ingest_ts = self.symbols[symbol.index()].state.book_ingest_ts;
            self.encoded(id, ingest_ts);
            for mi in 0..self.symbols[symbol.index()].book_groups[gi].members.len() {
                let key = self.symbols[symbol.index()].book_groups[gi].members[mi];
                self.offer(key, symbol, Channel::Book, id);
            }
            self.frames.release(id);
        }
    }

    /// Offers a state frame (ticker or book) to a client: queued when it fits, else the
    /// subscription is marked for a later catch-up.
    fn offer(&mut self, key: ClientKey, symbol: SymbolId, channel: Channel, id: FrameId) {
        let len = self.frames.len(id);
        let Some(client) = receiver(&mut self.clients, &mut self.flush_list, key) else {
            return;
        };
        if client.marked == 0 && client.throttled == 0 && client.outbox.has_room(len) {
            client.outbox.push(&mut self.frames, id, self.clock_ns);
        } else {
            let Some(sub) = client.subs.get_mut(&symbol) else {
                return;
            };
            let before = sub.marks();
            let (marked, throttle_ms, next) = match channel {
                Channel::Ticker => (
                    &mut sub.ticker_dirty,
                    sub.ticker_throttle_ms,
                    &mut sub.ticker_next,
                ),
                Channel::Book => (
                    &mut sub.book_stale,
                    sub.book_throttle_ms,
                    &mut sub.book_next,
                ),
                Channel::Trades => return,
            };
            let now = (throttle_ms > 0).then(Instant::now);
            let due = match (now, *next) {
                (Some(now), Some(due)) if due > now => Some(due),
                _ => None,
            };
            if *marked {
                WorkerStats::add(&self.stats.conflated, 1);
            } else if let Some(due) = due {
                // Throttled: hold the latest state until the interval ends.
                *marked = true;
                self.timers.push(Reverse((
                    due,
                    key.index,
                    key.generation,
                    symbol.0,
                    channel.index(),
                )));
                WorkerStats::add(&self.stats.conflated, 1);
            } else if client.outbox.has_room(len) {
                client.outbox.push(&mut self.frames, id, self.clock_ns);
                if let Some(now) = now {
                    *next = Some(now + Duration::from_millis(u64::from(throttle_ms)));
                }
            } else {
                *marked = true;
                client.dirty.push_back((symbol, channel));
                WorkerStats::add(&self.stats.conflated, 1);
                note_peak(&self.stats, &client.outbox);
            }
            client.marked = client.marked + sub.marks() - before;
        }
    }

    /// Offers a trade frame: queued when it fits and no gap is open, else the gap grows.
    fn offer_trade(&mut self, key: ClientKey, symbol: SymbolId, seq: u64, id: FrameId) {
        let len = self.frames.len(id);
        let Some(client) = receiver(&mut self.clients, &mut self.flush_list, key) else {
            return;
        };
        if client.marked == 0 && client.outbox.has_room(len) {
            client.outbox.push(&mut self.frames, id, self.clock_ns);
        } else {
            let Some(sub) = client.subs.get_mut(&symbol) else {
                return;
            };
            match sub.gap.as_mut() {
                Some((_, to)) => *to = seq,
                None if client.outbox.has_room(len) => {
                    client.outbox.push(&mut self.frames, id, self.clock_ns)
                }
                None => {
                    sub.gap = Some((seq, seq));
                    client.marked += 1;
                    client.dirty.push_back((symbol, Channel::Trades));
                    note_peak(&self.stats, &client.outbox);
                }
            }
        }
    }

    /// Serves a client's overload marks in order while its outbox has room.
    fn serve_marks(&mut self, key: ClientKey) {
        loop {
            let Some(client) = self.client_mut(key) else {
                return;
            };
            let Some(&(symbol, channel)) = client.dirty.front() else {
                return;
            };
            let Some(sub) = client.subs.get(&symbol).copied() else {
                client.dirty.pop_front();
                continue;
            };
            let (throttle_ms, next) = match channel {
                Channel::Ticker => (sub.ticker_throttle_ms, sub.ticker_next),
                Channel::Book => (sub.book_throttle_ms, sub.book_next),
                Channel::Trades => (0, None),
            };
            let now = Instant::now();
            if let Some(due) = next.filter(|due| throttle_ms > 0 && *due > now) {
                // Not yet: the throttle timer serves it when the interval ends.
                client.dirty.pop_front();
                self.timers.push(Reverse((
                    due,
                    key.index,
                    key.generation,
                    symbol.0,
                    channel.index(),
                )));
                continue;
            }
            let frame = match channel {
                Channel::Ticker if sub.ticker_dirty => {
                    let f = self.ticker_frame(symbol);
                    self.frames.retain(f);
                    f
                }
                Channel::Book if sub.book_stale => self.book_snapshot_frame(symbol, sub.depth),
                Channel::Trades => match sub.gap {
                    Some((from, to)) => {
                        let id = self.frames.text(|buf| {
                            encode::gap(
                                buf,
                                self.registry.info(symbol),
                                Channel::Trades,
                                from,
                                to,
                                "slow_consumer",
                            );
                        });
                        id
                    }
                    None => {
                        if let Some(c) = self.client_mut(key) {
                            c.dirty.pop_front();
                        }
                        continue;
                    }
                },
                _ => {
                    if let Some(c) = self.client_mut(key) {
                        c.dirty.pop_front();
                    }
                    continue;
                }
            };
            let len = self.frames.len(frame);
            let stats = self.stats.clone();
            let Some(client) = live(&mut self.clients, key) else {
                self.frames.release(frame);
                return;
            };
            if !client.outbox.has_room(len) {
                self.frames.release(frame);
                return;
            }
            client.outbox.push(&mut self.frames, frame, self.clock_ns);
            self.frames.release(frame);
            client.dirty.pop_front();
            client.marked -= 1;
            if let Some(sub) = client.subs.get_mut(&symbol) {
                let next =
                    (throttle_ms > 0).then(|| now + Duration::from_millis(u64::from(throttle_ms)));
                match channel {
                    Channel::Ticker => {
                        sub.ticker_dirty = false;
                        sub.ticker_next = next;
                    }
                    Channel::Book => {
                        sub.book_stale = false;
                        sub.book_next = next;
                        WorkerStats::add(&stats.snapshots_resent, 1);
                    }
                    Channel::Trades => {
                        if let Some((from, to)) = sub.gap.take() {
                            WorkerStats::add(&stats.gaps_sent, 1);
                            WorkerStats::add(&stats.trades_skipped, to - from + 1);
                        }
                    }
                }
            }
        }
    }

    /// Writes every client that got frames since the last call; clients whose socket is
    /// full are handed to their writer task.
    pub fn flush_pending(&mut self) {
        while let Some(key) = self.flush_list.pop() {
            if let Some(c) = self.client_mut(key) {
                c.in_flush_list = false;
                if !c.blocked && self.flush_client(key).is_err() {
                    // The peer is gone; its writer task removes it.
                    self.close_client(key, CloseReason::Client, "", true);
                }
            }
        }
    }

    /// Writes what the socket takes; serves overload marks as room appears. Returns
    /// `Ok(true)` when everything is written, `Ok(false)` when the socket is full.
    pub fn flush_client(&mut self, key: ClientKey) -> io::Result<bool> {
        let mut bytes = 0u64;
        let result = loop {
            let frames = &mut self.frames;
            let Some(client) = live(&mut self.clients, key) else {
                return Ok(true);
            };
            let stream = client.stream.clone();
            let before = client.outbox.pending_bytes();
            let frames_before = client.outbox.frames_written();
            let latency = &mut self.latency;
            let mut now = 0;
            let outcome = client.outbox.write_to(
                frames,
                |iov| stream.try_write_vectored(iov),
                |ingest_ts, queued_ns| {
                    if now == 0 {
                        now = now_ns();
                    }
                    if ingest_ts != 0 {
                        latency.record(Stage::TickToWire, now.saturating_sub(ingest_ts));
                    }
                    latency.record(Stage::OutboxWait, now.saturating_sub(queued_ns));
                },
            );
            let written = before - client.outbox.pending_bytes();
            bytes += written as u64;
            WorkerStats::add(
                &self.stats.messages_sent,
                client.outbox.frames_written() - frames_before,
            );
            if written > 0 || client.outbox.is_empty() {
                client.last_progress = Instant::now();
            }
            note_peak(&self.stats, &client.outbox);
            match outcome {
                Ok(WriteOutcome::Drained) => {
                    if client.dirty.is_empty() {
                        client.blocked = false;
                        break Ok(true);
                    }
                    let pending = client.dirty.len();
                    self.serve_marks(key);
                    let Some(client) = self.client(key) else {
                        return Ok(true);
                    };
                    if client.dirty.len() == pending && client.outbox.is_empty() {
                        break Ok(true);
                    }
                }
                Ok(WriteOutcome::Blocked) => {
                    if !client.blocked {
                        client.blocked = true;
                        client.writer.notify();
                    }
                    break Ok(false);
                }
                Err(e) => break Err(e),
            }
        };
        WorkerStats::add(&self.stats.bytes_sent, bytes);
        if let Some(c) = self.client(key) {
            if c.closing.is_some() && c.outbox.is_empty() {
                c.writer.notify();
            }
        }
        result
    }

    /// Whether the client has bytes waiting, and since when nothing moved.
    pub fn write_state(&self, key: ClientKey) -> Option<(bool, Instant)> {
        self.client(key)
            .map(|c| (!c.outbox.is_empty(), c.last_progress))
    }

    /// Shuts the socket's write side (after the close frame went out).
    pub fn shutdown_write(&self, key: ClientKey) {
        if let Some(c) = self.client(key) {
            // Failing to shut down a socket that is going away anyway changes nothing.
            let _ = socket2::SockRef::from(c.stream.as_ref()).shutdown(Shutdown::Write);
        }
    }

    /// Keys of every client (for housekeeping sweeps).
    pub fn client_keys(&self) -> Vec<ClientKey> {
        self.clients
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                c.as_ref().map(|c| ClientKey {
                    index: i as u32,
                    generation: c.generation,
                })
            })
            .collect()
    }

    /// Liveness view of a client: last frame heard, last ping sent.
    pub fn liveness(&self, key: ClientKey) -> Option<(Instant, Option<Instant>)> {
        self.client(key).map(|c| (c.last_heard, c.last_ping))
    }

    /// Adopts a feed's authoritative state after this worker was lapped: every
    /// subscription of the feed's symbols catches up (ticker latest, book snapshot, trade
    /// gap covering what was missed).
    pub fn resync(&mut self, reply: ResyncReply) {
        for (symbol, state) in reply.states {
            let Some(slot) = self.symbols.get_mut(symbol.index()) else {
                continue;
            };
            let missed_from = slot.state.trade_seq + 1;
            let missed_to = state.trade_seq;
            slot.state = state;
            if let Some(f) = slot.ticker_frame.take() {
                self.frames.release(f);
            }
            let book = &slot.state.book;
            for g in &mut slot.book_groups {
                let d = usize::from(g.depth);
                g.bids.clear();
                g.bids.extend_from_slice(book.top(BookSide::Bid, d));
                g.asks.clear();
                g.asks.extend_from_slice(book.top(BookSide::Ask, d));
            }
            let mut marks: Vec<(ClientKey, Channel)> = Vec::new();
            marks.extend(slot.ticker_subs.iter().map(|k| (*k, Channel::Ticker)));
            for g in &slot.book_groups {
                marks.extend(g.members.iter().map(|k| (*k, Channel::Book)));
            }
            if missed_to >= missed_from {
                marks.extend(slot.trade_subs.iter().map(|k| (*k, Channel::Trades)));
            }
            for (key, channel) in marks {
                let Some(client) = live(&mut self.clients, key) else {
                    continue;
                };
                let Some(sub) = client.subs.get_mut(&symbol) else {
                    continue;
                };
                let before = sub.marks();
                let fresh = match channel {
                    Channel::Ticker => !std::mem::replace(&mut sub.ticker_dirty, true),
                    Channel::Book => !std::mem::replace(&mut sub.book_stale, true),
                    Channel::Trades => match sub.gap.as_mut() {
                        Some((_, to)) => {
                            *to = missed_to;
                            false
                        }
                        None => {
                            sub.gap = Some((missed_from, missed_to));
                            true
                        }
                    },
                };
                if fresh {
                    client.dirty.push_back((symbol, channel));
                }
                client.marked = client.marked + sub.marks() - before;
                if !client.in_flush_list {
                    client.in_flush_list = true;
                    self.flush_list.push(key);
                }
            }
        }
        self.flush_pending();
    }

    /// Hands the throttled subscriptions whose interval has ended to their client's
    /// catch-up queue and flushes them.
    pub fn fire_timers(&mut self, now: Instant) {
        while let Some(&Reverse((due, index, generation, symbol, channel))) = self.timers.peek() {
            if due > now {
                break;
            }
            self.timers.pop();
            let key = ClientKey { index, generation };
            let symbol = SymbolId(symbol);
            let channel = Channel::ALL[channel];
            let Some(client) = self.client_mut(key) else {
                continue;
            };
            let still_marked = client.subs.get(&symbol).is_some_and(|sub| match channel {
                Channel::Ticker => sub.ticker_dirty,
                Channel::Book => sub.book_stale,
                Channel::Trades => false,
            });
            if still_marked {
                client.dirty.push_back((symbol, channel));
                if !client.in_flush_list {
                    client.in_flush_list = true;
                    self.flush_list.push(key);
                }
            }
        }
        self.flush_pending();
    }

    /// When the next throttle timer is due, if any.
    pub fn next_timer(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse(t)| t.0)
    }

    /// The symbol's current state in this worker.
    pub fn symbol_state(&self, symbol: SymbolId) -> Option<&SymbolState> {
        self.symbols.get(symbol.index()).map(|s| &s.state)
    }
}

/// Publishes an outbox's peak to the worker's counter (when it is a new high).
fn note_peak(stats: &WorkerStats, outbox: &Outbox) {
    let peak = outbox.peak_bytes() as u64;
    if peak
        > stats
            .peak_outbox_bytes
            .load(std::sync::atomic::Ordering::Relaxed)
    {
        stats
            .peak_outbox_bytes
            .fetch_max(peak, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The client at `key`, if that slot still holds the same client (split-borrow form of
/// `Core::client_mut`).
fn live(clients: &mut [Option<Client>], key: ClientKey) -> Option<&mut Client> {
    clients
        .get_mut(key.index as usize)?
        .as_mut()
        .filter(|c| c.generation == key.generation)
}

/// The client at `key` if it still takes data (not closing), put on the flush list since
/// the caller is about to queue for it.
fn receiver<'a>(
    clients: &'a mut [Option<Client>],
    flush_list: &mut Vec<ClientKey>,
    key: ClientKey,
) -> Option<&'a mut Client> {
    let client = live(clients, key)?;
    if client.closing.is_some() {
        return None;
    }
    if !client.in_flush_list {
        client.in_flush_list = true;
        flush_list.push(key);
    }
    Some(client)
}

fn remove_key(list: &mut Vec<ClientKey>, key: ClientKey) {
    if let Some(i) = list.iter().position(|k| *k == key) {
        list.swap_remove(i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lv(levels: &[(i64, i64)]) -> Vec<Level> {
        levels
            .iter()
            .map(|&(price, size)| Level { price, size })
            .collect()
    }

    #[test]
    fn window_diff_reports_changes_entries_and_exits() {
        let mut out = Vec::new();
        let mut old = lv(&[(100, 1), (99, 1), (98, 1)]);
        // 101 enters at the top, 98 falls out of a depth-3 window, 99 changes size.
        let new = lv(&[(101, 5), (100, 1), (99, 2)]);
        window_diff(BookSide::Bid, &mut old, &new, &mut out);
        assert_eq!(out, lv(&[(101, 5), (99, 2), (98, 0)]));
        assert_eq!(old, new);
        let mut old = lv(&[(10, 1), (11, 1)]);
        window_diff(BookSide::Ask, &mut old, &lv(&[(11, 1), (12, 3)]), &mut out);
        assert_eq!(out, lv(&[(10, 0), (12, 3)]));
        let mut old = lv(&[(10, 1)]);
        window_diff(BookSide::Ask, &mut old, &[], &mut out);
        assert_eq!(out, lv(&[(10, 0)]));
    }
}
