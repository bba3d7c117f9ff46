//! The built-in synthetic venue `sim`: a deterministic random market, paced in real time.
//!
//! - **What it makes.** Every symbol has an L2 book of up to `book_levels` levels per side
//!   on its tick grid, never crossed, never with a size of zero or less, never with an
//!   empty side. Each event, for one symbol picked at random (BTC and ETH busier than the
//!   rest), is a book update of one to four levels, a trade at the best bid or ask followed
//!   by the book update it causes, or a move of the mid that shifts the book.
//! - **Determinism.** The sequence of events is a function of [`SimConfig`] alone (seed
//!   included); only its timing and its timestamps depend on the clock.
//! - **Allocation.** [`SimFeed`]'s `register` allocates the symbol table and the books; in
//!   `run`, nothing is allocated per event once the books have grown to their working
//!   size (each event's changes go to one reused scratch vector).
//! - **Blocking.** `run` owns its thread. At a positive rate it generates the events due
//!   in 1 ms steps and sleeps in between: that paces a synthetic source, it waits for no
//!   one. At rate 0 it never sleeps.
//! - **Trades only** ([`SimConfig::trades_only`]): one symbol, `sim:BTC-USD`, whose every
//!   event is one trade at the best bid or ask (the book stays as seeded), so that a
//!   client subscribed to `trades` gets exactly `rate_per_s` trades a second. This is the
//!   stream `tickwire bench compare` serves, the same as its peers' (`bench/peers/`).
//! - **Overload.** When the thread falls more than a second behind its rate (a stalled
//!   machine, a rate beyond what one thread generates), it forgets the backlog instead of
//!   bursting to catch up; the feed's publisher never waits for consumers either way.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::distributions::{Distribution, WeightedIndex};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tickwire_engine::feed::{Feed, FeedError, FeedState, Publisher};
use tickwire_engine::state::Book;
use tickwire_engine::symbol::{SymbolId, SymbolRegistryBuilder};
use tickwire_engine::tick::{Aggressor, BookSide};

/// Most symbols one `sim` feed carries.
pub const MAX_SYMBOLS: usize = 100_000;
/// Most levels per side a `sim` book keeps.
pub const MAX_BOOK_LEVELS: usize = 10_000;

/// Events generated between two flushes when running flat out (rate 0).
const FLAT_OUT_BATCH: u64 = 64;
/// Most events generated between two flushes when paced, so that shutdown and resync
/// requests are still seen every few milliseconds when the thread is behind.
const MAX_PACED_BATCH: u64 = 4_096;
/// Pacing step: the events due are generated, and flushed, once per step.
const PACE_STEP: Duration = Duration::from_millis(1);
/// Longest nap between two steps when the rate is below one event per step: the thread
/// sleeps until its next event is due (not every step, which at 100 events/s would be
/// nine idle wake-ups, and context switches on the workers' core, per event), but wakes
/// at least this often to see shutdown and resync requests.
const MAX_PACE_NAP: Duration = Duration::from_millis(10);

/// Settings of the `sim` venue. Every field has a default ([`SimConfig::default`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimConfig {
    /// Number of instruments, 1 to [`MAX_SYMBOLS`]. The first 16 are named after real
    /// markets (`sim:BTC-USD`, `sim:ETH-USD`, ...), the others `sim:SIM17-USD`,
    /// `sim:SIM18-USD`, ... Default 16.
    pub symbols: usize,
    /// Events per second across all symbols; 0 generates as fast as the thread can.
    /// Default 1000.
    pub rate_per_s: u64,
    /// Seed of the random generator: the same seed and settings give the same events.
    /// Default 1.
    pub seed: u64,
    /// Levels each side of a book keeps at most, 1 to [`MAX_BOOK_LEVELS`]. Default 50.
    pub book_levels: usize,
    /// Every event is one trade of `sim:BTC-USD` and nothing else (no book updates, no
    /// mid moves): the benchmark stream. Needs `symbols` = 1. Default false.
    pub trades_only: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            symbols: 16,
            rate_per_s: 1_000,
            seed: 1,
            book_levels: 50,
            trades_only: false,
        }
    }
}

