//! Slow clients (protocol delivery guarantees 1–5): a slow reader stays correct — trades
//! contiguous except across exact gaps, books equal to the engine's window at every
//! snapshot, tickers converging — costs only its own bounded memory, and never slows the
//! fast clients. A slow client has a tiny receive buffer and reads rarely.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use tickwire_engine::config::EngineConfig;

const SYMBOLS: [&str; 2] = ["sim:BTC-USD", "sim:ETH-USD"];
/// Per-client outbox budget: a slow reader passes it within a second at 5,000 events/s
/// (1.5 s at 1,000), a reading client only if this shared 2-core machine stalls it for
/// over half a second (the tests of one binary run side by side, each with an engine and
/// a debug-built client parsing every message; a 10 ms coalescing window also holds
/// frames in the outbox for a while).
const BUDGET: usize = 512 * 1024;

fn slow_config() -> EngineConfig {
    EngineConfig {
        outbox_budget_bytes: BUDGET,
        send_buffer_bytes: Some(8 * 1024),
        // These tests are about the byte budget; their "fast" readers pause while the
        // test gathers results, which the staleness limit would rightly conflate.
        staleness_limit_ms: 60_000,
        ..test_config()
    }
}

/// Everything one client saw, per symbol.
#[derive(Default)]
struct Seen {
    /// Trade seq → (price, size, trade_id) text.
    trades: BTreeMap<u64, String>,
    /// Gap ranges, inclusive.
    gaps: Vec<(u64, u64)>,
    /// Next trade seq expected.
    next_trade: Option<u64>,
    book: BookKeeper,
    /// Book sides after each seq (fast client) or at each snapshot (slow client).
    books_at: HashMap<u64, (Levels, Levels)>,
    last_ticker: Option<Value>,
    tickers: usize,
}

impl Seen {
    fn take(&mut self, m: &Value, record_every_book: bool) {
        match m["type"].as_str().unwrap() {
            "trade" => {
                let seq = m["seq"].as_u64().unwrap();
                if let Some(next) = self.next_trade {
                    assert_eq!(seq, next, "trades contiguous except across gaps: {m}");
                }
                self.next_trade = Some(seq + 1);
                self.trades.insert(
                    seq,
                    format!("{} {} {}", m["price"], m["size"], m["trade_id"]),
                );
            }
            "gap" => {
                assert_eq!(m["channel"], "trades");
                let (from, to) = (
                    m["from_seq"].as_u64().unwrap(),
                    m["to_seq"].as_u64().unwrap(),
                );
                assert!(from <= to, "{m}");
                if let Some(next) = self.next_trade {
                    assert_eq!(from, next, "a gap starts right after the last trade: {m}");
                }
                self.next_trade = Some(to + 1);
                self.gaps.push((from, to));
            }
            "book" => {
                self.book.apply(m);
                if record_every_book || m["snapshot"] == json!(true) {
                    self.books_at.insert(self.book.seq, self.book.sides());
                }
            }
            "ticker" => {
                self.last_ticker = Some(m.clone());
                self.tickers += 1;
            }
            other => panic!("unexpected {other}: {m}"),
        }
    }
}

/// One test of this file at a time: each runs an engine and debug-built readers that
/// must keep up with thousands of messages a second, and side by side on a 2-core
/// machine they starve each other's "fast" readers into being slow.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn subscribe_all(c: &mut Client, throttle_ms: u64) {
    c.send(json!({"op":"subscribe","id":1,"channels":["ticker","trades","book"],"symbols":SYMBOLS,"depth":10,"throttle_ms":throttle_ms})).await;
    c.recv_until(|m| m["type"] == "subscribed").await;
}

fn per_symbol(seen: &mut HashMap<String, Seen>, m: &Value, record_every_book: bool) {
    let symbol = m["symbol"].as_str().unwrap().to_owned();
    seen.entry(symbol).or_default().take(m, record_every_book);
}

