//! The hot path allocates nothing in steady state: publishing ticks into the ring,
//! reading them in a worker, applying them to the symbol state, encoding each event once,
//! queueing the shared frames in two clients' outboxes (two depth groups) and writing them
//! to real loopback sockets with vectored writes. A version 2 client rides along, with
//! a throttle, so that its book is served as merged updates from the change log; and a
//! version 2 trade recovery (`since`) is replayed from the history. A counting allocator
//! counts the allocations made on this thread during the measured stretches.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Read;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tickwire_engine::feed::Publisher;
use tickwire_engine::protocol::command::{Channel, ChannelSet};
use tickwire_engine::protocol::version::Version;
use tickwire_engine::ring::{Consumer, RecvError};
use tickwire_engine::stats::WorkerStats;
use tickwire_engine::symbol::SymbolId;
use tickwire_engine::tick::{Aggressor, BookSide, Tick};
use tickwire_engine::worker::clients::Conn;
use tickwire_engine::worker::core::{ClientKey, Core, Recovery};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; it only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller upholds GlobalAlloc::alloc's contract, which we pass on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from System via this allocator with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: `ptr` came from System via this allocator; the caller upholds the rest.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A loopback connection whose far end is drained by a thread.
fn drained_socket() -> tokio::net::TcpStream {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let client = std::net::TcpStream::connect(addr).unwrap();
    let (server_side, _) = listener.accept().unwrap();
    std::thread::spawn(move || {
        let mut client = client;
        let mut buf = vec![0u8; 1 << 16];
        while matches!(client.read(&mut buf), Ok(n) if n > 0) {}
    });
    server_side.set_nonblocking(true).unwrap();
    tokio::net::TcpStream::from_std(server_side).unwrap()
}

/// One simulated venue message: a trade and a book change on a fixed set of prices.
fn publish_event(p: &mut Publisher, symbol: SymbolId, i: u64) {
    let t0 = 1_763_700_000_000_000_000;
    p.begin_message_at(t0 + i);
    let side = if i.is_multiple_of(2) {
        Aggressor::Buy
    } else {
        Aggressor::Sell
    };
    p.trade(
        symbol,
        Some(t0 + i),
        6_700_000 + (i % 7) as i64,
        1 + (i % 5) as i64,
        Some(side),
        i + 1,
    );
    p.begin_book(symbol, None, false);
    let level = (i % 20) as i64;
    p.level(
        BookSide::Bid,
        6_699_900 - level * 10,
        1 + ((i / 20) % 3) as i64,
    );
    p.level(
        BookSide::Ask,
        6_700_100 + level * 10,
        1 + ((i / 20 + 1) % 3) as i64,
    );
    if i.is_multiple_of(3) {
        p.level(BookSide::Bid, 6_699_900 - ((i + 7) % 20) as i64 * 10, 0);
    }
    p.end_book();
    p.flush();
}

