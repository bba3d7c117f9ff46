//! The one non-blocking socket write of the data path: `send(2)` for one buffer,
//! `sendmsg(2)` for gathered frames.
//!
//! Not `writev(2)` (tokio's `try_write_vectored`): a write through the file layer pays
//! for `fdget_pos`, `vfs_writev` and `sock_write_iter` on top of the socket's own send,
//! about 9% of the server's CPU at light load where every write carries one frame
//! (perf, docs/decisions/0001-send-not-writev.md); `send` goes to the socket directly,
//! as uWebSockets does.
//!
//! Two ways in, by whether the client is blocked (its socket refused bytes and its
//! connection task waits for writability):
//!
//! - [`send_now`], for a client that is not: the system call itself, through rustix's
//!   raw syscall (libc's `send` is a cancellation point and wraps every call in
//!   enabling and disabling asynchronous cancellation) and without consulting tokio's
//!   readiness, whose per-socket state is a cache miss per write at 1000 clients. A
//!   `WouldBlock` here clears nothing: the caller marks the client blocked, and its task,
//!   which may then find tokio's readiness stale, retries through [`send_when_ready`].
//! - [`send_when_ready`], for that retry: inside tokio's `try_io`, so that a
//!   `WouldBlock` clears exactly the readiness it observed before the call and the task
//!   waits for the next writable edge, with no edge lost in between.

use std::io::{self, IoSlice};

use rustix::net::{SendAncillaryBuffer, SendFlags};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Either way into the socket: [`send_now`] or [`send_when_ready`].
pub type SendFn = fn(&TcpStream, &[IoSlice<'_>]) -> io::Result<usize>;

/// Writes as much of `bufs` as the socket takes now, without blocking or `SIGPIPE`,
/// without touching tokio's readiness (see the module doc).
pub fn send_now(stream: &TcpStream, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    // MSG_NOSIGNAL: a peer gone mid-write is an `EPIPE` to handle, not a signal, also
    // when the engine is embedded in a program that has not ignored SIGPIPE. The socket
    // is non-blocking (tokio made it so), hence no MSG_DONTWAIT.
    let sent = match bufs {
        [one] => rustix::net::send(stream, one, SendFlags::NOSIGNAL),
        many => rustix::net::sendmsg(
            stream,
            many,
            &mut SendAncillaryBuffer::default(),
            SendFlags::NOSIGNAL,
        ),
    };
    sent.map_err(io::Error::from)
}

/// [`send_now`] inside tokio's readiness: a `WouldBlock` clears the write readiness it
/// observed, so the connection task's next `poll_write_ready` waits for a fresh edge.
pub fn send_when_ready(stream: &TcpStream, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    stream.try_io(Interest::WRITABLE, || send_now(stream, bufs))
}
