//! One client as its worker sees it, and the rules of what it is sent.
//!
//! A [`Client`] owns its outbox, its subscriptions, its *marks* (a subscription owed a
//! fresh state: the latest ticker, a book snapshot, or a trade `gap`; see
//! [`super::conflate`]), the catch-up queue that serves them in the order they were
//! made, the count of marks held, and whether it waits on the worker's flush list.
//! Callers ask ([`Client::offer`], [`Client::mark`], [`Client::serve_marks`],
//! [`Client::unsubscribe`], [`Client::close`]); the client keeps these consistent:
//!
//! - a subscription holds at most one mark per channel, queued for catch-up once and
//!   counted once; the count always equals the marks held, so a count of 0 lets an offer
//!   skip the subscription lookup;
//! - a marked subscription gets no frame of its channel until its mark is served
//!   (a state frame is superseded, a trade joins the gap), and a held mark is counted
//!   as conflation each time;
//! - marks are served in the order they were made, as room appears;
//! - unsubscribing or closing clears the marks it ends;
//! - the client joins the flush list once until it is written.
//!
//! Owned by one worker thread. Nothing here allocates in steady state: the catch-up
//! queue and outbox keep their capacity; a subscribe may grow the subscription list.
//! Nothing waits: a full socket is reported, never waited for.

use std::collections::VecDeque;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::frames::{FrameId, FrameKind, FrameSlab};
use crate::outbox::{Outbox, WriteOutcome};
use crate::protocol::command::{Channel, ChannelSet};
use crate::protocol::version::Version;
use crate::stats::{CloseReason, WorkerStats};
use crate::symbol::SymbolId;

use super::clients::{CommandLimiter, Conn, ErrorWindow, Liveness, Secure};
use super::clock::{Clock, PassTime};
use super::conflate::{ClientSub, Subs};
use super::flush::FlushPolicy;
use super::send;
use super::tls::TlsConn;

/// Whose loss a trade gap reports (its `reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GapCause {
    /// The client, or this worker, fell behind: `slow_consumer`.
    Consumer,
    /// The feed lost trades upstream (a venue or cluster link outage): `feed_gap`.
    Feed,
}

/// What a frame offered to a client carries, which decides what happens when it cannot
/// be queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offer {
    /// A state frame (ticker or book): superseded by the next, so it is marked, and
    /// throttled subscriptions hold it until their interval ends.
    State(Channel),
    /// A trade with its seq: an open gap grows to cover it.
    Trade(u64),
    /// A shared `gap` for trades the feed lost (`from..=to`): joins the client's own gap.
    FeedGap(u64, u64),
}

/// What became of an offered frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offered {
    /// Queued in the outbox: a delivery.
    Queued,
    /// Held by the subscription's throttle: marked, and owed at `due` (the caller keeps
    /// the deadline).
    Held(Instant),
    /// Not queued: the subscription holds (or now holds) a mark instead.
    Marked,
    /// The client holds no such subscription; nothing happened.
    Refused,
}

/// What the first mark of the catch-up queue is owed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owed {
    /// The symbol's latest ticker.
    Ticker,
    /// A fresh book snapshot at the subscription's depth.
    Book(u16),
    /// Version 2: the book at the subscription's depth from the state at `seq` (0:
    /// unknown) to now, as one merged update, or a snapshot where that is smaller or the
    /// state at `seq` can no longer be rebuilt.
    BookSince {
        /// Levels per side.
        depth: u16,
        /// The seq of the book state the client holds.
        seq: u64,
    },
    /// One `gap` for trades `from..=to`; `upstream` when the feed lost them.
    Gap {
        /// First skipped seq.
        from: u64,
        /// Last skipped seq.
        to: u64,
        /// Reported as `feed_gap` rather than `slow_consumer`.
        upstream: bool,
    },
    /// Trades `from..=to` replayed from the symbol's history (version 2 recovery): one
    /// frame at a time, the trade at `from` or a `gap` for what is no longer held, each
    /// tagged with the last seq it accounts for; the mark holds until `to` is reached.
    Replay {
        /// Next seq owed.
        from: u64,
        /// Last seq owed (grows with live trades while the replay lasts).
        to: u64,
    },
}

/// What a subscribe found held before it, for the symbol index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Joined {
    /// Channels already held on the symbol.
    pub held: ChannelSet,
    /// The book depth held before (meaningful when the book was held).
    pub old_depth: u16,
}

/// A connected WebSocket client, as the worker sees it.
pub struct Client {
    /// The table slot's generation when this client took it.
    pub(super) generation: u32,
    /// The socket and the task's wake-up, shared with the connection task.
    pub conn: Rc<Conn>,
    outbox: Outbox,
    subs: Subs,
    /// Symbol-channel pairs held.
    pairs: u32,
    /// Marks held over every subscription; 0 lets an offer skip the lookup.
    marked: u32,
    /// Throttled (symbol, channel) pairs; 0 lets an offer skip the lookup.
    throttled: u32,
    /// Marks waiting to be served, in the order they were made. An entry whose mark was
    /// cleared since (unsubscribed) is dropped when it comes up.
    catch_up: VecDeque<(SymbolId, Channel)>,
    in_flush_list: bool,
    /// The flush policy's period in which this client last got a delivery.
    flush_epoch: u32,
    /// The socket is full; the connection task waits for writability.
    pub blocked: bool,
    /// The protocol version negotiated in the upgrade (one byte, in the slot's padding).
    pub version: Version,
    /// Closing, and why; no data is queued any more.
    pub closing: Option<CloseReason>,
    /// Liveness times.
    pub liveness: Liveness,
    /// Command rate limit.
    pub limiter: CommandLimiter,
    /// Recent `error` replies.
    pub errors: ErrorWindow,
    /// The token's grant; `None` on an open engine.
    pub secure: Option<Box<Secure>>,
}

