//! `tickwire report`: a self-contained HTML latency report, with the `.hgrm` files next
//! to it, from a running engine or from saved histogram files, optionally comparing two
//! runs on one plot.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tickwire_engine::hgrm::{self, Row};
use tickwire_engine::latency::Stage;

use crate::fetch;

/// One run: named series of percentile rows (values in µs), plus what is known about it.
pub struct Run {
    /// Label in the legend.
    pub label: String,
    /// (series name, rows), in order.
    pub series: Vec<(String, Vec<Row>)>,
    /// The engine's `/stats` at the time, when known.
    pub stats: Option<Value>,
}

/// Fetches every stage's histogram and `/stats` from a running engine, saving the
/// `.hgrm` files and `stats.json` into `out`.
pub fn from_url(url: &str, out: &Path) -> Result<Run> {
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let stats_text = fetch::get(url, "/stats")?;
    fs::write(out.join("stats.json"), &stats_text)?;
    let stats: Value = serde_json::from_str(&stats_text).context("/stats is not JSON")?;
    let mut series = Vec::new();
    for stage in Stage::ALL {
        let text = fetch::get(url, &format!("/latency/{}.hgrm", stage.name()))?;
        fs::write(out.join(format!("{}.hgrm", stage.name())), &text)?;
        series.push((stage.name().to_owned(), hgrm::parse(&text)?.rows));
    }
    Ok(Run {
        label: url.to_owned(),
        series,
        stats: Some(stats),
    })
}

/// Reads every `*.hgrm` in `dir` (and `stats.json` when present).
pub fn from_dir(dir: &Path) -> Result<Run> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "hgrm"))
        .collect();
    if files.is_empty() {
        bail!("{} holds no .hgrm files", dir.display());
    }
    // Engine stages in data-path order first, then anything else by name.
    let rank = |p: &PathBuf| {
        let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        Stage::ALL
            .iter()
            .position(|s| s.name() == stem)
            .unwrap_or(usize::MAX)
    };
    files.sort_by(|a, b| rank(a).cmp(&rank(b)).then(a.cmp(b)));
    let mut series = Vec::new();
    for f in files {
        let text = fs::read_to_string(&f)?;
        let rows = hgrm::parse(&text)
            .with_context(|| format!("{}", f.display()))?
            .rows;
        let name = f
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("?")
            .to_owned();
        series.push((name, rows));
    }
    let stats = fs::read_to_string(dir.join("stats.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    Ok(Run {
        label: dir.display().to_string(),
        series,
        stats,
    })
}

fn value_at(rows: &[Row], q: f64) -> Option<f64> {
    rows.iter()
        .find(|r| r.percentile >= q)
        .or(rows.last())
        .map(|r| r.value)
}

/// x position on the "nines" axis: log10(1 / (1 - q)), capped at six nines.
fn nines(q: f64) -> f64 {
    (1.0 / (1.0 - q).max(1e-6)).log10()
}

const COLORS: [&str; 2] = ["#2563eb", "#dc2626"];

