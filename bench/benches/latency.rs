//! Cost of latency recording per event: what the hot path pays for `StageRecorder::record`
//! (one HdrHistogram increment), against reading the clock it needs and a baseline that
//! only sums the values.
//!
//! `cargo bench -p tickwire-bench --bench latency -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tickwire_engine::latency::{new_slot, Stage, StageRecorder};
use tickwire_engine::tick::now_ns;

fn values() -> Vec<u64> {
    // Latencies spread from 1 µs to ~10 ms, as tick-to-wire values are.
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            1_000 + x % 10_000_000
        })
        .collect()
}

fn recording(c: &mut Criterion) {
    let vals = values();
    let mut g = c.benchmark_group("latency_record");
    g.throughput(Throughput::Elements(vals.len() as u64));
    g.bench_function("baseline_sum", |b| {
        b.iter(|| {
            let mut sum = 0u64;
            for &v in &vals {
                sum = sum.wrapping_add(black_box(v));
            }
            sum
        })
    });
    g.bench_function("record", |b| {
        let mut r = StageRecorder::new(new_slot());
        b.iter(|| {
            for &v in &vals {
                r.record(Stage::TickToWire, black_box(v));
            }
        })
    });
    g.bench_function("clock_read", |b| {
        b.iter(|| {
            let mut sum = 0u64;
            for _ in 0..vals.len() {
                sum = sum.wrapping_add(now_ns());
            }
            sum
        })
    });
    g.finish();
}

criterion_group!(benches, recording);
criterion_main!(benches);