/// Reads until a pong for `id`: after `quiesce`, everything the market caused came first.
async fn drain_fast(c: &mut Client, seen: &mut HashMap<String, Seen>, id: i64) {
    c.send(json!({"op":"ping","id":id})).await;
    loop {
        let m = c.recv().await;
        if m["type"] == "pong" && m["id"] == json!(id) {
            return;
        }
        per_symbol(seen, &m, true);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_stays_correct_and_converges() {
    let _one = ONE_AT_A_TIME.lock().await;
    let engine = start(slow_config(), sim(2, 5_000));
    let addr = engine.local_addr();
    let mut fast = Client::connect(addr).await;
    subscribe_all(&mut fast, 0).await;
    let mut slow = connect_small_buffer(addr, 2048).await;
    subscribe_all(&mut slow, 0).await;

    let fast_task = tokio::spawn(async move {
        let mut seen: HashMap<String, Seen> = HashMap::new();
        let end = Instant::now() + Duration::from_secs(3);
        while Instant::now() < end {
            let m = fast.recv().await;
            per_symbol(&mut seen, &m, true);
        }
        (fast, seen)
    });
    let slow_task = tokio::spawn(async move {
        let mut seen: HashMap<String, Seen> = HashMap::new();
        let end = Instant::now() + Duration::from_secs(3);
        let mut n = 0u64;
        while Instant::now() < end {
            let m = slow.recv().await;
            per_symbol(&mut seen, &m, false);
            n += 1;
            if n.is_multiple_of(10) {
                // Reading rarely is what makes this client slow.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        (slow, seen)
    });
    let (mut fast, mut fast_seen) = fast_task.await.unwrap();
    let (mut slow, mut slow_seen) = slow_task.await.unwrap();
    quiesce(&engine).await;
    drain_fast(&mut fast, &mut fast_seen, 999).await;

    // The fast client saw everything; its record is the engine's truth.
    for (symbol, f) in &fast_seen {
        assert!(f.gaps.is_empty(), "{symbol}: a fast client sees no gap");
        assert_eq!(
            f.book.snapshots, 1,
            "{symbol}: a fast client gets no resync snapshot"
        );
    }
    // The slow client catches up to the same final state.
    let done = |seen: &HashMap<String, Seen>| {
        SYMBOLS.iter().all(|s| {
            let (f, w) = (&fast_seen[*s], seen.get(*s));
            w.is_some_and(|w| {
                w.next_trade == f.next_trade
                    && w.book.seq == f.book.seq
                    && w.last_ticker == f.last_ticker
            })
        })
    };
    let deadline = Instant::now() + TIMEOUT;
    while !done(&slow_seen) {
        assert!(
            Instant::now() < deadline,
            "slow client converges after the feed stops"
        );
        let m = slow.recv().await;
        per_symbol(&mut slow_seen, &m, false);
    }

    let s = stats(addr).await;
    let mut slow_gaps = 0;
    for symbol in SYMBOLS {
        let (f, w) = (&fast_seen[symbol], &slow_seen[symbol]);
        // Every trade the slow client got is the engine's, and every missing one is in a gap.
        for (seq, t) in &w.trades {
            assert_eq!(Some(t), f.trades.get(seq), "{symbol} trade {seq}");
        }
        let first = w
            .trades
            .keys()
            .next()
            .copied()
            .into_iter()
            .chain(w.gaps.iter().map(|g| g.0))
            .min()
            .unwrap();
        for seq in first..f.next_trade.unwrap() {
            let in_gap = w.gaps.iter().any(|(a, b)| (*a..=*b).contains(&seq));
            assert!(
                w.trades.contains_key(&seq) ^ in_gap,
                "{symbol} trade {seq}: received xor in a gap"
            );
        }
        slow_gaps += w.gaps.len();
        // Every snapshot equals the engine's window at that seq; the final book too.
        for (seq, sides) in &w.books_at {
            if let Some(truth) = f.books_at.get(seq) {
                assert_eq!(sides, truth, "{symbol}: snapshot at {seq}");
            }
        }
        assert_eq!(w.book.sides(), f.book.sides(), "{symbol}: final book");
        assert_eq!(w.last_ticker, f.last_ticker, "{symbol}: final ticker");
        assert!(
            w.tickers < f.tickers,
            "{symbol}: the slow client's tickers were conflated"
        );
    }
    assert!(
        slow_gaps > 0,
        "the slow client was slow enough to get gaps: {s}"
    );
    assert!(
        s["clients"]["snapshots_resent"].as_u64().unwrap() > 0,
        "{s}"
    );
    assert!(
        s["clients"]["peak_outbox_bytes"].as_u64().unwrap() <= BUDGET as u64,
        "outboxes stay within the budget: {s}"
    );
    engine.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_tickers_come_at_most_once_per_interval_and_end_latest() {
    let _one = ONE_AT_A_TIME.lock().await;
    let engine = start(test_config(), sim(2, 5_000));
    let addr = engine.local_addr();
    let mut c = Client::connect(addr).await;
    c.send(
        json!({"op":"subscribe","id":1,"channels":["ticker"],"symbols":SYMBOLS,"throttle_ms":200}),
    )
    .await;
    c.recv_until(|m| m["type"] == "subscribed").await;
    // The snapshots come right after `subscribed`, not one interval later.
    let snapshots_at = Instant::now();
    let mut last: HashMap<String, Value> = HashMap::new();
    for _ in SYMBOLS {
        let m = c.recv().await;
        assert_eq!(m["type"], "ticker", "{m}");
        last.insert(m["symbol"].as_str().unwrap().to_owned(), m);
    }
    assert_eq!(last.len(), SYMBOLS.len());
    assert!(
        snapshots_at.elapsed() < Duration::from_millis(150),
        "snapshots are not throttled"
    );
    let mut counts: HashMap<String, usize> = HashMap::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        let m = c.recv().await;
        assert_eq!(m["type"], "ticker");
        let symbol = m["symbol"].as_str().unwrap().to_owned();
        *counts.entry(symbol.clone()).or_default() += 1;
        last.insert(symbol, m);
    }
    let elapsed_ms = started.elapsed().as_millis() as usize;
    for symbol in SYMBOLS {
        let n = counts[symbol];
        // After the snapshot, at most one per 200 ms (plus one for the interval in
        // progress); counting, not spacing, is immune to this client's own delays.
        assert!(
            n <= elapsed_ms / 200 + 1,
            "{symbol}: {n} tickers in {elapsed_ms} ms"
        );
        assert!(
            n >= elapsed_ms / 200 / 2,
            "{symbol}: tickers keep flowing: {n}"
        );
    }
    // Once the market stops, the last ticker becomes the latest state within an interval.
    quiesce(&engine).await;
    let mut fresh = Client::connect(addr).await;
    fresh
        .send(json!({"op":"subscribe","id":2,"channels":["ticker"],"symbols":SYMBOLS}))
        .await;
    let mut latest: HashMap<String, Value> = HashMap::new();
    while latest.len() < 2 {
        let m = fresh.recv_until(|m| m["type"] == "ticker").await;
        latest.insert(m["symbol"].as_str().unwrap().to_owned(), m);
    }
    let deadline = Instant::now() + TIMEOUT;
    while SYMBOLS.iter().any(|s| last.get(*s) != latest.get(*s)) {
        assert!(
            Instant::now() < deadline,
            "throttled ticker converges to the latest"
        );
        let m = c.recv().await;
        last.insert(m["symbol"].as_str().unwrap().to_owned(), m);
    }
    engine.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_percent_slow_clients_cost_the_fast_ones_nothing() {
    let _one = ONE_AT_A_TIME.lock().await;
    // 20 clients, 2 slow: the test process itself must parse what 18 fast readers get.
    let engine = start(slow_config(), sim(2, 1_000));
    let addr = engine.local_addr();
    let mut fast_tasks = Vec::new();
    let mut slow_tasks = Vec::new();
    for i in 0..20 {
        if i % 10 == 0 {
            let mut c = connect_small_buffer(addr, 2048).await;
            subscribe_all(&mut c, 0).await;
            slow_tasks.push(tokio::spawn(async move {
                let end = Instant::now() + Duration::from_secs(3);
                let mut n = 0u64;
                while Instant::now() < end {
                    c.recv().await;
                    n += 1;
                    if n.is_multiple_of(2) {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                c
            }));
        } else {
            let mut c = Client::connect(addr).await;
            subscribe_all(&mut c, 0).await;
            fast_tasks.push(tokio::spawn(async move {
                let mut seen: HashMap<String, Seen> = HashMap::new();
                let end = Instant::now() + Duration::from_secs(3);
                while Instant::now() < end {
                    let m = c.recv().await;
                    per_symbol(&mut seen, &m, false);
                }
                (c, seen)
            }));
        }
    }
    let mut fast = Vec::new();
    for t in fast_tasks {
        fast.push(t.await.unwrap());
    }
    let _slow: Vec<_> = futures_util::future::join_all(slow_tasks).await;
    quiesce(&engine).await;
    let mut finals = Vec::new();
    for (i, (mut c, mut seen)) in fast.into_iter().enumerate() {
        drain_fast(&mut c, &mut seen, 1000 + i as i64).await;
        for (symbol, s) in &seen {
            assert!(s.gaps.is_empty(), "fast client {i} {symbol}: no gap");
            assert_eq!(s.book.snapshots, 1, "fast client {i} {symbol}: no resync");
        }
        finals.push(SYMBOLS.map(|s| seen[s].next_trade));
    }
    assert!(
        finals.windows(2).all(|w| w[0] == w[1]),
        "every fast client got every trade"
    );
    let s = stats(addr).await;
    assert!(
        s["clients"]["conflated"].as_u64().unwrap() > 0,
        "the slow ones were conflated: {s}"
    );
    assert!(
        s["clients"]["peak_outbox_bytes"].as_u64().unwrap() <= BUDGET as u64,
        "{s}"
    );
    engine.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_with_1008_and_nobody_notices() {
    let _one = ONE_AT_A_TIME.lock().await;
    let cfg = EngineConfig {
        idle_timeout_ms: 1_000,
        ..slow_config()
    };
    let engine = start(cfg, sim(2, 5_000));
    let addr = engine.local_addr();
    let mut stalled = connect_small_buffer(addr, 2048).await;
    subscribe_all(&mut stalled, 0).await;
    let mut reader = Client::connect(addr).await;
    reader
        .send(json!({"op":"subscribe","id":1,"channels":["trades"],"symbols":SYMBOLS}))
        .await;
    reader.recv_until(|m| m["type"] == "subscribed").await;
    let mut seen: HashMap<String, Seen> = HashMap::new();
    // Keep reading until the engine has closed the stalled client for policy.
    let deadline = Instant::now() + TIMEOUT;
    let mut checks = 0u32;
    loop {
        let m = reader.recv().await;
        per_symbol(&mut seen, &m, false);
        checks += 1;
        if checks.is_multiple_of(200) {
            let s = stats(addr).await;
            if s["clients"]["closed"]["policy"].as_u64() == Some(1) {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "stalled client closed after the idle limit"
        );
    }
    for (symbol, s) in &seen {
        assert!(
            s.gaps.is_empty(),
            "{symbol}: the reading client noticed nothing"
        );
    }
    assert_eq!(stalled.recv_close_code().await, Some(1008));
    engine.shutdown();
}
