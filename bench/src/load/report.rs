//! The result of a load run: per-class figures merged from every client, the summary
//! table, `summary.json` and the `.hgrm` files, and the exit code.
//!
//! Definitions (also in `docs/benchmarks.md`):
//! - **msgs/s, MB/s** of a class: the sum over its clients of messages (bytes read, 10^6
//!   per MB) received in the measured phase divided by that client's own measured time
//!   (subscribe to the end of the phase), so clients that joined during the ramp count
//!   at their real rate.
//! - **latency**: receive wall time of the socket read that brought a message, minus its
//!   `ingest_ts`; every `trade`, book update, resync snapshot and ticker but the first
//!   ticker and snapshot per symbol (sent on subscribe, they carry the state's old
//!   `ingest_ts`). Measured phase only. Needs the engine's clock to be this machine's.
//! - **gaps, skipped, resyncs, violations**: counted over the whole connection, drain
//!   included (see [`super::check`]).
//! - **data age** (slow clients, [`SlowSummary`]): receive wall time − `ingest_ts` of
//!   every data message a slow client got in the measured phase once its warm-up after
//!   subscribing was over, the first ticker and snapshot included (after the warm-up they
//!   are as old as what the client sees); tickers and book snapshots also apart.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::Value;

use super::check::Tally;
use super::client::{histogram, Class, DataAge, Failure, Outcome};
use super::config::{
    Validated, PACED_BURST, SLOW_MESSAGES_PER_PAUSE, SLOW_PAUSE, SLOW_RECV_BUFFER_BYTES,
};
use super::LoadError;
use tickwire_engine::hgrm;

/// Exit code: the run completed and found no violation.
pub const EXIT_OK: u8 = 0;
/// Exit code: trade or book sequence violations were found.
pub const EXIT_VIOLATIONS: u8 = 3;
/// Exit code: no client could connect at all.
pub const EXIT_NO_CONNECTION: u8 = 4;
/// Percentile ticks per half distance in the `.hgrm` files (HdrHistogram's usual 5).
pub const HGRM_TICKS_PER_HALF_DISTANCE: u32 = 5;
/// `.hgrm` values are recorded in ns and written in µs.
pub const HGRM_UNIT_SCALING_RATIO: f64 = 1000.0;
/// Examples kept per class (violations, errors).
const EXAMPLES_PER_CLASS: usize = 10;

/// Everything a run produced.
pub struct Report {
    /// All figures, as written to `summary.json`.
    pub summary: Summary,
    /// Fast clients' latencies merged, ns.
    pub latency_fast: Histogram<u64>,
    /// Slow clients' latencies merged, ns.
    pub latency_slow: Histogram<u64>,
    /// Connect (TCP + handshake) times, ns.
    pub connect: Histogram<u64>,
}

/// `summary.json`.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// `tickwire bench`.
    pub tool: &'static str,
    /// Version of the generator.
    pub version: &'static str,
    /// When the run started, ms since the Unix epoch.
    pub started_unix_ms: u64,
    /// Wall time of the whole run (ramp, measure, drain), seconds.
    pub wall_s: f64,
    /// The run's settings.
    pub params: Params,
    /// The machine the generator ran on.
    pub machine: Machine,
    /// The generator's own CPU time.
    pub generator: Generator,
    /// Per-class figures.
    pub classes: Classes,
    /// How the slow clients read, their data age, and how each ended.
    pub slow: SlowSummary,
    /// Connect times (TCP + handshake), µs.
    pub connect_us: Percentiles,
    /// The ticker convergence check.
    pub convergence: Convergence,
    /// Trade and book violations, all clients.
    pub violations: u64,
    /// The process exit code `tickwire bench` uses (0, 3 or 4).
    pub exit_code: u8,
    /// Why that exit code.
    pub exit_reason: String,
    /// The engine's `/stats` before and after.
    pub engine_stats: EngineStats,
}

