//! The targets of the comparison and their verdicts, from medians over rounds.
//!
//! The rule every figure verdict follows: **only runs where no core was saturated count**
//! (neither the server's nor the load generator's core ≥ [`SATURATED`] busy over the
//! steady part of the run). A run with the generator saturated measures the generator; a
//! run with a saturated server measures its queue. Medians are taken over the rounds that
//! count; where none is left for a side, the verdict is *not decided* and says "no
//! unsaturated point" and why. Two verdicts do not follow the rule because no CPU figure
//! enters them: the S3 memory targets and "no fast client sees a gap" (a gap is one
//! whatever the load). The highest lossless rate is where some core gives out by nature:
//! its verdict names whose core it was and is not decided where the generator's was.
//!
//! Pure functions of [`Results`]: nothing here measures, allocates beyond the text, or
//! fails; missing data gives a *not measured* or *not decided* verdict.

use std::fmt;

use super::{median, LadderPoint, Results, Run, S1Group, Scenario, FLOOR, SATURATED};

/// How a target came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The figure meets the target.
    Met,
    /// It does not.
    Missed,
    /// The runs cannot say (saturated, not run, the peer lossy or absent).
    Undecided,
}

/// One target's verdict.
#[derive(Clone, Debug)]
pub struct Verdict {
    /// The target, e.g. "S1 deliveries per server CPU-second ≥ 2× Bun's at ...".
    pub target: String,
    /// Met, missed or not decided.
    pub outcome: Outcome,
    /// The figures behind it, or why there is no verdict.
    pub detail: String,
}

impl Verdict {
    fn new(target: &str, outcome: Outcome, detail: impl Into<String>) -> Verdict {
        Verdict {
            target: target.to_owned(),
            outcome,
            detail: detail.into(),
        }
    }

    fn met_if(target: &str, met: bool, detail: impl Into<String>) -> Verdict {
        let outcome = if met { Outcome::Met } else { Outcome::Missed };
        Verdict::new(target, outcome, detail)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = match self.outcome {
            Outcome::Met => "**met**",
            Outcome::Missed => "**missed**",
            Outcome::Undecided => "not decided",
        };
        write!(f, "{}: {word} — {}", self.target, self.detail)
    }
}

/// Which cores were saturated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Core {
    /// The server's.
    Server,
    /// The load generator's.
    Generator,
    /// Both.
    Both,
    /// Neither.
    Neither,
}

impl Core {
    fn of(server: bool, generator: bool) -> Core {
        match (server, generator) {
            (true, true) => Core::Both,
            (true, false) => Core::Server,
            (false, true) => Core::Generator,
            (false, false) => Core::Neither,
        }
    }

    /// The generator's core was among them.
    pub fn generator(self) -> bool {
        matches!(self, Core::Generator | Core::Both)
    }

    fn union(self, other: Core) -> Core {
        let server =
            matches!(self, Core::Server | Core::Both) || matches!(other, Core::Server | Core::Both);
        Core::of(server, self.generator() || other.generator())
    }
}

impl fmt::Display for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Core::Server => "server core",
            Core::Generator => "generator core",
            Core::Both => "server + generator cores",
            Core::Neither => "neither",
        })
    }
}

/// The saturated cores of runs, by median busy share over the runs.
pub fn saturated_cores<'a>(runs: impl IntoIterator<Item = &'a Run> + Clone) -> Core {
    let m = |f: fn(&Run) -> f64| median(runs.clone().into_iter().map(f).collect());
    Core::of(
        m(Run::server_load).is_some_and(|x| x >= SATURATED),
        m(Run::generator_load).is_some_and(|x| x >= SATURATED),
    )
}

/// One server's runs at one point (a scenario step), split into those that count
/// (no core saturated) and those that do not.
pub struct Point<'a> {
    /// The server.
    pub server: &'a str,
    /// Runs with neither core saturated.
    pub usable: Vec<&'a Run>,
    /// Every run at the point.
    pub all: Vec<&'a Run>,
}

impl<'a> Point<'a> {
    /// `server`'s runs among `runs`.
    pub fn of(server: &'a str, runs: impl IntoIterator<Item = &'a Run>) -> Point<'a> {
        let all: Vec<&Run> = runs.into_iter().filter(|r| r.server == server).collect();
        let usable = all
            .iter()
            .copied()
            .filter(|r| !r.server_saturated() && !r.generator_saturated())
            .collect();
        Point {
            server,
            usable,
            all,
        }
    }

    /// Median of `f` over the usable runs.
    pub fn median(&self, f: impl Fn(&Run) -> f64) -> Option<f64> {
        median(self.usable.iter().map(|r| f(r)).collect())
    }

    /// Most usable runs were lossless.
    pub fn lossless_mostly(&self) -> bool {
        2 * self.usable.iter().filter(|r| r.lossless).count() > self.usable.len()
    }

    /// "3 of 3 rounds unsaturated".
    fn rounds_text(&self) -> String {
        format!(
            "{} of {} rounds unsaturated",
            self.usable.len(),
            self.all.len()
        )
    }

    /// Why none of its runs counts: "tickwire: server core ≥ 90% in 3 of 3 rounds".
    fn why_saturated(&self) -> String {
        let n = self.all.len();
        let count = |f: fn(&Run) -> bool| self.all.iter().filter(|r| f(r)).count();
        let (s, g) = (
            count(Run::server_saturated),
            count(Run::generator_saturated),
        );
        let pct = SATURATED * 100.0;
        let mut parts = Vec::new();
        if s > 0 {
            parts.push(format!("server core ≥ {pct:.0}% in {s} of {n} rounds"));
        }
        if g > 0 {
            parts.push(format!("generator core ≥ {pct:.0}% in {g} of {n} rounds"));
        }
        format!("{}: {}", self.server, parts.join(", "))
    }
}

