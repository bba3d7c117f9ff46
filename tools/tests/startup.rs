//! The real binary's start-up, signals and logs: settings that must refuse to start, a
//! SIGHUP reload that stalls, and the log formats operators read.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test

mod common;

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{Binary, TIMEOUT};

/// `tickwire serve` on a free loopback port, one worker, a small sim feed, plus `args`.
fn serve(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = common::serve_command(100);
    cmd.args(args)
        .env_remove("TICKWIRE_AUTH_SECRET")
        .env_remove("NO_COLOR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Waits (with a deadline) for the child to exit.
fn wait_exit(child: &mut Child) -> Option<ExitStatus> {
    let deadline = Instant::now() + TIMEOUT;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn an_empty_auth_secret_variable_refuses_to_start() {
    let mut child = serve(&[], &[("TICKWIRE_AUTH_SECRET", "")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut child);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("tickwire started with an empty TICKWIRE_AUTH_SECRET");
    }
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.unwrap().success());
    assert!(
        err.contains("TICKWIRE_AUTH_SECRET is set but empty"),
        "the error names the variable: {err}"
    );
}

#[test]
fn a_sighup_reload_blocked_on_a_fifo_does_not_stop_sigterm() {
    let dir = std::env::temp_dir().join(format!("tickwire-startup-fifo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let mut server = Binary::start(serve(
        &[
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
        ],
        &[],
    ));
    server.wait_for_log("tickwire serving");
    // The certificate becomes a FIFO: reading it blocks until a writer writes and closes.
    std::fs::remove_file(&cert_path).unwrap();
    assert!(Command::new("mkfifo")
        .arg(&cert_path)
        .status()
        .unwrap()
        .success());
    server.signal("-HUP");
    // Opening the write end returns once the engine has opened the read end; holding it
    // open without writing keeps the engine's read blocked.
    let (tx, rx) = std::sync::mpsc::channel();
    let fifo = cert_path.clone();
    std::thread::spawn(move || {
        let _ = tx.send(std::fs::OpenOptions::new().write(true).open(fifo));
    });
    let writer = rx
        .recv_timeout(TIMEOUT)
        .expect("the reload opens the certificate")
        .unwrap();
    server.signal("-TERM");
    let status = wait_exit(server.child());
    drop(writer);
    let _ = std::fs::remove_dir_all(&dir);
    let status = status.expect("SIGTERM ends the process while a reload is blocked");
    assert!(status.success(), "{status}");
}

#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    let mut server = Binary::start(serve(&[], &[]));
    server.wait_for_log("tickwire serving");
    let log = server.log();
    assert!(log.len() > 2, "{log:?}");
    for line in &log {
        assert!(!line.contains('\x1b'), "an escape code in {line:?}");
    }
}

#[test]
fn log_format_json_writes_one_object_per_line() {
    let mut server = Binary::start(serve(&["--log-format", "json"], &[]));
    let serving = server.wait_for_log("tickwire serving");
    let log = server.log();
    for line in &log {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object: {line:?}: {e}"));
        assert!(v["level"].is_string() && v["message"].is_string(), "{v}");
    }
    let v: serde_json::Value = serde_json::from_str(&serving).unwrap();
    let addr: std::net::SocketAddr = v["addr"].as_str().unwrap().parse().unwrap();
    assert!(addr.ip().is_loopback(), "{v}");
}
