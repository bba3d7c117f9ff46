//! Client WebSocket frames in (RFC 6455 §5), parsed without I/O: the caller reads a
//! socket into any buffer and hands the bytes to [`ClientFrameReader::feed`], which calls
//! back once per complete message or control frame.
//!
//! Contract:
//!
//! - **Ownership.** One reader per connection, owned and fed by the worker thread that
//!   reads the connection's socket; it is `Send` but never shared. Nothing here blocks,
//!   spins, sleeps or does I/O.
//! - **What allocates.** A frame that lies wholly inside the bytes of one `feed` is
//!   unmasked in place in the caller's buffer and delivered from there: an unfragmented
//!   text message that arrives whole costs no copy and no allocation. Only a frame cut
//!   by the end of a read (its header goes into the reader's fixed 14 bytes, its payload
//!   into a heap buffer) and a fragmented message (assembled in the same buffer) take
//!   heap memory, at most `max_message_bytes + 125` bytes (a message at the limit plus a
//!   cut control frame between its fragments). The buffer grows (doubling) as bytes
//!   arrive, never reserved up front for a declared length, and after the message it is
//!   freed unless it is at most [`RETAINED_BYTES`]. A fresh or idle reader holds no heap
//!   memory (or that small retained buffer) and is at most 64 bytes.
//! - **Bad input.** Every violation of RFC 6455 or of our protocol (text only unless
//!   the reader was made with [`ClientFrameReader::accepting_binary`], a size limit) ends `feed` with a [`ReadError`] that names the close code to send; the
//!   events before it have been delivered. A declared length over the limit fails as
//!   soon as the header is read, before any payload is buffered. UTF-8 is checked as the
//!   bytes arrive, so an invalid fragment fails before the rest of the message comes.
//!   Whatever the bytes and however they are split across reads, the reader never
//!   panics, and it delivers the same events and the same error.
//! - **End.** After a close frame, an error, or a callback that returns [`Flow::Stop`],
//!   the reader is finished: it frees its buffer and ignores whatever is fed later (the
//!   connection is closing; RFC 6455 §5.5.1 allows no frame after a close).
//!
//! Accepted leniently: a length written in more bytes than needed (§5.2 asks senders for
//! the shortest form but prescribes nothing for receivers).
//!
//! ```
//! use tickwire_engine::protocol::client_frames::{ClientEvent, ClientFrameReader, Flow};
//! // A masked text frame "hi" (mask 1 2 3 4), as a client sends it.
//! let mut bytes = [0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2];
//! let mut reader = ClientFrameReader::new();
//! let mut got = Vec::new();
//! reader
//!     .feed(&mut bytes, 65_536, |event| {
//!         if let ClientEvent::Text(text) = event {
//!             got.extend_from_slice(text);
//!         }
//!         Flow::Continue
//!     })
//!     .unwrap();
//! assert_eq!(got, b"hi");
//! assert_eq!(reader.heap_bytes(), 0);
//! ```

use crate::stats::CloseReason;

use super::frame::MAX_CONTROL_PAYLOAD;

/// A buffer of at most this many bytes is kept after a message that needed it (a small
/// command cut by a read tends to be followed by another); a larger one is freed.
pub const RETAINED_BYTES: usize = 256;

/// The longest client frame header: 2 bytes, an 8-byte length, a 4-byte mask key.
const MAX_HEADER: usize = 14;

