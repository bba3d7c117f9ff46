//! One WebSocket connection: its reader task (client frames in, commands applied) and
//! its writer task (flushes the outbox when the socket is writable again).
//!
//! Both run on the worker's thread. The reader reassembles fragmented messages (bounded
//! by the message size limit), validates UTF-8, parses commands and applies them to the
//! worker [`Core`]; protocol violations close the connection with the RFC 6455 code. The
//! writer sleeps until the fan-out finds the socket full (or the client is closing), then
//! waits for writability and flushes. Nothing here blocks the worker: every socket
//! operation is non-blocking, and a slow client only ever waits in its own tasks.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use fastwebsockets::{OpCode, Role, WebSocketError};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::TcpStream;

use crate::config::EngineConfig;
use crate::protocol::command::{self, Command, ErrorCode};
use crate::protocol::encode;
use crate::stats::CloseReason;
use crate::tick::now_ns;

use super::core::{ClientKey, Core};
use super::signal::LocalSignal;

/// How long a closing connection may take to flush its close frame before it is dropped.
const CLOSE_LINGER: Duration = Duration::from_secs(10);

/// Reads the upgraded socket, first replaying bytes the HTTP layer had already read.
struct ClientReader {
    stream: Rc<TcpStream>,
    prefix: Bytes,
}

impl AsyncRead for ClientReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix.split_to(n));
            return Poll::Ready(Ok(()));
        }
        loop {
            ready!(this.stream.poll_read_ready(cx))?;
            match this.stream.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// Serves one upgraded connection until it ends.
pub async fn run(
    core: Rc<RefCell<Core>>,
    cfg: std::sync::Arc<EngineConfig>,
    stream: TcpStream,
    prefix: Bytes,
) {
    // Small frames go out at once; batching happens in the outbox, not in Nagle.
    let _ = stream.set_nodelay(true);
    if let Some(bytes) = cfg.send_buffer_bytes {
        // Best effort: the kernel may round or cap it.
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(bytes);
    }
    let stream = Rc::new(stream);
    let signal = Rc::new(LocalSignal::new());
    let key = core.borrow_mut().add_client(stream.clone(), signal.clone());
    let reader = tokio::task::spawn_local(read_loop(
        core.clone(),
        cfg,
        key,
        ClientReader { stream, prefix },
    ));
    write_loop(&core, key, &signal).await;
    reader.abort();
}

/// Waits for the fan-out to hand over a full socket, then flushes it as it drains.
async fn write_loop(core: &Rc<RefCell<Core>>, key: ClientKey, signal: &LocalSignal) {
    loop {
        signal.wait().await;
        loop {
            let Some(stream) = core.borrow().stream(key) else {
                return;
            };
            let closing = core.borrow().is_closing(key);
            let flushed = core.borrow_mut().flush_client(key);
            match flushed {
                Ok(true) if closing => {
                    let mut c = core.borrow_mut();
                    c.shutdown_write(key);
                    c.remove_client(key);
                    return;
                }
                Ok(true) => break,
                Ok(false) => {
                    let ready = if closing {
                        tokio::time::timeout(CLOSE_LINGER, stream.writable())
                            .await
                            .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
                    } else {
                        stream.writable().await
                    };
                    if ready.is_err() {
                        core.borrow_mut().remove_client(key);
                        return;
                    }
                }
                Err(_) => {
                    let mut c = core.borrow_mut();
                    c.close_client(key, CloseReason::Client, "", true);
                    c.remove_client(key);
                    return;
                }
            }
        }
    }
}

/// The close a read error calls for; `None` when the peer just went away.
fn close_for(error: &WebSocketError) -> Option<(CloseReason, &'static str)> {
    match error {
        WebSocketError::InvalidUTF8 => {
            Some((CloseReason::InvalidUtf8, "invalid UTF-8 in a text frame"))
        }
        WebSocketError::FrameTooLarge => Some((CloseReason::TooBig, "message over the size limit")),
        WebSocketError::IoError(_)
        | WebSocketError::UnexpectedEOF
        | WebSocketError::ConnectionClosed => None,
        _ => Some((CloseReason::ProtocolError, "WebSocket framing error")),
    }
}

async fn read_loop(
    core: Rc<RefCell<Core>>,
    cfg: std::sync::Arc<EngineConfig>,
    key: ClientKey,
    reader: ClientReader,
) {
    let (mut ws, _) =
        fastwebsockets::after_handshake_split(reader, tokio::io::sink(), Role::Server);
    // fastwebsockets rejects a frame whose payload is >= the limit; ours is inclusive.
    ws.set_max_message_size(cfg.max_message_bytes + 1);
    ws.set_auto_close(true);
    ws.set_auto_pong(true);
    let mut message: Vec<u8> = Vec::new();
    let mut assembling = false;
    let close = loop {
        let sender = core.clone();
        let mut send = |f: fastwebsockets::Frame<'_>| {
            let mut c = sender.borrow_mut();
            match f.opcode {
                OpCode::Pong => c.send_ping_pong(key, false, &f.payload),
                OpCode::Close => c.close_client(key, CloseReason::Client, "", false),
                _ => {}
            }
            std::future::ready(Ok::<(), io::Error>(()))
        };
        let frame = match ws.read_frame(&mut send).await {
            Ok(frame) => frame,
            Err(e) => break close_for(&e),
        };
        core.borrow_mut().heard(key);
        match frame.opcode {
            OpCode::Binary => {
                break Some((CloseReason::BinaryData, "binary frames are not accepted"))
            }
            OpCode::Continuation if !assembling => {
                break Some((CloseReason::ProtocolError, "continuation without a start"))
            }
            OpCode::Text if assembling => {
                break Some((
                    CloseReason::ProtocolError,
                    "new message inside a fragmented one",
                ))
            }
            OpCode::Text | OpCode::Continuation => {
                if message.len() + frame.payload.len() > cfg.max_message_bytes {
                    break Some((CloseReason::TooBig, "message over the size limit"));
                }
                message.extend_from_slice(&frame.payload);
                if !frame.fin {
                    assembling = true;
                    continue;
                }
                assembling = false;
                if std::str::from_utf8(&message).is_err() {
                    break Some((CloseReason::InvalidUtf8, "invalid UTF-8 in a text frame"));
                }
                handle_command(&core, key, &mut message);
                message.clear();
                if message.capacity() > 2 * 4096 {
                    message.shrink_to(4096);
                }
            }
            OpCode::Close => break None,
            OpCode::Ping | OpCode::Pong => {}
        }
        if core.borrow().is_closing(key) {
            return;
        }
    };
    let mut c = core.borrow_mut();
    match close {
        Some((reason, text)) => c.close_client(key, reason, text, true),
        None => c.close_client(key, CloseReason::Client, "", true),
    }
}

fn handle_command(core: &Rc<RefCell<Core>>, key: ClientKey, payload: &mut [u8]) {
    let mut c = core.borrow_mut();
    let parsed = command::parse(payload);
    if !c.take_command_token(key) {
        let id = match &parsed {
            Ok(cmd) => cmd.id(),
            Err(e) => e.id,
        };
        c.send_error(
            key,
            id,
            ErrorCode::RateLimited,
            "more commands per second than the limit",
        );
        return;
    }
    let cmd = match parsed {
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
        } => {
            if let Err((code, message)) =
                c.subscribe(key, id, channels, &symbols, depth, throttle_ms)
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
