// The client against the real tickwire binary: an engine restart, a frozen link, a
// blip. The engine speaks protocol version 1 today (it answers no subprotocol); where a
// result changes once it speaks version 2, the test says so (look for "V2:").
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import WebSocket from "ws";

import { TickwireClient } from "../src/index.js";
import { checkTradeContinuity, freePort, haveBinary, sleep, startEngine, startRelay, stopEngine, until } from "./helpers.mjs";

const BTC = "sim:BTC-USD";
const skip = haveBinary ? false : "no tickwire binary (cargo build -p tickwire, or set TICKWIRE_BIN)";

let port;
let engine;
const clients = [];
const client = (opts) => {
  const c = new TickwireClient({ WebSocket, ...opts });
  clients.push(c);
  return c;
};

before(async () => {
  if (skip) return;
  port = await freePort();
  engine = await startEngine(port);
});
after(async () => {
  for (const c of clients) c.close();
  await stopEngine(engine);
});

/** Records every event of a subscription, and the book (depth 10) at each book seq. */
function record(sub, symbol = BTC) {
  const rec = { events: [], books: new Map(), states: [] };
  for (const type of ["trade", "gap", "reset"]) sub.on(type, (e) => rec.events.push({ ...e, type, at: Date.now() }));
  sub.on("book", (m) => {
    const b = sub.book(symbol);
    if (b.ready) rec.books.set(b.seq, { at: Date.now(), levels: JSON.stringify([b.bids, b.asks]) });
  });
  return rec;
}

/**
 * An independent reader (a raw WebSocket, its own book code): the engine's top 10
 * levels at each seq, to compare the client's book with.
 */
async function probeBooks(p, symbol = BTC, depth = 10) {
  const ws = new WebSocket(`ws://127.0.0.1:${p}/ws`);
  await new Promise((r, j) => { ws.once("open", r); ws.once("error", j); });
  const bids = new Map();
  const asks = new Map();
  const books = new Map();
  ws.on("message", (data) => {
    const m = JSON.parse(String(data));
    if (m.type !== "book" || m.symbol !== symbol) return;
    if (m.snapshot) { bids.clear(); asks.clear(); }
    for (const [px, sz] of m.bids) (sz === 0 ? bids.delete(px) : bids.set(px, sz));
    for (const [px, sz] of m.asks) (sz === 0 ? asks.delete(px) : asks.set(px, sz));
    const top = (side, dir) => [...side].sort((a, b) => dir * (a[0] - b[0])).slice(0, depth);
    books.set(m.seq, JSON.stringify([top(bids, -1), top(asks, 1)]));
  });
  ws.send(JSON.stringify({ op: "subscribe", channels: ["book"], symbols: [symbol], depth }));
  return { books, close: () => ws.terminate() };
}

/** Blocks the event loop for `ms`: an app too busy to read (so the socket backs up). */
function busy(ms) {
  const end = performance.now() + ms;
  while (performance.now() < end) { /* the slow app */ }
}

test("engine restart: reconnecting then open, resubscribed, book equals a fresh snapshot within 2 s, trades reset", { skip, timeout: 60000 }, async () => {
  // A cap of 1 s (the default is 5 s) so that the client is back within 2 s of a
  // restart whatever its attempt count reached while the engine was down.
  const c = client({ url: `ws://127.0.0.1:${port}/ws`, heartbeatMs: 1000, backoff: { maxMs: 1000 } });
  const states = [];
  c.on("state", (s) => states.push({ s, at: Date.now() }));
  const sub = c.subscribe({ symbols: [BTC], channels: ["ticker", "trades", "book"], depth: 10 });
  const rec = record(sub);
  await until(() => c.state === "open", 10000, "open");
  assert.equal(c.version, 2, "the engine answers tickwire.v2");
  // Let the old engine run long enough that its trade seqs are ahead of the new one's.
  await until(() => rec.events.filter((e) => e.type === "trade").length >= 20, 20000, "trades");
  await sleep(4000);
  const heldBefore = rec.events.filter((e) => e.type === "trade").at(-1).seq;

  await stopEngine(engine, "SIGKILL");
  await until(() => c.state === "reconnecting", 2000, "reconnecting as soon as the link is lost");
  engine = await startEngine(port);
  const restartedAt = Date.now();
  const probe = await probeBooks(port);
  try {
    await until(() => states.some((x) => x.s === "open" && x.at >= restartedAt - 1000), 5000, "open again");
    // The client's book at some seq equals the independent reader's at that seq, by 2 s.
    const match = await until(() => {
      for (const [seq, b] of rec.books) {
        if (b.at >= restartedAt && probe.books.has(seq)) return { seq, b, same: probe.books.get(seq) === b.levels };
      }
      return null;
    }, 2500, "a book after the restart that the probe also saw");
    assert.ok(match.same, `book at seq ${match.seq} equals a fresh snapshot`);
    assert.ok(match.b.at - restartedAt <= 2000, `book back ${match.b.at - restartedAt} ms after the restart`);
    await sleep(1000);
    for (const [seq, b] of rec.books) {
      if (b.at >= restartedAt && probe.books.has(seq)) assert.equal(b.levels, probe.books.get(seq), `book at seq ${seq}`);
    }
  } finally {
    probe.close();
  }
  // The app is told that trades start afresh: the restarted engine's `subscribed` names
  // a new epoch.
  await until(() => rec.events.some((e) => e.type === "reset"), 5000, "a reset");
  const reset = rec.events.find((e) => e.type === "reset");
  assert.equal(reset.reason, "epoch");
  assert.equal(reset.last_seq, rec.events.filter((e) => e.type === "trade" && e.at < reset.at).at(-1).seq);
  assert.ok(reset.last_seq >= heldBefore);
  checkTradeContinuity(rec.events);
  assert.deepEqual(states.map((x) => x.s).slice(0, 3), ["open", "reconnecting", "open"]);
  c.close();
});

