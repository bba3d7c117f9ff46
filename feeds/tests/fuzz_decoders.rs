//! The venue decoders' fuzz targets (`tickwire_feeds::fuzz`) on stable: every seed, then
//! bounded deterministic mutations of them (bit flips, byte changes, cuts, splices,
//! numbers swapped for extreme ones, lines dropped, repeated or swapped). Seeds are the
//! project's own messages in each venue's format and, when `../shared/fixtures/` is
//! present, the shared exchange messages and captures (read at test time, never copied;
//! the test says SKIPPED for them when the folder is missing). Any panic fails the test;
//! the input is printed first so that it can become a regression test below.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test

mod common;

use std::path::Path;

use tickwire_feeds::fuzz;

/// Mutated inputs per venue: about 5 s per venue in a debug build on the CI machine.
const MUTATIONS: usize = 6_000;

fn own_binance() -> Vec<String> {
    let snapshot = r#"REST BTCUSDT {"lastUpdateId":100,"bids":[["100.10000000","1.00000000"],["99.00000000","2.00000000"]],"asks":[["101.00000000","1.00000000"]]}"#;
    let depth = |first: u64, last: u64, q: &str| {
        format!(
            r#"{{"stream":"btcusdt@depth@100ms","data":{{"e":"depthUpdate","E":1700000000200,"s":"BTCUSDT","U":{first},"u":{last},"b":[["100.10000000","{q}"],["98.00000000","0.00000000"]],"a":[["101.00000000","{q}"]]}}}}"#
        )
    };
    let trade = |t: u64, m: bool| {
        format!(
            r#"{{"stream":"btcusdt@trade","data":{{"e":"trade","E":1700000000100,"s":"BTCUSDT","t":{t},"p":"100.50000000","q":"0.01000000","T":1700000000101,"m":{m}}}}}"#
        )
    };
    let ticker = r#"{"stream":"btcusdt@bookTicker","data":{"u":400900217,"s":"BTCUSDT","b":"100.10000000","B":"1.50000000","a":"101.00000000","A":"1.00000000"}}"#;
    vec![
        [
            depth(95, 101, "1.5"),
            snapshot.to_owned(),
            depth(102, 103, "2"),
            trade(1, true),
            trade(2, false),
            ticker.to_owned(),
            depth(110, 111, "0"),
            trade(5, true),
            r#"{"result":null,"id":1}"#.to_owned(),
            "RECONNECT".to_owned(),
            snapshot.to_owned(),
            depth(100, 101, "3"),
        ]
        .join("\n"),
        trade(1, true),
        ticker.to_owned(),
    ]
}

fn own_coinbase() -> Vec<String> {
    let session = [
        r#"{"type":"subscriptions","channels":[{"name":"level2_batch","product_ids":["BTC-USD"]}]}"#,
        r#"{"type":"snapshot","product_id":"BTC-USD","bids":[["100.10","1.0"],["99.00","1.0"]],"asks":[["101.00","1.0"]]}"#,
        r#"{"type":"l2update","product_id":"BTC-USD","changes":[["buy","100.10","1.5"],["sell","101.00","0"],["sell","102.5","3"]],"time":"2025-03-04T05:06:07.200000Z"}"#,
        r#"{"type":"match","trade_id":1,"maker_order_id":"a","taker_order_id":"b","side":"sell","size":"0.01","price":"100.50","product_id":"BTC-USD","sequence":5,"time":"2025-03-04T05:06:07.123456Z"}"#,
        r#"{"type":"last_match","trade_id":1,"side":"buy","size":"0.01","price":"100.50","product_id":"BTC-USD","sequence":5,"time":"2025-03-04T05:06:07.123456Z"}"#,
        r#"{"type":"match","trade_id":4,"side":"buy","size":"0.02","price":"100.60","product_id":"BTC-USD","sequence":9,"time":"2025-03-04T05:06:07.5Z"}"#,
        r#"{"type":"ticker","sequence":9,"product_id":"BTC-USD","price":"100.50","best_bid":"100.10","best_bid_size":"1.5","best_ask":"101.00","best_ask_size":"1","side":"buy","time":"2025-03-04T05:06:07.300000Z","trade_id":4,"last_size":"0.01"}"#,
        r#"{"type":"heartbeat","sequence":10,"last_trade_id":6,"product_id":"BTC-USD","time":"2025-03-04T05:06:08.000001Z"}"#,
        r#"{"type":"error","message":"Failed to subscribe","reason":"ETH-XYZ is not a valid product"}"#,
    ];
    vec![session.join("\n"), session[3].to_owned()]
}

