//! The HTTP endpoints that share the WebSocket port: `/health`, `/symbols`, `/stats`,
//! `/metrics` and the page at `/`. They read counters (atomics) and never touch a
//! worker's hot state, so they cost the data path nothing.
//!
//! Latency figures are the costly part (every thread's HdrHistograms merged): they are
//! computed at most once a second, off the fan-out path, by the engine's stats thread
//! ([`EngineShared::refresh_latency`], started by `server::start`) into a
//! [`LatencySnapshot`] that requests only read (an `Arc` clone under a lock held for
//! that long). Counters are read live on each request: a few hundred relaxed loads.

use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hdrhistogram::Histogram;

use serde_json::{json, Map, Value};

use crate::config::EngineConfig;
use crate::feed::{FeedShared, FeedState};
use crate::latency::{self, LatencySlot, Stage};
use crate::stats::{CloseReason, WorkerStats};
use crate::symbol::SymbolRegistry;

/// What the control plane sees of a running engine.
#[derive(Debug)]
pub struct EngineShared {
    /// Every symbol.
    pub registry: Arc<SymbolRegistry>,
    /// Every feed.
    pub feeds: Vec<Arc<FeedShared>>,
    /// Every worker's counters.
    pub workers: Vec<Arc<WorkerStats>>,
    /// The configuration in force.
    pub cfg: Arc<EngineConfig>,
    /// When the engine started.
    pub started: Instant,
    /// Connection limits, shared by the workers.
    pub admission: Arc<crate::admission::Admission>,
    /// Links to outside services (a cluster node's NATS connection).
    pub links: Vec<Arc<LinkStatus>>,
    /// Which symbols the clients want (kept by the workers).
    pub interest: Arc<crate::interest::Interest>,
    /// TLS (`https`/`wss`) when a certificate is configured; its certificate reloads.
    pub tls: Option<Arc<crate::tls::TlsSetup>>,
    /// Token checks when a secret is configured; `None`: the engine is open.
    pub auth: Option<Arc<crate::auth::Authenticator>>,
    /// The latest latency figures (see the module doc).
    pub latency: LatencyBoard,
    /// The epoch of this engine's seqs (version 2's `subscribed.epoch`).
    pub epoch: Arc<str>,
}

/// Histogram merges done on a worker thread (`tickwire-worker-*`): 0 by design (the stats
/// thread merges); tests read it.
pub static MERGES_ON_WORKERS: AtomicU64 = AtomicU64::new(0);

/// Every thread's latency histograms merged at one moment, and the texts derived from
/// them; built by [`EngineShared::refresh_latency`].
#[derive(Debug)]
pub struct LatencySnapshot {
    /// Raised by one on each refresh (0: the empty one made at start).
    pub seq: u64,
    /// When it was computed.
    pub computed_at: Instant,
    stats_cumulative: Value,
    stats_window: Value,
    /// Per feed (in `EngineShared::feeds` order): its `exchange_to_ingest` summary.
    feed_exchange_to_ingest: Vec<Value>,
    /// The latency part of `/metrics`.
    metrics: String,
    /// Per stage (in [`Stage::ALL`] order), cumulative, for `/latency/<stage>.hgrm`.
    cumulative: Vec<Histogram<u64>>,
}

/// Where the stats thread leaves the latest [`LatencySnapshot`] for requests.
#[derive(Debug, Default)]
pub struct LatencyBoard {
    latest: Mutex<Option<Arc<LatencySnapshot>>>,
}

impl LatencyBoard {
    /// The latest snapshot, if one was made.
    pub fn latest(&self) -> Option<Arc<LatencySnapshot>> {
        // A poisoned lock only means a holder panicked while cloning an Arc.
        self.latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn store(&self, snapshot: Arc<LatencySnapshot>) {
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = Some(snapshot);
    }
}

impl EngineShared {
    /// Merges every thread's histograms into a new [`LatencySnapshot`] and makes it the
    /// latest. The stats thread calls it once a second; it takes each thread's slot lock
    /// briefly, one after the other.
    pub fn refresh_latency(&self) -> Arc<LatencySnapshot> {
        self.refresh_latency_between(|| {})
    }

