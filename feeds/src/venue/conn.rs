//! The connection layer every venue shares: a WebSocket client over TLS (`wss://`, rustls
//! with Mozilla's roots) or plain TCP (`ws://`, for tests and mocks), a one-shot HTTP GET
//! for REST snapshots, and the reconnect [`Backoff`].
//!
//! - **Framing in place.** [`WsStream`] reads into one buffer it owns and hands out each
//!   message as a slice of it (a fragmented message is joined in a second reused buffer),
//!   so a steady stream allocates nothing once the buffers have grown to the largest
//!   message. Outgoing frames are built in a third reused buffer.
//! - **Cancel safety.** [`WsStream::next`] awaits only a socket read, which loses nothing
//!   when cancelled; the feed's loop can therefore race it against timers. Pings are not
//!   answered inside `next` (a write cancelled halfway would corrupt the stream): `next`
//!   returns them and the caller sends the pong with [`WsStream::pong`].
//! - **Roles.** The same codec serves the client (masks what it sends) and, for the mock
//!   exchange, the server (unmasks what it receives).
//! - **Limits.** A message larger than the configured maximum, a bad frame or a handshake
//!   that is not a WebSocket upgrade is a [`ConnError`]; the feed then reconnects.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sha1::{Digest, Sha1};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The reconnect backoff (shared with the engine's feed restarts).
pub use tickwire_engine::backoff::Backoff;

/// Why a connection, a handshake or a request failed.
#[derive(Debug, Error)]
pub enum ConnError {
    /// The URL is not `ws://`, `wss://`, `http://` or `https://` with a host.
    #[error("bad URL {0:?}: use ws://, wss://, http:// or https:// with a host")]
    BadUrl(String),
    /// Socket or TLS I/O.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Took longer than allowed.
    #[error("timed out")]
    Timeout,
    /// The server did not upgrade to WebSocket, or the HTTP answer was malformed.
    #[error("handshake: {0}")]
    Handshake(String),
    /// An HTTP status other than 200.
    #[error("HTTP {status}: {body}")]
    Status {
        /// The status code.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// A frame that breaks RFC 6455 or passes the size limit.
    #[error("WebSocket protocol: {0}")]
    Protocol(&'static str),
    /// The peer closed the connection.
    #[error("closed by the peer (code {0:?})")]
    Closed(Option<u16>),
}

/// A parsed `ws(s)://` or `http(s)://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// TLS (`wss`, `https`).
    pub tls: bool,
    /// Host name or address, without brackets.
    pub host: String,
    /// Port (the scheme's default when the URL has none).
    pub port: u16,
    /// Path and query, at least `/`.
    pub path: String,
}

impl Url {
    /// Parses `url`.
    ///
    /// ```
    /// use tickwire_feeds::venue::conn::Url;
    /// let u = Url::parse("wss://stream.binance.com:9443/stream").unwrap();
    /// assert_eq!((u.tls, u.host.as_str(), u.port, u.path.as_str()), (true, "stream.binance.com", 9443, "/stream"));
    /// ```
    pub fn parse(url: &str) -> Result<Url, ConnError> {
        let bad = || ConnError::BadUrl(url.to_owned());
        let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
        let (tls, default_port) = match scheme.to_ascii_lowercase().as_str() {
            "ws" | "http" => (false, 80),
            "wss" | "https" => (true, 443),
            _ => return Err(bad()),
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(bad)?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad())?,
                None if after.is_empty() => default_port,
                None => return Err(bad()),
            };
            (host.to_owned(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), p.parse().map_err(|_| bad())?),
                None => (authority.to_owned(), default_port),
            }
        };
        if host.is_empty() {
            return Err(bad());
        }
        Ok(Url {
            tls,
            host,
            port,
            path,
        })
    }

    /// The `Host` header value.
    fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default = if self.tls { 443 } else { 80 };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// A TCP stream, with TLS or without.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf).await,
            Stream::Tls(s) => s.read(buf).await,
        }
    }

    async fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.write_all(buf).await,
            Stream::Tls(s) => {
                s.write_all(buf).await?;
                s.flush().await
            }
        }
    }
}

/// What the codec needs of a byte stream.
pub trait Io: Send {
    /// Reads some bytes (cancel safe: nothing is lost when the future is dropped).
    fn read_some<'a>(
        &'a mut self,
        buf: &'a mut [u8],
    ) -> impl std::future::Future<Output = std::io::Result<usize>> + Send + 'a;
    /// Writes every byte.
    fn write_every<'a>(
        &'a mut self,
        buf: &'a [u8],
    ) -> impl std::future::Future<Output = std::io::Result<()>> + Send + 'a;
}