impl SimConfig {
    /// Checks the settings; the error names every field out of range.
    pub fn validate(&self) -> Result<(), FeedError> {
        let mut problems = Vec::new();
        if !(1..=MAX_SYMBOLS).contains(&self.symbols) {
            problems.push(format!(
                "symbols = {} is outside 1..={MAX_SYMBOLS}",
                self.symbols
            ));
        }
        if !(1..=MAX_BOOK_LEVELS).contains(&self.book_levels) {
            problems.push(format!(
                "book_levels = {} is outside 1..={MAX_BOOK_LEVELS}",
                self.book_levels
            ));
        }
        if self.trades_only && self.symbols != 1 {
            problems.push(format!(
                "trades_only needs symbols = 1, not {}",
                self.symbols
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(FeedError::Config(format!("sim: {}", problems.join("; "))))
        }
    }
}

/// The synthetic venue `sim`: a [`Feed`] that generates a random but plausible market.
///
/// ```
/// use tickwire_engine::feed::Feed;
/// use tickwire_engine::symbol::SymbolRegistryBuilder;
/// use tickwire_feeds::{SimConfig, SimFeed};
///
/// let mut feed = SimFeed::new(SimConfig { symbols: 3, ..SimConfig::default() });
/// let mut symbols = SymbolRegistryBuilder::new();
/// let ids = feed.register(&mut symbols).unwrap();
/// let registry = symbols.build();
/// assert_eq!(registry.info(ids[0]).name, "sim:BTC-USD");
/// ```
#[derive(Debug, Default)]
pub struct SimFeed {
    config: SimConfig,
    market: Option<Market>,
}

impl SimFeed {
    /// A feed with these settings; they are checked by [`Feed::register`].
    pub fn new(config: SimConfig) -> SimFeed {
        SimFeed {
            config,
            market: None,
        }
    }

    /// The settings.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Publishes `events` events at once, flushing every 64, with no pacing and no
    /// snapshot; for benchmarks and tests that want the sim's events without a thread.
    /// Fails when called before [`Feed::register`].
    pub fn generate(&mut self, publisher: &mut Publisher, events: u64) -> Result<(), FeedError> {
        let market = self.market.as_mut().ok_or_else(not_registered)?;
        for done in 0..events {
            market.step(publisher);
            if done % FLAT_OUT_BATCH == FLAT_OUT_BATCH - 1 {
                publisher.flush();
            }
        }
        publisher.flush();
        Ok(())
    }
}

fn not_registered() -> FeedError {
    FeedError::Config("sim: run or generate called before register".to_owned())
}

impl Feed for SimFeed {
    fn name(&self) -> &str {
        "sim"
    }

    fn register(
        &mut self,
        symbols: &mut SymbolRegistryBuilder,
    ) -> Result<Vec<SymbolId>, FeedError> {
        self.config.validate()?;
        let market = Market::new(&self.config, symbols)?;
        let ids = market.symbols.iter().map(|s| s.id).collect();
        self.market = Some(market);
        Ok(ids)
    }

    fn run(&mut self, publisher: &mut Publisher, shutdown: &AtomicBool) -> Result<(), FeedError> {
        let Some(market) = self.market.as_mut() else {
            publisher.shared().stats.set_state(FeedState::Stopped);
            return Err(not_registered());
        };
        market.publish_snapshots(publisher);
        publisher.shared().stats.set_state(FeedState::Live);
        match self.config.rate_per_s {
            0 => run_flat_out(market, publisher, shutdown),
            rate => run_paced(market, publisher, shutdown, rate),
        }
        publisher.shared().stats.set_state(FeedState::Stopped);
        Ok(())
    }
}

// Relaxed loads of `shutdown`: the flag only asks the loop to end; it hands over no data
// that the loop then reads, so it needs no ordering.

fn run_flat_out(market: &mut Market, publisher: &mut Publisher, shutdown: &AtomicBool) {
    while !shutdown.load(Ordering::Relaxed) {
        for _ in 0..FLAT_OUT_BATCH {
            market.step(publisher);
        }
        publisher.flush();
    }
}

fn run_paced(market: &mut Market, publisher: &mut Publisher, shutdown: &AtomicBool, rate: u64) {
    let start = Instant::now();
    let mut done: u64 = 0;
    let mut wake = start;
    while !shutdown.load(Ordering::Relaxed) {
        let due = events_due(start.elapsed(), rate);
        if due.saturating_sub(done) > rate {
            tracing::debug!(
                behind = due - done,
                "sim: more than a second behind its rate, skipping the backlog"
            );
            done = due;
        }
        let batch = due.saturating_sub(done).min(MAX_PACED_BATCH);
        for _ in 0..batch {
            market.step(publisher);
        }
        done += batch;
        // Also when the batch was empty: flushing serves resync requests.
        publisher.flush();
        wake = next_wake(start, wake, done, rate);
        let now = Instant::now();
        match wake.checked_duration_since(now) {
            Some(nap) if !nap.is_zero() => std::thread::sleep(nap),
            // Behind: go on at once, and step from now rather than bursting.
            _ => wake = now,
        }
    }
}

/// When a paced source that has made `done` events wakes next: one step after `wake`, or
/// later when its next event falls due later (at most [`MAX_PACE_NAP`] after `wake`).
fn next_wake(start: Instant, wake: Instant, done: u64, rate_per_s: u64) -> Instant {
    let step = wake + PACE_STEP;
    if rate_per_s == 0 {
        return step;
    }
    // The first instant at which `events_due` reaches `done + 1`.
    let due_ns = (u128::from(done) + 1)
        .saturating_mul(1_000_000_000)
        .div_ceil(u128::from(rate_per_s));
    let latest = wake + MAX_PACE_NAP;
    let due = u64::try_from(due_ns)
        .ok()
        .and_then(|ns| start.checked_add(Duration::from_nanos(ns)))
        .unwrap_or(latest);
    due.clamp(step, latest)
}

/// Events a source running at `rate_per_s` owes `elapsed` after its start.
fn events_due(elapsed: Duration, rate_per_s: u64) -> u64 {
    let due = elapsed.as_nanos().saturating_mul(u128::from(rate_per_s)) / 1_000_000_000;
    u64::try_from(due).unwrap_or(u64::MAX)
}

/// A named instrument: prices in mantissas at `price_scale`, sizes at `size_scale`.
struct Preset {
    native: &'static str,
    price_scale: u8,
    /// Price mantissa of one tick.
    tick: i64,
    /// Start price mantissa (a multiple of `tick`).
    start: i64,
    size_scale: u8,
    /// Size mantissa of one lot: every size is a multiple.
    lot: i64,
    /// Lots in a typical resting order.
    typical_lots: i64,
    /// Share of the events, relative to the other symbols.
    weight: u32,
}

#[rustfmt::skip]
const PRESETS: [Preset; 16] = [
    // 67000.00 by 0.10; lots of 0.0001 BTC, typically 0.25.
    Preset { native: "BTC-USD", price_scale: 2, tick: 10, start: 6_700_000, size_scale: 8, lot: 10_000, typical_lots: 2_500, weight: 8 },
    Preset { native: "ETH-USD", price_scale: 2, tick: 1, start: 350_000, size_scale: 8, lot: 100_000, typical_lots: 2_000, weight: 6 },
    Preset { native: "SOL-USD", price_scale: 2, tick: 1, start: 15_000, size_scale: 3, lot: 10, typical_lots: 4_000, weight: 4 },
    Preset { native: "XRP-USD", price_scale: 4, tick: 1, start: 5_200, size_scale: 2, lot: 100, typical_lots: 5_000, weight: 3 },
    Preset { native: "ADA-USD", price_scale: 4, tick: 1, start: 4_500, size_scale: 2, lot: 100, typical_lots: 8_000, weight: 2 },
    Preset { native: "DOGE-USD", price_scale: 5, tick: 1, start: 15_000, size_scale: 1, lot: 10, typical_lots: 30_000, weight: 3 },
    Preset { native: "AVAX-USD", price_scale: 2, tick: 1, start: 3_500, size_scale: 4, lot: 100, typical_lots: 5_000, weight: 2 },
    Preset { native: "LINK-USD", price_scale: 3, tick: 1, start: 14_500, size_scale: 2, lot: 1, typical_lots: 10_000, weight: 2 },
    Preset { native: "DOT-USD", price_scale: 3, tick: 1, start: 7_200, size_scale: 2, lot: 1, typical_lots: 15_000, weight: 2 },
    Preset { native: "LTC-USD", price_scale: 2, tick: 1, start: 8_000, size_scale: 8, lot: 1_000_000, typical_lots: 2_000, weight: 2 },
    Preset { native: "BCH-USD", price_scale: 2, tick: 1, start: 45_000, size_scale: 8, lot: 1_000_000, typical_lots: 500, weight: 2 },
    Preset { native: "MATIC-USD", price_scale: 4, tick: 1, start: 7_000, size_scale: 1, lot: 1, typical_lots: 20_000, weight: 1 },
    Preset { native: "UNI-USD", price_scale: 3, tick: 1, start: 9_500, size_scale: 2, lot: 1, typical_lots: 10_000, weight: 1 },
    Preset { native: "ATOM-USD", price_scale: 3, tick: 1, start: 8_500, size_scale: 2, lot: 1, typical_lots: 10_000, weight: 1 },
    Preset { native: "XLM-USD", price_scale: 6, tick: 1, start: 110_000, size_scale: 0, lot: 1, typical_lots: 20_000, weight: 1 },
    Preset { native: "ETC-USD", price_scale: 2, tick: 1, start: 2_700, size_scale: 4, lot: 100, typical_lots: 5_000, weight: 1 },
];

/// One symbol of the simulated market. Prices are handled as tick indices (price =
/// index × `tick`), so the grid holds by construction.
#[derive(Debug)]
struct SimSymbol {
    id: SymbolId,
    tick: i64,
    lot: i64,
    typical_lots: i64,
    /// The mid never walks below this tick index (a tenth of the start) ...
    floor_idx: i64,
    /// ... nor above this one (ten times the start).
    ceil_idx: i64,
    /// Mid tick index after the last event; the fallback reference of an empty book.
    anchor_idx: i64,
    book: Book,
    next_trade_id: u64,
}

/// One changed level, as published: size 0 removes it.
#[derive(Clone, Copy, Debug)]
struct Change {
    side: BookSide,
    price: i64,
    size: i64,
}

/// A trade an event made, published before its book update.
#[derive(Clone, Copy, Debug)]
struct Trade {
    price: i64,
    size: i64,
    aggressor: Aggressor,
    trade_id: u64,
}

#[derive(Debug)]
struct Market {
    rng: SmallRng,
    symbols: Vec<SimSymbol>,
    pick: WeightedIndex<u32>,
    levels: usize,
    /// Scratch: the changes of the event being generated.
    changes: Vec<Change>,
    /// Every event is a trade of the first symbol, the book left alone.
    trades_only: bool,
}

impl Market {
    fn new(config: &SimConfig, registry: &mut SymbolRegistryBuilder) -> Result<Market, FeedError> {
        let mut rng = SmallRng::seed_from_u64(config.seed);
        let mut symbols = Vec::with_capacity(config.symbols);
        let mut weights = Vec::with_capacity(config.symbols);
        // Enough for the largest event (a 25-tick mid move) without growing.
        let mut changes = Vec::with_capacity(256);
        for n in 0..config.symbols {
            let (name, price_scale, size_scale, tick, start, lot, typical_lots, weight) =
                match PRESETS.get(n) {
                    Some(p) => (
                        format!("sim:{}", p.native),
                        p.price_scale,
                        p.size_scale,
                        p.tick,
                        p.start,
                        p.lot,
                        p.typical_lots,
                        p.weight,
                    ),
                    // Beyond the presets: a price of 10 000 to 2 000 000 ticks, so the
                    // book always fits above zero.
                    None => (
                        format!("sim:SIM{}-USD", n + 1),
                        rng.gen_range(2..=5),
                        rng.gen_range(0..=4),
                        1,
                        rng.gen_range(10_000..=2_000_000),
                        1,
                        rng.gen_range(10..=10_000),
                        1,
                    ),
                };
            let id = registry.add(&name, price_scale, size_scale)?;
            let start_idx = start / tick;
            let mut sym = SimSymbol {
                id,
                tick,
                lot,
                typical_lots,
                floor_idx: (start_idx / 10).max(1),
                ceil_idx: start_idx.saturating_mul(10),
                anchor_idx: start_idx,
                book: Book::new(),
                next_trade_id: 1,
            };
            Step {
                rng: &mut rng,
                sym: &mut sym,
                changes: &mut changes,
                levels: config.book_levels,
                trade: None,
            }
            .seed_book();
            changes.clear();
            symbols.push(sym);
            weights.push(weight);
        }
        let pick = WeightedIndex::new(&weights)
            .map_err(|e| FeedError::Config(format!("sim: symbol weights: {e}")))?;
        Ok(Market {
            rng,
            symbols,
            pick,
            levels: config.book_levels,
            changes,
            trades_only: config.trades_only,
        })
    }

    /// One full book per symbol, each its own venue message, flushed one by one.
    fn publish_snapshots(&self, publisher: &mut Publisher) {
        for sym in &self.symbols {
            let ts = publisher.begin_message();
            publisher.begin_book(sym.id, Some(ts), true);
            for side in [BookSide::Bid, BookSide::Ask] {
                for level in sym.book.side(side) {
                    publisher.level(side, level.price, level.size);
                }
            }
            publisher.end_book();
            publisher.flush();
        }
    }

    /// Generates and publishes one event (not flushed).
    fn step(&mut self, publisher: &mut Publisher) {
        if self.trades_only {
            return self.trade_only_step(publisher);
        }
        let Some(sym) = self.symbols.get_mut(self.pick.sample(&mut self.rng)) else {
            return;
        };
        self.changes.clear();
        let mut step = Step {
            rng: &mut self.rng,
            sym,
            changes: &mut self.changes,
            levels: self.levels,
            trade: None,
        };
        step.event();
        let (id, trade) = (step.sym.id, step.trade);
        let ts = Some(publisher.begin_message());
        if let Some(t) = trade {
            publisher.trade(id, ts, t.price, t.size, Some(t.aggressor), t.trade_id);
        }
        if !self.changes.is_empty() {
            publisher.begin_book(id, ts, false);
            for c in &self.changes {
                publisher.level(c.side, c.price, c.size);
            }
            publisher.end_book();
        }
    }
}

impl Market {
    /// One trade of the first symbol at its best bid or ask, a size of one lot to the
    /// typical size (at most the level's), the book unchanged.
    fn trade_only_step(&mut self, publisher: &mut Publisher) {
        let Some(sym) = self.symbols.first_mut() else {
            return;
        };
        let aggressor = if self.rng.gen() {
            Aggressor::Buy
        } else {
            Aggressor::Sell
        };
        let side = match aggressor {
            Aggressor::Buy => BookSide::Ask,
            Aggressor::Sell => BookSide::Bid,
        };
        let Some(top) = sym.book.side(side).first().copied() else {
            return;
        };
        let lots = self.rng.gen_range(1..=sym.typical_lots.max(1));
        let size = lots.saturating_mul(sym.lot).min(top.size).max(1);
        let trade_id = sym.next_trade_id;
        sym.next_trade_id = trade_id.saturating_add(1);
        let ts = Some(publisher.begin_message());
        publisher.trade(sym.id, ts, top.price, size, Some(aggressor), trade_id);
    }
}

/// The direction away from the touch: down for bids, up for asks.
fn away(side: BookSide) -> i64 {
    match side {
        BookSide::Bid => -1,
        BookSide::Ask => 1,
    }
}

fn opposite(side: BookSide) -> BookSide {
    match side {
        BookSide::Bid => BookSide::Ask,
        BookSide::Ask => BookSide::Bid,
    }
}

/// Generation of one event of one symbol: changes its book and records every change.
struct Step<'a> {
    rng: &'a mut SmallRng,
    sym: &'a mut SimSymbol,
    changes: &'a mut Vec<Change>,
    levels: usize,
    trade: Option<Trade>,
}

impl Step<'_> {
    fn event(&mut self) {
        match self.rng.gen_range(0..100) {
            0..=59 => self.book_update(),
            60..=84 => self.trade(),
            _ => self.mid_move(),
        }
        self.trim();
        self.ensure_two_sided();
        if let (Some(bid), Some(ask)) = (self.best(BookSide::Bid), self.best(BookSide::Ask)) {
            self.sym.anchor_idx = bid + (ask - bid) / 2;
        }
    }

