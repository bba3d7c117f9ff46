//! Coinbase Exchange: `matches`, `ticker`, `level2_batch` and `heartbeat` on one
//! connection (<https://docs.cdp.coinbase.com/exchange/websocket-feed/channels>).
//!
//! ```text
//! {"type":"subscribe","product_ids":["BTC-USD"],"channels":["heartbeat","ticker","matches","level2_batch"]}
//! {"type":"snapshot","product_id":"BTC-USD","bids":[["10101.10","0.45054140"]],"asks":[["10102.55","0.57753524"]]}
//! {"type":"l2update","product_id":"BTC-USD","changes":[["buy","10101.80000000","0.162567"]],"time":"2019-08-14T20:42:27.265Z"}
//! {"type":"match","trade_id":10,"sequence":50,"maker_order_id":"...","taker_order_id":"...","time":"2014-11-07T08:19:27.028459Z","product_id":"BTC-USD","size":"5.23512","price":"400.23","side":"sell"}
//! {"type":"heartbeat","sequence":90,"last_trade_id":20,"product_id":"BTC-USD","time":"2014-11-07T08:19:28.464459Z"}
//! ```
//!
//! - **Books**: `level2_batch` is the public book (`level2` needs authentication since
//!   2023): a `snapshot` then `l2update`s whose sizes are absolute (`"0"` removes). It
//!   carries no sequence numbers, so a lost update cannot be seen in the message; the feed
//!   rebuilds a book (unsubscribe and subscribe that product's `level2_batch`, which
//!   sends a fresh snapshot) when it finds it crossed, and after every reconnect.
//! - **Trades**: `side` on a match is the **maker's** side, so the aggressor is the other
//!   one. Trade ids count up by one per product; a jump, or a heartbeat's `last_trade_id`
//!   ahead of the last trade seen, is published as skipped trade seqs (Coinbase says
//!   messages on this channel can be dropped). The `last_match` sent on subscribing is
//!   history the first time (it only sets the starting id) and, after a reconnect, tells
//!   how many trades the outage lost. `sequence` is not used for trades: on a subset of
//!   channels its jumps are normal.
//! - **Ticker**: best bid and ask with their sizes become a quote; tickers without sizes
//!   (older frames) are skipped, the book gives the best levels then.
//! - `subscriptions`, `status`, unknown types and fields are ignored; `error` is logged.

use std::sync::atomic::Ordering;

use tickwire_engine::feed::{FeedError, Publisher};
use tickwire_engine::symbol::{SymbolId, SymbolRegistryBuilder};
use tickwire_engine::tick::{Aggressor, BookSide};

use super::{
    decimal, integer, string, DecodeError, Outbox, Protocol, Symbols, TradeCheck, TradeIds, Venue,
    VenueConfig,
};
use crate::decimal::rfc3339_ns;
use crate::json::{self, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BookSync {
    Waiting,
    Live,
}

#[derive(Debug)]
struct Sym {
    book: BookSync,
    trades: TradeIds,
    trades_started: bool,
}

/// The Coinbase Exchange protocol (see the module's contract).
#[derive(Debug)]
pub struct Coinbase {
    symbols: Symbols,
    syms: Vec<Sym>,
    price_scale: u8,
    size_scale: u8,
    scratch: Vec<(BookSide, i64, i64)>,
}

/// The fields any Coinbase message may carry that the decoder reads.
#[derive(Default)]
struct Fields<'a> {
    kind: Option<&'a [u8]>,
    product: Option<Value<'a>>,
    time: Option<Value<'a>>,
    trade_id: Option<Value<'a>>,
    last_trade_id: Option<Value<'a>>,
    price: Option<Value<'a>>,
    size: Option<Value<'a>>,
    side: Option<Value<'a>>,
    bids: Option<Value<'a>>,
    asks: Option<Value<'a>>,
    changes: Option<Value<'a>>,
    best_bid: Option<Value<'a>>,
    best_bid_size: Option<Value<'a>>,
    best_ask: Option<Value<'a>>,
    best_ask_size: Option<Value<'a>>,
    message: Option<Value<'a>>,
    reason: Option<Value<'a>>,
}

impl Coinbase {
    /// The protocol for `cfg`'s products (`BTC-USD`).
    pub fn new(cfg: &VenueConfig) -> Coinbase {
        Coinbase {
            symbols: Symbols::new(&cfg.symbols),
            syms: cfg
                .symbols
                .iter()
                .map(|_| Sym {
                    book: BookSync::Waiting,
                    trades: TradeIds::default(),
                    trades_started: false,
                })
                .collect(),
            price_scale: cfg.price_scale,
            size_scale: cfg.size_scale,
            scratch: Vec::with_capacity(256),
        }
    }

