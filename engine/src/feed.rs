//! The feed side of the data path: the [`Feed`] trait that every handler implements, and
//! the [`Publisher`] through which a handler turns venue events into ticks on its ring.
//!
//! A feed runs on its own thread and owns its `Publisher`. The publisher assigns the
//! per-channel seqs, keeps the authoritative [`SymbolState`] of the feed's symbols, pushes
//! ticks into the ring and publishes each venue message's ticks together. It never waits
//! for a consumer. A worker that was lapped asks the feed for a [`ResyncReply`] over a
//! channel that the publisher serves between messages; that path allocates, the
//! per-event path does not (once the book has grown to its working size).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use thiserror::Error;

use crate::latency::{Stage, StageRecorder};
use crate::ring::{Consumer, Producer};
use crate::state::SymbolState;
use crate::symbol::{SymbolId, SymbolRegistryBuilder};
use crate::tick::{now_ns, Aggressor, BookSide, Event, LevelFlags, Tick};

/// An error a feed handler reports; the engine logs it and counts it.
#[derive(Debug, Error)]
pub enum FeedError {
    /// The feed's configuration is unusable.
    #[error("feed config: {0}")]
    Config(String),
    /// Registering the feed's symbols failed.
    #[error(transparent)]
    Symbol(#[from] crate::symbol::SymbolError),
    /// I/O with the venue or the recording failed.
    #[error("feed I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// A source of market data: a simulator, a recording, an exchange.
pub trait Feed: Send + 'static {
    /// Short name (`sim`, `binance`, ...) used in logs and `/stats`.
    fn name(&self) -> &str;

    /// Declares the feed's instruments; called once, before any feed or worker starts.
    /// Returns the ids it registered.
    fn register(&mut self, symbols: &mut SymbolRegistryBuilder)
        -> Result<Vec<SymbolId>, FeedError>;

    /// Runs the feed on the calling thread until `shutdown` is set, publishing through
    /// `publisher`. It must call [`Publisher::flush`] after each venue message (or batch of
    /// them) and at least every few milliseconds while idle, so resync requests are served.
    ///
    /// After a panic the engine calls `run` again on the same feed (see
    /// [`crate::supervise`]): it must start over as after a reconnection (fresh
    /// connection, subscriptions, books), keeping what lets it tell the trades it lost.
    fn run(&mut self, publisher: &mut Publisher, shutdown: &AtomicBool) -> Result<(), FeedError>;
}

/// Connection state of a feed, as `/health` and `/stats` report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FeedState {
    /// Starting or reconnecting.
    Connecting = 0,
    /// Receiving data.
    Live = 1,
    /// Lost its source; will retry.
    Disconnected = 2,
    /// Ended (shutdown, end of a recording, or a fatal error).
    Stopped = 3,
    /// Connected, but rebuilding one or more symbols' books after a sequence gap or a
    /// bad checksum (the other symbols keep flowing).
    Resyncing = 4,
    /// Panicked; restarting after a backoff (see [`crate::supervise`]).
    Restarting = 5,
}

impl FeedState {
    /// Lower-case name for JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            FeedState::Connecting => "connecting",
            FeedState::Live => "live",
            FeedState::Disconnected => "disconnected",
            FeedState::Stopped => "stopped",
            FeedState::Resyncing => "resyncing",
            FeedState::Restarting => "restarting",
        }
    }

    fn from_u8(v: u8) -> FeedState {
        match v {
            1 => FeedState::Live,
            2 => FeedState::Disconnected,
            3 => FeedState::Stopped,
            4 => FeedState::Resyncing,
            5 => FeedState::Restarting,
            _ => FeedState::Connecting,
        }
    }
}

