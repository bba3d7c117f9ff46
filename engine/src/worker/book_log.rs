//! The recent level changes of one symbol's book, as one worker applied them, from which
//! the depth window at an older book seq is rebuilt: what a version 2 client that fell
//! behind holds, so that it can be sent one merged update instead of a snapshot
//! (`protocol.md`, "Merged book updates").
//!
//! A change is `(seq, side, price, old size)`. The window at seq `s` is the
//! current book's top `depth + m` levels (m: changes after `s`; no level of the old
//! window can have fallen further) with the changes after `s` undone, newest first, cut
//! to `depth`. The log keeps the last [`CAPACITY`] changes; a book cleared by the venue,
//! a resync, or the log's wrap moves its *base*, the oldest seq it can rebuild, and a
//! client behind the base gets a snapshot.
//!
//! A symbol logs only while this worker has a version 2 book subscriber for it; the ring
//! is allocated once, to [`CAPACITY`] (32 bytes a change: 256 KiB), at its first such
//! subscriber, and the rebuild's scratch vectors grow to their working size once. Owned by
//! one worker thread; nothing blocks.

use crate::state::{Book, Level};
use crate::tick::BookSide;

/// Changes a symbol's log keeps.
pub const CAPACITY: usize = 8192;

/// One level change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Change {
    seq: u64,
    price: i64,
    old: i64,
    side: BookSide,
}

/// A ring of a symbol's last level changes (see the module doc).
#[derive(Debug, Default)]
pub struct BookLog {
    ring: Vec<Change>,
    /// Index of the oldest change once the ring is full.
    head: usize,
    /// Whether changes are being logged (a version 2 book subscriber is here).
    on: bool,
    /// The oldest book seq whose window can be rebuilt.
    base: u64,
}

impl BookLog {
    /// Starts logging with the book at `seq` (allocates the ring the first time).
    pub fn start(&mut self, seq: u64) {
        if self.on {
            return;
        }
        if self.ring.capacity() == 0 {
            self.ring.reserve_exact(CAPACITY);
        }
        self.on = true;
        self.restart(seq);
    }

    /// Stops logging (no version 2 book subscriber left); keeps the ring's memory.
    pub fn stop(&mut self) {
        self.on = false;
        self.ring.clear();
        self.head = 0;
    }

    /// Forgets every change: nothing before `seq` can be rebuilt (a cleared book, a
    /// resync).
    pub fn restart(&mut self, seq: u64) {
        self.ring.clear();
        self.head = 0;
        self.base = seq;
    }

    /// Whether changes are being logged.
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// Notes that the level `price` on `side` goes from `old` to `new` in the book event
    /// `seq`.
    pub fn record(&mut self, seq: u64, side: BookSide, price: i64, old: i64, new: i64) {
        if !self.on || old == new {
            return;
        }
        let change = Change {
            seq,
            price,
            old,
            side,
        };
        if self.ring.len() < CAPACITY {
            self.ring.push(change);
        } else {
            // The oldest change goes: its event can no longer be undone.
            self.base = self.base.max(self.ring[self.head].seq);
            self.ring[self.head] = change;
            self.head = (self.head + 1) % CAPACITY;
        }
    }

    fn at(&self, i: usize) -> &Change {
        &self.ring[(self.head + i) % self.ring.len()]
    }