/// The fan-out loop of a worker for `events`, with each client's writer task's part:
/// when a socket is full, wait until it is writable and flush again.
async fn run(
    publisher: &mut Publisher,
    consumer: &mut Consumer<Tick>,
    core: &mut Core,
    keys: &[ClientKey],
    symbol: SymbolId,
    events: std::ops::Range<u64>,
) -> u64 {
    let mut ticks = 0u64;
    for i in events {
        publish_event(publisher, symbol, i);
        loop {
            match consumer.try_recv() {
                Ok(t) => {
                    core.on_tick(&t);
                    ticks += 1;
                }
                Err(RecvError::Empty) => break,
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        core.fire_timers(std::time::Instant::now());
        core.flush_pending();
        for &key in keys {
            common::write_all(core, key).await;
        }
    }
    ticks
}

#[test]
fn steady_state_path_allocates_nothing_per_event() {
    common::runtime().block_on(async {
        let common::Harness {
            symbol,
            mut publisher,
            mut consumer,
            mut core,
            stats: _,
        } = common::harness(2, 4, 1 << 12);
        let mut keys = Vec::new();
        let all = ChannelSet::from_iter([Channel::Ticker, Channel::Trades, Channel::Book]);
        for depth in [10, 5] {
            let key = core.add_client(Rc::new(Conn::new(drained_socket())));
            core.subscribe(key, Some(1), all, &["sim:BTC-USD".to_owned()], depth, 0)
                .unwrap();
            keys.push(key);
        }
        // Version 2, throttled: its book is held and served as merged updates.
        let v2 = core.add_client_speaking(Rc::new(Conn::new(drained_socket())), Version::V2);
        core.subscribe(v2, Some(1), all, &["sim:BTC-USD".to_owned()], 10, 1)
            .unwrap();
        keys.push(v2);
        // Warm-up: books, slabs, outboxes and buffers grow to their working size.
        run(
            &mut publisher,
            &mut consumer,
            &mut core,
            &keys,
            symbol,
            0..5_000,
        )
        .await;
        let frames_before = core.live_frames();
        let merges_before = WorkerStats::get(&core.stats().book_merges);
        let sent_before = WorkerStats::get(&core.stats().messages_sent);
        COUNTING.with(|c| c.set(true));
        let ticks = run(
            &mut publisher,
            &mut consumer,
            &mut core,
            &keys,
            symbol,
            5_000..25_000,
        )
        .await;
        COUNTING.with(|c| c.set(false));
        let sent = WorkerStats::get(&core.stats().messages_sent) - sent_before;
        let allocations = ALLOCATIONS.load(Ordering::Relaxed);
        assert!(
            ticks >= 40_000,
            "the measured stretch carried {ticks} ticks"
        );
        assert_eq!(
            allocations, 0,
            "allocations during {ticks} ticks of steady state"
        );
        let stats = core.stats();
        assert!(WorkerStats::get(&stats.frames_encoded) > 40_000);
        assert!(
            sent > 2 * 40_000,
            "frames were written to both sockets: {sent}"
        );
        // The throttled client's held books count as conflated, and are served as merges
        // or snapshots instead; nothing else is conflated.
        eprintln!(
            "v2 throttled: {} merges, {} snapshots instead, {} snapshots resent",
            WorkerStats::get(&stats.book_merges),
            WorkerStats::get(&stats.book_snapshots_instead),
            WorkerStats::get(&stats.snapshots_resent)
        );
        assert_eq!(
            WorkerStats::get(&stats.snapshots_resent),
            WorkerStats::get(&stats.book_snapshots_instead),
            "only the version 2 client was sent snapshots again"
        );
        assert_eq!(
            WorkerStats::get(&stats.gaps_sent),
            0,
            "every trade delivered"
        );
        assert!(
            core.live_frames() <= frames_before + 64,
            "frames are recycled"
        );
        assert!(
            WorkerStats::get(&stats.book_merges) > merges_before,
            "the throttled version 2 client got merged updates"
        );

        // A replay from the history allocates nothing either, once the recovering
        // client's outbox has grown (a first replay) and its subscription is back.
        // Its socket is read here, a little at a time, so that the replay outlasts the
        // subscribe (which serves what fits at once) and is served as the socket drains.
        let (server, mut reader) = common::pair(Some(4096));
        let recovering = core.add_client_speaking(Rc::new(Conn::new(server)), Version::V2);
        let trades = ChannelSet::from_iter([Channel::Trades]);
        let epoch = core.epoch().to_owned();
        let last = core.symbol_state(symbol).unwrap().trade_seq;
        let since = vec![("sim:BTC-USD".to_owned(), last - 5_000)];
        let replay = |core: &mut Core| {
            core.subscribe_with(
                recovering,
                None,
                trades,
                &["sim:BTC-USD".to_owned()],
                (10, 0),
                Recovery {
                    epoch: Some(&epoch),
                    since: Some(&since),
                },
            )
            .unwrap();
        };
        let mut buf = vec![0u8; 1 << 16];
        let mut drain = async |core: &mut Core| {
            while core.client_marks(recovering) > 0 || core.has_pending(recovering) {
                while matches!(reader.read(&mut buf), Ok(n) if n > 0) {}
                let _ = core.flush_client(recovering).unwrap();
                tokio::task::yield_now().await;
            }
        };
        replay(&mut core);
        drain(&mut core).await;
        core.unsubscribe(recovering, trades, &["sim:BTC-USD".to_owned()]);
        replay(&mut core);
        assert!(
            core.client_marks(recovering) > 0,
            "the replay outlasts the subscribe"
        );
        let replayed_before = WorkerStats::get(&core.stats().trades_replayed);
        COUNTING.with(|c| c.set(true));
        drain(&mut core).await;
        COUNTING.with(|c| c.set(false));
        let replayed = WorkerStats::get(&core.stats().trades_replayed) - replayed_before;
        assert!(
            replayed > 1_000,
            "the replay was served as the socket drained: {replayed}"
        );
        assert_eq!(
            ALLOCATIONS.load(Ordering::Relaxed),
            0,
            "allocations while replaying {replayed} trades"
        );
    });
}
