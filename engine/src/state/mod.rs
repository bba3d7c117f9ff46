//! Per-symbol market state (ticker and order book), built by applying ticks.
//!
//! The same code runs in two places: in the feed's publisher, which holds the
//! authoritative copy and assigns seqs, and in every fan-out worker, which keeps its own
//! copy to answer subscriptions with snapshots and to compute each depth window's
//! changes. Applying a tick allocates nothing once the book has grown to its working size.

pub mod book;
pub mod ticker;

pub use book::{Book, Level};
pub use ticker::Ticker;