/// The run's settings.
#[derive(Clone, Debug, Serialize)]
pub struct Params {
    /// WebSocket URL.
    pub url: String,
    /// `/stats` URL.
    pub stats_url: String,
    /// Clients in all.
    pub clients: usize,
    /// Fast clients.
    pub fast_clients: usize,
    /// Slow clients.
    pub slow_clients: usize,
    /// Generator runtime threads.
    pub threads: usize,
    /// Symbols subscribed.
    pub symbols: Vec<String>,
    /// Channels subscribed.
    pub channels: Vec<String>,
    /// Book depth.
    pub depth: u32,
    /// Measured phase, seconds (ramp included).
    pub duration_s: f64,
    /// Ramp, seconds.
    pub ramp_s: f64,
    /// Drain, seconds.
    pub drain_s: f64,
    /// Share of slow clients asked for.
    pub slow_fraction: f64,
    /// A slow client's `SO_RCVBUF`, bytes.
    pub slow_recv_buffer_bytes: u32,
    /// A slow client pauses after this many messages...
    pub slow_messages_per_pause: u64,
    /// ...for this long, ms (when not paced).
    pub slow_pause_ms: u64,
    /// Slow clients read at most this many bytes per second (`null`: the pauses above).
    pub slow_read_bps: Option<u64>,
    /// Slow clients read nothing for this long after subscribing, s.
    pub slow_stall_s: f64,
    /// The data age leaves out this long after each slow client's subscribe, s.
    pub age_warmup_s: f64,
}

/// The slow clients: how they read, their data age, how each ended.
#[derive(Clone, Debug, Serialize)]
pub struct SlowSummary {
    /// `pause` (a pause every few messages) or `paced` (a token bucket on bytes read).
    pub mode: &'static str,
    /// Paced: bytes per second.
    pub read_bps: Option<u64>,
    /// Paced: most bytes per read (the bucket's capacity).
    pub read_burst_bytes: Option<u64>,
    /// Nothing read for this long after subscribing, s.
    pub stall_s: f64,
    /// Data age, ms (see the module doc).
    pub data_age_ms: DataAgeSummary,
    /// Slow clients the server closed, by close code (`none` without one); the
    /// generator never reconnects, so each client counts at most once.
    pub closed_by_code: BTreeMap<String, u64>,
    /// Each slow client.
    pub clients: Vec<SlowClient>,
}

/// Data age percentiles, ms.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DataAgeSummary {
    /// Left out after each subscribe, s.
    pub warmup_s: f64,
    /// Every data message.
    pub all: Percentiles,
    /// Tickers.
    pub ticker: Percentiles,
    /// Book snapshots.
    pub book_snapshot: Percentiles,
}

/// One slow client.
#[derive(Clone, Debug, Serialize)]
pub struct SlowClient {
    /// Index in start order, from 0 (the same numbering as the ramp).
    pub id: usize,
    /// `ok`, `closed 1008` (by the server, with its code), `eof`, `io`, `protocol`,
    /// `connect failed`, `handshake failed`.
    pub end: String,
    /// Seconds from its subscribe to the failure, when it failed.
    pub failed_after_s: Option<f64>,
    /// Messages in the measured phase.
    pub messages: u64,
    /// Bytes read in the measured phase.
    pub bytes: u64,
    /// Gaps received (drain included).
    pub gaps: u64,
    /// Its data age p99, ms (0 with no data message after the warm-up).
    pub data_age_p99_ms: f64,
    /// Largest data age, ms.
    pub data_age_max_ms: f64,
}

/// The machine.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Machine {
    /// Cores available to this process.
    pub nproc: usize,
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: Option<String>,
    /// Kernel release.
    pub kernel: Option<String>,
    /// `MemTotal` from /proc/meminfo, KiB.
    pub mem_total_kib: Option<u64>,
}