/// Counters of one feed, written by its thread, read by anyone (Relaxed: they are
/// statistics and order nothing).
#[derive(Debug, Default)]
pub struct FeedStats {
    state: AtomicU8,
    /// Venue messages received.
    pub messages: AtomicU64,
    /// Ticks published.
    pub ticks: AtomicU64,
    /// Venue messages that could not be decoded (counted and logged, never fatal).
    pub decode_errors: AtomicU64,
    /// Reconnects to the venue.
    pub reconnects: AtomicU64,
    /// Restarts after the feed panicked.
    pub restarts: AtomicU64,
    /// Sequence gaps detected in the venue's stream (books and trades).
    pub gaps: AtomicU64,
    /// Book checksums that did not match the venue's (each one resyncs that book).
    pub checksum_failures: AtomicU64,
    /// Per-symbol book resyncs started by the feed (after a gap, a bad checksum or a
    /// reconnect): a fresh snapshot fetched or resubscribed.
    pub resyncs: AtomicU64,
    /// Venue trades known to be missed (trade-id gaps), published as skipped seqs.
    pub trades_missed: AtomicU64,
    /// Resyncs served to lapped workers.
    pub resyncs_served: AtomicU64,
    /// Ticks published during the last full second.
    pub ticks_last_second: AtomicU64,
    /// Why the feed is not live, when it is not.
    pub last_error: std::sync::OnceLock<String>,
    /// This feed's latency histograms (feed_decode, exchange_to_ingest).
    pub latency: crate::latency::LatencySlot,
}

impl FeedStats {
    /// Current state.
    pub fn state(&self) -> FeedState {
        FeedState::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// Sets the state.
    pub fn set_state(&self, state: FeedState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }
}

/// What a worker asks a feed for after it was lapped.
#[derive(Debug)]
pub struct ResyncRequest {
    /// Where the reply goes.
    pub reply: tokio::sync::oneshot::Sender<ResyncReply>,
    /// Seqs to continue (see [`FeedShared::request_rebase`]); empty for a plain resync.
    pub rebase: Vec<(SymbolId, SymbolState)>,
}

/// The feed's authoritative state, taken between two published batches.
#[derive(Debug)]
pub struct ResyncReply {
    /// Ring position the state is current at: resume consuming from here.
    pub position: u64,
    /// State of every symbol of the feed.
    pub states: Vec<(SymbolId, SymbolState)>,
}

/// The part of a feed that workers and the control plane see.
#[derive(Debug)]
pub struct FeedShared {
    /// The feed's name.
    pub name: String,
    /// The feed's symbols.
    pub symbols: Vec<SymbolId>,
    /// Its counters.
    pub stats: FeedStats,
    resync_tx: Sender<ResyncRequest>,
    /// The states adopted lately ([`Publisher::adopt`]), by the ring position of their
    /// [`Event::Reset`]: a consumer that reads the reset takes the symbol's new state
    /// from here and goes on reading, so the other symbols lose nothing. Bounded
    /// ([`RESETS_KEPT`]); a consumer that finds nothing resyncs the whole feed. A lock,
    /// taken only by an adopt and by a consumer at a reset: cold paths.
    resets: std::sync::Mutex<std::collections::VecDeque<(u64, SymbolId, SymbolState)>>,
}

/// Adopted states a feed keeps for its consumers to pick up (see `FeedShared::resets`).
pub const RESETS_KEPT: usize = 1024;

impl FeedShared {
    /// Asks the feed for its state; the reply arrives on the returned receiver.
    pub fn request_resync(&self) -> tokio::sync::oneshot::Receiver<ResyncReply> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        // A send fails only when the feed thread is gone; the dropped sender then closes
        // `rx`, which the worker treats as "no resync possible".
        let _ = self.resync_tx.send(ResyncRequest {
            reply: tx,
            rebase: Vec::new(),
        });
        rx
    }

    /// Asks the feed to continue the seqs of `seqs` (states published elsewhere: a
    /// cluster standby taking over from the node that led): each symbol keeps its own
    /// book and prices, and its trade, book and ticker seqs are raised to at least
    /// those given, adopted as with [`Publisher::adopt`]. The reply is the feed's state
    /// after that, at a ring position past the resets.
    pub fn request_rebase(
        &self,
        seqs: Vec<(SymbolId, SymbolState)>,
    ) -> tokio::sync::oneshot::Receiver<ResyncReply> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        // As in `request_resync`: a feed that is gone closes `rx`.
        let _ = self.resync_tx.send(ResyncRequest {
            reply: tx,
            rebase: seqs,
        });
        rx
    }

    /// The state adopted by the [`Event::Reset`] at ring `position`, when still kept.
    pub fn reset_state(&self, position: u64) -> Option<(SymbolId, SymbolState)> {
        let resets = self.resets.lock().ok()?;
        resets
            .iter()
            .find(|(at, ..)| *at == position)
            .map(|(_, id, state)| (*id, state.clone()))
    }
}

