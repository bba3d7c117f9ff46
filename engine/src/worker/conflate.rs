//! Conflation state: one subscription's options and overload marks, a client's
//! subscriptions, and the worker's throttle deadlines.
//!
//! A frame that does not fit a client's outbox is not queued; the subscription is
//! *marked* instead (see `docs/flow-control.md`): a mark says the subscription is owed a
//! fresh state. A marked ticker is owed the latest ticker when there is room, a marked
//! book a fresh snapshot instead of the missed updates, marked trades one `gap` naming
//! the exact skipped seqs, then trades resume. A mark costs a few bytes of the
//! subscription, never a frame; the client's catch-up queue lists its marks in the
//! order they were made (the rules are [`super::client::Client`]'s).
//!
//! Throttled subscriptions (`throttle_ms` > 0) are marked the same way inside their
//! interval, and one [`ThrottleDeadline`] per marked subscription waits in the worker's
//! [`Throttle`] heap; only subscriptions with a pending change have an entry, so idle
//! and unthrottled clients cost nothing there.
//!
//! Owned by one worker thread. Marking allocates nothing; a subscribe may grow a
//! client's subscription list.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use crate::protocol::command::{Channel, ChannelSet};
use crate::symbol::SymbolId;

use super::clients::ClientKey;

/// One subscription's options and overload marks.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientSub {
    /// Channels held on the symbol.
    pub channels: ChannelSet,
    /// Book depth (levels per side).
    pub depth: u16,
    /// Throttle interval of the ticker channel, ms (0: none).
    pub ticker_throttle_ms: u32,
    /// Throttle interval of the book channel, ms (0: none).
    pub book_throttle_ms: u32,
    /// Earliest time the next throttled ticker message may go.
    pub ticker_next: Option<Instant>,
    /// Earliest time the next throttled book message may go.
    pub book_next: Option<Instant>,
    /// Marked: the latest ticker is owed (overload or throttle).
    pub ticker_marked: bool,
    /// Marked: a fresh book snapshot is owed.
    pub book_marked: bool,
    /// Skipped trade seqs not yet reported: `(from, to)` inclusive.
    pub gap: Option<(u64, u64)>,
    /// The open gap began with trades the feed lost (reported as `feed_gap`), not with
    /// this client's own backlog (`slow_consumer`).
    pub gap_upstream: bool,
    /// The trades mark is a replay (version 2 recovery): `gap`'s range is owed as the
    /// trades the history holds, in order, and a `gap` only for what it no longer holds.
    pub replay: bool,
    /// Version 2, while the book is marked: the seq of the book state the client holds
    /// (the one a merged update starts from); 0 when unknown (a snapshot is owed).
    pub book_seq: u64,
}

impl ClientSub {
    /// Marks held (0 to 3).
    pub fn marks(&self) -> usize {
        usize::from(self.ticker_marked)
            + usize::from(self.book_marked)
            + usize::from(self.gap.is_some())
    }

    /// The throttle interval and next allowed time of a state channel.
    pub fn throttle(&self, channel: Channel) -> (u32, Option<Instant>) {
        match channel {
            Channel::Ticker => (self.ticker_throttle_ms, self.ticker_next),
            Channel::Book => (self.book_throttle_ms, self.book_next),
            Channel::Trades => (0, None),
        }
    }

    /// Whether `channel` holds its mark.
    pub fn is_marked(&self, channel: Channel) -> bool {
        match channel {
            Channel::Ticker => self.ticker_marked,
            Channel::Book => self.book_marked,
            Channel::Trades => self.gap.is_some(),
        }
    }

    /// Clears the mark of a state channel after its catch-up frame was queued at `now`,
    /// starting the next throttle interval.
    pub fn served(&mut self, channel: Channel, now: Instant) {
        let (throttle_ms, _) = self.throttle(channel);
        let next = (throttle_ms > 0).then(|| now + Duration::from_millis(u64::from(throttle_ms)));
        match channel {
            Channel::Ticker => {
                self.ticker_marked = false;
                self.ticker_next = next;
            }
            Channel::Book => {
                self.book_marked = false;
                self.book_next = next;
            }
            Channel::Trades => {
                self.gap = None;
                self.gap_upstream = false;
                self.replay = false;
            }
        }
    }
}

/// A client's subscriptions, sorted by symbol: compact for the usual one or few symbols,
/// a binary search for the dashboards that hold thousands.
#[derive(Debug, Default)]
pub struct Subs {
    list: Vec<(SymbolId, ClientSub)>,
}

impl Subs {
    /// The subscription on `symbol`.
    pub fn get(&self, symbol: SymbolId) -> Option<&ClientSub> {
        self.find(symbol).ok().map(|i| &self.list[i].1)
    }

