//! Exchange feeds: one driver ([`VenueFeed`]) that owns the connection, and one
//! [`Protocol`] per venue that turns the venue's messages into ticks.
//!
//! - **Threads and blocking.** A venue feed runs on its own thread (the engine starts one
//!   per feed) inside a current-thread tokio runtime built by [`Feed::run`]. The runtime
//!   waits on the socket, REST snapshot requests and a 5 ms timer; nothing else shares it.
//! - **Connection life.** Connect (TLS or plain), send the protocol's subscriptions,
//!   read. No frame for [`VenueConfig::stale_after`] (pings count) means the connection
//!   is dead: it is dropped and a new one is made after an exponential backoff with
//!   jitter ([`conn::Backoff`]); the protocol then resubscribes and resynchronises every
//!   book, and trade-id continuity turns what the outage lost into skipped trade seqs
//!   ([`Publisher::skip_trades`]), which clients see as a `gap`.
//! - **Per-symbol resync.** A protocol that finds a sequence gap or a bad checksum on one
//!   symbol asks for that symbol's snapshot again (a REST fetch or a resubscribe) through
//!   its [`Outbox`]; the connection and the other symbols carry on. The feed reports
//!   `resyncing` while any book is being rebuilt.
//! - **Bad input.** A message that does not decode is counted (`decode_errors`), logged
//!   with its start, and skipped; unknown message types and fields are ignored.
//! - **Allocation.** Decoding and publishing allocate nothing per message in steady state
//!   (see each protocol); subscriptions, snapshots and resyncs allocate.
//! - **Recording.** With a [`record::Recorder`] attached, every received text frame and
//!   REST snapshot is written with its receive time, for `--feed replay:FILE` and
//!   `tickwire mock-exchange`.

pub mod binance;
pub mod coinbase;
pub mod conn;
pub mod kraken;
mod symbols;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use thiserror::Error;
use tickwire_engine::feed::{Feed, FeedError, FeedState, Publisher};
use tickwire_engine::fixed::DecimalError;
use tickwire_engine::symbol::{SymbolId, SymbolRegistryBuilder};
use tokio::task::JoinSet;

use crate::json;
use crate::record::Recorder;
use conn::{Backoff, ConnError, Msg, Url};
pub use symbols::{Symbols, TradeCheck, TradeIds};

/// How often the loop flushes the publisher and looks at timers and shutdown.
const TICK: Duration = Duration::from_millis(5);
/// A connection that lasted this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(30);
/// A replacement connection that has not caught up after this long takes over anyway.
const REPLACE_DEADLINE: Duration = Duration::from_secs(10);
/// A replacement that failed is tried again after this long.
const REPLACE_RETRY: Duration = Duration::from_secs(30);

/// The exchanges tickwire speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Venue {
    /// Binance spot.
    Binance,
    /// Coinbase Exchange.
    Coinbase,
    /// Kraken spot, WebSocket API v2.
    Kraken,
}

impl Venue {
    /// Every venue.
    pub const ALL: [Venue; 3] = [Venue::Binance, Venue::Coinbase, Venue::Kraken];

    /// The venue's name: the feed's name and the symbols' prefix.
    pub fn name(self) -> &'static str {
        match self {
            Venue::Binance => "binance",
            Venue::Coinbase => "coinbase",
            Venue::Kraken => "kraken",
        }
    }

    /// The venue named `name`.
    pub fn from_name(name: &str) -> Option<Venue> {
        Venue::ALL.into_iter().find(|v| v.name() == name)
    }

    /// The public WebSocket endpoint.
    pub fn default_ws_url(self) -> &'static str {
        match self {
            Venue::Binance => "wss://stream.binance.com:9443/stream",
            Venue::Coinbase => "wss://ws-feed.exchange.coinbase.com",
            Venue::Kraken => "wss://ws.kraken.com/v2",
        }
    }

    /// The public REST base (Binance's depth snapshots; the others need none).
    pub fn default_rest_url(self) -> &'static str {
        match self {
            Venue::Binance => "https://api.binance.com",
            Venue::Coinbase => "https://api.exchange.coinbase.com",
            Venue::Kraken => "https://api.kraken.com",
        }
    }

    /// Decimal digits kept for prices and sizes: 8, what Binance and Coinbase print at
    /// most and what nearly every Kraken pair uses, while an `i64` mantissa still holds
    /// prices up to 92 billion (far-away resting orders in deep books reach 10^9). A value
    /// with more digits is a decode error that names the setting to raise.
    pub fn default_scales(self) -> (u8, u8) {
        (8, 8)
    }

    /// Silence after which a connection counts as dead: Binance pings every 20 s,
    /// Coinbase and Kraken send heartbeats every second.
    pub fn default_stale_after(self) -> Duration {
        match self {
            Venue::Binance => Duration::from_secs(60),
            Venue::Coinbase | Venue::Kraken => Duration::from_secs(10),
        }
    }
}