// The framing errors, one per rule.
const UNMASKED: ReadError = ReadError::Protocol("client frames must be masked");
const RESERVED_BITS: ReadError = ReadError::Protocol("reserved bits set without an extension");
const RESERVED_OPCODE: ReadError = ReadError::Protocol("reserved opcode");
const FRAGMENTED_CONTROL: ReadError = ReadError::Protocol("fragmented control frame");
const CONTROL_TOO_LONG: ReadError = ReadError::Protocol("control frame over 125 bytes");
const ORPHAN_CONTINUATION: ReadError = ReadError::Protocol("continuation frame without a message");
const NESTED_MESSAGE: ReadError = ReadError::Protocol("new message inside a fragmented message");
const LENGTH_TOP_BIT: ReadError = ReadError::Protocol("frame length with the top bit set");
const CLOSE_ONE_BYTE: ReadError = ReadError::Protocol("close payload of 1 byte");
const BAD_CLOSE_CODE: ReadError = ReadError::Protocol("invalid close code");

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// One thing the client sent, borrowed from the fed bytes or from the reader's buffer
/// for the duration of the callback.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientEvent<'a> {
    /// A complete text message, unmasked and valid UTF-8. Mutable so that the caller can
    /// parse it in place (simd-json).
    Text(&'a mut [u8]),
    /// A complete binary message, unmasked; only from a reader made with
    /// [`ClientFrameReader::accepting_binary`] (the protocol's `/ws` carries text only).
    Binary(&'a mut [u8]),
    /// A ping; the caller answers with a pong carrying the same payload.
    Ping(&'a [u8]),
    /// A pong (an answer to our ping, or unsolicited).
    Pong(&'a [u8]),
    /// A valid close frame; `code` is `None` when its payload was empty. The reader is
    /// finished after it, whatever the callback returns.
    Close {
        /// The close code (1000-1003, 1007-1014 or 3000-4999).
        code: Option<u16>,
        /// The close reason, possibly empty.
        reason: &'a str,
    },
}

/// What the callback wants after an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Deliver the next event.
    Continue,
    /// Stop here: the caller is closing the connection. The rest of the bytes are
    /// dropped and the reader is finished.
    Stop,
}

/// Why the connection must be closed; [`close_code`](ReadError::close_code) is the
/// RFC 6455 status to send.
#[derive(thiserror::Error, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    /// A framing error (close `1002`); the text says which rule was broken.
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// A binary message (close `1003`): the protocol carries text only.
    #[error("binary frames are not accepted")]
    Binary,
    /// A text message or close reason that is not UTF-8 (close `1007`).
    #[error("invalid UTF-8 in a text message")]
    InvalidUtf8,
    /// A message over `max_message_bytes` (close `1009`).
    #[error("message over the size limit")]
    TooBig,
}

impl ReadError {
    /// The RFC 6455 close code to send.
    pub fn close_code(self) -> u16 {
        match self {
            ReadError::Protocol(_) => 1002,
            ReadError::Binary => 1003,
            ReadError::InvalidUtf8 => 1007,
            ReadError::TooBig => 1009,
        }
    }

    /// A short reason for the close frame (well under its 123 bytes).
    pub fn reason(self) -> &'static str {
        match self {
            ReadError::Protocol(why) => why,
            ReadError::Binary => "binary frames are not accepted",
            ReadError::InvalidUtf8 => "invalid UTF-8 in a text message",
            ReadError::TooBig => "message over the size limit",
        }
    }

    /// The reason counted in the worker's statistics.
    pub fn close_reason(self) -> CloseReason {
        match self {
            ReadError::Protocol(_) => CloseReason::ProtocolError,
            ReadError::Binary => CloseReason::BinaryData,
            ReadError::InvalidUtf8 => CloseReason::InvalidUtf8,
            ReadError::TooBig => CloseReason::TooBig,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Between frames, or inside a header (`header_len` bytes of it kept).
    Header,
    /// Inside a payload that a read cut: `frame_left` bytes still to come.
    Payload,
    /// Closed, failed or stopped: input is ignored.
    Done,
}

/// A parsed frame header.
#[derive(Clone, Copy, Debug)]
struct Header {
    fin: bool,
    opcode: u8,
    /// Payload length; checked against the limit (data) or 125 (control), so it fits.
    len: usize,
    mask: [u8; 4],
    /// Header bytes, mask key included.
    size: usize,
}

/// The per-connection parser; see the module documentation for its contract.
///
/// Invariant between frames (phase `Header`): `buf` holds exactly the fragmented message
/// assembled so far, or nothing when `message_open` is false.
#[derive(Debug)]
pub struct ClientFrameReader {
    /// The text message being assembled (unmasked; valid UTF-8 except for its last
    /// `utf8_tail` bytes), then the received part of a control frame that a read cut.
    buf: Vec<u8>,
    /// Payload bytes of the current frame still to come (phase `Payload`).
    frame_left: usize,
    /// The start of a header that a read cut.
    header: [u8; MAX_HEADER],
    header_len: u8,
    /// The current frame's mask key, rotated so that its next payload byte uses `mask[0]`.
    mask: [u8; 4],
    /// The current frame's opcode and FIN bit.
    opcode: u8,
    fin: bool,
    /// The current control frame's payload length (its bytes sit at the end of `buf`).
    control_len: u8,
    /// Bytes at the end of the message that start a UTF-8 sequence not yet complete (0-3).
    utf8_tail: u8,
    /// A text or binary frame without FIN was read; its continuations are expected.
    message_open: bool,
    /// The current (or last) data message is binary: no UTF-8 check, delivered as
    /// [`ClientEvent::Binary`].
    message_binary: bool,
    /// Binary messages are accepted (the test-only echo endpoint), not closed with 1003.
    binary_ok: bool,
    phase: Phase,
}

impl Default for ClientFrameReader {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientFrameReader {
    /// A reader at the start of a connection's stream; holds no heap memory. Binary
    /// messages end the stream with [`ReadError::Binary`] (the protocol is text only).
    pub fn new() -> Self {
        ClientFrameReader {
            buf: Vec::new(),
            frame_left: 0,
            header: [0; MAX_HEADER],
            header_len: 0,
            mask: [0; 4],
            opcode: 0,
            fin: false,
            control_len: 0,
            utf8_tail: 0,
            message_open: false,
            message_binary: false,
            binary_ok: false,
            phase: Phase::Header,
        }
    }

    /// A reader that also delivers binary messages ([`ClientEvent::Binary`]), for the
    /// test-only echo endpoint; every other rule is the same.
    pub fn accepting_binary() -> Self {
        ClientFrameReader {
            binary_ok: true,
            ..ClientFrameReader::new()
        }
    }

    /// Parses `input`, the bytes just read from the socket, and calls `on_event` for
    /// each complete message and control frame, in order.
    ///
    /// Frames wholly inside `input` are unmasked in place (so `input` is modified) and
    /// delivered from it; a frame cut at the end of `input` is kept in the reader and
    /// completed by the next calls. Returns at the first protocol violation, after
    /// delivering the events before it; stops early, dropping the rest, when `on_event`
    /// returns [`Flow::Stop`]. A message of exactly `max_message_bytes` is accepted.
    /// Once finished (see the module documentation) it ignores `input` and returns `Ok`.
    pub fn feed(
        &mut self,
        input: &mut [u8],
        max_message_bytes: usize,
        mut on_event: impl FnMut(ClientEvent<'_>) -> Flow,
    ) -> Result<(), ReadError> {
        if self.phase == Phase::Done {
            return Ok(());
        }
        match self.parse(input, max_message_bytes, &mut on_event) {
            Ok(Flow::Continue) => Ok(()),
            Ok(Flow::Stop) => {
                self.finish();
                Ok(())
            }
            Err(e) => {
                self.finish();
                Err(e)
            }
        }
    }

    /// Heap bytes held (the capacity of the assembly buffer).
    pub fn heap_bytes(&self) -> usize {
        self.buf.capacity()
    }

    /// True after a close frame, an error or [`Flow::Stop`]: further input is ignored.
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Done
    }

    fn finish(&mut self) {
        self.phase = Phase::Done;
        self.buf = Vec::new();
    }

    fn parse(
        &mut self,
        input: &mut [u8],
        max: usize,
        on_event: &mut impl FnMut(ClientEvent<'_>) -> Flow,
    ) -> Result<Flow, ReadError> {
        let mut pos = 0;
        while pos < input.len() {
            let flow = match self.phase {
                Phase::Header => {
                    let Some(header) = self.take_header(input, &mut pos, max)? else {
                        return Ok(Flow::Continue);
                    };
                    self.start_frame(&header);
                    if input.len() - pos >= header.len {
                        let payload = &mut input[pos..pos + header.len];
                        pos += header.len;
                        unmask(payload, header.mask);
                        self.whole_frame(payload, max, on_event)?
                    } else {
                        self.frame_left = header.len;
                        self.phase = Phase::Payload;
                        Flow::Continue
                    }
                }
                Phase::Payload => {
                    let n = self.frame_left.min(input.len() - pos);
                    let chunk = &mut input[pos..pos + n];
                    pos += n;
                    self.cut_frame_bytes(chunk)?;
                    if self.frame_left == 0 {
                        self.phase = Phase::Header;
                        self.end_cut_frame(on_event)?
                    } else {
                        Flow::Continue
                    }
                }
                Phase::Done => Flow::Stop,
            };
            if flow == Flow::Stop {
                return Ok(Flow::Stop);
            }
        }
        Ok(Flow::Continue)
    }

    /// Reads the next header from the kept bytes and `input[*pos..]`, advancing `pos`;
    /// `None` (everything kept) when `input` ends inside it.
    fn take_header(
        &mut self,
        input: &[u8],
        pos: &mut usize,
        max: usize,
    ) -> Result<Option<Header>, ReadError> {
        let rest = &input[*pos..];
        let have = usize::from(self.header_len);
        let parsed = if have == 0 {
            parse_header(rest, self.message_open, self.buf.len(), max, self.binary_ok)?
        } else {
            let take = rest.len().min(MAX_HEADER - have);
            self.header[have..have + take].copy_from_slice(&rest[..take]);
            parse_header(
                &self.header[..have + take],
                self.message_open,
                self.buf.len(),
                max,
                self.binary_ok,
            )?
        };
        match parsed {
            Some(header) => {
                // The kept bytes alone were not a complete header, so `size > have`.
                *pos += header.size.saturating_sub(have);
                self.header_len = 0;
                Ok(Some(header))
            }
            None => {
                // An incomplete header is under MAX_HEADER bytes: all of `rest` fits.
                let take = rest.len().min(MAX_HEADER - have);
                if have == 0 {
                    self.header[..take].copy_from_slice(&rest[..take]);
                }
                self.header_len = (have + take) as u8;
                *pos = input.len();
                Ok(None)
            }
        }
    }

    fn start_frame(&mut self, header: &Header) {
        self.opcode = header.opcode;
        self.fin = header.fin;
        self.mask = header.mask;
        if header.opcode == OP_TEXT || header.opcode == OP_BINARY {
            self.message_binary = header.opcode == OP_BINARY;
            self.message_open = !header.fin;
        }
        if is_control(header.opcode) {
            // At most 125: checked in parse_header.
            self.control_len = header.len as u8;
        }
    }

    /// Handles a frame whose (unmasked) payload lies wholly in the fed bytes.
    fn whole_frame(
        &mut self,
        payload: &mut [u8],
        max: usize,
        on_event: &mut impl FnMut(ClientEvent<'_>) -> Flow,
    ) -> Result<Flow, ReadError> {
        match self.opcode {
            OP_TEXT if self.fin => {
                // The common case: delivered in place, no copy.
                std::str::from_utf8(payload).map_err(|_| ReadError::InvalidUtf8)?;
                Ok(on_event(ClientEvent::Text(payload)))
            }
            OP_BINARY if self.fin => Ok(on_event(ClientEvent::Binary(payload))),
            OP_CLOSE => {
                let (code, reason) = parse_close(payload)?;
                on_event(ClientEvent::Close { code, reason });
                Ok(Flow::Stop)
            }
            OP_PING => Ok(on_event(ClientEvent::Ping(payload))),
            OP_PONG => Ok(on_event(ClientEvent::Pong(payload))),
            _ => {
                // A fragment (a message without FIN, or continuation): assembled in `buf`.
                self.grow(payload.len(), max);
                self.append_data(payload, self.fin)?;
                self.end_message(on_event)
            }
        }
    }

    /// Unmasks and keeps the next bytes of a frame that a read cut.
    fn cut_frame_bytes(&mut self, chunk: &mut [u8]) -> Result<(), ReadError> {
        unmask(chunk, self.mask);
        self.mask.rotate_left(chunk.len() % 4);
        // Grow no further than the end of this frame: never ahead of what can arrive.
        self.grow(chunk.len(), self.buf.len() + self.frame_left);
        self.frame_left -= chunk.len();
        if is_control(self.opcode) {
            self.buf.extend_from_slice(chunk);
            Ok(())
        } else {
            let complete = self.fin && self.frame_left == 0;
            self.append_data(chunk, complete)
        }
    }

    /// Delivers a cut frame whose last byte just arrived.
    fn end_cut_frame(
        &mut self,
        on_event: &mut impl FnMut(ClientEvent<'_>) -> Flow,
    ) -> Result<Flow, ReadError> {
        if !is_control(self.opcode) {
            return self.end_message(on_event);
        }
        let start = self.buf.len() - usize::from(self.control_len);
        let payload = &self.buf[start..];
        let flow = match self.opcode {
            OP_CLOSE => {
                let (code, reason) = parse_close(payload)?;
                on_event(ClientEvent::Close { code, reason });
                Flow::Stop
            }
            OP_PING => on_event(ClientEvent::Ping(payload)),
            _ => on_event(ClientEvent::Pong(payload)),
        };
        self.buf.truncate(start);
        if self.buf.is_empty() {
            self.release();
        }
        Ok(flow)
    }

    /// After a data frame: delivers the assembled message if the frame was the last.
    fn end_message(
        &mut self,
        on_event: &mut impl FnMut(ClientEvent<'_>) -> Flow,
    ) -> Result<Flow, ReadError> {
        if !self.fin {
            return Ok(Flow::Continue);
        }
        self.message_open = false;
        let flow = if self.message_binary {
            on_event(ClientEvent::Binary(&mut self.buf))
        } else {
            on_event(ClientEvent::Text(&mut self.buf))
        };
        self.release();
        Ok(flow)
    }

    /// Appends message bytes; for text, checks the UTF-8 seen so far (an incomplete
    /// sequence at the end is allowed unless the message is `complete`).
    fn append_data(&mut self, bytes: &[u8], complete: bool) -> Result<(), ReadError> {
        if self.message_binary {
            self.buf.extend_from_slice(bytes);
            return Ok(());
        }
        let from = self.buf.len() - usize::from(self.utf8_tail);
        self.buf.extend_from_slice(bytes);
        let unchecked = &self.buf[from..];
        self.utf8_tail = match std::str::from_utf8(unchecked) {
            Ok(_) => 0,
            // An incomplete sequence is at most 3 bytes.
            Err(e) if e.error_len().is_none() && !complete => {
                (unchecked.len() - e.valid_up_to()) as u8
            }
            Err(_) => return Err(ReadError::InvalidUtf8),
        };
        Ok(())
    }

    /// Makes room for `additional` bytes, doubling but never past `bound` bytes in all.
    fn grow(&mut self, additional: usize, bound: usize) {
        let needed = self.buf.len() + additional;
        if needed <= self.buf.capacity() {
            return;
        }
        let target = self
            .buf
            .capacity()
            .saturating_mul(2)
            .max(64)
            .min(bound)
            .max(needed);
        self.buf.reserve_exact(target - self.buf.len());
    }

    /// Empties the buffer after a message; frees it unless it is small.
    fn release(&mut self) {
        if self.buf.capacity() > RETAINED_BYTES {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
        self.utf8_tail = 0;
    }
}

fn is_control(opcode: u8) -> bool {
    opcode & 0x8 != 0
}

/// Parses and checks the header at the start of `bytes`, or `Ok(None)` when more bytes
/// are needed. Each rule is checked as soon as the bytes it needs are there, in header
/// order, so the error does not depend on where the stream was split.
fn parse_header(
    bytes: &[u8],
    message_open: bool,
    message_len: usize,
    max: usize,
    binary_ok: bool,
) -> Result<Option<Header>, ReadError> {
    let Some(&b0) = bytes.first() else {
        return Ok(None);
    };
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0f;
    if b0 & 0x70 != 0 {
        return Err(RESERVED_BITS);
    }
    match opcode {
        OP_CONTINUATION if !message_open => return Err(ORPHAN_CONTINUATION),
        OP_TEXT | OP_BINARY if message_open => return Err(NESTED_MESSAGE),
        OP_BINARY if !binary_ok => return Err(ReadError::Binary),
        OP_CONTINUATION | OP_TEXT | OP_BINARY => {}
        OP_CLOSE | OP_PING | OP_PONG if !fin => return Err(FRAGMENTED_CONTROL),
        OP_CLOSE | OP_PING | OP_PONG => {}
        _ => return Err(RESERVED_OPCODE),
    }
    let Some(&b1) = bytes.get(1) else {
        return Ok(None);
    };
    if b1 & 0x80 == 0 {
        return Err(UNMASKED);
    }
    let len7 = b1 & 0x7f;
    let extended = match len7 {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let Some(ext) = bytes.get(2..2 + extended) else {
        return Ok(None);
    };
    let len = match *ext {
        [] => u64::from(len7),
        [a, b] => u64::from(u16::from_be_bytes([a, b])),
        [a, b, c, d, e, f, g, h] => u64::from_be_bytes([a, b, c, d, e, f, g, h]),
        _ => return Ok(None),
    };
    if len >> 63 != 0 {
        return Err(LENGTH_TOP_BIT);
    }
    // Control frames are not part of the message.
    let len = if is_control(opcode) {
        if len > MAX_CONTROL_PAYLOAD as u64 {
            return Err(CONTROL_TOO_LONG);
        }
        len as usize
    } else {
        let room = max.saturating_sub(message_len);
        match usize::try_from(len) {
            Ok(len) if len <= room => len,
            _ => return Err(ReadError::TooBig),
        }
    };
    let size = 2 + extended + 4;
    let Some(&[m0, m1, m2, m3]) = bytes.get(size - 4..size) else {
        return Ok(None);
    };
    Ok(Some(Header {
        fin,
        opcode,
        len,
        mask: [m0, m1, m2, m3],
        size,
    }))
}

/// The code and reason of a close frame's (unmasked) payload, checked (RFC 6455 §7.4).
fn parse_close(payload: &[u8]) -> Result<(Option<u16>, &str), ReadError> {
    let [hi, lo, reason @ ..] = payload else {
        return if payload.is_empty() {
            Ok((None, ""))
        } else {
            Err(CLOSE_ONE_BYTE)
        };
    };
    let code = u16::from_be_bytes([*hi, *lo]);
    if !valid_close_code(code) {
        return Err(BAD_CLOSE_CODE);
    }
    let reason = std::str::from_utf8(reason).map_err(|_| ReadError::InvalidUtf8)?;
    Ok((Some(code), reason))
}

/// Codes a peer may send: the defined ones (not 1004-1006 and 1015, which are reserved
/// or never sent) and the registered and private ranges.
fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// XORs `payload` with the mask key, the first byte with `mask[0]`.
fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    // Eight bytes at a time, so that the compiler can use wide XORs.
    let wide = [
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ];
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        for (byte, m) in chunk.iter_mut().zip(wide) {
            *byte ^= m;
        }
    }
    for (byte, m) in chunks.into_remainder().iter_mut().zip(wide) {
        *byte ^= m;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1000;

    /// A client frame to build: FIN, masked, shortest length form unless told otherwise.
    #[derive(Clone)]
    struct F {
        fin: bool,
        rsv: u8,
        opcode: u8,
        mask: Option<[u8; 4]>,
        form: Option<u8>,
        declared: Option<u64>,
        payload: Vec<u8>,
    }

    impl F {
        fn new(opcode: u8, payload: &[u8]) -> F {
            F {
                fin: true,
                rsv: 0,
                opcode,
                mask: Some([0x37, 0xfa, 0x21, 0x3d]),
                form: None,
                declared: None,
                payload: payload.to_vec(),
            }
        }
        fn text(payload: impl AsRef<[u8]>) -> F {
            F::new(OP_TEXT, payload.as_ref())
        }
        fn cont(payload: impl AsRef<[u8]>) -> F {
            F::new(OP_CONTINUATION, payload.as_ref())
        }
        fn close(code: u16, reason: &[u8]) -> F {
            F::new(OP_CLOSE, &[&code.to_be_bytes()[..], reason].concat())
        }
        fn more(mut self) -> F {
            self.fin = false;
            self
        }
        fn rsv(mut self, bits: u8) -> F {
            self.rsv = bits;
            self
        }
        fn mask(mut self, mask: Option<[u8; 4]>) -> F {
            self.mask = mask;
            self
        }
        /// Forces the length form: 126 (16-bit) or 127 (64-bit).
        fn form(mut self, marker: u8) -> F {
            self.form = Some(marker);
            self
        }
        /// Declares a length other than the payload's (the payload is still appended).
        fn declared(mut self, len: u64) -> F {
            self.declared = Some(len);
            self
        }
        fn bytes(&self) -> Vec<u8> {
            let len = self.declared.unwrap_or(self.payload.len() as u64);
            let b0 = u8::from(self.fin) << 7 | (self.rsv & 7) << 4 | self.opcode;
            let mut out = vec![b0];
            let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
            match self.form {
                None if len < 126 => out.push(mask_bit | len as u8),
                Some(126) | None if len <= 0xffff => {
                    out.push(mask_bit | 126);
                    out.extend((len as u16).to_be_bytes());
                }
                _ => {
                    out.push(mask_bit | 127);
                    out.extend(len.to_be_bytes());
                }
            }
            let mut payload = self.payload.clone();
            if let Some(mask) = self.mask {
                out.extend(mask);
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= mask[i % 4];
                }
            }
            out.extend(payload);
            out
        }
    }

    fn stream(frames: &[F]) -> Vec<u8> {
        frames.iter().flat_map(F::bytes).collect()
    }

    /// An owned copy of a [`ClientEvent`], to compare.
    #[derive(Clone, Debug, PartialEq)]
    enum Ev {
        Text(Vec<u8>),
        Binary(Vec<u8>),
        Ping(Vec<u8>),
        Pong(Vec<u8>),
        Close(Option<u16>, String),
    }

    fn text(s: &str) -> Ev {
        Ev::Text(s.as_bytes().to_vec())
    }

    impl From<ClientEvent<'_>> for Ev {
        fn from(event: ClientEvent<'_>) -> Ev {
            match event {
                ClientEvent::Text(t) => Ev::Text(t.to_vec()),
                ClientEvent::Binary(b) => Ev::Binary(b.to_vec()),
                ClientEvent::Ping(p) => Ev::Ping(p.to_vec()),
                ClientEvent::Pong(p) => Ev::Pong(p.to_vec()),
                ClientEvent::Close { code, reason } => Ev::Close(code, reason.to_owned()),
            }
        }
    }

    type Outcome = (Vec<Ev>, Result<(), ReadError>);

    /// Feeds `bytes` cut at `cuts` (ascending offsets), stopping at the first error, and
    /// checks the heap bound after every call.
    fn feed_cut(bytes: &[u8], cuts: &[usize], max: usize) -> Outcome {
        feed_cut_with(ClientFrameReader::new, bytes, cuts, max)
    }

    /// [`feed_cut`] with a reader made by `make`.
    fn feed_cut_with(
        make: fn() -> ClientFrameReader,
        bytes: &[u8],
        cuts: &[usize],
        max: usize,
    ) -> Outcome {
        let mut reader = make();
        let mut events = Vec::new();
        let mut start = 0;
        for &end in cuts.iter().chain([bytes.len()].iter()) {
            let mut chunk = bytes[start..end].to_vec();
            start = end;
            let result = reader.feed(&mut chunk, max, |e| {
                events.push(Ev::from(e));
                Flow::Continue
            });
            assert!(
                reader.heap_bytes() <= max + MAX_CONTROL_PAYLOAD,
                "heap {} over the bound for max {max}",
                reader.heap_bytes()
            );
            if result.is_err() {
                return (events, result);
            }
        }
        (events, Ok(()))
    }

    /// Feeds `bytes` whole and one byte at a time, asserts both agree, returns the outcome.
    fn outcome(bytes: &[u8], max: usize) -> Outcome {
        let whole = feed_cut(bytes, &[], max);
        let bytewise = feed_cut(bytes, &(1..bytes.len()).collect::<Vec<_>>(), max);
        assert_eq!(whole, bytewise, "whole vs byte at a time");
        whole
    }

    fn err(bytes: &[u8]) -> ReadError {
        match outcome(bytes, MAX).1 {
            Err(e) => e,
            Ok(()) => panic!("accepted {bytes:02x?}"),
        }
    }

    fn ok(bytes: &[u8]) -> Vec<Ev> {
        let (events, result) = outcome(bytes, MAX);
        assert_eq!(result, Ok(()), "rejected {bytes:02x?}");
        events
    }

    const P: fn(&'static str) -> ReadError = ReadError::Protocol;

    #[test]
    fn each_rule_closes_with_its_code() {
        let long = "x".repeat(MAX + 1);
        let (ping, pong, binary) = (
            F::new(OP_PING, b""),
            F::new(OP_PONG, b""),
            F::new(OP_BINARY, b"b"),
        );
        #[rustfmt::skip]
        let cases: Vec<(&str, Vec<F>, ReadError)> = vec![
            ("unmasked", vec![F::text("hi").mask(None)], UNMASKED),
            ("unmasked ping", vec![ping.clone().mask(None)], UNMASKED),
            ("rsv1", vec![F::text("hi").rsv(4)], RESERVED_BITS),
            ("rsv2", vec![F::text("hi").rsv(2)], RESERVED_BITS),
            ("rsv3", vec![F::text("hi").rsv(1)], RESERVED_BITS),
            ("ping without FIN", vec![ping.clone().more()], FRAGMENTED_CONTROL),
            ("pong without FIN", vec![pong.more()], FRAGMENTED_CONTROL),
            ("close without FIN", vec![F::close(1000, b"").more()], FRAGMENTED_CONTROL),
            ("ping of 126 bytes", vec![F::new(OP_PING, &[b'p'; 126])], CONTROL_TOO_LONG),
            ("close of 126 bytes", vec![F::close(1000, &[b'r'; 124])], CONTROL_TOO_LONG),
            ("continuation first", vec![F::cont("x")], ORPHAN_CONTINUATION),
            ("continuation after a message", vec![F::text("a"), F::cont("b")], ORPHAN_CONTINUATION),
            ("text inside a fragmented one", vec![F::text("a").more(), F::text("b")], NESTED_MESSAGE),
            ("binary inside a fragmented text", vec![F::text("a").more(), binary.clone()], NESTED_MESSAGE),
            ("binary", vec![binary.clone()], ReadError::Binary),
            ("binary first fragment", vec![binary.more()], ReadError::Binary),
            ("one byte over the limit", vec![F::text(&long)], ReadError::TooBig),
            ("fragments over the limit", vec![F::text(&long[..600]).more(), F::cont(&long[..401])], ReadError::TooBig),
            ("huge declared length", vec![F::text("").form(127).declared(1 << 40)], ReadError::TooBig),
            ("64-bit length, top bit set", vec![F::text("").declared(1 << 63)], LENGTH_TOP_BIT),
            ("invalid byte", vec![F::text([b'a', 0xff])], ReadError::InvalidUtf8),
            ("surrogate", vec![F::text([0xed, 0xa0, 0x80])], ReadError::InvalidUtf8),
            ("overlong", vec![F::text([0xc0, 0xaf])], ReadError::InvalidUtf8),
            ("cut sequence ends the message", vec![F::text([b'a', 0xe2, 0x82])], ReadError::InvalidUtf8),
            ("cut sequence ends the last fragment", vec![F::text([0xe2]).more(), F::cont([0x82])], ReadError::InvalidUtf8),
            ("invalid in a first fragment", vec![F::text([0xff]).more(), F::cont("a")], ReadError::InvalidUtf8),
            ("close payload of 1 byte", vec![F::new(OP_CLOSE, &[3])], CLOSE_ONE_BYTE),
            ("close reason not UTF-8", vec![F::close(1000, &[0xff])], ReadError::InvalidUtf8),
        ];
        for (name, frames, expected) in cases {
            assert_eq!(err(&stream(&frames)), expected, "{name}");
        }
        for opcode in (3..=7).chain(0xb..=0xf) {
            assert_eq!(
                err(&F::new(opcode, b"").bytes()),
                RESERVED_OPCODE,
                "opcode {opcode:#x}"
            );
        }
        for code in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535,
        ] {
            assert_eq!(
                err(&F::close(code, b"").bytes()),
                BAD_CLOSE_CODE,
                "close code {code}"
            );
        }
    }

    #[test]
    fn errors_carry_their_close_code() {
        let codes = [
            (P("x"), 1002, CloseReason::ProtocolError),
            (ReadError::Binary, 1003, CloseReason::BinaryData),
            (ReadError::InvalidUtf8, 1007, CloseReason::InvalidUtf8),
            (ReadError::TooBig, 1009, CloseReason::TooBig),
        ];
        for (error, code, reason) in codes {
            assert_eq!(error.close_code(), code);
            assert_eq!(error.close_reason(), reason);
            assert_eq!(reason.code(), Some(code));
            assert!(error.reason().len() <= 123);
        }
        assert_eq!(P("why").reason(), "why");
    }

    #[test]
    fn valid_streams_are_accepted() {
        let limit = "y".repeat(MAX);
        let (p125, close) = (vec![b'p'; 125], |code, why: &str| {
            Ev::Close(code, why.into())
        });
        #[rustfmt::skip]
        let cases: Vec<(&str, Vec<F>, Vec<Ev>)> = vec![
            ("empty text", vec![F::text("")], vec![text("")]),
            ("exactly the limit", vec![F::text(&limit)], vec![text(&limit)]),
            ("fragments to exactly the limit", vec![F::text(&limit[1..]).more(), F::cont("y")], vec![text(&limit)]),
            ("empty fragments", vec![F::text("").more(), F::cont("").more(), F::cont("")], vec![text("")]),
            ("controls between fragments",
                vec![F::text("a").more(), F::new(OP_PING, b"1"), F::cont("b").more(), F::new(OP_PONG, b"2"), F::cont("c")],
                vec![Ev::Ping(b"1".to_vec()), Ev::Pong(b"2".to_vec()), text("abc")]),
            ("a sequence across fragments",
                vec![F::text([b'a', 0xe2]).more(), F::cont([0x82]).more(), F::cont([0xac])], vec![text("a\u{20ac}")]),
            ("16-bit form, short payload", vec![F::text("hi").form(126)], vec![text("hi")]),
            ("64-bit form, short payload", vec![F::text("hi").form(127)], vec![text("hi")]),
            ("16-bit form for a ping", vec![F::new(OP_PING, b"p").form(126)], vec![Ev::Ping(b"p".to_vec())]),
            ("ping of 125 bytes", vec![F::new(OP_PING, &p125)], vec![Ev::Ping(p125.clone())]),
            ("empty close", vec![F::new(OP_CLOSE, b"")], vec![close(None, "")]),
            ("close with a reason", vec![F::close(1001, "bye \u{e9}".as_bytes())], vec![close(Some(1001), "bye \u{e9}")]),
            ("nothing after a close", vec![F::close(1000, b""), F::text("late"), F::new(OP_BINARY, b"")], vec![close(Some(1000), "")]),
        ];
        for (name, frames, expected) in cases {
            assert_eq!(ok(&stream(&frames)), expected, "{name}");
        }
        for code in [
            1000, 1001, 1002, 1003, 1007, 1010, 1011, 1014, 3000, 3999, 4000, 4999,
        ] {
            assert_eq!(
                ok(&F::close(code, b"r").bytes()),
                vec![close(Some(code), "r")],
                "code {code}"
            );
        }
    }

    #[test]
    fn a_reader_accepting_binary_delivers_binary_messages_and_keeps_every_other_rule() {
        let binary = |p: &[u8]| F::new(OP_BINARY, p);
        let bin = |p: &[u8]| Ev::Binary(p.to_vec());
        let not_utf8: &[u8] = &[0xff, 0x00, 0xc0];
        #[rustfmt::skip]
        let cases: Vec<(&str, Vec<F>, Outcome)> = vec![
            ("binary, not UTF-8", vec![binary(not_utf8)], (vec![bin(not_utf8)], Ok(()))),
            ("fragmented binary with a ping between",
                vec![binary(&[0xff]).more(), F::new(OP_PING, b"p"), F::cont([0xfe])],
                (vec![Ev::Ping(b"p".to_vec()), bin(&[0xff, 0xfe])], Ok(()))),
            ("text after binary is checked", vec![binary(b"b"), F::text([0xff])], (vec![bin(b"b")], Err(ReadError::InvalidUtf8))),
            ("text inside binary", vec![binary(b"a").more(), F::text("b")], (vec![], Err(NESTED_MESSAGE))),
            ("binary inside text", vec![F::text("a").more(), binary(b"b")], (vec![], Err(NESTED_MESSAGE))),
            ("binary over the limit", vec![binary(&[0; MAX + 1])], (vec![], Err(ReadError::TooBig))),
            ("empty binary", vec![binary(b"")], (vec![bin(b"")], Ok(()))),
        ];
        for (name, frames, expected) in cases {
            let bytes = stream(&frames);
            let whole = feed_cut_with(ClientFrameReader::accepting_binary, &bytes, &[], MAX);
            let cuts: Vec<usize> = (1..bytes.len()).collect();
            let bytewise = feed_cut_with(ClientFrameReader::accepting_binary, &bytes, &cuts, MAX);
            assert_eq!(whole, expected, "{name}");
            assert_eq!(bytewise, expected, "{name}, a byte at a time");
        }
        // The protocol's reader still refuses binary.
        assert_eq!(err(&binary(b"b").bytes()), ReadError::Binary);
    }

    #[test]
    fn huge_declared_length_fails_on_its_header_alone() {
        let mut reader = ClientFrameReader::new();
        let mut header = F::text("").form(127).declared(u64::MAX >> 1).bytes();
        assert_eq!(header.len(), 14);
        assert_eq!(
            reader.feed(&mut header, MAX, |_| Flow::Continue),
            Err(ReadError::TooBig)
        );
        assert_eq!(reader.heap_bytes(), 0);
    }

    #[test]
    fn invalid_utf8_fails_before_the_rest_arrives() {
        // The first fragment alone, then a single frame whose payload is still coming.
        for first in [
            F::text([b'a', 0xff]).more().bytes(),
            F::text([b'a', 0xff, b'b', b'c']).bytes()[..8].to_vec(),
        ] {
            let mut reader = ClientFrameReader::new();
            let mut bytes = first.clone();
            assert_eq!(
                reader.feed(&mut bytes, MAX, |_| Flow::Continue),
                Err(ReadError::InvalidUtf8),
                "{first:02x?}"
            );
        }
    }

    #[test]
    fn any_split_gives_the_same_events() {
        let frames = [
            F::text("hello"),
            F::text(r#"{"op":"#).more(),
            F::new(OP_PING, b"p1"),
            F::cont([b'"', 0xc3]).more(), // an '\u{e9}' cut between fragments
            F::cont([0xa9, b'"', b'}']),
            F::new(OP_PONG, b""),
            F::text("z".repeat(300)),      // 16-bit length
            F::text("big form").form(127), // 64-bit length
            F::close(1000, b"bye"),
            F::text("ignored after the close"),
        ];
        let bytes = stream(&frames);
        let expected = vec![
            text("hello"),
            Ev::Ping(b"p1".to_vec()),
            text("{\"op\":\"\u{e9}\"}"),
            Ev::Pong(Vec::new()),
            text(&"z".repeat(300)),
            text("big form"),
            Ev::Close(Some(1000), "bye".into()),
        ];
        assert_eq!(outcome(&bytes, MAX), (expected.clone(), Ok(())));
        for cut in 0..=bytes.len() {
            assert_eq!(
                feed_cut(&bytes, &[cut], MAX),
                (expected.clone(), Ok(())),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn whole_text_frames_are_delivered_in_place() {
        let mut bytes = stream(&[F::text("one"), F::text("two")]);
        let range = bytes.as_ptr_range();
        let mut reader = ClientFrameReader::new();
        let mut seen = 0;
        reader
            .feed(&mut bytes, MAX, |e| {
                let ClientEvent::Text(t) = e else {
                    panic!("{e:?}")
                };
                assert!(range.contains(&t.as_ptr()), "not a slice of the input");
                t[0] = b'!'; // mutable for in-place parsing
                seen += 1;
                Flow::Continue
            })
            .unwrap();
        assert_eq!(seen, 2);
        assert_eq!(reader.heap_bytes(), 0);
    }

    #[test]
    fn stop_drops_the_rest_and_finishes() {
        let mut bytes = stream(&[F::text("a"), F::text("b")]);
        let mut reader = ClientFrameReader::new();
        let mut events = Vec::new();
        let mut on = |e: ClientEvent<'_>| {
            events.push(Ev::from(e));
            Flow::Stop
        };
        reader.feed(&mut bytes, MAX, &mut on).unwrap();
        assert!(reader.is_finished());
        reader
            .feed(&mut F::text("c").bytes(), MAX, &mut on)
            .unwrap();
        assert_eq!(events, vec![text("a")]);
    }

    #[test]
    fn memory_stays_small() {
        assert!(std::mem::size_of::<ClientFrameReader>() <= 64);
        assert_eq!(ClientFrameReader::new().heap_bytes(), 0);

        // A 60 000-byte message in 15 fragments, read 1 500 bytes at a time.
        let max = 64 * 1024;
        let part = "m".repeat(4000);
        let mut frames = vec![F::text(&part).more()];
        frames.extend((0..13).map(|_| F::cont(&part).more()));
        frames.push(F::cont(&part));
        let bytes = stream(&frames);
        let cuts: Vec<usize> = (1500..bytes.len()).step_by(1500).collect();
        assert_eq!(
            feed_cut(&bytes, &cuts, max),
            (vec![text(&part.repeat(15))], Ok(()))
        );

        let mut reader = ClientFrameReader::new();
        let mut peak = 0;
        for chunk in bytes.chunks(1500) {
            reader
                .feed(&mut chunk.to_vec(), max, |_| Flow::Continue)
                .unwrap();
            peak = peak.max(reader.heap_bytes());
        }
        assert!(peak >= 60_000 && peak <= max, "peak {peak}");
        assert_eq!(
            reader.heap_bytes(),
            0,
            "a large buffer is freed after the message"
        );

        // A small frame cut by a read keeps at most a small buffer.
        let small = F::text("x".repeat(100)).bytes();
        reader
            .feed(&mut small[..50].to_vec(), max, |_| Flow::Continue)
            .unwrap();
        reader
            .feed(&mut small[50..].to_vec(), max, |_| Flow::Continue)
            .unwrap();
        assert!(reader.heap_bytes() <= RETAINED_BYTES);
    }

    /// xorshift64: deterministic, no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// A plausible frame: mostly valid opcodes, lengths and UTF-8, sometimes not.
    fn random_frame(rng: &mut Rng) -> F {
        const OPCODES: [u8; 10] = [0, 0, 1, 1, 1, 2, 8, 9, 10, 3];
        let opcode = OPCODES[rng.below(OPCODES.len())];
        let len = [0, 1, 5, 125, 126, 300][rng.below(6)].min(rng.below(301));
        let pieces: [&[u8]; 4] = [b"a", b"{\"", "\u{e9}".as_bytes(), "\u{1f600}".as_bytes()];
        let mut payload = Vec::new();
        while payload.len() < len {
            payload.extend_from_slice(pieces[rng.below(pieces.len())]);
        }
        if opcode == OP_CLOSE && rng.below(2) == 0 {
            payload.truncate(120);
            payload.splice(0..0, [0x03, 0xe8]);
        }
        let mut frame = F::new(opcode, &payload);
        frame.fin = rng.below(3) != 0;
        frame.form = [None, None, Some(126), Some(127)][rng.below(4)];
        frame
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_splits_agree() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..200_000 {
            let mut bytes: Vec<u8> = if round % 4 == 0 {
                (0..rng.below(40)).map(|_| rng.next() as u8).collect()
            } else {
                let frames: Vec<F> = (0..1 + rng.below(5))
                    .map(|_| random_frame(&mut rng))
                    .collect();
                stream(&frames)
            };
            for _ in 0..rng.below(4) {
                if !bytes.is_empty() {
                    let at = rng.below(bytes.len());
                    bytes[at] ^= 1 << rng.below(8);
                }
            }
            let max = [0, 3, 130, 400, MAX][rng.below(5)];
            let mut cuts: Vec<usize> = (0..rng.below(6))
                .map(|_| rng.below(bytes.len() + 1))
                .collect();
            cuts.sort_unstable();
            assert_eq!(
                feed_cut(&bytes, &cuts, max),
                feed_cut(&bytes, &[], max),
                "{bytes:02x?} cut at {cuts:?}, max {max}"
            );
        }
    }
}