/// tickwire's and a peer's points, ready to compare, or the verdict when they are not.
fn pair<'a>(
    target: &str,
    runs: impl IntoIterator<Item = &'a Run> + Clone,
    peer: &'a str,
) -> Result<(Point<'a>, Point<'a>), Verdict> {
    let ours = Point::of("tickwire", runs.clone());
    let theirs = Point::of(peer, runs);
    let undecided = |why: String| Err(Verdict::new(target, Outcome::Undecided, why));
    if ours.all.is_empty() {
        return undecided("tickwire did not run at this point".into());
    }
    if theirs.all.is_empty() {
        return undecided(format!("{peer} did not run at this point"));
    }
    let unusable: Vec<String> = [&ours, &theirs]
        .iter()
        .filter(|p| p.usable.is_empty())
        .map(|p| p.why_saturated())
        .collect();
    if !unusable.is_empty() {
        return undecided(format!("no unsaturated point ({})", unusable.join("; ")));
    }
    if !ours.lossless_mostly() {
        let lossy = ours.usable.iter().filter(|r| !r.lossless).count();
        return Err(Verdict::new(
            target,
            Outcome::Missed,
            format!(
                "tickwire lost trades, clients or rate in {lossy} of {} unsaturated rounds",
                ours.usable.len()
            ),
        ));
    }
    if !theirs.lossless_mostly() {
        return undecided(format!(
            "{peer} was lossy in most unsaturated rounds: not comparable"
        ));
    }
    Ok((ours, theirs))
}

fn at_rate(g: &S1Group, rate: u64) -> impl Iterator<Item = &Run> + Clone {
    g.runs.iter().filter(move |r| r.rate == rate)
}

/// When tickwire never ran `rate` (its ladder stopped below it): missed, unless every
/// step where it stopped had the generator saturated.
fn stopped_below(target: &str, g: &S1Group, rate: u64) -> Option<Verdict> {
    let ours: Vec<&Run> = g.runs.iter().filter(|r| r.server == "tickwire").collect();
    if ours.is_empty() || ours.iter().any(|r| r.rate == rate) {
        return None;
    }
    let failed: Vec<&Run> = ours.iter().copied().filter(|r| !r.lossless).collect();
    let text = failed
        .iter()
        .map(|r| format!("round {} at {}: {}", r.round, r.rate, r.note))
        .collect::<Vec<_>>()
        .join("; ");
    Some(
        if !failed.is_empty() && failed.iter().all(|r| r.generator_saturated()) {
            Verdict::new(
                target,
                Outcome::Undecided,
                format!("tickwire's ladder stopped below {rate} trades/s with the generator saturated ({text})"),
            )
        } else {
            Verdict::new(
                target,
                Outcome::Missed,
                format!("tickwire's ladder stopped below {rate} trades/s ({text})"),
            )
        },
    )
}

fn peer_missing(target: &str, res: &Results, peer: &str) -> Option<Verdict> {
    (!res.servers.iter().any(|s| s == peer))
        .then(|| Verdict::new(target, Outcome::Undecided, format!("{peer} not compared")))
}

/// S1 at `rate`: tickwire's deliveries per server CPU-second ≥ `factor` × the peer's.
pub fn s1_per_cpu(g: &S1Group, rate: u64, peer: &str, factor: f64) -> Verdict {
    let target = format!(
        "S1 deliveries per server CPU-second ≥ {factor}× {}'s at {rate} trades/s × {} clients",
        display_name(peer),
        g.clients
    );
    if let Some(v) = stopped_below(&target, g, rate) {
        return v;
    }
    let (ours, theirs) = match pair(&target, at_rate(g, rate), peer) {
        Ok(p) => p,
        Err(v) => return v,
    };
    let per_cpu = |p: &Point| p.median(|r| r.deliveries_per_cpu_s).unwrap_or(0.0);
    let (a, b) = (per_cpu(&ours), per_cpu(&theirs));
    let r = a / b.max(1e-9);
    Verdict::met_if(
        &target,
        r >= factor,
        format!(
            "{r:.2}× ({} vs {} deliveries per server CPU-s; {}, {peer} {})",
            fmt_rate(a),
            fmt_rate(b),
            ours.rounds_text(),
            theirs.rounds_text()
        ),
    )
}

/// S1 at `rate`: tickwire's fast p99 ≤ max(0.2 × the peer's, 1.5 × the floor's), lossless.
pub fn s1_latency(g: &S1Group, rate: u64, peer: &str) -> Verdict {
    let target = format!(
        "S1 fast-client p99 ≤ max(0.2× {}'s, 1.5× the generator's floor) at {rate} trades/s × {} clients, lossless",
        display_name(peer),
        g.clients
    );
    if let Some(v) = stopped_below(&target, g, rate) {
        return v;
    }
    let (ours, theirs) = match pair(&target, at_rate(g, rate), peer) {
        Ok(p) => p,
        Err(v) => return v,
    };
    let p99 = |p: &Point| p.median(|r| r.fast_latency_us[2]).unwrap_or(0.0);
    let (a, b) = (p99(&ours), p99(&theirs));
    let floor = Point::of(FLOOR, at_rate(g, rate));
    if !floor.all.is_empty() && floor.usable.is_empty() {
        if let Some((below, lower)) = floor_below(g, rate) {
            return latency_bound(&target, (a, &ours), (b, &theirs, 0.2), &lower, Some(below));
        }
    }
    latency_bound(&target, (a, &ours), (b, &theirs, 0.2), &floor, None)
}

/// The floor at its highest unsaturated rate below `rate`, for when it is saturated at
/// `rate` itself. The generator's floor only rises with the rate (each of its passes
/// over the sockets reads more), so the floor there is a lower bound of the floor at
/// `rate`, and 1.5× of it a bound no looser than the one that could not be measured.
fn floor_below(g: &S1Group, rate: u64) -> Option<(u64, Point<'_>)> {
    let mut rates: Vec<u64> = g
        .runs
        .iter()
        .filter(|r| r.server == FLOOR && r.rate < rate)
        .map(|r| r.rate)
        .collect();
    rates.sort_unstable();
    rates.dedup();
    rates.into_iter().rev().find_map(|r| {
        let p = Point::of(FLOOR, at_rate(g, r));
        (!p.usable.is_empty()).then_some((r, p))
    })
}

