//! The ladder's figure: p99 and the coalescing window in force against clients, one line
//! per server, as a self-contained SVG written by hand (no plotting dependency).
//!
//! Two panels side by side over the same clients axis (log scale, one tick per point of
//! the ladder at its main rate, [`super::LadderPlan::main_rate`]): client p99 on a log
//! scale (it spans 0.1 to 20 ms), and tickwire's window in force on a linear one (0 must
//! show as 0). Bun has no window, so it has no line in the second panel. Each point is
//! the median over rounds, all rounds (the tables say which are saturated); a point whose
//! generator core was saturated is drawn hollow. Pure: [`ladder_svg`] reads nothing but
//! the [`Results`], and [`write_ladder`] writes one file.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::verdict::saturated_cores;
use super::{median, Results, Run};

/// File name of the figure, in the bench output directory and beside the doc.
pub const LADDER_SVG: &str = "ladder.svg";

const WIDTH: f64 = 820.0;
const HEIGHT: f64 = 360.0;
/// Plot area of a panel: left, top, width, height (the right panel is shifted by
/// [`PANEL_STEP`]).
const AREA: (f64, f64, f64, f64) = (70.0, 40.0, 310.0, 230.0);
const PANEL_STEP: f64 = 410.0;

/// The window axis reaches at least this, µs, so that a window of 0 everywhere (no
/// coalescing: the goal at light load) lies on a readable scale.
const MIN_WINDOW_TOP_US: f64 = 1000.0;

/// One server's line: (clients, value, generator saturated) per point, by clients.
type Line = Vec<(f64, f64, bool)>;

fn colour(server: &str) -> &'static str {
    match server {
        "tickwire" => "#1f5fa8",
        super::NO_COALESCE => "#d9730d",
        "bun" => "#2e8b3a",
        _ => "#777777",
    }
}

/// Median of `f` per ladder point at `rate`, for `server`; points with no value left out.
fn line(res: &Results, server: &str, rate: u64, f: impl Fn(&Run) -> Option<f64>) -> Line {
    let mut clients: Vec<usize> = res
        .ladder
        .iter()
        .filter(|r| r.server == server && r.rate == rate)
        .map(|r| r.clients)
        .collect();
    clients.sort_unstable();
    clients.dedup();
    clients
        .into_iter()
        .filter_map(|c| {
            let runs: Vec<&Run> = res
                .ladder
                .iter()
                .filter(|r| r.server == server && r.rate == rate && r.clients == c)
                .collect();
            let v = median(runs.iter().filter_map(|r| f(r)).collect())?;
            let gen_bound = saturated_cores(runs.iter().copied()).generator();
            Some((c as f64, v, gen_bound))
        })
        .collect()
}

/// A value's position on an axis from `lo` to `hi` over `len` pixels (log or linear).
fn scale(v: f64, (lo, hi): (f64, f64), len: f64, log: bool) -> f64 {
    let (v, lo, hi) = if log {
        (v.max(lo).log10(), lo.log10(), hi.log10())
    } else {
        (v, lo, hi)
    };
    if hi <= lo {
        return len / 2.0;
    }
    (v - lo) / (hi - lo) * len
}

/// The decade range `[10^a, 10^b]` around every positive value.
fn decades(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::MAX, 0.0_f64);
    for v in values.filter(|v| *v > 0.0) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if hi == 0.0 {
        return (1.0, 10.0);
    }
    let lo = 10f64.powf(lo.log10().floor());
    let hi = 10f64.powf(hi.log10().ceil()).max(lo * 10.0);
    (lo, hi)
}

/// A round top for a linear axis from 0: 1, 2 or 5 × a power of ten, at least `max`.
fn nice_top(max: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|t| *t >= max)
        .unwrap_or(10.0 * p)
}

/// `20 ms`, `1.5 ms`, `300 µs`, `0`.
fn us_label(us: f64) -> String {
    if us == 0.0 {
        "0".into()
    } else if us >= 1000.0 {
        let ms = us / 1000.0;
        if ms.fract() == 0.0 {
            format!("{ms:.0} ms")
        } else {
            format!("{ms:.1} ms")
        }
    } else {
        format!("{us:.0} µs")
    }
}

/// A panel: frame, axes, ticks and one polyline per server.
struct Panel<'a> {
    x0: f64,
    title: &'a str,
    clients: &'a [f64],
    y: (f64, f64),
    y_log: bool,
    y_ticks: Vec<f64>,
}

