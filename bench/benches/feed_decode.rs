//! Venue message decode cost, per message, per venue (`docs/benchmarks.md`):
//!
//! - `<venue>_<kind>/tickwire`: the feed's protocol on the raw frame: scan in place,
//!   prices and sizes to fixed point, trade-id / sequence / checksum checks, and the ticks
//!   published into a ring (`Publisher::flush` included). Everything a live frame costs
//!   after the socket read.
//! - `<venue>_<kind>/tickwire_scan`: the same scanner and decimal parser reading the same
//!   fields as `serde_json_typed` (no checks, nothing published): the decoder alone.
//! - `<venue>_<kind>/serde_json_typed`: `serde_json` into a borrowed typed struct, then the
//!   same fixed-point conversion of prices and sizes (Kraken's numbers go through `f64`,
//!   which loses the digits its checksum needs); nothing published.
//! - `<venue>_<kind>/serde_json_value`: `serde_json::Value`, no conversion.
//!
//! Kinds: `trade` (one trade) and `book` (a diff of three levels; Kraken's with its CRC32).
//! Each stream is pre-built with distinct trade ids and sequence numbers, and replayed
//! into a fresh protocol whenever it runs out, outside the timed part.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_main, Criterion, Throughput};
use serde::Deserialize;
use tickwire_engine::feed::Publisher;
use tickwire_engine::fixed;
use tickwire_engine::ring;
use tickwire_engine::symbol::SymbolRegistryBuilder;
use tickwire_feeds::venue::{self, Outbox, Protocol};
use tickwire_feeds::{decimal, json};
use tickwire_feeds::{Venue, VenueConfig};

const STREAM: u64 = 20_000;

fn kraken_crc(asks: &[(&str, &str)], bids: &[(&str, &str)]) -> u32 {
    let mut s = String::new();
    for side in [asks, bids] {
        for (p, q) in side {
            for t in [p, q] {
                s.push_str(t.replace('.', "").trim_start_matches('0'));
            }
        }
    }
    crc32fast::hash(s.as_bytes())
}

struct Case {
    venue: Venue,
    symbol: &'static str,
    kind: &'static str,
    /// Sent before timing (snapshots).
    setup: Vec<String>,
    rest: Option<&'static str>,
    stream: Vec<String>,
}

