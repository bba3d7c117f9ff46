//! Soak: the real `tickwire` binary on 127.0.0.1 for about two minutes of client churn
//! (connect, subscribe, read a little, then leave: a third with a close handshake, a third
//! vanishing without one (FIN), a third with a reset), beside steady clients and slow
//! ones (a 4 KiB receive buffer, reading a message every 20 ms).
//!
//! Flat, measured after [`WARM_UP`] of churn (every pool and the allocator at working
//! size), half way and after the last cycle, each time once the churned connections are
//! gone (`/stats` counts only the remaining clients): the server's open file descriptors
//! (`/proc/PID/fd`) within [`FD_SLACK`] of the warm-up count, and its resident memory
//! (`VmRSS`) within [`RSS_SLACK_PERCENT`]% plus [`RSS_SLACK_KIB`] of it. No panic in the server's log,
//! and every remaining client still correct: trade seqs contiguous or exact gaps, books
//! contiguous after each snapshot and equal to a fresh snapshot at the same seq, tickers
//! converging to a fresh client's. The server exits 0 on SIGTERM.
//!
//! Ignored by plain `cargo test` (its length); `scripts/test.sh` runs it:
//! `cargo test -p tickwire --test soak -- --ignored`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test

mod common;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{connect_small_buffer, snapshot_sides, stats, BookKeeper, Client, Levels};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// Churn before the first measure: every pool and the allocator at working size.
const WARM_UP: Duration = Duration::from_secs(10);
/// How long the measured churn runs.
const CHURN: Duration = Duration::from_secs(85);
/// Connections opened (and abandoned) per churn cycle.
const PER_CYCLE: usize = 30;
/// File descriptors the server may hold above the warm-up count at the end (an HTTP
/// connection of the measuring request not yet closed).
const FD_SLACK: usize = 2;
/// Resident memory growth allowed over the warm-up measure: this share ...
const RSS_SLACK_PERCENT: u64 = 10;
/// ... plus this much (allocator noise).
const RSS_SLACK_KIB: u64 = 4 * 1024;
const SYMBOLS: [&str; 2] = ["sim:BTC-USD", "sim:ETH-USD"];
const DEPTH: u64 = 10;

struct Server {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Server {
    /// A failed test must not leave the server running.
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Strips ANSI colour sequences from a log line.
fn plain(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn start_server() -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tickwire"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--no-pin",
            "--sim-symbols",
            "8",
            "--sim-rate",
            "1000",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tickwire starts");
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    // The log (tracing, on stdout) and panics (stderr), line by line.
    let outputs: [Box<dyn std::io::Read + Send>; 2] = [
        Box::new(child.stdout.take().unwrap()),
        Box::new(child.stderr.take().unwrap()),
    ];
    for output in outputs {
        let (log, tx) = (log.clone(), tx.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(output).lines().map_while(Result::ok) {
                let line = plain(&line);
                if line.contains("tickwire serving") {
                    let addr = line
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix("addr="))
                        .map(str::to_owned);
                    let _ = tx.send(addr);
                }
                log.lock().unwrap().push(line);
            }
        });
    }
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("the server logs its address: {:?}", log.lock().unwrap()))
        .expect("addr= in the start line")
        .parse()
        .unwrap();
    Server { child, addr, log }
}

/// (open file descriptors, VmRSS in KiB) of the server.
fn footprint(pid: u32) -> (usize, u64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    (fds, rss)
}

/// Waits until the server counts exactly `clients` WebSocket clients, then measures.
async fn settled_footprint(server: &Server, clients: u64) -> (usize, u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = stats(server.addr).await;
        if s["clients"]["count"].as_u64() == Some(clients) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "clients did not settle: {}",
            s["clients"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The /stats connection closes right after its answer: the smallest of a few samples.
    let mut best = footprint(server.child.id());
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = footprint(server.child.id());
        best = (best.0.min(now.0), best.1.min(now.1));
    }
    best
}

fn subscribe_all() -> Value {
    json!({"op":"subscribe","id":1,"channels":["ticker","trades","book"],"symbols":SYMBOLS,"depth":DEPTH})
}

/// A book's bids and asks.
type Sides = (Levels, Levels);

