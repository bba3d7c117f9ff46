//! Time-driven worker logic on a manual clock: server pings after silence, dead peers
//! closed with 1001, idle readers closed with 1008, throttle intervals. The clock only
//! moves when a test advances it, so nothing here sleeps or depends on the machine's
//! speed; the frames are read off real loopback sockets.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test

mod common;

use common::{frames, pair, settle};

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tickwire_engine::config::EngineConfig;
use tickwire_engine::feed::Publisher;
use tickwire_engine::protocol::command::{Channel, ChannelSet};
use tickwire_engine::ring::{self, Consumer};
use tickwire_engine::stats::WorkerStats;
use tickwire_engine::symbol::{SymbolId, SymbolRegistryBuilder};
use tickwire_engine::tick::{Aggressor, Tick};
use tickwire_engine::worker::clients::Conn;
use tickwire_engine::worker::clock::Clock;
use tickwire_engine::worker::core::{ClientKey, Core};

struct Rig {
    clock: Clock,
    core: Core,
    publisher: Publisher,
    consumer: Consumer<Tick>,
    symbol: SymbolId,
}

fn rig(cfg: EngineConfig) -> Rig {
    let mut b = SymbolRegistryBuilder::new();
    let symbol = b.add("sim:BTC-USD", 2, 4).unwrap();
    let registry = Arc::new(b.build());
    let publisher = Publisher::new("sim", vec![symbol], registry.len(), ring::ring(1 << 12).0);
    let consumer = publisher.subscribe();
    let clock = Clock::manual();
    let core = Core::with_clock(
        Arc::new(cfg),
        registry,
        Arc::new(WorkerStats::default()),
        clock.clone(),
    );
    Rig {
        clock,
        core,
        publisher,
        consumer,
        symbol,
    }
}

fn close_code(frame: &(u8, Vec<u8>)) -> Option<u16> {
    (frame.0 == 0x8).then(|| u16::from_be_bytes([frame.1[0], frame.1[1]]))
}

fn add(core: &mut Core, socket: tokio::net::TcpStream) -> ClientKey {
    core.add_client(Rc::new(Conn::new(socket)))
}

#[test]
fn a_sweep_in_slices_visits_every_client_once() {
    common::runtime().block_on(async {
        let Rig {
            clock, mut core, ..
        } = rig(EngineConfig::default()); // ping after 15 s of silence
        let mut keys = Vec::new();
        let mut peers = Vec::new();
        for _ in 0..7 {
            let (server, peer) = pair(None);
            keys.push(add(&mut core, server));
            peers.push(peer);
        }
        // A free slot in the middle is stepped over, not counted as the end.
        core.remove_client(keys[3]);
        clock.advance(Duration::from_secs(16));
        let now = clock.now();
        // Ten housekeeping ticks per sweep period: one slot a tick for seven slots.
        let slice = tickwire_engine::worker::liveness::sweep_slice(
            core.client_slots(),
            Duration::from_millis(100),
            Duration::from_secs(1),
        );
        assert_eq!(slice, 1);
        let mut cursor = core.sweep_slots(now, 0, 3);
        assert_eq!(cursor, 3);
        settle(&mut core, &keys).await;
        let pinged = |peers: &mut Vec<std::net::TcpStream>| -> Vec<usize> {
            peers.iter_mut().map(|p| frames(p).len()).collect()
        };
        assert_eq!(
            pinged(&mut peers),
            [1, 1, 1, 0, 0, 0, 0],
            "the first slice only"
        );
        while {
            cursor = core.sweep_slots(now, cursor, slice);
            cursor != 0
        } {}
        settle(&mut core, &keys).await;
        assert_eq!(
            pinged(&mut peers),
            [0, 0, 0, 0, 1, 1, 1],
            "the rest, once each; the removed client's slot gets nothing"
        );
    });
}

#[test]
fn silent_clients_are_pinged_then_closed_with_1001_and_any_frame_counts_as_life() {
    common::runtime().block_on(async {
        let cfg = EngineConfig::default(); // ping after 15 s, 1001 after 45 s
        let Rig {
            clock, mut core, ..
        } = rig(cfg);
        let (s1, mut silent) = pair(None);
        let (s2, mut chatty) = pair(None);
        let (k1, k2) = (add(&mut core, s1), add(&mut core, s2));

        clock.advance(Duration::from_secs(14));
        core.sweep(clock.now());
        settle(&mut core, &[k1, k2]).await;
        assert!(
            frames(&mut silent).is_empty(),
            "no ping before the interval"
        );

        clock.advance(Duration::from_secs(2));
        core.sweep(clock.now());
        settle(&mut core, &[k1, k2]).await;
        let got = frames(&mut silent);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].0, got[0].1.as_slice()), (0x9, &b"tickwire"[..]));
        assert_eq!(
            frames(&mut chatty).len(),
            1,
            "the other client is pinged too"
        );

        // One ping per interval, not one per sweep.
        clock.advance(Duration::from_secs(5));
        core.sweep(clock.now());
        settle(&mut core, &[k1, k2]).await;
        assert!(frames(&mut silent).is_empty());

        // The chatty client sends something (a pong, a command: any frame).
        core.heard(k2);
        clock.advance(Duration::from_secs(25)); // 46 s since connect
        core.sweep(clock.now());
        settle(&mut core, &[k1, k2]).await;
        let got = frames(&mut silent);
        assert_eq!(got.last().and_then(close_code), Some(1001), "{got:?}");
        assert!(core.is_closing(k1));
        assert!(!core.is_closing(k2), "heard 25 s ago: alive");
    });
}