/// Turns a feed's venue events into ticks on its ring; owned by the feed thread.
pub struct Publisher {
    producer: Producer<Tick>,
    states: Vec<SymbolState>,
    shared: Arc<FeedShared>,
    resync_rx: Receiver<ResyncRequest>,
    ingest_ts: u64,
    /// Start of the venue message being published, 0 when none is open.
    message_started_ns: u64,
    unpublished: u64,
    batch: Option<BookBatch>,
    latency: StageRecorder,
    /// Start of the current one-second rate window, and the tick count at its start.
    rate_window: (u64, u64),
    interest: Option<Arc<crate::interest::Interest>>,
}

struct BookBatch {
    symbol: SymbolId,
    seq: u64,
    ts: u64,
    /// The event replaces the whole book.
    clearing: bool,
    /// The next tick pushed must carry `CLEAR`.
    clear_pending: bool,
    held: Option<Tick>,
}

impl BookBatch {
    /// A level tick of this book event (`ingest_ts` 0 = stamped by no message: use `ts`).
    fn level_tick(
        &self,
        ingest_ts: u64,
        side: BookSide,
        price: i64,
        size: i64,
        flags: LevelFlags,
    ) -> Tick {
        Tick {
            symbol: self.symbol,
            ts: self.ts,
            ingest_ts: if ingest_ts == 0 { self.ts } else { ingest_ts },
            event: Event::Level {
                seq: self.seq,
                side,
                price,
                size,
                flags,
            },
        }
    }
}

impl Publisher {
    /// A publisher for a feed named `name` carrying `symbols` (ids below `symbol_count`).
    pub fn new(
        name: &str,
        symbols: Vec<SymbolId>,
        symbol_count: usize,
        producer: Producer<Tick>,
    ) -> Publisher {
        let (resync_tx, resync_rx) = crossbeam_channel::unbounded();
        let stats = FeedStats::default();
        let latency = StageRecorder::new(stats.latency.clone());
        Publisher {
            producer,
            states: vec![SymbolState::default(); symbol_count],
            shared: Arc::new(FeedShared {
                name: name.to_owned(),
                symbols,
                stats,
                resync_tx,
                resets: std::sync::Mutex::new(std::collections::VecDeque::new()),
            }),
            resync_rx,
            ingest_ts: 0,
            message_started_ns: 0,
            unpublished: 0,
            batch: None,
            latency,
            rate_window: (0, 0),
            interest: None,
        }
    }

    /// Gives the feed the engine's per-symbol interest (set by the engine at start).
    pub fn set_interest(&mut self, interest: Arc<crate::interest::Interest>) {
        self.interest = Some(interest);
    }

    /// Which symbols the engine's clients want, for a feed that can choose what it
    /// receives; `None` outside an engine.
    pub fn interest(&self) -> Option<&Arc<crate::interest::Interest>> {
        self.interest.as_ref()
    }

    /// The handle workers and the control plane keep.
    pub fn shared(&self) -> &Arc<FeedShared> {
        &self.shared
    }

    /// Registers a worker's parker, woken after each publish. Call before the feed starts.
    pub fn add_waker(&mut self, parker: crate::sync::Arc<crate::wake::Parker>) {
        self.producer.add_waker(parker);
    }

    /// A consumer of this feed's ring, starting at the current position.
    pub fn subscribe(&self) -> Consumer<Tick> {
        self.producer.subscribe()
    }

    /// The authoritative state of `symbol`.
    pub fn state(&self, symbol: SymbolId) -> &SymbolState {
        &self.states[symbol.index()]
    }

    /// Marks the arrival of one venue message: stamps `ingest_ts` for the ticks that
    /// follow, and counts it. Returns the stamp.
    pub fn begin_message(&mut self) -> u64 {
        let now = now_ns();
        self.end_message(now);
        self.ingest_ts = now;
        self.message_started_ns = now;
        self.shared.stats.messages.fetch_add(1, Ordering::Relaxed);
        self.ingest_ts
    }