/// The latency verdict: ours ≤ max(`factor` × the peer's p99, 1.5 × the floor's p99).
/// `floor_rate`: the floor was saturated at the point and this is its point at that
/// lower rate ([`floor_below`]).
fn latency_bound(
    target: &str,
    (ours_p99, ours): (f64, &Point),
    (peer_p99, peer, factor): (f64, &Point, f64),
    floor: &Point,
    floor_rate: Option<u64>,
) -> Verdict {
    let peer_bound = factor * peer_p99;
    let (floor_bound, floor_text) = if floor.all.is_empty() {
        (None, "floor not measured".to_owned())
    } else if floor.usable.is_empty() {
        (
            None,
            format!("floor not used, saturated ({})", floor.why_saturated()),
        )
    } else {
        let (p50, p99) = (
            floor.median(|r| r.fast_latency_us[0]).unwrap_or(0.0),
            floor.median(|r| r.fast_latency_us[2]).unwrap_or(0.0),
        );
        let at = floor_rate.map_or(String::new(), |r| {
            format!(" at {r} trades/s (saturated here; a lower bound of its floor here)")
        });
        (
            Some(1.5 * p99),
            format!("floor p50 {} / p99 {}{at}", fmt_us(p50), fmt_us(p99)),
        )
    };
    let (bound, which) = match floor_bound {
        Some(f) if f > peer_bound => (
            f,
            format!(
                "1.5× the floor's p99, as {factor}× {}'s ({}) lies below it",
                peer.server,
                fmt_us(peer_bound)
            ),
        ),
        _ => (peer_bound, format!("{factor}× {}'s", peer.server)),
    };
    Verdict::met_if(
        target,
        ours_p99 <= bound,
        format!(
            "{} vs a bound of {} ({which}); {} p99 {}; {floor_text}; {}, {} {}",
            fmt_us(ours_p99),
            fmt_us(bound),
            peer.server,
            fmt_us(peer_p99),
            ours.rounds_text(),
            peer.server,
            peer.rounds_text()
        ),
    )
}

/// The light-load point: tickwire's fast p99 ≤ the peer's.
pub fn light_latency(res: &Results, peer: &str) -> Verdict {
    let l = &res.plan.light;
    let target = format!(
        "Light load ({} clients × {} trades/s): fast-client p99 ≤ {}'s",
        l.clients,
        l.rate,
        display_name(peer)
    );
    if res.light.is_empty() {
        return Verdict::new(&target, Outcome::Undecided, "not measured");
    }
    let (ours, theirs) = match pair(&target, res.light.iter(), peer) {
        Ok(p) => p,
        Err(v) => return v,
    };
    let p99 = |p: &Point| p.median(|r| r.fast_latency_us[2]).unwrap_or(0.0);
    let (a, b) = (p99(&ours), p99(&theirs));
    let floor = Point::of(FLOOR, res.light.iter());
    let floor_text = match floor.median(|r| r.fast_latency_us[2]) {
        Some(f) => format!("; floor p99 {}", fmt_us(f)),
        None => String::new(),
    };
    Verdict::met_if(
        &target,
        a <= b,
        format!(
            "{} vs {}'s {} ({:.2}×){floor_text}; {}, {peer} {}",
            fmt_us(a),
            peer,
            fmt_us(b),
            a / b.max(1e-9),
            ours.rounds_text(),
            theirs.rounds_text()
        ),
    )
}

/// One ladder point (issue #22): tickwire's p99 ≤ `p99_max` × the peer's and its
/// deliveries per server CPU-second ≥ `per_cpu_min` × the peer's; a bound that is `None`
/// is not part of the target. Met when every bound given holds. Same rule as every figure
/// verdict: medians over unsaturated rounds only, tickwire lossy is missed, the peer lossy
/// is not decided.
pub fn ladder_point(
    res: &Results,
    at: LadderPoint,
    peer: &str,
    p99_max: Option<f64>,
    per_cpu_min: Option<f64>,
) -> Verdict {
    let name = display_name(peer);
    let mut bounds = Vec::new();
    if let Some(f) = p99_max {
        bounds.push(if f == 1.0 {
            format!("p99 ≤ {name}'s")
        } else {
            format!("p99 ≤ {f}× {name}'s")
        });
    }
    if let Some(f) = per_cpu_min {
        bounds.push(format!("deliveries per server CPU-s ≥ {f}× {name}'s"));
    }
    let target = format!("Ladder, {at}: {}", bounds.join(", "));
    let runs = res.ladder_at(at);
    if runs.clone().next().is_none() {
        return Verdict::new(&target, Outcome::Undecided, "not measured");
    }
    let (ours, theirs) = match pair(&target, runs, peer) {
        Ok(p) => p,
        Err(v) => return v,
    };
    let mut met = true;
    let mut parts = Vec::new();
    if let Some(f) = p99_max {
        let p99 = |p: &Point| p.median(|r| r.fast_latency_us[2]).unwrap_or(0.0);
        let (a, b) = (p99(&ours), p99(&theirs));
        let r = a / b.max(1e-9);
        met &= r <= f;
        parts.push(format!(
            "p99 {} vs {} ({r:.2}×, {} ≤ {f}×)",
            fmt_us(a),
            fmt_us(b),
            if r <= f { "within" } else { "not" }
        ));
    }
    if let Some(f) = per_cpu_min {
        let per_cpu = |p: &Point| p.median(|r| r.deliveries_per_cpu_s).unwrap_or(0.0);
        let (a, b) = (per_cpu(&ours), per_cpu(&theirs));
        let r = a / b.max(1e-9);
        met &= r >= f;
        parts.push(format!(
            "per CPU-s {} vs {} ({r:.2}×, {} ≥ {f}×)",
            fmt_rate(a),
            fmt_rate(b),
            if r >= f { "within" } else { "not" }
        ));
    }
    Verdict::met_if(
        &target,
        met,
        format!(
            "{}; {}, {peer} {}",
            parts.join("; "),
            ours.rounds_text(),
            theirs.rounds_text()
        ),
    )
}

/// The ladder's targets (issue #22's *Done when*), from the plan's points.
pub fn ladder(res: &Results, peer: &str) -> Vec<Verdict> {
    let plan = &res.plan.ladder;
    let mut v: Vec<Verdict> = plan
        .parity
        .iter()
        .map(|&at| ladder_point(res, at, peer, Some(1.1), Some(0.9)))
        .collect();
    v.push(ladder_point(res, plan.heavy, peer, Some(1.0), Some(1.3)));
    v.push(ladder_point(res, plan.light, peer, Some(1.05), None));
    v.into_iter()
        .map(|x| peer_missing(&x.target, res, peer).unwrap_or(x))
        .collect()
}

/// Where a server's S1 ladder ended and whose core limited it.
#[derive(Clone, Debug, PartialEq)]
pub struct LadderEnd {
    /// Median over rounds of its highest lossless rate (0: none).
    pub max_rate: u64,
    /// The cores saturated at that step or at the failing step above it.
    pub limit: Core,
    /// It passed the ladder's top step: no limit was reached.
    pub top: bool,
}

impl LadderEnd {
    /// For the table: "server core", "generator core, ladder top", "neither".
    pub fn text(&self) -> String {
        if self.top {
            format!("{}, ladder top", self.limit)
        } else {
            self.limit.to_string()
        }
    }
}