/// Publishes `n` trades from seq `from + 1` and runs them through one fan-out pass;
/// `write` says which clients the pass then writes.
fn run_trades(rig: &mut Rig, from: u64, n: u64, write: Write) {
    for i in from..from + n {
        rig.publisher.begin_message();
        rig.publisher.trade(
            rig.symbol,
            None,
            1_000 + (i % 7) as i64,
            1,
            Some(Aggressor::Buy),
            i + 1,
        );
        rig.publisher.flush();
    }
    rig.core.begin_pass();
    while let Ok(t) = rig.consumer.try_recv() {
        rig.core.on_tick(&t);
    }
    match write {
        Write::All => rig.core.flush_pending(),
        Write::Due => rig.core.flush_due(),
    }
}

/// Which clients a pass of [`run_trades`] writes.
#[derive(Clone, Copy)]
enum Write {
    /// Every client that got frames.
    All,
    /// Only those the coalescing window says are due, as the worker's loop does.
    Due,
}

/// Publishes `n` trades and writes every client that got frames.
fn trades(rig: &mut Rig, from: u64, n: u64) {
    run_trades(rig, from, n, Write::All);
}

/// Publishes `n` trades in a pass that writes only the clients that are due.
fn pass(rig: &mut Rig, from: u64, n: u64) {
    run_trades(rig, from, n, Write::Due);
}

#[test]
fn a_client_that_takes_nothing_is_closed_with_1008_at_the_idle_limit_and_not_before() {
    common::runtime().block_on(async {
        let mut rig = rig(EngineConfig::default()); // idle limit 30 s
        let (server, client) = pair(Some(4096));
        let key = add(&mut rig.core, server);
        common::subscribe_trades(&mut rig.core, key);
        // Enough trades to fill both kernel buffers: data is pending, nothing moves.
        trades(&mut rig, 0, 2_000);
        assert!(rig.core.has_pending(key), "the socket is full");
        rig.core.heard(key);
        // A sweep at once, as the worker's once-a-second sweep would: it sees the bytes
        // the peer's kernel took and acknowledged while the buffers filled.
        rig.core.sweep(rig.clock.now());

        rig.clock.advance(Duration::from_secs(29));
        rig.core.heard(key); // alive, but not reading
        rig.core.sweep(rig.clock.now());
        assert!(!rig.core.is_closing(key), "29 s without progress: not yet");
        rig.clock.advance(Duration::from_secs(2));
        rig.core.sweep(rig.clock.now());
        assert!(rig.core.is_closing(key), "31 s without progress: closed");
        assert_eq!(
            WorkerStats::get(&rig.core.stats().closed[5]),
            1,
            "counted as policy (1008)"
        );
        drop(client);
    });
}

#[test]
fn a_throttled_ticker_holds_the_latest_state_until_its_interval_ends() {
    common::runtime().block_on(async {
        let mut rig = rig(EngineConfig::default());
        let (server, mut client) = pair(None);
        let key = add(&mut rig.core, server);
        rig.core
            .subscribe(
                key,
                None,
                ChannelSet::from_iter([Channel::Ticker]),
                &["sim:BTC-USD".to_owned()],
                10,
                200,
            )
            .unwrap();
        settle(&mut rig.core, &[key]).await;
        let first = frames(&mut client);
        assert_eq!(first.len(), 2, "subscribed + ticker snapshot: {first:?}");

        // Ten trades inside the interval: each changes the ticker; none may go yet.
        trades(&mut rig, 0, 10);
        settle(&mut rig.core, &[key]).await;
        assert!(frames(&mut client).is_empty(), "held inside the interval");
        assert_eq!(
            rig.core.next_timer(),
            Some(rig.clock.now() + Duration::from_millis(200))
        );
        rig.clock.advance(Duration::from_millis(199));
        rig.core.fire_timers(rig.clock.now());
        settle(&mut rig.core, &[key]).await;
        assert!(frames(&mut client).is_empty(), "1 ms early: still held");

        rig.clock.advance(Duration::from_millis(1));
        rig.core.fire_timers(rig.clock.now());
        settle(&mut rig.core, &[key]).await;
        let got = frames(&mut client);
        assert_eq!(got.len(), 1, "one ticker at the end of the interval");
        let v: serde_json::Value = serde_json::from_slice(&got[0].1).unwrap();
        let latest = rig.core.symbol_state(rig.symbol).unwrap().ticker.seq;
        assert_eq!(v["type"], "ticker");
        assert_eq!(
            v["seq"].as_u64(),
            Some(latest),
            "the latest state, not a stale one"
        );
    });
}

