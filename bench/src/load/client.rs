//! One simulated client, run as a task on the generator's runtime.
//!
//! Its life: wait for its start time (the ramp), connect (a slow client with a small
//! `SO_RCVBUF`), subscribe, then read in two phases:
//!
//! 1. **Measure** until `run_end`: every message is scanned and checked; latencies are
//!    recorded (receive wall time of the read that brought the message − `ingest_ts`);
//!    messages and bytes count towards the rates. A slow client first reads nothing for
//!    its stall (`--slow-stall-s`, default none), then either pauses [`SLOW_PAUSE`] after
//!    every [`SLOW_MESSAGES_PER_PAUSE`] messages or, paced (`--slow-read-bps`), reads
//!    only what its [`TokenBucket`] allows: it waits until the bucket is full (at most
//!    [`PACED_BURST`] of the rate) and reads at most that many bytes. It also records its
//!    *data age* (receive wall time − `ingest_ts` of every data message, tickers and
//!    book snapshots apart too) once its warm-up after subscribing is over.
//! 2. **Drain** until `drain_end`: everyone reads at full speed; messages are still
//!    checked, not timed or counted in rates.
//!
//! Then it sends a close (1000) and ends. Every await is bounded by `drain_end` (connect
//! and handshake also by [`CONNECT_TIMEOUT`]), so a client never outlives the run.
//! Allocations: the read buffer at connect (a slow client: three small data-age
//! histograms too), a symbol's state at its first message; nothing per message. Timers:
//! one per client for the end of the current phase, registered once; none per read.
//! Latencies go into one histogram per class shared by every client ([`ClassLatency`]),
//! [`LATENCY_BATCH`] samples per lock: a histogram per client (~220 KiB) would make
//! the generator spend a connect burst zeroing pages (80% of its CPU at 5,000 clients,
//! measured), and that, not the server, would then set the connect times.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use tokio::time::{timeout_at, Instant};

use super::check::{Examples, SymbolCheck, Tally};
use super::config::{
    Endpoint, PACED_BURST, SLOW_MESSAGES_PER_PAUSE, SLOW_PAUSE, SLOW_RECV_BUFFER_BYTES,
};
use super::live::{Live, LocalLive, FLUSH_EVERY};
use super::pace::TokenBucket;
use super::scan::{scan, Kind};
use super::ws::{Conn, Event, WsError};

/// Longest wait for TCP connect plus the WebSocket handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Highest latency the histograms track, ns (higher values are recorded as this).
pub const MAX_LATENCY_NS: u64 = 60_000_000_000;
/// Significant digits of every histogram.
pub const SIGFIG: u8 = 3;
/// Highest data age the histograms track, µs (one hour; higher is recorded as this).
pub const MAX_AGE_US: u64 = 3_600_000_000;
/// Significant digits of the data-age histograms (1%: ~26 KiB each).
pub const AGE_SIGFIG: u8 = 2;

/// Latency samples a client keeps before it adds them to its class's histogram.
pub const LATENCY_BATCH: usize = 64;

/// The latency histogram of each class (fast, slow), shared by every client of it.
pub(crate) struct ClassLatency([Mutex<Histogram<u64>>; 2]);

impl ClassLatency {
    /// Empty histograms.
    pub fn new() -> ClassLatency {
        ClassLatency([Mutex::new(histogram()), Mutex::new(histogram())])
    }

    /// Adds `samples` (ns) to `class`'s histogram.
    fn add(&self, class: Class, samples: &[u64]) {
        // A poisoned lock only means another client task panicked mid-record; the
        // counts are still usable.
        let mut h = self.0[class.index()]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for &ns in samples {
            h.saturating_record(ns);
        }
    }

    /// The histograms, fast then slow.
    pub fn into_inner(self) -> [Histogram<u64>; 2] {
        self.0
            .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
    }
}

/// A client class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Reads as fast as it can.
    Fast,
    /// Small receive buffer, reads rarely.
    Slow,
}

