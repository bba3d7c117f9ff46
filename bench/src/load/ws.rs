//! A minimal WebSocket client (RFC 6455, client side, no extensions, no TLS), written for
//! a load generator rather than taken from a general-purpose library:
//!
//! - **Reads in large chunks.** Each [`Conn`] owns one read buffer (64 KiB, allocated at
//!   connect, grown only for a frame larger than it) and asks the socket for as much as
//!   fits; [`Conn::next_event`] then walks every complete frame in it without copying:
//!   a text payload is handed out as a range of that buffer. (tokio-tungstenite allocates
//!   a message per frame; fastwebsockets reads into an 8 KiB `BytesMut` and splits a
//!   payload off it per frame.) A partial frame at the end is moved to the front before
//!   the next read.
//! - **Trusts the server to be well-formed** only as far as it must: masked server frames,
//!   reserved bits, fragmented control frames and frames over [`MAX_FRAME_BYTES`] are
//!   errors; text is not UTF-8-validated (the scanner reads ASCII keys only), and the
//!   handshake's `Sec-WebSocket-Accept` is not checked (the status must be `101`).
//! - **One read per wake-up.** A read that returns less than it asked for has emptied
//!   the socket (epoll(7): a short read on a stream socket means the read space is
//!   exhausted), so [`Conn::fill`] then drops the socket's readiness itself. Without
//!   that, the next fill would make one more `read()` just to get `EAGAIN` before
//!   waiting: when the server writes each frame on its own (one frame per wake-up), half
//!   the generator's read system calls. This is why the socket is a tokio [`AsyncFd`]
//!   rather than a `TcpStream`: its ready guard clears only the readiness it saw before
//!   the read, so data that arrived after the read (a newer edge) still wakes the task,
//!   whatever thread polls the reactor.
//! - **Writes** (the subscribe command, pongs, the close) are masked with keys from a
//!   per-connection xorshift generator, and are rare; they allocate.
//!
//! Nothing here spawns or blocks: every call is `async` on the caller's task, and the
//! caller bounds each with a deadline.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::ops::Range;

use tokio::io::unix::AsyncFd;
use tokio::net::TcpSocket;

use super::config::Endpoint;

/// Read buffer per connection, bytes.
pub const READ_BUFFER_BYTES: usize = 64 * 1024;
/// Largest frame accepted from the server (the protocol's messages are far smaller).
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;
/// Largest handshake response accepted.
const MAX_HANDSHAKE_BYTES: usize = 16 * 1024;

/// Opcodes used here.
const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Why a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    /// TCP connect failed (is the engine listening on that address?).
    #[error("connect: {0}")]
    Connect(io::Error),
    /// The server did not upgrade the connection.
    #[error("handshake: {0}")]
    Handshake(String),
    /// Reading or writing the socket failed.
    #[error("io: {0}")]
    Io(#[from] io::Error),
    /// The server broke RFC 6455.
    #[error("protocol: {0}")]
    Protocol(&'static str),
    /// The server closed the TCP connection without a close frame.
    #[error("connection ended without a close frame")]
    Eof,
}

/// One thing read from the server.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A whole text message in one frame: its payload's range in [`Conn::bytes`].
    Text(Range<usize>),
    /// A text message that came in fragments, reassembled: [`Conn::assembled`].
    Assembled,
    /// A binary message (the protocol has none); counted, not read.
    Binary,
    /// A ping; its payload's range in [`Conn::bytes`]. The caller answers with a pong.
    Ping(Range<usize>),
    /// A pong.
    Pong,
    /// A close frame and its status code, if it had one.
    Close(Option<u16>),
}

/// A client connection after the handshake.
pub struct Conn {
    /// Nonblocking, registered with the runtime's reactor.
    stream: AsyncFd<TcpStream>,
    buf: Vec<u8>,
    /// Start of the first unparsed byte in `buf`.
    pos: usize,
    /// End of the bytes read into `buf`.
    end: usize,
    /// A fragmented text message being reassembled (rare: the engine never fragments).
    fragments: Vec<u8>,
    in_fragments: bool,
    rng: u32,
}

