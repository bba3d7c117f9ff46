//! tickwire's own view of its write path during a ladder run: worker 0's window in force
//! (`coalesce_window_us`) and measured busy share (`busy_share`, absent on engines that
//! predate it) from `/stats`, sampled every [`SAMPLE_EVERY`] while the load runs and
//! reduced to medians over the generator's steady window afterwards.
//!
//! Blocking and bounded: one short-lived loopback connection per sample, at most
//! [`FETCH_TIMEOUT`] for connect and for each read, on `compare`'s own thread (it is
//! otherwise asleep between its 100 ms CPU samples). A sample that fails is skipped, not
//! an error: the figures are then `None` and the run still counts. Each sample costs the
//! server one `/stats` document (tens of µs), four times a second: well under 1% of its
//! core.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

use super::{median, procfs};
use crate::load::http::body_of;

/// How often `/stats` is sampled during a run.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// Longest wait to connect, and for each read of the answer.
pub const FETCH_TIMEOUT: Duration = Duration::from_millis(300);

/// Worker 0's figures at one moment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// When it was taken, ns since the epoch (the generator's steady window's clock).
    pub wall_ns: u64,
    /// `coalesce_window_us`: the coalescing window in force, µs.
    pub window_us: Option<f64>,
    /// `busy_share`: the worker's measured busy share, 0..1.
    pub busy_share: Option<f64>,
}

/// Medians of the samples inside a window.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WorkerMedians {
    /// Median window in force, µs.
    pub window_us: Option<f64>,
    /// Median busy share.
    pub busy_share: Option<f64>,
    /// Samples inside the window.
    pub samples: usize,
}

/// Worker 0's figures from tickwire listening on 127.0.0.1:`port`, now; `None` when the
/// fetch failed or the answer has neither figure.
pub fn sample(port: u16) -> Option<Sample> {
    let wall_ns = procfs::wall_ns();
    let doc = fetch(port).ok()?;
    let s = from_stats(&doc, wall_ns);
    (s.window_us.is_some() || s.busy_share.is_some()).then_some(s)
}

/// Worker 0's figures in a `/stats` document.
pub fn from_stats(doc: &Value, wall_ns: u64) -> Sample {
    let w = &doc["workers"][0];
    Sample {
        wall_ns,
        window_us: w["coalesce_window_us"].as_f64(),
        busy_share: w["busy_share"].as_f64(),
    }
}

/// Medians of the samples taken from `from_ns` to `to_ns` (inclusive).
pub fn steady_medians(samples: &[Sample], from_ns: u64, to_ns: u64) -> WorkerMedians {
    let inside: Vec<&Sample> = samples
        .iter()
        .filter(|s| (from_ns..=to_ns).contains(&s.wall_ns))
        .collect();
    WorkerMedians {
        window_us: median(inside.iter().filter_map(|s| s.window_us).collect()),
        busy_share: median(inside.iter().filter_map(|s| s.busy_share).collect()),
        samples: inside.len(),
    }
}

/// `GET /stats` on 127.0.0.1:`port`, parsed.
fn fetch(port: u16) -> Result<Value, String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = TcpStream::connect_timeout(&addr, FETCH_TIMEOUT).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(FETCH_TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(FETCH_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let request =
        format!("GET /stats HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let body = body_of(&raw)?;
    serde_json::from_slice(&body).map_err(|e| format!("/stats: not JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_zero_figures_with_and_without_busy_share() {
        let new = serde_json::json!({"workers": [
            {"worker": 0, "coalesce_window_us": 1200, "busy_share": 0.71},
            {"worker": 1, "coalesce_window_us": 0, "busy_share": 0.1}]});
        let s = from_stats(&new, 7);
        assert_eq!(
            (s.wall_ns, s.window_us, s.busy_share),
            (7, Some(1200.0), Some(0.71))
        );
        // Engines before issue #22 have the window only.
        let old = serde_json::json!({"workers": [{"coalesce_window_us": 16000}]});
        assert_eq!(from_stats(&old, 0).busy_share, None);
        assert_eq!(from_stats(&old, 0).window_us, Some(16000.0));
        assert_eq!(from_stats(&serde_json::json!({}), 0).window_us, None);
    }

    #[test]
    fn medians_keep_to_the_steady_window() {
        let at = |wall_ns, w: f64, b: Option<f64>| Sample {
            wall_ns,
            window_us: Some(w),
            busy_share: b,
        };
        let samples = [
            at(5, 16_000.0, Some(1.0)), // the ramp: left out
            at(10, 0.0, Some(0.2)),
            at(20, 500.0, None),
            at(30, 300.0, Some(0.4)),
            at(41, 9_000.0, Some(0.9)), // the drain: left out
        ];
        let m = steady_medians(&samples, 10, 40);
        assert_eq!(m.samples, 3);
        assert_eq!(m.window_us, Some(300.0));
        assert!((m.busy_share.unwrap() - 0.3).abs() < 1e-9, "{m:?}");
        assert_eq!(steady_medians(&samples, 100, 200), WorkerMedians::default());
    }
}