impl Client {
    /// A new client at `now`.
    pub fn new(
        conn: Rc<Conn>,
        budget_bytes: usize,
        commands_per_s: u32,
        snapshot_bytes_per_s: u64,
        now: Instant,
    ) -> Client {
        Client {
            generation: 0,
            conn,
            outbox: Outbox::new(budget_bytes),
            subs: Subs::default(),
            pairs: 0,
            marked: 0,
            throttled: 0,
            catch_up: VecDeque::new(),
            in_flush_list: false,
            flush_epoch: 0,
            blocked: false,
            version: Version::V1,
            closing: None,
            liveness: Liveness {
                last_heard: now,
                last_ping: None,
                last_progress: now,
                acked: 0,
            },
            limiter: CommandLimiter::new(commands_per_s, snapshot_bytes_per_s, now),
            errors: ErrorWindow::default(),
            secure: None,
        }
    }

    /// The client's TLS session, if it came over `wss`.
    pub fn tls(&self) -> Option<&TlsConn> {
        self.conn.tls.as_deref()
    }

    /// Whether the client's token allows `symbol` (always, without a token scope).
    pub fn may_subscribe(&self, symbol: &str) -> bool {
        self.secure
            .as_ref()
            .and_then(|s| s.scope.as_ref())
            .is_none_or(|scope| scope.allows(symbol))
    }

    /// Heap bytes this client holds beyond its slot (memory accounting).
    pub fn heap_bytes(&self) -> usize {
        self.outbox.heap_bytes()
            + self.subs.heap_bytes()
            + self.catch_up.capacity() * std::mem::size_of::<(SymbolId, Channel)>()
    }

    /// Frames waiting for the socket (read only: queueing goes through the client).
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The client's subscriptions and their marks (read only).
    pub fn subs(&self) -> &Subs {
        &self.subs
    }

    /// Symbol-channel pairs held.
    pub fn pairs(&self) -> u32 {
        self.pairs
    }

    /// Marks held.
    pub fn marked(&self) -> u32 {
        self.marked
    }

    /// Marks waiting in the catch-up queue (entries for cleared marks included until
    /// they come up).
    pub fn owed(&self) -> usize {
        self.catch_up.len()
    }

    /// Whether anything is left to write (queued frames, a pong).
    pub fn has_pending(&self) -> bool {
        !self.outbox.is_empty()
    }

    // ---- the flush list --------------------------------------------------------------

    /// Notes that the client joins the worker's flush list; false when it is on it
    /// already (so it is listed once, at the time of its first unwritten frame).
    pub fn enlist(&mut self) -> bool {
        !std::mem::replace(&mut self.in_flush_list, true)
    }

    /// Notes that the client left the flush list (taken off to be written).
    pub fn delist(&mut self) {
        self.in_flush_list = false;
    }

    /// Counts a delivery to this client in the coalescing policy's measure.
    pub fn count_delivery(&mut self, policy: &mut FlushPolicy) {
        policy.note_receiver(&mut self.flush_epoch);
    }

    // ---- subscriptions ---------------------------------------------------------------

    /// Subscribes `channels` of `symbol` with these options. The channels given get a
    /// fresh snapshot from the caller, which supersedes their marks and restarts their
    /// throttle interval.
    pub fn subscribe(
        &mut self,
        symbol: SymbolId,
        channels: ChannelSet,
        depth: u16,
        throttle_ms: u32,
        stats: &WorkerStats,
    ) -> Joined {
        let sub = self.subs.entry(symbol);
        let before = sub.marks();
        let joined = Joined {
            held: sub.channels,
            old_depth: sub.depth,
        };
        for ch in channels.iter() {
            if !joined.held.contains(ch) {
                self.pairs += 1;
                WorkerStats::add(&stats.subscriptions, 1);
            }
            sub.channels.insert(ch);
        }
        let throttled = u32::from(throttle_ms > 0);
        if channels.contains(Channel::Ticker) {
            sub.ticker_marked = false;
            self.throttled = self.throttled + throttled - u32::from(sub.ticker_throttle_ms > 0);
            sub.ticker_throttle_ms = throttle_ms;
            sub.ticker_next = None;
        }
        if channels.contains(Channel::Book) {
            sub.book_marked = false;
            sub.depth = depth;
            self.throttled = self.throttled + throttled - u32::from(sub.book_throttle_ms > 0);
            sub.book_throttle_ms = throttle_ms;
            sub.book_next = None;
        }
        self.marked = self.marked + sub.marks() as u32 - before as u32;
        joined
    }

    /// Drops `channels` of `symbol` and the marks they held; returns the channels that
    /// were held and the book depth, or `None` when the client held nothing there.
    pub fn unsubscribe(
        &mut self,
        symbol: SymbolId,
        channels: ChannelSet,
        stats: &WorkerStats,
    ) -> Option<(ChannelSet, u16)> {
        let sub = self.subs.get_mut(symbol)?;
        let before = sub.marks();
        let mut left = ChannelSet::default();
        for ch in channels.iter().filter(|ch| sub.channels.contains(*ch)) {
            left.insert(ch);
            self.pairs -= 1;
            stats
                .subscriptions
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            match ch {
                Channel::Ticker => {
                    sub.ticker_marked = false;
                    self.throttled -= u32::from(sub.ticker_throttle_ms > 0);
                    sub.ticker_throttle_ms = 0;
                }
                Channel::Trades => {
                    sub.gap = None;
                    sub.gap_upstream = false;
                    sub.replay = false;
                }
                Channel::Book => {
                    sub.book_marked = false;
                    self.throttled -= u32::from(sub.book_throttle_ms > 0);
                    sub.book_throttle_ms = 0;
                }
            }
        }
        for ch in channels.iter() {
            sub.channels.remove(ch);
        }
        let depth = sub.depth;
        let empty = sub.channels.is_empty();
        self.marked = self.marked + sub.marks() as u32 - before as u32;
        if empty {
            self.subs.remove(symbol);
        }
        Some((left, depth))
    }

