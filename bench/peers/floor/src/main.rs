//! Peer "floor": the load generator's own latency floor. Not a contender: the least a
//! server can do, so that `tickwire bench compare` can show how much of a measured
//! latency is the generator's (one thread walking every socket for each trade) rather
//! than the server's.
//!
//! One thread, nonblocking sockets from the standard library (and one `listen` call from
//! libc, for a backlog of [`LISTEN_BACKLOG`] instead of std's 128: the generator opens
//! a connection a millisecond during its ramp, and a full backlog drops SYNs, which the
//! client retries only after a second or three). Every
//! millisecond it makes the trades due at `--rate` per second (forgetting a backlog of
//! more than a second, like the other peers) and does one `write()` of those trades'
//! frames to every subscribed client, in the order they connected: one trade a write
//! while a pass over the clients takes under a tick; when it takes longer, the trades
//! that came due meanwhile go out together (self-clocked: one write per client per
//! trade would saturate the core at 1000 clients × 1000 trades/s, and its latency would
//! then be its own queue, not the generator's). Then it accepts new connections and
//! reads what clients sent: clients not yet subscribed every tick, the others every
//! [`READ_SUBSCRIBED_EVERY`] (they only ping or close; reading a thousand idle sockets
//! every millisecond would cost more than the trades).
//!
//! Serves the subset of docs/protocol.md that the comparison uses, like the other peers:
//! `GET /ws` (any other path: 404), `subscribe` (answered `subscribed`), `ping`, and
//! `trade` messages of `sim:BTC-USD` with contiguous `seq` from 1, `ts` = `ingest_ts` in
//! ns since the epoch, the same text as `bench/peers/naive-rust` (169 bytes a frame).
//!
//! Overload: a write that the socket does not take whole leaves the rest in the client's
//! pending bytes, flushed before anything newer; a client with more than
//! [`MAX_PENDING_BYTES`] pending, a malformed frame or a failed socket is dropped.
//! Memory: per client, its pending bytes and a read buffer of at most [`MAX_READ_BYTES`].
//!
//! floor --port 9004 [--rate 1000]

use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SYMBOL: &str = "sim:BTC-USD";
/// The timer's period.
const TICK: Duration = Duration::from_millis(1);
/// How often subscribed clients' sockets are read (pings, closes).
const READ_SUBSCRIBED_EVERY: Duration = Duration::from_millis(50);
/// Bytes a client may have pending before it is dropped.
const MAX_PENDING_BYTES: usize = 4 << 20;
/// Largest request head or client frame accepted.
const MAX_READ_BYTES: usize = 64 << 10;
/// Pending connections the kernel holds for us (capped by `net.core.somaxconn`); the
/// other peers' runtimes ask for 511 to 1024.
const LISTEN_BACKLOG: i32 = 4096;
/// RFC 6455's GUID for `Sec-WebSocket-Accept`.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == &format!("--{name}"))
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn main() -> io::Result<()> {
    let port = arg("port", 9004) as u16;
    let rate = arg("rate", 1000);
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    // Calling listen(2) again on a listening socket sets its backlog anew.
    // SAFETY: listen takes a file descriptor and an integer; the descriptor is the
    // listener's own and stays open for the call.
    if unsafe { libc::listen(listener.as_raw_fd(), LISTEN_BACKLOG) } != 0 {
        return Err(io::Error::last_os_error());
    }
    listener.set_nonblocking(true)?;
    println!("floor peer on 127.0.0.1:{port}, {rate} trades/s");
    let mut clients: Vec<Client> = Vec::new();
    let mut trades = Trades::new(rate);
    let mut frame = Vec::with_capacity(256);
    let start = Instant::now();
    let mut next_tick = start + TICK;
    let mut next_read_all = start;
    loop {
        // The trades first: they are what is measured.
        frame.clear();
        while let Some(text) = trades.next_due(start.elapsed()) {
            push_frame(&mut frame, OP_TEXT, text.as_bytes());
        }
        if !frame.is_empty() {
            for c in clients.iter_mut().filter(|c| c.subscribed && !c.closed) {
                c.send(&frame);
            }
        }
        for c in clients.iter_mut().filter(|c| !c.pending.is_empty()) {
            c.flush();
        }
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_ok() {
                        let _ = stream.set_nodelay(true);
                        clients.push(Client::new(stream));
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // WouldBlock: none left; anything else (out of fds): try next tick.
                Err(_) => break,
            }
        }
        let now = Instant::now();
        let read_all = now >= next_read_all;
        if read_all {
            next_read_all = now + READ_SUBSCRIBED_EVERY;
        }
        for c in clients.iter_mut() {
            if read_all || !c.subscribed {
                c.read();
            }
        }
        clients.retain(|c| !c.closed);
        let now = Instant::now();
        if next_tick > now {
            std::thread::sleep(next_tick - now);
            next_tick += TICK;
        } else {
            // Late: the next tick is a full period from now, as a skipping timer does.
            next_tick = now + TICK;
        }
    }
}

