//! The sim's market checked the way a worker sees it: every tick applied to a fresh
//! `SymbolState` per symbol, the invariants asserted after every book event.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tickwire_engine::feed::{Feed, FeedState, Publisher};
use tickwire_engine::ring::{self, Consumer, RecvError};
use tickwire_engine::state::SymbolState;
use tickwire_engine::symbol::{SymbolId, SymbolRegistryBuilder};
use tickwire_engine::tick::{Aggressor, BookSide, Event, LevelFlags, Tick};

use super::{events_due, next_wake, SimConfig, SimFeed, MAX_PACE_NAP, PACE_STEP};

/// Big enough that a test's consumer is never lapped.
const RING_CAPACITY: usize = 1 << 20;
/// Bound on every wait, so a broken feed fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(60);

fn flat_out(symbols: usize) -> SimConfig {
    SimConfig {
        symbols,
        rate_per_s: 0,
        ..SimConfig::default()
    }
}

/// A registered feed and a publisher for it, on a fresh registry.
fn setup(config: SimConfig) -> (SimFeed, Publisher) {
    let mut feed = SimFeed::new(config);
    let mut builder = SymbolRegistryBuilder::new();
    let ids = feed.register(&mut builder).expect("register");
    let registry = builder.build();
    let publisher = Publisher::new("sim", ids, registry.len(), ring::ring(RING_CAPACITY).0);
    (feed, publisher)
}

fn try_drain(consumer: &mut Consumer<Tick>, into: &mut Vec<Tick>) -> bool {
    loop {
        match consumer.try_recv() {
            Ok(tick) => into.push(tick),
            Err(RecvError::Empty) => return true,
            Err(RecvError::Lagged(n)) => panic!("test consumer lapped by {n} ticks"),
        }
    }
}

/// What a run published, and the feed and publisher after it.
struct Run {
    ticks: Vec<Tick>,
    feed: SimFeed,
    publisher: Publisher,
}

/// Runs the feed on its own thread until the test thread has read `min_ticks`, then stops
/// it and reads the rest.
fn run_until(config: SimConfig, min_ticks: usize) -> Run {
    let (mut feed, mut publisher) = setup(config);
    let mut consumer = publisher.subscribe();
    let shutdown = Arc::new(AtomicBool::new(false));
    let feed_thread = thread::spawn({
        let shutdown = Arc::clone(&shutdown);
        move || {
            let result = feed.run(&mut publisher, &shutdown);
            (result, feed, publisher)
        }
    });
    let deadline = Instant::now() + PATIENCE;
    let mut ticks = Vec::with_capacity(min_ticks);
    while ticks.len() < min_ticks {
        try_drain(&mut consumer, &mut ticks);
        assert!(!feed_thread.is_finished(), "the feed stopped on its own");
        assert!(Instant::now() < deadline, "only {} ticks", ticks.len());
        thread::yield_now();
    }
    shutdown.store(true, Ordering::Relaxed);
    let (result, feed, publisher) = feed_thread.join().expect("feed thread panicked");
    result.expect("run");
    try_drain(&mut consumer, &mut ticks);
    assert_eq!(publisher.shared().stats.state(), FeedState::Stopped);
    Run {
        ticks,
        feed,
        publisher,
    }
}

/// What a checked stream held.
#[derive(Debug, Default)]
struct Seen {
    trades: u64,
    book_events: u64,
}

