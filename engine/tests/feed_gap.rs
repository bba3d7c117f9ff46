//! Trades a venue lost (the feed skipped their seqs) reach every trade subscriber as one
//! exact `gap` (reason `feed_gap`) before the next trade: guarantee 1, never silent.

mod common;

use std::rc::Rc;

use common::{frames, pair, settle};
use tickwire_engine::protocol::command::{Channel, ChannelSet};
use tickwire_engine::tick::Aggressor;
use tickwire_engine::worker::signal::LocalSignal;

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
        let key = core.add_client(Rc::new(server), Rc::new(LocalSignal::new()));
        core.subscribe(
            key,
            None,
            ChannelSet::from_iter([Channel::Trades]),
            &["sim:BTC-USD".to_owned()],
            10,
            0,
        )
        .unwrap();
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

#[test]
fn a_book_the_venue_replaced_reaches_subscribers_as_a_fresh_snapshot() {
    common::runtime().block_on(async {
        let common::Harness {
            symbol,
            mut publisher,
            mut consumer,
            mut core,
            ..
        } = common::harness(2, 4, 1 << 10);
        let (server, mut client) = pair(None);
        let key = core.add_client(Rc::new(server), Rc::new(LocalSignal::new()));
        core.subscribe(
            key,
            None,
            ChannelSet::from_iter([Channel::Book]),
            &["sim:BTC-USD".to_owned()],
            5,
            0,
        )
        .unwrap();
        let book = |p: &mut tickwire_engine::feed::Publisher, clear: bool, base: i64| {
            p.begin_message();
            p.begin_book(symbol, None, clear);
            for i in 0..3 {
                p.level(tickwire_engine::tick::BookSide::Bid, base - i, 1);
                p.level(tickwire_engine::tick::BookSide::Ask, base + 10 + i, 1);
            }
            p.end_book();
            p.flush();
        };
        let mut run = |core: &mut tickwire_engine::worker::core::Core| {
            core.begin_pass();
            while let Ok(t) = consumer.try_recv() {
                core.on_tick(&t);
            }
            core.flush_pending();
        };
        book(&mut publisher, false, 1_000);
        run(&mut core);
        settle(&mut core, &[key]).await;
        // The venue resynchronised: its snapshot replaces the whole book.
        book(&mut publisher, true, 2_000);
        run(&mut core);
        settle(&mut core, &[key]).await;
        let got: Vec<serde_json::Value> = frames(&mut client)
            .iter()
            .map(|(_, p)| serde_json::from_slice(p).unwrap())
            .filter(|m: &serde_json::Value| m["type"] == "book")
            .collect();
        let last = got.last().unwrap();
        assert_eq!(
            last["snapshot"], true,
            "a replaced book is sent as a snapshot: {got:?}"
        );
        assert_eq!(last["seq"], 2);
        assert_eq!(
            last["bids"][0][0].as_f64(),
            Some(20.0),
            "the new book: {last}"
        );
        assert_eq!(last["bids"].as_array().unwrap().len(), 3);
    });
}