    /// Records how long the open venue message took to turn into ticks.
    fn end_message(&mut self, now: u64) {
        if self.message_started_ns != 0 {
            self.latency.record(
                Stage::FeedDecode,
                now.saturating_sub(self.message_started_ns),
            );
            self.message_started_ns = 0;
        }
    }

    /// Like [`Publisher::begin_message`] with a given ingest time (replay, tests).
    pub fn begin_message_at(&mut self, ingest_ts: u64) {
        self.ingest_ts = ingest_ts;
        self.shared.stats.messages.fetch_add(1, Ordering::Relaxed);
    }

    fn push(&mut self, tick: Tick) {
        self.states[tick.symbol.index()].apply(&tick);
        self.producer.push(tick);
        self.unpublished += 1;
    }

    fn stamp(&mut self, ts: Option<u64>) -> (u64, u64) {
        let ingest = if self.ingest_ts == 0 {
            now_ns()
        } else {
            self.ingest_ts
        };
        if let Some(ts) = ts {
            // A venue clock ahead of ours shows as 0, not as a wrap-around.
            self.latency
                .record(Stage::ExchangeToIngest, ingest.saturating_sub(ts));
        }
        (ts.unwrap_or(ingest), ingest)
    }

    /// Publishes one trade (`ts` = venue time, `None` when the venue gives none).
    pub fn trade(
        &mut self,
        symbol: SymbolId,
        ts: Option<u64>,
        price: i64,
        size: i64,
        side: Option<Aggressor>,
        trade_id: u64,
    ) {
        self.end_book();
        let (ts, ingest_ts) = self.stamp(ts);
        let seq = self.states[symbol.index()].trade_seq + 1;
        self.push(Tick {
            symbol,
            ts,
            ingest_ts,
            event: Event::Trade {
                seq,
                price,
                size,
                side,
                trade_id,
            },
        });
    }

    /// Records that `missed` venue trades of `symbol` will never be published (the venue's
    /// trade ids jumped, or a reconnect lost them): the next trade's seq is raised by
    /// `missed`, so the skipped seqs stand for the lost trades and consumers see the jump
    /// (the fan-out reports it to clients as a `gap`). Counts one gap.
    pub fn skip_trades(&mut self, symbol: SymbolId, missed: u64) {
        if missed == 0 {
            return;
        }
        self.end_book();
        let state = &mut self.states[symbol.index()];
        state.trade_seq = state.trade_seq.saturating_add(missed);
        let stats = &self.shared.stats;
        stats.gaps.fetch_add(1, Ordering::Relaxed);
        stats.trades_missed.fetch_add(missed, Ordering::Relaxed);
    }

    /// Republishes a tick as it is, with the seqs it carries (a cluster edge passing on
    /// what its feed node published). Nothing is checked or dropped here: the caller
    /// keeps the seqs contiguous (see [`Publisher::skip_trades`]) or adopts a state.
    pub fn republish(&mut self, tick: Tick) {
        if matches!(tick.event, Event::Reset) {
            return;
        }
        self.end_book();
        self.push(tick);
    }

    /// Replaces the authoritative state of `symbol` (a snapshot from elsewhere: a cluster
    /// edge catching up, a feed seeded with the cluster's last state) and tells every
    /// consumer: the ring carries one [`Event::Reset`], at which a worker takes the new
    /// state ([`FeedShared::reset_state`]), so that symbol's clients get a fresh ticker, a
    /// book snapshot and a `gap` naming exactly the trades they missed; the other symbols
    /// go on untouched. Cold path: clones the state and takes a lock.
    #[cold]
    pub fn adopt(&mut self, symbol: SymbolId, state: SymbolState) {
        self.end_book();
        let Some(slot) = self.states.get_mut(symbol.index()) else {
            return;
        };
        let at = self.producer.cursor() + self.producer.pending();
        if let Ok(mut resets) = self.shared.resets.lock() {
            if resets.len() == RESETS_KEPT {
                resets.pop_front();
            }
            resets.push_back((at, symbol, state.clone()));
        }
        *slot = state;
        let now = now_ns();
        // Pushed past `push`: a reset is not applied to any state.
        self.producer.push(Tick {
            symbol,
            ts: now,
            ingest_ts: now,
            event: Event::Reset,
        });
        self.unpublished += 1;
    }

