//! Ring overrun: a worker lapped by its feed's ring asks the feed for its state and every
//! affected subscription resynchronises exactly as a slow client's would — the ticker
//! jumps to the latest, the book gets a fresh snapshot, and the missed trades are one
//! `gap` naming the exact range. The client's bytes are read off a real socket.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test

mod common;

use std::io::Read;
use std::rc::Rc;
use std::sync::mpsc;

use serde_json::Value;
use tickwire_engine::feed::Publisher;
use tickwire_engine::protocol::command::{Channel, ChannelSet};
use tickwire_engine::ring::{Consumer, RecvError};
use tickwire_engine::stats::WorkerStats;
use tickwire_engine::symbol::SymbolId;
use tickwire_engine::tick::{Aggressor, BookSide, Tick};
use tickwire_engine::worker::clients::Conn;
use tickwire_engine::worker::core::{ClientKey, Core};
use tickwire_engine::worker::fanout::GapCause;

/// A loopback socket whose far end a thread parses into JSON messages.
fn client_socket() -> (tokio::net::TcpStream, mpsc::Receiver<Value>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let client = std::net::TcpStream::connect(addr).unwrap();
    let (server_side, _) = listener.accept().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut client = client;
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 1 << 16];
        loop {
            let n = match client.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            // Unmasked server text frames: FIN|text, then 7/16/64-bit length.
            loop {
                if buf.len() < 2 {
                    break;
                }
                let (len, at) = match buf[1] {
                    126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
                    127 if buf.len() >= 10 => (
                        u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
                        10,
                    ),
                    126 | 127 => break,
                    n => (n as usize, 2),
                };
                if buf.len() < at + len {
                    break;
                }
                let v: Value = serde_json::from_slice(&buf[at..at + len]).unwrap();
                buf.drain(..at + len);
                if tx.send(v).is_err() {
                    return;
                }
            }
        }
    });
    server_side.set_nonblocking(true).unwrap();
    (tokio::net::TcpStream::from_std(server_side).unwrap(), rx)
}

fn publish(p: &mut Publisher, symbol: SymbolId, i: u64) {
    p.begin_message();
    p.trade(
        symbol,
        None,
        1_000 + (i % 9) as i64,
        1,
        Some(Aggressor::Buy),
        i + 1,
    );
    p.begin_book(symbol, None, false);
    p.level(BookSide::Bid, 990 - (i % 5) as i64, 1 + (i % 4) as i64);
    p.level(BookSide::Ask, 1_010 + (i % 5) as i64, 1 + (i % 3) as i64);
    p.end_book();
    p.flush();
}

/// Reads the ring into the core like a worker's fan-out loop, then does the client's
/// writer task's part (wait for writability, flush); returns true when lapped.
async fn consume(consumer: &mut Consumer<Tick>, core: &mut Core, key: ClientKey) -> bool {
    let lapped = loop {
        match consumer.try_recv() {
            Ok(t) => core.on_tick(&t),
            Err(RecvError::Empty) => break false,
            Err(RecvError::Lagged(_)) => break true,
        }
    };
    core.flush_pending();
    common::write_all(core, key).await;
    lapped
}

#[test]
fn a_lapped_worker_resyncs_every_subscription_from_the_feed() {
    common::runtime().block_on(async {
        let common::Harness {
            symbol,
            mut publisher,
            mut consumer,
            mut core,
            stats,
        } = common::harness(0, 0, 1024);
        let (socket, messages) = client_socket();
        let key = core.add_client(Rc::new(Conn::new(socket)));
        let all = ChannelSet::from_iter([Channel::Ticker, Channel::Trades, Channel::Book]);
        core.subscribe(key, None, all, &["sim:BTC-USD".to_owned()], 10, 0).unwrap();

        for i in 0..100 {
            publish(&mut publisher, symbol, i);
            assert!(!consume(&mut consumer, &mut core, key).await);
        }
        // The worker stalls while the feed publishes more than the ring holds.
        for i in 100..1_000 {
            publish(&mut publisher, symbol, i);
        }
        assert!(consume(&mut consumer, &mut core, key).await, "the worker was lapped");
        let mut reply = publisher.shared().request_resync();
        publisher.flush(); // the feed serves requests between batches
        let reply = reply.try_recv().expect("served");
        consumer.skip_to(reply.position);
        core.resync(reply, GapCause::Consumer);
        for i in 1_000..1_050 {
            publish(&mut publisher, symbol, i);
            assert!(!consume(&mut consumer, &mut core, key).await);
        }
        assert_eq!(core.symbol_state(symbol), Some(publisher.state(symbol)), "worker state = feed state");

        let truth = publisher.state(symbol).clone();
        let mut next_trade = None;
        let mut gaps = Vec::new();
        let mut snapshots = Vec::new();
        let mut last_ticker = None;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            common::write_all(&mut core, key).await;
            let m = match messages.recv_timeout(std::time::Duration::from_millis(50)) {
                Ok(m) => m,
                Err(_) => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "client converges: next trade {next_trade:?} ticker {last_ticker:?} gaps {gaps:?} snapshots {snapshots:?}; truth trade {} ticker {}",
                        truth.trade_seq,
                        truth.ticker.seq
                    );
                    continue;
                }
            };
            match m["type"].as_str().unwrap() {
                "trade" => {
                    let seq = m["seq"].as_u64().unwrap();
                    if let Some(next) = next_trade {
                        assert_eq!(seq, next, "trades contiguous except across the gap");
                    }
                    next_trade = Some(seq + 1);
                }
                "gap" => {
                    let (from, to) = (m["from_seq"].as_u64().unwrap(), m["to_seq"].as_u64().unwrap());
                    assert_eq!(Some(from), next_trade, "the gap starts after the last trade: {m}");
                    next_trade = Some(to + 1);
                    gaps.push((from, to));
                }
                "book" if m["snapshot"] == Value::Bool(true) => snapshots.push(m["seq"].as_u64().unwrap()),
                "ticker" => last_ticker = Some(m["seq"].as_u64().unwrap()),
                _ => {}
            }
            if next_trade == Some(truth.trade_seq + 1) && last_ticker == Some(truth.ticker.seq) {
                break;
            }
        }
        assert_eq!(gaps.len(), 1, "one gap for the lap: {gaps:?}");
        let (from, to) = gaps[0];
        assert!(from > 1 && to >= 1_000 - 1_024 / 3, "the gap covers what the ring lost: {gaps:?}");
        assert_eq!(snapshots.len(), 2, "the subscribe snapshot and one resync snapshot: {snapshots:?}");
        assert_eq!(WorkerStats::get(&stats.ring_laps), 0, "core-level test: laps are counted by the loop");
        assert_eq!(WorkerStats::get(&stats.gaps_sent), 1);
        assert_eq!(WorkerStats::get(&stats.snapshots_resent), 1);
    });
}
