//! Engine configuration: limits, budgets, threads. Every field has a default that runs
//! out of the box; [`EngineConfig::validate`] collects every problem at once.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Largest accepted `outbox_budget_bytes`: 1 GiB.
pub const MAX_OUTBOX_BUDGET_BYTES: usize = 1 << 30;

/// Largest accepted `trade_history`: a million trades (56 MB per symbol per worker).
pub const MAX_TRADE_HISTORY: usize = 1_000_000;

/// Validated engine configuration.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Address of the one port serving HTTP and WebSocket. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Fan-out worker threads, each with its own `SO_REUSEPORT` listener. Default: one
    /// per available core.
    pub workers: usize,
    /// Cores to pin workers to, in order (wrapping); empty = no pinning. Default: all
    /// cores, wrapping, when the machine has them.
    pub worker_cores: Vec<usize>,
    /// Cores to pin feed threads to, in order (wrapping); empty = no pinning.
    pub feed_cores: Vec<usize>,
    /// Ring capacity in ticks per feed (power of two). Default 65,536 (4.5 MiB a feed).
    pub ring_capacity: usize,
    /// Byte budget of one client's outbox; past it the client is conflated. Default 256 KiB.
    pub outbox_budget_bytes: usize,
    /// Kernel send buffer per client socket (`SO_SNDBUF`), bytes; `None` leaves the
    /// kernel's autotuning. Smaller buffers cut memory per client and make conflation
    /// kick in sooner for slow readers. Default `None`.
    pub send_buffer_bytes: Option<usize>,
    /// Largest client message (after reassembly), in bytes. Default 64 KiB.
    pub max_message_bytes: usize,
    /// Client commands allowed per second. Default 20.
    pub commands_per_s: u32,
    /// Symbol-channel pairs one connection may hold. Default 5,000.
    pub max_subscriptions: usize,
    /// Snapshot bytes one client's subscribes may cause per second (a bucket of one
    /// second's worth that one subscribe may overdraw); while overdrawn, a `subscribe` gets
    /// `rate_limited` and nothing is applied. Bounds what resubscribing deep books costs
    /// the worker. Default 8 MiB.
    pub snapshot_bytes_per_s: u64,
    /// `error` replies allowed per 10 s before the connection is closed with 1008. Default 10.
    pub max_errors_per_10s: u32,
    /// Silence after which the server sends a ping, ms. Default 15,000.
    pub ping_interval_ms: u64,
    /// Silence from the client after which it is closed with 1001, ms. Default 45,000.
    pub pong_timeout_ms: u64,
    /// A client that takes no bytes for this long while data is pending is closed with
    /// 1008, ms. Default 30,000.
    pub idle_timeout_ms: u64,
    /// The longest coalescing window, µs: a worker whose core is busier than
    /// `busy_target_pct` gathers a client's frames for up to this long and writes them
    /// with one system call; a worker with room writes at once (see
    /// `docs/architecture.md`, "Write path"). 0 disables coalescing. Default 16,000.
    pub flush_budget_us: u64,
    /// The busy share (percent of the worker's core) above which write coalescing
    /// starts; under it every pass writes at once. Default 70.
    pub busy_target_pct: u8,
    /// Unsent bytes the kernel may hold per client socket (`TCP_NOTSENT_LOWAT`); past it
    /// the socket takes no more and data waits in the outbox, where it can be conflated.
    /// 0 leaves the kernel's default (no limit). Default 32 KiB.
    pub notsent_lowat_bytes: u32,
    /// A subscription whose oldest queued frame is older than this is conflated as if
    /// over budget (latest ticker, fresh book snapshot, one exact trade `gap`), ms.
    /// Default 500.
    pub staleness_limit_ms: u64,
    /// Trades kept per symbol, per worker, for version 2 recovery (`subscribe` with
    /// `since`): 56 bytes each, allocated at a symbol's first trade; 0 keeps none (every
    /// recovery is one `expired` gap). Default 10,000; at most [`MAX_TRADE_HISTORY`].
    pub trade_history: usize,
    /// Time a connection may take to send a request's headers (HTTP and the WebSocket
    /// upgrade), and to send the next request on a kept-alive connection, ms; past it the
    /// connection is closed (slowloris). Default 10,000.
    pub header_timeout_ms: u64,
    /// Time an HTTP response may wait for the peer to take any of its bytes, ms; past it
    /// the connection is closed (a client that pipelines requests and never reads). The
    /// clock restarts whenever bytes go out, so a slow reader is not cut. WebSocket
    /// sessions have `idle_timeout_ms` instead. Default 10,000.
    pub http_write_timeout_ms: u64,
    /// Origins (`scheme://host[:port]`) whose pages may open a WebSocket; `*` allows any.
    /// Besides these, an upgrade whose `Origin` is the engine's own host (same origin) or
    /// a loopback host (`localhost`, `127.0.0.1`, `[::1]`) passes, and a request without
    /// an `Origin` (not a browser) passes. Anything else gets `403`. Default: empty.
    pub allowed_origins: Vec<String>,
    /// Host names this engine answers to. When set, every request (HTTP and the WebSocket
    /// upgrade) whose `Host` (or absolute-form target) names another host gets `421
    /// Misdirected Request`: a page that rebinds its own DNS name to this machine's
    /// address (DNS rebinding) then reaches nothing. The port in `Host` is not checked;
    /// loopback hosts (`localhost`, `127.0.0.0/8`, `[::1]`) always pass, so local tools
    /// keep working. Default: empty, which on a loopback `listen` address serves loopback
    /// host names only, and elsewhere any name (the start-up log warns).
    pub server_names: Vec<String>,
    /// Connections (HTTP and WebSocket) the engine holds at once; past it new ones are
    /// closed at accept. Default 100,000 (the open-file limit may cap it first).
    pub max_connections: usize,
    /// Connections one client address may hold. Default 1,000.
    pub max_connections_per_ip: u32,
    /// WebSocket upgrades per second one address may make (a bucket of this size);
    /// past it, `429`. Default 50.
    pub upgrades_per_s_per_ip: u32,
    /// Loopback addresses are exempt from the per-address limits (local tools, load tests,
    /// a reverse proxy on this host). Default true.
    pub loopback_exempt: bool,
    /// PEM file with the certificate chain (leaf first); with [`EngineConfig::tls_key`]
    /// the port serves `https` and `wss` only. Reloaded on SIGHUP by the binary.
    /// Default: none (plain `http` and `ws`).
    pub tls_cert: Option<PathBuf>,
    /// PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1). Default: none.
    pub tls_key: Option<PathBuf>,
    /// HS256 secret for client tokens; with it (or [`EngineConfig::auth_secret_file`])
    /// every WebSocket upgrade needs a valid token (`docs/security.md`). Default: none
    /// (the engine is open to anyone who can reach the port, and says so at start-up).
    pub auth_secret: Option<Secret>,
    /// A file holding the HS256 secret (trailing newlines dropped), so that the secret is
    /// in neither the command line nor the config file. Default: none.
    pub auth_secret_file: Option<PathBuf>,
    /// Test only: serve `GET /echo`, a WebSocket endpoint that sends every text and
    /// binary message back as it came, through the same frame reader, control-frame and
    /// close path as `/ws` (the Autobahn conformance run uses it; `/ws` forbids binary
    /// and takes only commands). Default false: the path does not exist.
    pub echo_endpoint: bool,
    /// First delay before a feed that panicked is restarted, ms; it doubles (with
    /// jitter) on each further panic. Default 500.
    pub feed_restart_initial_ms: u64,
    /// Longest delay between feed restarts, ms. Default 30,000.
    pub feed_restart_max_ms: u64,
}