impl Class {
    /// Index for per-class arrays: 0 fast, 1 slow.
    pub fn index(self) -> usize {
        match self {
            Class::Fast => 0,
            Class::Slow => 1,
        }
    }
}

/// What every client shares.
pub(crate) struct Ctx {
    pub addr: SocketAddr,
    pub endpoint: Endpoint,
    /// The subscribe command, JSON.
    pub subscribe: Vec<u8>,
    pub run_end: Instant,
    pub drain_end: Instant,
    /// Wall time of `run_end`, ns since the epoch: the convergence cut.
    pub cut_wall_ns: u64,
    pub live: Arc<Live>,
    /// Latency per class.
    pub latency: Arc<ClassLatency>,
    /// How slow clients read.
    pub slow: SlowReading,
}

/// How slow clients read (see the module doc).
#[derive(Clone, Debug)]
pub(crate) struct SlowReading {
    /// Paced at this many bytes per second; `None`: pauses every few messages.
    pub read_bps: Option<u64>,
    /// Nothing read for this long after subscribing.
    pub stall: Duration,
    /// Data age left out for this long after subscribing.
    pub age_warmup: Duration,
}

/// A slow client's data age, µs, after its warm-up.
pub(crate) struct DataAge {
    /// Every data message (trades, book updates and snapshots, tickers).
    pub all: Histogram<u64>,
    /// Tickers.
    pub ticker: Histogram<u64>,
    /// Book snapshots.
    pub book_snapshot: Histogram<u64>,
}

impl DataAge {
    /// Empty histograms, 1 µs to [`MAX_AGE_US`], [`AGE_SIGFIG`] digits.
    #[allow(clippy::expect_used)] // invariant: constant bounds that hdrhistogram accepts
    pub fn new() -> DataAge {
        let h = || {
            Histogram::new_with_bounds(1, MAX_AGE_US, AGE_SIGFIG)
                .expect("constant bounds are valid")
        };
        DataAge {
            all: h(),
            ticker: h(),
            book_snapshot: h(),
        }
    }

    /// Adds another's counts (same bounds: cannot fail).
    pub fn add(&mut self, o: &DataAge) {
        let _ = self.all.add(&o.all);
        let _ = self.ticker.add(&o.ticker);
        let _ = self.book_snapshot.add(&o.book_snapshot);
    }
}

/// How a client ended other than by its own close at the end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// TCP connect failed or timed out.
    Connect(String),
    /// The server did not upgrade.
    Handshake(String),
    /// The socket failed.
    Io(String),
    /// The server broke RFC 6455.
    Protocol(String),
    /// The server ended the TCP connection without a close frame.
    Eof,
    /// The server sent a close frame (with this code).
    Closed(Option<u16>),
}

/// Everything a client measured.
pub(crate) struct Outcome {
    /// Its index, from 0, in start order.
    pub id: usize,
    pub class: Class,
    /// TCP connect + handshake, ns; `None` if it never connected.
    pub connect_ns: Option<u64>,
    pub failure: Option<Failure>,
    pub tally: Tally,
    /// Seconds from subscribe to the end of the measured phase.
    pub measured_secs: f64,
    pub symbols: HashMap<Box<[u8]>, SymbolCheck>,
    pub examples: Vec<String>,
    /// `error` replies by code.
    pub error_codes: BTreeMap<String, u64>,
    /// Slow clients: the data age after the warm-up.
    pub data_age: Option<DataAge>,
    /// Seconds from subscribe to the failure, when it failed after subscribing.
    pub failed_after_s: Option<f64>,
}

