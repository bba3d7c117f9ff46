//! The worker's symbol index: per symbol, its market state, its latest ticker frame,
//! and who subscribes to what — ticker and trade subscribers, and book subscribers
//! grouped by depth so that one window diff (and one frame) serves a group. The index
//! encodes every frame made of a symbol's state (ticker, snapshot, book diff, trade,
//! gap), and keeps the engine's interest counters in step with its subscriber lists.
//!
//! Owned by one worker thread. Subscribing grows the lists; steady-state fan-out only
//! reads them, and the diff buffers grow to the largest window once and are reused.

use std::sync::Arc;

use crate::frames::{FrameId, FrameKind, FrameSlab, FrameTag};
use crate::interest::Interest;
use crate::protocol::command::{Channel, ChannelSet};
use crate::protocol::encode;
use crate::protocol::version::Version;
use crate::state::{Level, SymbolState};
use crate::stats::WorkerStats;
use crate::symbol::{SymbolId, SymbolRegistry};
use crate::tick::{BookSide, Event, Tick};

use super::book_log::BookLog;
use super::client::Owed;
use super::clients::ClientKey;
use super::history::{TradeHistory, TradeRecord};

/// Every symbol of the registry as one worker sees it (see the module doc).
pub struct SymbolIndex {
    registry: Arc<SymbolRegistry>,
    slots: Vec<SymbolSlot>,
    /// A book diff's changed levels, reused across events.
    diff_bids: Vec<Level>,
    diff_asks: Vec<Level>,
    /// A window rebuilt at an older seq (merged updates), reused.
    old_window: Vec<Level>,
    /// The engine's per-symbol interest counters, when something follows them.
    interest: Option<Arc<Interest>>,
    /// Trades each symbol's history keeps (`trade_history`).
    trade_history: usize,
}

impl SymbolIndex {
    /// An index of every symbol in `registry`, with no subscribers.
    pub fn new(registry: Arc<SymbolRegistry>) -> SymbolIndex {
        SymbolIndex {
            slots: (0..registry.len()).map(|_| SymbolSlot::default()).collect(),
            registry,
            diff_bids: Vec::new(),
            diff_asks: Vec::new(),
            old_window: Vec::new(),
            interest: None,
            trade_history: 0,
        }
    }

    /// Keeps the last `trades` trades of each symbol for replays (see
    /// [`super::history`]).
    pub fn set_trade_history(&mut self, trades: usize) {
        self.trade_history = trades;
    }

    /// Records a trade in its symbol's history.
    pub fn record_trade(&mut self, symbol: SymbolId, trade: TradeRecord) {
        let capacity = self.trade_history;
        if let Some(slot) = self.slots.get_mut(symbol.index()) {
            slot.trades.push(trade, capacity);
        }
    }

    /// The frame that replays the first of trades `from..=to` of `symbol`, tagged with the
    /// last seq it accounts for: the trade at `from` from the history, or, where the
    /// history holds no trade at `from`, one `gap` up to the next trade held (`expired`
    /// where the history no longer reaches back that far, `feed_gap` for a hole the
    /// feed left inside it). The caller owns one reference.
    pub fn replay_frame(
        &self,
        symbol: SymbolId,
        (from, to): (u64, u64),
        frames: &mut FrameSlab,
    ) -> FrameId {
        let history = &self.slots[symbol.index()].trades;
        let next = history.at_or_after(from).filter(|t| t.seq <= to);
        if let Some(t) = next.filter(|t| t.seq == from) {
            let id = frames.text(|buf| {
                encode::trade(
                    buf,
                    self.registry.info(symbol),
                    t.seq,
                    t.price,
                    t.size,
                    t.side,
                    t.trade_id,
                    t.ts,
                    t.ingest_ts,
                );
            });
            frames.set_tag(
                id,
                FrameTag {
                    kind: FrameKind::Trade,
                    symbol: symbol.0,
                    seq: t.seq,
                },
            );
            return id;
        }
        let last = next.map_or(to, |t| t.seq - 1);
        let expired = history.first_seq().is_none_or(|first| from < first);
        let reason = if expired { "expired" } else { "feed_gap" };
        let id = self.gap_frame(symbol, (from, last), reason, frames);
        // Not data: a gap is never shed; its seq says what it accounted for.
        frames.set_tag(
            id,
            FrameTag {
                kind: FrameKind::Reply,
                symbol: symbol.0,
                seq: last,
            },
        );
        id
    }

