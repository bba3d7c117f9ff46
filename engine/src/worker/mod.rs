//! Fan-out workers: one OS thread each, optionally pinned, running a current-thread tokio
//! runtime with its own `SO_REUSEPORT` listener and its own share of the clients.
//!
//! A worker reads every feed's ring once, applies each tick to its [`core::Core`] (which
//! encodes and queues frames) and flushes the clients that got frames, in batches that
//! end on book-event boundaries. When every ring is empty it parks until a feed publishes,
//! so an idle engine uses no CPU. A lapped worker asks the feed for its state and
//! resynchronises every affected subscription; the feed never waits for it. At a feed's
//! [`Event::Reset`] (one symbol's state replaced) the worker takes that symbol's new
//! state and resynchronises its subscriptions only.

pub mod book_log;
pub mod busy;
pub mod client;
pub mod clients;
pub mod clock;
pub mod conflate;
pub mod core;
pub mod fanout;
pub mod flush;
pub mod handshake;
pub mod history;
pub mod http_io;
pub mod index;
pub mod liveness;
pub mod priority;
pub mod send;
pub mod session;
pub mod signal;
pub mod tls;
pub mod write;

use std::cell::RefCell;
use std::convert::Infallible;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use crate::admission::Permit;
use crate::config::EngineConfig;
use crate::feed::{FeedShared, ResyncReply};
use crate::http::{self, EngineShared};
use crate::protocol::version::{self, Version};
use crate::ring::{Consumer, RecvError};
use crate::stats::{CloseReason, WorkerStats};
use crate::tick::{Event, LevelFlags, Tick};
use crate::wake::Parker;

use self::core::Core;
use self::fanout::GapCause;

/// A TLS connection as the HTTP layer holds it.
type TlsStream = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
use self::session::Endpoint;

/// Ticks taken from one ring before the worker flushes and lets connections run.
const BATCH_TICKS: usize = 1024;

/// A worker's view of one feed: its ring consumer and its shared handle.
pub struct FeedPort {
    /// Reads the feed's ring.
    pub consumer: Consumer<Tick>,
    /// The feed's handle (for resync requests).
    pub feed: Arc<FeedShared>,
    resync: Option<tokio::sync::oneshot::Receiver<ResyncReply>>,
}

impl FeedPort {
    /// A port over `consumer` of `feed`'s ring.
    pub fn new(consumer: Consumer<Tick>, feed: Arc<FeedShared>) -> Self {
        Self {
            consumer,
            feed,
            resync: None,
        }
    }
}

/// Everything a worker thread needs.
pub struct WorkerSpec {
    /// Worker number, for logs.
    pub index: usize,
    /// Its listener (already bound, `SO_REUSEPORT`).
    pub listener: std::net::TcpListener,
    /// One port per feed.
    pub feeds: Vec<FeedPort>,
    /// Engine configuration.
    pub cfg: Arc<EngineConfig>,
    /// Shared view for HTTP endpoints.
    pub shared: Arc<EngineShared>,
    /// This worker's counters.
    pub stats: Arc<WorkerStats>,
    /// Becomes `true` on shutdown.
    pub shutdown: watch::Receiver<bool>,
    /// Core to pin to, if any.
    pub core_id: Option<core_affinity::CoreId>,
    /// Woken by the feeds after each publish.
    pub parker: crate::sync::Arc<Parker>,
}

/// Runs a worker on the calling thread until shutdown.
pub fn run(spec: WorkerSpec) {
    if let Some(id) = spec.core_id {
        if !core_affinity::set_for_current(id) {
            tracing::warn!(
                worker = spec.index,
                core = id.id,
                "could not pin worker thread; running unpinned"
            );
        }
    }
    // The runtime's park hooks measure how busy the thread is: the coalescing policy
    // writes at once while the core has room (worker/flush.rs).
    let meter = Arc::new(busy::BusyMeter::new(Instant::now()));
    let (parks, unparks) = (meter.clone(), meter.clone());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(move || parks.park(Instant::now()))
        .on_thread_unpark(move || unparks.unpark(Instant::now()))
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(worker = spec.index, error = %e, "cannot start worker runtime");
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, serve(spec, meter));
}

