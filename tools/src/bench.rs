//! `tickwire bench`: the flags of the load generator (`tickwire_bench::load`), the summary
//! on stdout, the files in `--out`, and the exit code.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use tickwire_bench::compare::{self, CompareConfig, Scenario, Server};
use tickwire_bench::load::{self, parse_duration, LoadConfig};

/// `tickwire bench [FLAGS]` runs the load generator; `tickwire bench compare` the
/// comparison with the peers.
#[derive(Args, Debug)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Exit codes: 0 ok; 1 the run could not happen (invalid settings, \
output not writable); 2 usage error; 3 trade or book sequence violations were found; 4 no \
client could connect.\n\
Writes DIR/summary.json (with the slow clients' data age in slow.data_age_ms and each \
slow client's end in slow.clients), DIR/latency-fast.hgrm, DIR/latency-slow.hgrm, \
DIR/connect.hgrm (percentile distributions in µs, HdrHistogram's text format)."
)]
pub struct BenchCommand {
    #[command(subcommand)]
    sub: Option<BenchSub>,
    #[command(flatten)]
    args: BenchArgs,
}

#[derive(Subcommand, Debug)]
enum BenchSub {
    /// tickwire against Bun, Node (ws) and naive Rust, per server CPU-second, with the
    /// load generator's own latency floor; writes the tables into docs/benchmarks.md.
    Compare(CompareArgs),
}

/// `tickwire bench compare`.
#[derive(Args, Debug)]
struct CompareArgs {
    /// Rounds: each server runs once per round and step (A B C D, A B C D, ...).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The smoke version: 20 clients, ~1 s runs, 1 round unless --rounds is given,
    /// criterion with short times.
    #[arg(long)]
    quick: bool,
    /// Peers, comma separated: bun, node, naive-rust, and floor (the load generator's
    /// latency floor: a trivial server, run in S1, S2 and light only); `none` for
    /// tickwire alone.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "bun,node,naive-rust,floor"
    )]
    peers: Vec<String>,
    /// Scenarios, comma separated: s1, s2, light (1000 clients × 100 trades/s), ladder
    /// (1 to 1000 clients × 1000 trades/s and 1000 × 100: tickwire, tickwire with
    /// --flush-budget-us 0, and Bun), s3..s6.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "s1,s2,light,ladder,s3,s4,s5,s6"
    )]
    scenarios: Vec<String>,
    /// Directory for compare.json, each run's files and the servers' logs.
    #[arg(long, default_value = "bench-out/compare")]
    out: PathBuf,
    /// The Markdown file whose `<!-- compare:begin -->`..`<!-- compare:end -->` section
    /// is replaced [default: REPO/docs/benchmarks.md].
    #[arg(long)]
    doc: Option<PathBuf>,
    /// Write no Markdown.
    #[arg(long)]
    no_doc: bool,
    /// Do not install missing peers (bench/peers/install.sh); skip them instead.
    #[arg(long)]
    no_install: bool,
    /// The repository (bench/peers, cargo bench) [default: where this binary was built
    /// from].
    #[arg(long)]
    repo: Option<PathBuf>,
    /// Core the servers are pinned to.
    #[arg(long, default_value_t = 0)]
    server_core: usize,
    /// Run nothing: render the Markdown again from a saved compare.json (after a change
    /// to the tables), into --doc as usual.
    #[arg(long, value_name = "COMPARE_JSON")]
    render: Option<PathBuf>,
    /// Core the load generator is pinned to [default: 1, or 0 on a 1-core machine].
    #[arg(long)]
    load_core: Option<usize>,
    /// Before each run, wait up to this long for the machine to be under 15% busy
    /// (other work) [default: 90s, 0s with --quick].
    #[arg(long, value_parser = parse_duration)]
    quiet_wait: Option<Duration>,
}

/// Exit codes: 0 ok; 1 the run could not happen (invalid settings, unresolvable host,
/// output not writable); 2 clap's usage errors; 3 trade or book sequence violations were
/// found; 4 no client could connect.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// WebSocket URL of the engine.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    url: String,
    /// Connections to open.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Symbols each client subscribes to, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "sim:BTC-USD")]
    symbols: Vec<String>,
    /// Channels each client subscribes to, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "ticker,trades,book")]
    channels: Vec<String>,
    /// Book depth (levels per side).
    #[arg(long, default_value_t = 10)]
    depth: u32,
    /// Measured time from the first connection, ramp included (e.g. 20s, 500ms, 2m).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    duration: Duration,
    /// Spread connection starts over this time.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    ramp: Duration,
    /// After the duration, everyone reads at full speed this long before the
    /// convergence check.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    drain: Duration,
    /// Share of slow clients (0..1): 4 KiB SO_RCVBUF, and a 10 ms pause every 4 messages
    /// (or paced reads with --slow-read-bps).
    #[arg(long, default_value_t = 0.0)]
    slow_fraction: f64,
    /// Slow clients read at most N bytes per second instead of pausing: a token bucket
    /// holding 100 ms of them; they read when it is full, at most what it holds.
    #[arg(long, value_name = "N")]
    slow_read_bps: Option<u64>,
    /// Slow clients read nothing for the first S seconds after subscribing, then read as
    /// above (e.g. 8 or 0.5).
    #[arg(long, value_name = "S", default_value_t = 0.0)]
    slow_stall_s: f64,
    /// The slow clients' data age (receive time − ingest_ts, in the table and in
    /// summary.json's slow.data_age_ms) leaves out this long after each subscribe.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    age_warmup: Duration,
    /// Threads of the load generator.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Directory for summary.json and the .hgrm files.
    #[arg(long, default_value = "bench-out")]
    out: PathBuf,
    /// The engine's /stats URL [default: http://HOST:PORT/stats of --url].
    #[arg(long)]
    stats_url: Option<String>,
    /// No live progress bar.
    #[arg(long)]
    quiet: bool,
}

