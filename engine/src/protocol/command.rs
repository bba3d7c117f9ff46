//! Client commands: one JSON object per text frame, parsed into a [`Command`].
//!
//! ```json
//! {"op":"subscribe","id":1,"channels":["ticker","book"],"symbols":["sim:BTC-USD"],"depth":5}
//! {"op":"unsubscribe","id":2,"channels":["book"],"symbols":["sim:ETH-USD"]}
//! {"op":"symbols","id":3}
//! {"op":"ping","id":4}
//! ```
//!
//! Parsing is the cold path: it allocates (the JSON DOM, the symbol strings) and is
//! bounded by the gateway's message size limit and command rate limit. It never panics;
//! every input maps to a [`Command`] or a [`CommandError`] whose message names the field
//! and what it must be.
//!
//! Readings of the protocol (see `docs/protocol-notes.md`):
//! - Unknown extra fields are ignored (so are `depth`/`throttle_ms` on an `unsubscribe`,
//!   and `channels`/`symbols` on `symbols`/`ping`); a known field given twice is a
//!   `bad_request`.
//! - `channels` and `symbols` must be non-empty arrays of strings; repeated entries are
//!   merged (symbols keep the order of first appearance).
//! - `id` is optional; when present it must be an integer that fits an `i64`. Once it is
//!   valid, every error of the command carries it.
//! - Symbols are not checked here: the session answers `unknown_symbol`.

use std::collections::HashSet;
use std::fmt;

use simd_json::{BorrowedValue, StaticNode};
use thiserror::Error;

use super::version::Version;

/// Book levels per side when a subscribe gives no `depth`.
pub const DEFAULT_DEPTH: u16 = 10;
/// The largest `depth` a client may ask for.
pub const MAX_DEPTH: u16 = 1000;
/// `throttle_ms` when a subscribe gives none: every change is sent.
pub const DEFAULT_THROTTLE_MS: u32 = 0;
/// The largest `throttle_ms` a client may ask for.
pub const MAX_THROTTLE_MS: u32 = 60_000;

/// A data channel of a symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    /// `ticker`: best bid/ask, last trade, volume.
    Ticker,
    /// `trades`: every trade.
    Trades,
    /// `book`: L2 snapshot and updates.
    Book,
}

impl Channel {
    /// Every channel, in index order.
    pub const ALL: [Channel; 3] = [Channel::Ticker, Channel::Trades, Channel::Book];