/// The generator's CPU use (the whole process: with an in-process engine, both).
#[derive(Clone, Debug, Serialize)]
pub struct Generator {
    /// User CPU seconds during the run.
    pub cpu_user_s: f64,
    /// System CPU seconds during the run.
    pub cpu_sys_s: f64,
    /// CPU seconds / wall seconds: cores kept busy on average.
    pub cores_busy: f64,
    /// Runtime threads.
    pub threads: usize,
    /// The same from the end of the ramp to the end of the measured phase, when every
    /// client was reading: the figure that says whether the generator was saturated.
    pub steady: Option<SteadyCpu>,
}

/// The generator's CPU over a window of the run.
#[derive(Clone, Debug, Serialize)]
pub struct SteadyCpu {
    /// Start of the window, ns since the Unix epoch.
    pub from_unix_ns: u64,
    /// End of the window, ns since the Unix epoch.
    pub to_unix_ns: u64,
    /// User + system CPU seconds in it.
    pub cpu_s: f64,
    /// `cpu_s` / the window's wall seconds.
    pub cores_busy: f64,
}

impl SteadyCpu {
    /// From ((user, system) CPU s, wall ns) at the start and at the end.
    pub fn between(from: ((f64, f64), u64), to: ((f64, f64), u64)) -> SteadyCpu {
        let cpu_s = (to.0 .0 - from.0 .0) + (to.0 .1 - from.0 .1);
        let wall_s = to.1.saturating_sub(from.1) as f64 / 1e9;
        SteadyCpu {
            from_unix_ns: from.1,
            to_unix_ns: to.1,
            cpu_s,
            cores_busy: if wall_s > 0.0 { cpu_s / wall_s } else { 0.0 },
        }
    }
}

/// Fast and slow.
#[derive(Clone, Debug, Serialize)]
pub struct Classes {
    /// Clients that read as fast as they can.
    pub fast: ClassSummary,
    /// Clients with a small receive buffer that read rarely.
    pub slow: ClassSummary,
}

/// One class's figures.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ClassSummary {
    /// Clients of this class.
    pub clients: usize,
    /// Clients that connected.
    pub connected: usize,
    /// Clients that stayed connected to the end.
    pub finished: usize,
    /// Messages per second, all clients of the class (see the module doc).
    pub msgs_per_s: f64,
    /// `msgs_per_s` / connected clients.
    pub msgs_per_s_per_client: f64,
    /// 10^6 bytes per second read, all clients of the class.
    pub mb_per_s: f64,
    /// End-to-end latency, µs.
    pub latency_us: Percentiles,
    /// Connect times (TCP + handshake) of this class, µs.
    pub connect_us: Percentiles,
    /// Every counter, summed over the class.
    pub counts: Tally,
    /// Trade + book violations.
    pub violations: u64,
    /// The first few violations, as text.
    pub violation_examples: Vec<String>,
    /// Connection failures and closes.
    pub errors: Errors,
}

/// How connections failed, per class.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Errors {
    /// All of the below (server `error` replies not included).
    pub total: u64,
    /// TCP connect failed or timed out.
    pub connect_failed: u64,
    /// The server did not upgrade.
    pub handshake_failed: u64,
    /// Socket errors after connecting.
    pub io: u64,
    /// RFC 6455 violations by the server.
    pub protocol: u64,
    /// Connection ended without a close frame.
    pub eof: u64,
    /// Close frames from the server, by code (`none` without a code).
    pub closed_by_server: BTreeMap<String, u64>,
    /// `error` replies, by code.
    pub server_error_replies: BTreeMap<String, u64>,
    /// The first few failures, as text.
    pub examples: Vec<String>,
}

/// Percentiles of a histogram, µs.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Smallest.
    pub min: f64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

impl Percentiles {
    /// In µs, from a histogram in ns.
    pub fn of_ns(h: &Histogram<u64>) -> Percentiles {
        Percentiles::thousandths(h)
    }

