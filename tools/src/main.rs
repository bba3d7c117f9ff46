//! The `tickwire` binary: `serve` (the default) runs the engine; `bench` runs the load
//! generator against one, `bench compare` the comparison with the peers.

#![forbid(unsafe_code)]

mod bench;

mod cluster;
mod feeds;
mod fetch;
mod report;
mod stats_view;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use serde::Deserialize;
use tickwire_engine::config::{EngineConfig, Secret};
use tickwire_engine::feed::Feed;
use tickwire_feeds::{SimConfig, SimFeed};

// mimalloc: the workers' cold paths (connections, snapshots, commands) allocate from
// several threads; mimalloc's thread-local heaps keep that off any shared lock and its
// small-object classes suit the frame and command sizes. The hot path allocates nothing.
// Built without transparent huge pages (the workspace's `no_thp` feature): mimalloc would
// otherwise ask for them on its whole arena, and every 2 MiB page touched counts in full
// in the RSS: 15 MiB more at start and RSS moving in 2 MiB steps, which made an idle
// connection look twice its size (docs/decisions/0009-allocator-without-huge-pages.md).
// The engine's hot data (ring, frames, client table) is small enough that huge pages
// bought no measurable speed.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "tickwire",
    version,
    about = "Real-time market-data streaming engine",
    // `tickwire --listen X` serves; serve flags before a subcommand are refused rather
    // than silently ignored.
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve market data over WebSocket and HTTP (the default).
    Serve(Box<ServeArgs>),
    /// Load-test an engine: many WebSocket clients, latency and delivery checks.
    Bench(Box<bench::BenchCommand>),
    /// Live view of a running engine's /stats in the terminal.
    Stats(StatsArgs),
    /// Write an HTML latency report (and .hgrm files) from an engine or saved files.
    Report(ReportArgs),
    /// Capture a venue's raw frames and REST snapshots, with receive times, to a file
    /// (play it back with `serve --feed replay:FILE` or `mock-exchange`).
    Record(RecordArgs),
    /// Serve a recording on 127.0.0.1 in the venue's own protocol (WebSocket and REST
    /// snapshots), for tests and demos without a network.
    MockExchange(MockArgs),
}

#[derive(Args, Debug)]
struct RecordArgs {
    /// What to record: `VENUE:SYM1,SYM2` (binance, coinbase, kraken).
    #[arg(long)]
    feed: String,
    /// The file to write.
    #[arg(long)]
    out: PathBuf,
    /// Stop after this many seconds (default: until interrupted).
    #[arg(long)]
    duration_s: Option<u64>,
    /// `VENUE=URL`: the venue's WebSocket URL (`ws://` accepted).
    #[arg(long, value_name = "VENUE=URL")]
    feed_url: Vec<String>,
    /// `VENUE=URL`: the venue's REST base URL.
    #[arg(long, value_name = "VENUE=URL")]
    rest_url: Vec<String>,
}

#[derive(Args, Debug)]
struct MockArgs {
    /// The venue whose protocol the recording is in.
    #[arg(long)]
    venue: String,
    /// The recording (`tickwire record`).
    #[arg(long)]
    file: PathBuf,
    /// Address to listen on (loopback).
    #[arg(long, default_value = "127.0.0.1:9443")]
    listen: std::net::SocketAddr,
    /// Pace: 1 (as recorded), N (N times faster) or max.
    #[arg(long, default_value = "1")]
    speed: String,
}

#[derive(Args, Debug)]
struct ReportArgs {
    /// A running engine to read (its /stats and /latency/<stage>.hgrm).
    #[arg(long, conflicts_with = "from")]
    url: Option<String>,
    /// A directory of saved .hgrm files (an earlier report, or `tickwire bench --out`).
    #[arg(long)]
    from: Option<PathBuf>,
    /// Another run's directory of .hgrm files to draw on the same plots.
    #[arg(long)]
    compare: Option<PathBuf>,
    /// Where to write report.html (and, with --url, the .hgrm files and stats.json).
    #[arg(long, default_value = "report")]
    out: PathBuf,
}

#[derive(Args, Debug)]
struct StatsArgs {
    /// The engine's HTTP address.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Refresh interval in milliseconds.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// Stop after this many refreshes (default: until interrupted).
    #[arg(long)]
    count: Option<u64>,
}

