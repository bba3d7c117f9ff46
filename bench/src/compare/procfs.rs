//! What `compare` reads from `/proc` and how it starts its children.
//!
//! - CPU time of a process: `utime + stime` of `/proc/PID/stat` (all its threads), in
//!   clock ticks (`sysconf(_SC_CLK_TCK)`, 100 per second on Linux: 10 ms resolution).
//! - Memory: `VmRSS` and `VmHWM` of `/proc/PID/status`; the kernel's slab memory
//!   (`Slab` of `/proc/meminfo`, machine-wide) for the kernel's share of connections.
//! - Children are pinned to one core (`sched_setaffinity` between fork and exec) and get
//!   their open-file limit raised to the hard limit (10k connections need 10k fds). A
//!   [`Child`] guard stops its process when dropped: SIGTERM, then SIGKILL after 3 s.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

/// A started child process, stopped when dropped.
pub struct Child {
    /// The process.
    pub inner: std::process::Child,
    stopped: bool,
}

impl Child {
    /// Starts `cmd` pinned to `core` (when `Some`) with the fd limit raised.
    pub fn spawn(cmd: &mut Command, core: Option<usize>) -> io::Result<Child> {
        // SAFETY: the closure runs in the child between fork and exec. It touches only
        // its own stack values and calls sched_setaffinity, getrlimit and setrlimit,
        // which are async-signal-safe system calls; it allocates nothing and takes no
        // lock, so the forked copy of the parent's state is never relied on.
        unsafe {
            cmd.pre_exec(move || {
                if let Some(core) = core {
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    libc::CPU_SET(core, &mut set);
                    if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0
                    {
                        return Err(io::Error::last_os_error());
                    }
                }
                let mut lim: libc::rlimit = std::mem::zeroed();
                if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
                    lim.rlim_cur = lim.rlim_max;
                    libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
                }
                Ok(())
            });
        }
        Ok(Child {
            inner: cmd.spawn()?,
            stopped: false,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.inner.id()
    }

    /// Whether it has exited (and with what).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.inner.try_wait().ok().flatten()
    }

    /// Waits up to `limit` for it to exit by itself; `None` if it is still running.
    pub fn wait_for(&mut self, limit: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + limit;
        loop {
            if let Some(status) = self.exited() {
                self.stopped = true;
                return Some(status);
            }
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, up to 3 s to exit, then SIGKILL; waits for it either way.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        if self.exited().is_some() {
            return;
        }
        if let Ok(pid) = libc::pid_t::try_from(self.inner.id()) {
            // SAFETY: kill(2) with a pid we started and have not reaped yet (try_wait
            // just said it is running), so the pid cannot name another process.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.inner.kill();
        let _ = self.inner.wait();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Clock ticks per second of `/proc/PID/stat` times.
fn clock_ticks() -> f64 {
    // SAFETY: sysconf reads a constant of the system; no memory is passed.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// User + system CPU seconds of process `pid` so far (all threads).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after it are fixed.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ")": state is field 3 of the whole line, so utime (14) is index 11 here.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

/// A `kB` field of a `/proc` file, e.g. `VmRSS` of `/proc/PID/status`.
fn kib_field(path: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key)
            .then(|| v.trim().trim_end_matches("kB").trim().parse().ok())
            .flatten()
    })
}

/// Resident memory of `pid` now, KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    kib_field(&format!("/proc/{pid}/status"), "VmRSS")
}

/// `pid`'s resident memory once it has settled: sampled every 250 ms until it has moved
/// by at most 64 KiB over `stable_for`, or `max_wait` has passed (then the last sample).
/// A server's own start-up allocations (tickwire's stats thread builds its histograms in
/// its first seconds) would otherwise count against the connections that come next.
pub fn settled_rss_kib(pid: u32, stable_for: Duration, max_wait: Duration) -> Option<u64> {
    const SAMPLE: Duration = Duration::from_millis(250);
    const SLACK_KIB: u64 = 64;
    let until = Instant::now() + max_wait;
    let mut base = rss_kib(pid)?;
    let mut since = Instant::now();
    loop {
        if since.elapsed() >= stable_for || Instant::now() >= until {
            return rss_kib(pid).or(Some(base));
        }
        std::thread::sleep(SAMPLE);
        let now = rss_kib(pid)?;
        if now.abs_diff(base) > SLACK_KIB {
            base = now;
            since = Instant::now();
        }
    }
}

/// Peak resident memory of `pid` so far, KiB.
pub fn hwm_kib(pid: u32) -> Option<u64> {
    kib_field(&format!("/proc/{pid}/status"), "VmHWM")
}

/// The kernel's slab memory, machine-wide, KiB (sockets, their files and epoll entries
/// live there).
pub fn slab_kib() -> Option<u64> {
    kib_field("/proc/meminfo", "Slab")
}

/// Busy and total CPU seconds of the whole machine so far (all cores), from the `cpu`
/// line of `/proc/stat`: busy = user + nice + system + irq + softirq + steal.
pub fn machine_cpu_seconds() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let get = |i: usize| v.get(i).copied().unwrap_or(0.0);
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let busy = get(0) + get(1) + get(2) + get(5) + get(6) + get(7);
    let total = busy + get(3) + get(4);
    let tick = clock_ticks();
    Some((busy / tick, total / tick))
}

