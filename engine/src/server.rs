//! Starting and stopping an engine: registers the feeds' symbols, builds one ring per
//! feed, binds one `SO_REUSEPORT` listener per worker on the same port, and starts the
//! feed and worker threads, pinned to cores when configured.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use thiserror::Error;
use tokio::sync::watch;

use crate::auth::Authenticator;
use crate::config::{ConfigError, EngineConfig};
use crate::feed::{Feed, FeedError, FeedShared, Publisher};
use crate::http::EngineShared;
use crate::ring;
use crate::stats::WorkerStats;
use crate::supervise::{self, Backoff};
use crate::symbol::SymbolRegistryBuilder;
use crate::tls::{TlsError, TlsSetup};
use crate::wake::Parker;
use crate::worker::{self, FeedPort, WorkerSpec};

/// Why an engine could not start.
#[derive(Debug, Error)]
pub enum EngineError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A feed could not register its symbols.
    #[error("feed {feed}: {source}")]
    Feed {
        /// The feed.
        feed: String,
        /// What went wrong.
        source: FeedError,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source} (is another server on that port? choose one with --listen)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// No feed was configured.
    #[error("no feed configured")]
    NoFeed,
    /// A thread could not be started.
    #[error("cannot start thread: {0}")]
    Thread(std::io::Error),
    /// The TLS certificate or key cannot be used.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    /// The token secret's file cannot be read or is empty.
    #[error("auth_secret_file {path}: {problem}")]
    AuthSecret {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        problem: String,
    },
}

/// A running engine.
pub struct EngineHandle {
    addr: SocketAddr,
    shared: Arc<EngineShared>,
    feeds_stop: Arc<AtomicBool>,
    workers_stop: watch::Sender<bool>,
    stats_stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    taps: Vec<RingTap>,
}

/// A reader of one feed's ring beside the workers, for whoever passes the feed's ticks
/// on (a cluster feed node's NATS publisher). Like a worker it never slows the feed: a
/// tap that falls a ring behind is lapped and asks the feed for its state.
pub struct RingTap {
    /// The feed (its name, symbols, counters and resync requests).
    pub feed: Arc<FeedShared>,
    /// Reads the feed's ring from where it stood at start.
    pub consumer: ring::Consumer<crate::tick::Tick>,
    /// Woken after each publish of any feed (one parker for all the taps of an engine,
    /// which one thread serves).
    pub parker: crate::sync::Arc<Parker>,
}

/// What [`start_with`] sets up besides feeds and workers. `Default`: nothing.
#[derive(Default)]
pub struct StartOptions {
    /// Make one [`RingTap`] per feed ([`EngineHandle::take_taps`]).
    pub taps: bool,
    /// Links to outside services whose state `/health` and `/stats` report.
    pub links: Vec<Arc<crate::http::LinkStatus>>,
}

/// How often the stats thread merges every thread's latency histograms for `/stats`,
/// `/metrics` and `/latency/<stage>.hgrm` (each thread publishes its own once a second).
pub const STATS_INTERVAL: Duration = Duration::from_secs(1);

impl EngineHandle {
    /// The address the engine serves on (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The control plane's view (registry, feeds, worker counters).
    pub fn shared(&self) -> &Arc<EngineShared> {
        &self.shared
    }

    /// Stops feeds, closes every client with 1001 after flushing what it can, and
    /// waits for every thread.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    /// The ring taps asked for in [`StartOptions::taps`] (once; empty after).
    pub fn take_taps(&mut self) -> Vec<RingTap> {
        std::mem::take(&mut self.taps)
    }

    /// Whether the port serves TLS (`https`, `wss`).
    pub fn is_tls(&self) -> bool {
        self.shared.tls.is_some()
    }

    /// Reads the TLS certificate and key files again (the binary calls this on SIGHUP).
    /// On success new handshakes present the new certificate and open connections go
    /// on; on error the certificate in force stays. `Ok(false)`: the engine has no TLS.
    pub fn reload_tls(&self) -> Result<bool, TlsError> {
        match &self.shared.tls {
            None => Ok(false),
            Some(tls) => tls.reload().map(|()| true),
        }
    }

    /// Stops only the feeds (tests use this to freeze the market and compare states).
    pub fn stop_feeds(&self) {
        self.feeds_stop.store(true, Ordering::Relaxed);
    }

    fn stop_and_join(&mut self) {
        self.feeds_stop.store(true, Ordering::Relaxed);
        self.stats_stop.store(true, Ordering::Relaxed);
        let _ = self.workers_stop.send(true);
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                tracing::error!("an engine thread panicked");
            }
        }
    }
}

