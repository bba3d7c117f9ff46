//! Per-symbol market state (ticker and order book), built by applying ticks.
//!
//! The same code runs in two places: in the feed's publisher, which holds the
//! authoritative copy and assigns seqs, and in every fan-out worker, which keeps its own
//! copy to answer subscriptions with snapshots and to compute each depth window's
//! changes. Because both apply the same ticks with the same rules, they agree on every
//! seq, the ticker's included. Applying a tick allocates nothing once the book has grown
//! to its working size.

pub mod book;
pub mod ticker;

pub use book::{Book, Level};
pub use ticker::Ticker;

use crate::tick::{Event, LevelFlags, Tick};

/// Everything the engine knows about one symbol.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SymbolState {
    /// Latest ticker; its `seq` is the ticker-channel seq.
    pub ticker: Ticker,
    /// The order book.
    pub book: Book,
    /// Book-channel seq of the last complete book event (0 before the first).
    pub book_seq: u64,
    /// Venue time of the last book event.
    pub book_ts: u64,
    /// Ingest time of the last book event.
    pub book_ingest_ts: u64,
    /// Trades-channel seq of the last trade (0 before the first).
    pub trade_seq: u64,
}

/// What applying one tick changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// The ticker changed (its seq was raised).
    pub ticker: bool,
    /// A book event completed (the tick was the last of its batch).
    pub book_done: bool,
}

impl SymbolState {
    /// Applies one tick. Book levels take effect at once; the book event counts as done
    /// (and may move the ticker's best bid/ask) at its `BATCH_END` tick.
    pub fn apply(&mut self, tick: &Tick) -> Applied {
        let mut applied = Applied::default();
        match tick.event {
            Event::Trade {
                seq, price, size, ..
            } => {
                self.trade_seq = seq;
                self.ticker.last = Some(Level { price, size });
                self.ticker.volume = self.ticker.volume.saturating_add(size);
                applied.ticker = self.bump_ticker(tick);
            }
            Event::Quote {
                bid,
                bid_size,
                ask,
                ask_size,
            } => {
                let level = |price, size| (size > 0).then_some(Level { price, size });
                let (bid, ask) = (level(bid, bid_size), level(ask, ask_size));
                if (bid, ask) != (self.ticker.bid, self.ticker.ask) {
                    self.ticker.bid = bid;
                    self.ticker.ask = ask;
                    applied.ticker = self.bump_ticker(tick);
                }
            }
            Event::Level {
                seq,
                side,
                price,
                size,
                flags,
            } => {
                if flags.contains(LevelFlags::CLEAR) {
                    self.book.clear();
                }
                self.book.set(side, price, size);
                if flags.contains(LevelFlags::BATCH_END) {
                    self.book_seq = seq;
                    self.book_ts = tick.ts;
                    self.book_ingest_ts = tick.ingest_ts;
                    applied.book_done = true;
                    let (bid, ask) = (self.book.best_bid(), self.book.best_ask());
                    if (bid, ask) != (self.ticker.bid, self.ticker.ask) {
                        self.ticker.bid = bid;
                        self.ticker.ask = ask;
                        applied.ticker = self.bump_ticker(tick);
                    }
                }
            }
            // The consumer resynchronises from the feed instead (see `Event::Reset`).
            Event::Reset => {}
        }
        applied
    }

    fn bump_ticker(&mut self, tick: &Tick) -> bool {
        self.ticker.seq += 1;
        self.ticker.ts = tick.ts;
        self.ticker.ingest_ts = tick.ingest_ts;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symbol::SymbolId;
    use crate::tick::{Aggressor, BookSide};

    fn tick(event: Event) -> Tick {
        Tick {
            symbol: SymbolId(0),
            ts: 5,
            ingest_ts: 6,
            event,
        }
    }

    fn level(seq: u64, side: BookSide, price: i64, size: i64, flags: LevelFlags) -> Tick {
        tick(Event::Level {
            seq,
            side,
            price,
            size,
            flags,
        })
    }

    #[test]
    fn ticker_moves_with_trades_and_top_of_book_only() {
        let mut s = SymbolState::default();
        let a = s.apply(&level(1, BookSide::Bid, 100, 1, LevelFlags::CLEAR));
        assert_eq!(a, Applied::default(), "mid-batch: nothing is done yet");
        let a = s.apply(&level(1, BookSide::Ask, 101, 2, LevelFlags::BATCH_END));
        assert_eq!(
            a,
            Applied {
                ticker: true,
                book_done: true
            }
        );
        assert_eq!(s.ticker.seq, 1);
        assert_eq!(
            s.ticker.bid,
            Some(Level {
                price: 100,
                size: 1
            })
        );
        // A change below the top leaves the ticker alone.
        let a = s.apply(&level(2, BookSide::Bid, 90, 1, LevelFlags::BATCH_END));
        assert_eq!(
            a,
            Applied {
                ticker: false,
                book_done: true
            }
        );
        assert_eq!((s.ticker.seq, s.book_seq), (1, 2));
        let a = s.apply(&tick(Event::Trade {
            seq: 1,
            price: 100,
            size: 3,
            side: Some(Aggressor::Sell),
            trade_id: 7,
        }));
        assert!(a.ticker);
        assert_eq!((s.ticker.seq, s.ticker.volume, s.trade_seq), (2, 3, 1));
        // An identical quote is not a change; a new one is.
        let same = Event::Quote {
            bid: 100,
            bid_size: 1,
            ask: 101,
            ask_size: 2,
        };
        assert!(!s.apply(&tick(same)).ticker);
        let new = Event::Quote {
            bid: 100,
            bid_size: 1,
            ask: 0,
            ask_size: 0,
        };
        assert!(s.apply(&tick(new)).ticker);
        assert_eq!(s.ticker.ask, None);
    }
}
