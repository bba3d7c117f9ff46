//! `tickwire bench compare`: tickwire against its peers (`bench/peers/`: Bun, Node with
//! `ws`, naive Rust), serving the same synthetic trades, measured per server CPU-second;
//! and against `floor`, a trivial server that writes the trades due to every client as
//! fast as it can (one write per client per pass), whose latency is the load generator's
//! own floor.
//!
//! Method (also in `bench/README.md`):
//! - **Quiet machine.** Before each run, `compare` waits (up to
//!   [`CompareConfig::quiet_wait`]) for the machine to be under [`QUIET`] busy, and each
//!   run records the CPU other processes used while it ran.
//! - **Servers.** tickwire runs `serve --sim-trades-only --sim-rate R --workers 1
//!   --no-pin`; each peer runs its `server.js` / binary with `--port` and `--rate R`. All
//!   serve `sim:BTC-USD` trades of the same shape and size, `seq` from 1, `ingest_ts` in
//!   ns. A fresh server process per measurement.
//! - **Cores.** The server is pinned to [`CompareConfig::server_core`], the load
//!   generator (`tickwire bench`, one thread) to [`CompareConfig::load_core`].
//! - **CPU.** The server's `utime + stime` from `/proc/PID/stat` before and after the load
//!   run; deliveries (trades received by all clients, drain included) divided by those
//!   CPU seconds give *deliveries per server CPU-second*. Saturation is judged on the
//!   steady part of the run (ramp end to the end of the measured phase): the generator
//!   reports its own CPU over that window, and the server's is interpolated from samples
//!   taken every 100 ms. A core ≥ [`SATURATED`] busy there is saturated; a point where
//!   the generator's is measures the generator (*gen-bound*).
//! - **Memory.** `VmRSS` sampled every 100 ms during the run (max) against the value
//!   before it, taken once the idle server's RSS has settled (unchanged for 1.5 s, at
//!   most 6 s); `VmHWM` at the end; the kernel's slab memory (machine-wide) likewise.
//! - **Rounds.** Every scenario step runs each server in turn, tickwire first, then
//!   each peer (A B C D, A B C D, ...), `rounds` times; figures are medians over rounds.
//! - **Scenarios** ([`Scenario`]): S1 lossless fan-out (a rate ladder, stopping at the
//!   first step with a gap or a loss; CPU saturation is recorded), S2 latency at
//!   25/50/75% of the best peer's S1 maximum, *light* latency at a low fixed rate, S3
//!   memory per idle connection, S4 10% slow clients, S5/S6 criterion, and the *ladder*
//!   (latency and CPU from 1 to 1000 clients, issue #22: tickwire's default coalescing
//!   policy, tickwire with `--flush-budget-us 0` and Bun side by side, with the window in
//!   force sampled from tickwire's `/stats`). `floor` runs in S1, S2 and light only.
//! - **Verdicts** ([`verdict`]): one per target, from medians over rounds of the runs
//!   where no core was saturated.
//!
//! Bounded: every load run has a fixed duration and a hard timeout, every child process
//! is stopped when its guard drops, and every socket is on 127.0.0.1.

pub mod criterion;
pub mod doc;
pub mod plot;
pub mod procfs;
pub mod stats;
pub mod verdict;

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::load::report::{machine, Machine};
use procfs::Child;

/// A server under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Server {
    /// The engine (`tickwire serve --sim-trades-only`).
    Tickwire,
    /// The engine with `--flush-budget-us 0`: never coalesces, every pass writes at once.
    /// The ladder's reference for what coalescing costs in latency and saves in CPU; not a
    /// peer, and run in the ladder only.
    TickwireNoCoalesce,
    /// `bench/peers/bun`: Bun.serve + server.publish.
    Bun,
    /// `bench/peers/node`: Node.js + ws.
    Node,
    /// `bench/peers/naive-rust`: tokio-tungstenite + tokio broadcast.
    NaiveRust,
    /// `bench/peers/floor`: the trades due written to every client, one write per client
    /// per pass, one thread; the load generator's latency floor, not a contender.
    Floor,
}

impl Server {
    /// Every peer, in the order they run.
    pub const PEERS: [Server; 4] = [Server::Bun, Server::Node, Server::NaiveRust, Server::Floor];

    /// The name used on the command line and in the tables.
    pub fn name(self) -> &'static str {
        match self {
            Server::Tickwire => "tickwire",
            Server::TickwireNoCoalesce => NO_COALESCE,
            Server::Bun => "bun",
            Server::Node => "node",
            Server::NaiveRust => "naive-rust",
            Server::Floor => FLOOR,
        }
    }

    /// Whether it runs in `scenario`: `floor` only where latency is measured; the ladder
    /// has tickwire, tickwire without coalescing and Bun, and nothing else.
    pub fn runs_in(self, scenario: Scenario) -> bool {
        match self {
            Server::Floor => matches!(scenario, Scenario::S1 | Scenario::S2 | Scenario::Light),
            Server::TickwireNoCoalesce => scenario == Scenario::Ladder,
            Server::Node | Server::NaiveRust => scenario != Scenario::Ladder,
            Server::Tickwire | Server::Bun => true,
        }
    }

    /// Whether it is the engine (its `/stats` can be sampled).
    pub fn is_tickwire(self) -> bool {
        matches!(self, Server::Tickwire | Server::TickwireNoCoalesce)
    }

    /// A peer by its name.
    pub fn peer_from_name(name: &str) -> Option<Server> {
        Server::PEERS.into_iter().find(|p| p.name() == name)
    }

    /// Why this server cannot run, if it cannot (files missing, `node` missing).
    fn missing(self, cfg: &CompareConfig) -> Option<String> {
        let peers = cfg.repo.join("bench/peers");
        let need = |p: PathBuf| (!p.exists()).then(|| format!("{} is missing", p.display()));
        match self {
            Server::Tickwire | Server::TickwireNoCoalesce => need(cfg.tickwire_exe.clone()),
            Server::Bun => need(bun_binary(&peers)),
            Server::Node => need(peers.join("node/node_modules/ws/package.json")).or_else(|| {
                (!command_works("node", &["--version"])).then(|| "no `node` on PATH".into())
            }),
            Server::NaiveRust => need(naive_binary(&peers)),
            Server::Floor => need(floor_binary(&peers)),
        }
    }

    /// The command serving `rate` trades/s on 127.0.0.1:`port`.
    fn command(self, cfg: &CompareConfig, port: u16, rate: u64) -> Command {
        let peers = cfg.repo.join("bench/peers");
        let (port, rate) = (port.to_string(), rate.to_string());
        let mut cmd = match self {
            Server::Tickwire | Server::TickwireNoCoalesce => {
                let mut c = Command::new(&cfg.tickwire_exe);
                c.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
                    .args(["--sim-trades-only", "--sim-rate", &rate])
                    .args(["--workers", "1", "--no-pin"])
                    .env("RUST_LOG", "warn");
                if self == Server::TickwireNoCoalesce {
                    c.args(["--flush-budget-us", "0"]);
                }
                return c;
            }
            Server::Bun => {
                let mut c = Command::new(bun_binary(&peers));
                c.arg(peers.join("bun/server.js"));
                c
            }
            Server::Node => {
                let mut c = Command::new("node");
                c.arg(peers.join("node/server.js"));
                c
            }
            Server::NaiveRust => Command::new(naive_binary(&peers)),
            Server::Floor => Command::new(floor_binary(&peers)),
        };
        cmd.args(["--port", &port, "--rate", &rate]);
        cmd
    }
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn bun_binary(peers: &Path) -> PathBuf {
    peers.join("bun/node_modules/@oven/bun-linux-x64/bin/bun")
}

