//! The recent trades of one symbol, as one worker saw them: the last `trade_history`
//! trades (config key `trade_history`, default 10,000), from which a version 2 client's
//! `subscribe` with `since` is replayed (`protocol.md`, "Epochs and trade recovery").
//!
//! Every worker applies every tick to its own state copy ([`super::index`]), so each
//! keeps its own ring and replays from it without a lock, on its own thread, between two
//! ticks: the replay and the live trades meet without a duplicate or a hole. The ring is
//! allocated once, to its full capacity, at the symbol's first trade
//! ([`TradeRecord`] is 56 bytes: 560 KB per symbol that trades, per worker, at the
//! default), and never grows or shrinks after: pushing allocates nothing in steady state.
//! Nothing here blocks.

use crate::tick::Aggressor;

/// One trade as the engine publishes it: everything its `trade` message carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TradeRecord {
    /// Trades-channel seq.
    pub seq: u64,
    /// Price mantissa.
    pub price: i64,
    /// Size mantissa.
    pub size: i64,
    /// Venue trade id (0: none).
    pub trade_id: u64,
    /// Venue event time, ns.
    pub ts: u64,
    /// Ingest time, ns.
    pub ingest_ts: u64,
    /// Aggressor side.
    pub side: Option<Aggressor>,
}

/// A ring of a symbol's last trades, oldest first, seqs increasing.
#[derive(Debug, Default)]
pub struct TradeHistory {
    ring: Vec<TradeRecord>,
    /// Index of the oldest record once the ring is full.
    head: usize,
}

impl TradeHistory {
    /// Records `trade`, dropping the oldest when `capacity` are held (0 keeps nothing).
    /// The first call allocates the ring to `capacity`; none after does.
    pub fn push(&mut self, trade: TradeRecord, capacity: usize) {
        if capacity == 0 {
            return;
        }
        if self.ring.capacity() == 0 {
            self.ring.reserve_exact(capacity);
        }
        if self.ring.len() < capacity {
            self.ring.push(trade);
        } else {
            self.ring[self.head] = trade;
            self.head = (self.head + 1) % self.ring.len();
        }
    }

    /// Trades held.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether no trade is held.
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// The `i`-th oldest record held.
    fn at(&self, i: usize) -> &TradeRecord {
        &self.ring[(self.head + i) % self.ring.len()]
    }

    /// The seq of the oldest trade held.
    pub fn first_seq(&self) -> Option<u64> {
        (!self.is_empty()).then(|| self.at(0).seq)
    }

    /// The oldest trade held whose seq is `seq` or later (a binary search).
    pub fn at_or_after(&self, seq: u64) -> Option<&TradeRecord> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.at(mid).seq < seq {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        (lo < self.len()).then(|| self.at(lo))
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.ring.capacity() * std::mem::size_of::<TradeRecord>()
    }
}

/// Bytes one symbol's history costs a worker at `capacity` trades.
pub const fn bytes_per_symbol(capacity: usize) -> usize {
    capacity * std::mem::size_of::<TradeRecord>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trade(seq: u64) -> TradeRecord {
        TradeRecord {
            seq,
            price: 1,
            size: 1,
            trade_id: seq,
            ts: 0,
            ingest_ts: 0,
            side: None,
        }
    }

    #[test]
    fn the_ring_keeps_the_last_trades_and_finds_a_seq() {
        let mut h = TradeHistory::default();
        assert_eq!(h.at_or_after(1), None);
        for seq in 1..=10 {
            h.push(trade(seq), 4);
        }
        assert_eq!(h.len(), 4);
        assert_eq!(h.first_seq(), Some(7));
        assert_eq!(h.at_or_after(1).map(|t| t.seq), Some(7));
        assert_eq!(h.at_or_after(9).map(|t| t.seq), Some(9));
        assert_eq!(h.at_or_after(11), None);
        // A hole (a venue's lost trades) is found across.
        h.push(trade(15), 4);
        assert_eq!(h.at_or_after(11).map(|t| t.seq), Some(15));
        assert_eq!(h.heap_bytes(), bytes_per_symbol(4));
        let mut none = TradeHistory::default();
        none.push(trade(1), 0);
        assert!(none.is_empty() && none.heap_bytes() == 0);
    }

    #[test]
    fn a_record_is_56_bytes() {
        assert_eq!(std::mem::size_of::<TradeRecord>(), 56);
    }
}
