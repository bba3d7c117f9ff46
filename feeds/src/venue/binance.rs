//! Binance spot: `<symbol>@trade`, `<symbol>@bookTicker` and `<symbol>@depth@100ms` on one
//! combined-stream connection, and the REST depth snapshot
//! (<https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams>).
//!
//! ```text
//! {"stream":"btcusdt@trade","data":{"e":"trade","E":1672515782136,"s":"BTCUSDT","t":12345,"p":"0.001","q":"100","T":1672515782136,"m":true,"M":true}}
//! {"stream":"btcusdt@bookTicker","data":{"u":400900217,"s":"BTCUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}}
//! {"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1672515782136,"s":"BTCUSDT","U":157,"u":160,"b":[["0.0024","10"]],"a":[["0.0026","100"]]}}
//! GET /api/v3/depth?symbol=BTCUSDT&limit=1000 → {"lastUpdateId":160,"bids":[["0.0024","10"]],"asks":[["0.0026","100"]]}
//! ```
//!
//! - **Book sync** (the documented procedure): depth events are buffered from the first
//!   one; the snapshot is then fetched. Events with `u <= lastUpdateId` are dropped; if the
//!   first remaining event starts after `lastUpdateId + 1` the snapshot is too old and is
//!   fetched again. From then on an event applies when `U <= last_u + 1` (in a clean
//!   stream `U == last_u + 1`), is dropped when `u <= last_u` (a repeat), and anything
//!   else is a gap: that symbol alone buffers and refetches, the others go on.
//! - **Keys are case-sensitive** (`E` event time, `e` type; `T` trade time, `t` trade id);
//!   `bookTicker` has no `e`, so messages are dispatched by stream name (or, on a raw
//!   `/ws` connection, by `e` and then by shape). `m` = the buyer was the maker, so the
//!   aggressor sold.
//! - **Trades**: trade ids count up by one per symbol; a jump (after a reconnect) is
//!   published as skipped trade seqs, a repeat is dropped.
//! - **Make-before-break**: Binance closes a connection after 24 h. A replacement is
//!   opened first; its frames go through the same rules, except that what runs ahead of
//!   the current state (a depth event past `last_u + 1`, a trade id past the last + 1) is
//!   left to the current connection. Once the replacement's depth events continue every
//!   book, it takes over.
//! - Quantities are absolute; `"0.00000000"` removes a level. The book keeps every level
//!   it hears of (the snapshot's 1000 and any outside it the diffs touch).

use std::time::{Duration, Instant};

use tickwire_engine::feed::{FeedError, Publisher};
use tickwire_engine::symbol::{SymbolId, SymbolRegistryBuilder};
use tickwire_engine::tick::{Aggressor, BookSide};

use super::{
    decimal, integer, string, DecodeError, Fetch, Outbox, Protocol, Symbols, TradeCheck, TradeIds,
    Venue, VenueConfig,
};
use crate::decimal::ms_to_ns;
use crate::json::{self, Value};

/// A snapshot request waits this long for a first depth event before going out anyway
/// (a quiet symbol still gets its book).
const QUIET_SNAPSHOT_AFTER: Duration = Duration::from_secs(1);
/// Retry delay of a failed snapshot request.
const SNAPSHOT_RETRY: Duration = Duration::from_secs(1);
/// Most buffered levels per symbol while a snapshot is awaited; past it the buffer is
/// dropped and the sync starts over (a snapshot that never comes must not eat memory).
const MAX_BUFFERED_LEVELS: usize = 1 << 20;

/// One buffered depth event: its update-id range, time and levels in `Sync::levels`.
#[derive(Debug, Clone, Copy)]
struct Buffered {
    first: u64,
    last: u64,
    ts: u64,
    from: usize,
    to: usize,
}

#[derive(Debug)]
enum BookSync {
    /// Buffering depth events until the snapshot arrives.
    Waiting {
        /// A snapshot request is out.
        requested: bool,
        /// Since when the symbol waits (for the quiet-symbol request).
        since: Instant,
    },
    /// In sync: the last applied update id.
    Live { last_u: u64 },
}

#[derive(Debug)]
struct Sym {
    book: BookSync,
    buffered: Vec<Buffered>,
    levels: Vec<(BookSide, i64, i64)>,
    trades: TradeIds,
    /// Last `bookTicker` update id, to drop repeats.
    ticker_u: u64,
}

