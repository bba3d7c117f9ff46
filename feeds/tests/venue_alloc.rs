//! The venue decoders allocate nothing per message once warmed up: trades, best bid/offer
//! and book updates of Binance, Coinbase and Kraken (checksums included) go from bytes to
//! published ticks without touching the allocator. One test in this binary, so no other
//! test allocates while the counter is read. Messages are built before measuring.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use tickwire_engine::feed::Publisher;
use tickwire_engine::ring;
use tickwire_engine::symbol::SymbolRegistryBuilder;
use tickwire_feeds::venue::{self, Outbox, Protocol};
use tickwire_feeds::{Venue, VenueConfig};

/// Counts allocations (and growths) of the whole process.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to `System` unchanged; it only counts on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // Relaxed: a statistic, read after the measured code on the same thread.
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract for `dealloc` is passed on as is.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract for `realloc` is passed on as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const ROUNDS: u64 = 5_000;

fn binance(n: u64) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..n {
        let u = 1_000 + i;
        let (p, q) = if i % 2 == 0 {
            ("100.10000000", "1.50000000")
        } else {
            ("100.10000000", "2.00000000")
        };
        out.push(format!(r#"{{"stream":"btcusdt@depth@100ms","data":{{"e":"depthUpdate","E":1700000000200,"s":"BTCUSDT","U":{u},"u":{u},"b":[["{p}","{q}"],["99.00000000","1.00000000"]],"a":[["101.00000000","{q}"]]}}}}"#));
        out.push(format!(r#"{{"stream":"btcusdt@trade","data":{{"e":"trade","E":1700000000100,"s":"BTCUSDT","t":{},"p":"100.50000000","q":"0.01000000","T":1700000000101,"m":{}}}}}"#, 1 + i, i % 2 == 0));
        out.push(format!(r#"{{"stream":"btcusdt@bookTicker","data":{{"u":{},"s":"BTCUSDT","b":"100.10000000","B":"{q}","a":"101.00000000","A":"1.00000000"}}}}"#, 10_000_000 + i));
    }
    out
}

fn coinbase(n: u64) -> Vec<String> {
    let mut out = vec![
        r#"{"type":"snapshot","product_id":"BTC-USD","bids":[["100.10","1.0"],["99.00","1.0"]],"asks":[["101.00","1.0"]]}"#.to_owned(),
    ];
    for i in 0..n {
        let q = if i % 2 == 0 { "1.5" } else { "2.0" };
        out.push(format!(r#"{{"type":"l2update","product_id":"BTC-USD","changes":[["buy","100.10","{q}"],["sell","101.00","{q}"]],"time":"2025-03-04T05:06:07.200000Z"}}"#));
        out.push(format!(r#"{{"type":"match","trade_id":{},"maker_order_id":"a","taker_order_id":"b","side":"sell","size":"0.01","price":"100.50","product_id":"BTC-USD","sequence":{},"time":"2025-03-04T05:06:07.123456Z"}}"#, 1 + i, 5 + i));
        out.push(format!(r#"{{"type":"ticker","sequence":{},"product_id":"BTC-USD","price":"100.50","best_bid":"100.10","best_bid_size":"{q}","best_ask":"101.00","best_ask_size":"{q}","side":"buy","time":"2025-03-04T05:06:07.300000Z","trade_id":{},"last_size":"0.01"}}"#, 5 + i, 1 + i));
        out.push(format!(r#"{{"type":"heartbeat","sequence":1,"last_trade_id":{},"product_id":"BTC-USD","time":"2025-03-04T05:06:08.000001Z"}}"#, 1 + i));
    }
    out
}

fn kraken_crc(asks: &[(&str, &str)], bids: &[(&str, &str)]) -> u32 {
    let mut s = String::new();
    for side in [asks, bids] {
        for (p, q) in side {
            for t in [p, q] {
                s.push_str(t.replace('.', "").trim_start_matches('0'));
            }
        }
    }
    crc32fast::hash(s.as_bytes())
}

fn kraken(n: u64) -> Vec<String> {
    let asks = [("101.0", "1.00000000")];
    let bids_a = [("100.1", "1.50000000"), ("99.0", "1.00000000")];
    let bids_b = [("100.1", "2.00000000"), ("99.0", "1.00000000")];
    let mut out = vec![format!(
        r#"{{"channel":"book","type":"snapshot","data":[{{"symbol":"BTC/USD","bids":[{{"price":100.1,"qty":1.50000000}},{{"price":99.0,"qty":1.00000000}}],"asks":[{{"price":101.0,"qty":1.00000000}}],"checksum":{}}}]}}"#,
        kraken_crc(&asks, &bids_a)
    )];
    let (crc_a, crc_b) = (kraken_crc(&asks, &bids_a), kraken_crc(&asks, &bids_b));
    for i in 0..n {
        let (q, crc) = if i % 2 == 0 {
            ("2.00000000", crc_b)
        } else {
            ("1.50000000", crc_a)
        };
        out.push(format!(r#"{{"channel":"book","type":"update","data":[{{"symbol":"BTC/USD","bids":[{{"price":100.1,"qty":{q}}}],"asks":[],"checksum":{crc},"timestamp":"2026-01-02T03:04:05.123456Z"}}]}}"#));
        out.push(format!(r#"{{"channel":"trade","type":"update","data":[{{"symbol":"BTC/USD","side":"buy","price":100.5,"qty":0.01000000,"ord_type":"limit","trade_id":{},"timestamp":"2026-01-02T03:04:05.000001Z"}}]}}"#, 1 + i));
        out.push(format!(r#"{{"channel":"ticker","type":"update","data":[{{"symbol":"BTC/USD","bid":100.1,"bid_qty":{q},"ask":101.0,"ask_qty":1.00000000,"last":100.5,"volume":10.0}}]}}"#));
    }
    out
}

fn harness(venue: Venue, symbol: &str) -> (Box<dyn Protocol>, Publisher) {
    let cfg = VenueConfig::new(venue, vec![symbol.to_owned()]);
    let mut protocol = venue::protocol(&cfg);
    let mut registry = SymbolRegistryBuilder::new();
    let ids = protocol.register(&mut registry).unwrap();
    // A small ring, so that it is at its capacity after warm-up.
    let publisher = Publisher::new(
        venue.name(),
        ids,
        registry.build().len(),
        ring::ring(1 << 12).0,
    );
    (protocol, publisher)
}

#[test]
fn steady_state_decoding_allocates_nothing() {
    let cases: [(Venue, &str, Vec<String>); 3] = [
        (Venue::Binance, "BTCUSDT", binance(2 * ROUNDS)),
        (Venue::Coinbase, "BTC-USD", coinbase(2 * ROUNDS)),
        (Venue::Kraken, "BTC/USD", kraken(2 * ROUNDS)),
    ];
    for (venue, symbol, messages) in cases {
        let (mut protocol, mut publisher) = harness(venue, symbol);
        let mut out = Outbox::default();
        protocol.on_open(&mut publisher, &mut out);
        if venue == Venue::Binance {
            protocol
                .on_rest(symbol, br#"{"lastUpdateId":999,"bids":[["100.10000000","1.00000000"]],"asks":[["101.00000000","1.00000000"]]}"#, &mut publisher, &mut out)
                .unwrap();
        }
        out.texts.clear();
        out.fetches.clear();
        let half = messages.len() / 2;
        let mut run = |batch: &[String]| {
            for m in batch {
                publisher.begin_message();
                protocol
                    .on_text(m.as_bytes(), &mut publisher, &mut out)
                    .unwrap();
                publisher.flush();
            }
        };
        run(&messages[..half]);
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        run(&messages[half..]);
        let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
        assert!(
            out.texts.is_empty() && out.fetches.is_empty(),
            "{venue:?}: no resync asked for"
        );
        assert!(!protocol.syncing(), "{venue:?}: in sync");
        let stats = &publisher.shared().stats;
        assert_eq!(stats.decode_errors.load(Ordering::Relaxed), 0, "{venue:?}");
        assert_eq!(
            stats.checksum_failures.load(Ordering::Relaxed),
            0,
            "{venue:?}"
        );
        assert_eq!(
            allocations,
            0,
            "{venue:?}: allocations in {} steady-state messages",
            messages.len() - half
        );
    }
}