impl Drop for EngineHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

fn bind(addr: SocketAddr) -> Result<TcpListener, std::io::Error> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    // Each worker binds the same port; the kernel spreads new connections across them.
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// Raises the soft open-file limit to the hard one, as servers do: every connection is a
/// file descriptor. Returns the limit in force. Logs what it did, and says when the limit
/// caps the connections the engine can hold.
pub fn raise_fd_limit() -> u64 {
    let (soft, hard) = match rlimit::Resource::NOFILE.get() {
        Ok(limits) => limits,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-file limit");
            return 0;
        }
    };
    let limit = if soft < hard {
        match rlimit::Resource::NOFILE.set(hard, hard) {
            Ok(()) => {
                tracing::info!(from = soft, to = hard, "raised the open-file limit");
                hard
            }
            Err(e) => {
                tracing::warn!(soft, hard, error = %e, "cannot raise the open-file limit");
                soft
            }
        }
    } else {
        soft
    };
    if limit < 65_536 {
        tracing::info!(
            limit,
            "the open-file limit caps connections at about {} (raise the hard limit, `ulimit -Hn`, for more)",
            limit.saturating_sub(64)
        );
    }
    limit
}

/// Descriptors kept beyond one per connection: listeners, feed sockets, files.
const FD_HEADROOM: u64 = 256;

/// HS256 secrets shorter than this draw a warning: a token is enough to guess a short
/// secret offline.
const SHORT_SECRET_BYTES: usize = 32;

/// The token checker the configuration asks for: the secret itself or its file
/// (trailing newlines dropped). `None` when neither is set.
fn authenticator(cfg: &EngineConfig) -> Result<Option<Authenticator>, EngineError> {
    let secret: Vec<u8> = match (&cfg.auth_secret, &cfg.auth_secret_file) {
        (Some(secret), _) => secret.expose().to_vec(),
        (None, Some(path)) => {
            let mut bytes = std::fs::read(path).map_err(|e| EngineError::AuthSecret {
                path: path.clone(),
                problem: e.to_string(),
            })?;
            while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                bytes.pop();
            }
            if bytes.is_empty() {
                return Err(EngineError::AuthSecret {
                    path: path.clone(),
                    problem: "the file is empty".into(),
                });
            }
            bytes
        }
        (None, None) => return Ok(None),
    };
    if secret.len() < SHORT_SECRET_BYTES {
        tracing::warn!(
            bytes = secret.len(),
            "auth secret is short: use at least {SHORT_SECRET_BYTES} random bytes (e.g. `openssl rand -base64 48`)"
        );
    }
    Ok(Some(Authenticator::new(&secret)))
}

/// Starts an engine serving `feeds`.
pub fn start(cfg: EngineConfig, feeds: Vec<Box<dyn Feed>>) -> Result<EngineHandle, EngineError> {
    start_with(cfg, feeds, StartOptions::default())
}

