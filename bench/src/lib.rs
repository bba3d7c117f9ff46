//! Benchmarks and load tools for tickwire.
//!
//! - [`load`]: the WebSocket load generator behind `tickwire bench`: many connections
//!   from one process, end-to-end latency histograms per client class (fast, slow), and
//!   the protocol's delivery guarantees checked while it measures.
//! - [`compare`]: `tickwire bench compare`, tickwire against its peers (`bench/peers/`)
//!   per server CPU-second, and the tables of `docs/benchmarks.md`.
//! - `benches/ring.rs`: criterion micro-benchmarks of the ring hand-off (see
//!   `docs/benchmarks.md`).

pub mod compare;
pub mod load;
