//! The cluster's wire format: NATS subjects and the compact binary encoding of the
//! messages a feed node publishes (see `docs/cluster.md`, "Encoding").
//!
//! - **Subjects** are `tickwire.<venue>.<symbol>.<channel>`, each part a subject-safe
//!   token ([`token`]): ASCII letters, digits, `-` and `_` pass as they are, every other
//!   byte is `%` and two upper-case hex digits (`kraken:BTC/USD` →
//!   `tickwire.kraken.BTC%2FUSD.book`). Channels: `ticker` (quotes), `trades`, `book`,
//!   and `snapshot` (a symbol's whole state, kept by JetStream).
//! - **Messages** are little-endian, a fixed 40-byte header then a body of fixed layout
//!   per kind. Version 1; a decoder refuses any other version.
//! - **Contract**: encoding appends to a caller's buffer; decoding data messages writes
//!   ticks into a caller's vector (no allocation once it has grown); decoding a snapshot
//!   allocates its book. Every length is checked: bytes from the bus never panic.

use thiserror::Error;
use tickwire_engine::state::{Level, SymbolState};
use tickwire_engine::symbol::SymbolId;
use tickwire_engine::tick::{Aggressor, BookSide, Event, LevelFlags, Tick};

/// The encoding's version, the first byte of every message.
pub const VERSION: u8 = 1;
/// Bytes of the common header.
pub const HEADER_LEN: usize = 40;
/// Bytes of one book level in a `book` message: side (1), price (8), size (8).
const LEVEL_LEN: usize = 17;

/// Kind byte: one trade.
pub const KIND_TRADE: u8 = 1;
/// Kind byte: one best bid/offer.
pub const KIND_QUOTE: u8 = 2;
/// Kind byte: one book event (its levels, in order).
pub const KIND_BOOK: u8 = 3;
/// Kind byte: a symbol's whole state.
pub const KIND_SNAPSHOT: u8 = 4;

/// The channel tokens, last part of a subject.
pub const CHANNELS: [&str; 4] = ["ticker", "trades", "book", "snapshot"];

/// Why a message from the bus was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WireError {
    /// Shorter than its layout needs.
    #[error("message of {got} bytes is shorter than the {need} its layout needs")]
    Short {
        /// Bytes needed.
        need: usize,
        /// Bytes there.
        got: usize,
    },
    /// A version this build does not read (upgrade the edge, or the feed node).
    #[error("wire version {0} is not {VERSION}: run the same tickwire version on every node")]
    Version(u8),
    /// An unknown kind byte.
    #[error("unknown message kind {0}")]
    Kind(u8),
    /// A field out of its range (a side byte, a level count).
    #[error("bad field: {0}")]
    Field(&'static str),
    /// A subject token that is not what [`token`] writes.
    #[error("bad subject token {0:?}")]
    Token(String),
}

/// The header every message starts with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// Kind byte (`KIND_*`).
    pub kind: u8,
    /// Kind-specific flags (book: bit 0 = the event replaces the book; trade: the side,
    /// 0 unknown, 1 buy, 2 sell).
    pub flags: u16,
    /// The publishing feed node's session: random at its start, so that an edge tells a
    /// restarted feed node from the old one.
    pub session: u64,
    /// Per symbol and session, +1 for every message of the symbol on any channel, from 1.
    /// A jump tells an edge it missed something.
    pub sym_seq: u64,
    /// Venue time of the event, ns since the epoch.
    pub ts: u64,
    /// When the feed node received it, ns since the epoch.
    pub ingest_ts: u64,
}