/// Starts an engine serving `feeds`, with the extras of `options`.
pub fn start_with(
    cfg: EngineConfig,
    mut feeds: Vec<Box<dyn Feed>>,
    options: StartOptions,
) -> Result<EngineHandle, EngineError> {
    cfg.validate()?;
    if feeds.is_empty() {
        return Err(EngineError::NoFeed);
    }
    let tls = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => Some(Arc::new(TlsSetup::load(cert, key)?)),
        _ => None,
    };
    let auth = authenticator(&cfg)?.map(Arc::new);
    let fd_limit = raise_fd_limit();
    let cfg = Arc::new(cfg);
    let mut builder = SymbolRegistryBuilder::new();
    let mut feed_symbols = Vec::new();
    for feed in &mut feeds {
        let ids = feed
            .register(&mut builder)
            .map_err(|source| EngineError::Feed {
                feed: feed.name().to_owned(),
                source,
            })?;
        feed_symbols.push(ids);
    }
    let registry = Arc::new(builder.build());

    let mut publishers: Vec<Publisher> = feeds
        .iter()
        .zip(feed_symbols)
        .map(|(f, ids)| {
            Publisher::new(
                f.name(),
                ids,
                registry.len(),
                ring::ring(cfg.ring_capacity).0,
            )
        })
        .collect();

    let interest = Arc::new(crate::interest::Interest::new(registry.len()));
    for p in &mut publishers {
        p.set_interest(interest.clone());
    }

    let first = bind(cfg.listen).map_err(|source| EngineError::Bind {
        addr: cfg.listen,
        source,
    })?;
    let addr = first.local_addr().map_err(|source| EngineError::Bind {
        addr: cfg.listen,
        source,
    })?;
    // Before any worker accepts: growing the table later stalls an accept (see fd_table).
    let fds = crate::fd_table::wanted(cfg.max_connections, FD_HEADROOM, fd_limit);
    match crate::fd_table::reserve(&first, fds) {
        Ok(fds) => tracing::debug!(fds, "descriptor table sized"),
        Err(e) => {
            tracing::warn!(fds, error = %e, "cannot size the descriptor table; it grows as connections come")
        }
    }
    let mut listeners = vec![first];
    for _ in 1..cfg.workers {
        listeners.push(bind(addr).map_err(|source| EngineError::Bind { addr, source })?);
    }

    let worker_stats: Vec<Arc<WorkerStats>> = (0..cfg.workers)
        .map(|_| Arc::new(WorkerStats::default()))
        .collect();
    let shared = Arc::new(EngineShared {
        registry: registry.clone(),
        feeds: publishers.iter().map(|p| p.shared().clone()).collect(),
        workers: worker_stats.clone(),
        cfg: cfg.clone(),
        started: Instant::now(),
        admission: Arc::new(crate::admission::Admission::new(&cfg)),
        links: options.links,
        interest: interest.clone(),
        tls,
        auth,
        latency: crate::http::LatencyBoard::default(),
        epoch: crate::protocol::version::fresh_epoch().into(),
    });
    // The first (empty) snapshot, so that requests never merge (the stats thread, started
    // last, makes the next ones).
    shared.refresh_latency();

    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let pick = |list: &[usize], i: usize, what: &str| -> Option<core_affinity::CoreId> {
        if list.is_empty() {
            return None;
        }
        let want = list[i % list.len()];
        let found = cores.iter().copied().find(|c| c.id == want);
        if found.is_none() {
            tracing::warn!(
                thread = what,
                core = want,
                available = cores.len(),
                "no such core; this thread runs unpinned"
            );
        }
        found
    };
    let threads_wanted = feeds.len() + cfg.workers;
    if threads_wanted > cores.len().max(1) {
        tracing::info!(
            threads = threads_wanted,
            cores = cores.len(),
            "more engine threads than cores: threads share cores (fine for tests, not for lowest latency)"
        );
    }

    let (workers_stop, workers_rx) = watch::channel(false);
    let feeds_stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    let parkers: Vec<crate::sync::Arc<Parker>> = (0..cfg.workers)
        .map(|_| crate::sync::Arc::new(Parker::new()))
        .collect();
    let mut ports: Vec<Vec<FeedPort>> = (0..cfg.workers).map(|_| Vec::new()).collect();
    for p in &mut publishers {
        for parker in &parkers {
            p.add_waker(parker.clone());
        }
    }
    let mut taps = Vec::new();
    if options.taps {
        let parker = crate::sync::Arc::new(Parker::new());
        for p in &mut publishers {
            p.add_waker(parker.clone());
            taps.push(RingTap {
                feed: p.shared().clone(),
                consumer: p.subscribe(),
                parker: parker.clone(),
            });
        }
    }
    for p in &publishers {
        for worker_ports in &mut ports {
            worker_ports.push(FeedPort::new(p.subscribe(), p.shared().clone()));
        }
    }
    for (i, (listener, feeds)) in listeners.into_iter().zip(ports).enumerate() {
        let spec = WorkerSpec {
            index: i,
            listener,
            feeds,
            cfg: cfg.clone(),
            shared: shared.clone(),
            stats: worker_stats[i].clone(),
            shutdown: workers_rx.clone(),
            parker: parkers[i].clone(),
            core_id: pick(&cfg.worker_cores, i, "worker"),
        };
        let t = std::thread::Builder::new()
            .name(format!("tickwire-worker-{i}"))
            .spawn(move || worker::run(spec))
            .map_err(EngineError::Thread)?;
        threads.push(t);
    }
    for (i, (mut feed, mut publisher)) in feeds.into_iter().zip(publishers.drain(..)).enumerate() {
        let stop = feeds_stop.clone();
        let core_id = pick(&cfg.feed_cores, i, "feed");
        let name = feed.name().to_owned();
        let (restart_initial_ms, restart_max_ms) =
            (cfg.feed_restart_initial_ms, cfg.feed_restart_max_ms);
        let t = std::thread::Builder::new()
            .name(format!("tickwire-feed-{name}"))
            .spawn(move || {
                if let Some(id) = core_id {
                    if !core_affinity::set_for_current(id) {
                        tracing::warn!(feed = %name, core = id.id, "could not pin feed thread; running unpinned");
                    }
                }
                // A panicking feed is caught, shown `restarting` and run again after a
                // backoff; see `supervise`.
                let backoff = Backoff::new(
                    Duration::from_millis(restart_initial_ms),
                    Duration::from_millis(restart_max_ms),
                );
                supervise::run_feed(feed.as_mut(), &mut publisher, &stop, backoff);
            })
            .map_err(EngineError::Thread)?;
        threads.push(t);
    }
    match &shared.tls {
        Some(tls) => tracing::info!(cert = %tls.cert_path().display(), "TLS on: this port serves https and wss only (SIGHUP reloads the certificate)"),
        None => tracing::info!("TLS off: this port serves http and ws (give --tls-cert and --tls-key for https and wss)"),
    }
    match (cfg.server_names.is_empty(), cfg.listen.ip().is_loopback()) {
        (false, _) => tracing::info!(names = ?cfg.server_names, "Host checked: requests naming another host get 421 (server_names)"),
        (true, true) => tracing::info!("Host checked: listening on loopback, only loopback host names (localhost, 127.0.0.1, [::1]) are served; set server_names (--server-names) to serve others"),
        (true, false) => tracing::warn!(%addr, "Host not checked: any host name is served, so a page that rebinds its DNS name to this address can reach the engine; set server_names (--server-names md.example.com) to the names clients use"),
    }
    if shared.auth.is_some() {
        tracing::info!(
            "token authentication on: WebSocket upgrades need an HS256 token (401 without one)"
        );
    } else {
        tracing::warn!(%addr, "no auth secret: the engine is open, anyone who can reach this port may subscribe (give --auth-secret-file for tokens)");
    }
    let stats_stop = Arc::new(AtomicBool::new(false));
    {
        let (shared, stop) = (shared.clone(), stats_stop.clone());
        let t = std::thread::Builder::new()
            .name("tickwire-stats".into())
            .spawn(move || run_stats(&shared, &stop))
            .map_err(EngineError::Thread)?;
        threads.push(t);
    }
    tracing::info!(%addr, workers = cfg.workers, feeds = shared.feeds.len(), symbols = registry.len(), "tickwire serving");
    Ok(EngineHandle {
        addr,
        shared,
        feeds_stop,
        workers_stop,
        stats_stop,
        threads,
        taps,
    })
}

