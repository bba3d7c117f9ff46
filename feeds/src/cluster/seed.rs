//! A feed node's start: before its feed runs, [`SeededFeed`] reads what the cluster
//! last saw of each of the feed's symbols (JetStream keeps the last message of every
//! subject) and adopts it, so that a restarted feed node continues the trade, book and
//! ticker seqs its predecessor published instead of starting again at 1.
//!
//! - **Seqs**: the trade and book seqs are the highest of the stored snapshot's and of the
//!   stored last trade and book event (published after the snapshot, maybe). The ticker
//!   seq is derived, and no message carries it: it is raised by the number of messages
//!   published after the snapshot, an upper bound of the ticker changes they made, so it
//!   never goes back (a jump is what conflation looks like to a client).
//! - **Blocking**: the feed thread waits for NATS (with the reconnect backoff, checking
//!   for shutdown) before its feed starts: a node that cannot publish has no one to serve,
//!   and one that started at seq 1 would break every edge's clients. A cluster that never
//!   stored anything (its first start) starts at 1.
//! - Cold path: runs once, allocates freely.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tickwire_engine::feed::{Feed, FeedError, FeedState, Publisher};
use tickwire_engine::http::LinkStatus;
use tickwire_engine::state::SymbolState;
use tickwire_engine::symbol::{SymbolId, SymbolRegistryBuilder};
use tickwire_engine::tick::Event;

use super::wire;

/// A feed that starts from the cluster's last state (see the module doc).
pub struct SeededFeed {
    inner: Box<dyn Feed>,
    url: String,
    symbols: Vec<(SymbolId, String)>,
}

impl SeededFeed {
    /// `inner`, seeded from the NATS server at `url` before it runs.
    pub fn new(inner: Box<dyn Feed>, url: &str) -> SeededFeed {
        SeededFeed {
            inner,
            url: url.to_owned(),
            symbols: Vec::new(),
        }
    }
}

impl Feed for SeededFeed {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn register(
        &mut self,
        symbols: &mut SymbolRegistryBuilder,
    ) -> Result<Vec<SymbolId>, FeedError> {
        let ids = self.inner.register(symbols)?;
        self.symbols = ids
            .iter()
            .filter_map(|&id| symbols.info(id).map(|i| (id, wire::symbol_prefix(&i.name))))
            .collect();
        Ok(ids)
    }

    fn run(&mut self, publisher: &mut Publisher, shutdown: &AtomicBool) -> Result<(), FeedError> {
        publisher.shared().stats.set_state(FeedState::Connecting);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let seeds = runtime.block_on(read_seeds(&self.url, &self.symbols, shutdown));
        drop(runtime);
        let n = seeds.len();
        for (id, state) in seeds {
            publisher.adopt(id, state);
        }
        publisher.flush();
        if n > 0 {
            tracing::info!(
                feed = self.inner.name(),
                symbols = n,
                "continuing the cluster's seqs"
            );
        }
        if shutdown.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.inner.run(publisher, shutdown)
    }
}

/// The seeds of `symbols`: every symbol the cluster has a snapshot of.
async fn read_seeds(
    url: &str,
    symbols: &[(SymbolId, String)],
    shutdown: &AtomicBool,
) -> Vec<(SymbolId, SymbolState)> {
    let link = Arc::new(LinkStatus::new(format!("nats {url} (seeding)")));
    let client = match super::connect(url, "tickwire-feed-seed", link, None).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(%url, error = %e, "cannot use the NATS URL; starting without the cluster's seqs");
            return Vec::new();
        }
    };
    let mut attempt: usize = 0;
    loop {
        if shutdown.load(Ordering::Relaxed) {
            return Vec::new();
        }
        match try_read(&client, symbols).await {
            Ok(seeds) => return seeds,
            Err(e) => {
                if attempt.is_multiple_of(10) {
                    tracing::warn!(%url, error = %e, "waiting for NATS to read the cluster's last state before the feed starts");
                }
                tokio::time::sleep(super::reconnect_delay(attempt)).await;
                attempt += 1;
            }
        }
    }
}

/// What the cluster last saw of `symbols` (see the module doc for the seqs): every
/// symbol with a stored snapshot.
pub(super) async fn try_read(
    client: &async_nats::Client,
    symbols: &[(SymbolId, String)],
) -> Result<Vec<(SymbolId, SymbolState)>, async_nats::Error> {
    tokio::time::timeout(Duration::from_secs(5), super::ensure_stream(client))
        .await
        .map_err(|_| "timed out creating the stream")??;
    let mut seeds = Vec::new();
    let mut ticks = Vec::new();
    for (id, prefix) in symbols {
        let Some(payload) = super::fetch_snapshot(client, &format!("{prefix}.snapshot")).await?
        else {
            continue;
        };
        let snap = wire::decode_snapshot(&payload)?;
        let mut state = snap.state;
        let mut last_sym_seq = snap.header.sym_seq;
        for channel in ["trades", "book", "ticker"] {
            let Some(payload) =
                super::fetch_snapshot(client, &format!("{prefix}.{channel}")).await?
            else {
                continue;
            };
            let Ok(h) = wire::decode_ticks(&payload, *id, &mut ticks) else {
                continue;
            };
            if h.session != snap.header.session {
                continue;
            }
            last_sym_seq = last_sym_seq.max(h.sym_seq);
            match ticks.first().map(|t| t.event) {
                Some(Event::Trade { seq, .. }) => state.trade_seq = state.trade_seq.max(seq),
                Some(Event::Level { seq, .. }) => state.book_seq = state.book_seq.max(seq),
                _ => {}
            }
        }
        state.ticker.seq += last_sym_seq - snap.header.sym_seq;
        tracing::debug!(symbol = %prefix, trade_seq = state.trade_seq, book_seq = state.book_seq, ticker_seq = state.ticker.seq, "seed");
        seeds.push((*id, state));
    }
    Ok(seeds)
}
