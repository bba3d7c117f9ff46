// The dashboard's worker (engine/src/dashboard/dashboard-worker.js, a module worker on
// the client library clients/js) in Node, with a scripted WebSocket: subscriptions, the
// book shown at the chosen depth from the library's book, trade gaps, reconnects.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { afterEach, test } from "node:test";
import vm from "node:vm";

import * as tickwire from "../../clients/js/src/index.js";
import { repoRoot, sleep } from "./lib.mjs";

const IMPORT = 'import { TickwireClient } from "/tickwire-client.js";';
const SOURCE = fs.readFileSync(path.join(repoRoot, "engine", "src", "dashboard", "dashboard-worker.js"), "utf8");
assert.ok(SOURCE.includes(IMPORT), "the worker imports the library from /tickwire-client.js");

const loaded = [];
afterEach(() => {
  // The library's timers (heartbeat, retries) would keep the test process alive.
  for (const ctx of loaded.splice(0)) vm.runInContext("st.client && st.client.close()", ctx);
});

function load() {
  const sockets = [];
  const frames = [];
  class FakeWebSocket {
    static OPEN = 1;
    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      this.protocol = "";
      this.readyState = 0;
      this.sent = [];
      sockets.push(this);
    }
    send(data) {
      this.sent.push(JSON.parse(data));
    }
    close() {
      this.readyState = 3;
    }
    // test side: a version 1 engine (no subprotocol answered)
    open() {
      this.readyState = 1;
      this.onopen();
    }
    deliver(msg) {
      this.onmessage({ data: JSON.stringify(msg) });
    }
    drop(code = 1006) {
      this.readyState = 3;
      this.onclose({ code, reason: "" });
    }
    take() {
      const s = this.sent;
      this.sent = [];
      this.taken = s;
      return s.map(({ id, ...rest }) => rest); // ids are the client's business
    }
    // the engine's answer to the last `symbols` command taken
    answerSymbols(symbols) {
      const c = this.taken.find((x) => x.op === "symbols");
      this.deliver({ type: "symbols", id: c.id, symbols });
    }
  }
  const self = { addEventListener() {} };
  const ctx = vm.createContext({
    self,
    __tickwire: tickwire,
    postMessage: (m) => frames.push(structuredClone(m)),
    WebSocket: FakeWebSocket,
    setTimeout,
    clearTimeout,
    setInterval: () => 0, // the once-a-second housekeeping is not under test here
    performance,
    console,
  });
  // A classic script in the vm: the module import becomes a binding of the library.
  vm.runInContext(SOURCE.replace(IMPORT, "const { TickwireClient } = __tickwire;"), ctx, { filename: "dashboard-worker.js" });
  loaded.push(ctx);
  const tell = (msg) => self.onmessage({ data: msg });
  // Asks for a frame and returns it (frames are posted on a timer, at most every 16 ms).
  const pull = async () => {
    const before = frames.length;
    tell({ cmd: "pull" });
    for (let i = 0; i < 50 && frames.length === before; i++) await sleep(5);
    assert.ok(frames.length > before, "a frame was posted");
    return frames[frames.length - 1];
  };
  return { sockets, frames, tell, pull };
}

const A = "sim:AAA-USD";
const B = "sim:BBB-USD";

async function started(w, depth = 5) {
  w.tell({ cmd: "init", url: "ws://127.0.0.1:1/ws", chosen: null, sel: null, depth, throttle: 0 });
  const ws = w.sockets[0];
  assert.deepEqual(ws.protocols, ["tickwire.v2"], "the library offers version 2");
  ws.open();
  assert.deepEqual(ws.take(), [{ op: "symbols" }]);
  ws.answerSymbols([A, B]);
  await sleep(0); // the library's symbols() resolves a promise
  assert.deepEqual(ws.take(), [{ op: "subscribe", channels: ["ticker"], symbols: [A, B], throttle_ms: 0 }]);
  w.tell({ cmd: "select", symbol: A });
  // The book is held at depth 50 whatever is shown (a depth switch sends nothing).
  assert.deepEqual(ws.take(), [{ op: "subscribe", channels: ["trades", "book"], symbols: [A], depth: 50, throttle_ms: 0 }]);
  return ws;
}

const book = (seq, bids, asks, snapshot = false) =>
  ({ type: "book", symbol: A, seq, snapshot, bids, asks, ts: 1, ingest_ts: 1 });
