//! Record then replay: a Binance session recorded live (through a reconnect) and
//! replayed from the file gives a client of the engine the same messages.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{engine, until, Client};
use tickwire_engine::feed::FeedState;
use tickwire_feeds::mock::MockExchange;
use tickwire_feeds::record::{Header, Recorder, Speed};
use tickwire_feeds::{ReplayFeed, Venue, VenueConfig, VenueFeed};

const BTC: &str = "binance:BTCUSDT";

fn trade(id: u64, price: &str, buyer_maker: bool) -> String {
    format!(
        r#"{{"stream":"btcusdt@trade","data":{{"e":"trade","E":1700000000100,"s":"BTCUSDT","t":{id},"p":"{price}","q":"0.50000000","T":17000000{id},"m":{buyer_maker}}}}}"#
    )
}

fn depth(first: u64, last: u64, bids: &str) -> String {
    format!(
        r#"{{"stream":"btcusdt@depth@100ms","data":{{"e":"depthUpdate","E":1700000000200,"s":"BTCUSDT","U":{first},"u":{last},"b":[{bids}],"a":[]}}}}"#
    )
}

#[tokio::test]
async fn a_recorded_session_replays_identically() {
    let path = std::env::temp_dir().join(format!("tickwire-record-{}.rec", std::process::id()));
    let mut mock = MockExchange::start().await.unwrap();
    let mut cfg = VenueConfig::new(Venue::Binance, vec!["BTCUSDT".into()]);
    cfg.ws_url = mock.ws_url("/stream");
    cfg.rest_url = mock.rest_url();
    cfg.reconnect_initial = Duration::from_millis(5);
    let header = Header {
        venue: Venue::Binance,
        symbols: cfg.symbols.clone(),
    };
    let feed = VenueFeed::new(cfg.clone()).with_recorder(Recorder::create(&path, &header).unwrap());
    let live = engine(Box::new(feed));
    let mut client = Client::connect(live.local_addr()).await;
    client.subscribe_all(&[BTC]).await;

    let mut conn = mock.accept().await.unwrap();
    conn.recv_text().await.unwrap();
    mock.push_rest("BTCUSDT", r#"{"lastUpdateId":10,"bids":[["100.00000000","1.00000000"]],"asks":[["101.00000000","1.00000000"]]}"#);
    conn.send(&depth(9, 11, r#"["99.50000000","2.00000000"]"#))
        .await
        .unwrap();
    conn.send(&trade(1, "100.00000000", true)).await.unwrap();
    conn.send(&depth(12, 12, r#"["100.00000000","0.00000000"]"#))
        .await
        .unwrap();
    conn.send(&trade(2, "101.00000000", false)).await.unwrap();
    conn.send("garbage").await.unwrap();
    client
        .wait("first connection", |m| {
            m.trades.len() == 2 && m.book(BTC).bids.len() == 1
        })
        .await;
    drop(conn);
    let mut conn = mock.accept().await.unwrap();
    conn.recv_text().await.unwrap();
    mock.push_rest("BTCUSDT", r#"{"lastUpdateId":20,"bids":[["98.00000000","3.00000000"]],"asks":[["101.00000000","0.50000000"]]}"#);
    conn.send(&depth(21, 21, r#"["98.50000000","1.00000000"]"#))
        .await
        .unwrap();
    conn.send(&trade(5, "101.00000000", false)).await.unwrap();
    client
        .wait("second connection", |m| {
            m.trades.len() == 3 && m.book(BTC).bids.len() == 2
        })
        .await;
    live.shutdown();
    let recorded = std::mem::take(&mut client.market.log);
    assert!(recorded.len() > 8, "{recorded:?}");

    let go = Arc::new(AtomicBool::new(false));
    let replay = ReplayFeed::open(&path, Speed::Max)
        .unwrap()
        .start_when(go.clone());
    let replayed = engine(Box::new(replay));
    let stats = &replayed.shared().feeds[0].stats;
    let mut client = Client::connect(replayed.local_addr()).await;
    client.subscribe_all(&[BTC]).await;
    go.store(true, Ordering::Relaxed);
    let n = recorded.len();
    client.wait("the whole session", |m| m.log.len() >= n).await;
    until("the replay ends", || stats.state() == FeedState::Stopped).await;
    assert_eq!(client.market.log, recorded);
    assert_eq!(stats.decode_errors.load(Ordering::Relaxed), 1);
    assert_eq!(stats.trades_missed.load(Ordering::Relaxed), 2);
    replayed.shutdown();
    let _ = std::fs::remove_file(&path);
}