    /// The name on the wire: `ticker`, `trades`, `book`.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Ticker => "ticker",
            Channel::Trades => "trades",
            Channel::Book => "book",
        }
    }

    /// Dense index, 0..3, for per-channel tables.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The channel of a wire name; `None` for any other string (names are case-sensitive).
    pub fn from_name(name: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of channels, as a bitmask over [`Channel::index`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ChannelSet(u8);

impl ChannelSet {
    /// No channel.
    pub const EMPTY: ChannelSet = ChannelSet(0);
    /// Every channel.
    pub const ALL: ChannelSet = ChannelSet(0b111);

    /// Whether `channel` is in the set.
    pub fn contains(self, channel: Channel) -> bool {
        self.0 & Self::bit(channel) != 0
    }

    /// Adds `channel`.
    pub fn insert(&mut self, channel: Channel) {
        self.0 |= Self::bit(channel);
    }

    /// Removes `channel`.
    pub fn remove(&mut self, channel: Channel) {
        self.0 &= !Self::bit(channel);
    }

    /// Whether the set holds no channel.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Number of channels in the set.
    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The channels in the set, in index order (`ticker`, `trades`, `book`).
    pub fn iter(self) -> impl Iterator<Item = Channel> {
        Channel::ALL.into_iter().filter(move |&c| self.contains(c))
    }

    fn bit(channel: Channel) -> u8 {
        1 << channel.index()
    }
}

impl From<Channel> for ChannelSet {
    fn from(channel: Channel) -> ChannelSet {
        ChannelSet(Self::bit(channel))
    }
}

impl FromIterator<Channel> for ChannelSet {
    fn from_iter<I: IntoIterator<Item = Channel>>(iter: I) -> ChannelSet {
        let mut set = ChannelSet::EMPTY;
        for channel in iter {
            set.insert(channel);
        }
        set
    }
}

/// The `code` of an `error` message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The frame is not a JSON object.
    BadJson,
    /// A field is missing, of the wrong type or out of range; an unknown op or channel.
    BadRequest,
    /// A symbol the engine does not carry.
    UnknownSymbol,
    /// More commands per second than the limit.
    RateLimited,
    /// Past the per-connection subscription limit.
    TooManySubscriptions,
    /// A command the connection's token does not allow.
    Unauthorized,
}

impl ErrorCode {
    /// The code on the wire: `bad_json`, `bad_request`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownSymbol => "unknown_symbol",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooManySubscriptions => "too_many_subscriptions",
            ErrorCode::Unauthorized => "unauthorized",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One parsed client command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Subscribe every listed symbol to every listed channel.
    Subscribe {
        /// The client's id, echoed in the reply.
        id: Option<i64>,
        /// Channels to subscribe (never empty).
        channels: ChannelSet,
        /// Symbol names as the client spelled them, duplicates removed (never empty).
        symbols: Vec<String>,
        /// Book levels per side, `1..=MAX_DEPTH`.
        depth: u16,
        /// Minimum interval between `ticker`/`book` messages, `0..=MAX_THROTTLE_MS`.
        throttle_ms: u32,
        /// Version 2: the epoch the client's seqs belong to (`None` in version 1).
        epoch: Option<String>,
        /// Version 2: per symbol name, the last trade seq the client holds, in the order
        /// given (`None` when absent, and always in version 1).
        since: Option<Vec<(String, u64)>>,
    },
    /// Unsubscribe every listed symbol from every listed channel.
    Unsubscribe {
        /// The client's id, echoed in the reply.
        id: Option<i64>,
        /// Channels to drop (never empty).
        channels: ChannelSet,
        /// Symbol names, duplicates removed (never empty).
        symbols: Vec<String>,
    },
    /// List the symbols the engine carries.
    Symbols {
        /// The client's id, echoed in the reply.
        id: Option<i64>,
    },
    /// Application-level ping, answered with `pong`.
    Ping {
        /// The client's id, echoed in the reply.
        id: Option<i64>,
    },
}

impl Command {
    /// The command's `id`, if it had one.
    pub fn id(&self) -> Option<i64> {
        match self {
            Command::Subscribe { id, .. }
            | Command::Unsubscribe { id, .. }
            | Command::Symbols { id }
            | Command::Ping { id } => *id,
        }
    }
}

/// Why a frame is not a valid command; the session answers it with an `error` message.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{code}: {message}")]
pub struct CommandError {
    /// The command's `id` when it had a valid one, to echo in the `error`.
    pub id: Option<i64>,
    /// `bad_json` or `bad_request`.
    pub code: ErrorCode,
    /// What is wrong and what is expected, for a human.
    pub message: String,
}

impl CommandError {
    fn bad_json(message: &str) -> CommandError {
        CommandError {
            id: None,
            code: ErrorCode::BadJson,
            message: message.to_owned(),
        }
    }

    fn bad_request(id: Option<i64>, message: impl Into<String>) -> CommandError {
        CommandError {
            id,
            code: ErrorCode::BadRequest,
            message: message.into(),
        }
    }
}

const OPS: &str = "subscribe, unsubscribe, symbols or ping";
const CHANNELS: &str = "ticker, trades or book";
/// Client strings quoted back in messages are cut to this many bytes.
const ECHO_MAX: usize = 64;

/// A run of this many digits may be an integer beyond 64 bits (`-9223372036854775809`).
const LONG_DIGIT_RUN: usize = 19;
/// The deepest bracket nesting parsed; a command needs 2 (an object holding arrays).
const MAX_NESTING: usize = 32;

/// Parses one text frame's payload. simd-json parses in place (it unescapes strings
/// into the buffer), hence `&mut`; the buffer's contents are unspecified afterwards.
///
/// ```
/// use tickwire_engine::protocol::command::{self, Channel, Command};
/// let mut frame = br#"{"op":"subscribe","channels":["trades"],"symbols":["sim:BTC-USD"]}"#.to_vec();
/// match command::parse(&mut frame) {
///     Ok(Command::Subscribe { channels, symbols, depth, .. }) => {
///         assert!(channels.contains(Channel::Trades));
///         assert_eq!(symbols, ["sim:BTC-USD"]);
///         assert_eq!(depth, command::DEFAULT_DEPTH);
///     }
///     other => panic!("{other:?}"),
/// }
/// ```
pub fn parse(payload: &mut [u8]) -> Result<Command, CommandError> {
    parse_as(payload, Version::V1)
}

/// Parses one command of a client speaking `version`: version 1 ignores the fields that
/// version 2 adds (`epoch`, `since`), as it ignores any unknown field.
pub fn parse_as(payload: &mut [u8], version: Version) -> Result<Command, CommandError> {
    let scan = prescan(payload);
    if scan.too_deep {
        // simd-json builds its DOM (and drops it) recursively: a few thousand brackets
        // would overflow the stack and abort the process.
        return Err(CommandError::bad_json(&format!(
            "JSON nested deeper than {MAX_NESTING} levels: a command is a flat object"
        )));
    }
    // simd-json rejects an integer beyond 64 bits as a malformed number, and it rewrites
    // strings in place as it goes. To answer such valid JSON with `bad_request` (a field
    // out of range) or not at all (an ignored field) rather than `bad_json`, keep a copy
    // of the rare payload that could hold one and let serde_json, which reads big
    // integers as floats, decide.
    let copy = scan.long_digit_run.then(|| clamp_long_integers(payload));
    match simd_json::to_borrowed_value(payload) {
        Ok(value) => from_value(&value, version),
        Err(_) => {
            let value = copy
                .and_then(|copy| serde_json::from_slice::<serde_json::Value>(&copy).ok())
                .and_then(|value| BorrowedValue::try_from(value).ok());
            match value {
                Some(value) => from_value(&value, version),
                None => Err(CommandError::bad_json(
                    "not valid JSON: send one JSON object per text frame",
                )),
            }
        }
    }
}

/// Digits kept of an integer outside strings: still far past any field's range (so
/// `bad_request`), and within what serde_json reads as a float (about 1e308).
const MAX_INTEGER_DIGITS: usize = 300;

/// A copy of `payload` with every run of digits outside strings cut to
/// [`MAX_INTEGER_DIGITS`]: serde_json refuses a number past `f64`'s range as invalid, and
/// such an integer is valid JSON that must get `bad_request` or be ignored.
fn clamp_long_integers(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len());
    let (mut in_string, mut escaped, mut run) = (false, false, 0usize);
    for &b in payload {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if b == b'"' {
            in_string = true;
        }
        run = if !in_string && b.is_ascii_digit() {
            run + 1
        } else {
            0
        };
        if run <= MAX_INTEGER_DIGITS {
            out.push(b);
        }
    }
    out
}