    /// The initial book: a spread of one to three ticks around the start price, levels
    /// one to five ticks apart.
    fn seed_book(&mut self) {
        let bid = self.sym.anchor_idx - self.rng.gen_range(0..=1);
        let ask = bid + self.rng.gen_range(1..=3);
        for (side, top) in [(BookSide::Bid, bid), (BookSide::Ask, ask)] {
            let mut idx = top;
            for _ in 0..self.levels {
                let size = self.size();
                self.set(side, idx, size);
                idx += away(side) * self.gap();
            }
        }
    }

    // ---- the three kinds of event ----

    /// One to four levels added, removed or resized.
    fn book_update(&mut self) {
        for _ in 0..self.rng.gen_range(1..=4) {
            let side = if self.rng.gen() {
                BookSide::Bid
            } else {
                BookSide::Ask
            };
            let len = self.sym.book.len(side);
            match self.rng.gen_range(0..10) {
                _ if len == 0 => self.add_level(side),
                0..=2 => self.add_level(side),
                3..=4 if len > 1 => self.remove_level(side),
                _ => self.modify_level(side),
            }
        }
    }

    /// A market order against the best level, then that level reduced or taken out.
    fn trade(&mut self) {
        let aggressor = if self.rng.gen() {
            Aggressor::Buy
        } else {
            Aggressor::Sell
        };
        let side = match aggressor {
            Aggressor::Buy => BookSide::Ask,
            Aggressor::Sell => BookSide::Bid,
        };
        let Some(top) = self.sym.book.side(side).first().copied() else {
            return self.book_update();
        };
        let lots = (top.size / self.sym.lot).max(1);
        let take = if self.rng.gen_ratio(1, 4) {
            lots
        } else {
            self.rng.gen_range(1..=lots.min(self.sym.typical_lots))
        };
        let size = take.saturating_mul(self.sym.lot).min(top.size);
        let trade_id = self.sym.next_trade_id;
        self.sym.next_trade_id = trade_id.saturating_add(1);
        self.trade = Some(Trade {
            price: top.price,
            size,
            aggressor,
            trade_id,
        });
        let idx = top.price / self.sym.tick;
        self.set(side, idx, top.size - size);
        if self.sym.book.len(side) == 0 {
            // The side was one level deep: the next order rests behind the traded price.
            let (gap, size) = (self.gap(), self.size());
            self.add(side, idx + away(side) * gap, size);
        } else if self.sym.book.len(side) < self.levels && self.rng.gen() {
            self.add_deep(side);
        }
    }