/// Per-connection recording state.
struct Recorder {
    tally: Tally,
    /// Per symbol, in the order first seen. A client holds a few symbols: a linear
    /// search over their bytes costs less than hashing each message's symbol (SipHash
    /// was 6% of the generator's CPU at 1000 clients × 1000 trades/s, measured).
    class: Class,
    /// Latency samples not yet added to the class histogram.
    pending: [u64; LATENCY_BATCH],
    pending_len: usize,
    sink: Arc<ClassLatency>,
    symbols: Vec<(Box<[u8]>, SymbolCheck)>,
    examples: Vec<String>,
    error_codes: BTreeMap<String, u64>,
    local: LocalLive,
    cut_wall_ns: u64,
    /// Slow clients: data age, recorded from `age_from_wall_ns` on.
    age: Option<DataAge>,
    age_from_wall_ns: u64,
}

impl Recorder {
    fn on_text(&mut self, payload: &[u8], recv_wall_ns: u64, measuring: bool) {
        let t = &mut self.tally;
        t.messages_total += 1;
        if measuring {
            t.messages += 1;
            self.local.message();
        }
        let m = scan(payload);
        if !m.complete() {
            t.unparsed += 1;
            return;
        }
        let data = matches!(m.kind, Kind::Ticker | Kind::Trade | Kind::Book | Kind::Gap);
        if !data {
            match m.kind {
                Kind::Subscribed => t.subscribed += 1,
                Kind::Error => {
                    t.server_errors += 1;
                    let code = String::from_utf8_lossy(m.channel).into_owned();
                    *self.error_codes.entry(code).or_default() += 1;
                }
                _ => t.other += 1,
            }
            return;
        }
        let i = match self.symbols.iter().position(|(s, _)| **s == *m.symbol) {
            Some(i) => i,
            None => {
                self.symbols.push((m.symbol.into(), SymbolCheck::default()));
                self.symbols.len() - 1
            }
        };
        let sym = &mut self.symbols[i].1;
        let mut ex = Examples {
            list: &mut self.examples,
            symbol: m.symbol,
        };
        // `complete()` guarantees the fields each kind needs.
        let (seq, ingest) = (m.seq.unwrap_or(0), m.ingest_ts.unwrap_or(0));
        let timed = match m.kind {
            Kind::Ticker => sym.on_ticker(seq, ingest, self.cut_wall_ns, t),
            Kind::Trade => {
                sym.on_trade(seq, t, &mut ex);
                true
            }
            Kind::Book => sym.on_book(seq, m.snapshot, t, &mut ex),
            _ => {
                let (from, to) = (m.from_seq.unwrap_or(0), m.to_seq.unwrap_or(0));
                sym.on_gap(m.channel, from, to, t, &mut ex);
                false
            }
        };
        if let Some(age) = self.age.as_mut().filter(|_| measuring) {
            if recv_wall_ns >= self.age_from_wall_ns && m.kind != Kind::Gap {
                let us = (recv_wall_ns.saturating_sub(ingest) / 1000).clamp(1, MAX_AGE_US);
                age.all.saturating_record(us);
                match m.kind {
                    Kind::Ticker => age.ticker.saturating_record(us),
                    Kind::Book if m.snapshot => age.book_snapshot.saturating_record(us),
                    _ => {}
                }
            }
        }
        if timed && measuring {
            let ns = recv_wall_ns.saturating_sub(ingest);
            self.pending[self.pending_len] = ns.min(MAX_LATENCY_NS);
            self.pending_len += 1;
            if self.pending_len == LATENCY_BATCH {
                self.flush_latency();
            }
            self.local.latency(ns);
        }
    }

    /// Adds the pending latency samples to the class histogram.
    fn flush_latency(&mut self) {
        self.sink.add(self.class, &self.pending[..self.pending_len]);
        self.pending_len = 0;
    }
}

/// An empty latency histogram: 1 ns to [`MAX_LATENCY_NS`], [`SIGFIG`] digits (~220 KiB).
#[allow(clippy::expect_used)] // invariant: constant bounds that hdrhistogram accepts
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, SIGFIG).expect("constant bounds are valid")
}

