//! An L2 order book of one symbol.

/// One price level: price and size mantissas.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Level {
    /// Price mantissa.
    pub price: i64,
    /// Size mantissa.
    pub size: i64,
}

/// L2 book (placeholder; filled in next).
#[derive(Clone, Debug, Default)]
pub struct Book {
    /// Bids, highest first.
    pub bids: Vec<Level>,
    /// Asks, lowest first.
    pub asks: Vec<Level>,
}