const levels = (n, from) => Array.from({ length: n }, (_, i) => [from - i, 1]);

test("book: snapshot replaces, updates apply (size 0 removes), a seq gap resubscribes the book alone", async () => {
  const w = load();
  const ws = await started(w);
  ws.deliver(book(10, [[100, 1], [99, 2]], [[101, 1], [102, 4]], true));
  let f = await w.pull();
  assert.deepEqual(f.book.bids, [[100, 1], [99, 2]]);
  assert.deepEqual(f.book.asks, [[101, 1], [102, 4]]);
  assert.equal(f.book.seq, 10);

  ws.deliver(book(11, [[100, 0], [98, 3]], [[101, 2.5]]));
  ws.deliver(book(12, [], [[100.5, 1]]));
  f = await w.pull();
  assert.deepEqual(f.book.bids, [[99, 2], [98, 3]]);
  assert.deepEqual(f.book.asks, [[100.5, 1], [101, 2.5], [102, 4]]);
  assert.equal(f.book.seq, 12);
  assert.deepEqual(ws.take(), []);

  // seq 13 is missing: the library resubscribes this book alone, drops updates until the snapshot
  ws.deliver(book(14, [[97, 1]], []));
  assert.deepEqual(ws.take(), [{ op: "subscribe", channels: ["book"], symbols: [A], depth: 50, throttle_ms: 0 }]);
  ws.deliver(book(15, [[96, 1]], []));
  f = await w.pull();
  assert.equal(f.book.ready, false);
  assert.equal(f.book.resyncs, 1);
  assert.ok(f.notes.some((n) => n.text.includes("book seq gap (seq 12 → 14)")), JSON.stringify(f.notes));
  ws.deliver(book(16, [[100, 1]], [[101, 1]], true));
  ws.deliver(book(17, [[99.5, 2]], []));
  f = await w.pull();
  assert.equal(f.book.ready, true);
  assert.deepEqual(f.book.bids, [[100, 1], [99.5, 2]]);
  assert.deepEqual(f.book.asks, [[101, 1]]);
  assert.equal(f.book.seq, 17);

  // another depth: nothing sent; the page sees at most that many levels
  w.tell({ cmd: "depth", depth: 1 });
  assert.deepEqual(ws.take(), []);
  f = await w.pull();
  assert.deepEqual([f.book.bids, f.book.asks, f.book.depth], [[[100, 1]], [[101, 1]], 1]);

  // other symbols' books are not mixed in
  ws.deliver({ ...book(18, [[1, 1]], [], true), symbol: B });
  ws.deliver(book(18, [], [[101, 0], [102, 3]]));
  f = await w.pull();
  assert.deepEqual([f.book.bids, f.book.asks], [[[100, 1]], [[102, 3]]]);
});

// Regression: after a depth switch the page's book showed at most 5 levels at depth 20
// for a while: the worker tracked which snapshot answered which subscribe, and a late
// snapshot of the depth-5 subscription (the engine's `subscribed` reply can overtake
// queued data) was taken for the depth-20 reply. Now the book is held at depth 50 and a
// depth switch only changes how many levels are shown: there is no reply to track.
test("book: a depth switch shows the new depth at once, from the held book", async () => {
  const w = load();
  const ws = await started(w, 5);
  ws.deliver(book(10, levels(30, 100), levels(30, -101).map(([p, s]) => [-p, s]), true));
  let f = await w.pull();
  assert.deepEqual([f.book.depth, f.book.bids.length, f.book.asks.length], [5, 5, 5]);
  w.tell({ cmd: "depth", depth: 20 });
  assert.deepEqual(ws.take(), [], "a depth switch sends nothing");
  f = await w.pull();
  assert.deepEqual([f.book.depth, f.book.bids.length, f.book.asks.length, f.book.seq], [20, 20, 20, 10]);
  ws.deliver(book(11, [[80, 1]], []));
  f = await w.pull();
  assert.deepEqual([f.book.bids.length, f.book.seq], [20, 11], "updates apply");
  // A snapshot (a conflation resync, or a re-subscribe's reply) is the engine's state at
  // depth 50, whatever its moment: it replaces the book and updates chain from it.
  ws.deliver(book(30, levels(25, 100), [[101, 1]], true));
  ws.deliver(book(31, [[75, 2]], []));
  f = await w.pull();
  assert.deepEqual([f.book.depth, f.book.bids.length, f.book.seq], [20, 20, 31]);
});