fn svg_plot(name: &str, runs: &[(&str, &[Row])]) -> String {
    let (w, h, left, bottom, top, right) = (640.0, 300.0, 64.0, 40.0, 24.0, 36.0);
    let max_x = 6.0;
    let max_y = runs
        .iter()
        .flat_map(|(_, rows)| rows.iter().map(|r| r.value))
        .fold(0.0f64, f64::max)
        .max(1e-3)
        * 1.05;
    let px = |x: f64| left + x / max_x * (w - left - right);
    let py = |y: f64| h - bottom - y / max_y * (h - bottom - top);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" role="img" aria-label="{name} latency by percentile"><rect width="100%" height="100%" fill="white"/>"#
    );
    for (i, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"]
        .iter()
        .enumerate()
    {
        let x = px(i as f64);
        let _ = write!(
            s,
            r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" font-size="11" text-anchor="middle">{label}</text>"##,
            h - bottom,
            h - bottom + 16.0
        );
    }
    for i in 0..=4 {
        let v = max_y * f64::from(i) / 4.0;
        let y = py(v);
        let _ = write!(
            s,
            r##"<line x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{v:.1}</text>"##,
            w - right,
            left - 6.0,
            y + 4.0
        );
    }
    let _ = write!(
        s,
        r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">percentile</text><text x="14" y="{:.1}" font-size="12" transform="rotate(-90 14 {:.1})" text-anchor="middle">latency (µs)</text>"#,
        (left + w - right) / 2.0,
        h - 6.0,
        (top + h - bottom) / 2.0,
        (top + h - bottom) / 2.0
    );
    for (i, (label, rows)) in runs.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<String> = rows
            .iter()
            .filter(|r| r.percentile < 1.0)
            .map(|r| {
                format!(
                    "{:.1},{:.1}",
                    px(nines(r.percentile).min(max_x)),
                    py(r.value)
                )
            })
            .collect();
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/><text x="{:.1}" y="{:.1}" font-size="12" fill="{color}">{}</text>"#,
            points.join(" "),
            left + 8.0,
            top + 14.0 + 14.0 * i as f64,
            escape(label)
        );
    }
    s.push_str("</svg>");
    s
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn machine() -> Vec<(String, String)> {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':').map(|(_, v)| v.trim().to_owned()))
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".into(), |k| k.trim().to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    vec![
        ("CPU".into(), cpu),
        ("cores".into(), cores.to_string()),
        ("kernel".into(), kernel),
        ("tickwire".into(), env!("CARGO_PKG_VERSION").into()),
    ]
}

/// Writes `report.html` into `out` for `run`, with `compare` overlaid when given.
pub fn write_html(run: &Run, compare: Option<&Run>, out: &Path) -> Result<PathBuf> {
    let mut html = String::new();
    let _ = write!(
        html,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>tickwire latency report</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:980px}}table{{border-collapse:collapse;margin:.5rem 0 1.5rem}}th,td{{padding:.2rem .7rem;text-align:right;border-bottom:1px solid #ddd}}th:first-child,td:first-child{{text-align:left}}svg{{max-width:100%;height:auto;border:1px solid #ddd}}code{{background:#f3f3f3;padding:0 .2rem}}</style></head><body>
<h1>tickwire latency report</h1><p>Run: <code>{}</code>{}</p>"#,
        escape(&run.label),
        compare.map_or(String::new(), |c| format!(
            " compared with <code>{}</code>",
            escape(&c.label)
        ))
    );
    html.push_str("<h2>Machine</h2><table>");
    for (k, v) in machine() {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td></tr>",
            escape(&k),
            escape(&v)
        );
    }
    html.push_str("</table>");
    if let Some(cfg) = run.stats.as_ref().and_then(|s| s.get("config")) {
        html.push_str("<h2>Configuration</h2><table>");
        for (k, v) in cfg.as_object().into_iter().flatten() {
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td></tr>",
                escape(k),
                escape(&v.to_string())
            );
        }
        html.push_str("</table>");
    }
    html.push_str("<p>Values in microseconds. The x axis is in \"nines\": each tick is ten times closer to 100%. Each plot has its .hgrm file next to this page.</p>");
    for (name, rows) in &run.series {
        let other = compare.and_then(|c| {
            c.series
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, r)| r.as_slice())
        });
        let _ = write!(html, "<h2 id=\"{0}\">{0}</h2>", escape(name));
        let mut runs: Vec<(&str, &[Row])> = vec![(run.label.as_str(), rows.as_slice())];
        if let (Some(c), Some(o)) = (compare, other) {
            runs.push((c.label.as_str(), o));
        }
        html.push_str(&svg_plot(name, &runs));
        html.push_str("<table><tr><th>run</th><th>count</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>p99.99</th><th>max</th></tr>");
        for (label, rows) in &runs {
            let count = rows.last().map_or(0, |r| r.total_count);
            let cell =
                |q: f64| value_at(rows, q).map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{count}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(label),
                cell(0.5),
                cell(0.9),
                cell(0.99),
                cell(0.999),
                cell(0.9999),
                cell(1.0)
            );
        }
        html.push_str("</table>");
    }
    html.push_str("</body></html>\n");
    fs::create_dir_all(out)?;
    let path = out.join("report.html");
    fs::write(&path, html).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}