fn naive_binary(peers: &Path) -> PathBuf {
    peers.join("naive-rust/target/release/tickwire-peer-naive-rust")
}

fn floor_binary(peers: &Path) -> PathBuf {
    peers.join("floor/target/release/tickwire-peer-floor")
}

/// The name of the floor peer in the results.
pub const FLOOR: &str = "floor";

/// The name of tickwire with `--flush-budget-us 0` in the results.
pub const NO_COALESCE: &str = "tickwire-nocoalesce";

fn command_works(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A scenario of the comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Scenario {
    /// Lossless fan-out: rate ladder at 1k (and 10k) clients on one topic.
    S1,
    /// Tick-to-client latency at 25/50/75% of the best peer's S1 maximum.
    S2,
    /// Tick-to-client latency at a light, fixed load (1000 clients × 100 trades/s).
    Light,
    /// The latency ladder (issue #22): 1 to 1000 clients at 1000 trades/s and 1000 × 100,
    /// tickwire, tickwire without coalescing and Bun side by side.
    Ladder,
    /// Memory per idle subscribed connection.
    S3,
    /// 10% slow clients: fast clients' latency and delivery with and without them.
    S4,
    /// Ring hand-off (criterion).
    S5,
    /// Decode and encode (criterion).
    S6,
}

impl Scenario {
    /// All of them.
    pub const ALL: [Scenario; 8] = [
        Scenario::S1,
        Scenario::S2,
        Scenario::Light,
        Scenario::Ladder,
        Scenario::S3,
        Scenario::S4,
        Scenario::S5,
        Scenario::S6,
    ];

    /// `s1` ... `s6`, `light`, `ladder`.
    pub fn from_name(name: &str) -> Option<Scenario> {
        Scenario::ALL
            .into_iter()
            .find(|s| s.to_string().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scenario::Light => f.write_str("light"),
            Scenario::Ladder => f.write_str("ladder"),
            s => write!(f, "{s:?}"),
        }
    }
}

/// What a comparison runs.
#[derive(Clone, Debug)]
pub struct CompareConfig {
    /// The `tickwire` binary: it serves, and its `bench` subcommand is the load generator.
    pub tickwire_exe: PathBuf,
    /// Describes that binary's build, e.g. `release`.
    pub tickwire_build: String,
    /// The repository root (`bench/peers/`, `cargo bench`).
    pub repo: PathBuf,
    /// Peers to compare against (none: tickwire alone).
    pub peers: Vec<Server>,
    /// Scenarios to run.
    pub scenarios: Vec<Scenario>,
    /// Rounds (each server once per round and step).
    pub rounds: usize,
    /// The smoke version: a few clients, short runs, no 10k step.
    pub quick: bool,
    /// Install missing peers with `bench/peers/install.sh`.
    pub install: bool,
    /// Where per-run summaries, server logs and `compare.json` go.
    pub out: PathBuf,
    /// Core the servers are pinned to.
    pub server_core: usize,
    /// Core the load generator is pinned to.
    pub load_core: usize,
    /// The command line, for the record.
    pub command_line: String,
    /// Longest wait, before each run, for the machine to be under [`QUIET`] busy (it
    /// runs anyway after, and the run records the load it had).
    pub quiet_wait: Duration,
}

/// One server measured under one load.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Run {
    /// Server name.
    pub server: String,
    /// Round, from 1.
    pub round: usize,
    /// Trades per second served.
    pub rate: u64,
    /// Clients.
    pub clients: usize,
    /// Slow clients among them.
    pub slow_clients: usize,
    /// Where the generator's files are.
    pub dir: String,
    /// The generator's exit code (0 ok, 3 violations, 4 no connection).
    pub exit_code: i64,
    /// Wall seconds of the load run.
    pub wall_s: f64,
    /// Server CPU seconds during it.
    pub server_cpu_s: f64,
    /// Server CPU seconds / wall seconds (1.0 = its core saturated).
    pub server_busy: f64,
    /// The generator's cores busy (1 thread: near 1.0 means it was the bottleneck).
    pub generator_busy: f64,
    /// Server CPU seconds / wall seconds from the end of the ramp to the end of the
    /// measured phase (`None` in results that predate it).
    pub server_busy_steady: Option<f64>,
    /// The generator's cores busy over the same window.
    pub generator_busy_steady: Option<f64>,
    /// Trades received by all clients, drain included.
    pub deliveries: u64,
    /// `deliveries / server_cpu_s`.
    pub deliveries_per_cpu_s: f64,
    /// Fast clients' messages per second each (measured phase).
    pub fast_msgs_per_s_per_client: f64,
    /// Bytes per message read by fast clients (framing included).
    pub bytes_per_msg: f64,
    /// Fast clients' latency, µs: p50, p90, p99, p99.9, max.
    pub fast_latency_us: [f64; 5],
    /// Slow clients' latency (their staleness), µs: p50, p90, p99, p99.9, max.
    pub slow_latency_us: [f64; 5],
    /// Fast clients: trade violations + gaps + trades named by gaps.
    pub fast_losses: u64,
    /// Slow clients' data age after the generator's warm-up, ms: p50, p99, max (zeros
    /// when none was recorded).
    pub slow_data_age_ms: [f64; 3],
    /// Slow clients: trade violations (unannounced gaps).
    pub slow_violations: u64,
    /// Slow clients: gaps announced and trades they named.
    pub slow_gaps: u64,
    /// Slow clients: trades named by gaps.
    pub slow_trades_skipped: u64,
    /// Connection errors and closes, all clients.
    pub errors: u64,
    /// Clients that connected.
    pub connected: usize,
    /// Clients that stayed to the end.
    pub finished: usize,
    /// Server RSS before the clients, KiB.
    pub rss_before_kib: u64,
    /// Highest server RSS sampled during the run, KiB.
    pub rss_max_kib: u64,
    /// Server `VmHWM` at the end, KiB.
    pub hwm_kib: u64,
    /// Machine-wide slab before the clients, KiB.
    pub slab_before_kib: u64,
    /// Highest machine-wide slab sampled during the run, KiB.
    pub slab_max_kib: u64,
    /// Share of the machine's CPU busy (all cores, 0..1) in the 0.5 s (quick: 0.2 s) before the server
    /// started, after waiting for it to fall under [`QUIET`] (at most
    /// [`CompareConfig::quiet_wait`]).
    pub machine_busy_before: f64,
    /// CPU seconds that neither the server nor the generator used during the run, per
    /// wall second: other processes' load (0 on a quiet machine; 1 = a whole core).
    pub others_cores: f64,
    /// tickwire in the ladder: median over the steady window of worker 0's
    /// `coalesce_window_us` in `/stats` (the window in force), µs; `None` when not sampled.
    pub coalesce_window_us: Option<f64>,
    /// Likewise worker 0's `busy_share` (0..1, its own measure of its busy time); `None`
    /// when not sampled or the engine does not report it.
    pub worker_busy_share: Option<f64>,
    /// `/stats` samples taken in the steady window.
    pub stats_samples: usize,
    /// Fast clients all lossless and at the full rate.
    pub lossless: bool,
    /// Why not lossless, or saturated.
    pub note: String,
}

