//! Kraken v2 end to end: the engine with a Kraken feed against a mock exchange speaking
//! Kraken's WebSocket v2 format (our own messages), seen by a WebSocket client of the
//! engine. Checksums here are computed from the number texts with the documented
//! string rule, independently of the feed's own computation.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{engine, levels, until, Client};
use tickwire_engine::feed::FeedState;
use tickwire_feeds::mock::{MockConn, MockExchange};
use tickwire_feeds::{Venue, VenueConfig, VenueFeed};

const BTC: &str = "kraken:BTC/USD";
const ETH: &str = "kraken:ETH/USD";

type Levels<'a> = &'a [(&'a str, &'a str)];

fn config(mock: &MockExchange, stale: Duration) -> VenueConfig {
    let mut cfg = VenueConfig::new(Venue::Kraken, vec!["BTC/USD".into(), "ETH/USD".into()]);
    cfg.ws_url = mock.ws_url("/v2");
    cfg.stale_after = stale;
    cfg.book_depth = 10;
    cfg.reconnect_initial = Duration::from_millis(5);
    cfg.reconnect_max = Duration::from_millis(20);
    cfg
}

/// The documented checksum of a book given as wire texts, best first.
fn crc(asks: Levels<'_>, bids: Levels<'_>) -> u32 {
    let mut s = String::new();
    for side in [asks, bids] {
        for (p, q) in side.iter().take(10) {
            for t in [p, q] {
                s.push_str(t.replace('.', "").trim_start_matches('0'));
            }
        }
    }
    crc32fast::hash(s.as_bytes())
}

