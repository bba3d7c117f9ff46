//! A version 1 client's messages on a seeded simulator run, time fields aside, are what
//! they were: the golden file `golden/v1_sim_seed7.txt` was written by the engine before
//! protocol version 2 existed, and every change since must leave it as it is.
//!
//! Deterministic by construction: the simulator's generator publishes into a ring, the
//! worker core applies every tick and writes its clients' sockets after each batch, and
//! the test reads everything before the next batch, so nothing is conflated and the
//! grouping of frames never matters (each message is one line). The wall-clock fields
//! `ts` and `ingest_ts` are masked.
//!
//! To rewrite the golden file (only for a change that is meant to alter version 1):
//! `TICKWIRE_BLESS=1 cargo test -p tickwire-feeds --test v1_golden`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test

use std::io::Read;
use std::rc::Rc;
use std::sync::Arc;

use tickwire_engine::config::EngineConfig;
use tickwire_engine::feed::{Feed, Publisher};
use tickwire_engine::protocol::command::{Channel, ChannelSet};
use tickwire_engine::ring::{self, RecvError};
use tickwire_engine::stats::WorkerStats;
use tickwire_engine::symbol::SymbolRegistryBuilder;
use tickwire_engine::worker::clients::Conn;
use tickwire_engine::worker::core::{ClientKey, Core};
use tickwire_feeds::{SimConfig, SimFeed};

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/v1_sim_seed7.txt");

/// A loopback pair: the server side for the core, the client side for the test.
fn pair() -> (tokio::net::TcpStream, std::net::TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    server.set_nonblocking(true).unwrap();
    client.set_nonblocking(true).unwrap();
    (tokio::net::TcpStream::from_std(server).unwrap(), client)
}

/// One test client's socket and the bytes read but not yet a whole frame.
struct Reader {
    name: &'static str,
    socket: std::net::TcpStream,
    bytes: Vec<u8>,
}

impl Reader {
    /// Appends every whole text message readable now to `out`, one line each, masked.
    fn read(&mut self, out: &mut String) {
        let mut buf = [0u8; 65536];
        loop {
            match self.socket.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => self.bytes.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        let mut i = 0;
        let b = &self.bytes;
        while i + 2 <= b.len() {
            let (len, header) = match b[i + 1] & 0x7f {
                126 if i + 4 <= b.len() => (u16::from_be_bytes([b[i + 2], b[i + 3]]) as usize, 4),
                127 if i + 10 <= b.len() => (
                    u64::from_be_bytes(b[i + 2..i + 10].try_into().unwrap()) as usize,
                    10,
                ),
                126 | 127 => break,
                n => (n as usize, 2),
            };
            if i + header + len > b.len() {
                break;
            }
            assert_eq!(b[i] & 0x0f, 1, "a text frame");
            let text = std::str::from_utf8(&b[i + header..i + header + len]).unwrap();
            out.push_str(self.name);
            out.push(' ');
            out.push_str(&mask_times(text));
            out.push('\n');
            i += header + len;
        }
        self.bytes.drain(..i);
    }
}

/// `text` with the digits of every `"ts":` and `"ingest_ts":` field replaced by `T`.
pub fn mask_times(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("ts\":") {
        let (head, tail) = rest.split_at(at + 4);
        out.push_str(head);
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        if head.ends_with("\"ts\":") || head.ends_with("\"ingest_ts\":") {
            out.push('T');
        } else {
            out.push_str(&tail[..digits]);
        }
        rest = &tail[digits..];
    }
    out.push_str(rest);
    out
}

/// The messages two version 1 clients get over a seeded simulator run.
fn transcript() -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut feed = SimFeed::new(SimConfig {
            symbols: 3,
            rate_per_s: 0,
            seed: 7,
            book_levels: 30,
            trades_only: false,
        });
        let mut builder = SymbolRegistryBuilder::new();
        let ids = feed.register(&mut builder).unwrap();
        let registry = Arc::new(builder.build());
        let mut publisher = Publisher::new("sim", ids, registry.len(), ring::ring(1 << 16).0);
        let mut consumer = publisher.subscribe();
        let stats = Arc::new(WorkerStats::default());
        let mut core = Core::new(Arc::new(EngineConfig::default()), registry, stats);

        let mut step = |core: &mut Core, feed: &mut SimFeed, events: u64| {
            feed.generate(&mut publisher, events).unwrap();
            loop {
                match consumer.try_recv() {
                    Ok(t) => core.on_tick(&t),
                    Err(RecvError::Empty) => break,
                    Err(e) => panic!("unexpected {e:?}"),
                }
            }
        };
        // The books fill before anyone subscribes, so the snapshots have levels.
        step(&mut core, &mut feed, 300);

        let all = ChannelSet::from_iter([Channel::Ticker, Channel::Trades, Channel::Book]);
        let book_trades = ChannelSet::from_iter([Channel::Trades, Channel::Book]);
        let names = |n: &[&str]| n.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let mut clients: Vec<(ClientKey, Reader)> = Vec::new();
        for name in ["a", "b"] {
            let (server, socket) = pair();
            let key = core.add_client(Rc::new(Conn::new(server)));
            clients.push((
                key,
                Reader {
                    name,
                    socket,
                    bytes: Vec::new(),
                },
            ));
        }
        let (a, b) = (clients[0].0, clients[1].0);
        core.subscribe(
            a,
            Some(1),
            all,
            &names(&["sim:BTC-USD", "sim:ETH-USD"]),
            5,
            0,
        )
        .unwrap();
        core.subscribe(b, None, book_trades, &names(&["sim:BTC-USD"]), 20, 0)
            .unwrap();
        core.subscribe(b, Some(2), all, &names(&["sim:SOL-USD", "sim:NOPE"]), 1, 0)
            .unwrap();

        let mut out = String::new();
        for round in 0..40 {
            if round == 20 {
                core.unsubscribe(
                    a,
                    ChannelSet::from_iter([Channel::Book]),
                    &names(&["sim:ETH-USD"]),
                );
            }
            step(&mut core, &mut feed, 50);
            core.flush_all();
            for (key, reader) in &mut clients {
                while !core.flush_client(*key).unwrap() {
                    core.conn(*key).unwrap().stream.writable().await.unwrap();
                }
                reader.read(&mut out);
            }
        }
        assert_eq!(
            WorkerStats::get(&core.stats().conflated),
            0,
            "nothing conflated: the transcript is the whole stream"
        );
        out
    })
}

#[test]
fn a_version_1_clients_messages_are_unchanged() {
    let got = transcript();
    if std::env::var_os("TICKWIRE_BLESS").is_some() {
        std::fs::write(GOLDEN, &got).unwrap();
    }
    let want = std::fs::read_to_string(GOLDEN).unwrap();
    assert!(got.lines().count() > 1_000, "a long enough run");
    for (i, (g, w)) in got.lines().zip(want.lines()).enumerate() {
        assert_eq!(g, w, "line {} of {GOLDEN}", i + 1);
    }
    assert_eq!(
        got.lines().count(),
        want.lines().count(),
        "lines in {GOLDEN}"
    );
}

#[test]
fn masking_keeps_everything_but_the_times() {
    assert_eq!(
        mask_times(r#"{"seq":3,"ts":17,"ingest_ts":18,"x":"ts\":"}"#),
        r#"{"seq":3,"ts":T,"ingest_ts":T,"x":"ts\":"}"#
    );
}
