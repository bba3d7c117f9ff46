//! Server messages as JSON, written by hand: compact, fields in the order of the
//! protocol's examples, prices and sizes with their exact digits ([`crate::fixed::write`]).
//!
//! Every function appends one message to a caller-owned buffer (normally right after
//! [`super::frame::begin`]) and allocates nothing once the buffer has capacity: integers
//! go through `itoa`, symbol names are pre-quoted in [`SymbolInfo::json_name`], and the
//! few free-text strings (error messages, client symbol names, gap reasons) are escaped
//! byte by byte into the buffer.
//!
//! ```
//! use tickwire_engine::protocol::encode;
//! let mut buf = Vec::new();
//! encode::pong(&mut buf, Some(4), 1_763_700_000_000_000_000);
//! assert_eq!(buf, br#"{"type":"pong","id":4,"ts":1763700000000000000}"#);
//! ```

use super::command::{Channel, ChannelSet, ErrorCode};
use crate::fixed;
use crate::state::{Level, Ticker};
use crate::symbol::SymbolInfo;
use crate::tick::Aggressor;

/// `{"type":"ticker",...}`: the latest state of a symbol; unknown fields are `null`.
pub fn ticker(buf: &mut Vec<u8>, sym: &SymbolInfo, t: &Ticker) {
    data_head(buf, b"ticker", sym, t.seq);
    level_fields(buf, sym, b"bid", t.bid);
    level_fields(buf, sym, b"ask", t.ask);
    level_fields(buf, sym, b"last", t.last);
    buf.extend_from_slice(b",\"volume\":");
    fixed::write(buf, t.volume, sym.size_scale);
    times(buf, t.ts, t.ingest_ts);
}

/// `{"type":"trade",...}`: one trade. `side` `null` when the venue does not say;
/// `trade_id` is the venue id as a JSON string, `null` when it is 0 (none given).
#[allow(clippy::too_many_arguments)] // One flat message; a struct would only be unpacked here.
pub fn trade(
    buf: &mut Vec<u8>,
    sym: &SymbolInfo,
    seq: u64,
    price: i64,
    size: i64,
    side: Option<Aggressor>,
    trade_id: u64,
    ts: u64,
    ingest_ts: u64,
) {
    data_head(buf, b"trade", sym, seq);
    buf.extend_from_slice(b",\"price\":");
    fixed::write(buf, price, sym.price_scale);
    buf.extend_from_slice(b",\"size\":");
    fixed::write(buf, size, sym.size_scale);
    buf.extend_from_slice(match side {
        Some(Aggressor::Buy) => b",\"side\":\"buy\"",
        Some(Aggressor::Sell) => b",\"side\":\"sell\"",
        None => b",\"side\":null",
    });
    if trade_id == 0 {
        buf.extend_from_slice(b",\"trade_id\":null");
    } else {
        buf.extend_from_slice(b",\"trade_id\":\"");
        uint(buf, trade_id);
        buf.push(b'"');
    }
    times(buf, ts, ingest_ts);
}

/// `{"type":"book",...}`: a snapshot (`snapshot` true: the top levels, bids highest
/// first, asks lowest first) or an update (changed levels, size 0 removes).
#[allow(clippy::too_many_arguments)] // One flat message; a struct would only be unpacked here.
pub fn book(
    buf: &mut Vec<u8>,
    sym: &SymbolInfo,
    seq: u64,
    snapshot: bool,
    bids: &[Level],
    asks: &[Level],
    ts: u64,
    ingest_ts: u64,
) {
    data_head(buf, b"book", sym, seq);
    buf.extend_from_slice(if snapshot {
        b",\"snapshot\":true,\"bids\":"
    } else {
        b",\"snapshot\":false,\"bids\":"
    });
    levels(buf, sym, bids);
    buf.extend_from_slice(b",\"asks\":");
    levels(buf, sym, asks);
    times(buf, ts, ingest_ts);
}