    /// The mid moves a few ticks (now and then up to 25): the moving side gets new levels
    /// up to the new touch, the other side loses the levels that would cross and gets as
    /// many back at its far end.
    fn mid_move(&mut self) {
        let ticks = if self.rng.gen_ratio(1, 20) {
            self.rng.gen_range(5..=25)
        } else {
            self.rng.gen_range(1..=3)
        };
        let (bid, ask) = (self.reference(BookSide::Bid), self.reference(BookSide::Ask));
        let mut up: bool = self.rng.gen();
        // The walk reflects off its floor and ceiling.
        if !up && ask - ticks < self.sym.floor_idx {
            up = true;
        } else if up && bid + ticks > self.sym.ceil_idx {
            up = false;
        }
        let (mover, from) = if up {
            (BookSide::Bid, bid)
        } else {
            (BookSide::Ask, ask)
        };
        let other = opposite(mover);
        // Towards the other side.
        let dir = -away(mover);
        let touch = from + dir * ticks;
        let mut crossed = 0;
        while let Some(o) = self.best(other) {
            if (o - touch) * dir > 0 {
                break;
            }
            self.set(other, o, 0);
            crossed += 1;
        }
        for k in 1..ticks {
            if self.rng.gen() {
                let size = self.size();
                self.add(mover, from + dir * k, size);
            }
        }
        let size = self.size();
        self.add(mover, touch, size);
        // Keep the spread tight: a fresh best on the other side within two ticks.
        let tight = matches!(self.best(other), Some(o) if (o - touch) * dir <= 3);
        if !tight {
            let (gap, size) = (self.rng.gen_range(1..=2), self.size());
            self.add(other, touch + dir * gap, size);
        }
        for _ in 0..crossed {
            self.add_deep(other);
        }
    }

