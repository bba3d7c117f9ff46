//! The tick: one normalized market event, fixed size, `Copy`, at most 64 bytes.
//!
//! Ticks are what a feed publishes into its ring. A venue message that changes several
//! book levels becomes several [`Event::Level`] ticks carrying the same book `seq`, the
//! last one flagged [`LevelFlags::BATCH_END`]; the ring publishes them together, so a
//! consumer always sees whole book events.
//!
//! For the ring a tick packs into eight `u64` words ([`Tick::to_words`]) so that the
//! ring's slots can be plain atomics: no `unsafe`, no data race on non-atomic memory.

use crate::symbol::SymbolId;

/// Aggressor side of a trade.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggressor {
    /// The buyer took liquidity.
    Buy,
    /// The seller took liquidity.
    Sell,
}

/// Side of an order book.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BookSide {
    /// Bids, highest first.
    Bid,
    /// Asks, lowest first.
    Ask,
}

/// Flags of a book level tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LevelFlags(pub u8);

impl LevelFlags {
    /// Last tick of a book event: the book is consistent after applying it.
    pub const BATCH_END: LevelFlags = LevelFlags(1);
    /// First tick of a full book: clear both sides before applying it.
    pub const CLEAR: LevelFlags = LevelFlags(2);

    /// Whether every flag of `other` is set.
    pub fn contains(self, other: LevelFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for LevelFlags {
    type Output = LevelFlags;
    fn bitor(self, rhs: LevelFlags) -> LevelFlags {
        LevelFlags(self.0 | rhs.0)
    }
}

/// What happened. Prices and sizes are fixed-point mantissas at the symbol's scales.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// One trade; `seq` is the symbol's trades-channel seq.
    Trade {
        /// Trades-channel seq, from 1.
        seq: u64,
        /// Price mantissa.
        price: i64,
        /// Size mantissa.
        size: i64,
        /// Aggressor side, when the venue says.
        side: Option<Aggressor>,
        /// Venue trade id; 0 when the venue gives none.
        trade_id: u64,
    },
    /// Best bid and offer from a venue that sends them on their own (size 0 = no level).
    Quote {
        /// Best bid price.
        bid: i64,
        /// Size at the best bid.
        bid_size: i64,
        /// Best ask price.
        ask: i64,
        /// Size at the best ask.
        ask_size: i64,
    },
    /// One changed book level; size 0 removes it. `seq` is the book-channel seq of the
    /// book event this level belongs to.
    Level {
        /// Book-channel seq, from 1.
        seq: u64,
        /// Side of the book.
        side: BookSide,
        /// Price mantissa.
        price: i64,
        /// New size mantissa (0 removes the level).
        size: i64,
        /// Batch flags.
        flags: LevelFlags,
    },
    /// Not market data: the feed replaced its authoritative state of this tick's symbol
    /// out of band (a cluster edge adopting a snapshot, a feed seeded with the cluster's
    /// last state). A consumer stops here and resynchronises from the feed's state, as
    /// after a ring lap. Applying it changes nothing.
    Reset,
}

/// One normalized market event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tick {
    /// The instrument.
    pub symbol: SymbolId,
    /// Venue event time, ns since the Unix epoch (equals `ingest_ts` when the venue gives none).
    pub ts: u64,
    /// When the engine received the event, ns since the Unix epoch.
    pub ingest_ts: u64,
    /// The event.
    pub event: Event,
}

const _: () = assert!(std::mem::size_of::<Tick>() <= 64);

/// Number of `u64` words a tick packs into.
pub const TICK_WORDS: usize = 8;

const KIND_TRADE: u64 = 1;
const KIND_QUOTE: u64 = 2;
const KIND_LEVEL: u64 = 3;
const KIND_RESET: u64 = 4;

