//! Loom models of the ring's seqlock slots and of the parker's wake-up pairing.
//!
//! Run with (separate target dir: the cfg changes every crate):
//! `RUSTFLAGS="--cfg tickwire_loom" CARGO_TARGET_DIR=target/loom cargo test -p tickwire-engine --test loom_ring --release`
#![cfg(tickwire_loom)]

use loom::sync::Arc;
use loom::thread;
use tickwire_engine::ring::{ring, Consumer, RecvError, RingItem, SLOT_WORDS};
use tickwire_engine::wake::Parker;

/// An item whose words all equal its value, so a torn read cannot pass unnoticed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Val(u64);

impl RingItem for Val {
    fn to_words(&self) -> [u64; SLOT_WORDS] {
        [self.0; SLOT_WORDS]
    }

    fn from_words(words: [u64; SLOT_WORDS]) -> Option<Val> {
        assert!(words.iter().all(|&w| w == words[0]), "torn read: {words:?}");
        Some(Val(words[0]))
    }
}

/// Bounded preemptions keep each model well under a minute.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(f);
}

/// Drives `future` to completion. Under loom the parker waits by blocking the loom
/// thread inside `poll` (loom's `Notify`), so one poll always completes it.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(future).poll(&mut cx) {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => panic!("under loom, park_until completes in one poll"),
    }
}

/// Receives once; checks the item is the one at its seq. Returns (received, lagged).
fn recv_once(consumer: &mut Consumer<Val>) -> (u64, u64) {
    let position = consumer.position();
    match consumer.try_recv() {
        Ok(Val(v)) => {
            assert_eq!(v, position, "item is not the one at its seq");
            (1, 0)
        }
        Err(RecvError::Lagged(n)) => (0, n),
        Err(RecvError::Empty) => (0, 0),
    }
}

/// A producer publishes 3 items one by one into a 2-slot ring (so it laps) while a
/// consumer reads concurrently: every item read is whole and at its seq, and
/// received + lagged is exactly 3.
#[test]
fn concurrent_reads_are_whole_and_every_item_is_accounted_for() {
    model(|| {
        const TOTAL: u64 = 3;
        let (mut producer, _) = ring::<Val>(2);
        let mut consumer = producer.subscribe();
        let writer = thread::spawn(move || {
            for v in 0..TOTAL {
                producer.push(Val(v));
                producer.publish();
            }
        });
        let (mut received, mut lagged) = (0, 0);
        // Two reads that race the writer (bounded: loom needs no spin loops) ...
        for _ in 0..2 {
            let (r, l) = recv_once(&mut consumer);
            received += r;
            lagged += l;
        }
        writer.join().unwrap();
        // ... then drain what is left.
        while consumer.position() < TOTAL {
            let (r, l) = recv_once(&mut consumer);
            received += r;
            lagged += l;
        }
        assert_eq!(received + lagged, TOTAL);
        assert_eq!(consumer.try_recv(), Err(RecvError::Empty));
    });
}

/// A batch becomes visible whole: a concurrent consumer sees 0 or 2 items, never 1.
#[test]
fn a_batch_is_seen_whole_or_not_at_all() {
    model(|| {
        let (mut producer, _) = ring::<Val>(2);
        let mut consumer = producer.subscribe();
        let writer = thread::spawn(move || {
            producer.push(Val(0));
            producer.push(Val(1));
            producer.publish();
        });
        let available = consumer.available();
        assert!(
            available == 0 || available == 2,
            "saw {available} of a batch of 2"
        );
        if available == 2 {
            assert_eq!(consumer.try_recv(), Ok(Val(0)));
            assert_eq!(consumer.try_recv(), Ok(Val(1)));
        }
        writer.join().unwrap();
    });
}

/// The consumer parks until the ring has an item while the producer publishes once and
/// wakes it: in no interleaving is the wake-up lost (loom reports a deadlock if it is).
#[test]
fn a_parked_consumer_is_never_left_asleep() {
    model(|| {
        let (mut producer, _) = ring::<Val>(2);
        let mut consumer = producer.subscribe();
        let parker = Arc::new(Parker::new());
        producer.add_waker(Arc::clone(&parker));
        let writer = thread::spawn(move || {
            producer.push(Val(7));
            producer.publish();
        });
        block_on(parker.park_until(|| consumer.available() > 0));
        assert_eq!(consumer.try_recv(), Ok(Val(7)));
        writer.join().unwrap();
    });
}
