//! Setup shared by the engine's harness tests: one symbol, its feed's publisher and ring
//! consumer, and a worker core, on a current-thread runtime like a worker's.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test
#![allow(dead_code)]

use std::io::Read;
use std::sync::Arc;

use tickwire_engine::config::EngineConfig;
use tickwire_engine::feed::Publisher;
use tickwire_engine::protocol::command::{Channel, ChannelSet};
use tickwire_engine::ring::{self, Consumer};
use tickwire_engine::stats::WorkerStats;
use tickwire_engine::symbol::{SymbolId, SymbolRegistryBuilder};
use tickwire_engine::tick::Tick;
use tickwire_engine::worker::core::{ClientKey, Core};

/// What a harness test drives.
pub struct Harness {
    pub symbol: SymbolId,
    pub publisher: Publisher,
    pub consumer: Consumer<Tick>,
    pub core: Core,
    pub stats: Arc<WorkerStats>,
}

/// `sim:BTC-USD` at the given scales, a ring of `ring_capacity`, a core with defaults.
pub fn harness(price_scale: u8, size_scale: u8, ring_capacity: usize) -> Harness {
    harness_with(
        price_scale,
        size_scale,
        ring_capacity,
        EngineConfig::default(),
    )
}

/// [`harness`] with a core on `cfg`.
pub fn harness_with(
    price_scale: u8,
    size_scale: u8,
    ring_capacity: usize,
    cfg: EngineConfig,
) -> Harness {
    let mut b = SymbolRegistryBuilder::new();
    let symbol = b.add("sim:BTC-USD", price_scale, size_scale).unwrap();
    let registry = Arc::new(b.build());
    let publisher = Publisher::new(
        "sim",
        vec![symbol],
        registry.len(),
        ring::ring(ring_capacity).0,
    );
    let consumer = publisher.subscribe();
    let stats = Arc::new(WorkerStats::default());
    let core = Core::new(Arc::new(cfg), registry, stats.clone());
    Harness {
        symbol,
        publisher,
        consumer,
        core,
        stats,
    }
}

/// A current-thread runtime with I/O, as a worker has.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap()
}

/// What a client's writer task does: flush, waiting for writability, until all is written.
pub async fn write_all(core: &mut Core, key: ClientKey) {
    while !core.flush_client(key).unwrap() {
        let conn = core.conn(key).unwrap();
        conn.stream.writable().await.unwrap();
    }
}

/// A loopback pair: the server side for the core, the client side for the test (which
/// reads it only when it says so). `rcvbuf` shrinks the client's receive buffer.
pub fn pair(rcvbuf: Option<usize>) -> (tokio::net::TcpStream, std::net::TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    if let Some(bytes) = rcvbuf {
        socket.set_recv_buffer_size(bytes).unwrap();
    }
    socket
        .connect(&listener.local_addr().unwrap().into())
        .unwrap();
    let (server, _) = listener.accept().unwrap();
    if rcvbuf.is_some() {
        socket2::SockRef::from(&server)
            .set_send_buffer_size(4096)
            .unwrap();
    }
    server.set_nonblocking(true).unwrap();
    // As the worker sets on every accepted socket: without it Nagle's algorithm holds a
    // small write while an earlier one waits for its (delayed) ACK, and a test reading
    // "what the pass wrote" would find nothing.
    server.set_nodelay(true).unwrap();
    let client: std::net::TcpStream = socket.into();
    client.set_nonblocking(true).unwrap();
    (tokio::net::TcpStream::from_std(server).unwrap(), client)
}

/// Every complete server frame readable now: (opcode, payload).
pub fn frames(client: &mut std::net::TcpStream) -> Vec<(u8, Vec<u8>)> {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match client.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    split_frames(&bytes).0
}

/// The complete server frames at the start of `bytes` as (opcode, payload), and how many
/// bytes they took (a frame cut short is left for the next read).
pub fn split_frames(bytes: &[u8]) -> (Vec<(u8, Vec<u8>)>, usize) {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 2 <= bytes.len() {
        let opcode = bytes[i] & 0x0f;
        let (len, header) = match bytes[i + 1] & 0x7f {
            126 if i + 4 <= bytes.len() => {
                (u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]) as usize, 4)
            }
            127 if i + 10 <= bytes.len() => (
                u64::from_be_bytes(bytes[i + 2..i + 10].try_into().unwrap()) as usize,
                10,
            ),
            126 | 127 => break,
            n => (n as usize, 2),
        };
        if i + header + len > bytes.len() {
            break;
        }
        out.push((opcode, bytes[i + header..i + header + len].to_vec()));
        i += header + len;
    }
    (out, i)
}

/// What the client's connection task does: write what is pending, waiting for the
/// socket (tokio learns a new socket is writable only from its reactor).
pub async fn settle(core: &mut Core, keys: &[ClientKey]) {
    for &key in keys {
        if core.conn(key).is_some() {
            write_all(core, key).await;
        }
    }
}

/// Subscribes the client to `sim:BTC-USD`'s trades (the harness's symbol).
pub fn subscribe_trades(core: &mut Core, key: ClientKey) {
    core.subscribe(
        key,
        None,
        ChannelSet::from_iter([Channel::Trades]),
        &["sim:BTC-USD".to_owned()],
        10,
        0,
    )
    .unwrap();
}
