//! What one idle connection costs the worker, in bytes of its own structures: the
//! connection task's future and the client's slot. Guards against a field or an inline
//! future growing a connection unnoticed (the RSS per idle connection is measured by
//! `tickwire bench compare`'s scenario S3, latest figures in `docs/benchmarks.md`; the
//! heap a connection holds in all is `conn_heap.rs`).

mod common;

use std::rc::Rc;
use std::sync::Arc;

use tickwire_engine::config::EngineConfig;
use tickwire_engine::worker::session::{self, ReadScratch};

#[test]
fn a_connection_task_and_its_client_slot_stay_small() {
    common::runtime().block_on(async {
        let h = common::harness(2, 4, 1024);
        let core = Rc::new(std::cell::RefCell::new(h.core));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let stream = tokio::net::TcpStream::from_std(server).unwrap();
        let future = session::run(
            core,
            Arc::new(EngineConfig::default()),
            Rc::new(ReadScratch::new()),
            stream,
            Vec::new(),
            None,
            None,
            session::Endpoint::Protocol(tickwire_engine::protocol::version::Version::V1),
        );
        let task = std::mem::size_of_val(&future);
        let slot = tickwire_engine::worker::clients::CLIENT_SLOT_BYTES;
        eprintln!("connection future {task} B, client slot {slot} B");
        // tokio's task cell is the future plus ~104 bytes, in steps of 128: at most 296
        // here leaves room for the upgrade wrapper (its permit and context) within 512.
        assert!(task <= 296, "connection future: {task} bytes");
        assert!(slot <= 280, "client slot: {slot} bytes");
    });
}