/// The Binance spot protocol (see the module's contract).
#[derive(Debug)]
pub struct Binance {
    symbols: Symbols,
    syms: Vec<Sym>,
    price_scale: u8,
    size_scale: u8,
    depth_limit: u32,
    /// Levels of the message being decoded.
    scratch: Vec<(BookSide, i64, i64)>,
    /// Next request id for SUBSCRIBE.
    next_id: u64,
    /// While a replacement connection catches up: per symbol, whether one of its depth
    /// events continued (or repeated) the current book.
    candidate: Option<Vec<bool>>,
    /// The frame being decoded came from the replacement connection.
    from_candidate: bool,
}

impl Binance {
    /// The protocol for `cfg`'s symbols (native spelling, upper case: `BTCUSDT`).
    pub fn new(cfg: &VenueConfig) -> Binance {
        let now = Instant::now();
        Binance {
            symbols: Symbols::new(&cfg.symbols),
            syms: cfg
                .symbols
                .iter()
                .map(|_| Sym {
                    book: BookSync::Waiting {
                        requested: false,
                        since: now,
                    },
                    buffered: Vec::new(),
                    levels: Vec::new(),
                    trades: TradeIds::default(),
                    ticker_u: 0,
                })
                .collect(),
            price_scale: cfg.price_scale,
            size_scale: cfg.size_scale,
            depth_limit: cfg.book_depth.clamp(1, 5000),
            scratch: Vec::with_capacity(1024),
            next_id: 1,
            candidate: None,
            from_candidate: false,
        }
    }

    /// The SUBSCRIBE request for every symbol's three streams.
    pub fn subscribe_message(&mut self) -> String {
        let mut params = Vec::with_capacity(self.symbols.len() * 3);
        for native in self.symbols.natives() {
            let lower = native.to_ascii_lowercase();
            params.push(format!("\"{lower}@trade\""));
            params.push(format!("\"{lower}@bookTicker\""));
            params.push(format!("\"{lower}@depth@100ms\""));
        }
        let id = self.next_id;
        self.next_id += 1;
        format!(
            "{{\"method\":\"SUBSCRIBE\",\"params\":[{}],\"id\":{id}}}",
            params.join(",")
        )
    }

    fn fetch(&self, i: usize, delay: Duration) -> Fetch {
        Fetch {
            symbol: self.symbols.native(i).to_owned(),
            path: format!(
                "/api/v3/depth?symbol={}&limit={}",
                self.symbols.native(i),
                self.depth_limit
            ),
            delay,
        }
    }