/// Version 2's book update: as [`book`] with `"snapshot":false`, plus `prev_seq`, the
/// seq of the book state it applies to.
#[allow(clippy::too_many_arguments)] // one field each, as in the message
pub fn book_update_v2(
    buf: &mut Vec<u8>,
    sym: &SymbolInfo,
    seq: u64,
    prev_seq: u64,
    bids: &[Level],
    asks: &[Level],
    ts: u64,
    ingest_ts: u64,
) {
    data_head(buf, b"book", sym, seq);
    buf.extend_from_slice(b",\"prev_seq\":");
    uint(buf, prev_seq);
    buf.extend_from_slice(b",\"snapshot\":false,\"bids\":");
    levels(buf, sym, bids);
    buf.extend_from_slice(b",\"asks\":");
    levels(buf, sym, asks);
    times(buf, ts, ingest_ts);
}

/// `{"type":"gap",...}`: seqs `from_seq..=to_seq` of `channel` were skipped for this
/// client; `reason` is a short token such as `slow_consumer`.
pub fn gap(
    buf: &mut Vec<u8>,
    sym: &SymbolInfo,
    channel: Channel,
    from_seq: u64,
    to_seq: u64,
    reason: &str,
) {
    buf.extend_from_slice(b"{\"type\":\"gap\",\"symbol\":");
    buf.extend_from_slice(&sym.json_name);
    buf.extend_from_slice(b",\"channel\":\"");
    buf.extend_from_slice(channel.as_str().as_bytes());
    buf.extend_from_slice(b"\",\"from_seq\":");
    uint(buf, from_seq);
    buf.extend_from_slice(b",\"to_seq\":");
    uint(buf, to_seq);
    buf.extend_from_slice(b",\"reason\":");
    string(buf, reason);
    buf.push(b'}');
}

/// `{"type":"subscribed",...}`: channels in index order (`ticker`, `trades`, `book`),
/// symbols as given (escaped).
pub fn subscribed(buf: &mut Vec<u8>, id: Option<i64>, channels: ChannelSet, symbols: &[&str]) {
    channels_reply(buf, b"subscribed", id, channels, symbols);
}

/// Version 2's `subscribed`: as [`subscribed`], with the engine's `epoch` and, when the
/// subscribe had `since`, `recovered` per symbol.
pub fn subscribed_v2(
    buf: &mut Vec<u8>,
    id: Option<i64>,
    channels: ChannelSet,
    symbols: &[&str],
    epoch: &str,
    recovered: Option<&[(&str, bool)]>,
) {
    channels_reply(buf, b"subscribed", id, channels, symbols);
    buf.pop();
    buf.extend_from_slice(b",\"epoch\":");
    string(buf, epoch);
    if let Some(recovered) = recovered {
        buf.extend_from_slice(b",\"recovered\":{");
        for (i, (symbol, done)) in recovered.iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            string(buf, symbol);
            buf.extend_from_slice(if *done { b":true" } else { b":false" });
        }
        buf.push(b'}');
    }
    buf.push(b'}');
}

/// `{"type":"unsubscribed",...}`: same shape as [`subscribed`].
pub fn unsubscribed(buf: &mut Vec<u8>, id: Option<i64>, channels: ChannelSet, symbols: &[&str]) {
    channels_reply(buf, b"unsubscribed", id, channels, symbols);
}

/// `{"type":"symbols",...}`: the names of `symbols`, in the order given.
pub fn symbols<'a>(
    buf: &mut Vec<u8>,
    id: Option<i64>,
    symbols: impl IntoIterator<Item = &'a SymbolInfo>,
) {
    reply_head(buf, b"symbols", id);
    buf.extend_from_slice(b",\"symbols\":[");
    for (i, sym) in symbols.into_iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        buf.extend_from_slice(&sym.json_name);
    }
    buf.extend_from_slice(b"]}");
}

/// `{"type":"pong",...}`: the answer to a `ping` command; `ts` in ns since the epoch.
pub fn pong(buf: &mut Vec<u8>, id: Option<i64>, ts: u64) {
    reply_head(buf, b"pong", id);
    buf.extend_from_slice(b",\"ts\":");
    uint(buf, ts);
    buf.push(b'}');
}