impl Run {
    /// Clients that connected; where a saved result predates the field, all of them.
    pub fn connected_clients(&self) -> usize {
        if self.connected == 0 {
            self.clients
        } else {
            self.connected
        }
    }

    /// The server's core busy share while every client read (the whole run's where the
    /// steady figure is missing).
    pub fn server_load(&self) -> f64 {
        self.server_busy_steady.unwrap_or(self.server_busy)
    }

    /// The generator's, likewise.
    pub fn generator_load(&self) -> f64 {
        self.generator_busy_steady.unwrap_or(self.generator_busy)
    }

    /// The server's core was saturated.
    pub fn server_saturated(&self) -> bool {
        self.server_load() >= SATURATED
    }

    /// The generator's core was saturated: the run measures the generator.
    pub fn generator_saturated(&self) -> bool {
        self.generator_load() >= SATURATED
    }

    /// Per-connection memory of an S3 run, KiB: (server RSS delta, kernel share
    /// estimate), over the clients that connected.
    pub fn per_conn_kib(&self) -> (f64, f64) {
        let n = self.connected_clients().max(1) as f64;
        let rss = self.rss_max_kib.saturating_sub(self.rss_before_kib) as f64 / n;
        // Both ends of a loopback connection are in this kernel; half is the server's.
        let kernel = self.slab_max_kib.saturating_sub(self.slab_before_kib) as f64 / (2.0 * n);
        (rss, kernel)
    }

    /// An S1 step passes when it is lossless. Saturation (server or generator core
    /// ≥ [`SATURATED`] busy) is recorded in `note` but does not fail a step that still
    /// delivered everything: on loopback, cost per message falls as the rate rises
    /// (more messages per write and per read), so a core busy at one rate can carry the
    /// next; the first lossy step is where a server's ceiling shows.
    pub fn passes_s1(&self) -> bool {
        self.lossless
    }
}

/// The machine counts as quiet when less than this share of its CPU is busy.
pub const QUIET: f64 = 0.15;

/// CPU busy share counted as saturation.
pub const SATURATED: f64 = 0.9;
/// Fast clients must receive at least this share of the rate to count as lossless.
pub const FULL_RATE_SHARE: f64 = 0.95;

/// The load of one measurement.
#[derive(Clone, Debug)]
struct Load {
    clients: usize,
    rate: u64,
    slow_fraction: f64,
    duration: Duration,
    ramp: Duration,
    drain: Duration,
    /// Sample tickwire's `/stats` during the run (the ladder).
    sample_stats: bool,
}

/// S1 at one client count: a rate ladder.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct S1Plan {
    /// Clients.
    pub clients: usize,
    /// Rates tried, lowest first (trades/s).
    pub rates: Vec<u64>,
    /// Connection ramp, s.
    pub ramp_s: f64,
    /// Measured phase, s (ramp included).
    pub duration_s: f64,
}

/// S2: latency at 25/50/75% of the base rate.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct S2Plan {
    /// Clients.
    pub clients: usize,
    /// Measured phase, s.
    pub duration_s: f64,
}

/// The light-load point: latency at a fixed low rate.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LightPlan {
    /// Clients.
    pub clients: usize,
    /// Trades/s.
    pub rate: u64,
    /// Measured phase, s.
    pub duration_s: f64,
}

impl Default for LightPlan {
    fn default() -> Self {
        LightPlan {
            clients: 1_000,
            rate: 100,
            duration_s: 5.0,
        }
    }
}

/// One point of the latency ladder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LadderPoint {
    /// Clients, all on `trades` of one symbol.
    pub clients: usize,
    /// Trades/s.
    pub rate: u64,
}

impl LadderPoint {
    const fn new(clients: usize, rate: u64) -> LadderPoint {
        LadderPoint { clients, rate }
    }
}

impl fmt::Display for LadderPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} clients × {} trades/s", self.clients, self.rate)
    }
}

/// The latency ladder (issue #22) and where its targets are checked.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LadderPlan {
    /// Every point, run in this order in each round (each by every server in turn).
    pub points: Vec<LadderPoint>,
    /// Measured phase, s (ramp included; the ramp is S1's first).
    pub duration_s: f64,
    /// Points where tickwire's p99 must be ≤ 1.1× Bun's and its deliveries per server
    /// CPU-second ≥ 0.9× Bun's.
    pub parity: Vec<LadderPoint>,
    /// The heavy fan-out point: deliveries per server CPU-second ≥ 1.3× Bun's with p99 ≤
    /// Bun's.
    pub heavy: LadderPoint,
    /// The light point: p99 ≤ 1.05× Bun's.
    pub light: LadderPoint,
}

impl LadderPlan {
    /// The issue's sizes: clients 1, 10, 100, 1000 at 1000 trades/s, and 1000 × 100.
    pub fn full() -> LadderPlan {
        let at = |clients| LadderPoint::new(clients, 1_000);
        LadderPlan {
            points: vec![
                at(1),
                at(10),
                at(100),
                at(1_000),
                LadderPoint::new(1_000, 100),
            ],
            duration_s: 5.0,
            parity: vec![at(10), at(100), at(1_000)],
            heavy: at(1_000),
            light: LadderPoint::new(1_000, 100),
        }
    }

    /// The smoke sizes: the same shape with 20 clients at most, ~1 s runs.
    pub fn quick() -> LadderPlan {
        let at = |clients| LadderPoint::new(clients, 1_000);
        LadderPlan {
            points: vec![at(1), at(5), at(10), at(20), LadderPoint::new(20, 100)],
            duration_s: 1.2,
            parity: vec![at(5), at(10), at(20)],
            heavy: at(20),
            light: LadderPoint::new(20, 100),
        }
    }

    /// The trades/s the plot's clients axis is drawn at: the heavy point's.
    pub fn main_rate(&self) -> u64 {
        self.heavy.rate
    }
}

impl Default for LadderPlan {
    fn default() -> Self {
        LadderPlan::full()
    }
}

/// S3: idle connections.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct S3Plan {
    /// Connection counts.
    pub clients: Vec<usize>,
    /// The idle rate, trades/s.
    pub rate: u64,
}

/// S4: without and with slow clients.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct S4Plan {
    /// Clients.
    pub clients: usize,
    /// Share of them slow in the second run.
    pub slow_fraction: f64,
    /// Measured phase, s.
    pub duration_s: f64,
}

/// Where the issue's targets are checked.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TargetPoints {
    /// S1 per-CPU-second and latency targets: this rate of the first S1 ladder.
    pub s1_rate: u64,
    /// S3 targets: this connection count.
    pub s3_clients: usize,
}

impl Default for TargetPoints {
    fn default() -> Self {
        TargetPoints {
            s1_rate: 1_000,
            s3_clients: 5_000,
        }
    }
}

/// Sizes of the scenarios, full or quick. (Results written before the fields were named
/// stored tuples; serde reads those as sequences in field order.)
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Plan {
    /// S1: one ladder per client count; the first is the one the verdicts use.
    pub s1: Vec<S1Plan>,
    /// S2.
    pub s2: S2Plan,
    /// The light-load point.
    #[serde(default)]
    pub light: LightPlan,
    /// The latency ladder.
    #[serde(default)]
    pub ladder: LadderPlan,
    /// S3.
    pub s3: S3Plan,
    /// S4.
    pub s4: S4Plan,
    /// Drain after every run, s.
    pub drain_s: f64,
    /// Where the targets are checked.
    #[serde(default)]
    pub targets: TargetPoints,
}

