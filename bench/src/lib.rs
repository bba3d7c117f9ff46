//! Benchmarks and load tools for tickwire.
//!
//! - [`load`]: the WebSocket load generator behind `tickwire bench`: many connections
//!   from one process, end-to-end latency histograms per client class (fast, slow), and
//!   the protocol's delivery guarantees checked while it measures.
//! - `benches/ring.rs`: criterion micro-benchmarks of the ring hand-off (see
//!   `docs/benchmarks.md`).

pub mod load;
