//! `tickwire bench`: the flags of the load generator (`tickwire_bench::load`), the summary
//! on stdout, the files in `--out`, and the exit code.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use tickwire_bench::load::{self, parse_duration, LoadConfig};

/// Exit codes: 0 ok; 1 the run could not happen (invalid settings, unresolvable host,
/// output not writable); 2 clap's usage errors; 3 trade or book sequence violations were
/// found; 4 no client could connect.
#[derive(Args, Debug)]
#[command(
    after_help = "Exit codes: 0 ok; 1 the run could not happen (invalid settings, \
output not writable); 2 usage error; 3 trade or book sequence violations were found; 4 no \
client could connect.\n\
Writes DIR/summary.json, DIR/latency-fast.hgrm, DIR/latency-slow.hgrm, DIR/connect.hgrm \
(percentile distributions in µs, HdrHistogram's text format)."
)]
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
    /// Share of slow clients (0..1): 4 KiB SO_RCVBUF, a 10 ms pause every 4 messages.
    #[arg(long, default_value_t = 0.0)]
    slow_fraction: f64,
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

/// Runs the load test, prints the summary, writes the files; the exit code says how it
/// went (see [`BenchArgs`]).
pub fn run(args: BenchArgs) -> Result<ExitCode> {
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