    /// Starts closing: no more data is queued and no mark is owed any more (the caller
    /// has unsubscribed everything); queued data is dropped when `discard`, then the
    /// frame `close_frame` makes, if any, goes after what stays.
    pub fn close(
        &mut self,
        reason: CloseReason,
        frames: &mut FrameSlab,
        discard: bool,
        queued_ns: u64,
        close_frame: impl FnOnce(&mut FrameSlab) -> Option<FrameId>,
    ) {
        self.closing = Some(reason);
        self.catch_up = VecDeque::new();
        self.marked = 0;
        if discard {
            self.outbox.discard_unsent(frames);
        }
        if let Some(id) = close_frame(frames) {
            self.outbox.push(frames, id, queued_ns);
            frames.release(id);
        }
    }

    /// Releases every frame the client holds (it is leaving the table).
    pub fn release(&mut self, frames: &mut FrameSlab) {
        self.outbox.clear(frames);
    }

    // ---- data ------------------------------------------------------------------------

    /// Offers a shared frame of `symbol`: queued when nothing stands in the way (no mark,
    /// no throttle for a state frame, room in the budget), else the subscription is
    /// marked. Data that waited past the staleness limit is shed first.
    pub fn offer(
        &mut self,
        frames: &mut FrameSlab,
        id: FrameId,
        symbol: SymbolId,
        offer: Offer,
        at: PassTime,
        stats: &WorkerStats,
    ) -> Offered {
        self.shed_stale(frames, at, stats);
        let fits = self.outbox.has_room(frames.len(id));
        let throttled = matches!(offer, Offer::State(_)) && self.throttled > 0;
        let offered = if self.marked == 0 && !throttled && fits {
            Offered::Queued
        } else {
            match offer {
                Offer::State(channel) => {
                    let holds = frames.tag(id).seq;
                    self.offer_state(symbol, (channel, holds), fits, at, stats)
                }
                Offer::Trade(seq) => {
                    let Some(sub) = self.subs.get_mut(symbol) else {
                        return Offered::Refused;
                    };
                    match sub.gap.as_mut() {
                        Some((from, to)) => {
                            let waiting = sub.replay && *from > *to + 1;
                            *to = seq;
                            if waiting && seq + 1 >= *from {
                                // A replay waiting for this worker to reach the client's
                                // seq (it had seen it on a faster one): reached.
                                self.replay_reached(symbol);
                            }
                            Offered::Marked
                        }
                        None if fits => Offered::Queued,
                        None => {
                            sub.gap = Some((seq, seq));
                            self.marked += 1;
                            self.catch_up.push_back((symbol, Channel::Trades));
                            note_peak_bytes(stats, self.outbox.peak_bytes());
                            Offered::Marked
                        }
                    }
                }
                Offer::FeedGap(from, to) => {
                    self.mark(symbol, Channel::Trades, (from, to), GapCause::Feed);
                    Offered::Marked
                }
            }
        };
        if offered == Offered::Queued {
            self.outbox.push(frames, id, at.queued_ns);
        }
        offered
    }

    /// The slow path of [`Client::offer`] for a state frame that may not simply be
    /// queued: `Queued` when it should be after all (the caller queues it).
    /// `holds` is the book seq a version 2 client holds if it misses the frame (its
    /// `prev_seq`; 0 for a snapshot or a version 1 frame).
    fn offer_state(
        &mut self,
        symbol: SymbolId,
        (channel, holds): (Channel, u64),
        fits: bool,
        at: PassTime,
        stats: &WorkerStats,
    ) -> Offered {
        let Some(sub) = self.subs.get_mut(symbol) else {
            return Offered::Refused;
        };
        let before = sub.marks();
        let (marked, throttle_ms, next) = match channel {
            Channel::Ticker => (
                &mut sub.ticker_marked,
                sub.ticker_throttle_ms,
                &mut sub.ticker_next,
            ),
            Channel::Book => (
                &mut sub.book_marked,
                sub.book_throttle_ms,
                &mut sub.book_next,
            ),
            Channel::Trades => return Offered::Refused,
        };
        let due = next.filter(|due| throttle_ms > 0 && *due > at.now);
        let offered = if *marked {
            WorkerStats::add(&stats.conflated, 1);
            Offered::Marked
        } else if let Some(due) = due {
            // Throttled: hold the latest state until the interval ends.
            *marked = true;
            if channel == Channel::Book {
                sub.book_seq = holds;
            }
            WorkerStats::add(&stats.conflated, 1);
            Offered::Held(due)
        } else if fits {
            if throttle_ms > 0 {
                *next = Some(at.now + Duration::from_millis(u64::from(throttle_ms)));
            }
            Offered::Queued
        } else {
            *marked = true;
            if channel == Channel::Book {
                sub.book_seq = holds;
            }
            self.catch_up.push_back((symbol, channel));
            WorkerStats::add(&stats.conflated, 1);
            note_peak_bytes(stats, self.outbox.peak_bytes());
            Offered::Marked
        };
        self.marked = self.marked + sub.marks() as u32 - before as u32;
        offered
    }

