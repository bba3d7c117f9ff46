//! `--feed replay:FILE`: plays a recording ([`crate::record`]) through the venue's own
//! decoder, so that a recorded session drives the engine exactly as it did live: the
//! same frames, the same REST snapshots at the same points, the same connection
//! openings and losses, hence the same books, trades and seqs.
//!
//! - **Pace** ([`Speed`]): the recorded gaps between entries, divided by N, or none
//!   (`max`). Waits are slept in steps of a few milliseconds with the publisher flushed in
//!   between (resync requests are served, shutdown is noticed).
//! - **Times**: venue times come from the frames as recorded; `ingest_ts` is the replay's
//!   own clock, so latency figures describe this run.
//! - **Requests** the decoder makes (subscriptions, snapshot fetches) go nowhere: their
//!   answers are in the recording.
//! - **End**: at the end of the file the feed stops (state `stopped`); the engine keeps
//!   serving the last state. Allocation: one reused line buffer.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tickwire_engine::feed::{Feed, FeedError, FeedState, Publisher};
use tickwire_engine::symbol::{SymbolId, SymbolRegistryBuilder};

use crate::record::{Entry, Header, Reader, RecordError, Speed};
use crate::venue::{self, count_decode_error, Outbox, Protocol, Venue, VenueConfig};

const STEP: Duration = Duration::from_millis(5);

/// A feed that replays a recording (see the module's contract).
pub struct ReplayFeed {
    path: PathBuf,
    speed: Speed,
    header: Header,
    protocol: Box<dyn Protocol>,
    start: Option<Arc<AtomicBool>>,
}

impl std::fmt::Debug for ReplayFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayFeed")
            .field("path", &self.path)
            .field("speed", &self.speed)
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

fn record_error(e: RecordError) -> FeedError {
    match e {
        RecordError::Io(e) => FeedError::Io(e),
        other => FeedError::Config(other.to_string()),
    }
}

impl ReplayFeed {
    /// Opens `path` (reads its header) to replay at `speed`, with the venue's default
    /// settings.
    pub fn open(path: &Path, speed: Speed) -> Result<ReplayFeed, FeedError> {
        let header = Reader::open(path).map_err(record_error)?.header;
        let cfg = VenueConfig::new(header.venue, header.symbols.clone());
        ReplayFeed::with_config(path, speed, &cfg)
    }

    /// Like [`ReplayFeed::open`] with the venue settings of `cfg` (scales, depth); its
    /// venue and symbols must be the recording's.
    pub fn with_config(
        path: &Path,
        speed: Speed,
        cfg: &VenueConfig,
    ) -> Result<ReplayFeed, FeedError> {
        let header = Reader::open(path).map_err(record_error)?.header;
        if header.venue != cfg.venue || header.symbols != cfg.symbols {
            return Err(FeedError::Config(format!(
                "replay {}: recorded {}:{}, configured {}:{}",
                path.display(),
                header.venue.name(),
                header.symbols.join(","),
                cfg.venue.name(),
                cfg.symbols.join(",")
            )));
        }
        Ok(ReplayFeed {
            path: path.to_owned(),
            speed,
            protocol: venue::protocol(cfg),
            header,
            start: None,
        })
    }

    /// Holds the replay until `start` is set (tests subscribe their clients first).
    pub fn start_when(mut self, start: Arc<AtomicBool>) -> ReplayFeed {
        self.start = Some(start);
        self
    }

    /// The recorded venue.
    pub fn venue(&self) -> Venue {
        self.header.venue
    }

    /// Waits until `until`, flushing; false when shutdown came first.
    fn wait(publisher: &mut Publisher, shutdown: &AtomicBool, until: Instant) -> bool {
        loop {
            // Relaxed: the flag only asks the loop to end; it hands over no data.
            if shutdown.load(Ordering::Relaxed) {
                return false;
            }
            let now = Instant::now();
            if now >= until {
                return true;
            }
            std::thread::sleep(STEP.min(until - now));
            publisher.flush();
        }
    }
}

impl Feed for ReplayFeed {
    fn name(&self) -> &str {
        self.header.venue.name()
    }

    fn register(
        &mut self,
        symbols: &mut SymbolRegistryBuilder,
    ) -> Result<Vec<SymbolId>, FeedError> {
        self.protocol.register(symbols)
    }

    fn run(&mut self, publisher: &mut Publisher, shutdown: &AtomicBool) -> Result<(), FeedError> {
        if let Some(start) = &self.start {
            // Relaxed: a go signal; the replay reads nothing the setter wrote.
            while !start.load(Ordering::Relaxed) {
                if !ReplayFeed::wait(publisher, shutdown, Instant::now() + STEP) {
                    return Ok(());
                }
            }
        }
        let mut reader = Reader::open(&self.path).map_err(record_error)?;
        let venue = self.header.venue;
        let mut out = Outbox::default();
        let started = Instant::now();
        let mut first: Option<u64> = None;
        publisher.shared().stats.set_state(FeedState::Connecting);
        while let Some((ts, entry)) = reader.next_entry().map_err(record_error)? {
            let first = *first.get_or_insert(ts);
            let due = started + self.speed.wait(ts.saturating_sub(first));
            if !ReplayFeed::wait(publisher, shutdown, due) {
                break;
            }
            match entry {
                Entry::Open => self.protocol.on_open(publisher, &mut out),
                Entry::Close => {
                    self.protocol.on_close(publisher);
                    publisher.shared().stats.set_state(FeedState::Disconnected);
                }
                Entry::Ws(text) => {
                    publisher.begin_message();
                    if let Err(e) = self.protocol.on_text(text, publisher, &mut out) {
                        count_decode_error(publisher, venue, &e, text);
                    }
                }
                Entry::CandidateOpen => self.protocol.begin_candidate(),
                Entry::CandidateWs(text) => {
                    publisher.begin_message();
                    if let Err(e) = self.protocol.on_candidate_text(text, publisher, &mut out) {
                        count_decode_error(publisher, venue, &e, text);
                    }
                }
                Entry::Switch => self.protocol.end_candidate(),
                Entry::Rest { symbol, body } => {
                    publisher.begin_message();
                    if let Err(e) = self.protocol.on_rest(symbol, body, publisher, &mut out) {
                        count_decode_error(publisher, venue, &e, body);
                    }
                }
            }
            // What the decoder asks of the venue was answered in the recording.
            out.texts.clear();
            out.fetches.clear();
            if !matches!(entry, Entry::Close) {
                publisher
                    .shared()
                    .stats
                    .set_state(if self.protocol.syncing() {
                        FeedState::Resyncing
                    } else {
                        FeedState::Live
                    });
            }
            publisher.flush();
        }
        publisher.flush();
        tracing::info!(feed = venue.name(), file = %self.path.display(), "replay finished");
        publisher.shared().stats.set_state(FeedState::Stopped);
        Ok(())
    }
}
