//! Peer "naive Rust": what a Rust developer would write first. tokio-tungstenite for the
//! WebSocket, one `tokio::sync::broadcast` channel for the trades, one task per client
//! that receives each trade from the channel and sends it (`ws.send(Message::Text)`).
//!
//! Serves the subset of docs/protocol.md that `tickwire bench compare` uses: `GET /ws`,
//! `subscribe` (answered `subscribed`), `ping`, and `trade` messages of `sim:BTC-USD`
//! with contiguous `seq` from 1 and `ingest_ts` in ns since the epoch, exactly `--rate`
//! per second (timer-driven: every 1 ms, the trades due are made). A client that lags
//! the channel by more than its capacity skips what it missed, as the channel reports
//! (`RecvError::Lagged`): seen by the load generator as a seq gap.
//!
//! naive-rust --port 9003 [--rate 1000]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::Message;

const SYMBOL: &str = "sim:BTC-USD";
/// Trades a client may fall behind before it lags (a common choice in examples).
const CHANNEL_CAPACITY: usize = 4096;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == &format!("--{name}"))
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port = arg("port", 9003) as u16;
    let rate = arg("rate", 1000);
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let (tx, _) = broadcast::channel::<Arc<str>>(CHANNEL_CAPACITY);
    tokio::spawn(produce(tx.clone(), rate));
    println!("naive-rust peer on 127.0.0.1:{port}, {rate} trades/s");
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    tokio::spawn(client(stream, tx.subscribe()));
                }
            }
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

/// Makes the trades due every millisecond and broadcasts each one.
async fn produce(tx: broadcast::Sender<Arc<str>>, rate: u64) {
    let start = Instant::now();
    let mut done: u64 = 0;
    let mut seq: u64 = 0;
    let mut rng: u32 = 1;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let due = (start.elapsed().as_nanos() * u128::from(rate) / 1_000_000_000) as u64;
        if due - done > rate {
            done = due; // more than a second behind: forget the backlog
        }
        while done < due {
            done += 1;
            seq += 1;
            rng ^= rng << 13;
            rng ^= rng >> 17;
            rng ^= rng << 5;
            let buy = rng & 1 == 1;
            let size = f64::from(1 + (rng >> 1) % 2500) / 10000.0;
            let ts = wall_ns();
            let text = format!(
                r#"{{"type":"trade","symbol":"{SYMBOL}","seq":{seq},"price":{},"size":{size},"side":"{}","trade_id":"{seq}","ts":{ts},"ingest_ts":{ts}}}"#,
                if buy { "67000" } else { "66999.9" },
                if buy { "buy" } else { "sell" },
            );
            // No receivers is not an error worth stopping for.
            let _ = tx.send(text.into());
        }
    }
}

/// One client: the handshake (only `/ws`), then commands and trades until either side ends.
async fn client(stream: TcpStream, mut rx: broadcast::Receiver<Arc<str>>) {
    let _ = stream.set_nodelay(true);
    let only_ws = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        if req.uri().path() == "/ws" {
            Ok(resp)
        } else {
            let mut e = ErrorResponse::new(None);
            *e.status_mut() = StatusCode::NOT_FOUND;
            Err(e)
        }
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, only_ws).await else {
        return;
    };
    let (mut sink, mut source) = ws.split();
    let mut subscribed = false;
    loop {
        tokio::select! {
            msg = source.next() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => continue,
                };
                let Ok(cmd) = serde_json::from_str::<serde_json::Value>(&text) else {
                    let _ = sink.send(Message::text(r#"{"type":"error","code":"bad_json","message":"not JSON"}"#)).await;
                    continue;
                };
                let reply = match cmd["op"].as_str() {
                    Some("subscribe") => {
                        subscribed = cmd["channels"].as_array().is_some_and(|c| c.iter().any(|c| c == "trades"))
                            && cmd["symbols"].as_array().is_some_and(|s| s.iter().any(|s| s == SYMBOL));
                        let mut r = serde_json::json!({"type": "subscribed", "channels": cmd["channels"], "symbols": cmd["symbols"]});
                        if cmd["id"].is_u64() { r["id"] = cmd["id"].clone(); }
                        if subscribed {
                            // Only trades from now on.
                            rx = rx.resubscribe();
                        }
                        r
                    }
                    Some("ping") => {
                        let mut r = serde_json::json!({"type": "pong", "ts": wall_ns()});
                        if cmd["id"].is_u64() { r["id"] = cmd["id"].clone(); }
                        r
                    }
                    _ => serde_json::json!({"type": "error", "code": "bad_request", "message": "unsupported op"}),
                };
                if sink.send(Message::text(reply.to_string())).await.is_err() {
                    return;
                }
            }
            trade = rx.recv(), if subscribed => {
                match trade {
                    Ok(text) => {
                        if sink.send(Message::text(&*text)).await.is_err() {
                            return;
                        }
                    }
                    // Lagged: skip what was missed and go on, as the channel suggests.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        }
    }
}
