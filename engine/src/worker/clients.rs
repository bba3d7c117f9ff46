//! The worker's client table (one [`Client`] per WebSocket connection) and what a
//! client holds besides its conflation state: its connection, liveness times, command
//! limits, error window and token grant.
//!
//! Owned by one worker thread. Slots are reused; a [`ClientKey`] carries the slot's
//! generation so that a key kept by a timer or a task after its client left never
//! reaches the slot's next occupant. A client costs its `Client` slot (a few hundred
//! bytes, inline in the table) plus what its outbox and subscriptions hold; nothing is
//! reserved for a client that is idle.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use crate::auth::Scope;

pub use super::client::Client;
use super::signal::LocalSignal;
use super::tls::TlsConn;

/// Identifies a client slot; the generation guards against a reused slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientKey {
    index: u32,
    generation: u32,
}

impl ClientKey {
    /// A key for slot `index` at `generation`.
    pub fn new(index: u32, generation: u32) -> ClientKey {
        ClientKey { index, generation }
    }
}

/// When a client was last heard from, pinged, and seen taking bytes.
#[derive(Clone, Copy, Debug)]
pub struct Liveness {
    /// Last time any frame arrived from the client.
    pub last_heard: Instant,
    /// When the last server ping went out.
    pub last_ping: Option<Instant>,
    /// Last time the socket took bytes, or had nothing pending, or the peer
    /// acknowledged more bytes.
    pub last_progress: Instant,
    /// Bytes the peer had acknowledged at the last sweep (`TCP_INFO`).
    pub acked: u64,
}

/// What a client's commands may cost per second: a token bucket of commands (pings
/// included) and one of the snapshot bytes its subscribes cause (`snapshot_bytes_per_s`).
/// The snapshot bucket holds one second's worth and may go into debt by one command's
/// snapshots: a subscribe is refused while it is in debt, so the snapshots a client
/// causes average the rate at most, and one large subscribe still goes through whole.
/// Both share one refill time so the client slot does not grow (24 bytes).
#[derive(Clone, Copy, Debug)]
pub struct CommandLimiter {
    tokens: f32,
    snapshot_bytes: f32,
    refilled: Instant,
}

impl CommandLimiter {
    /// Full buckets at `now`.
    pub fn new(rate_per_s: u32, snapshot_bytes_per_s: u64, now: Instant) -> CommandLimiter {
        CommandLimiter {
            tokens: rate_per_s as f32,
            snapshot_bytes: snapshot_bytes_per_s as f32,
            refilled: now,
        }
    }

    fn refill(&mut self, rate_per_s: u32, snapshot_bytes_per_s: u64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f32();
        let rate = rate_per_s as f32;
        let snapshot_rate = snapshot_bytes_per_s as f32;
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        self.snapshot_bytes = (self.snapshot_bytes + elapsed * snapshot_rate).min(snapshot_rate);
        self.refilled = now;
    }

    /// Takes one command token; false when the bucket is empty.
    pub fn take(&mut self, rate_per_s: u32, snapshot_bytes_per_s: u64, now: Instant) -> bool {
        self.refill(rate_per_s, snapshot_bytes_per_s, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether a subscribe may cause snapshots now (the snapshot bucket is not in debt).
    pub fn snapshots_allowed(
        &mut self,
        rate_per_s: u32,
        snapshot_bytes_per_s: u64,
        now: Instant,
    ) -> bool {
        self.refill(rate_per_s, snapshot_bytes_per_s, now);
        self.snapshot_bytes > 0.0
    }

    /// Counts the bytes of the snapshots a subscribe queued.
    pub fn charge_snapshots(&mut self, bytes: usize) {
        self.snapshot_bytes -= bytes as f32;
    }
}

/// `error` replies sent in the last 10 s. Allocated at a client's first error: most
/// clients never get one.
#[derive(Debug, Default)]
pub struct ErrorWindow {
    // Boxed on purpose: 8 bytes in every client slot instead of a `VecDeque`'s 32.
    #[allow(clippy::box_collection)]
    sent: Option<Box<VecDeque<Instant>>>,
}

impl ErrorWindow {
    /// Notes an error at `now`; returns how many fall in the last 10 s, this one included.
    pub fn note(&mut self, now: Instant) -> usize {
        let sent = self.sent.get_or_insert_with(Box::default);
        while sent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= Duration::from_secs(10))
        {
            sent.pop_front();
        }
        sent.push_back(now);
        sent.len()
    }
}

/// What a client's connection task and the worker share: one allocation per client.
pub struct Conn {
    /// The socket (the task waits on its readiness; the worker writes it).
    pub stream: TcpStream,
    /// Wakes the connection task (socket blocked, closing).
    pub signal: LocalSignal,
    /// The TLS session of a `wss` connection (boxed: a plain one pays a pointer).
    pub tls: Option<Box<TlsConn>>,
}

impl Conn {
    /// A connection over `stream` with no pending wake-up.
    pub fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            signal: LocalSignal::new(),
            tls: None,
        }
    }

    /// A `wss` connection: reads and writes go through its TLS session.
    pub fn with_tls(stream: TcpStream, tls: TlsConn) -> Conn {
        Conn {
            tls: Some(Box::new(tls)),
            ..Conn::new(stream)
        }
    }
}

