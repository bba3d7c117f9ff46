//! Single-producer, many-consumer broadcast ring of fixed-size items in seqlock slots.
//!
//! # Contract
//!
//! - **Allocation**: [`ring`] allocates the slots (a power-of-two capacity) and the shared
//!   cursor, once. Nothing allocates afterwards: not [`Producer::push`],
//!   [`Producer::publish`], [`Consumer::try_recv`], nor subscribing (an `Arc` clone).
//!   [`Producer::add_waker`] grows a `Vec`; call it before the producer starts.
//! - **Blocking**: nothing here blocks or spins. The producer **never waits for a
//!   consumer**; [`Consumer::try_recv`] returns [`RecvError::Empty`] at once when there
//!   is nothing new. To wait without spinning, use a [`crate::wake::Parker`].
//! - **Ownership**: one [`Producer`] (not `Clone`) writes, on one thread at a time. Each
//!   [`Consumer`] owns its position and its cached copy of the cursor; it is `Send` and
//!   any number of them read independently, each seeing every item. A [`Subscriber`]
//!   (`Clone + Send + Sync`) creates consumers on any thread.
//! - **Batches**: [`Producer::push`] writes a slot but does not make it visible;
//!   [`Producer::publish`] makes everything pushed so far visible with one `Release`
//!   store of the cursor. Consumers only read below the cursor, so they see whole
//!   batches. A batch can hold at most `capacity` items: the push that would exceed it
//!   publishes the pending ones first.
//! - **Overload (lapping)**: the producer overwrites the oldest slot whether or not
//!   everyone has read it. A consumer whose next item was overwritten gets
//!   [`RecvError::Lagged`]`(n)`, where `n` is exactly the number of items it skipped, and
//!   is moved to the newest published cursor: a batch boundary (so it resumes on a whole
//!   batch) with a full ring of headroom before it can be lapped again. Everything in
//!   between is counted in `n`, never silently lost: over a consumer's life,
//!   items received + the sum of all `Lagged(n)` = items published since it subscribed.
//!
//! # How a slot is read without a data race
//!
//! Each slot is a stamp plus [`SLOT_WORDS`] payload words, all atomics, so there is no
//! `unsafe` and no race on non-atomic memory. The stamp says which sequence number the
//! slot holds: `0` never written, `2*seq + 1` while `seq` is being written, `2*seq + 2`
//! once it is complete. The writer stores the odd stamp, fences (`Release`), stores the
//! words, then stores the even stamp (`Release`). A reader loads the stamp (`Acquire`)
//! and wants exactly `2*seq + 2`; it loads the words, fences (`Acquire`), and loads the
//! stamp again: if the writer had started on the slot again before any of the word
//! loads, the re-check sees a later stamp and the read is discarded as a lap.
//!
//! Sequence numbers are `u64` from 0; at a billion items a second they last 146 years.
//!
//! ```
//! use tickwire_engine::ring::{ring, RecvError};
//! use tickwire_engine::symbol::SymbolId;
//! use tickwire_engine::tick::{Event, Tick};
//!
//! let (mut producer, subscriber) = ring::<Tick>(1024);
//! let mut consumer = subscriber.subscribe();
//! let quote = Tick {
//!     symbol: SymbolId(1),
//!     ts: 10,
//!     ingest_ts: 11,
//!     event: Event::Quote { bid: 99, bid_size: 1, ask: 101, ask_size: 2 },
//! };
//! producer.push(quote);
//! assert_eq!(consumer.try_recv(), Err(RecvError::Empty)); // pushed, not published
//! producer.publish();
//! assert_eq!(consumer.try_recv(), Ok(quote));
//! ```

use std::marker::PhantomData;

use crossbeam_utils::CachePadded;

use crate::sync::{fence, Arc, AtomicU64, Ordering};
use crate::tick::{Tick, TICK_WORDS};
use crate::wake::Parker;

/// Number of `u64` words in a slot's payload.
pub const SLOT_WORDS: usize = 8;

/// An item the ring can carry: packs into [`SLOT_WORDS`] words and back.
pub trait RingItem: Copy + Send {
    /// Packs the item into the words a slot stores.
    fn to_words(&self) -> [u64; SLOT_WORDS];

    /// Unpacks words made by [`RingItem::to_words`]; `None` for words no item packs into.
    ///
    /// The seqlock rules out torn reads, so `None` means `to_words` made words that
    /// `from_words` rejects (a bug in the impl); the consumer reports that item as
    /// [`RecvError::Lagged`]`(1)` and moves on.
    fn from_words(words: [u64; SLOT_WORDS]) -> Option<Self>;
}