impl Conn {
    /// Connects to `addr` (with `SO_RCVBUF` set to `recv_buffer_bytes` before the connect,
    /// when given) and performs the opening handshake for `endpoint`.
    pub async fn connect(
        addr: SocketAddr,
        endpoint: &Endpoint,
        recv_buffer_bytes: Option<u32>,
        seed: u32,
    ) -> Result<Conn, WsError> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(WsError::Connect)?;
        if let Some(bytes) = recv_buffer_bytes {
            socket
                .set_recv_buffer_size(bytes)
                .map_err(WsError::Connect)?;
        }
        let stream = socket.connect(addr).await.map_err(WsError::Connect)?;
        stream.set_nodelay(true).map_err(WsError::Connect)?;
        // Still nonblocking after `into_std`, as AsyncFd needs.
        let stream = stream.into_std().map_err(WsError::Connect)?;
        // SAFETY: `register` needs the fd to stay open and the same for the AsyncFd's
        // whole life: the AsyncFd owns the std `TcpStream`, which owns the fd and closes
        // it only when dropped with the AsyncFd, and whose `as_raw_fd` never changes.
        let stream = unsafe { AsyncFd::register(stream) }
            .map_err(|e| WsError::Connect(io::Error::from(e)))?;
        let mut conn = Conn {
            stream,
            buf: vec![0; READ_BUFFER_BYTES],
            pos: 0,
            end: 0,
            fragments: Vec::new(),
            in_fragments: false,
            // xorshift32 must not start at 0.
            rng: seed.wrapping_mul(2_654_435_761) | 1,
        };
        conn.handshake(endpoint).await?;
        Ok(conn)
    }

    async fn handshake(&mut self, endpoint: &Endpoint) -> Result<(), WsError> {
        let mut key = [0u8; 16];
        for chunk in key.chunks_mut(4) {
            chunk.copy_from_slice(&self.next_random().to_le_bytes());
        }
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n",
            endpoint.path,
            endpoint.authority(),
            base64(&key)
        );
        write_all(&self.stream, request.as_bytes()).await?;
        loop {
            if let Some(at) = memchr::memmem::find(&self.buf[..self.end], b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..at]);
                let status = head.lines().next().unwrap_or_default();
                if status.split_whitespace().nth(1) != Some("101") {
                    return Err(WsError::Handshake(format!("server answered {status:?}")));
                }
                // Anything after the head is already WebSocket data.
                self.pos = at + 4;
                return Ok(());
            }
            if self.end >= MAX_HANDSHAKE_BYTES {
                return Err(WsError::Handshake("response head too long".into()));
            }
            let n = read_some(&self.stream, &mut self.buf[self.end..]).await?;
            if n == 0 {
                return Err(WsError::Handshake("connection closed".into()));
            }
            self.end += n;
        }
    }

    /// Reads once from the socket into the free end of the buffer (after moving unparsed
    /// bytes to the front); returns how many bytes came, 0 at end of stream.
    pub async fn fill(&mut self) -> io::Result<usize> {
        self.fill_at_most(usize::MAX).await
    }

    /// [`Conn::fill`], reading at most `max` bytes (at least 1).
    pub async fn fill_at_most(&mut self, max: usize) -> io::Result<usize> {
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        if self.end == self.buf.len() {
            // A frame larger than the buffer: grow (bounded by the frame size check).
            let len = (self.buf.len() * 2).min(MAX_FRAME_BYTES + 14);
            if len == self.buf.len() {
                return Err(io::Error::other("frame larger than the buffer limit"));
            }
            self.buf.resize(len, 0);
        }
        let until = self.end.saturating_add(max.max(1)).min(self.buf.len());
        let n = read_some(&self.stream, &mut self.buf[self.end..until]).await?;
        self.end += n;
        Ok(n)
    }

    /// The next complete frame's event from what was read, or `None` when more bytes are
    /// needed ([`Conn::fill`]). Continuation frames are reassembled silently.
    pub fn next_event(&mut self) -> Result<Option<Event>, WsError> {
        loop {
            let Some(head) = parse_head(&self.buf[self.pos..self.end])? else {
                return Ok(None);
            };
            let start = self.pos + head.header_len;
            let payload = start..start + head.payload_len;
            self.pos = payload.end;
            match head.opcode {
                OP_TEXT if head.fin && !self.in_fragments => return Ok(Some(Event::Text(payload))),
                OP_TEXT if !self.in_fragments => {
                    self.fragments.clear();
                    self.fragments.extend_from_slice(&self.buf[payload]);
                    self.in_fragments = true;
                }
                OP_CONTINUATION if self.in_fragments => {
                    self.fragments.extend_from_slice(&self.buf[payload]);
                    if head.fin {
                        self.in_fragments = false;
                        return Ok(Some(Event::Assembled));
                    }
                }
                OP_BINARY if head.fin => return Ok(Some(Event::Binary)),
                OP_PING => return Ok(Some(Event::Ping(payload))),
                OP_PONG => return Ok(Some(Event::Pong)),
                OP_CLOSE => {
                    let p = &self.buf[payload];
                    let code = (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]]));
                    return Ok(Some(Event::Close(code)));
                }
                _ => return Err(WsError::Protocol("unexpected opcode or fragment")),
            }
        }
    }

    /// Bytes of the read buffer, for the ranges in [`Event`].
    pub fn bytes(&self, range: Range<usize>) -> &[u8] {
        &self.buf[range]
    }

    /// The last reassembled fragmented message.
    pub fn assembled(&self) -> &[u8] {
        &self.fragments
    }

    /// Sends a text message.
    pub async fn send_text(&mut self, text: &[u8]) -> io::Result<()> {
        self.send(OP_TEXT, text).await
    }

    /// Answers a ping.
    pub async fn send_pong(&mut self, payload: &[u8]) -> io::Result<()> {
        self.send(OP_PONG, payload).await
    }

    /// Sends a close frame with `code` (the connection is not waited on afterwards).
    pub async fn send_close(&mut self, code: u16) -> io::Result<()> {
        self.send(OP_CLOSE, &code.to_be_bytes()).await
    }

    async fn send(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        let mask = self.next_random().to_le_bytes();
        let frame = client_frame(opcode, payload, mask);
        write_all(&self.stream, &frame).await
    }

    fn next_random(&mut self) -> u32 {
        // xorshift32 (Marsaglia): masking keys need only be unpredictable to proxies.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng = x;
        x
    }
}

