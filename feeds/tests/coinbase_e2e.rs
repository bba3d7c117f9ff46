//! Coinbase Exchange end to end: the engine with a Coinbase feed against a mock exchange
//! speaking Coinbase's WebSocket format (our own messages), seen by a WebSocket client
//! of the engine.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{engine, levels, until, Client};
use tickwire_engine::feed::FeedState;
use tickwire_feeds::mock::{MockConn, MockExchange};
use tickwire_feeds::{Venue, VenueConfig, VenueFeed};

const BTC: &str = "coinbase:BTC-USD";
const ETH: &str = "coinbase:ETH-USD";

fn config(mock: &MockExchange, stale: Duration) -> VenueConfig {
    let mut cfg = VenueConfig::new(Venue::Coinbase, vec!["BTC-USD".into(), "ETH-USD".into()]);
    cfg.ws_url = mock.ws_url("/");
    cfg.stale_after = stale;
    cfg.reconnect_initial = Duration::from_millis(5);
    cfg.reconnect_max = Duration::from_millis(20);
    cfg
}

fn trade(kind: &str, product: &str, id: u64, maker_side: &str, price: &str, size: &str) -> String {
    format!(
        r#"{{"type":"{kind}","trade_id":{id},"maker_order_id":"m-{id}","taker_order_id":"t-{id}","side":"{maker_side}","size":"{size}","price":"{price}","product_id":"{product}","sequence":{},"time":"2025-03-04T05:06:07.123456Z"}}"#,
        id * 7
    )
}

fn l2(product: &str, changes: &str) -> String {
    format!(
        r#"{{"type":"l2update","product_id":"{product}","changes":[{changes}],"time":"2025-03-04T05:06:07.200Z"}}"#
    )
}

fn heartbeat(product: &str, last_trade_id: u64) -> String {
    format!(
        r#"{{"type":"heartbeat","last_trade_id":{last_trade_id},"product_id":"{product}","sequence":999,"time":"2025-03-04T05:06:08.000001Z"}}"#
    )
}

