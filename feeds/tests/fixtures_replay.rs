//! Real exchange captures through the decoders, when `../shared/fixtures/` is present
//! (those bytes are not ours to ship; each test says so and skips when the folder is
//! missing): Binance books sync with no gap, every Kraken checksum matches (the v2
//! examples, and a v1 book-1000 session converted to v2 frames), Coinbase trade ids are
//! contiguous.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test

mod common;

use std::path::Path;
use std::sync::atomic::Ordering;

use serde_json::Value as Json;
use tickwire_engine::feed::Publisher;
use tickwire_engine::ring;
use tickwire_engine::symbol::SymbolRegistryBuilder;
use tickwire_feeds::venue::{self, Outbox, Protocol};
use tickwire_feeds::{Venue, VenueConfig};

fn fixtures(test: &str) -> Option<std::path::PathBuf> {
    let dir = common::shared_fixtures();
    if dir.is_none() {
        println!("{test}: SKIPPED: ../shared/fixtures is not present");
    }
    dir
}

fn harness(venue: Venue, symbols: &[&str], depth: Option<u32>) -> (Box<dyn Protocol>, Publisher) {
    let mut cfg = VenueConfig::new(venue, symbols.iter().map(|s| s.to_string()).collect());
    if let Some(d) = depth {
        cfg.book_depth = d;
    }
    let mut protocol = venue::protocol(&cfg);
    let mut registry = SymbolRegistryBuilder::new();
    let ids = protocol.register(&mut registry).unwrap();
    let publisher = Publisher::new(
        venue.name(),
        ids,
        registry.build().len(),
        ring::ring(1 << 16).0,
    );
    (protocol, publisher)
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn meta(path: &Path) -> Vec<Json> {
    lines(path)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn recv_ns(m: &Json) -> u64 {
    let ts: f64 = m["recv_ts"].as_str().unwrap().parse().unwrap();
    (ts * 1e9) as u64
}

fn counter(
    p: &Publisher,
    f: impl Fn(&tickwire_engine::feed::FeedStats) -> &std::sync::atomic::AtomicU64,
) -> u64 {
    f(&p.shared().stats).load(Ordering::Relaxed)
}

#[test]
fn binance_capture_books_sync_without_gaps() {
    let Some(dir) = fixtures("binance_capture_books_sync_without_gaps") else {
        return;
    };
    let cap = dir.join("captures");
    let frames = lines(&cap.join("binance_combined_2021-10-11.jsonl"));
    let frame_meta = meta(&cap.join("binance_combined_2021-10-11.meta.jsonl"));
    let rest = lines(&cap.join("binance_rest_depth_snapshots_2021-10-11.jsonl"));
    let rest_meta = meta(&cap.join("binance_rest_depth_snapshots_2021-10-11.meta.jsonl"));
    // (time, order, is_rest, symbol, text)
    let mut events: Vec<(u64, usize, Option<String>, &str)> = Vec::new();
    for (i, (f, m)) in frames.iter().zip(&frame_meta).enumerate() {
        events.push((recv_ns(m), i, None, f));
    }
    let mut symbols = Vec::new();
    for (i, (r, m)) in rest.iter().zip(&rest_meta).enumerate() {
        let url = m["url"].as_str().unwrap();
        let symbol = url
            .split("symbol=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap()
            .to_owned();
        symbols.push(symbol.clone());
        events.push((recv_ns(m), frames.len() + i, Some(symbol), r));
    }
    events.sort_by_key(|e| (e.0, e.1));
    let names: Vec<&str> = symbols.iter().map(String::as_str).collect();
    let (mut protocol, mut publisher) = harness(Venue::Binance, &names, None);
    let mut out = Outbox::default();
    protocol.on_open(&mut publisher, &mut out);
    for (_, _, symbol, text) in &events {
        publisher.begin_message();
        match symbol {
            Some(s) => protocol
                .on_rest(s, text.as_bytes(), &mut publisher, &mut out)
                .unwrap(),
            None => protocol
                .on_text(text.as_bytes(), &mut publisher, &mut out)
                .unwrap(),
        }
        publisher.flush();
    }
    assert!(!protocol.syncing(), "all {} books in sync", names.len());
    assert_eq!(counter(&publisher, |s| &s.gaps), 0);
    assert_eq!(counter(&publisher, |s| &s.resyncs), 0);
    assert_eq!(counter(&publisher, |s| &s.decode_errors), 0);
    println!(
        "binance capture: {} frames, {} snapshots, books of {names:?} in sync",
        frames.len(),
        rest.len()
    );
}

/// The documented checksum of a v1 book side list (texts, best first).
fn text_crc(asks: &[(String, String)], bids: &[(String, String)]) -> u32 {
    let mut s = String::new();
    for side in [asks, bids] {
        for (p, q) in side.iter().take(10) {
            for t in [p, q] {
                s.push_str(t.replace('.', "").trim_start_matches('0'));
            }
        }
    }
    crc32fast::hash(s.as_bytes())
}

fn v2_levels(list: &[(String, String)]) -> String {
    let v: Vec<String> = list
        .iter()
        .map(|(p, q)| format!(r#"{{"price":{p},"qty":{q}}}"#))
        .collect();
    format!("[{}]", v.join(","))
}

fn pairs(v: &Json) -> Vec<(String, String)> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|l| {
                    (
                        l[0].as_str().unwrap().to_owned(),
                        l[1].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn kraken_checksums_all_match() {
    let Some(dir) = fixtures("kraken_checksums_all_match") else {
        return;
    };
    // The v2 examples: MATIC/USD snapshot + update, BTC/USD guide book, trades, tickers.
    let (mut protocol, mut publisher) = harness(Venue::Kraken, &["MATIC/USD", "BTC/USD"], Some(10));
    let mut out = Outbox::default();
    protocol.on_open(&mut publisher, &mut out);
    let docs = lines(&dir.join("kraken.jsonl"));
    for (line, m) in docs.iter().zip(meta(&dir.join("kraken.meta.jsonl"))) {
        if m["dir"] == "in" {
            publisher.begin_message();
            protocol
                .on_text(line.as_bytes(), &mut publisher, &mut out)
                .unwrap();
            publisher.flush();
        }
    }
    assert_eq!(counter(&publisher, |s| &s.checksum_failures), 0);
    assert_eq!(counter(&publisher, |s| &s.decode_errors), 0);
    assert!(!protocol.syncing(), "MATIC/USD and BTC/USD books checked");

    // The v1 book-1000 session, each frame rewritten as a v2 book message.
    let (mut protocol, mut publisher) = harness(Venue::Kraken, &["XBT/CHF", "GRT/ETH"], Some(1000));
    protocol.on_open(&mut publisher, &mut out);
    let mut checked = 0;
    for line in lines(&dir.join("captures/kraken_v1_book1000_2021-04-17.jsonl")) {
        let v: Json = serde_json::from_str(&line).unwrap();
        let Some(frame) = v.as_array() else { continue };
        let pair = frame[frame.len() - 1].as_str().unwrap();
        let (mut asks, mut bids, mut checksum, mut snapshot) =
            (Vec::new(), Vec::new(), None, false);
        for part in &frame[1..frame.len() - 2] {
            if part.get("as").is_some() {
                snapshot = true;
                asks = pairs(&part["as"]);
                bids = pairs(&part["bs"]);
            }
            asks.extend(pairs(&part["a"]));
            bids.extend(pairs(&part["b"]));
            if let Some(c) = part["c"].as_str() {
                checksum = Some(c.parse::<u32>().unwrap());
            }
        }
        let checksum = match checksum {
            Some(c) => c,
            None => text_crc(&asks, &bids),
        };
        let msg = format!(
            r#"{{"channel":"book","type":"{}","data":[{{"symbol":"{pair}","bids":{},"asks":{},"checksum":{checksum}}}]}}"#,
            if snapshot { "snapshot" } else { "update" },
            v2_levels(&bids),
            v2_levels(&asks)
        );
        publisher.begin_message();
        protocol
            .on_text(msg.as_bytes(), &mut publisher, &mut out)
            .unwrap();
        publisher.flush();
        assert_eq!(
            counter(&publisher, |s| &s.checksum_failures),
            0,
            "checksum of v1 frame {line}"
        );
        checked += usize::from(!snapshot);
    }
    assert_eq!(checked, 309);
    assert_eq!(
        counter(&publisher, |s| &s.checksum_failures),
        0,
        "every v1 update checksum matches"
    );
    assert!(!protocol.syncing());
    println!("kraken: docs examples and {checked} recorded update checksums match");
}

#[test]
fn coinbase_capture_trade_ids_are_contiguous() {
    let Some(dir) = fixtures("coinbase_capture_trade_ids_are_contiguous") else {
        return;
    };
    let path = dir.join("captures/coinbase_level2_ticker_matches_2021-04-17.jsonl");
    let frames = lines(&path);
    let first: Json = serde_json::from_str(&frames[0]).unwrap();
    let products: Vec<String> = first["product_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect();
    let names: Vec<&str> = products.iter().map(String::as_str).collect();
    let (mut protocol, mut publisher) = harness(Venue::Coinbase, &names, None);
    let mut out = Outbox::default();
    protocol.on_open(&mut publisher, &mut out);
    let mut matches = 0;
    for frame in &frames {
        matches += usize::from(frame.contains(r#""type":"match""#));
        publisher.begin_message();
        protocol
            .on_text(frame.as_bytes(), &mut publisher, &mut out)
            .unwrap();
        publisher.flush();
    }
    assert_eq!(
        counter(&publisher, |s| &s.trades_missed),
        0,
        "trade ids contiguous"
    );
    assert_eq!(counter(&publisher, |s| &s.decode_errors), 0);
    assert_eq!(counter(&publisher, |s| &s.gaps), 0, "no crossed book");
    let ticks = counter(&publisher, |s| &s.ticks);
    assert!(ticks > 1000, "{ticks} ticks");
    println!(
        "coinbase capture: {} frames, {matches} matches, ids contiguous",
        frames.len()
    );
}
