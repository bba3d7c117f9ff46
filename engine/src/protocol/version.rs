//! Protocol versions and their negotiation in the WebSocket upgrade
//! (`Sec-WebSocket-Protocol`, RFC 6455 §4.2.2 and §11.3.4).
//!
//! A client that offers no subprotocol speaks version 1, unchanged. A client offering
//! `tickwire.v2` speaks version 2 (JSON): the server answers with the one subprotocol it
//! chose, and never with one the client did not offer.
//! `tickwire.v2.bin` (the binary encoding) is not supported yet and never chosen.
//! Nothing here allocates.

/// The protocol version a connection speaks, chosen in its upgrade.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Version {
    /// Version 1: no subprotocol.
    #[default]
    V1 = 1,
    /// Version 2 in JSON: subprotocol `tickwire.v2`.
    V2 = 2,
}

impl Version {
    /// Whether the connection speaks version 2 (or later).
    pub fn is_v2(self) -> bool {
        self >= Version::V2
    }
}

/// The subprotocol of version 2 in JSON.
pub const SUBPROTOCOL_V2: &str = "tickwire.v2";
/// The subprotocol of version 2's binary encoding (not supported: never chosen).
pub const SUBPROTOCOL_V2_BIN: &str = "tickwire.v2.bin";

/// The subprotocols this engine accepts, best first, with the version each means.
pub const ACCEPTED: &[(&str, Version)] = &[(SUBPROTOCOL_V2, Version::V2)];

/// The subprotocol to answer, and the version it means, for the comma-separated lists a
/// client `offered` (one per `Sec-WebSocket-Protocol` header): the first of `accepted`
/// that the client offered (tokens trimmed, compared exactly), else `None`, version 1.
///
/// ```
/// use tickwire_engine::protocol::version::{choose, Version};
/// let accepted = [("tickwire.v2", Version::V2)];
/// assert_eq!(choose([" chat , tickwire.v2"], &accepted), Some(("tickwire.v2", Version::V2)));
/// assert_eq!(choose(["tickwire.v2.bin"], &accepted), None);
/// assert_eq!(choose(["tickwire.V2"], &accepted), None);
/// ```
pub fn choose<'a>(
    offered: impl IntoIterator<Item = &'a str> + Clone,
    accepted: &[(&'static str, Version)],
) -> Option<(&'static str, Version)> {
    accepted.iter().copied().find(|(name, _)| {
        offered
            .clone()
            .into_iter()
            .flat_map(|list| list.split(','))
            .any(|token| token.trim() == *name)
    })
}

/// A fresh epoch (version 2's name for the numbering of seqs): new for each engine
/// start, from the start time and 64 random bits (the standard library's hasher keys,
/// which the OS seeds), so that two starts never share one. Allocates its string.
pub fn fresh_epoch() -> String {
    use std::hash::{BuildHasher, Hasher};
    let started_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(started_ns);
    format!("{:x}-{:016x}", started_ns / 1_000_000, hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: [(&str, Version); 1] = [(SUBPROTOCOL_V2, Version::V2)];

    #[test]
    fn only_an_offered_and_accepted_subprotocol_is_chosen() {
        assert_eq!(choose([], &BOTH), None);
        assert_eq!(choose([""], &BOTH), None);
        assert_eq!(choose(["tickwire.v2"], &[]), None, "not accepted yet");
        assert_eq!(
            choose(["tickwire.v2.bin, tickwire.v2"], &BOTH),
            Some((SUBPROTOCOL_V2, Version::V2))
        );
        assert_eq!(
            choose(["x", "\ttickwire.v2 "], &BOTH),
            Some((SUBPROTOCOL_V2, Version::V2)),
            "a second header, tokens trimmed"
        );
        assert_eq!(
            choose(["tickwire.v2.bin"], &BOTH),
            None,
            "binary never chosen"
        );
        assert_eq!(choose(["tickwire.v22,tickwire"], &BOTH), None);
    }

    #[test]
    fn epochs_differ_between_starts() {
        let (a, b) = (fresh_epoch(), fresh_epoch());
        assert_ne!(a, b);
        assert!(a.len() > 16 && a.is_ascii());
    }

    #[test]
    fn version_1_is_the_default() {
        assert_eq!(Version::default(), Version::V1);
        assert!(!Version::V1.is_v2() && Version::V2.is_v2());
    }
}