/// The synthetic trades, made as the other peers make them.
struct Trades {
    rate: u64,
    done: u64,
    seq: u64,
    rng: u32,
    due: u64,
}

impl Trades {
    fn new(rate: u64) -> Trades {
        Trades {
            rate,
            done: 0,
            seq: 0,
            rng: 1,
            due: 0,
        }
    }

    /// The next trade due by `elapsed` since the start, if one is.
    fn next_due(&mut self, elapsed: Duration) -> Option<String> {
        if self.done == self.due {
            let due = (elapsed.as_nanos() * u128::from(self.rate) / 1_000_000_000) as u64;
            if due - self.done > self.rate {
                self.done = due; // more than a second behind: forget the backlog
            }
            self.due = due;
            if self.done == self.due {
                return None;
            }
        }
        self.done += 1;
        Some(self.make(wall_ns()))
    }

    /// The next trade's text, stamped `ts`.
    fn make(&mut self, ts: u64) -> String {
        self.seq += 1;
        let seq = self.seq;
        let mut rng = self.rng;
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        self.rng = rng;
        let buy = rng & 1 == 1;
        let size = f64::from(1 + (rng >> 1) % 2500) / 10000.0;
        format!(
            r#"{{"type":"trade","symbol":"{SYMBOL}","seq":{seq},"price":{},"size":{size},"side":"{}","trade_id":"{seq}","ts":{ts},"ingest_ts":{ts}}}"#,
            if buy { "67000" } else { "66999.9" },
            if buy { "buy" } else { "sell" },
        )
    }
}

const OP_TEXT: u8 = 0x1;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Appends an unmasked server frame (FIN set) to `out`.
fn push_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

/// One connection.
struct Client {
    stream: TcpStream,
    /// The upgrade is done.
    open: bool,
    subscribed: bool,
    closed: bool,
    /// Bytes read and not yet handled.
    inbuf: Vec<u8>,
    /// Bytes the socket did not take yet, oldest first.
    pending: Vec<u8>,
}

impl Client {
    fn new(stream: TcpStream) -> Client {
        Client {
            stream,
            open: false,
            subscribed: false,
            closed: false,
            inbuf: Vec::new(),
            pending: Vec::new(),
        }
    }

    /// One write of `frame`, or a queue behind what is pending.
    fn send(&mut self, frame: &[u8]) {
        if !self.pending.is_empty() {
            if self.pending.len() + frame.len() > MAX_PENDING_BYTES {
                self.closed = true;
                return;
            }
            self.pending.extend_from_slice(frame);
            self.flush();
            return;
        }
        match self.stream.write(frame) {
            Ok(n) if n == frame.len() => {}
            Ok(n) => self.pending.extend_from_slice(&frame[n..]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => self.pending.extend_from_slice(frame),
            Err(_) => self.closed = true,
        }
    }

    /// Writes pending bytes until the socket stops taking them.
    fn flush(&mut self) {
        while !self.pending.is_empty() {
            match self.stream.write(&self.pending) {
                Ok(0) => {
                    self.closed = true;
                    return;
                }
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.closed = true;
                    return;
                }
            }
        }
    }

