// tickwire dashboard, the client half: a module Web Worker on the tickwire client
// library (clients/js, served by the engine at /tickwire-client.js from the same source).
//
// The library owns the WebSocket, the reconnects, the heartbeat, the resubscriptions and
// the selected symbol's book (checked per seq, resynced alone on a broken chain). This
// worker keeps what the page shows (ticker rows, the tape, price history, notes) and the
// latency histogram, so that thousands of messages per second never queue on the page's
// main thread. The page pulls a frame (what changed since the last pull) when it is
// ready to render, at most once per animation frame; between pulls the worker conflates.
import { TickwireClient } from "/tickwire-client.js";

const CHART_SECONDS = 300; // price history kept per symbol: the last 5 minutes, 1 s buckets
const TAPE_MAX = 50;
const LAT_SLOTS = 10; // seconds of browser latency kept
// The selected book is held at the largest depth the page offers; the depth control
// only chooses how many levels are shown. A depth switch therefore sends nothing, and no
// snapshot of an older subscription can be taken for the new depth's (the bug that once
// showed 5 levels at depth 20).
const BOOK_DEPTH = 50;
const HEARTBEAT_MS = 5000;
const FRAME_MIN_MS = 16; // at most one frame per 16 ms even when pulled faster
const SERIES_MIN_MS = 100; // the chart's series is sent at most every 100 ms

const st = {
  url: "",
  client: null,
  live: false,
  everLive: false,
  downSince: 0,
  serverSymbols: [],
  symbolsChanged: false,
  chosen: null, // null: every symbol the server has
  grid: [], // symbols shown, in server order
  gridChanged: false,
  rows: new Map(), // symbol -> row state
  tickerSub: null, // the library's subscription of the grid's tickers
  tickerSymbols: "", // its symbols, joined (to see whether the grid changed)
  detailSub: null, // the library's subscription of the selected symbol's trades + book
  sel: null,
  depth: 10,
  throttle: 0,
  bookDirty: true,
  tape: [], // the last TAPE_MAX trades (and marks) of the selected symbol, oldest first
  tapeNo: 0,
  tapeSent: 0, // newest entry number sent to the page
  tapeReset: true,
  lastResync: "",
  seriesDirty: true,
  seriesAt: 0,
  notes: [],
  conn: { state: "connecting", text: "connecting…" },
  connChanged: true,
  dirty: true,
  pullPending: false,
  frameTimer: 0,
  lastFrame: 0,
  summary: null, // latency and rates, once a second
  counters: { messages: 0, ticker: 0, trade: 0, book: 0, gaps: 0, resyncs: 0, reconnects: 0, errors: 0, frames: 0 },
};

// ---- wall clock with sub-millisecond resolution -------------------------------------
// performance.timeOrigin + performance.now() is the wall clock at a fine grain, as long
// as the wall clock is not stepped or slewed. Once a second it is checked against
// Date.now() (whole ms); if they drift more than 2 ms apart, it is re-anchored on a
// millisecond edge of Date.now(). A thread preempted between seeing the edge and reading
// performance.now() gets an offset that is too small, never too large: keep the largest
// of a few tries.
let clockOffset = performance.timeOrigin;
function anchorClock() {
  let best = -Infinity;
  for (let i = 0; i < 5; i++) {
    const start = Date.now();
    let now = start;
    const limit = performance.now() + 3;
    while (now === start && performance.now() < limit) now = Date.now();
    best = Math.max(best, now - performance.now());
  }
  clockOffset = best;
}
const wallMs = () => clockOffset + performance.now();