    // ---- level changes ----

    /// A new level behind the touch (rarely, inside a wide spread); on a full side or an
    /// occupied price, a resize instead.
    fn add_level(&mut self, side: BookSide) {
        let idx = match (self.best(BookSide::Bid), self.best(BookSide::Ask)) {
            (Some(bid), Some(ask)) if ask - bid > 1 && self.rng.gen_ratio(1, 4) => match side {
                BookSide::Bid => bid + 1,
                BookSide::Ask => ask - 1,
            },
            _ => {
                let span = i64::try_from(self.levels)
                    .unwrap_or(i64::MAX)
                    .saturating_mul(2)
                    .max(4);
                let depth = self
                    .rng
                    .gen_range(1..=span)
                    .min(self.rng.gen_range(1..=span));
                self.reference(side) + away(side) * depth
            }
        };
        let occupied = self
            .sym
            .book
            .size_at(side, idx.saturating_mul(self.sym.tick))
            > 0;
        let size = self.size();
        if occupied || !self.add(side, idx, size) {
            self.modify_level(side);
        }
    }

    /// A level one to five ticks behind the far end of `side`.
    fn add_deep(&mut self, side: BookSide) {
        if let Some(worst) = self.worst(side) {
            let (gap, size) = (self.gap(), self.size());
            self.add(side, worst + away(side) * gap, size);
        }
    }

