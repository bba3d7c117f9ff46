//! Kraken spot, WebSocket API v2: `trade`, `ticker` (on best bid/offer changes) and
//! `book` with its CRC32 checksum (<https://docs.kraken.com/api/docs/websocket-v2/book>).
//!
//! ```text
//! {"method":"subscribe","params":{"channel":"book","symbol":["BTC/USD"],"depth":25,"snapshot":true},"req_id":3}
//! {"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD","bids":[{"price":45283.5,"qty":0.10000000}],"asks":[{"price":45285.2,"qty":0.00100000}],"checksum":3310070434,"timestamp":"2023-10-06T17:35:55.440295Z"}]}
//! {"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"buy","price":83744.3,"qty":0.00044780,"ord_type":"limit","trade_id":109116693,"timestamp":"2026-09-25T17:48:26.844359Z"}]}
//! {"channel":"ticker","type":"update","data":[{"symbol":"BTC/USD","bid":83744.2,"bid_qty":0.56251979,"ask":83744.3,"ask_qty":0.00044780,"last":83744.3,...}]}
//! ```
//!
//! - **Numbers are JSON numbers** whose text carries the pair's precision (trailing zeros
//!   kept). They are read from the raw token, never through `f64`.
//! - **Checksum**: after each book message (all its levels applied in order, then the
//!   book cut to the subscribed depth, since Kraken sends no removals for levels that
//!   fall out of range), CRC32 of the top 10 asks (low to high) then the top 10 bids
//!   (high to low), each level as price then quantity printed with the pair's precision,
//!   the point and leading zeros removed. The precision is learnt from the wire: the most
//!   fractional digits seen for the pair's prices and for its quantities (real frames
//!   keep trailing zeros, so the longest token shows the precision; this also reproduces
//!   the documentation's examples that drop them). No metadata request is needed.
//! - **Resync**: a checksum that does not match counts a failure and resubscribes that
//!   symbol's book (unsubscribe, subscribe with a snapshot); until the snapshot arrives
//!   its updates are ignored. Other symbols are untouched. There are no book sequence
//!   numbers: the checksum is the only gap detector.
//! - **Trades**: `side` is the taker's. Trade ids count up by one per pair; the trade
//!   snapshot sent on (re)subscribing fills what an outage lost (trades after the last
//!   one seen are published, holes become skipped seqs); the very first snapshot only
//!   sets the starting id.
//! - Acks, errors (`success:false`, logged), `status`, `heartbeat`, `pong` and unknown
//!   channels publish nothing.

use std::sync::atomic::Ordering;

use tickwire_engine::feed::{FeedError, Publisher};
use tickwire_engine::fixed;
use tickwire_engine::symbol::{SymbolId, SymbolRegistryBuilder};
use tickwire_engine::tick::{Aggressor, BookSide};

use super::{
    decimal, integer, string, DecodeError, Outbox, Protocol, Symbols, TradeCheck, TradeIds, Venue,
    VenueConfig,
};
use crate::decimal::rfc3339_ns;
use crate::json::{self, Value};

/// Levels the checksum covers on each side.
pub const CHECKSUM_LEVELS: usize = 10;

/// One side of a local book, best first.
#[derive(Debug, Default, Clone)]
struct Side {
    levels: Vec<(i64, i64)>,
}