    /// Starts symbol `i`'s book over: buffer, and fetch a snapshot once an event arrived.
    fn resync(&mut self, i: usize, publisher: &Publisher) {
        let sym = &mut self.syms[i];
        sym.book = BookSync::Waiting {
            requested: false,
            since: Instant::now(),
        };
        sym.buffered.clear();
        sym.levels.clear();
        publisher
            .shared()
            .stats
            .resyncs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn levels(&mut self, side: BookSide, list: Option<Value<'_>>) -> Result<(), DecodeError> {
        let field = if side == BookSide::Bid { "b" } else { "a" };
        let list = list
            .and_then(|v| v.array())
            .ok_or(DecodeError::Field(field))?;
        for level in list {
            let mut pair = level?.array().ok_or(DecodeError::Field(field))?;
            let price = decimal(pair.next().transpose()?, "price", self.price_scale)?;
            let size = decimal(pair.next().transpose()?, "quantity", self.size_scale)?;
            self.scratch.push((side, price.mantissa, size.mantissa));
        }
        Ok(())
    }

    fn on_trade(&mut self, data: Value<'_>, publisher: &mut Publisher) -> Result<(), DecodeError> {
        let (mut s, mut t, mut p, mut q, mut time, mut m) = (None, None, None, None, None, None);
        for field in data.object().ok_or(DecodeError::Field("data"))? {
            let (k, v) = field?;
            match k {
                b"s" => s = Some(v),
                b"t" => t = Some(v),
                b"p" => p = Some(v),
                b"q" => q = Some(v),
                b"T" => time = Some(v),
                b"m" => m = Some(v),
                _ => {}
            }
        }
        let Some(i) = self.symbols.index(string(s, "s")?) else {
            return Ok(());
        };
        let trade_id = integer(t, "t")?;
        let price = decimal(p, "p", self.price_scale)?.mantissa;
        let size = decimal(q, "q", self.size_scale)?.mantissa;
        let ts = time.and_then(|v| v.u64()).map(ms_to_ns);
        let side = match m.and_then(|v| v.bool()) {
            Some(true) => Some(Aggressor::Sell),
            Some(false) => Some(Aggressor::Buy),
            None => None,
        };
        if self.from_candidate {
            // A replacement that is ahead would make the current connection's next
            // trades look like repeats: take only what continues the current state.
            match self.syms[i].trades.last() {
                Some(last) if trade_id <= last + 1 => {}
                // Ahead, or no trade yet to continue: the current connection sets the pace.
                _ => return Ok(()),
            }
        }
        let id = self.symbols.id(i);
        match self.syms[i].trades.check(trade_id) {
            TradeCheck::Seen => return Ok(()),
            TradeCheck::New { missed } => publisher.skip_trades(id, missed),
        }
        publisher.trade(id, ts, price, size, side, trade_id);
        Ok(())
    }

    fn on_book_ticker(
        &mut self,
        data: Value<'_>,
        publisher: &mut Publisher,
    ) -> Result<(), DecodeError> {
        let (mut s, mut u, mut b, mut bq, mut a, mut aq) = (None, None, None, None, None, None);
        for field in data.object().ok_or(DecodeError::Field("data"))? {
            let (k, v) = field?;
            match k {
                b"s" => s = Some(v),
                b"u" => u = Some(v),
                b"b" => b = Some(v),
                b"B" => bq = Some(v),
                b"a" => a = Some(v),
                b"A" => aq = Some(v),
                _ => {}
            }
        }
        let Some(i) = self.symbols.index(string(s, "s")?) else {
            return Ok(());
        };
        let u = integer(u, "u")?;
        let bid = (
            decimal(b, "b", self.price_scale)?.mantissa,
            decimal(bq, "B", self.size_scale)?.mantissa,
        );
        let ask = (
            decimal(a, "a", self.price_scale)?.mantissa,
            decimal(aq, "A", self.size_scale)?.mantissa,
        );
        let sym = &mut self.syms[i];
        if u != 0 && u <= sym.ticker_u {
            return Ok(());
        }
        sym.ticker_u = u;
        publisher.quote(self.symbols.id(i), None, bid, ask);
        Ok(())
    }

    fn on_depth(
        &mut self,
        data: Value<'_>,
        publisher: &mut Publisher,
        out: &mut Outbox,
    ) -> Result<(), DecodeError> {
        let (mut s, mut first, mut last, mut time, mut b, mut a) =
            (None, None, None, None, None, None);
        for field in data.object().ok_or(DecodeError::Field("data"))? {
            let (k, v) = field?;
            match k {
                b"s" => s = Some(v),
                b"U" => first = Some(v),
                b"u" => last = Some(v),
                b"E" => time = Some(v),
                b"b" => b = Some(v),
                b"a" => a = Some(v),
                _ => {}
            }
        }
        let Some(i) = self.symbols.index(string(s, "s")?) else {
            return Ok(());
        };
        let parsed = (|| {
            let first = integer(first, "U")?;
            let last = integer(last, "u")?;
            self.scratch.clear();
            self.levels(BookSide::Bid, b)?;
            self.levels(BookSide::Ask, a)?;
            Ok::<_, DecodeError>((first, last))
        })();
        let (first, last) = match parsed {
            Ok(ids) => ids,
            Err(e) => {
                // The update is lost: the book can no longer be trusted.
                self.resync(i, publisher);
                return Err(e);
            }
        };
        let ts = time.and_then(|v| v.u64()).map(ms_to_ns).unwrap_or(0);
        match self.syms[i].book {
            // The current connection fills the buffer; the replacement's copy would only
            // repeat or run ahead of it.
            BookSync::Waiting { .. } if self.from_candidate => {}
            BookSync::Waiting { requested, .. } => {
                let sym = &mut self.syms[i];
                if sym.levels.len() + self.scratch.len() > MAX_BUFFERED_LEVELS {
                    sym.buffered.clear();
                    sym.levels.clear();
                }
                let from = sym.levels.len();
                sym.levels.extend_from_slice(&self.scratch);
                sym.buffered.push(Buffered {
                    first,
                    last,
                    ts,
                    from,
                    to: sym.levels.len(),
                });
                if !requested {
                    sym.book = BookSync::Waiting {
                        requested: true,
                        since: Instant::now(),
                    };
                    out.fetches.push(self.fetch(i, Duration::ZERO));
                }
            }
            BookSync::Live { last_u } => {
                if last <= last_u {
                    self.caught_up(i);
                    return Ok(());
                }
                if first > last_u + 1 && self.from_candidate {
                    // Ahead of the current connection: it will deliver these.
                    return Ok(());
                }
                if first > last_u + 1 {
                    tracing::warn!(
                        symbol = self.symbols.native(i),
                        expected = last_u + 1,
                        got = first,
                        "binance: depth gap; resyncing this symbol"
                    );
                    publisher
                        .shared()
                        .stats
                        .gaps
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    self.resync(i, publisher);
                    // This event starts the new buffer.
                    let sym = &mut self.syms[i];
                    sym.levels.extend_from_slice(&self.scratch);
                    sym.buffered.push(Buffered {
                        first,
                        last,
                        ts,
                        from: 0,
                        to: sym.levels.len(),
                    });
                    sym.book = BookSync::Waiting {
                        requested: true,
                        since: Instant::now(),
                    };
                    out.fetches.push(self.fetch(i, Duration::ZERO));
                    return Ok(());
                }
                let id = self.symbols.id(i);
                publisher.begin_book(id, (ts != 0).then_some(ts), false);
                for &(side, price, size) in &self.scratch {
                    publisher.level(side, price, size);
                }
                publisher.end_book();
                self.syms[i].book = BookSync::Live { last_u: last };
                self.caught_up(i);
            }
        }
        Ok(())
    }

    /// Notes that the replacement connection's stream of symbol `i` continues ours.
    fn caught_up(&mut self, i: usize) {
        if self.from_candidate {
            if let Some(flags) = self.candidate.as_mut() {
                flags[i] = true;
            }
        }
    }

    fn dispatch(
        &mut self,
        text: &[u8],
        publisher: &mut Publisher,
        out: &mut Outbox,
    ) -> Result<(), DecodeError> {
        let root = json::parse(text)?;
        let fields = root.object().ok_or(DecodeError::Field("message"))?;
        let (mut stream, mut data, mut event) = (None, None, None);
        let (mut has_u, mut has_b, mut error) = (false, false, None);
        for field in fields {
            let (k, v) = field?;
            match k {
                b"stream" => stream = v.str(),
                b"data" => data = Some(v),
                b"e" => event = v.str(),
                b"u" => has_u = true,
                b"b" => has_b = true,
                b"error" | b"msg" => error = Some(v),
                _ => {}
            }
        }
        if let Some(error) = error {
            return Err(DecodeError::Venue(
                String::from_utf8_lossy(error.raw).into_owned(),
            ));
        }
        let (kind, payload) = match (stream, data) {
            (Some(stream), Some(data)) => {
                let kind = match stream.iter().position(|&c| c == b'@') {
                    Some(at) => &stream[at + 1..],
                    None => stream,
                };
                (kind, data)
            }
            // A raw-stream connection: the payload is the message.
            _ => {
                let kind: &[u8] = match event {
                    Some(b"depthUpdate") => b"depth",
                    Some(e) => e,
                    None if has_u && has_b => b"bookTicker",
                    None => b"",
                };
                (kind, root)
            }
        };
        match kind {
            b"trade" => self.on_trade(payload, publisher),
            b"bookTicker" => self.on_book_ticker(payload, publisher),
            k if k.starts_with(b"depth")
                && !k.starts_with(b"depth5")
                && !k.starts_with(b"depth10")
                && !k.starts_with(b"depth20") =>
            {
                self.on_depth(payload, publisher, out)
            }
            // Subscription acks ({"result":null,"id":1}), other streams, server notices.
            _ => Ok(()),
        }
    }

    fn apply_snapshot(
        &mut self,
        i: usize,
        body: &[u8],
        publisher: &mut Publisher,
        out: &mut Outbox,
    ) -> Result<(), DecodeError> {
        let root = json::parse(body)?;
        let (mut last_update, mut bids, mut asks) = (None, None, None);
        for field in root.object().ok_or(DecodeError::Field("snapshot"))? {
            let (k, v) = field?;
            match k {
                b"lastUpdateId" => last_update = Some(v),
                b"bids" => bids = Some(v),
                b"asks" => asks = Some(v),
                _ => {}
            }
        }
        let last_update = integer(last_update, "lastUpdateId")?;
        self.scratch.clear();
        self.levels(BookSide::Bid, bids)?;
        self.levels(BookSide::Ask, asks)?;
        let sym = &mut self.syms[i];
        // Drop what the snapshot already holds.
        let keep_from = sym.buffered.iter().position(|e| e.last > last_update);
        match keep_from {
            Some(k) if sym.buffered[k].first > last_update + 1 => {
                // The snapshot predates the buffer: fetch a newer one, keep buffering.
                sym.buffered.drain(..k);
                sym.book = BookSync::Waiting {
                    requested: true,
                    since: Instant::now(),
                };
                out.fetches.push(self.fetch(i, Duration::ZERO));
                return Ok(());
            }
            Some(k) => {
                sym.buffered.drain(..k);
            }
            None => sym.buffered.clear(),
        }
        let id = self.symbols.id(i);
        publisher.begin_book(id, None, true);
        for &(side, price, size) in &self.scratch {
            publisher.level(side, price, size);
        }
        publisher.end_book();
        let sym = &mut self.syms[i];
        let mut last_u = last_update;
        for e in &sym.buffered {
            if e.last <= last_u {
                continue;
            }
            if e.first > last_u + 1 {
                // A hole inside the buffer: impossible on a sane stream; start over.
                tracing::warn!(
                    symbol = self.symbols.native(i),
                    "binance: gap in buffered depth events; resyncing"
                );
                publisher
                    .shared()
                    .stats
                    .gaps
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                sym.buffered.clear();
                sym.levels.clear();
                sym.book = BookSync::Waiting {
                    requested: false,
                    since: Instant::now(),
                };
                return Ok(());
            }
            publisher.begin_book(id, (e.ts != 0).then_some(e.ts), false);
            for &(side, price, size) in &sym.levels[e.from..e.to] {
                publisher.level(side, price, size);
            }
            publisher.end_book();
            last_u = e.last;
        }
        sym.buffered.clear();
        sym.levels.clear();
        sym.book = BookSync::Live { last_u };
        Ok(())
    }
}

impl Protocol for Binance {
    fn venue(&self) -> Venue {
        Venue::Binance
    }