    /// [`EngineShared::refresh_latency`] for the stats thread: it gives up the CPU
    /// between stages. The stats thread shares a core with a worker or a feed wherever
    /// threads outnumber cores, and the scheduler may run it while they are runnable
    /// (until its next tick, 4 ms at 250 Hz). In steps, a worker waits for one stage's
    /// merge at most, not the whole refresh.
    pub fn refresh_latency_yielding(&self) -> Arc<LatencySnapshot> {
        self.refresh_latency_between(std::thread::yield_now)
    }

    fn refresh_latency_between(&self, mut between: impl FnMut()) -> Arc<LatencySnapshot> {
        if std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with("tickwire-worker"))
        {
            MERGES_ON_WORKERS.fetch_add(1, Ordering::Relaxed);
        }
        let seq = self.latency.latest().map_or(0, |s| s.seq + 1);
        let slots = latency_slots(self);
        let merged: Vec<(Histogram<u64>, Histogram<u64>)> = Stage::ALL
            .iter()
            .map(|&stage| {
                between();
                latency::merged(&slots, stage)
            })
            .collect();
        between();
        let feed_e2i: Vec<Histogram<u64>> = self
            .feeds
            .iter()
            .map(|f| {
                latency::merged(
                    std::slice::from_ref(&f.stats.latency),
                    Stage::ExchangeToIngest,
                )
                .0
            })
            .collect();
        let per_stage = |window: bool| -> Value {
            let mut out = Map::new();
            for (stage, (cumulative, recent)) in Stage::ALL.iter().zip(&merged) {
                out.insert(
                    stage.name().into(),
                    latency::summary(if window { recent } else { cumulative }),
                );
            }
            Value::Object(out)
        };
        between();
        let stats_cumulative = per_stage(false);
        between();
        let stats_window = per_stage(true);
        between();
        let metrics = latency_metrics(self, &merged, &feed_e2i);
        let snapshot = Arc::new(LatencySnapshot {
            seq,
            computed_at: Instant::now(),
            stats_cumulative,
            stats_window,
            feed_exchange_to_ingest: feed_e2i.iter().map(latency::summary).collect(),
            metrics,
            cumulative: merged.into_iter().map(|(c, _)| c).collect(),
        });
        self.latency.store(snapshot.clone());
        snapshot
    }

    /// The latest snapshot (one is made on the spot, once, if the stats thread has not
    /// made one yet).
    fn latency_snapshot(&self) -> Arc<LatencySnapshot> {
        match self.latency.latest() {
            Some(s) => s,
            None => self.refresh_latency(),
        }
    }
}

/// The state of a link to an outside service (a cluster node's NATS connection), set by
/// whoever owns the connection and read by `/health` and `/stats` (Relaxed: statistics).
#[derive(Debug)]
pub struct LinkStatus {
    /// What `/health` calls it (`nats nats://127.0.0.1:4222`).
    pub name: String,
    up: std::sync::atomic::AtomicBool,
    /// Times the link came back after it was lost.
    pub reconnects: std::sync::atomic::AtomicU64,
}

