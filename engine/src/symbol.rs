//! Symbols: `venue:NATIVE` names interned to dense [`SymbolId`]s.
//!
//! The registry is built once, before feeds and workers start, and is immutable after:
//! every thread holds it by `Arc` and looks symbols up without a lock. Each entry keeps its
//! fixed-point scales and its name pre-quoted for JSON, so encoders never escape on the hot
//! path.

use std::collections::HashMap;

use thiserror::Error;

use crate::fixed::MAX_SCALE;

/// Dense index of a symbol in the [`SymbolRegistry`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SymbolId(pub u32);

impl SymbolId {
    /// The id as an index into per-symbol tables.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// What the engine knows about one symbol.
#[derive(Clone, Debug)]
pub struct SymbolInfo {
    /// Dense id.
    pub id: SymbolId,
    /// Full name, `venue:NATIVE`.
    pub name: String,
    /// Decimal digits of prices (mantissa scale).
    pub price_scale: u8,
    /// Decimal digits of sizes (mantissa scale).
    pub size_scale: u8,
    /// The name as a JSON string literal, quotes included.
    pub json_name: Box<[u8]>,
}

impl SymbolInfo {
    /// The venue part of the name (before the first `:`).
    pub fn venue(&self) -> &str {
        self.name.split_once(':').map_or("", |(v, _)| v)
    }

    /// The venue's own spelling (after the first `:`).
    pub fn native(&self) -> &str {
        self.name.split_once(':').map_or(&self.name, |(_, n)| n)
    }
}

/// A symbol that could not be registered.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SymbolError {
    /// Not `venue:NATIVE` with a lower-case venue and a non-empty native part.
    #[error("symbol {0:?} is not venue:NATIVE with a lower-case venue")]
    BadName(String),
    /// Registered twice.
    #[error("symbol {0} is registered twice")]
    Duplicate(String),
    /// A scale above [`MAX_SCALE`].
    #[error("symbol {name}: scale {scale} is above the maximum of {MAX_SCALE}")]
    BadScale {
        /// The symbol.
        name: String,
        /// The offending scale.
        scale: u8,
    },
}

/// Builds a [`SymbolRegistry`]; feeds declare their instruments here before start.
#[derive(Default, Debug)]
pub struct SymbolRegistryBuilder {
    infos: Vec<SymbolInfo>,
    by_name: HashMap<String, SymbolId>,
}

impl SymbolRegistryBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// What is registered under `id` so far.
    pub fn info(&self, id: SymbolId) -> Option<&SymbolInfo> {
        self.infos.get(id.index())
    }

    /// Registers `name` with its price and size scales and returns its id.
    pub fn add(
        &mut self,
        name: &str,
        price_scale: u8,
        size_scale: u8,
    ) -> Result<SymbolId, SymbolError> {
        let valid = match name.split_once(':') {
            Some((venue, native)) => {
                !venue.is_empty()
                    && !native.is_empty()
                    && venue
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            }
            None => false,
        };
        if !valid || name.chars().any(char::is_control) {
            return Err(SymbolError::BadName(name.to_owned()));
        }
        for scale in [price_scale, size_scale] {
            if scale > MAX_SCALE {
                return Err(SymbolError::BadScale {
                    name: name.to_owned(),
                    scale,
                });
            }
        }
        if self.by_name.contains_key(name) {
            return Err(SymbolError::Duplicate(name.to_owned()));
        }
        let id = SymbolId(self.infos.len() as u32);
        let json_name = serde_json::to_vec(name)
            .unwrap_or_else(|_| format!("\"{name}\"").into_bytes())
            .into_boxed_slice();
        self.infos.push(SymbolInfo {
            id,
            name: name.to_owned(),
            price_scale,
            size_scale,
            json_name,
        });
        self.by_name.insert(name.to_owned(), id);
        Ok(id)
    }

    /// Freezes the registry.
    pub fn build(self) -> SymbolRegistry {
        SymbolRegistry {
            infos: self.infos,
            by_name: self.by_name,
        }
    }
}

/// Every symbol the engine carries; immutable once built.
#[derive(Debug, Default)]
pub struct SymbolRegistry {
    infos: Vec<SymbolInfo>,
    by_name: HashMap<String, SymbolId>,
}

impl SymbolRegistry {
    /// Looks a symbol up by its full name.
    pub fn lookup(&self, name: &str) -> Option<SymbolId> {
        self.by_name.get(name).copied()
    }

    /// The entry of `id`. Panics on an id this registry did not hand out (a bug, not input).
    pub fn info(&self, id: SymbolId) -> &SymbolInfo {
        &self.infos[id.index()]
    }

    /// All symbols in id order.
    pub fn iter(&self) -> impl Iterator<Item = &SymbolInfo> {
        self.infos.iter()
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.infos.len()
    }

    /// Whether no symbol is registered.
    pub fn is_empty(&self) -> bool {
        self.infos.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interns_and_validates() {
        let mut b = SymbolRegistryBuilder::new();
        let btc = b.add("sim:BTC-USD", 2, 4).unwrap();
        let kr = b.add("kraken:BTC/USD", 1, 8).unwrap();
        assert_eq!(
            b.add("sim:BTC-USD", 2, 4),
            Err(SymbolError::Duplicate("sim:BTC-USD".into()))
        );
        assert!(matches!(b.add("SIM:X", 2, 4), Err(SymbolError::BadName(_))));
        assert!(matches!(
            b.add("nocolon", 2, 4),
            Err(SymbolError::BadName(_))
        ));
        assert!(matches!(b.add("sim:", 2, 4), Err(SymbolError::BadName(_))));
        assert!(matches!(
            b.add("sim:Y", 19, 4),
            Err(SymbolError::BadScale { .. })
        ));
        let r = b.build();
        assert_eq!(r.lookup("sim:BTC-USD"), Some(btc));
        assert_eq!(r.info(kr).native(), "BTC/USD");
        assert_eq!(r.info(kr).venue(), "kraken");
        assert_eq!(&*r.info(btc).json_name, b"\"sim:BTC-USD\"");
        assert_eq!(r.len(), 2);
    }
}