/// Wall clock, ns since the Unix epoch (the clock `ingest_ts` uses).
pub(crate) fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Runs one client from its start time to the end of the drain.
pub(crate) async fn run(id: usize, class: Class, start_at: Instant, ctx: Arc<Ctx>) -> Outcome {
    let mut out = Outcome {
        id,
        class,
        connect_ns: None,
        failure: None,
        tally: Tally::default(),
        measured_secs: 0.0,
        symbols: HashMap::new(),
        examples: Vec::new(),
        error_codes: BTreeMap::new(),
        data_age: None,
        failed_after_s: None,
    };
    tokio::time::sleep_until(start_at).await;
    let started = Instant::now();
    let deadline = (started + CONNECT_TIMEOUT).min(ctx.drain_end);
    let rcvbuf = (class == Class::Slow).then_some(SLOW_RECV_BUFFER_BYTES);
    let mut conn = match timeout_at(
        deadline,
        Conn::connect(ctx.addr, &ctx.endpoint, rcvbuf, id as u32),
    )
    .await
    {
        Ok(Ok(conn)) => conn,
        Ok(Err(WsError::Handshake(e))) => {
            out.failure = Some(Failure::Handshake(e));
            return out;
        }
        Ok(Err(e)) => {
            out.failure = Some(Failure::Connect(e.to_string()));
            return out;
        }
        Err(_) => {
            out.failure = Some(Failure::Connect(format!(
                "no connection within {CONNECT_TIMEOUT:?}"
            )));
            return out;
        }
    };
    out.connect_ns = Some(started.elapsed().as_nanos() as u64);
    ctx.live.connected.fetch_add(1, Ordering::Relaxed);
    let mut rec = Recorder {
        tally: Tally::default(),
        class,
        pending: [0; LATENCY_BATCH],
        pending_len: 0,
        sink: ctx.latency.clone(),
        symbols: Vec::new(),
        examples: Vec::new(),
        error_codes: BTreeMap::new(),
        local: LocalLive::new(class.index()),
        cut_wall_ns: ctx.cut_wall_ns,
        age: (class == Class::Slow).then(DataAge::new),
        age_from_wall_ns: wall_ns() + ctx.slow.age_warmup.as_nanos() as u64,
    };
    let subscribed_at = Instant::now();
    let result = match timeout_at(ctx.drain_end, conn.send_text(&ctx.subscribe)).await {
        Ok(Ok(())) => session(&mut conn, class, &ctx, &mut rec, subscribed_at, &mut out).await,
        Ok(Err(e)) => Err(Failure::Io(e.to_string())),
        Err(_) => Ok(()),
    };
    if subscribed_at < ctx.run_end && out.measured_secs == 0.0 {
        // Ended during the measured phase: its rate counts over the time it had.
        out.measured_secs = (Instant::now().min(ctx.run_end) - subscribed_at).as_secs_f64();
    }
    match result {
        Ok(()) => {
            // Best effort: the run is over, nobody waits for the server's answer.
            let _ = tokio::time::timeout(Duration::from_millis(200), conn.send_close(1000)).await;
        }
        Err(failure) => {
            out.failure = Some(failure);
            out.failed_after_s = Some(subscribed_at.elapsed().as_secs_f64());
        }
    }
    rec.local.flush(&ctx.live);
    rec.flush_latency();
    ctx.live.connected.fetch_sub(1, Ordering::Relaxed);
    out.tally = rec.tally;
    out.symbols = rec.symbols.into_iter().collect();
    out.examples = rec.examples;
    out.error_codes = rec.error_codes;
    out.data_age = rec.age;
    out
}

