//! What every protocol keeps per symbol: the native name ↔ engine id table, and the
//! trade-id continuity check that turns missed venue trades into skipped seqs.

use std::collections::HashMap;

use tickwire_engine::feed::FeedError;
use tickwire_engine::symbol::{SymbolId, SymbolRegistryBuilder};

/// A venue's symbols: native names, their engine ids and a lookup by the bytes a message
/// carries (no allocation per lookup).
#[derive(Debug, Default)]
pub struct Symbols {
    natives: Vec<String>,
    ids: Vec<SymbolId>,
    by_name: HashMap<Vec<u8>, usize>,
}

impl Symbols {
    /// The table for `natives` (registered later by [`Symbols::register`]).
    pub fn new(natives: &[String]) -> Symbols {
        Symbols {
            natives: natives.to_vec(),
            ids: Vec::new(),
            by_name: natives
                .iter()
                .enumerate()
                .map(|(i, n)| (n.as_bytes().to_vec(), i))
                .collect(),
        }
    }

    /// Registers `venue:NATIVE` for each symbol.
    pub fn register(
        &mut self,
        venue: &str,
        registry: &mut SymbolRegistryBuilder,
        price_scale: u8,
        size_scale: u8,
    ) -> Result<Vec<SymbolId>, FeedError> {
        self.ids = self
            .natives
            .iter()
            .map(|n| registry.add(&format!("{venue}:{n}"), price_scale, size_scale))
            .collect::<Result<_, _>>()?;
        Ok(self.ids.clone())
    }

    /// The index of a native name as the venue spells it in messages.
    pub fn index(&self, native: &[u8]) -> Option<usize> {
        self.by_name.get(native).copied()
    }

    /// The engine id of symbol `i`.
    pub fn id(&self, i: usize) -> SymbolId {
        self.ids[i]
    }

    /// The native name of symbol `i`.
    pub fn native(&self, i: usize) -> &str {
        &self.natives[i]
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.natives.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.natives.is_empty()
    }

    /// Every native name.
    pub fn natives(&self) -> &[String] {
        &self.natives
    }
}

/// What [`TradeIds::check`] says of a trade id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TradeCheck {
    /// A new trade; `missed` trades between the last one and it never arrived.
    New {
        /// Trade ids skipped.
        missed: u64,
    },
    /// Already published (a replayed or repeated trade): drop it.
    Seen,
}

/// Trade-id continuity of one symbol, for venues whose trade ids count up by one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TradeIds {
    last: Option<u64>,
}

impl TradeIds {
    /// Checks `id` and, when new, makes it the last one.
    pub fn check(&mut self, id: u64) -> TradeCheck {
        match self.last {
            Some(last) if id <= last => TradeCheck::Seen,
            Some(last) => {
                self.last = Some(id);
                TradeCheck::New {
                    missed: id - last - 1,
                }
            }
            None => {
                self.last = Some(id);
                TradeCheck::New { missed: 0 }
            }
        }
    }

    /// The venue says its last trade is `id` (a heartbeat): trades after the last one seen
    /// up to `id` are missed. Returns how many.
    pub fn seen_up_to(&mut self, id: u64) -> u64 {
        match self.last {
            Some(last) if id > last => {
                self.last = Some(id);
                id - last
            }
            Some(_) => 0,
            None => {
                self.last = Some(id);
                0
            }
        }
    }

    /// The last trade id seen.
    pub fn last(&self) -> Option<u64> {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trade_ids_find_gaps_and_repeats() {
        let mut t = TradeIds::default();
        assert_eq!(t.check(10), TradeCheck::New { missed: 0 });
        assert_eq!(t.check(11), TradeCheck::New { missed: 0 });
        assert_eq!(t.check(11), TradeCheck::Seen);
        assert_eq!(t.check(15), TradeCheck::New { missed: 3 });
        assert_eq!(t.seen_up_to(15), 0);
        assert_eq!(t.seen_up_to(17), 2);
        assert_eq!(t.check(17), TradeCheck::Seen);
        assert_eq!(t.check(18), TradeCheck::New { missed: 0 });
    }
}
