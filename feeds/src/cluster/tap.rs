//! The feed node's publisher: one thread that reads every feed's ring (a
//! [`RingTap`], beside the workers) and publishes each tick to NATS in the cluster's
//! encoding ([`super::wire`]), with the seqs the feed's publisher assigned. Every
//! `snapshot_interval_ms`, and after anything that could have lost messages (its start,
//! a ring lap, a feed's reset, a reconnect), it also publishes every symbol's whole
//! state on its `snapshot` subject, which JetStream keeps (last per subject).
//!
//! - **Ownership**: the thread owns its NATS client, its copy of every symbol's state
//!   (the same `SymbolState::apply` a worker runs, so it equals the feed's), and the
//!   per-symbol message counter (`sym_seq`) of its session.
//! - **Blocking**: never on the feed: it is a ring consumer, so a tap that falls behind
//!   is lapped and resynchronises from the feed's state. It may wait on the NATS client's
//!   send buffer.
//! - **Allocation**: one `Bytes` payload per message (the NATS client takes ownership);
//!   this is the tap, not the engine's fan-out path.
//! - **Outage**: while the link is down, messages are dropped (their `sym_seq`s are
//!   used, so edges see the hole) and snapshots of every symbol go out on reconnection.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::connection::State;
use async_nats::Subject;
use bytes::Bytes;
use tickwire_engine::feed::ResyncReply;
use tickwire_engine::http::LinkStatus;
use tickwire_engine::ring::RecvError;
use tickwire_engine::server::RingTap;
use tickwire_engine::state::SymbolState;
use tickwire_engine::symbol::{SymbolId, SymbolRegistry};
use tickwire_engine::tick::{Event, LevelFlags, Tick};

use super::wire::{self, Header};

/// Settings of a feed node's publisher.
#[derive(Clone, Debug)]
pub struct TapConfig {
    /// The NATS server, `nats://HOST:PORT`.
    pub url: String,
    /// How often every symbol's state is published for new edges (default 1000 ms,
    /// `--nats-snapshot-ms`): an edge that lost messages is whole again within this.
    pub snapshot_interval_ms: u64,
    /// Hot standby: a feed is published only while this node holds its lease, a key of
    /// the KV bucket [`LEASE_BUCKET`] that lives this long unless renewed (renewed every
    /// third of it). `None`: always publish (default 3000 ms, `--nats-lease-ms`, 0 = none).
    pub lease_ttl_ms: Option<u64>,
}

/// The KV bucket of the feeds' leases: one key per feed name (`sim`, `binance`, ...).
pub const LEASE_BUCKET: &str = "tickwire-leases";

/// One feed's lease.
struct Lease {
    key: String,
    revision: u64,
    /// Taken, seqs being continued: becomes leading when the feed's reply comes.
    rebase: Option<tokio::sync::oneshot::Receiver<ResyncReply>>,
}

/// Ticks taken from one ring before the tap looks at the others.
const BATCH_TICKS: usize = 1024;

struct Port {
    tap: RingTap,
    /// Publishes this feed (holds its lease, or no lease is used).
    leading: bool,
    lease: Option<Lease>,
    resync: Option<tokio::sync::oneshot::Receiver<ResyncReply>>,
    /// The book event being gathered (its ticks are contiguous in the ring).
    book: Vec<Tick>,
}

struct Sym {
    subjects: [Subject; 4],
    sym_seq: u64,
    scales: (u8, u8),
    /// Index of its feed's port.
    port: usize,
    /// The tap holds the feed's state (its first resync reply came): before that, a
    /// snapshot would be an empty state that could overwrite the cluster's stored one.
    ready: bool,
}

struct Tap {
    client: async_nats::Client,
    session: u64,
    syms: Vec<Option<Sym>>,
    states: Vec<SymbolState>,
    scratch: Vec<u8>,
    dropped: u64,
    /// Per port: publishes it (see `Port::leading`).
    leading: Vec<bool>,
}

/// Starts the publisher thread for `taps`; it runs until `stop` is set.
pub fn spawn(
    taps: Vec<RingTap>,
    registry: Arc<SymbolRegistry>,
    cfg: TapConfig,
    link: Arc<LinkStatus>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("tickwire-nats-tap".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the NATS publisher's runtime");
                    return;
                }
            };
            runtime.block_on(run(taps, registry, cfg, link, stop));
        })
}