    /// A level, likely near the touch, resized to a different size.
    fn modify_level(&mut self, side: BookSide) {
        let len = self.sym.book.len(side);
        if len == 0 {
            return;
        }
        let i = self.rng.gen_range(0..len).min(self.rng.gen_range(0..len));
        let Some(level) = self.sym.book.side(side).get(i).copied() else {
            return;
        };
        let lots = level.size / self.sym.lot;
        let size = if lots > 1 && self.rng.gen() {
            self.rng.gen_range(1..lots) * self.sym.lot
        } else {
            level.size.saturating_add(self.size())
        };
        self.set(side, level.price / self.sym.tick, size);
    }

    /// Any level of `side` cancelled.
    fn remove_level(&mut self, side: BookSide) {
        let len = self.sym.book.len(side);
        if len == 0 {
            return;
        }
        let i = self.rng.gen_range(0..len);
        if let Some(level) = self.sym.book.side(side).get(i).copied() {
            self.set(side, level.price / self.sym.tick, 0);
        }
    }

    /// Drops the far levels beyond `levels` per side (a safety net: `add` keeps to it).
    fn trim(&mut self) {
        for side in [BookSide::Bid, BookSide::Ask] {
            while self.sym.book.len(side) > self.levels {
                let Some(worst) = self.worst(side) else {
                    break;
                };
                if !self.set(side, worst, 0) {
                    break;
                }
            }
        }
    }