impl Plan {
    /// The plan for a full or a quick comparison.
    pub fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                s1: vec![S1Plan {
                    clients: 20,
                    rates: vec![200, 400],
                    ramp_s: 0.2,
                    duration_s: 1.2,
                }],
                s2: S2Plan {
                    clients: 20,
                    duration_s: 1.2,
                },
                light: LightPlan {
                    clients: 20,
                    rate: 100,
                    duration_s: 1.2,
                },
                ladder: LadderPlan::quick(),
                s3: S3Plan {
                    clients: vec![20, 50],
                    rate: 1,
                },
                s4: S4Plan {
                    clients: 20,
                    slow_fraction: 0.1,
                    duration_s: 1.2,
                },
                drain_s: 0.2,
                targets: TargetPoints {
                    s1_rate: 400,
                    s3_clients: 50,
                },
            }
        } else {
            Plan {
                s1: vec![
                    S1Plan {
                        clients: 1_000,
                        rates: vec![250, 500, 1_000, 2_000, 4_000],
                        ramp_s: 1.0,
                        duration_s: 4.0,
                    },
                    S1Plan {
                        clients: 10_000,
                        rates: vec![25, 50, 100, 200],
                        ramp_s: 5.0,
                        duration_s: 9.0,
                    },
                ],
                s2: S2Plan {
                    clients: 1_000,
                    duration_s: 5.0,
                },
                light: LightPlan::default(),
                ladder: LadderPlan::full(),
                s3: S3Plan {
                    clients: vec![1_000, 5_000, 10_000],
                    rate: 1,
                },
                s4: S4Plan {
                    clients: 1_000,
                    slow_fraction: 0.1,
                    duration_s: 8.0,
                },
                drain_s: 1.0,
                targets: TargetPoints::default(),
            }
        }
    }

    /// The ramp of the runs at the first S1 client count (S2, light and S4 use it).
    pub fn ramp_s(&self) -> f64 {
        self.s1.first().map_or(1.0, |g| g.ramp_s)
    }
}

/// Everything a comparison measured, written to `compare.json` and the doc (which
/// [`load_results`] reads back to render it again).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Results {
    /// The command that ran.
    pub command: String,
    /// When it started, seconds since the epoch.
    pub started_unix_s: u64,
    /// Wall time of the whole comparison, s.
    pub wall_s: f64,
    /// The machine.
    pub machine: Machine,
    /// 1-minute load average before the first run.
    pub load_average_before: Option<f64>,
    /// The tickwire build.
    pub tickwire_build: String,
    /// Versions of the peers' runtimes and packages.
    pub versions: Vec<(String, String)>,
    /// Cores: server, load generator.
    pub cores: (usize, usize),
    /// Rounds.
    pub rounds: usize,
    /// Longest wait for a quiet machine before each run, s.
    #[serde(default)]
    pub quiet_wait_s: f64,
    /// Quick (smoke) sizes.
    pub quick: bool,
    /// The sizes used.
    pub plan: Plan,
    /// Servers compared (tickwire first).
    pub servers: Vec<String>,
    /// Peers left out, and why.
    pub skipped: Vec<(String, String)>,
    /// Scenarios run.
    pub scenarios: Vec<Scenario>,
    /// S1 runs, by clients.
    pub s1: Vec<S1Group>,
    /// The rate S2 and S4 are based on, and where it came from.
    pub base_rate: Option<(u64, String)>,
    /// S2 runs.
    pub s2: Vec<Run>,
    /// Light-load runs.
    #[serde(default)]
    pub light: Vec<Run>,
    /// Latency-ladder runs, every point, server and round.
    #[serde(default)]
    pub ladder: Vec<Run>,
    /// S3 runs.
    pub s3: Vec<Run>,
    /// S4 runs (without slow clients, then with).
    pub s4: Vec<Run>,
    /// S5 lines (criterion), or why not.
    pub s5: Result<Vec<criterion::BenchLine>, String>,
    /// S6 lines (criterion), or why not.
    pub s6: Result<Vec<criterion::BenchLine>, String>,
    /// Problems met on the way (a run that failed to start, ...).
    pub problems: Vec<String>,
}

impl Results {
    /// Quick-sized results with nothing measured: the start of a run, which sets what it
    /// knows over them, and of the tables' and verdicts' tests.
    pub(crate) fn empty(servers: &[&str], scenarios: &[Scenario]) -> Results {
        Results {
            command: "tickwire bench compare --quick".into(),
            started_unix_s: 0,
            wall_s: 1.0,
            machine: machine(),
            load_average_before: None,
            tickwire_build: "release".into(),
            versions: Vec::new(),
            cores: (0, 1),
            rounds: 1,
            quiet_wait_s: 0.0,
            quick: true,
            plan: Plan::new(true),
            servers: servers.iter().map(|s| (*s).to_owned()).collect(),
            skipped: Vec::new(),
            scenarios: scenarios.to_vec(),
            s1: Vec::new(),
            base_rate: None,
            s2: Vec::new(),
            light: Vec::new(),
            ladder: Vec::new(),
            s3: Vec::new(),
            s4: Vec::new(),
            s5: Err("not run".into()),
            s6: Err("not run".into()),
            problems: Vec::new(),
        }
    }
}

/// S1 at one client count.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct S1Group {
    /// Clients.
    pub clients: usize,
    /// The ladder.
    pub rates: Vec<u64>,
    /// Every step run (a server's ladder stops at its first failing step).
    pub runs: Vec<Run>,
}

impl Results {
    /// The peers tickwire is compared with: every server but tickwire (either variant)
    /// and `floor`.
    pub fn contenders(&self) -> impl Iterator<Item = &str> {
        self.servers
            .iter()
            .map(String::as_str)
            .filter(|s| *s != "tickwire" && *s != NO_COALESCE && *s != FLOOR)
    }

    /// The ladder's runs at `at`.
    pub fn ladder_at(&self, at: LadderPoint) -> impl Iterator<Item = &Run> + Clone {
        self.ladder
            .iter()
            .filter(move |r| r.clients == at.clients && r.rate == at.rate)
    }
}

impl S1Group {
    /// Median over rounds of a server's highest passing rate (0 when none passed).
    pub fn max_rate(&self, server: &str, rounds: usize) -> Option<u64> {
        let per_round: Vec<f64> = (1..=rounds)
            .filter_map(|r| {
                let runs: Vec<&Run> = self
                    .runs
                    .iter()
                    .filter(|x| x.server == server && x.round == r)
                    .collect();
                (!runs.is_empty()).then(|| {
                    runs.iter()
                        .filter(|x| x.passes_s1())
                        .map(|x| x.rate)
                        .max()
                        .unwrap_or(0) as f64
                })
            })
            .collect();
        median(per_round).map(|m| m as u64)
    }
}

/// Reads a `compare.json` written by [`run`].
pub fn load_results(path: &Path) -> Result<Results, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Median of the values (the mean of the middle two for an even count).
pub fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn log(msg: &str) {
    eprintln!("[compare] {msg}");
}