    /// Publishes a best bid/offer (size 0 = no level on that side).
    pub fn quote(&mut self, symbol: SymbolId, ts: Option<u64>, bid: (i64, i64), ask: (i64, i64)) {
        let (ts, ingest_ts) = self.stamp(ts);
        self.push(Tick {
            symbol,
            ts,
            ingest_ts,
            event: Event::Quote {
                bid: bid.0,
                bid_size: bid.1,
                ask: ask.0,
                ask_size: ask.1,
            },
        });
    }

    /// Starts one book event of `symbol`; `clear` makes it a full snapshot that replaces
    /// the book. Follow with [`Publisher::level`] calls and [`Publisher::end_book`].
    pub fn begin_book(&mut self, symbol: SymbolId, ts: Option<u64>, clear: bool) {
        self.end_book();
        let (ts, _) = self.stamp(ts);
        self.batch = Some(BookBatch {
            symbol,
            seq: self.states[symbol.index()].book_seq + 1,
            ts,
            clearing: clear,
            clear_pending: clear,
            held: None,
        });
    }

    /// One level of the current book event; size 0 removes the level. Levels that change
    /// nothing are dropped (a snapshot's levels are all kept).
    pub fn level(&mut self, side: BookSide, price: i64, size: i64) {
        let Some(batch) = self.batch.as_mut() else {
            debug_assert!(false, "level() outside begin_book/end_book");
            return;
        };
        let size = size.max(0);
        if batch.clearing {
            // A full book: every level is new (the old book is going away), and there is
            // nothing to remove.
            if size == 0 {
                return;
            }
        }
        let current = if batch.clearing {
            0
        } else if let Some(held) = batch.held {
            // The held tick is not applied yet: look through it.
            match held.event {
                Event::Level {
                    side: s,
                    price: p,
                    size: z,
                    ..
                } if s == side && p == price => z,
                _ => self.states[batch.symbol.index()].book.size_at(side, price),
            }
        } else {
            self.states[batch.symbol.index()].book.size_at(side, price)
        };
        if !batch.clearing && current == size {
            return;
        }
        let clear = std::mem::take(&mut batch.clear_pending);
        let flags = if clear {
            LevelFlags::CLEAR
        } else {
            LevelFlags::default()
        };
        let tick = batch.level_tick(self.ingest_ts, side, price, size, flags);
        if let Some(prev) = batch.held.replace(tick) {
            self.push(prev);
        }
    }

    /// Ends the current book event: its last changed level carries `BATCH_END`. An event
    /// that changed nothing publishes nothing and uses no seq.
    pub fn end_book(&mut self) {
        let Some(batch) = self.batch.take() else {
            return;
        };
        let last = match batch.held {
            Some(tick) => Some(tick),
            // An empty snapshot still replaces the book: one removal of nothing.
            None if batch.clear_pending => {
                Some(batch.level_tick(self.ingest_ts, BookSide::Bid, 0, 0, LevelFlags::CLEAR))
            }
            None => None,
        };
        if let Some(mut tick) = last {
            if let Event::Level { ref mut flags, .. } = tick.event {
                *flags = *flags | LevelFlags::BATCH_END;
            }
            self.push(tick);
        }
    }

    /// Makes everything pushed so far visible to the workers (one release of the ring's
    /// cursor, which wakes parked workers) and serves pending resync requests.
    pub fn flush(&mut self) {
        self.end_book();
        let now = now_ns();
        self.end_message(now);
        self.latency.publish_if_due(now);
        self.update_rate(now);
        if self.unpublished > 0 {
            self.producer.publish();
            self.shared
                .stats
                .ticks
                .fetch_add(self.unpublished, Ordering::Relaxed);
            self.unpublished = 0;
        }
        if !self.resync_rx.is_empty() {
            self.serve_resyncs();
        }
    }