/// `{"type":"error",...}`: `message` is escaped as a JSON string.
pub fn error(buf: &mut Vec<u8>, id: Option<i64>, code: ErrorCode, message: &str) {
    reply_head(buf, b"error", id);
    buf.extend_from_slice(b",\"code\":\"");
    buf.extend_from_slice(code.as_str().as_bytes());
    buf.extend_from_slice(b"\",\"message\":");
    string(buf, message);
    buf.push(b'}');
}

/// `{"type":"<ty>","symbol":<name>,"seq":<seq>` of every data message.
fn data_head(buf: &mut Vec<u8>, ty: &[u8], sym: &SymbolInfo, seq: u64) {
    buf.extend_from_slice(b"{\"type\":\"");
    buf.extend_from_slice(ty);
    buf.extend_from_slice(b"\",\"symbol\":");
    buf.extend_from_slice(&sym.json_name);
    buf.extend_from_slice(b",\"seq\":");
    uint(buf, seq);
}

/// `,"ts":<ts>,"ingest_ts":<ingest_ts>}` closing every data message.
fn times(buf: &mut Vec<u8>, ts: u64, ingest_ts: u64) {
    buf.extend_from_slice(b",\"ts\":");
    uint(buf, ts);
    buf.extend_from_slice(b",\"ingest_ts\":");
    uint(buf, ingest_ts);
    buf.push(b'}');
}

/// `,"<name>":<price>,"<name>_size":<size>`, both `null` when unknown.
fn level_fields(buf: &mut Vec<u8>, sym: &SymbolInfo, name: &[u8], level: Option<Level>) {
    buf.extend_from_slice(b",\"");
    buf.extend_from_slice(name);
    buf.extend_from_slice(b"\":");
    match level {
        Some(l) => fixed::write(buf, l.price, sym.price_scale),
        None => buf.extend_from_slice(b"null"),
    }
    buf.extend_from_slice(b",\"");
    buf.extend_from_slice(name);
    buf.extend_from_slice(b"_size\":");
    match level {
        Some(l) => fixed::write(buf, l.size, sym.size_scale),
        None => buf.extend_from_slice(b"null"),
    }
}

/// `[[price,size],...]`.
fn levels(buf: &mut Vec<u8>, sym: &SymbolInfo, levels: &[Level]) {
    buf.push(b'[');
    for (i, l) in levels.iter().enumerate() {
        buf.extend_from_slice(if i == 0 { b"[" } else { b",[" });
        fixed::write(buf, l.price, sym.price_scale);
        buf.push(b',');
        fixed::write(buf, l.size, sym.size_scale);
        buf.push(b']');
    }
    buf.push(b']');
}

/// `{"type":"<ty>"` and `,"id":<id>` when the command had one.
fn reply_head(buf: &mut Vec<u8>, ty: &[u8], id: Option<i64>) {
    buf.extend_from_slice(b"{\"type\":\"");
    buf.extend_from_slice(ty);
    buf.push(b'"');
    if let Some(id) = id {
        buf.extend_from_slice(b",\"id\":");
        buf.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
    }
}

fn channels_reply(
    buf: &mut Vec<u8>,
    ty: &[u8],
    id: Option<i64>,
    channels: ChannelSet,
    symbols: &[&str],
) {
    reply_head(buf, ty, id);
    buf.extend_from_slice(b",\"channels\":[");
    for (i, channel) in channels.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        buf.push(b'"');
        buf.extend_from_slice(channel.as_str().as_bytes());
        buf.push(b'"');
    }
    buf.extend_from_slice(b"],\"symbols\":[");
    for (i, symbol) in symbols.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        string(buf, symbol);
    }
    buf.extend_from_slice(b"]}");
}

