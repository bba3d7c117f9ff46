//! Protocol v1 against a running engine: the subscribe flow, every error code, close
//! codes, number formatting, HTTP endpoints.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test

mod common;

use std::collections::{HashMap, HashSet};

use common::*;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_gets_reply_snapshots_and_only_the_asked_for_flow() {
    let engine = start(test_config(), sim(16, 5000));
    let mut c = Client::connect(engine.local_addr()).await;
    let symbols = ["sim:BTC-USD", "sim:ETH-USD"];
    c.send(json!({"op":"subscribe","id":1,"channels":["ticker","trades","book"],"symbols":symbols,"depth":5})).await;
    let reply = c.recv().await;
    assert_eq!(
        reply,
        json!({"type":"subscribed","id":1,"channels":["ticker","trades","book"],"symbols":symbols})
    );
    // A snapshot per (symbol, channel) where one exists: ticker and book, not trades.
    let mut snapshots = HashSet::new();
    for _ in 0..4 {
        let m = c.recv().await;
        let kind = m["type"].as_str().unwrap().to_owned();
        assert!(
            kind == "ticker" || (kind == "book" && m["snapshot"] == json!(true)),
            "{m}"
        );
        snapshots.insert((m["symbol"].as_str().unwrap().to_owned(), kind));
    }
    assert_eq!(snapshots.len(), 4, "{snapshots:?}");
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut last_trade: HashMap<String, u64> = HashMap::new();
    for _ in 0..3000 {
        let text = c.recv_text().await;
        let m: Value = serde_json::from_str(&text).unwrap();
        let symbol = m["symbol"]
            .as_str()
            .unwrap_or_else(|| panic!("data message has a symbol: {m}"));
        assert!(symbols.contains(&symbol), "only asked-for symbols: {m}");
        let kind = m["type"].as_str().unwrap();
        assert!(
            ["ticker", "trade", "book"].contains(&kind),
            "only data messages: {m}"
        );
        *seen
            .entry(match kind {
                "ticker" => "ticker",
                "trade" => "trade",
                _ => "book",
            })
            .or_default() += 1;
        for field in ["ts", "ingest_ts", "seq"] {
            assert!(m[field].is_u64(), "{field} is an integer: {m}");
        }
        assert!(
            m["ingest_ts"].as_u64().unwrap() > 1_700_000_000_000_000_000,
            "ns since epoch"
        );
        if kind == "trade" {
            let seq = m["seq"].as_u64().unwrap();
            if let Some(prev) = last_trade.insert(symbol.to_owned(), seq) {
                assert_eq!(
                    seq,
                    prev + 1,
                    "trade seqs contiguous for a client that reads"
                );
            }
            assert!(["buy", "sell"].contains(&m["side"].as_str().unwrap()));
            assert!(m["trade_id"].is_string());
        }
        assert_exact_numbers(&text);
        if seen.len() == 3 && seen.values().all(|n| *n > 20) {
            break;
        }
    }
    assert_eq!(
        seen.len(),
        3,
        "a continuous flow of ticker, trade and book: {seen:?}"
    );
    engine.shutdown();
}

/// Every number in the raw text is plain decimal in shortest form.
fn assert_exact_numbers(text: &str) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let starts = (c.is_ascii_digit() || c == b'-')
            && i > 0
            && matches!(bytes[i - 1], b':' | b'[' | b',');
        if !starts {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len()
            && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'.' | b'-' | b'+'))
        {
            i += 1;
        }
        let num = &text[start..i];
        assert!(!num.contains(['e', 'E']), "no exponent: {num} in {text}");
        if num.contains('.') {
            assert!(
                !num.ends_with('0') && !num.ends_with('.'),
                "shortest form: {num} in {text}"
            );
        }
    }
}

async fn assert_usable(c: &mut Client, id: i64) {
    c.send(json!({"op":"ping","id":id})).await;
    let pong = c.recv_until(|m| m["type"] == "pong").await;
    assert_eq!(pong["id"], json!(id));
    assert!(pong["ts"].as_u64().unwrap() > 1_700_000_000_000_000_000);
}

