//! Setup shared by the engine's harness tests: one symbol, its feed's publisher and ring
//! consumer, and a worker core, on a current-thread runtime like a worker's.
#![allow(dead_code)]

use std::sync::Arc;

use tickwire_engine::config::EngineConfig;
use tickwire_engine::feed::Publisher;
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
    let core = Core::new(Arc::new(EngineConfig::default()), registry, stats.clone());
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
        let stream = core.stream(key).unwrap();
        stream.writable().await.unwrap();
    }
}
