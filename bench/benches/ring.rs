//! Hand-off of ticks from one producer thread to 1 and 2 consumer threads: the tickwire
//! ring against `tokio::sync::broadcast` and `crossbeam_channel` (one bounded channel per
//! consumer, the producer sending to each).
//!
//! Each measured run hands off [`ITEMS`] ticks through queues of [`CAPACITY`] >= ITEMS, so
//! no peer ever laps a consumer (ring, broadcast) or blocks the producer (crossbeam): every
//! consumer receives every item, and the time is what the hand-off itself costs, start to
//! last item received by every consumer. (With a smaller ring on 2 cores, the lossy peers'
//! figures mostly measure how often the scheduler left a consumer off-core while the
//! producer ran on: not a property of the queue. Each benchmark prints the share of items
//! received so that a run where that happened anyway is visible.)
//!
//! Throughput counts items published per second; each item goes to every consumer.
//! Consumers busy-poll with `try_recv`, yielding the core when empty, except crossbeam's,
//! which uses its blocking `recv` (its natural mode). The ring publishes each item
//! (`tickwire_ring`) or every 16 (`tickwire_ring_batch16`).
//!
//! Run: `cargo bench -p tickwire-bench --bench ring -- --warm-up-time 1 --measurement-time 2`

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test

use std::hint::black_box;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};
use tickwire_engine::ring::{ring, RecvError};
use tickwire_engine::symbol::SymbolId;
use tickwire_engine::tick::{Event, Tick};

/// Items per measured hand-off.
const ITEMS: u64 = 1 << 16;
/// Slots (ring, broadcast) or bound (each crossbeam channel): room for a whole run.
const CAPACITY: usize = 1 << 16;

fn tick(i: u64) -> Tick {
    Tick {
        symbol: SymbolId((i % 64) as u32),
        ts: i,
        ingest_ts: i,
        event: Event::Trade {
            seq: i + 1,
            price: 1_000_000 + (i % 100) as i64,
            size: 1,
            side: None,
            trade_id: i,
        },
    }
}

/// What the consumers of one run got: (received, skipped), summed over consumers.
type Tally = (u64, u64);

/// One hand-off to this many consumers: elapsed time and tally.
type Handoff = fn(usize) -> (Duration, Tally);

/// Runs `consumers` reader closures and one producer closure, all released together;
/// returns the time from release until every reader is done, and the readers' tally.
fn run<R, P>(consumers: Vec<R>, produce: P) -> (Duration, Tally)
where
    R: FnOnce() -> Tally + Send,
    P: FnOnce() + Send,
{
    let start = Barrier::new(consumers.len() + 1);
    thread::scope(|scope| {
        let readers: Vec<_> = consumers
            .into_iter()
            .map(|read| {
                let start = &start;
                scope.spawn(move || {
                    start.wait();
                    read()
                })
            })
            .collect();
        start.wait();
        let t0 = Instant::now();
        produce();
        let tally = readers.into_iter().fold((0, 0), |(r, s), reader| {
            let (r2, s2) = reader.join().unwrap();
            (r + r2, s + s2)
        });
        (t0.elapsed(), tally)
    })
}

fn tickwire_ring(consumers: usize, batch: u64) -> (Duration, Tally) {
    let (mut producer, subscriber) = ring::<Tick>(CAPACITY);
    let readers = (0..consumers)
        .map(|_| {
            let mut consumer = subscriber.subscribe();
            move || {
                let (mut received, mut skipped) = (0, 0);
                while consumer.position() < ITEMS {
                    match consumer.try_recv() {
                        Ok(t) => {
                            black_box(t);
                            received += 1;
                        }
                        Err(RecvError::Lagged(n)) => skipped += n,
                        Err(RecvError::Empty) => thread::yield_now(),
                    }
                }
                (received, skipped)
            }
        })
        .collect();
    run(readers, move || {
        for i in 0..ITEMS {
            producer.push(tick(i));
            if (i + 1) % batch == 0 {
                producer.publish();
            }
        }
        producer.publish();
    })
}

fn tokio_broadcast(consumers: usize) -> (Duration, Tally) {
    use tokio::sync::broadcast::{self, error::TryRecvError};
    let (tx, _) = broadcast::channel::<Tick>(CAPACITY);
    let readers = (0..consumers)
        .map(|_| {
            let mut rx = tx.subscribe();
            move || {
                let (mut received, mut skipped) = (0, 0);
                loop {
                    match rx.try_recv() {
                        Ok(t) => {
                            black_box(t);
                            received += 1;
                        }
                        Err(TryRecvError::Lagged(n)) => skipped += n,
                        Err(TryRecvError::Empty) => thread::yield_now(),
                        Err(TryRecvError::Closed) => return (received, skipped),
                    }
                }
            }
        })
        .collect();
    run(readers, move || {
        for i in 0..ITEMS {
            let _ = tx.send(tick(i));
        }
        drop(tx);
    })
}

fn crossbeam_channels(consumers: usize) -> (Duration, Tally) {
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..consumers)
        .map(|_| crossbeam_channel::bounded::<Tick>(CAPACITY))
        .unzip();
    let readers = rxs
        .into_iter()
        .map(|rx| {
            move || {
                let received = rx.iter().map(black_box).count() as u64;
                (received, 0)
            }
        })
        .collect();
    run(readers, move || {
        for i in 0..ITEMS {
            let t = tick(i);
            for tx in &txs {
                tx.send(t).unwrap();
            }
        }
        drop(txs);
    })
}

fn handoff(c: &mut Criterion) {
    let mut group = c.benchmark_group("ring_handoff");
    group
        .throughput(Throughput::Elements(ITEMS))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    let peers: [(&str, Handoff); 4] = [
        ("tickwire_ring", |n| tickwire_ring(n, 1)),
        ("tickwire_ring_batch16", |n| tickwire_ring(n, 16)),
        ("tokio_broadcast", tokio_broadcast),
        ("crossbeam_channel", crossbeam_channels),
    ];
    for consumers in [1, 2] {
        for (name, handoff) in peers {
            let (mut received, mut skipped) = (0, 0);
            group.bench_function(BenchmarkId::new(name, format!("{consumers}c")), |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| {
                            let (elapsed, (r, s)) = handoff(consumers);
                            received += r;
                            skipped += s;
                            elapsed
                        })
                        .sum()
                })
            });
            let share = 100.0 * received as f64 / (received + skipped).max(1) as f64;
            eprintln!("  {name}/{consumers}c: consumers received {share:.1}% of items");
        }
    }
    group.finish();
}

mod harness {
    //! criterion's generated entry points (outside the documented items).
    #![allow(missing_docs)]
    criterion::criterion_group!(benches, super::handoff);
}

criterion_main!(harness::benches);