fn side_json(side: Levels<'_>) -> String {
    let v: Vec<String> = side
        .iter()
        .map(|(p, q)| format!(r#"{{"price":{p},"qty":{q}}}"#))
        .collect();
    format!("[{}]", v.join(","))
}

fn book(kind: &str, symbol: &str, bids: Levels<'_>, asks: Levels<'_>, checksum: u32) -> String {
    format!(
        r#"{{"channel":"book","type":"{kind}","data":[{{"symbol":"{symbol}","bids":{},"asks":{},"checksum":{checksum},"timestamp":"2026-01-02T03:04:05.123456Z"}}]}}"#,
        side_json(bids),
        side_json(asks)
    )
}

fn trades(kind: &str, symbol: &str, list: &[(u64, &str, &str, &str)]) -> String {
    let v: Vec<String> = list
        .iter()
        .map(|(id, side, p, q)| {
            format!(
                r#"{{"symbol":"{symbol}","side":"{side}","price":{p},"qty":{q},"ord_type":"limit","trade_id":{id},"timestamp":"2026-01-02T03:04:05.000001Z"}}"#
            )
        })
        .collect();
    format!(
        r#"{{"channel":"trade","type":"{kind}","data":[{}]}}"#,
        v.join(",")
    )
}

async fn accept(mock: &mut MockExchange) -> MockConn {
    let mut conn = tokio::time::timeout(common::DEADLINE, mock.accept())
        .await
        .expect("the feed connects")
        .expect("listener up");
    assert_eq!(conn.path(), "/v2");
    let mut channels = Vec::new();
    for _ in 0..3 {
        let sub = conn.recv_text().await.expect("a subscription");
        assert!(sub.contains(r#""method":"subscribe""#), "{sub}");
        assert!(sub.contains(r#""symbol":["BTC/USD","ETH/USD"]"#), "{sub}");
        for channel in ["trade", "ticker", "book"] {
            if sub.contains(&format!(r#""channel":"{channel}""#)) {
                channels.push(channel);
            }
        }
        if sub.contains(r#""channel":"book""#) {
            assert!(sub.contains(r#""depth":10"#), "{sub}");
        }
    }
    channels.sort();
    assert_eq!(channels, ["book", "ticker", "trade"]);
    conn.send(r#"{"channel":"status","type":"update","data":[{"api_version":"v2","connection_id":18000000000000000001,"system":"online","version":"2.0.10"}]}"#)
        .await
        .unwrap();
    conn.send(r#"{"method":"subscribe","result":{"channel":"book","depth":10,"snapshot":true,"symbol":"BTC/USD"},"success":true,"time_in":"2026-01-02T03:04:05.000000Z","time_out":"2026-01-02T03:04:05.000001Z"}"#)
        .await
        .unwrap();
    conn
}

const BTC_BIDS: Levels<'static> = &[
    ("50000.0", "1.00000000"),
    ("49999.5", "0.50000000"),
    ("49999.0", "2.25000000"),
    ("49998.0", "0.00100000"),
    ("49997.0", "3.00000000"),
    ("49996.0", "1.00000000"),
    ("49995.0", "1.00000000"),
    ("49994.0", "1.00000000"),
    ("49993.0", "1.00000000"),
    ("49992.0", "7.00000000"),
];
const BTC_ASKS: Levels<'static> = &[("50001.0", "0.30000000"), ("50002.5", "1.10000000")];

#[tokio::test]
async fn books_with_checksums_trades_tickers_resync_and_reconnect() {
    let mut mock = MockExchange::start().await.unwrap();
    let engine = engine(Box::new(VenueFeed::new(config(
        &mock,
        Duration::from_secs(30),
    ))));
    let stats = &engine.shared().feeds[0].stats;
    let mut client = Client::connect(engine.local_addr()).await;
    client.subscribe_all(&[BTC, ETH]).await;
    let mut conn = accept(&mut mock).await;

    // --- Snapshots: trades only set the starting id; books publish when checked.
    conn.send(&trades(
        "snapshot",
        "BTC/USD",
        &[
            (100, "buy", "50000.0", "0.10000000"),
            (101, "sell", "49999.5", "0.20000000"),
        ],
    ))
    .await
    .unwrap();
    conn.send(&trades(
        "snapshot",
        "ETH/USD",
        &[(500, "buy", "3000.00", "1.00000000")],
    ))
    .await
    .unwrap();
    conn.send(&book(
        "snapshot",
        "BTC/USD",
        BTC_BIDS,
        BTC_ASKS,
        crc(BTC_ASKS, BTC_BIDS),
    ))
    .await
    .unwrap();
    let eth_bids: Levels<'_> = &[("3000.00", "5.00000000")];
    let eth_asks: Levels<'_> = &[("3000.50", "4.00000000")];
    conn.send(&book(
        "snapshot",
        "ETH/USD",
        eth_bids,
        eth_asks,
        crc(eth_asks, eth_bids),
    ))
    .await
    .unwrap();
    conn.send(r#"{"channel":"heartbeat"}"#).await.unwrap();
    client
        .wait("both books", |m| {
            m.book(BTC).bids.len() == 10 && m.book(ETH).asks.len() == 1
        })
        .await;
    assert_eq!(
        client.market.book(BTC).asks,
        levels(&[("50001", "0.3"), ("50002.5", "1.1")])
    );
    assert_eq!(
        client
            .market
            .book(BTC)
            .bids
            .get("49998")
            .map(String::as_str),
        Some("0.001")
    );
    until("feed live", || stats.state() == FeedState::Live).await;
    assert!(
        client.market.trades.is_empty(),
        "history before the session is not replayed"
    );

    // --- An update: a price touched twice, a better bid pushing the 10th out of depth.
    let bids_after: Levels<'_> = &[
        ("50000.5", "0.40000000"),
        ("50000.0", "1.00000000"),
        ("49999.5", "0.50000000"),
        ("49999.0", "2.25000000"),
        ("49998.0", "0.00100000"),
        ("49997.0", "3.00000000"),
        ("49996.0", "1.00000000"),
        ("49995.0", "1.00000000"),
        ("49994.0", "1.00000000"),
        ("49993.0", "1.00000000"),
    ];
    let asks_after: Levels<'_> = &[("50001.0", "0.35000000"), ("50002.5", "1.10000000")];
    let update = book(
        "update",
        "BTC/USD",
        &[("50000.5", "0.40000000")],
        &[("50001.0", "0.10000000"), ("50001.0", "0.35000000")],
        crc(asks_after, bids_after),
    );
    conn.send(&update).await.unwrap();
    client
        .wait("update applied", |m| {
            m.book(BTC).bids.contains_key("50000.5")
        })
        .await;
    let btc = client.market.book(BTC);
    assert_eq!(btc.bids.len(), 10);
    assert!(!btc.bids.contains_key("49992"), "cut to depth");
    assert_eq!(btc.asks.get("50001").map(String::as_str), Some("0.35"));
    assert_eq!(stats.checksum_failures.load(Ordering::Relaxed), 0);

    // --- Trades and the ticker.
    conn.send(&trades(
        "update",
        "BTC/USD",
        &[(102, "sell", "50000.0", "0.25000000")],
    ))
    .await
    .unwrap();
    conn.send(&trades(
        "update",
        "ETH/USD",
        &[(501, "buy", "3000.50", "0.01000000")],
    ))
    .await
    .unwrap();
    conn.send(r#"{"channel":"ticker","type":"update","data":[{"symbol":"ETH/USD","bid":3000.10,"bid_qty":2.50000000,"ask":3000.50,"ask_qty":4.00000000,"last":3000.50,"volume":100.00000000,"vwap":3000.0,"low":2900.0,"high":3100.0,"change":1.0,"change_pct":0.03,"trades":1234}]}"#)
        .await
        .unwrap();
    client
        .wait("trades and ticker", |m| {
            m.trades.len() == 2 && m.ticker(ETH, "bid") == Some("3000.1")
        })
        .await;
    let t = client.market.trades_of(BTC)[0].clone();
    assert_eq!(
        (
            t.seq,
            t.price.as_str(),
            t.size.as_str(),
            t.side.as_str(),
            t.trade_id.as_str()
        ),
        (1, "50000", "0.25", "sell", "102")
    );
    let t = client.market.trades_of(ETH)[0].clone();
    assert_eq!(
        (
            t.seq,
            t.price.as_str(),
            t.size.as_str(),
            t.side.as_str(),
            t.trade_id.as_str()
        ),
        (1, "3000.5", "0.01", "buy", "501")
    );
    assert_eq!(client.market.ticker(ETH, "bid_size"), Some("2.5"));

    // --- Malformed and unknown frames.
    conn.send(
        r#"{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":1e,"qty"#,
    )
    .await
    .unwrap();
    conn.send(r#"{"channel":"ohlc","type":"update","data":[{"symbol":"BTC/USD","open":1.0}]}"#)
        .await
        .unwrap();
    conn.send(r#"{"error":"Currency pair not supported XBT/USD","method":"subscribe","success":false,"symbol":"XBT/USD"}"#)
        .await
        .unwrap();

    // --- A bad checksum on BTC: BTC alone resubscribes; ETH keeps flowing.
    conn.send(&book(
        "update",
        "BTC/USD",
        &[("49999.5", "0.60000000")],
        &[],
        12345,
    ))
    .await
    .unwrap();
    let unsub = conn.recv_text().await.unwrap();
    let resub = conn.recv_text().await.unwrap();
    assert!(
        unsub.contains(r#""method":"unsubscribe""#) && unsub.contains(r#""symbol":["BTC/USD"]"#),
        "{unsub}"
    );
    assert!(
        resub.contains(r#""method":"subscribe""#)
            && resub.contains(r#""symbol":["BTC/USD"]"#)
            && resub.contains(r#""channel":"book""#),
        "{resub}"
    );
    assert_eq!(stats.checksum_failures.load(Ordering::Relaxed), 1);
    until("resyncing", || stats.state() == FeedState::Resyncing).await;
    // Updates for BTC before its snapshot are ignored.
    conn.send(&book("update", "BTC/USD", &[("1.0", "1.00000000")], &[], 0))
        .await
        .unwrap();
    let eth_bids2: Levels<'_> = &[("3000.25", "1.50000000"), ("3000.00", "5.00000000")];
    conn.send(&book(
        "update",
        "ETH/USD",
        &[("3000.25", "1.50000000")],
        &[],
        crc(eth_asks, eth_bids2),
    ))
    .await
    .unwrap();
    conn.send(&trades(
        "update",
        "ETH/USD",
        &[(502, "sell", "3000.00", "0.50000000")],
    ))
    .await
    .unwrap();
    client
        .wait("ETH flowing during the BTC resync", |m| {
            m.trades_of(ETH).len() == 2 && m.book(ETH).bids.contains_key("3000.25")
        })
        .await;
    let fresh_bids: Levels<'_> = &[("49990.0", "1.00000000")];
    let fresh_asks: Levels<'_> = &[("49991.0", "2.00000000")];
    conn.send(&book(
        "snapshot",
        "BTC/USD",
        fresh_bids,
        fresh_asks,
        crc(fresh_asks, fresh_bids),
    ))
    .await
    .unwrap();
    client
        .wait("fresh BTC book", |m| {
            m.book(BTC).bids == levels(&[("49990", "1")])
        })
        .await;
    assert_eq!(client.market.book(BTC).asks, levels(&[("49991", "2")]));
    until("live again", || stats.state() == FeedState::Live).await;
    assert_eq!(stats.decode_errors.load(Ordering::Relaxed), 1);
    assert_eq!(stats.checksum_failures.load(Ordering::Relaxed), 1);

    // --- The connection drops: the trade snapshot on resubscribing fills what it can.
    drop(conn);
    let mut conn = accept(&mut mock).await;
    until("one reconnect", || {
        stats.reconnects.load(Ordering::Relaxed) == 1
    })
    .await;
    // 102 was seen; 103 is lost for good; 104 and 105 are recovered from the snapshot.
    conn.send(&trades(
        "snapshot",
        "BTC/USD",
        &[
            (101, "sell", "49999.5", "0.20000000"),
            (102, "sell", "50000.0", "0.25000000"),
            (104, "buy", "49991.0", "0.01000000"),
            (105, "buy", "49991.0", "0.02000000"),
        ],
    ))
    .await
    .unwrap();
    conn.send(&book(
        "snapshot",
        "BTC/USD",
        fresh_bids,
        fresh_asks,
        crc(fresh_asks, fresh_bids),
    ))
    .await
    .unwrap();
    conn.send(&book(
        "snapshot",
        "ETH/USD",
        eth_bids2,
        eth_asks,
        crc(eth_asks, eth_bids2),
    ))
    .await
    .unwrap();
    client
        .wait("recovered trades", |m| m.trades_of(BTC).len() == 3)
        .await;
    let seqs: Vec<(u64, String)> = client
        .market
        .trades_of(BTC)
        .iter()
        .map(|t| (t.seq, t.trade_id.clone()))
        .collect();
    assert_eq!(
        seqs,
        [
            (1, "102".to_string()),
            (3, "104".to_string()),
            (4, "105".to_string())
        ]
    );
    assert_eq!(stats.trades_missed.load(Ordering::Relaxed), 1);
    let gaps: Vec<_> = client
        .market
        .gaps
        .iter()
        .map(|g| (g.symbol.as_str(), g.from_seq, g.to_seq))
        .collect();
    assert_eq!(gaps, [(BTC, 2, 2)], "the missed trade is told as a gap");
    until("live after reconnect", || stats.state() == FeedState::Live).await;
    engine.shutdown();
}

#[tokio::test]
async fn a_silent_connection_is_replaced() {
    let mut mock = MockExchange::start().await.unwrap();
    let engine = engine(Box::new(VenueFeed::new(config(
        &mock,
        Duration::from_millis(300),
    ))));
    let stats = &engine.shared().feeds[0].stats;
    let first = accept(&mut mock).await;
    let _second = accept(&mut mock).await;
    until("one reconnect", || {
        stats.reconnects.load(Ordering::Relaxed) == 1
    })
    .await;
    drop(first);
    engine.shutdown();
}