/// Subject-safe form of `s`: see the module doc.
pub fn token(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// The text a [`token`] stands for.
pub fn untoken(t: &str) -> Result<String, WireError> {
    let bad = || WireError::Token(t.to_owned());
    let b = t.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = |c: u8| HEX.iter().position(|&h| h == c);
                let (Some(hi), Some(lo)) = (
                    b.get(i + 1).copied().and_then(hex),
                    b.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(bad());
                };
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            c if c.is_ascii_alphanumeric() || c == b'-' || c == b'_' => {
                out.push(c);
                i += 1;
            }
            _ => return Err(bad()),
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

/// `tickwire.<venue>.<native>` for a symbol named `venue:native`: the subjects of its
/// channels add `.<channel>`.
pub fn symbol_prefix(name: &str) -> String {
    let (venue, native) = name.split_once(':').unwrap_or(("", name));
    format!("tickwire.{}.{}", token(venue), token(native))
}

fn put_header(buf: &mut Vec<u8>, h: &Header) {
    buf.push(VERSION);
    buf.push(h.kind);
    buf.extend_from_slice(&h.flags.to_le_bytes());
    buf.extend_from_slice(&0u32.to_le_bytes());
    for v in [h.session, h.sym_seq, h.ts, h.ingest_ts] {
        buf.extend_from_slice(&v.to_le_bytes());
    }
}

fn put(buf: &mut Vec<u8>, words: &[u64]) {
    for w in words {
        buf.extend_from_slice(&w.to_le_bytes());
    }
}

/// Appends the message of one trade or quote tick (`kind`, `flags`, `ts` and
/// `ingest_ts` of `h` are taken from the tick). Other ticks append nothing and return
/// `false`.
pub fn encode_tick(buf: &mut Vec<u8>, h: Header, tick: &Tick) -> bool {
    let mut h = Header {
        ts: tick.ts,
        ingest_ts: tick.ingest_ts,
        ..h
    };
    match tick.event {
        Event::Trade {
            seq,
            price,
            size,
            side,
            trade_id,
        } => {
            h.kind = KIND_TRADE;
            h.flags = match side {
                None => 0,
                Some(Aggressor::Buy) => 1,
                Some(Aggressor::Sell) => 2,
            };
            put_header(buf, &h);
            put(buf, &[seq, price as u64, size as u64, trade_id]);
            true
        }
        Event::Quote {
            bid,
            bid_size,
            ask,
            ask_size,
        } => {
            h.kind = KIND_QUOTE;
            h.flags = 0;
            put_header(buf, &h);
            put(
                buf,
                &[bid as u64, bid_size as u64, ask as u64, ask_size as u64],
            );
            true
        }
        Event::Level { .. } | Event::Reset => false,
    }
}

/// Appends the message of one book event: `levels` are its ticks in order (the first
/// may carry `CLEAR`, the last carries `BATCH_END`). Layout after the header: book seq
/// (u64), level count (u32), then per level side (u8: 0 bid, 1 ask), price (i64), size
/// (i64).
pub fn encode_book(buf: &mut Vec<u8>, h: Header, levels: &[Tick]) {
    let (Some(first), Some(last)) = (levels.first(), levels.last()) else {
        return;
    };
    let (seq, clear) = match first.event {
        Event::Level { seq, flags, .. } => (seq, flags.contains(LevelFlags::CLEAR)),
        _ => return,
    };
    let h = Header {
        kind: KIND_BOOK,
        flags: u16::from(clear),
        ts: last.ts,
        ingest_ts: last.ingest_ts,
        ..h
    };
    put_header(buf, &h);
    put(buf, &[seq]);
    buf.extend_from_slice(&(levels.len() as u32).to_le_bytes());
    for t in levels {
        if let Event::Level {
            side, price, size, ..
        } = t.event
        {
            buf.push(match side {
                BookSide::Bid => 0,
                BookSide::Ask => 1,
            });
            put(buf, &[price as u64, size as u64]);
        }
    }
}

/// Appends a snapshot of `state`. Layout after the header: price scale (u8), size scale
/// (u8), presence bits (u8: 1 bid, 2 ask, 4 last), 5 zero bytes; ticker seq, bid price,
/// bid size, ask price, ask size, last price, last size, volume, ticker ts, ticker
/// ingest_ts, trade seq, book seq, book ts, book ingest_ts (u64/i64 each); bid count,
/// ask count (u32 each); then the bids best first and the asks best first, price and
/// size (i64 each).
pub fn encode_snapshot(buf: &mut Vec<u8>, h: Header, scales: (u8, u8), state: &SymbolState) {
    let h = Header {
        kind: KIND_SNAPSHOT,
        flags: 0,
        ..h
    };
    put_header(buf, &h);
    let t = &state.ticker;
    let presence = u8::from(t.bid.is_some())
        | u8::from(t.ask.is_some()) << 1
        | u8::from(t.last.is_some()) << 2;
    buf.extend_from_slice(&[scales.0, scales.1, presence, 0, 0, 0, 0, 0]);
    let lv = |l: Option<Level>| l.unwrap_or_default();
    let (bid, ask, last) = (lv(t.bid), lv(t.ask), lv(t.last));
    put(
        buf,
        &[
            t.seq,
            bid.price as u64,
            bid.size as u64,
            ask.price as u64,
            ask.size as u64,
            last.price as u64,
            last.size as u64,
            t.volume as u64,
            t.ts,
            t.ingest_ts,
            state.trade_seq,
            state.book_seq,
            state.book_ts,
            state.book_ingest_ts,
        ],
    );
    let (bids, asks) = (state.book.bids(), state.book.asks());
    buf.extend_from_slice(&(bids.len() as u32).to_le_bytes());
    buf.extend_from_slice(&(asks.len() as u32).to_le_bytes());
    for l in bids.iter().chain(asks) {
        put(buf, &[l.price as u64, l.size as u64]);
    }
}

/// A bounds-checked little-endian reader.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], WireError> {
        let end = self.at.checked_add(n).ok_or(WireError::Field("length"))?;
        let got = self.b.get(self.at..end).ok_or(WireError::Short {
            need: end,
            got: self.b.len(),
        })?;
        self.at = end;
        Ok(got)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        let mut a = [0; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        let mut a = [0; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    fn i64(&mut self) -> Result<i64, WireError> {
        Ok(self.u64()? as i64)
    }
}

/// Reads the header of `msg`.
pub fn header(msg: &[u8]) -> Result<Header, WireError> {
    let mut r = Reader { b: msg, at: 0 };
    let version = r.u8()?;
    if version != VERSION {
        return Err(WireError::Version(version));
    }
    let kind = r.u8()?;
    let flags = u16::from(r.u8()?) | u16::from(r.u8()?) << 8;
    r.u32()?;
    Ok(Header {
        kind,
        flags,
        session: r.u64()?,
        sym_seq: r.u64()?,
        ts: r.u64()?,
        ingest_ts: r.u64()?,
    })
}

/// Decodes a data message (trade, quote, book) of `symbol` into ticks, appended to
/// `out` (cleared first) exactly as the feed node's publisher pushed them.
pub fn decode_ticks(
    msg: &[u8],
    symbol: SymbolId,
    out: &mut Vec<Tick>,
) -> Result<Header, WireError> {
    out.clear();
    let h = header(msg)?;
    let mut r = Reader {
        b: msg,
        at: HEADER_LEN,
    };
    let tick = |event| Tick {
        symbol,
        ts: h.ts,
        ingest_ts: h.ingest_ts,
        event,
    };
    match h.kind {
        KIND_TRADE => {
            let side = match h.flags {
                0 => None,
                1 => Some(Aggressor::Buy),
                2 => Some(Aggressor::Sell),
                _ => return Err(WireError::Field("trade side")),
            };
            out.push(tick(Event::Trade {
                seq: r.u64()?,
                price: r.i64()?,
                size: r.i64()?,
                side,
                trade_id: r.u64()?,
            }));
        }
        KIND_QUOTE => out.push(tick(Event::Quote {
            bid: r.i64()?,
            bid_size: r.i64()?,
            ask: r.i64()?,
            ask_size: r.i64()?,
        })),
        KIND_BOOK => {
            let seq = r.u64()?;
            let n = r.u32()? as usize;
            if n == 0 || msg.len() - r.at != n.saturating_mul(LEVEL_LEN) {
                return Err(WireError::Field("book level count"));
            }
            for i in 0..n {
                let side = match r.u8()? {
                    0 => BookSide::Bid,
                    1 => BookSide::Ask,
                    _ => return Err(WireError::Field("book side")),
                };
                let mut flags = LevelFlags::default();
                if i == 0 && h.flags & 1 != 0 {
                    flags = flags | LevelFlags::CLEAR;
                }
                if i + 1 == n {
                    flags = flags | LevelFlags::BATCH_END;
                }
                out.push(tick(Event::Level {
                    seq,
                    side,
                    price: r.i64()?,
                    size: r.i64()?,
                    flags,
                }));
            }
        }
        KIND_SNAPSHOT => return Err(WireError::Field("a snapshot is not a data message")),
        k => return Err(WireError::Kind(k)),
    }
    Ok(h)
}

/// A decoded snapshot: the state and the scales it was written at.
#[derive(Debug)]
pub struct Snapshot {
    /// Its header.
    pub header: Header,
    /// Price and size scales of the feed node's symbol.
    pub scales: (u8, u8),
    /// The state.
    pub state: SymbolState,
}

/// Decodes a snapshot message.
pub fn decode_snapshot(msg: &[u8]) -> Result<Snapshot, WireError> {
    let h = header(msg)?;
    if h.kind != KIND_SNAPSHOT {
        return Err(WireError::Kind(h.kind));
    }
    let mut r = Reader {
        b: msg,
        at: HEADER_LEN,
    };
    let fixed = r.take(8)?;
    let (scales, presence) = ((fixed[0], fixed[1]), fixed[2]);
    let mut w = [0u64; 14];
    for v in &mut w {
        *v = r.u64()?;
    }
    let level = |bit: u8, p: u64, s: u64| {
        (presence & bit != 0).then_some(Level {
            price: p as i64,
            size: s as i64,
        })
    };
    let mut state = SymbolState::default();
    state.ticker.seq = w[0];
    state.ticker.bid = level(1, w[1], w[2]);
    state.ticker.ask = level(2, w[3], w[4]);
    state.ticker.last = level(4, w[5], w[6]);
    state.ticker.volume = w[7] as i64;
    state.ticker.ts = w[8];
    state.ticker.ingest_ts = w[9];
    state.trade_seq = w[10];
    state.book_seq = w[11];
    state.book_ts = w[12];
    state.book_ingest_ts = w[13];
    let bids = r.u32()? as usize;
    let asks = r.u32()? as usize;
    let left = msg.len() - r.at;
    if bids.saturating_add(asks).saturating_mul(16) != left {
        return Err(WireError::Field("snapshot level counts"));
    }
    for (side, n) in [(BookSide::Bid, bids), (BookSide::Ask, asks)] {
        for _ in 0..n {
            let (price, size) = (r.i64()?, r.i64()?);
            if size <= 0 {
                return Err(WireError::Field("snapshot level size"));
            }
            state.book.set(side, price, size);
        }
    }
    Ok(Snapshot {
        header: h,
        scales,
        state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h() -> Header {
        Header {
            session: 7,
            sym_seq: 9,
            ..Header::default()
        }
    }

    #[test]
    fn tokens_are_subject_safe_and_round_trip() {
        for (native, tok) in [
            ("BTC-USD", "BTC-USD"),
            ("BTC/USD", "BTC%2FUSD"),
            ("a.b*c>d e", "a%2Eb%2Ac%3Ed%20e"),
            ("50%", "50%25"),
            ("BTCUSDT", "BTCUSDT"),
            ("é", "%C3%A9"),
        ] {
            assert_eq!(token(native), tok);
            assert_eq!(untoken(tok).unwrap(), native);
        }
        assert_eq!(symbol_prefix("kraken:BTC/USD"), "tickwire.kraken.BTC%2FUSD");
        for bad in ["%", "%4", "%zz", "a.b", "a b", "%FF"] {
            assert!(untoken(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn trades_quotes_and_books_round_trip_to_the_same_ticks() {
        let s = SymbolId(3);
        let mk = |event| Tick {
            symbol: s,
            ts: 11,
            ingest_ts: 12,
            event,
        };
        let mut out = Vec::new();
        for tick in [
            mk(Event::Trade {
                seq: 5,
                price: -1,
                size: 2,
                side: Some(Aggressor::Sell),
                trade_id: u64::MAX,
            }),
            mk(Event::Trade {
                seq: 6,
                price: 1,
                size: 2,
                side: None,
                trade_id: 0,
            }),
            mk(Event::Quote {
                bid: 1,
                bid_size: 2,
                ask: 3,
                ask_size: 0,
            }),
        ] {
            let mut buf = Vec::new();
            assert!(encode_tick(&mut buf, h(), &tick));
            assert_eq!(buf.len(), HEADER_LEN + 32);
            let got = decode_ticks(&buf, s, &mut out).unwrap();
            assert_eq!((got.session, got.sym_seq), (7, 9));
            assert_eq!(out, [tick]);
        }
        let level = |side, price, size, flags| {
            mk(Event::Level {
                seq: 4,
                side,
                price,
                size,
                flags,
            })
        };
        for book in [
            vec![
                level(BookSide::Bid, 100, 5, LevelFlags::CLEAR),
                level(BookSide::Ask, 101, 0, LevelFlags::default()),
                level(BookSide::Ask, 102, 3, LevelFlags::BATCH_END),
            ],
            vec![level(
                BookSide::Bid,
                0,
                0,
                LevelFlags::CLEAR | LevelFlags::BATCH_END,
            )],
            vec![level(BookSide::Ask, 9, 1, LevelFlags::BATCH_END)],
        ] {
            let mut buf = Vec::new();
            encode_book(&mut buf, h(), &book);
            decode_ticks(&buf, s, &mut out).unwrap();
            assert_eq!(out, book);
        }
    }

    #[test]
    fn snapshots_round_trip_and_bad_bytes_are_refused() {
        let mut state = SymbolState::default();
        state.ticker.seq = 3;
        state.ticker.bid = Some(Level {
            price: 100,
            size: 5,
        });
        state.ticker.last = Some(Level { price: 99, size: 1 });
        state.ticker.volume = 12;
        state.trade_seq = 8;
        state.book_seq = 40;
        state.book.set(BookSide::Bid, 100, 5);
        state.book.set(BookSide::Bid, 98, 2);
        state.book.set(BookSide::Ask, 103, 1);
        let mut buf = Vec::new();
        encode_snapshot(&mut buf, h(), (2, 8), &state);
        let snap = decode_snapshot(&buf).unwrap();
        assert_eq!(snap.state, state);
        assert_eq!(snap.scales, (2, 8));
        assert_eq!(snap.header.sym_seq, 9);

        let mut out = Vec::new();
        for cut in 0..buf.len() {
            assert!(decode_snapshot(&buf[..cut]).is_err(), "cut at {cut}");
            let _ = decode_ticks(&buf[..cut], SymbolId(0), &mut out);
        }
        let mut v2 = buf.clone();
        v2[0] = 2;
        assert_eq!(decode_snapshot(&v2).unwrap_err(), WireError::Version(2));
        let mut trade = Vec::new();
        encode_tick(
            &mut trade,
            h(),
            &Tick {
                symbol: SymbolId(0),
                ts: 0,
                ingest_ts: 0,
                event: Event::Trade {
                    seq: 1,
                    price: 1,
                    size: 1,
                    side: None,
                    trade_id: 0,
                },
            },
        );
        trade[2] = 9;
        assert_eq!(
            decode_ticks(&trade, SymbolId(0), &mut out),
            Err(WireError::Field("trade side"))
        );
        trade[1] = 77;
        assert_eq!(
            decode_ticks(&trade, SymbolId(0), &mut out),
            Err(WireError::Kind(77))
        );
    }
}