#[test]
fn a_token_whose_exp_passes_is_closed_with_1008_on_the_worker_clock() {
    common::runtime().block_on(async {
        let Rig {
            clock, mut core, ..
        } = rig(EngineConfig::default());
        let now_s = tickwire_engine::tick::now_ns() / 1_000_000_000;
        let grant = |exp| tickwire_engine::auth::Grant {
            expires_at_s: exp,
            scope: None,
        };
        let (s1, mut expiring) = pair(None);
        let (s2, mut lasting) = pair(None);
        let k1 = core.add_secure_client(Rc::new(Conn::new(s1)), Some(grant(now_s + 10)));
        let k2 = core.add_secure_client(Rc::new(Conn::new(s2)), Some(grant(now_s + 3600)));
        clock.advance(Duration::from_secs(8));
        core.heard(k1);
        core.heard(k2);
        core.sweep(clock.now());
        settle(&mut core, &[k1, k2]).await;
        assert!(!core.is_closing(k1), "exp is still 1-2 s away");
        assert!(frames(&mut expiring).is_empty());

        clock.advance(Duration::from_secs(3));
        core.sweep(clock.now());
        settle(&mut core, &[k1, k2]).await;
        let got = frames(&mut expiring);
        assert_eq!(got.last().and_then(close_code), Some(1008), "{got:?}");
        assert!(got.last().unwrap().1.ends_with(b"token expired"));
        assert!(!core.is_closing(k2), "a later exp stays open");
        assert!(frames(&mut lasting).is_empty());
    });
}

#[test]
fn the_write_window_opens_only_while_the_core_is_busier_than_the_target() {
    use tickwire_engine::worker::busy::BusyMeter;
    use tickwire_engine::worker::flush::{close_within, PERIOD};
    common::runtime().block_on(async {
        let mut rig = rig(EngineConfig::default()); // up to 16 ms, target 70%
        let meter = Arc::new(BusyMeter::new(rig.clock.now()));
        rig.core.set_busy_meter(meter.clone());
        let (server, mut client) = pair(None);
        let key = add(&mut rig.core, server);
        common::subscribe_trades(&mut rig.core, key);
        settle(&mut rig.core, &[key]).await;
        frames(&mut client);
        let mut seq = 0;
        let max = Duration::from_micros(EngineConfig::default().flush_budget_us);

        // Idle: the thread parks 19 ms of every 20. Every pass writes at once.
        for _ in 0..20 {
            meter.park(rig.clock.now());
            rig.clock.advance(PERIOD - Duration::from_millis(1));
            meter.unpark(rig.clock.now());
            rig.clock.advance(Duration::from_millis(1));
            pass(&mut rig, seq, 5);
            seq += 5;
            assert_eq!(rig.core.coalesce_window(), Duration::ZERO);
            assert_eq!(frames(&mut client).len(), 5, "written in the same pass");
        }
        assert_eq!(WorkerStats::get(&rig.core.stats().busy_permille), 50);

        // Saturated: never parked. The window opens, and grows to the maximum only.
        for _ in 0..40 {
            rig.clock.advance(PERIOD);
            pass(&mut rig, seq, 5);
            seq += 5;
            assert!(rig.core.coalesce_window() <= max);
        }
        assert_eq!(rig.core.coalesce_window(), max);
        assert_eq!(WorkerStats::get(&rig.core.stats().busy_permille), 1000);
        assert_eq!(
            WorkerStats::get(&rig.core.stats().coalesce_window_us),
            max.as_micros() as u64
        );
        // Frames now wait for company: written one window after the first was queued.
        // (Start from an empty outbox: at 20 ms a pass and a 16 ms window the client is
        // written every other pass, so the saturated passes may have left frames.)
        rig.core.flush_pending();
        frames(&mut client);
        rig.clock.advance(Duration::from_millis(1));
        let queued = rig.clock.now();
        pass(&mut rig, seq, 3);
        seq += 3;
        assert!(frames(&mut client).is_empty(), "held inside the window");
        assert_eq!(rig.core.flush_deadline(), Some(queued + max));
        rig.clock.advance(max - Duration::from_millis(1));
        pass(&mut rig, seq, 2);
        seq += 2;
        assert!(frames(&mut client).is_empty(), "1 ms early: still held");
        rig.clock.advance(Duration::from_millis(1));
        pass(&mut rig, seq, 0);
        assert_eq!(frames(&mut client).len(), 5, "all of them in one write");

        // The load drops: the window is closed again within the promised time.
        let dropped = rig.clock.now();
        while rig.core.coalesce_window() > Duration::ZERO {
            assert!(rig.clock.now() - dropped <= close_within(max, 0.7));
            meter.park(rig.clock.now());
            rig.clock.advance(PERIOD - Duration::from_millis(2));
            meter.unpark(rig.clock.now());
            rig.clock.advance(Duration::from_millis(2));
            pass(&mut rig, seq, 5);
            seq += 5;
        }
        frames(&mut client);
        pass(&mut rig, seq, 1);
        assert_eq!(frames(&mut client).len(), 1, "written at once again");
    });
}