const _: () = assert!(TICK_WORDS == SLOT_WORDS);

impl RingItem for Tick {
    fn to_words(&self) -> [u64; SLOT_WORDS] {
        Tick::to_words(self)
    }

    fn from_words(words: [u64; SLOT_WORDS]) -> Option<Tick> {
        Tick::from_words(words)
    }
}

/// Why [`Consumer::try_recv`] returned no item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// Nothing published since the last item received; try again later (or park).
    #[error("no new item in the ring")]
    Empty,
    /// The producer lapped this consumer: this many items were skipped, and the consumer
    /// now stands at the newest published cursor. Resynchronise from state.
    #[error("lapped by the producer: skipped {0} items")]
    Lagged(u64),
}

/// Creates a ring of `capacity` slots; consumers created from the returned
/// [`Subscriber`] (or [`Producer::subscribe`]) start at the current cursor.
///
/// # Panics
///
/// If `capacity` is not a power of two (1, 2, 4, ...). This is a construction-time
/// configuration error, never a run-time state.
pub fn ring<T: RingItem>(capacity: usize) -> (Producer<T>, Subscriber<T>) {
    assert!(
        capacity.is_power_of_two(),
        "ring capacity must be a power of two, got {capacity}"
    );
    let shared = Arc::new(Shared::new(capacity));
    let producer = Producer {
        shared: Arc::clone(&shared),
        capacity: capacity as u64,
        head: 0,
        published: 0,
        wakers: Vec::new(),
        _item: PhantomData,
    };
    let subscriber = Subscriber {
        shared,
        _item: PhantomData,
    };
    (producer, subscriber)
}

/// Stamp of a slot while `seq` is being written.
fn writing(seq: u64) -> u64 {
    2 * seq + 1
}

/// Stamp of a slot holding the complete item `seq`.
fn complete(seq: u64) -> u64 {
    2 * seq + 2
}

/// One seqlock slot.
struct Slot {
    /// Which seq the slot holds and whether it is whole: 0 never written, `2*seq + 1`
    /// while `seq` is being written, `2*seq + 2` once `seq` is complete. Only grows.
    stamp: AtomicU64,
    /// The item's words; only meaningful when bracketed by two equal even stamps.
    words: [AtomicU64; SLOT_WORDS],
}

