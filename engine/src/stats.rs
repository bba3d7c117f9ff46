//! Counters of the fan-out workers, written by their owning worker thread and read by the
//! control plane (`/stats`, `/metrics`). All Relaxed: they are statistics, ordering nothing.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a client connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed, or the connection dropped.
    Client,
    /// 1001: shutdown or no pong in time.
    GoingAway,
    /// 1002: protocol (framing) error.
    ProtocolError,
    /// 1003: binary data.
    BinaryData,
    /// 1007: invalid UTF-8.
    InvalidUtf8,
    /// 1008: policy (idle while data pending, or too many errors).
    Policy,
    /// 1009: message over the size limit.
    TooBig,
    /// 1011: the engine failed (a worker's fan-out stopped); reconnect elsewhere.
    InternalError,
}

impl CloseReason {
    /// Every reason, in the order of [`WorkerStats::closed`].
    pub const ALL: [CloseReason; 8] = [
        CloseReason::Client,
        CloseReason::GoingAway,
        CloseReason::ProtocolError,
        CloseReason::BinaryData,
        CloseReason::InvalidUtf8,
        CloseReason::Policy,
        CloseReason::TooBig,
        CloseReason::InternalError,
    ];

    /// The WebSocket close code the server sends (1000 echoes a client's close).
    pub fn code(self) -> Option<u16> {
        match self {
            CloseReason::Client => Some(1000),
            CloseReason::GoingAway => Some(1001),
            CloseReason::ProtocolError => Some(1002),
            CloseReason::BinaryData => Some(1003),
            CloseReason::InvalidUtf8 => Some(1007),
            CloseReason::Policy => Some(1008),
            CloseReason::TooBig => Some(1009),
            CloseReason::InternalError => Some(1011),
        }
    }

    /// Name used in `/stats`.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Client => "client",
            CloseReason::GoingAway => "going_away",
            CloseReason::ProtocolError => "protocol_error",
            CloseReason::BinaryData => "binary_data",
            CloseReason::InvalidUtf8 => "invalid_utf8",
            CloseReason::Policy => "policy",
            CloseReason::TooBig => "too_big",
            CloseReason::InternalError => "internal_error",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Counters of one worker.
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Connected WebSocket clients.
    pub clients: AtomicU64,
    /// WebSocket connections accepted since start.
    pub connections_total: AtomicU64,
    /// Symbol-channel pairs subscribed.
    pub subscriptions: AtomicU64,
    /// Ticks read from the rings.
    pub ticks: AtomicU64,
    /// Frames encoded once for sharing (data events).
    pub frames_encoded: AtomicU64,
    /// Frames fully written to sockets.
    pub messages_sent: AtomicU64,
    /// Bytes written to sockets.
    pub bytes_sent: AtomicU64,
    /// State messages (ticker, book) not sent because a newer state superseded them.
    pub conflated: AtomicU64,
    /// `gap` messages sent.
    pub gaps_sent: AtomicU64,
    /// Trades skipped inside gaps.
    pub trades_skipped: AtomicU64,
    /// Book snapshots sent again to resynchronise a client.
    pub snapshots_resent: AtomicU64,
    /// Trades replayed from the history to version 2 clients recovering with `since`.
    pub trades_replayed: AtomicU64,
    /// Version 2: merged book updates sent in place of the updates a client missed.
    pub book_merges: AtomicU64,
    /// Version 2: snapshots sent in place of missed updates where a merged update would
    /// have been larger or the client's state could no longer be rebuilt.
    pub book_snapshots_instead: AtomicU64,
    /// Times the worker was lapped by a feed's ring.
    pub ring_laps: AtomicU64,
    /// Ticks lost to laps (recovered from the feed's state).
    pub ring_missed: AtomicU64,
    /// Largest outbox seen, bytes.
    pub peak_outbox_bytes: AtomicU64,
    /// Connections closed, by [`CloseReason`].
    pub closed: [AtomicU64; 8],
    /// `error` replies sent.
    pub errors_sent: AtomicU64,
    /// Vectored write calls to client sockets.
    pub writes: AtomicU64,
    /// Write rounds (every pending client written once).
    pub flush_rounds: AtomicU64,
    /// The write-coalescing window in force, µs (a gauge; 0 = write after every pass).
    pub coalesce_window_us: AtomicU64,
    /// The worker's busy share over the coalescing policy's last period, per mille (a
    /// gauge: the time its thread was not parked).
    pub busy_permille: AtomicU64,
    /// Connections closed at accept by the connection limits.
    pub connections_refused: AtomicU64,
    /// WebSocket upgrades refused with `401` (missing, bad or expired token).
    pub upgrades_unauthorized: AtomicU64,
    /// TLS handshakes that failed or timed out (a plain-text client on a TLS port too).
    pub tls_handshakes_failed: AtomicU64,
    /// 1 once the worker's fan-out has failed (panicked): `/health` answers 503.
    pub failed: AtomicU64,
    /// Set by a test to make the fan-out panic at its next pass (the supervision test's
    /// hook; nothing else sets it).
    pub inject_panic: std::sync::atomic::AtomicBool,
    /// Client pings left unanswered because a pong to that client was half written.
    pub pongs_dropped: AtomicU64,
    /// Subscriptions conflated because their oldest queued frame passed the staleness
    /// limit (not the byte budget).
    pub stale_conflations: AtomicU64,
    /// This worker's latency histograms (ingest_to_encode, tick_to_wire, outbox_wait).
    pub latency: crate::latency::LatencySlot,
}

impl WorkerStats {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts one closed connection.
    pub fn count_close(&self, reason: CloseReason) {
        self.closed[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Sets a gauge.
    pub fn set(gauge: &AtomicU64, v: u64) {
        gauge.store(v, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
