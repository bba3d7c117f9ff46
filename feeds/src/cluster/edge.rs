//! The edge's feed: [`NatsFeed`] takes a venue's ticks from NATS instead of the venue and
//! republishes them into its ring exactly as the feed node's publisher made them, seqs
//! included, so that clients on every edge see the same trade and book seqs.
//!
//! - **Symbols**: an edge is started with the same `--feed` specs as the feed nodes; it
//!   registers their symbols (names and scales) and runs none of them.
//! - **Sync, per symbol**: a symbol is *synced* once the edge holds its feed node's state
//!   at a known message (`session`, `sym_seq`, see [`super::wire::Header`]): from a
//!   snapshot JetStream kept (fetched at start and after every reconnect, messages that
//!   arrive meanwhile are buffered) or from a live snapshot (which every feed node sends
//!   periodically, in order with its data). A synced symbol applies every message whose
//!   `sym_seq` is the next; anything else (a hole after an outage, a restarted feed node)
//!   unsyncs it until the next snapshot. Adopting a snapshot resets the engine's workers
//!   ([`Publisher::adopt`]), so clients get a fresh ticker, a book snapshot and a `gap`
//!   naming exactly the trades they missed: never silence.
//! - **Subscriptions**: `all` subscribes each venue's subjects at start; `interest`
//!   subscribes a symbol while a local client wants it ([`Interest`]) and for
//!   `linger_ms` after the last one left.
//! - **Health**: the feed is `live` while the link is up and every wanted symbol is
//!   synced and heard from within `stale_after_ms`; `resyncing` while some are not;
//!   `disconnected` while the link is down or the feed node silent.
//! - **Threads and allocation**: runs on its feed thread with a current-thread runtime;
//!   one task per NATS subscription forwards messages into one bounded channel (a full
//!   channel makes the NATS client drop, which the `sym_seq` check then repairs).
//!   Decoding reuses one tick vector; snapshots, buffers and fetches allocate.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use tickwire_engine::feed::{Feed, FeedError, FeedState, Publisher};
use tickwire_engine::http::LinkStatus;
use tickwire_engine::interest::Interest;
use tickwire_engine::symbol::{SymbolId, SymbolRegistryBuilder};
use tickwire_engine::tick::{Event, Tick};

use super::wire::{self, Header};

/// Which subjects an edge takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EdgeSubscribe {
    /// Every symbol of its venues, from start (lowest latency for a first subscriber).
    All,
    /// A symbol while a local client wants it, plus `linger_ms` after the last one.
    Interest {
        /// How long a symbol stays subscribed after its last local subscriber left.
        linger_ms: u64,
    },
}

/// Settings of an edge's NATS feed.
#[derive(Clone, Debug)]
pub struct EdgeConfig {
    /// The NATS server, `nats://HOST:PORT`.
    pub url: String,
    /// What to subscribe.
    pub subscribe: EdgeSubscribe,
    /// A symbol not heard from for this long (no data, no periodic snapshot) makes the
    /// feed `disconnected` in `/health` (default 3000 ms: three of the feed nodes'
    /// default snapshot intervals).
    pub stale_after_ms: u64,
}

/// Messages buffered per symbol while its stored snapshot is being fetched.
const MAX_BUFFERED: usize = 100_000;
/// Capacity of the channel the subscription tasks forward into.
const CHANNEL: usize = 65_536;

struct Track {
    id: SymbolId,
    prefix: String,
    scales: (u8, u8),
    /// The session and message the edge's state stands at (kept while unsynced, so an
    /// older snapshot of the same session is never adopted).
    session: u64,
    sym_seq: u64,
    synced: bool,
    fetching: bool,
    buffer: Vec<(usize, Bytes)>,
    overflowed: bool,
    heard: Option<Instant>,
    /// Interest mode: subscribed, and since when nobody wants it.
    subscription: Option<tokio::task::JoinHandle<()>>,
    unwanted_since: Option<Instant>,
}

