//! `serve --nats`: a cluster node (see docs/cluster.md). A feed node (`--role feed` or
//! `all`) starts the engine with a ring tap per feed and a thread publishing the taps
//! to NATS; an edge (`--role edge`) replaces each feed by a `NatsFeed` for its symbols.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Result};
use tickwire_engine::config::EngineConfig;
use tickwire_engine::feed::Feed;
use tickwire_engine::http::LinkStatus;
use tickwire_engine::server::{EngineHandle, StartOptions};
use tickwire_feeds::cluster::edge::{EdgeConfig, EdgeSubscribe, NatsFeed};
use tickwire_feeds::cluster::seed::SeededFeed;
use tickwire_feeds::cluster::tap::{self, TapConfig};

use crate::{EdgeSubscribeArg, Role, ServeArgs};

/// What a cluster node runs besides its engine; stops it when dropped.
pub struct Node {
    stop: Arc<AtomicBool>,
}

impl Drop for Node {
    fn drop(&mut self) {
        // Relaxed: a stop request; the tap thread checks it between batches.
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Starts the engine as a node of the cluster on `url`.
pub fn start(
    url: &str,
    args: &ServeArgs,
    mut cfg: EngineConfig,
    feeds: Vec<Box<dyn Feed>>,
) -> Result<(EngineHandle, Node)> {
    if !url.starts_with("nats://") {
        bail!("--nats {url:?}: use nats://HOST:PORT");
    }
    let role = args.role.unwrap_or(Role::All);
    let link = Arc::new(LinkStatus::new(format!("nats {url}")));
    let stop = Arc::new(AtomicBool::new(false));
    let options = StartOptions {
        taps: role != Role::Edge,
        links: vec![link.clone()],
    };
    let engine = match role {
        Role::Feed | Role::All => {
            if role == Role::Feed && args.workers.is_none() {
                // Clients belong on edges: one worker serves /health, /stats and the odd
                // local client.
                cfg.workers = 1;
            }
            // Each feed first continues the seqs the cluster last saw (a restart).
            let feeds: Vec<Box<dyn Feed>> = feeds
                .into_iter()
                .map(|f| Box::new(SeededFeed::new(f, url)) as Box<dyn Feed>)
                .collect();
            let mut engine = tickwire_engine::server::start_with(cfg, feeds, options)?;
            let taps = engine.take_taps();
            tap::spawn(
                taps,
                engine.shared().registry.clone(),
                TapConfig {
                    url: url.to_owned(),
                    // Default: 1 s, see docs/cluster.md.
                    snapshot_interval_ms: args.nats_snapshot_ms.unwrap_or(1000),
                    // Default: a 3 s lease, see docs/cluster.md ("Hot standby").
                    lease_ttl_ms: match args.nats_lease_ms.unwrap_or(3000) {
                        0 => None,
                        ms => Some(ms),
                    },
                },
                link,
                stop.clone(),
            )?;
            engine
        }
        Role::Edge => {
            let subscribe = match args.edge_subscribe.unwrap_or(EdgeSubscribeArg::Interest) {
                EdgeSubscribeArg::All => EdgeSubscribe::All,
                EdgeSubscribeArg::Interest => EdgeSubscribe::Interest {
                    // Default: 1 s, see docs/cluster.md.
                    linger_ms: args.edge_linger_ms.unwrap_or(1000),
                },
            };
            let edge = EdgeConfig {
                url: url.to_owned(),
                subscribe,
                // Default: 3 s, three of the feed nodes' default snapshot intervals.
                stale_after_ms: args.edge_stale_ms.unwrap_or(3000),
            };
            let feeds: Vec<Box<dyn Feed>> = feeds
                .into_iter()
                .map(|f| Box::new(NatsFeed::new(f, edge.clone(), link.clone())) as Box<dyn Feed>)
                .collect();
            tickwire_engine::server::start_with(cfg, feeds, options)?
        }
    };
    tracing::info!(%url, ?role, "cluster node started");
    Ok((engine, Node { stop }))
}
