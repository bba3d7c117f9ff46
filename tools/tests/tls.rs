//! TLS on the engine's port: `wss` clients get data and `https` answers, through a test
//! CA made here with rcgen (nothing committed, nothing that expires between runs); and
//! SIGHUP to the real binary swaps the certificate for new handshakes while a connection
//! opened before keeps receiving data, and a bad file keeps the old certificate.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{test_config, Binary, TIMEOUT};
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::Message;

/// A test CA and the leaf certificates it signs for `localhost` and 127.0.0.1.
struct TestCa {
    ca_der: CertificateDer<'static>,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

/// A leaf certificate: its PEM files' contents and its DER (to recognise it).
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl TestCa {
    fn new() -> TestCa {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "tickwire test CA");
        let ca = params.self_signed(&key).unwrap();
        TestCa {
            ca_der: ca.der().clone(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    fn leaf(&self, name: &str) -> Leaf {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    fn connector(&self) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        // Every connection a full handshake: a resumed session shows no certificate (the
        // one it reports is the first session's), which is what the reload test looks at.
        cfg.resumption = rustls::client::Resumption::disabled();
        tokio_rustls::TlsConnector::from(Arc::new(cfg))
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tickwire-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_leaf(leaf: &Leaf, dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, &leaf.cert_pem).unwrap();
    std::fs::write(&key, &leaf.key_pem).unwrap();
    (cert, key)
}

/// A TLS connection to the engine, verified against the test CA; returns it and the
/// leaf certificate the server presented.
async fn tls_connect(
    connector: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
) -> (TlsStream<TcpStream>, CertificateDer<'static>) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = tokio::time::timeout(TIMEOUT, connector.connect(name, tcp))
        .await
        .expect("TLS handshake in time")
        .expect("TLS handshake");
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    (tls, leaf)
}

/// `GET path` over https; returns (status, body).
async fn https_get(
    connector: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
    path: &str,
) -> (u16, String) {
    let (mut s, _) = tls_connect(connector, addr).await;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    // The server ends with close_notify; a reset instead would be an error here.
    tokio::time::timeout(TIMEOUT, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

type Wss = tokio_tungstenite::WebSocketStream<TlsStream<TcpStream>>;

async fn wss_connect(connector: &tokio_rustls::TlsConnector, addr: SocketAddr) -> Wss {
    let tcp = TcpStream::connect(addr).await.unwrap();
    wss_over(connector, addr, tcp).await
}

async fn wss_over(connector: &tokio_rustls::TlsConnector, addr: SocketAddr, tcp: TcpStream) -> Wss {
    let name = ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.expect("TLS handshake");
    let (ws, _) =
        tokio_tungstenite::client_async(format!("wss://localhost:{}/ws", addr.port()), tls)
            .await
            .expect("wss upgrade");
    ws
}

async fn send(ws: &mut Wss, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

async fn recv(ws: &mut Wss) -> Value {
    loop {
        let msg = tokio::time::timeout(TIMEOUT, ws.next())
            .await
            .expect("message within timeout")
            .expect("stream open")
            .expect("no websocket error");
        match msg {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Close(c) => panic!("closed by server: {c:?}"),
            _ => {}
        }
    }
}

/// Receives `n` trades of one symbol and checks that their seqs follow each other
/// (a gap message may stand between; TLS must neither lose nor reorder frames).
async fn trades_in_order(ws: &mut Wss, n: usize) -> u64 {
    let mut last: Option<u64> = None;
    let mut got = 0;
    while got < n {
        let m = recv(ws).await;
        match m["type"].as_str() {
            Some("trade") => {
                let seq = m["seq"].as_u64().unwrap();
                if let Some(prev) = last {
                    assert_eq!(seq, prev + 1, "trade seqs are contiguous: {m}");
                }
                last = Some(seq);
                got += 1;
            }
            Some("gap") => last = m["to_seq"].as_u64(),
            _ => {}
        }
    }
    last.unwrap()
}

/// Plain HTTP to `addr`: the status, or 0 when no HTTP answer came (closed, reset).
async fn plain_http_status(addr: SocketAddr) -> u16 {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(TIMEOUT, s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wss_client_subscribes_and_gets_data_and_https_serves_health() {
    let ca = TestCa::new();
    let leaf = ca.leaf("tickwire test server");
    let dir = temp_dir("tls-basic");
    let (cert, key) = write_leaf(&leaf, &dir);
    let cfg = tickwire_engine::config::EngineConfig {
        tls_cert: Some(cert),
        tls_key: Some(key),
        ..test_config()
    };
    let engine = common::start(cfg, common::sim(4, 2000));
    let addr = engine.local_addr();
    let connector = ca.connector();
    {
        let (status, body) = https_get(&connector, addr, "/health").await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = https_get(&connector, addr, "/symbols").await;
        assert_eq!(status, 200);
        assert!(body.contains("sim:BTC-USD"), "{body}");

        // Plain HTTP to a TLS port gets no HTTP answer.
        assert_eq!(
            plain_http_status(addr).await,
            0,
            "a TLS port answers no plain HTTP"
        );

        let mut ws = wss_connect(&connector, addr).await;
        send(
            &mut ws,
            json!({"op":"subscribe","id":1,"channels":["ticker","trades","book"],"symbols":["sim:BTC-USD"],"depth":50}),
        )
        .await;
        let first = recv(&mut ws).await;
        assert_eq!(first["type"], "subscribed", "{first}");
        assert_eq!(first["id"], 1);
        // Enough data for many TLS records and writes.
        trades_in_order(&mut ws, 300).await;
        send(&mut ws, json!({"op":"ping","id":9})).await;
        loop {
            let m = recv(&mut ws).await;
            if m["type"] == "pong" {
                assert_eq!(m["id"], 9);
                break;
            }
        }
        ws.close(None).await.unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wss_client_that_stops_reading_gets_gaps_then_exact_data_again() {
    let ca = TestCa::new();
    let dir = temp_dir("tls-slow");
    let (cert, key) = write_leaf(&ca.leaf("tickwire test server"), &dir);
    let cfg = tickwire_engine::config::EngineConfig {
        tls_cert: Some(cert),
        tls_key: Some(key),
        workers: 1,
        ..test_config()
    };
    let engine = common::start(cfg, common::sim(1, 5000));
    let addr = engine.local_addr();
    let connector = ca.connector();
    // A socket that holds little: the server's writes block soon.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    let std_stream: std::net::TcpStream = socket.into();
    std_stream.set_nonblocking(true).unwrap();
    let tcp = TcpStream::from_std(std_stream).unwrap();
    let mut ws = wss_over(&connector, addr, tcp).await;
    send(
        &mut ws,
        json!({"op":"subscribe","channels":["trades","book"],"symbols":["sim:BTC-USD"],"depth":1000}),
    )
    .await;
    // Not reading: wait until the engine has had to hold data back for this client (its
    // socket and TLS buffer full, its outbox at the budget).
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (status, body) = https_get(&connector, addr, "/stats").await;
        assert_eq!(status, 200);
        let stats: Value = serde_json::from_str(&body).unwrap();
        if stats["clients"]["conflated"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nothing held back: {}",
            stats["clients"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Reading again: every trade, or a gap naming what was skipped, in order.
    let mut gaps = 0;
    let mut last: Option<u64> = None;
    let mut trades = 0;
    while trades < 500 {
        let m = recv(&mut ws).await;
        match m["type"].as_str() {
            Some("trade") => {
                let seq = m["seq"].as_u64().unwrap();
                if let Some(prev) = last {
                    assert_eq!(seq, prev + 1, "after {prev}: {m}");
                }
                last = Some(seq);
                trades += 1;
            }
            Some("gap") => {
                if let Some(prev) = last {
                    assert_eq!(m["from_seq"].as_u64(), Some(prev + 1), "{m}");
                }
                last = m["to_seq"].as_u64();
                gaps += 1;
            }
            _ => {}
        }
    }
    assert!(gaps > 0, "the stalled client was told what it missed");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The real binary serving TLS with `cert` and `key`, and its address.
fn start_tls(cert: &Path, key: &Path) -> (Binary, SocketAddr) {
    let mut cmd = common::serve_command(500);
    cmd.arg("--tls-cert")
        .arg(cert)
        .arg("--tls-key")
        .arg(key)
        .env("NO_COLOR", "1");
    let mut server = Binary::start(cmd);
    let addr = server.serving_addr();
    (server, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_gives_new_handshakes_the_new_certificate_and_open_connections_go_on() {
    let ca = TestCa::new();
    let (old, new) = (ca.leaf("tickwire old"), ca.leaf("tickwire new"));
    let dir = temp_dir("tls-reload");
    let (cert, key) = write_leaf(&old, &dir);
    let (mut server, addr) = start_tls(&cert, &key);
    let connector = ca.connector();
    {
        let (_, presented) = tls_connect(&connector, addr).await;
        assert_eq!(presented, old.der);
        let mut ws = wss_connect(&connector, addr).await;
        send(
            &mut ws,
            json!({"op":"subscribe","channels":["trades"],"symbols":["sim:BTC-USD"]}),
        )
        .await;
        assert_eq!(recv(&mut ws).await["type"], "subscribed");
        let before = trades_in_order(&mut ws, 20).await;

        write_leaf(&new, &dir);
        server.signal("-HUP");
        server.wait_for_log("TLS certificate reloaded");
        let (_, presented) = tls_connect(&connector, addr).await;
        assert_eq!(
            presented, new.der,
            "a new handshake gets the new certificate"
        );
        let (status, _) = https_get(&connector, addr, "/health").await;
        assert_eq!(status, 200);
        let after = trades_in_order(&mut ws, 20).await;
        assert!(after > before, "the connection opened before goes on");

        // A broken file: the reload fails, says so, and the certificate in force stays.
        std::fs::write(&cert, "not a certificate\n").unwrap();
        server.signal("-HUP");
        server.wait_for_log("TLS reload failed");
        let (_, presented) = tls_connect(&connector, addr).await;
        assert_eq!(presented, new.der, "a failed reload keeps the certificate");
        trades_in_order(&mut ws, 5).await;
    }
    server.signal("-TERM");
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = server.child().try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "tickwire did not exit on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    let _ = std::fs::remove_dir_all(&dir);
}