impl Io for Stream {
    async fn read_some(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.read(buf).await
    }
    async fn write_every(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.write_all(buf).await
    }
}

impl Io for TcpStream {
    async fn read_some(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        AsyncReadExt::read(self, buf).await
    }
    async fn write_every(&mut self, buf: &[u8]) -> std::io::Result<()> {
        AsyncWriteExt::write_all(self, buf).await
    }
}

fn tls_config() -> Result<Arc<rustls::ClientConfig>, ConnError> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|e| ConnError::Handshake(format!("TLS configuration: {e}")))
}

/// Opens a TCP (and, for `wss`/`https`, TLS) connection to `url`'s host.
pub async fn open(url: &Url, timeout: Duration) -> Result<Stream, ConnError> {
    let connect = async {
        let tcp = TcpStream::connect((url.host.as_str(), url.port)).await?;
        // Small messages, latency first.
        tcp.set_nodelay(true)?;
        if !url.tls {
            return Ok(Stream::Plain(tcp));
        }
        let name = rustls::pki_types::ServerName::try_from(url.host.clone())
            .map_err(|_| ConnError::BadUrl(url.host.clone()))?;
        let tls = tokio_rustls::TlsConnector::from(tls_config()?)
            .connect(name, tcp)
            .await?;
        Ok(Stream::Tls(Box::new(tls)))
    };
    tokio::time::timeout(timeout, connect)
        .await
        .map_err(|_| ConnError::Timeout)?
}

