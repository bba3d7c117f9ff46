//! Version 2 books over a seeded simulator run, through a worker core: a client that
//! reads slowly (4 KiB receive buffer, depth 100, a 16 KiB outbox) holds, at every seq it
//! receives, exactly the book a fast client holds at that seq; every update's `prev_seq`
//! is the seq of the previous book message; and where it is conflated it gets merged
//! updates, not snapshots, at least 90% of the time.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test

use std::collections::HashMap;
use std::io::Read;
use std::rc::Rc;
use std::sync::Arc;

use serde_json::Value;
use tickwire_engine::config::EngineConfig;
use tickwire_engine::feed::{Feed, Publisher};
use tickwire_engine::protocol::command::{Channel, ChannelSet};
use tickwire_engine::protocol::version::Version;
use tickwire_engine::ring::{self, RecvError};
use tickwire_engine::stats::WorkerStats;
use tickwire_engine::symbol::SymbolRegistryBuilder;
use tickwire_engine::worker::clients::Conn;
use tickwire_engine::worker::core::{ClientKey, Core};
use tickwire_feeds::{SimConfig, SimFeed};

const DEPTH: usize = 100;

/// A loopback pair; `rcvbuf` shrinks the client's receive buffer (and the server's send
/// buffer with it).
fn pair(rcvbuf: Option<usize>) -> (tokio::net::TcpStream, std::net::TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    if let Some(bytes) = rcvbuf {
        socket.set_recv_buffer_size(bytes).unwrap();
    }
    socket
        .connect(&listener.local_addr().unwrap().into())
        .unwrap();
    let (server, _) = listener.accept().unwrap();
    if let Some(bytes) = rcvbuf {
        socket2::SockRef::from(&server)
            .set_send_buffer_size(bytes)
            .unwrap();
    }
    server.set_nonblocking(true).unwrap();
    let client: std::net::TcpStream = socket.into();
    client.set_nonblocking(true).unwrap();
    (tokio::net::TcpStream::from_std(server).unwrap(), client)
}

/// One side of a book as a client holds it: (price, size) as the JSON gave them.
type Side = Vec<(f64, f64)>;

/// A test client: its socket, the bytes of a frame split across reads, its books.
struct Reader {
    socket: std::net::TcpStream,
    bytes: Vec<u8>,
    books: HashMap<String, (u64, Side, Side)>,
}

impl Reader {
    fn new(socket: std::net::TcpStream) -> Reader {
        Reader {
            socket,
            bytes: Vec::new(),
            books: HashMap::new(),
        }
    }