async fn expect_error(c: &mut Client, code: &str) -> Value {
    let e = c.recv_until(|m| m["type"] == "error").await;
    assert_eq!(e["code"], json!(code), "{e}");
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_code_leaves_the_connection_usable() {
    let cfg = tickwire_engine::config::EngineConfig {
        max_subscriptions: 4,
        max_errors_per_10s: 100,
        commands_per_s: 1000,
        ..test_config()
    };
    let engine = start(cfg, sim(4, 200));
    let mut c = Client::connect(engine.local_addr()).await;

    c.send_text("not json").await;
    expect_error(&mut c, "bad_json").await;
    assert_usable(&mut c, 1).await;
    c.send_text("[1,2]").await;
    expect_error(&mut c, "bad_json").await;
    assert_usable(&mut c, 2).await;

    for (bad, id) in [
        (json!({"op":"fly","id":3}), Some(3)),
        (
            json!({"op":"subscribe","id":4,"symbols":["sim:BTC-USD"]}),
            Some(4),
        ),
        (
            json!({"op":"subscribe","id":5,"channels":["candles"],"symbols":["sim:BTC-USD"]}),
            Some(5),
        ),
        (
            json!({"op":"subscribe","id":6,"channels":["book"],"symbols":["sim:BTC-USD"],"depth":0}),
            Some(6),
        ),
        (
            json!({"op":"subscribe","id":7,"channels":["book"],"symbols":["sim:BTC-USD"],"depth":1001}),
            Some(7),
        ),
        (
            json!({"op":"subscribe","id":8,"channels":["ticker"],"symbols":["sim:BTC-USD"],"throttle_ms":60001}),
            Some(8),
        ),
        (
            json!({"op":"subscribe","id":"x","channels":["ticker"],"symbols":["sim:BTC-USD"]}),
            None,
        ),
        (
            json!({"op":"subscribe","id":9,"channels":"ticker","symbols":["sim:BTC-USD"]}),
            Some(9),
        ),
    ] {
        c.send(bad.clone()).await;
        let e = expect_error(&mut c, "bad_request").await;
        match id {
            Some(id) => assert_eq!(e["id"], json!(id), "{bad} -> {e}"),
            None => assert!(e.get("id").is_none(), "{bad} -> {e}"),
        }
        assert_usable(&mut c, 10).await;
    }

    // Unknown symbols are reported; the known ones in the same command still apply.
    c.send(json!({"op":"subscribe","id":11,"channels":["ticker"],"symbols":["sim:NOPE","sim:BTC-USD"]})).await;
    let e = expect_error(&mut c, "unknown_symbol").await;
    assert_eq!(e["id"], json!(11));
    assert!(e["message"].as_str().unwrap().contains("sim:NOPE"));
    let sub = c.recv_until(|m| m["type"] == "subscribed").await;
    assert_eq!(sub["symbols"], json!(["sim:BTC-USD"]));
    c.recv_until(|m| m["type"] == "ticker" && m["symbol"] == "sim:BTC-USD")
        .await;
    assert_usable(&mut c, 12).await;

    // Limit of 4 pairs: holding 1, asking for 4 more passes it; nothing is applied.
    c.send(json!({"op":"subscribe","id":13,"channels":["ticker","trades"],"symbols":["sim:ETH-USD","sim:SOL-USD"]})).await;
    let e = expect_error(&mut c, "too_many_subscriptions").await;
    assert_eq!(e["id"], json!(13));
    assert_usable(&mut c, 14).await;

    c.send(json!({"op":"unsubscribe","id":15,"channels":["ticker"],"symbols":["sim:BTC-USD"]}))
        .await;
    let un = c.recv_until(|m| m["type"] == "unsubscribed").await;
    assert_eq!(
        un,
        json!({"type":"unsubscribed","id":15,"channels":["ticker"],"symbols":["sim:BTC-USD"]})
    );

    c.send(json!({"op":"symbols","id":16})).await;
    let s = c.recv_until(|m| m["type"] == "symbols").await;
    assert_eq!(s["id"], json!(16));
    assert_eq!(s["symbols"].as_array().unwrap().len(), 4);

    engine.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_past_the_rate_limit_get_rate_limited() {
    let engine = start(test_config(), sim(2, 100));
    let mut c = Client::connect(engine.local_addr()).await;
    // 25 commands in a burst against the default limit of 20/s: a few are refused,
    // fewer than the 10 errors that would close the connection.
    for i in 0..25 {
        c.send(json!({"op":"ping","id":100 + i})).await;
    }
    let mut limited = 0;
    let mut pongs = 0;
    while limited + pongs < 25 {
        let m = c
            .recv_until(|m| m["type"] == "pong" || m["type"] == "error")
            .await;
        if m["type"] == "error" {
            assert_eq!(m["code"], json!("rate_limited"));
            assert!(
                m["id"].as_i64().unwrap() >= 100,
                "rate_limited carries the command's id"
            );
            limited += 1;
        } else {
            pongs += 1;
        }
    }
    assert!(
        limited > 0 && pongs >= 20,
        "limited {limited}, pongs {pongs}"
    );
    c.send(json!({"op":"ping","id":1})).await;
    let after = c
        .recv_until(|m| m["type"] == "pong" || m["type"] == "error")
        .await;
    assert!(
        after["type"] == "pong" || after["code"] == "rate_limited",
        "still open: {after}"
    );
    engine.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_errors_close_with_1008() {
    let engine = start(test_config(), sim(2, 100));
    let mut c = Client::connect(engine.local_addr()).await;
    for _ in 0..11 {
        c.send_text("{").await;
    }
    assert_eq!(c.recv_close_code().await, Some(1008));
    engine.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_violations_close_with_their_rfc_codes() {
    let engine = start(test_config(), sim(2, 100));
    let addr = engine.local_addr();

    let (mut raw, head) = RawClient::connect(addr, "/ws").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    raw.send_frame(true, 2, b"\x01\x02").await;
    assert_eq!(raw.read_close_code().await, Some(1003), "binary data");

    let (mut raw, _) = RawClient::connect(addr, "/ws").await;
    raw.send_frame(true, 1, b"{\"op\":\"ping\",\"x\":\"\xff\xfe\"}")
        .await;
    assert_eq!(raw.read_close_code().await, Some(1007), "invalid UTF-8");

    let (mut raw, _) = RawClient::connect(addr, "/ws").await;
    let big = vec![b' '; 64 * 1024 + 1];
    raw.send_frame(true, 1, &big).await;
    assert_eq!(raw.read_close_code().await, Some(1009), "over 64 KiB");

    // Fragmented: reassembled and accepted; over the limit in total: 1009.
    let (mut raw, _) = RawClient::connect(addr, "/ws").await;
    raw.send_frame(false, 1, b"{\"op\":\"pi").await;
    raw.send_frame(true, 0, b"ng\",\"id\":7}").await;
    let pong: serde_json::Value = serde_json::from_str(&raw.read_text().await).unwrap();
    assert_eq!(
        (pong["type"].as_str(), pong["id"].as_i64()),
        (Some("pong"), Some(7))
    );
    raw.send_frame(false, 1, &vec![b' '; 40 * 1024]).await;
    raw.send_frame(true, 0, &vec![b' '; 40 * 1024]).await;
    assert_eq!(
        raw.read_close_code().await,
        Some(1009),
        "fragmented over 64 KiB"
    );

    // A UTF-8 character split across fragments is fine; invalid bytes split are not.
    let (mut raw, _) = RawClient::connect(addr, "/ws").await;
    raw.send_frame(false, 1, b"{\"op\":\"ping\",\"id\":8,\"x\":\"\xc3")
        .await;
    raw.send_frame(true, 0, b"\xa9\"}").await;
    let pong: serde_json::Value = serde_json::from_str(&raw.read_text().await).unwrap();
    assert_eq!(pong["id"].as_i64(), Some(8));
    raw.send_frame(false, 1, b"{\"x\":\"\xc3").await;
    raw.send_frame(true, 0, b"\x28\"}").await;
    assert_eq!(
        raw.read_close_code().await,
        Some(1007),
        "invalid UTF-8 across fragments"
    );

    let (mut raw, _) = RawClient::connect(addr, "/ws").await;
    raw.send_unmasked_frame(1, br#"{"op":"ping"}"#).await;
    assert_eq!(
        raw.read_close_code().await,
        Some(1002),
        "unmasked client frame"
    );

    let (mut raw, _) = RawClient::connect(addr, "/ws").await;
    raw.send_frame(true, 0, b"x").await;
    assert_eq!(
        raw.read_close_code().await,
        Some(1002),
        "continuation without a start"
    );

    let (_, head) = RawClient::connect(addr, "/elsewhere").await;
    assert!(
        head.starts_with("HTTP/1.1 404"),
        "upgrade on another path: {head}"
    );
    let (_, head) = RawClient::connect(addr, "/echo").await;
    assert!(
        head.starts_with("HTTP/1.1 404"),
        "the test-only echo endpoint is off by default: {head}"
    );
    engine.shutdown();
}

/// The test-only `/echo` (what tests/autobahn.py runs the Autobahn cases against): with
/// its flag, text and binary messages come back as they came, fragmented ones whole;
/// everything else is `/ws`'s path (here: the close handshake).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_echo_endpoint_echoes_text_and_binary_when_enabled() {
    let mut cfg = test_config();
    cfg.echo_endpoint = true;
    let engine = start(cfg, sim(2, 100));
    let (mut raw, head) = RawClient::connect(engine.local_addr(), "/echo").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    raw.send_frame(true, 1, b"not a command").await;
    assert_eq!(raw.read_frame().await, (1, b"not a command".to_vec()));
    raw.send_frame(false, 2, b"\xff\x00").await;
    raw.send_frame(true, 9, b"p").await;
    raw.send_frame(true, 0, b"\xfe").await;
    assert_eq!(
        raw.read_frame().await,
        (10, b"p".to_vec()),
        "the pong first"
    );
    assert_eq!(raw.read_frame().await, (2, vec![0xff, 0x00, 0xfe]));
    raw.send_frame(true, 8, &1000u16.to_be_bytes()).await;
    assert_eq!(raw.read_close_code().await, Some(1000));
    engine.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_endpoints_answer() {
    let engine = start(test_config(), sim(3, 500));
    let addr = engine.local_addr();
    let (status, body) = http_get(addr, "/symbols").await;
    assert_eq!(status, 200);
    let symbols: Vec<String> = serde_json::from_str(&body).unwrap();
    assert_eq!(symbols, ["sim:BTC-USD", "sim:ETH-USD", "sim:SOL-USD"]);
    let mut healthy = false;
    for _ in 0..200 {
        let (status, body) = http_get(addr, "/health").await;
        if status == 200 {
            assert_eq!(body.trim(), "ok");
            healthy = true;
            break;
        }
        assert_eq!(status, 503);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(healthy, "the sim feed becomes live");
    let (status, body) = http_get(addr, "/stats").await;
    assert_eq!(status, 200);
    let stats: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stats["feeds"][0]["name"], "sim");
    assert!(stats["clients"]["count"].is_u64());
    let (status, body) = http_get(addr, "/").await;
    assert_eq!(status, 200);
    assert!(body.contains("<html"));
    assert!(body.contains("/dashboard.js") && body.contains("/dashboard.css"));
    let (status, body) = http_get(addr, "/dashboard.js").await;
    assert_eq!(status, 200);
    assert!(body.contains("\"/ws\"") && body.contains("/dashboard-worker.js"));
    let (status, body) = http_get(addr, "/dashboard-worker.js").await;
    assert_eq!(status, 200);
    assert!(body.contains("from \"/tickwire-client.js\""));
    let (status, body) = http_get(addr, "/tickwire-client.js").await;
    assert_eq!(status, 200);
    assert!(body.contains("export class TickwireClient"));
    let (status, body) = http_get(addr, "/dashboard.css").await;
    assert_eq!(status, 200);
    assert!(body.contains("prefers-color-scheme"));
    let (status, _) = http_get(addr, "/nope").await;
    assert_eq!(status, 404);
    engine.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_clients_with_1001() {
    let engine = start(test_config(), sim(2, 100));
    let mut c = Client::connect(engine.local_addr()).await;
    assert_usable(&mut c, 1).await;
    let stopper = std::thread::spawn(move || engine.shutdown());
    assert_eq!(c.recv_close_code().await, Some(1001));
    stopper.join().unwrap();
}