/// Reads once into `buf` (waiting until the socket is readable); 0 at end of stream. A
/// short read (less than `buf` holds) has emptied the socket, so its readiness is
/// dropped here and the next call waits without a `read()` that would only say
/// `EAGAIN` (see the module doc for why that is race-free).
async fn read_some(fd: &AsyncFd<TcpStream>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        let mut ready = fd.readable().await?;
        match ready.try_io(|s| s.get_ref().read(buf)) {
            Ok(Ok(n)) => {
                if n > 0 && n < buf.len() {
                    ready.clear_ready();
                }
                return Ok(n);
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Ok(Err(e)) => return Err(e),
            // `EAGAIN`: try_io has cleared the readiness; wait for the next edge.
            Err(_would_block) => {}
        }
    }
}

/// Writes all of `bytes`, waiting whenever the socket is full.
async fn write_all(fd: &AsyncFd<TcpStream>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        let mut ready = fd.writable().await?;
        match ready.try_io(|s| s.get_ref().write(bytes)) {
            Ok(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(Ok(n)) => bytes = &bytes[n..],
            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => {}
        }
    }
    Ok(())
}

/// A parsed server frame header.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    fin: bool,
    opcode: u8,
    header_len: usize,
    payload_len: usize,
}

/// The header of the frame at the start of `b`, if the whole frame is there.
fn parse_head(b: &[u8]) -> Result<Option<Head>, WsError> {
    if b.len() < 2 {
        return Ok(None);
    }
    if b[0] & 0x70 != 0 {
        return Err(WsError::Protocol("reserved bits set"));
    }
    if b[1] & 0x80 != 0 {
        return Err(WsError::Protocol("masked server frame"));
    }
    let fin = b[0] & 0x80 != 0;
    let opcode = b[0] & 0x0f;
    let (payload_len, header_len) = match b[1] & 0x7f {
        126 if b.len() >= 4 => (usize::from(u16::from_be_bytes([b[2], b[3]])), 4),
        127 if b.len() >= 10 => {
            let mut len = [0u8; 8];
            len.copy_from_slice(&b[2..10]);
            let len = usize::try_from(u64::from_be_bytes(len)).unwrap_or(usize::MAX);
            (len, 10)
        }
        126 | 127 => return Ok(None),
        n => (usize::from(n), 2),
    };
    if opcode >= 0x8 && (!fin || payload_len > 125) {
        return Err(WsError::Protocol("fragmented or oversized control frame"));
    }
    if payload_len > MAX_FRAME_BYTES {
        return Err(WsError::Protocol("frame over the size limit"));
    }
    if b.len() < header_len + payload_len {
        return Ok(None);
    }
    Ok(Some(Head {
        fin,
        opcode,
        header_len,
        payload_len,
    }))
}