/// The command's top-level integer `id`, read without parsing the rest: for the reply to
/// a command refused before parsing (rate limited). Keys inside nested values or strings
/// are not mistaken for it; anything unusual gives `None`.
///
/// ```
/// use tickwire_engine::protocol::command::peek_id;
/// assert_eq!(peek_id(br#"{"op":"ping","id":42}"#), Some(42));
/// assert_eq!(peek_id(br#"{"symbols":["\"id\":7"],"x":{"id":1}}"#), None);
/// ```
pub fn peek_id(bytes: &[u8]) -> Option<i64> {
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let start = i + 1;
                let mut j = start;
                while j < bytes.len() && bytes[j] != b'"' {
                    j += if bytes[j] == b'\\' { 2 } else { 1 };
                }
                let key = bytes.get(start..j)?;
                i = j + 1;
                if depth == 1 && key == b"id" {
                    let rest = bytes.get(i..)?;
                    let rest = rest
                        .trim_ascii_start()
                        .strip_prefix(b":")?
                        .trim_ascii_start();
                    let end = rest
                        .iter()
                        .position(|b| !(b.is_ascii_digit() || *b == b'-'))
                        .unwrap_or(rest.len());
                    return std::str::from_utf8(&rest[..end]).ok()?.parse().ok();
                }
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

/// What one pass over the raw bytes tells before parsing.
struct Prescan {
    /// Brackets nest deeper than [`MAX_NESTING`] (outside strings).
    too_deep: bool,
    /// A run of [`LONG_DIGIT_RUN`] digits: maybe an integer beyond 64 bits.
    long_digit_run: bool,
}

fn prescan(bytes: &[u8]) -> Prescan {
    let mut scan = Prescan {
        too_deep: false,
        long_digit_run: false,
    };
    let mut depth = 0usize;
    let mut digits = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if b.is_ascii_digit() {
            digits += 1;
            scan.long_digit_run |= digits >= LONG_DIGIT_RUN;
        } else {
            digits = 0;
        }
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    scan.too_deep = true;
                    return scan;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    scan
}

/// The fields the protocol knows, as found in the object.
#[derive(Default)]
struct Fields<'v, 'de> {
    op: Option<&'v BorrowedValue<'de>>,
    id: Option<&'v BorrowedValue<'de>>,
    channels: Option<&'v BorrowedValue<'de>>,
    symbols: Option<&'v BorrowedValue<'de>>,
    depth: Option<&'v BorrowedValue<'de>>,
    throttle_ms: Option<&'v BorrowedValue<'de>>,
    epoch: Option<&'v BorrowedValue<'de>>,
    since: Option<&'v BorrowedValue<'de>>,
}

fn from_value(value: &BorrowedValue<'_>, version: Version) -> Result<Command, CommandError> {
    let BorrowedValue::Object(object) = value else {
        return Err(CommandError::bad_json(
            "a command must be a JSON object, such as {\"op\":\"ping\"}",
        ));
    };
    let mut fields = Fields::default();
    // The first known field given twice (objects may iterate in hash order, so no
    // "last one wins"): an error, reported once the id is known.
    let mut duplicate = None;
    let mut duplicate_id = false;
    for (key, value) in object.iter() {
        let slot = match key.as_ref() {
            "op" => &mut fields.op,
            "id" => &mut fields.id,
            "channels" => &mut fields.channels,
            "symbols" => &mut fields.symbols,
            "depth" => &mut fields.depth,
            "throttle_ms" => &mut fields.throttle_ms,
            "epoch" if version.is_v2() => &mut fields.epoch,
            "since" if version.is_v2() => &mut fields.since,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            duplicate_id |= key == "id";
            duplicate = duplicate.or(Some(key.as_ref()));
        }
    }

    if duplicate_id {
        return Err(CommandError::bad_request(
            None,
            "id is given more than once",
        ));
    }
    let id = match fields.id {
        None => None,
        Some(value) => Some(as_i64(value).ok_or_else(|| {
            CommandError::bad_request(
                None,
                format!("id must be an integer from {} to {}", i64::MIN, i64::MAX),
            )
        })?),
    };
    if let Some(name) = duplicate {
        return Err(CommandError::bad_request(
            id,
            format!("{name} is given more than once"),
        ));
    }
    let op = match fields.op {
        None => {
            return Err(CommandError::bad_request(
                id,
                format!("op is required: one of {OPS}"),
            ))
        }
        Some(BorrowedValue::String(op)) => op.as_ref(),
        Some(_) => {
            return Err(CommandError::bad_request(
                id,
                format!("op must be a string: one of {OPS}"),
            ))
        }
    };
    match op {
        "subscribe" => {
            let channels = channels(id, fields.channels)?;
            let symbols = symbols(id, fields.symbols)?;
            let depth = match fields.depth {
                None => DEFAULT_DEPTH,
                Some(value) => as_i64(value)
                    .filter(|d| (1..=i64::from(MAX_DEPTH)).contains(d))
                    .map(|d| d as u16)
                    .ok_or_else(|| {
                        CommandError::bad_request(
                            id,
                            format!("depth must be an integer from 1 to {MAX_DEPTH}"),
                        )
                    })?,
            };
            let throttle_ms = match fields.throttle_ms {
                None => DEFAULT_THROTTLE_MS,
                Some(value) => as_i64(value)
                    .filter(|t| (0..=i64::from(MAX_THROTTLE_MS)).contains(t))
                    .map(|t| t as u32)
                    .ok_or_else(|| {
                        CommandError::bad_request(
                            id,
                            format!("throttle_ms must be an integer from 0 to {MAX_THROTTLE_MS}"),
                        )
                    })?,
            };
            let epoch = match fields.epoch {
                None => None,
                Some(BorrowedValue::String(e)) => Some(e.to_string()),
                Some(_) => {
                    return Err(CommandError::bad_request(
                        id,
                        "epoch must be a string: the one a subscribed message gave",
                    ))
                }
            };
            let since = fields.since.map(|value| since(id, value)).transpose()?;
            Ok(Command::Subscribe {
                id,
                channels,
                symbols,
                depth,
                throttle_ms,
                epoch,
                since,
            })
        }
        "unsubscribe" => Ok(Command::Unsubscribe {
            id,
            channels: channels(id, fields.channels)?,
            symbols: symbols(id, fields.symbols)?,
        }),
        "symbols" => Ok(Command::Symbols { id }),
        "ping" => Ok(Command::Ping { id }),
        other => Err(CommandError::bad_request(
            id,
            format!("unknown op \"{}\": expected {OPS}", echo(other)),
        )),
    }
}

/// An integer that fits an `i64`; floats such as `5.0` are not integers here.
/// `since`: an object of symbol names to the last trade seq held (an integer ≥ 0).
fn since(id: Option<i64>, value: &BorrowedValue<'_>) -> Result<Vec<(String, u64)>, CommandError> {
    let BorrowedValue::Object(object) = value else {
        return Err(CommandError::bad_request(
            id,
            "since must be an object of symbol to last trade seq held, such as {\"sim:BTC-USD\":1234}",
        ));
    };
    let mut out: Vec<(String, u64)> = Vec::with_capacity(object.len());
    for (name, seq) in object.iter() {
        let Some(seq) = as_i64(seq).and_then(|n| u64::try_from(n).ok()) else {
            return Err(CommandError::bad_request(
                id,
                format!(
                    "since[\"{}\"] must be an integer from 0 to {}: the last trade seq held",
                    echo(name),
                    i64::MAX
                ),
            ));
        };
        if out.iter().any(|(n, _)| n == name.as_ref()) {
            return Err(CommandError::bad_request(
                id,
                format!("since names \"{}\" more than once", echo(name)),
            ));
        }
        out.push((name.to_string(), seq));
    }
    Ok(out)
}

fn as_i64(value: &BorrowedValue<'_>) -> Option<i64> {
    match value {
        BorrowedValue::Static(StaticNode::I64(n)) => Some(*n),
        BorrowedValue::Static(StaticNode::U64(n)) => i64::try_from(*n).ok(),
        _ => None,
    }
}

/// The elements of a required, non-empty array field.
fn non_empty_array<'v, 'de>(
    id: Option<i64>,
    name: &str,
    what: &str,
    value: Option<&'v BorrowedValue<'de>>,
) -> Result<&'v [BorrowedValue<'de>], CommandError> {
    match value {
        None => Err(CommandError::bad_request(
            id,
            format!("{name} is required: a non-empty array of {what}"),
        )),
        Some(BorrowedValue::Array(items)) if !items.is_empty() => Ok(items.as_slice()),
        Some(_) => Err(CommandError::bad_request(
            id,
            format!("{name} must be a non-empty array of {what}"),
        )),
    }
}