/// Settings of one venue feed. [`VenueConfig::new`] fills every default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VenueConfig {
    /// The venue.
    pub venue: Venue,
    /// Native symbols (`BTCUSDT`, `BTC-USD`, `BTC/USD`); they appear as `venue:NATIVE`.
    pub symbols: Vec<String>,
    /// WebSocket URL (`wss://` or `ws://`). Default: the venue's public endpoint.
    pub ws_url: String,
    /// REST base URL (`https://` or `http://`). Default: the venue's public endpoint.
    pub rest_url: String,
    /// Price digits kept. Default: [`Venue::default_scales`].
    pub price_scale: u8,
    /// Size digits kept. Default: [`Venue::default_scales`].
    pub size_scale: u8,
    /// No frame for this long: reconnect. Default: [`Venue::default_stale_after`].
    pub stale_after: Duration,
    /// Connect and handshake time limit, also for REST requests. Default 10 s.
    pub connect_timeout: Duration,
    /// First reconnect delay. Default 500 ms.
    pub reconnect_initial: Duration,
    /// Longest reconnect delay. Default 30 s.
    pub reconnect_max: Duration,
    /// Largest WebSocket message or REST answer. Default 64 MiB.
    pub max_message_bytes: usize,
    /// Replace the connection after this long, opening the new one first and switching
    /// once it has caught up by sequence (make-before-break). Default: 23 h 30 min for
    /// Binance, which closes connections at 24 h; none for the others.
    pub max_connection_age: Option<Duration>,
    /// Book depth asked for: Binance REST snapshot `limit` (default 1000), Kraken `depth`
    /// (default 25; its checksum covers the top 10). Coinbase sends the whole book.
    pub book_depth: u32,
}

impl VenueConfig {
    /// A config with every default, for `symbols` of `venue`.
    pub fn new(venue: Venue, symbols: Vec<String>) -> VenueConfig {
        let (price_scale, size_scale) = venue.default_scales();
        VenueConfig {
            venue,
            symbols,
            ws_url: venue.default_ws_url().to_owned(),
            rest_url: venue.default_rest_url().to_owned(),
            price_scale,
            size_scale,
            stale_after: venue.default_stale_after(),
            connect_timeout: Duration::from_secs(10),
            reconnect_initial: Duration::from_millis(500),
            reconnect_max: Duration::from_secs(30),
            max_message_bytes: 64 << 20,
            max_connection_age: (venue == Venue::Binance)
                .then_some(Duration::from_secs(23 * 3600 + 30 * 60)),
            book_depth: match venue {
                Venue::Binance => 1000,
                Venue::Coinbase => 0,
                Venue::Kraken => 25,
            },
        }
    }