    /// Reads up to `limit` bytes, and returns the whole messages they complete.
    fn read(&mut self, limit: usize) -> Vec<Value> {
        let mut buf = vec![0u8; limit.min(1 << 16)];
        let mut left = limit;
        while left > 0 {
            let want = left.min(buf.len());
            match self.socket.read(&mut buf[..want]) {
                Ok(0) => break,
                Ok(n) => {
                    self.bytes.extend_from_slice(&buf[..n]);
                    left -= n;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        let (mut out, mut i, b) = (Vec::new(), 0, &self.bytes);
        while i + 4 <= b.len() {
            let (len, header) = match b[i + 1] & 0x7f {
                126 => (usize::from(u16::from_be_bytes([b[i + 2], b[i + 3]])), 4),
                127 if i + 10 <= b.len() => (
                    u64::from_be_bytes(b[i + 2..i + 10].try_into().unwrap()) as usize,
                    10,
                ),
                127 => break,
                n => (usize::from(n), 2),
            };
            if i + header + len > b.len() {
                break;
            }
            out.push(serde_json::from_slice(&b[i + header..i + header + len]).unwrap());
            i += header + len;
        }
        self.bytes.drain(..i);
        out
    }

    /// Applies a book message; returns (symbol, seq, whether it was an update that
    /// skipped seqs, whether it was a snapshot). Checks `prev_seq`.
    fn apply(&mut self, m: &Value) -> (String, u64, bool, bool) {
        let symbol = m["symbol"].as_str().unwrap().to_owned();
        let seq = m["seq"].as_u64().unwrap();
        let snapshot = m["snapshot"].as_bool().unwrap();
        let levels = |v: &Value| -> Side {
            v.as_array()
                .unwrap()
                .iter()
                .map(|l| (l[0].as_f64().unwrap(), l[1].as_f64().unwrap()))
                .collect()
        };
        let (bids, asks) = (levels(&m["bids"]), levels(&m["asks"]));
        if snapshot {
            assert!(m.get("prev_seq").is_none(), "a snapshot has no prev_seq");
            self.books.insert(symbol.clone(), (seq, bids, asks));
            return (symbol, seq, false, true);
        }
        let book = self
            .books
            .get_mut(&symbol)
            .expect("an update after a snapshot");
        let prev = m["prev_seq"]
            .as_u64()
            .expect("every v2 update has prev_seq");
        assert_eq!(
            prev, book.0,
            "prev_seq is the seq of the previous book message"
        );
        assert!(seq > prev);
        book.0 = seq;
        for (side, changes, bids) in [(&mut book.1, bids, true), (&mut book.2, asks, false)] {
            for (price, size) in changes {
                let at = side.iter().position(|l| l.0 == price);
                match (at, size == 0.0) {
                    (Some(i), true) => {
                        side.remove(i);
                    }
                    (Some(i), false) => side[i].1 = size,
                    (None, true) => panic!("{symbol}@{seq}: removes {price}, not held"),
                    (None, false) => side.push((price, size)),
                }
            }
            side.sort_by(|a, b| {
                if bids {
                    b.0.partial_cmp(&a.0).unwrap()
                } else {
                    a.0.partial_cmp(&b.0).unwrap()
                }
            });
            assert!(side.len() <= DEPTH, "{symbol}@{seq}: within the window");
        }
        (symbol, seq, seq > prev + 1, false)
    }
}

#[test]
fn a_slow_v2_client_keeps_the_exact_book_and_gets_merged_updates() {
    let (stats, merged) = slow_client_run(false);
    // The engine counted what the client got (and perhaps some still in flight).
    assert!(WorkerStats::get(&stats.book_merges) >= merged);
}

#[test]
fn a_v2_client_whose_queue_goes_stale_keeps_the_exact_book() {
    // Queued data older than 1 ms is shed: the book's mark starts from the prev_seq of
    // the oldest frame dropped, and is served as a merge from there.
    let (stats, _) = slow_client_run(true);
    assert!(
        WorkerStats::get(&stats.stale_conflations) > 0,
        "data went stale"
    );
}

/// Runs a fast and a slow version 2 client over a seeded sim run, checking the slow
/// one's book against the fast one's at every seq; `stale`: with a 1 ms staleness limit
/// and time passing between the rounds. Returns the worker's counters and the merged
/// updates the slow client got.
fn slow_client_run(stale: bool) -> (Arc<WorkerStats>, u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut feed = SimFeed::new(SimConfig {
            symbols: 2,
            rate_per_s: 0,
            seed: 11,
            book_levels: 150,
            trades_only: false,
        });
        let mut builder = SymbolRegistryBuilder::new();
        let ids = feed.register(&mut builder).unwrap();
        let registry = Arc::new(builder.build());
        let mut publisher = Publisher::new("sim", ids, registry.len(), ring::ring(1 << 16).0);
        let mut consumer = publisher.subscribe();
        let stats = Arc::new(WorkerStats::default());
        let cfg = EngineConfig {
            outbox_budget_bytes: 16 * 1024,
            staleness_limit_ms: if stale { 1 } else { 500 },
            ..EngineConfig::default()
        };
        let mut core = Core::new(Arc::new(cfg), registry, stats.clone());
        let mut step = |core: &mut Core, events: u64| {
            feed.generate(&mut publisher, events).unwrap();
            loop {
                match consumer.try_recv() {
                    Ok(t) => core.on_tick(&t),
                    Err(RecvError::Empty) => break,
                    Err(e) => panic!("unexpected {e:?}"),
                }
            }
        };
        step(&mut core, 2_000);

        let names = ["sim:BTC-USD".to_owned(), "sim:ETH-USD".to_owned()];
        let book = ChannelSet::from_iter([Channel::Book, Channel::Trades]);
        let join = |core: &mut Core, rcvbuf| -> (ClientKey, Reader) {
            let (server, socket) = pair(rcvbuf);
            let key = core.add_client_speaking(Rc::new(Conn::new(server)), Version::V2);
            core.subscribe(key, Some(1), book, &names, DEPTH as u16, 0).unwrap();
            (key, Reader::new(socket))
        };
        let (fast_key, mut fast) = join(&mut core, None);
        let (slow_key, mut slow) = join(&mut core, Some(4096));

        // The fast client's book at every seq.
        let mut truth: HashMap<(String, u64), (Side, Side)> = HashMap::new();
        let (mut checked, mut merged, mut snapshots) = (0u64, 0u64, 0u64);
        let mut check = |slow: &mut Reader, messages: Vec<Value>, truth: &HashMap<_, _>| {
            for m in messages.iter().filter(|m| m["type"] == "book") {
                let (symbol, seq, skipped, snapshot) = slow.apply(m);
                let (_, bids, asks) = &slow.books[&symbol];
                let want: &(Side, Side) = truth
                    .get(&(symbol.clone(), seq))
                    .expect("the fast client saw that seq");
                assert_eq!((bids, asks), (&want.0, &want.1), "{symbol}@{seq}");
                checked += 1;
                merged += u64::from(skipped);
                snapshots += u64::from(snapshot);
            }
        };
        for round in 0..600 {
            if stale {
                if round % 20 == 0 {
                    // Staleness is a matter of wall-clock time: let 2 ms pass.
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                core.begin_pass();
            }
            step(&mut core, 10);
            core.flush_all();
            loop {
                for m in fast.read(usize::MAX).iter().filter(|m| m["type"] == "book") {
                    let (symbol, seq, skipped, _) = fast.apply(m);
                    assert!(!skipped, "the fast client gets every update");
                    let (_, bids, asks) = &fast.books[&symbol];
                    truth.insert((symbol, seq), (bids.clone(), asks.clone()));
                }
                if core.flush_client(fast_key).unwrap() && !core.has_pending(fast_key) {
                    break;
                }
                tokio::task::yield_now().await;
            }
            // The slow client reads a little each round.
            let messages = slow.read(1024);
            check(&mut slow, messages, &truth);
            let _ = core.flush_client(slow_key).unwrap();
            tokio::task::yield_now().await;
        }
        let conflated_snapshots = snapshots - 2;
        eprintln!(
            "slow client: {checked} book messages checked, {merged} merged updates, {conflated_snapshots} snapshots after the first, stats merges {} snapshots instead {}",
            WorkerStats::get(&stats.book_merges),
            WorkerStats::get(&stats.book_snapshots_instead)
        );
        assert!(checked > 100 && merged > 10, "the slow client was conflated");
        assert!(
            merged * 10 >= (merged + conflated_snapshots) * 9,
            "merged updates at least 90% of the time: {merged} merges, {conflated_snapshots} snapshots"
        );
        (stats, merged)
    })
}