async fn accept(mock: &mut MockExchange) -> MockConn {
    let mut conn = tokio::time::timeout(common::DEADLINE, mock.accept())
        .await
        .expect("the feed connects")
        .expect("listener up");
    let sub = conn.recv_text().await.expect("a subscription");
    assert!(sub.contains(r#""type":"subscribe""#), "{sub}");
    assert!(
        sub.contains(r#""product_ids":["BTC-USD","ETH-USD"]"#),
        "{sub}"
    );
    for channel in ["heartbeat", "ticker", "matches", "level2_batch"] {
        assert!(sub.contains(&format!("\"{channel}\"")), "{sub}");
    }
    conn.send(r#"{"type":"subscriptions","channels":[{"name":"level2_batch","product_ids":["BTC-USD","ETH-USD"]},{"name":"matches","product_ids":["BTC-USD","ETH-USD"]}]}"#)
        .await
        .unwrap();
    conn
}

#[tokio::test]
async fn books_trades_tickers_trade_id_gaps_resync_and_reconnect() {
    let mut mock = MockExchange::start().await.unwrap();
    let engine = engine(Box::new(VenueFeed::new(config(
        &mock,
        Duration::from_secs(30),
    ))));
    let stats = &engine.shared().feeds[0].stats;
    let mut client = Client::connect(engine.local_addr()).await;
    client.subscribe_all(&[BTC, ETH]).await;
    let mut conn = accept(&mut mock).await;

    // --- Start: last_match is history; snapshots make the books.
    conn.send(&trade(
        "last_match",
        "BTC-USD",
        10,
        "buy",
        "10101.10",
        "0.5",
    ))
    .await
    .unwrap();
    conn.send(&trade("last_match", "ETH-USD", 50, "buy", "2000.00", "1"))
        .await
        .unwrap();
    conn.send(r#"{"type":"snapshot","product_id":"BTC-USD","bids":[["10101.10","0.45054140"],["10100.00","2.0"]],"asks":[["10102.55","0.57753524"]]}"#)
        .await
        .unwrap();
    conn.send(r#"{"type":"snapshot","product_id":"ETH-USD","bids":[["2000.00","3.5"]],"asks":[["2000.50","1.25"]]}"#)
        .await
        .unwrap();
    client
        .wait("books", |m| {
            m.book(BTC).bids.len() == 2 && m.book(ETH).asks.len() == 1
        })
        .await;
    assert_eq!(
        client.market.book(BTC).bids,
        levels(&[("10101.1", "0.4505414"), ("10100", "2")])
    );
    until("feed live", || stats.state() == FeedState::Live).await;

    // --- Updates: absolute sizes, zero removes, unnormalised price texts.
    conn.send(&l2("BTC-USD", r#"["buy","10101.80000000","0.162567"],["sell","10102.550000","0.00000000"],["sell","10103.00","1.5"]"#))
        .await
        .unwrap();
    client
        .wait("update", |m| m.book(BTC).asks.contains_key("10103"))
        .await;
    let btc = client.market.book(BTC);
    assert_eq!(btc.asks, levels(&[("10103", "1.5")]));
    assert_eq!(
        btc.bids.get("10101.8").map(String::as_str),
        Some("0.162567")
    );

    // --- Matches: the maker's side, so a maker sell is a buy.
    conn.send(&trade(
        "match",
        "BTC-USD",
        11,
        "sell",
        "10103.00",
        "0.01000000",
    ))
    .await
    .unwrap();
    conn.send(&trade("match", "ETH-USD", 51, "buy", "2000.00", "0.25"))
        .await
        .unwrap();
    conn.send(r#"{"type":"ticker","sequence":1,"product_id":"ETH-USD","price":"2000.00","open_24h":"1","volume_24h":"2","low_24h":"1","high_24h":"3","volume_30d":"4","best_bid":"2000.00","best_bid_size":"3.25","best_ask":"2000.40","best_ask_size":"0.75","side":"sell","time":"2025-03-04T05:06:07.300000Z","trade_id":51,"last_size":"0.25"}"#)
        .await
        .unwrap();
    client
        .wait("trades and ticker", |m| {
            m.trades.len() == 2 && m.ticker(ETH, "ask") == Some("2000.4")
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
        (1, "10103", "0.01", "buy", "11")
    );
    let t = client.market.trades_of(ETH)[0].clone();
    assert_eq!(
        (t.seq, t.side.as_str(), t.trade_id.as_str()),
        (1, "sell", "51")
    );
    assert_eq!(client.market.ticker(ETH, "bid_size"), Some("3.25"));

    // --- Trade-id continuity: a heartbeat ahead, and a jump, are skipped seqs.
    conn.send(&heartbeat("BTC-USD", 11)).await.unwrap();
    conn.send(&heartbeat("BTC-USD", 13)).await.unwrap();
    conn.send(&trade("match", "BTC-USD", 14, "buy", "10101.80", "0.1"))
        .await
        .unwrap();
    conn.send(&trade("match", "ETH-USD", 53, "sell", "2000.40", "0.2"))
        .await
        .unwrap();
    conn.send(&trade("match", "ETH-USD", 53, "sell", "2000.40", "0.2"))
        .await
        .unwrap();
    client.wait("after the gaps", |m| m.trades.len() == 4).await;
    assert_eq!(client.market.trades_of(BTC)[1].seq, 4, "12 and 13 skipped");
    assert_eq!(
        client.market.trades_of(ETH)[1].seq,
        3,
        "52 skipped; the repeat of 53 dropped"
    );
    assert_eq!(stats.trades_missed.load(Ordering::Relaxed), 3);

    // --- Malformed frames.
    conn.send(r#"{"type":"match","trade_id":"#).await.unwrap();
    conn.send(r#"{"type":"auction","product_id":"BTC-USD"}"#)
        .await
        .unwrap();
    conn.send(r#"{"type":"error","message":"Failed to subscribe","reason":"nope"}"#)
        .await
        .unwrap();

    // --- A crossed BTC book: BTC alone resubscribes its level2_batch; ETH flows on.
    conn.send(&l2("BTC-USD", r#"["buy","10104.00","1.0"]"#))
        .await
        .unwrap();
    let unsub = conn.recv_text().await.unwrap();
    let resub = conn.recv_text().await.unwrap();
    assert_eq!(
        unsub,
        r#"{"type":"unsubscribe","product_ids":["BTC-USD"],"channels":["level2_batch"]}"#
    );
    assert_eq!(
        resub,
        r#"{"type":"subscribe","product_ids":["BTC-USD"],"channels":["level2_batch"]}"#
    );
    until("resyncing", || stats.state() == FeedState::Resyncing).await;
    conn.send(&l2("BTC-USD", r#"["buy","1.00","1.0"]"#))
        .await
        .unwrap();
    conn.send(&l2("ETH-USD", r#"["buy","2000.10","0.5"]"#))
        .await
        .unwrap();
    conn.send(&trade("match", "ETH-USD", 54, "buy", "2000.10", "0.5"))
        .await
        .unwrap();
    client
        .wait("ETH during the BTC resync", |m| {
            m.trades_of(ETH).len() == 3 && m.book(ETH).bids.contains_key("2000.1")
        })
        .await;
    conn.send(r#"{"type":"snapshot","product_id":"BTC-USD","bids":[["10090.00","1.0"]],"asks":[["10095.00","2.0"]]}"#)
        .await
        .unwrap();
    client
        .wait("fresh BTC book", |m| {
            m.book(BTC).bids == levels(&[("10090", "1")])
        })
        .await;
    assert_eq!(client.market.book(BTC).asks, levels(&[("10095", "2")]));
    until("live again", || stats.state() == FeedState::Live).await;
    assert_eq!(stats.decode_errors.load(Ordering::Relaxed), 1);

    // --- The connection drops: last_match after resubscribing tells what was lost.
    drop(conn);
    let mut conn = accept(&mut mock).await;
    until("one reconnect", || {
        stats.reconnects.load(Ordering::Relaxed) == 1
    })
    .await;
    conn.send(&trade(
        "last_match",
        "BTC-USD",
        20,
        "sell",
        "10095.00",
        "0.3",
    ))
    .await
    .unwrap();
    conn.send(r#"{"type":"snapshot","product_id":"BTC-USD","bids":[["10090.00","1.0"]],"asks":[["10095.00","1.7"]]}"#)
        .await
        .unwrap();
    conn.send(r#"{"type":"snapshot","product_id":"ETH-USD","bids":[["2000.00","3.5"]],"asks":[["2000.50","1.25"]]}"#)
        .await
        .unwrap();
    client
        .wait("the trade after the outage", |m| {
            m.trades_of(BTC).len() == 3
        })
        .await;
    let t = client.market.trades_of(BTC)[2].clone();
    assert_eq!(
        (t.seq, t.trade_id.as_str(), t.side.as_str()),
        (10, "20", "buy"),
        "15..=19 skipped"
    );
    let gaps: Vec<_> = client
        .market
        .gaps
        .iter()
        .filter(|g| g.symbol == BTC)
        .map(|g| (g.from_seq, g.to_seq))
        .collect();
    assert_eq!(
        gaps,
        [(2, 3), (5, 9)],
        "every missed trade is told as a gap"
    );
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
