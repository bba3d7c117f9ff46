//! Scenarios S5 and S6: the criterion micro-benchmarks (`cargo bench -p tickwire-bench
//! --bench ring`, `--bench decode`), run from the repository with short measurement
//! times; their printed throughput lines are parsed into [`BenchLine`]s.

use std::path::Path;
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

/// One criterion benchmark's result.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BenchLine {
    /// `group/name/parameter`, as criterion prints it.
    pub name: String,
    /// Median time per iteration, ns.
    pub time_ns: f64,
    /// Median throughput, elements per second (criterion's middle estimate).
    pub elems_per_s: Option<f64>,
}

/// Runs `cargo bench -p tickwire-bench --bench NAME` in `repo` and parses its lines.
/// Quick: shorter warm-up and measurement.
pub fn run(repo: &Path, bench: &str, quick: bool) -> Result<Vec<BenchLine>, String> {
    let (warm, measure) = if quick { ("0.3", "0.5") } else { ("1", "2") };
    let out = Command::new("cargo")
        .current_dir(repo)
        .args(["bench", "-p", "tickwire-bench", "--bench", bench, "--"])
        .args(["--warm-up-time", warm, "--measurement-time", measure])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cargo bench --bench {bench}: {e}"))?;
    if !out.status.success() {
        return Err(format!("cargo bench --bench {bench}: {}", out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let lines = parse(&text);
    if lines.is_empty() {
        return Err(format!("cargo bench --bench {bench}: no result lines"));
    }
    Ok(lines)
}

/// Parses criterion's human output: a name (alone on its line or before `time:`), then
/// `time: [lo mid hi]` and optionally `thrpt: [lo mid hi]`.
pub fn parse(text: &str) -> Vec<BenchLine> {
    let mut out: Vec<BenchLine> = Vec::new();
    let mut last_name = String::new();
    for line in text.lines() {
        if let Some(at) = line.find("time:") {
            let before = line[..at].trim();
            let name = if before.is_empty() {
                last_name.clone()
            } else {
                before.to_owned()
            };
            if let Some(ns) = middle(&line[at..]).and_then(|(v, u)| scale_time(v, u)) {
                out.push(BenchLine {
                    name,
                    time_ns: ns,
                    elems_per_s: None,
                });
            }
        } else if let Some(at) = line.find("thrpt:") {
            if let (Some(last), Some(rate)) = (
                out.last_mut(),
                middle(&line[at..]).and_then(|(v, u)| scale_rate(v, u)),
            ) {
                last.elems_per_s = Some(rate);
            }
        } else {
            let t = line.trim();
            if !t.is_empty() && !t.contains(':') && !t.starts_with('(') && !t.contains(' ') {
                last_name = t.to_owned();
            }
        }
    }
    out
}

/// The middle value and unit of `[a u b u c u]`.
fn middle(s: &str) -> Option<(f64, &str)> {
    let inner = &s[s.find('[')? + 1..s.find(']')?];
    let parts: Vec<&str> = inner.split_whitespace().collect();
    Some((parts.get(2)?.parse().ok()?, parts.get(3)?))
}

fn scale_time(v: f64, unit: &str) -> Option<f64> {
    Some(
        v * match unit {
            "ps" => 1e-3,
            "ns" => 1.0,
            "µs" | "us" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            _ => return None,
        },
    )
}

fn scale_rate(v: f64, unit: &str) -> Option<f64> {
    Some(
        v * match unit {
            "elem/s" => 1.0,
            "Kelem/s" => 1e3,
            "Melem/s" => 1e6,
            "Gelem/s" => 1e9,
            _ => return None,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_layouts() {
        let text = "\
ring_handoff/tickwire_ring/1c
                        time:   [2.4000 ms 2.5000 ms 2.6000 ms]
                        thrpt:  [25.206 Melem/s 26.214 Melem/s 27.306 Melem/s]
  tickwire_ring/1c: consumers received 100.0% of items
decode/trade_scan/tickwire_scan
                        time:   [40.100 ns 41.000 ns 42.000 ns]
                        thrpt:  [23.8 Melem/s 24.390 Melem/s 24.9 Melem/s]
short                   time:   [1.0000 µs 1.5000 µs 2.0000 µs]
";
        let lines = parse(text);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(lines[0].name, "ring_handoff/tickwire_ring/1c");
        assert_eq!(lines[0].time_ns, 2.5e6);
        assert_eq!(lines[0].elems_per_s, Some(26.214e6));
        assert_eq!(lines[1].name, "decode/trade_scan/tickwire_scan");
        assert_eq!(lines[2].name, "short");
        assert_eq!(lines[2].time_ns, 1500.0);
        assert_eq!(lines[2].elems_per_s, None);
    }
}