/// An edge's feed: a venue's ticks from NATS (see the module doc).
pub struct NatsFeed {
    inner: Box<dyn Feed>,
    name: String,
    cfg: EdgeConfig,
    interest: Option<Arc<Interest>>,
    link: Arc<LinkStatus>,
    tracks: Vec<Track>,
    /// Venue tokens of the symbols (for `all`).
    venues: Vec<String>,
}

impl NatsFeed {
    /// The edge's stand-in for `inner` (whose symbols it registers and which it never
    /// runs); `link` is the node's NATS link, which `/health` reports.
    pub fn new(inner: Box<dyn Feed>, cfg: EdgeConfig, link: Arc<LinkStatus>) -> NatsFeed {
        NatsFeed {
            name: format!("nats:{}", inner.name()),
            inner,
            cfg,
            interest: None,
            link,
            tracks: Vec::new(),
            venues: Vec::new(),
        }
    }
}

impl Feed for NatsFeed {
    fn name(&self) -> &str {
        &self.name
    }

    fn register(
        &mut self,
        symbols: &mut SymbolRegistryBuilder,
    ) -> Result<Vec<SymbolId>, FeedError> {
        let ids = self.inner.register(symbols)?;
        for &id in &ids {
            let Some(info) = symbols.info(id) else {
                continue;
            };
            let venue = wire::token(info.venue());
            if !self.venues.contains(&venue) {
                self.venues.push(venue);
            }
            self.tracks.push(Track {
                id,
                prefix: wire::symbol_prefix(&info.name),
                scales: (info.price_scale, info.size_scale),
                session: 0,
                sym_seq: 0,
                synced: false,
                fetching: false,
                buffer: Vec::new(),
                overflowed: false,
                heard: None,
                subscription: None,
                unwanted_since: None,
            });
        }
        Ok(ids)
    }

    fn run(&mut self, publisher: &mut Publisher, shutdown: &AtomicBool) -> Result<(), FeedError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, self.run_async(publisher, shutdown))
    }
}

/// A fetched stored snapshot: the track and what JetStream had.
type Fetched = (usize, Result<Option<Bytes>, String>);

struct Edge<'a> {
    publisher: &'a mut Publisher,
    client: async_nats::Client,
    by_prefix: HashMap<String, usize>,
    tx: tokio::sync::mpsc::Sender<async_nats::Message>,
    fetch_tx: tokio::sync::mpsc::UnboundedSender<Fetched>,
    ticks: Vec<Tick>,
    scale_errors: u64,
}

