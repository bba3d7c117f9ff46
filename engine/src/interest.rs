//! Which symbols the engine's clients want: one counter per symbol, raised by a worker
//! when the symbol gets its first subscriber (any channel) in that worker and lowered
//! after its last. A feed that can choose what it receives (a cluster edge's NATS feed)
//! polls it; nothing on the data path reads it.
//!
//! Written on the command path (subscribe, unsubscribe, a client leaving), never per
//! tick; Relaxed atomics: a hint that is polled, it orders nothing.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::symbol::SymbolId;

/// Per-symbol count of workers with a subscriber.
#[derive(Debug)]
pub struct Interest {
    counts: Vec<AtomicU32>,
}

impl Interest {
    /// Counters for `symbols` symbols, all zero.
    pub fn new(symbols: usize) -> Interest {
        Interest {
            counts: (0..symbols).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    /// Whether any worker has a subscriber of `symbol`.
    pub fn wanted(&self, symbol: SymbolId) -> bool {
        self.counts
            .get(symbol.index())
            .is_some_and(|c| c.load(Ordering::Relaxed) > 0)
    }

    /// A worker's first subscriber of `symbol` (`true`) or its last one gone (`false`).
    pub fn set(&self, symbol: SymbolId, wanted: bool) {
        if let Some(c) = self.counts.get(symbol.index()) {
            if wanted {
                c.fetch_add(1, Ordering::Relaxed);
            } else {
                c.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}
