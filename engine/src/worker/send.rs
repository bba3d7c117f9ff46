//! The one non-blocking socket write of the data path: `send(2)` for one buffer,
//! `sendmsg(2)` for gathered frames.
//!
//! Not `writev(2)` (tokio's `try_write_vectored`): a write through the file layer pays
//! for `fdget_pos`, `vfs_writev` and `sock_write_iter` on top of the socket's own send,
//! about 9% of the server's CPU at light load where every write carries one frame
//! (perf, docs/benchmarks.md "Third pass"); `send` goes to the socket directly, as
//! uWebSockets does. `WouldBlock` clears tokio's write readiness as `try_write_*` does, so
//! a blocked client's connection task still waits for the next writable edge.

use std::io::{self, IoSlice};

use socket2::SockRef;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Writes as much of `bufs` as the socket takes now, without blocking or `SIGPIPE`.
pub fn send(stream: &TcpStream, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    stream.try_io(Interest::WRITABLE, || {
        let socket = SockRef::from(stream);
        // MSG_NOSIGNAL: a peer gone mid-write is an `EPIPE` to handle, not a signal, also
        // when the engine is embedded in a program that has not ignored SIGPIPE.
        match bufs {
            [one] => socket.send_with_flags(one, libc::MSG_NOSIGNAL),
            many => socket.send_vectored_with_flags(many, libc::MSG_NOSIGNAL),
        }
    })
}