impl NatsFeed {
    async fn run_async(
        &mut self,
        publisher: &mut Publisher,
        shutdown: &AtomicBool,
    ) -> Result<(), FeedError> {
        let stats = publisher.shared().clone();
        stats.stats.set_state(FeedState::Connecting);
        self.interest = publisher.interest().cloned();
        if matches!(self.cfg.subscribe, EdgeSubscribe::Interest { .. }) && self.interest.is_none() {
            return Err(FeedError::Config(
                "interest-based subscription needs the engine's interest counters".into(),
            ));
        }
        let (ev_tx, mut ev_rx) = tokio::sync::mpsc::unbounded_channel();
        let client = super::connect(
            &self.cfg.url,
            "tickwire-edge",
            self.link.clone(),
            Some(ev_tx),
        )
        .await
        .map_err(|e| FeedError::Config(format!("NATS {}: {e}", self.cfg.url)))?;
        {
            let client = client.clone();
            tokio::task::spawn_local(async move { super::ensure_stream_retrying(&client).await });
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel(CHANNEL);
        let (fetch_tx, mut fetch_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut edge = Edge {
            publisher,
            client,
            by_prefix: self
                .tracks
                .iter()
                .enumerate()
                .map(|(i, t)| (t.prefix.clone(), i))
                .collect(),
            tx,
            fetch_tx,
            ticks: Vec::with_capacity(64),
            scale_errors: 0,
        };
        let mut venue_subs = Vec::new();
        if self.cfg.subscribe == EdgeSubscribe::All {
            for v in &self.venues {
                venue_subs.push(edge.subscribe(format!("tickwire.{v}.>")));
            }
            for i in 0..self.tracks.len() {
                edge.fetch(&mut self.tracks[i], i);
            }
        }
        let stale = Duration::from_millis(self.cfg.stale_after_ms.max(1));
        let mut timer = tokio::time::interval(Duration::from_millis(5));
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut connected_once = false;
        while !shutdown.load(Ordering::Relaxed) {
            tokio::select! {
                biased;
                Some(msg) = rx.recv() => {
                    edge.on_message(&mut self.tracks, &msg.subject, msg.payload);
                    // Take what else is waiting before making it visible: one publish
                    // (one wake-up of the workers) per batch.
                    for _ in 0..256 {
                        match rx.try_recv() {
                            Ok(msg) => edge.on_message(&mut self.tracks, &msg.subject, msg.payload),
                            Err(_) => break,
                        }
                    }
                    edge.publisher.flush();
                }
                Some(ev) = ev_rx.recv() => match ev {
                    async_nats::Event::Disconnected => {
                        // Whatever is published meanwhile is lost to this edge: every
                        // symbol catches up from a snapshot once the link is back.
                        for t in &mut self.tracks {
                            t.synced = false;
                        }
                    }
                    async_nats::Event::Connected => {
                        if connected_once {
                            stats.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                        }
                        connected_once = true;
                        for i in 0..self.tracks.len() {
                            if !self.tracks[i].synced && self.wants(i) {
                                edge.fetch(&mut self.tracks[i], i);
                            }
                        }
                    }
                    _ => {}
                },
                Some((i, fetched)) = fetch_rx.recv() => {
                    edge.on_fetched(&mut self.tracks[i], fetched);
                    edge.publisher.flush();
                }
                _ = timer.tick() => {
                    if let EdgeSubscribe::Interest { linger_ms } = self.cfg.subscribe {
                        self.follow_interest(&mut edge, Duration::from_millis(linger_ms));
                    }
                    edge.publisher.flush();
                    let state = self.state(stale);
                    stats.stats.set_state(state);
                }
            }
        }
        for s in venue_subs {
            s.abort();
        }
        for t in &mut self.tracks {
            if let Some(s) = t.subscription.take() {
                s.abort();
            }
        }
        Ok(())
    }

    fn wants(&self, i: usize) -> bool {
        match self.cfg.subscribe {
            EdgeSubscribe::All => true,
            EdgeSubscribe::Interest { .. } => self.tracks[i].subscription.is_some(),
        }
    }

    /// The feed's state for `/health`.
    fn state(&self, stale: Duration) -> FeedState {
        if !self.link.is_up() {
            return FeedState::Disconnected;
        }
        let now = Instant::now();
        let mut state = FeedState::Live;
        for (i, t) in self.tracks.iter().enumerate() {
            if !self.wants(i) {
                continue;
            }
            if !t.synced {
                state = FeedState::Resyncing;
            } else if t.heard.is_none_or(|h| now.duration_since(h) > stale) {
                return FeedState::Disconnected;
            }
        }
        state
    }

    /// Interest mode: subscribes the symbols local clients want, unsubscribes those
    /// nobody wanted for `linger`.
    fn follow_interest(&mut self, edge: &mut Edge<'_>, linger: Duration) {
        let Some(interest) = self.interest.clone() else {
            return;
        };
        let now = Instant::now();
        for i in 0..self.tracks.len() {
            let t = &mut self.tracks[i];
            let wanted = interest.wanted(t.id);
            match (wanted, t.subscription.is_some()) {
                (true, false) => {
                    t.subscription = Some(edge.subscribe(format!("{}.*", t.prefix)));
                    t.unwanted_since = None;
                    t.synced = false;
                    edge.fetch(t, i);
                }
                (true, true) => t.unwanted_since = None,
                (false, true) => {
                    let since = *t.unwanted_since.get_or_insert(now);
                    if now.duration_since(since) >= linger {
                        if let Some(s) = t.subscription.take() {
                            s.abort();
                        }
                        t.unwanted_since = None;
                        t.synced = false;
                        t.buffer.clear();
                    }
                }
                (false, false) => {}
            }
        }
    }
}

impl Edge<'_> {
    /// Subscribes `subject`; its messages reach the feed's channel until the returned
    /// task is aborted (dropping the subscription unsubscribes it).
    fn subscribe(&self, subject: String) -> tokio::task::JoinHandle<()> {
        let client = self.client.clone();
        let tx = self.tx.clone();
        tokio::task::spawn_local(async move {
            let mut sub = match client.subscribe(subject.clone()).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(%subject, error = %e, "cannot subscribe");
                    return;
                }
            };
            while let Some(msg) = sub.next().await {
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
        })
    }

