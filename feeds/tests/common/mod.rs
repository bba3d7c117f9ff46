//! What the venue end-to-end tests share: an engine on 127.0.0.1 with one feed, a
//! WebSocket client of it that keeps the market it was told (books, trades, gaps,
//! tickers, with the exact number texts), and waiting helpers with deadlines.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use tickwire_engine::config::EngineConfig;
use tickwire_engine::feed::Feed;
use tickwire_engine::server::{self, EngineHandle};
use tickwire_feeds::json::{self, Value};
use tickwire_feeds::venue::conn::{self, Msg, Stream, Url, WsStream};

/// How long any awaited condition may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// An engine serving `feed` on a free port, one worker.
pub fn engine(feed: Box<dyn Feed>) -> EngineHandle {
    let cfg = EngineConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        workers: 1,
        ..EngineConfig::default()
    };
    server::start(cfg, vec![feed]).expect("engine starts")
}

/// One trade as a client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trade {
    pub symbol: String,
    pub seq: u64,
    pub price: String,
    pub size: String,
    pub side: String,
    pub trade_id: String,
}

/// A `gap` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    pub symbol: String,
    pub channel: String,
    pub from_seq: u64,
    pub to_seq: u64,
}

/// A book as the client holds it: price text → size text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Book {
    pub seq: u64,
    pub bids: BTreeMap<String, String>,
    pub asks: BTreeMap<String, String>,
    pub snapshots: u64,
    pub updates: u64,
}

/// Everything the client has been told.
#[derive(Debug, Default)]
pub struct Market {
    pub trades: Vec<Trade>,
    pub gaps: Vec<Gap>,
    pub books: HashMap<String, Book>,
    /// Latest ticker per symbol: field → raw text.
    pub tickers: HashMap<String, HashMap<String, String>>,
    pub messages: u64,
    /// Every message, without `ingest_ts` (and without `ts` except on trades, where it
    /// is the venue's time): what two runs of the same session must agree on.
    pub log: Vec<String>,
}

impl Market {
    pub fn trades_of(&self, symbol: &str) -> Vec<&Trade> {
        self.trades.iter().filter(|t| t.symbol == symbol).collect()
    }

    pub fn book(&self, symbol: &str) -> Book {
        self.books.get(symbol).cloned().unwrap_or_default()
    }

    pub fn ticker(&self, symbol: &str, field: &str) -> Option<&str> {
        self.tickers.get(symbol)?.get(field).map(String::as_str)
    }
}

fn raw(v: &Value<'_>) -> String {
    String::from_utf8_lossy(v.raw).into_owned()
}

