// Unit tests of the client with a scripted WebSocket: book chain checking, backoff,
// the state machine, heartbeat, resubscribe and trade continuity across reconnects.
import assert from "node:assert/strict";
import { test } from "node:test";

import { BookState, TickwireClient, backoffDelay } from "../src/index.js";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const A = "sim:AAA-USD";

function fakeServer({ protocol = "" } = {}) {
  const sockets = [];
  class FakeWebSocket {
    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      this.protocol = "";
      this.readyState = 0;
      this.sent = [];
      sockets.push(this);
    }
    send(data) { this.sent.push(JSON.parse(data)); }
    close() { this.readyState = 3; }
    open(p = protocol) { this.protocol = p; this.readyState = 1; this.onopen?.(); }
    deliver(msg) { this.onmessage?.({ data: JSON.stringify(msg) }); }
    drop() { this.readyState = 3; this.onclose?.({ code: 1006 }); }
    take() { const s = this.sent; this.sent = []; return s.map(({ id, ...rest }) => rest); }
  }
  return { sockets, FakeWebSocket };
}

async function until(pred, ms = 2000) {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error("timed out");
    await sleep(5);
  }
}

const book = (seq, bids, asks, snapshot = false, extra = {}) => ({ type: "book", symbol: A, seq, snapshot, bids, asks, ts: 1, ingest_ts: 1, ...extra });
const trade = (seq) => ({ type: "trade", symbol: A, seq, price: 1, size: 1, side: "buy", trade_id: String(seq), ts: 1, ingest_ts: 1 });

test("backoff: full jitter within the doubling window, capped", () => {
  const o = { initialMs: 500, maxMs: 5000 };
  assert.equal(backoffDelay(0, o, () => 0.999), 499.5);
  assert.equal(backoffDelay(0, o, () => 0), 0);
  assert.equal(backoffDelay(1, o, () => 0.5), 500);
  assert.equal(backoffDelay(3, o, () => 0.5), 2000);
  assert.equal(backoffDelay(20, o, () => 0.999), 4995);
  for (let a = 0; a < 50; a++) assert.ok(backoffDelay(a, o) < 5000);
});

test("book: snapshot, v1 contiguous seqs, v2 prev_seq, broken chains change nothing", () => {
  const b = new BookState(A, 2);
  b.snapshot(book(10, [[100, 1], [99, 2]], [[101, 1]], true));
  assert.ok(b.update(book(11, [[100, 0], [98, 3]], [[101, 2]])));
  assert.deepEqual(b.view(), { symbol: A, seq: 11, ready: true, depth: 2, resyncs: 0, bids: [[99, 2], [98, 3]], asks: [[101, 2]], bestBid: [99, 2], bestAsk: [101, 2] });
  assert.equal(b.update(book(13, [[97, 1]], [])), false, "v1: seq 12 missing");
  assert.equal(b.seq, 11);
  assert.ok(b.update(book(15, [[97, 1]], [], false, { prev_seq: 11 })), "v2: a merged update from 11 to 15");
  assert.equal(b.update(book(16, [], [], false, { prev_seq: 14 })), false, "v2: prev_seq must be the held seq");
  assert.equal(b.view(1).bids.length, 1);
});