    /// Starts fetching the stored snapshot of track `i`; live messages are buffered
    /// meanwhile.
    fn fetch(&self, t: &mut Track, i: usize) {
        if t.fetching {
            return;
        }
        t.fetching = true;
        t.overflowed = false;
        t.buffer.clear();
        let client = self.client.clone();
        let subject = format!("{}.snapshot", t.prefix);
        let tx = self.fetch_tx.clone();
        tokio::task::spawn_local(async move {
            let got = super::fetch_snapshot(&client, &subject)
                .await
                .map_err(|e| e.to_string());
            let _ = tx.send((i, got));
        });
    }

    fn on_message(&mut self, tracks: &mut [Track], subject: &str, payload: Bytes) {
        let Some((prefix, channel)) = subject.rsplit_once('.') else {
            return;
        };
        let Some(&i) = self.by_prefix.get(prefix) else {
            return;
        };
        let Some(channel) = wire::CHANNELS.iter().position(|c| *c == channel) else {
            return;
        };
        let t = &mut tracks[i];
        t.heard = Some(Instant::now());
        if channel == 3 {
            match wire::decode_snapshot(&payload) {
                Ok(snap) => self.on_snapshot(t, snap, true),
                Err(e) => self.bad(subject, &e),
            }
            return;
        }
        if !t.synced {
            if t.fetching {
                if t.buffer.len() < MAX_BUFFERED {
                    t.buffer.push((channel, payload));
                } else {
                    t.overflowed = true;
                }
            }
            return;
        }
        self.on_data(t, subject, &payload);
    }

    /// A data message of a synced symbol: applied when it is the next, else the symbol
    /// waits for a snapshot.
    fn on_data(&mut self, t: &mut Track, subject: &str, payload: &[u8]) {
        let h = match wire::decode_ticks(payload, t.id, &mut self.ticks) {
            Ok(h) => h,
            Err(e) => {
                self.bad(subject, &e);
                return;
            }
        };
        if h.session == t.session && h.sym_seq <= t.sym_seq {
            return; // Seen already.
        }
        if h.session != t.session || h.sym_seq != t.sym_seq + 1 || !self.consistent(t) {
            tracing::info!(
                symbol = %t.prefix,
                at = t.sym_seq,
                got = h.sym_seq,
                "missed messages from the feed node; catching up from its next snapshot"
            );
            self.publisher
                .shared()
                .stats
                .gaps
                .fetch_add(1, Ordering::Relaxed);
            t.synced = false;
            return;
        }
        let stats = &self.publisher.shared().stats;
        stats.messages.fetch_add(1, Ordering::Relaxed);
        for k in 0..self.ticks.len() {
            let tick = self.ticks[k];
            if let Event::Trade { seq, .. } = tick.event {
                // The feed node skipped seqs for trades its venue lost: skip them here
                // too, so every edge's clients get the same `feed_gap`.
                let last = self.publisher.state(t.id).trade_seq;
                self.publisher
                    .skip_trades(t.id, seq.saturating_sub(last + 1));
            }
            self.publisher.republish(tick);
        }
        t.sym_seq = h.sym_seq;
    }