#[test]
fn a_throttled_v2_book_gets_one_merged_update_at_the_end_of_its_interval() {
    use tickwire_engine::protocol::version::Version;
    use tickwire_engine::tick::BookSide;
    common::runtime().block_on(async {
        let mut rig = rig(EngineConfig::default());
        let book = |rig: &mut Rig, levels: &[(BookSide, i64, i64)]| {
            rig.publisher.begin_message();
            rig.publisher.begin_book(rig.symbol, None, false);
            for &(side, price, size) in levels {
                rig.publisher.level(side, price, size);
            }
            rig.publisher.end_book();
            rig.publisher.flush();
            while let Ok(t) = rig.consumer.try_recv() {
                rig.core.on_tick(&t);
            }
            rig.core.flush_pending();
        };
        let start: Vec<_> = (0..8)
            .flat_map(|i| [(BookSide::Bid, 1_000 - i, 1), (BookSide::Ask, 1_001 + i, 1)])
            .collect();
        book(&mut rig, &start);
        let (server, mut client) = pair(None);
        let key = rig
            .core
            .add_client_speaking(Rc::new(Conn::new(server)), Version::V2);
        let both = ChannelSet::from_iter([Channel::Ticker, Channel::Book]);
        rig.core
            .subscribe(key, None, both, &["sim:BTC-USD".to_owned()], 5, 200)
            .unwrap();
        settle(&mut rig.core, &[key]).await;
        let first = frames(&mut client);
        assert_eq!(
            first.len(),
            3,
            "subscribed, ticker, book snapshot: {first:?}"
        );
        let snapshot: serde_json::Value = serde_json::from_slice(&first[2].1).unwrap();
        let from = snapshot["seq"].as_u64().unwrap();

        // Inside the interval: one level resized, then one in and out, a new best bid
        // (the ticker is marked too), a level deep outside the window.
        book(&mut rig, &[(BookSide::Bid, 998, 7)]);
        book(&mut rig, &[(BookSide::Ask, 1_002, 0)]);
        book(&mut rig, &[(BookSide::Ask, 1_002, 3)]);
        book(&mut rig, &[(BookSide::Bid, 1_000, 0)]);
        book(&mut rig, &[(BookSide::Bid, 990, 4)]);
        settle(&mut rig.core, &[key]).await;
        assert!(frames(&mut client).is_empty(), "held inside the interval");

        rig.clock.advance(Duration::from_millis(200));
        rig.core.fire_timers(rig.clock.now());
        settle(&mut rig.core, &[key]).await;
        let got: Vec<serde_json::Value> = frames(&mut client)
            .iter()
            .map(|f| serde_json::from_slice(&f.1).unwrap())
            .collect();
        let merged = got
            .iter()
            .find(|m| m["type"] == "book")
            .expect("a book message");
        let state = rig.core.symbol_state(rig.symbol).unwrap();
        assert_eq!(
            merged["snapshot"], false,
            "a merged update, not a snapshot: {merged}"
        );
        assert_eq!(merged["prev_seq"].as_u64(), Some(from));
        assert_eq!(merged["seq"].as_u64(), Some(state.book_seq));
        // From the window 10.00..9.96 | 10.01..10.05 to 9.99..9.95 | 10.01..10.05 (10.02
        // back at 3): 10.00 out, 9.98 resized, 9.95 in; 10.02 resized; 9.90 is outside.
        let prices = |side: &str| -> Vec<(f64, f64)> {
            merged[side]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| (l[0].as_f64().unwrap(), l[1].as_f64().unwrap()))
                .collect()
        };
        assert_eq!(
            prices("bids"),
            vec![(10.0, 0.0), (9.98, 0.0007), (9.95, 0.0001)]
        );
        assert_eq!(prices("asks"), vec![(10.02, 0.0003)]);
        assert_eq!(WorkerStats::get(&rig.core.stats().book_merges), 1);
    });
}