test("states, subprotocol offered, v1 fallback, resubscribe, book resync alone", async () => {
  const { sockets, FakeWebSocket } = fakeServer();
  const states = [];
  const c = new TickwireClient({ url: "ws://x/ws", WebSocket: FakeWebSocket, backoff: { initialMs: 20 } });
  c.on("state", (s) => states.push(s));
  const sub = c.subscribe({ symbols: [A], channels: ["trades", "book"], depth: 2 });
  const books = [];
  const resyncs = [];
  sub.on("book", (m) => books.push(m.seq)).on("resync", (r) => resyncs.push(r));
  await until(() => sockets.length === 1);
  const ws = sockets[0];
  assert.deepEqual(ws.protocols, ["tickwire.v2"]);
  assert.equal(c.state, "connecting");
  ws.open(""); // no subprotocol: version 1
  assert.equal(c.version, 1);
  assert.deepEqual(ws.take(), [{ op: "subscribe", channels: ["trades", "book"], symbols: [A], depth: 2 }]);
  ws.deliver(book(3, [[1, 1]], [[2, 1]]));  // an update before any snapshot: dropped
  ws.deliver(book(5, [[1, 1]], [[2, 1]], true));
  ws.deliver(book(6, [[1, 2]], []));
  ws.deliver(book(8, [[1, 3]], []));          // 7 missing: resync this book alone
  assert.deepEqual(ws.take(), [{ op: "subscribe", channels: ["book"], symbols: [A], depth: 2 }]);
  ws.deliver(book(9, [[1, 4]], []));          // ignored until the snapshot
  assert.equal(sub.book(A).ready, false);
  ws.deliver(book(9, [[1, 5]], [[2, 1]], true));
  assert.deepEqual(books, [5, 6, 9]);
  assert.equal(resyncs.length, 1);
  assert.deepEqual(sub.book(A).bids, [[1, 5]]);
  assert.equal(sub.book(A).resyncs, 1);

  // Trades, then the link drops: reconnecting at once, then open and resubscribed.
  ws.deliver(trade(1));
  ws.deliver(trade(2));
  ws.drop();
  assert.equal(c.state, "reconnecting");
  await until(() => sockets.length === 2);
  const ws2 = sockets[1];
  ws2.open("");
  assert.deepEqual(ws2.take(), [{ op: "subscribe", channels: ["trades", "book"], symbols: [A], depth: 2 }]);
  assert.equal(sub.book(A).ready, false, "stale until the new snapshot");
  const gaps = [];
  const trades = [];
  sub.on("gap", (g) => gaps.push(g)).on("trade", (t) => trades.push(t.seq));
  ws2.deliver(trade(7)); // v1: what came while away is lost, and the app hears it
  assert.deepEqual(gaps, [{ type: "gap", symbol: A, channel: "trades", from_seq: 3, to_seq: 6, reason: "reconnect" }]);
  assert.deepEqual(trades, [7]);
  c.close();
  assert.deepEqual(states, ["open", "reconnecting", "open", "closed"]);
});

test("v1 restart: seqs going back reach the app as a reset", async () => {
  const { sockets, FakeWebSocket } = fakeServer();
  const c = new TickwireClient({ url: "ws://x/ws", WebSocket: FakeWebSocket, backoff: { initialMs: 10 } });
  const sub = c.subscribe({ symbols: [A], channels: ["trades"] });
  const seen = [];
  sub.on("trade", (t) => seen.push(t.seq)).on("reset", (r) => seen.push(`reset ${r.reason} ${r.last_seq}`));
  await until(() => sockets.length === 1);
  sockets[0].open("");
  for (const s of [40, 41, 41]) sockets[0].deliver(trade(s)); // the duplicate is dropped
  sockets[0].drop();
  await until(() => sockets.length === 2);
  sockets[1].open("");
  sockets[1].deliver(trade(3));
  sockets[1].deliver(trade(4));
  assert.deepEqual(seen, [40, 41, "reset restart 41", 3, 4]);
  c.close();
});

test("v2: epoch and since on reconnect; recovered:false is a reset; prev_seq chains", async () => {
  const { sockets, FakeWebSocket } = fakeServer({ protocol: "tickwire.v2" });
  const c = new TickwireClient({ url: "ws://x/ws", WebSocket: FakeWebSocket, backoff: { initialMs: 10 } });
  const sub = c.subscribe({ symbols: [A], channels: ["trades", "book"], depth: 5 });
  const seen = [];
  sub.on("trade", (t) => seen.push(t.seq)).on("reset", (r) => seen.push(`reset ${r.epoch}`));
  await until(() => sockets.length === 1);
  sockets[0].open();
  assert.equal(c.version, 2);
  sockets[0].take();
  sockets[0].deliver({ type: "subscribed", id: 1, channels: ["trades", "book"], symbols: [A], epoch: "e1" });
  sockets[0].deliver(trade(10));
  sockets[0].deliver(book(20, [[1, 1]], [], true));
  sockets[0].deliver(book(25, [[1, 2]], [], false, { prev_seq: 20 }));
  assert.equal(sub.book(A).seq, 25);
  sockets[0].drop();
  await until(() => sockets.length === 2);
  sockets[1].open();
  assert.deepEqual(sockets[1].take(), [{ op: "subscribe", channels: ["trades", "book"], symbols: [A], depth: 5, epoch: "e1", since: { [A]: 10 } }]);
  sockets[1].deliver({ type: "subscribed", id: 2, channels: ["trades", "book"], symbols: [A], epoch: "e1", recovered: { [A]: true } });
  sockets[1].deliver(trade(10)); // an overlap: never twice
  sockets[1].deliver(trade(11));
  sockets[1].drop();
  await until(() => sockets.length === 3);
  sockets[2].open();
  sockets[2].deliver({ type: "subscribed", id: 3, channels: ["trades", "book"], symbols: [A], epoch: "e2", recovered: { [A]: false } });
  sockets[2].deliver(trade(1));
  assert.deepEqual(seen, [10, 11, "reset e2", 1]);
  assert.equal(c.epoch, "e2");
  c.close();
});

