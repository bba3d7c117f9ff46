//! The protocol's delivery guarantees, checked per (client, symbol) while the load runs:
//!
//! - **Trades** (guarantee 1): each `trade` seq is the previous one plus one, unless a
//!   `gap` for the symbol's `trades` channel came between them whose `from_seq` is exactly
//!   that next seq; the next trade is then `to_seq + 1`. Anything else is a trade
//!   violation. The first trade or gap of a subscription sets the start.
//! - **Books** (guarantee 2): every `book` update's seq is the previous book seq plus one;
//!   a snapshot resets the seq. An update before any snapshot, or out of order, is a book
//!   violation. Snapshots after the first are resyncs.
//! - **Tickers** (guarantee 3, conflation): a ticker seq that skips ahead counts the
//!   skipped seqs as conflated; one that goes back is counted (`ticker_backwards`) but is
//!   not a violation, since the protocol promises convergence, not order, for state.
//!
//! All counters live in a [`Tally`], summed per client class at the end. Nothing here
//! allocates after a symbol's first message, except the first few violation examples.

/// Violation examples kept per client (the counts are always exact).
pub const EXAMPLES_PER_CLIENT: usize = 4;

/// Counters of one client (and, summed, of a class).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    /// Text messages received during the measured phase.
    pub messages: u64,
    /// Bytes read from the socket during the measured phase (WebSocket framing included).
    pub bytes: u64,
    /// Text messages received in all, drain included.
    pub messages_total: u64,
    /// `ticker` messages (all phases).
    pub tickers: u64,
    /// `trade` messages.
    pub trades: u64,
    /// `book` messages, snapshots included.
    pub books: u64,
    /// `book` snapshots (the first per symbol included).
    pub book_snapshots: u64,
    /// Book snapshots after the first per symbol: resyncs.
    pub resyncs: u64,
    /// `gap` messages.
    pub gaps: u64,
    /// Trades named by `gap` messages (sum of `to_seq - from_seq + 1`).
    pub trades_skipped: u64,
    /// Ticker seqs skipped between two tickers of a symbol (conflation).
    pub ticker_seqs_skipped: u64,
    /// Tickers whose seq was lower than an earlier one's.
    pub ticker_backwards: u64,
    /// Trade seqs neither contiguous nor covered by an exact gap.
    pub trade_violations: u64,
    /// Book updates not contiguous after a snapshot.
    pub book_violations: u64,
    /// `subscribed` replies.
    pub subscribed: u64,
    /// `error` replies from the server.
    pub server_errors: u64,
    /// Other text messages (`pong`, unknown types).
    pub other: u64,
    /// Data messages missing a field the checks need (not counted as violations).
    pub unparsed: u64,
}

impl Tally {
    /// Adds another tally's counts.
    pub fn add(&mut self, o: &Tally) {
        self.messages += o.messages;
        self.bytes += o.bytes;
        self.messages_total += o.messages_total;
        self.tickers += o.tickers;
        self.trades += o.trades;
        self.books += o.books;
        self.book_snapshots += o.book_snapshots;
        self.resyncs += o.resyncs;
        self.gaps += o.gaps;
        self.trades_skipped += o.trades_skipped;
        self.ticker_seqs_skipped += o.ticker_seqs_skipped;
        self.ticker_backwards += o.ticker_backwards;
        self.trade_violations += o.trade_violations;
        self.book_violations += o.book_violations;
        self.subscribed += o.subscribed;
        self.server_errors += o.server_errors;
        self.other += o.other;
        self.unparsed += o.unparsed;
    }

    /// Trade and book violations.
    pub fn violations(&self) -> u64 {
        self.trade_violations + self.book_violations
    }
}

/// Sequence state of one (client, symbol).
#[derive(Clone, Debug, Default)]
pub struct SymbolCheck {
    /// The next trade seq expected, once known.
    next_trade: Option<u64>,
    /// The last book seq, once a snapshot came.
    book_seq: Option<u64>,
    book_snapshots: u64,
    /// Highest ticker seq received.
    pub ticker_max: Option<u64>,
    /// Highest ticker seq whose `ingest_ts` is at or before the convergence cut.
    pub ticker_at_cut: Option<u64>,
}

/// Where violation examples go (bounded).
pub struct Examples<'a> {
    /// The client's examples so far.
    pub list: &'a mut Vec<String>,
    /// The symbol, for the text.
    pub symbol: &'a [u8],
}

impl Examples<'_> {
    fn push(&mut self, what: impl FnOnce() -> String) {
        if self.list.len() < EXAMPLES_PER_CLIENT {
            let text = format!("{}: {}", String::from_utf8_lossy(self.symbol), what());
            self.list.push(text);
        }
    }
}

impl SymbolCheck {
    /// A trade; checks contiguity.
    pub fn on_trade(&mut self, seq: u64, t: &mut Tally, ex: &mut Examples<'_>) {
        t.trades += 1;
        if let Some(next) = self.next_trade {
            if seq != next {
                t.trade_violations += 1;
                ex.push(|| format!("trade seq {seq} where {next} was expected"));
            }
        }
        self.next_trade = Some(seq + 1);
    }