    /// Reads what the client sent and handles it.
    fn read(&mut self) {
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.closed = true;
                    return;
                }
                Ok(n) => {
                    if self.inbuf.len() + n > MAX_READ_BYTES {
                        self.closed = true;
                        return;
                    }
                    self.inbuf.extend_from_slice(&chunk[..n]);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.closed = true;
                    return;
                }
            }
        }
        if !self.open {
            self.handshake();
        }
        while self.open && !self.closed {
            match client_frame(&self.inbuf) {
                Frame::Partial => break,
                Frame::Bad => {
                    self.reply(OP_CLOSE, &1002u16.to_be_bytes());
                    self.closed = true;
                }
                Frame::Whole {
                    opcode,
                    payload,
                    len,
                } => {
                    self.inbuf.drain(..len);
                    self.on_frame(opcode, &payload);
                }
            }
        }
    }

    fn handshake(&mut self) {
        let Some(end) = find(&self.inbuf, b"\r\n\r\n") else {
            return;
        };
        let head = String::from_utf8_lossy(&self.inbuf[..end]).into_owned();
        self.inbuf.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let path = lines
            .next()
            .and_then(|l| l.strip_prefix("GET "))
            .and_then(|l| l.split(' ').next());
        let key = lines.find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("sec-websocket-key")
                .then(|| v.trim().to_owned())
        });
        match (path, key) {
            (Some("/ws"), Some(key)) => {
                let response = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: \
                     Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                    accept_key(&key)
                );
                self.send(response.as_bytes());
                self.open = true;
            }
            _ => {
                self.send(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                self.closed = true;
            }
        }
    }

    fn on_frame(&mut self, opcode: u8, payload: &[u8]) {
        match opcode {
            OP_TEXT => {
                let reply = answer(&String::from_utf8_lossy(payload), &mut self.subscribed);
                self.reply(OP_TEXT, reply.as_bytes());
            }
            OP_PING => self.reply(OP_PONG, payload),
            OP_CLOSE => {
                self.reply(OP_CLOSE, payload.get(..2).unwrap_or(&[]));
                self.closed = true;
            }
            // Fragments, binary, pongs: nothing the comparison sends that needs an answer.
            _ => {}
        }
    }

    fn reply(&mut self, opcode: u8, payload: &[u8]) {
        let mut f = Vec::with_capacity(payload.len() + 4);
        push_frame(&mut f, opcode, payload);
        self.send(&f);
    }
}

/// A client frame at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
enum Frame {
    /// Not all there yet.
    Partial,
    /// Unmasked, reserved bits, or too large.
    Bad,
    /// A whole frame: its opcode, unmasked payload and length in the buffer.
    Whole {
        opcode: u8,
        payload: Vec<u8>,
        len: usize,
    },
}

/// Parses a masked client frame (RFC 6455 §5.2).
fn client_frame(b: &[u8]) -> Frame {
    if b.len() < 2 {
        return Frame::Partial;
    }
    if b[0] & 0x70 != 0 || b[1] & 0x80 == 0 {
        return Frame::Bad;
    }
    let opcode = b[0] & 0x0f;
    let (len, mut at) = match b[1] & 0x7f {
        126 if b.len() >= 4 => (usize::from(u16::from_be_bytes([b[2], b[3]])), 4),
        127 => return Frame::Bad, // nothing the comparison sends is that long
        126 => return Frame::Partial,
        n => (usize::from(n), 2),
    };
    if len > MAX_READ_BYTES || (opcode >= 0x8 && len > 125) {
        return Frame::Bad;
    }
    if b.len() < at + 4 + len {
        return Frame::Partial;
    }
    let mask = [b[at], b[at + 1], b[at + 2], b[at + 3]];
    at += 4;
    let payload = b[at..at + len]
        .iter()
        .enumerate()
        .map(|(i, x)| x ^ mask[i % 4])
        .collect();
    Frame::Whole {
        opcode,
        payload,
        len: at + len,
    }
}

