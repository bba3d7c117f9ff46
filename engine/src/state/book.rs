//! An L2 order book of one symbol: two sorted vectors of levels.
//!
//! Sorted vectors beat trees here: the top of the book, where nearly every change lands,
//! sits at the front; a depth window is a plain slice; and once a side has grown to its
//! working size, inserting and removing levels allocates nothing.

use crate::tick::BookSide;

/// One price level: price and size mantissas.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Level {
    /// Price mantissa.
    pub price: i64,
    /// Size mantissa.
    pub size: i64,
}

/// L2 book: bids highest first, asks lowest first, no zero sizes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Book {
    bids: Vec<Level>,
    asks: Vec<Level>,
}

impl Book {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// Position of `price` on `side`: `Ok` where it is, `Err` where it would go.
    fn find(&self, side: BookSide, price: i64) -> Result<usize, usize> {
        match side {
            BookSide::Bid => self.bids.binary_search_by(|l| price.cmp(&l.price)),
            BookSide::Ask => self.asks.binary_search_by(|l| l.price.cmp(&price)),
        }
    }

    fn side_mut(&mut self, side: BookSide) -> &mut Vec<Level> {
        match side {
            BookSide::Bid => &mut self.bids,
            BookSide::Ask => &mut self.asks,
        }
    }

    /// The levels of one side, best first.
    pub fn side(&self, side: BookSide) -> &[Level] {
        match side {
            BookSide::Bid => &self.bids,
            BookSide::Ask => &self.asks,
        }
    }

    /// Bids, highest first.
    pub fn bids(&self) -> &[Level] {
        &self.bids
    }

    /// Asks, lowest first.
    pub fn asks(&self) -> &[Level] {
        &self.asks
    }

    /// The best `depth` levels of `side`.
    pub fn top(&self, side: BookSide, depth: usize) -> &[Level] {
        let levels = self.side(side);
        &levels[..levels.len().min(depth)]
    }

    /// Size at `price` on `side` (0 when there is no level).
    pub fn size_at(&self, side: BookSide, price: i64) -> i64 {
        self.find(side, price)
            .map_or(0, |i| self.side(side)[i].size)
    }

    /// Sets the size at `price`; size 0 (or less) removes the level. Returns whether the
    /// book changed.
    pub fn set(&mut self, side: BookSide, price: i64, size: i64) -> bool {
        let found = self.find(side, price);
        let levels = self.side_mut(side);
        match (found, size > 0) {
            (Ok(i), true) if levels[i].size == size => false,
            (Ok(i), true) => {
                levels[i].size = size;
                true
            }
            (Ok(i), false) => {
                levels.remove(i);
                true
            }
            (Err(i), true) => {
                levels.insert(i, Level { price, size });
                true
            }
            (Err(_), false) => false,
        }
    }

    /// Removes every level, keeping the capacity.
    pub fn clear(&mut self) {
        self.bids.clear();
        self.asks.clear();
    }

    /// Best bid, if any.
    pub fn best_bid(&self) -> Option<Level> {
        self.bids.first().copied()
    }

    /// Best ask, if any.
    pub fn best_ask(&self) -> Option<Level> {
        self.asks.first().copied()
    }

    /// Number of levels on `side`.
    pub fn len(&self, side: BookSide) -> usize {
        self.side(side).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prices(levels: &[Level]) -> Vec<i64> {
        levels.iter().map(|l| l.price).collect()
    }

    #[test]
    fn keeps_sides_sorted_and_removes_zero_sizes() {
        let mut b = Book::new();
        for p in [100, 102, 101, 99] {
            assert!(b.set(BookSide::Bid, p, 1));
        }
        for p in [105, 103, 104] {
            assert!(b.set(BookSide::Ask, p, 2));
        }
        assert_eq!(prices(b.bids()), [102, 101, 100, 99]);
        assert_eq!(prices(b.asks()), [103, 104, 105]);
        assert!(!b.set(BookSide::Bid, 101, 1), "same size is no change");
        assert!(b.set(BookSide::Bid, 101, 0));
        assert!(
            !b.set(BookSide::Bid, 101, 0),
            "removing a missing level is no change"
        );
        assert_eq!(prices(b.bids()), [102, 100, 99]);
        assert_eq!(prices(b.top(BookSide::Ask, 2)), [103, 104]);
        assert_eq!(b.top(BookSide::Ask, 10).len(), 3);
        assert_eq!(b.size_at(BookSide::Ask, 104), 2);
        assert_eq!(
            b.best_bid(),
            Some(Level {
                price: 102,
                size: 1
            })
        );
        b.clear();
        assert_eq!(b.best_ask(), None);
    }
}