    /// Marks one subscription for catch-up (`missed` is the trade range a gap covers; an
    /// open gap grows to its end).
    pub fn mark(
        &mut self,
        symbol: SymbolId,
        channel: Channel,
        missed: (u64, u64),
        cause: GapCause,
    ) {
        let Some(sub) = self.subs.get_mut(symbol) else {
            return;
        };
        let before = sub.marks();
        let fresh = match channel {
            Channel::Ticker => !std::mem::replace(&mut sub.ticker_marked, true),
            Channel::Book => {
                // Whatever the client held is no longer known to lead to the new state.
                sub.book_seq = 0;
                !std::mem::replace(&mut sub.book_marked, true)
            }
            Channel::Trades => match sub.gap.as_mut() {
                Some((from, to)) => {
                    let waiting = sub.replay && *from > *to + 1;
                    *to = (*to).max(missed.1);
                    if waiting && *to + 1 >= *from {
                        self.replay_reached(symbol);
                        return;
                    }
                    false
                }
                None => {
                    sub.gap = Some(missed);
                    sub.gap_upstream = cause == GapCause::Feed;
                    true
                }
            },
        };
        if fresh {
            self.catch_up.push_back((symbol, channel));
        }
        self.marked = self.marked + sub.marks() as u32 - before as u32;
    }

    /// Starts a replay of trades `from..=to` of `symbol` from the history (version 2
    /// recovery): a trades mark, served as room appears like any mark, that live trades
    /// extend until the replay has caught up with them, so that the replayed and the live
    /// trades meet with no duplicate and no hole. `from > to + 1`: the client holds
    /// trades this worker has not applied yet (it saw them through a faster worker); the
    /// mark then *waits*, absorbing live trades up to `from - 1`, and clears there. False
    /// (nothing done) when the client does not hold the symbol's trades or already owes
    /// it a mark.
    pub fn recover(&mut self, symbol: SymbolId, from: u64, to: u64) -> bool {
        let Some(sub) = self.subs.get_mut(symbol) else {
            return false;
        };
        if !sub.channels.contains(Channel::Trades) || sub.gap.is_some() || from == to + 1 {
            return false;
        }
        sub.gap = Some((from, to));
        sub.gap_upstream = false;
        sub.replay = true;
        self.marked += 1;
        self.catch_up.push_back((symbol, Channel::Trades));
        true
    }

    /// A waiting replay (see [`Client::recover`]) whose range now reaches the client's
    /// seq: cleared when nothing is left to replay, else queued to be served.
    fn replay_reached(&mut self, symbol: SymbolId) {
        let Some(sub) = self.subs.get_mut(symbol) else {
            return;
        };
        match sub.gap {
            Some((from, to)) if to + 1 == from => {
                sub.gap = None;
                sub.replay = false;
                self.marked -= 1;
            }
            Some(_) => self.catch_up.push_back((symbol, Channel::Trades)),
            None => {}
        }
    }

    /// Puts a throttled mark whose interval ended back in the catch-up queue; false when
    /// it is no longer held (served or unsubscribed meanwhile).
    pub fn rearm(&mut self, symbol: SymbolId, channel: Channel) -> bool {
        let held = self
            .subs
            .get(symbol)
            .is_some_and(|sub| channel != Channel::Trades && sub.is_marked(channel));
        if held {
            self.catch_up.push_back((symbol, channel));
        }
        held
    }

    /// Serves marks in order while the outbox has room: `catch_up` makes the frame a mark
    /// is owed (the caller owns one reference, released here), and a throttled mark whose
    /// interval has not ended goes to `later` (symbol, channel, due) instead.
    pub fn serve_marks(
        &mut self,
        frames: &mut FrameSlab,
        clock: &Clock,
        queued_ns: u64,
        stats: &WorkerStats,
        mut catch_up: impl FnMut(&mut FrameSlab, SymbolId, Owed) -> FrameId,
        mut later: impl FnMut(SymbolId, Channel, Instant),
    ) {
        loop {
            let now = clock.now();
            let Some(&(symbol, channel)) = self.catch_up.front() else {
                return;
            };
            let Some(sub) = self.subs.get(symbol).copied() else {
                self.catch_up.pop_front();
                continue;
            };
            let (throttle_ms, next) = sub.throttle(channel);
            if let Some(due) = next.filter(|due| throttle_ms > 0 && *due > now) {
                // Not yet: the throttle deadline serves it when the interval ends.
                self.catch_up.pop_front();
                later(symbol, channel, due);
                continue;
            }
            let Some(owed) = owed(&sub, channel, self.version) else {
                self.catch_up.pop_front();
                continue;
            };
            if let Owed::Replay { from, to } = owed {
                if from > to {
                    // Waiting for this worker to reach the client's seq: the live trades
                    // that reach it clear the mark, or queue it again (`replay_reached`).
                    self.catch_up.pop_front();
                    continue;
                }
            }
            let frame = catch_up(frames, symbol, owed);
            if !self.outbox.has_room(frames.len(frame)) {
                frames.release(frame);
                return;
            }
            self.outbox.push(frames, frame, queued_ns);
            let tag = frames.tag(frame);
            frames.release(frame);
            if let Owed::Replay { to, .. } = owed {
                if tag.kind == FrameKind::Trade {
                    WorkerStats::add(&stats.trades_replayed, 1);
                } else {
                    WorkerStats::add(&stats.gaps_sent, 1);
                    WorkerStats::add(&stats.trades_skipped, tag.seq + 1 - owed_from(owed));
                }
                if tag.seq < to {
                    // More to replay: the mark stays first in the queue.
                    if let Some((from, _)) = self.subs.get_mut(symbol).and_then(|s| s.gap.as_mut())
                    {
                        *from = tag.seq + 1;
                    }
                    continue;
                }
            }
            self.catch_up.pop_front();
            self.marked -= 1;
            match owed {
                Owed::Book(_) => WorkerStats::add(&stats.snapshots_resent, 1),
                // A merged update is tagged with the seq it starts from; a snapshot, 0.
                Owed::BookSince { .. } if tag.seq == 0 => {
                    WorkerStats::add(&stats.snapshots_resent, 1)
                }
                Owed::BookSince { .. } => {}
                Owed::Gap { from, to, .. } => {
                    WorkerStats::add(&stats.gaps_sent, 1);
                    WorkerStats::add(&stats.trades_skipped, to - from + 1);
                }
                Owed::Ticker | Owed::Replay { .. } => {}
            }
            if let Some(sub) = self.subs.get_mut(symbol) {
                sub.served(channel, now);
            }
        }
    }

