//! A mock exchange on a local port: WebSocket connections for a test (or a recording) to
//! drive, and REST snapshots from queues, in whatever venue format the bytes are.
//!
//! - **For tests**: [`MockExchange::start`] binds `127.0.0.1:0`; [`MockExchange::accept`]
//!   hands over each WebSocket connection the feed makes as a [`MockConn`] that the test
//!   reads (subscriptions), writes (venue frames), closes or drops. [`MockExchange::push_rest`]
//!   queues a REST answer for a symbol (the `symbol` query parameter); a request for which
//!   nothing is queued waits until something is, so the test decides when a snapshot
//!   arrives.
//! - **For demos** ([`serve_recording`]): each connection gets the next connection
//!   segment of a recording (from one `open` to its `close`), paced at the recorded pace
//!   times `speed`; REST answers are the recorded snapshots in order, the last one
//!   repeated.
//! - **Threads**: everything runs as tasks on the caller's tokio runtime; a connection's
//!   task ends when the connection does. Every failure on a connection closes that
//!   connection only.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};

pub use crate::record::Speed;
use crate::record::{Entry, Reader};
use crate::venue::conn::{self, ConnError, Msg, Role, WsStream};

/// REST answers by symbol.
#[derive(Debug, Default)]
struct Rest {
    inner: Mutex<RestInner>,
    pushed: Notify,
}

#[derive(Debug, Default)]
struct RestInner {
    queues: HashMap<String, VecDeque<String>>,
    /// Keep the last answer of a queue and repeat it (recordings).
    sticky: bool,
    /// Requests seen, by symbol.
    requests: HashMap<String, usize>,
}

impl Rest {
    fn lock(&self) -> std::sync::MutexGuard<'_, RestInner> {
        // A panicking test thread may poison the lock; the data is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn answer(&self, symbol: &str) -> String {
        {
            let mut inner = self.lock();
            *inner.requests.entry(symbol.to_owned()).or_default() += 1;
        }
        loop {
            let notified = self.pushed.notified();
            {
                let mut inner = self.lock();
                let sticky = inner.sticky;
                if let Some(q) = inner.queues.get_mut(symbol) {
                    if q.len() > 1 || (!sticky && !q.is_empty()) {
                        if let Some(body) = q.pop_front() {
                            return body;
                        }
                    } else if let Some(body) = q.front() {
                        return body.clone();
                    }
                }
            }
            notified.await;
        }
    }
}

/// A mock exchange (see the module's contract).
#[derive(Debug)]
pub struct MockExchange {
    addr: SocketAddr,
    conns: mpsc::UnboundedReceiver<MockConn>,
    rest: Arc<Rest>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockExchange {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockExchange {
    /// Listens on `127.0.0.1:0`.
    pub async fn start() -> std::io::Result<MockExchange> {
        MockExchange::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Listens on `addr`.
    pub async fn bind(addr: SocketAddr) -> std::io::Result<MockExchange> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (tx, conns) = mpsc::unbounded_channel();
        let rest = Arc::new(Rest::default());
        let task = tokio::spawn(accept_loop(listener, tx, rest.clone()));
        Ok(MockExchange {
            addr,
            conns,
            rest,
            task,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://` URL with `path` (`/stream`, `/v2`, `/`).
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// `http://` base URL for REST.
    pub fn rest_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next WebSocket connection (`None` when the listener failed).
    pub async fn accept(&mut self) -> Option<MockConn> {
        self.conns.recv().await
    }

    /// Queues a REST answer for `symbol`.
    pub fn push_rest(&self, symbol: &str, body: impl Into<String>) {
        self.rest
            .lock()
            .queues
            .entry(symbol.to_owned())
            .or_default()
            .push_back(body.into());
        self.rest.pushed.notify_waiters();
    }

    /// Keeps each symbol's last REST answer and repeats it.
    pub fn sticky_rest(&self) {
        self.rest.lock().sticky = true;
    }

    /// REST requests seen for `symbol` so far.
    pub fn rest_requests(&self, symbol: &str) -> usize {
        self.rest.lock().requests.get(symbol).copied().unwrap_or(0)
    }
}

async fn accept_loop(listener: TcpListener, tx: mpsc::UnboundedSender<MockConn>, rest: Arc<Rest>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let tx = tx.clone();
        let rest = rest.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_connection(stream, tx, rest).await {
                tracing::debug!(error = %e, "mock exchange: connection ended");
            }
        });
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    tx: mpsc::UnboundedSender<MockConn>,
    rest: Arc<Rest>,
) -> Result<(), ConnError> {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(4096);
    let head_len = conn::read_head(&mut stream, &mut buf).await?;
    let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
    let path = head
        .split("\r\n")
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .unwrap_or("/")
        .to_owned();
    let upgrade =
        conn::header(&head, "upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if upgrade {
        let Some(key) = conn::header(&head, "sec-websocket-key") else {
            stream
                .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                .await?;
            return Ok(());
        };
        let answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            conn::accept_key(key)
        );
        stream.write_all(answer.as_bytes()).await?;
        let mut ws = WsStream::new(stream, Role::Server, 64 << 20);
        ws.preload(&buf[head_len..]);
        let _ = tx.send(MockConn { ws, path });
        return Ok(());
    }
    let symbol = query_param(&path, "symbol").unwrap_or_else(|| path.clone());
    let body = rest.answer(&symbol).await;
    let answer = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(answer.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await?;
    Ok(())
}

fn query_param(path: &str, name: &str) -> Option<String> {
    let (_, query) = path.split_once('?')?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| v.replace("%2F", "/").replace("%2f", "/"))
    })
}