    /// Values of `h` divided by 1000 (ns to µs, µs to ms).
    pub fn thousandths(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let k = |v: u64| v as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            min: k(h.min()),
            mean: h.mean().round() / 1000.0,
            p50: k(h.value_at_quantile(0.5)),
            p90: k(h.value_at_quantile(0.9)),
            p99: k(h.value_at_quantile(0.99)),
            p999: k(h.value_at_quantile(0.999)),
            max: k(h.max()),
        }
    }
}

/// The ticker convergence check (best effort, see [`Convergence::rule`]).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Convergence {
    /// What was checked.
    pub rule: &'static str,
    /// False when no ticker channel was subscribed.
    pub applicable: bool,
    /// Symbols with a reference seq.
    pub symbols: usize,
    /// Clients checked (connected until the end).
    pub checked: usize,
    /// Clients converged on every symbol.
    pub converged: usize,
    /// Fast clients checked / converged.
    pub fast: [usize; 2],
    /// Slow clients checked / converged.
    pub slow: [usize; 2],
}

const CONVERGENCE_RULE: &str = "per symbol, the reference is the highest ticker seq whose \
ingest_ts is at or before the end of the measured phase, over all clients; a client \
converged if, by the end of the drain, it received a ticker at least that new for every \
symbol. Clients that failed are not checked.";

/// The engine's `/stats` around the run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EngineStats {
    /// Where they came from.
    pub url: String,
    /// Before the first connection.
    pub before: Option<Value>,
    /// After the last close.
    pub after: Option<Value>,
    /// `clients` counters after minus before (numbers only).
    pub clients_delta: BTreeMap<String, f64>,
    /// Why a fetch failed.
    pub error: Option<String>,
}

/// What `run` hands to [`build`] besides the outcomes.
pub(crate) struct RunFacts {
    pub started_unix_ms: u64,
    pub wall_s: f64,
    pub cpu_user_s: f64,
    pub cpu_sys_s: f64,
    pub steady: Option<SteadyCpu>,
    pub engine_stats: EngineStats,
    /// Latency per class (fast, slow), ns; `None` if it could not be collected.
    pub latency: Option<[Histogram<u64>; 2]>,
}

