//! `/stats`, `/metrics` and `/latency/<stage>.hgrm` read latency figures that the stats
//! thread merges once a second, never the worker serving the request: requests within a
//! second share one snapshot, snapshots advance about once a second whatever the request
//! rate, and no worker thread ever merges histograms.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{http_get, sim, start, stats, test_config, Client};
use serde_json::json;
use tickwire_engine::http::MERGES_ON_WORKERS;

fn seq(s: &serde_json::Value) -> u64 {
    s["latency_snapshot"]["seq"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_is_merged_once_a_second_off_the_workers_and_requests_share_the_snapshot() {
    let engine = start(test_config(), sim(4, 500));
    let addr = engine.local_addr();
    let mut c = Client::connect(addr).await;
    c.send(
        json!({"op":"subscribe","channels":["ticker","trades","book"],"symbols":["sim:BTC-USD"]}),
    )
    .await;
    let reader = tokio::spawn(async move {
        loop {
            c.recv().await;
        }
    });

    // A burst of requests: each second's requests see one snapshot.
    let started = Instant::now();
    let mut seen = Vec::new();
    for _ in 0..40 {
        let s = stats(addr).await;
        seen.push((started.elapsed(), seq(&s)));
        assert!(
            s["latency_snapshot"]["age_ms"].as_u64().unwrap() < 5_000,
            "{}",
            s["latency_snapshot"]
        );
        let (status, _) = http_get(addr, "/metrics").await;
        assert_eq!(status, 200);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let first = seen[0].1;
    let last = seen[seen.len() - 1].1;
    assert!(
        (last - first) as f64 <= elapsed + 1.0,
        "{} snapshots for 80 requests in {elapsed:.2} s: requests do not make snapshots",
        last - first
    );
    let shared = seen.windows(2).filter(|w| w[0].1 == w[1].1).count();
    assert!(
        shared >= seen.len() / 2,
        "requests close together share one snapshot: {seen:?}"
    );
    for w in seen.windows(2) {
        assert!(w[1].1 >= w[0].1, "snapshots only move forward: {seen:?}");
    }

    // Without requests, the snapshots still advance (about) once a second, and carry the
    // deliveries recorded meanwhile.
    let before = stats(addr).await;
    tokio::time::sleep(Duration::from_millis(2_600)).await;
    let after = stats(addr).await;
    let advanced = seq(&after) - seq(&before);
    assert!((2..=4).contains(&advanced), "{advanced} snapshots in 2.6 s");
    let count = |s: &serde_json::Value| s["latency"]["tick_to_wire"]["count"].as_u64().unwrap();
    assert!(
        count(&after) > count(&before),
        "fresh figures in the snapshot"
    );
    for stage in ["tick_to_wire", "outbox_wait", "feed_decode"] {
        let (status, body) = http_get(addr, &format!("/latency/{stage}.hgrm")).await;
        assert_eq!(status, 200, "{stage}");
        assert!(body.contains("Value"), "{stage}: {body}");
    }

    assert_eq!(
        MERGES_ON_WORKERS.load(Ordering::Relaxed),
        0,
        "no worker thread merged histograms"
    );
    reader.abort();
    engine.shutdown();
}
