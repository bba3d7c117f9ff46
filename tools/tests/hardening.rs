//! Abuse and RFC 6455 edge cases on the real engine: a ping flood costs the server one
//! pong at a time, and control and close frames that break the RFC close the connection
//! with `1002`, while valid close codes are echoed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test

mod common;

use std::time::Instant;

use common::{sim, start, stats, test_config, Client, RawClient};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_gets_at_most_the_command_rate_of_pongs_and_costs_no_queue() {
    let engine = start(test_config(), sim(2, 200));
    let addr = engine.local_addr();
    let (mut raw, _) = RawClient::connect(addr, "/ws").await;
    let started = Instant::now();
    const PINGS: usize = 20_000;
    let payload = [b'p'; 125];
    for _ in 0..PINGS {
        raw.send_frame(true, 0x9, &payload).await;
    }
    // A command after the flood: its reply proves every ping before it was handled.
    raw.send_frame(true, 0x1, br#"{"op":"symbols","id":1}"#)
        .await;
    let mut pongs = 0usize;
    let mut buf = Vec::new();
    let reply = loop {
        let mut chunk = [0u8; 65536];
        let n = tokio::time::timeout(common::TIMEOUT, raw.stream.read(&mut chunk))
            .await
            .expect("reply in time")
            .expect("read");
        assert!(n > 0, "the server closed the connection");
        buf.extend_from_slice(&chunk[..n]);
        let mut at = 0;
        let mut text = None;
        while buf.len() >= at + 2 {
            let len = (buf[at + 1] & 0x7f) as usize;
            let (len, header) = match len {
                126 if buf.len() >= at + 4 => {
                    (u16::from_be_bytes([buf[at + 2], buf[at + 3]]) as usize, 4)
                }
                126 => break,
                n => (n, 2),
            };
            if buf.len() < at + header + len {
                break;
            }
            match buf[at] & 0x0f {
                0xA => pongs += 1,
                0x1 => text = Some(buf[at + header..at + header + len].to_vec()),
                op => panic!("unexpected opcode {op}"),
            }
            at += header + len;
        }
        buf.drain(..at);
        if let Some(text) = text {
            break text;
        }
    };
    let elapsed = started.elapsed().as_secs_f64();
    let reply: serde_json::Value = serde_json::from_slice(&reply).unwrap();
    // The symbols command itself may be rate limited after the flood used the tokens.
    assert!(
        reply["type"] == "symbols" || reply["code"] == "rate_limited",
        "{reply}"
    );
    let allowed = 20.0 + 20.0 * elapsed + 1.0;
    assert!(
        (pongs as f64) <= allowed,
        "{pongs} pongs for {PINGS} pings in {elapsed:.1} s: pings share the 20/s command budget"
    );
    let s = stats(addr).await;
    let dropped = s["clients"]["pongs_dropped"].as_u64().unwrap();
    assert!(dropped as usize >= PINGS - pongs - 1, "dropped {dropped}");
    assert!(
        s["clients"]["peak_outbox_bytes"].as_u64().unwrap() < 64 * 1024,
        "no queue of pongs: {}",
        s["clients"]["peak_outbox_bytes"]
    );
    // Everyone else is served as usual.
    let mut other = Client::connect(addr).await;
    other.send(json!({"op":"symbols","id":9})).await;
    assert_eq!(other.recv().await["type"], "symbols");
    engine.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_and_control_frames_follow_rfc_6455() {
    let engine = start(test_config(), sim(1, 100));
    let addr = engine.local_addr();
    let cases: [(&str, u8, Vec<u8>, Option<u16>); 6] = [
        (
            "valid code echoed",
            0x8,
            3000u16.to_be_bytes().to_vec(),
            Some(3000),
        ),
        ("empty close answered 1000", 0x8, Vec::new(), Some(1000)),
        (
            "invalid code 999",
            0x8,
            999u16.to_be_bytes().to_vec(),
            Some(1002),
        ),
        (
            "reserved code 1005",
            0x8,
            1005u16.to_be_bytes().to_vec(),
            Some(1002),
        ),
        ("one-byte close payload", 0x8, vec![3], Some(1002)),
        ("pong over 125 bytes", 0xA, vec![b'x'; 126], Some(1002)),
    ];
    for (what, opcode, payload, expect) in cases {
        let (mut raw, _) = RawClient::connect(addr, "/ws").await;
        raw.send_frame(true, opcode, &payload).await;
        assert_eq!(raw.read_close_code().await, expect, "{what}");
    }
    let (mut raw, _) = RawClient::connect(addr, "/ws").await;
    raw.send_frame(false, 0x1, b"{\"op\":").await;
    raw.send_frame(true, 0x2, b"\x01").await;
    assert_eq!(
        raw.read_close_code().await,
        Some(1002),
        "binary inside a fragmented text message"
    );
    let mut reason = 1000u16.to_be_bytes().to_vec();
    reason.extend_from_slice(b"\xff\xfe");
    let (mut raw, _) = RawClient::connect(addr, "/ws").await;
    raw.send_frame(true, 0x8, &reason).await;
    assert_eq!(
        raw.read_close_code().await,
        Some(1007),
        "close reason not UTF-8"
    );
    engine.shutdown();
}

/// Sends raw bytes on a fresh connection and returns what the server answers until it
/// closes (bounded by the test timeout).
async fn raw_exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout(common::TIMEOUT, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                out.extend_from_slice(&chunk[..n]);
                if out.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(_) => panic!("no answer within the test timeout"),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn upgrade(addr: std::net::SocketAddr, origin: Option<&str>) -> Vec<u8> {
    let origin = origin
        .map(|o| format!("Origin: {o}\r\n"))
        .unwrap_or_default();
    format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{origin}\r\n"
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_server_names_another_host_gets_421_and_the_named_and_loopback_hosts_pass() {
    let cfg = tickwire_engine::config::EngineConfig {
        server_names: vec!["md.example".into()],
        ..test_config()
    };
    let engine = start(cfg, sim(1, 100));
    let addr = engine.local_addr();
    let port = addr.port();
    let get = |host: &str| format!("GET /symbols HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes();
    let up = |host: &str| {
        format!(
            "GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .into_bytes()
    };
    assert_answers(
        addr,
        [
            (get(&format!("rebound.evil.example:{port}")), "HTTP/1.1 421"),
            (up(&format!("rebound.evil.example:{port}")), "HTTP/1.1 421"),
            (get(&format!("MD.example:{port}")), "HTTP/1.1 200"),
            (up(&format!("md.example:{port}")), "HTTP/1.1 101"),
            (get(&format!("127.0.0.1:{port}")), "HTTP/1.1 200"),
            (get(&format!("[::1]:{port}")), "HTTP/1.1 200"),
            (get(&format!("localhost:{port}")), "HTTP/1.1 200"),
        ],
    )
    .await;
    engine.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_loopback_without_server_names_only_loopback_hosts_are_served() {
    // DNS rebinding: a page at evil.example:PORT whose name now points at 127.0.0.1.
    let engine = start(test_config(), sim(1, 100));
    let addr = engine.local_addr();
    let port = addr.port();
    let evil = format!("evil.example:{port}");
    let request = |path: &str, host: &str, extra: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n").into_bytes()
    };
    let upgrade_headers = "Upgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
    let rebound_upgrade = format!("{upgrade_headers}Origin: http://{evil}\r\n");
    assert_answers(
        addr,
        [
            (request("/ws", &evil, &rebound_upgrade), "HTTP/1.1 421"),
            (request("/stats", &evil, ""), "HTTP/1.1 421"),
            (
                request("/stats", "localhost.evil.example", ""),
                "HTTP/1.1 421",
            ),
            (
                request("/ws", &format!("localhost:{port}"), upgrade_headers),
                "HTTP/1.1 101",
            ),
            (
                request("/symbols", &format!("127.0.0.1:{port}"), ""),
                "HTTP/1.1 200",
            ),
            (
                request("/symbols", &format!("[::1]:{port}"), ""),
                "HTTP/1.1 200",
            ),
            (request("/symbols", "localhost", ""), "HTTP/1.1 200"),
            // An absolute-form target names the host too.
            (
                request(&format!("http://{evil}/stats"), "localhost", ""),
                "HTTP/1.1 421",
            ),
            // Two Host headers, or a malformed one: 400.
            (
                request("/symbols", "localhost", &format!("Host: {evil}\r\n")),
                "HTTP/1.1 400",
            ),
            (request("/symbols", "[evil.example]", ""), "HTTP/1.1 400"),
            (request("/symbols", "localhost:abc", ""), "HTTP/1.1 400"),
        ],
    )
    .await;
    engine.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_over_http_1_0_is_refused_with_400() {
    let engine = start(test_config(), sim(1, 100));
    let addr = engine.local_addr();
    let request = format!(
        "GET /ws HTTP/1.0\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    let answer = raw_exchange(addr, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.0 400"), "{answer}");
    engine.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_from_another_origin_gets_403_and_loopback_same_host_and_bots_pass() {
    let cfg = tickwire_engine::config::EngineConfig {
        allowed_origins: vec!["https://dash.example".into()],
        ..test_config()
    };
    let engine = start(cfg, sim(1, 100));
    let addr = engine.local_addr();
    let own = format!("http://{addr}");
    for (origin, status) in [
        (Some("https://evil.example"), "HTTP/1.1 403"),
        (Some("http://localhost.evil.example"), "HTTP/1.1 403"),
        (Some("https://dash.example"), "HTTP/1.1 101"),
        (Some("http://localhost:5173"), "HTTP/1.1 101"),
        (Some(own.as_str()), "HTTP/1.1 101"),
        (None, "HTTP/1.1 101"),
    ] {
        let answer = raw_exchange(addr, &upgrade(addr, origin)).await;
        assert!(answer.starts_with(status), "{origin:?}: {answer}");
    }
    engine.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_headers_never_end_is_closed_at_the_header_timeout() {
    let cfg = tickwire_engine::config::EngineConfig {
        header_timeout_ms: 300,
        ..test_config()
    };
    let engine = start(cfg, sim(1, 100));
    let addr = engine.local_addr();
    let started = Instant::now();
    // Slowloris: a request line and one header, then nothing.
    let answer = raw_exchange(addr, b"GET /symbols HTTP/1.1\r\nHost: x\r\n").await;
    let waited = started.elapsed();
    assert!(
        waited < common::TIMEOUT,
        "closed by the server, not by the test's own timeout ({waited:?}): {answer}"
    );
    assert!(!answer.contains("200 OK"), "{answer}");
    engine.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_fan_out_panics_closes_its_clients_with_1011_and_fails_health() {
    let cfg = tickwire_engine::config::EngineConfig {
        workers: 1,
        ..test_config()
    };
    let engine = start(cfg, sim(1, 200));
    let addr = engine.local_addr();
    let mut c = Client::connect(addr).await;
    c.send(json!({"op":"subscribe","channels":["trades"],"symbols":["sim:BTC-USD"]}))
        .await;
    c.recv_until(|m| m["type"] == "trade").await;
    // The test hook: the fan-out panics at its next pass.
    engine.shared().workers[0]
        .inject_panic
        .store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        c.recv_close_code().await,
        Some(1011),
        "told to reconnect elsewhere"
    );
    let (status, body) = common::http_get(addr, "/health").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("worker 0 failed"), "{body}");
    let (_, metrics) = common::http_get(addr, "/metrics").await;
    assert!(metrics.contains("tickwire_workers_failed 1"), "{metrics}");
    engine.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_caps_per_address_and_upgrade_rate_answer_as_documented() {
    let cfg = tickwire_engine::config::EngineConfig {
        workers: 1,
        max_connections_per_ip: 3,
        upgrades_per_s_per_ip: 2,
        loopback_exempt: false,
        ..test_config()
    };
    let engine = start(cfg, sim(1, 100));
    let addr = engine.local_addr();
    // Two upgrades pass; the third within the second is refused with 429.
    let (_a, head_a) = RawClient::connect(addr, "/ws").await;
    let (_b, head_b) = RawClient::connect(addr, "/ws").await;
    assert!(head_a.starts_with("HTTP/1.1 101") && head_b.starts_with("HTTP/1.1 101"));
    let answer = raw_exchange(addr, &upgrade(addr, None)).await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    // The refused upgrade's connection closed with the exchange; wait until the engine
    // has given its place back, or the next connection may be the one refused.
    let deadline = std::time::Instant::now() + common::TIMEOUT;
    while engine.shared().admission.connections() != 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the 429 connection is released"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // Three connections held (two sessions and one idle HTTP connection): the fourth is
    // closed at accept, with no answer.
    let held = tokio::net::TcpStream::connect(addr).await.unwrap();
    let deadline = std::time::Instant::now() + common::TIMEOUT;
    while engine.shared().admission.connections() != 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the held connection is admitted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let refused = raw_exchange(addr, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(refused.is_empty(), "closed unanswered: {refused}");
    drop(held);
    let refused: u64 = engine
        .shared()
        .workers
        .iter()
        .map(|w| {
            w.connections_refused
                .load(std::sync::atomic::Ordering::Relaxed)
        })
        .sum();
    assert!(refused >= 1, "counted");
    engine.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_one_connection_at_a_time_does_not_reset_the_upgrade_rate() {
    let cfg = tickwire_engine::config::EngineConfig {
        workers: 1,
        upgrades_per_s_per_ip: 1,
        loopback_exempt: false,
        ..test_config()
    };
    let engine = start(cfg, sim(1, 100));
    let addr = engine.local_addr();
    let started = Instant::now();
    let mut switched = 0u32;
    let rounds = 10u32;
    for _ in 0..rounds {
        // From 127.0.0.3, one connection at a time: connect, upgrade, close.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.3:0".parse().unwrap()).unwrap();
        let mut s = socket.connect(addr).await.unwrap();
        s.write_all(&upgrade(addr, None)).await.unwrap();
        let mut head = [0u8; 12];
        s.read_exact(&mut head).await.unwrap();
        switched += u32::from(head.starts_with(b"HTTP/1.1 101"));
        drop(s);
        // The engine has let go of the connection before the next one comes.
        let deadline = Instant::now() + common::TIMEOUT;
        while engine.shared().admission.connections() != 0 {
            assert!(Instant::now() < deadline, "the connection is released");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
    // A bucket of 1, refilled at 1/s over the loop's run: no more upgrades than that.
    let allowed = 1 + started.elapsed().as_secs_f64().ceil() as u32;
    assert!(
        switched <= allowed.min(rounds - 1),
        "{switched} of {rounds} upgrades switched; at most {allowed} allowed"
    );
    engine.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_past_64_kib_is_refused_before_the_header_timeout() {
    let cfg = tickwire_engine::config::EngineConfig {
        // Longer than the test's own timeout: an answer must come from the buffer limit.
        header_timeout_ms: 60_000,
        ..test_config()
    };
    let engine = start(cfg, sim(1, 100));
    let addr = engine.local_addr();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Filler: ".to_vec();
    head.resize(100 * 1024, b'a');
    // The engine may close while this is being written: a failed write is an answer too.
    let _ = s.write_all(&head).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(common::TIMEOUT, s.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the unfinished 100 KiB head is still being buffered"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );
    engine.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_client_that_pipelines_and_never_reads_is_closed_at_the_write_timeout() {
    let cfg = tickwire_engine::config::EngineConfig {
        workers: 1,
        http_write_timeout_ms: 300,
        header_timeout_ms: 60_000,
        ..test_config()
    };
    let engine = start(cfg, sim(1, 100));
    let addr = engine.local_addr();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let (mut rx, mut tx) = stream.into_split();
    // Far more response bytes (30 KiB each) than the two sockets' buffers hold; the
    // writer blocks once the engine stops reading, and is dropped with the test.
    let writer = tokio::spawn(async move {
        let request = b"GET /dashboard.js HTTP/1.1\r\nHost: localhost\r\n\r\n".repeat(2000);
        let _ = tx.write_all(&request).await;
        tx
    });
    let deadline = Instant::now() + common::TIMEOUT;
    while engine.shared().admission.connections() != 1 {
        assert!(Instant::now() < deadline, "the connection is admitted");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    while engine.shared().admission.connections() != 0 {
        assert!(
            Instant::now() < deadline,
            "a connection that reads nothing is still open"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // What the kernel held is there to read, then the end.
    let mut sink = Vec::new();
    let read = tokio::time::timeout(common::TIMEOUT, rx.read_to_end(&mut sink)).await;
    assert!(read.is_ok(), "closed by the engine");
    writer.abort();
    engine.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubscribe_bursts_past_the_snapshot_byte_budget_get_rate_limited_not_closed() {
    let cfg = tickwire_engine::config::EngineConfig {
        // Commands are not what is limited here: their bytes are.
        commands_per_s: 1000,
        snapshot_bytes_per_s: 1024,
        ..test_config()
    };
    let engine = start(cfg, sim(16, 200));
    let addr = engine.local_addr();
    let mut c = Client::connect(addr).await;
    let symbols: Vec<String> =
        serde_json::from_str(&common::http_get(addr, "/symbols").await.1).unwrap();
    // Sixteen tickers and books are well over 1 KiB of snapshots: the first subscribe
    // overdraws the budget, and the ones right behind it are refused.
    for id in 1..=5 {
        c.send(
            json!({"op":"subscribe","id":id,"channels":["ticker","book"],
                      "symbols":symbols,"depth":1000}),
        )
        .await;
    }
    let mut subscribed = 0;
    let mut limited = 0;
    while subscribed + limited < 5 {
        let m = c.recv().await;
        match m["type"].as_str() {
            Some("subscribed") => subscribed += 1,
            Some("error") => {
                assert_eq!(m["code"], "rate_limited", "{m}");
                assert!(
                    m["message"].as_str().unwrap().contains("snapshot bytes"),
                    "{m}"
                );
                limited += 1;
            }
            _ => {}
        }
    }
    assert!(
        subscribed >= 1 && limited >= 1,
        "{subscribed} applied, {limited} refused"
    );
    // The connection goes on: a ping still gets its pong.
    c.send(json!({"op":"ping","id":99})).await;
    c.recv_until(|m| m["type"] == "pong" && m["id"] == 99).await;
    engine.shutdown();
}

/// Sends each raw request on a connection of its own and checks the answer's start.
async fn assert_answers<const N: usize>(addr: std::net::SocketAddr, cases: [(Vec<u8>, &str); N]) {
    for (request, status) in cases {
        let answer = raw_exchange(addr, &request).await;
        assert!(
            answer.starts_with(status),
            "{}: {answer}",
            String::from_utf8_lossy(&request)
        );
    }
}