/// A secret from the configuration: never printed (`Debug` and `Serialize` say
/// `<redacted>`).
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Secret {
        Secret(secret.into())
    }

    /// The secret's bytes.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        EngineConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            workers: cores,
            worker_cores: Vec::new(),
            feed_cores: Vec::new(),
            ring_capacity: 1 << 16,
            outbox_budget_bytes: 256 * 1024,
            send_buffer_bytes: None,
            max_message_bytes: 64 * 1024,
            commands_per_s: 20,
            snapshot_bytes_per_s: 8 * 1024 * 1024,
            max_subscriptions: 5000,
            max_errors_per_10s: 10,
            ping_interval_ms: 15_000,
            pong_timeout_ms: 45_000,
            idle_timeout_ms: 30_000,
            flush_budget_us: 16_000,
            busy_target_pct: 70,
            notsent_lowat_bytes: 32 * 1024,
            staleness_limit_ms: 500,
            trade_history: 10_000,
            header_timeout_ms: 10_000,
            http_write_timeout_ms: 10_000,
            allowed_origins: Vec::new(),
            server_names: Vec::new(),
            max_connections: 100_000,
            max_connections_per_ip: 1_000,
            upgrades_per_s_per_ip: 50,
            loopback_exempt: true,
            tls_cert: None,
            tls_key: None,
            auth_secret: None,
            auth_secret_file: None,
            echo_endpoint: false,
            feed_restart_initial_ms: 500,
            feed_restart_max_ms: 30_000,
        }
    }
}

/// Every problem found in a configuration.
#[derive(Debug, Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

