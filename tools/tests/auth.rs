//! Token authentication (HS256 JWT): a missing, malformed, badly signed or expired token
//! gets `401` at the upgrade with its reason; a subscribe outside the token's `symbols`
//! gets `unauthorized` and no data for those symbols while the others flow; a token whose
//! `exp` passes has its connection closed with `1008`. HTTP endpoints stay open, and the
//! secret never shows in `/stats`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{test_config, Client, TIMEOUT};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tickwire_engine::config::{EngineConfig, Secret};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: &str = "test secret: 32 bytes or more, for HS256 tokens";

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token_with(secret: &str, claims: Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn token(claims: Value) -> String {
    token_with(SECRET, claims)
}

fn auth_config() -> EngineConfig {
    EngineConfig {
        auth_secret: Some(Secret::new(SECRET)),
        ..test_config()
    }
}

/// An upgrade request with extra header lines; returns (status, head, body).
async fn upgrade(addr: SocketAddr, path: &str, extra: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(TIMEOUT, s.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let status = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            if status == 101 {
                return (status, head.to_owned(), String::new());
            }
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if body.len() >= len {
                return (status, head.to_owned(), body[..len].to_owned());
            }
        }
        assert!(n > 0, "closed before a full answer: {buf:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_without_a_valid_token_get_401_with_the_reason() {
    let engine = common::start(auth_config(), common::sim(4, 200));
    let addr = engine.local_addr();
    let exp = now_s() + 600;
    let cases = [
        ("/ws".to_owned(), String::new(), "missing token"),
        ("/ws?token=abc".to_owned(), String::new(), "malformed token"),
        (
            "/ws".to_owned(),
            "Authorization: Bearer not.a.jwt\r\n".to_owned(),
            "malformed token",
        ),
        (
            format!(
                "/ws?token={}",
                token_with("another secret", json!({ "exp": exp }))
            ),
            String::new(),
            "bad token signature",
        ),
        (
            format!("/ws?token={}", token(json!({ "exp": now_s() - 5 }))),
            String::new(),
            "token expired",
        ),
        (
            format!("/ws?token={}", token(json!({ "sub": "no exp" }))),
            String::new(),
            "token has no exp claim",
        ),
        (
            format!(
                "/ws?token={}",
                token(json!({ "exp": exp, "symbols": ["BTC-USD"] }))
            ),
            String::new(),
            "malformed token",
        ),
    ];
    for (path, extra, reason) in &cases {
        let (status, head, body) = upgrade(addr, path, extra).await;
        assert_eq!(status, 401, "{path} {extra}: {head}\n{body}");
        assert!(
            body.starts_with(reason),
            "{path}: {body:?}, want {reason:?}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains("www-authenticate: bearer"),
            "{head}"
        );
    }
    let good = token(json!({ "exp": exp }));
    let (status, ..) = upgrade(addr, &format!("/ws?x=1&token={good}"), "").await;
    assert_eq!(status, 101, "a valid token in the query");
    let (status, ..) = upgrade(addr, "/ws", &format!("Authorization: Bearer {good}\r\n")).await;
    assert_eq!(status, 101, "a valid token in the header");

    // HTTP endpoints need no token; the secret shows nowhere.
    for path in ["/", "/health", "/symbols"] {
        let (status, _) = common::http_get(addr, path).await;
        assert_eq!(status, 200, "{path}");
    }
    let (status, stats) = common::http_get(addr, "/stats").await;
    assert_eq!(status, 200);
    assert!(!stats.contains(SECRET), "the secret leaks into /stats");
    let stats: Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(
        stats["clients"]["upgrades_unauthorized"].as_u64(),
        Some(cases.len() as u64)
    );
}

async fn connect_with(addr: SocketAddr, token: &str) -> Client {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws?token={token}"))
        .await
        .expect("websocket connects with a token");
    Client { ws }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribe_outside_the_token_symbols_gets_unauthorized_and_no_data_for_them() {
    let engine = common::start(auth_config(), common::sim(4, 2000));
    let addr = engine.local_addr();
    let exp = now_s() + 600;
    let mut c = connect_with(
        addr,
        &token(json!({ "exp": exp, "symbols": ["sim:BTC-USD"] })),
    )
    .await;
    c.send(json!({
        "op": "subscribe", "id": 5, "channels": ["ticker", "trades"],
        "symbols": ["sim:ETH-USD", "sim:BTC-USD", "sim:NOPE"]
    }))
    .await;
    let unknown = c.recv().await;
    assert_eq!(unknown["type"], "error", "{unknown}");
    assert_eq!(unknown["code"], "unknown_symbol");
    assert_eq!(unknown["id"], 5);
    let refused = c.recv().await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["code"], "unauthorized");
    assert_eq!(refused["id"], 5);
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .ends_with("sim:ETH-USD"),
        "{refused}"
    );
    let subscribed = c.recv().await;
    assert_eq!(subscribed["type"], "subscribed");
    assert_eq!(subscribed["symbols"], json!(["sim:BTC-USD"]));
    // Data flows for the allowed symbol and never for the other.
    let mut trades = 0;
    while trades < 100 {
        let m = c.recv().await;
        assert_eq!(m["symbol"], "sim:BTC-USD", "{m}");
        if m["type"] == "trade" {
            trades += 1;
        }
    }
    // Only refused symbols: only the error.
    c.send(json!({"op":"subscribe","id":6,"channels":["book"],"symbols":["sim:ETH-USD"]}))
        .await;
    c.send(json!({"op":"ping","id":7})).await;
    let refused = c.recv_until(|m| m["id"] == 6 || m["id"] == 7).await;
    assert_eq!(refused["code"], "unauthorized", "{refused}");
    let pong = c.recv_until(|m| m["id"] == 6 || m["id"] == 7).await;
    assert_eq!(
        pong["type"], "pong",
        "no `subscribed` for a refused-only subscribe: {pong}"
    );

    // A whole venue: every sim symbol.
    let mut venue = connect_with(addr, &token(json!({ "exp": exp, "symbols": ["sim:*"] }))).await;
    venue
        .send(
            json!({"op":"subscribe","channels":["ticker"],"symbols":["sim:ETH-USD","sim:BTC-USD"]}),
        )
        .await;
    let subscribed = venue.recv().await;
    assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
    assert_eq!(subscribed["symbols"], json!(["sim:ETH-USD", "sim:BTC-USD"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_whose_exp_passes_is_closed_with_1008() {
    let engine = common::start(auth_config(), common::sim(4, 500));
    let addr = engine.local_addr();
    // `exp` is whole seconds: this one passes in 1 to 2 s.
    let exp = now_s() + 2;
    let mut c = connect_with(addr, &token(json!({ "exp": exp }))).await;
    let mut lasting = connect_with(addr, &token(json!({ "exp": exp + 600 }))).await;
    c.send(json!({"op":"subscribe","channels":["ticker"],"symbols":["sim:BTC-USD"]}))
        .await;
    assert_eq!(c.recv().await["type"], "subscribed");
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = tokio::time::timeout_at(deadline.into(), c.recv_close_code())
        .await
        .expect("closed within 10 s");
    let closed_at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert_eq!(code, Some(1008));
    assert!(
        closed_at_ms + 50 >= exp * 1000,
        "closed {} ms before exp",
        exp * 1000 - closed_at_ms
    );
    // A token with time left stays open.
    lasting.send(json!({"op":"ping","id":1})).await;
    assert_eq!(lasting.recv().await["type"], "pong");
}