/// Merges the clients' outcomes into a report.
pub(crate) fn build(v: &Validated, outcomes: Vec<Outcome>, mut facts: RunFacts) -> Report {
    let cfg = &v.config;
    let mut classes = [ClassSummary::default(), ClassSummary::default()];
    let latency = facts
        .latency
        .take()
        .unwrap_or_else(|| [histogram(), histogram()]);
    let mut connect_by_class = [histogram(), histogram()];
    let mut slow_age = DataAge::new();
    let mut slow_clients = Vec::new();
    let mut closed_by_code: BTreeMap<String, u64> = BTreeMap::new();
    // Convergence reference: per symbol, the highest ticker seq at or before the cut.
    let mut reference: HashMap<&[u8], u64> = HashMap::new();
    for o in &outcomes {
        for (sym, check) in &o.symbols {
            if let Some(seq) = check.ticker_at_cut {
                let r = reference.entry(sym).or_default();
                *r = (*r).max(seq);
            }
        }
    }
    let tickers = cfg.channels.iter().any(|c| c == "ticker");
    let mut convergence = Convergence {
        rule: CONVERGENCE_RULE,
        applicable: tickers,
        symbols: reference.len(),
        ..Convergence::default()
    };
    for o in &outcomes {
        let c = &mut classes[o.class.index()];
        c.clients += 1;
        if let Some(ns) = o.connect_ns {
            c.connected += 1;
            connect_by_class[o.class.index()].saturating_record(ns);
        }
        if o.connect_ns.is_some() && o.failure.is_none() {
            c.finished += 1;
            if tickers {
                let converged = reference.iter().all(|(sym, want)| {
                    o.symbols
                        .get(*sym)
                        .and_then(|s| s.ticker_max)
                        .is_some_and(|got| got >= *want)
                });
                let slot = match o.class {
                    Class::Fast => &mut convergence.fast,
                    Class::Slow => &mut convergence.slow,
                };
                slot[0] += 1;
                convergence.checked += 1;
                if converged {
                    slot[1] += 1;
                    convergence.converged += 1;
                }
            }
        }
        if o.measured_secs > 0.0 {
            c.msgs_per_s += o.tally.messages as f64 / o.measured_secs;
            c.mb_per_s += o.tally.bytes as f64 / o.measured_secs / 1e6;
        }
        c.counts.add(&o.tally);
        for e in &o.examples {
            if c.violation_examples.len() < EXAMPLES_PER_CLASS {
                c.violation_examples.push(e.clone());
            }
        }
        for (code, n) in &o.error_codes {
            *c.errors
                .server_error_replies
                .entry(code.clone())
                .or_default() += n;
        }
        if let Some(f) = &o.failure {
            let e = &mut c.errors;
            e.total += 1;
            match f {
                Failure::Connect(_) => e.connect_failed += 1,
                Failure::Handshake(_) => e.handshake_failed += 1,
                Failure::Io(_) => e.io += 1,
                Failure::Protocol(_) => e.protocol += 1,
                Failure::Eof => e.eof += 1,
                Failure::Closed(code) => {
                    let key = code.map_or("none".into(), |c| c.to_string());
                    *e.closed_by_server.entry(key).or_default() += 1;
                }
            }
            if e.examples.len() < EXAMPLES_PER_CLASS {
                e.examples.push(format!("{f:?}"));
            }
        }
        if o.class == Class::Slow {
            if let Some(Failure::Closed(code)) = &o.failure {
                let key = code.map_or("none".into(), |c| c.to_string());
                *closed_by_code.entry(key).or_default() += 1;
            }
            if let Some(age) = &o.data_age {
                slow_age.add(age);
            }
            slow_clients.push(slow_client(o));
        }
    }
    let mut connect = histogram();
    for ((c, h), ch) in classes.iter_mut().zip(&latency).zip(&connect_by_class) {
        c.latency_us = Percentiles::of_ns(h);
        c.connect_us = Percentiles::of_ns(ch);
        // Same bounds everywhere: adding cannot fail.
        let _ = connect.add(ch);
        c.violations = c.counts.violations();
        if c.connected > 0 {
            c.msgs_per_s_per_client = c.msgs_per_s / c.connected as f64;
        }
    }
    let violations = classes.iter().map(|c| c.violations).sum();
    let connected: usize = classes.iter().map(|c| c.connected).sum();
    let (exit_code, exit_reason) = if connected == 0 {
        (EXIT_NO_CONNECTION, "no client could connect".to_owned())
    } else if violations > 0 {
        (
            EXIT_VIOLATIONS,
            format!("{violations} trade/book sequence violations"),
        )
    } else {
        (EXIT_OK, "ok".to_owned())
    };
    let [fast, slow] = classes;
    let [latency_fast, latency_slow] = latency;
    let cpu = facts.cpu_user_s + facts.cpu_sys_s;
    let summary = Summary {
        tool: "tickwire bench",
        version: env!("CARGO_PKG_VERSION"),
        started_unix_ms: facts.started_unix_ms,
        wall_s: facts.wall_s,
        params: Params {
            url: cfg.url.clone(),
            stats_url: format!("http://{}", v.stats),
            clients: cfg.clients,
            fast_clients: cfg.clients - v.slow_clients,
            slow_clients: v.slow_clients,
            threads: cfg.threads,
            symbols: cfg.symbols.clone(),
            channels: cfg.channels.clone(),
            depth: cfg.depth,
            duration_s: cfg.duration.as_secs_f64(),
            ramp_s: cfg.ramp.as_secs_f64(),
            drain_s: cfg.drain.as_secs_f64(),
            slow_fraction: cfg.slow_fraction,
            slow_recv_buffer_bytes: SLOW_RECV_BUFFER_BYTES,
            slow_messages_per_pause: SLOW_MESSAGES_PER_PAUSE,
            slow_pause_ms: SLOW_PAUSE.as_millis() as u64,
            slow_read_bps: cfg.slow_read_bps,
            slow_stall_s: cfg.slow_stall.as_secs_f64(),
            age_warmup_s: cfg.age_warmup.as_secs_f64(),
        },
        machine: machine(),
        generator: Generator {
            cpu_user_s: facts.cpu_user_s,
            cpu_sys_s: facts.cpu_sys_s,
            cores_busy: if facts.wall_s > 0.0 {
                cpu / facts.wall_s
            } else {
                0.0
            },
            threads: cfg.threads,
            steady: facts.steady,
        },
        classes: Classes { fast, slow },
        slow: SlowSummary {
            mode: if cfg.slow_read_bps.is_some() {
                "paced"
            } else {
                "pause"
            },
            read_bps: cfg.slow_read_bps,
            read_burst_bytes: cfg.slow_read_bps.map(|bps| {
                super::pace::TokenBucket::with_burst(bps, PACED_BURST, Duration::ZERO).capacity()
            }),
            stall_s: cfg.slow_stall.as_secs_f64(),
            data_age_ms: DataAgeSummary {
                warmup_s: cfg.age_warmup.as_secs_f64(),
                all: Percentiles::thousandths(&slow_age.all),
                ticker: Percentiles::thousandths(&slow_age.ticker),
                book_snapshot: Percentiles::thousandths(&slow_age.book_snapshot),
            },
            closed_by_code,
            clients: slow_clients,
        },
        connect_us: Percentiles::of_ns(&connect),
        convergence,
        violations,
        exit_code,
        exit_reason,
        engine_stats: facts.engine_stats,
    };
    Report {
        summary,
        latency_fast,
        latency_slow,
        connect,
    }
}

