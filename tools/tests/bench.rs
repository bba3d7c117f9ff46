//! `tickwire bench`'s load generator against an in-process engine: the output's structure
//! and its correctness fields (not its speed). 8 clients, 2 of them slow, for 3 s.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::Value;
use tickwire_bench::load::{self, LoadConfig, EXIT_NO_CONNECTION, EXIT_OK};
use tickwire_engine::config::EngineConfig;
use tickwire_engine::hgrm;

/// The two load runs take turns: side by side on 2 cores, their debug-built "fast"
/// clients fell behind the engine and were conflated (gaps), which this file asserts
/// never happens to a fast client (CI saw it once).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn out_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tickwire-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn read_hgrm(dir: &Path, name: &str) -> hgrm::Parsed {
    let text = std::fs::read_to_string(dir.join(name)).unwrap();
    hgrm::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"))
}

#[test]
fn a_short_run_reports_every_field_and_finds_no_violation() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // Small kernel and outbox budgets so that the slow clients fall behind within 3 s.
    let cfg = EngineConfig {
        outbox_budget_bytes: 128 * 1024,
        send_buffer_bytes: Some(8 * 1024),
        ..test_config()
    };
    let engine = start(cfg, sim(2, 2_000));
    let dir = out_dir("bench");
    let config = LoadConfig {
        url: format!("ws://{}/ws", engine.local_addr()),
        clients: 8,
        symbols: vec!["sim:BTC-USD".into(), "sim:ETH-USD".into()],
        duration: Duration::from_secs(3),
        ramp: Duration::from_millis(500),
        drain: Duration::from_secs(2),
        slow_fraction: 0.25,
        quiet: true,
        ..LoadConfig::default()
    };
    let report = load::run(&config).expect("the run happens");
    let written = report.write(&dir).unwrap();
    engine.shutdown();
    assert_eq!(written.len(), 4);
    print!("{}", report.table());

    let s: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["exit_code"], EXIT_OK, "{}", s["exit_reason"]);
    assert_eq!(s["violations"], 0);
    assert_eq!(s["params"]["clients"], 8);
    assert_eq!(s["params"]["slow_clients"], 2);
    assert!(s["machine"]["nproc"].as_u64().unwrap() >= 1);
    assert!(s["generator"]["cpu_user_s"].as_f64().unwrap() > 0.0);
    assert!(
        s["engine_stats"]["after"]["clients"].is_object(),
        "{}",
        s["engine_stats"]
    );
    let (fast, slow) = (&s["classes"]["fast"], &s["classes"]["slow"]);
    for (class, clients) in [(fast, 6), (slow, 2)] {
        assert_eq!(class["clients"], clients);
        assert_eq!(class["finished"], clients, "{class}");
        assert_eq!(class["errors"]["total"], 0, "{class}");
        assert_eq!(class["violations"], 0, "{class}");
        assert!(class["counts"]["messages"].as_u64().unwrap() > 0);
        assert!(class["msgs_per_s"].as_f64().unwrap() > 0.0);
        for p in ["p50", "p90", "p99", "p999", "max"] {
            assert!(
                class["latency_us"][p].as_f64().unwrap() > 0.0,
                "{p}: {class}"
            );
        }
    }
    // Fast clients see every trade and never resync; slow ones were slow enough to be
    // conflated, and came back.
    assert_eq!(fast["counts"]["gaps"], 0, "{fast}");
    assert_eq!(fast["counts"]["resyncs"], 0, "{fast}");
    let c = &slow["counts"];
    let slowed = ["gaps", "resyncs", "ticker_seqs_skipped"]
        .iter()
        .map(|k| c[k].as_u64().unwrap())
        .sum::<u64>();
    assert!(slowed > 0, "slow clients were conflated: {slow}");
    let cv = &s["convergence"];
    assert_eq!(cv["checked"], 8, "{cv}");
    assert_eq!(cv["converged"], 8, "{cv}");

    let lf = read_hgrm(&dir, "latency-fast.hgrm");
    assert_eq!(
        lf.total_count,
        fast["latency_us"]["count"].as_u64().unwrap()
    );
    let ls = read_hgrm(&dir, "latency-slow.hgrm");
    assert_eq!(
        ls.total_count,
        slow["latency_us"]["count"].as_u64().unwrap()
    );
    assert_eq!(read_hgrm(&dir, "connect.hgrm").total_count, 8);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn no_engine_means_exit_code_4() {
    // A port that was free a moment ago: connections are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let report = load::run(&LoadConfig {
        url: format!("ws://127.0.0.1:{port}/ws"),
        clients: 3,
        duration: Duration::from_secs(1),
        ramp: Duration::ZERO,
        quiet: true,
        ..LoadConfig::default()
    })
    .unwrap();
    assert_eq!(report.exit_code(), EXIT_NO_CONNECTION);
    let fast = &report.summary.classes.fast;
    assert_eq!((fast.connected, fast.errors.connect_failed), (0, 3));
    assert!(report.summary.engine_stats.error.is_some());
}

#[test]
fn paced_slow_clients_read_within_their_rate_and_report_their_data_age() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let cfg = EngineConfig {
        outbox_budget_bytes: 128 * 1024,
        send_buffer_bytes: Some(8 * 1024),
        ..test_config()
    };
    let engine = start(cfg, sim(2, 2_000));
    let (rate, duration) = (20_000u64, Duration::from_secs(3));
    let report = load::run(&LoadConfig {
        url: format!("ws://{}/ws", engine.local_addr()),
        clients: 6,
        duration,
        ramp: Duration::from_millis(300),
        drain: Duration::from_secs(1),
        slow_fraction: 0.5,
        slow_read_bps: Some(rate),
        slow_stall: Duration::from_millis(500),
        age_warmup: Duration::from_secs(1),
        quiet: true,
        ..LoadConfig::default()
    })
    .expect("the run happens");
    engine.shutdown();
    print!("{}", report.table());
    let s = serde_json::to_value(&report.summary).unwrap();
    assert_eq!(s["violations"], 0);
    let slow = &s["slow"];
    assert_eq!(slow["mode"], "paced", "{slow}");
    assert_eq!(slow["read_bps"], rate);
    // 100 ms of the rate.
    let burst = slow["read_burst_bytes"].as_u64().unwrap();
    assert_eq!(burst, rate / 10);
    assert_eq!(slow["stall_s"], 0.5);
    let clients = slow["clients"].as_array().unwrap();
    assert_eq!(clients.len(), 3, "{slow}");
    for c in clients {
        // The bucket's bound: a full bucket, then the rate, over the measured phase.
        let bytes = c["bytes"].as_u64().unwrap();
        let bound = burst + rate * duration.as_secs();
        assert!(bytes > 0 && bytes <= bound, "{bytes} > {bound}: {c}");
        assert_eq!(c["end"], "ok", "{c}");
    }
    let age = &slow["data_age_ms"];
    assert_eq!(age["warmup_s"], 1.0);
    for kind in ["all", "ticker"] {
        let p = &age[kind];
        assert!(p["count"].as_u64().unwrap() > 0, "{kind}: {age}");
        assert!(p["p50"].as_f64().unwrap() > 0.0, "{kind}: {age}");
        assert!(p["max"].as_f64() >= p["p99"].as_f64(), "{kind}: {age}");
    }
    assert!(report
        .table()
        .contains("slow data age after a 1.0 s warm-up"));
}