/// Installs missing peers (when allowed) and returns the peers that can run, and those
/// that cannot with the reason.
fn ready_peers(cfg: &CompareConfig) -> (Vec<Server>, Vec<(String, String)>) {
    let mut ready = Vec::new();
    let mut skipped = Vec::new();
    for &peer in &cfg.peers {
        let mut why = peer.missing(cfg);
        if why.is_some() && cfg.install {
            log(&format!(
                "installing {peer} (bench/peers/install.sh {peer})"
            ));
            let script = cfg.repo.join("bench/peers/install.sh");
            let status = Command::new("bash")
                .arg(&script)
                .arg(peer.name())
                .stdin(Stdio::null())
                .status();
            why = match status {
                Ok(s) if s.success() => peer.missing(cfg),
                Ok(s) => Some(format!("install.sh {peer} failed: {s}")),
                Err(e) => Some(format!("install.sh {peer}: {e}")),
            };
        }
        match why {
            None => ready.push(peer),
            Some(why) => {
                log(&format!("skipping {peer}: {why}"));
                skipped.push((peer.name().to_owned(), why));
            }
        }
    }
    (ready, skipped)
}

fn versions(cfg: &CompareConfig, peers: &[Server]) -> Vec<(String, String)> {
    let mut v = vec![("rustc".to_owned(), command_output("rustc", &["--version"]))];
    let dir = cfg.repo.join("bench/peers");
    for p in peers {
        match p {
            Server::Bun => v.push((
                "bun".into(),
                command_output(&bun_binary(&dir).to_string_lossy(), &["--version"]),
            )),
            Server::Node => {
                v.push(("node".into(), command_output("node", &["--version"])));
                let ws = std::fs::read_to_string(dir.join("node/node_modules/ws/package.json"))
                    .ok()
                    .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                    .and_then(|j| j["version"].as_str().map(str::to_owned));
                v.push(("ws".into(), ws));
            }
            Server::NaiveRust => {
                let lock =
                    std::fs::read_to_string(dir.join("naive-rust/Cargo.lock")).unwrap_or_default();
                for krate in ["tokio", "tokio-tungstenite"] {
                    let needle = format!("name = \"{krate}\"\nversion = \"");
                    let ver = lock.find(&needle).map(|at| {
                        lock[at + needle.len()..]
                            .split('"')
                            .next()
                            .unwrap_or_default()
                            .to_owned()
                    });
                    v.push((krate.into(), ver));
                }
            }
            Server::Tickwire | Server::TickwireNoCoalesce | Server::Floor => {}
        }
    }
    v.into_iter()
        .map(|(k, v)| (k, v.unwrap_or_else(|| "?".into())))
        .collect()
}

/// Runs the comparison; the results are also written to `out/compare.json`.
pub fn run(cfg: &CompareConfig) -> Result<Results, String> {
    let started = Instant::now();
    std::fs::create_dir_all(&cfg.out).map_err(|e| format!("{}: {e}", cfg.out.display()))?;
    if let Some(why) = Server::Tickwire.missing(cfg) {
        return Err(why);
    }
    let (peers, skipped) = ready_peers(cfg);
    let mut servers = vec![Server::Tickwire];
    if cfg.scenarios.contains(&Scenario::Ladder) {
        servers.push(Server::TickwireNoCoalesce);
    }
    servers.extend(&peers);
    let plan = Plan::new(cfg.quick);
    let mut res = Results {
        command: cfg.command_line.clone(),
        started_unix_s: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        wall_s: 0.0,
        machine: machine(),
        load_average_before: procfs::load_average(),
        tickwire_build: cfg.tickwire_build.clone(),
        versions: versions(cfg, &peers),
        cores: (cfg.server_core, cfg.load_core),
        rounds: cfg.rounds,
        quiet_wait_s: cfg.quiet_wait.as_secs_f64(),
        quick: cfg.quick,
        plan: plan.clone(),
        servers: servers.iter().map(|s| s.name().to_owned()).collect(),
        skipped,
        ..Results::empty(&[], &cfg.scenarios)
    };
    let mut m = Measurer {
        cfg,
        drain: Duration::from_secs_f64(plan.drain_s),
        problems: Vec::new(),
    };
    let wants = |s: Scenario| cfg.scenarios.contains(&s);
    let serving = |scenario: Scenario| -> Vec<Server> {
        servers
            .iter()
            .copied()
            .filter(|s| s.runs_in(scenario))
            .collect()
    };

    if wants(Scenario::S1) {
        for step in &plan.s1 {
            let mut group = S1Group {
                clients: step.clients,
                rates: step.rates.clone(),
                runs: Vec::new(),
            };
            let clients = step.clients;
            for round in 1..=cfg.rounds {
                for server in serving(Scenario::S1) {
                    for &rate in &step.rates {
                        let load = Load {
                            clients,
                            rate,
                            slow_fraction: 0.0,
                            duration: Duration::from_secs_f64(step.duration_s),
                            ramp: Duration::from_secs_f64(step.ramp_s),
                            drain: m.drain,
                            sample_stats: false,
                        };
                        let label = format!("s1-{clients}c-{server}-{rate}r-round{round}");
                        let Some(run) = m.measure(server, round, &load, &label) else {
                            break;
                        };
                        let pass = run.passes_s1();
                        group.runs.push(run);
                        if !pass {
                            break;
                        }
                    }
                }
            }
            res.s1.push(group);
        }
    }

    // S2 and S4 load: the best peer's S1 maximum at the first client count.
    res.base_rate = base_rate(&res, &peers, cfg.rounds, &plan);
    let first_rate = plan
        .s1
        .first()
        .and_then(|g| g.rates.first().copied())
        .unwrap_or(1);
    let base = res.base_rate.as_ref().map_or(first_rate, |b| b.0);
    let ramp = Duration::from_secs_f64(plan.ramp_s());

    if wants(Scenario::S2) {
        for round in 1..=cfg.rounds {
            for pct in [25, 50, 75] {
                let rate = (base * pct / 100).max(1);
                for server in serving(Scenario::S2) {
                    let load = Load {
                        clients: plan.s2.clients,
                        rate,
                        slow_fraction: 0.0,
                        duration: Duration::from_secs_f64(plan.s2.duration_s),
                        ramp,
                        drain: m.drain,
                        sample_stats: false,
                    };
                    let label = format!("s2-{pct}pct-{server}-round{round}");
                    if let Some(run) = m.measure(server, round, &load, &label) {
                        res.s2.push(run);
                    }
                }
            }
        }
    }

    if wants(Scenario::Light) {
        let light = &plan.light;
        for round in 1..=cfg.rounds {
            for server in serving(Scenario::Light) {
                let load = Load {
                    clients: light.clients,
                    rate: light.rate,
                    slow_fraction: 0.0,
                    duration: Duration::from_secs_f64(light.duration_s),
                    ramp,
                    drain: m.drain,
                    sample_stats: false,
                };
                let label = format!("light-{server}-round{round}");
                if let Some(run) = m.measure(server, round, &load, &label) {
                    res.light.push(run);
                }
            }
        }
    }

    if wants(Scenario::Ladder) {
        let ladder = &plan.ladder;
        // Round by round, every point, A B C at each: the servers of a point run minutes
        // apart at most, so drift on a shared machine falls on all three alike.
        for round in 1..=cfg.rounds {
            for at in &ladder.points {
                for server in serving(Scenario::Ladder) {
                    let load = Load {
                        clients: at.clients,
                        rate: at.rate,
                        slow_fraction: 0.0,
                        duration: Duration::from_secs_f64(ladder.duration_s),
                        ramp,
                        drain: m.drain,
                        sample_stats: server.is_tickwire(),
                    };
                    let label =
                        format!("ladder-{}c-{}r-{server}-round{round}", at.clients, at.rate);
                    if let Some(run) = m.measure(server, round, &load, &label) {
                        res.ladder.push(run);
                    }
                }
            }
        }
    }

    if wants(Scenario::S3) {
        for round in 1..=cfg.rounds {
            for &clients in &plan.s3.clients {
                // About 3k connections a second on this kind of machine, and 2 s held.
                let ramp = if cfg.quick {
                    0.2
                } else {
                    (clients as f64 / 3_000.0).max(1.0)
                };
                for server in serving(Scenario::S3) {
                    let load = Load {
                        clients,
                        rate: plan.s3.rate,
                        slow_fraction: 0.0,
                        duration: Duration::from_secs_f64(ramp + if cfg.quick { 0.6 } else { 2.0 }),
                        ramp: Duration::from_secs_f64(ramp),
                        drain: Duration::from_millis(100),
                        sample_stats: false,
                    };
                    let label = format!("s3-{clients}c-{server}-round{round}");
                    if let Some(run) = m.measure(server, round, &load, &label) {
                        res.s3.push(run);
                    }
                }
            }
        }
    }

    if wants(Scenario::S4) {
        let s4 = &plan.s4;
        let rate = (base / 2).max(1);
        for round in 1..=cfg.rounds {
            for server in serving(Scenario::S4) {
                for slow_fraction in [0.0, s4.slow_fraction] {
                    let load = Load {
                        clients: s4.clients,
                        rate,
                        slow_fraction,
                        duration: Duration::from_secs_f64(s4.duration_s),
                        ramp,
                        drain: m.drain,
                        sample_stats: false,
                    };
                    let label = format!(
                        "s4-{}slow-{server}-round{round}",
                        (slow_fraction * 100.0).round()
                    );
                    if let Some(run) = m.measure(server, round, &load, &label) {
                        res.s4.push(run);
                    }
                }
            }
        }
    }

    if wants(Scenario::S5) {
        log("S5: cargo bench --bench ring");
        res.s5 = criterion::run(&cfg.repo, "ring", cfg.quick);
    }
    if wants(Scenario::S6) {
        log("S6: cargo bench --bench decode");
        res.s6 = criterion::run(&cfg.repo, "decode", cfg.quick);
    }
    res.problems = m.problems;
    res.wall_s = started.elapsed().as_secs_f64();
    let json = serde_json::to_string_pretty(&res).map_err(|e| e.to_string())?;
    let path = cfg.out.join("compare.json");
    std::fs::write(&path, json).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(path) = plot::write_ladder(&res, &cfg.out)? {
        log(&format!("wrote {}", path.display()));
    }
    Ok(res)
}