#[derive(Args, Debug, Default, Clone)]
struct ServeArgs {
    /// TOML config file; flags given here override its values.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address of the HTTP + WebSocket port [default: 127.0.0.1:8080].
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Fan-out worker threads [default: one per core].
    #[arg(long)]
    workers: Option<usize>,
    /// Feed to run, repeatable: `sim`, `VENUE:SYM1,SYM2` (`binance:BTCUSDT,ETHUSDT`,
    /// `coinbase:BTC-USD`, `kraken:BTC/USD`) or `replay:FILE` [default: sim].
    #[arg(long)]
    feed: Vec<String>,
    /// `VENUE=URL`, repeatable: a venue's WebSocket URL (testnets, tests; `ws://` accepted).
    #[arg(long, value_name = "VENUE=URL")]
    feed_url: Vec<String>,
    /// `VENUE=URL`, repeatable: a venue's REST base URL (Binance depth snapshots).
    #[arg(long, value_name = "VENUE=URL")]
    rest_url: Vec<String>,
    /// Pace of `replay:` feeds: 1 (as recorded), N (N times faster) or max [default: 1].
    #[arg(long)]
    replay_speed: Option<String>,
    /// Number of simulated symbols [default: 16].
    #[arg(long)]
    sim_symbols: Option<usize>,
    /// Simulated events per second across all symbols; 0 = as fast as possible [default: 1000].
    #[arg(long)]
    sim_rate: Option<u64>,
    /// Seed of the simulator [default: 1].
    #[arg(long)]
    sim_seed: Option<u64>,
    /// Simulate one symbol, sim:BTC-USD, whose every event is one trade: exactly
    /// --sim-rate trades per second (the stream `tickwire bench compare` serves).
    #[arg(long)]
    sim_trades_only: bool,
    /// Do not pin threads to cores.
    #[arg(long)]
    no_pin: bool,
    /// The longest write-coalescing window, µs: a worker whose core is busier than
    /// --busy-target-pct lets a client's frames wait up to this long to share one write;
    /// a worker with room writes at once; 0 = never wait [default: 16000].
    #[arg(long)]
    flush_budget_us: Option<u64>,
    /// Busy share of a worker's core (percent) above which it starts to coalesce
    /// writes [default: 70].
    #[arg(long)]
    busy_target_pct: Option<u8>,
    /// A subscription whose oldest queued frame is older than this is conflated (latest
    /// ticker, fresh snapshot, exact trade gap), ms [default: 500].
    #[arg(long)]
    staleness_limit_ms: Option<u64>,
    /// Trades kept per symbol (in each worker) for version 2 recovery with `since`;
    /// 56 bytes each; 0 keeps none [default: 10000].
    #[arg(long)]
    trade_history: Option<usize>,
    /// Origins whose pages may open a WebSocket, comma separated (`*`: any); loopback
    /// origins and the engine's own host always may [default: none besides those].
    #[arg(long, value_delimiter = ',')]
    allowed_origins: Option<Vec<String>>,
    /// Host names this engine answers to, comma separated: a request whose Host names
    /// another gets 421 (DNS rebinding); loopback hosts always pass [default: none, which
    /// on a loopback --listen serves loopback names only, elsewhere any name].
    #[arg(long, value_delimiter = ',')]
    server_names: Option<Vec<String>>,
    /// Run as a node of a cluster on this NATS server (`nats://HOST:PORT`, JetStream on);
    /// see docs/cluster.md [default: none, one process does everything].
    #[arg(long, value_name = "URL")]
    nats: Option<String>,
    /// With --nats: `feed` runs the feeds and publishes them, `edge` serves clients from
    /// NATS (give it the same --feed specs as the feed nodes), `all` does both [default: all].
    #[arg(long, value_enum, requires = "nats")]
    role: Option<Role>,
    /// Edge: `interest` subscribes a symbol while a local client wants it, `all` takes
    /// every symbol from start [default: interest].
    #[arg(long, value_enum, requires = "nats")]
    edge_subscribe: Option<EdgeSubscribeArg>,
    /// Edge, `interest`: a symbol stays subscribed this long after its last client, ms
    /// [default: 1000].
    #[arg(long, requires = "nats")]
    edge_linger_ms: Option<u64>,
    /// Edge: a symbol not heard from (no data, no snapshot) this long makes /health 503,
    /// ms [default: 3000].
    #[arg(long, requires = "nats")]
    edge_stale_ms: Option<u64>,
    /// Feed node: every symbol's whole state is published this often for new and
    /// recovering edges, ms [default: 1000].
    #[arg(long, requires = "nats")]
    nats_snapshot_ms: Option<u64>,
    /// Feed node, hot standby: a feed is published only by the node holding its lease in
    /// NATS KV, which expires this long after its holder stops renewing it; 0 = no lease
    /// (every feed node publishes), ms [default: 3000].
    #[arg(long, requires = "nats")]
    nats_lease_ms: Option<u64>,
    /// PEM certificate chain (leaf first): with --tls-key the port serves https and wss
    /// only; SIGHUP reloads both files [default: none, plain http and ws].
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// HS256 secret for client tokens: WebSocket upgrades then need a JWT (401 without).
    /// Visible in `ps`: prefer --auth-secret-file or the TICKWIRE_AUTH_SECRET environment
    /// variable [default: none, the engine is open].
    #[arg(long, value_name = "SECRET", conflicts_with = "auth_secret_file")]
    auth_secret: Option<String>,
    /// A file holding the HS256 secret (trailing newlines dropped).
    #[arg(long, value_name = "PATH")]
    auth_secret_file: Option<PathBuf>,
    /// Log format: `text` (coloured only when stdout is a terminal) or `json` (one
    /// object per line, for log shippers) [default: text].
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
    /// Test only: also serve `/echo`, a WebSocket endpoint that echoes text and binary
    /// messages (for the Autobahn conformance suite); never on in production [default: off].
    #[arg(long)]
    echo_endpoint: bool,
}