/// Where `server`'s ladder ended in `g`; `None` when it did not run.
pub fn ladder_end(g: &S1Group, server: &str, rounds: usize) -> Option<LadderEnd> {
    let max_rate = g.max_rate(server, rounds)?;
    let runs_at = |rate: u64| {
        g.runs
            .iter()
            .filter(move |r| r.server == server && r.rate == rate)
    };
    let at_max = runs_at(max_rate);
    let mut limit = if at_max.clone().next().is_some() {
        saturated_cores(at_max)
    } else {
        Core::Neither
    };
    let next = g.rates.iter().copied().find(|&r| r > max_rate);
    let top = next.is_none();
    if let Some(next) = next {
        if runs_at(next).next().is_some() {
            limit = limit.union(saturated_cores(runs_at(next)));
        }
    }
    Some(LadderEnd {
        max_rate,
        limit,
        top,
    })
}

/// S1: tickwire's highest lossless rate ≥ the peer's, with whose core limited each.
pub fn max_rate(g: &S1Group, rounds: usize, peer: &str) -> Verdict {
    let target = format!(
        "S1 highest lossless rate at {} clients ≥ {}'s",
        g.clients,
        display_name(peer)
    );
    let (Some(ours), Some(theirs)) = (
        ladder_end(g, "tickwire", rounds),
        ladder_end(g, peer, rounds),
    ) else {
        return Verdict::new(&target, Outcome::Undecided, "not measured");
    };
    let detail = format!(
        "tickwire {} (limit: {}), {peer} {} (limit: {})",
        fmt_rate(ours.max_rate as f64),
        ours.text(),
        fmt_rate(theirs.max_rate as f64),
        theirs.text()
    );
    let gen_bound = |who: &str| {
        Verdict::new(
            &target,
            Outcome::Undecided,
            format!("{detail}; {who}'s ladder ended with the generator's core saturated, so its maximum measures the generator"),
        )
    };
    if ours.max_rate >= theirs.max_rate {
        if !theirs.top && theirs.limit.generator() {
            return gen_bound(peer);
        }
        Verdict::new(&target, Outcome::Met, detail)
    } else if ours.limit.generator() {
        gen_bound("tickwire")
    } else {
        Verdict::new(&target, Outcome::Missed, detail)
    }
}

fn s3_at<'a>(res: &'a Results, server: &'a str, n: usize) -> impl Iterator<Item = &'a Run> + Clone {
    res.s3
        .iter()
        .filter(move |r| r.server == server && r.clients == n)
}

/// S3: tickwire's RSS per idle connection ≤ `limit_kib` at `n` connections.
pub fn s3_rss(res: &Results, n: usize, limit_kib: f64, peer: &str) -> Verdict {
    let target =
        format!("S3 RSS per idle subscribed connection ≤ {limit_kib} KiB at {n} connections");
    let rss = |s| median(s3_at(res, s, n).map(|r| r.per_conn_kib().0).collect());
    let Some(ours) = rss("tickwire") else {
        return Verdict::new(&target, Outcome::Undecided, "not measured");
    };
    let theirs = rss(peer).map_or(String::new(), |b| format!(" ({peer}: {b:.1} KiB)"));
    Verdict::met_if(&target, ours <= limit_kib, format!("{ours:.1} KiB{theirs}"))
}

/// S3: tickwire's RSS + kernel share per connection ≤ the peer's at `n` connections.
pub fn s3_total(res: &Results, n: usize, peer: &str) -> Verdict {
    let target = format!(
        "S3 RSS + kernel per idle connection ≤ {}'s at {n} connections",
        display_name(peer)
    );
    if let Some(v) = peer_missing(&target, res, peer) {
        return v;
    }
    let total = |s| {
        median(
            s3_at(res, s, n)
                .map(|r| {
                    let (a, b) = r.per_conn_kib();
                    a + b
                })
                .collect(),
        )
    };
    match (total("tickwire"), total(peer)) {
        (Some(a), Some(b)) => Verdict::met_if(
            &target,
            a <= b,
            format!("{a:.1} KiB vs {b:.1} KiB (the kernel's share is an estimate)"),
        ),
        _ => Verdict::new(&target, Outcome::Undecided, "not measured"),
    }
}

/// S4: tickwire's fast p99 with slow clients within `factor` × without.
pub fn s4_p99(runs: &[Run], factor: f64) -> Verdict {
    let target = format!("S4 fast clients' p99 with 10% slow clients within {factor}× of without");
    let with = |slow: bool| {
        Point::of(
            "tickwire",
            runs.iter().filter(move |r| (r.slow_clients > 0) == slow),
        )
    };
    let (without, with_slow) = (with(false), with(true));
    if without.all.is_empty() || with_slow.all.is_empty() {
        return Verdict::new(&target, Outcome::Undecided, "not measured");
    }
    let unusable: Vec<String> = [("without", &without), ("with", &with_slow)]
        .iter()
        .filter(|(_, p)| p.usable.is_empty())
        .map(|(w, p)| format!("{w} slow clients, {}", p.why_saturated()))
        .collect();
    if !unusable.is_empty() {
        return Verdict::new(
            &target,
            Outcome::Undecided,
            format!("no unsaturated point ({})", unusable.join("; ")),
        );
    }
    let p99 = |p: &Point| p.median(|r| r.fast_latency_us[2]).unwrap_or(0.0);
    let (a, b) = (p99(&without), p99(&with_slow));
    let r = b / a.max(1e-9);
    Verdict::met_if(
        &target,
        r <= factor,
        format!(
            "{} with vs {} without ({r:.2}×; with: {}, without: {})",
            fmt_us(b),
            fmt_us(a),
            with_slow.rounds_text(),
            without.rounds_text()
        ),
    )
}

/// S4: no fast client of tickwire saw a gap or lost a trade (every run: a gap is a gap
/// whatever the load).
pub fn s4_gaps(runs: &[Run]) -> Verdict {
    let target = "S4 no fast client sees a gap";
    let ours: Vec<&Run> = runs.iter().filter(|r| r.server == "tickwire").collect();
    if ours.is_empty() {
        return Verdict::new(target, Outcome::Undecided, "not measured");
    }
    let losses: u64 = ours.iter().map(|r| r.fast_losses).sum();
    Verdict::met_if(
        target,
        losses == 0,
        format!(
            "{losses} trades lost or gapped on fast clients in {} runs",
            ours.len()
        ),
    )
}