/// A masked client frame, FIN set.
fn client_frame(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 14);
    f.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= usize::from(u16::MAX) => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Standard base64 with padding (for the 16-byte handshake key).
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn server_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![(u8::from(fin) << 7) | opcode];
        match payload.len() {
            n if n < 126 => f.push(n as u8),
            n if n < 65536 => {
                f.push(126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want);
        }
    }

    #[test]
    fn heads_of_every_length_form_and_partial_frames() {
        for len in [0, 125, 126, 65535, 65536] {
            let f = server_frame(true, OP_TEXT, &vec![b'x'; len]);
            let head = parse_head(&f).unwrap().unwrap();
            assert_eq!(head.payload_len, len);
            assert_eq!(head.header_len + len, f.len());
            assert_eq!(
                parse_head(&f[..f.len() - 1]).unwrap(),
                None,
                "partial {len}"
            );
        }
        assert_eq!(parse_head(&[0x81]).unwrap(), None);
    }

    #[test]
    fn bad_frames_are_errors() {
        assert!(
            parse_head(&[0x81, 0x81, 0, 0, 0, 0, b'x']).is_err(),
            "masked"
        );
        assert!(parse_head(&[0xC1, 0x00]).is_err(), "rsv1");
        assert!(parse_head(&[0x09, 0x00]).is_err(), "fragmented ping");
    }

    #[test]
    fn client_frames_are_masked_and_round_trip() {
        let mask = [1, 2, 3, 4];
        let f = client_frame(OP_TEXT, b"hello", mask);
        assert_eq!(&f[..2], &[0x81, 0x80 | 5]);
        assert_eq!(&f[2..6], &mask);
        let unmasked: Vec<u8> = f[6..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        assert_eq!(unmasked, b"hello");
        let long = client_frame(OP_TEXT, &[0; 300], mask);
        assert_eq!(&long[..4], &[0x81, 0x80 | 126, 1, 44]);
    }

    /// Guards the short-read shortcut: frames that come one at a time, with pauses, on a
    /// runtime whose other thread may poll the reactor, must each wake the reader (a
    /// readiness dropped wrongly would stall it until the next frame, and the last one
    /// for ever).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn frames_that_come_one_by_one_each_wake_the_reader() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        const FRAMES: usize = 50;
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = vec![0u8; 1024];
            let _ = s.read(&mut req).await.unwrap();
            s.write_all(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
                .await
                .unwrap();
            for i in 0..FRAMES {
                s.write_all(&server_frame(true, OP_TEXT, format!("{i}").as_bytes()))
                    .await
                    .unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(if i % 10 == 0 {
                    5
                } else {
                    0
                }))
                .await;
            }
            s
        });
        let endpoint = Endpoint::parse(&format!("ws://{addr}/ws"), "ws").unwrap();
        let mut conn = Conn::connect(addr, &endpoint, None, 7).await.unwrap();
        let read_all = async {
            let mut got = Vec::new();
            while got.len() < FRAMES {
                match conn.next_event().unwrap() {
                    Some(Event::Text(r)) => {
                        got.push(String::from_utf8_lossy(conn.bytes(r)).into_owned())
                    }
                    Some(other) => panic!("{other:?}"),
                    None => assert!(conn.fill().await.unwrap() > 0),
                }
            }
            got
        };
        let got = tokio::time::timeout(std::time::Duration::from_secs(10), read_all)
            .await
            .expect("every frame arrives");
        assert_eq!(got, (0..FRAMES).map(|i| i.to_string()).collect::<Vec<_>>());
        drop(server.await.unwrap());
    }

    #[tokio::test]
    async fn reads_frames_in_place_and_reassembles_fragments() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = vec![0u8; 1024];
            let n = s.read(&mut req).await.unwrap();
            assert!(String::from_utf8_lossy(&req[..n]).starts_with("GET /ws HTTP/1.1"));
            let mut out =
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n".to_vec();
            // Data right behind the head must not be lost.
            out.extend(server_frame(true, OP_TEXT, b"{\"a\":1}"));
            out.extend(server_frame(false, OP_TEXT, b"{\"b\""));
            out.extend(server_frame(true, OP_PING, b"p"));
            out.extend(server_frame(true, OP_CONTINUATION, b":2}"));
            out.extend(server_frame(true, OP_CLOSE, &1001u16.to_be_bytes()));
            s.write_all(&out).await.unwrap();
            s
        });
        let endpoint = Endpoint::parse(&format!("ws://{addr}/ws"), "ws").unwrap();
        let mut conn = Conn::connect(addr, &endpoint, Some(4096), 1).await.unwrap();
        let mut seen = Vec::new();
        while seen.len() < 4 {
            match conn.next_event().unwrap() {
                Some(Event::Text(r)) => seen.push(String::from_utf8_lossy(conn.bytes(r)).into()),
                Some(Event::Assembled) => {
                    seen.push(String::from_utf8_lossy(conn.assembled()).into())
                }
                Some(Event::Ping(r)) => seen.push(format!("ping {:?}", conn.bytes(r))),
                Some(Event::Close(code)) => seen.push(format!("close {code:?}")),
                Some(other) => panic!("{other:?}"),
                None => assert!(conn.fill().await.unwrap() > 0),
            }
        }
        assert_eq!(
            seen,
            ["{\"a\":1}", "ping [112]", "{\"b\":2}", "close Some(1001)"]
        );
        drop(server.await.unwrap());
    }
}