/// What a client's token granted: when it expires and which symbols it allows. Boxed
/// in [`Client::secure`], so a client of an open engine pays one pointer for it.
pub struct Secure {
    /// When the token's `exp` passes (worker clock): the connection is closed with 1008.
    pub expires: Instant,
    /// The token's `symbols`; `None` allows every symbol.
    pub scope: Option<Scope>,
}

/// Bytes one client takes in the worker's table (its slot), before any heap memory.
pub const CLIENT_SLOT_BYTES: usize = std::mem::size_of::<Option<Client>>();

/// Slots per chunk of the client table.
const CHUNK_SLOTS: usize = 64;

/// Every client of a worker, by slot.
///
/// Slots live in fixed chunks of [`CHUNK_SLOTS`] that are allocated as the table grows
/// and never move: a table that doubled a flat vector would copy every slot at each
/// growth and leave the old copies as allocator slack, up to a slot's size again per
/// client (measured in `engine/tests/conn_heap.rs`).
#[derive(Default)]
pub struct ClientTable {
    chunks: Vec<Vec<Option<Client>>>,
    generations: Vec<u32>,
    free: Vec<u32>,
    len: usize,
}

impl ClientTable {
    /// Puts a client in a free slot and returns its key.
    pub fn insert(&mut self, mut client: Client) -> ClientKey {
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                let index = self.generations.len();
                if index.is_multiple_of(CHUNK_SLOTS) {
                    self.chunks.push(Vec::with_capacity(CHUNK_SLOTS));
                }
                if let Some(chunk) = self.chunks.last_mut() {
                    chunk.push(None);
                }
                self.generations.push(0);
                index as u32
            }
        };
        let generation = self.generations[index as usize].wrapping_add(1);
        self.generations[index as usize] = generation;
        client.generation = generation;
        if let Some(slot) = self.slot_mut(index) {
            *slot = Some(client);
        }
        self.len += 1;
        ClientKey { index, generation }
    }

    fn slot(&self, index: u32) -> Option<&Option<Client>> {
        let i = index as usize;
        self.chunks.get(i / CHUNK_SLOTS)?.get(i % CHUNK_SLOTS)
    }

    fn slot_mut(&mut self, index: u32) -> Option<&mut Option<Client>> {
        let i = index as usize;
        self.chunks
            .get_mut(i / CHUNK_SLOTS)?
            .get_mut(i % CHUNK_SLOTS)
    }

    /// Takes the client out of its slot.
    pub fn remove(&mut self, key: ClientKey) -> Option<Client> {
        self.get(key)?;
        let client = self.slot_mut(key.index)?.take();
        self.free.push(key.index);
        self.len -= 1;
        client
    }

    /// The client at `key`, if that slot still holds it.
    pub fn get(&self, key: ClientKey) -> Option<&Client> {
        self.slot(key.index)?
            .as_ref()
            .filter(|c| c.generation == key.generation)
    }

    /// The client at `key`, mutably, if that slot still holds it.
    pub fn get_mut(&mut self, key: ClientKey) -> Option<&mut Client> {
        self.slot_mut(key.index)?
            .as_mut()
            .filter(|c| c.generation == key.generation)
    }

    /// The client at `key` if it still takes data (not closing).
    pub fn receiver(&mut self, key: ClientKey) -> Option<&mut Client> {
        self.get_mut(key).filter(|c| c.closing.is_none())
    }

    /// Slots in the table, taken or free: the range of [`ClientTable::key_at`].
    pub fn slots(&self) -> u32 {
        self.generations.len() as u32
    }

    /// The key of the client in slot `index`, if one is there.
    pub fn key_at(&self, index: u32) -> Option<ClientKey> {
        self.slot(index)?.as_ref().map(|c| ClientKey {
            index,
            generation: c.generation,
        })
    }

    /// Keys of every client.
    pub fn keys(&self) -> Vec<ClientKey> {
        self.chunks
            .iter()
            .flatten()
            .enumerate()
            .filter_map(|(i, c)| {
                c.as_ref().map(|c| ClientKey {
                    index: i as u32,
                    generation: c.generation,
                })
            })
            .collect()
    }

    /// Clients connected.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no client is connected.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn command_limiter_refills_at_the_rate_and_caps_at_one_second() {
        let t0 = Instant::now();
        let mut lim = CommandLimiter::new(4, 1000, t0);
        assert!((0..4).all(|_| lim.take(4, 1000, t0)));
        assert!(!lim.take(4, 1000, t0), "empty after the burst");
        assert!(
            lim.take(4, 1000, t0 + Duration::from_millis(250)),
            "one token per 250 ms"
        );
        assert!(!lim.take(4, 1000, t0 + Duration::from_millis(260)));
        let later = t0 + Duration::from_secs(60);
        assert_eq!(
            (0..10).filter(|_| lim.take(4, 1000, later)).count(),
            4,
            "capped"
        );
    }

    #[test]
    fn snapshot_bytes_go_into_debt_once_and_refuse_until_repaid() {
        let t0 = Instant::now();
        let mut lim = CommandLimiter::new(20, 1000, t0);
        assert!(lim.snapshots_allowed(20, 1000, t0));
        lim.charge_snapshots(3000);
        assert!(!lim.snapshots_allowed(20, 1000, t0), "in debt");
        let t1 = t0 + Duration::from_millis(1900);
        assert!(
            !lim.snapshots_allowed(20, 1000, t1),
            "still 100 bytes short"
        );
        let t2 = t0 + Duration::from_millis(2100);
        assert!(lim.snapshots_allowed(20, 1000, t2), "repaid");
    }

    #[test]
    fn slots_are_reused_across_chunks_and_old_keys_stay_dead() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut held = Vec::new();
        let mut clients = ClientTable::default();
        let mut keys = Vec::new();
        let now = Instant::now();
        for _ in 0..(CHUNK_SLOTS * 2 + 3) {
            let c = std::net::TcpStream::connect(addr).unwrap();
            c.set_nonblocking(true).unwrap();
            held.push(listener.accept().unwrap());
            let conn = Rc::new(Conn::new(TcpStream::from_std(c).unwrap()));
            let client = Client::new(conn, 1024, 10, 1 << 20, now);
            keys.push(clients.insert(client));
        }
        assert_eq!(clients.len(), CHUNK_SLOTS * 2 + 3);
        assert_eq!(clients.chunks.len(), 3);
        let gone = keys[CHUNK_SLOTS + 1];
        let removed = clients.remove(gone);
        assert!(removed.is_some());
        assert!(clients.get(gone).is_none(), "a removed key finds nothing");
        let reused = clients.insert(removed.unwrap());
        assert_eq!(reused.index, gone.index, "the free slot is reused");
        assert_ne!(reused, gone, "with a new generation");
        assert!(clients.get(gone).is_none(), "the old key stays dead");
        assert!(clients.get(reused).is_some());
        let mut all = clients.keys();
        all.sort();
        let mut expect: Vec<ClientKey> = keys.iter().copied().filter(|k| *k != gone).collect();
        expect.push(reused);
        expect.sort();
        assert_eq!(all, expect);
        assert_eq!(clients.chunks.len(), 3, "no chunk added for a reused slot");
    }

    #[test]
    fn error_window_forgets_after_ten_seconds() {
        let t0 = Instant::now();
        let mut w = ErrorWindow::default();
        assert_eq!(w.note(t0), 1);
        assert_eq!(w.note(t0 + Duration::from_secs(5)), 2);
        assert_eq!(w.note(t0 + Duration::from_secs(11)), 2);
    }
}
