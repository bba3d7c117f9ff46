//! One WebSocket connection: a single task that reads client frames and, while the
//! socket is full, waits for it to drain.
//!
//! The task runs on its worker's thread and owns little: the client's frame reader
//! ([`ClientFrameReader`], a few dozen bytes that grow only for a message split across
//! reads) and handles to the socket and the worker. Bytes are read into the worker's one
//! shared scratch buffer ([`ReadScratch`]) and parsed in place; commands are applied to
//! the worker [`Core`] at once. Writing is the worker's: it writes this client in its
//! rounds, and only when the socket refuses bytes does it mark the client blocked and
//! wake this task, which waits for writability and writes the rest. So an idle
//! connection costs its socket, this task and its slot in the worker's client table.
//!
//! A `wss` connection reads and writes through its rustls session ([`super::tls`]):
//! records from the socket are decrypted into the same scratch buffer and parsed the
//! same way; that session (and its buffers) is the one extra a TLS connection holds. The
//! token's grant, when the engine checks tokens, is handed to the worker with the client.
//!
//! Nothing here blocks the worker: every socket operation is non-blocking. A protocol
//! violation closes the connection with its RFC 6455 code; a closing connection gets
//! [`CLOSE_LINGER`] to take its close frame, then its write side is shut and its reads
//! drained for up to [`DRAIN_LINGER`] so that the peer sees the close frame rather than a
//! reset.
//!
//! A session serves one [`Endpoint`]: the protocol's `/ws` (text commands), or the
//! test-only `/echo` (enabled by `EngineConfig::echo_endpoint`), which sends every text
//! and binary message back and differs from `/ws` in nothing else: same reader, limits,
//! control frames and close path.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::config::EngineConfig;
use crate::protocol::client_frames::{ClientEvent, ClientFrameReader, Flow, ReadError};
use crate::protocol::command::{self, Command, ErrorCode};
use crate::protocol::encode;
use crate::protocol::frame::OpCode;
use crate::protocol::version::Version;
use crate::stats::{CloseReason, WorkerStats};
use crate::tick::now_ns;

use super::clients::Conn;
use super::core::{ClientKey, Core, Recovery};
use super::tls::{TlsConn, TlsRead};
use crate::auth::Grant;

/// How long a closing connection may take to flush its close frame.
pub const CLOSE_LINGER: Duration = Duration::from_secs(10);

/// How long, after the close frame went out, the connection's reads are drained before
/// the socket is dropped (dropping it with unread bytes would send a reset).
pub const DRAIN_LINGER: Duration = Duration::from_secs(2);

/// Size of a worker's shared read buffer: one read takes at most this much.
pub const SCRATCH_BYTES: usize = 64 * 1024;

/// The one read buffer of a worker, shared by all its connections (only one runs at a
/// time, and none holds it across an `await`).
pub struct ReadScratch(RefCell<Box<[u8]>>);

impl ReadScratch {
    /// A buffer of [`SCRATCH_BYTES`].
    pub fn new() -> ReadScratch {
        ReadScratch(RefCell::new(vec![0u8; SCRATCH_BYTES].into_boxed_slice()))
    }
}

impl Default for ReadScratch {
    fn default() -> Self {
        ReadScratch::new()
    }
}

/// What a session serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/ws`: the client protocol in the version negotiated in the upgrade, text
    /// commands only (binary closes with 1003).
    Protocol(Version),
    /// `/echo` (test only): every text and binary message is sent back as it came.
    Echo,
}

/// What woke the connection task.
enum Wake {
    Readable(io::Result<()>),
    Writable(io::Result<()>),
    Signal,
}

