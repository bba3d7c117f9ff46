//! Protocol version 2 against the whole engine (`protocol.md`, "Version 2"): the
//! subprotocol negotiation, `epoch` and `prev_seq`, a slow client's exact book with
//! merged updates, and trade recovery with `since` across a reconnection (within the
//! history, past it, and with a wrong epoch).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use tickwire_engine::config::EngineConfig;

const SYMBOLS: [&str; 2] = ["sim:BTC-USD", "sim:ETH-USD"];

/// The tests of this file each run an engine with a busy simulator: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A version 2 client's book of one symbol: applies snapshots and updates, checking
/// `prev_seq` against the seq of the previous book message.
#[derive(Default)]
struct Book {
    keeper: BookKeeper,
    /// Updates that skipped seqs (merged), and snapshots after the first.
    merges: u64,
    snapshots_again: u64,
}

impl Book {
    fn apply(&mut self, m: &Value) {
        let seq = m["seq"].as_u64().unwrap();
        if m["snapshot"] == json!(true) {
            assert!(m.get("prev_seq").is_none(), "{m}");
            if self.keeper.snapshots > 0 {
                self.snapshots_again += 1;
            }
        } else {
            let prev = m["prev_seq"]
                .as_u64()
                .expect("every v2 update has prev_seq");
            assert_eq!(prev, self.keeper.seq, "prev_seq chains: {m}");
            if seq > prev + 1 {
                self.merges += 1;
            }
            // BookKeeper checks contiguity: pretend the client held seq - 1.
            self.keeper.seq = seq - 1;
        }
        self.keeper.apply(m);
    }
}