struct Ctx {
    core: Rc<RefCell<Core>>,
    /// Set when the engine serves TLS: every connection starts with a handshake.
    tls: Option<tokio_rustls::TlsAcceptor>,
    scratch: Rc<session::ReadScratch>,
    cfg: Arc<EngineConfig>,
    shared: Arc<EngineShared>,
}

async fn serve(spec: WorkerSpec, meter: Arc<busy::BusyMeter>) {
    let WorkerSpec {
        index,
        listener,
        feeds,
        cfg,
        shared,
        stats,
        mut shutdown,
        parker,
        ..
    } = spec;
    let listener = match listener
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpListener::from_std(listener))
    {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(worker = index, error = %e, "cannot use listener");
            return;
        }
    };
    let mut core = Core::new(cfg.clone(), shared.registry.clone(), stats);
    core.set_interest(shared.interest.clone());
    core.set_epoch(shared.epoch.clone());
    core.set_busy_meter(meter);
    let core = Rc::new(RefCell::new(core));
    let ctx = Rc::new(Ctx {
        core: core.clone(),
        tls: shared
            .tls
            .as_ref()
            .map(|t| tokio_rustls::TlsAcceptor::from(t.server_config())),
        scratch: Rc::new(session::ReadScratch::new()),
        cfg: cfg.clone(),
        shared,
    });
    let stats = core.borrow().stats().clone();
    let housekeeping = tokio::task::spawn_local(housekeep(core.clone(), cfg.clone()));
    let accepting = tokio::task::spawn_local(accept_connections(ctx, listener, index));
    // The fan-out is this future's own work, polled before every turn of connection
    // tasks (see `priority`); accepting and every connection are tasks.
    let mut fanout = std::pin::pin!(priority::Caught::new(fan_out(core.clone(), feeds, parker)));
    let mut failed = false;
    loop {
        tokio::select! {
            biased;
            ended = &mut fanout, if !failed => {
                // The fan-out never ends by itself: it panicked. This worker's clients
                // get no more data; tell them to go elsewhere, and tell /health. The
                // worker goes on answering HTTP (upgrades get 503) until shutdown.
                let error = match &ended {
                    Ok(()) => "ended",
                    Err(panic) => priority::panic_message(panic),
                };
                tracing::error!(worker = index, error, "fan-out failed; closing this worker's clients with 1011");
                failed = true;
                WorkerStats::set(&stats.failed, 1);
                let keys = core.borrow().client_keys();
                for key in keys {
                    core.borrow_mut().close_client(
                        key,
                        CloseReason::InternalError,
                        "engine worker failed; reconnect",
                        true,
                    );
                }
            }
            _ = shutdown.changed() => break,
        }
    }
    accepting.abort();
    // Going away: flush what we can, then close every client with 1001. The fan-out
    // (if alive) goes on meanwhile: it writes what the clients still have queued.
    let keys = core.borrow().client_keys();
    for key in keys {
        core.borrow_mut()
            .close_client(key, CloseReason::GoingAway, "server shutting down", false);
    }
    let drained = async {
        let deadline = Instant::now() + Duration::from_secs(2);
        while !core.borrow().client_keys().is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    if failed {
        drained.await;
    } else {
        tokio::select! {
            biased;
            _ = &mut fanout => {}
            () = drained => {}
        }
    }
    housekeeping.abort();
}