/// Applies every tick to a worker-side state per symbol and asserts the market's
/// invariants; at the end, the worker's states must equal the publisher's and the
/// publisher's books the sim's own.
fn check(run: &Run) -> Seen {
    let market = run.feed.market.as_ref().expect("registered");
    let levels = run.feed.config.book_levels;
    let mut states = vec![SymbolState::default(); market.symbols.len()];
    // After a trade: the level it hit and the size that must be left there.
    let mut after_trade: Vec<Option<(BookSide, i64, i64)>> = vec![None; market.symbols.len()];
    let mut seen = Seen::default();
    for tick in &run.ticks {
        let i = tick.symbol.index();
        let sym = &market.symbols[i];
        let state = &mut states[i];
        match tick.event {
            Event::Trade {
                seq,
                price,
                size,
                side,
                trade_id,
            } => {
                assert!(state.book_seq > 0, "trade before the snapshot: {tick:?}");
                assert!(after_trade[i].is_none(), "two trades in a row: {tick:?}");
                assert_eq!(seq, state.trade_seq + 1, "trade seq gap: {tick:?}");
                assert_eq!(trade_id, seq, "trade ids count from 1: {tick:?}");
                assert!(size > 0 && size % sym.lot == 0, "size: {tick:?}");
                let (book_side, best) = match side {
                    Some(Aggressor::Buy) => (BookSide::Ask, state.book.best_ask()),
                    Some(Aggressor::Sell) => (BookSide::Bid, state.book.best_bid()),
                    None => panic!("trade without aggressor: {tick:?}"),
                };
                let best = best.expect("a trade into an empty side");
                assert_eq!(price, best.price, "trade away from the touch: {tick:?}");
                assert!(size <= best.size, "trade larger than the level: {tick:?}");
                after_trade[i] = Some((book_side, price, best.size - size));
                seen.trades += 1;
            }
            Event::Level {
                seq,
                price,
                size,
                flags,
                ..
            } => {
                assert_eq!(seq, state.book_seq + 1, "book seq gap: {tick:?}");
                let first = state.book_seq == 0 && state.book.bids().is_empty();
                if first && state.book.asks().is_empty() {
                    assert!(flags.contains(LevelFlags::CLEAR), "no snapshot: {tick:?}");
                }
                assert!(price > 0 && price % sym.tick == 0, "price: {tick:?}");
                assert!(size >= 0 && size % sym.lot == 0, "size: {tick:?}");
            }
            Event::Quote { .. } => panic!("the sim publishes no quotes: {tick:?}"),
            Event::Reset => panic!("the sim resets no state: {tick:?}"),
        }
        let done = state.apply(tick).book_done;
        // Also within an event: no book grows past its working size.
        assert!(state.book.bids().len() <= levels && state.book.asks().len() <= levels);
        if done {
            seen.book_events += 1;
            assert_sane_book(state, levels, tick);
            if let Some((side, price, left)) = after_trade[i].take() {
                assert_eq!(state.book.size_at(side, price), left, "after {tick:?}");
            }
        }
    }
    for (i, sym) in market.symbols.iter().enumerate() {
        assert_eq!(sym.id, SymbolId(i as u32));
        assert_eq!(
            &states[i],
            run.publisher.state(sym.id),
            "worker vs publisher"
        );
        assert_eq!(
            &sym.book,
            &run.publisher.state(sym.id).book,
            "sim vs publisher"
        );
    }
    seen
}

fn assert_sane_book(state: &SymbolState, levels: usize, tick: &Tick) {
    let (bids, asks) = (state.book.bids(), state.book.asks());
    assert!(
        (1..=levels).contains(&bids.len()),
        "{} bids at {tick:?}",
        bids.len()
    );
    assert!(
        (1..=levels).contains(&asks.len()),
        "{} asks at {tick:?}",
        asks.len()
    );
    assert!(bids[0].price < asks[0].price, "crossed at {tick:?}");
    assert!(
        bids.iter().chain(asks).all(|l| l.size > 0),
        "empty level at {tick:?}"
    );
}

fn snapshot_ticks(config: &SimConfig) -> usize {
    config.symbols * 2 * config.book_levels
}

fn assert_market_sane(config: SimConfig, events_ticks: usize) {
    let run = run_until(config.clone(), snapshot_ticks(&config) + events_ticks);
    let seen = check(&run);
    assert!(seen.trades > 100, "{seen:?}");
    assert!(seen.book_events > 1_000, "{seen:?}");
}

#[test]
fn one_symbol_market_stays_sane() {
    assert_market_sane(flat_out(1), 20_000);
}

#[test]
fn sixteen_symbol_market_stays_sane() {
    assert_market_sane(flat_out(16), 20_000);
}

#[test]
fn two_hundred_symbol_market_stays_sane() {
    assert_market_sane(flat_out(200), 20_000);
}

#[test]
fn one_level_books_stay_sane() {
    assert_market_sane(
        SimConfig {
            book_levels: 1,
            ..flat_out(4)
        },
        20_000,
    );
}

fn events(run: &Run, count: usize) -> Vec<(SymbolId, Event)> {
    run.ticks
        .iter()
        .take(count)
        .map(|t| (t.symbol, t.event))
        .collect()
}

#[test]
fn same_seed_same_events_other_seed_other_events() {
    let count = snapshot_ticks(&flat_out(16)) + 10_000;
    let seeded = |seed| {
        run_until(
            SimConfig {
                seed,
                ..flat_out(16)
            },
            count,
        )
    };
    let (a, b, c) = (seeded(7), seeded(7), seeded(8));
    assert_eq!(events(&a, count), events(&b, count));
    assert_ne!(events(&a, count), events(&c, count));
}