impl Panel<'_> {
    fn px(&self, c: f64) -> f64 {
        let lo = self.clients.first().copied().unwrap_or(1.0);
        let hi = self.clients.last().copied().unwrap_or(1.0);
        self.x0 + scale(c, (lo, hi), AREA.2, true)
    }

    fn py(&self, v: f64) -> f64 {
        AREA.1 + AREA.3 - scale(v, self.y, AREA.3, self.y_log)
    }

    fn frame(&self, o: &mut String) {
        let (x, y, w, h) = (self.x0, AREA.1, AREA.2, AREA.3);
        let _ = writeln!(
            o,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-weight="bold">{}</text>"##,
            x + w / 2.0,
            y - 14.0,
            self.title
        );
        let _ = writeln!(
            o,
            r##"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="none" stroke="#444"/>"##
        );
        for &c in self.clients {
            let px = self.px(c);
            let _ = writeln!(
                o,
                r##"<line x1="{px:.1}" y1="{:.1}" x2="{px:.1}" y2="{:.1}" stroke="#ddd"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{c}</text>"##,
                y,
                y + h,
                y + h + 16.0
            );
        }
        for &t in &self.y_ticks {
            let py = self.py(t);
            let _ = writeln!(
                o,
                r##"<line x1="{x:.1}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                x + w,
                x - 6.0,
                py + 4.0,
                us_label(t)
            );
        }
        let _ = writeln!(
            o,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle">clients</text>"##,
            x + w / 2.0,
            y + h + 34.0
        );
    }

    fn line(&self, o: &mut String, server: &str, points: &Line) {
        if points.is_empty() {
            return;
        }
        let c = colour(server);
        // Dashed, so that where both tickwire lines lie on 0 each still shows.
        let dash = if server == super::NO_COALESCE {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let path: Vec<String> = points
            .iter()
            .map(|&(x, v, _)| format!("{:.1},{:.1}", self.px(x), self.py(v)))
            .collect();
        let _ = writeln!(
            o,
            r##"<polyline points="{}" fill="none" stroke="{c}" stroke-width="2"{dash}><title>{server}</title></polyline>"##,
            path.join(" ")
        );
        for &(x, v, gen_bound) in points {
            let fill = if gen_bound { "#fff" } else { c };
            let _ = writeln!(
                o,
                r##"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{fill}" stroke="{c}" stroke-width="2"><title>{server}, {x} clients: {}{}</title></circle>"##,
                self.px(x),
                self.py(v),
                us_label(v),
                if gen_bound { " (gen-bound)" } else { "" }
            );
        }
    }
}

/// The figure, or `None` when the ladder has no run at its main rate.
pub fn ladder_svg(res: &Results) -> Option<String> {
    let rate = res.plan.ladder.main_rate();
    let mut clients: Vec<usize> = res
        .ladder
        .iter()
        .filter(|r| r.rate == rate)
        .map(|r| r.clients)
        .collect();
    clients.sort_unstable();
    clients.dedup();
    if clients.is_empty() {
        return None;
    }
    let clients: Vec<f64> = clients.into_iter().map(|c| c as f64).collect();
    let servers: Vec<&str> = res
        .servers
        .iter()
        .map(String::as_str)
        .filter(|s| res.ladder.iter().any(|r| r.server == *s))
        .collect();
    let p99: Vec<(&str, Line)> = servers
        .iter()
        .map(|s| (*s, line(res, s, rate, |r| Some(r.fast_latency_us[2]))))
        .collect();
    let window: Vec<(&str, Line)> = servers
        .iter()
        .map(|s| (*s, line(res, s, rate, |r| r.coalesce_window_us)))
        .filter(|(_, l)| !l.is_empty())
        .collect();

    let p99_range = decades(p99.iter().flat_map(|(_, l)| l.iter().map(|p| p.1)));
    let mut p99_ticks = vec![p99_range.0];
    while let Some(&t) = p99_ticks.last().filter(|t| **t < p99_range.1) {
        p99_ticks.push(t * 10.0);
    }
    let w_top = nice_top(
        window
            .iter()
            .flat_map(|(_, l)| l.iter().map(|p| p.1))
            .fold(MIN_WINDOW_TOP_US, f64::max),
    );
    let left = Panel {
        x0: AREA.0,
        title: "client p99 (log scale)",
        clients: &clients,
        y: p99_range,
        y_log: true,
        y_ticks: p99_ticks,
    };
    let right = Panel {
        x0: AREA.0 + PANEL_STEP,
        title: "tickwire: coalescing window in force (median /stats)",
        clients: &clients,
        y: (0.0, w_top),
        y_log: false,
        y_ticks: (0..=4).map(|i| w_top * f64::from(i) / 4.0).collect(),
    };

    let mut o = String::new();
    let _ = writeln!(
        o,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"##
    );
    let _ = writeln!(
        o,
        r##"<title>Latency ladder: p99 and coalescing window against clients at {rate} trades/s</title>"##
    );
    let _ = writeln!(
        o,
        r##"<rect width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>"##
    );
    left.frame(&mut o);
    for (s, l) in &p99 {
        left.line(&mut o, s, l);
    }
    right.frame(&mut o);
    for (s, l) in &window {
        right.line(&mut o, s, l);
    }
    // Legend along the bottom, and under it what the points are.
    let mut x = AREA.0;
    let y = HEIGHT - 32.0;
    for s in &servers {
        let c = colour(s);
        let _ = writeln!(
            o,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{c}" stroke-width="2"/><text x="{:.1}" y="{y:.1}">{s}</text>"##,
            y - 4.0,
            x + 24.0,
            y - 4.0,
            x + 30.0
        );
        x += 40.0 + 7.5 * s.len() as f64;
    }
    let _ = writeln!(
        o,
        r##"<text x="{:.1}" y="{:.1}" fill="#555">{rate} trades/s on one symbol, medians over {} round(s); hollow markers: the generator's core was saturated</text>"##,
        AREA.0,
        HEIGHT - 10.0,
        res.rounds
    );
    let _ = writeln!(o, "</svg>");
    Some(o)
}