// ---- browser latency: log-linear histogram (about 6 %), one per second, 10 s kept ---
const LAT_BUCKETS = 32 + 27 * 16;
const latSlots = Array.from({ length: LAT_SLOTS }, () => ({ sec: -1, n: 0, neg: 0, h: new Uint32Array(LAT_BUCKETS) }));
function latIndex(us) {
  if (us < 32) return us;
  const e = 31 - Math.clz32(us);
  return Math.min(LAT_BUCKETS - 1, 32 + (e - 5) * 16 + ((us >>> (e - 4)) & 15));
}
function latValue(i) {
  if (i < 32) return i + 0.5;
  const e = ((i - 32) >> 4) + 5;
  const sub = (i - 32) & 15;
  return (16 + sub + 0.5) * 2 ** (e - 4);
}
// ingest_ts (ns since the epoch) against this machine's clock at receipt.
function recordLatency(ingestTs, nowMs) {
  if (typeof ingestTs !== "number" || ingestTs <= 0) return;
  let us = Math.round((nowMs - ingestTs / 1e6) * 1000);
  const sec = Math.floor(nowMs / 1000);
  const slot = latSlots[sec % LAT_SLOTS];
  if (slot.sec !== sec) {
    slot.sec = sec;
    slot.n = 0;
    slot.neg = 0;
    slot.h.fill(0);
  }
  slot.n++;
  if (us < 0) {
    slot.neg++;
    us = 0;
  }
  slot.h[latIndex(Math.min(us, 0x7fffffff))]++;
}
function latencySummary(nowMs) {
  const sec = Math.floor(nowMs / 1000);
  const sum = new Float64Array(LAT_BUCKETS);
  let n = 0;
  let neg = 0;
  for (const s of latSlots) {
    if (s.sec < 0 || sec - s.sec >= LAT_SLOTS) continue;
    n += s.n;
    neg += s.neg;
    for (let i = 0; i < LAT_BUCKETS; i++) sum[i] += s.h[i];
  }
  const q = (p) => {
    const rank = Math.max(1, Math.ceil(p * n));
    let acc = 0;
    for (let i = 0; i < LAT_BUCKETS; i++) {
      acc += sum[i];
      if (acc >= rank) return latValue(i) / 1000;
    }
    return NaN;
  };
  return n === 0 ? { n: 0, neg: 0 } : { n, neg, p50: q(0.5), p99: q(0.99) };
}

// Digits after the point in a JSON number (the engine writes exact decimals).
function decimals(v) {
  const s = String(v);
  const e = s.indexOf("e-");
  if (e >= 0) {
    const dot = s.indexOf(".");
    const mant = dot >= 0 && dot < e ? e - dot - 1 : 0;
    return mant + Number(s.slice(e + 2));
  }
  const dot = s.indexOf(".");
  return dot < 0 ? 0 : s.length - dot - 1;
}

// ---- talking to the page ----------------------------------------------------------------
function changed() {
  st.dirty = true;
  if (st.pullPending && !st.frameTimer) {
    st.frameTimer = setTimeout(postFrame, Math.max(0, st.lastFrame + FRAME_MIN_MS - performance.now()));
  }
}

function note(text) {
  st.notes.push({ at: Date.now(), text });
  changed();
}

function setConn(state, text) {
  if (st.conn.state === state && st.conn.text === text) return;
  st.conn = { state, text };
  st.connChanged = true;
  changed();
}