    /// Refills an empty side next to the other one (or both around the last mid).
    fn ensure_two_sided(&mut self) {
        for side in [BookSide::Bid, BookSide::Ask] {
            if self.sym.book.len(side) == 0 {
                let (gap, size) = (self.rng.gen_range(1..=2), self.size());
                let idx = match self.best(opposite(side)) {
                    Some(other) => other + away(side) * gap,
                    None => self.sym.anchor_idx + away(side) * gap,
                };
                self.add(side, idx, size);
            }
        }
    }

    // ---- helpers ----

    /// Adds (or resizes) the level at tick index `idx`. On a full side a new level first
    /// evicts the far end, so a side never holds more than `levels`, not even within an
    /// event (and no book, the sim's or a consumer's, grows past its working size); a
    /// new level beyond the far end of a full side is not added. Returns whether the
    /// book changed.
    fn add(&mut self, side: BookSide, idx: i64, size: i64) -> bool {
        if idx < 1 || size <= 0 {
            return false;
        }
        let new = self
            .sym
            .book
            .size_at(side, idx.saturating_mul(self.sym.tick))
            == 0;
        if new && self.sym.book.len(side) >= self.levels {
            match self.worst(side) {
                Some(worst) if (idx - worst) * away(side) < 0 => {
                    self.set(side, worst, 0);
                }
                _ => return false,
            }
        }
        self.set(side, idx, size)
    }

