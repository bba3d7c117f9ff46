//! Feed handlers: each turns a source of market data into ticks published on its ring.

#![forbid(unsafe_code)]

pub mod sim;

pub use sim::{SimConfig, SimFeed};