/// Writes [`LADDER_SVG`] into `dir` when there is a figure; returns its path.
pub fn write_ladder(res: &Results, dir: &Path) -> Result<Option<PathBuf>, String> {
    let Some(svg) = ladder_svg(res) else {
        return Ok(None);
    };
    let path = dir.join(LADDER_SVG);
    std::fs::write(&path, svg).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use super::super::{Scenario, NO_COALESCE};
    use super::*;

    fn run(server: &str, clients: usize, rate: u64, p99_us: f64, window: Option<f64>) -> Run {
        let mut r = Run {
            server: server.into(),
            round: 1,
            clients,
            rate,
            lossless: true,
            server_busy_steady: Some(0.3),
            generator_busy_steady: Some(if clients >= 20 { 0.95 } else { 0.3 }),
            coalesce_window_us: window,
            ..Run::default()
        };
        r.fast_latency_us[2] = p99_us;
        r
    }

    #[test]
    fn scales_and_axes() {
        assert_eq!(scale(100.0, (10.0, 1000.0), 200.0, true), 100.0);
        assert_eq!(scale(5.0, (0.0, 10.0), 200.0, false), 100.0);
        assert_eq!(scale(3.0, (3.0, 3.0), 200.0, true), 100.0);
        assert_eq!(decades([150.0, 19_000.0].into_iter()), (100.0, 100_000.0));
        assert_eq!(decades([0.0].into_iter()), (1.0, 10.0));
        assert_eq!(nice_top(16_000.0), 20_000.0);
        assert_eq!(nice_top(0.0), 1.0);
        assert_eq!(nice_top(300.0), 500.0);
        assert_eq!(us_label(20_000.0), "20 ms");
        assert_eq!(us_label(1500.0), "1.5 ms");
        assert_eq!(us_label(250.0), "250 µs");
    }

    #[test]
    fn figure_has_a_p99_line_per_server_and_a_window_line_per_tickwire() {
        let mut res = Results::empty(&["tickwire", NO_COALESCE, "bun"], &[Scenario::Ladder]);
        assert_eq!(ladder_svg(&res), None, "no ladder runs, no figure");
        for (c, w) in [(1, 0.0), (5, 0.0), (10, 200.0), (20, 16_000.0)] {
            res.ladder.extend([
                run("tickwire", c, 1000, 300.0 + c as f64 * 100.0, Some(w)),
                run(NO_COALESCE, c, 1000, 200.0, Some(0.0)),
                run("bun", c, 1000, 250.0, None),
            ]);
        }
        // The 20 × 100 point is not on the 1000 trades/s axis.
        res.ladder
            .push(run("tickwire", 20, 100, 99_999.0, Some(0.0)));
        let svg = ladder_svg(&res).unwrap();
        assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 5, "3 p99 + 2 windows");
        assert_eq!(
            svg.matches("stroke-dasharray").count(),
            2,
            "no-coalesce lines"
        );
        assert_eq!(svg.matches("<title>bun</title>").count(), 1);
        assert!(
            !svg.contains("100 ms"),
            "the 100 trades/s point is off this axis"
        );
        assert_eq!(
            svg.matches(r##"fill="#fff" stroke"##).count(),
            5,
            "20 clients gen-bound"
        );
        assert!(
            svg.contains("tickwire, 20 clients: 16 ms (gen-bound)"),
            "{svg}"
        );
        for tick in [">1<", ">5<", ">10<", ">20<", ">20 ms<", ">0<"] {
            assert!(svg.contains(tick), "{tick} missing");
        }
        // Windows of 0 everywhere: the axis still reads 0 to 1 ms.
        for r in &mut res.ladder {
            r.coalesce_window_us = r.coalesce_window_us.map(|_| 0.0);
        }
        let flat = ladder_svg(&res).unwrap();
        assert!(
            flat.contains(">1 ms<") && flat.contains(">500 µs<"),
            "{flat}"
        );
        res.ladder.iter_mut().for_each(|r| {
            if r.server == "tickwire" && r.rate == 1000 {
                r.coalesce_window_us = Some(if r.clients == 20 { 16_000.0 } else { 0.0 });
            }
        });
        let dir = std::env::temp_dir().join(format!("tickwire-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = write_ladder(&res, &dir).unwrap().unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            ladder_svg(&res).unwrap()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