test("trades: tape with gap marks; ticker rows carry their moves", async () => {
  const w = load();
  const ws = await started(w);
  const trade = (seq, price, side) =>
    ({ type: "trade", symbol: A, seq, price, size: 0.5, side, trade_id: String(seq), ts: 1e18, ingest_ts: 1e18 });
  ws.deliver(trade(1, 100, "buy"));
  ws.deliver(trade(2, 99.5, "sell"));
  ws.deliver({ type: "gap", symbol: A, channel: "trades", from_seq: 3, to_seq: 7, reason: "slow_consumer" });
  ws.deliver(trade(8, 99.75, "buy"));
  let f = await w.pull();
  assert.equal(f.tape.sym, A);
  assert.deepEqual(f.tape.add.map((t) => t.mark || t.price), [100, 99.5, "gap: 5 trades skipped (slow_consumer)", 99.75]);
  assert.ok(f.notes.some((n) => n.text.includes("trades gap, seqs 3–7 skipped")));

  const tick = (bid, ask, last) => ({
    type: "ticker", symbol: B, seq: 1, bid, bid_size: 1, ask, ask_size: 1, last, last_size: 1, volume: 3, ts: 1, ingest_ts: 1,
  });
  ws.deliver(tick(10, 11, 10.5)); // the subscribe snapshot
  ws.deliver(tick(10.25, 11, 10.75));
  f = await w.pull();
  const row = f.rows.find((r) => r.sym === B);
  assert.deepEqual([row.bid, row.ask, row.last, row.open, row.dec], [10.25, 11, 10.75, 10.5, 2]);
  assert.deepEqual(row.moves, { bid: 1, ask: 0, last: 1 });
});

test("reconnect: down at once, then resubscribed by the library, symbols asked again", async () => {
  const w = load();
  const ws = await started(w);
  const trade = (seq) => ({ type: "trade", symbol: A, seq, price: 1, size: 1, side: "buy", trade_id: String(seq), ts: 1, ingest_ts: 1 });
  ws.deliver(trade(5));
  ws.drop();
  let f = await w.pull();
  assert.equal(f.conn.state, "down");
  assert.match(f.conn.text, /reconnecting/);
  for (let i = 0; i < 100 && w.sockets.length < 2; i++) await sleep(10); // first retry: within 500 ms
  assert.equal(w.sockets.length, 2, "a new connection within the first backoff window");
  const ws2 = w.sockets[1];
  ws2.open();
  assert.deepEqual(ws2.take(), [
    { op: "subscribe", channels: ["ticker"], symbols: [A, B], throttle_ms: 0 },
    { op: "subscribe", channels: ["trades", "book"], symbols: [A], depth: 50, throttle_ms: 0 },
    { op: "symbols" },
  ]);
  ws2.answerSymbols([A, B]);
  await sleep(0);
  assert.deepEqual(ws2.take(), [], "the same symbols: nothing to change");
  ws2.deliver(trade(9)); // version 1 has no recovery: the library reports the hole
  f = await w.pull();
  assert.equal(f.conn.state, "live");
  assert.equal(f.counters.reconnects, 1);
  assert.deepEqual(f.tape.add.map((t) => t.mark || t.price).slice(-3), [
    "reconnected: trades while disconnected are not shown", "gap: 3 trades skipped (reconnect)", 1,
  ]);

  // throttle: ticker and book resubscribed with it (trades are never throttled)
  w.tell({ cmd: "throttle", throttle: 250 });
  assert.deepEqual(ws2.take(), [
    { op: "subscribe", channels: ["ticker"], symbols: [A, B], throttle_ms: 250 },
    { op: "subscribe", channels: ["trades", "book"], symbols: [A], depth: 50, throttle_ms: 250 },
  ]);
  // picking symbols: unsubscribe what left; the detail follows the page's selection
  w.tell({ cmd: "choose", symbols: [B] });
  assert.deepEqual(ws2.take(), [
    { op: "subscribe", channels: ["ticker"], symbols: [B], throttle_ms: 250 },
    { op: "unsubscribe", channels: ["ticker"], symbols: [A] },
    { op: "unsubscribe", channels: ["trades", "book"], symbols: [A] },
  ]);
});
