//! Test helpers: an in-process engine on a free loopback port, and WebSocket clients.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test
#![allow(dead_code, missing_docs)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tickwire_engine::config::EngineConfig;
use tickwire_engine::server::{self, EngineHandle};
use tickwire_feeds::{SimConfig, SimFeed};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

pub const TIMEOUT: Duration = Duration::from_secs(20);

/// Engine config for tests: loopback, port 0, two workers, no pinning.
pub fn test_config() -> EngineConfig {
    EngineConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        workers: 2,
        ..EngineConfig::default()
    }
}

pub fn start(cfg: EngineConfig, sim: SimConfig) -> EngineHandle {
    server::start(cfg, vec![Box::new(SimFeed::new(sim))]).expect("engine starts")
}

pub fn sim(symbols: usize, rate_per_s: u64) -> SimConfig {
    SimConfig {
        symbols,
        rate_per_s,
        seed: 7,
        ..SimConfig::default()
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// A protocol client over tokio-tungstenite (a third-party WebSocket implementation).
pub struct Client {
    pub ws: Ws,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
            .await
            .expect("websocket connects");
        Client { ws }
    }

    /// A client that asks for protocol version 2 (`tickwire.v2`); panics unless the
    /// server chose it.
    pub async fn connect_v2(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.unwrap();
        Client::handshake_v2(addr, stream).await
    }

    /// The version 2 handshake on a connected socket.
    pub async fn handshake_v2(addr: SocketAddr, stream: TcpStream) -> Client {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "tickwire.v2.bin, tickwire.v2".parse().unwrap(),
        );
        let (ws, resp) =
            tokio_tungstenite::client_async(req, tokio_tungstenite::MaybeTlsStream::Plain(stream))
                .await
                .expect("websocket connects");
        assert_eq!(
            resp.headers()
                .get("Sec-WebSocket-Protocol")
                .map(|v| v.to_str().unwrap()),
            Some("tickwire.v2"),
            "the server chose version 2 in JSON"
        );
        Client { ws }
    }

    pub async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::text(v.to_string()))
            .await
            .expect("send");
    }

    pub async fn send_text(&mut self, s: &str) {
        self.ws
            .send(Message::text(s.to_owned()))
            .await
            .expect("send");
    }

    /// Next text message as JSON (pings are answered by tungstenite itself).
    pub async fn recv(&mut self) -> Value {
        let text = self.recv_text().await;
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("server sent invalid JSON {text:?}: {e}"))
    }

    pub async fn recv_text(&mut self) -> String {
        loop {
            let msg = tokio::time::timeout(TIMEOUT, self.ws.next())
                .await
                .expect("message within timeout")
                .expect("stream open")
                .expect("no websocket error");
            match msg {
                Message::Text(t) => return t.to_string(),
                Message::Close(c) => panic!("closed by server: {c:?}"),
                _ => continue,
            }
        }
    }

    /// Receives until `pred` matches; returns the match.
    pub async fn recv_until(&mut self, mut pred: impl FnMut(&Value) -> bool) -> Value {
        loop {
            let v = self.recv().await;
            if pred(&v) {
                return v;
            }
        }
    }

    /// Next close frame's code, skipping data.
    pub async fn recv_close_code(&mut self) -> Option<u16> {
        loop {
            match tokio::time::timeout(TIMEOUT, self.ws.next())
                .await
                .expect("close within timeout")
            {
                Some(Ok(Message::Close(c))) => return c.map(|c| u16::from(c.code)),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }
}

/// Book levels as (price, size) text pairs, best first.
pub type Levels = Vec<(String, String)>;

/// A client maintaining books from snapshots and updates, checking contiguity.
#[derive(Default)]
pub struct BookKeeper {
    pub seq: u64,
    pub bids: BTreeMap<String, String>,
    pub asks: BTreeMap<String, String>,
    pub snapshots: usize,
    pub updates: usize,
}

impl BookKeeper {
    /// Applies a `book` message; panics on a seq that is not contiguous.
    pub fn apply(&mut self, m: &Value) {
        let seq = m["seq"].as_u64().expect("seq");
        let levels = |side: &str| -> Vec<(String, String)> {
            m[side]
                .as_array()
                .expect("levels")
                .iter()
                .map(|l| (l[0].to_string(), l[1].to_string()))
                .collect()
        };
        if m["snapshot"] == Value::Bool(true) {
            self.bids = levels("bids").into_iter().collect();
            self.asks = levels("asks").into_iter().collect();
            self.snapshots += 1;
        } else {
            assert_eq!(
                seq,
                self.seq + 1,
                "book updates are contiguous after a snapshot: {m}"
            );
            for (side, book) in [("bids", &mut self.bids), ("asks", &mut self.asks)] {
                for (p, s) in levels(side) {
                    if s == "0" {
                        assert!(
                            book.remove(&p).is_some(),
                            "removed level {p} was in the window: {m}"
                        );
                    } else {
                        book.insert(p, s);
                    }
                }
            }
            self.updates += 1;
        }
        self.seq = seq;
    }

    /// Levels as (price, size) text pairs, bids highest first, asks lowest first.
    pub fn sides(&self) -> (Levels, Levels) {
        let num = |s: &String| s.parse::<f64>().unwrap();
        let mut bids: Vec<_> = self.bids.clone().into_iter().collect();
        bids.sort_by(|a, b| num(&b.0).total_cmp(&num(&a.0)));
        let mut asks: Vec<_> = self.asks.clone().into_iter().collect();
        asks.sort_by(|a, b| num(&a.0).total_cmp(&num(&b.0)));
        (bids, asks)
    }
}

/// Levels of a snapshot message as text pairs.
pub fn snapshot_sides(m: &Value) -> (Levels, Levels) {
    let side = |s: &str| {
        m[s].as_array()
            .unwrap()
            .iter()
            .map(|l| (l[0].to_string(), l[1].to_string()))
            .collect()
    };
    (side("bids"), side("asks"))
}

/// A bare-bones WebSocket client that sends raw frames, for protocol-violation tests.
pub struct RawClient {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr, path: &str) -> (RawClient, String) {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let head = loop {
            let mut chunk = [0u8; 1024];
            let n = tokio::time::timeout(TIMEOUT, stream.read(&mut chunk))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "server closed during handshake");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                buf.drain(..end + 4);
                break head;
            }
        };
        (RawClient { stream, buf }, head)
    }

    /// Sends one masked frame.
    pub async fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        let mut f = vec![(u8::from(fin) << 7) | opcode];
        let len = payload.len();
        if len < 126 {
            f.push(0x80 | len as u8);
        } else if len < 65536 {
            f.push(0x80 | 126);
            f.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            f.push(0x80 | 127);
            f.extend_from_slice(&(len as u64).to_be_bytes());
        }
        let mask = [0x12, 0x34, 0x56, 0x78];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&f).await.unwrap();
    }

    /// Sends one frame without a mask (a protocol violation from a client).
    pub async fn send_unmasked_frame(&mut self, opcode: u8, payload: &[u8]) {
        assert!(payload.len() < 126);
        let mut f = vec![0x80 | opcode, payload.len() as u8];
        f.extend_from_slice(payload);
        self.stream.write_all(&f).await.unwrap();
    }

    /// Reads frames until a close frame; returns its code (None if the socket just ended).
    pub async fn read_close_code(&mut self) -> Option<u16> {
        loop {
            while let Some((opcode, payload, used)) = parse_frame(&self.buf) {
                self.buf.drain(..used);
                if opcode == 8 {
                    return (payload.len() >= 2)
                        .then(|| u16::from_be_bytes([payload[0], payload[1]]));
                }
            }
            let mut chunk = [0u8; 65536];
            let n = match tokio::time::timeout(TIMEOUT, self.stream.read(&mut chunk))
                .await
                .expect("close within timeout")
            {
                Ok(n) => n,
                Err(_) => return None,
            };
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads the next frame: (opcode, payload).
    pub async fn read_frame(&mut self) -> (u8, Vec<u8>) {
        loop {
            if let Some((opcode, payload, used)) = parse_frame(&self.buf) {
                self.buf.drain(..used);
                return (opcode, payload);
            }
            let mut chunk = [0u8; 65536];
            let n = tokio::time::timeout(TIMEOUT, self.stream.read(&mut chunk))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "socket closed");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads the next text frame's payload.
    pub async fn read_text(&mut self) -> String {
        loop {
            while let Some((opcode, payload, used)) = parse_frame(&self.buf) {
                self.buf.drain(..used);
                if opcode == 1 {
                    return String::from_utf8(payload).unwrap();
                }
                assert_ne!(opcode, 8, "unexpected close");
            }
            let mut chunk = [0u8; 65536];
            let n = tokio::time::timeout(TIMEOUT, self.stream.read(&mut chunk))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "socket closed");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Parses one unmasked server frame: (opcode, payload, bytes used).
fn parse_frame(b: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    if b.len() < 2 {
        return None;
    }
    let opcode = b[0] & 0x0f;
    let (len, mut at) = match b[1] & 0x7f {
        126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
        127 if b.len() >= 10 => (
            u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize,
            10,
        ),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    assert_eq!(b[1] & 0x80, 0, "server frames are unmasked");
    if b.len() < at + len {
        return None;
    }
    let payload = b[at..at + len].to_vec();
    at += len;
    Some((opcode, payload, at))
}

/// HTTP GET on loopback; returns (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(TIMEOUT, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// `GET /stats` as JSON.
pub async fn stats(addr: SocketAddr) -> Value {
    let (status, body) = http_get(addr, "/stats").await;
    assert_eq!(status, 200);
    serde_json::from_str(&body).unwrap()
}

/// Stops the feeds and waits until every worker has consumed every published tick, so
/// that every frame the market caused is queued before anything a client sends next.
pub async fn quiesce(engine: &EngineHandle) {
    engine.stop_feeds();
    let addr = engine.local_addr();
    for _ in 0..1000 {
        let s = stats(addr).await;
        let feeds = s["feeds"].as_array().unwrap();
        let stopped = feeds.iter().all(|f| f["state"] == "stopped");
        let published: u64 = feeds.iter().map(|f| f["ticks"].as_u64().unwrap()).sum();
        let caught_up = s["workers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["ticks"].as_u64() == Some(published));
        if stopped && caught_up {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("engine did not quiesce");
}

/// A version 2 WebSocket client on a socket with a tiny receive buffer.
pub async fn connect_small_buffer_v2(addr: SocketAddr, recv_buffer: usize) -> Client {
    Client::handshake_v2(addr, small_buffer_socket(addr, recv_buffer)).await
}

fn small_buffer_socket(addr: SocketAddr, recv_buffer: usize) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(recv_buffer).unwrap();
    socket.connect(&addr.into()).unwrap();
    let std: std::net::TcpStream = socket.into();
    std.set_nonblocking(true).unwrap();
    TcpStream::from_std(std).unwrap()
}

/// A WebSocket client on a socket with a tiny receive buffer (a slow reader's socket).
pub async fn connect_small_buffer(addr: SocketAddr, recv_buffer: usize) -> Client {
    let stream = small_buffer_socket(addr, recv_buffer);
    let (ws, _) = tokio_tungstenite::client_async(
        format!("ws://{addr}/ws"),
        tokio_tungstenite::MaybeTlsStream::Plain(stream),
    )
    .await
    .unwrap();
    Client { ws }
}

/// `tickwire serve` on a free loopback port: one worker, unpinned, two simulated symbols
/// at `sim_rate` events per second, logging at info.
pub fn serve_command(sim_rate: u64) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tickwire"));
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--no-pin",
    ])
    .args(["--sim-symbols", "2", "--sim-rate", &sim_rate.to_string()])
    .env("RUST_LOG", "info");
    cmd
}

/// The real binary, its log (stdout, where tracing's fmt layer writes) collected line by
/// line; killed when dropped.
pub struct Binary {
    child: std::process::Child,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Binary {
    /// Spawns `cmd` with stdout collected and stderr discarded.
    pub fn start(mut cmd: std::process::Command) -> Binary {
        use std::io::BufRead;
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("tickwire starts");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Binary { child, log }
    }

    /// Waits (with a deadline) for a log line containing `needle`; returns it.
    pub fn wait_for_log(&mut self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + TIMEOUT;
        loop {
            if let Some(line) = self.log.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return line.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("tickwire exited ({status}): {:?}", self.log.lock().unwrap());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no log line {needle:?} in {:?}",
                self.log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the start-up line and returns the address it serves on.
    pub fn serving_addr(&mut self) -> SocketAddr {
        let line = self.wait_for_log("tickwire serving");
        line.split_whitespace()
            .find_map(|w| w.strip_prefix("addr="))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no addr in {line:?}"))
    }

    /// Sends the process a signal (`-HUP`, `-TERM`) with kill(1).
    pub fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }

    /// The child process.
    pub fn child(&mut self) -> &mut std::process::Child {
        &mut self.child
    }

    /// The log lines so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
