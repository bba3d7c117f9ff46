//! The load generator behind `tickwire bench`: one process, many WebSocket connections,
//! several threads; end-to-end latency per client class, and the protocol's delivery
//! guarantees checked while it measures.
//!
//! Contract:
//! - **Threads**: [`run`] builds its own multi-thread tokio runtime with
//!   [`LoadConfig::threads`] workers and blocks the calling thread until the run is over;
//!   call it from outside any runtime. Clients are tasks, spread over those threads.
//! - **Time is bounded**: connections start over `ramp`; every client reads until
//!   `duration` (the measured phase), then everyone, slow clients too, reads at full
//!   speed for `drain`; then each closes. Connect and handshake time out after 5 s. The
//!   run ends by itself after about `duration + drain` (plus up to 2 s for `/stats`).
//! - **Allocation**: per client, a 64 KiB read buffer and a latency histogram (~220 KiB)
//!   at connect (a slow client: three ~26 KiB data-age histograms too), a little per
//!   symbol; nothing per message.
//! - **Slow clients** read with pauses or paced by a token bucket ([`pace`]), after an
//!   optional stall; their data age and how each ended are in [`report::SlowSummary`]. Live figures are flushed to
//!   shared atomics 4× a second ([`live`]), never per message.
//! - **Measured** (see [`report`] for definitions): latency = receive wall time −
//!   `ingest_ts` in one `Histogram<u64>` per class (ns, 3 digits, shared by its clients); msgs/s and MB/s;
//!   gaps and trades skipped; ticker seqs skipped (conflation); resyncs; connect times;
//!   connection failures and close codes; the process's own CPU time.
//! - **Checked** ([`check`]): trades contiguous or covered by an exact `gap`; book updates
//!   contiguous after each snapshot; tickers converging after the drain (best effort).
//! - **Overload of the generator itself** shows as its CPU time approaching
//!   `threads` cores (`generator.cores_busy` in the summary): then the figures measure
//!   the generator, not the engine.
//!
//! ```no_run
//! use tickwire_bench::load::{run, LoadConfig};
//! let report = run(&LoadConfig { clients: 10, ..LoadConfig::default() }).unwrap();
//! print!("{}", report.table());
//! report.write(std::path::Path::new("bench-out")).unwrap();
//! std::process::exit(i32::from(report.exit_code()));
//! ```

pub mod check;
mod client;
pub mod config;
pub(crate) mod http;
pub mod live;
pub mod pace;
pub mod report;
pub mod scan;
pub mod ws;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use tokio::time::Instant;

pub use client::Class;
pub use config::{parse_duration, Endpoint, LoadConfig, Validated};
pub use report::{Report, Summary, EXIT_NO_CONNECTION, EXIT_OK, EXIT_VIOLATIONS};

use client::Ctx;
use live::Live;
use report::{EngineStats, RunFacts};

/// How long each `/stats` fetch may take.
const STATS_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a run could not happen (a run that happened reports its findings in [`Report`]).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A setting is wrong; the text lists every problem and the flag to change.
    #[error("invalid settings: {0}")]
    Config(String),
    /// The URL's host did not resolve.
    #[error("cannot resolve {host}: {reason}")]
    Resolve {
        /// The host asked for.
        host: String,
        /// What the resolver said.
        reason: String,
    },
    /// The tokio runtime could not start.
    #[error("starting the load generator's runtime: {0}")]
    Runtime(std::io::Error),
    /// An output file could not be written (check `--out`).
    #[error("writing {path}: {source}")]
    Output {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A client task panicked (a bug in the load generator; the message says where).
    #[error("a client task failed: {0}")]
    ClientTask(tokio::task::JoinError),
}

/// Runs a load test as configured and returns what it measured.
pub fn run(config: &LoadConfig) -> Result<Report, LoadError> {
    let v = config.validate()?;
    // Every client is a descriptor: raise the limit, and grow the descriptor table now,
    // while this process has one thread, so that no connect waits for the kernel to grow
    // it under load (see `tickwire_engine::fd_table`).
    let limit = tickwire_engine::server::raise_fd_limit();
    let fds = tickwire_engine::fd_table::wanted(config.clients, 256, limit);
    if let Err(e) = std::fs::File::open("/dev/null")
        .and_then(|probe| tickwire_engine::fd_table::reserve(&probe, fds))
    {
        tracing::warn!(fds, error = %e, "cannot size the descriptor table");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.threads)
        .thread_name("tickwire-bench")
        .enable_all()
        .build()
        .map_err(LoadError::Runtime)?;
    runtime.block_on(run_async(v))
}