impl Slot {
    fn new() -> Slot {
        Slot {
            stamp: AtomicU64::new(0),
            words: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// What the producer and every consumer share.
struct Shared {
    /// Number of items published = seq of the first unpublished item. Only the producer
    /// stores it; on its own cache line because every consumer reads it.
    cursor: CachePadded<AtomicU64>,
    /// `capacity` slots; seq `s` lives in `slots[s & mask]`.
    slots: Box<[Slot]>,
    /// `capacity - 1`.
    mask: u64,
}

impl Shared {
    fn new(capacity: usize) -> Shared {
        Shared {
            cursor: CachePadded::new(AtomicU64::new(0)),
            slots: (0..capacity).map(|_| Slot::new()).collect(),
            mask: capacity as u64 - 1,
        }
    }

    fn slot(&self, seq: u64) -> &Slot {
        &self.slots[(seq & self.mask) as usize]
    }

    fn load_cursor(&self) -> u64 {
        // Acquire: pairs with the Release store in `Producer::publish`, so every slot
        // below the cursor we read is complete and its words visible to us.
        self.cursor.load(Ordering::Acquire)
    }

    /// Writes `words` as item `seq` (seqlock writer side).
    fn write(&self, seq: u64, words: [u64; SLOT_WORDS]) {
        let slot = self.slot(seq);
        // Relaxed: the Release fence below orders it before every word store.
        slot.stamp.store(writing(seq), Ordering::Relaxed);
        // Release: pairs with the Acquire fence in `read`: a reader whose word load sees
        // any store below also sees this odd stamp (or later) on its re-check.
        fence(Ordering::Release);
        for (cell, word) in slot.words.iter().zip(words) {
            // Relaxed: bracketed by the stamp protocol (the fence above, the store below).
            cell.store(word, Ordering::Relaxed);
        }
        // Release: pairs with the Acquire stamp load in `read`: a reader that sees this
        // stamp sees every word stored above.
        slot.stamp.store(complete(seq), Ordering::Release);
    }

    /// Reads item `seq` (seqlock reader side); `None` if the slot no longer holds it
    /// whole, i.e. the producer has lapped the reader.
    fn read(&self, seq: u64) -> Option<[u64; SLOT_WORDS]> {
        let slot = self.slot(seq);
        let expected = complete(seq);
        // Acquire: pairs with the Release stamp store in `write`: seeing `seq` complete
        // means seeing its words. (The cursor's Acquire already covers a published seq;
        // this keeps the seqlock argument local to the slot.)
        if slot.stamp.load(Ordering::Acquire) != expected {
            return None;
        }
        // Relaxed: validated by the fence and re-check below.
        let words = std::array::from_fn(|i| slot.words[i].load(Ordering::Relaxed));
        // Acquire: pairs with the Release fence in `write`: if any load above saw a later
        // write's word, the odd stamp of that write is visible to the re-check below.
        fence(Ordering::Acquire);
        // Relaxed: ordered after the word loads by the Acquire fence above.
        (slot.stamp.load(Ordering::Relaxed) == expected).then_some(words)
    }
}

/// The writing end: one per ring, never waits for a consumer.
pub struct Producer<T> {
    shared: Arc<Shared>,
    /// Number of slots.
    capacity: u64,
    /// Seq of the next item to push; `published <= head <= published + capacity`.
    head: u64,
    /// The cursor as last stored by `publish`.
    published: u64,
    /// Parkers to wake after each publish; fixed once the producer runs.
    wakers: Vec<Arc<Parker>>,
    _item: PhantomData<fn(T)>,
}

impl<T: RingItem> Producer<T> {
    /// Writes `item` into the next slot without making it visible; [`Producer::publish`]
    /// does that for everything pushed so far.
    ///
    /// Never waits: it overwrites the oldest slot, lapping consumers that have not read
    /// it. If `capacity` items are already pending, it publishes them first (a batch
    /// never exceeds the ring, so no pending item is overwritten before it is visible).
    pub fn push(&mut self, item: T) {
        if self.head - self.published == self.capacity {
            self.publish();
        }
        self.shared.write(self.head, item.to_words());
        self.head += 1;
    }

    /// Makes every pushed item visible to consumers with one `Release` store of the
    /// cursor, then wakes registered parkers that are parked. Does nothing if nothing is
    /// pending.
    pub fn publish(&mut self) {
        if self.head == self.published {
            return;
        }
        // Release: pairs with the Acquire cursor load of consumers (`Shared::load_cursor`):
        // every slot below the new cursor is complete before they see it.
        self.shared.cursor.store(self.head, Ordering::Release);
        self.published = self.head;
        if !self.wakers.is_empty() {
            // SeqCst: the Dekker pairing with the SeqCst fence in `Parker::park_until`:
            // either a parking consumer's re-check sees the cursor stored above, or the
            // flag loads below see that it parked.
            fence(Ordering::SeqCst);
            for parker in &self.wakers {
                parker.wake_after_fence();
            }
        }
    }

    /// Registers a parker to wake after each publish. Allocates: call it before the
    /// producer starts.
    pub fn add_waker(&mut self, parker: Arc<Parker>) {
        self.wakers.push(parker);
    }

    /// The published cursor: number of items visible to consumers.
    pub fn cursor(&self) -> u64 {
        self.published
    }

    /// Number of items pushed but not yet published.
    pub fn pending(&self) -> u64 {
        self.head - self.published
    }

    /// Number of slots.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// A consumer that starts at the published cursor (it sees what is published next).
    pub fn subscribe(&self) -> Consumer<T> {
        Consumer::at(Arc::clone(&self.shared), self.published)
    }

    /// A handle that creates consumers on any thread.
    pub fn subscriber(&self) -> Subscriber<T> {
        Subscriber {
            shared: Arc::clone(&self.shared),
            _item: PhantomData,
        }
    }
}

/// Creates consumers of one ring, from any thread.
pub struct Subscriber<T> {
    shared: Arc<Shared>,
    _item: PhantomData<fn() -> T>,
}

impl<T: RingItem> Subscriber<T> {
    /// A consumer that starts at the published cursor (it sees what is published next).
    pub fn subscribe(&self) -> Consumer<T> {
        let cursor = self.shared.load_cursor();
        Consumer::at(Arc::clone(&self.shared), cursor)
    }
}

impl<T> Clone for Subscriber<T> {
    fn clone(&self) -> Subscriber<T> {
        Subscriber {
            shared: Arc::clone(&self.shared),
            _item: PhantomData,
        }
    }
}

/// A reading end: sees every item published after it was created, unless lapped.
pub struct Consumer<T> {
    shared: Arc<Shared>,
    /// Number of slots.
    capacity: u64,
    /// Seq of the next item to read; `next <= cached_cursor`.
    next: u64,
    /// The cursor as last loaded; re-loaded only when `next` catches up with it.
    cached_cursor: u64,
    _item: PhantomData<fn() -> T>,
}

impl<T: RingItem> Consumer<T> {
    fn at(shared: Arc<Shared>, position: u64) -> Consumer<T> {
        Consumer {
            capacity: shared.mask + 1,
            shared,
            next: position,
            cached_cursor: position,
            _item: PhantomData,
        }
    }

    /// The next item, without waiting.
    ///
    /// [`RecvError::Empty`] when nothing new is published. [`RecvError::Lagged`]`(n)`
    /// when the producer overwrote the next item: `n` items were skipped and the
    /// consumer now stands at the newest published cursor.
    pub fn try_recv(&mut self) -> Result<T, RecvError> {
        if self.next == self.cached_cursor {
            self.cached_cursor = self.shared.load_cursor();
            if self.next == self.cached_cursor {
                return Err(RecvError::Empty);
            }
        }
        if self.cached_cursor - self.next > self.capacity {
            // Seq `next + capacity` is published, so it has overwritten `next`.
            return Err(self.lapped());
        }
        let Some(words) = self.shared.read(self.next) else {
            return Err(self.lapped());
        };
        self.next += 1;
        T::from_words(words).ok_or(RecvError::Lagged(1))
    }

    /// Moves to the newest published cursor and reports how far that jumped.
    fn lapped(&mut self) -> RecvError {
        // At least `cached_cursor > next`: the producer only overwrites `next` after
        // publishing it, and this thread already saw a cursor above it.
        let cursor = self.shared.load_cursor();
        let missed = cursor - self.next;
        self.next = cursor;
        self.cached_cursor = cursor;
        RecvError::Lagged(missed)
    }

    /// Items published and not yet received, from a fresh load of the cursor. More than
    /// the capacity means this consumer is lapped (the next `try_recv` says by how much).
    pub fn available(&self) -> u64 {
        self.shared.load_cursor() - self.next
    }

    /// Seq of the next item this consumer will read.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// Moves to `position`, clamped to the published cursor. Moving back is allowed; items
    /// already overwritten are then reported as [`RecvError::Lagged`].
    pub fn skip_to(&mut self, position: u64) {
        self.cached_cursor = self.shared.load_cursor();
        self.next = position.min(self.cached_cursor);
    }

    /// Number of slots.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }
}

impl<T> Clone for Consumer<T> {
    /// A second consumer at the same position.
    fn clone(&self) -> Consumer<T> {
        Consumer {
            shared: Arc::clone(&self.shared),
            capacity: self.capacity,
            next: self.next,
            cached_cursor: self.cached_cursor,
            _item: PhantomData,
        }
    }
}

#[cfg(all(test, not(tickwire_loom)))]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::symbol::SymbolId;
    use crate::tick::Event;

    /// A test item whose eight words all equal its value, so a torn read cannot pass.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Seq(u64);

    impl RingItem for Seq {
        fn to_words(&self) -> [u64; SLOT_WORDS] {
            [self.0; SLOT_WORDS]
        }

        fn from_words(words: [u64; SLOT_WORDS]) -> Option<Seq> {
            assert!(words.iter().all(|&w| w == words[0]), "torn read: {words:?}");
            Some(Seq(words[0]))
        }
    }

    fn recv_all(consumer: &mut Consumer<Seq>) -> Vec<Result<u64, RecvError>> {
        let mut out = Vec::new();
        loop {
            match consumer.try_recv() {
                Err(RecvError::Empty) => return out,
                other => out.push(other.map(|s| s.0)),
            }
        }
    }

    #[test]
    fn items_arrive_in_order_once_published() {
        let (mut producer, subscriber) = ring::<Seq>(8);
        let mut consumer = subscriber.subscribe();
        assert_eq!(consumer.try_recv(), Err(RecvError::Empty));
        for v in 0..5 {
            producer.push(Seq(v));
            producer.publish();
        }
        assert_eq!(recv_all(&mut consumer), (0..5).map(Ok).collect::<Vec<_>>());
        assert_eq!(consumer.position(), 5);
    }

    #[test]
    fn a_batch_becomes_visible_with_one_publish() {
        let (mut producer, _) = ring::<Seq>(8);
        let mut consumer = producer.subscribe();
        for v in 0..3 {
            producer.push(Seq(v));
        }
        assert_eq!((producer.cursor(), producer.pending()), (0, 3));
        assert_eq!(consumer.available(), 0);
        assert_eq!(consumer.try_recv(), Err(RecvError::Empty));
        producer.publish();
        assert_eq!(consumer.available(), 3);
        assert_eq!(recv_all(&mut consumer), vec![Ok(0), Ok(1), Ok(2)]);
    }

    #[test]
    fn a_batch_larger_than_the_ring_is_published_in_ring_sized_pieces() {
        let (mut producer, _) = ring::<Seq>(4);
        let mut consumer = producer.subscribe();
        for v in 0..6 {
            producer.push(Seq(v));
        }
        // The fifth push published the first four before overwriting a slot.
        assert_eq!((producer.cursor(), producer.pending()), (4, 2));
        producer.publish();
        // Items 0 and 1 were overwritten by 4 and 5: the consumer is lapped.
        assert_eq!(consumer.try_recv(), Err(RecvError::Lagged(6)));
    }

    #[test]
    fn a_consumer_subscribes_at_the_cursor() {
        let (mut producer, subscriber) = ring::<Seq>(4);
        producer.push(Seq(0));
        producer.publish();
        let mut late = subscriber.subscribe();
        assert_eq!(late.position(), 1);
        assert_eq!(late.try_recv(), Err(RecvError::Empty));
    }

    #[test]
    fn lapping_reports_the_exact_missed_count_and_lands_on_the_cursor() {
        let (mut producer, _) = ring::<Seq>(4);
        let mut consumer = producer.subscribe();
        for v in 0..10 {
            producer.push(Seq(v));
            producer.publish();
        }
        assert_eq!(consumer.available(), 10);
        assert_eq!(consumer.try_recv(), Err(RecvError::Lagged(10)));
        assert_eq!(consumer.position(), 10);
        assert_eq!(consumer.try_recv(), Err(RecvError::Empty));
        producer.push(Seq(10));
        producer.publish();
        assert_eq!(consumer.try_recv(), Ok(Seq(10)));
    }

    #[test]
    fn an_unpublished_overwrite_is_a_lap_too() {
        let (mut producer, _) = ring::<Seq>(4);
        let mut consumer = producer.subscribe();
        for v in 0..4 {
            producer.push(Seq(v));
        }
        producer.publish();
        assert_eq!(consumer.try_recv(), Ok(Seq(0)));
        assert_eq!(consumer.try_recv(), Ok(Seq(1)));
        // Pending 4, 5, 6 overwrite the slots of 0, 1 and 2, not yet published.
        for v in 4..7 {
            producer.push(Seq(v));
        }
        // Item 2's slot holds 6: skipped 2 and 3, up to the cursor (4).
        assert_eq!(consumer.try_recv(), Err(RecvError::Lagged(2)));
        assert_eq!(consumer.try_recv(), Err(RecvError::Empty));
        producer.publish();
        assert_eq!(recv_all(&mut consumer), vec![Ok(4), Ok(5), Ok(6)]);
    }

    #[test]
    fn skip_to_is_clamped_to_the_cursor_and_may_move_back() {
        let (mut producer, _) = ring::<Seq>(4);
        let mut consumer = producer.subscribe();
        for v in 0..6 {
            producer.push(Seq(v));
            producer.publish();
        }
        consumer.skip_to(100);
        assert_eq!(consumer.position(), 6);
        consumer.skip_to(3);
        assert_eq!(recv_all(&mut consumer), vec![Ok(3), Ok(4), Ok(5)]);
        consumer.skip_to(0);
        assert_eq!(recv_all(&mut consumer), vec![Err(RecvError::Lagged(6))]);
    }

    #[test]
    fn garbage_words_count_as_one_missed_item() {
        #[derive(Clone, Copy, Debug, PartialEq)]
        struct Odd(u64);
        impl RingItem for Odd {
            fn to_words(&self) -> [u64; SLOT_WORDS] {
                [self.0; SLOT_WORDS]
            }
            fn from_words(words: [u64; SLOT_WORDS]) -> Option<Odd> {
                (words[0] % 2 == 1).then_some(Odd(words[0]))
            }
        }
        let (mut producer, _) = ring::<Odd>(4);
        let mut consumer = producer.subscribe();
        for v in 1..4 {
            producer.push(Odd(v));
        }
        producer.publish();
        assert_eq!(consumer.try_recv(), Ok(Odd(1)));
        assert_eq!(consumer.try_recv(), Err(RecvError::Lagged(1)));
        assert_eq!(consumer.try_recv(), Ok(Odd(3)));
    }

    #[test]
    fn ticks_round_trip_through_the_ring() {
        let (mut producer, _) = ring::<Tick>(2);
        let mut consumer = producer.subscribe();
        let tick = Tick {
            symbol: SymbolId(3),
            ts: 1,
            ingest_ts: 2,
            event: Event::Trade {
                seq: 4,
                price: -5,
                size: 6,
                side: None,
                trade_id: 7,
            },
        };
        producer.push(tick);
        producer.publish();
        assert_eq!(consumer.try_recv(), Ok(tick));
    }

    #[test]
    fn ends_are_send_and_the_subscriber_is_sync() {
        fn send<S: Send>() {}
        fn sync<S: Sync>() {}
        send::<Producer<Tick>>();
        send::<Consumer<Tick>>();
        send::<Subscriber<Tick>>();
        sync::<Subscriber<Tick>>();
    }

    /// One producer streams `N` sequential items through a small ring while two consumer
    /// threads read: every item arrives whole and in order, and received + lagged is
    /// exactly `N` for each consumer.
    #[test]
    fn stress_two_consumers_account_for_every_item() {
        const N: u64 = 200_000;
        let (mut producer, subscriber) = ring::<Seq>(1024);
        let deadline = Instant::now() + Duration::from_secs(120);
        let start = std::sync::Barrier::new(3);
        std::thread::scope(|scope| {
            let readers: Vec<_> = (0..2)
                .map(|_| {
                    let mut consumer = subscriber.subscribe();
                    let start = &start;
                    scope.spawn(move || {
                        start.wait();
                        let (mut received, mut lagged) = (0u64, 0u64);
                        let mut last = None;
                        while consumer.position() < N {
                            let position = consumer.position();
                            match consumer.try_recv() {
                                Ok(Seq(v)) => {
                                    assert_eq!(v, position, "item is not the one at its seq");
                                    assert!(last < Some(v), "{v} after {last:?}");
                                    last = Some(v);
                                    received += 1;
                                }
                                Err(RecvError::Lagged(n)) => lagged += n,
                                Err(RecvError::Empty) => {
                                    assert!(Instant::now() < deadline, "stuck at {position}");
                                    std::thread::yield_now();
                                }
                            }
                        }
                        (received, lagged)
                    })
                })
                .collect();
            start.wait();
            // Batches of 1 to 7 items, so the cursor lands on varied slot offsets. The
            // producer never waits for the readers, but yields now and then so that, with
            // three threads on two cores, reads overlap writes instead of being lapped
            // wholesale.
            let mut v = 0;
            while v < N {
                let batch = (v % 7 + 1).min(N - v);
                for _ in 0..batch {
                    producer.push(Seq(v));
                    v += 1;
                }
                producer.publish();
                if v % 512 < batch {
                    std::thread::yield_now();
                }
            }
            for reader in readers {
                let (received, lagged) = reader.join().unwrap();
                eprintln!("consumer: received {received}, lagged {lagged}");
                assert_eq!(received + lagged, N, "received {received}, lagged {lagged}");
                assert!(received > 0, "no read overlapped the writes");
            }
        });
    }

    #[test]
    fn a_parked_consumer_wakes_on_publish() {
        // Big enough that the reader cannot be lapped: this test is about wake-ups.
        let (mut producer, subscriber) = ring::<Seq>(128);
        let parker = Arc::new(Parker::new());
        producer.add_waker(Arc::clone(&parker));
        let mut consumer = subscriber.subscribe();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        std::thread::scope(|scope| {
            let reader = scope.spawn(move || {
                let mut seen = Vec::new();
                runtime.block_on(async {
                    while seen.len() < 100 {
                        let wait = parker.park_until(|| consumer.available() > 0);
                        tokio::time::timeout(Duration::from_secs(30), wait)
                            .await
                            .expect("lost wake-up");
                        while let Ok(Seq(v)) = consumer.try_recv() {
                            seen.push(v);
                        }
                    }
                });
                seen
            });
            for v in 0..100 {
                producer.push(Seq(v));
                producer.publish();
                if v % 10 == 0 {
                    std::thread::yield_now();
                }
            }
            assert_eq!(reader.join().unwrap(), (0..100).collect::<Vec<_>>());
        });
    }
}