/// Serves one upgraded connection until it ends. `prefix` holds bytes the HTTP layer
/// read past the upgrade request (client frames already sent); `tls` is the session of
/// a `wss` connection, `grant` what its token allows (`None` on an open engine).
///
/// The client is registered with the worker when this is called; the future it returns
/// (the connection's task) holds only what the connection needs from then on. An
/// `async fn` would keep its arguments (the socket handle and `prefix`) in the task for
/// the connection's whole life, and a few bytes more put every connection's task in
/// tokio's next 128-byte cell size (see engine/tests/conn_size.rs).
#[allow(clippy::too_many_arguments)] // what one connection starts from: worker, socket, TLS, grant, endpoint
pub fn run(
    core: Rc<RefCell<Core>>,
    cfg: Arc<EngineConfig>,
    scratch: Rc<ReadScratch>,
    stream: TcpStream,
    mut prefix: Vec<u8>,
    tls: Option<TlsConn>,
    grant: Option<Grant>,
    endpoint: Endpoint,
) -> impl std::future::Future<Output = ()> {
    // Small frames go out at once; batching happens in the worker, not in Nagle.
    let _ = stream.set_nodelay(true);
    if cfg.notsent_lowat_bytes > 0 {
        // Unsent data in the kernel cannot be conflated: keep it to a little, and let the
        // rest wait in the outbox (best effort: an old kernel may refuse).
        let _ = tickwire_sockopt::set_notsent_lowat(&stream, cfg.notsent_lowat_bytes);
    }
    if let Some(bytes) = cfg.send_buffer_bytes {
        // Best effort: the kernel may round or cap it.
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(bytes);
    }
    let conn = Rc::new(match tls {
        Some(tls) => Conn::with_tls(stream, tls),
        None => Conn::new(stream),
    });
    let version = match endpoint {
        Endpoint::Protocol(version) => version,
        Endpoint::Echo => Version::V1,
    };
    let key = core.borrow_mut().join_client(conn.clone(), grant, version);
    let mut reader = match endpoint {
        Endpoint::Protocol(_) => ClientFrameReader::new(),
        Endpoint::Echo => ClientFrameReader::accepting_binary(),
    };
    if !prefix.is_empty() {
        on_bytes(&core, &cfg, key, endpoint, &mut reader, &mut prefix);
    }
    drop(prefix);
    // Records that came with the upgrade request may already hold client frames.
    let ended = conn.tls.as_deref().is_some_and(|tls| {
        tls.process_buffered(&conn.stream).is_err()
            || tls_plaintext(&core, &cfg, &scratch, key, endpoint, &mut reader, tls)
    });
    if ended {
        gone(&core, key);
    }
    async move {
        if ended {
            return;
        }
        serve(&core, &cfg, &scratch, key, endpoint, &conn, &mut reader).await;
        // Boxed: the close path's timers would otherwise make every idle connection's
        // task as large as a closing one's (see engine/tests/conn_size.rs).
        Box::pin(close(&core, key, &conn, &scratch)).await;
    }
}

