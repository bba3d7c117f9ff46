//! The client protocol (`protocol.md`, versions 1 and 2): client commands in, server frames out.
//!
//! - [`client_frames`] parses the client's WebSocket frames from the bytes a worker read
//!   (sans I/O): unmasks, reassembles, checks UTF-8 and the size limit, and names the
//!   close code for each violation.
//! - [`command`] parses one text frame's payload into a [`command::Command`], or into a
//!   [`command::CommandError`] that the session answers with an `error` message.
//! - [`encode`] writes every server message as compact JSON, by hand.
//! - [`frame`] wraps a payload into a complete, unmasked WebSocket frame.
//! - [`version`] names the protocol versions and negotiates them in the upgrade.
//!
//! What allocates: command parsing may allocate (it is the cold path, bounded by the
//! gateway's size and rate limits). Encoders and frame builders append into a
//! caller-owned, reusable `Vec<u8>` and allocate nothing once it has capacity, so the hot
//! path encodes each event once, into one frame that every subscriber's socket shares:
//!
//! ```
//! use tickwire_engine::protocol::{encode, frame};
//! let mut buf = Vec::with_capacity(4096);
//! frame::begin(&mut buf);
//! encode::pong(&mut buf, Some(4), 1_763_700_000_000_000_000);
//! let start = frame::finish(&mut buf, frame::OpCode::Text);
//! assert_eq!(buf[start], 0x81); // FIN + text
//! assert_eq!(&buf[start + 2..], br#"{"type":"pong","id":4,"ts":1763700000000000000}"#);
//! ```
//!
//! Nothing here blocks, spins or owns a thread; overload is handled by the callers.
//! The readings of the protocol's unclear points are in `docs/protocol-notes.md`.

pub mod client_frames;
pub mod command;
pub mod encode;
pub mod frame;
pub mod version;