#[test]
fn names_and_scales() {
    let mut feed = SimFeed::new(SimConfig {
        symbols: 20,
        ..SimConfig::default()
    });
    let mut builder = SymbolRegistryBuilder::new();
    let ids = feed.register(&mut builder).expect("register");
    let registry = builder.build();
    let names: Vec<&str> = ids
        .iter()
        .map(|&id| registry.info(id).name.as_str())
        .collect();
    assert_eq!(names.len(), 20);
    assert_eq!(&names[..3], ["sim:BTC-USD", "sim:ETH-USD", "sim:SOL-USD"]);
    assert!(names.contains(&"sim:DOGE-USD"));
    assert_eq!(
        &names[16..],
        [
            "sim:SIM17-USD",
            "sim:SIM18-USD",
            "sim:SIM19-USD",
            "sim:SIM20-USD"
        ]
    );
    let btc = registry.info(ids[0]);
    assert_eq!((btc.price_scale, btc.size_scale), (2, 8));
    let doge = registry.lookup("sim:DOGE-USD").expect("doge");
    assert_eq!(registry.info(doge).price_scale, 5);
}

#[test]
fn bad_settings_are_refused_with_every_problem_named() {
    let mut feed = SimFeed::new(SimConfig {
        symbols: 0,
        book_levels: 0,
        ..SimConfig::default()
    });
    let err = feed
        .register(&mut SymbolRegistryBuilder::new())
        .expect_err("refused")
        .to_string();
    assert!(
        err.contains("symbols = 0") && err.contains("book_levels = 0"),
        "{err}"
    );
}

#[test]
fn run_before_register_is_an_error() {
    let mut feed = SimFeed::default();
    let mut publisher = Publisher::new("sim", vec![], 0, ring::ring(16).0);
    assert!(feed.run(&mut publisher, &AtomicBool::new(false)).is_err());
    assert_eq!(publisher.shared().stats.state(), FeedState::Stopped);
}

#[test]
fn start_publishes_one_full_book_per_symbol() {
    let config = flat_out(3);
    let (mut feed, mut publisher) = setup(config.clone());
    let mut consumer = publisher.subscribe();
    // Shut down before it starts: `run` publishes the snapshots and returns.
    feed.run(&mut publisher, &AtomicBool::new(true))
        .expect("run");
    let mut ticks = Vec::new();
    try_drain(&mut consumer, &mut ticks);
    assert_eq!(ticks.len(), snapshot_ticks(&config));
    let clears = ticks.iter().filter(
        |t| matches!(t.event, Event::Level { flags, .. } if flags.contains(LevelFlags::CLEAR)),
    );
    assert_eq!(clears.count(), 3);
    check(&Run {
        ticks,
        feed,
        publisher,
    });
}

/// Guards the restart path: a second `run` re-sends full books, which must replace the
/// ones the publisher holds. Fails today: `Publisher::level` compares the levels after a
/// snapshot's first one against the book that the (still held) `CLEAR` tick has not yet
/// cleared, and drops those that match it.
#[test]
fn a_second_run_replaces_the_books() {
    let (mut feed, mut publisher) = setup(flat_out(2));
    let stop = AtomicBool::new(true);
    feed.run(&mut publisher, &stop).expect("run");
    feed.generate(&mut publisher, 1_000).expect("generate");
    feed.run(&mut publisher, &stop).expect("run again");
    let market = feed.market.as_ref().expect("registered");
    for sym in &market.symbols {
        assert_eq!(&sym.book, &publisher.state(sym.id).book);
    }
}

#[test]
fn a_slow_source_sleeps_until_its_next_event() {
    let start = Instant::now();
    // 100/s: the first event is due 10 ms in, the 4th 40 ms in.
    assert_eq!(
        next_wake(start, start, 0, 100),
        start + Duration::from_millis(10)
    );
    let at = start + Duration::from_millis(31);
    assert_eq!(
        next_wake(start, at, 3, 100),
        start + Duration::from_millis(40)
    );
    // At or above one event per step: every step.
    assert_eq!(next_wake(start, start, 0, 1000), start + PACE_STEP);
    assert_eq!(next_wake(start, at, 31_000, 1_000_000), at + PACE_STEP);
    // An event already due (the thread is behind): one step, not a burst.
    assert_eq!(next_wake(start, at, 0, 100), at + PACE_STEP);
    // Far-off events: at most MAX_PACE_NAP, so that shutdown is still seen.
    assert_eq!(next_wake(start, start, 0, 1), start + MAX_PACE_NAP);
    assert_eq!(next_wake(start, start, u64::MAX, 1), start + MAX_PACE_NAP);
}