/// How log lines are written (`--log-format`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
enum LogFormat {
    /// For people: one line per event, coloured on a terminal.
    #[default]
    Text,
    /// For log shippers: one JSON object per line, the event's fields at the top level.
    Json,
}

/// A cluster node's role (`--role`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// Runs the feeds and publishes them to NATS.
    Feed,
    /// Serves clients from NATS.
    Edge,
    /// Both: runs the feeds, publishes them, and serves clients from them directly.
    All,
}

/// What an edge subscribes (`--edge-subscribe`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum EdgeSubscribeArg {
    /// Each symbol while a local client wants it.
    Interest,
    /// Everything, from start.
    All,
}

/// The environment variable that may hold the token secret (below the two flags, above
/// the config file).
const AUTH_SECRET_ENV: &str = "TICKWIRE_AUTH_SECRET";

/// The config file: `[engine]` takes every engine setting (see docs/operations.md).
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, default)]
struct FileConfig {
    engine: Option<EngineConfig>,
    /// One feed spec or a list of them, as `--feed`.
    feed: Option<OneOrMany>,
    /// Venue name → WebSocket URL, as `--feed-url`.
    feed_url: std::collections::BTreeMap<String, String>,
    /// Venue name → REST base URL, as `--rest-url`.
    rest_url: std::collections::BTreeMap<String, String>,
    /// As `--replay-speed`.
    replay_speed: Option<String>,
    sim: SimFile,
}

#[derive(Deserialize, Debug)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, default)]
struct SimFile {
    symbols: Option<usize>,
    rate: Option<u64>,
    seed: Option<u64>,
    trades_only: Option<bool>,
}

/// Logs go to stdout through `tracing`, filtered by `RUST_LOG` (default `info`).
/// Colour codes only on a terminal (and not under `NO_COLOR`): in a file or a pipe they
/// are noise that log tools show as text.
fn init_logs(format: LogFormat) {
    use std::io::IsTerminal;
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => {
            let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            builder.with_ansi(colour).init();
        }
        LogFormat::Json => builder.json().flatten_event(true).with_ansi(false).init(),
    }
}

