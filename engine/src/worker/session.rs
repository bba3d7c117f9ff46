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

/// Follows frame boundaries in the client's byte stream to enforce RFC 6455 §5.1: a
/// server must close the connection on a client frame that is not masked. fastwebsockets
/// unmasks masked frames but accepts unmasked ones, and keeps the mask bit private, so
/// the reader checks the headers itself as the bytes go by (no copy, no allocation).
#[derive(Default)]
struct MaskCheck {
    header: [u8; 14],
    have: usize,
    payload_left: u64,
}

impl MaskCheck {
    /// Feeds the next bytes of the stream; false at the first unmasked frame.
    fn feed(&mut self, mut bytes: &[u8]) -> bool {
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let n = self.payload_left.min(bytes.len() as u64) as usize;
                self.payload_left -= n as u64;
                bytes = &bytes[n..];
                continue;
            }
            self.header[self.have] = bytes[0];
            self.have += 1;
            bytes = &bytes[1..];
            if self.have < 2 {
                continue;
            }
            if self.header[1] & 0x80 == 0 {
                return false;
            }
            let extended = match self.header[1] & 0x7f {
                126 => 2,
                127 => 8,
                _ => 0,
            };
            if self.have < 2 + extended + 4 {
                continue;
            }
            let h = &self.header;
            self.payload_left = match extended {
                0 => u64::from(h[1] & 0x7f),
                2 => u64::from(u16::from_be_bytes([h[2], h[3]])),
                _ => u64::from_be_bytes([h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]]),
            };
            self.have = 0;
        }
        true
    }
}

/// Reads the upgraded socket, first replaying bytes the HTTP layer had already read.
struct ClientReader {
    stream: Rc<TcpStream>,
    prefix: Bytes,
    masks: MaskCheck,
    /// Set when a client frame arrived unmasked (the read then fails).
    unmasked: Rc<std::cell::Cell<bool>>,
}

impl ClientReader {
    /// Checks the bytes just read; an unmasked frame ends the stream with an error.
    fn checked(&mut self, filled: &[u8]) -> io::Result<()> {
        if self.masks.feed(filled) {
            Ok(())
        } else {
            self.unmasked.set(true);
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "unmasked client frame",
            ))
        }
    }
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
            let bytes = this.prefix.split_to(n);
            buf.put_slice(&bytes);
            return Poll::Ready(this.checked(&bytes));
        }
        loop {
            ready!(this.stream.poll_read_ready(cx))?;
            let before = buf.filled().len();
            match this.stream.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    let filled = &buf.filled()[before..];
                    return Poll::Ready(this.checked(filled));
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
        ClientReader {
            stream,
            prefix,
            masks: MaskCheck::default(),
            unmasked: Rc::new(std::cell::Cell::new(false)),
        },
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
                    // Failing to shut down a socket that is going away changes nothing.
                    let _ = socket2::SockRef::from(stream.as_ref()).shutdown(std::net::Shutdown::Write);
                    core.borrow_mut().remove_client(key);
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
    let unmasked = reader.unmasked.clone();
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
                OpCode::Pong => c.send_pong(key, &f.payload),
                OpCode::Close => c.close_client(key, CloseReason::Client, "", false),
                _ => {}
            }
            std::future::ready(Ok::<(), io::Error>(()))
        };
        let frame = match ws.read_frame(&mut send).await {
            Ok(frame) => frame,
            Err(_) if unmasked.get() => {
                break Some((CloseReason::ProtocolError, "client frames must be masked"))
            }
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

#[cfg(test)]
mod tests {
    use super::MaskCheck;

    #[test]
    fn mask_check_follows_frames_across_any_split() {
        // masked text "hi", masked 200-byte binary (16-bit length), then an unmasked frame.
        let mut stream = vec![0x81, 0x82, 1, 2, 3, 4, b'h', b'i'];
        stream.extend([0x82, 0xfe, 0, 200, 9, 9, 9, 9]);
        stream.extend(std::iter::repeat_n(0u8, 200));
        let good = stream.len();
        stream.extend([0x81, 0x02, b'n', b'o']);
        for split in 1..stream.len() {
            let mut check = MaskCheck::default();
            let first = check.feed(&stream[..split]);
            let second = check.feed(&stream[split..]);
            assert_eq!(first, split <= good + 1, "split at {split}");
            assert!(
                !first || !second,
                "the unmasked frame is caught (split at {split})"
            );
        }
        let mut check = MaskCheck::default();
        assert!(check.feed(&stream[..good]), "masked frames pass");
    }
}