test("dead link: a frozen relay is noticed by the heartbeat, and the client reconnects", { skip, timeout: 30000 }, async () => {
  const relay = await startRelay(port);
  const heartbeatMs = 300;
  const c = client({ url: `ws://127.0.0.1:${relay.port}/ws`, heartbeatMs });
  try {
    const sub = c.subscribe({ symbols: [BTC], channels: ["trades", "book"], depth: 5 });
    const rec = record(sub);
    await until(() => c.state === "open" && sub.book(BTC)?.ready, 10000, "open with a book");
    relay.freeze();
    const frozenAt = Date.now();
    // A bound on liveness, not a timing: on a loaded 2-core machine timers can run seconds
    // late (the unit tests check the timeout exactly).
    await until(() => c.state === "reconnecting", 3 * heartbeatMs + 10000, "the heartbeat notices the frozen link");
    const noticed = Date.now() - frozenAt;
    assert.ok(noticed >= 3 * heartbeatMs - 100, `not before the timeout (${noticed} ms)`);
    await until(() => c.state === "open", 5000, "open again through a new link");
    const n = rec.books.size;
    await until(() => rec.books.size > n + 3, 5000, "book updates flow again");
    checkTradeContinuity(rec.events);
    console.log(`dead link noticed ${noticed} ms after the freeze (heartbeat ${heartbeatMs} ms)`);
  } finally {
    c.close();
    await relay.close();
  }
});

test("blip: the relay cuts the link for 1 s; every trade seq is accounted for", { skip, timeout: 30000 }, async () => {
  const relay = await startRelay(port);
  const c = client({ url: `ws://127.0.0.1:${relay.port}/ws` });
  try {
    const sub = c.subscribe({ symbols: [BTC], channels: ["trades"] });
    const rec = record(sub);
    await until(() => rec.events.filter((e) => e.type === "trade").length >= 5, 10000, "trades");
    relay.cut(1000);
    await until(() => c.state === "reconnecting", 1000, "reconnecting");
    await until(() => c.state === "open", 10000, "open again");
    const n = rec.events.length;
    await until(() => rec.events.length > n + 5, 10000, "trades again");
    checkTradeContinuity(rec.events); // no duplicate, no silent hole
    // Version 2 recovers (`epoch` + `since`): the outage's trades are replayed, no gap.
    assert.equal(c.version, 2);
    const gaps = rec.events.filter((e) => e.type === "gap");
    assert.deepEqual(gaps, [], "every trade of the outage replayed");
  } finally {
    c.close();
    await relay.close();
  }
});

test("the example prints the BTC top of book as it changes", { skip, timeout: 30000 }, async () => {
  const { execFile } = await import("node:child_process");
  const { fileURLToPath } = await import("node:url");
  const example = fileURLToPath(new URL("../examples/top-of-book.mjs", import.meta.url));
  const out = await new Promise((resolve, reject) => {
    execFile(process.execPath, [example, `ws://127.0.0.1:${port}/ws`, "--changes", "3"], { timeout: 20000 }, (err, stdout) =>
      (err ? reject(err) : resolve(stdout)));
  });
  const lines = out.split("\n").filter((l) => l.startsWith(`${BTC} bid`));
  assert.equal(lines.length, 3, out);
  assert.match(lines[0], /^sim:BTC-USD bid [0-9.]+ @ [0-9.]+ {2}ask [0-9.]+ @ [0-9.]+ {2}\(seq \d+\)$/);
});

test("slow app: books equal an independent reader's at every seq read, and gaps reach the app", { skip, timeout: 60000 }, async () => {
  // Its own engine at a higher rate, so that a slow reader falls behind within a second.
  const slowPort = await freePort();
  const slowEngine = await startEngine(slowPort, 4000);
  const probe = await probeBooks(slowPort, BTC, 50);
  const c = client({ url: `ws://127.0.0.1:${slowPort}/ws` });
  try {
    const symbols = await c.symbols();
    const sub = c.subscribe({ symbols, channels: ["trades", "book"], depth: 50 });
    const checked = new Map();
    const flows = new Map();
    const gaps = [];
    const flow = (e) => {
      if (!flows.has(e.symbol)) flows.set(e.symbol, []);
      flows.get(e.symbol).push(e);
    };
    sub.on("trade", (e) => { flow(e); busy(0.5); });
    sub.on("gap", (e) => { flow({ ...e, type: "gap" }); if (e.reason === "slow_consumer") gaps.push(e); });
    sub.on("reset", (e) => flow({ ...e, type: "reset" }));
    sub.on("book", (m) => {
      if (m.symbol === BTC) {
        const b = sub.book(BTC);
        if (b.ready) checked.set(b.seq, JSON.stringify([b.bids, b.asks]));
      }
      busy(0.5); // the slow app: the event loop cannot read while it works
    });
    await sleep(6000);
    c.close();
    await sleep(500); // the probe catches up with the last seqs checked
    const compared = [...checked.keys()].filter((s) => probe.books.has(s));
    assert.ok(compared.length >= 5, `${compared.length} BTC books compared`);
    for (const s of compared) assert.equal(checked.get(s), probe.books.get(s), `book at seq ${s}`);
    assert.ok(gaps.length > 0, "the engine's slow_consumer gaps reach the app");
    for (const f of flows.values()) checkTradeContinuity(f);
    // V2: run it with the engine offering tickwire.v2 too, and assert that merged updates
    // (prev_seq < seq - 1) came and the books still match; version 1 resends snapshots.
  } finally {
    c.close();
    probe.close();
    await stopEngine(slowEngine);
  }
});