/// The best peer's S1 maximum at the first client count; without peers (or when none
/// passed a step), tickwire's own; `None` when S1 did not run or nothing passed.
fn base_rate(res: &Results, peers: &[Server], rounds: usize, plan: &Plan) -> Option<(u64, String)> {
    let first = plan.s1.first()?;
    let group = res.s1.iter().find(|g| g.clients == first.clients)?;
    let best_peer = peers
        .iter()
        .filter(|p| **p != Server::Floor)
        .filter_map(|p| Some((group.max_rate(p.name(), rounds)?, p.name())))
        .filter(|(r, _)| *r > 0)
        .max();
    if let Some((rate, peer)) = best_peer {
        return Some((
            rate,
            format!("{peer}'s S1 maximum at {} clients", group.clients),
        ));
    }
    let ours = group.max_rate("tickwire", rounds).filter(|r| *r > 0)?;
    Some((
        ours,
        format!(
            "tickwire's own S1 maximum at {} clients (no peer passed a step)",
            group.clients
        ),
    ))
}

/// Runs measurements and keeps the problems met.
struct Measurer<'a> {
    cfg: &'a CompareConfig,
    drain: Duration,
    problems: Vec<String>,
}

impl Measurer<'_> {
    /// One server, freshly started, under one load; `None` (and a problem noted) when it
    /// could not be measured.
    fn measure(&mut self, server: Server, round: usize, load: &Load, label: &str) -> Option<Run> {
        log(&format!(
            "{label}: {} clients, {} trades/s{}",
            load.clients,
            load.rate,
            if load.slow_fraction > 0.0 {
                format!(", {:.0}% slow", load.slow_fraction * 100.0)
            } else {
                String::new()
            }
        ));
        match self.try_measure(server, round, load, label) {
            Ok(run) => {
                log(&format!(
                    "  {} deliveries/CPU-s {:.0}, server busy {:.2}, generator busy {:.2}, others {:.2}, fast p99 {:.0} µs{}",
                    if run.lossless { "lossless," } else { "LOSSY," },
                    run.deliveries_per_cpu_s,
                    run.server_load(),
                    run.generator_load(),
                    run.others_cores,
                    run.fast_latency_us[2],
                    if run.note.is_empty() { String::new() } else { format!(" ({})", run.note) }
                ));
                Some(run)
            }
            Err(e) => {
                log(&format!("  failed: {e}"));
                self.problems.push(format!("{label}: {e}"));
                None
            }
        }
    }

    fn try_measure(
        &mut self,
        server: Server,
        round: usize,
        load: &Load,
        label: &str,
    ) -> Result<Run, String> {
        let cfg = self.cfg;
        let dir = cfg.out.join("runs").join(label);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        // Other work on a shared machine skews every figure: wait for a quiet moment.
        let quiet_until = Instant::now() + cfg.quiet_wait;
        let (window, settle) = if cfg.quick {
            (Duration::from_millis(200), Duration::from_millis(200))
        } else {
            (Duration::from_millis(500), Duration::from_millis(500))
        };
        let mut busy_before = procfs::machine_busy(window).unwrap_or(0.0);
        let mut waited = false;
        while busy_before >= QUIET && Instant::now() < quiet_until {
            if !waited {
                log(&format!(
                    "  machine {:.0}% busy with other work; waiting up to {:?}",
                    busy_before * 100.0,
                    cfg.quiet_wait
                ));
                waited = true;
            }
            std::thread::sleep(Duration::from_secs(2));
            busy_before = procfs::machine_busy(window).unwrap_or(0.0);
        }
        let port = procfs::free_port().map_err(|e| format!("no free port: {e}"))?;
        let log_file = |name: &str| {
            std::fs::File::create(dir.join(name))
                .map(Stdio::from)
                .map_err(|e| format!("{name}: {e}"))
        };
        let mut cmd = server.command(cfg, port, load.rate);
        cmd.stdin(Stdio::null())
            .stdout(log_file("server.log")?)
            .stderr(log_file("server.err")?);
        let mut srv = Child::spawn(&mut cmd, Some(cfg.server_core))
            .map_err(|e| format!("starting {server}: {e}"))?;
        let pid = srv.pid();
        procfs::wait_listening(port, &mut srv, Duration::from_secs(15))?;
        // Let the server's timers and (for tickwire) the feed settle.
        std::thread::sleep(settle);
        let rss_before = if cfg.quick {
            procfs::rss_kib(pid)
        } else {
            procfs::settled_rss_kib(pid, Duration::from_millis(1500), Duration::from_secs(6))
        }
        .unwrap_or(0);
        let slab_before = procfs::slab_kib().unwrap_or(0);
        let cpu_before = procfs::cpu_seconds(pid).ok_or("no /proc/PID/stat")?;
        let machine_before = procfs::machine_cpu_seconds().unwrap_or((0.0, 0.0));

        let secs = |d: Duration| format!("{}ms", d.as_millis());
        let mut gen_cmd = Command::new(&cfg.tickwire_exe);
        gen_cmd
            .arg("bench")
            .args(["--url", &format!("ws://127.0.0.1:{port}/ws")])
            .args(["--symbols", "sim:BTC-USD", "--channels", "trades"])
            .args(["--clients", &load.clients.to_string()])
            .args(["--duration", &secs(load.duration)])
            .args(["--ramp", &secs(load.ramp)])
            .args(["--drain", &secs(load.drain)])
            .args(["--slow-fraction", &load.slow_fraction.to_string()])
            .args(["--threads", "1", "--quiet"])
            .arg("--out")
            .arg(&dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log_file("bench.txt")?)
            .stderr(log_file("bench.err")?);
        let started = Instant::now();
        let mut generator = Child::spawn(&mut gen_cmd, Some(cfg.load_core))
            .map_err(|e| format!("starting the load generator: {e}"))?;
        // Its own bound is duration + drain + /stats fetches (2 × 2 s); a margin on top.
        let limit = load.duration + load.drain + Duration::from_secs(20);
        let (mut rss_max, mut slab_max) = (rss_before, slab_before);
        // (wall ns, server CPU s): the server's busy share over the generator's steady
        // window is read off these afterwards.
        let mut cpu_samples = vec![(procfs::wall_ns(), cpu_before)];
        // tickwire's window in force and busy share, sampled from its `/stats`; kept to
        // the steady window afterwards, like the CPU samples.
        let mut stats_samples = Vec::new();
        let mut next_stats = Instant::now();
        let status = loop {
            if load.sample_stats && Instant::now() >= next_stats {
                next_stats = Instant::now() + stats::SAMPLE_EVERY;
                if let Some(sample) = stats::sample(port) {
                    stats_samples.push(sample);
                }
            }
            if let Some(status) = generator.wait_for(Duration::from_millis(100)) {
                break status;
            }
            rss_max = rss_max.max(procfs::rss_kib(pid).unwrap_or(0));
            slab_max = slab_max.max(procfs::slab_kib().unwrap_or(0));
            if let Some(cpu) = procfs::cpu_seconds(pid) {
                cpu_samples.push((procfs::wall_ns(), cpu));
            }
            if started.elapsed() > limit {
                generator.stop();
                return Err(format!("the load generator overran {limit:?}; stopped"));
            }
        };
        let wall_s = started.elapsed().as_secs_f64();
        let cpu_after = procfs::cpu_seconds(pid).ok_or("the server died during the run")?;
        cpu_samples.push((procfs::wall_ns(), cpu_after));
        let machine_after = procfs::machine_cpu_seconds().unwrap_or((0.0, 0.0));
        let hwm = procfs::hwm_kib(pid).unwrap_or(0);
        let server_alive = srv.exited().is_none();
        srv.stop();
        if !server_alive {
            return Err(format!("{server} exited during the run"));
        }
        let text = std::fs::read_to_string(dir.join("summary.json"))
            .map_err(|e| format!("no summary.json ({e}); generator {status}"))?;
        let s: Value = serde_json::from_str(&text).map_err(|e| format!("summary.json: {e}"))?;
        let mut run = from_summary(&s, load);
        run.server = server.name().to_owned();
        run.round = round;
        run.dir = dir.display().to_string();
        run.wall_s = wall_s;
        run.server_cpu_s = cpu_after - cpu_before;
        run.server_busy = run.server_cpu_s / wall_s.max(1e-9);
        run.deliveries_per_cpu_s = run.deliveries as f64 / run.server_cpu_s.max(0.01);
        run.rss_before_kib = rss_before;
        run.rss_max_kib = rss_max;
        run.hwm_kib = hwm;
        run.slab_before_kib = slab_before;
        run.slab_max_kib = slab_max;
        run.machine_busy_before = busy_before;
        let steady = &s["generator"]["steady"];
        if let (Some(from), Some(to)) = (
            steady["from_unix_ns"].as_u64(),
            steady["to_unix_ns"].as_u64(),
        ) {
            run.server_busy_steady = procfs::busy_between(&cpu_samples, from, to);
            let worker = stats::steady_medians(&stats_samples, from, to);
            run.coalesce_window_us = worker.window_us;
            run.worker_busy_share = worker.busy_share;
            run.stats_samples = worker.samples;
        }
        let generator_cpu_s = s["generator"]["cpu_user_s"].as_f64().unwrap_or(0.0)
            + s["generator"]["cpu_sys_s"].as_f64().unwrap_or(0.0);
        run.others_cores =
            ((machine_after.0 - machine_before.0) - run.server_cpu_s - generator_cpu_s).max(0.0)
                / wall_s.max(1e-9);
        let mut notes = Vec::new();
        if run.exit_code == 4 {
            notes.push("no client connected".to_owned());
        }
        if run.fast_losses > 0 {
            notes.push(format!("{} trades lost or gapped", run.fast_losses));
        }
        if run.errors > 0 {
            notes.push(format!("{} connection errors", run.errors));
        }
        if run.fast_msgs_per_s_per_client < FULL_RATE_SHARE * load.rate as f64 {
            notes.push(format!(
                "fast clients got {:.0}/s of {}/s",
                run.fast_msgs_per_s_per_client, load.rate
            ));
        }
        run.lossless = notes.is_empty();
        if run.server_saturated() {
            notes.push(format!("server core saturated ({:.2})", run.server_load()));
        }
        if run.generator_saturated() {
            notes.push(format!(
                "generator saturated ({:.2}): gen-bound",
                run.generator_load()
            ));
        }
        if run.others_cores >= 0.25 {
            notes.push(format!(
                "other processes used {:.2} cores during the run",
                run.others_cores
            ));
        }
        run.note = notes.join("; ");
        Ok(run)
    }
}

