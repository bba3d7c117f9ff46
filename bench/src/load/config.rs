//! Settings of a load run, in two steps: [`LoadConfig`] as given (every default documented
//! where it is set), then [`LoadConfig::validate`], which collects every problem at once
//! and parses the URLs into [`Endpoint`]s. Also the duration syntax of the CLI
//! ([`parse_duration`]: `20s`, `500ms`, `2m`, `1m30s`).

use std::fmt;
use std::time::Duration;

use super::LoadError;

/// Receive buffer (`SO_RCVBUF`) of a slow client's socket, in bytes, set before connecting.
pub const SLOW_RECV_BUFFER_BYTES: u32 = 4096;
/// A slow client pauses after this many messages...
pub const SLOW_MESSAGES_PER_PAUSE: u64 = 4;
/// ...for this long (so it takes at most ~400 messages per second).
pub const SLOW_PAUSE: Duration = Duration::from_millis(10);
/// A paced slow client's token bucket holds this much of a second's bytes: it reads at
/// most every 100 ms when data waits, up to that many bytes at a time.
pub const PACED_BURST: Duration = Duration::from_millis(100);
/// Default warm-up after each slow client's subscribe that its data age leaves out.
pub const AGE_WARMUP: Duration = Duration::from_secs(3);

/// What a load run does. `Default` gives the CLI's defaults.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// WebSocket URL of the engine, `ws://host:port/path`. Default `ws://127.0.0.1:8080/ws`.
    pub url: String,
    /// Connections to open. Default 100.
    pub clients: usize,
    /// Symbols every client subscribes to. Default `sim:BTC-USD`.
    pub symbols: Vec<String>,
    /// Channels every client subscribes to. Default `ticker`, `trades`, `book`.
    pub channels: Vec<String>,
    /// Book depth asked for (1..=1000). Default 10, the engine's default.
    pub depth: u32,
    /// Measurement time, from the first connection attempt; includes the ramp. Default 20 s.
    pub duration: Duration,
    /// Connection starts are spread evenly over this time. Default 2 s; must be shorter
    /// than `duration`.
    pub ramp: Duration,
    /// After `duration`, everyone (slow clients too) reads at full speed for this long
    /// before the convergence check and the close. Default 2 s.
    pub drain: Duration,
    /// Share of clients (0..=1) that are slow: a [`SLOW_RECV_BUFFER_BYTES`] receive buffer,
    /// and a [`SLOW_PAUSE`] after every [`SLOW_MESSAGES_PER_PAUSE`] messages, or paced
    /// reads with `slow_read_bps`. Default 0.
    pub slow_fraction: f64,
    /// Slow clients read at most this many bytes per second (a token bucket holding
    /// [`PACED_BURST`] of them; each read takes at most the tokens there are) instead of
    /// pausing every few messages. `None` (the default): the pauses.
    pub slow_read_bps: Option<u64>,
    /// Slow clients read nothing for this long after subscribing, then read as their mode
    /// says. Default 0.
    pub slow_stall: Duration,
    /// The slow clients' data age leaves out what they receive in this long after their
    /// subscribe. Default [`AGE_WARMUP`] (3 s).
    pub age_warmup: Duration,
    /// Worker threads of the generator's tokio runtime. Default 2.
    pub threads: usize,
    /// URL of the engine's `/stats`, fetched before and after the run; `None` derives
    /// `http://host:port/stats` from `url`.
    pub stats_url: Option<String>,
    /// No live progress bar.
    pub quiet: bool,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            url: "ws://127.0.0.1:8080/ws".into(),
            clients: 100,
            symbols: vec!["sim:BTC-USD".into()],
            channels: vec!["ticker".into(), "trades".into(), "book".into()],
            depth: 10,
            duration: Duration::from_secs(20),
            ramp: Duration::from_secs(2),
            drain: Duration::from_secs(2),
            slow_fraction: 0.0,
            slow_read_bps: None,
            slow_stall: Duration::ZERO,
            age_warmup: AGE_WARMUP,
            threads: 2,
            stats_url: None,
            quiet: false,
        }
    }
}

/// A validated configuration: the settings plus the parsed endpoints.
#[derive(Clone, Debug)]
pub struct Validated {
    /// The settings, unchanged.
    pub config: LoadConfig,
    /// Where the clients connect.
    pub ws: Endpoint,
    /// Where `/stats` is fetched.
    pub stats: Endpoint,
    /// How many of the clients are slow: `floor(clients × slow_fraction)`.
    pub slow_clients: usize,
}

impl LoadConfig {
    /// Checks every setting and reports all problems at once.
    pub fn validate(&self) -> Result<Validated, LoadError> {
        let mut problems = Vec::new();
        let ws = Endpoint::parse(&self.url, "ws")
            .map_err(|e| problems.push(format!("--url: {e}")))
            .ok();
        let stats = match &self.stats_url {
            Some(url) => Endpoint::parse(url, "http")
                .map_err(|e| problems.push(format!("--stats-url: {e}")))
                .ok(),
            None => ws.as_ref().map(|ws| Endpoint {
                host: ws.host.clone(),
                port: ws.port,
                path: "/stats".into(),
            }),
        };
        if self.clients == 0 {
            problems.push("--clients must be at least 1".into());
        }
        if self.symbols.is_empty() || self.symbols.iter().any(|s| s.trim().is_empty()) {
            problems.push("--symbols needs at least one symbol, none empty".into());
        }
        for c in &self.channels {
            if !["ticker", "trades", "book"].contains(&c.as_str()) {
                problems.push(format!(
                    "--channels: unknown channel {c:?} (ticker, trades, book)"
                ));
            }
        }
        if self.channels.is_empty() {
            problems.push("--channels needs at least one channel".into());
        }
        if !(1..=1000).contains(&self.depth) {
            problems.push(format!("--depth {} is outside 1..=1000", self.depth));
        }
        if self.duration.is_zero() {
            problems.push("--duration must be positive".into());
        }
        if self.ramp >= self.duration {
            problems.push(format!(
                "--ramp {:?} must be shorter than --duration {:?}",
                self.ramp, self.duration
            ));
        }
        if !(0.0..=1.0).contains(&self.slow_fraction) {
            problems.push(format!(
                "--slow-fraction {} is outside 0..=1",
                self.slow_fraction
            ));
        }
        if self.slow_read_bps == Some(0) {
            problems.push("--slow-read-bps must be at least 1 (bytes per second)".into());
        }
        if self.threads == 0 {
            problems.push("--threads must be at least 1".into());
        }
        match (ws, stats) {
            (Some(ws), Some(stats)) if problems.is_empty() => Ok(Validated {
                // The epsilon keeps 0.29 × 100 at 29 despite binary fractions.
                slow_clients: (self.clients as f64 * self.slow_fraction + 1e-9).floor() as usize,
                config: self.clone(),
                ws,
                stats,
            }),
            _ => Err(LoadError::Config(problems.join("; "))),
        }
    }
}

