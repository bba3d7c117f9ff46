//! A light scan of the engine's messages: finds the few fields the load generator needs
//! (`type`, `symbol`, `seq`, `ingest_ts`, `snapshot`, and a gap's `channel`, `from_seq`,
//! `to_seq`) by searching for their keys, without building a document and without
//! allocating.
//!
//! Why a key search is sound for this protocol: every message is one JSON object whose
//! keys are fixed ASCII words, and the other values are numbers, `null`, booleans, arrays
//! of numbers, or strings. A pattern such as `"seq":` cannot occur inside a string value,
//! where a `"` is always escaped as `\"`, and the leading quote keeps `"seq":` from
//! matching `"from_seq":`. The engine writes `ingest_ts` last, so it is searched from the
//! end (past a book's level arrays). A message that lacks a field the scan needs is
//! reported as such ([`Scan::complete`]), never guessed.

use std::sync::LazyLock;

use memchr::memmem::{Finder, FinderRev};

/// The message types the generator tells apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `ticker`
    Ticker,
    /// `trade`
    Trade,
    /// `book` (snapshot or update)
    Book,
    /// `gap`
    Gap,
    /// `subscribed`
    Subscribed,
    /// `error`
    Error,
    /// Anything else (`pong`, `unsubscribed`, `symbols`, unknown types).
    Other,
}

/// The fields found in one message; borrowed from its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scan<'a> {
    /// The message type.
    pub kind: Kind,
    /// `symbol`, as written (escapes not decoded), empty when absent.
    pub symbol: &'a [u8],
    /// `seq`.
    pub seq: Option<u64>,
    /// `ingest_ts`, nanoseconds since the Unix epoch.
    pub ingest_ts: Option<u64>,
    /// `snapshot` is `true` (books).
    pub snapshot: bool,
    /// A gap's `channel`, an error's `code`; empty otherwise.
    pub channel: &'a [u8],
    /// A gap's `from_seq`.
    pub from_seq: Option<u64>,
    /// A gap's `to_seq`.
    pub to_seq: Option<u64>,
}

impl Scan<'_> {
    /// Whether every field the generator uses for this kind was found.
    pub fn complete(&self) -> bool {
        match self.kind {
            Kind::Ticker | Kind::Trade | Kind::Book => {
                !self.symbol.is_empty() && self.seq.is_some() && self.ingest_ts.is_some()
            }
            Kind::Gap => {
                !self.symbol.is_empty()
                    && !self.channel.is_empty()
                    && self.from_seq.is_some()
                    && self.to_seq.is_some()
            }
            _ => true,
        }
    }
}

struct Keys {
    kind: Finder<'static>,
    symbol: Finder<'static>,
    seq: Finder<'static>,
    snapshot: Finder<'static>,
    channel: Finder<'static>,
    code: Finder<'static>,
    from_seq: Finder<'static>,
    to_seq: Finder<'static>,
    ingest_ts: FinderRev<'static>,
}

static KEYS: LazyLock<Keys> = LazyLock::new(|| Keys {
    kind: Finder::new(b"\"type\":\""),
    symbol: Finder::new(b"\"symbol\":\""),
    seq: Finder::new(b"\"seq\":"),
    snapshot: Finder::new(b"\"snapshot\":"),
    channel: Finder::new(b"\"channel\":\""),
    code: Finder::new(b"\"code\":\""),
    from_seq: Finder::new(b"\"from_seq\":"),
    to_seq: Finder::new(b"\"to_seq\":"),
    ingest_ts: FinderRev::new(b"\"ingest_ts\":"),
});

/// Scans one message.
///
/// ```
/// use tickwire_bench::load::scan::{scan, Kind};
/// let m = scan(br#"{"type":"trade","symbol":"sim:BTC-USD","seq":17,"price":1,"size":1,"side":"buy","trade_id":"8","ts":5,"ingest_ts":6}"#);
/// assert_eq!((m.kind, m.symbol, m.seq, m.ingest_ts), (Kind::Trade, &b"sim:BTC-USD"[..], Some(17), Some(6)));
/// ```
pub fn scan(p: &[u8]) -> Scan<'_> {
    let keys = &*KEYS;
    let kind = match string_after(p, &keys.kind) {
        b"ticker" => Kind::Ticker,
        b"trade" => Kind::Trade,
        b"book" => Kind::Book,
        b"gap" => Kind::Gap,
        b"subscribed" => Kind::Subscribed,
        b"error" => Kind::Error,
        _ => Kind::Other,
    };
    let mut m = Scan {
        kind,
        symbol: b"",
        seq: None,
        ingest_ts: None,
        snapshot: false,
        channel: b"",
        from_seq: None,
        to_seq: None,
    };
    match kind {
        Kind::Ticker | Kind::Trade | Kind::Book => {
            m.symbol = string_after(p, &keys.symbol);
            m.seq = number_after(p, &keys.seq);
            m.ingest_ts = keys
                .ingest_ts
                .rfind(p)
                .and_then(|at| number_at(&p[at + keys.ingest_ts.needle().len()..]));
            if kind == Kind::Book {
                m.snapshot = keys
                    .snapshot
                    .find(p)
                    .is_some_and(|at| p[at + keys.snapshot.needle().len()..].starts_with(b"true"));
            }
        }
        Kind::Gap => {
            m.symbol = string_after(p, &keys.symbol);
            m.channel = string_after(p, &keys.channel);
            m.from_seq = number_after(p, &keys.from_seq);
            m.to_seq = number_after(p, &keys.to_seq);
        }
        Kind::Error => m.channel = string_after(p, &keys.code),
        _ => {}
    }
    m
}

