//! Fan-out: many clients on one symbol all receive it, and one client that never reads
//! does not hold anyone up.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_clients_all_receive_and_a_stalled_one_stops_nobody() {
    let cfg = tickwire_engine::config::EngineConfig {
        outbox_budget_bytes: 64 * 1024,
        send_buffer_bytes: Some(16 * 1024),
        ..test_config()
    };
    let engine = start(cfg, sim(1, 2000));
    let addr = engine.local_addr();

    // The stalled client: subscribes to everything, then never reads again.
    let stalled = {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.connect(&addr.into()).unwrap();
        let std: std::net::TcpStream = socket.into();
        std.set_nonblocking(true).unwrap();
        let stream = tokio::net::TcpStream::from_std(std).unwrap();
        let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/ws"), stream)
            .await
            .unwrap();
        use futures_util::SinkExt;
        ws.send(tokio_tungstenite::tungstenite::Message::text(
            json!({"op":"subscribe","channels":["ticker","trades","book"],"symbols":["sim:BTC-USD"],"depth":1000}).to_string(),
        ))
        .await
        .unwrap();
        ws
    };

    let mut tasks = Vec::new();
    for i in 0..300 {
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(addr).await;
            c.send(
                json!({"op":"subscribe","id":i,"channels":["trades"],"symbols":["sim:BTC-USD"]}),
            )
            .await;
            c.recv_until(|m| m["type"] == "subscribed").await;
            let mut last = None;
            let mut received = 0;
            while received < 50 {
                let m = c
                    .recv_until(|m| m["type"] == "trade" || m["type"] == "gap")
                    .await;
                assert_eq!(m["type"], "trade", "a reading client sees no gap: {m}");
                let seq = m["seq"].as_u64().unwrap();
                if let Some(prev) = last {
                    assert_eq!(seq, prev + 1);
                }
                last = Some(seq);
                received += 1;
            }
            received
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 50);
    }
    // Meanwhile the stalled client filled its budget and is being conflated, not waited for.
    let mut conflated = false;
    for _ in 0..500 {
        let (_, body) = http_get(addr, "/stats").await;
        let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
        let c = &stats["clients"];
        if c["conflated"].as_u64().unwrap() > 0 {
            let peak = c["peak_outbox_bytes"].as_u64().unwrap();
            assert!(
                peak > 32 * 1024 && peak <= 64 * 1024,
                "the outbox filled to its budget and no further: {stats}"
            );
            conflated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, body) = http_get(addr, "/stats").await;
    assert!(conflated, "the stalled client is conflated: {body}");
    drop(stalled);
    engine.shutdown();
}
