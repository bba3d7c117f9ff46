//! `tickwire stats`: a live view of a running engine's `/stats` in the terminal.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::Value;

use crate::fetch;

const STAGES: [&str; 5] = [
    "feed_decode",
    "exchange_to_ingest",
    "ingest_to_encode",
    "tick_to_wire",
    "outbox_wait",
];

fn us(v: &Value) -> String {
    v.as_u64().map_or_else(
        || "-".to_owned(),
        |ns| format!("{:.1}", ns as f64 / 1_000.0),
    )
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// Renders one screen from the current and previous `/stats` (for rates).
pub fn render(now: &Value, prev: Option<(&Value, f64)>) -> String {
    let mut out = String::new();
    let rate = |path: &dyn Fn(&Value) -> u64| -> f64 {
        prev.map_or(0.0, |(p, secs)| {
            (path(now).saturating_sub(path(p))) as f64 / secs.max(1e-9)
        })
    };
    out.push_str(&format!(
        "tickwire — up {:.0} s\n\nfeeds\n  {:<12} {:<13} {:>12} {:>12} {:>8} {:>8}\n",
        now["uptime_s"].as_f64().unwrap_or(0.0),
        "name",
        "state",
        "ticks",
        "ticks/s",
        "errors",
        "gaps"
    ));
    for (i, f) in now["feeds"].as_array().into_iter().flatten().enumerate() {
        let r = rate(&|s: &Value| n(&s["feeds"][i]["ticks"]));
        out.push_str(&format!(
            "  {:<12} {:<13} {:>12} {:>12.0} {:>8} {:>8}\n",
            f["name"].as_str().unwrap_or("?"),
            f["state"].as_str().unwrap_or("?"),
            n(&f["ticks"]),
            r,
            n(&f["decode_errors"]),
            n(&f["gaps"])
        ));
    }
    let c = &now["clients"];
    let msgs = rate(&|s: &Value| n(&s["clients"]["messages_sent"]));
    let bytes = rate(&|s: &Value| n(&s["clients"]["bytes_sent"]));
    out.push_str(&format!(
        "\nclients  {} connected, {} subscriptions, {:.0} msg/s, {:.2} MB/s\n         conflated {}, gaps {}, snapshots resent {}, peak outbox {} B\n",
        n(&c["count"]),
        n(&c["subscriptions"]),
        msgs,
        bytes / 1e6,
        n(&c["conflated"]),
        n(&c["gaps"]),
        n(&c["snapshots_resent"]),
        n(&c["peak_outbox_bytes"])
    ));
    out.push_str("\nworkers  write window (µs)   busy\n");
    for w in now["workers"].as_array().into_iter().flatten() {
        let busy = w["busy_share"]
            .as_f64()
            .map_or_else(|| "-".to_owned(), |b| format!("{:.0}%", b * 100.0));
        out.push_str(&format!(
            "  w{:<6} {:>17} {:>6}\n",
            n(&w["worker"]),
            n(&w["coalesce_window_us"]),
            busy
        ));
    }
    out.push_str(&format!(
        "\nlatency, last 5–10 s (µs)\n  {:<20} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
        "stage", "count", "p50", "p90", "p99", "p99.9", "max"
    ));
    for stage in STAGES {
        let h = &now["latency_window"][stage];
        out.push_str(&format!(
            "  {:<20} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
            stage,
            n(&h["count"]),
            us(&h["p50"]),
            us(&h["p90"]),
            us(&h["p99"]),
            us(&h["p999"]),
            us(&h["max"])
        ));
    }
    out
}

/// Refreshes every `interval` until interrupted, or `count` times when given.
pub fn run(url: &str, interval: Duration, count: Option<u64>, out: &mut impl Write) -> Result<()> {
    let mut prev: Option<(Value, Instant)> = None;
    let mut shown = 0;
    loop {
        let body = fetch::get(url, "/stats")?;
        let now: Value = serde_json::from_str(&body).context("/stats is not JSON")?;
        let t = Instant::now();
        let screen = render(
            &now,
            prev.as_ref()
                .map(|(p, at)| (p, t.duration_since(*at).as_secs_f64())),
        );
        // Clear and home the cursor, then draw.
        write!(out, "\x1b[2J\x1b[H{screen}")?;
        out.flush()?;
        prev = Some((now, t));
        shown += 1;
        if count.is_some_and(|c| shown >= c) {
            return Ok(());
        }
        std::thread::sleep(interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_rates_and_percentiles() {
        let before = json!({"uptime_s": 1.0, "feeds": [{"name":"sim","state":"live","ticks":100}],
            "clients": {"messages_sent": 1000, "bytes_sent": 0}, "latency_window": {}});
        let after = json!({"uptime_s": 2.0, "feeds": [{"name":"sim","state":"live","ticks":1100}],
            "clients": {"count": 3, "messages_sent": 3000, "bytes_sent": 2_000_000},
            "workers": [{"worker": 0, "coalesce_window_us": 0, "busy_share": 0.12},
                        {"worker": 1, "coalesce_window_us": 4000, "busy_share": 0.815}],
            "latency_window": {"tick_to_wire": {"count": 5, "p50": 12_345, "p90": 20_000, "p99": 30_000, "p999": 40_000, "max": 50_000}}});
        let screen = render(&after, Some((&before, 2.0)));
        assert!(screen.contains("500"), "ticks/s: {screen}");
        assert!(screen.contains("1000 msg/s"), "{screen}");
        assert!(screen.contains("12.3"), "p50 in µs: {screen}");
        assert!(screen.contains("3 connected"), "{screen}");
        let row = |w: &str| -> Vec<String> {
            screen
                .lines()
                .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
                .find(|t| t.first().is_some_and(|f| f == w))
                .unwrap_or_default()
        };
        assert_eq!(row("w0"), ["w0", "0", "12%"], "{screen}");
        assert_eq!(row("w1"), ["w1", "4000", "82%"], "{screen}");
    }
}
