//! The two TCP socket options tickwire needs that `socket2` (0.5) does not expose, as
//! safe functions on any `AsFd`: [`set_notsent_lowat`] (how much unsent data the kernel
//! holds before it stops taking writes) and [`bytes_acked`] (`TCP_INFO`'s count of
//! bytes the peer acknowledged, i.e. took).
//!
//! This crate is the engine's only foreign call: two `setsockopt`/`getsockopt` calls on
//! a descriptor the caller borrows, with plain-old-data arguments. Linux only; elsewhere
//! both return `Unsupported`. Nothing allocates, nothing blocks.

use std::io;
use std::os::fd::AsFd;

/// Sets `TCP_NOTSENT_LOWAT`: the socket reports writable, and takes writes, only while
/// less than `bytes` of written data are still unsent (not yet handed to the network).
/// Data the kernel holds unsent is out of the engine's reach; this keeps it small.
pub fn set_notsent_lowat(socket: &impl AsFd, bytes: u32) -> io::Result<()> {
    imp::set_notsent_lowat(socket, bytes)
}

/// Bytes of this connection the peer has acknowledged so far (`tcpi_bytes_acked`).
pub fn bytes_acked(socket: &impl AsFd) -> io::Result<u64> {
    imp::bytes_acked(socket)
}

#[cfg(target_os = "linux")]
mod imp {
    use std::io;
    use std::mem::{size_of, MaybeUninit};
    use std::os::fd::{AsFd, AsRawFd};

    pub fn set_notsent_lowat(socket: &impl AsFd, bytes: u32) -> io::Result<()> {
        let value = bytes as libc::c_int;
        // SAFETY: the descriptor is borrowed, so open for the call; `value` is a live
        // c_int and the length passed is exactly its size, as TCP_NOTSENT_LOWAT expects.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_fd().as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_NOTSENT_LOWAT,
                (&value as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    pub fn bytes_acked(socket: &impl AsFd) -> io::Result<u64> {
        let mut info = MaybeUninit::<libc::tcp_info>::zeroed();
        let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
        // SAFETY: the descriptor is borrowed, so open for the call; `info` is a zeroed
        // buffer of `len` bytes that the kernel fills (at most `len`) and `len` is a live
        // socklen_t it updates.
        let rc = unsafe {
            libc::getsockopt(
                socket.as_fd().as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                info.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let filled = len as usize;
        let needed = std::mem::offset_of!(libc::tcp_info, tcpi_bytes_acked) + size_of::<u64>();
        if filled < needed {
            // A kernel older than 4.1 has no tcpi_bytes_acked.
            return Err(io::ErrorKind::Unsupported.into());
        }
        // SAFETY: the buffer was zeroed (a valid tcp_info of plain integers) and the kernel
        // wrote at most its size; the field read lies within what it wrote.
        Ok(unsafe { info.assume_init() }.tcpi_bytes_acked)
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::io;
    use std::os::fd::AsFd;

    pub fn set_notsent_lowat(_: &impl AsFd, _: u32) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }

    pub fn bytes_acked(_: &impl AsFd) -> io::Result<u64> {
        Err(io::ErrorKind::Unsupported.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn bytes_acked_counts_what_the_peer_took_and_lowat_is_accepted() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        set_notsent_lowat(&server, 16 * 1024).unwrap();
        assert_eq!(bytes_acked(&server).unwrap(), 0);
        server.write_all(&[7u8; 10_000]).unwrap();
        let mut got = vec![0u8; 10_000];
        client.read_exact(&mut got).unwrap();
        // Loopback acknowledges as it delivers; wait for the count (bounded).
        let mut acked = 0;
        for _ in 0..1000 {
            acked = bytes_acked(&server).unwrap();
            if acked >= 10_000 {
                break;
            }
            std::thread::yield_now();
        }
        assert_eq!(acked, 10_000);
    }
}
