//! Recordings of a venue session: every received text frame and REST snapshot with its
//! receive time, one per line, so that a session can be replayed through the same
//! decoders (`--feed replay:FILE`) or served again by the mock exchange.
//!
//! ```text
//! #tickwire-recording v1 venue=binance symbols=BTCUSDT,ETHUSDT
//! 1633998512063356900 open
//! 1633998512063356900 ws {"stream":"btcusdt@trade","data":{...}}
//! 1633998512320639000 rest BTCUSDT {"lastUpdateId":160,"bids":[...],"asks":[...]}
//! 1633998519000000000 close
//! ```
//!
//! A make-before-break replacement adds `copen` (it connected), `cws` (its frames, until
//! it takes over) and `switch` (it took over).
//!
//! The first field is the receive time in nanoseconds since the Unix epoch. A payload is
//! the frame's bytes with any CR or LF replaced by a space (JSON whitespace; venues send
//! none inside strings, where they would have to be escaped). Writing goes through a
//! buffer flushed about once a second and at the end; reading reuses one line buffer.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use thiserror::Error;
use tickwire_engine::tick::now_ns;

use crate::venue::Venue;

const MAGIC: &str = "#tickwire-recording v1";

/// Why a recording could not be read.
#[derive(Debug, Error)]
pub enum RecordError {
    /// I/O on the file.
    #[error("recording I/O: {0}")]
    Io(#[from] std::io::Error),
    /// Not a tickwire recording, or a line that is not one of its entries.
    #[error("recording line {line}: {why}")]
    Format {
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        why: String,
    },
}

/// What the recording is of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The venue.
    pub venue: Venue,
    /// Its native symbols.
    pub symbols: Vec<String>,
}

impl Header {
    fn line(&self) -> String {
        format!(
            "{MAGIC} venue={} symbols={}\n",
            self.venue.name(),
            self.symbols.join(",")
        )
    }

    fn parse(line: &str) -> Option<Header> {
        let rest = line.trim_end().strip_prefix(MAGIC)?;
        let mut venue = None;
        let mut symbols = Vec::new();
        for part in rest.split_whitespace() {
            match part.split_once('=') {
                Some(("venue", v)) => venue = Venue::from_name(v),
                Some(("symbols", s)) => {
                    symbols = s
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                }
                _ => {}
            }
        }
        Some(Header {
            venue: venue?,
            symbols,
        })
    }
}

/// One entry to record.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// A connection opened.
    Open,
    /// A text frame arrived.
    Ws(&'a [u8]),
    /// A REST snapshot of `symbol` arrived.
    Rest {
        /// The native symbol.
        symbol: &'a str,
        /// The answer's body.
        body: &'a [u8],
    },
    /// The connection ended.
    Close,
    /// A replacement connection opened beside the current one (make-before-break).
    CandidateOpen,
    /// A text frame on the replacement connection.
    CandidateWs(&'a [u8]),
    /// The replacement took over.
    Switch,
}

/// Writes a recording (see the module's contract).
pub struct Recorder {
    out: BufWriter<Box<dyn Write + Send>>,
    last_flush: Instant,
    failed: bool,
    /// Entries written.
    pub entries: u64,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("entries", &self.entries)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// Creates `path` and writes the header.
    pub fn create(path: &Path, header: &Header) -> std::io::Result<Recorder> {
        Recorder::to_writer(Box::new(File::create(path)?), header)
    }

    /// Records into any writer.
    pub fn to_writer(out: Box<dyn Write + Send>, header: &Header) -> std::io::Result<Recorder> {
        let mut out = BufWriter::with_capacity(256 * 1024, out);
        out.write_all(header.line().as_bytes())?;
        Ok(Recorder {
            out,
            last_flush: Instant::now(),
            failed: false,
            entries: 0,
        })
    }

    /// Appends one entry stamped now.
    pub fn event(&mut self, event: Event<'_>) {
        self.event_at(now_ns(), event);
    }

    /// Appends one entry with a given receive time.
    pub fn event_at(&mut self, ns: u64, event: Event<'_>) {
        let written = (|| {
            let mut buf = itoa::Buffer::new();
            self.out.write_all(buf.format(ns).as_bytes())?;
            match event {
                Event::Open => self.out.write_all(b" open")?,
                Event::Close => self.out.write_all(b" close")?,
                Event::CandidateOpen => self.out.write_all(b" copen")?,
                Event::Switch => self.out.write_all(b" switch")?,
                Event::CandidateWs(text) => {
                    self.out.write_all(b" cws ")?;
                    write_payload(&mut self.out, text)?;
                }
                Event::Ws(text) => {
                    self.out.write_all(b" ws ")?;
                    write_payload(&mut self.out, text)?;
                }
                Event::Rest { symbol, body } => {
                    self.out.write_all(b" rest ")?;
                    self.out.write_all(symbol.as_bytes())?;
                    self.out.write_all(b" ")?;
                    write_payload(&mut self.out, body)?;
                }
            }
            self.out.write_all(b"\n")
        })();
        match written {
            Ok(()) => self.entries += 1,
            Err(e) if !self.failed => {
                self.failed = true;
                tracing::error!(error = %e, "recording: write failed; later entries may be lost");
            }
            Err(_) => {}
        }
    }

    /// Flushes when the last flush is a second old (called from the feed's timer).
    pub fn tick(&mut self) {
        if self.last_flush.elapsed() >= Duration::from_secs(1) {
            let _ = self.flush();
        }
    }

    /// Writes out everything buffered.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.last_flush = Instant::now();
        self.out.flush()
    }
}