#[test]
fn events_due_follow_the_rate() {
    let ms = Duration::from_millis;
    for (elapsed, rate, due) in [
        (ms(0), 1_000, 0),
        (ms(1), 1_000, 1),
        (ms(1), 999, 0),
        (ms(1_500), 1_000, 1_500),
        (ms(250), 3, 0),
        (ms(1_000), 0, 0),
        (Duration::from_secs(u64::MAX), u64::MAX, u64::MAX),
    ] {
        assert_eq!(events_due(elapsed, rate), due, "{elapsed:?} at {rate}/s");
    }
}

#[test]
fn paced_run_keeps_to_its_rate() {
    let rate = 2_000;
    let config = SimConfig {
        symbols: 2,
        rate_per_s: rate,
        ..SimConfig::default()
    };
    let (mut feed, mut publisher) = setup(config);
    let shared = Arc::clone(publisher.shared());
    let shutdown = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let feed_thread = thread::spawn({
        let shutdown = Arc::clone(&shutdown);
        move || feed.run(&mut publisher, &shutdown)
    });
    thread::sleep(Duration::from_millis(300));
    assert_eq!(shared.stats.state(), FeedState::Live);
    shutdown.store(true, Ordering::Relaxed);
    feed_thread.join().expect("feed thread").expect("run");
    let elapsed = started.elapsed();
    // Every message but the two snapshots is one event.
    let events = shared.stats.messages.load(Ordering::Relaxed) - 2;
    // The feed's clock started after ours, so it never owes more than this.
    assert!(
        events <= events_due(elapsed, rate),
        "{events} in {elapsed:?}"
    );
    // Loose: a busy machine may delay the thread, but not starve it for the whole run.
    assert!(
        events >= events_due(Duration::from_millis(300), rate) / 4,
        "{events}"
    );
    assert_eq!(shared.stats.state(), FeedState::Stopped);
}

#[test]
fn an_idle_feed_still_serves_resyncs() {
    let (mut feed, mut publisher) = setup(SimConfig {
        symbols: 1,
        rate_per_s: 1,
        ..SimConfig::default()
    });
    let shared = Arc::clone(publisher.shared());
    let shutdown = Arc::new(AtomicBool::new(false));
    let feed_thread = thread::spawn({
        let shutdown = Arc::clone(&shutdown);
        move || feed.run(&mut publisher, &shutdown)
    });
    let deadline = Instant::now() + PATIENCE;
    while shared.stats.state() != FeedState::Live {
        assert!(Instant::now() < deadline, "never went live");
        thread::sleep(Duration::from_millis(1));
    }
    let mut reply = shared.request_resync();
    let asked = Instant::now();
    let reply = loop {
        if let Ok(reply) = reply.try_recv() {
            break reply;
        }
        assert!(Instant::now() < deadline, "resync never served");
        thread::sleep(Duration::from_millis(1));
    };
    shutdown.store(true, Ordering::Relaxed);
    feed_thread.join().expect("feed thread").expect("run");
    assert!(asked.elapsed() < Duration::from_secs(5));
    assert_eq!(reply.states.len(), 1);
    assert!(
        reply.states[0].1.book_seq >= 1,
        "the snapshot is in the state"
    );
}

#[test]
fn trades_only_publishes_nothing_but_contiguous_trades_of_one_symbol() {
    let config = SimConfig {
        symbols: 1,
        trades_only: true,
        ..flat_out(1)
    };
    let snapshot = snapshot_ticks(&config);
    let run = run_until(config, snapshot + 5_000);
    let mut expect_seq = 1;
    for tick in &run.ticks[snapshot..] {
        assert_eq!(tick.symbol.index(), 0);
        match tick.event {
            Event::Trade {
                seq,
                price,
                size,
                side,
                trade_id,
            } => {
                assert_eq!((seq, trade_id), (expect_seq, expect_seq));
                assert!(price > 0 && size > 0 && side.is_some(), "{tick:?}");
                expect_seq += 1;
            }
            // The publisher's ticker follows each trade; nothing of the book moves.
            Event::Level { .. } => panic!("a book event in trades-only mode: {tick:?}"),
            _ => {}
        }
    }
    assert!(expect_seq > 5_000 / 2, "{expect_seq}");
}

#[test]
fn trades_only_needs_one_symbol() {
    let mut feed = SimFeed::new(SimConfig {
        trades_only: true,
        ..SimConfig::default()
    });
    let err = feed
        .register(&mut SymbolRegistryBuilder::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("trades_only"), "{err}");
}
