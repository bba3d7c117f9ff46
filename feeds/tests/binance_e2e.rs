//! Binance end to end: the engine with a Binance feed against a mock exchange speaking
//! Binance's combined-stream and REST formats (our own messages), seen by a WebSocket
//! client of the engine.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{engine, levels, until, Client};
use tickwire_engine::feed::FeedState;
use tickwire_feeds::mock::{MockConn, MockExchange};
use tickwire_feeds::{Venue, VenueConfig, VenueFeed};

const BTC: &str = "binance:BTCUSDT";
const ETH: &str = "binance:ETHUSDT";

fn config(mock: &MockExchange, stale: Duration) -> VenueConfig {
    let mut cfg = VenueConfig::new(Venue::Binance, vec!["BTCUSDT".into(), "ETHUSDT".into()]);
    cfg.ws_url = mock.ws_url("/stream");
    cfg.rest_url = mock.rest_url();
    cfg.stale_after = stale;
    cfg.reconnect_initial = Duration::from_millis(5);
    cfg.reconnect_max = Duration::from_millis(20);
    cfg
}

fn trade(symbol: &str, id: u64, price: &str, qty: &str, buyer_maker: bool) -> String {
    format!(
        r#"{{"stream":"{}@trade","data":{{"e":"trade","E":1700000000100,"s":"{symbol}","t":{id},"p":"{price}","q":"{qty}","T":1700000000099,"m":{buyer_maker},"M":true}}}}"#,
        symbol.to_ascii_lowercase()
    )
}

fn depth(symbol: &str, first: u64, last: u64, bids: &str, asks: &str) -> String {
    format!(
        r#"{{"stream":"{}@depth@100ms","data":{{"e":"depthUpdate","E":1700000000200,"s":"{symbol}","U":{first},"u":{last},"b":[{bids}],"a":[{asks}]}}}}"#,
        symbol.to_ascii_lowercase()
    )
}