/// Kraken v2's book checksum over the texts as the venue prints them (top 10 per side).
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

fn own_kraken() -> Vec<String> {
    let asks = [("101.0", "1.00000000")];
    let bids = [("100.1", "1.50000000"), ("99.0", "1.00000000")];
    let bids_after = [("100.1", "2.00000000"), ("99.0", "1.00000000")];
    let snapshot = format!(
        r#"{{"channel":"book","type":"snapshot","data":[{{"symbol":"BTC/USD","bids":[{{"price":100.1,"qty":1.50000000}},{{"price":99.0,"qty":1.00000000}}],"asks":[{{"price":101.0,"qty":1.00000000}}],"checksum":{}}}]}}"#,
        kraken_crc(&asks, &bids)
    );
    let update = format!(
        r#"{{"channel":"book","type":"update","data":[{{"symbol":"BTC/USD","bids":[{{"price":100.1,"qty":2.00000000}}],"asks":[],"checksum":{},"timestamp":"2026-01-02T03:04:05.123456Z"}}]}}"#,
        kraken_crc(&asks, &bids_after)
    );
    let trade = r#"{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"buy","price":100.5,"qty":0.01000000,"ord_type":"limit","trade_id":7,"timestamp":"2026-01-02T03:04:05.000001Z"},{"symbol":"BTC/USD","side":"sell","price":100.4,"qty":0.5,"ord_type":"market","trade_id":9,"timestamp":"2026-01-02T03:04:05.000002Z"}]}"#;
    let ticker = r#"{"channel":"ticker","type":"update","data":[{"symbol":"BTC/USD","bid":100.1,"bid_qty":2.0,"ask":101.0,"ask_qty":1.00000000,"last":100.5,"volume":10.0}]}"#;
    vec![
        [
            r#"{"channel":"status","data":[{"api_version":"v2","system":"online","version":"2.0.0"}],"type":"update"}"#,
            snapshot.as_str(),
            update.as_str(),
            trade,
            ticker,
            r#"{"channel":"heartbeat"}"#,
            r#"{"method":"pong","req_id":1,"time_in":"2026-01-02T03:04:05.1Z","time_out":"2026-01-02T03:04:05.2Z"}"#,
            update.as_str(),
        ]
        .join("\n"),
        trade.to_owned(),
    ]
}

/// Seeds larger than this (venue snapshots: tens of KiB) are mutated rarely; decoding
/// one in a debug build costs as much as a hundred small ones.
const LARGE_SEED_BYTES: usize = 8 * 1024;