/// One slow client's line in the summary.
fn slow_client(o: &Outcome) -> SlowClient {
    let end = match &o.failure {
        None => "ok".to_owned(),
        Some(Failure::Closed(Some(code))) => format!("closed {code}"),
        Some(Failure::Closed(None)) => "closed".to_owned(),
        Some(Failure::Eof) => "eof".to_owned(),
        Some(Failure::Io(_)) => "io".to_owned(),
        Some(Failure::Protocol(_)) => "protocol".to_owned(),
        Some(Failure::Connect(_)) => "connect failed".to_owned(),
        Some(Failure::Handshake(_)) => "handshake failed".to_owned(),
    };
    let age = |q: f64| {
        o.data_age
            .as_ref()
            .filter(|a| !a.all.is_empty())
            .map_or(0.0, |a| a.all.value_at_quantile(q) as f64 / 1000.0)
    };
    SlowClient {
        id: o.id,
        end,
        failed_after_s: o.failed_after_s,
        messages: o.tally.messages,
        bytes: o.tally.bytes,
        gaps: o.tally.gaps,
        data_age_p99_ms: age(0.99),
        data_age_max_ms: age(1.0),
    }
}

/// nproc, CPU model, kernel, memory, from /proc where it exists.
pub fn machine() -> Machine {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let field = |text: &Option<String>, key: &str| {
        text.as_ref()?.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == key).then(|| v.trim().to_owned())
        })
    };
    let cpuinfo = read("/proc/cpuinfo");
    let meminfo = read("/proc/meminfo");
    Machine {
        nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model: field(&cpuinfo, "model name"),
        kernel: read("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned()),
        mem_total_kib: field(&meminfo, "MemTotal")
            .and_then(|v| v.trim_end_matches("kB").trim().parse().ok()),
    }
}

impl Report {
    /// The process exit code for this run: [`EXIT_OK`], [`EXIT_VIOLATIONS`] or
    /// [`EXIT_NO_CONNECTION`].
    pub fn exit_code(&self) -> u8 {
        self.summary.exit_code
    }