/// Accepts connections until aborted, each served by a task of its own.
async fn accept_connections(ctx: Rc<Ctx>, listener: tokio::net::TcpListener, index: usize) {
    let stats = ctx.core.borrow().stats().clone();
    let mut accept_errors = 0u64;
    let mut last_accept_warning: Option<Instant> = None;
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let permit = match ctx.shared.admission.admit(peer.ip(), Instant::now()) {
                    Ok(permit) => Rc::new(permit),
                    Err(refusal) => {
                        // Closed at once: a full engine answers nothing it cannot keep.
                        WorkerStats::add(&stats.connections_refused, 1);
                        tracing::debug!(%peer, %refusal, "connection refused");
                        continue;
                    }
                };
                // From the first byte: the handshake's response must not wait for the
                // client's delayed ACK (Nagle), and frames are batched by the worker,
                // never by the kernel.
                let _ = stream.set_nodelay(true);
                match &ctx.tls {
                    None => {
                        tokio::task::spawn_local(serve_http(ctx.clone(), stream, permit));
                    }
                    Some(acceptor) => {
                        let acceptor = acceptor.clone();
                        tokio::task::spawn_local(serve_https(
                            ctx.clone(),
                            acceptor,
                            stream,
                            permit,
                        ));
                    }
                }
                // One connection per poll: `accept` stays ready while the backlog holds
                // connections, and a burst would otherwise be taken in one go (up to
                // tokio's budget of 128 operations) ahead of the fan-out's next pass.
                tokio::task::yield_now().await;
            }
            Err(e) => {
                // Out of descriptors (EMFILE/ENFILE) or buffers: back off instead of
                // spinning on a listener that stays readable, and say so rarely.
                accept_errors += 1;
                if last_accept_warning
                    .is_none_or(|t: Instant| t.elapsed() >= Duration::from_secs(10))
                {
                    tracing::warn!(
                        worker = index,
                        error = %e,
                        failed_since_last_warning = accept_errors,
                        "accept failed (at the open-file limit, connections are capped); backing off"
                    );
                    last_accept_warning = Some(Instant::now());
                    accept_errors = 0;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The TLS handshake (within the header timeout: a client that stalls it is a
/// slowloris too), then HTTP over it. New handshakes get the certificate in force.
async fn serve_https(
    ctx: Rc<Ctx>,
    acceptor: tokio_rustls::TlsAcceptor,
    stream: tokio::net::TcpStream,
    permit: Rc<Permit>,
) {
    let timeout = Duration::from_millis(ctx.cfg.header_timeout_ms);
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => serve_http(ctx, tls, permit).await,
        Ok(Err(e)) => {
            WorkerStats::add(&ctx.core.borrow().stats().tls_handshakes_failed, 1);
            tracing::debug!(error = %e, "TLS handshake failed");
        }
        Err(_) => {
            WorkerStats::add(&ctx.core.borrow().stats().tls_handshakes_failed, 1);
            tracing::debug!("TLS handshake timed out");
        }
    }
}

/// The most a connection's request head may buffer: a request line and headers past it
/// get `431`. hyper's default (about 400 KiB) let each slow connection hold that much for
/// the header timeout; the largest legitimate request (a token in `Authorization` or the
/// query string, a browser's cookies) is far below it.
const HTTP_MAX_BUF_BYTES: usize = 64 * 1024;

async fn serve_http<I>(ctx: Rc<Ctx>, stream: I, permit: Rc<Permit>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let ctx_timeout_ms = ctx.cfg.header_timeout_ms;
    let write_timeout = Duration::from_millis(ctx.cfg.http_write_timeout_ms);
    let service = hyper::service::service_fn(move |req| {
        let ctx = ctx.clone();
        let permit = permit.clone();
        async move { Ok::<_, Infallible>(route(ctx, permit, req)) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_millis(ctx_timeout_ms))
        .max_buf_size(HTTP_MAX_BUF_BYTES)
        .serve_connection(
            TokioIo::new(http_io::WriteTimeout::new(stream, write_timeout)),
            service,
        )
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "HTTP connection ended with an error");
    }
}

fn text(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    resp
}

/// `401` for a refused token, with the reason (RFC 6750 §3 challenge).
fn unauthorized(refusal: &crate::auth::AuthError) -> Response<Full<Bytes>> {
    let mut resp = text(
        StatusCode::UNAUTHORIZED,
        "text/plain",
        format!("{refusal}\n"),
    );
    resp.headers_mut().insert(
        hyper::header::WWW_AUTHENTICATE,
        hyper::header::HeaderValue::from_static("Bearer realm=\"tickwire\""),
    );
    resp
}

fn route(ctx: Rc<Ctx>, permit: Rc<Permit>, mut req: Request<Incoming>) -> Response<Full<Bytes>> {
    // Listening on loopback with no names set, only loopback names pass: a page that
    // rebinds its DNS name to 127.0.0.1 then reaches nothing (docs/security.md).
    let loopback_only = ctx.cfg.listen.ip().is_loopback();
    if let Err(refusal) = handshake::check_host(&req, &ctx.cfg.server_names, loopback_only) {
        let status = match refusal {
            handshake::HostRefusal::Malformed => StatusCode::BAD_REQUEST,
            handshake::HostRefusal::Misdirected => StatusCode::MISDIRECTED_REQUEST,
        };
        return text(status, "text/plain", format!("{refusal}\n"));
    }
    let path = req.uri().path().to_owned();
    let upgrade = handshake::is_upgrade_request(&req);
    let endpoint = match path.as_str() {
        "/ws" => Some(Endpoint::Protocol(Version::V1)),
        "/echo" if ctx.cfg.echo_endpoint => Some(Endpoint::Echo),
        _ => None,
    };
    if let Some(endpoint) = endpoint {
        if WorkerStats::get(&ctx.core.borrow().stats().failed) != 0 {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "this engine worker failed: retry (another worker may take you)\n",
            );
        }
        if !upgrade {
            return text(
                StatusCode::UPGRADE_REQUIRED,
                "text/plain",
                "GET /ws is a WebSocket endpoint: send an upgrade request\n",
            );
        }
        if let Err(refusal) = ctx.shared.admission.upgrade(&permit, Instant::now()) {
            return text(
                StatusCode::TOO_MANY_REQUESTS,
                "text/plain",
                format!("{refusal}\n"),
            );
        }
        let subprotocols = match endpoint {
            Endpoint::Protocol(_) => version::ACCEPTED,
            Endpoint::Echo => &[],
        };
        return match handshake::accept(
            &mut req,
            &ctx.cfg.allowed_origins,
            ctx.tls.is_some(),
            subprotocols,
        ) {
            Ok((response, on_upgrade, version)) => {
                let endpoint = match endpoint {
                    Endpoint::Protocol(_) => Endpoint::Protocol(version),
                    Endpoint::Echo => Endpoint::Echo,
                };
                // After the handshake's own checks (403, 426, 400): a token is looked at
                // only on a request that could otherwise be upgraded.
                let grant = match ctx.shared.auth.as_ref().map(|a| a.check(&req)) {
                    None => None,
                    Some(Ok(grant)) => Some(grant),
                    Some(Err(refusal)) => {
                        WorkerStats::add(&ctx.core.borrow().stats().upgrades_unauthorized, 1);
                        tracing::debug!(%refusal, "upgrade refused: 401");
                        return unauthorized(&refusal);
                    }
                };
                let ctx = ctx.clone();
                tokio::task::spawn_local(async move {
                    // The connection keeps its place for as long as the session runs.
                    let _permit = permit;
                    let Some((stream, prefix, tls)) = upgraded_stream(on_upgrade.await) else {
                        return;
                    };
                    session::run(
                        ctx.core.clone(),
                        ctx.cfg.clone(),
                        ctx.scratch.clone(),
                        stream,
                        prefix,
                        tls,
                        grant,
                        endpoint,
                    )
                    .await
                });
                response
            }
            Err(e) => e.response(),
        };
    }
    if upgrade {
        return text(
            StatusCode::NOT_FOUND,
            "text/plain",
            "no WebSocket endpoint here; use /ws\n",
        );
    }
    if req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "only GET\n");
    }
    let shared = &ctx.shared;
    match path.as_str() {
        "/" => text(StatusCode::OK, "text/html; charset=utf-8", http::INDEX_HTML),
        "/dashboard.js" => text(
            StatusCode::OK,
            "text/javascript; charset=utf-8",
            http::DASHBOARD_JS,
        ),
        "/dashboard-worker.js" => text(
            StatusCode::OK,
            "text/javascript; charset=utf-8",
            http::DASHBOARD_WORKER_JS,
        ),
        "/tickwire-client.js" => text(
            StatusCode::OK,
            "text/javascript; charset=utf-8",
            http::TICKWIRE_CLIENT_JS,
        ),
        "/dashboard.css" => text(
            StatusCode::OK,
            "text/css; charset=utf-8",
            http::DASHBOARD_CSS,
        ),
        "/health" => {
            let (ok, reason) = http::health(shared);
            let status = if ok {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            text(status, "text/plain", reason)
        }
        "/symbols" => text(
            StatusCode::OK,
            "application/json",
            http::symbols_json(shared),
        ),
        "/stats" => text(StatusCode::OK, "application/json", http::stats_json(shared)),
        "/metrics" => text(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            http::metrics_text(shared),
        ),
        p if p.starts_with("/latency/") && p.ends_with(".hgrm") => {
            let stage = &p["/latency/".len()..p.len() - ".hgrm".len()];
            match http::latency_hgrm(shared, stage) {
                Some(body) => text(StatusCode::OK, "text/plain; charset=utf-8", body),
                None => text(
                    StatusCode::NOT_FOUND,
                    "text/plain",
                    format!("no stage {stage:?}\n"),
                ),
            }
        }
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}

/// The socket of an upgraded connection and the bytes hyper read past the request.
///
/// A plain function so that nothing of hyper's (its `Parts`, its read buffer) stays in
/// the connection's task for the session's life: held, the buffer would cost kilobytes
/// per client, and the parts would grow every task.
fn upgraded_stream(
    upgraded: Result<hyper::upgrade::Upgraded, hyper::Error>,
) -> Option<(tokio::net::TcpStream, Vec<u8>, Option<tls::TlsConn>)> {
    let upgraded = match upgraded {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            return None;
        }
    };
    // The write timeout is HTTP's alone: the session gets the bare socket.
    match upgraded.downcast::<TokioIo<http_io::WriteTimeout<tokio::net::TcpStream>>>() {
        Ok(parts) => Some((
            parts.io.into_inner().into_inner(),
            parts.read_buf.to_vec(),
            None,
        )),
        Err(upgraded) => match upgraded.downcast::<TokioIo<http_io::WriteTimeout<TlsStream>>>() {
            // The TLS session goes on with the socket; what hyper read past the request
            // is plaintext, like a plain connection's.
            Ok(parts) => {
                let prefix = parts.read_buf.to_vec();
                let (io, conn) = parts.io.into_inner().into_inner().into_inner();
                Some((io, prefix, Some(tls::TlsConn::new(conn))))
            }
            Err(_) => {
                tracing::error!("upgraded connection is neither TCP nor TLS");
                None
            }
        },
    }
}