impl LinkStatus {
    /// A link named `name`, down until [`LinkStatus::set_up`] says otherwise.
    pub fn new(name: impl Into<String>) -> LinkStatus {
        LinkStatus {
            name: name.into(),
            up: std::sync::atomic::AtomicBool::new(false),
            reconnects: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Whether the link is up.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Records the link going up or down (a down-to-up change counts a reconnect after
    /// the first).
    pub fn set_up(&self, up: bool, first: bool) {
        let was = self.up.swap(up, Ordering::Relaxed);
        if up && !was && !first {
            self.reconnects.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The dashboard served at `/` (see `docs/dashboard.md`); its scripts and style sheet are
/// [`DASHBOARD_JS`], [`DASHBOARD_WORKER_JS`] and [`DASHBOARD_CSS`], all embedded in the
/// binary.
pub const INDEX_HTML: &str = include_str!("dashboard/index.html");

/// The dashboard's script, served at `/dashboard.js`.
pub const DASHBOARD_JS: &str = include_str!("dashboard/dashboard.js");

/// The dashboard's worker (a module worker on [`TICKWIRE_CLIENT_JS`]: the market state the
/// page shows), served at `/dashboard-worker.js`.
pub const DASHBOARD_WORKER_JS: &str = include_str!("dashboard/dashboard-worker.js");

/// The tickwire client library (`clients/js/src/index.js`, an ES module), served at
/// `/tickwire-client.js`: the dashboard's worker imports it, and any page of this origin
/// may. Embedded from the library's own source so that there is one implementation.
pub const TICKWIRE_CLIENT_JS: &str = include_str!("../../clients/js/src/index.js");

/// The dashboard's style sheet, served at `/dashboard.css`.
pub const DASHBOARD_CSS: &str = include_str!("dashboard/dashboard.css");

/// `(healthy, reason)`: healthy while every feed is live and every worker runs.
pub fn health(shared: &EngineShared) -> (bool, String) {
    let mut not_live: Vec<String> = shared
        .feeds
        .iter()
        .filter(|f| f.stats.state() != FeedState::Live)
        .map(|f| format!("feed {} is {}", f.name, f.stats.state().as_str()))
        .collect();
    not_live.extend(
        shared
            .links
            .iter()
            .filter(|l| !l.is_up())
            .map(|l| format!("link {} is down", l.name)),
    );
    not_live.extend(
        shared
            .workers
            .iter()
            .enumerate()
            .filter(|(_, w)| load(&w.failed) != 0)
            .map(|(i, _)| {
                format!(
                    "worker {i} failed (its fan-out panicked; its clients were closed with 1011)"
                )
            }),
    );
    if not_live.is_empty() {
        (true, "ok\n".into())
    } else {
        (false, format!("{}\n", not_live.join("; ")))
    }
}

/// `GET /symbols`: a JSON array of names.
pub fn symbols_json(shared: &EngineShared) -> String {
    let names: Vec<&str> = shared.registry.iter().map(|s| s.name.as_str()).collect();
    serde_json::to_string(&names).unwrap_or_else(|_| "[]".into())
}

fn sum(shared: &EngineShared, f: impl Fn(&WorkerStats) -> u64) -> u64 {
    shared.workers.iter().map(|w| f(w)).sum()
}

fn load(a: &std::sync::atomic::AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// `GET /stats`: feeds, clients and workers as JSON.
pub fn stats_json(shared: &EngineShared) -> String {
    let uptime = shared.started.elapsed().as_secs_f64();
    let snapshot = shared.latency_snapshot();
    let feeds: Vec<Value> = shared
        .feeds
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let s = &f.stats;
            let ticks = load(&s.ticks);
            json!({
                "name": f.name,
                "state": s.state().as_str(),
                "symbols": f.symbols.len(),
                "messages": load(&s.messages),
                "ticks": ticks,
                "ticks_per_s": load(&s.ticks_last_second),
                "ticks_per_s_average": if uptime > 0.0 { ticks as f64 / uptime } else { 0.0 },
                "decode_errors": load(&s.decode_errors),
                "reconnects": load(&s.reconnects),
                "restarts": load(&s.restarts),
                "gaps": load(&s.gaps),
                "checksum_failures": load(&s.checksum_failures),
                "resyncs": load(&s.resyncs),
                "trades_missed": load(&s.trades_missed),
                "resyncs_served": load(&s.resyncs_served),
                "exchange_to_ingest": snapshot.feed_exchange_to_ingest.get(i).cloned().unwrap_or(Value::Null),
            })
        })
        .collect();
    let mut closed = Map::new();
    for (i, reason) in CloseReason::ALL.iter().enumerate() {
        closed.insert(
            reason.as_str().into(),
            json!(sum(shared, |w| load(&w.closed[i]))),
        );
    }
    let workers: Vec<Value> = shared
        .workers
        .iter()
        .enumerate()
        .map(|(i, w)| {
            json!({
                "worker": i,
                "clients": load(&w.clients),
                "ticks": load(&w.ticks),
                "frames_encoded": load(&w.frames_encoded),
                "messages_sent": load(&w.messages_sent),
                "bytes_sent": load(&w.bytes_sent),
                "conflated": load(&w.conflated),
                "gaps_sent": load(&w.gaps_sent),
                "trades_skipped": load(&w.trades_skipped),
                "snapshots_resent": load(&w.snapshots_resent),
                "trades_replayed": load(&w.trades_replayed),
                "book_merges": load(&w.book_merges),
                "book_snapshots_instead": load(&w.book_snapshots_instead),
                "ring_laps": load(&w.ring_laps),
                "ring_missed": load(&w.ring_missed),
                "peak_outbox_bytes": load(&w.peak_outbox_bytes),
                "writes": load(&w.writes),
                "flush_rounds": load(&w.flush_rounds),
                "coalesce_window_us": load(&w.coalesce_window_us),
                "busy_share": load(&w.busy_permille) as f64 / 1000.0,
                "pongs_dropped": load(&w.pongs_dropped),
                "stale_conflations": load(&w.stale_conflations),
                "failed": load(&w.failed) != 0,
            })
        })
        .collect();
    let v = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "config": &*shared.cfg,
        "uptime_s": uptime,
        "feeds": feeds,
        "clients": {
            "count": sum(shared, |w| load(&w.clients)),
            "connections_total": sum(shared, |w| load(&w.connections_total)),
            "connections_refused": sum(shared, |w| load(&w.connections_refused)),
            "upgrades_unauthorized": sum(shared, |w| load(&w.upgrades_unauthorized)),
            "tls_handshakes_failed": sum(shared, |w| load(&w.tls_handshakes_failed)),
            "connections_held": shared.admission.connections(),
            "subscriptions": sum(shared, |w| load(&w.subscriptions)),
            "messages_sent": sum(shared, |w| load(&w.messages_sent)),
            "bytes_sent": sum(shared, |w| load(&w.bytes_sent)),
            "conflated": sum(shared, |w| load(&w.conflated)),
            "gaps": sum(shared, |w| load(&w.gaps_sent)),
            "trades_skipped": sum(shared, |w| load(&w.trades_skipped)),
            "snapshots_resent": sum(shared, |w| load(&w.snapshots_resent)),
            "trades_replayed": sum(shared, |w| load(&w.trades_replayed)),
            "book_merges": sum(shared, |w| load(&w.book_merges)),
            "book_snapshots_instead": sum(shared, |w| load(&w.book_snapshots_instead)),
            "errors_sent": sum(shared, |w| load(&w.errors_sent)),
            "writes": sum(shared, |w| load(&w.writes)),
            "flush_rounds": sum(shared, |w| load(&w.flush_rounds)),
            "pongs_dropped": sum(shared, |w| load(&w.pongs_dropped)),
            "stale_conflations": sum(shared, |w| load(&w.stale_conflations)),
            "peak_outbox_bytes": shared.workers.iter().map(|w| load(&w.peak_outbox_bytes)).max().unwrap_or(0),
            "closed": closed,
        },
        "workers": workers,
        "links": shared.links.iter().map(|l| json!({
            "name": l.name,
            "up": l.is_up(),
            "reconnects": load(&l.reconnects),
        })).collect::<Vec<Value>>(),
        "latency": snapshot.stats_cumulative,
        "latency_window": snapshot.stats_window,
        "latency_snapshot": {
            "seq": snapshot.seq,
            "age_ms": snapshot.computed_at.elapsed().as_millis() as u64,
        },
    });
    v.to_string()
}

/// Every thread's latency slot (feeds first, then workers).
pub fn latency_slots(shared: &EngineShared) -> Vec<LatencySlot> {
    shared
        .feeds
        .iter()
        .map(|f| f.stats.latency.clone())
        .chain(shared.workers.iter().map(|w| w.latency.clone()))
        .collect()
}

/// `GET /latency/<stage>.hgrm`: the stage's cumulative histogram as an HdrHistogram
/// percentile distribution, values in microseconds; `None` for an unknown stage.
pub fn latency_hgrm(shared: &EngineShared, stage: &str) -> Option<String> {
    let i = Stage::ALL.iter().position(|s| s.name() == stage)?;
    let snapshot = shared.latency_snapshot();
    let h = snapshot.cumulative.get(i)?;
    Some(crate::hgrm::percentile_distribution(h, 5, 1000.0))
}

/// `GET /metrics`: the same figures in the Prometheus text format.
pub fn metrics_text(shared: &EngineShared) -> String {
    let mut out = String::new();
    let mut counter = |name: &str, help: &str, kind: &str, samples: &[(String, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    let per_feed = |f: &dyn Fn(&FeedShared) -> u64| -> Vec<(String, u64)> {
        shared
            .feeds
            .iter()
            .map(|feed| (format!("{{feed=\"{}\"}}", feed.name), f(feed)))
            .collect()
    };
    counter(
        "tickwire_feed_messages_total",
        "Venue messages received.",
        "counter",
        &per_feed(&|f| load(&f.stats.messages)),
    );
    counter(
        "tickwire_feed_ticks_total",
        "Ticks published.",
        "counter",
        &per_feed(&|f| load(&f.stats.ticks)),
    );
    counter(
        "tickwire_feed_decode_errors_total",
        "Venue messages that failed to decode.",
        "counter",
        &per_feed(&|f| load(&f.stats.decode_errors)),
    );
    counter(
        "tickwire_feed_reconnects_total",
        "Reconnects to the venue.",
        "counter",
        &per_feed(&|f| load(&f.stats.reconnects)),
    );
    counter(
        "tickwire_feed_restarts_total",
        "Restarts after the feed panicked.",
        "counter",
        &per_feed(&|f| load(&f.stats.restarts)),
    );
    counter(
        "tickwire_feed_gaps_total",
        "Sequence gaps detected in the venue's stream.",
        "counter",
        &per_feed(&|f| load(&f.stats.gaps)),
    );
    counter(
        "tickwire_feed_checksum_failures_total",
        "Book checksums that did not match the venue's.",
        "counter",
        &per_feed(&|f| load(&f.stats.checksum_failures)),
    );
    counter(
        "tickwire_feed_resyncs_total",
        "Per-symbol book resyncs started by the feed.",
        "counter",
        &per_feed(&|f| load(&f.stats.resyncs)),
    );
    counter(
        "tickwire_feed_trades_missed_total",
        "Venue trades known to be missed (trade-id gaps).",
        "counter",
        &per_feed(&|f| load(&f.stats.trades_missed)),
    );
    counter(
        "tickwire_feed_state",
        "Feed state: 0 connecting, 1 live, 2 disconnected, 3 stopped, 4 resyncing, 5 restarting.",
        "gauge",
        &per_feed(&|f| f.stats.state() as u64),
    );
    counter(
        "tickwire_feed_live",
        "1 while the feed is live.",
        "gauge",
        &per_feed(&|f| u64::from(f.stats.state() == FeedState::Live)),
    );
    let total = |name: &str, help: &str, kind: &str, f: &dyn Fn(&WorkerStats) -> u64| {
        (
            name.to_owned(),
            help.to_owned(),
            kind.to_owned(),
            sum(shared, f),
        )
    };
    let rows = [
        total(
            "tickwire_clients",
            "Connected WebSocket clients.",
            "gauge",
            &|w| load(&w.clients),
        ),
        total(
            "tickwire_connections_total",
            "WebSocket connections accepted.",
            "counter",
            &|w| load(&w.connections_total),
        ),
        total(
            "tickwire_subscriptions",
            "Symbol-channel pairs subscribed.",
            "gauge",
            &|w| load(&w.subscriptions),
        ),
        total(
            "tickwire_messages_sent_total",
            "Frames written to clients.",
            "counter",
            &|w| load(&w.messages_sent),
        ),
        total(
            "tickwire_sent_bytes_total",
            "Bytes written to clients.",
            "counter",
            &|w| load(&w.bytes_sent),
        ),
        total(
            "tickwire_conflated_total",
            "State messages superseded before sending.",
            "counter",
            &|w| load(&w.conflated),
        ),
        total(
            "tickwire_gaps_total",
            "gap messages sent.",
            "counter",
            &|w| load(&w.gaps_sent),
        ),
        total(
            "tickwire_trades_skipped_total",
            "Trades skipped inside gaps.",
            "counter",
            &|w| load(&w.trades_skipped),
        ),
        total(
            "tickwire_snapshots_resent_total",
            "Book snapshots resent to resynchronise clients.",
            "counter",
            &|w| load(&w.snapshots_resent),
        ),
        total(
            "tickwire_trades_replayed_total",
            "Trades replayed from the history to version 2 clients recovering with since.",
            "counter",
            &|w| load(&w.trades_replayed),
        ),
        total(
            "tickwire_book_merges_total",
            "Merged book updates sent to version 2 clients in place of missed updates.",
            "counter",
            &|w| load(&w.book_merges),
        ),
        total(
            "tickwire_book_snapshots_instead_total",
            "Snapshots sent to version 2 clients in place of missed updates (a merge would be larger, or their state is no longer known).",
            "counter",
            &|w| load(&w.book_snapshots_instead),
        ),
        total(
            "tickwire_workers_failed",
            "Workers whose fan-out failed (panicked).",
            "gauge",
            &|w| load(&w.failed),
        ),
        total(
            "tickwire_writes_total",
            "Vectored write calls to client sockets.",
            "counter",
            &|w| load(&w.writes),
        ),
        total(
            "tickwire_flush_rounds_total",
            "Write rounds (every pending client written once).",
            "counter",
            &|w| load(&w.flush_rounds),
        ),
        total(
            "tickwire_stale_conflations_total",
            "Subscriptions conflated for passing the staleness limit.",
            "counter",
            &|w| load(&w.stale_conflations),
        ),
        total(
            "tickwire_ring_laps_total",
            "Times a worker was lapped by a ring.",
            "counter",
            &|w| load(&w.ring_laps),
        ),
    ];
    for (name, help, kind, v) in rows {
        counter(&name, &help, &kind, &[(String::new(), v)]);
    }
    let closed: Vec<(String, u64)> = CloseReason::ALL
        .iter()
        .enumerate()
        .map(|(i, r)| {
            (
                format!("{{reason=\"{}\"}}", r.as_str()),
                sum(shared, |w| load(&w.closed[i])),
            )
        })
        .collect();
    counter(
        "tickwire_connections_closed_total",
        "Connections closed, by reason.",
        "counter",
        &closed,
    );
    // Gauges per worker, in seconds and shares as Prometheus prefers (fractions).
    let mut per_worker = |name: &str, help: &str, f: &dyn Fn(&WorkerStats) -> f64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (i, w) in shared.workers.iter().enumerate() {
            let _ = writeln!(out, "{name}{{worker=\"{i}\"}} {}", f(w));
        }
    };
    per_worker(
        "tickwire_worker_coalesce_window_seconds",
        "The write-coalescing window in force (0: writes at once).",
        &|w| load(&w.coalesce_window_us) as f64 / 1e6,
    );
    per_worker(
        "tickwire_worker_busy_share",
        "Share of the worker's core it did not spend parked, over the last 20 ms.",
        &|w| load(&w.busy_permille) as f64 / 1000.0,
    );
    out.push_str(&shared.latency_snapshot().metrics);
    out
}

/// The latency part of `/metrics`: a summary per feed (`exchange_to_ingest`) and per
/// stage, from merged histograms.
fn latency_metrics(
    shared: &EngineShared,
    merged: &[(Histogram<u64>, Histogram<u64>)],
    feed_e2i: &[Histogram<u64>],
) -> String {
    let mut out = String::new();
    let name = "tickwire_feed_exchange_to_ingest_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Venue event time to ingest, per feed.\n# TYPE {name} summary"
    );
    for (feed, h) in shared.feeds.iter().zip(feed_e2i) {
        for q in [0.5, 0.99] {
            let v = if h.is_empty() {
                f64::NAN
            } else {
                h.value_at_quantile(q) as f64 / 1e9
            };
            let _ = writeln!(out, "{name}{{feed=\"{}\",quantile=\"{q}\"}} {v}", feed.name);
        }
        let _ = writeln!(out, "{name}_count{{feed=\"{}\"}} {}", feed.name, h.len());
    }
    for (stage, (h, _)) in Stage::ALL.iter().zip(merged) {
        let name = format!("tickwire_{}_seconds", stage.name());
        let _ = writeln!(out, "# HELP {name} {}\n# TYPE {name} summary", stage.help());
        let values = latency::quantiles(h);
        for (q, v) in latency::SUMMARY_QUANTILES.iter().zip(values) {
            let v = if h.is_empty() {
                f64::NAN
            } else {
                v as f64 / 1e9
            };
            let _ = writeln!(out, "{name}{{quantile=\"{q}\"}} {v}");
        }
        let _ = writeln!(out, "{name}_sum {}", h.mean() * h.len() as f64 / 1e9);
        let _ = writeln!(out, "{name}_count {}", h.len());
    }
    out
}