impl Tick {
    /// Packs the tick into words: `[header, ts, ingest_ts, seq, payload × 4]`, where the
    /// header holds symbol (bits 0..32), kind (32..40), side (40..48) and flags (48..56).
    pub fn to_words(&self) -> [u64; TICK_WORDS] {
        let header = |kind: u64, side: u64, flags: u64| {
            u64::from(self.symbol.0) | kind << 32 | side << 40 | flags << 48
        };
        match self.event {
            Event::Trade {
                seq,
                price,
                size,
                side,
                trade_id,
            } => {
                let side = match side {
                    None => 0,
                    Some(Aggressor::Buy) => 1,
                    Some(Aggressor::Sell) => 2,
                };
                [
                    header(KIND_TRADE, side, 0),
                    self.ts,
                    self.ingest_ts,
                    seq,
                    price as u64,
                    size as u64,
                    trade_id,
                    0,
                ]
            }
            Event::Quote {
                bid,
                bid_size,
                ask,
                ask_size,
            } => [
                header(KIND_QUOTE, 0, 0),
                self.ts,
                self.ingest_ts,
                0,
                bid as u64,
                bid_size as u64,
                ask as u64,
                ask_size as u64,
            ],
            Event::Level {
                seq,
                side,
                price,
                size,
                flags,
            } => {
                let side = match side {
                    BookSide::Bid => 0,
                    BookSide::Ask => 1,
                };
                [
                    header(KIND_LEVEL, side, u64::from(flags.0)),
                    self.ts,
                    self.ingest_ts,
                    seq,
                    price as u64,
                    size as u64,
                    0,
                    0,
                ]
            }
            Event::Reset => [
                header(KIND_RESET, 0, 0),
                self.ts,
                self.ingest_ts,
                0,
                0,
                0,
                0,
                0,
            ],
        }
    }

    /// Unpacks words made by [`Tick::to_words`]; `None` for words no tick packs into.
    pub fn from_words(w: [u64; TICK_WORDS]) -> Option<Tick> {
        let symbol = SymbolId(w[0] as u32);
        let kind = (w[0] >> 32) & 0xff;
        let side = (w[0] >> 40) & 0xff;
        let flags = ((w[0] >> 48) & 0xff) as u8;
        let event = match kind {
            KIND_TRADE => Event::Trade {
                seq: w[3],
                price: w[4] as i64,
                size: w[5] as i64,
                side: match side {
                    1 => Some(Aggressor::Buy),
                    2 => Some(Aggressor::Sell),
                    _ => None,
                },
                trade_id: w[6],
            },
            KIND_QUOTE => Event::Quote {
                bid: w[4] as i64,
                bid_size: w[5] as i64,
                ask: w[6] as i64,
                ask_size: w[7] as i64,
            },
            KIND_LEVEL => Event::Level {
                seq: w[3],
                side: if side == 0 {
                    BookSide::Bid
                } else {
                    BookSide::Ask
                },
                price: w[4] as i64,
                size: w[5] as i64,
                flags: LevelFlags(flags),
            },
            KIND_RESET => Event::Reset,
            _ => return None,
        };
        Some(Tick {
            symbol,
            ts: w[1],
            ingest_ts: w[2],
            event,
        })
    }
}

/// Nanoseconds since the Unix epoch, from the system clock.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_words() {
        let ticks = [
            Tick {
                symbol: SymbolId(7),
                ts: 1,
                ingest_ts: 2,
                event: Event::Trade {
                    seq: 3,
                    price: -4,
                    size: 5,
                    side: Some(Aggressor::Sell),
                    trade_id: 99,
                },
            },
            Tick {
                symbol: SymbolId(u32::MAX),
                ts: u64::MAX,
                ingest_ts: 0,
                event: Event::Trade {
                    seq: 1,
                    price: i64::MAX,
                    size: i64::MIN,
                    side: None,
                    trade_id: 0,
                },
            },
            Tick {
                symbol: SymbolId(1),
                ts: 10,
                ingest_ts: 11,
                event: Event::Quote {
                    bid: 1,
                    bid_size: 2,
                    ask: 3,
                    ask_size: 4,
                },
            },
            Tick {
                symbol: SymbolId(2),
                ts: 10,
                ingest_ts: 11,
                event: Event::Level {
                    seq: 12,
                    side: BookSide::Ask,
                    price: 13,
                    size: 0,
                    flags: LevelFlags::BATCH_END | LevelFlags::CLEAR,
                },
            },
            Tick {
                symbol: SymbolId(3),
                ts: 1,
                ingest_ts: 1,
                event: Event::Reset,
            },
        ];
        for t in ticks {
            assert_eq!(Tick::from_words(t.to_words()), Some(t));
        }
        assert_eq!(Tick::from_words([0; TICK_WORDS]), None);
    }
}