    /// Checks the settings; the error names every problem.
    pub fn validate(&self) -> Result<(), FeedError> {
        let mut problems = Vec::new();
        let name = self.venue.name();
        if self.symbols.is_empty() {
            problems.push(format!("no symbols: use --feed {name}:SYMBOL,..."));
        }
        for s in &self.symbols {
            if s.is_empty() || s.contains([',', ' ', '"']) {
                problems.push(format!("symbol {s:?} is not a venue symbol"));
            }
        }
        if let Err(e) = Url::parse(&self.ws_url) {
            problems.push(format!("ws url: {e}"));
        }
        if let Err(e) = Url::parse(&self.rest_url) {
            problems.push(format!("rest url: {e}"));
        }
        if self.stale_after.is_zero() || self.connect_timeout.is_zero() {
            problems.push("stale_after and connect_timeout must be above zero".into());
        }
        if self.venue == Venue::Kraken && ![10, 25, 100, 500, 1000].contains(&self.book_depth) {
            problems.push(format!(
                "book_depth = {}: Kraken offers 10, 25, 100, 500, 1000",
                self.book_depth
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(FeedError::Config(format!(
                "{name}: {}",
                problems.join("; ")
            )))
        }
    }
}

/// Why a venue message could not be decoded.
#[derive(Debug, Error)]
pub enum DecodeError {
    /// Not JSON, or not the JSON expected.
    #[error("JSON: {0}")]
    Json(#[from] json::Error),
    /// A field is missing or of the wrong type.
    #[error("field {0} missing or invalid")]
    Field(&'static str),
    /// A price or size that does not fit the symbol's scale.
    #[error("{field}: {source}")]
    Decimal {
        /// Which field.
        field: &'static str,
        /// Why.
        source: DecimalError,
    },
    /// The venue reported an error.
    #[error("venue error: {0}")]
    Venue(String),
}

/// What a protocol asks the driver to do after a message.
#[derive(Debug, Default)]
pub struct Outbox {
    /// Text frames to send, in order.
    pub texts: Vec<String>,
    /// REST GETs to make (path and query, appended to the REST base URL).
    pub fetches: Vec<Fetch>,
}

/// A REST request for one symbol's snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    /// The native symbol, handed back with the answer.
    pub symbol: String,
    /// Path and query.
    pub path: String,
    /// Wait this long first (a retry after a failure).
    pub delay: Duration,
}

/// One venue's message handling: subscriptions, decoding, book sync. The driver (live,
/// replay) owns the I/O; a protocol only reads bytes and publishes.
pub trait Protocol: Send {
    /// The venue.
    fn venue(&self) -> Venue;

    /// Registers the symbols (`venue:NATIVE`) with the venue's scales.
    fn register(
        &mut self,
        registry: &mut SymbolRegistryBuilder,
    ) -> Result<Vec<SymbolId>, FeedError>;

    /// A connection is up: queue the subscriptions; every book starts resyncing.
    fn on_open(&mut self, publisher: &mut Publisher, out: &mut Outbox);

    /// The connection is gone: books are stale until the next connection resyncs them.
    fn on_close(&mut self, publisher: &mut Publisher);

    /// One text message from the venue.
    fn on_text(
        &mut self,
        text: &[u8],
        publisher: &mut Publisher,
        out: &mut Outbox,
    ) -> Result<(), DecodeError>;

    /// The answer to a [`Fetch`] for `symbol`.
    fn on_rest(
        &mut self,
        symbol: &str,
        body: &[u8],
        publisher: &mut Publisher,
        out: &mut Outbox,
    ) -> Result<(), DecodeError>;

    /// A [`Fetch`] for `symbol` failed; the protocol usually asks again.
    fn on_rest_failed(&mut self, symbol: &str, out: &mut Outbox) {
        let _ = (symbol, out);
    }

    /// Whether some book is being (re)built.
    fn syncing(&self) -> bool;

    /// Called every few milliseconds (application-level pings).
    fn on_timer(&mut self, now: Instant, out: &mut Outbox) {
        let _ = (now, out);
    }

    /// Subscriptions for a replacement connection opened beside the current one
    /// (make-before-break); unlike [`Protocol::on_open`] nothing is reset.
    fn subscriptions(&mut self, out: &mut Outbox) {
        let _ = out;
    }

    /// A replacement connection is up: start tracking its catch-up.
    fn begin_candidate(&mut self) {}

    /// A frame from the replacement connection. Only what continues the current state is
    /// taken: repeats are dropped, and events ahead of the current state are ignored (the
    /// current connection delivers them).
    fn on_candidate_text(
        &mut self,
        text: &[u8],
        publisher: &mut Publisher,
        out: &mut Outbox,
    ) -> Result<(), DecodeError> {
        let _ = (text, publisher, out);
        Ok(())
    }

    /// Whether the replacement has caught up with the current state on every symbol.
    fn candidate_caught_up(&self) -> bool {
        false
    }

    /// The replacement became the connection (or was given up).
    fn end_candidate(&mut self) {}
}

/// The protocol of `cfg.venue`.
pub fn protocol(cfg: &VenueConfig) -> Box<dyn Protocol> {
    match cfg.venue {
        Venue::Binance => Box::new(binance::Binance::new(cfg)),
        Venue::Coinbase => Box::new(coinbase::Coinbase::new(cfg)),
        Venue::Kraken => Box::new(kraken::Kraken::new(cfg)),
    }
}

/// A live exchange feed: the connection driver around a venue's [`Protocol`].
pub struct VenueFeed {
    cfg: VenueConfig,
    protocol: Box<dyn Protocol>,
    recorder: Option<Recorder>,
}

impl std::fmt::Debug for VenueFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VenueFeed")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl VenueFeed {
    /// A feed with these settings (checked by [`Feed::register`]).
    pub fn new(cfg: VenueConfig) -> VenueFeed {
        let protocol = protocol(&cfg);
        VenueFeed {
            cfg,
            protocol,
            recorder: None,
        }
    }

    /// Writes every received frame and REST answer to `recorder` as well.
    pub fn with_recorder(mut self, recorder: Recorder) -> VenueFeed {
        self.recorder = Some(recorder);
        self
    }

    /// The settings.
    pub fn config(&self) -> &VenueConfig {
        &self.cfg
    }
}

impl Feed for VenueFeed {
    fn name(&self) -> &str {
        self.cfg.venue.name()
    }

    fn register(
        &mut self,
        symbols: &mut SymbolRegistryBuilder,
    ) -> Result<Vec<SymbolId>, FeedError> {
        self.cfg.validate()?;
        self.protocol.register(symbols)
    }

    fn run(&mut self, publisher: &mut Publisher, shutdown: &AtomicBool) -> Result<(), FeedError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let ws_url = Url::parse(&self.cfg.ws_url).map_err(|e| FeedError::Config(e.to_string()))?;
        let mut driver = Driver {
            cfg: &self.cfg,
            ws_url,
            protocol: self.protocol.as_mut(),
            publisher,
            shutdown,
            recorder: self.recorder.as_mut(),
            outbox: Outbox::default(),
            state: FeedState::Connecting,
        };
        runtime.block_on(driver.run());
        if let Some(r) = self.recorder.as_mut() {
            r.flush()?;
        }
        publisher.shared().stats.set_state(FeedState::Stopped);
        Ok(())
    }
}

/// Why a session ended.
#[derive(Debug, Error)]
enum SessionEnd {
    #[error(transparent)]
    Conn(#[from] ConnError),
    #[error("no data for {0:?}: connection stale")]
    Stale(Duration),
    #[error("shutdown")]
    Shutdown,
}

struct Driver<'a> {
    cfg: &'a VenueConfig,
    ws_url: Url,
    protocol: &'a mut dyn Protocol,
    publisher: &'a mut Publisher,
    shutdown: &'a AtomicBool,
    recorder: Option<&'a mut Recorder>,
    outbox: Outbox,
    state: FeedState,
}

type FetchResult = (String, Result<Vec<u8>, ConnError>);
type WsStream = conn::WsStream<conn::Stream>;

/// The next message of the replacement connection; pending while there is none.
async fn next_of(
    candidate: &mut Option<(WsStream, tokio::time::Instant)>,
) -> Result<Msg, ConnError> {
    match candidate {
        Some((ws, _)) => ws.next().await,
        None => std::future::pending().await,
    }
}

/// The replacement's connect task; pending while there is none.
async fn join_of<T>(
    handle: &mut Option<tokio::task::JoinHandle<T>>,
) -> Result<T, tokio::task::JoinError> {
    match handle {
        Some(h) => h.await,
        None => std::future::pending().await,
    }
}

impl Driver<'_> {
    fn stopping(&self) -> bool {
        // Relaxed: the flag only asks the loop to end; it hands over no data.
        self.shutdown.load(Ordering::Relaxed)
    }