/// Runs `tickwire bench` or `tickwire bench compare`.
pub fn run(cmd: BenchCommand) -> Result<ExitCode> {
    match cmd.sub {
        Some(BenchSub::Compare(args)) => run_compare(args),
        None => run_load(cmd.args),
    }
}

fn run_compare(args: CompareArgs) -> Result<ExitCode> {
    let repo = args.repo.unwrap_or_else(|| {
        // tools/ of the tree this binary was built from.
        let built = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        built.parent().unwrap_or(built).to_path_buf()
    });
    let mut peers = Vec::new();
    for p in &args.peers {
        match p.as_str() {
            "none" => {}
            name => match Server::peer_from_name(name) {
                Some(s) => peers.push(s),
                None => {
                    bail!("--peers: unknown peer {name:?} (bun, node, naive-rust, floor, none)")
                }
            },
        }
    }
    let mut scenarios = Vec::new();
    for s in &args.scenarios {
        match Scenario::from_name(s) {
            Some(s) => scenarios.push(s),
            None => bail!("--scenarios: unknown scenario {s:?} (s1, s2, light, ladder, s3..s6)"),
        }
    }
    scenarios.sort();
    scenarios.dedup();
    if args.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let nproc = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rounds_given = std::env::args().any(|a| a == "--rounds" || a.starts_with("--rounds="));
    let cfg = CompareConfig {
        tickwire_exe: std::env::current_exe()?,
        tickwire_build: if cfg!(debug_assertions) {
            "debug (unoptimised: its figures are not the engine's)".into()
        } else {
            "release".into()
        },
        repo: repo.clone(),
        peers,
        scenarios,
        rounds: if args.quick && !rounds_given {
            1
        } else {
            args.rounds
        },
        quick: args.quick,
        install: !args.no_install,
        out: args.out.clone(),
        server_core: args.server_core,
        load_core: args.load_core.unwrap_or(if nproc > 1 { 1 } else { 0 }),
        quiet_wait: args.quiet_wait.unwrap_or(if args.quick {
            Duration::ZERO
        } else {
            Duration::from_secs(90)
        }),
        command_line: std::iter::once("tickwire".to_owned())
            .chain(std::env::args().skip(1))
            .collect::<Vec<_>>()
            .join(" "),
    };
    let results = match &args.render {
        Some(json) => compare::load_results(json).map_err(anyhow::Error::msg)?,
        None => compare::run(&cfg).map_err(anyhow::Error::msg)?,
    };
    let section = compare::doc::render(&results);
    println!("{section}");
    if args.render.is_none() {
        println!("wrote {}", args.out.join("compare.json").display());
    }
    if !args.no_doc {
        let doc = args.doc.unwrap_or_else(|| repo.join("docs/benchmarks.md"));
        compare::doc::splice(&doc, &section)?;
        println!("wrote {}", doc.display());
        // The section links the figure by its bare name: it goes beside the doc.
        let dir = doc.parent().unwrap_or(std::path::Path::new("."));
        if let Some(svg) = compare::plot::write_ladder(&results, dir).map_err(anyhow::Error::msg)? {
            println!("wrote {}", svg.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the load test, prints the summary, writes the files; the exit code says how it
/// went (see [`BenchCommand`]).
fn run_load(args: BenchArgs) -> Result<ExitCode> {
    let config = LoadConfig {
        url: args.url,
        clients: args.clients,
        symbols: args.symbols,
        channels: args.channels,
        depth: args.depth,
        duration: args.duration,
        ramp: args.ramp,
        drain: args.drain,
        slow_fraction: args.slow_fraction,
        slow_read_bps: args.slow_read_bps,
        slow_stall: Duration::try_from_secs_f64(args.slow_stall_s)
            .map_err(|e| anyhow::anyhow!("--slow-stall-s {}: {e}", args.slow_stall_s))?,
        age_warmup: args.age_warmup,
        threads: args.threads,
        stats_url: args.stats_url,
        quiet: args.quiet,
    };
    let report = load::run(&config)?;
    print!("{}", report.table());
    let written = report.write(&args.out)?;
    for path in written {
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::from(report.exit_code()))
}
