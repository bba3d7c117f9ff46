//! Feed handlers: each turns a source of market data into ticks published on its ring.
//!
//! - [`sim`]: the synthetic venue.
//! - [`cluster`]: tickwire on NATS (a feed node's publisher, an edge's feed).
//! - [`venue`]: Binance, Coinbase and Kraken over WebSocket (and REST snapshots), with
//!   one shared connection layer ([`venue::conn`]).
//! - [`record`] and [`replay`]: capture a venue session to a file and play it back
//!   through the same decoders.
//! - [`mock`]: a mock exchange on 127.0.0.1 speaking a venue's protocol, for tests and
//!   demos without a network.

#![forbid(unsafe_code)]

pub mod cluster;
pub mod decimal;
pub mod fuzz;
pub mod json;
pub mod mock;
pub mod record;
pub mod replay;
pub mod sim;
pub mod venue;

pub use replay::ReplayFeed;
pub use sim::{SimConfig, SimFeed};
pub use venue::{Venue, VenueConfig, VenueFeed};
