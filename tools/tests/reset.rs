//! A feed that replaces one symbol's state (`Publisher::adopt`, what a cluster edge does
//! after an outage) resynchronises that symbol's clients only: they get a fresh book
//! snapshot and one exact trade `gap`; a client of another symbol of the same feed sees
//! its trades go on, contiguous, with no gap and no snapshot.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use tickwire_engine::feed::{Feed, FeedError, FeedState, Publisher};
use tickwire_engine::state::SymbolState;
use tickwire_engine::symbol::{SymbolId, SymbolRegistryBuilder};
use tickwire_engine::tick::{Aggressor, BookSide};

/// Trades on two symbols every millisecond; when `go` is set, adopts a new state for the
/// first (10 trades further on, another book) once.
struct ResetFeed {
    go: Arc<AtomicBool>,
    ids: Vec<SymbolId>,
}

impl Feed for ResetFeed {
    fn name(&self) -> &str {
        "resetter"
    }

    fn register(
        &mut self,
        symbols: &mut SymbolRegistryBuilder,
    ) -> Result<Vec<SymbolId>, FeedError> {
        self.ids = vec![symbols.add("test:A", 2, 2)?, symbols.add("test:B", 2, 2)?];
        Ok(self.ids.clone())
    }

    fn run(&mut self, p: &mut Publisher, shutdown: &AtomicBool) -> Result<(), FeedError> {
        let (a, b) = (self.ids[0], self.ids[1]);
        p.begin_book(a, None, true);
        p.level(BookSide::Bid, 100, 1);
        p.level(BookSide::Ask, 101, 1);
        p.end_book();
        p.shared().stats.set_state(FeedState::Live);
        let mut adopted = false;
        while !shutdown.load(Ordering::Relaxed) {
            if !adopted && self.go.load(Ordering::Relaxed) {
                adopted = true;
                let mut state: SymbolState = p.state(a).clone();
                state.trade_seq += 10;
                state.book_seq += 5;
                state.book.clear();
                state.book.set(BookSide::Bid, 90, 7);
                state.book.set(BookSide::Ask, 95, 7);
                p.adopt(a, state);
            }
            p.begin_message();
            p.trade(a, None, 100, 1, Some(Aggressor::Buy), 0);
            p.trade(b, None, 200, 1, Some(Aggressor::Sell), 0);
            p.flush();
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopting_one_symbols_state_resyncs_its_clients_and_no_one_else() {
    let go = Arc::new(AtomicBool::new(false));
    let feed = ResetFeed {
        go: go.clone(),
        ids: Vec::new(),
    };
    let engine = tickwire_engine::server::start(test_config(), vec![Box::new(feed)]).unwrap();
    let addr = engine.local_addr();
    let mut ca = Client::connect(addr).await;
    ca.send(json!({"op":"subscribe","channels":["trades","book"],"symbols":["test:A"]}))
        .await;
    let mut cb = Client::connect(addr).await;
    cb.send(json!({"op":"subscribe","channels":["trades"],"symbols":["test:B"]}))
        .await;
    // Both clients see trades before the reset.
    let last_a = ca.recv_until(|m| m["type"] == "trade").await["seq"]
        .as_u64()
        .unwrap();
    cb.recv_until(|m| m["type"] == "trade").await;
    go.store(true, Ordering::Relaxed);

    // A: trades up to the reset, then one gap of exactly the 10 adopted seqs and a
    // snapshot of the adopted book, then trades again.
    let (mut prev, mut gap, mut snapshot) = (last_a, None, None);
    let deadline = Instant::now() + Duration::from_secs(10);
    while gap.is_none() || snapshot.is_none() || prev < last_a + 30 {
        assert!(Instant::now() < deadline, "A resyncs");
        let m = ca.recv().await;
        match m["type"].as_str() {
            Some("trade") => {
                let seq = m["seq"].as_u64().unwrap();
                if seq != prev + 1 {
                    let g: &serde_json::Value = gap.as_ref().expect("a gap before the jump");
                    assert_eq!(
                        (g["from_seq"].as_u64(), g["to_seq"].as_u64()),
                        (Some(prev + 1), Some(seq - 1))
                    );
                    assert_eq!(
                        seq - prev - 1,
                        10,
                        "the gap is the 10 seqs the adopted state skipped"
                    );
                    assert_eq!(g["reason"], "feed_gap", "lost upstream, not by this client");
                }
                prev = seq;
            }
            Some("gap") => gap = Some(m),
            Some("book") if m["snapshot"] == true && m["bids"] == json!([[0.9, 0.07]]) => {
                assert_eq!(m["asks"], json!([[0.95, 0.07]]));
                snapshot = Some(m);
            }
            _ => {}
        }
    }
    // B: contiguous all along, no gap.
    let mut prev_b = None;
    let until = Instant::now() + Duration::from_millis(300);
    while Instant::now() < until {
        let m = cb.recv().await;
        assert_ne!(
            m["type"], "gap",
            "another symbol's reset does not touch B: {m}"
        );
        if m["type"] == "trade" {
            let seq = m["seq"].as_u64().unwrap();
            if let Some(p) = prev_b {
                assert_eq!(seq, p + 1, "B's trades stay contiguous");
            }
            prev_b = Some(seq);
        }
    }
    let stats = stats(addr).await;
    assert_eq!(stats["workers"][0]["ring_laps"], 0);
    engine.shutdown();
}