    fn set_state(&mut self, state: FeedState) {
        if self.state != state {
            self.state = state;
            self.publisher.shared().stats.set_state(state);
        }
    }

    /// Waits `delay`, flushing the publisher so that resync requests are served.
    async fn pause(&mut self, delay: Duration) {
        let until = tokio::time::Instant::now() + delay;
        while tokio::time::Instant::now() < until && !self.stopping() {
            tokio::time::sleep(TICK.min(until - tokio::time::Instant::now())).await;
            self.publisher.flush();
        }
    }

    async fn run(&mut self) {
        let mut backoff = Backoff::new(self.cfg.reconnect_initial, self.cfg.reconnect_max);
        let mut connected_before = false;
        let venue = self.cfg.venue.name();
        while !self.stopping() {
            self.set_state(if connected_before {
                FeedState::Disconnected
            } else {
                FeedState::Connecting
            });
            let connect = conn::connect_ws(
                &self.ws_url,
                self.cfg.connect_timeout,
                self.cfg.max_message_bytes,
            );
            let ws = tokio::select! {
                ws = connect => ws,
                _ = self.watch_shutdown() => break,
            };
            let ws = match ws {
                Ok(ws) => ws,
                Err(e) => {
                    tracing::warn!(feed = venue, url = %self.cfg.ws_url, error = %e, "cannot connect");
                    let delay = backoff.next_delay();
                    self.pause(delay).await;
                    continue;
                }
            };
            if connected_before {
                self.publisher
                    .shared()
                    .stats
                    .reconnects
                    .fetch_add(1, Ordering::Relaxed);
            }
            connected_before = true;
            tracing::info!(feed = venue, url = %self.cfg.ws_url, "connected");
            let started = Instant::now();
            let end = self.session(ws).await;
            self.protocol.on_close(self.publisher);
            self.publisher.flush();
            if let Some(r) = self.recorder.as_deref_mut() {
                r.event(crate::record::Event::Close);
            }
            match end {
                SessionEnd::Shutdown => break,
                e => tracing::warn!(feed = venue, reason = %e, "connection lost; reconnecting"),
            }
            if started.elapsed() >= STABLE_AFTER {
                backoff.reset();
            }
            let delay = backoff.next_delay();
            self.set_state(FeedState::Disconnected);
            self.pause(delay).await;
        }
    }