/// A WebSocket client of the engine.
pub struct Client {
    ws: WsStream<Stream>,
    pub market: Market,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let url = Url::parse(&format!("ws://{addr}/ws")).unwrap();
        let ws = conn::connect_ws(&url, DEADLINE, 1 << 24)
            .await
            .expect("connect to the engine");
        Client {
            ws,
            market: Market::default(),
        }
    }

    /// Subscribes to every channel of `symbols` (depth 100) and waits for `subscribed`.
    pub async fn subscribe_all(&mut self, symbols: &[&str]) {
        let list: Vec<String> = symbols.iter().map(|s| format!("\"{s}\"")).collect();
        let cmd = format!(
            "{{\"op\":\"subscribe\",\"id\":1,\"channels\":[\"ticker\",\"trades\",\"book\"],\"symbols\":[{}],\"depth\":100}}",
            list.join(",")
        );
        self.ws.send_text(cmd.as_bytes()).await.unwrap();
        let mut subscribed = false;
        self.wait_until("subscribed", |_| false, Some(&mut subscribed))
            .await;
    }

    /// Reads messages into the market until `done` holds (checked after each message).
    pub async fn wait(&mut self, what: &str, mut done: impl FnMut(&Market) -> bool) {
        if done(&self.market) {
            return;
        }
        self.wait_until(what, |m| done(m), None).await
    }

    async fn wait_until(
        &mut self,
        what: &str,
        mut done: impl FnMut(&Market) -> bool,
        mut subscribed: Option<&mut bool>,
    ) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "timed out waiting for {what}; market: trades {:?} gaps {:?} books {:?} tickers {:?}",
                        self.market.trades, self.market.gaps, self.market.books, self.market.tickers
                    )
                })
                .expect("engine connection");
            match msg {
                Msg::Text => {
                    let text = self.ws.payload().to_vec();
                    let kind = self.apply(&text);
                    if kind == "subscribed" {
                        if let Some(flag) = subscribed.as_deref_mut() {
                            *flag = true;
                            return;
                        }
                    }
                    if done(&self.market) {
                        return;
                    }
                }
                Msg::Ping => self.ws.pong().await.unwrap(),
                Msg::Close(code) => panic!("engine closed the connection: {code:?}"),
                _ => {}
            }
        }
    }

    /// Applies one server message; returns its type.
    fn apply(&mut self, text: &[u8]) -> String {
        let root = json::parse(text).expect("engine sends JSON");
        let obj = root.object().expect("an object");
        let get = |k: &str| obj.get(k.as_bytes()).unwrap();
        let kind = raw(&get("type").expect("type"));
        let m = &mut self.market;
        m.messages += 1;
        let mut v: serde_json::Value = serde_json::from_slice(text).expect("JSON");
        if let Some(o) = v.as_object_mut() {
            o.remove("ingest_ts");
            if o.get("type").and_then(|t| t.as_str()) != Some("trade") {
                o.remove("ts");
            }
        }
        m.log.push(v.to_string());
        let symbol = get("symbol").map(|v| raw(&v)).unwrap_or_default();
        match kind.as_str() {
            "trade" => m.trades.push(Trade {
                symbol,
                seq: get("seq").and_then(|v| v.u64()).unwrap(),
                price: raw(&get("price").unwrap()),
                size: raw(&get("size").unwrap()),
                side: raw(&get("side").unwrap()),
                trade_id: raw(&get("trade_id").unwrap()),
            }),
            "gap" => m.gaps.push(Gap {
                symbol,
                channel: raw(&get("channel").unwrap()),
                from_seq: get("from_seq").and_then(|v| v.u64()).unwrap(),
                to_seq: get("to_seq").and_then(|v| v.u64()).unwrap(),
            }),
            "book" => {
                let book = m.books.entry(symbol).or_default();
                let snapshot = get("snapshot").and_then(|v| v.bool()).unwrap();
                if snapshot {
                    book.bids.clear();
                    book.asks.clear();
                    book.snapshots += 1;
                } else {
                    book.updates += 1;
                }
                book.seq = get("seq").and_then(|v| v.u64()).unwrap();
                for (side, levels) in [("bids", &mut book.bids), ("asks", &mut book.asks)] {
                    for level in get(side).unwrap().array().unwrap() {
                        let mut pair = level.unwrap().array().unwrap();
                        let price = raw(&pair.next().unwrap().unwrap());
                        let size = raw(&pair.next().unwrap().unwrap());
                        if size == "0" {
                            levels.remove(&price);
                        } else {
                            levels.insert(price, size);
                        }
                    }
                }
            }
            "ticker" => {
                let fields = obj
                    .clone()
                    .map(|f| {
                        let (k, v) = f.unwrap();
                        (String::from_utf8_lossy(k).into_owned(), raw(&v))
                    })
                    .collect();
                m.tickers.insert(symbol, fields);
            }
            _ => {}
        }
        kind
    }
}

/// A book from `[price, size]` text pairs.
pub fn levels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(p, s)| (p.to_string(), s.to_string()))
        .collect()
}

/// Waits for `cond` on the engine side (feed counters), polling every millisecond.
pub async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The shared fixtures folder, when present (`../shared/fixtures` from the repository root).
pub fn shared_fixtures() -> Option<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = root.join("../shared/fixtures");
    dir.join("README.md").exists().then_some(dir)
}
