//! tickwire engine: tick model, symbol registry, broadcast ring, per-symbol state,
//! client protocol, fan-out workers and the WebSocket/HTTP gateway.
//!
//! The data path: a feed thread normalizes venue messages into [`tick::Tick`]s and
//! publishes them into its [`ring`]; each fan-out worker reads every ring once, keeps
//! per-symbol state, encodes each event once into a shared WebSocket frame, and writes
//! each client's pending frames with one vectored write. See `docs/architecture.md`.

#![forbid(unsafe_code)]

pub mod admission;
pub mod auth;
pub mod backoff;
pub mod config;
pub mod fd_table;
pub mod feed;
pub mod fixed;
pub mod frames;
pub mod fuzz;
pub mod hgrm;
pub mod http;
pub mod interest;
pub mod latency;
pub mod outbox;
pub mod protocol;
pub mod ring;
pub mod server;
pub mod state;
pub mod stats;
pub mod supervise;
pub mod symbol;
pub(crate) mod sync;
pub mod tick;
pub mod tls;
pub mod wake;
pub mod worker;