fn channels(
    id: Option<i64>,
    value: Option<&BorrowedValue<'_>>,
) -> Result<ChannelSet, CommandError> {
    let what = "channel names (ticker, trades, book)";
    let mut set = ChannelSet::EMPTY;
    for (i, item) in non_empty_array(id, "channels", what, value)?
        .iter()
        .enumerate()
    {
        let BorrowedValue::String(name) = item else {
            return Err(CommandError::bad_request(
                id,
                format!("channels[{i}] must be a string: {CHANNELS}"),
            ));
        };
        let channel = Channel::from_name(name).ok_or_else(|| {
            CommandError::bad_request(
                id,
                format!("unknown channel \"{}\": expected {CHANNELS}", echo(name)),
            )
        })?;
        set.insert(channel);
    }
    Ok(set)
}

fn symbols(
    id: Option<i64>,
    value: Option<&BorrowedValue<'_>>,
) -> Result<Vec<String>, CommandError> {
    let what = "symbol names such as \"sim:BTC-USD\"";
    let items = non_empty_array(id, "symbols", what, value)?;
    let mut seen = HashSet::with_capacity(items.len());
    let mut symbols = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let BorrowedValue::String(name) = item else {
            return Err(CommandError::bad_request(
                id,
                format!("symbols[{i}] must be a string such as \"sim:BTC-USD\""),
            ));
        };
        if seen.insert(name.as_ref()) {
            symbols.push(name.to_string());
        }
    }
    Ok(symbols)
}

