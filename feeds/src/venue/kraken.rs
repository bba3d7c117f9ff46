//! Kraken (not implemented yet).

use tickwire_engine::feed::{FeedError, Publisher};
use tickwire_engine::symbol::{SymbolId, SymbolRegistryBuilder};

use super::{DecodeError, Outbox, Protocol, Symbols, Venue, VenueConfig};

/// The Kraken protocol.
#[derive(Debug)]
pub struct Kraken {
    symbols: Symbols,
    price_scale: u8,
    size_scale: u8,
}

impl Kraken {
    /// The protocol for `cfg`'s symbols.
    pub fn new(cfg: &VenueConfig) -> Kraken {
        Kraken {
            symbols: Symbols::new(&cfg.symbols),
            price_scale: cfg.price_scale,
            size_scale: cfg.size_scale,
        }
    }
}

impl Protocol for Kraken {
    fn venue(&self) -> Venue {
        Venue::Kraken
    }
    fn register(
        &mut self,
        registry: &mut SymbolRegistryBuilder,
    ) -> Result<Vec<SymbolId>, FeedError> {
        self.symbols.register(
            Venue::Kraken.name(),
            registry,
            self.price_scale,
            self.size_scale,
        )
    }
    fn on_open(&mut self, _publisher: &mut Publisher, _out: &mut Outbox) {}
    fn on_close(&mut self, _publisher: &mut Publisher) {}
    fn on_text(
        &mut self,
        _text: &[u8],
        _publisher: &mut Publisher,
        _out: &mut Outbox,
    ) -> Result<(), DecodeError> {
        Ok(())
    }
    fn on_rest(
        &mut self,
        _symbol: &str,
        _body: &[u8],
        _publisher: &mut Publisher,
        _out: &mut Outbox,
    ) -> Result<(), DecodeError> {
        Ok(())
    }
    fn syncing(&self) -> bool {
        false
    }
}