    /// Resolves when shutdown is asked for (checked every tick).
    async fn watch_shutdown(&self) {
        while !self.stopping() {
            tokio::time::sleep(TICK).await;
        }
    }

    fn state_after_message(&mut self) {
        let state = if self.protocol.syncing() {
            FeedState::Resyncing
        } else {
            FeedState::Live
        };
        self.set_state(state);
    }

    async fn session(&mut self, mut ws: WsStream) -> SessionEnd {
        let mut fetches: JoinSet<FetchResult> = JoinSet::new();
        if let Some(r) = self.recorder.as_deref_mut() {
            r.event(crate::record::Event::Open);
        }
        self.protocol.on_open(self.publisher, &mut self.outbox);
        if let Err(e) = self.drain_outbox(&mut ws, &mut fetches).await {
            return e.into();
        }
        self.state_after_message();
        let mut last_frame = tokio::time::Instant::now();
        let mut timer = tokio::time::interval(TICK);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Make-before-break: when the replacement is due, its connect task, and then the
        // replacement itself until it takes over.
        let mut replace_at = self.cfg.max_connection_age.map(|age| last_frame + age);
        let mut connecting: Option<tokio::task::JoinHandle<Result<WsStream, ConnError>>> = None;
        let mut candidate: Option<(WsStream, tokio::time::Instant)> = None;
        loop {
            tokio::select! {
                biased;
                msg = ws.next() => {
                    let msg = match msg {
                        Ok(m) => m,
                        Err(e) => return e.into(),
                    };
                    last_frame = tokio::time::Instant::now();
                    match msg {
                        Msg::Text => {
                            let text = ws.payload();
                            if let Some(r) = self.recorder.as_deref_mut() {
                                r.event(crate::record::Event::Ws(text));
                            }
                            self.publisher.begin_message();
                            if let Err(e) = self.protocol.on_text(text, self.publisher, &mut self.outbox) {
                                count_decode_error(self.publisher, self.cfg.venue, &e, text);
                            }
                        }
                        Msg::Ping => {
                            if let Err(e) = ws.pong().await {
                                return e.into();
                            }
                        }
                        Msg::Close(code) => return ConnError::Closed(code).into(),
                        Msg::Binary | Msg::Pong => {}
                    }
                }
                msg = next_of(&mut candidate) => {
                    let Some((cand, _)) = candidate.as_mut() else { continue };
                    let lost = match msg {
                        Ok(Msg::Text) => {
                            let text = cand.payload();
                            if let Some(r) = self.recorder.as_deref_mut() {
                                r.event(crate::record::Event::CandidateWs(text));
                            }
                            self.publisher.begin_message();
                            if let Err(e) = self.protocol.on_candidate_text(text, self.publisher, &mut self.outbox) {
                                count_decode_error(self.publisher, self.cfg.venue, &e, text);
                            }
                            None
                        }
                        Ok(Msg::Ping) => cand.pong().await.err(),
                        Ok(Msg::Close(code)) => Some(ConnError::Closed(code)),
                        Ok(Msg::Binary | Msg::Pong) => None,
                        Err(e) => Some(e),
                    };
                    if let Some(e) = lost {
                        tracing::warn!(feed = self.cfg.venue.name(), error = %e, "replacement connection lost; the current one goes on");
                        candidate = None;
                        self.protocol.end_candidate();
                        replace_at = Some(tokio::time::Instant::now() + REPLACE_RETRY);
                    }
                }
                joined = join_of(&mut connecting) => {
                    connecting = None;
                    match joined {
                        Ok(Ok(mut cand)) => {
                            let mut subs = Outbox::default();
                            self.protocol.subscriptions(&mut subs);
                            let mut sent = Ok(());
                            for text in &subs.texts {
                                sent = cand.send_text(text.as_bytes()).await;
                                if sent.is_err() {
                                    break;
                                }
                            }
                            match sent {
                                Ok(()) => {
                                    tracing::info!(feed = self.cfg.venue.name(), "replacement connection up; switching once it has caught up");
                                    if let Some(r) = self.recorder.as_deref_mut() {
                                        r.event(crate::record::Event::CandidateOpen);
                                    }
                                    self.protocol.begin_candidate();
                                    candidate = Some((cand, tokio::time::Instant::now()));
                                }
                                Err(e) => {
                                    tracing::warn!(feed = self.cfg.venue.name(), error = %e, "replacement connection failed");
                                    replace_at = Some(tokio::time::Instant::now() + REPLACE_RETRY);
                                }
                            }
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(feed = self.cfg.venue.name(), error = %e, "replacement connection failed");
                            replace_at = Some(tokio::time::Instant::now() + REPLACE_RETRY);
                        }
                        Err(_) => replace_at = Some(tokio::time::Instant::now() + REPLACE_RETRY),
                    }
                }
                Some(done) = fetches.join_next() => {
                    let Ok((symbol, result)) = done else { continue };
                    match result {
                        Ok(body) => {
                            if let Some(r) = self.recorder.as_deref_mut() {
                                r.event(crate::record::Event::Rest { symbol: &symbol, body: &body });
                            }
                            self.publisher.begin_message();
                            if let Err(e) = self.protocol.on_rest(&symbol, &body, self.publisher, &mut self.outbox) {
                                count_decode_error(self.publisher, self.cfg.venue, &e, &body);
                                self.protocol.on_rest_failed(&symbol, &mut self.outbox);
                            }
                        }
                        Err(e) => {
                            tracing::warn!(feed = self.cfg.venue.name(), %symbol, error = %e, "snapshot request failed; retrying");
                            self.protocol.on_rest_failed(&symbol, &mut self.outbox);
                        }
                    }
                }
                _ = timer.tick() => {
                    if self.stopping() {
                        let _ = ws.close(1000).await;
                        return SessionEnd::Shutdown;
                    }
                    let silent = last_frame.elapsed();
                    if silent >= self.cfg.stale_after {
                        return SessionEnd::Stale(silent);
                    }
                    self.protocol.on_timer(Instant::now(), &mut self.outbox);
                    if let Some(r) = self.recorder.as_deref_mut() {
                        r.tick();
                    }
                    let now = tokio::time::Instant::now();
                    if replace_at.is_some_and(|at| now >= at) && candidate.is_none() && connecting.is_none() {
                        replace_at = None;
                        let (url, timeout, max) = (self.ws_url.clone(), self.cfg.connect_timeout, self.cfg.max_message_bytes);
                        connecting = Some(tokio::spawn(async move { conn::connect_ws(&url, timeout, max).await }));
                    }
                }
            }
            let switch = candidate.as_ref().is_some_and(|(_, since)| {
                self.protocol.candidate_caught_up() || since.elapsed() >= REPLACE_DEADLINE
            });
            if switch {
                if let Some((cand, _)) = candidate.take() {
                    let mut old = std::mem::replace(&mut ws, cand);
                    // The old connection has nothing the new one lacks: close it politely.
                    let _ = old.close(1000).await;
                    drop(old);
                    self.protocol.end_candidate();
                    if let Some(r) = self.recorder.as_deref_mut() {
                        r.event(crate::record::Event::Switch);
                    }
                    last_frame = tokio::time::Instant::now();
                    replace_at = self.cfg.max_connection_age.map(|age| last_frame + age);
                    tracing::info!(
                        feed = self.cfg.venue.name(),
                        "switched to the replacement connection"
                    );
                }
            }
            if let Err(e) = self.drain_outbox(&mut ws, &mut fetches).await {
                return e.into();
            }
            self.state_after_message();
            self.publisher.flush();
        }
    }