/// What a remaining client saw, checked as it arrived.
#[derive(Default)]
struct Seen {
    trade_seq: HashMap<String, u64>,
    trades: u64,
    gaps: u64,
    books: HashMap<String, BookKeeper>,
    /// The last books by seq, to compare with a fresh snapshot.
    history: HashMap<String, VecDeque<(u64, Sides)>>,
    ticker: HashMap<String, Value>,
}

impl Seen {
    fn on(&mut self, m: &Value) {
        let symbol = m["symbol"].as_str().unwrap_or_default().to_owned();
        match m["type"].as_str() {
            Some("trade") => {
                let seq = m["seq"].as_u64().unwrap();
                let last = self.trade_seq.entry(symbol.clone()).or_insert(seq - 1);
                assert_eq!(seq, *last + 1, "trades contiguous or an exact gap: {m}");
                *last = seq;
                self.trades += 1;
            }
            Some("gap") => {
                assert_eq!(m["channel"], "trades", "{m}");
                let (from, to) = (
                    m["from_seq"].as_u64().unwrap(),
                    m["to_seq"].as_u64().unwrap(),
                );
                assert!(from <= to, "{m}");
                if let Some(last) = self.trade_seq.get(&symbol) {
                    assert_eq!(
                        from,
                        *last + 1,
                        "a gap starts right after the last trade: {m}"
                    );
                }
                self.trade_seq.insert(symbol, to);
                self.gaps += 1;
            }
            Some("book") => {
                let book = self.books.entry(symbol.clone()).or_default();
                book.apply(m);
                let history = self.history.entry(symbol).or_default();
                history.push_back((book.seq, book.sides()));
                if history.len() > 3000 {
                    history.pop_front();
                }
            }
            Some("ticker") => {
                self.ticker.insert(symbol, m.clone());
            }
            _ => {}
        }
    }
}

/// A remaining client: reads until `stop`, checking everything; slow ones nap between
/// messages until `fast` is set.
fn remaining_client(
    mut c: Client,
    slow: bool,
    fast: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        c.send(subscribe_all()).await;
        while !stop.load(Ordering::Relaxed) {
            let m = c.recv().await;
            seen.lock().unwrap().on(&m);
            if slow && !fast.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    })
}

