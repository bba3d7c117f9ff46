//! Slow readers get the market as it is now, not as it was (issue: bounded staleness),
//! and a reader that reads slowly is not closed as idle.
//!
//! Each slow client here is a raw WebSocket reader on a socket with a 4 KiB receive
//! buffer that reads at most a given number of bytes per second (a token bucket: pacing
//! is the behaviour under test, not a stand-in for synchronisation). The checks are the
//! protocol's: trades contiguous or bridged by exact `gap`s, book updates contiguous
//! after each snapshot and the final book equal to a fresh snapshot at the same seq, the
//! last ticker the engine's latest; and the data's age (receive time − `ingest_ts`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{quiesce, sim, start, test_config, BookKeeper, Client};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SYMBOL: &str = "sim:BTC-USD";

/// A raw client that reads at a bounded byte rate and checks what it reads.
struct PacedReader {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Next trade seq expected.
    next_trade: Option<u64>,
    book: BookKeeper,
    book_seq: Option<u64>,
    last_ticker_seq: u64,
    /// (receive time, age ms) of every ticker.
    ticker_ages: Vec<(Instant, f64)>,
    gaps: u64,
    snapshots: u64,
    closed: Option<Option<u16>>,
    bytes: u64,
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

impl PacedReader {
    async fn connect(addr: SocketAddr) -> PacedReader {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut stream = socket.connect(addr).await.unwrap();
        let req = format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        loop {
            let mut chunk = [0u8; 1024];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed during the handshake");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                assert!(buf.starts_with(b"HTTP/1.1 101"));
                buf.drain(..end + 4);
                break;
            }
        }
        let mut r = PacedReader {
            stream,
            buf,
            next_trade: None,
            book: BookKeeper::default(),
            book_seq: None,
            last_ticker_seq: 0,
            ticker_ages: Vec::new(),
            gaps: 0,
            snapshots: 0,
            closed: None,
            bytes: 0,
        };
        let sub = json!({"op":"subscribe","channels":["ticker","trades","book"],"symbols":[SYMBOL],"depth":10});
        r.send(&sub.to_string()).await;
        r
    }

    async fn send(&mut self, text: &str) {
        self.send_frame(0x1, text.as_bytes()).await;
    }

    async fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        let mut f = vec![0x80 | opcode];
        assert!(payload.len() < 126);
        f.push(0x80 | payload.len() as u8);
        let mask = [1u8, 2, 3, 4];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&f).await.unwrap();
    }

    /// Reads at most `max` bytes (waiting up to `wait` for some) and checks every
    /// complete message.
    async fn read_at_most(&mut self, max: usize, wait: Duration) {
        if self.closed.is_some() || max == 0 {
            return;
        }
        let mut chunk = vec![0u8; max];
        let n = match tokio::time::timeout(wait, self.stream.read(&mut chunk)).await {
            Err(_) => return,
            Ok(Ok(0)) | Ok(Err(_)) => {
                self.closed = Some(None);
                return;
            }
            Ok(Ok(n)) => n,
        };
        self.bytes += n as u64;
        self.buf.extend_from_slice(&chunk[..n]);
        let received = Instant::now();
        let wall = now_ns();
        let mut at = 0;
        let mut pongs = Vec::new();
        loop {
            let b = &self.buf[at..];
            if b.len() < 2 {
                break;
            }
            let (len, header) = match b[1] & 0x7f {
                126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
                127 if b.len() >= 10 => (
                    u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                126 | 127 => break,
                n => (n as usize, 2),
            };
            if b.len() < header + len {
                break;
            }
            let opcode = b[0] & 0x0f;
            let payload = b[header..header + len].to_vec();
            at += header + len;
            match opcode {
                0x8 => {
                    self.closed = Some(
                        (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]])),
                    );
                    return;
                }
                0x1 => {
                    let m: Value = serde_json::from_slice(&payload).unwrap();
                    self.check(&m, received, wall);
                }
                // Answer pings as browsers do, or the server rightly takes us for dead.
                0x9 => pongs.push(payload),
                _ => {}
            }
        }
        self.buf.drain(..at);
        for p in pongs {
            self.send_frame(0xA, &p).await;
        }
    }

    fn check(&mut self, m: &Value, received: Instant, wall: u64) {
        match m["type"].as_str().unwrap() {
            "trade" => {
                let seq = m["seq"].as_u64().unwrap();
                if let Some(next) = self.next_trade {
                    assert_eq!(seq, next, "trades contiguous or bridged by an exact gap");
                }
                self.next_trade = Some(seq + 1);
            }
            "gap" => {
                let from = m["from_seq"].as_u64().unwrap();
                let to = m["to_seq"].as_u64().unwrap();
                if let Some(next) = self.next_trade {
                    assert_eq!(from, next, "a gap starts at the next expected trade");
                }
                assert!(to >= from);
                self.next_trade = Some(to + 1);
                self.gaps += 1;
            }
            "book" => {
                let seq = m["seq"].as_u64().unwrap();
                if m["snapshot"] == true {
                    self.snapshots += 1;
                } else {
                    assert_eq!(
                        Some(seq),
                        self.book_seq.map(|s| s + 1),
                        "book updates contiguous"
                    );
                }
                self.book.apply(m);
                self.book_seq = Some(seq);
            }
            "ticker" => {
                let seq = m["seq"].as_u64().unwrap();
                assert!(seq >= self.last_ticker_seq, "tickers never go back");
                self.last_ticker_seq = seq;
                let ingest = m["ingest_ts"].as_u64().unwrap();
                let age_ms = wall.saturating_sub(ingest) as f64 / 1e6;
                self.ticker_ages.push((received, age_ms));
            }
            _ => {}
        }
    }
}