/// Reads an HTTP head (up to `\r\n\r\n`) into `buf`; returns the head's length.
pub(crate) async fn read_head<S: Io>(io: &mut S, buf: &mut Vec<u8>) -> Result<usize, ConnError> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(at) = memchr::memmem::find(buf, b"\r\n\r\n") {
            return Ok(at + 4);
        }
        if buf.len() > 64 * 1024 {
            return Err(ConnError::Handshake("HTTP head over 64 KiB".into()));
        }
        let n = io.read_some(&mut chunk).await?;
        if n == 0 {
            return Err(ConnError::Handshake(
                "connection closed in the HTTP head".into(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The value of header `name` (case-insensitive) in an HTTP head.
pub(crate) fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn status_of(head: &str) -> Option<u16> {
    let line = head.split("\r\n").next()?;
    let mut parts = line.split(' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a key.
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(WS_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// Connects to a WebSocket URL and completes the client handshake.
pub async fn connect_ws(
    url: &Url,
    timeout: Duration,
    max_message_bytes: usize,
) -> Result<WsStream<Stream>, ConnError> {
    let mut stream = open(url, timeout).await?;
    let handshake = async {
        let mut rng = SmallRng::from_entropy();
        let key = base64::engine::general_purpose::STANDARD.encode(rng.gen::<[u8; 16]>());
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nUser-Agent: tickwire\r\n\r\n",
            url.path,
            url.host_header()
        );
        stream.write_all(request.as_bytes()).await?;
        let mut buf = Vec::with_capacity(4096);
        let head_len = read_head(&mut stream, &mut buf).await?;
        let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
        match status_of(&head) {
            Some(101) => {}
            Some(status) => {
                return Err(ConnError::Status {
                    status,
                    body: head.lines().next().unwrap_or_default().to_owned(),
                })
            }
            None => return Err(ConnError::Handshake("not an HTTP answer".into())),
        }
        if header(&head, "sec-websocket-accept") != Some(accept_key(&key).as_str()) {
            return Err(ConnError::Handshake(
                "missing or wrong Sec-WebSocket-Accept".into(),
            ));
        }
        // Bytes after the head are the first frames.
        buf.drain(..head_len);
        Ok(buf)
    };
    let leftover = tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| ConnError::Timeout)??;
    let mut ws = WsStream::new(stream, Role::Client, max_message_bytes);
    ws.preload(&leftover);
    Ok(ws)
}

/// Which end of the connection the codec is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Masks what it sends, expects unmasked frames.
    Client,
    /// Sends unmasked, unmasks what it receives.
    Server,
}

/// A received message; its payload stays in the stream's buffers until the next
/// [`WsStream::next`] (read it with [`WsStream::payload`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Msg {
    /// A text message.
    Text,
    /// A binary message.
    Binary,
    /// A ping: answer with [`WsStream::pong`].
    Ping,
    /// A pong.
    Pong,
    /// A close frame with its code; the connection is over.
    Close(Option<u16>),
}

/// Where the current payload is.
#[derive(Debug, Clone, Copy)]
enum Payload {
    None,
    Buf { start: usize, end: usize },
    Joined,
}

/// A WebSocket connection over `S` (see the module's contract).
#[derive(Debug)]
pub struct WsStream<S> {
    io: S,
    role: Role,
    max_message: usize,
    /// Received bytes; `rpos..rlen` is not parsed yet.
    rbuf: Vec<u8>,
    rpos: usize,
    rlen: usize,
    /// Bytes of the last returned frame, released at the next call.
    consumed: usize,
    /// A fragmented message being joined, and its opcode.
    joined: Vec<u8>,
    joined_op: Option<u8>,
    payload: Payload,
    /// Outgoing frame scratch.
    wbuf: Vec<u8>,
    /// Payload of the last ping, for the pong.
    ping: Vec<u8>,
    rng: SmallRng,
}

const OP_CONT: u8 = 0;
const OP_TEXT: u8 = 1;
const OP_BINARY: u8 = 2;
const OP_CLOSE: u8 = 8;
const OP_PING: u8 = 9;
const OP_PONG: u8 = 10;

impl<S: Io> WsStream<S> {
    /// Wraps an upgraded stream.
    pub fn new(io: S, role: Role, max_message_bytes: usize) -> WsStream<S> {
        WsStream {
            io,
            role,
            max_message: max_message_bytes,
            rbuf: vec![0; 64 * 1024],
            rpos: 0,
            rlen: 0,
            consumed: 0,
            joined: Vec::new(),
            joined_op: None,
            payload: Payload::None,
            wbuf: Vec::with_capacity(1024),
            ping: Vec::with_capacity(125),
            rng: SmallRng::from_entropy(),
        }
    }

    /// Bytes that arrived with the handshake.
    pub fn preload(&mut self, bytes: &[u8]) {
        if self.rbuf.len() < bytes.len() {
            self.rbuf.resize(bytes.len(), 0);
        }
        self.rbuf[..bytes.len()].copy_from_slice(bytes);
        self.rpos = 0;
        self.rlen = bytes.len();
    }

    /// The payload of the message [`WsStream::next`] returned last.
    pub fn payload(&self) -> &[u8] {
        match self.payload {
            Payload::None => &[],
            Payload::Buf { start, end } => &self.rbuf[start..end],
            Payload::Joined => &self.joined,
        }
    }

    /// Waits for the next message (cancel safe: see the module's contract).
    pub async fn next(&mut self) -> Result<Msg, ConnError> {
        self.rpos += std::mem::take(&mut self.consumed);
        self.payload = Payload::None;
        loop {
            if let Some(msg) = self.parse()? {
                return Ok(msg);
            }
            // Make room: move the unparsed tail to the front, grow if a frame needs it.
            if self.rpos > 0 {
                self.rbuf.copy_within(self.rpos..self.rlen, 0);
                self.rlen -= self.rpos;
                self.rpos = 0;
            }
            if self.rlen == self.rbuf.len() {
                let grown = (self.rbuf.len() * 2).min(self.max_message + 14);
                if grown <= self.rbuf.len() {
                    return Err(ConnError::Protocol("message over the size limit"));
                }
                self.rbuf.resize(grown, 0);
            }
            let n = self.io.read_some(&mut self.rbuf[self.rlen..]).await?;
            if n == 0 {
                return Err(ConnError::Closed(None));
            }
            self.rlen += n;
        }
    }

    /// Parses frames from the buffer until a message is complete, or more bytes are needed.
    fn parse(&mut self) -> Result<Option<Msg>, ConnError> {
        loop {
            let Some((fin, op, start, end)) = self.frame()? else {
                return Ok(None);
            };
            if op >= 8 {
                let payload = &self.rbuf[start..end];
                return Ok(Some(match op {
                    OP_CLOSE => {
                        let code = (payload.len() >= 2)
                            .then(|| u16::from_be_bytes([payload[0], payload[1]]));
                        Msg::Close(code)
                    }
                    OP_PING => {
                        self.ping.clear();
                        self.ping.extend_from_slice(payload);
                        self.payload = Payload::Buf { start, end };
                        Msg::Ping
                    }
                    OP_PONG => {
                        self.payload = Payload::Buf { start, end };
                        Msg::Pong
                    }
                    _ => return Err(ConnError::Protocol("unknown control opcode")),
                }));
            }
            match (op, self.joined_op) {
                (OP_TEXT | OP_BINARY, None) if fin => {
                    self.payload = Payload::Buf { start, end };
                    return Ok(Some(if op == OP_TEXT {
                        Msg::Text
                    } else {
                        Msg::Binary
                    }));
                }
                (OP_TEXT | OP_BINARY, None) => {
                    self.joined.clear();
                    self.joined.extend_from_slice(&self.rbuf[start..end]);
                    self.joined_op = Some(op);
                }
                (OP_CONT, Some(first)) => {
                    if self.joined.len() + (end - start) > self.max_message {
                        return Err(ConnError::Protocol("message over the size limit"));
                    }
                    self.joined.extend_from_slice(&self.rbuf[start..end]);
                    if fin {
                        self.joined_op = None;
                        self.payload = Payload::Joined;
                        return Ok(Some(if first == OP_TEXT {
                            Msg::Text
                        } else {
                            Msg::Binary
                        }));
                    }
                }
                _ => return Err(ConnError::Protocol("unexpected continuation or opcode")),
            }
            // A fragment was taken in: release its bytes and look at the next frame.
            self.rpos += std::mem::take(&mut self.consumed);
        }
    }

    /// One whole frame at the front of the buffer, unmasked in place: `(fin, opcode,
    /// payload start, payload end)`; its bytes are released at the next call.
    fn frame(&mut self) -> Result<Option<(bool, u8, usize, usize)>, ConnError> {
        let buf = &mut self.rbuf[self.rpos..self.rlen];
        if buf.len() < 2 {
            return Ok(None);
        }
        let fin = buf[0] & 0x80 != 0;
        if buf[0] & 0x70 != 0 {
            return Err(ConnError::Protocol("reserved bits set"));
        }
        let op = buf[0] & 0x0f;
        let masked = buf[1] & 0x80 != 0;
        if masked != (self.role == Role::Server) {
            return Err(ConnError::Protocol("wrong masking for this side"));
        }
        let (len, mut at) = match buf[1] & 0x7f {
            126 => {
                if buf.len() < 4 {
                    return Ok(None);
                }
                (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
            }
            127 => {
                if buf.len() < 10 {
                    return Ok(None);
                }
                let mut b = [0u8; 8];
                b.copy_from_slice(&buf[2..10]);
                (u64::from_be_bytes(b), 10)
            }
            n => (u64::from(n), 2),
        };
        if len > self.max_message as u64 {
            return Err(ConnError::Protocol("message over the size limit"));
        }
        let len = len as usize;
        if op >= 8 && (!fin || len > 125) {
            return Err(ConnError::Protocol("fragmented or long control frame"));
        }
        let mut mask = [0u8; 4];
        if masked {
            if buf.len() < at + 4 {
                return Ok(None);
            }
            mask.copy_from_slice(&buf[at..at + 4]);
            at += 4;
        }
        if buf.len() < at + len {
            return Ok(None);
        }
        if masked {
            for (i, b) in buf[at..at + len].iter_mut().enumerate() {
                *b ^= mask[i & 3];
            }
        }
        self.consumed = at + len;
        let start = self.rpos + at;
        Ok(Some((fin, op, start, start + len)))
    }

    async fn send_frame(&mut self, op: u8, payload: &[u8]) -> Result<(), ConnError> {
        self.wbuf.clear();
        self.wbuf.push(0x80 | op);
        let mask_bit = if self.role == Role::Client { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => self.wbuf.push(mask_bit | n as u8),
            n if n <= 0xffff => {
                self.wbuf.push(mask_bit | 126);
                self.wbuf.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                self.wbuf.push(mask_bit | 127);
                self.wbuf.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if self.role == Role::Client {
            let mask: [u8; 4] = self.rng.gen();
            self.wbuf.extend_from_slice(&mask);
            let from = self.wbuf.len();
            self.wbuf.extend_from_slice(payload);
            for (i, b) in self.wbuf[from..].iter_mut().enumerate() {
                *b ^= mask[i & 3];
            }
        } else {
            self.wbuf.extend_from_slice(payload);
        }
        self.io.write_every(&self.wbuf).await?;
        Ok(())
    }

    /// Sends a text message.
    pub async fn send_text(&mut self, text: &[u8]) -> Result<(), ConnError> {
        self.send_frame(OP_TEXT, text).await
    }

    /// Sends a ping.
    pub async fn ping(&mut self, payload: &[u8]) -> Result<(), ConnError> {
        self.send_frame(OP_PING, &payload[..payload.len().min(125)])
            .await
    }

    /// Answers the last ping received.
    pub async fn pong(&mut self) -> Result<(), ConnError> {
        let ping = std::mem::take(&mut self.ping);
        let sent = self.send_frame(OP_PONG, &ping).await;
        self.ping = ping;
        sent
    }

    /// Sends a close frame with `code` (the connection should be dropped after).
    pub async fn close(&mut self, code: u16) -> Result<(), ConnError> {
        self.send_frame(OP_CLOSE, &code.to_be_bytes()).await
    }

    /// The underlying stream.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.io
    }
}

/// Fetches `url` with one HTTP/1.1 GET (`Connection: close`) and returns the body of a
/// 200 answer; other statuses are [`ConnError::Status`]. Handles `Content-Length`,
/// chunked and read-to-close bodies; no compression is asked for.
pub async fn http_get(
    url: &Url,
    timeout: Duration,
    max_bytes: usize,
) -> Result<Vec<u8>, ConnError> {
    let fetch = async {
        let mut stream = open(url, timeout).await?;
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nUser-Agent: tickwire\r\nConnection: close\r\n\r\n",
            url.path,
            url.host_header()
        );
        stream.write_all(request.as_bytes()).await?;
        let mut buf = Vec::with_capacity(16 * 1024);
        let head_len = read_head(&mut stream, &mut buf).await?;
        let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
        let status =
            status_of(&head).ok_or_else(|| ConnError::Handshake("not an HTTP answer".into()))?;
        let chunked = header(&head, "transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let length: Option<usize> = header(&head, "content-length").and_then(|v| v.parse().ok());
        let mut body = buf.split_off(head_len);
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            if let Some(n) = length {
                if body.len() >= n {
                    body.truncate(n);
                    break;
                }
            }
            if chunked && chunked_complete(&body) {
                break;
            }
            if body.len() > max_bytes {
                return Err(ConnError::Protocol("REST answer over the size limit"));
            }
            // A TLS peer may end without close_notify: treat it as the end of the body.
            let n = match stream.read(&mut chunk).await {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                if length.is_some_and(|l| body.len() < l) {
                    return Err(ConnError::Handshake(
                        "body shorter than Content-Length".into(),
                    ));
                }
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        if chunked {
            body = dechunk(&body).ok_or_else(|| ConnError::Handshake("bad chunked body".into()))?;
        }
        if status != 200 {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            return Err(ConnError::Status { status, body: text });
        }
        Ok(body)
    };
    tokio::time::timeout(timeout, fetch)
        .await
        .map_err(|_| ConnError::Timeout)?
}

/// Whether a chunked body has its final zero-length chunk.
fn chunked_complete(body: &[u8]) -> bool {
    let mut i = 0;
    loop {
        let Some(line_end) = memchr::memmem::find(&body[i..], b"\r\n") else {
            return false;
        };
        let size_text = &body[i..i + line_end];
        let size_text = size_text.split(|&c| c == b';').next().unwrap_or_default();
        let Ok(size) = usize::from_str_radix(String::from_utf8_lossy(size_text).trim(), 16) else {
            return false;
        };
        i += line_end + 2;
        if size == 0 {
            return true;
        }
        if body.len() < i + size + 2 {
            return false;
        }
        i += size + 2;
    }
}

fn dechunk(body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    loop {
        let line_end = memchr::memmem::find(&body[i..], b"\r\n")?;
        let size_text = body[i..i + line_end].split(|&c| c == b';').next()?;
        let size = usize::from_str_radix(String::from_utf8_lossy(size_text).trim(), 16).ok()?;
        i += line_end + 2;
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(i..i + size)?);
        i += size + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u = Url::parse("ws://127.0.0.1:9000").unwrap();
        assert_eq!((u.tls, u.port, u.path.as_str()), (false, 9000, "/"));
        let u = Url::parse("https://api.binance.com/api/v3/depth?symbol=X").unwrap();
        assert_eq!(
            (u.tls, u.port, u.path.as_str()),
            (true, 443, "/api/v3/depth?symbol=X")
        );
        let u = Url::parse("ws://[::1]:80/x").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 80));
        assert_eq!(u.host_header(), "[::1]");
        for bad in ["ftp://x", "ws://", "nohost", "ws://h:port"] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dechunks() {
        let body = b"4\r\nWiki\r\n5;x=1\r\npedia\r\n0\r\n\r\n";
        assert!(chunked_complete(body));
        assert!(!chunked_complete(&body[..10]));
        assert_eq!(dechunk(body).unwrap(), b"Wikipedia");
    }

    #[test]
    fn accept_key_matches_rfc6455() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
