//! Server WebSocket frames (RFC 6455 §5.2): FIN set, never masked, encoded once.
//!
//! A message is built straight into its final frame: [`begin`] clears the buffer and
//! leaves [`HEADER_ROOM`] bytes in front, the encoder appends the payload after them, and
//! [`finish`] writes the smallest header right before the payload. `&buf[start..]` is
//! then a complete frame that can be written unchanged to every subscribed socket.
//!
//! Nothing here allocates once the buffer has the capacity of the largest frame; the
//! payload is never moved.
//!
//! ```
//! use tickwire_engine::protocol::frame::{self, OpCode};
//! let mut buf = Vec::new();
//! frame::begin(&mut buf);
//! buf.extend_from_slice(br#"{"type":"pong","ts":1}"#);
//! let start = frame::finish(&mut buf, OpCode::Text);
//! assert_eq!(&buf[start..start + 2], &[0x81, 22]);
//! ```

/// Bytes reserved in front of the payload: the longest header of an unmasked frame
/// (2 bytes + 8-byte extended length).
pub const HEADER_ROOM: usize = 10;

/// The largest payload of a control frame (close, ping, pong), RFC 6455 §5.5.
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Frame opcodes the server sends. FIN is always set: the server never fragments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpCode {
    /// A text frame: every protocol message (`0x1`).
    Text,
    /// A binary frame (`0x2`): only the test-only echo endpoint sends them.
    Binary,
    /// Connection close (`0x8`).
    Close,
    /// Ping (`0x9`).
    Ping,
    /// Pong (`0xA`).
    Pong,
}