async fn run_async(v: Validated) -> Result<Report, LoadError> {
    let cfg = &v.config;
    let addr = resolve(&v.ws).await?;
    let stats_url = format!("http://{}", v.stats);
    let mut engine_stats = EngineStats {
        url: stats_url,
        ..EngineStats::default()
    };
    match http::get_json(&v.stats, STATS_TIMEOUT).await {
        Ok(s) => engine_stats.before = Some(s),
        Err(e) => engine_stats.error = Some(format!("before the run: {e}")),
    }

    let cpu_start = cpu_times();
    let started_wall = std::time::SystemTime::now();
    let start = Instant::now();
    let run_end = start + cfg.duration;
    let drain_end = run_end + cfg.drain;
    let cut_wall_ns = client::wall_ns() + cfg.duration.as_nanos() as u64;
    let live = Arc::new(Live::default());
    let ctx = Arc::new(Ctx {
        addr,
        endpoint: v.ws.clone(),
        subscribe: subscribe_command(cfg),
        run_end,
        drain_end,
        cut_wall_ns,
        live: live.clone(),
        latency: Arc::new(client::ClassLatency::new()),
        slow: client::SlowReading {
            read_bps: cfg.slow_read_bps,
            stall: cfg.slow_stall,
            age_warmup: cfg.age_warmup,
        },
    });

    // The generator's CPU over the steady part of the measured phase (ramp end to
    // `run_end`): the whole run's average includes the ramp and the drain and so
    // understates how busy it was while every client read.
    let ramp_end = start + cfg.ramp;
    let steady = tokio::spawn(async move {
        tokio::time::sleep_until(ramp_end).await;
        let from = (cpu_times(), client::wall_ns());
        tokio::time::sleep_until(run_end).await;
        let to = (cpu_times(), client::wall_ns());
        report::SteadyCpu::between(from, to)
    });

    let mut tasks = Vec::with_capacity(cfg.clients);
    for i in 0..cfg.clients {
        let start_at = start + cfg.ramp.mul_f64(i as f64 / cfg.clients as f64);
        tasks.push(tokio::spawn(client::run(
            i,
            class_of(i, cfg.clients, v.slow_clients),
            start_at,
            ctx.clone(),
        )));
    }
    let progress =
        (!cfg.quiet).then(|| tokio::spawn(progress(live.clone(), start, drain_end, cfg.clients)));
    let mut outcomes = Vec::with_capacity(cfg.clients);
    for t in tasks {
        // A client task never panics by design; one that did is a bug worth seeing.
        outcomes.push(t.await.map_err(LoadError::ClientTask)?);
    }
    live.finished.store(true, Ordering::Relaxed);
    if let Some(p) = progress {
        // It notices `finished` within one tick and clears the bar.
        let _ = p.await;
    }
    let wall_s = start.elapsed().as_secs_f64();
    let cpu_end = cpu_times();
    // It ended at `run_end`, before the clients did.
    let steady = steady.await.ok();

    match http::get_json(&v.stats, STATS_TIMEOUT).await {
        Ok(after) => {
            if let Some(before) = &engine_stats.before {
                engine_stats.clients_delta = report::clients_delta(before, &after);
            }
            engine_stats.after = Some(after);
        }
        Err(e) => {
            let e = format!("after the run: {e}");
            engine_stats.error = Some(match engine_stats.error.take() {
                Some(first) => format!("{first}; {e}"),
                None => e,
            });
        }
    }
    // Every client task has ended, so this is the last holder.
    let latency = match Arc::try_unwrap(ctx) {
        Ok(ctx) => Arc::try_unwrap(ctx.latency)
            .ok()
            .map(client::ClassLatency::into_inner),
        Err(_) => None,
    };
    let facts = RunFacts {
        latency,
        started_unix_ms: started_wall
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        wall_s,
        cpu_user_s: cpu_end.0 - cpu_start.0,
        cpu_sys_s: cpu_end.1 - cpu_start.1,
        steady,
        engine_stats,
    };
    Ok(report::build(&v, outcomes, facts))
}