fn cases() -> Vec<Case> {
    let n = STREAM;
    let binance_trade = (0..n).map(|i| format!(r#"{{"stream":"btcusdt@trade","data":{{"e":"trade","E":1700000000100,"s":"BTCUSDT","t":{},"p":"67000.10000000","q":"0.01250000","T":1700000000101,"m":{}}}}}"#, 1_000_000 + i, i % 2 == 0)).collect();
    let binance_book = (0..n)
        .map(|i| {
            let q = if i % 2 == 0 { "1.50000000" } else { "2.00000000" };
            format!(r#"{{"stream":"btcusdt@depth@100ms","data":{{"e":"depthUpdate","E":1700000000200,"s":"BTCUSDT","U":{u},"u":{u},"b":[["67000.10000000","{q}"],["66999.00000000","1.00000000"]],"a":[["67001.00000000","{q}"]]}}}}"#, u = 1000 + i)
        })
        .collect();
    let coinbase_trade = (0..n).map(|i| format!(r#"{{"type":"match","trade_id":{},"maker_order_id":"ac928c66-ca53-498f-9c13-a110027a60e8","taker_order_id":"132fb6ae-456b-4654-b4e0-d681ac05cea1","side":"sell","size":"0.01250000","price":"67000.10","product_id":"BTC-USD","sequence":{},"time":"2025-03-04T05:06:07.123456Z"}}"#, 1 + i, 50 + i)).collect();
    let coinbase_book = (0..n)
        .map(|i| {
            let q = if i % 2 == 0 { "1.5" } else { "2.0" };
            format!(r#"{{"type":"l2update","product_id":"BTC-USD","changes":[["buy","67000.10","{q}"],["buy","66999.00","1.0"],["sell","67001.00","{q}"]],"time":"2025-03-04T05:06:07.200000Z"}}"#)
        })
        .collect();
    let kraken_trade = (0..n).map(|i| format!(r#"{{"channel":"trade","type":"update","data":[{{"symbol":"BTC/USD","side":"buy","price":67000.1,"qty":0.01250000,"ord_type":"limit","trade_id":{},"timestamp":"2026-01-02T03:04:05.000001Z"}}]}}"#, 1 + i)).collect();
    let asks = [("67001.0", "1.00000000")];
    let bids_a = [("67000.1", "1.50000000"), ("66999.0", "1.00000000")];
    let bids_b = [("67000.1", "2.00000000"), ("66999.0", "1.00000000")];
    let kraken_book = (0..n)
        .map(|i| {
            let (q, bids) = if i % 2 == 0 { ("2.00000000", &bids_b) } else { ("1.50000000", &bids_a) };
            format!(r#"{{"channel":"book","type":"update","data":[{{"symbol":"BTC/USD","bids":[{{"price":67000.1,"qty":{q}}},{{"price":66999.0,"qty":1.00000000}}],"asks":[{{"price":67001.0,"qty":1.00000000}}],"checksum":{},"timestamp":"2026-01-02T03:04:05.123456Z"}}]}}"#, kraken_crc(&asks, bids))
        })
        .collect();
    let kraken_snapshot = format!(
        r#"{{"channel":"book","type":"snapshot","data":[{{"symbol":"BTC/USD","bids":[{{"price":67000.1,"qty":1.50000000}},{{"price":66999.0,"qty":1.00000000}}],"asks":[{{"price":67001.0,"qty":1.00000000}}],"checksum":{}}}]}}"#,
        kraken_crc(&asks, &bids_a)
    );
    vec![
        Case { venue: Venue::Binance, symbol: "BTCUSDT", kind: "trade", setup: vec![], rest: None, stream: binance_trade },
        Case { venue: Venue::Binance, symbol: "BTCUSDT", kind: "book", setup: vec![], rest: Some(r#"{"lastUpdateId":999,"bids":[["67000.10000000","1.00000000"]],"asks":[["67001.00000000","1.00000000"]]}"#), stream: binance_book },
        Case { venue: Venue::Coinbase, symbol: "BTC-USD", kind: "trade", setup: vec![], rest: None, stream: coinbase_trade },
        Case { venue: Venue::Coinbase, symbol: "BTC-USD", kind: "book", setup: vec![r#"{"type":"snapshot","product_id":"BTC-USD","bids":[["67000.10","1.0"],["66999.00","1.0"]],"asks":[["67001.00","1.0"]]}"#.into()], rest: None, stream: coinbase_book },
        Case { venue: Venue::Kraken, symbol: "BTC/USD", kind: "trade", setup: vec![], rest: None, stream: kraken_trade },
        Case { venue: Venue::Kraken, symbol: "BTC/USD", kind: "book", setup: vec![kraken_snapshot], rest: None, stream: kraken_book },
    ]
}

fn fresh(case: &Case) -> (Box<dyn Protocol>, Publisher, Outbox) {
    let cfg = VenueConfig::new(case.venue, vec![case.symbol.to_owned()]);
    let mut protocol = venue::protocol(&cfg);
    let mut registry = SymbolRegistryBuilder::new();
    let ids = protocol.register(&mut registry).expect("register");
    let mut publisher = Publisher::new(
        case.venue.name(),
        ids,
        registry.build().len(),
        ring::ring(1 << 12).0,
    );
    let mut out = Outbox::default();
    protocol.on_open(&mut publisher, &mut out);
    if let Some(body) = case.rest {
        let _ = protocol.on_rest(case.symbol, body.as_bytes(), &mut publisher, &mut out);
    }
    for m in &case.setup {
        let _ = protocol.on_text(m.as_bytes(), &mut publisher, &mut out);
    }
    publisher.flush();
    (protocol, publisher, out)
}

// Baselines: serde_json into typed, borrowed structs (the field names are the venues').
#[allow(non_snake_case, dead_code)]
#[derive(Deserialize)]
struct BinanceTrade<'a> {
    e: &'a str,
    E: u64,
    s: &'a str,
    t: u64,
    p: &'a str,
    q: &'a str,
    T: u64,
    m: bool,
}
#[allow(non_snake_case, dead_code)]
#[derive(Deserialize)]
struct BinanceDepth<'a> {
    e: &'a str,
    E: u64,
    s: &'a str,
    U: u64,
    u: u64,
    #[serde(borrow)]
    b: Vec<(&'a str, &'a str)>,
    #[serde(borrow)]
    a: Vec<(&'a str, &'a str)>,
}
#[derive(Deserialize)]
struct Combined<T> {
    #[allow(dead_code)]
    stream: String,
    data: T,
}
#[allow(dead_code)]
#[derive(Deserialize)]
struct CoinbaseMatch<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    trade_id: u64,
    side: &'a str,
    size: &'a str,
    price: &'a str,
    product_id: &'a str,
    time: &'a str,
}
#[allow(dead_code)]
#[derive(Deserialize)]
struct CoinbaseL2<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    product_id: &'a str,
    #[serde(borrow)]
    changes: Vec<(&'a str, &'a str, &'a str)>,
    time: &'a str,
}
#[derive(Deserialize)]
struct KrakenMsg<T> {
    #[allow(dead_code)]
    channel: String,
    data: Vec<T>,
}
#[allow(dead_code)]
#[derive(Deserialize)]
struct KrakenTrade<'a> {
    symbol: &'a str,
    side: &'a str,
    price: f64,
    qty: f64,
    trade_id: u64,
    timestamp: &'a str,
}
#[derive(Deserialize)]
struct KrakenLevel {
    price: f64,
    qty: f64,
}
#[allow(dead_code)]
#[derive(Deserialize)]
struct KrakenBook<'a> {
    symbol: &'a str,
    bids: Vec<KrakenLevel>,
    asks: Vec<KrakenLevel>,
    checksum: u32,
}

fn fx(text: &str) -> i64 {
    fixed::parse(text.as_bytes(), 8).unwrap_or(0)
}

fn typed(case: &Case, m: &str) -> i64 {
    match (case.venue, case.kind) {
        (Venue::Binance, "trade") => {
            let v: Combined<BinanceTrade<'_>> = serde_json::from_str(m).unwrap();
            fx(v.data.p) + fx(v.data.q)
        }
        (Venue::Binance, _) => {
            let v: Combined<BinanceDepth<'_>> = serde_json::from_str(m).unwrap();
            v.data
                .b
                .iter()
                .chain(&v.data.a)
                .map(|(p, q)| fx(p) + fx(q))
                .sum()
        }
        (Venue::Coinbase, "trade") => {
            let v: CoinbaseMatch<'_> = serde_json::from_str(m).unwrap();
            fx(v.price) + fx(v.size)
        }
        (Venue::Coinbase, _) => {
            let v: CoinbaseL2<'_> = serde_json::from_str(m).unwrap();
            v.changes.iter().map(|(_, p, q)| fx(p) + fx(q)).sum()
        }
        (Venue::Kraken, "trade") => {
            let v: KrakenMsg<KrakenTrade<'_>> = serde_json::from_str(m).unwrap();
            v.data
                .iter()
                .map(|t| (t.price * 1e8) as i64 + (t.qty * 1e8) as i64)
                .sum()
        }
        (Venue::Kraken, _) => {
            let v: KrakenMsg<KrakenBook<'_>> = serde_json::from_str(m).unwrap();
            v.data
                .iter()
                .flat_map(|b| b.bids.iter().chain(&b.asks))
                .map(|l| (l.price * 1e8) as i64 + (l.qty * 1e8) as i64)
                .sum()
        }
    }
}

/// A price or size text at 8 decimals through the feeds' decimal parser.
fn dx(v: Option<json::Value<'_>>) -> i64 {
    v.and_then(|v| v.text())
        .and_then(|t| decimal::parse(t, 8).ok())
        .map_or(0, |d| d.mantissa)
}

/// Sum of `[price, size, ...]` arrays' first two (or, with `skip`, second and third) texts.
fn levels_sum(list: Option<json::Value<'_>>, skip: usize) -> i64 {
    let mut sum = 0;
    for level in list.and_then(|l| l.array()).into_iter().flatten().flatten() {
        let mut it = level.array().into_iter().flatten().flatten().skip(skip);
        sum += dx(it.next()) + dx(it.next());
    }
    sum
}

/// A field of an object, errors as absent.
fn field<'a>(o: &json::Object<'a>, k: &[u8]) -> Option<json::Value<'a>> {
    o.get(k).ok().flatten()
}

/// The fields `serde_json_typed` reads, by the feeds' scanner.
fn scan(case: &Case, m: &str) -> i64 {
    let Ok(root) = json::parse(m.as_bytes()) else {
        return 0;
    };
    let Some(obj) = root.object() else { return 0 };
    match case.venue {
        Venue::Binance => {
            let Some(data) = field(&obj, b"data").and_then(|d| d.object()) else {
                return 0;
            };
            let mut sum = 0;
            for f in data.flatten() {
                match f.0 {
                    b"p" | b"q" => sum += dx(Some(f.1)),
                    b"t" | b"T" | b"E" | b"U" | b"u" => sum += f.1.u64().unwrap_or(0) as i64 & 1,
                    b"b" | b"a" => sum += levels_sum(Some(f.1), 0),
                    _ => {}
                }
            }
            sum
        }
        Venue::Coinbase => {
            let mut sum = 0;
            for f in obj.flatten() {
                match f.0 {
                    b"price" | b"size" => sum += dx(Some(f.1)),
                    b"trade_id" => sum += f.1.u64().unwrap_or(0) as i64 & 1,
                    b"changes" => sum += levels_sum(Some(f.1), 1),
                    _ => {}
                }
            }
            sum
        }
        Venue::Kraken => {
            let mut sum = 0;
            for entry in field(&obj, b"data")
                .and_then(|d| d.array())
                .into_iter()
                .flatten()
                .flatten()
            {
                for f in entry.object().into_iter().flatten().flatten() {
                    match f.0 {
                        b"price" | b"qty" => sum += dx(Some(f.1)),
                        b"trade_id" | b"checksum" => sum += f.1.u64().unwrap_or(0) as i64 & 1,
                        b"bids" | b"asks" => {
                            for level in f.1.array().into_iter().flatten().flatten() {
                                for lf in level.object().into_iter().flatten().flatten() {
                                    sum += dx(Some(lf.1));
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            sum
        }
    }
}

fn feed_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("feed_decode");
    group
        .throughput(Throughput::Elements(1))
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    for case in cases() {
        let name = format!("{}_{}", case.venue.name(), case.kind);
        group.bench_function(format!("{name}/tickwire"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut done = 0u64;
                while done < iters {
                    let (mut protocol, mut publisher, mut out) = fresh(&case);
                    let n = (iters - done).min(case.stream.len() as u64) as usize;
                    let start = Instant::now();
                    for m in &case.stream[..n] {
                        publisher.begin_message();
                        let r = protocol.on_text(black_box(m.as_bytes()), &mut publisher, &mut out);
                        black_box(r.is_ok());
                        publisher.flush();
                    }
                    total += start.elapsed();
                    done += n as u64;
                }
                total
            })
        });
        let mut i = 0;
        group.bench_function(format!("{name}/tickwire_scan"), |b| {
            b.iter(|| {
                i = (i + 1) % case.stream.len();
                black_box(scan(&case, black_box(&case.stream[i])))
            })
        });
        group.bench_function(format!("{name}/serde_json_typed"), |b| {
            b.iter(|| {
                i = (i + 1) % case.stream.len();
                black_box(typed(&case, black_box(&case.stream[i])))
            })
        });
        group.bench_function(format!("{name}/serde_json_value"), |b| {
            b.iter(|| {
                i = (i + 1) % case.stream.len();
                let v: serde_json::Value =
                    serde_json::from_str(black_box(&case.stream[i])).unwrap();
                black_box(v.is_object())
            })
        });
    }
    group.finish();
}

mod harness {
    //! criterion's generated entry points (outside the documented items).
    #![allow(missing_docs)]
    criterion::criterion_group!(benches, super::feed_decode);
}

criterion_main!(harness::benches);
