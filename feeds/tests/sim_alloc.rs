//! The sim allocates nothing per event once its books (and the publisher's) have grown
//! to their working size. One test in this binary, so no other test allocates while the
//! counter is read.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use tickwire_engine::feed::{Feed, Publisher};
use tickwire_engine::ring;
use tickwire_engine::symbol::SymbolRegistryBuilder;
use tickwire_feeds::{SimConfig, SimFeed};

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

#[test]
fn steady_state_events_allocate_nothing() {
    let mut feed = SimFeed::new(SimConfig {
        rate_per_s: 0,
        ..SimConfig::default()
    });
    let mut builder = SymbolRegistryBuilder::new();
    let ids = feed.register(&mut builder).expect("register");
    let registry = builder.build();
    // A small ring, so that the interim ring's queue is at its capacity after warm-up.
    let mut publisher = Publisher::new("sim", ids, registry.len(), ring::ring(1 << 12).0);
    feed.generate(&mut publisher, 300_000).expect("warm-up");
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    feed.generate(&mut publisher, 100_000).expect("measured");
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(allocations, 0, "allocations in 100 000 steady-state events");
}