    /// The human-readable summary: one row per class, then connect times, convergence,
    /// the generator's CPU and the engine's counters.
    pub fn table(&self) -> String {
        let s = &self.summary;
        let p = &s.params;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "tickwire bench: {} clients ({} fast, {} slow) on {}, {:.1} s measured + {:.1} s drain; \
             symbols {}; channels {}; depth {}",
            p.clients,
            p.fast_clients,
            p.slow_clients,
            p.url,
            p.duration_s,
            p.drain_s,
            p.symbols.join(","),
            p.channels.join(","),
            p.depth
        );
        let _ = writeln!(
            out,
            "\n{:<5} {:>7} {:>10} {:>9} {:>6} {:>8} {:>8} {:>8} {:>9} {:>9} {:>6} {:>8} {:>7} {:>5} {:>6}",
            "class", "clients", "messages", "msgs/s", "MB/s", "p50 µs", "p90 µs", "p99 µs",
            "p99.9 µs", "max µs", "gaps", "skipped", "resyncs", "viol", "errors"
        );
        for (name, c) in [("fast", &s.classes.fast), ("slow", &s.classes.slow)] {
            let l = &c.latency_us;
            let errors = c.errors.total + c.errors.server_error_replies.values().sum::<u64>();
            let _ = writeln!(
                out,
                "{:<5} {:>7} {:>10} {:>9.0} {:>6.2} {:>8.1} {:>8.1} {:>8.1} {:>9.1} {:>9.1} {:>6} {:>8} {:>7} {:>5} {:>6}",
                name,
                c.clients,
                c.counts.messages,
                c.msgs_per_s,
                c.mb_per_s,
                l.p50,
                l.p90,
                l.p99,
                l.p999,
                l.max,
                c.counts.gaps,
                c.counts.trades_skipped,
                c.counts.resyncs,
                c.violations,
                errors
            );
        }
        if p.slow_clients > 0 {
            out.push_str(&self.slow_lines());
        }
        let cu = &s.connect_us;
        let connected = s.classes.fast.connected + s.classes.slow.connected;
        let _ = writeln!(
            out,
            "\nconnect: {connected}/{} connected; p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
            p.clients, cu.p50, cu.p99, cu.max
        );
        let cv = &s.convergence;
        if cv.applicable {
            let _ = writeln!(
                out,
                "tickers converged: {}/{} clients checked (fast {}/{}, slow {}/{})",
                cv.converged, cv.checked, cv.fast[1], cv.fast[0], cv.slow[1], cv.slow[0]
            );
        }
        let conflated =
            s.classes.fast.counts.ticker_seqs_skipped + s.classes.slow.counts.ticker_seqs_skipped;
        let _ = writeln!(
            out,
            "ticker seqs skipped (conflation): fast {}, slow {}; total {conflated}",
            s.classes.fast.counts.ticker_seqs_skipped, s.classes.slow.counts.ticker_seqs_skipped
        );
        let g = &s.generator;
        let _ = writeln!(
            out,
            "generator CPU: {:.2} s user + {:.2} s sys in {:.1} s = {:.2} cores busy ({} threads){}",
            g.cpu_user_s,
            g.cpu_sys_s,
            s.wall_s,
            g.cores_busy,
            g.threads,
            g.steady.as_ref().map_or(String::new(), |st| format!(
                "; {:.2} cores busy after the ramp",
                st.cores_busy
            ))
        );
        let d = &s.engine_stats.clients_delta;
        if d.is_empty() {
            if let Some(e) = &s.engine_stats.error {
                let _ = writeln!(out, "engine /stats: {e}");
            }
        } else {
            let get = |k: &str| d.get(k).copied().unwrap_or(0.0);
            let _ = writeln!(
                out,
                "engine during the run: {:.0} messages sent, {:.0} conflated, {:.0} gaps, {:.0} snapshots resent",
                get("messages_sent"),
                get("conflated"),
                get("gaps"),
                get("snapshots_resent")
            );
        }
        for c in [&s.classes.fast, &s.classes.slow] {
            for e in c.violation_examples.iter().chain(&c.errors.examples) {
                let _ = writeln!(out, "  ! {e}");
            }
        }
        let _ = writeln!(out, "result: {} (exit code {})", s.exit_reason, s.exit_code);
        out
    }

    /// The slow clients' lines of the table: how they read, data age, closes.
    fn slow_lines(&self) -> String {
        let s = &self.summary;
        let sl = &s.slow;
        let mut out = String::new();
        let how = match sl.read_bps {
            Some(bps) => format!(
                "paced at {bps} B/s (reads of at most {} B)",
                sl.read_burst_bytes.unwrap_or(0)
            ),
            None => format!(
                "a {} ms pause every {} messages",
                s.params.slow_pause_ms, s.params.slow_messages_per_pause
            ),
        };
        let stall = if sl.stall_s > 0.0 {
            format!(", after reading nothing for {:.1} s", sl.stall_s)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "\nslow clients: {} B SO_RCVBUF, {how}{stall}",
            s.params.slow_recv_buffer_bytes
        );
        let a = &sl.data_age_ms;
        let line = |name: &str, p: &Percentiles| {
            format!(
                "  {name:<14} {:>9} {:>10.1} {:>10.1} {:>10.1}",
                p.count, p.p50, p.p99, p.max
            )
        };
        let _ = writeln!(
            out,
            "slow data age after a {:.1} s warm-up (ms):\n  {:<14} {:>9} {:>10} {:>10} {:>10}",
            a.warmup_s, "messages", "count", "p50", "p99", "max"
        );
        for (name, p) in [
            ("all", &a.all),
            ("tickers", &a.ticker),
            ("book snapshots", &a.book_snapshot),
        ] {
            let _ = writeln!(out, "{}", line(name, p));
        }
        let closed: u64 = sl.closed_by_code.values().sum();
        if closed > 0 {
            let codes: Vec<String> = sl
                .closed_by_code
                .iter()
                .map(|(c, n)| format!("{c}: {n}"))
                .collect();
            let _ = writeln!(
                out,
                "slow clients closed by the server: {closed} of {} ({})",
                sl.clients.len(),
                codes.join(", ")
            );
        }
        out
    }

    /// Writes `summary.json`, `latency-fast.hgrm`, `latency-slow.hgrm` and `connect.hgrm`
    /// into `dir` (created if missing); returns the paths written.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
        let output = |path: &Path, e: std::io::Error| LoadError::Output {
            path: path.to_owned(),
            source: e,
        };
        std::fs::create_dir_all(dir).map_err(|e| output(dir, e))?;
        let json = serde_json::to_string_pretty(&self.summary)
            .map_err(|e| output(dir, std::io::Error::other(e)))?;
        let files = [
            ("summary.json", json + "\n"),
            ("latency-fast.hgrm", self.hgrm(&self.latency_fast)),
            ("latency-slow.hgrm", self.hgrm(&self.latency_slow)),
            ("connect.hgrm", self.hgrm(&self.connect)),
        ];
        let mut written = Vec::new();
        for (name, text) in files {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|e| output(&path, e))?;
            written.push(path);
        }
        Ok(written)
    }

    fn hgrm(&self, h: &Histogram<u64>) -> String {
        hgrm::percentile_distribution(h, HGRM_TICKS_PER_HALF_DISTANCE, HGRM_UNIT_SCALING_RATIO)
    }
}

/// `clients` counters of `after` minus `before`.
pub(crate) fn clients_delta(before: &Value, after: &Value) -> BTreeMap<String, f64> {
    let mut delta = BTreeMap::new();
    if let (Some(b), Some(a)) = (before["clients"].as_object(), after["clients"].as_object()) {
        for (k, av) in a {
            if let (Some(x), Some(y)) = (av.as_f64(), b.get(k).and_then(Value::as_f64)) {
                delta.insert(k.clone(), x - y);
            }
        }
    }
    delta
}
