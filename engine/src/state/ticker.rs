//! The ticker: latest best bid/ask, last trade and traded volume of one symbol.

use super::book::Level;

/// Latest state of a symbol, as the `ticker` message carries it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ticker {
    /// Ticker-channel seq: raised by one on every change; 0 before the first.
    pub seq: u64,
    /// Best bid and its size, when known.
    pub bid: Option<Level>,
    /// Best ask and its size, when known.
    pub ask: Option<Level>,
    /// Last trade's price and size, when known.
    pub last: Option<Level>,
    /// Traded size since the engine started (mantissa at the size scale).
    pub volume: i64,
    /// Venue time of the last change, ns.
    pub ts: u64,
    /// Ingest time of the last change, ns.
    pub ingest_ts: u64,
}
