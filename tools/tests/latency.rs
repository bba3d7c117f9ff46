//! Latency histograms: while the simulator runs and a client reads, `/stats` shows every
//! stage non-empty with plausible values (p50 <= p99 <= max, counts growing).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tickwire_engine::latency::Stage;

fn counts(s: &Value) -> Vec<u64> {
    Stage::ALL
        .iter()
        .map(|st| s["latency"][st.name()]["count"].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stage_is_measured_and_plausible() {
    let engine = start(test_config(), sim(4, 2_000));
    let addr = engine.local_addr();
    let mut c = Client::connect(addr).await;
    c.send(json!({"op":"subscribe","channels":["ticker","trades","book"],"symbols":["sim:BTC-USD","sim:ETH-USD"]})).await;
    let reader = tokio::spawn(async move {
        loop {
            c.recv().await;
        }
    });
    // Histograms are published once a second per thread: poll until all are non-empty.
    let mut first = None;
    for _ in 0..500 {
        let s = stats(addr).await;
        if counts(&s).iter().all(|n| *n > 0) {
            first = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first = match first {
        Some(s) => s,
        None => panic!("every stage gets samples: {}", stats(addr).await["latency"]),
    };
    for stage in Stage::ALL {
        let h = &first["latency"][stage.name()];
        let (min, p50, p90, p99, p999, max) = (
            h["min"].as_u64().unwrap(),
            h["p50"].as_u64().unwrap(),
            h["p90"].as_u64().unwrap(),
            h["p99"].as_u64().unwrap(),
            h["p999"].as_u64().unwrap(),
            h["max"].as_u64().unwrap(),
        );
        assert!(
            min <= p50 && p50 <= p90 && p90 <= p99 && p99 <= p999 && p999 <= max,
            "{stage:?}: {h}"
        );
        if stage != Stage::ExchangeToIngest {
            // The sim is its own venue (ts == ingest_ts); every other stage takes time,
            // and none should take a minute on loopback.
            assert!(max < 60_000_000_000, "{stage:?}: {h}");
        }
    }
    // Counts keep growing.
    let before = counts(&first);
    let mut grown = false;
    for _ in 0..500 {
        let now = counts(&stats(addr).await);
        if now.iter().zip(&before).all(|(a, b)| a > b) {
            grown = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(grown, "every stage keeps counting");
    let window = &stats(addr).await["latency_window"];
    assert!(
        window["tick_to_wire"]["count"].as_u64().unwrap() > 0,
        "{window}"
    );
    reader.abort();
    engine.shutdown();
}