/// Earlier target: per CPU-second ≥ `factor` × the peer's at the highest rate both
/// passed unsaturated.
pub fn s1_per_cpu_best(g: &S1Group, rounds: usize, peer: &str, factor: f64) -> Verdict {
    let target = format!(
        "S1 ≥ {factor}× {} per server CPU-second at {} clients",
        display_name(peer),
        g.clients
    );
    for &rate in g.rates.iter().rev() {
        if let Ok((ours, theirs)) = pair(&target, at_rate(g, rate), peer) {
            let per_cpu = |p: &Point| p.median(|r| r.deliveries_per_cpu_s).unwrap_or(0.0);
            let (a, b) = (per_cpu(&ours), per_cpu(&theirs));
            let r = a / b.max(1e-9);
            return Verdict::met_if(
                &target,
                r >= factor,
                format!(
                    "{r:.2}× at {rate} trades/s, the highest rate both passed unsaturated ({} vs {})",
                    fmt_rate(a),
                    fmt_rate(b)
                ),
            );
        }
    }
    Verdict::new(
        &target,
        Outcome::Undecided,
        format!("no rate that both passed with no core saturated (highest lossless: tickwire {}, {peer} {})",
            fmt_opt_rate(g.max_rate("tickwire", rounds)),
            fmt_opt_rate(g.max_rate(peer, rounds))),
    )
}

/// Earlier target: ≥ 3 M deliveries per server CPU-second at tickwire's best lossless,
/// unsaturated step (unsaturated: a floor for the core's maximum).
pub fn per_core(res: &Results) -> Verdict {
    let target = "S1 ≥ 3 M frames/s per core";
    let mut best: Option<(f64, u64, usize)> = None;
    for g in &res.s1 {
        for &rate in &g.rates {
            let p = Point::of("tickwire", at_rate(g, rate));
            if p.usable.is_empty() || !p.lossless_mostly() {
                continue;
            }
            if let Some(d) = p.median(|r| r.deliveries_per_cpu_s) {
                if best.is_none_or(|b| d > b.0) {
                    best = Some((d, rate, g.clients));
                }
            }
        }
    }
    match best {
        Some((d, rate, clients)) => Verdict::met_if(
            target,
            d >= 3e6,
            format!(
                "best lossless unsaturated step {:.2} M deliveries per server CPU-s ({rate} trades/s × {clients} clients)",
                d / 1e6
            ),
        ),
        None => Verdict::new(
            target,
            Outcome::Undecided,
            "no unsaturated lossless tickwire step",
        ),
    }
}

/// Earlier target: S2 p99 ≤ 0.5 × the best lossless peer's, per rate.
pub fn s2_best_peer(res: &Results) -> Vec<Verdict> {
    let mut rates: Vec<u64> = res.s2.iter().map(|r| r.rate).collect();
    rates.sort_unstable();
    rates.dedup();
    let contenders: Vec<&str> = res.contenders().collect();
    if rates.is_empty() || contenders.is_empty() {
        return vec![Verdict::new(
            "S2 p99 ≤ 0.5× the best peer's",
            Outcome::Undecided,
            "not measured",
        )];
    }
    rates
        .into_iter()
        .map(|rate| {
            let target = format!("S2 p99 ≤ 0.5× the best lossless peer's at {rate} trades/s");
            let runs = res.s2.iter().filter(|r| r.rate == rate);
            let mut best: Option<(f64, &str)> = None;
            let mut not_counted = Vec::new();
            for &peer in &contenders {
                match pair(&target, runs.clone(), peer) {
                    Ok((_, theirs)) => {
                        let p = theirs.median(|r| r.fast_latency_us[2]).unwrap_or(0.0);
                        if best.is_none_or(|b| p < b.0) {
                            best = Some((p, peer));
                        }
                    }
                    Err(v) if v.outcome == Outcome::Missed => return v,
                    Err(v) => not_counted.push(format!("{peer}: {}", v.detail)),
                }
            }
            let Some((peer_p99, peer)) = best else {
                return Verdict::new(&target, Outcome::Undecided, not_counted.join("; "));
            };
            let ours = Point::of("tickwire", runs);
            let a = ours.median(|r| r.fast_latency_us[2]).unwrap_or(0.0);
            let r = a / peer_p99.max(1e-9);
            let others = if not_counted.is_empty() {
                String::new()
            } else {
                format!("; not counted: {}", not_counted.join("; "))
            };
            Verdict::met_if(
                &target,
                r <= 0.5,
                format!(
                    "{} vs {peer}'s {} ({r:.2}×){others}",
                    fmt_us(a),
                    fmt_us(peer_p99)
                ),
            )
        })
        .collect()
}

/// Every verdict: the issue's targets, then the earlier ones.
pub fn verdicts(res: &Results) -> (Vec<Verdict>, Vec<Verdict>) {
    let mut issue = Vec::new();
    let bun = "bun";
    let group = res
        .plan
        .s1
        .first()
        .and_then(|p| res.s1.iter().find(|g| g.clients == p.clients));
    let rate = res.plan.targets.s1_rate;
    match group {
        Some(g) => {
            for v in [s1_per_cpu(g, rate, bun, 2.0), s1_latency(g, rate, bun)] {
                issue.push(peer_missing(&v.target, res, bun).unwrap_or(v));
            }
        }
        None => issue.push(Verdict::new(
            "S1 per CPU-second and latency against Bun",
            Outcome::Undecided,
            "not measured (S1 did not run)",
        )),
    }
    let light = light_latency(res, bun);
    issue.push(peer_missing(&light.target, res, bun).unwrap_or(light));
    if res.scenarios.contains(&Scenario::Ladder) {
        issue.extend(ladder(res, bun));
    }
    if let Some(g) = group {
        let v = max_rate(g, res.rounds, bun);
        issue.push(peer_missing(&v.target, res, bun).unwrap_or(v));
    }
    let n = res.plan.targets.s3_clients;
    issue.push(s3_rss(res, n, 2.0, bun));
    issue.push(s3_total(res, n, bun));
    issue.push(s4_p99(&res.s4, 1.1));
    issue.push(s4_gaps(&res.s4));

    let mut earlier = Vec::new();
    if let Some(g) = group {
        let v = s1_per_cpu_best(g, res.rounds, "naive-rust", 10.0);
        earlier.push(peer_missing(&v.target, res, "naive-rust").unwrap_or(v));
    }
    earlier.push(per_core(res));
    earlier.extend(s2_best_peer(res));
    (issue, earlier)
}

fn display_name(server: &str) -> &str {
    match server {
        "bun" => "Bun",
        "node" => "Node",
        "naive-rust" => "naive Rust",
        s => s,
    }
}