// What changed since the last frame. Rows carry their moves (for the flashes).
function postFrame() {
  st.frameTimer = 0;
  if (!st.pullPending) return;
  st.pullPending = false;
  st.dirty = false;
  st.lastFrame = performance.now();
  st.counters.frames++;
  const f = { counters: st.counters };
  if (st.connChanged) {
    f.conn = st.conn;
    st.connChanged = false;
  }
  if (st.symbolsChanged) {
    f.symbols = st.serverSymbols;
    st.symbolsChanged = false;
  }
  if (st.gridChanged) {
    f.grid = st.grid;
    st.gridChanged = false;
  }
  const rows = [];
  for (const s of st.grid) {
    const r = st.rows.get(s);
    if (!r.dirty) continue;
    r.dirty = false;
    rows.push({
      sym: r.sym, bid: r.bid, ask: r.ask, last: r.last, open: r.open, vol: r.vol, ups: r.ups,
      dec: r.dec, sdec: r.sdec, moves: r.moves,
    });
    r.moves = { bid: 0, ask: 0, last: 0 };
  }
  if (rows.length) f.rows = rows;
  if (st.bookDirty) {
    st.bookDirty = false;
    const b = st.detailSub ? st.detailSub.book(st.sel, st.depth) : null;
    f.book = {
      sym: st.sel, ready: Boolean(b && b.ready), seq: b ? b.seq : 0, resyncs: b ? b.resyncs : 0,
      lastResync: st.lastResync, depth: st.depth,
      bids: b && b.ready ? b.bids : [],
      asks: b && b.ready ? b.asks : [],
    };
  }
  if (st.tapeReset || (st.tape.length && st.tape[st.tape.length - 1].no > st.tapeSent)) {
    let first = st.tape.length;
    while (first > 0 && (st.tapeReset || st.tape[first - 1].no > st.tapeSent)) first--;
    f.tape = { sym: st.sel, reset: st.tapeReset, add: st.tape.slice(first) };
    st.tapeReset = false;
    if (st.tape.length) st.tapeSent = st.tape[st.tape.length - 1].no;
  }
  const now = performance.now();
  if (st.seriesDirty) {
    if (now - st.seriesAt >= SERIES_MIN_MS) {
      st.seriesDirty = false;
      st.seriesAt = now;
      const r = st.sel ? st.rows.get(st.sel) : null;
      f.series = { sym: st.sel, points: r ? r.series.slice() : [] };
    } else if (!st.frameTimer) {
      st.dirty = true; // send it in a later frame
    }
  }
  if (st.notes.length) {
    f.notes = st.notes;
    st.notes = [];
  }
  if (st.summary) {
    f.summary = st.summary;
    st.summary = null;
  }
  postMessage(f);
}

self.onmessage = (ev) => {
  const c = ev.data;
  switch (c.cmd) {
    case "init":
      st.url = c.url;
      st.chosen = c.chosen;
      st.sel = c.sel;
      st.depth = c.depth;
      st.throttle = c.throttle;
      connect();
      return;
    case "pull":
      st.pullPending = true;
      if (st.dirty) changed();
      return;
    case "choose":
      st.chosen = c.symbols;
      setGrid();
      syncTicker();
      syncDetail();
      return;
    case "select":
      select(c.symbol);
      return;
    case "depth":
      st.depth = c.depth; // only what is shown: the book is held at BOOK_DEPTH
      st.bookDirty = true;
      changed();
      return;
    case "throttle":
      st.throttle = c.throttle;
      syncTicker(true); // the new options replace the old, with fresh snapshots
      syncDetail(true);
      return;
    default:
  }
};

// ---- connection (the library's) -------------------------------------------------------------
function connect() {
  // The URL carries the page's `?token=`, if any (dashboard.js); the library keeps it on
  // every reconnect.
  st.client = new TickwireClient({ url: st.url, heartbeatMs: HEARTBEAT_MS, WebSocket });
  st.client.on("state", onState);
  st.client.on("error", (e) => {
    st.counters.errors++;
    note(e.code === "handler" ? `dashboard bug: ${e.message}` : `server error ${e.code}: ${e.message}`);
  });
  setConn("connecting", "connecting…");
  askSymbols();
}

// The symbol list, asked on every connection (the engine may have changed).
function askSymbols() {
  st.client.symbols().then(onSymbols, () => { /* the link dropped: asked again on open */ });
}

function onState(state) {
  if (state === "open") {
    st.live = true;
    for (const r of st.rows.values()) r.fresh = true; // the resubscribe's snapshots come first
    if (st.everLive) {
      st.counters.reconnects++;
      note(`reconnected after ${((performance.now() - st.downSince) / 1000).toFixed(1)} s; resubscribed`);
      if (st.tape.length) tapePush({ mark: "reconnected: trades while disconnected are not shown" });
      askSymbols();
    }
    st.everLive = true;
    st.downSince = 0;
    st.bookDirty = true;
    setConn("live", "live");
  } else if (state === "reconnecting") {
    if (st.live) note("connection lost; reconnecting");
    st.live = false;
    if (!st.downSince) st.downSince = performance.now();
    st.bookDirty = true;
    setConn("down", "reconnecting…");
  }
}