/// `host:port/path` of a `ws://` or `http://` URL (no TLS, no user info).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or address; an IPv6 address without its brackets.
    pub host: String,
    /// Port; 80 when the URL names none.
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Endpoint {
    /// Parses `scheme://host[:port][/path]` for the given scheme.
    ///
    /// ```
    /// use tickwire_bench::load::Endpoint;
    /// let e = Endpoint::parse("ws://127.0.0.1:8080/ws", "ws").unwrap();
    /// assert_eq!((e.host.as_str(), e.port, e.path.as_str()), ("127.0.0.1", 8080, "/ws"));
    /// assert!(Endpoint::parse("wss://example.com/ws", "ws").is_err());
    /// ```
    pub fn parse(url: &str, scheme: &str) -> Result<Endpoint, String> {
        let rest = url
            .strip_prefix(scheme)
            .and_then(|r| r.strip_prefix("://"))
            .ok_or_else(|| format!("{url:?} does not start with {scheme}://"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{url:?}: unclosed [ in the host"))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(format!("{url:?} names no host"));
        }
        let port = match port {
            Some(p) => p
                .parse()
                .map_err(|_| format!("{url:?}: port {p:?} is not a number in 0..=65535"))?,
            None => 80,
        };
        Ok(Endpoint {
            host: host.into(),
            port,
            path: path.into(),
        })
    }

    /// `host:port` as the HTTP `Host` header wants it.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.authority(), self.path)
    }
}

/// Parses a duration: one or more `<number><unit>` parts, units `ns`, `us` (or `µs`),
/// `ms`, `s`, `m`, `h`; numbers may have a fraction.
///
/// ```
/// use std::time::Duration;
/// use tickwire_bench::load::parse_duration;
/// assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
/// assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
/// assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
/// assert!(parse_duration("20").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = 0.0_f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let unit_len = rest[num_len..]
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len() - num_len);
        let (num, unit) = (&rest[..num_len], &rest[num_len..num_len + unit_len]);
        let value: f64 = num
            .parse()
            .map_err(|_| format!("{text:?}: expected a number before {unit:?}"))?;
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(format!("{text:?}: add a unit (ns, us, ms, s, m, h)")),
            other => {
                return Err(format!(
                    "{text:?}: unknown unit {other:?} (ns, us, ms, s, m, h)"
                ))
            }
        };
        total += value * scale;
        rest = &rest[num_len + unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|e| format!("{text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for (text, want) in [
            ("20s", Duration::from_secs(20)),
            ("500ms", Duration::from_millis(500)),
            ("2m", Duration::from_secs(120)),
            ("1.5s", Duration::from_millis(1500)),
            ("1h2m3s", Duration::from_secs(3723)),
            ("250us", Duration::from_micros(250)),
            ("7ns", Duration::from_nanos(7)),
        ] {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
        for bad in ["", "20", "s", "3 parsecs", "1.2.3s", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn endpoints() {
        let e = Endpoint::parse("ws://[::1]:9000/ws?x=1", "ws").unwrap();
        assert_eq!(
            e,
            Endpoint {
                host: "::1".into(),
                port: 9000,
                path: "/ws?x=1".into()
            }
        );
        assert_eq!(e.authority(), "[::1]:9000");
        let e = Endpoint::parse("http://localhost", "http").unwrap();
        assert_eq!((e.port, e.path.as_str()), (80, "/"));
        assert!(Endpoint::parse("ws://:80/ws", "ws").is_err());
        assert!(Endpoint::parse("ws://h:99999/ws", "ws").is_err());
    }

    #[test]
    fn validation_collects_every_problem() {
        let cfg = LoadConfig {
            url: "http://x/ws".into(),
            clients: 0,
            channels: vec!["quotes".into()],
            depth: 0,
            slow_fraction: 2.0,
            slow_read_bps: Some(0),
            ramp: Duration::from_secs(30),
            ..LoadConfig::default()
        };
        let err = cfg.validate().unwrap_err().to_string();
        for part in [
            "--url",
            "--clients",
            "--channels",
            "--depth",
            "--slow-fraction",
            "--slow-read-bps",
            "--ramp",
        ] {
            assert!(err.contains(part), "{part} in {err}");
        }
        let ok = LoadConfig {
            clients: 200,
            slow_fraction: 0.1,
            ..LoadConfig::default()
        }
        .validate()
        .unwrap();
        assert_eq!(ok.slow_clients, 20);
        assert_eq!(ok.stats.to_string(), "127.0.0.1:8080/stats");
    }
}
