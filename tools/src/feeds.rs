//! Building feeds from `--feed` specs (`sim`, `VENUE:SYM1,SYM2`, `replay:FILE`), and the
//! `record` and `mock-exchange` subcommands.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tickwire_engine::feed::{Feed, Publisher};
use tickwire_engine::ring;
use tickwire_engine::symbol::SymbolRegistryBuilder;
use tickwire_feeds::mock::{self, MockExchange};
use tickwire_feeds::record::{Header, Reader, Recorder, Speed};
use tickwire_feeds::venue::group_specs;
use tickwire_feeds::{ReplayFeed, Venue, VenueConfig, VenueFeed};

use crate::{MockArgs, RecordArgs};

/// `VENUE=URL` pairs into a map, venue names checked.
pub fn url_map(pairs: &[String], flag: &str) -> Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for pair in pairs {
        let Some((venue, url)) = pair.split_once('=') else {
            bail!("{flag} {pair:?}: use VENUE=URL");
        };
        if Venue::from_name(venue).is_none() {
            bail!("{flag} {pair:?}: unknown venue {venue:?} (binance, coinbase, kraken)");
        }
        map.insert(venue.to_owned(), url.to_owned());
    }
    Ok(map)
}

fn venue_config(
    venue: Venue,
    symbols: Vec<String>,
    feed_urls: &BTreeMap<String, String>,
    rest_urls: &BTreeMap<String, String>,
) -> VenueConfig {
    let mut cfg = VenueConfig::new(venue, symbols);
    if let Some(url) = feed_urls.get(venue.name()) {
        cfg.ws_url = url.clone();
    }
    if let Some(url) = rest_urls.get(venue.name()) {
        cfg.rest_url = url.clone();
    }
    cfg
}

/// The feeds of `specs`: `sim` (at most once), each venue once with the symbols of all
/// its specs, and one replay per `replay:FILE`.
pub fn build(
    specs: &[String],
    feed_urls: &BTreeMap<String, String>,
    rest_urls: &BTreeMap<String, String>,
    speed: Speed,
    sim: impl Fn() -> Box<dyn Feed>,
) -> Result<Vec<Box<dyn Feed>>> {
    let mut feeds: Vec<Box<dyn Feed>> = Vec::new();
    let mut venue_specs: Vec<&str> = Vec::new();
    let mut have_sim = false;
    for spec in specs {
        if spec == "sim" {
            if have_sim {
                bail!("--feed sim is given twice");
            }
            have_sim = true;
            feeds.push(sim());
        } else if let Some(file) = spec.strip_prefix("replay:") {
            let feed = ReplayFeed::open(Path::new(file), speed)
                .with_context(|| format!("--feed {spec}"))?;
            feeds.push(Box::new(feed));
        } else {
            venue_specs.push(spec);
        }
    }
    for (venue, symbols) in group_specs(&venue_specs)? {
        let cfg = venue_config(venue, symbols, feed_urls, rest_urls);
        feeds.push(Box::new(VenueFeed::new(cfg)));
    }
    Ok(feeds)
}

/// `tickwire record`: runs one venue feed with a recorder until the duration ends or
/// Ctrl-C, publishing into a ring nobody reads.
pub fn record(args: RecordArgs) -> Result<()> {
    let groups = group_specs(&[args.feed.as_str()])?;
    let [(venue, symbols)] = groups.as_slice() else {
        bail!("--feed: record one venue at a time");
    };
    let feed_urls = url_map(&args.feed_url, "--feed-url")?;
    let rest_urls = url_map(&args.rest_url, "--rest-url")?;
    let cfg = venue_config(*venue, symbols.clone(), &feed_urls, &rest_urls);
    let header = Header {
        venue: *venue,
        symbols: symbols.clone(),
    };
    let recorder = Recorder::create(&args.out, &header)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut feed = VenueFeed::new(cfg).with_recorder(recorder);
    let mut registry = SymbolRegistryBuilder::new();
    let ids = feed.register(&mut registry)?;
    let mut publisher = Publisher::new(
        feed.name(),
        ids,
        registry.build().len(),
        ring::ring(1 << 12).0,
    );
    let shared = publisher.shared().clone();
    let stop = Arc::new(AtomicBool::new(false));
    let thread_stop = stop.clone();
    let worker = std::thread::Builder::new()
        .name("tickwire-record".into())
        .spawn(move || feed.run(&mut publisher, &thread_stop))?;
    tracing::info!(file = %args.out.display(), venue = venue.name(), "recording; Ctrl-C stops");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let limit = async {
            match args.duration_s {
                Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = limit => {}
        }
    });
    // Relaxed: a stop request; the feed thread is joined below.
    stop.store(true, Ordering::Relaxed);
    match worker.join() {
        Ok(result) => result?,
        Err(_) => bail!("the recording thread panicked"),
    }
    println!(
        "recorded {} messages ({} reconnects) to {}",
        shared.stats.messages.load(Ordering::Relaxed),
        shared.stats.reconnects.load(Ordering::Relaxed),
        args.out.display()
    );
    Ok(())
}

