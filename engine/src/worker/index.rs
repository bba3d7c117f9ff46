//! The worker's subscription index: per symbol, its market state, its latest ticker
//! frame, and who subscribes to what — ticker and trade subscribers, and book
//! subscribers grouped by depth so that one window diff (and one frame) serves a group.
//!
//! Owned by one worker thread. Subscribing grows the lists; steady-state fan-out only
//! reads them, and the diff buffers grow to the largest window once and are reused.

use crate::frames::FrameId;
use crate::state::{Level, SymbolState};
use crate::tick::BookSide;

use super::clients::ClientKey;

/// Members of one book depth window of a symbol: they share update frames.
#[derive(Debug)]
pub struct DepthGroup {
    /// Levels per side.
    pub depth: u16,
    /// The window last published, best first.
    pub bids: Vec<Level>,
    /// The window last published, best first.
    pub asks: Vec<Level>,
    /// Subscribers at this depth.
    pub members: Vec<ClientKey>,
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
}

impl SymbolSlot {
    /// Whether anyone in this worker subscribes to the symbol, on any channel.
    pub fn has_subscribers(&self) -> bool {
        !self.ticker_subs.is_empty() || !self.trade_subs.is_empty() || !self.book_groups.is_empty()
    }
}

impl SymbolSlot {
    /// Adds `key` to the group of `depth`, making the group (with the current window)
    /// if it is the first at that depth.
    pub fn join_group(&mut self, key: ClientKey, depth: u16) {
        if let Some(g) = self.book_groups.iter_mut().find(|g| g.depth == depth) {
            g.members.push(key);
            return;
        }
        let d = usize::from(depth);
        self.book_groups.push(DepthGroup {
            depth,
            bids: self.state.book.top(BookSide::Bid, d).to_vec(),
            asks: self.state.book.top(BookSide::Ask, d).to_vec(),
            members: vec![key],
        });
    }

    /// Removes `key` from the group of `depth`; an emptied group goes.
    pub fn leave_group(&mut self, key: ClientKey, depth: u16) {
        if let Some(gi) = self.book_groups.iter().position(|g| g.depth == depth) {
            let g = &mut self.book_groups[gi];
            remove_key(&mut g.members, key);
            if g.members.is_empty() {
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
        }
    }
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
        slot.join_group(a, 10);
        slot.join_group(b, 10);
        slot.join_group(b, 5);
        assert_eq!(slot.book_groups.len(), 2);
        slot.leave_group(a, 10);
        slot.leave_group(b, 10);
        assert_eq!(slot.book_groups.len(), 1);
        assert_eq!(slot.book_groups[0].depth, 5);
    }
}