// ---- subscriptions (library subscriptions, replaced as a whole) ---------------------------------
// A new subscription is made before the old one is closed, so that the pairs both hold
// are never unsubscribed: the engine just replaces their options.
function syncTicker(force = false) {
  const key = st.grid.join(",");
  if (!force && key === st.tickerSymbols) return;
  const old = st.tickerSub;
  st.tickerSymbols = key;
  st.tickerSub = null;
  if (st.grid.length) {
    st.tickerSub = st.client.subscribe({ symbols: st.grid, channels: ["ticker"], throttleMs: st.throttle });
    st.tickerSub.on("ticker", onTicker);
    for (const s of st.grid) st.rows.get(s).fresh = true; // the first ticker is the subscribe snapshot
  }
  if (old) old.close();
}

function syncDetail(force = false) {
  const want = st.sel && st.rows.has(st.sel) ? st.sel : null;
  const held = st.detailSub ? st.detailSub.symbols[0] : null;
  if (!force && want === held) return;
  const old = st.detailSub;
  st.detailSub = null;
  if (old && held !== want) old.close(); // another symbol: drop the old one first
  if (want) {
    const sub = st.client.subscribe({ symbols: [want], channels: ["trades", "book"], depth: BOOK_DEPTH, throttleMs: st.throttle });
    sub.on("trade", onTrade).on("gap", onGap).on("reset", onReset).on("book", onBook).on("resync", onResync);
    st.detailSub = sub;
  }
  if (old && held === want) old.close();
  st.bookDirty = true;
  changed();
}

// ---- state ----------------------------------------------------------------------------------
function newRow(sym) {
  return {
    sym, dec: 0, sdec: 0, bid: null, ask: null, last: null, open: null, vol: null,
    n: 0, ups: 0, fresh: true, dirty: true, moves: { bid: 0, ask: 0, last: 0 }, series: [],
  };
}

function setGrid() {
  const server = st.serverSymbols;
  const chosen = st.chosen === null ? null : new Set(st.chosen);
  st.grid = chosen === null ? server.slice() : server.filter((s) => chosen.has(s));
  st.gridChanged = true;
  const keep = new Set(st.grid);
  for (const s of st.rows.keys()) if (!keep.has(s)) st.rows.delete(s);
  for (const s of st.grid) if (!st.rows.has(s)) st.rows.set(s, newRow(s));
  changed();
}

function select(sym) {
  if (sym === st.sel) return;
  st.sel = sym;
  st.lastResync = "";
  st.tape = [];
  st.tapeReset = true;
  st.seriesDirty = true;
  if (st.client) syncDetail();
  changed();
}

function addPoint(r, price, nowMs) {
  const t = Math.floor(nowMs / 1000);
  const s = r.series;
  const p = s.length ? s[s.length - 1] : null;
  if (p && p.t === t) {
    p.c = price;
    if (price > p.h) p.h = price;
    if (price < p.l) p.l = price;
  } else {
    s.push({ t, c: price, h: price, l: price });
    if (s.length > CHART_SECONDS + 2) s.splice(0, s.length - CHART_SECONDS - 2);
  }
  if (r.sym === st.sel) st.seriesDirty = true;
}

function move(r, field, v) {
  const old = r[field];
  if (v === null || v === undefined || v === old) return;
  if (old !== null) r.moves[field] = v > old ? 1 : -1;
  r[field] = v;
  const d = decimals(v);
  if (d > r.dec) r.dec = d;
}

function tapePush(entry) {
  entry.no = ++st.tapeNo;
  st.tape.push(entry);
  if (st.tape.length > TAPE_MAX) st.tape.splice(0, st.tape.length - TAPE_MAX);
}

