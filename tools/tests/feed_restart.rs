//! Feed supervision: a feed that panics (a test hook) is shown `restarting` in `/health`
//! (503 naming it), `/stats` and `/metrics` while it waits out its backoff, is run again,
//! counted in `restarts`, and its trade subscribers go on: the trades before the panic,
//! then the trades it lost while down as one exact `gap`, then the new trades, each seq
//! accounted for.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{http_get, stats, test_config, Client, TIMEOUT};
use serde_json::json;
use tickwire_engine::feed::{Feed, FeedError, FeedState, Publisher};
use tickwire_engine::server;
use tickwire_engine::symbol::{SymbolId, SymbolRegistryBuilder};
use tickwire_engine::tick::Aggressor;

/// First run: trades 1..=5 once the test says go, then a panic. Second run: it lost venue
/// trades 6..=8 while it was down (as a venue feed's trade-id check finds), publishes
/// 9..=12 and stays live until shutdown.
struct Flaky {
    symbol: Option<SymbolId>,
    runs: Arc<AtomicU32>,
    go: Arc<AtomicBool>,
}

impl Feed for Flaky {
    fn name(&self) -> &str {
        "flaky"
    }

    fn register(
        &mut self,
        symbols: &mut SymbolRegistryBuilder,
    ) -> Result<Vec<SymbolId>, FeedError> {
        let id = symbols.add("flaky:X", 2, 2)?;
        self.symbol = Some(id);
        Ok(vec![id])
    }

    fn run(&mut self, publisher: &mut Publisher, shutdown: &AtomicBool) -> Result<(), FeedError> {
        let symbol = self
            .symbol
            .ok_or(FeedError::Config("not registered".into()))?;
        let run = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
        publisher.shared().stats.set_state(FeedState::Live);
        let trade = |p: &mut Publisher, id: u64| {
            p.begin_message();
            p.trade(symbol, None, 100 + id as i64, 1, Some(Aggressor::Buy), id);
            p.flush();
        };
        while !self.go.load(Ordering::SeqCst) && !shutdown.load(Ordering::SeqCst) {
            publisher.flush();
            std::thread::sleep(Duration::from_millis(5));
        }
        if run == 1 {
            for id in 1..=5 {
                trade(publisher, id);
            }
            // Something half done when it fails: a book event left open.
            publisher.begin_book(symbol, None, true);
            publisher.level(tickwire_engine::tick::BookSide::Bid, 100, 5);
            panic!("feed panic injected by a test");
        }
        publisher.skip_trades(symbol, 3);
        for id in 9..=12 {
            trade(publisher, id);
        }
        while !shutdown.load(Ordering::SeqCst) {
            publisher.flush();
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_that_panics_is_restarted_after_a_backoff_and_its_clients_see_every_seq() {
    let runs = Arc::new(AtomicU32::new(0));
    let go = Arc::new(AtomicBool::new(false));
    let cfg = tickwire_engine::config::EngineConfig {
        // Long enough to watch the feed down; the jitter picks 0.75-1.5 s.
        feed_restart_initial_ms: 1500,
        workers: 1,
        ..test_config()
    };
    let feed = Flaky {
        symbol: None,
        runs: runs.clone(),
        go: go.clone(),
    };
    let engine = server::start(cfg, vec![Box::new(feed)]).expect("engine starts");
    let addr = engine.local_addr();
    let mut client = Client::connect(addr).await;
    client
        .send(json!({"op":"subscribe","id":1,"channels":["trades"],"symbols":["flaky:X"]}))
        .await;
    assert_eq!(client.recv().await["type"], "subscribed");
    let panicked_at = Instant::now();
    go.store(true, Ordering::SeqCst);

    wait_for("/health to name the restarting feed", async || {
        let (status, body) = http_get(addr, "/health").await;
        status == 503 && body.contains("feed flaky is restarting")
    })
    .await;
    let s = stats(addr).await;
    assert_eq!(s["feeds"][0]["state"], "restarting", "{}", s["feeds"][0]);
    assert_eq!(s["feeds"][0]["restarts"], 1);
    let (_, metrics) = http_get(addr, "/metrics").await;
    assert!(
        metrics.contains("tickwire_feed_restarts_total{feed=\"flaky\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("tickwire_feed_state{feed=\"flaky\"} 5"));

    // Every seq accounted for: 1..=5 (and the half-done book is not the client's
    // business), the 3 lost as one gap, then 9..=12.
    let mut seen = Vec::new();
    while seen.len() < 10 {
        let m = client.recv().await;
        match m["type"].as_str() {
            Some("trade") => seen.push(format!("trade {}", m["seq"])),
            Some("gap") => seen.push(format!(
                "gap {}-{} {} {}",
                m["from_seq"], m["to_seq"], m["channel"], m["reason"]
            )),
            _ => panic!("unexpected {m}"),
        }
    }
    let mut want: Vec<String> = (1..=5).map(|s| format!("trade {s}")).collect();
    want.push("gap 6-8 \"trades\" \"feed_gap\"".into());
    want.extend((9..=12).map(|s| format!("trade {s}")));
    assert_eq!(seen, want);
    assert!(
        panicked_at.elapsed() >= Duration::from_millis(700),
        "restarted after the backoff, not at once ({:?})",
        panicked_at.elapsed()
    );

    wait_for("/health to be 200 again", async || {
        http_get(addr, "/health").await.0 == 200
    })
    .await;
    let s = stats(addr).await;
    assert_eq!(s["feeds"][0]["state"], "live");
    assert_eq!(s["feeds"][0]["restarts"], 1);
    assert_eq!(runs.load(Ordering::SeqCst), 2, "run again, once");
    engine.shutdown();
}