    /// The subscription on `symbol`, mutably.
    pub fn get_mut(&mut self, symbol: SymbolId) -> Option<&mut ClientSub> {
        match self.find(symbol) {
            Ok(i) => Some(&mut self.list[i].1),
            Err(_) => None,
        }
    }

    /// The subscription on `symbol`, made empty if there is none.
    pub fn entry(&mut self, symbol: SymbolId) -> &mut ClientSub {
        let i = match self.find(symbol) {
            Ok(i) => i,
            Err(i) => {
                if self.list.capacity() == 0 {
                    // Most connections hold one symbol: room for four (Vec's first
                    // growth) would be 240 bytes per idle client for nothing.
                    self.list.reserve_exact(1);
                }
                self.list.insert(i, (symbol, ClientSub::default()));
                i
            }
        };
        &mut self.list[i].1
    }

    /// Drops the subscription on `symbol`.
    pub fn remove(&mut self, symbol: SymbolId) {
        if let Ok(i) = self.find(symbol) {
            self.list.remove(i);
        }
        if self.list.is_empty() {
            self.list = Vec::new();
        }
    }

    /// Symbols held.
    pub fn symbols(&self) -> impl Iterator<Item = SymbolId> + '_ {
        self.list.iter().map(|(s, _)| *s)
    }

    /// Heap bytes held (memory accounting).
    pub fn heap_bytes(&self) -> usize {
        self.list.capacity() * std::mem::size_of::<(SymbolId, ClientSub)>()
    }

    fn find(&self, symbol: SymbolId) -> Result<usize, usize> {
        self.list.binary_search_by_key(&symbol.0, |(s, _)| s.0)
    }
}

/// When a throttled subscription's interval ends: its owner, symbol and channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ThrottleDeadline {
    /// When the interval ends.
    pub due: Instant,
    /// The subscriber.
    pub client: ClientKey,
    /// The symbol.
    pub symbol: SymbolId,
    /// The channel (ticker or book).
    pub channel: Channel,
}

/// The worker's throttle deadlines, earliest first.
#[derive(Debug, Default)]
pub struct Throttle {
    heap: BinaryHeap<Reverse<ThrottleDeadline>>,
}

impl Throttle {
    /// Adds a deadline.
    pub fn push(&mut self, deadline: ThrottleDeadline) {
        self.heap.push(Reverse(deadline));
    }

    /// The earliest deadline, if any.
    pub fn next_due(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(d)| d.due)
    }

    /// Takes the earliest deadline if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<ThrottleDeadline> {
        match self.heap.peek() {
            Some(Reverse(d)) if d.due <= now => self.heap.pop().map(|Reverse(d)| d),
            _ => None,
        }
    }

    /// Deadlines waiting.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no deadline waits.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subs_stay_sorted_and_release_memory_when_empty() {
        let mut subs = Subs::default();
        for s in [5u32, 1, 3] {
            subs.entry(SymbolId(s)).depth = s as u16;
        }
        assert_eq!(
            subs.symbols().map(|s| s.0).collect::<Vec<_>>(),
            vec![1, 3, 5]
        );
        assert_eq!(subs.get(SymbolId(3)).map(|s| s.depth), Some(3));
        for s in [1u32, 3, 5] {
            subs.remove(SymbolId(s));
        }
        assert_eq!(subs.heap_bytes(), 0);
    }

    #[test]
    fn throttle_hands_out_deadlines_in_time_order_only_when_due() {
        let t0 = Instant::now();
        let mut throttle = Throttle::default();
        let client = ClientKey::new(0, 1);
        for (ms, s) in [(30u64, 1u32), (10, 2), (20, 3)] {
            throttle.push(ThrottleDeadline {
                due: t0 + Duration::from_millis(ms),
                client,
                symbol: SymbolId(s),
                channel: Channel::Ticker,
            });
        }
        assert_eq!(throttle.next_due(), Some(t0 + Duration::from_millis(10)));
        assert!(throttle.pop_due(t0).is_none());
        let due: Vec<u32> = std::iter::from_fn(|| throttle.pop_due(t0 + Duration::from_millis(25)))
            .map(|d| d.symbol.0)
            .collect();
        assert_eq!(due, vec![2, 3]);
        assert_eq!(throttle.len(), 1);
    }

    #[test]
    fn serving_a_mark_starts_the_next_throttle_interval() {
        let now = Instant::now();
        let mut sub = ClientSub {
            ticker_throttle_ms: 100,
            ticker_marked: true,
            book_marked: true,
            ..ClientSub::default()
        };
        assert_eq!(sub.marks(), 2);
        sub.served(Channel::Ticker, now);
        assert_eq!(sub.ticker_next, Some(now + Duration::from_millis(100)));
        sub.served(Channel::Book, now);
        assert_eq!(sub.book_next, None, "the book is not throttled");
        assert_eq!(sub.marks(), 0);
    }
}