    /// A gap on `channel` naming `from..=to`.
    pub fn on_gap(
        &mut self,
        channel: &[u8],
        from: u64,
        to: u64,
        t: &mut Tally,
        ex: &mut Examples<'_>,
    ) {
        t.gaps += 1;
        t.trades_skipped += (to + 1).saturating_sub(from);
        if channel != b"trades" {
            return;
        }
        if from > to {
            t.trade_violations += 1;
            ex.push(|| format!("gap {from}..={to} is empty"));
        } else if let Some(next) = self.next_trade {
            if from != next {
                t.trade_violations += 1;
                ex.push(|| format!("gap from {from} where trade {next} was expected"));
            }
        }
        self.next_trade = Some(to + 1);
    }

    /// A book message; returns whether it is a resync or an update (its latency counts),
    /// false for the first snapshot (sent on subscribe, with the state's old `ingest_ts`).
    pub fn on_book(
        &mut self,
        seq: u64,
        snapshot: bool,
        t: &mut Tally,
        ex: &mut Examples<'_>,
    ) -> bool {
        t.books += 1;
        let counts = if snapshot {
            t.book_snapshots += 1;
            self.book_snapshots += 1;
            if self.book_snapshots > 1 {
                t.resyncs += 1;
            }
            self.book_snapshots > 1
        } else {
            match self.book_seq {
                None => {
                    t.book_violations += 1;
                    ex.push(|| format!("book update {seq} before any snapshot"));
                }
                Some(last) if seq != last + 1 => {
                    t.book_violations += 1;
                    ex.push(|| format!("book update {seq} after {last}"));
                }
                Some(_) => {}
            }
            true
        };
        self.book_seq = Some(seq);
        counts
    }

    /// A ticker; returns whether its latency counts (not the first, sent on subscribe).
    pub fn on_ticker(&mut self, seq: u64, ingest_ts: u64, cut_wall_ns: u64, t: &mut Tally) -> bool {
        t.tickers += 1;
        if ingest_ts <= cut_wall_ns {
            self.ticker_at_cut = self.ticker_at_cut.max(Some(seq));
        }
        match self.ticker_max {
            None => {
                self.ticker_max = Some(seq);
                false
            }
            Some(max) => {
                if seq > max {
                    t.ticker_seqs_skipped += seq - max - 1;
                    self.ticker_max = Some(seq);
                } else if seq < max {
                    t.ticker_backwards += 1;
                }
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Run {
        c: SymbolCheck,
        t: Tally,
        ex: Vec<String>,
    }

    impl Run {
        fn new() -> Run {
            Run {
                c: SymbolCheck::default(),
                t: Tally::default(),
                ex: Vec::new(),
            }
        }
        fn trade(&mut self, seq: u64) {
            let mut ex = Examples {
                list: &mut self.ex,
                symbol: b"s",
            };
            self.c.on_trade(seq, &mut self.t, &mut ex);
        }
        fn gap(&mut self, from: u64, to: u64) {
            let mut ex = Examples {
                list: &mut self.ex,
                symbol: b"s",
            };
            self.c.on_gap(b"trades", from, to, &mut self.t, &mut ex);
        }
        fn book(&mut self, seq: u64, snapshot: bool) -> bool {
            let mut ex = Examples {
                list: &mut self.ex,
                symbol: b"s",
            };
            self.c.on_book(seq, snapshot, &mut self.t, &mut ex)
        }
    }

    #[test]
    fn trades_contiguous_or_across_exact_gaps() {
        let mut r = Run::new();
        r.trade(5);
        r.trade(6);
        r.gap(7, 10);
        r.trade(11);
        assert_eq!(r.t.trade_violations, 0);
        assert_eq!((r.t.gaps, r.t.trades_skipped), (1, 4));
        r.trade(13); // 12 lost silently
        r.gap(15, 16); // should start at 14
        r.gap(18, 17); // empty
        assert_eq!(r.t.trade_violations, 3, "{:?}", r.ex);
        assert!(r.ex[0].contains("trade seq 13 where 12"), "{:?}", r.ex);
    }

    #[test]
    fn a_gap_may_come_first() {
        let mut r = Run::new();
        r.gap(1, 3);
        r.trade(4);
        assert_eq!(r.t.trade_violations, 0);
    }

    #[test]
    fn books_contiguous_after_each_snapshot() {
        let mut r = Run::new();
        assert!(r.book(3, false), "update before a snapshot");
        assert_eq!(r.t.book_violations, 1);
        assert!(!r.book(10, true), "first snapshot: latency not counted");
        r.book(11, false);
        r.book(12, false);
        assert!(r.book(20, true), "resync");
        r.book(21, false);
        r.book(23, false);
        assert_eq!(
            (r.t.book_violations, r.t.resyncs, r.t.book_snapshots),
            (2, 1, 2)
        );
    }

    #[test]
    fn tickers_conflate_and_track_the_cut() {
        let (mut c, mut t) = (SymbolCheck::default(), Tally::default());
        assert!(!c.on_ticker(4, 100, 150, &mut t));
        assert!(c.on_ticker(5, 120, 150, &mut t));
        assert!(c.on_ticker(9, 160, 150, &mut t));
        c.on_ticker(8, 170, 150, &mut t);
        assert_eq!((t.ticker_seqs_skipped, t.ticker_backwards), (3, 1));
        assert_eq!((c.ticker_max, c.ticker_at_cut), (Some(9), Some(5)));
    }
}
