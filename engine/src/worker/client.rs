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
//! - while a client holds any mark, new frames are not queued ahead of its catch-up
//!   (except trades of a symbol with no open gap, which stay contiguous);
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
    /// One `gap` for trades `from..=to`; `upstream` when the feed lost them.
    Gap {
        /// First skipped seq.
        from: u64,
        /// Last skipped seq.
        to: u64,
        /// Reported as `feed_gap` rather than `slow_consumer`.
        upstream: bool,
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
    pub fn new(conn: Rc<Conn>, budget_bytes: usize, commands_per_s: u32, now: Instant) -> Client {
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
            closing: None,
            liveness: Liveness {
                last_heard: now,
                last_ping: None,
                last_progress: now,
                acked: 0,
            },
            limiter: CommandLimiter::new(commands_per_s, now),
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
    /// has unsubscribed everything); queued data is dropped when `discard`, and the
    /// close frame, if any, goes after what stays.
    pub fn close(
        &mut self,
        reason: CloseReason,
        frames: &mut FrameSlab,
        discard: bool,
        close_frame: Option<FrameId>,
        queued_ns: u64,
    ) {
        self.closing = Some(reason);
        self.catch_up = VecDeque::new();
        self.marked = 0;
        if discard {
            self.outbox.discard_unsent(frames);
        }
        if let Some(id) = close_frame {
            self.outbox.push(frames, id, queued_ns);
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
        let len = frames.len(id);
        self.shed_stale(frames, at, stats);
        let throttled = matches!(offer, Offer::State(_)) && self.throttled > 0;
        if self.marked == 0 && !throttled && self.outbox.has_room(len) {
            self.outbox.push(frames, id, at.queued_ns);
            return Offered::Queued;
        }
        match offer {
            Offer::State(channel) => self.offer_state(frames, id, len, symbol, channel, at, stats),
            Offer::Trade(seq) => self.offer_trade(frames, id, len, symbol, seq, at, stats),
            Offer::FeedGap(from, to) => {
                self.mark(symbol, Channel::Trades, (from, to), GapCause::Feed);
                Offered::Marked
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn offer_state(
        &mut self,
        frames: &mut FrameSlab,
        id: FrameId,
        len: usize,
        symbol: SymbolId,
        channel: Channel,
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
            WorkerStats::add(&stats.conflated, 1);
            Offered::Held(due)
        } else if self.outbox.has_room(len) {
            self.outbox.push(frames, id, at.queued_ns);
            if throttle_ms > 0 {
                *next = Some(at.now + Duration::from_millis(u64::from(throttle_ms)));
            }
            Offered::Queued
        } else {
            *marked = true;
            self.catch_up.push_back((symbol, channel));
            WorkerStats::add(&stats.conflated, 1);
            note_peak_bytes(stats, self.outbox.peak_bytes());
            Offered::Marked
        };
        self.marked = self.marked + sub.marks() as u32 - before as u32;
        offered
    }

    #[allow(clippy::too_many_arguments)]
    fn offer_trade(
        &mut self,
        frames: &mut FrameSlab,
        id: FrameId,
        len: usize,
        symbol: SymbolId,
        seq: u64,
        at: PassTime,
        stats: &WorkerStats,
    ) -> Offered {
        let Some(sub) = self.subs.get_mut(symbol) else {
            return Offered::Refused;
        };
        match sub.gap.as_mut() {
            Some((_, to)) => {
                *to = seq;
                Offered::Marked
            }
            None if self.outbox.has_room(len) => {
                self.outbox.push(frames, id, at.queued_ns);
                Offered::Queued
            }
            None => {
                sub.gap = Some((seq, seq));
                self.marked += 1;
                self.catch_up.push_back((symbol, Channel::Trades));
                note_peak_bytes(stats, self.outbox.peak_bytes());
                Offered::Marked
            }
        }
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
            Channel::Book => !std::mem::replace(&mut sub.book_marked, true),
            Channel::Trades => match sub.gap.as_mut() {
                Some((_, to)) => {
                    *to = (*to).max(missed.1);
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
            let Some(owed) = owed(&sub, channel) else {
                self.catch_up.pop_front();
                continue;
            };
            let frame = catch_up(frames, symbol, owed);
            if !self.outbox.has_room(frames.len(frame)) {
                frames.release(frame);
                return;
            }
            self.outbox.push(frames, frame, queued_ns);
            frames.release(frame);
            self.catch_up.pop_front();
            self.marked -= 1;
            match owed {
                Owed::Book(_) => WorkerStats::add(&stats.snapshots_resent, 1),
                Owed::Gap { from, to, .. } => {
                    WorkerStats::add(&stats.gaps_sent, 1);
                    WorkerStats::add(&stats.trades_skipped, to - from + 1);
                }
                Owed::Ticker => {}
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
                FrameKind::Book => (
                    Channel::Book,
                    !std::mem::replace(&mut sub.book_marked, true),
                ),
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
    /// the unwritten bytes would pass that: the client does not read.
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
fn owed(sub: &ClientSub, channel: Channel) -> Option<Owed> {
    match channel {
        Channel::Ticker if sub.ticker_marked => Some(Owed::Ticker),
        Channel::Book if sub.book_marked => Some(Owed::Book(sub.depth)),
        Channel::Trades => sub.gap.map(|(from, to)| Owed::Gap {
            from,
            to,
            upstream: sub.gap_upstream,
        }),
        _ => None,
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
