//! The real binary's start-up, signals and logs: settings that must refuse to start, a
//! SIGHUP reload that stalls, and the log formats operators read.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test

mod common;

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::TIMEOUT;

/// `tickwire serve` on a free loopback port, one worker, a small sim feed, plus `args`.
fn serve(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tickwire"));
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--no-pin",
        "--sim-symbols",
        "2",
        "--sim-rate",
        "100",
    ])
    .args(args)
    .env_remove("TICKWIRE_AUTH_SECRET")
    .env_remove("NO_COLOR")
    .env("RUST_LOG", "info");
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