fn p99(mut v: Vec<f64>) -> f64 {
    assert!(!v.is_empty());
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 * 0.99) as usize).min(v.len() - 1)]
}

/// The engine's latest state after the feed stopped: a fresh client's snapshots.
async fn fresh_state(addr: SocketAddr) -> (u64, u64, BookKeeper) {
    let mut c = Client::connect(addr).await;
    c.send(json!({"op":"subscribe","channels":["ticker","book"],"symbols":[SYMBOL],"depth":10}))
        .await;
    let ticker = c.recv_until(|m| m["type"] == "ticker").await;
    let book = c.recv_until(|m| m["type"] == "book").await;
    let mut keeper = BookKeeper::default();
    keeper.apply(&book);
    (
        ticker["seq"].as_u64().unwrap(),
        book["seq"].as_u64().unwrap(),
        keeper,
    )
}

/// Reads at full speed until the reader holds the engine's final state (bounded).
async fn converge(r: &mut PacedReader, ticker_seq: u64, book_seq: u64, book: &BookKeeper) {
    let deadline = Instant::now() + common::TIMEOUT;
    while (r.last_ticker_seq < ticker_seq || r.book_seq != Some(book_seq))
        && Instant::now() < deadline
        && r.closed.is_none()
    {
        r.read_at_most(64 * 1024, Duration::from_millis(200)).await;
    }
    assert_eq!(r.closed, None, "still open");
    assert_eq!(
        r.last_ticker_seq, ticker_seq,
        "the last ticker is the latest"
    );
    assert_eq!(r.book_seq, Some(book_seq));
    assert_eq!(
        r.book.sides(),
        book.sides(),
        "the book equals a fresh snapshot at that seq"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_at_256_kib_per_s_sees_tickers_under_a_second_old() {
    // Two symbols at 30,000 events/s: one symbol's stream is several MB/s.
    let engine = start(test_config(), sim(2, 30_000));
    let addr = engine.local_addr();
    let mut r = PacedReader::connect(addr).await;
    const RATE: f64 = 256.0 * 1024.0;
    let started = Instant::now();
    let mut last = Instant::now();
    let mut tokens = 0.0f64;
    while started.elapsed() < Duration::from_secs(8) {
        tokens = (tokens + last.elapsed().as_secs_f64() * RATE).min(RATE / 10.0);
        last = Instant::now();
        if tokens < 1024.0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        let before = r.bytes;
        r.read_at_most(tokens as usize, Duration::from_millis(50))
            .await;
        tokens -= (r.bytes - before) as f64;
    }
    assert_eq!(r.closed, None, "a slow reader is not closed");
    let elapsed = started.elapsed().as_secs_f64();
    let rate = r.bytes as f64 / elapsed;
    assert!(
        rate <= RATE * 1.1,
        "the reader kept to its pace: {rate:.0} B/s"
    );
    // Only this client's symbol is encoded (nobody else subscribes): frames encoded per
    // second times a small frame's size is a floor for the stream a full-speed reader
    // would get.
    let s = common::stats(addr).await;
    let encoded = s["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["frames_encoded"].as_u64().unwrap())
        .sum::<u64>() as f64;
    let stream = encoded * 100.0 / elapsed;
    assert!(
        stream > 4.0 * RATE,
        "the stream ({stream:.0} B/s) is several times the pace"
    );
    let warm = started + Duration::from_secs(3);
    let ages: Vec<f64> = r
        .ticker_ages
        .iter()
        .filter(|(t, _)| *t >= warm)
        .map(|(_, a)| *a)
        .collect();
    assert!(ages.len() >= 10, "tickers keep coming: {}", ages.len());
    let p99_ms = p99(ages);
    assert!(p99_ms <= 1000.0, "ticker age p99 {p99_ms:.0} ms");
    assert!(r.gaps > 0 && r.snapshots > 1, "the reader was conflated");
    quiesce(&engine).await;
    let (ticker_seq, book_seq, book) = fresh_state(addr).await;
    converge(&mut r, ticker_seq, book_seq, &book).await;
    engine.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_then_trickling_readers_are_not_closed_and_converge() {
    // The default idle limit (30 s) is shorter than the 48 s these readers take.
    let cfg = test_config();
    assert_eq!(cfg.idle_timeout_ms, 30_000);
    let engine = start(cfg, sim(1, 2_000));
    let addr = engine.local_addr();
    let mut readers = Vec::new();
    for _ in 0..20 {
        readers.push(PacedReader::connect(addr).await);
    }
    let start_at = Instant::now();
    // Stall for 8 s: read nothing.
    tokio::time::sleep(Duration::from_secs(8)).await;
    // Then a few KiB every 2.5 s, for 40 s.
    let end = start_at + Duration::from_secs(48);
    while Instant::now() < end {
        for r in &mut readers {
            r.read_at_most(8 * 1024, Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(2_500)).await;
    }
    let closed: BTreeMap<usize, Option<u16>> = readers
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.closed.map(|c| (i, c)))
        .collect();
    assert!(closed.is_empty(), "readers closed: {closed:?}");
    let s = common::stats(addr).await;
    assert_eq!(s["clients"]["closed"]["policy"], 0, "no idle close");
    quiesce(&engine).await;
    let (ticker_seq, book_seq, book) = fresh_state(addr).await;
    for r in &mut readers {
        converge(r, ticker_seq, book_seq, &book).await;
    }
    engine.shutdown();
}