/// The stats thread: a fresh latency snapshot every [`STATS_INTERVAL`] until `stop`.
fn run_stats(shared: &EngineShared, stop: &AtomicBool) {
    yield_to_data_path();
    let mut next = Instant::now() + STATS_INTERVAL;
    // Relaxed: a request to end; it hands over no data.
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= next {
            shared.refresh_latency_yielding();
            next = (next + STATS_INTERVAL).max(now);
            continue;
        }
        // Short naps so that shutdown does not wait a whole interval.
        std::thread::sleep((next - now).min(Duration::from_millis(50)));
    }
}

/// Puts the calling (stats) thread in `SCHED_IDLE`: it runs only when no worker or feed
/// wants its core. Wherever threads outnumber cores the stats thread shares a core with
/// them, and at the normal policy the scheduler could pick it, a second's merge at once,
/// over a worker in the middle of a write round; measured at light load, that held one
/// trade's tail deliveries about 4 ms once a second. A waking worker preempts an idle
/// thread at once, and the refresh yields between stages
/// ([`EngineShared::refresh_latency_yielding`]). The cost is that figures can be late
/// while the engine's cores are saturated (an idle thread still gets a sliver of CPU).
fn yield_to_data_path() {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::{
            set_thread_priority_and_policy, thread_native_id, NormalThreadSchedulePolicy,
            ThreadPriority, ThreadSchedulePolicy,
        };
        let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
        if let Err(e) =
            set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Min, idle)
        {
            tracing::debug!(error = ?e, "stats thread stays at the normal scheduling policy");
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use thread_priority::{
        thread_schedule_policy, NormalThreadSchedulePolicy, ThreadSchedulePolicy,
    };

    #[test]
    fn the_stats_thread_gives_way_to_the_data_path() {
        let policy = std::thread::spawn(|| {
            super::yield_to_data_path();
            thread_schedule_policy()
        })
        .join()
        .map_err(|_| "thread panicked");
        assert!(
            matches!(
                policy,
                Ok(Ok(ThreadSchedulePolicy::Normal(
                    NormalThreadSchedulePolicy::Idle
                )))
            ),
            "{policy:?}"
        );
        // Only the calling thread changed.
        assert!(!matches!(
            thread_schedule_policy(),
            Ok(ThreadSchedulePolicy::Normal(
                NormalThreadSchedulePolicy::Idle
            ))
        ));
    }
}