async fn run(
    taps: Vec<RingTap>,
    registry: Arc<SymbolRegistry>,
    cfg: TapConfig,
    link: Arc<LinkStatus>,
    stop: Arc<AtomicBool>,
) {
    let client = match super::connect(&cfg.url, "tickwire-feed", link, None).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(url = %cfg.url, error = %e, "cannot use the NATS URL");
            return;
        }
    };
    {
        let client = client.clone();
        tokio::spawn(async move { super::ensure_stream_retrying(&client).await });
    }
    let mut syms: Vec<Option<Sym>> = (0..registry.len()).map(|_| None).collect();
    for (port, tap) in taps.iter().enumerate() {
        for &id in &tap.feed.symbols {
            let info = registry.info(id);
            let prefix = wire::symbol_prefix(&info.name);
            syms[id.index()] = Some(Sym {
                subjects: wire::CHANNELS.map(|c| Subject::from(format!("{prefix}.{c}"))),
                sym_seq: 0,
                scales: (info.price_scale, info.size_scale),
                port,
                ready: false,
            });
        }
    }
    let mut t = Tap {
        client,
        // Never 0, so that an edge's "no session yet" differs from every real one.
        session: rand::random::<u64>() | 1,
        syms,
        states: vec![SymbolState::default(); registry.len()],
        scratch: Vec::with_capacity(4096),
        dropped: 0,
        leading: vec![cfg.lease_ttl_ms.is_none(); taps.len()],
    };
    let prefixes: Vec<Vec<(SymbolId, String)>> = taps
        .iter()
        .map(|tap| {
            tap.feed
                .symbols
                .iter()
                .map(|&id| (id, wire::symbol_prefix(&registry.info(id).name)))
                .collect()
        })
        .collect();
    let parker = taps.first().map(|p| p.parker.clone());
    let mut ports: Vec<Port> = taps
        .into_iter()
        .map(|tap| Port {
            // Start from the feed's whole state: what it published before this
            // consumer existed is in there.
            resync: Some(tap.feed.request_resync()),
            leading: cfg.lease_ttl_ms.is_none(),
            lease: cfg.lease_ttl_ms.map(|_| Lease {
                key: lease_key(&tap.feed.name),
                revision: 0,
                rebase: None,
            }),
            tap,
            book: Vec::new(),
        })
        .collect();
    let lease_every = Duration::from_millis(cfg.lease_ttl_ms.unwrap_or(3000).max(3) / 3);
    let mut next_lease = Instant::now();
    let mut kv: Option<async_nats::jetstream::kv::Store> = None;
    let interval = Duration::from_millis(cfg.snapshot_interval_ms.max(1));
    let mut next_snapshots = Instant::now() + interval;
    let mut was_connected = false;
    tracing::info!(url = %cfg.url, session = t.session, "publishing feeds to NATS");
    while !stop.load(Ordering::Relaxed) {
        let connected = t.client.connection_state() == State::Connected;
        if connected && !was_connected {
            // (Re)connected: whatever was lost meanwhile, edges get whole states now.
            t.publish_all_snapshots().await;
            next_snapshots = Instant::now() + interval;
        }
        was_connected = connected;
        if let Some(ttl_ms) = cfg.lease_ttl_ms {
            if connected && Instant::now() >= next_lease {
                next_lease = Instant::now() + lease_every;
                t.tend_leases(&mut ports, &prefixes, &mut kv, ttl_ms).await;
            }
            if t.take_rebases(&mut ports) {
                // A new leader: a new session, so edges adopt its snapshots.
                t.session = rand::random::<u64>() | 1;
                t.publish_all_snapshots().await;
            }
        }
        let mut got = 0usize;
        let mut resyncing = false;
        for port in &mut ports {
            if let Some(rx) = port.resync.as_mut() {
                match rx.try_recv() {
                    Ok(reply) => {
                        port.resync = None;
                        port.book.clear();
                        port.tap.consumer.skip_to(reply.position);
                        for (id, state) in reply.states {
                            t.states[id.index()] = state;
                            if let Some(Some(sym)) = t.syms.get_mut(id.index()) {
                                sym.ready = true;
                            }
                            t.publish_snapshot(id).await;
                        }
                    }
                    Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {
                        resyncing = true;
                        continue;
                    }
                    Err(tokio::sync::oneshot::error::TryRecvError::Closed) => {
                        port.resync = None;
                    }
                }
            }
            for _ in 0..BATCH_TICKS {
                match port.tap.consumer.try_recv() {
                    Ok(Tick {
                        event: Event::Reset,
                        ..
                    }) => {
                        // One symbol's state replaced (a seeded start): take it, tell the
                        // edges; if the feed no longer keeps it, take the whole feed's.
                        let at = port.tap.consumer.position() - 1;
                        match port.tap.feed.reset_state(at) {
                            Some((id, state)) => {
                                t.states[id.index()] = state;
                                t.publish_snapshot(id).await;
                            }
                            None => {
                                port.resync = Some(port.tap.feed.request_resync());
                                resyncing = true;
                                break;
                            }
                        }
                    }
                    Err(RecvError::Lagged(_)) => {
                        port.resync = Some(port.tap.feed.request_resync());
                        resyncing = true;
                        break;
                    }
                    Ok(tick) => {
                        got += 1;
                        t.on_tick(&mut port.book, tick).await;
                    }
                    Err(RecvError::Empty) => break,
                }
            }
        }
        let now = Instant::now();
        if now >= next_snapshots {
            t.publish_all_snapshots().await;
            next_snapshots = now + interval;
        }
        if got > 0 {
            tokio::task::yield_now().await;
        } else if resyncing {
            tokio::time::sleep(Duration::from_millis(1)).await;
        } else if let Some(parker) = &parker {
            let wait = next_snapshots
                .saturating_duration_since(now)
                .min(Duration::from_millis(50));
            let park = parker.park_until(|| ports.iter().any(|p| p.tap.consumer.available() > 0));
            let _ = tokio::time::timeout(wait, park).await;
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let _ = t.client.flush().await;
}

/// A KV key for a feed name (KV keys take letters, digits and `-_/=.`).
fn lease_key(feed: &str) -> String {
    feed.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Tap {
    /// Renews the leases held, tries to take the others (a standby takes a lease its
    /// leader let expire, then continues the cluster's seqs before it publishes).
    async fn tend_leases(
        &mut self,
        ports: &mut [Port],
        prefixes: &[Vec<(SymbolId, String)>],
        kv: &mut Option<async_nats::jetstream::kv::Store>,
        ttl_ms: u64,
    ) {
        let timeout = Duration::from_secs(1);
        if kv.is_none() {
            let js = async_nats::jetstream::new(self.client.clone());
            // The bucket's stream, made by hand: the KV helper's own create request
            // is one Debian's nats-server 2.9 answers in a form async-nats cannot read.
            let stream = async_nats::jetstream::stream::Config {
                name: format!("KV_{LEASE_BUCKET}"),
                subjects: vec![format!("$KV.{LEASE_BUCKET}.>")],
                max_messages_per_subject: 1,
                max_age: Duration::from_millis(ttl_ms),
                storage: async_nats::jetstream::stream::StorageType::File,
                discard: async_nats::jetstream::stream::DiscardPolicy::New,
                allow_rollup: true,
                deny_delete: true,
                allow_direct: true,
                ..Default::default()
            };
            let store = async {
                tokio::time::timeout(timeout, js.get_or_create_stream(stream))
                    .await
                    .map_err(|_| "timed out".to_owned())?
                    .map_err(|e| e.to_string())?;
                tokio::time::timeout(timeout, js.get_key_value(LEASE_BUCKET))
                    .await
                    .map_err(|_| "timed out".to_owned())?
                    .map_err(|e| e.to_string())
            }
            .await;
            match store {
                Ok(store) => *kv = Some(store),
                Err(e) => {
                    tracing::debug!(error = %e, "no lease bucket yet");
                    return;
                }
            }
        }
        let Some(store) = kv.as_ref() else {
            return;
        };
        let me = Bytes::from(format!("{:016x}", self.session));
        for (i, port) in ports.iter_mut().enumerate() {
            let Some(lease) = port.lease.as_mut() else {
                continue;
            };
            if port.leading {
                match tokio::time::timeout(
                    timeout,
                    store.update(&lease.key, me.clone(), lease.revision),
                )
                .await
                {
                    Ok(Ok(revision)) => lease.revision = revision,
                    other => {
                        tracing::warn!(feed = %port.tap.feed.name, result = ?other.map(|r| r.map_err(|e| e.to_string())), "lost the feed's lease: standing by");
                        port.leading = false;
                        self.leading[i] = false;
                    }
                }
            } else if lease.rebase.is_none() {
                if let Ok(Ok(revision)) =
                    tokio::time::timeout(timeout, store.create(&lease.key, me.clone())).await
                {
                    lease.revision = revision;
                    // Continue what the last leader published before publishing.
                    let seqs = match super::seed::try_read(&self.client, &prefixes[i]).await {
                        Ok(seqs) => seqs,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot read the cluster's last state; continuing this node's seqs");
                            Vec::new()
                        }
                    };
                    tracing::info!(feed = %port.tap.feed.name, "took the feed's lease: publishing");
                    lease.rebase = Some(port.tap.feed.request_rebase(seqs));
                }
            }
        }
    }

    /// Ports whose rebase reply came start leading; returns whether any did.
    fn take_rebases(&mut self, ports: &mut [Port]) -> bool {
        let mut any = false;
        for (i, port) in ports.iter_mut().enumerate() {
            let Some(rx) = port.lease.as_mut().and_then(|l| l.rebase.as_mut()) else {
                continue;
            };
            let reply = match rx.try_recv() {
                Ok(reply) => reply,
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => continue,
                Err(tokio::sync::oneshot::error::TryRecvError::Closed) => {
                    if let Some(l) = port.lease.as_mut() {
                        l.rebase = None;
                    }
                    continue;
                }
            };
            if let Some(l) = port.lease.as_mut() {
                l.rebase = None;
            }
            port.tap.consumer.skip_to(reply.position);
            port.book.clear();
            for (id, state) in reply.states {
                self.states[id.index()] = state;
                if let Some(Some(sym)) = self.syms.get_mut(id.index()) {
                    sym.ready = true;
                }
            }
            port.leading = true;
            self.leading[i] = true;
            any = true;
        }
        any
    }

    async fn on_tick(&mut self, book: &mut Vec<Tick>, tick: Tick) {
        let symbol = tick.symbol;
        let Some(state) = self.states.get_mut(symbol.index()) else {
            return;
        };
        state.apply(&tick);
        match tick.event {
            Event::Level { flags, .. } => {
                book.push(tick);
                if flags.contains(LevelFlags::BATCH_END) {
                    let h = self.next_header(symbol);
                    self.scratch.clear();
                    wire::encode_book(&mut self.scratch, h, book);
                    book.clear();
                    self.send(symbol, 2).await;
                }
            }
            Event::Trade { .. } | Event::Quote { .. } => {
                let channel = if matches!(tick.event, Event::Trade { .. }) {
                    1
                } else {
                    0
                };
                let h = self.next_header(symbol);
                self.scratch.clear();
                wire::encode_tick(&mut self.scratch, h, &tick);
                self.send(symbol, channel).await;
            }
            Event::Reset => {}
        }
    }

    /// The header of the next message of `symbol` (its `sym_seq` taken).
    fn next_header(&mut self, symbol: SymbolId) -> Header {
        let sym_seq = match self.syms.get_mut(symbol.index()) {
            Some(Some(s)) => {
                s.sym_seq += 1;
                s.sym_seq
            }
            _ => 0,
        };
        Header {
            session: self.session,
            sym_seq,
            ..Header::default()
        }
    }

    async fn publish_snapshot(&mut self, symbol: SymbolId) {
        let Some(Some(sym)) = self.syms.get(symbol.index()) else {
            return;
        };
        if !sym.ready {
            return;
        }
        let scales = sym.scales;
        let now = tickwire_engine::tick::now_ns();
        let h = Header {
            ts: now,
            ingest_ts: now,
            ..self.next_header(symbol)
        };
        self.scratch.clear();
        wire::encode_snapshot(&mut self.scratch, h, scales, &self.states[symbol.index()]);
        self.send(symbol, 3).await;
    }

    async fn publish_all_snapshots(&mut self) {
        for i in 0..self.syms.len() {
            if self.syms[i].is_some() {
                self.publish_snapshot(SymbolId(i as u32)).await;
            }
        }
    }

    /// Publishes the scratch buffer on `symbol`'s `channel` (index into
    /// [`wire::CHANNELS`]); dropped while the link is down.
    async fn send(&mut self, symbol: SymbolId, channel: usize) {
        let Some(Some(sym)) = self.syms.get(symbol.index()) else {
            return;
        };
        if !self.leading.get(sym.port).copied().unwrap_or(false) {
            return; // A standby: the leader publishes this feed.
        }
        if self.client.connection_state() != State::Connected {
            self.dropped += 1;
            if self.dropped.is_power_of_two() {
                tracing::warn!(
                    dropped = self.dropped,
                    "NATS link down: dropping messages (edges resync from snapshots)"
                );
            }
            return;
        }
        let payload = Bytes::copy_from_slice(&self.scratch);
        if let Err(e) = self
            .client
            .publish(sym.subjects[channel].clone(), payload)
            .await
        {
            tracing::debug!(error = %e, "NATS publish failed");
        }
    }
}
