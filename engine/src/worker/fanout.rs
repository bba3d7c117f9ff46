//! The data path of a worker: a tick is applied to the symbol's state, encoded once per
//! channel (once per depth group for books) into a pooled frame, and offered to every
//! subscriber. An offer queues the shared frame when it fits the client's outbox, else
//! marks the subscription (see [`super::conflate`]); marks are served, in order, as the
//! client's socket drains, and throttle deadlines hand theirs back when they end.
//!
//! Runs on the worker thread inside a pass (see [`super::Core::begin_pass`]); allocates
//! nothing in steady state; never waits for a socket. Clients that got frames join the
//! worker's flush list, written when [`super::flush`] says (see [`super::write`]).

use std::collections::VecDeque;
use std::time::Instant;

use crate::feed::ResyncReply;
use crate::frames::{FrameId, FrameKind, FrameSlab, FrameTag};
use crate::latency::Stage;
use crate::protocol::command::Channel;
use crate::protocol::encode;
use crate::stats::WorkerStats;
use crate::symbol::SymbolId;
use crate::tick::{now_ns, BookSide, Event, Tick};

use super::clients::{Client, ClientKey, Clients};
use super::conflate::ThrottleDeadline;
use super::core::Core;
use super::index::window_diff;

/// The client at `key` if it still takes data, put on the flush list since the caller
/// is about to queue for it (split-borrow form over the `Core` fields it needs).
fn receiver<'a>(
    clients: &'a mut Clients,
    flush_list: &mut VecDeque<(ClientKey, Instant)>,
    now: Instant,
    key: ClientKey,
) -> Option<&'a mut Client> {
    let client = clients.receiver(key)?;
    if !client.in_flush_list {
        client.in_flush_list = true;
        flush_list.push_back((key, now));
    }
    Some(client)
}

/// Whose loss a trade gap reports (its `reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GapCause {
    /// The client, or this worker, fell behind: `slow_consumer`.
    Consumer,
    /// The feed lost trades upstream (a venue or cluster link outage): `feed_gap`.
    Feed,
}

impl Core {
    /// Notes a live event frame: its ingest time (for tick-to-wire) and the encode latency.
    fn encoded(&mut self, id: FrameId, ingest_ts: u64) {
        self.frames.set_ingest_ts(id, ingest_ts);
        self.latency
            .record(Stage::IngestToEncode, now_ns().saturating_sub(ingest_ts));
        WorkerStats::add(&self.stats.frames_encoded, 1);
    }

