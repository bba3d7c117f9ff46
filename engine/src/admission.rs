//! Admission: how many connections the engine holds in total and per client address, and
//! how fast one address may open WebSockets.
//!
//! Shared by every worker (a mutex around a small map), and touched only when a
//! connection is accepted or closed and when an upgrade is asked for: never on the data
//! path. A connection holds a [`Permit`] for its life; dropping it gives the place back.
//! Loopback addresses are exempt from the per-address limits when configured so (the
//! default): local tools, tests and a reverse proxy on the same host all come from there.
//!
//! An address's entry (its connection count and upgrade token bucket) outlives its last
//! connection until the bucket has refilled: dropping it sooner would hand a client that
//! reconnects one connection at a time a full bucket each time. Entries with no
//! connections and a full bucket are pruned by a sweep that runs when the map has
//! doubled since the last one; past [`MAX_IDLE_ENTRIES`] idle entries, the sweep drops
//! idle ones even with a bucket still refilling, so an attacker spraying addresses
//! cannot grow the map without bound (it holds at most `max_connections` busy entries
//! plus that many idle ones).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::config::EngineConfig;

/// Most entries kept for addresses that hold no connection (their bucket still
/// refilling); past it a sweep drops them (see the module doc). 64 Ki entries: about
/// 3 MiB.
pub const MAX_IDLE_ENTRIES: usize = 64 * 1024;

/// The smallest map size that triggers a sweep.
const MIN_SWEEP_AT: usize = 1024;

/// Why a connection or an upgrade is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The engine holds `max_connections` already.
    #[error("the engine is at its connection limit (max_connections)")]
    Total,
    /// This address holds `max_connections_per_ip` already.
    #[error("too many connections from this address (max_connections_per_ip)")]
    PerIp,
    /// This address opened WebSockets faster than `upgrades_per_s_per_ip`.
    #[error("too many WebSocket upgrades per second from this address (upgrades_per_s_per_ip)")]
    UpgradeRate,
}

#[derive(Debug)]
struct PerIp {
    connections: u32,
    tokens: f64,
    refilled: Instant,
}

impl PerIp {
    /// Whether the bucket holds `rate` tokens again at `now`.
    fn refilled_by(&self, now: Instant, rate: f64) -> bool {
        self.tokens + now.saturating_duration_since(self.refilled).as_secs_f64() * rate >= rate
    }
}

/// The per-address map and when it is next swept.
#[derive(Debug)]
struct PerIpMap {
    entries: HashMap<IpAddr, PerIp>,
    sweep_at: usize,
}

/// The engine's connection limits (see the module doc).
#[derive(Debug)]
pub struct Admission {
    total: AtomicU64,
    max_total: u64,
    max_per_ip: u32,
    upgrades_per_s: u32,
    exempt_loopback: bool,
    per_ip: Mutex<PerIpMap>,
}

/// A connection's place; dropping it gives the place back.
#[derive(Debug)]
pub struct Permit {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.admission.total.fetch_sub(1, Ordering::Relaxed);
        if self.admission.counts(self.ip) {
            let now = Instant::now();
            let rate = f64::from(self.admission.upgrades_per_s);
            let mut map = self.admission.lock();
            if let Some(e) = map.entries.get_mut(&self.ip) {
                e.connections = e.connections.saturating_sub(1);
                // Kept while its bucket refills: see the module doc.
                if e.connections == 0 && e.refilled_by(now, rate) {
                    map.entries.remove(&self.ip);
                }
            }
        }
    }
}

impl Admission {
    /// Limits from the configuration.
    pub fn new(cfg: &EngineConfig) -> Admission {
        Admission {
            total: AtomicU64::new(0),
            max_total: cfg.max_connections as u64,
            max_per_ip: cfg.max_connections_per_ip,
            upgrades_per_s: cfg.upgrades_per_s_per_ip,
            exempt_loopback: cfg.loopback_exempt,
            per_ip: Mutex::new(PerIpMap {
                entries: HashMap::new(),
                sweep_at: MIN_SWEEP_AT,
            }),
        }
    }