// ---- events from the library ---------------------------------------------------------------
function onSymbols(symbols) {
  if (!Array.isArray(symbols)) return;
  st.serverSymbols = symbols.filter((s) => typeof s === "string");
  st.symbolsChanged = true;
  setGrid();
  syncTicker();
  syncDetail();
}

function onTicker(m) {
  const now = wallMs();
  st.counters.messages++;
  st.counters.ticker++;
  const r = st.rows.get(m.symbol);
  if (!r) return;
  if (r.fresh) r.fresh = false; // a snapshot: its ingest_ts may be old
  else recordLatency(m.ingest_ts, now);
  r.n++;
  move(r, "bid", m.bid);
  move(r, "ask", m.ask);
  if (m.last !== null && m.last !== undefined) {
    if (r.open === null) r.open = m.last;
    move(r, "last", m.last);
    addPoint(r, m.last, now);
  }
  r.vol = m.volume;
  if (m.bid_size !== null && m.bid_size !== undefined) {
    const sd = decimals(m.bid_size);
    if (sd > r.sdec) r.sdec = sd;
  }
  r.dirty = true;
  changed();
}

function onTrade(m) {
  const now = wallMs();
  st.counters.messages++;
  st.counters.trade++;
  recordLatency(m.ingest_ts, now);
  if (m.symbol !== st.sel) return;
  tapePush({ ts: m.ts, price: m.price, size: m.size, side: m.side });
  const r = st.rows.get(m.symbol);
  if (r) {
    const d = decimals(m.price);
    if (d > r.dec) r.dec = d;
    const sd = decimals(m.size);
    if (sd > r.sdec) r.sdec = sd;
    addPoint(r, m.price, now);
  }
  changed();
}

// Gaps come from the engine (slow_consumer, feed_gap, …) or from the library (trades
// missed while reconnecting to a version 1 engine): either way seqs that will not come.
function onGap(m) {
  st.counters.gaps++;
  const n = m.to_seq - m.from_seq + 1;
  note(`${m.symbol}: ${m.channel} gap, seqs ${m.from_seq}–${m.to_seq} skipped (${n}, ${m.reason})`);
  if (m.channel === "trades" && m.symbol === st.sel) tapePush({ mark: `gap: ${n} trades skipped (${m.reason})` });
  changed();
}

function onReset(m) {
  note(`${m.symbol}: trade seqs start afresh (${m.reason === "epoch" ? "a new epoch" : "the engine restarted"}; last held ${m.last_seq})`);
  if (m.symbol === st.sel) tapePush({ mark: "trades start afresh: the engine restarted" });
}

function onBook(m) {
  st.counters.messages++;
  st.counters.book++;
  // Snapshots answer subscribes (their state may be old): no latency.
  if (!m.snapshot) recordLatency(m.ingest_ts, wallMs());
  if (m.symbol !== st.sel) return;
  st.bookDirty = true;
  changed();
}

function onResync(r) {
  st.counters.resyncs++;
  st.lastResync = `seq ${r.held_seq} → ${r.seq}`;
  note(`${r.symbol}: book seq gap (${st.lastResync}); resubscribed for a fresh snapshot`);
  st.bookDirty = true;
  changed();
}

// ---- once a second: rates, latency, clock -----------------------------------------------------
let lastTick = performance.now();
let lastMessages = 0;
setInterval(() => {
  const now = performance.now();
  const dt = Math.max(0.001, (now - lastTick) / 1000);
  lastTick = now;
  for (const r of st.rows.values()) {
    const ups = r.n / dt;
    r.n = 0;
    if (ups !== r.ups) {
      r.ups = ups;
      r.dirty = true;
    }
  }
  const rate = (st.counters.messages - lastMessages) / dt;
  lastMessages = st.counters.messages;
  st.summary = { live: st.live, msgPerSec: rate, lat: latencySummary(wallMs()) };
  // The heartbeat and the reconnects are the library's.
  if (Math.abs(Date.now() - wallMs()) > 2) anchorClock();
  st.seriesDirty = true; // the chart's time axis moves
  changed();
}, 1000);
