//! Trades a venue lost (the feed skipped their seqs) reach every trade subscriber as one
//! exact `gap` (reason `feed_gap`) before the next trade: guarantee 1, never silent.

mod common;

use std::rc::Rc;

use common::{frames, pair, settle};
use tickwire_engine::tick::Aggressor;
use tickwire_engine::worker::clients::Conn;

#[test]
fn trades_the_feed_skipped_arrive_as_one_exact_gap_before_the_next_trade() {
    common::runtime().block_on(async {
        let common::Harness {
            symbol,
            mut publisher,
            mut consumer,
            mut core,
            ..
        } = common::harness(2, 4, 1 << 10);
        let (server, mut client) = pair(None);
        let key = core.add_client(Rc::new(Conn::new(server)));
        common::subscribe_trades(&mut core, key);
        let trade = |p: &mut tickwire_engine::feed::Publisher, id: u64| {
            p.begin_message();
            p.trade(symbol, None, 1_000, 1, Some(Aggressor::Sell), id);
            p.flush();
        };
        trade(&mut publisher, 1);
        publisher.skip_trades(symbol, 3);
        trade(&mut publisher, 5);
        core.begin_pass();
        while let Ok(t) = consumer.try_recv() {
            core.on_tick(&t);
        }
        core.flush_pending();
        settle(&mut core, &[key]).await;
        let got: Vec<serde_json::Value> = frames(&mut client)
            .iter()
            .map(|(_, p)| serde_json::from_slice(p).unwrap())
            .filter(|m: &serde_json::Value| m["type"] != "subscribed")
            .collect();
        let kinds: Vec<(String, u64, u64)> = got
            .iter()
            .map(|m| {
                (
                    m["type"].as_str().unwrap().to_owned(),
                    m["seq"].as_u64().or(m["from_seq"].as_u64()).unwrap(),
                    m["to_seq"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [
                ("trade".to_owned(), 1, 0),
                ("gap".to_owned(), 2, 4),
                ("trade".to_owned(), 5, 0)
            ],
            "{got:?}"
        );
        assert_eq!(got[1]["reason"], "feed_gap");
        assert_eq!(got[1]["channel"], "trades");
    });
}