/// Share of the machine's CPU (0..1, all cores) busy over `window`.
pub fn machine_busy(window: Duration) -> Option<f64> {
    let (b0, t0) = machine_cpu_seconds()?;
    std::thread::sleep(window);
    let (b1, t1) = machine_cpu_seconds()?;
    (t1 > t0).then(|| (b1 - b0) / (t1 - t0))
}

/// Wall clock, ns since the Unix epoch (the generator's windows use it).
pub fn wall_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// CPU seconds per wall second between `from` and `to` (ns since the epoch), from
/// samples of (wall ns, CPU seconds so far) in time order, interpolated linearly between
/// the samples around each end; `None` when the samples do not cover the window.
pub fn busy_between(samples: &[(u64, f64)], from: u64, to: u64) -> Option<f64> {
    let at = |t: u64| -> Option<f64> {
        let i = samples
            .windows(2)
            .position(|w| w[0].0 <= t && t <= w[1].0)?;
        let ((t0, c0), (t1, c1)) = (samples[i], samples[i + 1]);
        if t1 == t0 {
            return Some(c1);
        }
        Some(c0 + (c1 - c0) * (t - t0) as f64 / (t1 - t0) as f64)
    };
    if to <= from {
        return None;
    }
    Some((at(to)? - at(from)?) / ((to - from) as f64 / 1e9))
}

/// The 1-minute load average.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Waits until 127.0.0.1:`port` accepts a TCP connection, up to `limit`; fails early if
/// `child` exits.
pub fn wait_listening(port: u16, child: &mut Child, limit: Duration) -> Result<(), String> {
    let until = Instant::now() + limit;
    loop {
        if let Some(status) = child.exited() {
            return Err(format!("the server exited before listening ({status})"));
        }
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= until {
            return Err(format!("nothing listening on port {port} after {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_process() {
        let me = std::process::id();
        assert!(cpu_seconds(me).is_some());
        assert!(rss_kib(me).unwrap() > 0);
        assert!(hwm_kib(me).unwrap() >= rss_kib(me).unwrap() / 2);
        assert!(slab_kib().unwrap() > 0);
    }

    #[test]
    fn busy_share_over_a_window_is_interpolated_from_samples() {
        let s = 1_000_000_000u64;
        // 0.5 core busy for a second, then a full core.
        let samples = [(0, 10.0), (s, 10.5), (2 * s, 11.5)];
        assert_eq!(busy_between(&samples, 0, s), Some(0.5));
        assert_eq!(busy_between(&samples, s, 2 * s), Some(1.0));
        let half = busy_between(&samples, s / 2, 3 * s / 2).unwrap();
        assert!((half - 0.75).abs() < 1e-9, "{half}");
        assert_eq!(
            busy_between(&samples, s, 3 * s),
            None,
            "past the last sample"
        );
        assert_eq!(busy_between(&samples, s, s), None, "empty window");
    }

    #[test]
    fn a_pinned_child_is_stopped_when_dropped() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let mut child = Child::spawn(&mut cmd, Some(0)).unwrap();
        let pid = child.pid();
        assert!(child.exited().is_none());
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let allowed = status
            .lines()
            .find(|l| l.starts_with("Cpus_allowed_list"))
            .unwrap();
        assert!(allowed.ends_with("\t0"), "{allowed}");
        drop(child);
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
}