/// Reads and answers the client until it is closing or gone.
#[allow(clippy::too_many_arguments)] // the session's parts, borrowed from `run`
async fn serve(
    core: &Rc<RefCell<Core>>,
    cfg: &EngineConfig,
    scratch: &ReadScratch,
    key: ClientKey,
    endpoint: Endpoint,
    conn: &Conn,
    reader: &mut ClientFrameReader,
) {
    let (stream, signal) = (&conn.stream, &conn.signal);
    loop {
        if core.borrow().is_closing(key) {
            return;
        }
        let wake = poll_fn(|cx| {
            if core.borrow().is_blocked(key) {
                if let Poll::Ready(r) = stream.poll_write_ready(cx) {
                    return Poll::Ready(Wake::Writable(r));
                }
            }
            if let Poll::Ready(r) = stream.poll_read_ready(cx) {
                return Poll::Ready(Wake::Readable(r));
            }
            if signal.poll_wait(cx).is_ready() {
                return Poll::Ready(Wake::Signal);
            }
            Poll::Pending
        })
        .await;
        match wake {
            Wake::Signal => {}
            Wake::Writable(Ok(())) => {
                let flushed = core.borrow_mut().flush_client(key);
                if flushed.is_err() {
                    gone(core, key);
                    return;
                }
            }
            Wake::Readable(Ok(())) => {
                if let Some(tls) = conn.tls.as_deref() {
                    let ended = match tls.read(stream) {
                        Ok(TlsRead::Eof) | Err(_) => true,
                        Ok(TlsRead::WouldBlock) => false,
                        Ok(TlsRead::Records) => {
                            core.borrow_mut().heard(key);
                            tls_plaintext(core, cfg, scratch, key, endpoint, reader, tls)
                        }
                    };
                    if ended {
                        gone(core, key);
                        return;
                    }
                    continue;
                }
                let mut buf = scratch.0.borrow_mut();
                match stream.try_read(&mut buf) {
                    Ok(0) => {
                        drop(buf);
                        gone(core, key);
                        return;
                    }
                    Ok(n) => on_bytes(core, cfg, key, endpoint, reader, &mut buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => {
                        drop(buf);
                        gone(core, key);
                        return;
                    }
                }
            }
            Wake::Readable(Err(_)) | Wake::Writable(Err(_)) => {
                gone(core, key);
                return;
            }
        }
    }
}

/// Hands the plaintext rustls decrypted to the frame reader, then writes what rustls
/// wants to send back (alerts, key updates). Returns true when the peer is gone.
fn tls_plaintext(
    core: &Rc<RefCell<Core>>,
    cfg: &EngineConfig,
    scratch: &ReadScratch,
    key: ClientKey,
    endpoint: Endpoint,
    reader: &mut ClientFrameReader,
    tls: &TlsConn,
) -> bool {
    while !core.borrow().is_closing(key) {
        let mut buf = scratch.0.borrow_mut();
        let n = tls.plaintext(&mut buf);
        if n == 0 {
            break;
        }
        on_bytes(core, cfg, key, endpoint, reader, &mut buf[..n]);
    }
    tls.wants_write() && core.borrow_mut().flush_client(key).is_err()
}

/// The peer went away without a close handshake: it takes nothing more.
fn gone(core: &Rc<RefCell<Core>>, key: ClientKey) {
    core.borrow_mut().remove_client(key);
}

/// Parses what the client sent and acts on each frame.
fn on_bytes(
    core: &Rc<RefCell<Core>>,
    cfg: &EngineConfig,
    key: ClientKey,
    endpoint: Endpoint,
    reader: &mut ClientFrameReader,
    bytes: &mut [u8],
) {
    // Any bytes from the client are a sign of life, pings and partial frames included.
    core.borrow_mut().heard(key);
    let result = reader.feed(bytes, cfg.max_message_bytes, |event| {
        match event {
            ClientEvent::Text(message) => match endpoint {
                Endpoint::Protocol(_) => handle_command(core, key, message),
                Endpoint::Echo => core.borrow_mut().send_echo(key, OpCode::Text, message),
            },
            ClientEvent::Binary(message) => match endpoint {
                Endpoint::Echo => core.borrow_mut().send_echo(key, OpCode::Binary, message),
                // The protocol's reader refuses binary before delivering it; should one
                // come, it gets the protocol's answer.
                Endpoint::Protocol(_) => {
                    let e = ReadError::Binary;
                    core.borrow_mut()
                        .close_client(key, e.close_reason(), e.reason(), true);
                }
            },
            ClientEvent::Ping(payload) => {
                let mut c = core.borrow_mut();
                // Pings share the command budget: a flood costs one pong, then nothing.
                if c.take_command_token(key) {
                    c.send_pong(key, payload);
                } else {
                    WorkerStats::add(&c.stats().pongs_dropped, 1);
                }
            }
            ClientEvent::Pong(_) => {}
            ClientEvent::Close { code, .. } => {
                // Echo the client's code (RFC 6455 §5.5.1); an empty close gets 1000.
                core.borrow_mut().close_client_with(
                    key,
                    CloseReason::Client,
                    Some(code.unwrap_or(1000)),
                    "",
                    false,
                );
            }
        }
        if core.borrow().is_closing(key) {
            Flow::Stop
        } else {
            Flow::Continue
        }
    });
    if let Err(e) = result {
        core.borrow_mut()
            .close_client(key, e.close_reason(), e.reason(), true);
    }
}

/// Lets a closing connection take its close frame, then ends it: shut the write side,
/// drain what the peer still sends (briefly), drop the socket.
async fn close(core: &Rc<RefCell<Core>>, key: ClientKey, conn: &Conn, scratch: &ReadScratch) {
    if core.borrow().is_gone(key) {
        return;
    }
    let (stream, signal) = (&conn.stream, &conn.signal);
    let flushed = tokio::time::timeout(CLOSE_LINGER, async {
        loop {
            let flushed = core.borrow_mut().flush_client(key);
            match flushed {
                Ok(true) if !core.borrow().has_pending(key) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
            let ready = poll_fn(|cx| {
                if let Poll::Ready(r) = stream.poll_write_ready(cx) {
                    return Poll::Ready(r);
                }
                if signal.poll_wait(cx).is_ready() {
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending
            })
            .await;
            if ready.is_err() {
                return false;
            }
        }
    })
    .await
    .unwrap_or(false);
    core.borrow_mut().remove_client(key);
    if !flushed {
        return;
    }
    if let Some(tls) = conn.tls.as_deref() {
        // The TLS end of the stream, before the TCP one (RFC 8446 §6.1).
        tls.close_notify(stream);
    }
    // Failing to shut down a socket that is going away changes nothing.
    let _ = socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Write);
    let _ = tokio::time::timeout(DRAIN_LINGER, async {
        loop {
            if stream.readable().await.is_err() {
                return;
            }
            let mut buf = scratch.0.borrow_mut();
            match stream.try_read(&mut buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    })
    .await;
}

fn handle_command(core: &Rc<RefCell<Core>>, key: ClientKey, payload: &mut [u8]) {
    let mut c = core.borrow_mut();
    // The token is taken before parsing: a flood costs no parse.
    if !c.take_command_token(key) {
        let id = command::peek_id(payload);
        c.send_error(
            key,
            id,
            ErrorCode::RateLimited,
            "more commands per second than the limit",
        );
        return;
    }
    let version = c.client_version(key);
    let cmd = match command::parse_as(payload, version) {
        Ok(cmd) => cmd,
        Err(e) => {
            c.send_error(key, e.id, e.code, &e.message);
            return;
        }
    };
    match cmd {
        Command::Subscribe {
            id,
            channels,
            symbols,
            depth,
            throttle_ms,
            epoch,
            since,
        } => {
            let recovery = Recovery {
                epoch: epoch.as_deref(),
                since: since.as_deref(),
            };
            if let Err((code, message)) =
                c.subscribe_with(key, id, channels, &symbols, (depth, throttle_ms), recovery)
            {
                c.send_error(key, id, code, &message);
            }
        }
        Command::Unsubscribe {
            id,
            channels,
            symbols,
        } => {
            let outcome = c.unsubscribe(key, channels, &symbols);
            if !outcome.unknown.is_empty() {
                let message = format!("no such symbol: {}", outcome.unknown.join(", "));
                if !c.send_error(key, id, ErrorCode::UnknownSymbol, &message) {
                    return;
                }
            }
            if !outcome.applied.is_empty() {
                let registry = c.registry().clone();
                let names: Vec<&str> = outcome
                    .applied
                    .iter()
                    .map(|&s| registry.info(s).name.as_str())
                    .collect();
                c.send_control(key, |buf| encode::unsubscribed(buf, id, channels, &names));
            }
        }
        Command::Symbols { id } => {
            let registry = c.registry().clone();
            c.send_control(key, |buf| encode::symbols(buf, id, registry.iter()));
        }
        Command::Ping { id } => c.send_control(key, |buf| encode::pong(buf, id, now_ns())),
    }
}