    /// Rebuilds into `out` the top `depth` levels of `side` at book seq `seq`, from
    /// `book` (the current one); false when the log does not reach back to `seq`.
    pub fn window_at(
        &self,
        book: &Book,
        side: BookSide,
        depth: usize,
        seq: u64,
        out: &mut Vec<Level>,
    ) -> bool {
        if !self.on || seq < self.base {
            return false;
        }
        // The first change after `seq` (changes are in seq order).
        let (mut lo, mut hi) = (0, self.ring.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.at(mid).seq <= seq {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let after = self.ring.len() - lo;
        out.clear();
        out.extend_from_slice(book.top(side, depth + after));
        for i in (lo..self.ring.len()).rev() {
            let c = self.at(i);
            if c.side != side {
                continue;
            }
            set(out, side, c.price, c.old);
        }
        out.truncate(depth);
        true
    }
}

/// Where `price` is (`Ok`) or goes (`Err`) in a side's levels, best first.
fn find(levels: &[Level], side: BookSide, price: i64) -> Result<usize, usize> {
    match side {
        BookSide::Bid => levels.binary_search_by(|l| price.cmp(&l.price)),
        BookSide::Ask => levels.binary_search_by(|l| l.price.cmp(&price)),
    }
}

/// Sets `price` to `size` in a side's levels (0 removes it).
fn set(levels: &mut Vec<Level>, side: BookSide, price: i64, size: i64) {
    match (find(levels, side, price), size) {
        (Ok(i), 0) => {
            levels.remove(i);
        }
        (Ok(i), _) => levels[i].size = size,
        (Err(_), 0) => {}
        (Err(i), _) => levels.insert(i, Level { price, size }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applies `(side, price, size)` changes as book event `seq`, logging them.
    fn event(book: &mut Book, log: &mut BookLog, seq: u64, changes: &[(BookSide, i64, i64)]) {
        for &(side, price, size) in changes {
            let old = book.size_at(side, price);
            log.record(seq, side, price, old, size);
            book.set(side, price, size);
        }
    }

    #[test]
    fn the_window_at_an_older_seq_is_rebuilt_exactly() {
        use BookSide::{Ask, Bid};
        let mut book = Book::new();
        let mut log = BookLog::default();
        event(
            &mut book,
            &mut log,
            1,
            &[(Bid, 100, 1), (Bid, 99, 2), (Bid, 98, 3), (Ask, 101, 1)],
        );
        log.start(1);
        let mut states = vec![(1, book.clone())];
        let script: &[&[(BookSide, i64, i64)]] = &[
            &[(Bid, 101, 5)],
            &[(Bid, 100, 0), (Ask, 102, 7)],
            &[(Bid, 97, 1), (Bid, 96, 1), (Bid, 95, 1)],
            &[(Bid, 101, 0), (Bid, 99, 9), (Ask, 101, 0)],
            &[(Bid, 103, 1), (Bid, 104, 1), (Bid, 105, 1)],
        ];
        for (i, changes) in script.iter().enumerate() {
            let seq = i as u64 + 2;
            event(&mut book, &mut log, seq, changes);
            states.push((seq, book.clone()));
        }
        let mut out = Vec::new();
        for depth in [1, 2, 3, 10] {
            for (seq, then) in &states {
                for side in [Bid, Ask] {
                    assert!(log.window_at(&book, side, depth, *seq, &mut out));
                    assert_eq!(
                        out,
                        then.top(side, depth),
                        "{side:?} depth {depth} at {seq}"
                    );
                }
            }
        }
        assert!(
            !log.window_at(&book, Bid, 3, 0, &mut out),
            "before the base"
        );
        log.restart(6);
        assert!(!log.window_at(&book, Bid, 3, 5, &mut out));
        assert!(log.window_at(&book, Bid, 3, 6, &mut out));
    }

    #[test]
    fn the_wrap_moves_the_base() {
        let mut book = Book::new();
        let mut log = BookLog::default();
        log.start(0);
        for seq in 1..=(CAPACITY as u64 + 10) {
            event(
                &mut book,
                &mut log,
                seq,
                &[(BookSide::Bid, 100, seq as i64)],
            );
        }
        let mut out = Vec::new();
        assert!(!log.window_at(&book, BookSide::Bid, 1, 5, &mut out));
        assert!(log.window_at(&book, BookSide::Bid, 1, 11, &mut out));
        assert_eq!(
            out,
            [Level {
                price: 100,
                size: 11
            }]
        );
    }
}