/// `1.49 M`, `932 k`, `250`.
pub fn fmt_rate(per_s: f64) -> String {
    if per_s >= 1e6 {
        format!("{:.2} M", per_s / 1e6)
    } else if per_s >= 1e3 {
        format!("{:.0} k", per_s / 1e3)
    } else {
        format!("{per_s:.0}")
    }
}

fn fmt_opt_rate(r: Option<u64>) -> String {
    r.map_or("–".into(), |r| fmt_rate(r as f64))
}

/// `38.4 ms` from 10 ms up, `9708 µs` below.
pub fn fmt_us(us: f64) -> String {
    if us >= 10_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

#[cfg(test)]
mod tests {
    use super::super::NO_COALESCE;
    use super::*;

    /// A lossless run: `server` at `rate`, round `round`, with its cores' busy shares.
    fn run(server: &str, round: usize, rate: u64, busy: (f64, f64)) -> Run {
        Run {
            server: server.into(),
            round,
            rate,
            clients: 1000,
            lossless: true,
            server_busy_steady: Some(busy.0),
            generator_busy_steady: Some(busy.1),
            ..Run::default()
        }
    }

    fn with(mut r: Run, f: impl FnOnce(&mut Run)) -> Run {
        f(&mut r);
        r
    }

    fn group(runs: Vec<Run>) -> S1Group {
        S1Group {
            clients: 1000,
            rates: vec![500, 1000, 2000],
            runs,
        }
    }

    const IDLE: (f64, f64) = (0.5, 0.5);
    const GEN_BOUND: (f64, f64) = (0.5, 0.95);
    const SERVER_BOUND: (f64, f64) = (0.97, 0.5);

    fn cpu(r: Run, per_cpu_s: f64) -> Run {
        with(r, |r| r.deliveries_per_cpu_s = per_cpu_s)
    }

    fn p99(r: Run, p50_us: f64, p99_us: f64) -> Run {
        with(r, |r| {
            r.fast_latency_us[0] = p50_us;
            r.fast_latency_us[2] = p99_us;
        })
    }

    #[test]
    fn saturated_rounds_are_left_out_of_the_medians() {
        // Round 2 of tickwire was gen-bound with a figure that alone would meet 2×.
        let g = group(vec![
            cpu(run("tickwire", 1, 1000, IDLE), 1.0e6),
            cpu(run("tickwire", 2, 1000, GEN_BOUND), 9.0e6),
            cpu(run("tickwire", 3, 1000, IDLE), 1.2e6),
            cpu(run("bun", 1, 1000, IDLE), 1.0e6),
            cpu(run("bun", 2, 1000, IDLE), 1.0e6),
            cpu(run("bun", 3, 1000, IDLE), 1.0e6),
        ]);
        let v = s1_per_cpu(&g, 1000, "bun", 2.0);
        assert_eq!(v.outcome, Outcome::Missed, "{v}");
        assert!(v.detail.starts_with("1.10×"), "{v}");
        assert!(v.detail.contains("2 of 3 rounds unsaturated"), "{v}");
    }

    #[test]
    fn no_unsaturated_point_is_not_a_verdict() {
        let g = group(vec![
            cpu(run("tickwire", 1, 1000, IDLE), 3.0e6),
            cpu(run("bun", 1, 1000, GEN_BOUND), 1.0e6),
            cpu(run("bun", 2, 1000, SERVER_BOUND), 1.0e6),
        ]);
        let v = s1_per_cpu(&g, 1000, "bun", 2.0);
        assert_eq!(v.outcome, Outcome::Undecided, "{v}");
        assert!(v.detail.contains("no unsaturated point"), "{v}");
        assert!(
            v.detail.contains("server core ≥ 90% in 1 of 2 rounds")
                && v.detail.contains("generator core ≥ 90% in 1 of 2 rounds"),
            "{v}"
        );
        // tickwire's own saturation counts the same way.
        let g = group(vec![
            cpu(run("tickwire", 1, 1000, SERVER_BOUND), 3.0e6),
            cpu(run("bun", 1, 1000, IDLE), 1.0e6),
        ]);
        let v = s1_per_cpu(&g, 1000, "bun", 2.0);
        assert_eq!(v.outcome, Outcome::Undecided, "{v}");
        assert!(v.detail.contains("tickwire: server core"), "{v}");
    }

    #[test]
    fn per_cpu_met_and_lossy_sides() {
        let g = group(vec![
            cpu(run("tickwire", 1, 1000, IDLE), 2.5e6),
            cpu(run("bun", 1, 1000, IDLE), 1.0e6),
        ]);
        assert_eq!(s1_per_cpu(&g, 1000, "bun", 2.0).outcome, Outcome::Met);
        // tickwire lossy at the point: missed; the peer lossy: not comparable.
        let lossy = |r: Run| with(r, |r| r.lossless = false);
        let g = group(vec![
            lossy(cpu(run("tickwire", 1, 1000, IDLE), 2.5e6)),
            cpu(run("bun", 1, 1000, IDLE), 1.0e6),
        ]);
        assert_eq!(s1_per_cpu(&g, 1000, "bun", 2.0).outcome, Outcome::Missed);
        let g = group(vec![
            cpu(run("tickwire", 1, 1000, IDLE), 2.5e6),
            lossy(cpu(run("bun", 1, 1000, IDLE), 1.0e6)),
        ]);
        assert_eq!(s1_per_cpu(&g, 1000, "bun", 2.0).outcome, Outcome::Undecided);
    }

    #[test]
    fn a_ladder_that_stopped_below_the_target_rate_misses_it_unless_gen_bound() {
        let lost = |r: Run| {
            with(r, |r| {
                r.lossless = false;
                r.note = "12 trades lost or gapped".into();
            })
        };
        let g = group(vec![
            run("tickwire", 1, 500, IDLE),
            lost(run("tickwire", 1, 1000, IDLE)),
            run("bun", 1, 1000, IDLE),
        ]);
        // It ran 1000 and lost there: missed through the lossless check.
        assert_eq!(s1_latency(&g, 1000, "bun").outcome, Outcome::Missed);
        let g = group(vec![
            lost(run("tickwire", 1, 500, IDLE)),
            run("bun", 1, 1000, IDLE),
        ]);
        let v = s1_latency(&g, 1000, "bun");
        assert_eq!(v.outcome, Outcome::Missed, "{v}");
        assert!(v.detail.contains("stopped below 1000"), "{v}");
        let g = group(vec![
            lost(run("tickwire", 1, 500, GEN_BOUND)),
            run("bun", 1, 1000, IDLE),
        ]);
        assert_eq!(s1_latency(&g, 1000, "bun").outcome, Outcome::Undecided);
    }

    #[test]
    fn latency_bound_is_the_larger_of_a_fifth_of_bun_and_one_and_a_half_floors() {
        let case = |ours: f64, bun: f64, floor: Option<(f64, (f64, f64))>| {
            let mut runs = vec![
                p99(run("tickwire", 1, 1000, IDLE), 0.0, ours),
                p99(run("bun", 1, 1000, IDLE), 0.0, bun),
            ];
            if let Some((f, busy)) = floor {
                runs.push(p99(run(FLOOR, 1, 1000, busy), f / 2.0, f));
            }
            s1_latency(&group(runs), 1000, "bun")
        };
        // 0.2 × 10 ms = 2 ms; the floor's 1 ms × 1.5 = 1.5 ms: Bun's bound holds.
        let v = case(1900.0, 10_000.0, Some((1000.0, IDLE)));
        assert_eq!(v.outcome, Outcome::Met, "{v}");
        assert!(v.detail.contains("(0.2× bun's)"), "{v}");
        assert!(v.detail.contains("floor p50 500 µs / p99 1000 µs"), "{v}");
        assert_eq!(
            case(2100.0, 10_000.0, Some((1000.0, IDLE))).outcome,
            Outcome::Missed
        );
        // 0.2 × 5 ms = 1 ms lies below the floor's 2 ms: 1.5 × 2 ms = 3 ms holds instead.
        let v = case(2900.0, 5000.0, Some((2000.0, IDLE)));
        assert_eq!(v.outcome, Outcome::Met, "{v}");
        assert!(v.detail.contains("1.5× the floor's p99"), "{v}");
        assert_eq!(
            case(3100.0, 5000.0, Some((2000.0, IDLE))).outcome,
            Outcome::Missed
        );
        // A floor saturated at the point, unsaturated at a lower rate: the lower rate's
        // p99 bounds it from below and sets the bound.
        let floor_at = |rate: u64, f: f64, busy| p99(run(FLOOR, 1, rate, busy), f / 2.0, f);
        let v = s1_latency(
            &group(vec![
                p99(run("tickwire", 1, 1000, IDLE), 0.0, 2900.0),
                p99(run("bun", 1, 1000, IDLE), 0.0, 5000.0),
                floor_at(250, 2000.0, IDLE),
                floor_at(500, 2500.0, SERVER_BOUND),
                floor_at(1000, 9000.0, SERVER_BOUND),
            ]),
            1000,
            "bun",
        );
        assert_eq!(v.outcome, Outcome::Met, "{v}");
        assert!(v.detail.contains("at 250 trades/s (saturated here"), "{v}");
        // A floor saturated at every rate, or none, leaves Bun's bound alone.
        let v = case(2900.0, 5000.0, Some((2000.0, SERVER_BOUND)));
        assert_eq!(v.outcome, Outcome::Missed, "{v}");
        assert!(v.detail.contains("floor not used, saturated"), "{v}");
        let v = case(900.0, 5000.0, None);
        assert_eq!(v.outcome, Outcome::Met, "{v}");
        assert!(v.detail.contains("floor not measured"), "{v}");
    }

    #[test]
    fn the_limit_column_names_the_saturated_core() {
        let lost = |r: Run| with(r, |r| r.lossless = false);
        let g = group(vec![
            // tickwire: passes 500 with its core saturated, loses at 1000.
            run("tickwire", 1, 500, SERVER_BOUND),
            lost(run("tickwire", 1, 1000, SERVER_BOUND)),
            // bun: passes 500 and 1000, loses at 2000 with the generator saturated.
            run("bun", 1, 500, IDLE),
            run("bun", 1, 1000, IDLE),
            lost(run("bun", 1, 2000, GEN_BOUND)),
            // node: passes everything.
            run("node", 1, 500, IDLE),
            run("node", 1, 1000, IDLE),
            run("node", 1, 2000, GEN_BOUND),
            // naive: loses at the first step with no core saturated.
            lost(run("naive-rust", 1, 500, IDLE)),
        ]);
        let end = |s| ladder_end(&g, s, 1).unwrap();
        assert_eq!(end("tickwire").max_rate, 500);
        assert_eq!(end("tickwire").limit, Core::Server);
        assert_eq!(end("bun").limit, Core::Generator);
        assert_eq!(end("bun").text(), "generator core");
        assert_eq!(end("node").text(), "generator core, ladder top");
        assert_eq!(
            (end("naive-rust").max_rate, end("naive-rust").limit),
            (0, Core::Neither)
        );
        assert_eq!(ladder_end(&g, "ghost", 1), None);
        // Below bun, but limited by its own core: missed. Bun's limit was the generator,
        // so a tickwire at or above it would not decide either.
        assert_eq!(max_rate(&g, 1, "bun").outcome, Outcome::Missed);
        assert_eq!(max_rate(&g, 1, "naive-rust").outcome, Outcome::Met);
        let g2 = group(vec![
            run("tickwire", 1, 500, IDLE),
            run("tickwire", 1, 1000, IDLE),
            lost(run("tickwire", 1, 2000, IDLE)),
            run("bun", 1, 500, IDLE),
            lost(run("bun", 1, 1000, GEN_BOUND)),
        ]);
        let v = max_rate(&g2, 1, "bun");
        assert_eq!(v.outcome, Outcome::Undecided, "{v}");
        assert!(
            v.detail
                .contains("bun's ladder ended with the generator's core saturated"),
            "{v}"
        );
    }

    #[test]
    fn s4_compares_unsaturated_runs_with_themselves() {
        let s4 = |slow: usize, busy, p: f64| {
            with(p99(run("tickwire", 1, 2000, busy), 0.0, p), |r| {
                r.slow_clients = slow
            })
        };
        let v = s4_p99(&[s4(0, IDLE, 1000.0), s4(100, IDLE, 1050.0)], 1.1);
        assert_eq!(v.outcome, Outcome::Met, "{v}");
        let v = s4_p99(&[s4(0, IDLE, 1000.0), s4(100, IDLE, 1200.0)], 1.1);
        assert_eq!(v.outcome, Outcome::Missed, "{v}");
        let v = s4_p99(&[s4(0, GEN_BOUND, 1000.0), s4(100, IDLE, 1050.0)], 1.1);
        assert_eq!(v.outcome, Outcome::Undecided, "{v}");
        assert!(
            v.detail
                .contains("no unsaturated point (without slow clients"),
            "{v}"
        );
        // Gaps count in every run, saturated or not.
        let gapped = with(s4(100, GEN_BOUND, 1.0), |r| r.fast_losses = 3);
        assert_eq!(
            s4_gaps(&[s4(0, IDLE, 1.0), gapped]).outcome,
            Outcome::Missed
        );
    }

    /// Quick-plan results with ladder runs of tickwire and Bun at `at`: (p99 µs, deliveries
    /// per CPU-s, busy shares) per round.
    fn ladder_res(
        at: LadderPoint,
        ours: &[(f64, f64, (f64, f64))],
        bun: &[(f64, f64, (f64, f64))],
    ) -> Results {
        let mut res = Results::empty(&["tickwire", NO_COALESCE, "bun"], &[Scenario::Ladder]);
        for (server, rounds) in [("tickwire", ours), ("bun", bun)] {
            for (i, &(p, per_cpu, busy)) in rounds.iter().enumerate() {
                let r = with(
                    p99(cpu(run(server, i + 1, at.rate, busy), per_cpu), 0.0, p),
                    |r| {
                        r.clients = at.clients;
                    },
                );
                res.ladder.push(r);
            }
        }
        // tickwire without coalescing is a reference, never a side of a verdict.
        res.ladder
            .push(with(run(NO_COALESCE, 1, at.rate, IDLE), |r| {
                r.clients = at.clients;
                r.lossless = false;
            }));
        res
    }

    #[test]
    fn ladder_parity_needs_both_latency_and_cpu() {
        let at = LadderPoint {
            clients: 10,
            rate: 1000,
        };
        let v =
            |ours, bun| ladder_point(&ladder_res(at, ours, bun), at, "bun", Some(1.1), Some(0.9));
        // 1.10× the p99 and 0.90× the CPU figure: both on the line, met.
        let x = v(&[(1100.0, 0.9e6, IDLE)], &[(1000.0, 1.0e6, IDLE)]);
        assert_eq!(x.outcome, Outcome::Met, "{x}");
        assert_eq!(x.target, "Ladder, 10 clients × 1000 trades/s: p99 ≤ 1.1× Bun's, deliveries per server CPU-s ≥ 0.9× Bun's");
        assert!(
            x.detail
                .contains("p99 1100 µs vs 1000 µs (1.10×, within ≤ 1.1×)"),
            "{x}"
        );
        // Latency fine, CPU short: missed, and the detail says which.
        let x = v(&[(900.0, 0.8e6, IDLE)], &[(1000.0, 1.0e6, IDLE)]);
        assert_eq!(x.outcome, Outcome::Missed, "{x}");
        assert!(x.detail.contains("(0.80×, not ≥ 0.9×)"), "{x}");
        // CPU fine, latency over: missed.
        let x = v(&[(1200.0, 2.0e6, IDLE)], &[(1000.0, 1.0e6, IDLE)]);
        assert_eq!(x.outcome, Outcome::Missed, "{x}");
        // Medians over the unsaturated rounds: round 2 (gen-bound) would miss alone.
        let x = v(
            &[
                (1000.0, 1.0e6, IDLE),
                (9000.0, 0.1e6, GEN_BOUND),
                (1050.0, 1.0e6, IDLE),
            ],
            &[
                (1000.0, 1.0e6, IDLE),
                (1000.0, 1.0e6, IDLE),
                (1000.0, 1.0e6, IDLE),
            ],
        );
        assert_eq!(x.outcome, Outcome::Met, "{x}");
        assert!(
            x.detail.contains("2 of 3 rounds unsaturated, bun 3 of 3"),
            "{x}"
        );
        // Bun saturated in every round: no verdict.
        let x = v(&[(1000.0, 1.0e6, IDLE)], &[(1000.0, 1.0e6, SERVER_BOUND)]);
        assert_eq!(x.outcome, Outcome::Undecided, "{x}");
        assert!(
            x.detail.contains("no unsaturated point (bun: server core"),
            "{x}"
        );
    }

    #[test]
    fn ladder_heavy_and_light_points() {
        let heavy = LadderPoint {
            clients: 20,
            rate: 1000,
        };
        let res = ladder_res(heavy, &[(1000.0, 1.3e6, IDLE)], &[(1000.0, 1.0e6, IDLE)]);
        let x = ladder_point(&res, heavy, "bun", Some(1.0), Some(1.3));
        assert_eq!(x.outcome, Outcome::Met, "{x}");
        assert!(
            x.target
                .contains("p99 ≤ Bun's, deliveries per server CPU-s ≥ 1.3× Bun's"),
            "{x}"
        );
        let res = ladder_res(heavy, &[(1001.0, 2.0e6, IDLE)], &[(1000.0, 1.0e6, IDLE)]);
        assert_eq!(
            ladder_point(&res, heavy, "bun", Some(1.0), Some(1.3)).outcome,
            Outcome::Missed
        );
        let light = LadderPoint {
            clients: 20,
            rate: 100,
        };
        let res = ladder_res(light, &[(1050.0, 0.1e6, IDLE)], &[(1000.0, 1.0e6, IDLE)]);
        let x = ladder_point(&res, light, "bun", Some(1.05), None);
        assert_eq!(
            x.outcome,
            Outcome::Met,
            "no CPU bound at the light point: {x}"
        );
        assert!(!x.detail.contains("per CPU-s"), "{x}");
        // The plan's lines: three parity points, heavy, light; unmeasured ones say so.
        let all = ladder(&res, "bun");
        assert_eq!(all.len(), 5);
        assert_eq!(all[4].outcome, Outcome::Met, "{}", all[4]);
        assert!(
            all[..4].iter().all(|v| v.detail == "not measured"),
            "{all:?}"
        );
        // Bun not in the comparison: every line says so.
        let mut alone = res.clone();
        alone.servers.retain(|s| s != "bun");
        assert!(ladder(&alone, "bun")
            .iter()
            .all(|v| v.detail == "bun not compared"));
        // In the full list only when the ladder ran.
        assert_eq!(
            verdicts(&res)
                .0
                .iter()
                .filter(|v| v.target.starts_with("Ladder"))
                .count(),
            5
        );
        alone.scenarios.clear();
        assert_eq!(
            verdicts(&alone)
                .0
                .iter()
                .filter(|v| v.target.starts_with("Ladder"))
                .count(),
            0
        );
    }

    #[test]
    fn verdict_lines_read_as_the_doc_prints_them() {
        let v = Verdict::new("T", Outcome::Undecided, "no unsaturated point (x)");
        assert_eq!(v.to_string(), "T: not decided — no unsaturated point (x)");
        assert_eq!(
            Verdict::met_if("T", true, "d").to_string(),
            "T: **met** — d"
        );
    }
}
