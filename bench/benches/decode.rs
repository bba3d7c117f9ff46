//! Decode and encode costs of one message (scenario S6 of `tickwire bench compare`):
//!
//! - `command_parse`: a client's `subscribe` command, by the engine's parser
//!   (`protocol::command::parse`, simd-json underneath) against `serde_json::Value`.
//! - `trade_scan`: a `trade` message as a client reads it, by the load generator's key
//!   scan (`load::scan`, no document) against `serde_json::Value`.
//! - `trade_encode`: a `trade` frame (header included) by the engine's encoder
//!   (`protocol::encode::trade` into a reused buffer) against `format!`, which is what
//!   the naive-Rust peer does.
//!
//! Each iteration is one message; criterion reports elements (messages) per second.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_main, Criterion, Throughput};
use tickwire_bench::load::scan::scan;
use tickwire_engine::protocol::{command, encode, frame};
use tickwire_engine::symbol::SymbolRegistryBuilder;
use tickwire_engine::tick::Aggressor;

const SUBSCRIBE: &[u8] =
    br#"{"op":"subscribe","id":1,"channels":["trades"],"symbols":["sim:BTC-USD"],"depth":10}"#;
const TRADE: &[u8] = br#"{"type":"trade","symbol":"sim:BTC-USD","seq":123456,"price":66999.9,"size":0.0685,"side":"sell","trade_id":"123456","ts":1763700000123456789,"ingest_ts":1763700000123456789}"#;

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    group
        .throughput(Throughput::Elements(1))
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));

    // The engine's parser works in place (simd-json), so both copy the frame first.
    let mut buf = Vec::with_capacity(256);
    group.bench_function("command_parse/tickwire", |b| {
        b.iter(|| {
            buf.clear();
            buf.extend_from_slice(black_box(SUBSCRIBE));
            black_box(command::parse(&mut buf).is_ok())
        })
    });
    group.bench_function("command_parse/serde_json_value", |b| {
        b.iter(|| {
            buf.clear();
            buf.extend_from_slice(black_box(SUBSCRIBE));
            black_box(serde_json::from_slice::<serde_json::Value>(&buf).is_ok())
        })
    });

    group.bench_function("trade_scan/tickwire_scan", |b| {
        b.iter(|| {
            let m = scan(black_box(TRADE));
            black_box((m.seq, m.ingest_ts))
        })
    });
    group.bench_function("trade_scan/serde_json_value", |b| {
        b.iter(|| {
            let v: serde_json::Value = serde_json::from_slice(black_box(TRADE)).unwrap();
            black_box((v["seq"].as_u64(), v["ingest_ts"].as_u64()))
        })
    });

    let mut symbols = SymbolRegistryBuilder::new();
    let id = symbols.add("sim:BTC-USD", 2, 8).expect("a valid symbol");
    let registry = symbols.build();
    let sym = registry.info(id);
    let mut seq = 0u64;
    group.bench_function("trade_encode/tickwire", |b| {
        b.iter(|| {
            seq += 1;
            frame::begin(&mut buf);
            encode::trade(
                &mut buf,
                sym,
                seq,
                black_box(6_699_990),
                black_box(6_850_000),
                Some(Aggressor::Sell),
                seq,
                black_box(1_763_700_000_123_456_789),
                black_box(1_763_700_000_123_456_789),
            );
            let start = frame::finish(&mut buf, frame::OpCode::Text);
            black_box(buf.len() - start)
        })
    });
    group.bench_function("trade_encode/format", |b| {
        b.iter(|| {
            seq += 1;
            let (price, size, ts) = (
                black_box(66999.9f64),
                black_box(0.0685f64),
                black_box(1_763_700_000_123_456_789u64),
            );
            let text = format!(
                r#"{{"type":"trade","symbol":"sim:BTC-USD","seq":{seq},"price":{price},"size":{size},"side":"sell","trade_id":"{seq}","ts":{ts},"ingest_ts":{ts}}}"#
            );
            black_box(text.len())
        })
    });
    group.finish();
}

mod harness {
    //! criterion's generated entry points (outside the documented items).
    #![allow(missing_docs)]
    criterion::criterion_group!(benches, super::decode);
}

criterion_main!(harness::benches);