    async fn drain_outbox(
        &mut self,
        ws: &mut WsStream,
        fetches: &mut JoinSet<FetchResult>,
    ) -> Result<(), ConnError> {
        for text in self.outbox.texts.drain(..) {
            ws.send_text(text.as_bytes()).await?;
        }
        for fetch in self.outbox.fetches.drain(..) {
            let url = format!("{}{}", self.cfg.rest_url.trim_end_matches('/'), fetch.path);
            let timeout = self.cfg.connect_timeout;
            let max = self.cfg.max_message_bytes;
            fetches.spawn(async move {
                if !fetch.delay.is_zero() {
                    tokio::time::sleep(fetch.delay).await;
                }
                let result = match Url::parse(&url) {
                    Ok(u) => conn::http_get(&u, timeout, max).await,
                    Err(e) => Err(e),
                };
                (fetch.symbol, result)
            });
        }
        Ok(())
    }
}

/// Counts and logs a message that did not decode (its first 200 bytes).
pub fn count_decode_error(publisher: &Publisher, venue: Venue, error: &DecodeError, text: &[u8]) {
    let n = publisher
        .shared()
        .stats
        .decode_errors
        .fetch_add(1, Ordering::Relaxed)
        + 1;
    // Every one of the first ten, then one in a thousand: a venue that changed its format
    // must not flood the log.
    if n <= 10 || n.is_multiple_of(1000) {
        let start = String::from_utf8_lossy(&text[..text.len().min(200)]);
        tracing::warn!(feed = venue.name(), errors = n, error = %error, message = %start, "undecodable venue message skipped");
    }
}