test("heartbeat: pings every interval; silence for 3x is a dead link", async () => {
  const { sockets, FakeWebSocket } = fakeServer();
  const c = new TickwireClient({ url: "ws://x/ws", WebSocket: FakeWebSocket, heartbeatMs: 40, backoff: { initialMs: 10000 } });
  await until(() => sockets.length === 1);
  sockets[0].open("");
  await sleep(100);
  assert.ok(sockets[0].take().filter((m) => m.op === "ping").length >= 1);
  const t0 = Date.now();
  await until(() => c.state === "reconnecting", 1000);
  const took = Date.now() - t0;
  assert.ok(took < 400, `dead within about 3x the heartbeat (${took} ms)`);
  c.close();
});

test("token callback asked on each connect; urls rotate; close leaves no timer", async () => {
  const { sockets, FakeWebSocket } = fakeServer();
  let n = 0;
  const c = new TickwireClient({ urls: ["ws://a/ws", "ws://b/ws?x=1"], token: async () => `t${++n}`, WebSocket: FakeWebSocket, backoff: { initialMs: 5 } });
  await until(() => sockets.length === 1);
  sockets[0].drop(); // failed before opening: at once again without the v2 offer
  await until(() => sockets.length === 2);
  sockets[1].drop(); // failed without the offer too: unreachable, back off, next URL
  await until(() => sockets.length === 3);
  assert.deepEqual(sockets.map((s) => [s.url, s.protocols]), [
    ["ws://a/ws?token=t1", ["tickwire.v2"]],
    ["ws://a/ws?token=t2", []],
    ["ws://b/ws?x=1&token=t3", ["tickwire.v2"]],
  ]);
  c.close();
  assert.equal(c.state, "closed");
  assert.deepEqual(process.getActiveResourcesInfo().filter((r) => r === "Timeout"), []);
});

test("protocol binary is refused clearly; symbols() waits for the link", async () => {
  assert.throws(() => new TickwireClient({ url: "ws://x/ws", protocol: "binary", WebSocket: class {} }), /binary.*not supported yet/);
  const { sockets, FakeWebSocket } = fakeServer();
  const c = new TickwireClient({ url: "ws://x/ws", WebSocket: FakeWebSocket });
  const p = c.symbols();
  await until(() => sockets.length === 1);
  sockets[0].open("");
  const [cmd] = sockets[0].sent;
  assert.equal(cmd.op, "symbols");
  sockets[0].deliver({ type: "symbols", id: cmd.id, symbols: [A] });
  assert.deepEqual(await p, [A]);
  c.close();
});

test("gaps naming seqs already held are trimmed (a fresh cluster edge reports from seq 1)", async () => {
  const { sockets, FakeWebSocket } = fakeServer();
  const c = new TickwireClient({ url: "ws://x/ws", WebSocket: FakeWebSocket });
  const sub = c.subscribe({ symbols: [A], channels: ["trades"] });
  const seen = [];
  sub.on("trade", (t) => seen.push(t.seq)).on("gap", (g) => seen.push(`${g.from_seq}-${g.to_seq} ${g.reason}`));
  await until(() => sockets.length === 1);
  sockets[0].open("");
  const gap = (from_seq, to_seq) => ({ type: "gap", symbol: A, channel: "trades", from_seq, to_seq, reason: "feed_gap" });
  for (const s of [1, 2, 3, 4, 5]) sockets[0].deliver(trade(s));
  sockets[0].deliver(gap(2, 4)); // all held: nothing
  sockets[0].deliver(gap(1, 10)); // 6-10 only
  sockets[0].deliver(trade(11));
  assert.deepEqual(seen, [1, 2, 3, 4, 5, "6-10 feed_gap", 11]);
  c.close();
});