async fn subscribe(c: &mut Client, v: Value) -> Value {
    c.send(v).await;
    c.recv_until(|m| m["type"] == "subscribed" || m["type"] == "error")
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_is_negotiated_and_brings_epoch_and_prev_seq_while_v1_is_unchanged() {
    let _one = ONE_AT_A_TIME.lock().await;
    let engine = start(test_config(), sim(2, 2_000));
    let addr = engine.local_addr();

    // Only tickwire.v2 is chosen; the binary one is never answered.
    let (_, head) = RawClient::connect(addr, "/ws").await;
    assert!(
        !head.to_ascii_lowercase().contains("sec-websocket-protocol"),
        "{head}"
    );

    let mut v2 = Client::connect_v2(addr).await;
    let sub =
        json!({"op":"subscribe","id":1,"channels":["book","trades"],"symbols":SYMBOLS,"depth":10});
    let ok = subscribe(&mut v2, sub.clone()).await;
    let epoch = ok["epoch"].as_str().expect("subscribed carries the epoch");
    assert!(!epoch.is_empty());
    assert!(
        ok.get("recovered").is_none(),
        "no since, no recovered: {ok}"
    );
    let mut v1 = Client::connect(addr).await;
    let ok1 = subscribe(&mut v1, sub).await;
    assert!(ok1.get("epoch").is_none(), "version 1 is unchanged: {ok1}");

    let mut books: HashMap<String, Book> = HashMap::new();
    let mut updates = 0;
    while updates < 300 {
        let m = v2.recv().await;
        if m["type"] == "book" {
            books
                .entry(m["symbol"].as_str().unwrap().to_owned())
                .or_default()
                .apply(&m);
            updates += 1;
        }
    }
    let mut seen = 0;
    while seen < 300 {
        let m = v1.recv().await;
        if m["type"] == "book" {
            assert!(m.get("prev_seq").is_none(), "no prev_seq in version 1: {m}");
            seen += 1;
        }
    }
    // A second engine start is a new epoch.
    engine.shutdown();
    let engine = start(test_config(), sim(2, 2_000));
    let mut again = Client::connect_v2(engine.local_addr()).await;
    let ok = subscribe(
        &mut again,
        json!({"op":"subscribe","channels":["trades"],"symbols":SYMBOLS}),
    )
    .await;
    assert_ne!(
        ok["epoch"].as_str().unwrap(),
        epoch,
        "a new start, a new epoch"
    );
    engine.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_v2_client_keeps_the_exact_book_and_gets_merged_updates() {
    let _one = ONE_AT_A_TIME.lock().await;
    let cfg = EngineConfig {
        // A small outbox and send buffer, so that the slow reader is conflated within the
        // run; the staleness limit off, so that the fast one never is (its book at every
        // seq is the reference) on this shared 2-core machine.
        outbox_budget_bytes: 16 * 1024,
        send_buffer_bytes: Some(8 * 1024),
        notsent_lowat_bytes: 4 * 1024,
        staleness_limit_ms: 60_000,
        ..test_config()
    };
    // Books deeper than the window, as on a venue.
    let engine = start(
        cfg,
        tickwire_feeds::SimConfig {
            book_levels: 200,
            ..sim(2, 2_000)
        },
    );
    let addr = engine.local_addr();
    let sub = json!({"op":"subscribe","id":1,"channels":["book"],"symbols":SYMBOLS,"depth":100});
    let mut fast = Client::connect_v2(addr).await;
    subscribe(&mut fast, sub.clone()).await;
    let mut slow = connect_small_buffer_v2(addr, 4096).await;
    subscribe(&mut slow, sub).await;

    let fast_task = tokio::spawn(async move {
        // The fast client's book after every seq: the engine's.
        let mut books: HashMap<String, Book> = HashMap::new();
        let mut at: HashMap<(String, u64), (Levels, Levels)> = HashMap::new();
        let end = Instant::now() + Duration::from_secs(3);
        while Instant::now() < end {
            let m = fast.recv().await;
            if m["type"] == "book" {
                let symbol = m["symbol"].as_str().unwrap().to_owned();
                let book = books.entry(symbol.clone()).or_default();
                book.apply(&m);
                assert_eq!(book.merges, 0, "the fast client gets every update");
                at.insert((symbol, book.keeper.seq), book.keeper.sides());
            }
        }
        (fast, books, at)
    });
    let slow_task = tokio::spawn(async move {
        let mut books: HashMap<String, Book> = HashMap::new();
        let mut held: Vec<(String, u64, (Levels, Levels))> = Vec::new();
        let end = Instant::now() + Duration::from_secs(3);
        let mut bytes = 0usize;
        while Instant::now() < end {
            let m = slow.recv().await;
            bytes += m.to_string().len();
            if m["type"] == "book" {
                let symbol = m["symbol"].as_str().unwrap().to_owned();
                let book = books.entry(symbol.clone()).or_default();
                book.apply(&m);
                held.push((symbol, book.keeper.seq, book.keeper.sides()));
            }
            // Reading at about 64 KiB/s is what makes this client slow.
            if bytes >= 4096 {
                bytes = 0;
                tokio::time::sleep(Duration::from_millis(62)).await;
            }
        }
        (books, held)
    });
    let (mut fast, fast_books, mut at) = fast_task.await.unwrap();
    let (slow_books, held) = slow_task.await.unwrap();
    quiesce(&engine).await;
    // The fast client reads the rest, so that it has seen every seq the slow one holds.
    fast.send(json!({"op":"ping","id":9})).await;
    let mut fast_books = fast_books;
    loop {
        let m = fast.recv().await;
        if m["type"] == "pong" {
            break;
        }
        if m["type"] == "book" {
            let symbol = m["symbol"].as_str().unwrap().to_owned();
            let book = fast_books.entry(symbol.clone()).or_default();
            book.apply(&m);
            at.insert((symbol, book.keeper.seq), book.keeper.sides());
        }
    }
    for (symbol, seq, sides) in &held {
        let want = at
            .get(&(symbol.clone(), *seq))
            .unwrap_or_else(|| panic!("the fast client saw {symbol}@{seq}"));
        assert_eq!(
            sides, want,
            "{symbol}@{seq}: the slow client's book is the engine's"
        );
    }
    let merges: u64 = slow_books.values().map(|b| b.merges).sum();
    let snapshots: u64 = slow_books.values().map(|b| b.snapshots_again).sum();
    eprintln!(
        "slow v2 client: {} books checked, {merges} merged updates, {snapshots} snapshots again",
        held.len()
    );
    assert!(merges > 0, "the slow client was conflated");
    // Most of the time (about 90% here): a snapshot goes only where it is the smaller
    // frame, which a long conflation at depth 100 makes it.
    assert!(
        merges > snapshots,
        "merged updates most of the time: {merges} merges, {snapshots} snapshots"
    );
    let s = stats(addr).await;
    assert!(
        s["clients"]["book_merges"].as_u64().unwrap() >= merges,
        "{}",
        s["clients"]
    );
    let (_, metrics) = http_get(addr, "/metrics").await;
    assert!(metrics.contains("tickwire_book_merges_total"));
    assert!(metrics.contains("tickwire_book_snapshots_instead_total"));
    engine.shutdown();
}

/// A version 2 client's trade tape per symbol: every seq it holds, in order.
#[derive(Default)]
struct Tape {
    seqs: Vec<u64>,
    gaps: Vec<(u64, u64, String)>,
}

impl Tape {
    fn take(&mut self, m: &Value) {
        match m["type"].as_str().unwrap() {
            "trade" => {
                let seq = m["seq"].as_u64().unwrap();
                let expected = self
                    .gaps
                    .last()
                    .filter(|g| self.seqs.last().is_none_or(|s| g.1 > *s))
                    .map(|g| g.1 + 1)
                    .or(self.seqs.last().map(|s| s + 1));
                if let Some(expected) = expected {
                    assert_eq!(seq, expected, "no hole, no duplicate: {m}");
                }
                self.seqs.push(seq);
            }
            "gap" => {
                let (from, to) = (
                    m["from_seq"].as_u64().unwrap(),
                    m["to_seq"].as_u64().unwrap(),
                );
                if let Some(last) = self.seqs.last() {
                    assert_eq!(from, last + 1, "a gap names exactly what is lost: {m}");
                }
                self.gaps
                    .push((from, to, m["reason"].as_str().unwrap().to_owned()));
            }
            _ => {}
        }
    }
}

/// Reads `c` until `done`, feeding each symbol's tape.
async fn read_tapes(
    c: &mut Client,
    tapes: &mut HashMap<String, Tape>,
    done: impl Fn(&HashMap<String, Tape>) -> bool,
) {
    while !done(tapes) {
        let m = c.recv().await;
        if let Some(symbol) = m["symbol"].as_str() {
            tapes.entry(symbol.to_owned()).or_default().take(&m);
        }
    }
}

/// Waits, with a client of its own, until every symbol's trades are `margin` past the
/// last that `tapes` hold.
async fn wait_past(addr: std::net::SocketAddr, tapes: &HashMap<String, Tape>, margin: u64) {
    let held = |s: &str| *tapes[s].seqs.last().unwrap();
    let mut w = Client::connect_v2(addr).await;
    subscribe(
        &mut w,
        json!({"op":"subscribe","channels":["trades"],"symbols":SYMBOLS}),
    )
    .await;
    let mut seen = HashMap::new();
    read_tapes(&mut w, &mut seen, |t| {
        SYMBOLS.iter().all(|s| {
            t.get(*s)
                .and_then(|t| t.seqs.last())
                .is_some_and(|l| *l > held(s) + margin)
        })
    })
    .await;
}

/// Subscribes a fresh v2 client to the trades; reads until each symbol has `n` trades.
async fn first_session(addr: std::net::SocketAddr, n: usize) -> (String, HashMap<String, Tape>) {
    let mut c = Client::connect_v2(addr).await;
    let ok = subscribe(
        &mut c,
        json!({"op":"subscribe","channels":["trades"],"symbols":SYMBOLS}),
    )
    .await;
    let epoch = ok["epoch"].as_str().unwrap().to_owned();
    let mut tapes = HashMap::new();
    read_tapes(&mut c, &mut tapes, |t| {
        SYMBOLS
            .iter()
            .all(|s| t.get(*s).is_some_and(|t| t.seqs.len() >= n))
    })
    .await;
    // The socket closes here: the client is gone for a while.
    drop(c);
    (epoch, tapes)
}

/// Reconnects with `since` (the last seq of each tape) and `epoch`; returns the reply.
async fn resume(
    addr: std::net::SocketAddr,
    epoch: &str,
    tapes: &HashMap<String, Tape>,
) -> (Client, Value) {
    let since: serde_json::Map<String, Value> = tapes
        .iter()
        .map(|(s, t)| (s.clone(), json!(t.seqs.last().unwrap())))
        .collect();
    let mut c = Client::connect_v2(addr).await;
    let ok = subscribe(
        &mut c,
        json!({"op":"subscribe","channels":["trades"],"symbols":SYMBOLS,"epoch":epoch,"since":since}),
    )
    .await;
    (c, ok)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_back_after_2_s_with_since_holds_every_trade() {
    let _one = ONE_AT_A_TIME.lock().await;
    let engine = start(test_config(), sim(2, 5_000));
    let addr = engine.local_addr();
    let (epoch, mut tapes) = first_session(addr, 50).await;
    // Away for two seconds while the market goes on (this is the scenario, not a wait
    // for anything).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (mut c, ok) = resume(addr, &epoch, &tapes).await;
    for s in SYMBOLS {
        assert_eq!(ok["recovered"][s], true, "{ok}");
    }
    let target: HashMap<String, u64> = tapes
        .iter()
        .map(|(s, t)| (s.clone(), t.seqs.last().unwrap() + 3_000))
        .collect();
    read_tapes(&mut c, &mut tapes, |t| {
        t.iter()
            .all(|(s, tape)| tape.seqs.last().is_some_and(|l| *l >= target[s]))
    })
    .await;
    for (s, tape) in &tapes {
        assert!(tape.gaps.is_empty(), "{s}: no gap: {:?}", tape.gaps);
        let first = tape.seqs[0];
        assert!(
            tape.seqs
                .iter()
                .enumerate()
                .all(|(i, seq)| *seq == first + i as u64),
            "{s}: every seq once, in order"
        );
    }
    let s = stats(addr).await;
    assert!(s["clients"]["trades_replayed"].as_u64().unwrap() > 0);
    engine.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_history_one_exact_expired_gap_then_the_rest() {
    let _one = ONE_AT_A_TIME.lock().await;
    let cfg = EngineConfig {
        trade_history: 100,
        ..test_config()
    };
    let engine = start(cfg, sim(2, 5_000));
    let addr = engine.local_addr();
    let (epoch, mut tapes) = first_session(addr, 20).await;
    // Gone until the history (100 trades) has wrapped past what the client holds.
    wait_past(addr, &tapes, 150).await;
    let last: HashMap<String, u64> = tapes
        .iter()
        .map(|(s, t)| (s.clone(), *t.seqs.last().unwrap()))
        .collect();
    let (mut c, ok) = resume(addr, &epoch, &tapes).await;
    for s in SYMBOLS {
        assert_eq!(ok["recovered"][s], true, "{ok}");
    }
    read_tapes(&mut c, &mut tapes, |t| {
        t.iter()
            .all(|(s, tape)| tape.seqs.last().is_some_and(|l| *l > last[s] + 200))
    })
    .await;
    for (s, tape) in &tapes {
        assert_eq!(tape.gaps.len(), 1, "{s}: one gap: {:?}", tape.gaps);
        let (from, to, reason) = &tape.gaps[0];
        assert_eq!((*from, reason.as_str()), (last[s] + 1, "expired"), "{s}");
        let resumed = tape.seqs.iter().position(|q| *q > last[s]).unwrap();
        assert_eq!(
            tape.seqs[resumed],
            to + 1,
            "{s}: the held trades follow the gap"
        );
        assert!(
            tape.seqs[resumed..].windows(2).all(|w| w[1] == w[0] + 1),
            "{s}: then every trade"
        );
    }
    engine.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_epoch_replays_nothing() {
    let _one = ONE_AT_A_TIME.lock().await;
    let engine = start(test_config(), sim(2, 5_000));
    let addr = engine.local_addr();
    let (_, tapes) = first_session(addr, 20).await;
    // Let the trades move on first: resumed at once, the first live trade may well be
    // the one after the last held, which would look like a replay.
    wait_past(addr, &tapes, 10).await;
    let (mut c, ok) = resume(addr, "not-this-engine", &tapes).await;
    for s in SYMBOLS {
        assert_eq!(ok["recovered"][s], false, "{ok}");
    }
    // The client starts afresh: live trades only, no replay, no gap.
    let mut fresh: HashMap<String, Tape> = HashMap::new();
    read_tapes(&mut c, &mut fresh, |t| {
        SYMBOLS
            .iter()
            .all(|s| t.get(*s).is_some_and(|t| t.seqs.len() >= 20))
    })
    .await;
    for (s, tape) in &fresh {
        assert!(tape.gaps.is_empty(), "{s}");
        let held = *tapes[s].seqs.last().unwrap();
        assert!(
            tape.seqs[0] > held + 1,
            "{s}: nothing replayed after {held}: {}",
            tape.seqs[0]
        );
    }
    engine.shutdown();
}
