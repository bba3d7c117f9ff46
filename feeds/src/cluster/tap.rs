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
}

/// Ticks taken from one ring before the tap looks at the others.
const BATCH_TICKS: usize = 1024;

struct Port {
    tap: RingTap,
    resync: Option<tokio::sync::oneshot::Receiver<ResyncReply>>,
    /// The book event being gathered (its ticks are contiguous in the ring).
    book: Vec<Tick>,
}

struct Sym {
    subjects: [Subject; 4],
    sym_seq: u64,
    scales: (u8, u8),
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
    for tap in &taps {
        for &id in &tap.feed.symbols {
            let info = registry.info(id);
            let prefix = wire::symbol_prefix(&info.name);
            syms[id.index()] = Some(Sym {
                subjects: wire::CHANNELS.map(|c| Subject::from(format!("{prefix}.{c}"))),
                sym_seq: 0,
                scales: (info.price_scale, info.size_scale),
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
    };
    let parker = taps.first().map(|p| p.parker.clone());
    let mut ports: Vec<Port> = taps
        .into_iter()
        .map(|tap| Port {
            // Start from the feed's whole state: what it published before this
            // consumer existed is in there.
            resync: Some(tap.feed.request_resync()),
            tap,
            book: Vec::new(),
        })
        .collect();
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

impl Tap {
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