    /// Sets the level at tick index `idx` in the book and records the change; a level at
    /// or below zero is never added. Returns whether the book changed.
    fn set(&mut self, side: BookSide, idx: i64, size: i64) -> bool {
        if idx < 1 && size > 0 {
            return false;
        }
        let price = idx.saturating_mul(self.sym.tick);
        let changed = self.sym.book.set(side, price, size);
        if changed {
            self.changes.push(Change {
                side,
                price,
                size: size.max(0),
            });
        }
        changed
    }

    fn best(&self, side: BookSide) -> Option<i64> {
        self.sym
            .book
            .side(side)
            .first()
            .map(|l| l.price / self.sym.tick)
    }

    fn worst(&self, side: BookSide) -> Option<i64> {
        self.sym
            .book
            .side(side)
            .last()
            .map(|l| l.price / self.sym.tick)
    }

    /// The touch of `side`, or where it would be: next to the other side's touch, or at
    /// the last mid.
    fn reference(&self, side: BookSide) -> i64 {
        self.best(side)
            .or_else(|| self.best(opposite(side)).map(|o| o + away(side)))
            .unwrap_or(self.sym.anchor_idx + away(side))
    }

    /// A resting order's size: mostly up to the typical size, sometimes a few times it.
    fn size(&mut self) -> i64 {
        let mut lots = self.rng.gen_range(1..=self.sym.typical_lots);
        if self.rng.gen_ratio(1, 5) {
            lots = lots.saturating_mul(self.rng.gen_range(2..=8));
        }
        lots.saturating_mul(self.sym.lot)
    }

    /// Ticks between neighbouring levels: mostly 1, sometimes up to 5.
    fn gap(&mut self) -> i64 {
        match self.rng.gen_range(0..10) {
            0..=6 => 1,
            7..=8 => 2,
            _ => self.rng.gen_range(3..=5),
        }
    }
}

#[cfg(test)]
mod tests;