fn main() -> Result<ExitCode> {
    let cli = Cli::parse();
    let log_format = match &cli.command {
        Some(Command::Serve(args)) => args.log_format,
        None => cli.serve.log_format,
        Some(_) => None,
    };
    init_logs(log_format.unwrap_or_default());
    match cli.command {
        Some(Command::Serve(args)) => serve(*args)?,
        Some(Command::Bench(args)) => return bench::run(*args),
        Some(Command::Stats(args)) => stats_view::run(
            &args.url,
            std::time::Duration::from_millis(args.interval_ms),
            args.count,
            &mut std::io::stdout().lock(),
        )?,
        Some(Command::Report(args)) => {
            let run = match (&args.url, &args.from) {
                (Some(url), _) => report::from_url(url, &args.out)?,
                (None, Some(dir)) => report::from_dir(dir)?,
                (None, None) => {
                    bail!("give --url of a running engine or --from a directory of .hgrm files")
                }
            };
            let compare = args.compare.as_deref().map(report::from_dir).transpose()?;
            let path = report::write_html(&run, compare.as_ref(), &args.out)?;
            println!("wrote {}", path.display());
        }
        Some(Command::Record(args)) => feeds::record(args)?,
        Some(Command::MockExchange(args)) => feeds::mock_exchange(args)?,
        None => serve(cli.serve)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// How long a SIGHUP reload may take to read the TLS files before it is given up.
#[cfg(unix)]
const TLS_RELOAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// SIGHUP: reads the TLS certificate and key again; a bad file keeps the one in force.
///
/// The files are read on a thread of their own: a file that blocks (a FIFO, a stalled
/// network mount) must not hold up the signal loop, or SIGTERM would do nothing. Past
/// [`TLS_RELOAD_TIMEOUT`] the reload is given up (what the thread reads later is thrown
/// away), and while a read is still blocked a new SIGHUP is refused rather than piling
/// up threads.
#[cfg(unix)]
async fn reload_tls(
    tls: Option<std::sync::Arc<tickwire_engine::tls::TlsSetup>>,
    busy: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::Ordering;
    let Some(tls) = tls else {
        tracing::info!("SIGHUP: no TLS configured, nothing to reload");
        return;
    };
    // Acquire/Release: pairs with the reading thread's store when it is done.
    if busy.swap(true, Ordering::AcqRel) {
        tracing::error!(
            "SIGHUP: an earlier TLS reload is still blocked reading its files; this one is skipped"
        );
        return;
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let reader = std::sync::Arc::clone(&tls);
    let done = std::sync::Arc::clone(&busy);
    let spawned = std::thread::Builder::new()
        .name("tickwire-tls-reload".into())
        .spawn(move || {
            let _ = tx.send(reader.read_files());
            done.store(false, Ordering::Release);
        });
    if let Err(e) = spawned {
        busy.store(false, Ordering::Release);
        tracing::error!(error = %e, "SIGHUP: TLS reload failed (no thread); keeping the certificate in force");
        return;
    }
    match tokio::time::timeout(TLS_RELOAD_TIMEOUT, rx).await {
        Ok(Ok(Ok(key))) => {
            tls.install(key);
            tracing::info!("SIGHUP: TLS certificate reloaded; new handshakes use it");
        }
        Ok(Ok(Err(e))) => tracing::error!(
            error = %e,
            "SIGHUP: TLS reload failed; keeping the certificate in force"
        ),
        Ok(Err(_)) => tracing::error!(
            "SIGHUP: TLS reload failed (its thread ended without an answer); keeping the certificate in force"
        ),
        Err(_) => tracing::error!(
            timeout_s = TLS_RELOAD_TIMEOUT.as_secs(),
            cert = %tls.cert_path().display(),
            "SIGHUP: TLS reload timed out reading the files (a FIFO or a stalled mount?); keeping the certificate in force"
        ),
    }
}

/// The token secret from `TICKWIRE_AUTH_SECRET`: `None` when unset. Set but empty (or not
/// UTF-8) is refused: a deployment whose variable came out empty must not run open.
fn env_secret() -> Result<Option<String>> {
    match std::env::var(AUTH_SECRET_ENV) {
        Ok(s) if s.is_empty() => bail!(
            "{AUTH_SECRET_ENV} is set but empty: give it a secret of at least 32 random bytes \
             (openssl rand -base64 48), or unset it to run without token authentication"
        ),
        Ok(s) => Ok(Some(s)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            bail!("{AUTH_SECRET_ENV} is not valid UTF-8: give the secret as text")
        }
    }
}

fn serve(args: ServeArgs) -> Result<()> {
    let file: FileConfig = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
        }
        None => FileConfig::default(),
    };
    let mut cfg = file.engine.unwrap_or_default();
    if let Some(listen) = args.listen {
        cfg.listen = listen;
    }
    if let Some(workers) = args.workers {
        cfg.workers = workers;
    }
    if let Some(us) = args.flush_budget_us {
        cfg.flush_budget_us = us;
    }
    if let Some(pct) = args.busy_target_pct {
        cfg.busy_target_pct = pct;
    }
    if let Some(ms) = args.staleness_limit_ms {
        cfg.staleness_limit_ms = ms;
    }
    if let Some(n) = args.trade_history {
        cfg.trade_history = n;
    }
    if let Some(origins) = args.allowed_origins.clone() {
        cfg.allowed_origins = origins;
    }
    if let Some(names) = args.server_names.clone() {
        cfg.server_names = names;
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        cfg.tls_cert = Some(cert.clone());
        cfg.tls_key = Some(key.clone());
    }
    // One secret wins, in this order; the others (config file included) are dropped.
    if let Some(secret) = args.auth_secret.clone() {
        cfg.auth_secret = Some(Secret::new(secret));
        cfg.auth_secret_file = None;
    } else if let Some(path) = &args.auth_secret_file {
        cfg.auth_secret = None;
        cfg.auth_secret_file = Some(path.clone());
    } else if let Some(secret) = env_secret()? {
        cfg.auth_secret = Some(Secret::new(secret));
        cfg.auth_secret_file = None;
    }
    if args.echo_endpoint {
        cfg.echo_endpoint = true;
        tracing::warn!("--echo-endpoint: serving /echo (a test endpoint; not for production)");
    }
    if !args.no_pin && cfg.worker_cores.is_empty() && cfg.feed_cores.is_empty() {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        cfg.worker_cores = (0..n).collect();
        cfg.feed_cores = vec![n - 1];
    }
    let specs = if args.feed.is_empty() {
        file.feed.map(OneOrMany::into_vec).unwrap_or_default()
    } else {
        args.feed.clone()
    };
    let specs = if specs.is_empty() {
        vec!["sim".to_owned()]
    } else {
        specs
    };
    let mut feed_urls = feeds::url_map(&args.feed_url, "--feed-url")?;
    for (venue, url) in &file.feed_url {
        feed_urls
            .entry(venue.clone())
            .or_insert_with(|| url.clone());
    }
    let mut rest_urls = feeds::url_map(&args.rest_url, "--rest-url")?;
    for (venue, url) in &file.rest_url {
        rest_urls
            .entry(venue.clone())
            .or_insert_with(|| url.clone());
    }
    let speed = args
        .replay_speed
        .clone()
        .or(file.replay_speed.clone())
        .unwrap_or_else(|| "1".into());
    let speed: tickwire_feeds::record::Speed = speed.parse().map_err(anyhow::Error::msg)?;
    let sim = || -> Box<dyn Feed> {
        let defaults = SimConfig::default();
        let trades_only = args.sim_trades_only || file.sim.trades_only.unwrap_or(false);
        Box::new(SimFeed::new(SimConfig {
            // Trades only means one symbol unless told otherwise (then refused).
            symbols: args
                .sim_symbols
                .or(file.sim.symbols)
                .unwrap_or(if trades_only { 1 } else { defaults.symbols }),
            rate_per_s: args
                .sim_rate
                .or(file.sim.rate)
                .unwrap_or(defaults.rate_per_s),
            seed: args.sim_seed.or(file.sim.seed).unwrap_or(defaults.seed),
            trades_only,
            ..defaults
        }))
    };
    let feeds = feeds::build(&specs, &feed_urls, &rest_urls, speed, sim)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Signal handlers before the engine starts: SIGHUP's default action ends the
    // process, and a reload asked for while the engine comes up must not do that.
    #[cfg(unix)]
    let (mut term, mut hup) = {
        use tokio::signal::unix::{signal, SignalKind};
        let _in_runtime = runtime.enter();
        (
            signal(SignalKind::terminate())?,
            signal(SignalKind::hangup())?,
        )
    };
    let (engine, _cluster) = match &args.nats {
        None => (tickwire_engine::server::start(cfg, feeds)?, None),
        Some(url) => {
            let (engine, node) = cluster::start(url, &args, cfg, feeds)?;
            (engine, Some(node))
        }
    };
    tracing::info!(
        "open {}://{}/ for the dashboard; Ctrl-C stops",
        if engine.is_tls() { "https" } else { "http" },
        engine.local_addr()
    );
    #[cfg(unix)]
    let reload_busy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    runtime.block_on(async {
        #[cfg(unix)]
        loop {
            tokio::select! {
                r = tokio::signal::ctrl_c() => break r?,
                _ = term.recv() => break,
                _ = hup.recv() => {
                    tokio::spawn(reload_tls(engine.shared().tls.clone(), reload_busy.clone()));
                }
            }
        }
        #[cfg(not(unix))]
        tokio::signal::ctrl_c().await?;
        anyhow::Ok(())
    })?;
    tracing::info!("shutting down");
    engine.shutdown();
    Ok(())
}