/// The answer to a command; sets `subscribed` when it subscribes to `trades` of
/// [`SYMBOL`]. A small scanner, not a JSON parser: it reads the values of `op`, `id`,
/// `channels` and `symbols` wherever they are.
fn answer(text: &str, subscribed: &mut bool) -> String {
    let t = text.trim();
    if !(t.starts_with('{') && t.ends_with('}')) {
        return r#"{"type":"error","code":"bad_json","message":"not JSON"}"#.into();
    }
    let id = value(t, "id")
        .filter(|v| !v.is_empty() && v.bytes().all(|c| c.is_ascii_digit()))
        .map_or(String::new(), |v| format!("\"id\":{v},"));
    match value(t, "op") {
        Some("\"subscribe\"") => {
            let list = |key| value(t, key).filter(|v| v.starts_with('[')).unwrap_or("[]");
            let (channels, symbols) = (list("channels"), list("symbols"));
            if channels.contains("\"trades\"") && symbols.contains(&format!("\"{SYMBOL}\"")) {
                *subscribed = true;
            }
            format!(r#"{{"type":"subscribed",{id}"channels":{channels},"symbols":{symbols}}}"#)
        }
        Some("\"ping\"") => format!(r#"{{"type":"pong",{id}"ts":{}}}"#, wall_ns()),
        _ => format!(r#"{{"type":"error",{id}"code":"bad_request","message":"unsupported op"}}"#),
    }
}

/// The raw text of the value of `"key"` in `json`: a string with its quotes, an array with
/// its brackets, or a number or literal.
fn value<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let needle = format!("\"{key}\"");
    let mut from = 0;
    let rest = loop {
        let at = from + json[from..].find(&needle)?;
        let after = json[at + needle.len()..].trim_start();
        if let Some(v) = after.strip_prefix(':') {
            break v.trim_start();
        }
        from = at + needle.len();
    };
    let b = rest.as_bytes();
    let end = match b.first()? {
        b'"' => {
            let mut i = 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            (i + 1).min(b.len())
        }
        b'[' => {
            let (mut depth, mut in_str, mut i) = (0usize, false, 0);
            loop {
                let c = *b.get(i)?;
                match c {
                    b'\\' if in_str => i += 1,
                    b'"' => in_str = !in_str,
                    b'[' if !in_str => depth += 1,
                    b']' if !in_str => {
                        depth -= 1;
                        if depth == 0 {
                            break i + 1;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => rest
            .find(|c: char| c == ',' || c == '}' || c.is_whitespace())
            .unwrap_or(rest.len()),
    };
    rest.get(..end)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
fn accept_key(key: &str) -> String {
    base64(&sha1(format!("{key}{WS_GUID}").as_bytes()))
}

/// SHA-1 (FIPS 180-4), for the handshake only.
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (i, x) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_and_the_rfc_6455_accept_key() {
        let hex: String = sha1(b"abc").iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "a9993e364706816aba3e25717850c26c9cd0d89d");
        let long = sha1(&[b'a'; 1000]);
        assert_eq!(long[..4], [0x29, 0x1e, 0x9a, 0x6c]);
        // RFC 6455 §1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn trades_are_the_other_peers_text_and_size() {
        let mut t = Trades::new(1000);
        let first = t.make(1_763_700_000_123_456_789);
        // naive-rust's first trade with the same ts (xorshift32 from 1: buy, size 0.0185).
        assert_eq!(
            first,
            r#"{"type":"trade","symbol":"sim:BTC-USD","seq":1,"price":67000,"size":0.0185,"side":"buy","trade_id":"1","ts":1763700000123456789,"ingest_ts":1763700000123456789}"#
        );
        let mut frame = Vec::new();
        push_frame(&mut frame, OP_TEXT, first.as_bytes());
        assert_eq!(frame.len(), first.len() + 4);
        assert_eq!(&frame[..4], &[0x81, 126, 0, first.len() as u8]);
    }

    #[test]
    fn trades_due_follow_the_clock_and_forget_a_long_backlog() {
        let mut t = Trades::new(1000);
        assert!(t.next_due(Duration::from_micros(900)).is_none());
        assert!(t.next_due(Duration::from_micros(2500)).is_some());
        assert!(t.next_due(Duration::from_micros(2500)).is_some());
        assert!(t.next_due(Duration::from_micros(2500)).is_none());
        // Five seconds late: only what is due after the forgotten backlog.
        assert!(t.next_due(Duration::from_secs(5)).is_none());
        assert!(t.next_due(Duration::from_micros(5_001_500)).is_some());
        assert!(t.next_due(Duration::from_micros(5_001_500)).is_none());
        assert_eq!(t.seq, 3);
    }

    #[test]
    fn commands() {
        let mut sub = false;
        let r = answer(
            r#"{"op":"subscribe","id":1,"channels":["trades"],"symbols":["sim:BTC-USD"],"depth":10}"#,
            &mut sub,
        );
        assert!(sub);
        assert_eq!(
            r,
            r#"{"type":"subscribed","id":1,"channels":["trades"],"symbols":["sim:BTC-USD"]}"#
        );
        let mut sub = false;
        answer(
            r#"{"op":"subscribe","channels":["book"],"symbols":["sim:BTC-USD"]}"#,
            &mut sub,
        );
        assert!(!sub);
        assert!(answer(r#"{"op": "ping", "id": 7}"#, &mut sub)
            .starts_with(r#"{"type":"pong","id":7,"ts":"#));
        assert!(answer("nope", &mut sub).contains("bad_json"));
        assert!(answer(r#"{"op":"x"}"#, &mut sub).contains("bad_request"));
        assert_eq!(
            value(r#"{"a":"x\"y","b":[["]"],1]}"#, "b"),
            Some(r#"[["]"],1]"#)
        );
        assert_eq!(value(r#"{"a":"x\"y","b":1}"#, "a"), Some(r#""x\"y""#));
    }

    #[test]
    fn client_frames() {
        let mask = [1u8, 2, 3, 4];
        let text = b"{\"op\":\"ping\"}";
        let mut f = vec![0x81, 0x80 | text.len() as u8];
        f.extend_from_slice(&mask);
        f.extend(text.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        assert_eq!(client_frame(&f[..f.len() - 1]), Frame::Partial);
        assert_eq!(
            client_frame(&f),
            Frame::Whole {
                opcode: OP_TEXT,
                payload: text.to_vec(),
                len: f.len()
            }
        );
        assert_eq!(client_frame(&[0x81, 0x05, b'h']), Frame::Bad, "unmasked");
    }
}