    /// Once a second: how many ticks the last second published.
    fn update_rate(&mut self, now: u64) {
        let (started, at_start) = self.rate_window;
        if now.saturating_sub(started) >= 1_000_000_000 {
            let ticks = self.shared.stats.ticks.load(Ordering::Relaxed);
            if started != 0 {
                let per_s = (ticks - at_start) * 1_000_000_000 / (now - started);
                self.shared
                    .stats
                    .ticks_last_second
                    .store(per_s, Ordering::Relaxed);
            }
            self.rate_window = (now, ticks);
        }
    }

    #[cold]
    fn serve_resyncs(&mut self) {
        while let Ok(request) = self.resync_rx.try_recv() {
            if !request.rebase.is_empty() {
                for (id, given) in request.rebase {
                    let Some(own) = self.states.get(id.index()) else {
                        continue;
                    };
                    let mut own = own.clone();
                    own.trade_seq = own.trade_seq.max(given.trade_seq);
                    own.book_seq = own.book_seq.max(given.book_seq);
                    own.ticker.seq = own.ticker.seq.max(given.ticker.seq);
                    self.adopt(id, own);
                }
                // The resets go out before the reply's position.
                self.producer.publish();
                self.shared
                    .stats
                    .ticks
                    .fetch_add(self.unpublished, Ordering::Relaxed);
                self.unpublished = 0;
            }
            let states = self
                .shared
                .symbols
                .iter()
                .map(|&id| (id, self.states[id.index()].clone()))
                .collect();
            let reply = ResyncReply {
                position: self.producer.cursor(),
                states,
            };
            // The worker may have gone away meanwhile; nothing to do then.
            let _ = request.reply.send(reply);
            self.shared
                .stats
                .resyncs_served
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::{self, RecvError};

    fn drain(c: &mut Consumer<Tick>) -> Vec<Tick> {
        let mut out = Vec::new();
        loop {
            match c.try_recv() {
                Ok(t) => out.push(t),
                Err(RecvError::Empty) => return out,
                Err(e) => panic!("{e:?}"),
            }
        }
    }

    fn levels(ticks: &[Tick]) -> Vec<(u64, i64, i64, u8)> {
        ticks
            .iter()
            .filter_map(|t| match t.event {
                Event::Level {
                    seq,
                    price,
                    size,
                    flags,
                    ..
                } => Some((seq, price, size, flags.0)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn assigns_seqs_flags_batches_and_drops_no_ops() {
        let s = SymbolId(0);
        let mut p = Publisher::new("t", vec![s], 1, ring::ring(64).0);
        let mut c = p.subscribe();
        p.begin_message_at(10);
        p.begin_book(s, Some(9), true);
        p.level(BookSide::Bid, 100, 5);
        p.level(BookSide::Ask, 101, 5);
        p.end_book();
        p.trade(s, None, 100, 1, Some(Aggressor::Sell), 1);
        p.flush();
        let got = drain(&mut c);
        assert_eq!(levels(&got), [(1, 100, 5, 2), (1, 101, 5, 1)]);
        assert!(matches!(got[2].event, Event::Trade { seq: 1, .. }));
        assert_eq!(
            (got[2].ts, got[2].ingest_ts),
            (10, 10),
            "no venue time: ts = ingest_ts"
        );

        // Same sizes again change nothing: no tick, no seq used.
        p.begin_book(s, None, false);
        p.level(BookSide::Bid, 100, 5);
        p.level(BookSide::Ask, 102, 0);
        p.end_book();
        p.flush();
        assert!(drain(&mut c).is_empty());

        // A level set twice in one batch: the held tick is looked through.
        p.begin_book(s, None, false);
        p.level(BookSide::Bid, 99, 3);
        p.level(BookSide::Bid, 99, 3);
        p.level(BookSide::Bid, 100, 0);
        p.flush();
        assert_eq!(levels(&drain(&mut c)), [(2, 99, 3, 0), (2, 100, 0, 1)]);
        assert_eq!(p.state(s).book_seq, 2);
        assert_eq!(p.state(s).book.bids().len(), 1);
    }

    #[test]
    fn a_second_snapshot_replaces_the_book_whole() {
        let s = SymbolId(0);
        let mut p = Publisher::new("t", vec![s], 1, ring::ring(64).0);
        let mut c = p.subscribe();
        for _ in 0..2 {
            p.begin_book(s, None, true);
            p.level(BookSide::Bid, 100, 5);
            p.level(BookSide::Bid, 99, 5);
            p.level(BookSide::Ask, 101, 5);
            p.level(BookSide::Ask, 102, 0);
            p.end_book();
            p.flush();
        }
        let mut worker = SymbolState::default();
        for t in drain(&mut c) {
            worker.apply(&t);
        }
        assert_eq!(p.state(s).book.bids().len(), 2);
        assert_eq!(p.state(s).book.asks().len(), 1);
        assert_eq!(&worker, p.state(s), "consumers rebuild the same book");
        assert_eq!(worker.book_seq, 2);
    }

    #[test]
    fn a_trade_closes_an_open_book_event_first() {
        let s = SymbolId(0);
        let mut p = Publisher::new("t", vec![s], 1, ring::ring(64).0);
        let mut c = p.subscribe();
        p.begin_book(s, None, false);
        p.level(BookSide::Bid, 100, 5);
        p.trade(s, None, 100, 1, None, 1);
        p.flush();
        let got = drain(&mut c);
        assert!(
            matches!(got[0].event, Event::Level { flags, .. } if flags.contains(LevelFlags::BATCH_END))
        );
        assert!(matches!(got[1].event, Event::Trade { .. }));
    }

    #[test]
    fn skipped_trades_raise_the_next_seq() {
        let s = SymbolId(0);
        let mut p = Publisher::new("t", vec![s], 1, ring::ring(64).0);
        let mut c = p.subscribe();
        p.trade(s, None, 5, 1, None, 10);
        p.skip_trades(s, 3);
        p.skip_trades(s, 0);
        p.trade(s, None, 5, 1, None, 14);
        p.flush();
        let seqs: Vec<u64> = drain(&mut c)
            .iter()
            .filter_map(|t| match t.event {
                Event::Trade { seq, .. } => Some(seq),
                _ => None,
            })
            .collect();
        assert_eq!(seqs, [1, 5]);
        assert_eq!(p.shared().stats.gaps.load(Ordering::Relaxed), 1);
        assert_eq!(p.shared().stats.trades_missed.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn adopting_a_state_pushes_one_reset_and_republished_ticks_keep_their_seqs() {
        let s = SymbolId(0);
        let mut p = Publisher::new("t", vec![s], 1, ring::ring(64).0);
        let mut c = p.subscribe();
        let state = SymbolState {
            trade_seq: 41,
            book_seq: 7,
            ..SymbolState::default()
        };
        p.adopt(s, state);
        p.republish(Tick {
            symbol: s,
            ts: 1,
            ingest_ts: 2,
            event: Event::Trade {
                seq: 42,
                price: 5,
                size: 1,
                side: None,
                trade_id: 0,
            },
        });
        p.flush();
        let got = drain(&mut c);
        assert!(matches!(got[0].event, Event::Reset));
        assert!(matches!(got[1].event, Event::Trade { seq: 42, .. }));
        let (id, kept) = p
            .shared()
            .reset_state(0)
            .expect("kept by the reset's position");
        assert_eq!((id, kept.trade_seq), (s, 41));
        assert!(p.shared().reset_state(1).is_none());
        assert_eq!((p.state(s).trade_seq, p.state(s).book_seq), (42, 7));
        assert_eq!(
            p.state(s).ticker.seq,
            1,
            "the trade moved the adopted ticker"
        );
    }

    #[test]
    fn serves_resync_with_position_and_state() {
        let s = SymbolId(0);
        let mut p = Publisher::new("t", vec![s], 1, ring::ring(64).0);
        p.trade(s, Some(1), 5, 1, None, 0);
        let mut rx = p.shared().request_resync();
        p.flush();
        let reply = rx.try_recv().expect("served on flush");
        assert_eq!(reply.position, 1);
        assert_eq!(reply.states[0].1.trade_seq, 1);
    }
}