fn snapshot(last: u64, bids: &str, asks: &str) -> String {
    format!(r#"{{"lastUpdateId":{last},"bids":[{bids}],"asks":[{asks}]}}"#)
}

/// Accepts the feed's connection and checks its subscription.
async fn accept(mock: &mut MockExchange) -> MockConn {
    let mut conn = tokio::time::timeout(common::DEADLINE, mock.accept())
        .await
        .expect("the feed connects")
        .expect("listener up");
    assert_eq!(conn.path(), "/stream");
    let sub = conn.recv_text().await.expect("a subscription");
    for stream in [
        "btcusdt@trade",
        "btcusdt@bookTicker",
        "btcusdt@depth@100ms",
        "ethusdt@trade",
        "ethusdt@depth@100ms",
    ] {
        assert!(sub.contains(&format!("\"{stream}\"")), "{sub}");
    }
    assert!(
        sub.starts_with(r#"{"method":"SUBSCRIBE","params":["#),
        "{sub}"
    );
    conn.send(r#"{"result":null,"id":1}"#).await.unwrap();
    conn
}

#[tokio::test]
async fn books_trades_tickers_through_gaps_bad_frames_and_a_dropped_connection() {
    let mut mock = MockExchange::start().await.unwrap();
    let engine = engine(Box::new(VenueFeed::new(config(
        &mock,
        Duration::from_secs(30),
    ))));
    let stats = &engine.shared().feeds[0].stats;
    let mut client = Client::connect(engine.local_addr()).await;
    client.subscribe_all(&[BTC, ETH]).await;

    // --- Sync: buffered diffs, the REST snapshot, the U/u rules.
    let mut conn = accept(&mut mock).await;
    mock.push_rest(
        "BTCUSDT",
        snapshot(
            100,
            r#"["67000.10000000","1.50000000"],["67000.00000000","2.00000000"]"#,
            r#"["67000.20000000","0.75000000"],["67001.00000000","4.00000000"]"#,
        ),
    );
    mock.push_rest(
        "ETHUSDT",
        snapshot(
            500,
            r#"["3500.00000000","10.00000000"]"#,
            r#"["3500.50000000","1.00000000"]"#,
        ),
    );
    // Already in the snapshot: dropped.
    conn.send(&depth(
        "BTCUSDT",
        95,
        100,
        r#"["1.00000000","1.00000000"]"#,
        "",
    ))
    .await
    .unwrap();
    // Straddles lastUpdateId + 1: applied.
    conn.send(&depth(
        "BTCUSDT",
        99,
        102,
        r#"["67000.10000000","0.00000000"],["66999.90000000","3.00000000"]"#,
        "",
    ))
    .await
    .unwrap();
    conn.send(&depth(
        "ETHUSDT",
        501,
        501,
        "",
        r#"["3500.50000000","0.25000000"]"#,
    ))
    .await
    .unwrap();
    client
        .wait("both books in sync", |m| {
            // The straddling diff, not just the snapshot (which also has two bids): the
            // snapshot can reach the client a frame before the diff applied on it.
            m.book(BTC).bids.get("66999.9").map(String::as_str) == Some("3")
                && m.book(ETH).asks.get("3500.5").map(String::as_str) == Some("0.25")
        })
        .await;
    let btc = client.market.book(BTC);
    assert_eq!(btc.bids, levels(&[("67000", "2"), ("66999.9", "3")]));
    assert_eq!(btc.asks, levels(&[("67000.2", "0.75"), ("67001", "4")]));
    assert_eq!(mock.rest_requests("BTCUSDT"), 1);
    until("feed live", || stats.state() == FeedState::Live).await;

    // --- Trades: exact prices, sizes, sides, ids; seqs per symbol.
    conn.send(&trade(
        "BTCUSDT",
        1000,
        "67000.20000000",
        "0.01000000",
        false,
    ))
    .await
    .unwrap();
    conn.send(&trade("ETHUSDT", 2000, "3500.00000000", "1.25000000", true))
        .await
        .unwrap();
    client.wait("two trades", |m| m.trades.len() == 2).await;
    let t = client.market.trades_of(BTC)[0].clone();
    assert_eq!(
        (
            t.seq,
            t.price.as_str(),
            t.size.as_str(),
            t.side.as_str(),
            t.trade_id.as_str()
        ),
        (1, "67000.2", "0.01", "buy", "1000")
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
        (1, "3500", "1.25", "sell", "2000")
    );

    // --- bookTicker moves the ticker's best bid/ask.
    conn.send(r#"{"stream":"btcusdt@bookTicker","data":{"u":103,"s":"BTCUSDT","b":"67000.10000000","B":"0.50000000","a":"67000.20000000","A":"0.75000000"}}"#)
        .await
        .unwrap();
    client
        .wait("ticker from bookTicker", |m| {
            m.ticker(BTC, "bid") == Some("67000.1")
        })
        .await;
    assert_eq!(client.market.ticker(BTC, "bid_size"), Some("0.5"));
    assert_eq!(client.market.ticker(BTC, "last"), Some("67000.2"));

    // --- Malformed frames are counted, skipped, never fatal; unknown ones ignored.
    conn.send(r#"{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT","t":"#)
        .await
        .unwrap();
    conn.send("not json at all").await.unwrap();
    conn.send(r#"{"stream":"btcusdt@kline_1m","data":{"e":"kline","s":"BTCUSDT","k":{}}}"#)
        .await
        .unwrap();
    conn.send(
        &trade("BTCUSDT", 1001, "67000.30000000", "0.02000000", true)
            .replace("\"M\":true", "\"M\":true,\"X\":\"new\""),
    )
    .await
    .unwrap();
    client
        .wait("trade after bad frames", |m| m.trades.len() == 3)
        .await;
    assert_eq!(stats.decode_errors.load(Ordering::Relaxed), 2);
    assert_eq!(client.market.trades_of(BTC)[1].seq, 2);

    // --- A depth gap on BTC: BTC alone resyncs, ETH keeps flowing on the connection.
    conn.send(&depth(
        "BTCUSDT",
        110,
        111,
        r#"["66000.00000000","1.00000000"]"#,
        "",
    ))
    .await
    .unwrap();
    until("the gap seen", || stats.gaps.load(Ordering::Relaxed) == 1).await;
    until("BTC refetching", || mock.rest_requests("BTCUSDT") == 2).await;
    assert_eq!(stats.state(), FeedState::Resyncing);
    conn.send(&trade(
        "ETHUSDT",
        2001,
        "3501.00000000",
        "0.10000000",
        false,
    ))
    .await
    .unwrap();
    conn.send(&depth(
        "ETHUSDT",
        502,
        502,
        r#"["3500.00000000","9.00000000"]"#,
        "",
    ))
    .await
    .unwrap();
    client
        .wait("ETH flowing while BTC resyncs", |m| {
            m.trades_of(ETH).len() == 2
                && m.book(ETH).bids.get("3500").map(String::as_str) == Some("9")
        })
        .await;
    // The fresh snapshot (which already holds the buffered 110..111) replaces the book.
    mock.push_rest(
        "BTCUSDT",
        snapshot(
            112,
            r#"["66000.00000000","1.00000000"]"#,
            r#"["66100.00000000","2.00000000"]"#,
        ),
    );
    conn.send(&depth(
        "BTCUSDT",
        112,
        113,
        "",
        r#"["66100.00000000","2.50000000"]"#,
    ))
    .await
    .unwrap();
    client
        .wait("BTC book rebuilt", |m| {
            m.book(BTC).asks == levels(&[("66100", "2.5")])
        })
        .await;
    assert_eq!(client.market.book(BTC).bids, levels(&[("66000", "1")]));
    until("feed live again", || stats.state() == FeedState::Live).await;
    assert!(stats.resyncs.load(Ordering::Relaxed) >= 1);

    // --- The connection drops: reconnect, resubscribe, resync, missed trades skipped.
    drop(conn);
    let mut conn = accept(&mut mock).await;
    until("one reconnect", || {
        stats.reconnects.load(Ordering::Relaxed) == 1
    })
    .await;
    mock.push_rest(
        "BTCUSDT",
        snapshot(
            200,
            r#"["65000.00000000","1.00000000"]"#,
            r#"["65001.00000000","1.00000000"]"#,
        ),
    );
    mock.push_rest(
        "ETHUSDT",
        snapshot(
            600,
            r#"["3400.00000000","1.00000000"]"#,
            r#"["3401.00000000","1.00000000"]"#,
        ),
    );
    conn.send(&depth(
        "BTCUSDT",
        201,
        201,
        r#"["65000.50000000","0.50000000"]"#,
        "",
    ))
    .await
    .unwrap();
    conn.send(&depth(
        "ETHUSDT",
        601,
        601,
        "",
        r#"["3401.00000000","0.50000000"]"#,
    ))
    .await
    .unwrap();
    // Trades 1002..=1004 were lost with the connection.
    conn.send(&trade(
        "BTCUSDT",
        1005,
        "65000.50000000",
        "0.30000000",
        false,
    ))
    .await
    .unwrap();
    client
        .wait("books resynced and the next trade", |m| {
            m.book(BTC).bids.len() == 2
                && m.book(ETH).asks.get("3401").map(String::as_str) == Some("0.5")
                && m.trades_of(BTC).len() == 3
        })
        .await;
    assert_eq!(
        client.market.book(BTC).bids,
        levels(&[("65000.5", "0.5"), ("65000", "1")])
    );
    assert_eq!(client.market.book(BTC).asks, levels(&[("65001", "1")]));
    let after = client.market.trades_of(BTC)[2].clone();
    assert_eq!(
        (after.seq, after.trade_id.as_str()),
        (6, "1005"),
        "three seqs skipped for trades 1002..=1004"
    );
    assert_eq!(stats.trades_missed.load(Ordering::Relaxed), 3);
    // The client was told of exactly the skipped seqs, before the next trade.
    let gaps: Vec<_> = client
        .market
        .gaps
        .iter()
        .map(|g| (g.symbol.as_str(), g.from_seq, g.to_seq))
        .collect();
    assert_eq!(gaps, [("binance:BTCUSDT", 3, 5)]);
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
    // Nothing more on `first`: the feed must give up on it and connect again.
    let _second = accept(&mut mock).await;
    until("one reconnect", || {
        stats.reconnects.load(Ordering::Relaxed) == 1
    })
    .await;
    drop(first);
    engine.shutdown();
}

#[tokio::test]
async fn make_before_break_replaces_the_connection_without_a_gap() {
    let mut mock = MockExchange::start().await.unwrap();
    let mut cfg = config(&mock, Duration::from_secs(30));
    cfg.max_connection_age = Some(Duration::from_millis(300));
    let engine = engine(Box::new(VenueFeed::new(cfg)));
    let stats = &engine.shared().feeds[0].stats;
    let mut client = Client::connect(engine.local_addr()).await;
    client.subscribe_all(&[BTC, ETH]).await;
    let mut old = accept(&mut mock).await;
    mock.push_rest(
        "BTCUSDT",
        snapshot(
            100,
            r#"["100.00000000","1.00000000"]"#,
            r#"["101.00000000","1.00000000"]"#,
        ),
    );
    mock.push_rest(
        "ETHUSDT",
        snapshot(
            500,
            r#"["10.00000000","1.00000000"]"#,
            r#"["11.00000000","1.00000000"]"#,
        ),
    );
    old.send(&depth(
        "BTCUSDT",
        101,
        101,
        r#"["99.00000000","1.00000000"]"#,
        "",
    ))
    .await
    .unwrap();
    old.send(&depth(
        "ETHUSDT",
        501,
        501,
        r#"["9.00000000","1.00000000"]"#,
        "",
    ))
    .await
    .unwrap();
    old.send(&trade("BTCUSDT", 1, "100.00000000", "0.10000000", true))
        .await
        .unwrap();
    client
        .wait("books and a trade", |m| {
            m.book(BTC).bids.len() == 2 && m.book(ETH).bids.len() == 2 && m.trades.len() == 1
        })
        .await;

    // The replacement opens while the old connection still serves.
    let mut new = accept(&mut mock).await;
    // Ahead of the current state on the new one: left to the old one.
    new.send(&trade("BTCUSDT", 3, "100.30000000", "0.10000000", true))
        .await
        .unwrap();
    new.send(&depth(
        "BTCUSDT",
        103,
        103,
        r#"["98.00000000","3.00000000"]"#,
        "",
    ))
    .await
    .unwrap();
    old.send(&trade("BTCUSDT", 2, "100.20000000", "0.10000000", true))
        .await
        .unwrap();
    old.send(&depth(
        "BTCUSDT",
        102,
        102,
        r#"["98.50000000","2.00000000"]"#,
        "",
    ))
    .await
    .unwrap();
    old.send(&trade("BTCUSDT", 3, "100.30000000", "0.10000000", true))
        .await
        .unwrap();
    old.send(&depth(
        "BTCUSDT",
        103,
        103,
        r#"["98.00000000","3.00000000"]"#,
        "",
    ))
    .await
    .unwrap();
    client
        .wait("three trades", |m| {
            m.trades_of(BTC).len() == 3 && m.book(BTC).bids.len() == 4
        })
        .await;
    // The new one repeats what the books hold: caught up, it takes over.
    new.send(&depth(
        "BTCUSDT",
        103,
        103,
        r#"["98.00000000","3.00000000"]"#,
        "",
    ))
    .await
    .unwrap();
    new.send(&depth(
        "ETHUSDT",
        501,
        501,
        r#"["9.00000000","1.00000000"]"#,
        "",
    ))
    .await
    .unwrap();
    let closed = tokio::time::timeout(common::DEADLINE, old.recv_text())
        .await
        .expect("the old connection is closed");
    assert_eq!(closed, None);
    new.send(&trade("BTCUSDT", 4, "100.40000000", "0.10000000", false))
        .await
        .unwrap();
    new.send(&depth(
        "BTCUSDT",
        104,
        104,
        r#"["97.00000000","4.00000000"]"#,
        "",
    ))
    .await
    .unwrap();
    client
        .wait("flowing on the new connection", |m| {
            m.trades_of(BTC).len() == 4 && m.book(BTC).bids.len() == 5
        })
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
            (1, "1".to_string()),
            (2, "2".to_string()),
            (3, "3".to_string()),
            (4, "4".to_string())
        ]
    );
    assert!(client.market.gaps.is_empty());
    assert_eq!(stats.gaps.load(Ordering::Relaxed), 0);
    assert_eq!(stats.trades_missed.load(Ordering::Relaxed), 0);
    assert_eq!(stats.resyncs.load(Ordering::Relaxed), 0);
    assert_eq!(stats.reconnects.load(Ordering::Relaxed), 0);
    assert_eq!(mock.rest_requests("BTCUSDT"), 1, "no refetch");
    engine.shutdown();
}