/// The string value after `key` (which ends with the value's opening quote), up to the
/// next unescaped quote; empty when the key is absent or the string unterminated.
fn string_after<'a>(p: &'a [u8], key: &Finder<'_>) -> &'a [u8] {
    let Some(at) = key.find(p) else {
        return b"";
    };
    let start = at + key.needle().len();
    let mut i = start;
    while let Some(q) = memchr::memchr2(b'"', b'\\', &p[i..]) {
        match p[i + q] {
            b'"' => return &p[start..i + q],
            _ => i += q + 2, // skip the escaped byte
        }
        if i > p.len() {
            break;
        }
    }
    b""
}

fn number_after(p: &[u8], key: &Finder<'_>) -> Option<u64> {
    let at = key.find(p)?;
    number_at(&p[at + key.needle().len()..])
}

/// A non-negative integer at the start of `p` (after optional spaces); `None` for
/// anything else, including a number too large for u64.
fn number_at(p: &[u8]) -> Option<u64> {
    let p = &p[p.iter().take_while(|b| **b == b' ').count()..];
    let digits = p.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0
        || p.get(digits)
            .is_some_and(|b| matches!(b, b'.' | b'e' | b'E'))
    {
        return None;
    }
    p[..digits].iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Messages as the protocol page writes them.
    const TICKER: &[u8] = br#"{"type":"ticker","symbol":"sim:BTC-USD","seq":42,"bid":67000.5,"bid_size":1.25,"ask":67001,"ask_size":0.4,"last":67000.9,"last_size":0.01,"volume":1532.75,"ts":1763700000123456789,"ingest_ts":1763700000123460000}"#;
    const SNAPSHOT: &[u8] = br#"{"type":"book","symbol":"sim:BTC-USD","seq":901,"snapshot":true,"bids":[[67000.5,1.25],[67000,3]],"asks":[[67001,0.4]],"ts":1763700000123456789,"ingest_ts":1763700000123460000}"#;
    const UPDATE: &[u8] = br#"{"type":"book","symbol":"sim:BTC-USD","seq":902,"snapshot":false,"bids":[[67000,0]],"asks":[[67001.5,2]],"ts":1763700000123999000,"ingest_ts":1763700000124000000}"#;
    const GAP: &[u8] = br#"{"type":"gap","symbol":"sim:BTC-USD","channel":"trades","from_seq":18,"to_seq":240,"reason":"slow_consumer"}"#;
    const ERROR: &[u8] =
        br#"{"type":"error","id":1,"code":"unknown_symbol","message":"no such symbol: sim:NOPE"}"#;

    #[test]
    fn protocol_examples() {
        let t = scan(TICKER);
        assert_eq!(
            (t.kind, t.symbol, t.seq, t.ingest_ts),
            (
                Kind::Ticker,
                &b"sim:BTC-USD"[..],
                Some(42),
                Some(1763700000123460000)
            )
        );
        assert!(t.complete());
        let s = scan(SNAPSHOT);
        assert_eq!((s.kind, s.seq, s.snapshot), (Kind::Book, Some(901), true));
        assert_eq!(s.ingest_ts, Some(1763700000123460000));
        let u = scan(UPDATE);
        assert_eq!((u.seq, u.snapshot), (Some(902), false));
        let g = scan(GAP);
        assert_eq!(
            (g.kind, g.channel, g.from_seq, g.to_seq),
            (Kind::Gap, &b"trades"[..], Some(18), Some(240))
        );
        assert!(g.complete());
        let e = scan(ERROR);
        assert_eq!((e.kind, e.channel), (Kind::Error, &b"unknown_symbol"[..]));
        assert_eq!(scan(br#"{"type":"pong","id":4,"ts":1}"#).kind, Kind::Other);
        assert_eq!(
            scan(br#"{"type":"subscribed","id":1}"#).kind,
            Kind::Subscribed
        );
    }

    #[test]
    fn keys_inside_strings_and_similar_keys_do_not_match() {
        // `trade_id` holds a quoted `"seq":` (escaped), and `from_seq`-like keys come first.
        let m = scan(
            br#"{"type":"trade","symbol":"a\"b","x_seq":5,"seq":7,"trade_id":"\"seq\":9","ts":3,"ingest_ts":4}"#,
        );
        assert_eq!(m.symbol, br#"a\"b"#);
        assert_eq!(m.seq, Some(7));
        assert_eq!(m.ingest_ts, Some(4));
    }

    #[test]
    fn missing_or_malformed_fields_are_reported_not_guessed() {
        let m =
            scan(br#"{"type":"trade","symbol":"s","seq":1.5,"ingest_ts":99999999999999999999999}"#);
        assert_eq!((m.seq, m.ingest_ts), (None, None));
        assert!(!m.complete());
        assert!(!scan(br#"{"type":"gap","symbol":"s"}"#).complete());
        assert_eq!(scan(b"not json").kind, Kind::Other);
        assert_eq!(scan(br#"{"type":"tick"#).kind, Kind::Other);
    }
}
