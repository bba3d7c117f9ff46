//! The data path of a worker: a tick is applied to the symbol's state, encoded once per
//! channel (once per depth group for books) into a pooled frame, and offered to every
//! subscriber. Each client decides what an offer becomes ([`Client::offer`]: queued, or
//! its subscription marked); marks are served, in order, as the client's socket drains,
//! and throttle deadlines hand theirs back when they end.
//!
//! Runs on the worker thread inside a pass (see [`super::Core::begin_pass`]); allocates
//! nothing in steady state; never waits for a socket. Clients that got frames join the
//! worker's flush list, written when [`super::flush`] says (see [`super::write`]).

use std::time::Instant;

use crate::feed::ResyncReply;
use crate::frames::{FrameId, FrameSlab};
use crate::latency::{Stage, StageRecorder};
use crate::protocol::command::Channel;
use crate::stats::WorkerStats;
use crate::symbol::SymbolId;
use crate::tick::{now_ns, Event, LevelFlags, Tick};

pub use super::client::GapCause;
use super::client::{Client, Offer, Offered};
use super::clients::{ClientKey, ClientTable};
use super::clock::{Clock, PassTime};
use super::conflate::{Throttle, ThrottleDeadline};
use super::history::TradeRecord;
use super::index::SymbolIndex;
use super::write::WriteScheduler;

/// The worker's parts a frame goes through on its way to clients, borrowed for one
/// data-path call: everything but the [`SymbolIndex`], which the caller walks beside it.
pub struct Outlet<'a> {
    /// The clients.
    pub clients: &'a mut ClientTable,
    /// The frame pool.
    pub frames: &'a mut FrameSlab,
    /// The flush list and coalescing policy.
    pub writes: &'a mut WriteScheduler,
    /// Throttle deadlines.
    pub throttle: &'a mut Throttle,
    /// The worker's clock.
    pub clock: &'a Clock,
    /// The current pass's times.
    pub pass: PassTime,
    /// Latency stages.
    pub latency: &'a mut StageRecorder,
    /// Counters.
    pub stats: &'a WorkerStats,
}

impl Outlet<'_> {
    /// The client at `key` if it still takes data, put on the flush list since the
    /// caller is about to queue for it.
    fn receiver(&mut self, key: ClientKey) -> Option<&mut Client> {
        let client = self.clients.receiver(key)?;
        self.writes.enlist(key, client, self.pass.now);
        Some(client)
    }

    /// Offers frame `id` of `symbol` to the client at `key` (see [`Client::offer`]).
    pub fn offer(&mut self, key: ClientKey, symbol: SymbolId, offer: Offer, id: FrameId) {
        let (pass, stats) = (self.pass, self.stats);
        let Some(client) = self.clients.receiver(key) else {
            return;
        };
        self.writes.enlist(key, client, pass.now);
        match client.offer(self.frames, id, symbol, offer, pass, stats) {
            Offered::Queued => self.writes.delivered(client),
            Offered::Held(due) => {
                if let Offer::State(channel) = offer {
                    self.throttle.push(ThrottleDeadline {
                        due,
                        client: key,
                        symbol,
                        channel,
                    });
                }
            }
            Offered::Marked | Offered::Refused => {}
        }
    }

    /// Offers frame `id` to each client in `keys`.
    fn offer_all(&mut self, keys: &[ClientKey], symbol: SymbolId, offer: Offer, id: FrameId) {
        for &key in keys {
            self.offer(key, symbol, offer, id);
        }
    }

    /// Marks one subscription for catch-up (see [`Client::mark`]).
    pub fn mark(
        &mut self,
        key: ClientKey,
        symbol: SymbolId,
        channel: Channel,
        missed: (u64, u64),
        cause: GapCause,
    ) {
        if let Some(client) = self.receiver(key) {
            client.mark(symbol, channel, missed, cause);
        }
    }

    /// Notes a live event frame: its ingest time (for tick-to-wire) and the encode latency.
    fn encoded(&mut self, id: FrameId, ingest_ts: u64) {
        self.frames.set_ingest_ts(id, ingest_ts);
        self.latency
            .record(Stage::IngestToEncode, now_ns().saturating_sub(ingest_ts));
        WorkerStats::add(&self.stats.frames_encoded, 1);
    }

    /// Serves a client's marks in order while its outbox has room.
    pub fn serve_marks(&mut self, symbols: &mut SymbolIndex, key: ClientKey) {
        let Some(client) = self.clients.get_mut(key) else {
            return;
        };
        let throttle = &mut *self.throttle;
        let stats = self.stats;
        client.serve_marks(
            self.frames,
            self.clock,
            self.pass.queued_ns,
            self.stats,
            |frames, symbol, owed| symbols.catch_up_frame(symbol, owed, frames, stats),
            |symbol, channel, due| {
                throttle.push(ThrottleDeadline {
                    due,
                    client: key,
                    symbol,
                    channel,
                })
            },
        );
    }

    /// Hands the throttled subscriptions whose interval has ended to their client's
    /// catch-up queue; true when any was, so that the caller writes them.
    pub fn fire_timers(&mut self, now: Instant) -> bool {
        let mut fired = false;
        while let Some(d) = self.throttle.pop_due(now) {
            let Some(client) = self.clients.get_mut(d.client) else {
                continue;
            };
            if client.rearm(d.symbol, d.channel) {
                self.writes.enlist(d.client, client, now);
                fired = true;
            }
        }
        fired
    }
}