/// A client string cut to [`ECHO_MAX`] bytes on a char boundary, for error messages.
fn echo(s: &str) -> std::borrow::Cow<'_, str> {
    if s.len() <= ECHO_MAX {
        return s.into();
    }
    let mut end = ECHO_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end]).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ErrorCode::{BadJson, BadRequest};

    fn parse_str(s: &str) -> Result<Command, CommandError> {
        parse(&mut s.as_bytes().to_vec())
    }

    fn set(channels: &[Channel]) -> ChannelSet {
        channels.iter().copied().collect()
    }

    #[test]
    fn protocol_examples_parse() {
        assert_eq!(
            parse_str(
                r#"{"op":"subscribe","id":1,"channels":["ticker","book"],"symbols":["sim:BTC-USD","sim:ETH-USD"],"depth":5}"#
            ),
            Ok(Command::Subscribe {
                id: Some(1),
                channels: set(&[Channel::Ticker, Channel::Book]),
                symbols: vec!["sim:BTC-USD".into(), "sim:ETH-USD".into()],
                depth: 5,
                throttle_ms: 0,
                epoch: None,
                since: None,
            })
        );
        assert_eq!(
            parse_str(
                r#"{"op":"unsubscribe","id":2,"channels":["book"],"symbols":["sim:ETH-USD"]}"#
            ),
            Ok(Command::Unsubscribe {
                id: Some(2),
                channels: set(&[Channel::Book]),
                symbols: vec!["sim:ETH-USD".into()],
            })
        );
        assert_eq!(
            parse_str(r#"{"op":"symbols","id":3}"#),
            Ok(Command::Symbols { id: Some(3) })
        );
        assert_eq!(
            parse_str(r#"{"op":"ping","id":4}"#),
            Ok(Command::Ping { id: Some(4) })
        );
    }

    #[test]
    fn version_2_reads_epoch_and_since_and_version_1_ignores_them() {
        let text = r#"{"op":"subscribe","id":5,"channels":["trades"],"symbols":["a","b"],"epoch":"e1","since":{"a":12,"b":0}}"#;
        let v2 = parse_as(&mut text.as_bytes().to_vec(), Version::V2);
        assert!(
            matches!(&v2, Ok(Command::Subscribe { epoch: Some(e), since: Some(s), .. })
                if e == "e1" && s == &[("a".to_owned(), 12), ("b".to_owned(), 0)]),
            "{v2:?}"
        );
        assert!(matches!(
            parse_str(text),
            Ok(Command::Subscribe {
                epoch: None,
                since: None,
                ..
            })
        ));
        let bad = |extra: &str| {
            let text = format!(
                r#"{{"op":"subscribe","id":6,"channels":["trades"],"symbols":["a"]{extra}}}"#
            );
            let v1 = parse_as(&mut text.clone().into_bytes(), Version::V1);
            assert!(v1.is_ok(), "version 1 ignores {extra}: {v1:?}");
            parse_as(&mut text.into_bytes(), Version::V2).unwrap_err()
        };
        for extra in [
            r#","epoch":7"#,
            r#","epoch":null"#,
            r#","since":[1]"#,
            r#","since":{"a":-1}"#,
            r#","since":{"a":1.5}"#,
            r#","since":{"a":"1"}"#,
        ] {
            let err = bad(extra);
            assert_eq!(
                (err.code, err.id),
                (ErrorCode::BadRequest, Some(6)),
                "{extra}"
            );
        }
        let absent = parse_as(
            &mut br#"{"op":"subscribe","channels":["trades"],"symbols":["a"]}"#.to_vec(),
            Version::V2,
        );
        assert!(matches!(
            absent,
            Ok(Command::Subscribe {
                epoch: None,
                since: None,
                ..
            })
        ));
    }

    #[test]
    fn defaults_limits_and_leniency() {
        let sub = |extra: &str| {
            parse_str(&format!(
                r#"{{"op":"subscribe","channels":["trades","trades","ticker"],"symbols":["b","a","b","c\u0041"]{extra}}}"#
            ))
        };
        assert_eq!(
            sub(""),
            Ok(Command::Subscribe {
                id: None,
                channels: set(&[Channel::Ticker, Channel::Trades]),
                symbols: vec!["b".into(), "a".into(), "cA".into()],
                depth: DEFAULT_DEPTH,
                throttle_ms: DEFAULT_THROTTLE_MS,
                epoch: None,
                since: None,
            })
        );
        let limits = sub(r#","depth":1000,"throttle_ms":60000,"extra":{"x":[1,2]}"#);
        assert!(matches!(
            limits,
            Ok(Command::Subscribe {
                depth: 1000,
                throttle_ms: 60000,
                ..
            })
        ));
        assert!(matches!(
            sub(r#","depth":1,"throttle_ms":0,"id":-7"#),
            Ok(Command::Subscribe {
                id: Some(-7),
                depth: 1,
                throttle_ms: 0,
                ..
            })
        ));
        // Ignored where they mean nothing, even when malformed.
        assert!(parse_str(
            r#"{"op":"unsubscribe","channels":["book"],"symbols":["x"],"depth":0,"throttle_ms":"no"}"#
        )
        .is_ok());
        assert_eq!(
            parse_str(r#" {"channels":"nope","op":"ping","huge":123456789012345678901234567890} "#),
            Ok(Command::Ping { id: None })
        );
        // Past f64's range too (over 309 digits): still valid JSON.
        let digits = "7".repeat(400);
        assert_eq!(
            parse_str(&format!(
                r#"{{"op":"ping","huge":{digits},"s":"{digits}"}}"#
            )),
            Ok(Command::Ping { id: None })
        );
        assert_eq!(
            parse_str(&format!(r#"{{"op":"ping","id":{digits}}}"#))
                .unwrap_err()
                .code,
            BadRequest
        );
        assert_eq!(
            parse_str(r#"{"op":"ping","id":9223372036854775807}"#),
            Ok(Command::Ping { id: Some(i64::MAX) })
        );
        assert_eq!(
            parse_str(r#"{"op":"ping","id":-9223372036854775808}"#),
            Ok(Command::Ping { id: Some(i64::MIN) })
        );
    }

    #[test]
    fn malformed_commands_get_the_right_code_and_id() {
        let sub = |fields: &str| {
            format!(
                r#"{{"op":"subscribe","id":7,"channels":["book"],"symbols":["sim:X"],{fields}}}"#
            )
        };
        let cases: Vec<(String, ErrorCode, Option<i64>)> = vec![
            // Not JSON, or not an object.
            ("".into(), BadJson, None),
            ("   ".into(), BadJson, None),
            (r#"{"op":"ping""#.into(), BadJson, None),
            (r#"{"op":"ping",}"#.into(), BadJson, None),
            (r#"{"op":'ping'}"#.into(), BadJson, None),
            (r#"{"op":"ping"} {"op":"ping"}"#.into(), BadJson, None),
            ("[1,2,3]".into(), BadJson, None),
            (r#"[{"op":"ping"}]"#.into(), BadJson, None),
            (r#""ping""#.into(), BadJson, None),
            ("null".into(), BadJson, None),
            ("42".into(), BadJson, None),
            ("{\"op\":\"ping\",\"x\":\"\u{1}\"}".into(), BadJson, None),
            ("{\"op\":\"ping\",\"id\":01}".into(), BadJson, None),
            (
                r#"{"op":"ping","id":99999999999999999999999,"x":}"#.into(),
                BadJson,
                None,
            ),
            // The id.
            (r#"{"op":"ping","id":"1"}"#.into(), BadRequest, None),
            (r#"{"op":"ping","id":null}"#.into(), BadRequest, None),
            (r#"{"op":"ping","id":1.5}"#.into(), BadRequest, None),
            (
                r#"{"op":"ping","id":9223372036854775808}"#.into(),
                BadRequest,
                None,
            ),
            (
                r#"{"op":"ping","id":99999999999999999999999}"#.into(),
                BadRequest,
                None,
            ),
            (r#"{"op":"ping","id":1,"id":2}"#.into(), BadRequest, None),
            // The op.
            (r#"{"id":5}"#.into(), BadRequest, Some(5)),
            ("{}".into(), BadRequest, None),
            (r#"{"op":null,"id":5}"#.into(), BadRequest, Some(5)),
            (r#"{"op":["ping"],"id":5}"#.into(), BadRequest, Some(5)),
            (r#"{"op":"PING","id":5}"#.into(), BadRequest, Some(5)),
            (r#"{"op":"subscribe ","id":5}"#.into(), BadRequest, Some(5)),
            (
                r#"{"op":"ping","op":"ping","id":5}"#.into(),
                BadRequest,
                Some(5),
            ),
            // Channels and symbols.
            (
                r#"{"op":"subscribe","id":7,"symbols":["sim:X"]}"#.into(),
                BadRequest,
                Some(7),
            ),
            (
                r#"{"op":"subscribe","id":7,"channels":["book"]}"#.into(),
                BadRequest,
                Some(7),
            ),
            (
                r#"{"op":"subscribe","id":7,"channels":"ticker","symbols":["sim:X"]}"#.into(),
                BadRequest,
                Some(7),
            ),
            (
                r#"{"op":"subscribe","id":7,"channels":[],"symbols":["sim:X"]}"#.into(),
                BadRequest,
                Some(7),
            ),
            (
                r#"{"op":"subscribe","id":7,"channels":["book"],"symbols":[]}"#.into(),
                BadRequest,
                Some(7),
            ),
            (
                r#"{"op":"subscribe","id":7,"channels":["trade"],"symbols":["sim:X"]}"#.into(),
                BadRequest,
                Some(7),
            ),
            (
                r#"{"op":"subscribe","id":7,"channels":[["book"]],"symbols":["sim:X"]}"#.into(),
                BadRequest,
                Some(7),
            ),
            (
                r#"{"op":"subscribe","id":7,"channels":["book"],"symbols":["sim:X",1]}"#.into(),
                BadRequest,
                Some(7),
            ),
            (
                r#"{"op":"subscribe","id":7,"channels":["book"],"symbols":[null]}"#.into(),
                BadRequest,
                Some(7),
            ),
            (
                r#"{"op":"subscribe","id":7,"channels":["book"],"symbols":{"a":"sim:X"}}"#.into(),
                BadRequest,
                Some(7),
            ),
            (
                r#"{"op":"unsubscribe","id":7,"channels":["book"],"symbols":"sim:X"}"#.into(),
                BadRequest,
                Some(7),
            ),
            (
                r#"{"op":"unsubscribe","id":7,"channels":[{"a":[{"b":[]}]}],"symbols":["x"]}"#
                    .into(),
                BadRequest,
                Some(7),
            ),
            // Depth and throttle.
            (sub(r#""depth":0"#), BadRequest, Some(7)),
            (sub(r#""depth":1001"#), BadRequest, Some(7)),
            (sub(r#""depth":-5"#), BadRequest, Some(7)),
            (sub(r#""depth":5.0"#), BadRequest, Some(7)),
            (sub(r#""depth":1e1"#), BadRequest, Some(7)),
            (sub(r#""depth":"5""#), BadRequest, Some(7)),
            (sub(r#""depth":null"#), BadRequest, Some(7)),
            (
                sub(r#""depth":99999999999999999999999"#),
                BadRequest,
                Some(7),
            ),
            (sub(r#""throttle_ms":60001"#), BadRequest, Some(7)),
            (sub(r#""throttle_ms":-1"#), BadRequest, Some(7)),
            (sub(r#""throttle_ms":true"#), BadRequest, Some(7)),
            (sub(r#""depth":5,"depth":6"#), BadRequest, Some(7)),
            (
                r#"{"op":"ping","op":"ping","id":1,"id":1}"#.into(),
                BadRequest,
                None,
            ),
        ];
        for (input, code, id) in &cases {
            let err = parse_str(input).expect_err(input);
            assert_eq!((err.code, err.id), (*code, *id), "{input}: {}", err.message);
            assert!(!err.message.is_empty());
        }
        // Deep nesting is refused before simd-json could overflow the stack (it recurses).
        for n in [33, 100_000] {
            let deep = format!(
                r#"{{"id":1,"op":"ping","x":{}{}}}"#,
                "[".repeat(n),
                "]".repeat(n)
            );
            let err = parse_str(&deep).unwrap_err();
            assert_eq!((err.code, err.id), (BadJson, None));
        }
        let ok = format!(
            r#"{{"op":"ping","x":{}{},"s":"[[[[{{{{"}}"#,
            "[".repeat(31),
            "]".repeat(31)
        );
        assert_eq!(parse_str(&ok), Ok(Command::Ping { id: None }));
        // Bytes that are not UTF-8, and a NUL.
        for bytes in [&b"{\"op\":\"ping\",\"x\":\"\xff\"}"[..], b"\xc3\x28", b"\0"] {
            let err = parse(&mut bytes.to_vec()).unwrap_err();
            assert_eq!((err.code, err.id), (BadJson, None));
        }
    }

    #[test]
    fn messages_name_the_field_and_what_is_expected() {
        let message = |s: &str| parse_str(s).unwrap_err().message;
        let sub = |fields: &str| {
            format!(r#"{{"op":"subscribe","channels":["book"],"symbols":["sim:X"],{fields}}}"#)
        };
        assert_eq!(
            message(&sub(r#""depth":0"#)),
            "depth must be an integer from 1 to 1000"
        );
        assert_eq!(
            message(&sub(r#""throttle_ms":60001"#)),
            "throttle_ms must be an integer from 0 to 60000"
        );
        assert_eq!(
            message(r#"{"op":"subscribe","channels":["trade"],"symbols":["x"]}"#),
            r#"unknown channel "trade": expected ticker, trades or book"#
        );
        assert_eq!(
            message(r#"{"op":"subscribe","channels":["book"],"symbols":[]}"#),
            r#"symbols must be a non-empty array of symbol names such as "sim:BTC-USD""#
        );
        assert_eq!(
            message(r#"{"op":"subscribe","channels":["book"],"symbols":["a",2]}"#),
            r#"symbols[1] must be a string such as "sim:BTC-USD""#
        );
        assert_eq!(
            message(r#"{"op":"nope"}"#),
            r#"unknown op "nope": expected subscribe, unsubscribe, symbols or ping"#
        );
        assert_eq!(
            message(r#"{"id":1}"#),
            "op is required: one of subscribe, unsubscribe, symbols or ping"
        );
        let long = message(&format!(r#"{{"op":"{}"}}"#, "é".repeat(100)));
        assert!(long.len() < 150, "client strings are cut: {long}");
    }

    /// xorshift64*: enough randomness for a smoke fuzz, no dependency.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn check_invariants(command: &Command) {
        match command {
            Command::Subscribe {
                channels,
                symbols,
                depth,
                throttle_ms,
                ..
            } => {
                assert!(!channels.is_empty() && !symbols.is_empty());
                assert!((1..=MAX_DEPTH).contains(depth));
                assert!(*throttle_ms <= MAX_THROTTLE_MS);
            }
            Command::Unsubscribe {
                channels, symbols, ..
            } => assert!(!channels.is_empty() && !symbols.is_empty()),
            Command::Symbols { .. } | Command::Ping { .. } => {}
        }
    }

    #[test]
    fn never_panics_on_random_bytes_or_mutations() {
        const SEEDS: &[&str] = &[
            r#"{"op":"subscribe","id":1,"channels":["ticker","book"],"symbols":["sim:BTC-USD","sim:ETH-USD"],"depth":5,"throttle_ms":250}"#,
            r#"{"op":"unsubscribe","id":2,"channels":["book"],"symbols":["sim:ETH-USD"]}"#,
            r#"{"op":"symbols","id":3}"#,
            r#"{"op":"ping","id":4,"x":[1.5e3,null,true,{"y":"\u00e9\n"}]}"#,
        ];
        const ALPHABET: &[u8] = b"{}[]\":,0123456789-+.eE \\utnfalsrx\xff\xc3\x80";
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut input = Vec::new();
        for round in 0..20_000 {
            input.clear();
            if round % 4 == 0 {
                let len = rng.below(64);
                input.extend((0..len).map(|_| rng.next() as u8));
            } else {
                input.extend_from_slice(SEEDS[rng.below(SEEDS.len())].as_bytes());
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(input.len() + 1);
                    match rng.below(4) {
                        0 if at < input.len() => {
                            input.remove(at);
                        }
                        1 => input.insert(at, ALPHABET[rng.below(ALPHABET.len())]),
                        2 if at < input.len() => input[at] = ALPHABET[rng.below(ALPHABET.len())],
                        _ => input.truncate(at),
                    }
                }
            }
            let original = input.clone();
            match parse(&mut input) {
                Ok(command) => check_invariants(&command),
                Err(err) => assert!(
                    matches!(err.code, BadJson | BadRequest),
                    "{:?}",
                    String::from_utf8_lossy(&original)
                ),
            }
        }
    }

    #[test]
    fn channel_set_operations() {
        let mut s = ChannelSet::EMPTY;
        assert!(s.is_empty());
        s.insert(Channel::Book);
        s.insert(Channel::Ticker);
        s.insert(Channel::Book);
        assert_eq!(s.len(), 2);
        assert!(s.contains(Channel::Ticker) && !s.contains(Channel::Trades));
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            [Channel::Ticker, Channel::Book]
        );
        s.remove(Channel::Ticker);
        assert_eq!(s, ChannelSet::from(Channel::Book));
        assert_eq!(ChannelSet::ALL.iter().collect::<Vec<_>>(), Channel::ALL);
        for (i, c) in Channel::ALL.into_iter().enumerate() {
            assert_eq!(c.index(), i);
            assert_eq!(Channel::from_name(c.as_str()), Some(c));
        }
        assert_eq!(Channel::from_name("Ticker"), None);
    }
}
