//! What an idle subscribed connection costs in heap bytes: connections served by the real
//! session path (`session::run` on a worker core, each subscribed to one symbol's trades)
//! are opened after a warm-up, and a counting allocator measures the live heap bytes they
//! hold once every one of them has its `subscribed` reply. It counts everything the
//! engine keeps per connection (its task, socket registration, client slot, subscription
//! and index entries, amortised table growth), not the kernel's socket or the allocator's
//! own slack; `tickwire bench compare`'s scenario S3 measures the process's RSS (its
//! latest figures in `docs/benchmarks.md`; how it got there:
//! `docs/perf-log/2026-12-02-small-connection-s3.md`).
//!
//! `TICKWIRE_HEAP_SIZES=1` prints the size of every allocation (and, negative, every
//! free) that one connection's setup makes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use tickwire_engine::config::EngineConfig;
use tickwire_engine::worker::session::{self, ReadScratch};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static TRACE: AtomicBool = AtomicBool::new(false);
static TRACED: [AtomicIsize; 64] = [const { AtomicIsize::new(0) }; 64];
static TRACED_LEN: AtomicUsize = AtomicUsize::new(0);

fn trace(size: isize) {
    if TRACE.load(Ordering::Relaxed) {
        let i = TRACED_LEN.fetch_add(1, Ordering::Relaxed);
        if let Some(slot) = TRACED.get(i) {
            slot.store(size, Ordering::Relaxed);
        }
    }
}

// SAFETY: forwards every call to the system allocator unchanged; it only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        trace(layout.size() as isize);
        // SAFETY: the caller upholds GlobalAlloc::alloc's contract, which we pass on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        trace(-(layout.size() as isize));
        // SAFETY: `ptr` came from System via this allocator with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        trace(-(layout.size() as isize));
        trace(new_size as isize);
        // SAFETY: `ptr` came from System via this allocator; the caller upholds the rest.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Most heap bytes an idle subscribed connection may hold (the S3 target is 2 KiB of
/// RSS per connection, allocator slack included).
const MAX_BYTES_PER_CONNECTION: isize = 1_152;

/// A masked client text frame.
fn client_text(payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mask = [0x11u8, 0x22, 0x33, 0x44];
    let mut f = vec![0x81, 0x80 | payload.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Opens `n` connections served by `session::run`, each subscribed to trades, and
/// returns the client ends once every one has its `subscribed` reply.
async fn open_subscribed(
    core: &Rc<RefCell<tickwire_engine::worker::core::Core>>,
    scratch: &Rc<ReadScratch>,
    cfg: &Arc<EngineConfig>,
    pairs: Vec<(tokio::net::TcpStream, std::net::TcpStream)>,
    trace_first: bool,
) -> Vec<tokio::net::TcpStream> {
    let subscribe = client_text(
        br#"{"op":"subscribe","id":1,"channels":["trades"],"symbols":["sim:BTC-USD"]}"#,
    );
    let mut clients = Vec::with_capacity(pairs.len());
    for (i, (client, server)) in pairs.into_iter().enumerate() {
        let traced = trace_first && i == 0;
        TRACE.store(traced, Ordering::Relaxed);
        let stream = tokio::net::TcpStream::from_std(server).unwrap();
        drop(tokio::task::spawn_local(session::run(
            core.clone(),
            cfg.clone(),
            scratch.clone(),
            stream,
            Vec::new(),
            None,
            None,
            session::Endpoint::Protocol(tickwire_engine::protocol::version::Version::V1),
        )));
        clients.push(client);
        let c = clients.last_mut().unwrap();
        c.write_all(&subscribe).await.unwrap();
        let mut buf = [0u8; 256];
        let mut got = 0;
        while !buf[..got].windows(12).any(|w| w == b"\"subscribed\"") {
            let n = c.read(&mut buf[got..]).await.unwrap();
            assert!(n > 0, "server closed");
            got += n;
        }
        TRACE.store(false, Ordering::Relaxed);
    }
    clients
}

/// `n` connected loopback pairs: (client, server's std end, non-blocking).
fn socket_pairs(n: usize) -> Vec<(tokio::net::TcpStream, std::net::TcpStream)> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    (0..n)
        .map(|_| {
            let client = std::net::TcpStream::connect(addr).unwrap();
            let (server, _) = listener.accept().unwrap();
            server.set_nonblocking(true).unwrap();
            client.set_nonblocking(true).unwrap();
            (tokio::net::TcpStream::from_std(client).unwrap(), server)
        })
        .collect()
}

#[test]
fn an_idle_subscribed_connection_holds_little_heap() {
    const WARM_UP: usize = 64;
    const MEASURED: usize = 1_000;
    common::runtime().block_on(tokio::task::LocalSet::new().run_until(async {
        let h = common::harness(2, 4, 1024);
        let core = Rc::new(RefCell::new(h.core));
        let cfg = Arc::new(EngineConfig::default());
        let scratch = Rc::new(ReadScratch::new());
        let warm = socket_pairs(WARM_UP);
        let _warm = open_subscribed(&core, &scratch, &cfg, warm, false).await;
        let pairs = socket_pairs(MEASURED);
        let before = LIVE.load(Ordering::Relaxed);
        let trace = std::env::var_os("TICKWIRE_HEAP_SIZES").is_some();
        let clients = open_subscribed(&core, &scratch, &cfg, pairs, trace).await;
        // The client ends were allocated before `before`; the vector holding them now is
        // the test's, not the engine's.
        let test_own = (clients.capacity() * std::mem::size_of::<tokio::net::TcpStream>()) as isize;
        let per = (LIVE.load(Ordering::Relaxed) - before - test_own) / MEASURED as isize;
        if trace {
            let n = TRACED_LEN.load(Ordering::Relaxed).min(TRACED.len());
            let sizes: Vec<isize> = TRACED[..n]
                .iter()
                .map(|s| s.load(Ordering::Relaxed))
                .collect();
            eprintln!("allocations (+) and frees (-) of one connection, bytes: {sizes:?}");
        }
        eprintln!("heap per idle subscribed connection: {per} B");
        assert_eq!(core.borrow().client_keys().len(), WARM_UP + MEASURED);
        assert!(
            per <= MAX_BYTES_PER_CONNECTION,
            "an idle subscribed connection holds {per} B of heap (at most {MAX_BYTES_PER_CONNECTION})"
        );
    }));
}
