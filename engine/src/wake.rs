//! Flag-guarded wake-ups, so that an idle consumer uses no CPU and a busy producer pays
//! one fence and one relaxed load per registered consumer thread per publish.
//!
//! # Contract
//!
//! - **Allocation**: none here; the caller puts each [`Parker`] in an `Arc` once and
//!   registers it with every producer it should hear from
//!   ([`crate::ring::Producer::add_waker`]) before the producers start.
//! - **Blocking**: only [`Parker::park_until`] waits, asynchronously, on a
//!   `tokio::sync::Notify`. [`Parker::wake`] never blocks: a fence, a relaxed load and,
//!   only when the consumer is parked, one swap and one `notify_one`.
//! - **Ownership**: one parker per consumer thread (one waiter at a time); any number of
//!   producers may wake it.
//! - **No lost wake-up** (the Dekker pairing): the consumer stores `parked = true`, then a
//!   `SeqCst` fence, then re-checks its rings; a producer stores its cursor, then a
//!   `SeqCst` fence, then loads `parked`. The two fences are totally ordered, so at least
//!   one side sees the other's store: either the consumer's re-check sees the new items,
//!   or the producer sees `parked` and notifies. `notify_one` stores a permit when nobody
//!   is waiting yet, so a notification that lands between the re-check and the `await`
//!   is not lost either.
//! - **Spurious wake-ups** are possible (a permit left over from an earlier round) and
//!   harmless: [`Parker::park_until`] re-checks and parks again.
//!
//! Under `--cfg tickwire_loom` the blocking primitive is loom's `Notify` (same permit semantics,
//! blocking instead of async) so the pairing can be model-checked.

use crossbeam_utils::CachePadded;

use crate::sync::{fence, AtomicBool, Ordering};

/// Wakes one consumer thread when any of the producers it is registered with publishes.
///
/// ```
/// use std::sync::Arc;
/// use tickwire_engine::ring::ring;
/// use tickwire_engine::symbol::SymbolId;
/// use tickwire_engine::tick::{Event, Tick};
/// use tickwire_engine::wake::Parker;
///
/// let (mut producer, subscriber) = ring::<Tick>(64);
/// let parker = Arc::new(Parker::new());
/// producer.add_waker(Arc::clone(&parker)); // before the producer starts
///
/// let consumer = subscriber.subscribe();
/// let worker = std::thread::spawn(move || {
///     let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
///     // Sleeps, using no CPU, until something is published.
///     rt.block_on(parker.park_until(|| consumer.available() > 0));
///     consumer
/// });
///
/// let quote = Event::Quote { bid: 99, bid_size: 1, ask: 101, ask_size: 2 };
/// producer.push(Tick { symbol: SymbolId(1), ts: 1, ingest_ts: 1, event: quote });
/// producer.publish(); // wakes the worker
/// assert_eq!(worker.join().unwrap().available(), 1);
/// ```
pub struct Parker {
    /// True while the consumer is (about to be) waiting. Set by the consumer, cleared by
    /// whichever side gets to it first: a producer's swap (which then notifies) or the
    /// consumer finding work on its re-check.
    parked: CachePadded<AtomicBool>,
    /// Where the consumer waits; holds one permit so a notify before the wait counts.
    signal: Signal,
}

impl Parker {
    /// A parker for one consumer thread; put it in an `Arc` and register it with each
    /// producer that should wake this consumer.
    pub fn new() -> Parker {
        Parker {
            parked: CachePadded::new(AtomicBool::new(false)),
            signal: Signal::new(),
        }
    }

    /// Waits until `ready()` returns true, without spinning.
    ///
    /// `ready` must read the producers' published state fresh (for a ring consumer,
    /// [`crate::ring::Consumer::available`] does) and must not block. It is called once
    /// first, then after every wake-up. Cancel-safe: dropping the future leaves at most a
    /// stale flag or permit, which costs one spurious wake-up later.
    pub async fn park_until(&self, mut ready: impl FnMut() -> bool) {
        if ready() {
            return;
        }
        loop {
            // Relaxed: ordered before the re-check below by the SeqCst fence that follows.
            self.parked.store(true, Ordering::Relaxed);
            // SeqCst: the Dekker pairing with the SeqCst fence a producer issues after
            // storing its cursor and before loading `parked` (`Producer::publish`, `wake`):
            // either `ready()` below sees that producer's items, or it sees our flag.
            fence(Ordering::SeqCst);
            if ready() {
                // Relaxed: only spares the producers a needless notify; if one already
                // swapped the flag, its permit costs us one spurious wake-up later.
                self.parked.store(false, Ordering::Relaxed);
                return;
            }
            self.signal.wait().await;
        }
    }

    /// Wakes the consumer if it is parked. Call after making the new state visible (for
    /// a ring, [`crate::ring::Producer::publish`] does this itself for its wakers).
    pub fn wake(&self) {
        // SeqCst: the Dekker pairing with the SeqCst fence in `park_until`.
        fence(Ordering::SeqCst);
        self.wake_after_fence();
    }

    /// The producer's half of the pairing, for callers that already issued the
    /// `fence(SeqCst)` after their store (one fence covers many parkers).
    pub(crate) fn wake_after_fence(&self) {
        // Relaxed load: the Dekker read, ordered after the caller's store by its SeqCst
        // fence. Relaxed swap: an RMW reads the latest flag, so exactly one waker claims
        // each `true` the consumer stored; the notify carries no data (the consumer
        // re-reads the cursor with Acquire).
        if self.parked.load(Ordering::Relaxed) && self.parked.swap(false, Ordering::Relaxed) {
            self.signal.notify();
        }
    }
}

impl Default for Parker {
    fn default() -> Parker {
        Parker::new()
    }
}

/// The blocking primitive: `tokio::sync::Notify` (async), swapped for loom's `Notify`
/// under loom. Both keep one permit for a notify that comes before the wait.
#[cfg(not(tickwire_loom))]
struct Signal(tokio::sync::Notify);

#[cfg(not(tickwire_loom))]
impl Signal {
    fn new() -> Signal {
        Signal(tokio::sync::Notify::new())
    }

    fn notify(&self) {
        self.0.notify_one();
    }

    async fn wait(&self) {
        self.0.notified().await;
    }
}

#[cfg(tickwire_loom)]
struct Signal(crate::sync::Notify);

#[cfg(tickwire_loom)]
impl Signal {
    fn new() -> Signal {
        Signal(crate::sync::Notify::new())
    }

    fn notify(&self) {
        self.0.notify();
    }

    /// Blocks the loom thread; run `park_until` under `loom::future::block_on`.
    async fn wait(&self) {
        self.0.wait();
    }
}