impl OpCode {
    /// The 4-bit opcode of RFC 6455 §5.2.
    pub fn code(self) -> u8 {
        match self {
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }
}

/// Clears `buf` and reserves header room; then append the payload after it.
pub fn begin(buf: &mut Vec<u8>) {
    buf.clear();
    buf.extend_from_slice(&[0; HEADER_ROOM]);
}

/// Writes the smallest header for the payload (everything after [`HEADER_ROOM`]) right
/// before it, with FIN set and the given opcode, and returns the offset where the frame
/// starts: the frame is `&buf[start..]`.
///
/// # Panics
///
/// If `buf` is shorter than [`HEADER_ROOM`], i.e. [`begin`] was not called: a bug in
/// the caller, never a matter of input.
pub fn finish(buf: &mut [u8], opcode: OpCode) -> usize {
    assert!(
        buf.len() >= HEADER_ROOM,
        "frame::finish without frame::begin"
    );
    let len = buf.len() - HEADER_ROOM;
    let mut header = [0u8; HEADER_ROOM];
    header[0] = 0x80 | opcode.code();
    let header_len = if len < 126 {
        header[1] = len as u8;
        2
    } else if len <= usize::from(u16::MAX) {
        header[1] = 126;
        header[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        header[1] = 127;
        header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    };
    let start = HEADER_ROOM - header_len;
    buf[start..HEADER_ROOM].copy_from_slice(&header[..header_len]);
    start
}

/// Builds a close frame in `buf`: the 2-byte status `code`, then `reason`, cut at a char
/// boundary so that the payload stays within 125 bytes. Returns the frame's start.
pub fn close_frame(buf: &mut Vec<u8>, code: u16, reason: &str) -> usize {
    begin(buf);
    buf.extend_from_slice(&code.to_be_bytes());
    buf.extend_from_slice(truncate_str(reason, MAX_CONTROL_PAYLOAD - 2).as_bytes());
    finish(buf, OpCode::Close)
}

/// Builds a ping frame in `buf` and returns its start. A payload over 125 bytes is cut
/// to its first 125 (a control frame may not be longer).
pub fn ping_frame(buf: &mut Vec<u8>, payload: &[u8]) -> usize {
    control_frame(buf, OpCode::Ping, payload)
}

/// Builds a pong frame in `buf` and returns its start. A payload over 125 bytes is cut
/// to its first 125; the gateway answers a client ping that long with close `1002`
/// before it would ever echo it.
pub fn pong_frame(buf: &mut Vec<u8>, payload: &[u8]) -> usize {
    control_frame(buf, OpCode::Pong, payload)
}

fn control_frame(buf: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) -> usize {
    begin(buf);
    buf.extend_from_slice(&payload[..payload.len().min(MAX_CONTROL_PAYLOAD)]);
    finish(buf, opcode)
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char boundary.
fn truncate_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes one unmasked frame by the letter of RFC 6455 §5.2:
    /// `(fin, opcode, payload)`; panics on anything a client would reject.
    fn decode(frame: &[u8]) -> (bool, u8, &[u8]) {
        assert!(frame.len() >= 2);
        let fin = frame[0] & 0x80 != 0;
        assert_eq!(frame[0] & 0x70, 0, "reserved bits set");
        assert_eq!(frame[1] & 0x80, 0, "server frames are never masked");
        let (len, header) = match frame[1] & 0x7f {
            126 => {
                let len = u16::from_be_bytes([frame[2], frame[3]]) as usize;
                assert!(len >= 126, "16-bit length used for a short payload");
                (len, 4)
            }
            127 => {
                let len = u64::from_be_bytes(frame[2..10].try_into().unwrap());
                assert!(len >> 63 == 0, "most significant bit must be 0");
                assert!(len > 0xffff, "64-bit length used for a shorter payload");
                (len as usize, 10)
            }
            n => (usize::from(n), 2),
        };
        assert_eq!(frame.len(), header + len, "length field vs frame size");
        (fin, frame[0] & 0x0f, &frame[header..])
    }

    fn text_frame(buf: &mut Vec<u8>, payload_len: usize) -> usize {
        begin(buf);
        buf.extend((0..payload_len).map(|i| b'a' + (i % 26) as u8));
        finish(buf, OpCode::Text)
    }

    #[test]
    fn header_is_the_smallest_for_each_length() {
        let mut buf = Vec::new();
        for (len, header_len, len_bytes) in [
            (0, 2, &[0u8][..]),
            (125, 2, &[125][..]),
            (126, 4, &[126, 0, 126][..]),
            (65_535, 4, &[126, 0xff, 0xff][..]),
            (65_536, 10, &[127, 0, 0, 0, 0, 0, 1, 0, 0][..]),
        ] {
            let start = text_frame(&mut buf, len);
            let frame = &buf[start..];
            assert_eq!(frame.len(), header_len + len, "payload {len}");
            assert_eq!(frame[0], 0x81, "FIN + text, payload {len}");
            assert_eq!(&frame[1..header_len], len_bytes, "payload {len}");
            let (fin, opcode, payload) = decode(frame);
            assert!(fin);
            assert_eq!(opcode, 0x1);
            assert_eq!(payload.len(), len);
            assert!(payload
                .iter()
                .enumerate()
                .all(|(i, &b)| b == b'a' + (i % 26) as u8));
        }
    }

    #[test]
    fn control_frames() {
        let mut buf = Vec::new();
        let start = ping_frame(&mut buf, b"hi");
        assert_eq!(&buf[start..], &[0x89, 2, b'h', b'i']);
        let start = pong_frame(&mut buf, b"");
        assert_eq!(&buf[start..], &[0x8a, 0]);
        let start = pong_frame(&mut buf, &[7; 200]);
        assert_eq!(decode(&buf[start..]), (true, 0xa, &[7u8; 125][..]));

        let start = close_frame(&mut buf, 1001, "going away");
        assert_eq!(&buf[start..start + 4], &[0x88, 12, 0x03, 0xe9]);
        assert_eq!(&buf[start + 4..], b"going away");
    }

    #[test]
    fn close_reason_is_cut_on_a_char_boundary() {
        let mut buf = Vec::new();
        // 61 two-byte chars = 122 bytes fit in 123; the 62nd would not.
        let reason = "é".repeat(70);
        let start = close_frame(&mut buf, 1008, &reason);
        let (_, opcode, payload) = decode(&buf[start..]);
        assert_eq!(opcode, 0x8);
        assert_eq!(payload.len(), 2 + 122);
        assert_eq!(&payload[..2], &1008u16.to_be_bytes());
        assert_eq!(std::str::from_utf8(&payload[2..]).unwrap(), "é".repeat(61));

        let start = close_frame(&mut buf, 1000, &"x".repeat(500));
        assert_eq!(decode(&buf[start..]).2.len(), 125);
    }

    #[test]
    fn buffer_is_reused_without_leftovers() {
        let mut buf = Vec::new();
        text_frame(&mut buf, 70_000);
        let capacity = buf.capacity();
        let start = text_frame(&mut buf, 3);
        assert_eq!(&buf[start..], &[0x81, 3, b'a', b'b', b'c']);
        assert_eq!(buf.capacity(), capacity);
    }

    /// A real client-side WebSocket parser accepts every frame we build.
    #[tokio::test]
    async fn fastwebsockets_client_reads_our_frames() {
        use fastwebsockets::{OpCode as Op, Role, WebSocket};
        use tokio::io::AsyncWriteExt;

        let (client_end, mut server_end) = tokio::io::duplex(1 << 20);
        let mut ws = WebSocket::after_handshake(client_end, Role::Client);
        ws.set_auto_pong(false);

        let mut wire = Vec::new();
        let mut buf = Vec::new();
        let lens = [0, 125, 126, 65_535, 65_536];
        for len in lens {
            let start = text_frame(&mut buf, len);
            wire.extend_from_slice(&buf[start..]);
        }
        let start = ping_frame(&mut buf, b"p");
        wire.extend_from_slice(&buf[start..]);
        let start = pong_frame(&mut buf, b"q");
        wire.extend_from_slice(&buf[start..]);
        let start = close_frame(&mut buf, 1001, "going away");
        wire.extend_from_slice(&buf[start..]);
        server_end.write_all(&wire).await.unwrap();

        for len in lens {
            let frame = ws.read_frame().await.unwrap();
            assert!(frame.fin);
            assert_eq!(frame.opcode, Op::Text);
            assert_eq!(frame.payload.len(), len);
        }
        let frame = ws.read_frame().await.unwrap();
        assert_eq!((frame.opcode, &frame.payload[..]), (Op::Ping, &b"p"[..]));
        let frame = ws.read_frame().await.unwrap();
        assert_eq!((frame.opcode, &frame.payload[..]), (Op::Pong, &b"q"[..]));
        // auto_close is on: fastwebsockets validates the close code and UTF-8 reason.
        let frame = ws.read_frame().await.unwrap();
        assert_eq!(frame.opcode, Op::Close);
        assert_eq!(&frame.payload[..], b"\x03\xe9going away");
    }
}
