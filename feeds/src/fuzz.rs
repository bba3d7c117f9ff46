//! Fuzz targets: each venue's message decoding, as plain functions that must never panic
//! whatever the bytes. `fuzz/` runs them under cargo-fuzz (nightly);
//! `feeds/tests/fuzz_decoders.rs` runs the same functions on stable in CI, over seeds
//! (the project's own messages, and the shared exchange captures when present) and
//! bounded deterministic mutations of them. A crash found either way becomes a test.
//!
//! An input is a session, one venue message per line, fed in order to a fresh protocol
//! with a handful of symbols registered, so that state builds up between messages (books
//! synced, trade ids tracked) and later messages meet it. Two line forms are not
//! messages: `REST SYMBOL BODY` hands `BODY` to the protocol as the REST answer for
//! `SYMBOL` (Binance depth snapshots), and `RECONNECT` drops and reopens the connection.
//! Decode errors are expected and ignored; only a panic is a finding.
//!
//! Each call allocates its protocol and registry (the publisher is kept per thread, see
//! `PUBLISHERS`): targets are for tests, never for the data path.

use std::cell::RefCell;

use tickwire_engine::feed::Publisher;
use tickwire_engine::ring;
use tickwire_engine::symbol::SymbolRegistryBuilder;

use crate::venue::{self, Outbox, Protocol, Venue, VenueConfig};

/// Ticks in a target's ring: the producer never waits, so any size works; small is fast.
const RING_TICKS: usize = 1024;

/// Symbols registered for each venue: the ones the project's seeds and the shared
/// captures name, so that their messages reach the book and trade paths.
pub fn symbols(venue: Venue) -> &'static [&'static str] {
    match venue {
        Venue::Binance => &[
            "BTCUSDT", "BNBBTC", "NKNUSDT", "LRCBTC", "BLZETH", "RUNEEUR",
        ],
        Venue::Coinbase => &[
            "BTC-USD", "ETH-USD", "LTC-USD", "CRV-EUR", "YFI-BTC", "BAND-GBP", "SKL-GBP", "NU-GBP",
        ],
        Venue::Kraken => &["BTC/USD", "MATIC/USD", "ALGO/USD", "XBT/USD", "MATIC/GBP"],
    }
}

/// Binance: combined-stream frames (trades, depth diffs) and REST depth snapshots.
pub fn binance(data: &[u8]) {
    session(Venue::Binance, data);
}

/// Coinbase: `level2`/`l2update`, `ticker`, `match` messages and their sequence checks.
pub fn coinbase(data: &[u8]) {
    session(Venue::Coinbase, data);
}

/// Kraken v2: `book` snapshots and updates with their CRC32 checksum, `trade` messages.
pub fn kraken(data: &[u8]) {
    session(Venue::Kraken, data);
}

thread_local! {
    /// One publisher per venue and thread, reused by every session: building one costs
    /// milliseconds (its latency histograms), a session microseconds. Reuse is what a
    /// feed does across reconnections: each session is a fresh protocol on the feed's
    /// publisher, opened with `on_open` as after a reconnect.
    static PUBLISHERS: RefCell<Vec<(Venue, Publisher)>> = const { RefCell::new(Vec::new()) };
}

/// Feeds `data`, a session (see the module doc), to a fresh protocol of `venue`.
pub fn session(venue: Venue, data: &[u8]) {
    let cfg = VenueConfig::new(
        venue,
        symbols(venue).iter().map(|s| (*s).to_owned()).collect(),
    );
    let mut protocol = venue::protocol(&cfg);
    let mut registry = SymbolRegistryBuilder::new();
    let Ok(ids) = protocol.register(&mut registry) else {
        return;
    };
    let symbol_count = registry.build().len();
    PUBLISHERS.with(|cell| {
        let mut publishers = cell.borrow_mut();
        let at = match publishers.iter().position(|(v, _)| *v == venue) {
            Some(at) => at,
            None => {
                let producer = ring::ring(RING_TICKS).0;
                let publisher = Publisher::new(venue.name(), ids, symbol_count, producer);
                publishers.push((venue, publisher));
                publishers.len() - 1
            }
        };
        feed_lines(protocol.as_mut(), &mut publishers[at].1, data);
    });
}

fn feed_lines(protocol: &mut dyn Protocol, publisher: &mut Publisher, data: &[u8]) {
    let mut out = Outbox::default();
    protocol.on_open(publisher, &mut out);
    for line in data.split(|&b| b == b'\n') {
        publisher.begin_message();
        if line == b"RECONNECT" {
            protocol.on_close(publisher);
            protocol.on_open(publisher, &mut out);
        } else if let Some(rest) = line.strip_prefix(b"REST ") {
            let mut parts = rest.splitn(2, |&b| b == b' ');
            let symbol = parts.next().unwrap_or_default();
            let body = parts.next().unwrap_or_default();
            let symbol = String::from_utf8_lossy(symbol);
            let _ = protocol.on_rest(&symbol, body, publisher, &mut out);
        } else {
            let _ = protocol.on_text(line, publisher, &mut out);
        }
        publisher.flush();
        // What the protocol asked to send is the driver's; a long session must not
        // accumulate it.
        out.texts.clear();
        out.fetches.clear();
    }
    let _ = protocol.syncing();
    protocol.on_close(publisher);
}