    fn counts(&self, ip: IpAddr) -> bool {
        !(self.exempt_loopback && ip.is_loopback())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PerIpMap> {
        // A panic while holding this lock leaves plain counters behind: still usable.
        self.per_ip
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Admits a new connection from `ip`, or says why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Result<Permit, Refusal> {
        if self.total.fetch_add(1, Ordering::Relaxed) >= self.max_total {
            self.total.fetch_sub(1, Ordering::Relaxed);
            return Err(Refusal::Total);
        }
        if self.counts(ip) {
            let mut map = self.lock();
            if map.entries.len() >= map.sweep_at {
                self.sweep(&mut map, now);
            }
            let e = map.entries.entry(ip).or_insert_with(|| PerIp {
                connections: 0,
                tokens: f64::from(self.upgrades_per_s),
                refilled: now,
            });
            if e.connections >= self.max_per_ip {
                drop(map);
                self.total.fetch_sub(1, Ordering::Relaxed);
                return Err(Refusal::PerIp);
            }
            e.connections += 1;
        }
        Ok(Permit {
            admission: Arc::clone(self),
            ip,
        })
    }

    /// Takes one upgrade token for the permit's address (a bucket of
    /// `upgrades_per_s_per_ip`, refilled continuously).
    pub fn upgrade(&self, permit: &Permit, now: Instant) -> Result<(), Refusal> {
        if !self.counts(permit.ip) {
            return Ok(());
        }
        let rate = f64::from(self.upgrades_per_s);
        let mut map = self.lock();
        let Some(e) = map.entries.get_mut(&permit.ip) else {
            return Ok(());
        };
        e.tokens =
            (e.tokens + now.saturating_duration_since(e.refilled).as_secs_f64() * rate).min(rate);
        e.refilled = now;
        if e.tokens >= 1.0 {
            e.tokens -= 1.0;
            Ok(())
        } else {
            Err(Refusal::UpgradeRate)
        }
    }

    /// Drops the entries of addresses with no connection whose bucket has refilled, then,
    /// past [`MAX_IDLE_ENTRIES`] idle ones, idle entries whatever their bucket.
    fn sweep(&self, map: &mut PerIpMap, now: Instant) {
        let rate = f64::from(self.upgrades_per_s);
        map.entries
            .retain(|_, e| e.connections > 0 || !e.refilled_by(now, rate));
        let mut idle = map.entries.values().filter(|e| e.connections == 0).count();
        if idle > MAX_IDLE_ENTRIES {
            map.entries.retain(|_, e| {
                if e.connections == 0 && idle > MAX_IDLE_ENTRIES {
                    idle -= 1;
                    false
                } else {
                    true
                }
            });
        }
        // Amortised: the next sweep when the map has doubled.
        map.sweep_at = (map.entries.len() * 2).max(MIN_SWEEP_AT);
    }

    /// Addresses tracked now (tests: the map stays bounded).
    pub fn tracked_addresses(&self) -> usize {
        self.lock().entries.len()
    }

    /// Connections held now.
    pub fn connections(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn admission(exempt: bool) -> Arc<Admission> {
        Arc::new(Admission::new(&EngineConfig {
            max_connections: 3,
            max_connections_per_ip: 2,
            upgrades_per_s_per_ip: 2,
            loopback_exempt: exempt,
            ..EngineConfig::default()
        }))
    }

    #[test]
    fn limits_in_total_and_per_address_give_places_back_on_drop() {
        let a = admission(false);
        let now = Instant::now();
        let (x, y): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let p1 = a.admit(x, now).unwrap();
        let _p2 = a.admit(x, now).unwrap();
        assert_eq!(a.admit(x, now).unwrap_err(), Refusal::PerIp);
        let _p3 = a.admit(y, now).unwrap();
        assert_eq!(a.admit(y, now).unwrap_err(), Refusal::Total);
        drop(p1);
        assert_eq!(a.connections(), 2);
        assert!(a.admit(x, now).is_ok(), "a place came back");
    }

    #[test]
    fn upgrades_per_second_per_address_refill_and_loopback_is_exempt() {
        let a = admission(false);
        let t0 = Instant::now();
        let p = a.admit("10.0.0.9".parse().unwrap(), t0).unwrap();
        assert!(a.upgrade(&p, t0).is_ok() && a.upgrade(&p, t0).is_ok());
        assert_eq!(a.upgrade(&p, t0).unwrap_err(), Refusal::UpgradeRate);
        assert!(
            a.upgrade(&p, t0 + Duration::from_millis(500)).is_ok(),
            "one per 500 ms"
        );
        let local = admission(true);
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let permits: Vec<_> = (0..3).map(|_| local.admit(lo, t0).unwrap()).collect();
        assert!((0..10).all(|_| local.upgrade(&permits[0], t0).is_ok()));
    }

    #[test]
    fn reconnecting_one_connection_at_a_time_does_not_refill_the_upgrade_bucket() {
        let a = admission(false);
        let t0 = Instant::now();
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        let mut passed = 0;
        for _ in 0..10 {
            let p = a.admit(ip, t0).unwrap();
            passed += usize::from(a.upgrade(&p, t0).is_ok());
        }
        assert_eq!(passed, 2, "the bucket survives the last connection's close");
        let p = a.admit(ip, t0 + Duration::from_secs(1)).unwrap();
        assert!(
            a.upgrade(&p, t0 + Duration::from_secs(1)).is_ok(),
            "refilled"
        );
    }

    #[test]
    fn an_address_spray_keeps_the_map_bounded_and_refilled_entries_are_pruned() {
        let a = admission(false);
        let t0 = Instant::now();
        // Each address upgrades once and leaves: its bucket is not full, so it stays.
        let spray = MAX_IDLE_ENTRIES + 5000;
        for i in 0..spray as u32 {
            let p = a
                .admit(IpAddr::from((0x0a00_0000 + i).to_be_bytes()), t0)
                .unwrap();
            a.upgrade(&p, t0).unwrap();
        }
        assert!(
            a.tracked_addresses() <= 2 * MAX_IDLE_ENTRIES,
            "bounded: {}",
            a.tracked_addresses()
        );
        // A second later every bucket has refilled: the next sweep prunes them all.
        let later = t0 + Duration::from_secs(1);
        let mut map = a.lock();
        a.sweep(&mut map, later);
        assert!(map.entries.is_empty(), "{} left", map.entries.len());
    }
}