/// `tickwire mock-exchange`: serves a recording until Ctrl-C.
pub fn mock_exchange(args: MockArgs) -> Result<()> {
    let venue = Venue::from_name(&args.venue)
        .with_context(|| format!("--venue {}: use binance, coinbase or kraken", args.venue))?;
    let header = Reader::open(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?
        .header;
    if header.venue != venue {
        bail!(
            "{} is a {} recording, not {}",
            args.file.display(),
            header.venue.name(),
            venue.name()
        );
    }
    if !args.listen.ip().is_loopback() {
        bail!(
            "--listen {}: the mock exchange serves on loopback only",
            args.listen
        );
    }
    let speed: Speed = args.speed.parse().map_err(anyhow::Error::msg)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut exchange = MockExchange::bind(args.listen).await?;
        let path = match venue {
            Venue::Binance => "/stream",
            Venue::Coinbase => "/",
            Venue::Kraken => "/v2",
        };
        println!(
            "mock {} exchange: --feed {}:{} --feed-url {}={} --rest-url {}={}",
            venue.name(),
            venue.name(),
            header.symbols.join(","),
            venue.name(),
            exchange.ws_url(path),
            venue.name(),
            exchange.rest_url()
        );
        tokio::select! {
            r = mock::serve_recording(&mut exchange, &args.file, speed) => r?,
            r = tokio::signal::ctrl_c() => r?,
        }
        anyhow::Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tickwire_feeds::{SimConfig, SimFeed};

    fn sim() -> Box<dyn Feed> {
        Box::new(SimFeed::new(SimConfig::default()))
    }

    #[test]
    fn specs_group_by_venue_beside_sim() {
        let specs: Vec<String> = [
            "sim",
            "binance:BTCUSDT,ETHUSDT",
            "kraken:BTC/USD",
            "binance:SOLUSDT",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let urls = url_map(&["binance=ws://127.0.0.1:1/stream".into()], "--feed-url").unwrap();
        let feeds = build(&specs, &urls, &BTreeMap::new(), Speed::Max, sim).unwrap();
        let names: Vec<&str> = feeds.iter().map(|f| f.name()).collect();
        assert_eq!(names, ["sim", "binance", "kraken"]);
        let mut registry = SymbolRegistryBuilder::new();
        let mut all = Vec::new();
        for mut f in feeds {
            all.extend(f.register(&mut registry).unwrap());
        }
        let registry = registry.build();
        let binance: Vec<&str> = registry
            .iter()
            .filter(|s| s.venue() == "binance")
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(
            binance,
            ["binance:BTCUSDT", "binance:ETHUSDT", "binance:SOLUSDT"]
        );
        assert!(registry.lookup("kraken:BTC/USD").is_some());
    }

    #[test]
    fn bad_specs_say_what_to_write() {
        let err = |specs: &[&str]| {
            let specs: Vec<String> = specs.iter().map(|s| s.to_string()).collect();
            build(&specs, &BTreeMap::new(), &BTreeMap::new(), Speed::Max, sim)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(err(&["nasdaq:AAPL"]).contains("unknown venue"));
        assert!(err(&["binance"]).contains("VENUE:SYM1,SYM2"));
        assert!(err(&["sim", "sim"]).contains("twice"));
        assert!(err(&["replay:/nonexistent/file"]).contains("replay"));
        assert!(url_map(&["ftx=ws://x".into()], "--feed-url").is_err());
        assert!(url_map(&["binance".into()], "--feed-url").is_err());
    }
}
