// tickwire dashboard, the client half: a Web Worker that speaks protocol.md over /ws.
//
// It owns the WebSocket, the subscriptions, the reconnects, every market state the page
// shows (tickers, the selected symbol's book, trades and price history) and the
// latency histogram, so that thousands of messages per second never queue on the
// page's main thread. The page pulls a frame (what changed since the last pull) when
// it is ready to render, at most once per animation frame; between pulls the worker
// conflates.
"use strict";

const CHART_SECONDS = 300; // price history kept per symbol: the last 5 minutes, 1 s buckets
const TAPE_MAX = 50;
const LAT_SLOTS = 10; // seconds of browser latency kept
const BACKOFF_BASE_MS = 250;
const BACKOFF_CAP_MS = 10000;
const FRAME_MIN_MS = 16; // at most one frame per 16 ms even when pulled faster
const SERIES_MIN_MS = 100; // the chart's series is sent at most every 100 ms

const st = {
  url: "",
  ws: null,
  live: false,
  everLive: false,
  attempt: 0,
  retryAt: 0,
  retryTimer: 0,
  downSince: 0,
  lastRx: 0,
  nextId: 1,
  serverSymbols: [],
  symbolsChanged: false,
  chosen: null, // null: every symbol the server has
  grid: [], // symbols shown, in server order
  gridChanged: false,
  rows: new Map(), // symbol -> row state
  subTicker: new Set(), // ticker subscriptions held on this connection
  subDetail: null, // symbol whose trades + book are subscribed on this connection
  sel: null,
  depth: 10,
  throttle: 0,
  book: newBook(null),
  tape: [], // the last TAPE_MAX trades (and marks) of the selected symbol, oldest first
  tapeNo: 0,
  tapeSent: 0, // newest entry number sent to the page
  tapeReset: true,
  tradeSeq: 0,
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
  if (st.book.dirty) {
    const b = st.book;
    b.dirty = false;
    f.book = {
      sym: b.sym, ready: b.ready, seq: b.seq, resyncs: b.resyncs, lastResync: b.lastResync, depth: b.depth,
      bids: b.ready ? [...b.bids].sort((x, y) => y[0] - x[0]).slice(0, b.depth) : [],
      asks: b.ready ? [...b.asks].sort((x, y) => x[0] - y[0]).slice(0, b.depth) : [],
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
      st.depth = c.depth;
      st.book.dirty = true;
      resubscribeBook();
      changed();
      return;
    case "throttle":
      st.throttle = c.throttle;
      subscribeTicker(st.grid); // replaces the options, sends fresh snapshots
      resubscribeBook();
      return;
    default:
  }
};

// ---- connection -------------------------------------------------------------------------
// Sends a command with a fresh id; returns the id (0 when not connected).
function send(obj) {
  if (!st.ws || st.ws.readyState !== WebSocket.OPEN) return 0;
  obj.id = st.nextId++;
  st.ws.send(JSON.stringify(obj));
  return obj.id;
}

function connect() {
  clearTimeout(st.retryTimer);
  st.retryTimer = 0;
  let ws;
  try {
    ws = new WebSocket(st.url);
  } catch (e) {
    scheduleReconnect();
    return;
  }
  st.ws = ws;
  setConn(st.everLive ? "down" : "connecting", st.attempt ? `connecting… (attempt ${st.attempt + 1})` : "connecting…");
  ws.onopen = () => {
    st.live = true;
    st.lastRx = performance.now();
    st.subTicker.clear();
    st.subDetail = null;
    if (st.everLive) {
      st.counters.reconnects++;
      note(`reconnected after ${((performance.now() - st.downSince) / 1000).toFixed(1)} s; resubscribed`);
      if (st.tape.length) tapePush({ mark: "reconnected: trades while disconnected are not shown" });
    }
    st.everLive = true;
    st.downSince = 0;
    setConn("live", "live");
    send({ op: "symbols" });
  };
  ws.onmessage = onMessage;
  ws.onclose = (ev) => {
    if (st.ws !== ws) return;
    lost(`connection closed (${ev.code || "no code"}${ev.reason ? ": " + ev.reason : ""})`);
  };
  ws.onerror = () => { /* onclose follows */ };
}

function lost(why) {
  const ws = st.ws;
  st.ws = null;
  if (ws) {
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try { ws.close(); } catch (_) { /* already closed */ }
  }
  if (st.live) note(why + "; reconnecting");
  if (!st.downSince) st.downSince = performance.now();
  st.live = false;
  scheduleReconnect();
}

// Exponential backoff with jitter, capped: 250 ms, 500 ms, 1 s, … 10 s, each drawn
// uniformly from [half, full] of its step. The step resets once the server answers.
function scheduleReconnect() {
  if (st.retryTimer) return;
  st.attempt++;
  const step = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.min(st.attempt - 1, 16));
  const delay = step / 2 + Math.random() * (step / 2);
  st.retryAt = performance.now() + delay;
  st.retryTimer = setTimeout(connect, delay);
  countdown();
}
function countdown() {
  if (st.live || !st.retryTimer) return;
  const left = Math.max(0, st.retryAt - performance.now()) / 1000;
  setConn("down", `reconnecting in ${left.toFixed(1)} s (attempt ${st.attempt})`);
}