/// Reads until the drain ends; `Err` when the connection failed first.
async fn session(
    conn: &mut Conn,
    class: Class,
    ctx: &Ctx,
    rec: &mut Recorder,
    subscribed_at: Instant,
    out: &mut Outcome,
) -> Result<(), Failure> {
    let slow = class == Class::Slow;
    if slow && !ctx.slow.stall.is_zero() {
        // Reads nothing at all: the server sees a client whose socket fills.
        tokio::time::sleep_until((subscribed_at + ctx.slow.stall).min(ctx.run_end)).await;
    }
    let mut bucket = ctx
        .slow
        .read_bps
        .filter(|_| slow)
        .map(|bps| TokenBucket::with_burst(bps, PACED_BURST, subscribed_at.elapsed()));
    let mut measuring = Instant::now() < ctx.run_end;
    // One timer per client for the end of the phase, registered once and moved at the
    // drain. A `timeout_at` around each read put a timer into tokio's wheel and took it
    // out again on every read that waited: one pair per frame when the server writes
    // each frame on its own (1000 clients × 1000 trades/s: a million a second).
    let phase_timer = tokio::time::sleep_until(ctx.run_end.min(ctx.drain_end));
    tokio::pin!(phase_timer);
    let mut recv_wall_ns = wall_ns();
    let mut next_flush = Instant::now() + FLUSH_EVERY;
    let mut handled = 0u64;
    loop {
        while let Some(event) = conn
            .next_event()
            .map_err(|e| Failure::Protocol(e.to_string()))?
        {
            match event {
                Event::Text(range) => rec.on_text(conn.bytes(range), recv_wall_ns, measuring),
                Event::Assembled => rec.on_text(conn.assembled(), recv_wall_ns, measuring),
                Event::Ping(range) => {
                    let payload = conn.bytes(range).to_vec();
                    match timeout_at(ctx.drain_end, conn.send_pong(&payload)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return Err(Failure::Io(e.to_string())),
                        Err(_) => return Ok(()),
                    }
                }
                Event::Binary | Event::Pong => rec.tally.other += 1,
                Event::Close(code) => return Err(Failure::Closed(code)),
            }
            if slow && bucket.is_none() && measuring {
                handled += 1;
                if handled.is_multiple_of(SLOW_MESSAGES_PER_PAUSE) {
                    // Reading rarely is what makes this client slow.
                    let until = (Instant::now() + SLOW_PAUSE).min(ctx.run_end);
                    tokio::time::sleep_until(until).await;
                    if Instant::now() >= ctx.run_end {
                        measuring = false;
                        out.measured_secs = (ctx.run_end - subscribed_at).as_secs_f64();
                    }
                }
            }
        }
        let now = Instant::now();
        if now >= next_flush {
            rec.local.flush(&ctx.live);
            next_flush = now + FLUSH_EVERY;
        }
        if measuring && now >= ctx.run_end {
            measuring = false;
            out.measured_secs = (ctx.run_end - subscribed_at).as_secs_f64();
        }
        if now >= ctx.drain_end {
            return Ok(());
        }
        let phase_end = if measuring {
            ctx.run_end
        } else {
            ctx.drain_end
        };
        // Paced: wait for a full bucket, then read at most what it holds.
        let mut max_read = usize::MAX;
        if let Some(b) = bucket.as_mut().filter(|_| measuring) {
            let wait = b.until_full(subscribed_at.elapsed());
            if !wait.is_zero() {
                tokio::time::sleep_until((now + wait).min(phase_end)).await;
                continue;
            }
            max_read = usize::try_from(b.available(subscribed_at.elapsed())).unwrap_or(usize::MAX);
        }
        if phase_timer.deadline() != phase_end {
            phase_timer.as_mut().reset(phase_end);
        }
        // Biased: data already read wins over a deadline passing in the same poll.
        let read = tokio::select! {
            biased;
            read = conn.fill_at_most(max_read) => read,
            () = &mut phase_timer => continue,
        };
        match read {
            Ok(0) => return Err(Failure::Eof),
            Ok(n) => {
                recv_wall_ns = wall_ns();
                if measuring {
                    rec.tally.bytes += n as u64;
                    if let Some(b) = bucket.as_mut() {
                        b.take(n as u64);
                    }
                }
            }
            Err(e) => return Err(Failure::Io(e.to_string())),
        }
    }
}