impl Side {
    /// Sets `price` to `qty` (0 removes); `better(a, b)` says a comes before b.
    fn set(&mut self, price: i64, qty: i64, bids: bool) {
        let found = self.levels.binary_search_by(
            |&(p, _)| {
                if bids {
                    price.cmp(&p)
                } else {
                    p.cmp(&price)
                }
            },
        );
        match (found, qty) {
            (Ok(i), 0) => {
                self.levels.remove(i);
            }
            (Ok(i), q) => self.levels[i].1 = q,
            (Err(_), 0) => {}
            (Err(i), q) => self.levels.insert(i, (price, q)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BookSync {
    /// Waiting for a snapshot: updates are ignored.
    Waiting,
    Live,
}

#[derive(Debug)]
struct Sym {
    book: BookSync,
    bids: Side,
    asks: Side,
    /// Fractional digits of the pair's prices and quantities, as learnt from the wire.
    price_digits: u8,
    qty_digits: u8,
    trades: TradeIds,
    /// A trade message was seen: snapshots are no longer mere history.
    trades_started: bool,
}

/// The Kraken v2 protocol (see the module's contract).
#[derive(Debug)]
pub struct Kraken {
    symbols: Symbols,
    syms: Vec<Sym>,
    price_scale: u8,
    size_scale: u8,
    depth: usize,
    /// Levels of the message being decoded: (side, price, qty).
    scratch: Vec<(BookSide, i64, i64)>,
    /// Levels cut off by the depth, to publish as removals.
    cut: Vec<(BookSide, i64)>,
    next_req: u64,
}

impl Kraken {
    /// The protocol for `cfg`'s symbols (`BTC/USD`).
    pub fn new(cfg: &VenueConfig) -> Kraken {
        Kraken {
            symbols: Symbols::new(&cfg.symbols),
            syms: cfg
                .symbols
                .iter()
                .map(|_| Sym {
                    book: BookSync::Waiting,
                    bids: Side::default(),
                    asks: Side::default(),
                    price_digits: 0,
                    qty_digits: 0,
                    trades: TradeIds::default(),
                    trades_started: false,
                })
                .collect(),
            price_scale: cfg.price_scale,
            size_scale: cfg.size_scale,
            depth: cfg.book_depth as usize,
            scratch: Vec::with_capacity(256),
            cut: Vec::with_capacity(64),
            next_req: 1,
        }
    }

    fn request(&mut self, method: &str, channel: &str, symbols: &[&str], extra: &str) -> String {
        let list: Vec<String> = symbols.iter().map(|s| format!("\"{s}\"")).collect();
        let id = self.next_req;
        self.next_req += 1;
        format!(
            "{{\"method\":\"{method}\",\"params\":{{\"channel\":\"{channel}\",\"symbol\":[{}]{extra}}},\"req_id\":{id}}}",
            list.join(",")
        )
    }

    fn book_extra(&self) -> String {
        format!(",\"depth\":{},\"snapshot\":true", self.depth)
    }

    /// Resubscribes symbol `i`'s book for a fresh snapshot.
    fn resync(&mut self, i: usize, publisher: &Publisher, out: &mut Outbox) {
        self.syms[i].book = BookSync::Waiting;
        let native = self.symbols.native(i).to_owned();
        let unsubscribe = self.request(
            "unsubscribe",
            "book",
            &[&native],
            &format!(",\"depth\":{}", self.depth),
        );
        let extra = self.book_extra();
        let subscribe = self.request("subscribe", "book", &[&native], &extra);
        out.texts.push(unsubscribe);
        out.texts.push(subscribe);
        publisher
            .shared()
            .stats
            .resyncs
            .fetch_add(1, Ordering::Relaxed);
    }

    fn on_trade(
        &mut self,
        snapshot: bool,
        data: Value<'_>,
        publisher: &mut Publisher,
    ) -> Result<(), DecodeError> {
        for entry in data.array().ok_or(DecodeError::Field("data"))? {
            let (mut symbol, mut side, mut price, mut qty, mut id, mut time) =
                (None, None, None, None, None, None);
            for field in entry?.object().ok_or(DecodeError::Field("data"))? {
                let (k, v) = field?;
                match k {
                    b"symbol" => symbol = Some(v),
                    b"side" => side = Some(v),
                    b"price" => price = Some(v),
                    b"qty" => qty = Some(v),
                    b"trade_id" => id = Some(v),
                    b"timestamp" => time = Some(v),
                    _ => {}
                }
            }
            let Some(i) = self.symbols.index(string(symbol, "symbol")?) else {
                continue;
            };
            let trade_id = integer(id, "trade_id")?;
            let price = decimal(price, "price", self.price_scale)?.mantissa;
            let size = decimal(qty, "qty", self.size_scale)?.mantissa;
            let side = match side.and_then(|v| v.str()) {
                Some(b"buy") => Some(Aggressor::Buy),
                Some(b"sell") => Some(Aggressor::Sell),
                _ => None,
            };
            let ts = time.and_then(|v| v.str()).and_then(rfc3339_ns);
            let sym = &mut self.syms[i];
            if snapshot && !sym.trades_started {
                // History from before we were here: it only sets the starting id.
                sym.trades.check(trade_id);
                continue;
            }
            let id = self.symbols.id(i);
            match sym.trades.check(trade_id) {
                TradeCheck::Seen => continue,
                TradeCheck::New { missed } => publisher.skip_trades(id, missed),
            }
            publisher.trade(id, ts, price, size, side, trade_id);
        }
        // From the first trade message on, every trade is live (a later snapshot, after a
        // reconnect, fills the outage).
        for sym in &mut self.syms {
            sym.trades_started |= sym.trades.last().is_some();
        }
        Ok(())
    }

    fn on_ticker(&mut self, data: Value<'_>, publisher: &mut Publisher) -> Result<(), DecodeError> {
        for entry in data.array().ok_or(DecodeError::Field("data"))? {
            let (mut symbol, mut bid, mut bid_qty, mut ask, mut ask_qty, mut time) =
                (None, None, None, None, None, None);
            for field in entry?.object().ok_or(DecodeError::Field("data"))? {
                let (k, v) = field?;
                match k {
                    b"symbol" => symbol = Some(v),
                    b"bid" => bid = Some(v),
                    b"bid_qty" => bid_qty = Some(v),
                    b"ask" => ask = Some(v),
                    b"ask_qty" => ask_qty = Some(v),
                    b"timestamp" => time = Some(v),
                    _ => {}
                }
            }
            let Some(i) = self.symbols.index(string(symbol, "symbol")?) else {
                continue;
            };
            let bid = (
                decimal(bid, "bid", self.price_scale)?.mantissa,
                decimal(bid_qty, "bid_qty", self.size_scale)?.mantissa,
            );
            let ask = (
                decimal(ask, "ask", self.price_scale)?.mantissa,
                decimal(ask_qty, "ask_qty", self.size_scale)?.mantissa,
            );
            let ts = time.and_then(|v| v.str()).and_then(rfc3339_ns);
            publisher.quote(self.symbols.id(i), ts, bid, ask);
        }
        Ok(())
    }

    fn levels(
        &mut self,
        i: usize,
        side: BookSide,
        list: Option<Value<'_>>,
    ) -> Result<(), DecodeError> {
        let field = if side == BookSide::Bid {
            "bids"
        } else {
            "asks"
        };
        let Some(list) = list else {
            return Ok(());
        };
        for level in list.array().ok_or(DecodeError::Field(field))? {
            let (mut price, mut qty) = (None, None);
            for f in level?.object().ok_or(DecodeError::Field(field))? {
                let (k, v) = f?;
                match k {
                    b"price" => price = Some(v),
                    b"qty" => qty = Some(v),
                    _ => {}
                }
            }
            let price = decimal(price, "price", self.price_scale)?;
            let qty = decimal(qty, "qty", self.size_scale)?;
            let sym = &mut self.syms[i];
            // Digits past the scale are zeros (else the parse failed), but they are part of
            // the venue's rendering, which the checksum covers.
            sym.price_digits = sym.price_digits.max(price.digits.min(fixed::MAX_SCALE));
            sym.qty_digits = sym.qty_digits.max(qty.digits.min(fixed::MAX_SCALE));
            self.scratch.push((side, price.mantissa, qty.mantissa));
        }
        Ok(())
    }

    fn on_book(
        &mut self,
        snapshot: bool,
        data: Value<'_>,
        publisher: &mut Publisher,
        out: &mut Outbox,
    ) -> Result<(), DecodeError> {
        for entry in data.array().ok_or(DecodeError::Field("data"))? {
            let (mut symbol, mut bids, mut asks, mut checksum, mut time) =
                (None, None, None, None, None);
            for field in entry?.object().ok_or(DecodeError::Field("data"))? {
                let (k, v) = field?;
                match k {
                    b"symbol" => symbol = Some(v),
                    b"bids" => bids = Some(v),
                    b"asks" => asks = Some(v),
                    b"checksum" => checksum = Some(v),
                    b"timestamp" => time = Some(v),
                    _ => {}
                }
            }
            let Some(i) = self.symbols.index(string(symbol, "symbol")?) else {
                continue;
            };
            if !snapshot && self.syms[i].book == BookSync::Waiting {
                continue;
            }
            let parsed = (|| {
                self.scratch.clear();
                self.levels(i, BookSide::Bid, bids)?;
                self.levels(i, BookSide::Ask, asks)?;
                integer(checksum, "checksum")
            })();
            let expected = match parsed {
                Ok(c) => c,
                Err(e) => {
                    // A lost update: the book cannot be trusted any more.
                    if self.syms[i].book == BookSync::Live {
                        self.resync(i, publisher, out);
                    }
                    return Err(e);
                }
            };
            let ts = time.and_then(|v| v.str()).and_then(rfc3339_ns);
            self.apply(i, snapshot, ts, publisher);
            let got = checksum_of(
                &self.syms[i].asks.levels,
                &self.syms[i].bids.levels,
                self.price_scale,
                self.syms[i].price_digits,
                self.size_scale,
                self.syms[i].qty_digits,
            );
            if u64::from(got) == expected {
                self.syms[i].book = BookSync::Live;
            } else {
                publisher
                    .shared()
                    .stats
                    .checksum_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    symbol = self.symbols.native(i),
                    expected,
                    got,
                    "kraken: book checksum mismatch; resubscribing this symbol"
                );
                self.resync(i, publisher, out);
            }
        }
        Ok(())
    }

    /// Applies the scratch levels to symbol `i`'s book, cuts it to depth, publishes.
    fn apply(&mut self, i: usize, snapshot: bool, ts: Option<u64>, publisher: &mut Publisher) {
        let id = self.symbols.id(i);
        let depth = self.depth;
        let sym = &mut self.syms[i];
        if snapshot {
            sym.bids.levels.clear();
            sym.asks.levels.clear();
        }
        for &(side, price, qty) in &self.scratch {
            match side {
                BookSide::Bid => sym.bids.set(price, qty, true),
                BookSide::Ask => sym.asks.set(price, qty, false),
            }
        }
        self.cut.clear();
        for (side, book) in [
            (BookSide::Bid, &mut sym.bids),
            (BookSide::Ask, &mut sym.asks),
        ] {
            if book.levels.len() > depth {
                self.cut
                    .extend(book.levels[depth..].iter().map(|&(p, _)| (side, p)));
                book.levels.truncate(depth);
            }
        }
        publisher.begin_book(id, ts, snapshot);
        if snapshot {
            // A snapshot publishes the book as kept, the cut levels never in it.
            for (side, book) in [(BookSide::Bid, &sym.bids), (BookSide::Ask, &sym.asks)] {
                for &(price, qty) in &book.levels {
                    publisher.level(side, price, qty);
                }
            }
        } else {
            for &(side, price, qty) in &self.scratch {
                publisher.level(side, price, qty);
            }
            for &(side, price) in &self.cut {
                publisher.level(side, price, 0);
            }
        }
        publisher.end_book();
    }

    fn dispatch(
        &mut self,
        text: &[u8],
        publisher: &mut Publisher,
        out: &mut Outbox,
    ) -> Result<(), DecodeError> {
        let root = json::parse(text)?;
        let (mut channel, mut kind, mut data, mut success, mut error) =
            (None, None, None, None, None);
        for field in root.object().ok_or(DecodeError::Field("message"))? {
            let (k, v) = field?;
            match k {
                b"channel" => channel = v.str(),
                b"type" => kind = v.str(),
                b"data" => data = Some(v),
                b"success" => success = v.bool(),
                b"error" => error = Some(v),
                _ => {}
            }
        }
        if success == Some(false) {
            let why = error
                .map(|e| String::from_utf8_lossy(e.raw).into_owned())
                .unwrap_or_default();
            tracing::warn!(error = %why, "kraken: request refused");
            return Ok(());
        }
        let snapshot = kind == Some(b"snapshot");
        match (channel, data) {
            (Some(b"trade"), Some(d)) => self.on_trade(snapshot, d, publisher),
            (Some(b"ticker"), Some(d)) => self.on_ticker(d, publisher),
            (Some(b"book"), Some(d)) => self.on_book(snapshot, d, publisher, out),
            _ => Ok(()),
        }
    }
}

/// Kraken's book checksum over `asks` (best first) and `bids` (best first): see the
/// module's contract. Mantissas are at `price_scale`/`qty_scale` and printed with
/// `price_digits`/`qty_digits` fractional digits.
///
/// ```
/// use tickwire_feeds::venue::kraken::checksum_of;
/// // Kraken's v1 guide example: asks 0.05005 .. 0.05050, bids 0.05000 .. 0.04950 (no
/// // 0.04985), every quantity 0.00000500; prices at scale 5, quantities at scale 8.
/// let asks: Vec<(i64, i64)> = (0..10).map(|i| (5005 + 5 * i, 500)).collect();
/// let bids: Vec<(i64, i64)> = [5000, 4995, 4990, 4980, 4975, 4970, 4965, 4960, 4955, 4950]
///     .iter()
///     .map(|&p| (p, 500))
///     .collect();
/// assert_eq!(checksum_of(&asks, &bids, 5, 5, 8, 8), 974_947_235);
/// ```
pub fn checksum_of(
    asks: &[(i64, i64)],
    bids: &[(i64, i64)],
    price_scale: u8,
    price_digits: u8,
    qty_scale: u8,
    qty_digits: u8,
) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    let mut buf = itoa::Buffer::new();
    // The value at the wire's precision as an integer is exactly "the digits with the
    // point and leading zeros removed".
    let at = |mantissa: i64, scale: u8, digits: u8| -> i128 {
        if digits >= scale {
            i128::from(mantissa) * i128::from(fixed::unit(digits - scale))
        } else {
            i128::from(mantissa / fixed::unit(scale - digits))
        }
    };
    for side in [asks, bids] {
        for &(price, qty) in side.iter().take(CHECKSUM_LEVELS) {
            crc.update(buf.format(at(price, price_scale, price_digits)).as_bytes());
            crc.update(buf.format(at(qty, qty_scale, qty_digits)).as_bytes());
        }
    }
    crc.finalize()
}

impl Protocol for Kraken {
    fn venue(&self) -> Venue {
        Venue::Kraken
    }

    fn register(
        &mut self,
        registry: &mut SymbolRegistryBuilder,
    ) -> Result<Vec<SymbolId>, FeedError> {
        self.symbols.register(
            Venue::Kraken.name(),
            registry,
            self.price_scale,
            self.size_scale,
        )
    }

    fn on_open(&mut self, _publisher: &mut Publisher, out: &mut Outbox) {
        for sym in &mut self.syms {
            sym.book = BookSync::Waiting;
        }
        let natives: Vec<String> = self.symbols.natives().to_vec();
        let names: Vec<&str> = natives.iter().map(String::as_str).collect();
        let trade = self.request("subscribe", "trade", &names, ",\"snapshot\":true");
        let ticker = self.request(
            "subscribe",
            "ticker",
            &names,
            ",\"event_trigger\":\"bbo\",\"snapshot\":true",
        );
        let extra = self.book_extra();
        let book = self.request("subscribe", "book", &names, &extra);
        out.texts.extend([trade, ticker, book]);
    }

    fn on_close(&mut self, publisher: &mut Publisher) {
        for sym in &mut self.syms {
            if sym.book == BookSync::Live {
                publisher
                    .shared()
                    .stats
                    .resyncs
                    .fetch_add(1, Ordering::Relaxed);
            }
            sym.book = BookSync::Waiting;
        }
    }

    fn on_text(
        &mut self,
        text: &[u8],
        publisher: &mut Publisher,
        out: &mut Outbox,
    ) -> Result<(), DecodeError> {
        self.dispatch(text, publisher, out)
    }

    fn on_rest(
        &mut self,
        _symbol: &str,
        _body: &[u8],
        _publisher: &mut Publisher,
        _out: &mut Outbox,
    ) -> Result<(), DecodeError> {
        Ok(())
    }

    fn syncing(&self) -> bool {
        self.syms.iter().any(|s| s.book != BookSync::Live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn side_keeps_order_and_removes() {
        let mut bids = Side::default();
        for (p, q) in [(100, 1), (102, 1), (101, 1), (102, 5), (100, 0), (99, 0)] {
            bids.set(p, q, true);
        }
        assert_eq!(bids.levels, [(102, 5), (101, 1)]);
        let mut asks = Side::default();
        for (p, q) in [(100, 1), (102, 1), (101, 1)] {
            asks.set(p, q, false);
        }
        assert_eq!(asks.levels, [(100, 1), (101, 1), (102, 1)]);
    }
}
