//! tickwire on NATS: feed nodes publish their feeds' ticks to subjects, edge nodes take
//! them from there and fan out locally (see `docs/cluster.md`).
//!
//! - [`wire`]: subjects and the binary encoding.
//! - [`tap`]: the feed node's side, a reader of each feed's ring that publishes every
//!   tick and, periodically, every symbol's whole state (kept by JetStream).
//! - [`edge`]: the edge's side, [`edge::NatsFeed`], a feed whose venue is the bus.
//! - [`seed`]: a feed node's start: its feeds continue the seqs the cluster last saw.
//!
//! One connection per node. `async-nats` reconnects by itself (the backoff is
//! [`reconnect_delay`]) and resubscribes; what was published while a link was down is
//! lost, which the receiving side sees as a jump in the per-symbol message seq and
//! repairs from a snapshot (clients get a `gap` and fresh snapshots, never silence).

pub mod edge;
pub mod seed;

pub mod tap;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use tickwire_engine::http::LinkStatus;

/// Name of the JetStream stream that keeps the last message of every subject: each
/// symbol's last snapshot (what new edges start from) and its last trade, book event and
/// quote (whose seqs a restarted feed node continues).
pub const SNAPSHOT_STREAM: &str = "TICKWIRE_LAST";
/// The subjects it keeps.
pub const SNAPSHOT_SUBJECTS: &str = "tickwire.*.*.*";

/// Reconnect backoff: attempt `n` waits `min(100 ms × 2^n, 2 s)`, less a random part of
/// up to a quarter so that many nodes do not knock at the same instant. Short because a
/// node without its bus serves nothing.
pub fn reconnect_delay(attempts: usize) -> Duration {
    let base = 100u64.saturating_mul(1 << attempts.min(5)).min(2_000);
    let jitter = rand::random::<u64>() % (base / 4 + 1);
    Duration::from_millis(base - jitter)
}

/// Connects to `url` in the background (the first connection is retried like any
/// reconnect), keeping `link` up to date; `on_event` hears every change too.
pub async fn connect(
    url: &str,
    name: &str,
    link: Arc<LinkStatus>,
    on_event: Option<tokio::sync::mpsc::UnboundedSender<async_nats::Event>>,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    let first = Arc::new(std::sync::atomic::AtomicBool::new(true));
    async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        .ping_interval(Duration::from_secs(5))
        .reconnect_delay_callback(reconnect_delay)
        .event_callback(move |event| {
            let link = link.clone();
            let first = first.clone();
            let on_event = on_event.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        let was_first = first.swap(false, std::sync::atomic::Ordering::Relaxed);
                        link.set_up(true, was_first);
                        tracing::info!(link = %link.name, "NATS connected");
                    }
                    async_nats::Event::Disconnected => {
                        link.set_up(false, false);
                        tracing::warn!(link = %link.name, "NATS disconnected; reconnecting");
                    }
                    ref other => tracing::debug!(link = %link.name, event = %other, "NATS event"),
                }
                if let Some(tx) = on_event {
                    let _ = tx.send(event);
                }
            }
        })
        .connect(url)
        .await
}

/// Creates the stream unless it exists: file storage (where the NATS server keeps its
/// JetStream store, so it outlives a server restart), the last message of each subject
/// only. Feed nodes and edges both call it; whoever comes first makes it.
pub async fn ensure_stream(client: &async_nats::Client) -> Result<(), async_nats::Error> {
    use async_nats::jetstream::stream;
    async_nats::jetstream::new(client.clone())
        .get_or_create_stream(stream::Config {
            name: SNAPSHOT_STREAM.to_owned(),
            subjects: vec![SNAPSHOT_SUBJECTS.to_owned()],
            max_messages_per_subject: 1,
            storage: stream::StorageType::File,
            discard: stream::DiscardPolicy::Old,
            ..Default::default()
        })
        .await?;
    Ok(())
}

/// [`ensure_stream`] until it succeeds (the bus may not be up yet), with the reconnect
/// backoff between attempts.
pub async fn ensure_stream_retrying(client: &async_nats::Client) {
    let mut attempt: usize = 0;
    loop {
        match ensure_stream(client).await {
            Ok(()) => return,
            Err(e) => {
                if attempt.is_multiple_of(10) {
                    tracing::warn!(error = %e, "cannot create the JetStream stream {SNAPSHOT_STREAM} yet; retrying");
                }
                tokio::time::sleep(reconnect_delay(attempt)).await;
                attempt += 1;
            }
        }
    }
}

/// The last snapshot JetStream keeps for `subject`: `Ok(None)` when there is none yet.
pub async fn fetch_snapshot(
    client: &async_nats::Client,
    subject: &str,
) -> Result<Option<bytes::Bytes>, async_nats::Error> {
    use async_nats::jetstream::stream::LastRawMessageErrorKind;
    let stream = async_nats::jetstream::new(client.clone())
        .get_stream(SNAPSHOT_STREAM)
        .await?;
    match stream.get_last_raw_message_by_subject(subject).await {
        Ok(m) => Ok(Some(m.payload)),
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}
