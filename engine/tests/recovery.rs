//! Version 2 trade recovery in one worker (`protocol.md`, "Epochs and trade recovery"):
//! a `subscribe` with `since` and this engine's `epoch` gets the trades after its seq
//! from the history, then the live ones, with no duplicate and no hole, also while trades
//! keep arriving during the replay and when the replay is larger than the outbox budget;
//! what the history no longer holds is one exact `expired` gap; a wrong or missing epoch
//! replays nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test

mod common;

use std::rc::Rc;

use common::{frames, pair, settle};
use serde_json::Value;
use tickwire_engine::config::EngineConfig;
use tickwire_engine::feed::Publisher;
use tickwire_engine::protocol::command::{Channel, ChannelSet};
use tickwire_engine::protocol::version::Version;
use tickwire_engine::symbol::SymbolId;
use tickwire_engine::tick::Aggressor;
use tickwire_engine::worker::clients::Conn;
use tickwire_engine::worker::core::{ClientKey, Core, Recovery};

const SYMBOL: &str = "sim:BTC-USD";

fn publish_trades(p: &mut Publisher, symbol: SymbolId, n: u64) {
    for i in 0..n {
        p.begin_message();
        p.trade(
            symbol,
            None,
            1_000 + (i % 9) as i64,
            1,
            Some(Aggressor::Buy),
            i,
        );
        p.flush();
    }
}

fn apply(h: &mut common::Harness) {
    h.core.begin_pass();
    while let Ok(t) = h.consumer.try_recv() {
        h.core.on_tick(&t);
    }
    h.core.flush_pending();
}

fn subscribe(core: &mut Core, key: ClientKey, epoch: Option<&str>, since: Option<u64>) {
    let since = since.map(|s| vec![(SYMBOL.to_owned(), s)]);
    core.subscribe_with(
        key,
        Some(1),
        ChannelSet::from_iter([Channel::Trades]),
        &[SYMBOL.to_owned()],
        (10, 0),
        Recovery {
            epoch,
            since: since.as_deref(),
        },
    )
    .unwrap();
}

fn messages(client: &mut std::net::TcpStream) -> Vec<Value> {
    frames(client)
        .iter()
        .map(|(_, p)| serde_json::from_slice(p).unwrap())
        .collect()
}

/// A client's socket read as it comes: frames split across reads are kept for the next.
struct Stream {
    socket: std::net::TcpStream,
    bytes: Vec<u8>,
}

impl Stream {
    fn messages(&mut self) -> Vec<Value> {
        use std::io::Read;
        let mut buf = [0u8; 65536];
        while let Ok(n @ 1..) = self.socket.read(&mut buf) {
            self.bytes.extend_from_slice(&buf[..n]);
        }
        let (frames, used) = common::split_frames(&self.bytes);
        self.bytes.drain(..used);
        frames
            .iter()
            .map(|(_, p)| serde_json::from_slice(p).unwrap())
            .collect()
    }
}

/// What a client's tape says: `t<seq>` per trade, `g<from>-<to>:<reason>` per gap.
fn tape(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .filter_map(|m| match m["type"].as_str().unwrap() {
            "trade" => Some(format!("t{}", m["seq"])),
            "gap" => Some(format!(
                "g{}-{}:{}",
                m["from_seq"],
                m["to_seq"],
                m["reason"].as_str().unwrap()
            )),
            _ => None,
        })
        .collect()
}

fn trades(from: u64, to: u64) -> Vec<String> {
    (from..=to).map(|s| format!("t{s}")).collect()
}

fn v2_client(core: &mut Core, rcvbuf: Option<usize>) -> (ClientKey, std::net::TcpStream) {
    let (server, client) = pair(rcvbuf);
    (
        core.add_client_speaking(Rc::new(Conn::new(server)), Version::V2),
        client,
    )
}

#[test]
fn since_with_the_epoch_replays_the_held_trades_then_the_live_ones() {
    common::runtime().block_on(async {
        let mut h = common::harness(2, 4, 1 << 12);
        publish_trades(&mut h.publisher, h.symbol, 50);
        apply(&mut h);
        let epoch = h.core.epoch().to_owned();
        let (key, mut client) = v2_client(&mut h.core, None);
        subscribe(&mut h.core, key, Some(&epoch), Some(20));
        publish_trades(&mut h.publisher, h.symbol, 10);
        apply(&mut h);
        settle(&mut h.core, &[key]).await;
        let got = messages(&mut client);
        assert_eq!(got[0]["type"], "subscribed");
        assert_eq!(got[0]["epoch"], epoch.as_str());
        assert_eq!(got[0]["recovered"][SYMBOL], true);
        assert_eq!(tape(&got), trades(21, 60));
    });
}