self.addEventListener("online", () => {
  if (!st.live && st.retryTimer) connect();
});

// ---- subscriptions ------------------------------------------------------------------------
function syncTicker() {
  const want = new Set(st.grid);
  const add = st.grid.filter((s) => !st.subTicker.has(s));
  const drop = [...st.subTicker].filter((s) => !want.has(s));
  if (drop.length && send({ op: "unsubscribe", channels: ["ticker"], symbols: drop })) {
    for (const s of drop) st.subTicker.delete(s);
  }
  if (add.length) subscribeTicker(add);
}
function subscribeTicker(symbols) {
  if (!symbols.length) return;
  if (send({ op: "subscribe", channels: ["ticker"], symbols, throttle_ms: st.throttle })) {
    for (const s of symbols) {
      st.subTicker.add(s);
      const r = st.rows.get(s);
      if (r) r.fresh = true; // the first ticker is the subscribe snapshot
    }
  }
}
function syncDetail() {
  const want = st.sel && st.rows.has(st.sel) ? st.sel : null;
  if (st.subDetail && st.subDetail !== want) {
    send({ op: "unsubscribe", channels: ["trades", "book"], symbols: [st.subDetail] });
    st.subDetail = null;
  }
  if (want && st.subDetail !== want) {
    const id = send({ op: "subscribe", channels: ["trades", "book"], symbols: [want], depth: st.depth, throttle_ms: st.throttle });
    if (id) {
      st.subDetail = want;
      st.book.want = { id, depth: st.depth };
      st.tradeSeq = 0;
    }
  }
}
function resubscribeBook() {
  if (!st.sel || st.subDetail !== st.sel) return;
  const id = send({ op: "subscribe", channels: ["book"], symbols: [st.sel], depth: st.depth, throttle_ms: st.throttle });
  if (id) st.book.want = { id, depth: st.depth };
}

// ---- state ----------------------------------------------------------------------------------
// `depth`: the depth the held snapshot was built at (what the engine keeps us in sync
// with); `want`: a book subscribe not answered yet ({id, depth}); `replyDepth`: the depth
// of the snapshot that answers it, due after its `subscribed`. Until that reply, the
// engine goes on with the previous subscription (its updates, and conflation snapshots,
// at the previous depth), so those are applied as they are, at `depth`.
function newBook(sym) {
  return {
    sym, seq: 0, ready: false, depth: 0, want: null, replyDepth: 0,
    bids: new Map(), asks: new Map(), resyncs: 0, lastResync: "", dirty: true,
  };
}
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
  st.book = newBook(sym);
  st.tape = [];
  st.tapeReset = true;
  st.tradeSeq = 0;
  st.seriesDirty = true;
  syncDetail();
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