/// One churn cycle: connections that subscribe, read a little and leave.
async fn churn_cycle(addr: SocketAddr, cycle: usize) {
    let mut clients = Vec::new();
    for i in 0..PER_CYCLE {
        let mut c = Client::connect(addr).await;
        let symbol = SYMBOLS[(cycle + i) % SYMBOLS.len()];
        c.send(json!({"op":"subscribe","channels":["ticker","trades","book"],"symbols":[symbol],"depth":1 + (i % 20)}))
            .await;
        clients.push(c);
    }
    for c in &mut clients {
        for _ in 0..3 {
            c.recv().await;
        }
    }
    for (i, mut c) in clients.into_iter().enumerate() {
        match i % 3 {
            0 => {
                let _ = futures_util::SinkExt::send(&mut c.ws, Message::Close(None)).await;
                // Take what is in flight until the server's close comes back.
                let _ = tokio::time::timeout(Duration::from_secs(5), async {
                    while let Some(Ok(m)) = c.ws.next().await {
                        if m.is_close() {
                            break;
                        }
                    }
                })
                .await;
            }
            1 => drop(c), // vanishes: FIN, no close frame
            _ => {
                // Vanishes with a reset.
                if let tokio_tungstenite::MaybeTlsStream::Plain(s) = c.ws.get_ref() {
                    let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
                }
                drop(c);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak, about 2 minutes: scripts/test.sh runs it with --ignored"]
async fn churn_and_slow_clients_leave_rss_and_fds_flat_and_every_remaining_client_correct() {
    let mut server = start_server();
    let addr = server.addr;
    let (stop, fast) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let mut remaining = Vec::new();
    for i in 0..5 {
        let slow = i >= 3;
        let c = if slow {
            connect_small_buffer(addr, 4096).await
        } else {
            Client::connect(addr).await
        };
        let seen = Arc::new(Mutex::new(Seen::default()));
        let task = remaining_client(c, slow, fast.clone(), stop.clone(), seen.clone());
        remaining.push((slow, seen, task));
    }

    let mut cycles = 0;
    let warming = Instant::now();
    while warming.elapsed() < WARM_UP {
        churn_cycle(addr, cycles).await;
        cycles += 1;
    }
    let warm = settled_footprint(&server, 5).await;
    let started = Instant::now();
    let mut mid = None;
    while started.elapsed() < CHURN {
        churn_cycle(addr, cycles).await;
        cycles += 1;
        if mid.is_none() && started.elapsed() >= CHURN / 2 {
            mid = Some(settled_footprint(&server, 5).await);
        }
    }
    let end = settled_footprint(&server, 5).await;
    let mid = mid.unwrap_or(end);
    println!(
        "soak: {cycles} cycles of {PER_CYCLE} connections in {:.0} s; fds {} -> {} -> {}, VmRSS {} -> {} -> {} KiB (after warm-up, half way, end)",
        (started.elapsed() + WARM_UP).as_secs_f64(),
        warm.0,
        mid.0,
        end.0,
        warm.1,
        mid.1,
        end.1
    );
    let rss_limit = warm.1 + warm.1 * RSS_SLACK_PERCENT / 100 + RSS_SLACK_KIB;
    for (when, at) in [("half way", mid), ("at the end", end)] {
        assert!(
            at.0 <= warm.0 + FD_SLACK,
            "file descriptors {when}: {} -> {}",
            warm.0,
            at.0
        );
        assert!(
            at.1 <= rss_limit,
            "VmRSS {when}: {} -> {} KiB (limit {rss_limit})",
            warm.1,
            at.1
        );
    }

    // The remaining clients read at full speed, then each converges to a fresh client's
    // view: its ticker reaches the fresh snapshot's seq, its book equals the fresh snapshot
    // at the same seq.
    fast.store(true, Ordering::Relaxed);
    let mut fresh = Client::connect(addr).await;
    fresh.send(subscribe_all()).await;
    let mut fresh_ticker = BTreeMap::new();
    let mut fresh_book = BTreeMap::new();
    while fresh_ticker.len() < SYMBOLS.len() || fresh_book.len() < SYMBOLS.len() {
        let m = fresh.recv().await;
        let symbol = m["symbol"].as_str().unwrap_or_default().to_owned();
        match m["type"].as_str() {
            Some("ticker") => {
                fresh_ticker.entry(symbol).or_insert(m);
            }
            Some("book") if m["snapshot"] == true => {
                fresh_book.entry(symbol).or_insert(m);
            }
            _ => {}
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for (i, (slow, seen, task)) in remaining.iter().enumerate() {
        for symbol in SYMBOLS {
            let (t_seq, b_seq) = (
                fresh_ticker[symbol]["seq"].as_u64().unwrap(),
                fresh_book[symbol]["seq"].as_u64().unwrap(),
            );
            loop {
                {
                    let s = seen.lock().unwrap();
                    let ticker_seq = s
                        .ticker
                        .get(symbol)
                        .and_then(|t| t["seq"].as_u64())
                        .unwrap_or(0);
                    let book = s
                        .history
                        .get(symbol)
                        .and_then(|h| h.iter().find(|(seq, _)| *seq == b_seq));
                    let book_past = s.books.get(symbol).is_some_and(|b| b.seq >= b_seq);
                    if ticker_seq >= t_seq && book_past {
                        if ticker_seq == t_seq {
                            assert_eq!(s.ticker[symbol], fresh_ticker[symbol], "client {i} ticker");
                        }
                        if let Some((_, sides)) = book {
                            assert_eq!(
                                *sides,
                                snapshot_sides(&fresh_book[symbol]),
                                "client {i} book {symbol} at {b_seq}"
                            );
                        }
                        break;
                    }
                }
                assert!(
                    !task.is_finished(),
                    "client {i} stopped: its checks failed (its panic is above)"
                );
                assert!(
                    Instant::now() < deadline,
                    "client {i} (slow: {slow}) did not converge on {symbol}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let s = seen.lock().unwrap();
        println!(
            "soak: client {i} (slow: {slow}): {} trades, {} gaps, {} book snapshots",
            s.trades,
            s.gaps,
            s.books.values().map(|b| b.snapshots).sum::<usize>()
        );
        assert!(s.trades > 0, "client {i} got trades");
    }
    stop.store(true, Ordering::Relaxed);
    for (_, _, task) in remaining {
        task.abort();
        // A checking client that panicked fails the test here.
        if let Err(e) = task.await {
            assert!(e.is_cancelled(), "a remaining client failed: {e}");
        }
    }

    let _ = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not exit on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = server.log.lock().unwrap().join("\n");
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
    assert!(status.success(), "exit status {status}:\n{log}");
}