    fn request(kind: &str, products: &[&str], channels: &[&str]) -> String {
        let p: Vec<String> = products.iter().map(|s| format!("\"{s}\"")).collect();
        let c: Vec<String> = channels.iter().map(|s| format!("\"{s}\"")).collect();
        format!(
            "{{\"type\":\"{kind}\",\"product_ids\":[{}],\"channels\":[{}]}}",
            p.join(","),
            c.join(",")
        )
    }

    fn resync(&mut self, i: usize, publisher: &Publisher, out: &mut Outbox) {
        self.syms[i].book = BookSync::Waiting;
        let native = self.symbols.native(i);
        out.texts.push(Coinbase::request(
            "unsubscribe",
            &[native],
            &["level2_batch"],
        ));
        out.texts
            .push(Coinbase::request("subscribe", &[native], &["level2_batch"]));
        publisher
            .shared()
            .stats
            .resyncs
            .fetch_add(1, Ordering::Relaxed);
    }

    fn side_levels(&mut self, side: BookSide, list: Option<Value<'_>>) -> Result<(), DecodeError> {
        let field = if side == BookSide::Bid {
            "bids"
        } else {
            "asks"
        };
        for level in list
            .and_then(|v| v.array())
            .ok_or(DecodeError::Field(field))?
        {
            let mut pair = level?.array().ok_or(DecodeError::Field(field))?;
            let price = decimal(pair.next().transpose()?, "price", self.price_scale)?;
            let size = decimal(pair.next().transpose()?, "size", self.size_scale)?;
            self.scratch.push((side, price.mantissa, size.mantissa));
        }
        Ok(())
    }

    fn changes(&mut self, list: Option<Value<'_>>) -> Result<(), DecodeError> {
        for change in list
            .and_then(|v| v.array())
            .ok_or(DecodeError::Field("changes"))?
        {
            let mut c = change?.array().ok_or(DecodeError::Field("changes"))?;
            let side = match c.next().transpose()?.and_then(|v| v.str()) {
                Some(b"buy") => BookSide::Bid,
                Some(b"sell") => BookSide::Ask,
                _ => return Err(DecodeError::Field("changes side")),
            };
            let price = decimal(c.next().transpose()?, "price", self.price_scale)?;
            let size = decimal(c.next().transpose()?, "size", self.size_scale)?;
            self.scratch.push((side, price.mantissa, size.mantissa));
        }
        Ok(())
    }

    fn on_match(
        &mut self,
        i: usize,
        f: &Fields<'_>,
        history: bool,
        publisher: &mut Publisher,
    ) -> Result<(), DecodeError> {
        let trade_id = integer(f.trade_id, "trade_id")?;
        let price = decimal(f.price, "price", self.price_scale)?.mantissa;
        let size = decimal(f.size, "size", self.size_scale)?.mantissa;
        // The maker's side: the aggressor took the other one.
        let side = match f.side.and_then(|v| v.str()) {
            Some(b"sell") => Some(Aggressor::Buy),
            Some(b"buy") => Some(Aggressor::Sell),
            _ => None,
        };
        let ts = f.time.and_then(|v| v.str()).and_then(rfc3339_ns);
        let sym = &mut self.syms[i];
        if history && !sym.trades_started {
            sym.trades.check(trade_id);
            sym.trades_started = true;
            return Ok(());
        }
        sym.trades_started = true;
        let id = self.symbols.id(i);
        match sym.trades.check(trade_id) {
            TradeCheck::Seen => return Ok(()),
            TradeCheck::New { missed } => publisher.skip_trades(id, missed),
        }
        publisher.trade(id, ts, price, size, side, trade_id);
        Ok(())
    }

    fn on_book(
        &mut self,
        i: usize,
        f: &Fields<'_>,
        snapshot: bool,
        publisher: &mut Publisher,
        out: &mut Outbox,
    ) -> Result<(), DecodeError> {
        if !snapshot && self.syms[i].book == BookSync::Waiting {
            return Ok(());
        }
        self.scratch.clear();
        let parsed = if snapshot {
            self.side_levels(BookSide::Bid, f.bids)
                .and_then(|()| self.side_levels(BookSide::Ask, f.asks))
        } else {
            self.changes(f.changes)
        };
        if let Err(e) = parsed {
            if !snapshot {
                // The update is lost: rebuild the book.
                self.resync(i, publisher, out);
            }
            return Err(e);
        }
        let id = self.symbols.id(i);
        let ts = f.time.and_then(|v| v.str()).and_then(rfc3339_ns);
        publisher.begin_book(id, ts, snapshot);
        for &(side, price, size) in &self.scratch {
            publisher.level(side, price, size);
        }
        publisher.end_book();
        self.syms[i].book = BookSync::Live;
        let book = &publisher.state(id).book;
        if let (Some(bid), Some(ask)) = (book.best_bid(), book.best_ask()) {
            if bid.price >= ask.price {
                tracing::warn!(
                    product = self.symbols.native(i),
                    "coinbase: crossed book; resubscribing this product's level2_batch"
                );
                publisher
                    .shared()
                    .stats
                    .gaps
                    .fetch_add(1, Ordering::Relaxed);
                self.resync(i, publisher, out);
            }
        }
        Ok(())
    }