    /// Applies one tick from a ring and queues the frames it causes for the subscribers.
    pub fn on_tick(&mut self, tick: &Tick) {
        let symbol = tick.symbol;
        let Some(slot) = self.symbols.get_mut(symbol.index()) else {
            return;
        };
        let prev_trade_seq = slot.state.trade_seq;
        let applied = slot.state.apply(tick);
        if let Event::Trade {
            seq,
            price,
            size,
            side,
            trade_id,
        } = tick.event
        {
            if !slot.trade_subs.is_empty() && prev_trade_seq > 0 && seq > prev_trade_seq + 1 {
                // The venue lost trades (the feed skipped their seqs): no trade is lost
                // silently, so every subscriber hears of the exact range first.
                self.fan_out_feed_gap(symbol, prev_trade_seq + 1, seq - 1);
            }
            if !self.symbols[symbol.index()].trade_subs.is_empty() {
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
                self.frames.set_tag(
                    id,
                    FrameTag {
                        kind: FrameKind::Trade,
                        symbol: symbol.0,
                        seq,
                    },
                );
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

    /// Tells every trade subscriber of `symbol` that trades `from..=to` will never come:
    /// one shared `gap` frame (reason `feed_gap`) where it fits in order, else the range
    /// joins the client's own gap mark, so its next `gap` names it exactly.
    fn fan_out_feed_gap(&mut self, symbol: SymbolId, from: u64, to: u64) {
        let id = self.frames.text(|buf| {
            encode::gap(
                buf,
                self.registry.info(symbol),
                Channel::Trades,
                from,
                to,
                "feed_gap",
            );
        });
        for i in 0..self.symbols[symbol.index()].trade_subs.len() {
            let key = self.symbols[symbol.index()].trade_subs[i];
            if self.queue_unless_marked(key, id, false).is_none() {
                continue;
            }
            self.mark(key, symbol, Channel::Trades, (from, to), GapCause::Feed);
        }
        self.frames.release(id);
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
                frames.text(|buf| {
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
                })
            };
            let ingest_ts = self.symbols[symbol.index()].state.book_ingest_ts;
            self.encoded(id, ingest_ts);
            self.frames
                .set_tag(id, FrameTag::data(FrameKind::Book, symbol));
            for mi in 0..self.symbols[symbol.index()].book_groups[gi].members.len() {
                let key = self.symbols[symbol.index()].book_groups[gi].members[mi];
                self.offer(key, symbol, Channel::Book, id);
            }
            self.frames.release(id);
        }
    }

    /// The common start of an offer: the client (put on the flush list), its stale data
    /// shed, and the frame queued when nothing stands in the way (no mark, no throttle
    /// for `state` frames, room in the budget). Returns the frame's length when the
    /// caller must decide (mark or queue), `None` when done or the client is gone.
    fn queue_unless_marked(&mut self, key: ClientKey, id: FrameId, state: bool) -> Option<usize> {
        let len = self.frames.len(id);
        let client = receiver(&mut self.clients, &mut self.flush_list, self.now, key)?;
        shed_stale(
            client,
            &mut self.frames,
            self.clock_ns,
            self.stale_ns,
            &self.stats,
        );
        let throttled = state && client.throttled > 0;
        if client.marked == 0 && !throttled && client.outbox.has_room(len) {
            client.outbox.push(&mut self.frames, id, self.clock_ns);
            self.flush.note_receiver(&mut client.flush_epoch);
            return None;
        }
        Some(len)
    }

    /// Offers a state frame (ticker or book) to a client: queued when it fits, else the
    /// subscription is marked for a later catch-up.
    pub(super) fn offer(
        &mut self,
        key: ClientKey,
        symbol: SymbolId,
        channel: Channel,
        id: FrameId,
    ) {
        let Some(len) = self.queue_unless_marked(key, id, true) else {
            return;
        };
        let now = self.now;
        let Some(client) = self.clients.get_mut(key) else {
            return;
        };
        let Some(sub) = client.subs.get_mut(symbol) else {
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
        let due = next.filter(|due| throttle_ms > 0 && *due > now);
        if *marked {
            WorkerStats::add(&self.stats.conflated, 1);
        } else if let Some(due) = due {
            // Throttled: hold the latest state until the interval ends.
            *marked = true;
            self.throttle.push(ThrottleDeadline {
                due,
                client: key,
                symbol,
                channel,
            });
            WorkerStats::add(&self.stats.conflated, 1);
        } else if client.outbox.has_room(len) {
            client.outbox.push(&mut self.frames, id, self.clock_ns);
            self.flush.note_receiver(&mut client.flush_epoch);
            if throttle_ms > 0 {
                *next = Some(now + std::time::Duration::from_millis(u64::from(throttle_ms)));
            }
        } else {
            *marked = true;
            client.dirty.push_back((symbol, channel));
            WorkerStats::add(&self.stats.conflated, 1);
            note_peak_bytes(&self.stats, client.outbox.peak_bytes());
        }
        client.marked = client.marked + sub.marks() as u32 - before as u32;
    }

    /// Offers a trade frame: queued when it fits and no gap is open, else the gap grows.
    fn offer_trade(&mut self, key: ClientKey, symbol: SymbolId, seq: u64, id: FrameId) {
        let Some(len) = self.queue_unless_marked(key, id, false) else {
            return;
        };
        let Some(client) = self.clients.get_mut(key) else {
            return;
        };
        let Some(sub) = client.subs.get_mut(symbol) else {
            return;
        };
        match sub.gap.as_mut() {
            Some((_, to)) => *to = seq,
            None if client.outbox.has_room(len) => {
                client.outbox.push(&mut self.frames, id, self.clock_ns);
                self.flush.note_receiver(&mut client.flush_epoch);
            }
            None => {
                sub.gap = Some((seq, seq));
                client.marked += 1;
                client.dirty.push_back((symbol, Channel::Trades));
                note_peak(&self.stats, client);
            }
        }
    }

    /// Serves a client's overload marks in order while its outbox has room.
    pub(super) fn serve_marks(&mut self, key: ClientKey) {
        loop {
            let now = self.clock.now();
            let Some(client) = self.clients.get_mut(key) else {
                return;
            };
            let Some(&(symbol, channel)) = client.dirty.front() else {
                return;
            };
            let Some(sub) = client.subs.get(symbol).copied() else {
                client.dirty.pop_front();
                continue;
            };
            let (throttle_ms, next) = sub.throttle(channel);
            if let Some(due) = next.filter(|due| throttle_ms > 0 && *due > now) {
                // Not yet: the throttle deadline serves it when the interval ends.
                client.dirty.pop_front();
                self.throttle.push(ThrottleDeadline {
                    due,
                    client: key,
                    symbol,
                    channel,
                });
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
                    Some((from, to)) => self.frames.text(|buf| {
                        encode::gap(
                            buf,
                            self.registry.info(symbol),
                            Channel::Trades,
                            from,
                            to,
                            if sub.gap_upstream {
                                "feed_gap"
                            } else {
                                "slow_consumer"
                            },
                        );
                    }),
                    None => {
                        client.dirty.pop_front();
                        continue;
                    }
                },
                _ => {
                    client.dirty.pop_front();
                    continue;
                }
            };
            let len = self.frames.len(frame);
            let Some(client) = self.clients.get_mut(key) else {
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
            if let Some(sub) = client.subs.get_mut(symbol) {
                match channel {
                    Channel::Book => WorkerStats::add(&self.stats.snapshots_resent, 1),
                    Channel::Trades => {
                        if let Some((from, to)) = sub.gap {
                            WorkerStats::add(&self.stats.gaps_sent, 1);
                            WorkerStats::add(&self.stats.trades_skipped, to - from + 1);
                        }
                    }
                    Channel::Ticker => {}
                }
                sub.served(channel, now);
            }
        }
    }

    /// Adopts a feed's authoritative state: every subscription of the reply's symbols
    /// catches up (ticker latest, book snapshot, trade gap covering what was missed).
    /// `cause` says whose loss a trade gap is: this worker's, lapped by the ring
    /// ([`GapCause::Consumer`], reported `slow_consumer`), or the feed's, which replaced
    /// a symbol's state after losing data upstream ([`GapCause::Feed`], `feed_gap`).
    pub fn resync(&mut self, reply: ResyncReply, cause: GapCause) {
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
            slot.reset_windows();
            let mut marks: Vec<(ClientKey, Channel)> = Vec::new();
            marks.extend(slot.ticker_subs.iter().map(|k| (*k, Channel::Ticker)));
            for g in &slot.book_groups {
                marks.extend(g.members.iter().map(|k| (*k, Channel::Book)));
            }
            if missed_to >= missed_from {
                marks.extend(slot.trade_subs.iter().map(|k| (*k, Channel::Trades)));
            }
            for (key, channel) in marks {
                self.mark(key, symbol, channel, (missed_from, missed_to), cause);
            }
        }
        self.flush_all();
    }

    /// Marks one subscription for catch-up (`missed` is the trade range a gap covers).
    pub(super) fn mark(
        &mut self,
        key: ClientKey,
        symbol: SymbolId,
        channel: Channel,
        missed: (u64, u64),
        cause: GapCause,
    ) {
        let now = self.now;
        let Some(client) = receiver(&mut self.clients, &mut self.flush_list, now, key) else {
            return;
        };
        let Some(sub) = client.subs.get_mut(symbol) else {
            return;
        };
        let before = sub.marks();
        let fresh = match channel {
            Channel::Ticker => !std::mem::replace(&mut sub.ticker_dirty, true),
            Channel::Book => !std::mem::replace(&mut sub.book_stale, true),
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
            client.dirty.push_back((symbol, channel));
        }
        client.marked = client.marked + sub.marks() as u32 - before as u32;
    }

    /// Hands the throttled subscriptions whose interval has ended to their client's
    /// catch-up queue and writes them.
    pub fn fire_timers(&mut self, now: Instant) {
        let mut fired = false;
        while let Some(d) = self.throttle.pop_due(now) {
            let Some(client) = self.clients.get_mut(d.client) else {
                continue;
            };
            let still_marked = client
                .subs
                .get(d.symbol)
                .is_some_and(|sub| d.channel != Channel::Trades && sub.is_marked(d.channel));
            if still_marked {
                client.dirty.push_back((d.symbol, d.channel));
                if !client.in_flush_list {
                    client.in_flush_list = true;
                    self.flush_list.push_back((d.client, now));
                }
                fired = true;
            }
        }
        if fired {
            self.flush_all();
        }
    }

    /// When the next throttle deadline is due, if any.
    pub fn next_timer(&self) -> Option<Instant> {
        self.throttle.next_due()
    }
}

/// When the oldest frame in a client's outbox has waited past the staleness limit, drops
/// its queued data frames and marks their subscriptions for catch-up, exactly as if
/// they had not fit the budget: the client then gets the market as it is now (latest
/// ticker, fresh snapshot, one exact trade gap) instead of a queue of old frames.
fn shed_stale(
    client: &mut Client,
    frames: &mut FrameSlab,
    now_ns: u64,
    limit_ns: u64,
    stats: &WorkerStats,
) {
    let Some(oldest) = client.outbox.oldest_queued_ns() else {
        return;
    };
    if now_ns.saturating_sub(oldest) <= limit_ns {
        return;
    }
    let Client {
        outbox,
        subs,
        dirty,
        marked,
        ..
    } = client;
    let mut made = 0u64;
    outbox.discard_data(frames, |tag| {
        let symbol = SymbolId(tag.symbol);
        let Some(sub) = subs.get_mut(symbol) else {
            return;
        };
        let (channel, fresh) = match tag.kind {
            FrameKind::Ticker => (
                Channel::Ticker,
                !std::mem::replace(&mut sub.ticker_dirty, true),
            ),
            FrameKind::Book => (Channel::Book, !std::mem::replace(&mut sub.book_stale, true)),
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
            dirty.push_back((symbol, channel));
            *marked += 1;
            made += 1;
        }
    });
    WorkerStats::add(&stats.stale_conflations, made);
}

/// Publishes an outbox's peak to the worker's counter (when it is a new high).
pub(super) fn note_peak(stats: &WorkerStats, client: &Client) {
    note_peak_bytes(stats, client.outbox.peak_bytes());
}

/// [`note_peak`] for a peak already read.
pub(super) fn note_peak_bytes(stats: &WorkerStats, peak: usize) {
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
