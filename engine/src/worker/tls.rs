//! TLS on an upgraded WebSocket connection: the rustls session that the HTTP layer's
//! handshake produced, driven over the worker's own non-blocking socket.
//!
//! A plain connection writes the outbox's gathered frames straight to the socket with
//! one `send` (worker/send.rs) and never comes here. A TLS connection gathers the same
//! frames, has rustls encrypt them (one pass over the plaintext into the session's
//! record buffer) and writes the records. Plaintext is handed to rustls only while no
//! earlier record waits for the socket, and rustls' buffer is capped at
//! [`TLS_BUFFER_BYTES`], so at most
//! that much encrypted data sits outside the outbox, where it could no longer be
//! conflated; the staleness bounds act on the TCP socket below (`TCP_NOTSENT_LOWAT`,
//! acknowledged bytes) as for a plain connection. Reads go the other way: records from
//! the socket into rustls, plaintext out into the worker's shared scratch buffer, where
//! the frame reader parses it in place.
//!
//! Memory: rustls' session state and its buffers, a few tens of KiB per connection, for
//! TLS connections only (accepted: a plain connection holds none of it). Encrypting
//! allocates inside rustls (one buffer per record); the zero-allocation promise of the
//! data path is for plain connections. Owned by the worker thread; the `RefCell` is
//! borrowed only inside these calls, never across an `await`.

use std::cell::RefCell;
use std::io::{self, IoSlice, Read, Write};

use rustls::ServerConnection;
use tokio::net::TcpStream;

use crate::frames::FrameSlab;
use crate::outbox::{Outbox, WriteOutcome};

/// Encrypted bytes rustls may hold for the socket (its record buffer limit).
pub const TLS_BUFFER_BYTES: usize = 32 * 1024;

/// The socket as `std::io` sees it: non-blocking reads and writes (`WouldBlock` clears
/// tokio's readiness, as the plain path's `try_*` calls do).
struct Socket<'a>(&'a TcpStream);

impl Read for Socket<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for Socket<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        super::send::send_when_ready(self.0, &[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        super::send::send_when_ready(self.0, bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What one read of the socket brought.
#[derive(Debug, PartialEq, Eq)]
pub enum TlsRead {
    /// Records were read (plaintext may now be waiting: [`TlsConn::plaintext`]).
    Records,
    /// Nothing to read now.
    WouldBlock,
    /// The peer closed the TCP connection.
    Eof,
}

/// One connection's TLS session.
pub struct TlsConn {
    conn: RefCell<ServerConnection>,
}

impl TlsConn {
    /// Wraps the session of a finished handshake and caps its record buffer.
    pub fn new(mut conn: ServerConnection) -> TlsConn {
        conn.set_buffer_limit(Some(TLS_BUFFER_BYTES));
        TlsConn {
            conn: RefCell::new(conn),
        }
    }

    /// Writes the records rustls holds. `Ok(true)`: none left; `Ok(false)`: the socket is
    /// full.
    pub fn flush(&self, stream: &TcpStream) -> io::Result<bool> {
        flush_records(&mut self.conn.borrow_mut(), stream)
    }

    /// Whether records wait for the socket.
    pub fn wants_write(&self) -> bool {
        self.conn.borrow().wants_write()
    }

    /// Writes `outbox` through TLS as [`Outbox::write_to`] writes a plain socket:
    /// records left from an earlier call first, then the frames, encrypted as they are
    /// gathered. `Drained` only once the last record is on the socket.
    pub fn write_outbox(
        &self,
        stream: &TcpStream,
        outbox: &mut Outbox,
        frames: &mut FrameSlab,
        on_written: impl FnMut(u64, u64),
    ) -> io::Result<WriteOutcome> {
        let mut conn = self.conn.borrow_mut();
        if !flush_records(&mut conn, stream)? {
            return Ok(WriteOutcome::Blocked);
        }
        let outcome = outbox.write_to(
            frames,
            |iov| {
                // What rustls holds cannot be conflated: hand it more only once the
                // socket has taken the last records.
                if !flush_records(&mut conn, stream)? {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                let taken = conn.writer().write_vectored(iov)?;
                if taken == 0 {
                    // Only a full record buffer refuses plaintext; wait for the socket.
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                flush_records(&mut conn, stream)?;
                Ok(taken)
            },
            on_written,
        )?;
        match outcome {
            WriteOutcome::Drained if !flush_records(&mut conn, stream)? => {
                Ok(WriteOutcome::Blocked)
            }
            other => Ok(other),
        }
    }

    /// Reads what the socket holds into rustls and processes it. A TLS error (a bad
    /// record, an alert) is returned after rustls' own alert was offered to the socket.
    pub fn read(&self, stream: &TcpStream) -> io::Result<TlsRead> {
        let mut conn = self.conn.borrow_mut();
        let read = match conn.read_tls(&mut Socket(stream)) {
            Ok(0) => return Ok(TlsRead::Eof),
            Ok(_) => TlsRead::Records,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => TlsRead::WouldBlock,
            Err(e) => return Err(e),
        };
        self.process(&mut conn, stream)?;
        Ok(read)
    }

    /// Processes records already buffered (those read with the HTTP request).
    pub fn process_buffered(&self, stream: &TcpStream) -> io::Result<()> {
        let mut conn = self.conn.borrow_mut();
        self.process(&mut conn, stream)
    }

    fn process(&self, conn: &mut ServerConnection, stream: &TcpStream) -> io::Result<()> {
        if let Err(e) = conn.process_new_packets() {
            // Best effort: tell the peer why (rustls queued the alert).
            let _ = flush_records(conn, stream);
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        Ok(())
    }

    /// Moves decrypted bytes into `buf`; 0 when none wait (or the peer sent
    /// `close_notify`; its TCP end follows).
    pub fn plaintext(&self, buf: &mut [u8]) -> usize {
        // `WouldBlock` (nothing decrypted yet) and an unclean end both mean: nothing now.
        self.conn
            .borrow_mut()
            .reader()
            .read(buf)
            .unwrap_or_default()
    }

    /// Queues `close_notify` and writes what the socket takes (the connection ends).
    pub fn close_notify(&self, stream: &TcpStream) {
        let mut conn = self.conn.borrow_mut();
        conn.send_close_notify();
        let _ = flush_records(&mut conn, stream);
    }
}

fn flush_records(conn: &mut ServerConnection, stream: &TcpStream) -> io::Result<bool> {
    while conn.wants_write() {
        match conn.write_tls(&mut Socket(stream)) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}