fn uint(buf: &mut Vec<u8>, n: u64) {
    buf.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Appends `s` as a JSON string literal (RFC 8259 §7): `"` and `\` escaped, control
/// characters as `\n`-style or `\u00XX` escapes, everything else as UTF-8.
fn string(buf: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    buf.push(b'"');
    let bytes = s.as_bytes();
    let mut clean_from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ],
            _ => continue,
        };
        buf.extend_from_slice(&bytes[clean_from..i]);
        buf.extend_from_slice(escape);
        clean_from = i + 1;
    }
    buf.extend_from_slice(&bytes[clean_from..]);
    buf.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symbol::{SymbolRegistry, SymbolRegistryBuilder};
    use serde_json::{json, Value};

    const TS: u64 = 1_763_700_000_123_456_789;
    const INGEST_TS: u64 = 1_763_700_000_123_460_000;

    fn registry() -> SymbolRegistry {
        let mut b = SymbolRegistryBuilder::new();
        b.add("sim:BTC-USD", 2, 8).unwrap();
        b.add("sim:ETH-USD", 2, 8).unwrap();
        b.add("kraken:BTC/USD", 1, 8).unwrap();
        b.build()
    }

    fn lv(price: i64, size: i64) -> Level {
        Level { price, size }
    }

    fn text(buf: &[u8]) -> &str {
        std::str::from_utf8(buf).unwrap()
    }

    /// Encodes with `f` into a fresh buffer and checks it parses as JSON.
    fn encode(f: impl FnOnce(&mut Vec<u8>)) -> (String, Value) {
        let mut buf = Vec::new();
        f(&mut buf);
        let value: Value = serde_json::from_slice(&buf)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&buf)));
        (String::from_utf8(buf).unwrap(), value)
    }

    #[test]
    fn data_messages_match_the_protocol_examples() {
        let r = registry();
        let btc = r.info(r.lookup("sim:BTC-USD").unwrap());
        let t = Ticker {
            seq: 42,
            bid: Some(lv(6_700_050, 125_000_000)),
            ask: Some(lv(6_700_100, 40_000_000)),
            last: Some(lv(6_700_090, 1_000_000)),
            volume: 153_275_000_000,
            ts: TS,
            ingest_ts: INGEST_TS,
        };
        let (s, _) = encode(|b| ticker(b, btc, &t));
        assert_eq!(
            s,
            r#"{"type":"ticker","symbol":"sim:BTC-USD","seq":42,"bid":67000.5,"bid_size":1.25,"ask":67001,"ask_size":0.4,"last":67000.9,"last_size":0.01,"volume":1532.75,"ts":1763700000123456789,"ingest_ts":1763700000123460000}"#
        );

        let (s, _) = encode(|b| {
            trade(
                b,
                btc,
                17,
                6_700_090,
                1_000_000,
                Some(Aggressor::Buy),
                8812,
                TS,
                INGEST_TS,
            )
        });
        assert_eq!(
            s,
            r#"{"type":"trade","symbol":"sim:BTC-USD","seq":17,"price":67000.9,"size":0.01,"side":"buy","trade_id":"8812","ts":1763700000123456789,"ingest_ts":1763700000123460000}"#
        );

        let (s, _) = encode(|b| {
            book(
                b,
                btc,
                901,
                true,
                &[lv(6_700_050, 125_000_000), lv(6_700_000, 300_000_000)],
                &[lv(6_700_100, 40_000_000)],
                TS,
                INGEST_TS,
            )
        });
        assert_eq!(
            s,
            r#"{"type":"book","symbol":"sim:BTC-USD","seq":901,"snapshot":true,"bids":[[67000.5,1.25],[67000,3]],"asks":[[67001,0.4]],"ts":1763700000123456789,"ingest_ts":1763700000123460000}"#
        );
        let (s, _) = encode(|b| {
            book(
                b,
                btc,
                902,
                false,
                &[lv(6_700_000, 0)],
                &[lv(6_700_150, 200_000_000)],
                1_763_700_000_123_999_000,
                1_763_700_000_124_000_000,
            )
        });
        assert_eq!(
            s,
            r#"{"type":"book","symbol":"sim:BTC-USD","seq":902,"snapshot":false,"bids":[[67000,0]],"asks":[[67001.5,2]],"ts":1763700000123999000,"ingest_ts":1763700000124000000}"#
        );

        let (s, _) = encode(|b| gap(b, btc, Channel::Trades, 18, 240, "slow_consumer"));
        assert_eq!(
            s,
            r#"{"type":"gap","symbol":"sim:BTC-USD","channel":"trades","from_seq":18,"to_seq":240,"reason":"slow_consumer"}"#
        );
    }

    #[test]
    fn replies_match_the_protocol_examples() {
        let r = registry();
        let both = ["sim:BTC-USD", "sim:ETH-USD"];
        let ticker_book: ChannelSet = [Channel::Book, Channel::Ticker].into_iter().collect();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                build(|b| subscribed(b, Some(1), ticker_book, &both)),
                r#"{"type":"subscribed","id":1,"channels":["ticker","book"],"symbols":["sim:BTC-USD","sim:ETH-USD"]}"#,
            ),
            (
                build(|b| unsubscribed(b, Some(2), Channel::Book.into(), &["sim:ETH-USD"])),
                r#"{"type":"unsubscribed","id":2,"channels":["book"],"symbols":["sim:ETH-USD"]}"#,
            ),
            (
                build(|b| symbols(b, Some(3), r.iter().take(2))),
                r#"{"type":"symbols","id":3,"symbols":["sim:BTC-USD","sim:ETH-USD"]}"#,
            ),
            (
                build(|b| pong(b, Some(4), 1_763_700_000_000_000_000)),
                r#"{"type":"pong","id":4,"ts":1763700000000000000}"#,
            ),
            (
                build(|b| {
                    error(
                        b,
                        Some(1),
                        ErrorCode::UnknownSymbol,
                        "no such symbol: sim:NOPE",
                    )
                }),
                r#"{"type":"error","id":1,"code":"unknown_symbol","message":"no such symbol: sim:NOPE"}"#,
            ),
            // Without an id there is no "id" field at all.
            (build(|b| pong(b, None, 5)), r#"{"type":"pong","ts":5}"#),
            (
                build(|b| subscribed(b, None, ChannelSet::ALL, &["sim:BTC-USD"])),
                r#"{"type":"subscribed","channels":["ticker","trades","book"],"symbols":["sim:BTC-USD"]}"#,
            ),
            (
                build(|b| symbols(b, None, r.iter())),
                r#"{"type":"symbols","symbols":["sim:BTC-USD","sim:ETH-USD","kraken:BTC/USD"]}"#,
            ),
            (
                build(|b| error(b, Some(-9), ErrorCode::RateLimited, "")),
                r#"{"type":"error","id":-9,"code":"rate_limited","message":""}"#,
            ),
        ];
        for (got, want) in cases {
            assert_eq!(text(&got), want);
            serde_json::from_slice::<Value>(&got).unwrap();
        }
    }

    fn build(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut buf = Vec::new();
        f(&mut buf);
        buf
    }

    #[test]
    fn numbers_are_exact_and_never_exponents() {
        let mut b = SymbolRegistryBuilder::new();
        let id = b.add("sim:TINY", 8, 8).unwrap();
        let r = b.build();
        let tiny = r.info(id);
        let (s, v) = encode(|b| {
            book(
                b,
                tiny,
                u64::MAX,
                true,
                &[lv(6_700_050_000_000, 1), lv(6_700_100_000_000, 100_000_000)],
                &[lv(i64::MAX, 0), lv(-1, 10)],
                0,
                u64::MAX,
            )
        });
        assert!(s.contains(
            r#""bids":[[67000.5,0.00000001],[67001,1]],"asks":[[92233720368.54775807,0],[-0.00000001,0.0000001]]"#
        ));
        let exponent = s
            .as_bytes()
            .windows(2)
            .any(|w| w[0].is_ascii_digit() && matches!(w[1], b'e' | b'E'));
        assert!(!exponent, "{s}");
        assert_eq!(v["seq"], json!(u64::MAX));
        assert_eq!(v["ingest_ts"], json!(u64::MAX));
        assert_eq!(v["ts"], json!(0));
        assert_eq!(v["snapshot"], json!(true));
        assert_eq!(v["bids"][0][1].as_f64(), Some(1e-8));
    }

    #[test]
    fn ticker_fields_unknown_are_null() {
        let r = registry();
        let kraken = r.info(r.lookup("kraken:BTC/USD").unwrap());
        let t = Ticker {
            seq: 1,
            bid: Some(lv(670_005, 1)),
            ask: None,
            last: None,
            volume: 0,
            ts: 10,
            ingest_ts: 11,
        };
        let (s, v) = encode(|b| ticker(b, kraken, &t));
        assert_eq!(
            s,
            r#"{"type":"ticker","symbol":"kraken:BTC/USD","seq":1,"bid":67000.5,"bid_size":0.00000001,"ask":null,"ask_size":null,"last":null,"last_size":null,"volume":0,"ts":10,"ingest_ts":11}"#
        );
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 12);
        assert_eq!(v["symbol"], "kraken:BTC/USD");
    }

    #[test]
    fn trade_side_and_id_variants() {
        let r = registry();
        let btc = r.info(r.lookup("sim:BTC-USD").unwrap());
        for (side, trade_id, want_side, want_id) in [
            (Some(Aggressor::Buy), 1, json!("buy"), json!("1")),
            (
                Some(Aggressor::Sell),
                u64::MAX,
                json!("sell"),
                json!("18446744073709551615"),
            ),
            (None, 0, Value::Null, Value::Null),
        ] {
            let (s, v) = encode(|b| trade(b, btc, 3, 100, 5, side, trade_id, 7, 8));
            assert!(s.contains(r#""price":1,"size":0.00000005,"#), "{s}");
            assert_eq!(v["type"], "trade");
            assert_eq!(v["symbol"], "sim:BTC-USD");
            assert_eq!(v["seq"], 3);
            assert_eq!(v["price"].as_f64(), Some(1.0));
            assert_eq!(v["size"].as_f64(), Some(5e-8));
            assert_eq!(v["side"], want_side);
            assert_eq!(v["trade_id"], want_id);
            assert_eq!(
                (v["ts"].as_u64(), v["ingest_ts"].as_u64()),
                (Some(7), Some(8))
            );
            assert_eq!(v.as_object().unwrap().len(), 9);
        }
    }

    #[test]
    fn free_text_is_escaped() {
        let nasty =
            "quote \" backslash \\ newline \n tab \t nul \0 bell \u{7} del \u{7f} é 🚀 \u{2028}";
        let (s, v) = encode(|b| error(b, None, ErrorCode::BadRequest, nasty));
        assert_eq!(v["message"], nasty);
        assert_eq!(v["code"], "bad_request");
        assert!(v.get("id").is_none());
        assert!(s.contains(r#"\u0000 bell \u0007"#), "{s}");
        // Same bytes as serde_json, which escapes the same set the same way.
        let mut ours = Vec::new();
        for s in [nasty, "", "plain", "\u{1f}\u{8}\u{c}\r"] {
            ours.clear();
            string(&mut ours, s);
            assert_eq!(text(&ours), serde_json::to_string(s).unwrap());
        }

        let (_, v) = encode(|b| subscribed(b, Some(0), Channel::Trades.into(), &["a\"b", "c\\"]));
        assert_eq!(
            v,
            json!({"type":"subscribed","id":0,"channels":["trades"],"symbols":["a\"b","c\\"]})
        );

        let r = registry();
        let (_, v) = encode(|b| {
            gap(
                b,
                r.info(r.lookup("sim:ETH-USD").unwrap()),
                Channel::Book,
                1,
                2,
                "x\"y",
            )
        });
        assert_eq!(v["reason"], "x\"y");
        assert_eq!(v["channel"], "book");
    }

    #[test]
    fn encoders_append_and_reuse_capacity() {
        let r = registry();
        let btc = r.info(r.lookup("sim:BTC-USD").unwrap());
        let mut buf = b"prefix".to_vec();
        pong(&mut buf, None, 1);
        assert_eq!(text(&buf), r#"prefix{"type":"pong","ts":1}"#);

        buf.reserve(4096);
        let capacity = buf.capacity();
        let pointer = buf.as_ptr();
        for seq in 0..100 {
            buf.clear();
            trade(
                &mut buf,
                btc,
                seq,
                i64::MAX,
                i64::MIN,
                None,
                u64::MAX,
                u64::MAX,
                u64::MAX,
            );
            buf.clear();
            book(
                &mut buf,
                btc,
                seq,
                false,
                &[lv(1, 2); 20],
                &[lv(3, 4); 20],
                5,
                6,
            );
        }
        assert_eq!((buf.capacity(), buf.as_ptr()), (capacity, pointer));
    }
}