/// Groups `VENUE:SYM1,SYM2` feed specs by venue, in first-seen order, symbols deduplicated.
///
/// ```
/// use tickwire_feeds::venue::{group_specs, Venue};
/// let g = group_specs(&["binance:BTCUSDT,ETHUSDT", "kraken:BTC/USD", "binance:BTCUSDT"]).unwrap();
/// assert_eq!(g, vec![(Venue::Binance, vec!["BTCUSDT".to_string(), "ETHUSDT".to_string()]), (Venue::Kraken, vec!["BTC/USD".to_string()])]);
/// ```
pub fn group_specs(specs: &[&str]) -> Result<Vec<(Venue, Vec<String>)>, FeedError> {
    let mut out: Vec<(Venue, Vec<String>)> = Vec::new();
    let mut index: HashMap<Venue, usize> = HashMap::new();
    for spec in specs {
        let (name, symbols) = spec.split_once(':').ok_or_else(|| {
            FeedError::Config(format!(
                "feed {spec:?}: use VENUE:SYM1,SYM2 (binance, coinbase, kraken)"
            ))
        })?;
        let venue = Venue::from_name(name).ok_or_else(|| {
            FeedError::Config(format!(
                "feed {spec:?}: unknown venue {name:?} (binance, coinbase, kraken)"
            ))
        })?;
        let i = *index.entry(venue).or_insert_with(|| {
            out.push((venue, Vec::new()));
            out.len() - 1
        });
        for s in symbols.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if !out[i].1.iter().any(|have| have == s) {
                out[i].1.push(s.to_owned());
            }
        }
    }
    Ok(out)
}

/// A price or size field at `scale`.
pub(crate) fn decimal(
    value: Option<json::Value<'_>>,
    field: &'static str,
    scale: u8,
) -> Result<crate::decimal::Decimal, DecodeError> {
    let text = value
        .and_then(|v| v.text())
        .ok_or(DecodeError::Field(field))?;
    crate::decimal::parse(text, scale).map_err(|source| DecodeError::Decimal { field, source })
}

/// An integer field.
pub(crate) fn integer(
    value: Option<json::Value<'_>>,
    field: &'static str,
) -> Result<u64, DecodeError> {
    value.and_then(|v| v.u64()).ok_or(DecodeError::Field(field))
}

/// A string field.
pub(crate) fn string<'a>(
    value: Option<json::Value<'a>>,
    field: &'static str,
) -> Result<&'a [u8], DecodeError> {
    value.and_then(|v| v.str()).ok_or(DecodeError::Field(field))
}