/// Reads every ring, applies ticks, flushes clients; parks when there is nothing to do.
async fn fan_out(
    core: Rc<RefCell<Core>>,
    mut ports: Vec<FeedPort>,
    parker: crate::sync::Arc<Parker>,
) {
    loop {
        let mut got = 0usize;
        let mut resyncing = false;
        let due_now;
        {
            let mut core = core.borrow_mut();
            if core
                .stats()
                .inject_panic
                .load(std::sync::atomic::Ordering::Relaxed)
            {
                panic!("fan-out panic injected by a test");
            }
            core.begin_pass();
            for port in &mut ports {
                if let Some(rx) = port.resync.as_mut() {
                    match rx.try_recv() {
                        Ok(reply) => {
                            port.consumer.skip_to(reply.position);
                            core.resync(reply, GapCause::Consumer);
                            port.resync = None;
                        }
                        Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {
                            resyncing = true;
                            continue;
                        }
                        Err(tokio::sync::oneshot::error::TryRecvError::Closed) => {
                            tracing::warn!(feed = %port.feed.name, "feed gone before it could resync this worker");
                            port.resync = None;
                        }
                    }
                }
                let mut taken = 0usize;
                let mut mid_book_event = false;
                while taken < BATCH_TICKS || mid_book_event {
                    match port.consumer.try_recv() {
                        Ok(Tick {
                            event: Event::Reset,
                            ..
                        }) => {
                            // The feed replaced one symbol's state: take it and read on;
                            // if the feed no longer keeps it, take the whole feed's state,
                            // as after a lap.
                            let at = port.consumer.position() - 1;
                            match port.feed.reset_state(at) {
                                Some((symbol, state)) => core.resync(
                                    ResyncReply {
                                        position: at + 1,
                                        states: vec![(symbol, state)],
                                    },
                                    GapCause::Feed,
                                ),
                                None => {
                                    port.resync = Some(port.feed.request_resync());
                                    resyncing = true;
                                    break;
                                }
                            }
                        }
                        Ok(tick) => {
                            core.on_tick(&tick);
                            taken += 1;
                            mid_book_event = matches!(tick.event, Event::Level { flags, .. } if !flags.contains(LevelFlags::BATCH_END));
                        }
                        Err(RecvError::Empty) => break,
                        Err(RecvError::Lagged(missed)) => {
                            let stats = core.stats();
                            WorkerStats::add(&stats.ring_laps, 1);
                            WorkerStats::add(&stats.ring_missed, missed);
                            tracing::warn!(feed = %port.feed.name, missed, "worker lapped by the ring; resynchronising from the feed");
                            port.resync = Some(port.feed.request_resync());
                            resyncing = true;
                            break;
                        }
                    }
                }
                got += taken;
            }
            WorkerStats::add(&core.stats().ticks, got as u64);
            core.flush_due();
            let now = core.clock().now();
            core.fire_timers(now);
            // Clients already due (a round that `MAX_BATCH` cut short) are written in the
            // next pass, not after a sleep: tokio rounds a deadline up to its timer's next
            // millisecond, so sleeping on one that has just passed can wait up to 1 ms.
            due_now = core.flush_deadline().is_some_and(|due| due <= now);
        }
        // Another pass at once only when there is more to read or write: a yield costs the
        // runtime a zero-timeout poll of its driver (an `epoll_wait` per trade at light
        // load), and when there is nothing more, parking lets connection tasks run just
        // the same before the thread blocks.
        let more = got > 0 && ports.iter().any(|p| p.consumer.available() > 0);
        if more || due_now {
            tokio::task::yield_now().await;
        } else if resyncing {
            // The feed answers between its batches; poll for the reply.
            tokio::time::sleep(Duration::from_millis(1)).await;
        } else {
            let next_timer = {
                let core = core.borrow();
                match (core.next_timer(), core.flush_deadline()) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            };
            let park = parker.park_until(|| ports.iter().any(|p| p.consumer.available() > 0));
            match next_timer {
                Some(due) => {
                    tokio::select! {
                        () = park => {}
                        () = tokio::time::sleep_until(due.into()) => {}
                    }
                }
                None => park.await,
            }
        }
    }
}

/// How often a worker offers its latency figures to the stats thread. They are handed
/// over once a second; a hand-over that finds the stats thread merging is retried at
/// the next tick. (Offering only once per sweep period, also a second, could fall into
/// step with the stats thread's own second and miss for many seconds in a row.)
const LATENCY_OFFER_PERIOD: Duration = Duration::from_millis(100);

/// Latency publication (offered every [`LATENCY_OFFER_PERIOD`]) and the liveness sweep,
/// a slice of the client table per tick so that each client is swept once per sweep
/// period.
async fn housekeep(core: Rc<RefCell<Core>>, cfg: Arc<EngineConfig>) {
    let sweep_every = liveness::sweep_period(&cfg);
    let period = LATENCY_OFFER_PERIOD.min(sweep_every);
    let mut timer = tokio::time::interval(period);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cursor = 0u32;
    loop {
        timer.tick().await;
        let mut core = core.borrow_mut();
        core.publish_latency(crate::tick::now_ns());
        let slice = liveness::sweep_slice(core.client_slots(), period, sweep_every);
        let now = core.clock().now();
        cursor = core.sweep_slots(now, cursor, slice);
    }
}