fn write_payload(out: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    let mut rest = bytes;
    while let Some(at) = memchr::memchr2(b'\n', b'\r', rest) {
        out.write_all(&rest[..at])?;
        out.write_all(b" ")?;
        rest = &rest[at + 1..];
    }
    out.write_all(rest)
}

/// One recorded entry, borrowed from the reader's line buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry<'a> {
    /// A connection opened.
    Open,
    /// A text frame.
    Ws(&'a [u8]),
    /// A REST snapshot.
    Rest {
        /// The native symbol.
        symbol: &'a str,
        /// The body.
        body: &'a [u8],
    },
    /// The connection ended.
    Close,
    /// A replacement connection opened.
    CandidateOpen,
    /// A text frame on the replacement connection.
    CandidateWs(&'a [u8]),
    /// The replacement took over.
    Switch,
}

/// Reads a recording entry by entry.
#[derive(Debug)]
pub struct Reader<R> {
    input: R,
    line: Vec<u8>,
    number: u64,
    /// What the recording is of.
    pub header: Header,
}

impl Reader<BufReader<File>> {
    /// Opens `path` and reads its header.
    pub fn open(path: &Path) -> Result<Self, RecordError> {
        Reader::new(BufReader::with_capacity(256 * 1024, File::open(path)?))
    }
}

impl<R: BufRead> Reader<R> {
    /// Reads the header from `input`.
    pub fn new(mut input: R) -> Result<Self, RecordError> {
        let mut line = Vec::new();
        input.read_until(b'\n', &mut line)?;
        let header =
            Header::parse(&String::from_utf8_lossy(&line)).ok_or_else(|| RecordError::Format {
                line: 1,
                why: format!("not a tickwire recording (expected `{MAGIC} venue=... symbols=...`)"),
            })?;
        Ok(Reader {
            input,
            line,
            number: 1,
            header,
        })
    }

    /// The next entry and its receive time; `None` at the end.
    pub fn next_entry(&mut self) -> Result<Option<(u64, Entry<'_>)>, RecordError> {
        loop {
            self.line.clear();
            if self.input.read_until(b'\n', &mut self.line)? == 0 {
                return Ok(None);
            }
            self.number += 1;
            while matches!(self.line.last(), Some(b'\n' | b'\r')) {
                self.line.pop();
            }
            if !self.line.is_empty() && self.line[0] != b'#' {
                break;
            }
        }
        let number = self.number;
        let bad = |why: &str| RecordError::Format {
            line: number,
            why: why.to_owned(),
        };
        let line = &self.line[..];
        let (ts, rest) = split_word(line);
        let ts = std::str::from_utf8(ts)
            .ok()
            .and_then(|t| t.parse::<u64>().ok())
            .ok_or_else(|| bad("no receive time"))?;
        let (kind, rest) = split_word(rest);
        let entry = match kind {
            b"open" => Entry::Open,
            b"close" => Entry::Close,
            b"ws" => Entry::Ws(rest),
            b"cws" => Entry::CandidateWs(rest),
            b"copen" => Entry::CandidateOpen,
            b"switch" => Entry::Switch,
            b"rest" => {
                let (symbol, body) = split_word(rest);
                let symbol = std::str::from_utf8(symbol).map_err(|_| bad("symbol is not UTF-8"))?;
                Entry::Rest { symbol, body }
            }
            _ => return Err(bad("unknown entry (expected open, ws, rest or close)")),
        };
        Ok(Some((ts, entry)))
    }
}

/// Replay pace of a recording.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    /// `n` times the recorded pace (1 = as recorded).
    Times(f64),
    /// As fast as possible.
    Max,
}