/// Client `i` of `n` is slow when the running count of slow clients steps up at it, so
/// the `slow` slow clients are spread evenly over the ramp.
fn class_of(i: usize, n: usize, slow: usize) -> Class {
    if (i + 1) * slow / n > i * slow / n {
        Class::Slow
    } else {
        Class::Fast
    }
}

fn subscribe_command(cfg: &LoadConfig) -> Vec<u8> {
    serde_json::json!({
        "op": "subscribe",
        "id": 1,
        "channels": cfg.channels,
        "symbols": cfg.symbols,
        "depth": cfg.depth,
    })
    .to_string()
    .into_bytes()
}

async fn resolve(ws: &Endpoint) -> Result<SocketAddr, LoadError> {
    let err = |reason: String| LoadError::Resolve {
        host: ws.host.clone(),
        reason,
    };
    tokio::net::lookup_host((ws.host.as_str(), ws.port))
        .await
        .map_err(|e| err(e.to_string()))?
        .next()
        .ok_or_else(|| err("no address".into()))
}

/// (user, system) CPU seconds of this process so far; zeros where unavailable.
fn cpu_times() -> (f64, f64) {
    // SAFETY: `rusage` is plain integers, so all-zero bytes are a valid value, and
    // getrusage writes only into the struct we pass, which lives across the call.
    let (rc, usage) = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        let rc = libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        (rc, usage)
    };
    if rc != 0 {
        return (0.0, 0.0);
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(usage.ru_utime), secs(usage.ru_stime))
}

/// The live progress bar: elapsed over the whole run, clients connected, msgs/s over the
/// last update, and the coarse p99 so far per class; 4 updates a second.
async fn progress(live: Arc<Live>, start: Instant, end: Instant, clients: usize) {
    use indicatif::{ProgressBar, ProgressStyle};
    let total_ms = (end - start).as_millis() as u64;
    let bar = ProgressBar::new(total_ms);
    bar.set_style(
        ProgressStyle::with_template("{elapsed:>4} [{bar:24}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let (mut last_n, mut last_t) = (0u64, Instant::now());
    let fmt = |ns: Option<u64>| match ns {
        None => "-".to_owned(),
        Some(ns) if ns < 10_000_000 => format!("{:.0} µs", ns as f64 / 1e3),
        Some(ns) => format!("{:.0} ms", ns as f64 / 1e6),
    };
    loop {
        tick.tick().await;
        let now = Instant::now();
        let n = live.messages.load(Ordering::Relaxed);
        let rate = (n - last_n) as f64 / (now - last_t).as_secs_f64().max(1e-3);
        (last_n, last_t) = (n, now);
        bar.set_position(((now - start).as_millis() as u64).min(total_ms));
        bar.set_message(format!(
            "{}/{clients} connected · {rate:.0} msg/s · p99 fast ≈{} slow ≈{}",
            live.connected.load(Ordering::Relaxed),
            fmt(live.latency_quantile(0, 0.99)),
            fmt(live.latency_quantile(1, 0.99)),
        ));
        if now >= end || live.finished.load(Ordering::Relaxed) {
            bar.finish_and_clear();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_clients_are_spread_evenly() {
        let classes: String = (0..8)
            .map(|i| match class_of(i, 8, 2) {
                Class::Slow => 's',
                Class::Fast => 'f',
            })
            .collect();
        assert_eq!(classes, "fffsfffs");
        assert_eq!(
            (0..200)
                .filter(|i| class_of(*i, 200, 20) == Class::Slow)
                .count(),
            20
        );
        assert!((0..5).all(|i| class_of(i, 5, 0) == Class::Fast));
        assert!((0..5).all(|i| class_of(i, 5, 5) == Class::Slow));
    }

    #[test]
    fn subscribe_command_names_everything() {
        let cmd = subscribe_command(&LoadConfig::default());
        let v: serde_json::Value = serde_json::from_slice(&cmd).unwrap();
        assert_eq!(v["op"], "subscribe");
        assert_eq!(v["symbols"][0], "sim:BTC-USD");
        assert_eq!(v["channels"].as_array().unwrap().len(), 3);
        assert_eq!(v["depth"], 10);
    }
}
