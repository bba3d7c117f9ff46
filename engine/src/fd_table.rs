//! The process's descriptor table, grown once at start-up instead of under load.
//!
//! Linux keeps a process's open files in a table that doubles when a new descriptor
//! does not fit (256, 512, 1024, … entries). When the process has more than one thread,
//! the kernel frees the old table only after an RCU grace period and waits for it inside
//! the call that needed the room (`expand_fdtable` → `synchronize_rcu`). For the engine
//! that call is a worker's `accept4`: traced on the test VM, it slept 10–16 ms at the
//! 256th and the 512th descriptor, and every trade due meanwhile waited in the ring. So
//! the engine makes the table as large as it may need before it serves anyone, by asking
//! for a descriptor at the top of that range and closing it at once: the table never
//! shrinks. (Descriptors cost 8 bytes of table each, kernel memory only: a 131,072-entry
//! table is 1 MiB.)

use std::os::fd::{AsFd, RawFd};

/// Grows the descriptor table to hold at least `fds` descriptors, duplicating `probe` to
/// a number at least `fds − 1` and closing the copy. Returns the table size asked for;
/// fails when `fds` exceeds the open-file limit or the kernel has no memory for it.
pub fn reserve(probe: impl AsFd, fds: u64) -> std::io::Result<u64> {
    let top = RawFd::try_from(fds.saturating_sub(1)).unwrap_or(RawFd::MAX);
    let copy = rustix::io::fcntl_dupfd_cloexec(probe, top)?;
    drop(copy);
    Ok(fds)
}

/// How many descriptors the engine may hold: one per connection it admits plus
/// `headroom` for listeners, feeds and files, within the open-file limit.
pub fn wanted(max_connections: usize, headroom: u64, limit: u64) -> u64 {
    (max_connections as u64).saturating_add(headroom).min(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of this process's descriptor table, as the kernel reports it.
    fn table_size() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("FDSize:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("FDSize in /proc/self/status")
    }

    #[test]
    fn reserving_grows_the_table_once_and_keeps_no_descriptor() {
        let limit = rlimit::Resource::NOFILE.get().expect("limit").0;
        let want = 8192.min(limit);
        let probe = std::fs::File::open("/proc/self/status").expect("probe");
        assert_eq!(reserve(&probe, want).expect("reserve"), want);
        assert!(table_size() >= want, "FDSize {} < {want}", table_size());
        // The copy went to the top of the range; nothing there is open now. (Counting
        // every open descriptor instead raced with the tests running beside this one.)
        let high: Vec<u64> = std::fs::read_dir("/proc/self/fd")
            .expect("fds")
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|&fd: &u64| fd + 1 >= want)
            .collect();
        assert!(high.is_empty(), "the copy is closed again: {high:?} open");
    }

    #[test]
    fn beyond_the_limit_is_an_error() {
        let limit = rlimit::Resource::NOFILE.get().expect("limit").0;
        let probe = std::fs::File::open("/proc/self/status").expect("probe");
        assert!(reserve(&probe, limit.saturating_add(1)).is_err());
    }

    #[test]
    fn the_wanted_size_is_capped_by_the_limit() {
        assert_eq!(wanted(100_000, 256, 1 << 20), 100_256);
        assert_eq!(wanted(100_000, 256, 65_536), 65_536);
    }
}