    /// When the oldest queued frame has waited past the staleness limit, drops the queued
    /// data frames and marks their subscriptions, exactly as if they had not fit the
    /// budget: the client then gets the market as it is now (latest ticker, fresh
    /// snapshot, one exact trade gap) instead of a queue of old frames.
    fn shed_stale(&mut self, frames: &mut FrameSlab, at: PassTime, stats: &WorkerStats) {
        let Some(oldest) = self.outbox.oldest_queued_ns() else {
            return;
        };
        if at.queued_ns.saturating_sub(oldest) <= at.stale_ns {
            return;
        }
        let Client {
            outbox,
            subs,
            catch_up,
            marked,
            ..
        } = self;
        let mut made = 0u64;
        outbox.discard_data(frames, |tag| {
            let symbol = SymbolId(tag.symbol);
            let Some(sub) = subs.get_mut(symbol) else {
                return;
            };
            let (channel, fresh) = match tag.kind {
                FrameKind::Ticker => (
                    Channel::Ticker,
                    !std::mem::replace(&mut sub.ticker_marked, true),
                ),
                FrameKind::Book => {
                    let fresh = !std::mem::replace(&mut sub.book_marked, true);
                    if fresh {
                        // The oldest dropped: the client holds the state it applies to.
                        sub.book_seq = tag.seq;
                    }
                    (Channel::Book, fresh)
                }
                FrameKind::Trade => match sub.gap.as_mut() {
                    // Queued trades are contiguous, so the dropped ones with the open gap
                    // make one exact range.
                    Some((from, to)) => {
                        *from = (*from).min(tag.seq);
                        *to = (*to).max(tag.seq);
                        (Channel::Trades, false)
                    }
                    None => {
                        sub.gap = Some((tag.seq, tag.seq));
                        (Channel::Trades, true)
                    }
                },
                FrameKind::Reply => return,
            };
            if fresh {
                catch_up.push_back((symbol, channel));
                *marked += 1;
                made += 1;
            }
        });
        WorkerStats::add(&stats.stale_conflations, made);
    }

    // ---- replies and the socket ------------------------------------------------------

    /// Queues a reply outside the budget, up to twice it; false (nothing queued) when
    /// the unwritten bytes would pass that: the client's commands cause replies faster
    /// than it reads them.
    pub fn push_reply(&mut self, frames: &mut FrameSlab, id: FrameId, queued_ns: u64) -> bool {
        let cap = 2 * self.outbox.budget_bytes();
        if self.outbox.pending_bytes() + frames.len(id) > cap && !self.outbox.is_empty() {
            return false;
        }
        self.outbox.push(frames, id, queued_ns);
        true
    }

    /// Sets the one pong that may wait; false when it replaced one not yet started.
    pub fn set_pong(&mut self, frames: &mut FrameSlab, id: FrameId) -> bool {
        self.outbox.set_pong(frames, id)
    }

    /// Writes what the socket takes now, telling `on_written` each written frame's
    /// ingest and queueing times. A blocked client's retry goes through tokio's
    /// readiness, which its `WouldBlock` must clear (worker/send.rs); TLS encrypts the
    /// gathered frames first (worker/tls.rs).
    pub fn write(
        &mut self,
        frames: &mut FrameSlab,
        on_written: impl FnMut(u64, u64),
    ) -> io::Result<WriteOutcome> {
        let send: send::SendFn = if self.blocked {
            send::send_when_ready
        } else {
            send::send_now
        };
        let stream = &self.conn.stream;
        match self.conn.tls.as_deref() {
            None => self
                .outbox
                .write_to(frames, |iov| send(stream, iov), on_written),
            Some(tls) => tls.write_outbox(stream, &mut self.outbox, frames, on_written),
        }
    }
}

/// What a held mark on `channel` is owed, or `None` when the mark is gone.
fn owed(sub: &ClientSub, channel: Channel, version: Version) -> Option<Owed> {
    match channel {
        Channel::Ticker if sub.ticker_marked => Some(Owed::Ticker),
        Channel::Book if sub.book_marked && version.is_v2() => Some(Owed::BookSince {
            depth: sub.depth,
            seq: sub.book_seq,
        }),
        Channel::Book if sub.book_marked => Some(Owed::Book(sub.depth)),
        Channel::Trades if sub.replay => sub.gap.map(|(from, to)| Owed::Replay { from, to }),
        Channel::Trades => sub.gap.map(|(from, to)| Owed::Gap {
            from,
            to,
            upstream: sub.gap_upstream,
        }),
        _ => None,
    }
}

/// The first seq a replay mark owes.
fn owed_from(owed: Owed) -> u64 {
    match owed {
        Owed::Replay { from, .. } | Owed::Gap { from, .. } => from,
        Owed::Ticker | Owed::Book(_) | Owed::BookSince { .. } => 0,
    }
}