    /// The symbol registry.
    pub fn registry(&self) -> &Arc<SymbolRegistry> {
        &self.registry
    }

    /// Reports this worker's first and last subscribers of each symbol to `interest`.
    pub fn set_interest(&mut self, interest: Arc<Interest>) {
        self.interest = Some(interest);
    }

    /// The symbol's slot, if the registry has it.
    pub fn get(&self, symbol: SymbolId) -> Option<&SymbolSlot> {
        self.slots.get(symbol.index())
    }

    /// The symbol's slot, mutably.
    pub fn get_mut(&mut self, symbol: SymbolId) -> Option<&mut SymbolSlot> {
        self.slots.get_mut(symbol.index())
    }

    /// Adds `key` to the subscriber lists of the `channels` it did not hold (`held`), and
    /// moves it to the depth group of `depth` when it subscribes the book.
    pub fn add_subscriber(
        &mut self,
        key: ClientKey,
        symbol: SymbolId,
        channels: ChannelSet,
        held: ChannelSet,
        (depth, old_depth): (u16, u16),
        version: Version,
    ) {
        let Some(slot) = self.slots.get_mut(symbol.index()) else {
            return;
        };
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
            slot.join_group(key, depth, version);
        }
        self.note_interest(symbol);
    }

    /// Removes `key` from the lists of the channels it `left` (its book group was of
    /// `depth`); the ticker frame goes when nobody subscribes to it any more.
    pub fn remove_subscriber(
        &mut self,
        key: ClientKey,
        symbol: SymbolId,
        left: ChannelSet,
        depth: u16,
        frames: &mut FrameSlab,
    ) {
        let Some(slot) = self.slots.get_mut(symbol.index()) else {
            return;
        };
        for ch in left.iter() {
            match ch {
                Channel::Ticker => remove_key(&mut slot.ticker_subs, key),
                Channel::Trades => remove_key(&mut slot.trade_subs, key),
                Channel::Book => slot.leave_group(key, depth),
            }
        }
        if slot.ticker_subs.is_empty() {
            slot.drop_ticker_frame(frames);
        }
        self.note_interest(symbol);
    }

    /// Brings the interest counter of `symbol` up to date after its subscribers changed.
    fn note_interest(&mut self, symbol: SymbolId) {
        let Some(interest) = &self.interest else {
            return;
        };
        let Some(slot) = self.slots.get_mut(symbol.index()) else {
            return;
        };
        let has = slot.has_subscribers();
        if has != slot.interested {
            slot.interested = has;
            interest.set(symbol, has);
        }
    }

    /// Replaces the symbol's state with an authoritative one (a resync); returns the
    /// trade seqs the old state missed (empty when `from > to`), or `None` for a symbol
    /// the registry does not have.
    pub fn adopt(
        &mut self,
        symbol: SymbolId,
        state: SymbolState,
        frames: &mut FrameSlab,
    ) -> Option<(u64, u64)> {
        let slot = self.slots.get_mut(symbol.index())?;
        let missed = (slot.state.trade_seq + 1, state.trade_seq);
        slot.state = state;
        slot.drop_ticker_frame(frames);
        slot.reset_windows();
        slot.book_log.restart(slot.state.book_seq);
        Some(missed)
    }

    // ---- encoding --------------------------------------------------------------------

    /// The symbol's latest ticker frame (encoded now if it is not yet); borrowed, not
    /// retained.
    pub fn ticker_frame(&mut self, symbol: SymbolId, frames: &mut FrameSlab) -> FrameId {
        let slot = &mut self.slots[symbol.index()];
        if let Some(f) = slot.ticker_frame {
            return f;
        }
        let info = self.registry.info(symbol);
        let id = frames.text(|buf| encode::ticker(buf, info, &slot.state.ticker));
        frames.set_tag(id, FrameTag::data(FrameKind::Ticker, symbol));
        slot.ticker_frame = Some(id);
        id
    }

    /// A fresh snapshot frame of `symbol` at `depth`; the caller owns one reference.
    pub fn book_snapshot_frame(
        &self,
        symbol: SymbolId,
        depth: u16,
        frames: &mut FrameSlab,
    ) -> FrameId {
        let state = &self.slots[symbol.index()].state;
        let d = usize::from(depth);
        let (bids, asks) = (
            state.book.top(BookSide::Bid, d),
            state.book.top(BookSide::Ask, d),
        );
        book_frame(frames, &self.registry, symbol, state, true, (bids, asks))
    }

    /// The frame of `tick` when it is a trade; the caller owns one reference.
    pub fn trade_frame(&self, tick: &Tick, frames: &mut FrameSlab) -> Option<FrameId> {
        let Event::Trade {
            seq,
            price,
            size,
            side,
            trade_id,
        } = tick.event
        else {
            return None;
        };
        let symbol = tick.symbol;
        let id = frames.text(|buf| {
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
        frames.set_tag(
            id,
            FrameTag {
                kind: FrameKind::Trade,
                symbol: symbol.0,
                seq,
            },
        );
        Some(id)
    }

    /// A `gap` frame for trades `from..=to` with its `reason`; the caller owns one
    /// reference.
    pub fn gap_frame(
        &self,
        symbol: SymbolId,
        (from, to): (u64, u64),
        reason: &str,
        frames: &mut FrameSlab,
    ) -> FrameId {
        frames.text(|buf| {
            encode::gap(
                buf,
                self.registry.info(symbol),
                Channel::Trades,
                from,
                to,
                reason,
            );
        })
    }

    /// The update frames of depth group `group` after a book event: the diff of its
    /// window against the one it last published (which it then keeps), encoded once for
    /// its version 1 members and once, with `prev_seq`, for its version 2 members, each
    /// only when the group has such members. The caller owns one reference of each.
    pub fn book_diff_frames(
        &mut self,
        symbol: SymbolId,
        group: usize,
        frames: &mut FrameSlab,
    ) -> (Option<FrameId>, Option<FrameId>) {
        let slot = &mut self.slots[symbol.index()];
        let state = &slot.state;
        let group = &mut slot.book_groups[group];
        let d = usize::from(group.depth);
        window_diff(
            BookSide::Bid,
            &mut group.bids,
            state.book.top(BookSide::Bid, d),
            &mut self.diff_bids,
        );
        window_diff(
            BookSide::Ask,
            &mut group.asks,
            state.book.top(BookSide::Ask, d),
            &mut self.diff_asks,
        );
        let prev_seq = std::mem::replace(&mut group.seq, state.book_seq);
        let diff = (&self.diff_bids[..], &self.diff_asks[..]);
        let v1 = (!group.members.is_empty())
            .then(|| book_frame(frames, &self.registry, symbol, state, false, diff));
        let v2 = (!group.members_v2.is_empty())
            .then(|| book_update_frame(frames, &self.registry, symbol, state, prev_seq, diff));
        (v1, v2)
    }

    /// The frame that brings a version 2 client's book of `symbol` at `depth` from seq
    /// `since` to now: one merged update (every level of the window whose size differs
    /// between the two states, 0 for a level that left it) where the symbol's change log
    /// reaches back to `since` and the update's frame is no larger than the snapshot's,
    /// else a snapshot. True with it when it is a merge. The caller owns one reference.
    pub fn book_catch_up_frame(
        &mut self,
        symbol: SymbolId,
        depth: u16,
        since: u64,
        frames: &mut FrameSlab,
    ) -> (FrameId, bool) {
        let slot = &self.slots[symbol.index()];
        let state = &slot.state;
        let d = usize::from(depth);
        let mut merged = since > 0;
        for (side, out) in [
            (BookSide::Bid, &mut self.diff_bids),
            (BookSide::Ask, &mut self.diff_asks),
        ] {
            if !merged {
                break;
            }
            merged = slot
                .book_log
                .window_at(&state.book, side, d, since, &mut self.old_window);
            if merged {
                window_diff(side, &mut self.old_window, state.book.top(side, d), out);
            }
        }
        let snapshot = self.book_snapshot_frame(symbol, depth, frames);
        if merged {
            // Both are encoded (pooled frames: this allocates nothing) and the smaller
            // goes; a tie goes to the merge.
            let diff = (&self.diff_bids[..], &self.diff_asks[..]);
            let id = book_update_frame(frames, &self.registry, symbol, state, since, diff);
            if frames.len(id) <= frames.len(snapshot) {
                frames.release(snapshot);
                return (id, true);
            }
            frames.release(id);
        }
        (snapshot, false)
    }

    /// The frame a mark of `symbol` is owed; the caller owns one reference.
    pub fn catch_up_frame(
        &mut self,
        symbol: SymbolId,
        owed: Owed,
        frames: &mut FrameSlab,
        stats: &WorkerStats,
    ) -> FrameId {
        match owed {
            Owed::Ticker => {
                let f = self.ticker_frame(symbol, frames);
                frames.retain(f);
                f
            }
            Owed::Book(depth) => self.book_snapshot_frame(symbol, depth, frames),
            Owed::BookSince { depth, seq } => {
                let (id, merged) = self.book_catch_up_frame(symbol, depth, seq, frames);
                let counter = if merged {
                    &stats.book_merges
                } else {
                    &stats.book_snapshots_instead
                };
                WorkerStats::add(counter, 1);
                id
            }
            Owed::Replay { from, to } => self.replay_frame(symbol, (from, to), frames),
            Owed::Gap { from, to, upstream } => self.gap_frame(
                symbol,
                (from, to),
                if upstream {
                    "feed_gap"
                } else {
                    "slow_consumer"
                },
                frames,
            ),
        }
    }
}

/// Members of one book depth window of a symbol: they share update frames.
#[derive(Debug)]
pub struct DepthGroup {
    /// Levels per side.
    pub depth: u16,
    /// The window last published, best first.
    pub bids: Vec<Level>,
    /// The window last published, best first.
    pub asks: Vec<Level>,
    /// Version 1 subscribers at this depth.
    pub members: Vec<ClientKey>,
    /// Version 2 subscribers at this depth (their updates carry `prev_seq`).
    pub members_v2: Vec<ClientKey>,
    /// The book seq of the window last published.
    pub seq: u64,
}

/// One symbol as the worker sees it.
#[derive(Default)]
pub struct SymbolSlot {
    /// Market state, kept in step with the feed's by applying the same ticks.
    pub state: SymbolState,
    /// The latest ticker, encoded while anyone subscribes to it.
    pub ticker_frame: Option<FrameId>,
    /// Ticker subscribers.
    pub ticker_subs: Vec<ClientKey>,
    /// Trade subscribers.
    pub trade_subs: Vec<ClientKey>,
    /// Book subscribers by depth.
    pub book_groups: Vec<DepthGroup>,
    /// Whether this worker counts in the engine's [`crate::interest::Interest`] for it.
    pub interested: bool,
    /// The last trades, for replays.
    pub trades: TradeHistory,
    /// The recent level changes, while version 2 clients hold the book (merges).
    pub book_log: BookLog,
    /// Version 2 book subscribers, over every depth group.
    pub v2_book_subs: u32,
}

impl SymbolSlot {
    /// Whether anyone in this worker subscribes to the symbol, on any channel.
    pub fn has_subscribers(&self) -> bool {
        !self.ticker_subs.is_empty() || !self.trade_subs.is_empty() || !self.book_groups.is_empty()
    }

    /// Drops the cached ticker frame (the ticker changed, or nobody reads it).
    pub fn drop_ticker_frame(&mut self, frames: &mut FrameSlab) {
        if let Some(f) = self.ticker_frame.take() {
            frames.release(f);
        }
    }

    /// Adds `key`, speaking `version`, to the group of `depth`, making the group (with
    /// the current window) if it is the first at that depth.
    pub fn join_group(&mut self, key: ClientKey, depth: u16, version: Version) {
        if version.is_v2() {
            self.v2_book_subs += 1;
            self.book_log.start(self.state.book_seq);
        }
        let gi = match self.book_groups.iter().position(|g| g.depth == depth) {
            Some(gi) => gi,
            None => {
                let d = usize::from(depth);
                self.book_groups.push(DepthGroup {
                    depth,
                    bids: self.state.book.top(BookSide::Bid, d).to_vec(),
                    asks: self.state.book.top(BookSide::Ask, d).to_vec(),
                    members: Vec::new(),
                    members_v2: Vec::new(),
                    seq: self.state.book_seq,
                });
                self.book_groups.len() - 1
            }
        };
        let g = &mut self.book_groups[gi];
        if version.is_v2() {
            g.members_v2.push(key);
        } else {
            g.members.push(key);
        }
    }

    /// Removes `key` from the group of `depth`; an emptied group goes.
    pub fn leave_group(&mut self, key: ClientKey, depth: u16) {
        if let Some(gi) = self.book_groups.iter().position(|g| g.depth == depth) {
            let g = &mut self.book_groups[gi];
            let v2 = g.members_v2.len();
            remove_key(&mut g.members, key);
            remove_key(&mut g.members_v2, key);
            if g.members_v2.len() < v2 {
                self.v2_book_subs -= 1;
                if self.v2_book_subs == 0 {
                    self.book_log.stop();
                }
            }
            if g.members.is_empty() && g.members_v2.is_empty() {
                self.book_groups.swap_remove(gi);
            }
        }
    }

    /// Resets every group's window to the current book (after a resync).
    pub fn reset_windows(&mut self) {
        let book = &self.state.book;
        for g in &mut self.book_groups {
            let d = usize::from(g.depth);
            g.bids.clear();
            g.bids.extend_from_slice(book.top(BookSide::Bid, d));
            g.asks.clear();
            g.asks.extend_from_slice(book.top(BookSide::Ask, d));
            g.seq = self.state.book_seq;
        }
    }
}

/// Encodes a book message of `symbol` in `state` (a snapshot, or a diff) with these
/// `(bids, asks)`, tagged as the symbol's book data; the caller owns one reference.
fn book_frame(
    frames: &mut FrameSlab,
    registry: &SymbolRegistry,
    symbol: SymbolId,
    state: &SymbolState,
    snapshot: bool,
    (bids, asks): (&[Level], &[Level]),
) -> FrameId {
    let id = frames.text(|buf| {
        encode::book(
            buf,
            registry.info(symbol),
            state.book_seq,
            snapshot,
            bids,
            asks,
            state.book_ts,
            state.book_ingest_ts,
        );
    });
    frames.set_tag(id, FrameTag::data(FrameKind::Book, symbol));
    id
}

/// Encodes a version 2 book update of `symbol` in `state` from `prev_seq`, tagged as the
/// symbol's book data with `prev_seq` as its seq (what a client that misses it holds);
/// the caller owns one reference.
fn book_update_frame(
    frames: &mut FrameSlab,
    registry: &SymbolRegistry,
    symbol: SymbolId,
    state: &SymbolState,
    prev_seq: u64,
    (bids, asks): (&[Level], &[Level]),
) -> FrameId {
    let id = frames.text(|buf| {
        encode::book_update_v2(
            buf,
            registry.info(symbol),
            state.book_seq,
            prev_seq,
            bids,
            asks,
            state.book_ts,
            state.book_ingest_ts,
        );
    });
    frames.set_tag(
        id,
        FrameTag {
            kind: FrameKind::Book,
            symbol: symbol.0,
            seq: prev_seq,
        },
    );
    id
}

/// Removes `key` from a subscriber list (order does not matter).
pub fn remove_key(list: &mut Vec<ClientKey>, key: ClientKey) {
    if let Some(i) = list.iter().position(|k| *k == key) {
        list.swap_remove(i);
    }
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
pub fn window_diff(side: BookSide, old: &mut Vec<Level>, new: &[Level], out: &mut Vec<Level>) {
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

    #[test]
    fn groups_are_made_on_first_join_and_dropped_when_empty() {
        let mut slot = SymbolSlot::default();
        let (a, b) = (ClientKey::new(0, 1), ClientKey::new(1, 1));
        slot.join_group(a, 10, Version::V1);
        slot.join_group(b, 10, Version::V2);
        slot.join_group(b, 5, Version::V1);
        assert_eq!(slot.book_groups.len(), 2);
        slot.leave_group(a, 10);
        slot.leave_group(b, 10);
        assert_eq!(slot.book_groups.len(), 1);
        assert_eq!(slot.book_groups[0].depth, 5);
    }
}