    fn dispatch(
        &mut self,
        text: &[u8],
        publisher: &mut Publisher,
        out: &mut Outbox,
    ) -> Result<(), DecodeError> {
        let root = json::parse(text)?;
        let mut f = Fields::default();
        for field in root.object().ok_or(DecodeError::Field("message"))? {
            let (k, v) = field?;
            match k {
                b"type" => f.kind = v.str(),
                b"product_id" => f.product = Some(v),
                b"time" => f.time = Some(v),
                b"trade_id" => f.trade_id = Some(v),
                b"last_trade_id" => f.last_trade_id = Some(v),
                b"price" => f.price = Some(v),
                b"size" => f.size = Some(v),
                b"side" => f.side = Some(v),
                b"bids" => f.bids = Some(v),
                b"asks" => f.asks = Some(v),
                b"changes" => f.changes = Some(v),
                b"best_bid" => f.best_bid = Some(v),
                b"best_bid_size" => f.best_bid_size = Some(v),
                b"best_ask" => f.best_ask = Some(v),
                b"best_ask_size" => f.best_ask_size = Some(v),
                b"message" => f.message = Some(v),
                b"reason" => f.reason = Some(v),
                _ => {}
            }
        }
        let kind = f.kind.ok_or(DecodeError::Field("type"))?;
        if kind == b"error" {
            let text = |v: Option<Value<'_>>| {
                v.map(|v| String::from_utf8_lossy(v.raw).into_owned())
                    .unwrap_or_default()
            };
            tracing::warn!(message = %text(f.message), reason = %text(f.reason), "coinbase: error");
            return Ok(());
        }
        let product = match kind {
            b"match" | b"last_match" | b"snapshot" | b"l2update" | b"ticker" | b"heartbeat" => {
                string(f.product, "product_id")?
            }
            _ => return Ok(()),
        };
        let Some(i) = self.symbols.index(product) else {
            return Ok(());
        };
        match kind {
            b"match" => self.on_match(i, &f, false, publisher),
            b"last_match" => self.on_match(i, &f, true, publisher),
            b"snapshot" => self.on_book(i, &f, true, publisher, out),
            b"l2update" => self.on_book(i, &f, false, publisher, out),
            b"heartbeat" => {
                if let Some(last) = f.last_trade_id.and_then(|v| v.u64()) {
                    let sym = &mut self.syms[i];
                    // Before the first trade message, a heartbeat only sets the start.
                    if sym.trades_started {
                        let missed = sym.trades.seen_up_to(last);
                        publisher.skip_trades(self.symbols.id(i), missed);
                    }
                }
                Ok(())
            }
            _ => {
                // ticker
                if f.best_bid_size.is_none() || f.best_ask_size.is_none() {
                    return Ok(());
                }
                let bid = (
                    decimal(f.best_bid, "best_bid", self.price_scale)?.mantissa,
                    decimal(f.best_bid_size, "best_bid_size", self.size_scale)?.mantissa,
                );
                let ask = (
                    decimal(f.best_ask, "best_ask", self.price_scale)?.mantissa,
                    decimal(f.best_ask_size, "best_ask_size", self.size_scale)?.mantissa,
                );
                let ts = f.time.and_then(|v| v.str()).and_then(rfc3339_ns);
                publisher.quote(self.symbols.id(i), ts, bid, ask);
                Ok(())
            }
        }
    }
}

impl Protocol for Coinbase {
    fn venue(&self) -> Venue {
        Venue::Coinbase
    }

    fn register(
        &mut self,
        registry: &mut SymbolRegistryBuilder,
    ) -> Result<Vec<SymbolId>, FeedError> {
        self.symbols.register(
            Venue::Coinbase.name(),
            registry,
            self.price_scale,
            self.size_scale,
        )
    }

    fn on_open(&mut self, _publisher: &mut Publisher, out: &mut Outbox) {
        for sym in &mut self.syms {
            sym.book = BookSync::Waiting;
        }
        let natives: Vec<&str> = self.symbols.natives().iter().map(String::as_str).collect();
        out.texts.push(Coinbase::request(
            "subscribe",
            &natives,
            &["heartbeat", "ticker", "matches", "level2_batch"],
        ));
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