/// Publishes an outbox's peak to the worker's counter (when it is a new high).
pub fn note_peak_bytes(stats: &WorkerStats, peak: usize) {
    let peak = peak as u64;
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpStream;
    use Channel::{Book, Ticker, Trades};

    /// Two 12-byte frames fit, a third does not.
    const BUDGET: usize = 30;
    const A: SymbolId = SymbolId(1);
    const B: SymbolId = SymbolId(2);
    const C: SymbolId = SymbolId(3);

    struct Rig {
        client: Client,
        frames: FrameSlab,
        stats: WorkerStats,
        clock: Clock,
        queued_ns: u64,
        stale_ns: u64,
        _peer: std::net::TcpStream,
        _rt: tokio::runtime::Runtime,
    }

    impl Rig {
        /// A client holding `subs` (symbol, channel, throttle ms), depth 10.
        fn new(subs: &[(SymbolId, Channel, u32)]) -> Rig {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .unwrap();
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let ours = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (peer, _) = listener.accept().unwrap();
            ours.set_nonblocking(true).unwrap();
            let stream = {
                let _guard = rt.enter();
                TcpStream::from_std(ours).unwrap()
            };
            let clock = Clock::manual();
            let client = Client::new(Rc::new(Conn::new(stream)), BUDGET, 10, 1 << 20, clock.now());
            let mut rig = Rig {
                client,
                frames: FrameSlab::new(),
                stats: WorkerStats::default(),
                clock,
                queued_ns: 1_000,
                stale_ns: u64::MAX,
                _peer: peer,
                _rt: rt,
            };
            for &(symbol, channel, throttle_ms) in subs {
                rig.subscribe(symbol, channel, throttle_ms);
            }
            rig
        }

        fn at(&self) -> PassTime {
            PassTime {
                now: self.clock.now(),
                queued_ns: self.queued_ns,
                stale_ns: self.stale_ns,
            }
        }

        fn subscribe(&mut self, symbol: SymbolId, channel: Channel, throttle_ms: u32) {
            let mut set = ChannelSet::EMPTY;
            set.insert(channel);
            self.client
                .subscribe(symbol, set, 10, throttle_ms, &self.stats);
        }

        /// Offers a fresh 12-byte frame, tagged as the engine tags its data.
        fn offer(&mut self, symbol: SymbolId, offer: Offer) -> Offered {
            let id = self.frames.text(|buf| buf.extend_from_slice(b"0123456789"));
            let kind = match offer {
                Offer::State(Channel::Book) => FrameKind::Book,
                Offer::State(_) => FrameKind::Ticker,
                Offer::Trade(_) => FrameKind::Trade,
                Offer::FeedGap(..) => FrameKind::Reply,
            };
            let seq = if let Offer::Trade(seq) = offer {
                seq
            } else {
                0
            };
            let tag = crate::frames::FrameTag {
                kind,
                symbol: symbol.0,
                seq,
            };
            self.frames.set_tag(id, tag);
            let at = self.at();
            let offered = self
                .client
                .offer(&mut self.frames, id, symbol, offer, at, &self.stats);
            self.frames.release(id);
            offered
        }

        fn fill(&mut self) {
            let _ = self.offer(C, Offer::State(Channel::Ticker));
            let _ = self.offer(C, Offer::State(Channel::Ticker));
            assert_eq!(
                self.client.outbox().pending_bytes(),
                24,
                "the budget is full"
            );
        }

        /// Writes the outbox to the socket (the peer's buffer takes it all).
        fn drain(&mut self) {
            let outcome = self.client.write(&mut self.frames, |_, _| {}).unwrap();
            assert!(matches!(outcome, WriteOutcome::Drained));
        }

        /// Serves marks; returns what each served mark was owed, in order.
        fn serve(&mut self) -> Vec<(SymbolId, Owed)> {
            let mut served = Vec::new();
            self.client.serve_marks(
                &mut self.frames,
                &self.clock,
                2_000,
                &self.stats,
                |frames, symbol, owed| {
                    served.push((symbol, owed));
                    frames.text(|buf| buf.extend_from_slice(b"snap"))
                },
                |_, _, _| panic!("nothing is throttled"),
            );
            served
        }

        /// The rule every test checks after each step: the count is the marks held.
        fn assert_counted(&self) {
            let held: usize = self
                .client
                .subs()
                .symbols()
                .filter_map(|s| self.client.subs().get(s))
                .map(ClientSub::marks)
                .sum();
            assert_eq!(self.client.marked() as usize, held, "marked == marks held");
        }
    }

    #[test]
    fn a_state_frame_that_does_not_fit_marks_its_subscription_once() {
        let mut rig = Rig::new(&[(A, Ticker, 0), (C, Ticker, 0)]);
        rig.fill();
        for _ in 0..3 {
            assert_eq!(rig.offer(A, Offer::State(Channel::Ticker)), Offered::Marked);
            rig.assert_counted();
        }
        assert_eq!(rig.client.marked(), 1, "counted once");
        assert_eq!(rig.client.owed(), 1, "queued for catch-up once");
        assert_eq!(
            WorkerStats::get(&rig.stats.conflated),
            3,
            "each offer conflated"
        );
        assert_eq!(rig.client.outbox().pending_bytes(), 24, "nothing queued");
    }

    #[test]
    fn marks_are_served_in_the_order_they_were_made_and_clear_the_count() {
        let mut rig = Rig::new(&[(A, Ticker, 0), (B, Book, 0), (C, Ticker, 0), (C, Trades, 0)]);
        rig.fill();
        assert_eq!(rig.offer(B, Offer::State(Channel::Book)), Offered::Marked);
        assert_eq!(rig.offer(C, Offer::Trade(7)), Offered::Marked);
        assert_eq!(rig.offer(A, Offer::State(Channel::Ticker)), Offered::Marked);
        assert_eq!(
            rig.offer(C, Offer::Trade(8)),
            Offered::Marked,
            "the gap grows"
        );
        rig.assert_counted();
        assert_eq!(rig.client.marked(), 3);
        rig.drain();
        let served = rig.serve();
        assert_eq!(
            served,
            vec![
                (B, Owed::Book(10)),
                (
                    C,
                    Owed::Gap {
                        from: 7,
                        to: 8,
                        upstream: false
                    }
                ),
                (A, Owed::Ticker),
            ]
        );
        rig.assert_counted();
        assert_eq!(rig.client.marked(), 0);
        assert_eq!(rig.client.owed(), 0);
        assert_eq!(WorkerStats::get(&rig.stats.gaps_sent), 1);
        assert_eq!(WorkerStats::get(&rig.stats.trades_skipped), 2);
        assert_eq!(WorkerStats::get(&rig.stats.snapshots_resent), 1);
        assert_eq!(
            rig.offer(A, Offer::State(Channel::Ticker)),
            Offered::Queued,
            "with every mark served, offers queue again"
        );
    }

    #[test]
    fn serving_stops_where_the_budget_does_and_resumes_in_order() {
        let mut rig = Rig::new(&[(A, Ticker, 0), (B, Ticker, 0), (C, Ticker, 0)]);
        rig.fill();
        assert_eq!(rig.offer(A, Offer::State(Channel::Ticker)), Offered::Marked);
        assert_eq!(rig.offer(B, Offer::State(Channel::Ticker)), Offered::Marked);
        rig.drain();
        // A 30-byte catch-up frame: one fits an empty outbox, a second does not.
        let mut made = Vec::new();
        rig.client.serve_marks(
            &mut rig.frames,
            &rig.clock,
            2_000,
            &rig.stats,
            |frames, symbol, _| {
                made.push(symbol);
                frames.text(|buf| buf.extend_from_slice(&[b'x'; 28]))
            },
            |_, _, _| {},
        );
        assert_eq!(made, vec![A, B], "B was made, did not fit, and stays owed");
        assert_eq!(rig.client.marked(), 1);
        assert_eq!(rig.client.owed(), 1);
        rig.assert_counted();
        rig.drain();
        assert_eq!(rig.serve(), vec![(B, Owed::Ticker)]);
        assert_eq!(rig.client.marked(), 0);
    }

    #[test]
    fn a_marked_subscription_waits_for_its_catch_up_and_the_others_do_not() {
        let mut rig = Rig::new(&[(A, Ticker, 0), (B, Trades, 0), (C, Ticker, 0)]);
        rig.fill();
        assert_eq!(rig.offer(A, Offer::State(Channel::Ticker)), Offered::Marked);
        rig.drain();
        assert_eq!(
            rig.offer(A, Offer::State(Channel::Ticker)),
            Offered::Marked,
            "a marked subscription waits for its catch-up"
        );
        assert_eq!(
            rig.offer(C, Offer::State(Channel::Ticker)),
            Offered::Queued,
            "other subscriptions queue while there is room"
        );
        assert_eq!(
            rig.offer(B, Offer::Trade(1)),
            Offered::Queued,
            "trades with no open gap stay contiguous"
        );
        assert_eq!(
            rig.offer(SymbolId(9), Offer::Trade(1)),
            Offered::Refused,
            "not subscribed"
        );
        rig.assert_counted();
    }

    #[test]
    fn a_feed_gap_queues_in_order_or_joins_the_clients_own_gap() {
        let mut rig = Rig::new(&[(A, Trades, 0), (C, Ticker, 0)]);
        assert_eq!(rig.offer(A, Offer::FeedGap(3, 4)), Offered::Queued);
        rig.drain();
        rig.fill();
        assert_eq!(rig.offer(A, Offer::Trade(5)), Offered::Marked);
        assert_eq!(rig.offer(A, Offer::FeedGap(6, 9)), Offered::Marked);
        rig.assert_counted();
        assert_eq!(rig.client.owed(), 1);
        rig.drain();
        let gap = Owed::Gap {
            from: 5,
            to: 9,
            upstream: false,
        };
        assert_eq!(rig.serve(), vec![(A, gap)], "one exact range");
    }

    #[test]
    fn a_resync_mark_is_made_once_and_a_gap_from_the_feed_says_so() {
        let mut rig = Rig::new(&[(A, Ticker, 0), (A, Trades, 0)]);
        for _ in 0..2 {
            rig.client.mark(A, Channel::Ticker, (0, 0), GapCause::Feed);
            rig.client.mark(A, Channel::Trades, (4, 6), GapCause::Feed);
            rig.assert_counted();
        }
        rig.client
            .mark(A, Channel::Trades, (7, 8), GapCause::Consumer);
        rig.client.mark(B, Channel::Ticker, (0, 0), GapCause::Feed);
        assert_eq!(rig.client.marked(), 2);
        assert_eq!(rig.client.owed(), 2);
        let gap = Owed::Gap {
            from: 4,
            to: 8,
            upstream: true,
        };
        assert_eq!(rig.serve(), vec![(A, Owed::Ticker), (A, gap)]);
    }

    #[test]
    fn unsubscribing_clears_its_marks_and_their_catch_up() {
        let mut rig = Rig::new(&[(A, Ticker, 0), (A, Trades, 0), (B, Book, 0)]);
        rig.client
            .mark(A, Channel::Ticker, (0, 0), GapCause::Consumer);
        rig.client
            .mark(A, Channel::Trades, (1, 2), GapCause::Consumer);
        rig.client
            .mark(B, Channel::Book, (0, 0), GapCause::Consumer);
        assert_eq!(rig.client.marked(), 3);
        let mut trades = ChannelSet::EMPTY;
        trades.insert(Channel::Trades);
        let left = rig.client.unsubscribe(A, trades, &rig.stats);
        assert_eq!(left, Some((trades, 0)), "no book, no depth");
        rig.assert_counted();
        assert_eq!(rig.client.marked(), 2);
        assert_eq!(rig.client.pairs(), 2);
        assert_eq!(rig.client.unsubscribe(C, trades, &rig.stats), None);
        assert!(rig
            .client
            .unsubscribe(B, ChannelSet::ALL, &rig.stats)
            .is_some());
        rig.assert_counted();
        assert!(
            rig.client.subs().get(B).is_none(),
            "an emptied subscription goes"
        );
        assert_eq!(
            rig.serve(),
            vec![(A, Owed::Ticker)],
            "cleared marks are skipped, the rest served"
        );
        assert_eq!(rig.client.owed(), 0);
    }

    #[test]
    fn closing_clears_every_mark_and_queues_the_close_after_what_stays() {
        let mut rig = Rig::new(&[(A, Ticker, 0), (C, Ticker, 0)]);
        rig.fill();
        assert_eq!(rig.offer(A, Offer::State(Channel::Ticker)), Offered::Marked);
        assert!(rig
            .client
            .unsubscribe(A, ChannelSet::ALL, &rig.stats)
            .is_some());
        assert!(rig
            .client
            .unsubscribe(C, ChannelSet::ALL, &rig.stats)
            .is_some());
        rig.client
            .close(CloseReason::Policy, &mut rig.frames, true, 5, |frames| {
                Some(frames.control(|buf| crate::protocol::frame::close_frame(buf, 1008, "")))
            });
        assert_eq!(rig.client.closing, Some(CloseReason::Policy));
        assert_eq!((rig.client.marked(), rig.client.owed()), (0, 0));
        assert_eq!(
            rig.client.outbox().pending_bytes(),
            4,
            "queued data dropped, the close frame queued"
        );
        rig.drain();
        rig.client.release(&mut rig.frames);
        assert_eq!(rig.frames.live(), 0, "every frame went back to the pool");
    }

    #[test]
    fn a_throttled_state_is_held_then_handed_back_when_its_interval_ends() {
        let mut rig = Rig::new(&[(A, Ticker, 100)]);
        assert_eq!(rig.offer(A, Offer::State(Channel::Ticker)), Offered::Queued);
        let due = rig.clock.now() + Duration::from_millis(100);
        assert_eq!(
            rig.offer(A, Offer::State(Channel::Ticker)),
            Offered::Held(due)
        );
        assert_eq!(
            rig.offer(A, Offer::State(Channel::Ticker)),
            Offered::Marked,
            "held once"
        );
        rig.assert_counted();
        assert_eq!(rig.client.owed(), 0, "a held mark waits for its deadline");
        assert!(rig.client.rearm(A, Channel::Ticker));
        assert!(!rig.client.rearm(B, Channel::Ticker), "not held");
        let mut later = Vec::new();
        rig.client.serve_marks(
            &mut rig.frames,
            &rig.clock,
            0,
            &rig.stats,
            |_, _, _| panic!("not before its interval ends"),
            |symbol, channel, at| later.push((symbol, channel, at)),
        );
        assert_eq!(later, vec![(A, Channel::Ticker, due)]);
        assert!(rig.client.rearm(A, Channel::Ticker));
        rig.clock.advance(Duration::from_millis(100));
        rig.drain();
        assert_eq!(rig.serve(), vec![(A, Owed::Ticker)]);
        assert_eq!(
            rig.client.subs().get(A).and_then(|s| s.ticker_next),
            Some(due + Duration::from_millis(100)),
            "serving starts the next interval"
        );
        rig.assert_counted();
    }

    #[test]
    fn stale_data_is_shed_and_marked_as_if_it_had_not_fit() {
        let mut rig = Rig::new(&[(A, Ticker, 0), (A, Trades, 0)]);
        assert_eq!(rig.offer(A, Offer::Trade(1)), Offered::Queued);
        assert_eq!(rig.offer(A, Offer::Trade(2)), Offered::Queued);
        (rig.queued_ns, rig.stale_ns) = (1_000 + 11, 10);
        let offered = rig.offer(A, Offer::State(Channel::Ticker));
        assert_eq!(offered, Offered::Queued, "the current ticker fits");
        assert_eq!(WorkerStats::get(&rig.stats.stale_conflations), 1);
        rig.assert_counted();
        assert_eq!(rig.client.marked(), 1, "the shed trades became one gap");
        let gap = Owed::Gap {
            from: 1,
            to: 2,
            upstream: false,
        };
        assert_eq!(rig.serve(), vec![(A, gap)]);
    }

    #[test]
    fn the_client_joins_the_flush_list_once_until_written() {
        let mut rig = Rig::new(&[]);
        assert!(rig.client.enlist());
        assert!(!rig.client.enlist(), "already listed");
        rig.client.delist();
        assert!(rig.client.enlist());
    }

    #[test]
    fn replies_pass_the_budget_but_not_twice_it() {
        let mut rig = Rig::new(&[]);
        let mut pushed = 0;
        loop {
            let id = rig.frames.text(|buf| buf.extend_from_slice(b"0123456789"));
            let queued = rig.client.push_reply(&mut rig.frames, id, 0);
            rig.frames.release(id);
            if !queued {
                break;
            }
            pushed += 1;
        }
        assert_eq!(pushed, 5, "60 bytes fit twice a 30-byte budget, 72 do not");
    }

    #[test]
    fn subscribing_counts_pairs_and_throttles_once_and_supersedes_marks() {
        let mut rig = Rig::new(&[(A, Ticker, 50)]);
        rig.client
            .mark(A, Channel::Ticker, (0, 0), GapCause::Consumer);
        assert_eq!(rig.client.marked(), 1);
        rig.subscribe(A, Channel::Ticker, 50);
        rig.assert_counted();
        assert_eq!(
            rig.client.marked(),
            0,
            "the new snapshot supersedes the mark"
        );
        assert_eq!(rig.client.pairs(), 1, "a pair is counted once");
        assert_eq!(WorkerStats::get(&rig.stats.subscriptions), 1);
        assert_eq!(rig.client.throttled, 1, "a throttle is counted once");
        rig.subscribe(A, Channel::Ticker, 0);
        assert_eq!(rig.client.throttled, 0);
    }
}