/// Applies one tick from a ring and offers the frames it causes to the subscribers.
pub fn on_tick(symbols: &mut SymbolIndex, out: &mut Outlet<'_>, tick: &Tick) {
    let symbol = tick.symbol;
    let Some(slot) = symbols.get_mut(symbol) else {
        return;
    };
    let prev_trade_seq = slot.state.trade_seq;
    if let Event::Level {
        seq,
        side,
        price,
        size,
        flags,
    } = tick.event
    {
        if slot.book_log.is_on() {
            if flags.contains(LevelFlags::CLEAR) {
                slot.book_log.restart(seq);
            } else {
                let old = slot.state.book.size_at(side, price);
                slot.book_log.record(seq, side, price, old, size);
            }
        }
    }
    let applied = slot.state.apply(tick);
    if let Event::Trade {
        seq,
        price,
        size,
        side,
        trade_id,
    } = tick.event
    {
        symbols.record_trade(
            symbol,
            TradeRecord {
                seq,
                price,
                size,
                trade_id,
                ts: tick.ts,
                ingest_ts: tick.ingest_ts,
                side,
            },
        );
        let Some(slot) = symbols.get(symbol) else {
            return;
        };
        let has_trade_subs = !slot.trade_subs.is_empty();
        if has_trade_subs && prev_trade_seq > 0 && seq > prev_trade_seq + 1 {
            // The venue lost trades (the feed skipped their seqs): no trade is lost
            // silently, so every subscriber hears of the exact range first.
            fan_out_feed_gap(symbols, out, symbol, prev_trade_seq + 1, seq - 1);
        }
        if has_trade_subs {
            if let Some(id) = symbols.trade_frame(tick, out.frames) {
                out.encoded(id, tick.ingest_ts);
                if let Some(slot) = symbols.get(symbol) {
                    out.offer_all(&slot.trade_subs, symbol, Offer::Trade(seq), id);
                }
                out.frames.release(id);
            }
        }
    }
    if applied.book_done {
        fan_out_book(symbols, out, symbol);
    }
    if applied.ticker {
        let Some(slot) = symbols.get_mut(symbol) else {
            return;
        };
        slot.drop_ticker_frame(out.frames);
        if !slot.ticker_subs.is_empty() {
            let frame = symbols.ticker_frame(symbol, out.frames);
            out.encoded(frame, tick.ingest_ts);
            if let Some(slot) = symbols.get(symbol) {
                out.offer_all(
                    &slot.ticker_subs,
                    symbol,
                    Offer::State(Channel::Ticker),
                    frame,
                );
            }
        }
    }
}

/// Tells every trade subscriber of `symbol` that trades `from..=to` will never come:
/// one shared `gap` frame (reason `feed_gap`) where it fits in order, else the range
/// joins the client's own gap mark, so its next `gap` names it exactly.
fn fan_out_feed_gap(
    symbols: &SymbolIndex,
    out: &mut Outlet<'_>,
    symbol: SymbolId,
    from: u64,
    to: u64,
) {
    let id = symbols.gap_frame(symbol, (from, to), "feed_gap", out.frames);
    if let Some(slot) = symbols.get(symbol) {
        out.offer_all(&slot.trade_subs, symbol, Offer::FeedGap(from, to), id);
    }
    out.frames.release(id);
}

/// Offers each depth group of `symbol` its diff after a book event.
fn fan_out_book(symbols: &mut SymbolIndex, out: &mut Outlet<'_>, symbol: SymbolId) {
    let groups = symbols.get(symbol).map_or(0, |slot| slot.book_groups.len());
    for group in 0..groups {
        let (v1, v2) = symbols.book_diff_frames(symbol, group, out.frames);
        let Some(slot) = symbols.get(symbol) else {
            return;
        };
        let g = &slot.book_groups[group];
        for (id, members) in [(v1, &g.members), (v2, &g.members_v2)] {
            if let Some(id) = id {
                out.encoded(id, slot.state.book_ingest_ts);
                out.offer_all(members, symbol, Offer::State(Channel::Book), id);
                out.frames.release(id);
            }
        }
    }
}

/// Adopts a feed's authoritative state: every subscription of the reply's symbols
/// catches up (ticker latest, book snapshot, trade gap covering what was missed).
/// `cause` says whose loss a trade gap is: this worker's, lapped by the ring
/// ([`GapCause::Consumer`], reported `slow_consumer`), or the feed's, which replaced a
/// symbol's state after losing data upstream ([`GapCause::Feed`], `feed_gap`). The
/// caller writes every client afterwards.
pub fn resync(
    symbols: &mut SymbolIndex,
    out: &mut Outlet<'_>,
    reply: ResyncReply,
    cause: GapCause,
) {
    for (symbol, state) in reply.states {
        let Some(missed) = symbols.adopt(symbol, state, out.frames) else {
            continue;
        };
        let Some(slot) = symbols.get(symbol) else {
            continue;
        };
        for &key in &slot.ticker_subs {
            out.mark(key, symbol, Channel::Ticker, missed, cause);
        }
        for group in &slot.book_groups {
            for &key in group.members.iter().chain(&group.members_v2) {
                out.mark(key, symbol, Channel::Book, missed, cause);
            }
        }
        if missed.1 >= missed.0 {
            for &key in &slot.trade_subs {
                out.mark(key, symbol, Channel::Trades, missed, cause);
            }
        }
    }
}