/// The figures of one `summary.json`.
fn from_summary(s: &Value, load: &Load) -> Run {
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    let u = |v: &Value| v.as_u64().unwrap_or(0);
    let (fast, slow) = (&s["classes"]["fast"], &s["classes"]["slow"]);
    let lat = |c: &Value| {
        let l = &c["latency_us"];
        [
            f(&l["p50"]),
            f(&l["p90"]),
            f(&l["p99"]),
            f(&l["p999"]),
            f(&l["max"]),
        ]
    };
    let (fc, sc) = (&fast["counts"], &slow["counts"]);
    let fast_msgs = u(&fc["messages"]);
    Run {
        rate: load.rate,
        clients: load.clients,
        slow_clients: u(&s["params"]["slow_clients"]) as usize,
        exit_code: s["exit_code"].as_i64().unwrap_or(-1),
        generator_busy: f(&s["generator"]["cores_busy"]),
        generator_busy_steady: s["generator"]["steady"]["cores_busy"].as_f64(),
        deliveries: u(&fc["trades"]) + u(&sc["trades"]),
        fast_msgs_per_s_per_client: f(&fast["msgs_per_s_per_client"]),
        bytes_per_msg: if fast_msgs > 0 {
            u(&fc["bytes"]) as f64 / fast_msgs as f64
        } else {
            0.0
        },
        fast_latency_us: lat(fast),
        slow_latency_us: lat(slow),
        slow_data_age_ms: {
            let a = &s["slow"]["data_age_ms"]["all"];
            [f(&a["p50"]), f(&a["p99"]), f(&a["max"])]
        },
        fast_losses: u(&fc["trade_violations"]) + u(&fc["gaps"]) + u(&fc["trades_skipped"]),
        slow_violations: u(&sc["trade_violations"]),
        slow_gaps: u(&sc["gaps"]),
        slow_trades_skipped: u(&sc["trades_skipped"]),
        errors: u(&fast["errors"]["total"]) + u(&slow["errors"]["total"]),
        connected: (u(&fast["connected"]) + u(&slow["connected"])) as usize,
        finished: (u(&fast["finished"]) + u(&slow["finished"])) as usize,
        ..Run::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn names() {
        assert_eq!(Scenario::from_name("s3"), Some(Scenario::S3));
        assert_eq!(Scenario::from_name("S6"), Some(Scenario::S6));
        assert_eq!(Scenario::from_name("s7"), None);
        assert_eq!(
            Server::peer_from_name("naive-rust"),
            Some(Server::NaiveRust)
        );
        assert_eq!(Server::peer_from_name("tickwire"), None);
    }

    #[test]
    fn plans_saved_as_tuples_still_load() {
        let old = r#"{"s1":[[1000,[250,500],1.0,4.0]],"s2":[1000,5.0],"s3":[[1000,5000,9000],1],
            "s4":[1000,0.1,8.0],"drain_s":1.0}"#;
        let plan: Plan = serde_json::from_str(old).unwrap();
        assert_eq!(plan.s1[0].rates, [250, 500]);
        assert_eq!((plan.s1[0].ramp_s, plan.s1[0].duration_s), (1.0, 4.0));
        assert_eq!(plan.s3.clients, [1000, 5000, 9000]);
        assert_eq!(plan.s4.slow_fraction, 0.1);
        assert_eq!((plan.light.clients, plan.light.rate), (1000, 100));
        assert_eq!(plan.targets.s1_rate, 1000);
        let new: Plan =
            serde_json::from_str(&serde_json::to_string(&Plan::new(false)).unwrap()).unwrap();
        assert_eq!(new.s3.clients, [1_000, 5_000, 10_000]);
    }

    #[test]
    fn floor_runs_where_latency_is_measured_only() {
        let floor: Vec<Scenario> = Scenario::ALL
            .into_iter()
            .filter(|s| Server::Floor.runs_in(*s))
            .collect();
        assert_eq!(floor, [Scenario::S1, Scenario::S2, Scenario::Light]);
        assert!(Scenario::ALL.iter().all(|s| Server::Bun.runs_in(*s)));
        assert!(Scenario::ALL.iter().all(|s| Server::Tickwire.runs_in(*s)));
        assert_eq!(Scenario::from_name("light"), Some(Scenario::Light));
        assert_eq!(Server::peer_from_name("floor"), Some(Server::Floor));
    }

    #[test]
    fn the_ladder_runs_three_servers_one_of_them_tickwire_without_coalescing() {
        assert_eq!(Scenario::from_name("ladder"), Some(Scenario::Ladder));
        assert!(Scenario::ALL.contains(&Scenario::Ladder));
        let in_ladder: Vec<Server> = [Server::Tickwire, Server::TickwireNoCoalesce]
            .into_iter()
            .chain(Server::PEERS)
            .filter(|s| s.runs_in(Scenario::Ladder))
            .collect();
        assert_eq!(
            in_ladder,
            [Server::Tickwire, Server::TickwireNoCoalesce, Server::Bun]
        );
        let only: Vec<Scenario> = Scenario::ALL
            .into_iter()
            .filter(|s| Server::TickwireNoCoalesce.runs_in(*s))
            .collect();
        assert_eq!(only, [Scenario::Ladder]);
        // Not a peer: --peers cannot name it, and it is no contender in the tables.
        assert_eq!(Server::peer_from_name(NO_COALESCE), None);
        let res = Results::empty(&["tickwire", NO_COALESCE, "bun"], &[Scenario::Ladder]);
        assert_eq!(res.contenders().collect::<Vec<_>>(), ["bun"]);

        let cfg = CompareConfig {
            tickwire_exe: "/bin/tickwire".into(),
            tickwire_build: "release".into(),
            repo: ".".into(),
            peers: Vec::new(),
            scenarios: vec![Scenario::Ladder],
            rounds: 3,
            quick: false,
            install: false,
            out: "out".into(),
            server_core: 0,
            load_core: 1,
            command_line: String::new(),
            quiet_wait: Duration::ZERO,
        };
        let args = |s: Server| -> Vec<String> {
            s.command(&cfg, 9000, 1000)
                .get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect()
        };
        let plain = args(Server::Tickwire).join(" ");
        let nocoalesce = args(Server::TickwireNoCoalesce).join(" ");
        assert_eq!(nocoalesce, format!("{plain} --flush-budget-us 0"));
        assert!(plain.contains("--sim-trades-only --sim-rate 1000 --workers 1 --no-pin"));
    }

    #[test]
    fn ladder_plans_full_quick_and_saved_before_it() {
        let p = |clients, rate| LadderPoint { clients, rate };
        let full = Plan::new(false).ladder;
        assert_eq!(
            full.points,
            [
                p(1, 1000),
                p(10, 1000),
                p(100, 1000),
                p(1000, 1000),
                p(1000, 100)
            ]
        );
        assert_eq!(full.parity, [p(10, 1000), p(100, 1000), p(1000, 1000)]);
        assert_eq!((full.heavy, full.light), (p(1000, 1000), p(1000, 100)));
        // Every target point is one that runs, full and quick.
        for plan in [full, Plan::new(true).ladder] {
            let targets = plan.parity.iter().chain([&plan.heavy, &plan.light]);
            for t in targets {
                assert!(plan.points.contains(t), "{t} is not run");
            }
            assert_eq!(plan.main_rate(), 1000);
        }
        assert!(Plan::new(true)
            .ladder
            .points
            .iter()
            .all(|x| x.clients <= 20));
        // A plan saved before the ladder existed reads as the full ladder, with no runs.
        let mut old = serde_json::to_value(Plan::new(false)).unwrap();
        old.as_object_mut().unwrap().remove("ladder");
        let plan: Plan = serde_json::from_value(old).unwrap();
        assert_eq!(plan.ladder.points.len(), 5);
        let mut res = serde_json::to_value(Results::empty(&["tickwire"], &[])).unwrap();
        res.as_object_mut().unwrap().remove("ladder");
        let res: Results = serde_json::from_value(res).unwrap();
        assert!(res.ladder.is_empty());
    }

    #[test]
    fn max_rate_is_the_median_of_each_rounds_highest_pass() {
        let run = |server: &str, round, rate, lossless| Run {
            server: server.into(),
            round,
            rate,
            lossless,
            ..Run::default()
        };
        let g = S1Group {
            clients: 10,
            rates: vec![1, 2, 4],
            runs: vec![
                run("a", 1, 1, true),
                run("a", 1, 2, true),
                run("a", 1, 4, false),
                run("a", 2, 1, true),
                run("a", 2, 2, false),
                run("a", 3, 1, true),
                run("a", 3, 2, true),
                run("b", 1, 1, false),
            ],
        };
        assert_eq!(g.max_rate("a", 3), Some(2));
        assert_eq!(g.max_rate("b", 1), Some(0));
        assert_eq!(g.max_rate("c", 1), None);
    }
}