    /// Whether the decoded ticks continue the edge's state (trade seq ahead, book seq
    /// the next).
    fn consistent(&self, t: &Track) -> bool {
        let state = self.publisher.state(t.id);
        match self.ticks.first().map(|k| k.event) {
            Some(Event::Trade { seq, .. }) => seq > state.trade_seq,
            Some(Event::Level { seq, .. }) => seq == state.book_seq + 1,
            Some(_) => true,
            None => false,
        }
    }

    fn on_snapshot(&mut self, t: &mut Track, snap: wire::Snapshot, live: bool) {
        if snap.scales != t.scales {
            self.scale_errors += 1;
            if self.scale_errors.is_power_of_two() {
                tracing::error!(
                    symbol = %t.prefix,
                    theirs = ?snap.scales,
                    ours = ?t.scales,
                    "the feed node's price/size scales differ from this edge's: start both with the same feed settings"
                );
            }
            return;
        }
        let h = snap.header;
        if h.session == t.session && h.sym_seq <= t.sym_seq {
            return; // Not newer than what the edge holds.
        }
        if t.synced && h.session == t.session && h.sym_seq == t.sym_seq + 1 {
            // In order: a checkpoint. Adopt only if the edge drifted (it should not).
            t.sym_seq = h.sym_seq;
            if *self.publisher.state(t.id) != snap.state {
                tracing::warn!(symbol = %t.prefix, "edge state differed from the feed node's snapshot; adopting it");
                self.publisher.adopt(t.id, snap.state);
            }
            return;
        }
        if !live {
            // A stored snapshot: only worth adopting if the messages buffered since the
            // fetch began continue it.
            let first = t
                .buffer
                .iter()
                .filter_map(|(_, p)| wire::header(p).ok())
                .find(|b| b.session == h.session && b.sym_seq > h.sym_seq);
            let other_session = t
                .buffer
                .iter()
                .filter_map(|(_, p)| wire::header(p).ok())
                .any(|b| b.session != h.session);
            if t.overflowed || other_session || first.is_some_and(|b| b.sym_seq != h.sym_seq + 1) {
                return;
            }
        }
        self.adopt(t, h, snap.state);
    }

    fn adopt(&mut self, t: &mut Track, h: Header, state: tickwire_engine::state::SymbolState) {
        let held = self.publisher.state(t.id);
        if state.trade_seq < held.trade_seq || state.book_seq < held.book_seq {
            // Only a feed node that did not continue the cluster's seqs (its store was
            // wiped, or two nodes publish one feed without a lease) does this; clients
            // will see seqs go back.
            tracing::error!(
                symbol = %t.prefix,
                trades = state.trade_seq,
                held = held.trade_seq,
                "the feed node's seqs went back; adopting them"
            );
        }
        self.publisher.adopt(t.id, state);
        self.publisher
            .shared()
            .stats
            .resyncs
            .fetch_add(1, Ordering::Relaxed);
        t.session = h.session;
        t.sym_seq = h.sym_seq;
        t.synced = true;
        t.fetching = false;
        for (channel, payload) in std::mem::take(&mut t.buffer) {
            if channel != 3 && t.synced {
                self.on_data(t, "buffered", &payload);
            }
        }
    }

    fn on_fetched(&mut self, t: &mut Track, fetched: Result<Option<Bytes>, String>) {
        if !t.fetching {
            return;
        }
        match fetched {
            Ok(Some(payload)) => match wire::decode_snapshot(&payload) {
                Ok(snap) if !t.synced => self.on_snapshot(t, snap, false),
                Ok(_) => {}
                Err(e) => self.bad("stored snapshot", &e),
            },
            Ok(None) => {}
            Err(e) => tracing::debug!(symbol = %t.prefix, error = %e, "no stored snapshot"),
        }
        // Not adopted: the next live snapshot will do.
        t.fetching = false;
        t.buffer.clear();
    }

    fn bad(&self, subject: &str, e: &wire::WireError) {
        let stats = &self.publisher.shared().stats;
        let n = stats.decode_errors.fetch_add(1, Ordering::Relaxed) + 1;
        if n <= 10 || n.is_multiple_of(1000) {
            tracing::warn!(%subject, error = %e, count = n, "undecodable message from NATS");
        }
    }
}