impl std::str::FromStr for Speed {
    type Err = String;

    fn from_str(s: &str) -> Result<Speed, String> {
        if s.eq_ignore_ascii_case("max") {
            return Ok(Speed::Max);
        }
        match s.trim_end_matches(['x', 'X']).parse::<f64>() {
            Ok(n) if n > 0.0 && n.is_finite() => Ok(Speed::Times(n)),
            _ => Err(format!("speed {s:?}: use 1, N (times faster) or max")),
        }
    }
}

impl Speed {
    /// How long to wait for `recorded_ns` of recorded time.
    pub fn wait(self, recorded_ns: u64) -> Duration {
        match self {
            Speed::Max => Duration::ZERO,
            Speed::Times(n) => Duration::from_nanos((recorded_ns as f64 / n) as u64),
        }
    }
}

fn split_word(b: &[u8]) -> (&[u8], &[u8]) {
    match b.iter().position(|&c| c == b' ') {
        Some(at) => (&b[..at], &b[at + 1..]),
        None => (b, &[]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speeds_parse() {
        assert_eq!("max".parse::<Speed>(), Ok(Speed::Max));
        assert_eq!("10".parse::<Speed>(), Ok(Speed::Times(10.0)));
        assert_eq!("2x".parse::<Speed>(), Ok(Speed::Times(2.0)));
        assert!("0".parse::<Speed>().is_err());
        assert!("fast".parse::<Speed>().is_err());
        assert_eq!(
            Speed::Times(2.0).wait(1_000_000),
            Duration::from_micros(500)
        );
    }

    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn writes_and_reads_back() {
        let header = Header {
            venue: Venue::Kraken,
            symbols: vec!["BTC/USD".into(), "ETH/USD".into()],
        };
        let sink = Shared::default();
        let mut r = Recorder::to_writer(Box::new(sink.clone()), &header).unwrap();
        r.event_at(1, Event::Open);
        r.event_at(2, Event::Ws(b"{\"a\":\n1}"));
        r.event_at(
            3,
            Event::Rest {
                symbol: "BTC/USD",
                body: b"{}",
            },
        );
        r.event_at(4, Event::Close);
        r.flush().unwrap();
        let bytes = sink.0.lock().unwrap().clone();
        let mut reader = Reader::new(&bytes[..]).unwrap();
        assert_eq!(reader.header, header);
        let mut got = Vec::new();
        while let Some((ts, e)) = reader.next_entry().unwrap() {
            got.push(format!("{ts} {e:?}"));
        }
        assert_eq!(
            got,
            [
                "1 Open",
                "2 Ws([123, 34, 97, 34, 58, 32, 49, 125])",
                "3 Rest { symbol: \"BTC/USD\", body: [123, 125] }",
                "4 Close"
            ]
        );
        assert!(Reader::new(&b"hello\n"[..]).is_err());
        let mut bad =
            Reader::new(&b"#tickwire-recording v1 venue=binance symbols=X\nzz ws {}\n"[..])
                .unwrap();
        assert!(bad.next_entry().is_err());
    }
}