// ---- messages -----------------------------------------------------------------------------
function onMessage(ev) {
  const now = wallMs();
  st.lastRx = performance.now();
  let m;
  try {
    m = JSON.parse(ev.data);
  } catch (_) {
    return;
  }
  st.counters.messages++;
  switch (m.type) {
    case "ticker": onTicker(m, now); break;
    case "trade": onTrade(m, now); break;
    case "book": onBook(m, now); break;
    case "gap": onGap(m); break;
    case "symbols": onSymbols(m); break;
    case "error":
      st.counters.errors++;
      note(`server error ${m.code}: ${m.message}`);
      break;
    case "subscribed":
      if (st.book.want && m.id === st.book.want.id) {
        st.book.replyDepth = st.book.want.depth;
        st.book.want = null;
      }
      break;
    default: // unsubscribed, pong
  }
}

function onSymbols(m) {
  if (!Array.isArray(m.symbols)) return;
  st.attempt = 0; // the server answers: the connection is good
  st.serverSymbols = m.symbols.filter((s) => typeof s === "string");
  st.symbolsChanged = true;
  setGrid();
  syncTicker();
  syncDetail();
}

function onTicker(m, now) {
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

function onTrade(m, now) {
  st.counters.trade++;
  recordLatency(m.ingest_ts, now);
  if (m.symbol !== st.sel) return;
  if (st.tradeSeq && m.seq !== st.tradeSeq + 1) {
    note(`${m.symbol}: trade seq jumped ${st.tradeSeq} → ${m.seq} without a gap message`);
  }
  st.tradeSeq = m.seq;
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

function onGap(m) {
  st.counters.gaps++;
  const n = m.to_seq - m.from_seq + 1;
  note(`${m.symbol}: ${m.channel} gap, seqs ${m.from_seq}–${m.to_seq} skipped (${n}, ${m.reason})`);
  if (m.channel === "trades" && m.symbol === st.sel) {
    tapePush({ mark: `gap: ${n} trades skipped (${m.reason})` });
    st.tradeSeq = m.to_seq;
  }
}

// The book as protocol.md says: a snapshot replaces it, an update changes levels (size 0
// removes), updates follow the snapshot with contiguous seqs. On a seq gap, subscribe
// again for a fresh snapshot and ignore updates until it comes.
function onBook(m, now) {
  st.counters.book++;
  const b = st.book;
  if (m.symbol !== b.sym) {
    recordLatency(m.ingest_ts, now);
    return;
  }
  if (m.snapshot) {
    if (b.replyDepth) {
      // The reply to our subscribe (its state may be old: no latency), at its depth.
      b.depth = b.replyDepth;
      b.replyDepth = 0;
    } else recordLatency(m.ingest_ts, now);
    b.bids.clear();
    b.asks.clear();
    for (const [p, s] of m.bids) b.bids.set(p, s);
    for (const [p, s] of m.asks) b.asks.set(p, s);
    b.seq = m.seq;
    b.ready = true;
  } else {
    recordLatency(m.ingest_ts, now);
    if (b.replyDepth || !b.ready) return; // a fresh snapshot is on its way
    if (m.seq !== b.seq + 1) {
      b.resyncs++;
      st.counters.resyncs++;
      b.lastResync = `seq ${b.seq} → ${m.seq}`;
      note(`${m.symbol}: book seq gap (${b.lastResync}); resubscribed for a fresh snapshot`);
      b.ready = false;
      b.dirty = true;
      resubscribeBook();
      changed();
      return;
    }
    for (const [p, s] of m.bids) (s === 0 ? b.bids.delete(p) : b.bids.set(p, s));
    for (const [p, s] of m.asks) (s === 0 ? b.asks.delete(p) : b.asks.set(p, s));
    b.seq = m.seq;
  }
  b.dirty = true;
  changed();
}

// ---- once a second: rates, latency, countdown, heartbeat ----------------------------------
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
  countdown();
  // heartbeat: ask when quiet, give up on a connection silent for 20 s
  if (st.live) {
    const quiet = now - st.lastRx;
    if (quiet > 20000) lost("no data for 20 s");
    else if (quiet > 5000) send({ op: "ping" });
  }
  if (Math.abs(Date.now() - wallMs()) > 2) anchorClock();
  st.seriesDirty = true; // the chart's time axis moves
  changed();
}, 1000);