/// The lines of `path`, as sessions of consecutive lines up to [`LARGE_SEED_BYTES`]; a
/// longer line is a session of its own.
fn sessions(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        if !cur.is_empty() && cur.len() + line.len() >= LARGE_SEED_BYTES {
            out.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push('\n');
        }
        cur.push_str(line);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Seeds from the shared fixtures, or none (said) when they are not present.
fn shared_seeds(venue: &str) -> Vec<String> {
    let Some(dir) = common::shared_fixtures() else {
        println!("fuzz_decoders {venue}: shared fixture seeds SKIPPED: ../shared/fixtures is not present");
        return Vec::new();
    };
    let cap = dir.join("captures");
    let mut seeds = sessions(&dir.join(format!("{venue}.jsonl")));
    match venue {
        "binance" => {
            let frames_path = cap.join("binance_combined_2021-10-11.jsonl");
            let frames = std::fs::read_to_string(&frames_path).unwrap();
            let rest =
                std::fs::read_to_string(cap.join("binance_rest_depth_snapshots_2021-10-11.jsonl"))
                    .unwrap();
            let meta = std::fs::read_to_string(
                cap.join("binance_rest_depth_snapshots_2021-10-11.meta.jsonl"),
            )
            .unwrap();
            // Each depth snapshot as the REST answer for its symbol, then that symbol's
            // next frames: the sync path (large seeds).
            for (body, m) in rest.lines().zip(meta.lines()) {
                let Some(symbol) = m.split("symbol=").nth(1).and_then(|s| s.split('&').next())
                else {
                    continue;
                };
                let stream = format!("\"{}@", symbol.to_lowercase());
                let own: Vec<&str> = frames
                    .lines()
                    .filter(|l| l.contains(&stream))
                    .take(30)
                    .collect();
                seeds.push(format!("REST {symbol} {body}\n{}", own.join("\n")));
            }
            seeds.extend(sessions(&frames_path));
        }
        "coinbase" => seeds.extend(sessions(
            &cap.join("coinbase_level2_ticker_matches_2021-04-17.jsonl"),
        )),
        _ => seeds.extend(sessions(&cap.join("kraken_v1_book1000_2021-04-17.jsonl"))),
    }
    seeds
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Numbers a decoder must refuse or carry without overflow.
const EXTREMES: [&[u8]; 9] = [
    b"0",
    b"-1",
    b"18446744073709551616",
    b"99999999999999999999.99999999999",
    b"1e400",
    b"0.000000000000000001",
    b"-0",
    b"9223372036854775807",
    b"\"\"",
];

/// A mutation of a seed: a large one one time in twenty (when there are small ones).
fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let (small, large): (Vec<&Vec<u8>>, Vec<&Vec<u8>>) =
        seeds.iter().partition(|s| s.len() < LARGE_SEED_BYTES);
    let pool = if large.is_empty() || (!small.is_empty() && rng.below(20) != 0) {
        small
    } else {
        large
    };
    let mut v = pool[rng.below(pool.len())].clone();
    for _ in 0..=rng.below(4) {
        match rng.below(8) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            2 => v.truncate(rng.below(v.len() + 1)),
            3 => {
                let other = &seeds[rng.below(seeds.len())];
                let at = rng.below(v.len() + 1);
                let from = rng.below(other.len() + 1);
                let to = from + rng.below(other.len() - from + 1);
                v.splice(at..at, other[from..to].iter().copied());
            }
            4 => {
                // A run of digits becomes an extreme number.
                let digits: Vec<usize> = (0..v.len()).filter(|&i| v[i].is_ascii_digit()).collect();
                if !digits.is_empty() {
                    let start = digits[rng.below(digits.len())];
                    let end = (start..v.len())
                        .find(|&i| !(v[i].is_ascii_digit() || v[i] == b'.'))
                        .unwrap_or(v.len());
                    let with = EXTREMES[rng.below(EXTREMES.len())];
                    v.splice(start..end, with.iter().copied());
                }
            }
            5 | 6 => {
                // Lines dropped, repeated or swapped: the decoders' state machines.
                let mut lines: Vec<Vec<u8>> =
                    v.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
                let i = rng.below(lines.len());
                let j = rng.below(lines.len());
                match rng.below(3) {
                    0 => {
                        lines.remove(i);
                    }
                    1 => {
                        let l = lines[i].clone();
                        lines.insert(j, l);
                    }
                    _ => lines.swap(i, j),
                }
                v = lines.join(&b'\n');
            }
            _ => {
                let at = rng.below(v.len() + 1);
                v.insert(at, rng.next() as u8);
            }
        }
    }
    v
}

fn run(name: &str, target: fn(&[u8]), own: Vec<String>, seed: u64) {
    let mut seeds: Vec<Vec<u8>> = own.into_iter().map(String::into_bytes).collect();
    let own_count = seeds.len();
    seeds.extend(shared_seeds(name).into_iter().map(String::into_bytes));
    let mut rng = Rng(seed);
    let started = std::time::Instant::now();
    let inputs = seeds
        .clone()
        .into_iter()
        .chain(std::iter::repeat_with(|| mutate(&mut rng, &seeds)).take(MUTATIONS));
    let mut count = 0;
    for input in inputs {
        if std::panic::catch_unwind(|| target(&input)).is_err() {
            panic!(
                "{name} decoder panicked on input {:?}",
                String::from_utf8_lossy(&input)
            );
        }
        count += 1;
    }
    println!(
        "fuzz_decoders {name}: {count} inputs ({own_count} own seeds, {} shared, {MUTATIONS} mutations) in {:.1} s",
        seeds.len() - own_count,
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn binance_decoder_survives_seeds_and_mutations() {
    run(
        "binance",
        fuzz::binance,
        own_binance(),
        0x9e37_79b9_7f4a_7c15,
    );
}

#[test]
fn coinbase_decoder_survives_seeds_and_mutations() {
    run(
        "coinbase",
        fuzz::coinbase,
        own_coinbase(),
        0xd1b5_4a32_d192_ed03,
    );
}

#[test]
fn kraken_decoder_survives_seeds_and_mutations() {
    run("kraken", fuzz::kraken, own_kraken(), 0x2545_f491_4f6c_dd1d);
}