#[test]
fn past_the_history_one_exact_expired_gap_comes_first() {
    common::runtime().block_on(async {
        let cfg = EngineConfig {
            trade_history: 10,
            ..EngineConfig::default()
        };
        let mut h = common::harness_with(2, 4, 1 << 12, cfg);
        publish_trades(&mut h.publisher, h.symbol, 50);
        apply(&mut h);
        let epoch = h.core.epoch().to_owned();
        let (key, mut client) = v2_client(&mut h.core, None);
        subscribe(&mut h.core, key, Some(&epoch), Some(20));
        publish_trades(&mut h.publisher, h.symbol, 5);
        apply(&mut h);
        settle(&mut h.core, &[key]).await;
        let got = messages(&mut client);
        assert_eq!(got[0]["recovered"][SYMBOL], true);
        let mut want = vec!["g21-40:expired".to_owned()];
        want.extend(trades(41, 55));
        assert_eq!(tape(&got), want);

        // No history at all: everything asked for is one expired gap.
        let cfg = EngineConfig {
            trade_history: 0,
            ..EngineConfig::default()
        };
        let mut h = common::harness_with(2, 4, 1 << 12, cfg);
        publish_trades(&mut h.publisher, h.symbol, 30);
        apply(&mut h);
        let epoch = h.core.epoch().to_owned();
        let (key, mut client) = v2_client(&mut h.core, None);
        subscribe(&mut h.core, key, Some(&epoch), Some(0));
        publish_trades(&mut h.publisher, h.symbol, 2);
        apply(&mut h);
        settle(&mut h.core, &[key]).await;
        let mut want = vec!["g1-30:expired".to_owned()];
        want.extend(trades(31, 32));
        assert_eq!(tape(&messages(&mut client)), want);
    });
}

#[test]
fn a_wrong_or_missing_epoch_replays_nothing() {
    common::runtime().block_on(async {
        let mut h = common::harness(2, 4, 1 << 12);
        publish_trades(&mut h.publisher, h.symbol, 30);
        apply(&mut h);
        for epoch in [Some("another-engine"), None] {
            let (key, mut client) = v2_client(&mut h.core, None);
            subscribe(&mut h.core, key, epoch, Some(10));
            settle(&mut h.core, &[key]).await;
            let got = messages(&mut client);
            assert_eq!(got[0]["recovered"][SYMBOL], false, "{epoch:?}");
            assert!(tape(&got).is_empty(), "nothing replayed: {got:?}");
        }
        // Without since there is no `recovered` at all; a version 1 client gets no epoch.
        let (key, mut client) = v2_client(&mut h.core, None);
        subscribe(&mut h.core, key, None, None);
        let (server, mut v1) = pair(None);
        let old = h.core.add_client(Rc::new(Conn::new(server)));
        let epoch = h.core.epoch().to_owned();
        subscribe(&mut h.core, old, Some(&epoch), Some(10));
        settle(&mut h.core, &[key, old]).await;
        let got = messages(&mut client);
        assert!(got[0].get("recovered").is_none() && got[0]["epoch"].is_string());
        let got = messages(&mut v1);
        assert!(got[0].get("epoch").is_none() && got[0].get("recovered").is_none());
        assert!(tape(&got).is_empty(), "version 1 ignores since");
    });
}

#[test]
fn a_replay_larger_than_the_budget_meets_the_live_trades_exactly() {
    common::runtime().block_on(async {
        let cfg = EngineConfig {
            outbox_budget_bytes: 16 * 1024,
            ..EngineConfig::default()
        };
        let mut h = common::harness_with(2, 4, 1 << 14, cfg);
        publish_trades(&mut h.publisher, h.symbol, 3_000);
        apply(&mut h);
        let epoch = h.core.epoch().to_owned();
        // A small receive buffer: the replay waits in the mark, served as room appears,
        // while live trades keep arriving.
        let (key, client) = v2_client(&mut h.core, Some(4096));
        let mut client = Stream {
            socket: client,
            bytes: Vec::new(),
        };
        subscribe(&mut h.core, key, Some(&epoch), Some(100));
        let mut got = Vec::new();
        // What the client's connection task does, with the client reading in between:
        // write what the socket takes (serving the marks as room appears), and let the
        // runtime's reactor see the socket's new room.
        let mut drain = |h: &mut common::Harness, got: &mut Vec<Value>| {
            got.extend(client.messages());
            h.core.flush_client(key).unwrap()
        };
        for _ in 0..40 {
            publish_trades(&mut h.publisher, h.symbol, 25);
            apply(&mut h);
            drain(&mut h, &mut got);
            tokio::task::yield_now().await;
        }
        assert!(h.core.client_marks(key) > 0, "the replay is still going on");
        loop {
            let written = drain(&mut h, &mut got);
            if written && h.core.client_marks(key) == 0 && !h.core.has_pending(key) {
                break;
            }
            tokio::task::yield_now().await;
        }
        got.extend(client.messages());
        assert_eq!(tape(&got), trades(101, 4_000));
    });
}

#[test]
fn a_client_ahead_of_this_worker_gets_no_trade_twice() {
    common::runtime().block_on(async {
        // The client held seq 25 through another worker that had read further: this one
        // has applied 20 so far; its trades up to 25 are the client's already.
        let mut h = common::harness(2, 4, 1 << 12);
        publish_trades(&mut h.publisher, h.symbol, 20);
        apply(&mut h);
        let epoch = h.core.epoch().to_owned();
        let (key, mut client) = v2_client(&mut h.core, None);
        subscribe(&mut h.core, key, Some(&epoch), Some(25));
        for _ in 0..10 {
            publish_trades(&mut h.publisher, h.symbol, 1);
            apply(&mut h);
        }
        settle(&mut h.core, &[key]).await;
        let got = messages(&mut client);
        assert_eq!(got[0]["recovered"][SYMBOL], true);
        assert_eq!(tape(&got), trades(26, 30));
        assert_eq!(h.core.client_marks(key), 0);
    });
}