impl EngineConfig {
    /// Checks every field, collecting all problems with the setting to change.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if self.workers == 0 || self.workers > 256 {
            problems.push(format!("workers = {}: use 1 to 256", self.workers));
        }
        if !self.ring_capacity.is_power_of_two() || self.ring_capacity < 1024 {
            problems.push(format!(
                "ring_capacity = {}: use a power of two of at least 1024",
                self.ring_capacity
            ));
        }
        // The outbox counts its budget in a u32 (the client's slot stays small); a GiB
        // per client is already far past any use.
        if !(16 * 1024..=MAX_OUTBOX_BUDGET_BYTES).contains(&self.outbox_budget_bytes) {
            problems.push(format!(
                "outbox_budget_bytes = {}: use 16384 to {MAX_OUTBOX_BUDGET_BYTES}",
                self.outbox_budget_bytes
            ));
        }
        if self.max_message_bytes < 1024 {
            problems.push(format!(
                "max_message_bytes = {}: use at least 1024",
                self.max_message_bytes
            ));
        }
        if self.commands_per_s == 0 {
            problems.push("commands_per_s = 0: use at least 1".into());
        }
        if self.snapshot_bytes_per_s < 1024 {
            problems.push(format!(
                "snapshot_bytes_per_s = {}: use at least 1024",
                self.snapshot_bytes_per_s
            ));
        }
        if self.ping_interval_ms == 0 || self.pong_timeout_ms <= self.ping_interval_ms {
            problems.push(format!(
                "ping_interval_ms = {}, pong_timeout_ms = {}: the timeout must exceed a non-zero interval",
                self.ping_interval_ms, self.pong_timeout_ms
            ));
        }
        if self.idle_timeout_ms == 0 {
            problems.push("idle_timeout_ms = 0: use at least 1".into());
        }
        if self.max_connections == 0
            || self.max_connections_per_ip == 0
            || self.upgrades_per_s_per_ip == 0
        {
            problems.push(format!(
                "max_connections = {}, max_connections_per_ip = {}, upgrades_per_s_per_ip = {}: use at least 1",
                self.max_connections, self.max_connections_per_ip, self.upgrades_per_s_per_ip
            ));
        }
        if self.feed_restart_initial_ms == 0
            || self.feed_restart_max_ms < self.feed_restart_initial_ms
        {
            problems.push(format!(
                "feed_restart_initial_ms = {}, feed_restart_max_ms = {}: use at least 1, and a max of at least the initial",
                self.feed_restart_initial_ms, self.feed_restart_max_ms
            ));
        }
        if self.header_timeout_ms == 0 {
            problems.push("header_timeout_ms = 0: use at least 1".into());
        }
        if self.http_write_timeout_ms == 0 {
            problems.push("http_write_timeout_ms = 0: use at least 1".into());
        }
        if self.trade_history > MAX_TRADE_HISTORY {
            problems.push(format!(
                "trade_history = {}: use 0 (no recovery) to {MAX_TRADE_HISTORY}",
                self.trade_history
            ));
        }
        if self.staleness_limit_ms == 0 {
            problems.push("staleness_limit_ms = 0: use at least 1".into());
        }
        if self.flush_budget_us > 1_000_000 {
            problems.push(format!(
                "flush_budget_us = {}: use 0 (no coalescing) to 1000000",
                self.flush_budget_us
            ));
        }
        if !(10..=100).contains(&self.busy_target_pct) {
            problems.push(format!(
                "busy_target_pct = {}: use 10 to 100 (100: coalesce only a saturated core)",
                self.busy_target_pct
            ));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            problems.push(
                "tls_cert and tls_key: give both (--tls-cert and --tls-key) or neither".into(),
            );
        }
        if self.auth_secret.is_some() && self.auth_secret_file.is_some() {
            problems.push("auth_secret and auth_secret_file: give one of them".into());
        }
        if self
            .auth_secret
            .as_ref()
            .is_some_and(|s| s.expose().is_empty())
        {
            problems.push("auth_secret is empty: use at least 32 random bytes".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(problems))
        }
    }

    /// [`EngineConfig::ping_interval_ms`] as a duration.
    pub fn ping_interval(&self) -> Duration {
        Duration::from_millis(self.ping_interval_ms)
    }

    /// [`EngineConfig::pong_timeout_ms`] as a duration.
    pub fn pong_timeout(&self) -> Duration {
        Duration::from_millis(self.pong_timeout_ms)
    }

    /// [`EngineConfig::idle_timeout_ms`] as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_all_problems_are_collected() {
        EngineConfig::default().validate().unwrap();
        let bad = EngineConfig {
            workers: 0,
            ring_capacity: 1000,
            commands_per_s: 0,
            ..EngineConfig::default()
        };
        let err = bad.validate().unwrap_err();
        assert_eq!(err.0.len(), 3, "{err}");
    }

    #[test]
    fn an_outbox_budget_past_a_gib_is_refused_not_cut() {
        let at_most = EngineConfig {
            outbox_budget_bytes: MAX_OUTBOX_BUDGET_BYTES,
            ..EngineConfig::default()
        };
        at_most.validate().unwrap();
        let past = EngineConfig {
            outbox_budget_bytes: MAX_OUTBOX_BUDGET_BYTES + 1,
            ..EngineConfig::default()
        };
        let err = past.validate().unwrap_err();
        assert!(err.to_string().contains("outbox_budget_bytes"), "{err}");
    }
}