/// One WebSocket connection of the mock exchange, server side.
#[derive(Debug)]
pub struct MockConn {
    ws: WsStream<TcpStream>,
    path: String,
}

impl MockConn {
    /// The request path the client asked for.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The next text message from the client; pings are answered, other frames skipped.
    /// `None` once the connection is closed or broken.
    pub async fn recv_text(&mut self) -> Option<String> {
        loop {
            match self.ws.next().await {
                Ok(Msg::Text) => {
                    return Some(String::from_utf8_lossy(self.ws.payload()).into_owned())
                }
                Ok(Msg::Ping) => {
                    if self.ws.pong().await.is_err() {
                        return None;
                    }
                }
                Ok(Msg::Binary | Msg::Pong) => {}
                Ok(Msg::Close(_)) | Err(_) => return None,
            }
        }
    }

    /// Sends one text frame.
    pub async fn send(&mut self, text: &str) -> Result<(), ConnError> {
        self.ws.send_text(text.as_bytes()).await
    }

    /// Sends a WebSocket ping.
    pub async fn ping(&mut self) -> Result<(), ConnError> {
        self.ws.ping(b"mock").await
    }

    /// Sends a close frame and ends the connection.
    pub async fn close(mut self, code: u16) {
        let _ = self.ws.close(code).await;
        let _ = self.ws.get_mut().shutdown().await;
    }
}

/// A recording split into connection segments, and its REST answers by symbol.
type Segments = (Vec<Vec<(u64, String)>>, HashMap<String, Vec<String>>);

fn load_segments(path: &Path) -> Result<Segments, crate::record::RecordError> {
    let mut reader = Reader::open(path)?;
    let mut segments: Vec<Vec<(u64, String)>> = Vec::new();
    let mut rest: HashMap<String, Vec<String>> = HashMap::new();
    let mut open = false;
    while let Some((ts, entry)) = reader.next_entry()? {
        match entry {
            Entry::Open => {
                segments.push(Vec::new());
                open = true;
            }
            Entry::Close => open = false,
            Entry::Ws(text) => {
                if !open {
                    segments.push(Vec::new());
                    open = true;
                }
                if let Some(seg) = segments.last_mut() {
                    seg.push((ts, String::from_utf8_lossy(text).into_owned()));
                }
            }
            // A replacement connection's frames repeat the current one's.
            Entry::CandidateOpen | Entry::CandidateWs(_) | Entry::Switch => {}
            Entry::Rest { symbol, body } => rest
                .entry(symbol.to_owned())
                .or_default()
                .push(String::from_utf8_lossy(body).into_owned()),
        }
    }
    Ok((segments, rest))
}

/// Serves the recording at `path` on `exchange` until the task is dropped (see the
/// module's contract). Returns an error when the recording cannot be read.
pub async fn serve_recording(
    exchange: &mut MockExchange,
    path: &Path,
    speed: Speed,
) -> Result<(), crate::record::RecordError> {
    let (segments, rest) = load_segments(path)?;
    exchange.sticky_rest();
    for (symbol, bodies) in rest {
        for body in bodies {
            exchange.push_rest(&symbol, body);
        }
    }
    tracing::info!(
        connections = segments.len(),
        ws = %exchange.ws_url("/"),
        rest = %exchange.rest_url(),
        "mock exchange serving the recording"
    );
    let mut segments = segments.into_iter();
    while let Some(mut conn) = exchange.accept().await {
        let segment = segments.next();
        tokio::spawn(async move {
            // The client subscribes first; what it asks is not checked.
            let _ = tokio::time::timeout(Duration::from_secs(5), conn.recv_text()).await;
            let Some(segment) = segment else {
                tracing::info!("mock exchange: recording exhausted; holding the connection open");
                while conn.recv_text().await.is_some() {}
                return;
            };
            let start = tokio::time::Instant::now();
            let first = segment.first().map_or(0, |(ts, _)| *ts);
            for (ts, text) in segment {
                let at = start + speed.wait(ts.saturating_sub(first));
                tokio::time::sleep_until(at).await;
                if conn.send(&text).await.is_err() {
                    return;
                }
            }
            // End of the recorded connection: close it as the venue did.
            conn.close(1000).await;
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params() {
        assert_eq!(
            query_param("/api/v3/depth?symbol=BTCUSDT&limit=1000", "symbol").as_deref(),
            Some("BTCUSDT")
        );
        assert_eq!(query_param("/x", "symbol"), None);
    }
}
