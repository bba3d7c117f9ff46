//! A tickwire cluster on NATS, with the real binary: a NATS server (JetStream on, a free
//! loopback port, a temporary store), one feed node running the simulator and edges.
//! Clients on two edges (one subscribing on interest, one taking everything) get the
//! same trades (same seqs) and the same books; a client on an edge started late gets
//! correct snapshots at once; after the NATS server is killed and started again (same
//! port, same store), every node reconnects by itself and clients get a `gap` and fresh
//! snapshots, then data again; a restarted feed node continues the seqs; a hot standby
//! publishes nothing until the leader dies, then takes over. About 12 s.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const SYMBOL: &str = "sim:BTC-USD";
/// Feed node flags: a fast market, frequent snapshots, a short lease.
const FEED: &[&str] = &[
    "--role",
    "feed",
    "--sim-rate",
    "400",
    "--nats-snapshot-ms",
    "300",
    "--nats-lease-ms",
    "1500",
];

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    fn alive(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn nats_server_bin() -> PathBuf {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/usr/bin"])
    {
        let p = Path::new(dir).join("nats-server");
        if p.is_file() {
            return p;
        }
    }
    panic!("nats-server is not installed: scripts/test.sh installs Debian's package (apt-get install nats-server)");
}

fn start_nats(port: u16, store: &Path) -> Proc {
    let child = Command::new(nats_server_bin())
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(store)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server starts");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nats-server listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Proc(child)
}

fn start_node(name: &'static str, port: u16, nats: u16, extra: &[&str]) -> (Proc, SocketAddr) {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_tickwire"))
        .args([
            "serve",
            "--listen",
            &addr.to_string(),
            "--no-pin",
            "--workers",
            "1",
        ])
        .args(["--nats", &format!("nats://127.0.0.1:{nats}")])
        // The same feed settings on every node: edges take the symbols from them.
        .args(["--feed", "sim", "--sim-symbols", "2", "--sim-seed", "7"])
        .args(extra)
        .env(
            "RUST_LOG",
            std::env::var("TICKWIRE_TEST_LOGS").unwrap_or_else(|_| "warn".into()),
        )
        // TICKWIRE_TEST_LOGS=info (a RUST_LOG filter) shows the nodes' logs.
        .stdout(if std::env::var_os("TICKWIRE_TEST_LOGS").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .spawn()
        .unwrap_or_else(|e| panic!("tickwire ({name}) starts: {e}"));
    (Proc(child), addr)
}

async fn wait_health(addr: SocketAddr, want: u16, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = tokio::time::timeout(Duration::from_secs(2), async {
            match tokio::net::TcpStream::connect(addr).await {
                Ok(_) => Some(http_get(addr, "/health").await),
                Err(_) => None,
            }
        })
        .await
        .ok()
        .flatten();
        if let Some((status, body)) = got {
            if status == want {
                return body;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{what}: /health never answered {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What one client saw of `SYMBOL`: trades by seq, its book after each book seq, and
/// the gaps and snapshots that arrived.
#[derive(Default)]
struct Seen {
    trades: BTreeMap<u64, String>,
    last_trade: Option<u64>,
    books: BTreeMap<u64, (Levels, Levels)>,
    book: BookKeeper,
    gaps: Vec<Value>,
    /// `gaps.len()` at the last trade.
    gaps_at_trade: usize,
    book_snapshots: usize,
    tickers: usize,
}

impl Seen {
    fn take(&mut self, m: &Value) {
        match m["type"].as_str() {
            Some("trade") => {
                let seq = m["seq"].as_u64().unwrap();
                if let Some(prev) = self.last_trade {
                    assert!(seq > prev, "trade seqs increase: {m}");
                    // The gaps since the last trade name exactly the seqs skipped,
                    // one after another.
                    let mut next = prev + 1;
                    for gap in &self.gaps[self.gaps_at_trade..] {
                        assert_eq!(
                            gap["from_seq"].as_u64(),
                            Some(next),
                            "gaps chain from trade {prev}: {gap}"
                        );
                        next = gap["to_seq"].as_u64().unwrap() + 1;
                    }
                    assert_eq!(
                        next, seq,
                        "trade {seq} after {prev}: the gaps between name every skipped seq"
                    );
                }
                self.gaps_at_trade = self.gaps.len();
                self.last_trade = Some(seq);
                let key = format!(
                    "{} {} {} {}",
                    m["price"], m["size"], m["side"], m["trade_id"]
                );
                self.trades.insert(seq, key);
            }
            Some("gap") => {
                assert_eq!(m["channel"], "trades");
                self.gaps.push(m.clone());
            }
            Some("book") => {
                if m["snapshot"] == true {
                    self.book_snapshots += 1;
                }
                self.book.apply(m);
                self.books.insert(self.book.seq, self.book.sides());
            }
            Some("ticker") => self.tickers += 1,
            _ => {}
        }
    }
}

async fn subscribe(addr: SocketAddr) -> Client {
    let mut c = Client::connect(addr).await;
    c.send(json!({"op":"subscribe","channels":["ticker","trades","book"],"symbols":[SYMBOL],"depth":10}))
        .await;
    c.recv_until(|m| m["type"] == "subscribed").await;
    c
}

/// Reads `c` into `seen` until `done` holds (or the deadline passes: a failure).
async fn read_until(
    c: &mut Client,
    seen: &mut Seen,
    what: &str,
    mut done: impl FnMut(&Seen) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done(seen) {
        assert!(Instant::now() < deadline, "{what}: timed out");
        let m = c.recv().await;
        seen.take(&m);
    }
}

/// Seqs both saw, and whether they agree on each.
fn common_trades(a: &Seen, b: &Seen) -> usize {
    let mut n = 0;
    for (seq, t) in &a.trades {
        if let Some(u) = b.trades.get(seq) {
            assert_eq!(t, u, "trade {seq} is the same trade on both edges");
            n += 1;
        }
    }
    n
}

fn common_books(a: &Seen, b: &Seen) -> usize {
    let mut n = 0;
    for (seq, book) in &a.books {
        if let Some(other) = b.books.get(seq) {
            assert_eq!(book, other, "book {seq} is the same book on both edges");
            n += 1;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edges_serve_the_same_seqs_recover_late_joiners_and_survive_a_nats_restart() {
    let started = Instant::now();
    let store = std::env::temp_dir().join(format!("tickwire-cluster-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&store);
    let nats_port = free_port();
    let nats = start_nats(nats_port, &store);

    let (mut feed, feed_addr) = start_node(
        "feed",
        free_port(),
        nats_port,
        &[
            "--role",
            "feed",
            "--sim-rate",
            "400",
            "--nats-snapshot-ms",
            "300",
        ],
    );
    // One edge subscribing on interest (the default), one taking everything.
    let (mut edge1, e1) = start_node(
        "edge1",
        free_port(),
        nats_port,
        &["--role", "edge", "--edge-stale-ms", "2000"],
    );
    let (mut edge2, e2) = start_node(
        "edge2",
        free_port(),
        nats_port,
        &[
            "--role",
            "edge",
            "--edge-subscribe",
            "all",
            "--edge-stale-ms",
            "2000",
        ],
    );
    wait_health(feed_addr, 200, "feed node").await;
    wait_health(e1, 200, "edge1").await;
    wait_health(e2, 200, "edge2").await;

    // 1. Two edges, the same trades and books.
    let (mut a, mut b) = (subscribe(e1).await, subscribe(e2).await);
    let (mut sa, mut sb) = (Seen::default(), Seen::default());
    let deadline = Instant::now() + Duration::from_secs(30);
    while common_trades(&sa, &sb) < 40 || common_books(&sa, &sb) < 40 {
        assert!(
            Instant::now() < deadline,
            "the edges share 40 trades and 40 books"
        );
        read_until(&mut a, &mut sa, "edge1 data", |s| {
            s.trades.len() + s.books.len() > 0
        })
        .await;
        for _ in 0..20 {
            let m = a.recv().await;
            sa.take(&m);
            let m = b.recv().await;
            sb.take(&m);
        }
    }
    assert!(sa.book_snapshots >= 1 && sb.book_snapshots >= 1);

    // 2. A late joiner on a freshly started edge: correct snapshots at once.
    let (mut edge3, e3) = start_node(
        "edge3",
        free_port(),
        nats_port,
        &[
            "--role",
            "edge",
            "--edge-subscribe",
            "all",
            "--edge-stale-ms",
            "2000",
        ],
    );
    wait_health(e3, 200, "edge3").await;
    let mut c = Client::connect(e3).await;
    c.send(json!({"op":"subscribe","channels":["ticker","book"],"symbols":[SYMBOL],"depth":10}))
        .await;
    c.recv_until(|m| m["type"] == "subscribed").await;
    let ticker = c.recv().await;
    assert_eq!(ticker["type"], "ticker", "{ticker}");
    assert!(
        ticker["seq"].as_u64().unwrap() > 0 && ticker["bid"].is_number(),
        "a real ticker at once: {ticker}"
    );
    let snap = c.recv().await;
    assert_eq!(
        (snap["type"].as_str(), snap["snapshot"].as_bool()),
        (Some("book"), Some(true)),
        "{snap}"
    );
    let snap_seq = snap["seq"].as_u64().unwrap();
    assert!(
        snap_seq > 0 && !snap["bids"].as_array().unwrap().is_empty(),
        "a real book at once: {snap}"
    );
    // It is the book every other edge had at that seq.
    read_until(&mut a, &mut sa, "edge1 passes the late joiner's seq", |s| {
        s.book.seq >= snap_seq
    })
    .await;
    let sides = snapshot_sides(&snap);
    assert_eq!(
        sa.books.get(&snap_seq),
        Some(&sides),
        "the late joiner's snapshot is edge1's book at seq {snap_seq}"
    );
    drop(c);

    // 3. NATS goes away and comes back on the same port with the same store.
    let (gaps_a, snaps_a, snaps_b) = (sa.gaps.len(), sa.book_snapshots, sb.book_snapshots);
    let gaps_b = sb.gaps.len();
    let last_a = sa.last_trade.unwrap();
    drop(nats);
    let body = wait_health(e1, 503, "edge1 without NATS").await;
    assert!(body.contains("nats"), "/health names the NATS link: {body}");
    wait_health(feed_addr, 503, "feed node without NATS").await;
    // Long enough for the market to move on: trades happen that no edge hears of.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let _nats = start_nats(nats_port, &store);
    wait_health(feed_addr, 200, "feed node after NATS restart").await;
    wait_health(e1, 200, "edge1 after NATS restart").await;
    wait_health(e2, 200, "edge2 after NATS restart").await;
    // Clients: an exact gap for what the outage lost, fresh snapshots, then data again.
    read_until(&mut a, &mut sa, "edge1 recovers", |s| {
        s.gaps.len() > gaps_a && s.book_snapshots > snaps_a && s.last_trade.unwrap() > last_a + 20
    })
    .await;
    // Each edge resyncs from the feed node's next snapshot, and the two may take
    // different ones: edge2 has recovered once its own gap for the outage and a fresh
    // snapshot came, and a trade after both.
    read_until(&mut b, &mut sb, "edge2 recovers", |s| {
        let gap_end = s
            .gaps
            .last()
            .and_then(|g| g["to_seq"].as_u64())
            .unwrap_or(0);
        s.gaps.len() > gaps_b
            && s.book_snapshots > snaps_b
            && s.last_trade.unwrap() > gap_end.max(last_a)
    })
    .await;
    let gap = sa.gaps.last().unwrap();
    assert!(
        gap["from_seq"].as_u64().unwrap() > last_a,
        "the gap is after what edge1 saw: {gap}"
    );
    // Still the same trades and books on both edges after the outage.
    let mark = sa.last_trade.unwrap().max(sb.last_trade.unwrap());
    read_until(&mut a, &mut sa, "edge1 flows", |s| {
        s.last_trade.unwrap() > mark + 15
    })
    .await;
    read_until(&mut b, &mut sb, "edge2 flows", |s| {
        s.last_trade.unwrap() > mark + 15
    })
    .await;
    let (ta, tb) = (common_trades(&sa, &sb), common_books(&sa, &sb));
    let after = (mark + 1..=mark + 15)
        .filter(|s| sa.trades.contains_key(s) && sb.trades.contains_key(s))
        .count();
    assert_eq!(
        after, 15,
        "both edges carry every trade after the outage ({ta} trades, {tb} books in common; after {mark}: edge1 {:?} gaps {:?}; edge2 {:?} gaps {:?})",
        sa.trades.range(mark - 5..).map(|(k, _)| *k).collect::<Vec<_>>(),
        sa.gaps,
        sb.trades.range(mark - 5..).map(|(k, _)| *k).collect::<Vec<_>>(),
        sb.gaps
    );
    for (p, name) in [
        (&mut feed, "feed"),
        (&mut edge1, "edge1"),
        (&mut edge2, "edge2"),
        (&mut edge3, "edge3"),
    ] {
        assert!(p.alive(), "{name} kept running: nothing was restarted");
    }

    // 4. The feed node restarts: the new one continues the cluster's seqs (read from
    // JetStream), the edges follow its new session, clients get fresh snapshots.
    drop(feed);
    let (snaps_a, last_a) = (sa.book_snapshots, sa.last_trade.unwrap());
    let (feed2, feed_addr) = start_node(
        "feed again",
        free_port(),
        nats_port,
        &[
            "--role",
            "feed",
            "--sim-rate",
            "400",
            "--nats-snapshot-ms",
            "300",
        ],
    );
    wait_health(feed_addr, 200, "restarted feed node").await;
    read_until(&mut a, &mut sa, "edge1 follows the new feed node", |s| {
        s.book_snapshots > snaps_a && s.last_trade.unwrap() > last_a + 20
    })
    .await;
    // (Seen::take checked that trade seqs only went up, and that every jump had its gap.)
    assert!(edge1.alive() && edge2.alive());

    // 5. Hot standby: a second feed node for the same feed publishes nothing while the
    // first holds the lease (clients see one contiguous stream, no resync), and takes
    // over, continuing the seqs, when the first dies.
    let (_standby, standby_addr) = start_node("standby", free_port(), nats_port, FEED);
    wait_health(standby_addr, 200, "standby feed node").await;
    let (gaps_a, snaps_a) = (sa.gaps.len(), sa.book_snapshots);
    let quiet_until = Instant::now() + Duration::from_millis(1500);
    read_until(&mut a, &mut sa, "edge1 with a standby", |_| {
        Instant::now() > quiet_until
    })
    .await;
    assert_eq!(
        (sa.gaps.len(), sa.book_snapshots),
        (gaps_a, snaps_a),
        "a standby does not publish: no gap, no resync"
    );
    let last_a = sa.last_trade.unwrap();
    drop(feed2);
    read_until(&mut a, &mut sa, "edge1 follows the standby", |s| {
        s.book_snapshots > snaps_a && s.last_trade.unwrap() > last_a + 20
    })
    .await;
    assert!(edge1.alive() && edge2.alive());
    let _ = std::fs::remove_dir_all(&store);
    eprintln!("cluster test took {:?}", started.elapsed());
}