    fn register(
        &mut self,
        registry: &mut SymbolRegistryBuilder,
    ) -> Result<Vec<SymbolId>, FeedError> {
        self.symbols.register(
            Venue::Binance.name(),
            registry,
            self.price_scale,
            self.size_scale,
        )
    }

    fn on_open(&mut self, _publisher: &mut Publisher, out: &mut Outbox) {
        let now = Instant::now();
        for sym in &mut self.syms {
            sym.book = BookSync::Waiting {
                requested: false,
                since: now,
            };
            sym.buffered.clear();
            sym.levels.clear();
        }
        let subscribe = self.subscribe_message();
        out.texts.push(subscribe);
    }

    fn on_close(&mut self, publisher: &mut Publisher) {
        self.candidate = None;
        for i in 0..self.syms.len() {
            if matches!(self.syms[i].book, BookSync::Live { .. }) {
                self.resync(i, publisher);
            }
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
        symbol: &str,
        body: &[u8],
        publisher: &mut Publisher,
        out: &mut Outbox,
    ) -> Result<(), DecodeError> {
        let Some(i) = self.symbols.index(symbol.as_bytes()) else {
            return Ok(());
        };
        if !matches!(self.syms[i].book, BookSync::Waiting { .. }) {
            return Ok(());
        }
        self.apply_snapshot(i, body, publisher, out)
    }

    fn on_rest_failed(&mut self, symbol: &str, out: &mut Outbox) {
        if let Some(i) = self.symbols.index(symbol.as_bytes()) {
            if matches!(self.syms[i].book, BookSync::Waiting { .. }) {
                out.fetches.push(self.fetch(i, SNAPSHOT_RETRY));
            }
        }
    }

    fn syncing(&self) -> bool {
        self.syms
            .iter()
            .any(|s| !matches!(s.book, BookSync::Live { .. }))
    }

    fn subscriptions(&mut self, out: &mut Outbox) {
        let subscribe = self.subscribe_message();
        out.texts.push(subscribe);
    }

    fn begin_candidate(&mut self) {
        self.candidate = Some(vec![false; self.syms.len()]);
    }

    fn on_candidate_text(
        &mut self,
        text: &[u8],
        publisher: &mut Publisher,
        out: &mut Outbox,
    ) -> Result<(), DecodeError> {
        self.from_candidate = true;
        let decoded = self.dispatch(text, publisher, out);
        self.from_candidate = false;
        decoded
    }

    fn candidate_caught_up(&self) -> bool {
        // Every book in sync and continued by the replacement; a book being rebuilt
        // waits (the driver's deadline switches anyway).
        self.candidate.as_ref().is_some_and(|flags| {
            flags
                .iter()
                .zip(&self.syms)
                .all(|(&caught, sym)| caught && matches!(sym.book, BookSync::Live { .. }))
        })
    }

    fn end_candidate(&mut self) {
        self.candidate = None;
    }

    fn on_timer(&mut self, now: Instant, out: &mut Outbox) {
        for i in 0..self.syms.len() {
            if let BookSync::Waiting {
                requested: false,
                since,
            } = self.syms[i].book
            {
                if now.duration_since(since) >= QUIET_SNAPSHOT_AFTER {
                    self.syms[i].book = BookSync::Waiting {
                        requested: true,
                        since,
                    };
                    out.fetches.push(self.fetch(i, Duration::ZERO));
                }
            }
        }
    }
}
