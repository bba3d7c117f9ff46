// tickwire dashboard: a plain client of protocol.md over /ws, no dependencies.
//
// Messages only update in-memory state and mark it dirty; one render per animation
// frame writes the DOM and the canvas. Every string from the server goes into the page
// through textContent (never innerHTML).
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);

  // ---- settings kept across visits ------------------------------------------------
  const store = {
    get(key, fallback) {
      try {
        const v = localStorage.getItem("tickwire." + key);
        return v === null ? fallback : JSON.parse(v);
      } catch (_) {
        return fallback;
      }
    },
    set(key, value) {
      try {
        if (value === null || value === undefined) localStorage.removeItem("tickwire." + key);
        else localStorage.setItem("tickwire." + key, JSON.stringify(value));
      } catch (_) { /* storage may be disabled */ }
    },
  };

  const THROTTLES = [0, 100, 250, 1000];
  const DEPTHS = [5, 10, 20, 50];
  const CHART_SECONDS = 300; // the chart shows the last 5 minutes
  const TAPE_MAX = 50;
  const LAT_SLOTS = 10; // seconds of browser latency kept
  const BACKOFF_BASE_MS = 250;
  const BACKOFF_CAP_MS = 10000;
  const COLUMNS = [
    { key: "symbol", label: "symbol", cls: "c-sym" },
    { key: "bid", label: "bid", cls: "c-bid" },
    { key: "ask", label: "ask", cls: "c-ask" },
    { key: "last", label: "last", cls: "c-last" },
    { key: "chg", label: "chg", cls: "c-chg", title: "change since the first last price seen in this session" },
    { key: "vol", label: "volume", cls: "c-vol" },
    { key: "ups", label: "upd/s", cls: "c-ups", title: "ticker messages received per second" },
  ];
  const STAGES = ["feed_decode", "exchange_to_ingest", "ingest_to_encode", "tick_to_wire", "outbox_wait"];

  const pick = (v, allowed, dflt) => (allowed.includes(v) ? v : dflt);
  const savedSort = store.get("sort", null);
  const st = {
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
    chosen: store.get("symbols", null), // null: every symbol the server has
    grid: [], // symbols shown, in server order
    rows: new Map(), // symbol -> row state
    subTicker: new Set(), // ticker subscriptions held on this connection
    subDetail: null, // symbol whose trades + book are subscribed on this connection
    sel: null,
    depth: pick(store.get("depth", 10), DEPTHS, 10),
    throttle: pick(store.get("throttle", 0), THROTTLES, 0),
    sort: savedSort && COLUMNS.some((c) => c.key === savedSort.key) ? savedSort : { key: null, dir: 1 },
    sortAt: 0,
    orderDirty: true,
    book: null,
    tape: [], // the last TAPE_MAX trades (and gap marks) of the selected symbol, oldest first
    tapeNo: 0, // numbers tape entries
    tapeShown: 0, // the newest entry number on screen
    tapeFmt: "", // the number format the rows on screen use
    tradeSeq: 0,
    detailDirty: true,
    chartDirty: true,
    chartAt: 0,
    notes: [],
    notesDirty: false,
    counters: { messages: 0, ticker: 0, trade: 0, book: 0, gaps: 0, resyncs: 0, reconnects: 0, renders: 0, errors: 0 },
    rate: { at: performance.now(), messages: 0, perSec: 0 },
  };

  // ---- wall clock with sub-millisecond resolution ----------------------------------
  // performance.now() is fine-grained; Date.now() is the wall clock in whole ms. Anchor
  // one to the other on a millisecond edge, and re-anchor if they drift apart.
  let clockOffset = 0;
  function anchorClock() {
    const start = Date.now();
    let now = start;
    const limit = performance.now() + 3;
    while (now === start && performance.now() < limit) now = Date.now();
    clockOffset = now - performance.now();
  }
  const wallMs = () => clockOffset + performance.now();
  anchorClock();

  // ---- browser latency: log-linear histogram (≈6 %), one per second, 10 s kept -----
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

  // ---- number formatting -------------------------------------------------------------
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
  const fmtFixed = (v, d) => (v === null || v === undefined ? "" : v.toFixed(Math.min(d, 12)));
  function fmtVolume(v) {
    if (v === null || v === undefined) return "";
    if (v >= 1e9) return (v / 1e9).toFixed(2) + "B";
    if (v >= 1e6) return (v / 1e6).toFixed(2) + "M";
    if (v >= 1e4) return (v / 1e3).toFixed(1) + "k";
    return v.toFixed(v >= 100 ? 1 : v >= 1 ? 3 : 6).replace(/\.?0+$/, "");
  }
  function fmtPct(chg, open) {
    if (chg === null || !open) return "";
    const p = (chg / open) * 100;
    return (p > 0 ? "+" : p < 0 ? "−" : "") + Math.abs(p).toFixed(2) + "%";
  }
  const pad = (n, w) => String(n).padStart(w, "0");
  function fmtClock(ms, withMs) {
    const d = new Date(ms);
    const s = pad(d.getHours(), 2) + ":" + pad(d.getMinutes(), 2) + ":" + pad(d.getSeconds(), 2);
    return withMs ? s + "." + pad(d.getMilliseconds(), 3) : s;
  }
  const fmtUs = (ns) => {
    if (ns === null || ns === undefined) return "—";
    const us = ns / 1000;
    return us < 10 ? us.toFixed(2) : us < 1000 ? us.toFixed(1) : Math.round(us).toLocaleString("en-US");
  };
  const fmtMs = (ms) => (ms < 1 ? ms.toFixed(3) : ms < 100 ? ms.toFixed(2) : ms.toFixed(0));

  // ---- notes (gaps, resyncs, reconnects, errors) ----------------------------------
  function note(text) {
    st.notes.unshift({ at: Date.now(), text });
    if (st.notes.length > 4) st.notes.length = 4;
    st.notesDirty = true;
    schedule();
  }

  // ---- connection ----------------------------------------------------------------------
  function send(obj) {
    if (!st.ws || st.ws.readyState !== WebSocket.OPEN) return false;
    obj.id = st.nextId++;
    st.ws.send(JSON.stringify(obj));
    return true;
  }

  function connect() {
    clearTimeout(st.retryTimer);
    st.retryTimer = 0;
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
    let ws;
    try {
      ws = new WebSocket(url);
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
        if (st.tape.length) tapePush({ gap: "reconnected: trades while disconnected are not shown" });
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
  // uniformly from [half, full] of its step.
  function scheduleReconnect() {
    if (st.retryTimer) return;
    st.attempt++;
    const step = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.min(st.attempt - 1, 16));
    const delay = step / 2 + Math.random() * (step / 2);
    st.retryAt = performance.now() + delay;
    st.retryTimer = setTimeout(connect, delay);
    updateConnCountdown();
  }

  function setConn(state, text) {
    const el = $("conn");
    el.dataset.state = state;
    el.textContent = text;
  }
  function updateConnCountdown() {
    if (st.live || !st.retryTimer) return;
    const left = Math.max(0, st.retryAt - performance.now()) / 1000;
    setConn("down", `reconnecting in ${left.toFixed(1)} s (attempt ${st.attempt})`);
  }

  window.addEventListener("online", () => {
    if (!st.live && st.retryTimer) connect();
  });

  // ---- subscriptions -----------------------------------------------------------------
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
    if (st.subDetail && st.subDetail !== st.sel) {
      send({ op: "unsubscribe", channels: ["trades", "book"], symbols: [st.subDetail] });
      st.subDetail = null;
    }
    if (st.sel && st.subDetail !== st.sel) {
      if (send({ op: "subscribe", channels: ["trades", "book"], symbols: [st.sel], depth: st.depth, throttle_ms: st.throttle })) {
        st.subDetail = st.sel;
        st.book.awaiting = true;
        st.tradeSeq = 0;
      }
    }
  }
  function resubscribeBook() {
    if (!st.sel || st.subDetail !== st.sel) return;
    if (send({ op: "subscribe", channels: ["book"], symbols: [st.sel], depth: st.depth, throttle_ms: st.throttle })) {
      st.book.awaiting = true;
    }
  }

  // ---- state ---------------------------------------------------------------------------
  function newBook(sym) {
    return { sym, seq: 0, ready: false, awaiting: true, bids: new Map(), asks: new Map(), resyncs: 0, lastResync: "" };
  }
  function newRow(sym) {
    return {
      sym, dec: 0, sdec: 0, bid: null, ask: null, last: null, open: null, vol: null,
      n: 0, ups: 0, fresh: true, dirty: true, moves: { bid: 0, ask: 0, last: 0 }, series: [], el: null,
    };
  }

  function setGrid() {
    const server = st.serverSymbols;
    const chosen = st.chosen === null ? null : new Set(st.chosen);
    st.grid = chosen === null ? server.slice() : server.filter((s) => chosen.has(s));
    const keep = new Set(st.grid);
    for (const [s, r] of st.rows) {
      if (!keep.has(s)) {
        if (r.el) r.el.tr.remove();
        st.rows.delete(s);
      }
    }
    for (const s of st.grid) if (!st.rows.has(s)) st.rows.set(s, newRow(s));
    if (!st.sel || !keep.has(st.sel)) {
      const hashSym = symbolFromHash();
      const saved = store.get("selected", null);
      select(keep.has(hashSym) ? hashSym : keep.has(saved) ? saved : st.grid[0] || null);
    }
    st.orderDirty = true;
    renderPicker();
    schedule();
  }

  function select(sym) {
    if (sym === st.sel && st.book) return;
    st.sel = sym;
    st.book = newBook(sym);
    st.tape = [];
    st.tapeFmt = ""; // clears the rows on screen
    st.tradeSeq = 0;
    st.detailDirty = st.chartDirty = true;
    if (sym) {
      store.set("selected", sym);
      const hash = "#" + encodeURIComponent(sym);
      if (location.hash !== hash) history.replaceState(null, "", hash);
    }
    for (const r of st.rows.values()) if (r.el) r.el.tr.classList.toggle("selected", r.sym === sym);
    syncDetail();
    schedule();
  }
  function symbolFromHash() {
    try {
      return decodeURIComponent(location.hash.slice(1)) || null;
    } catch (_) {
      return null;
    }
  }
  window.addEventListener("hashchange", () => {
    const s = symbolFromHash();
    if (s && st.rows.has(s)) select(s);
  });

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
    if (r.sym === st.sel) st.chartDirty = true;
  }

  function move(r, field, v) {
    const old = r[field];
    if (v === null || v === undefined || v === old) return;
    if (old !== null) r.moves[field] = v > old ? 1 : -1;
    r[field] = v;
    const d = decimals(v);
    if (d > r.dec) r.dec = d;
  }

  // ---- messages ------------------------------------------------------------------------
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
      case "ticker": return onTicker(m, now);
      case "trade": return onTrade(m, now);
      case "book": return onBook(m, now);
      case "gap": return onGap(m);
      case "symbols": return onSymbols(m);
      case "error":
        st.counters.errors++;
        note(`server error ${m.code}: ${m.message}`);
        return;
      default: return; // subscribed, unsubscribed, pong
    }
  }

  function onSymbols(m) {
    if (!Array.isArray(m.symbols)) return;
    st.attempt = 0; // the server answers: the connection is good
    st.serverSymbols = m.symbols.filter((s) => typeof s === "string");
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
    if (m.bid_size !== null) r.sdec = Math.max(r.sdec, decimals(m.bid_size));
    r.dirty = true;
    if (m.symbol === st.sel) st.detailDirty = true;
    schedule();
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
    st.detailDirty = true;
    schedule();
  }

  function tapePush(entry) {
    entry.no = ++st.tapeNo;
    st.tape.push(entry);
    if (st.tape.length > TAPE_MAX) st.tape.splice(0, st.tape.length - TAPE_MAX);
  }

  function onGap(m) {
    st.counters.gaps++;
    const n = m.to_seq - m.from_seq + 1;
    note(`${m.symbol}: ${m.channel} gap, seqs ${m.from_seq}–${m.to_seq} skipped (${n}, ${m.reason})`);
    if (m.channel === "trades" && m.symbol === st.sel) {
      tapePush({ gap: `gap: ${n} trades skipped (${m.reason})` });
      st.tradeSeq = m.to_seq;
      st.detailDirty = true;
    }
  }

  function onBook(m, now) {
    st.counters.book++;
    const b = st.book;
    if (!b || m.symbol !== b.sym) return;
    if (m.snapshot) {
      if (b.awaiting) b.awaiting = false; // the reply to our subscribe: may be old
      else recordLatency(m.ingest_ts, now);
      b.bids.clear();
      b.asks.clear();
      for (const [p, s] of m.bids) b.bids.set(p, s);
      for (const [p, s] of m.asks) b.asks.set(p, s);
      b.seq = m.seq;
      b.ready = true;
    } else {
      recordLatency(m.ingest_ts, now);
      if (b.awaiting || !b.ready) return; // a fresh snapshot is on its way
      if (m.seq !== b.seq + 1) {
        b.resyncs++;
        st.counters.resyncs++;
        b.lastResync = `seq ${b.seq} → ${m.seq}`;
        note(`${m.symbol}: book seq gap (${b.lastResync}); resubscribed for a fresh snapshot`);
        b.ready = false;
        resubscribeBook();
        st.detailDirty = true;
        return;
      }
      for (const [p, s] of m.bids) (s === 0 ? b.bids.delete(p) : b.bids.set(p, s));
      for (const [p, s] of m.asks) (s === 0 ? b.asks.delete(p) : b.asks.set(p, s));
      b.seq = m.seq;
    }
    st.detailDirty = true;
    schedule();
  }

  // ---- rendering -------------------------------------------------------------------
  let rafPending = false;
  function schedule() {
    if (!rafPending) {
      rafPending = true;
      requestAnimationFrame(render);
    }
  }

  function render(ts) {
    rafPending = false;
    st.counters.renders++;
    const now = performance.now();
    renderGrid(now);
    if (st.detailDirty) renderDetail();
    if (st.chartDirty) {
      if (now - st.chartAt >= 100) drawChart();
      else schedule();
    }
    if (st.notesDirty) renderNotes();
  }

  function setText(el, text) {
    if (el.textContent !== text) el.textContent = text;
  }

  function buildHead() {
    const tr = $("grid-head");
    for (const c of COLUMNS) {
      const th = document.createElement("th");
      th.className = c.cls;
      th.textContent = c.label;
      th.dataset.key = c.key;
      th.scope = "col";
      if (c.title) th.title = c.title;
      th.addEventListener("click", () => {
        if (st.sort.key === c.key) st.sort = st.sort.dir === 1 ? { key: c.key, dir: -1 } : { key: null, dir: 1 };
        else st.sort = { key: c.key, dir: c.key === "symbol" ? 1 : -1 };
        store.set("sort", st.sort);
        st.orderDirty = true;
        updateSortMarks();
        schedule();
      });
      tr.appendChild(th);
    }
    updateSortMarks();
  }
  function updateSortMarks() {
    for (const th of $("grid-head").children) {
      if (th.dataset.key === st.sort.key) th.setAttribute("aria-sort", st.sort.dir === 1 ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
    }
  }

  function rowEl(r) {
    const tr = document.createElement("tr");
    tr.tabIndex = 0;
    tr.dataset.symbol = r.sym;
    const cells = {};
    for (const c of COLUMNS) {
      const td = document.createElement("td");
      td.className = c.cls;
      tr.appendChild(td);
      cells[c.key] = td;
    }
    const colon = r.sym.indexOf(":");
    const venue = document.createElement("span");
    venue.className = "venue";
    venue.textContent = colon >= 0 ? r.sym.slice(0, colon + 1) : "";
    cells.symbol.appendChild(venue);
    cells.symbol.appendChild(document.createTextNode(colon >= 0 ? r.sym.slice(colon + 1) : r.sym));
    cells.symbol.classList.add("sym");
    cells.symbol.title = r.sym;
    tr.addEventListener("click", () => select(r.sym));
    tr.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        select(r.sym);
      }
    });
    if (r.sym === st.sel) tr.classList.add("selected");
    return { tr, cells };
  }

  function sortValue(r, key) {
    switch (key) {
      case "chg": return r.open && r.last !== null ? (r.last - r.open) / r.open : null;
      case "vol": return r.vol;
      case "ups": return r.ups;
      default: return r[key];
    }
  }

  const FLASH_MS = 350;
  const flashing = new Map(); // cell -> {field, until}
  let flashTimer = 0;

  function renderGrid(now) {
    const body = $("grid-body");
    const numericSort = st.sort.key && st.sort.key !== "symbol";
    if (st.orderDirty || (numericSort && now - st.sortAt > 1000)) {
      st.orderDirty = false;
      st.sortAt = now;
      const rows = st.grid.map((s) => st.rows.get(s));
      const { key, dir } = st.sort;
      if (key === "symbol") rows.sort((a, b) => dir * a.sym.localeCompare(b.sym));
      else if (key) {
        rows.sort((a, b) => {
          const x = sortValue(a, key);
          const y = sortValue(b, key);
          if (x === null || x === undefined) return y === null || y === undefined ? 0 : 1;
          if (y === null || y === undefined) return -1;
          return dir * (x - y);
        });
      }
      let i = 0;
      for (const r of rows) {
        if (!r.el) r.el = rowEl(r);
        if (body.children[i] !== r.el.tr) body.insertBefore(r.el.tr, body.children[i] || null);
        i++;
      }
      while (body.children.length > rows.length) body.lastChild.remove();
      $("grid-empty").hidden = rows.length > 0;
    }
    for (const s of st.grid) {
      const r = st.rows.get(s);
      if (!r.dirty || !r.el) continue;
      r.dirty = false;
      const c = r.el.cells;
      setText(c.bid, fmtFixed(r.bid, r.dec));
      setText(c.ask, fmtFixed(r.ask, r.dec));
      setText(c.last, fmtFixed(r.last, r.dec));
      const chg = r.open !== null && r.last !== null ? r.last - r.open : null;
      setText(c.chg, fmtPct(chg, r.open));
      c.chg.className = "c-chg" + (chg > 0 ? " pos" : chg < 0 ? " neg" : "");
      setText(c.vol, fmtVolume(r.vol));
      setText(c.ups, r.ups ? (r.ups < 10 ? r.ups.toFixed(1) : Math.round(r.ups).toString()) : "0");
      for (const f of ["bid", "ask", "last"]) {
        const mv = r.moves[f];
        if (!mv) continue;
        r.moves[f] = 0;
        const cls = "c-" + f + (mv > 0 ? " up" : " down");
        if (c[f].className !== cls) c[f].className = cls;
        if (!flashing.has(c[f])) flashing.set(c[f], { field: f, until: 0 });
        flashing.get(c[f]).until = now + FLASH_MS;
      }
    }
    // Flashes are a class held for FLASH_MS, not a CSS animation: a cell is painted when
    // it changes, not on every frame.
    let next = Infinity;
    for (const [cell, fl] of flashing) {
      if (fl.until <= now) {
        cell.className = "c-" + fl.field;
        flashing.delete(cell);
      } else if (fl.until < next) next = fl.until;
    }
    if (next !== Infinity && !flashTimer) {
      flashTimer = setTimeout(() => {
        flashTimer = 0;
        schedule();
      }, next - now + 5);
    }
  }

  function renderDetail() {
    st.detailDirty = false;
    const sym = st.sel;
    const r = sym ? st.rows.get(sym) : null;
    setText($("d-sym"), sym || "no symbol selected");
    if (r) {
      setText($("d-last"), fmtFixed(r.last, r.dec));
      const chg = r.open !== null && r.last !== null ? r.last - r.open : null;
      const chgEl = $("d-chg");
      setText(chgEl, chg === null ? "" : (chg >= 0 ? "+" : "−") + Math.abs(chg).toFixed(r.dec) + " (" + fmtPct(chg, r.open) + ")");
      chgEl.className = "d-chg" + (chg > 0 ? " pos" : chg < 0 ? " neg" : "");
      setText($("d-touch"), r.bid !== null && r.ask !== null ? `bid ${fmtFixed(r.bid, r.dec)} · ask ${fmtFixed(r.ask, r.dec)}` : "");
    }
    renderBook(r);
    renderTape(r);
  }

  function renderBook(r) {
    const b = st.book;
    const el = $("book");
    const depth = st.depth;
    while (el.children.length < depth) {
      const row = document.createElement("div");
      row.className = "lvl";
      row.innerHTML = '<i class="bb"></i><i class="ab"></i><span class="bs"></span><span class="bp"></span><span class="ap"></span><span class="as"></span>';
      el.appendChild(row);
    }
    while (el.children.length > depth) el.lastChild.remove();
    const dec = r ? r.dec : 2;
    const sdec = r ? Math.min(r.sdec, 8) : 0;
    const bids = b && b.ready ? [...b.bids].sort((x, y) => y[0] - x[0]).slice(0, depth) : [];
    const asks = b && b.ready ? [...b.asks].sort((x, y) => x[0] - y[0]).slice(0, depth) : [];
    let max = 0;
    for (const l of bids) if (l[1] > max) max = l[1];
    for (const l of asks) if (l[1] > max) max = l[1];
    for (let i = 0; i < depth; i++) {
      const row = el.children[i];
      const [bb, ab, bs, bp, ap, as] = row.children;
      const bl = bids[i];
      const al = asks[i];
      setText(bs, bl ? fmtFixed(bl[1], sdec) : "");
      setText(bp, bl ? fmtFixed(bl[0], dec) : "");
      setText(ap, al ? fmtFixed(al[0], dec) : "");
      setText(as, al ? fmtFixed(al[1], sdec) : "");
      // size bars: scaled, not resized, so that they cost no layout
      const bw = bl && max ? "scaleX(" + (bl[1] / max).toFixed(3) + ")" : "scaleX(0)";
      const aw = al && max ? "scaleX(" + (al[1] / max).toFixed(3) + ")" : "scaleX(0)";
      if (bb.style.transform !== bw) bb.style.transform = bw;
      if (ab.style.transform !== aw) ab.style.transform = aw;
    }
    let info = "";
    if (!b || !st.sel) info = "";
    else if (!b.ready) info = b.resyncs ? `resyncing (${b.lastResync})…` : "waiting for the snapshot…";
    else if (bids.length && asks.length) {
      const spread = asks[0][0] - bids[0][0];
      const mid = (asks[0][0] + bids[0][0]) / 2;
      const bp = (spread / mid) * 1e4;
      info = `spread ${spread.toFixed(dec)} (${bp < 1 ? bp.toPrecision(2) : bp.toFixed(1)} bp) · seq ${b.seq}`;
    } else info = `seq ${b.seq}`;
    if (b && b.resyncs) info += ` · resyncs ${b.resyncs}`;
    setText($("book-info"), info);
  }

  // New trades go in at the top, reusing the bottom row: a trade changes one row, not 50.
  function renderTape(r) {
    const el = $("tape");
    const dec = r ? r.dec : 2;
    const sdec = r ? Math.min(r.sdec, 8) : 0;
    const fmt = dec + "/" + sdec;
    if (st.tapeFmt !== fmt) {
      el.textContent = "";
      st.tapeShown = 0;
      st.tapeFmt = fmt;
    }
    let first = st.tape.length;
    while (first > 0 && st.tape[first - 1].no > st.tapeShown) first--;
    for (let i = first; i < st.tape.length; i++) {
      const t = st.tape[i];
      let row;
      if (el.childElementCount >= TAPE_MAX) row = el.lastElementChild;
      else {
        row = document.createElement("div");
        row.innerHTML = '<span class="t"></span><span class="p"></span><span class="s"></span>';
      }
      const [ct, cp, cs] = row.children;
      if (t.gap) {
        row.className = "trow gap";
        ct.textContent = t.gap;
        cp.textContent = "";
        cs.textContent = "";
      } else {
        row.className = "trow " + (t.side === "buy" ? "buy" : t.side === "sell" ? "sell" : "");
        ct.textContent = fmtClock(t.ts / 1e6, true);
        cp.textContent = fmtFixed(t.price, dec);
        cs.textContent = fmtFixed(t.size, sdec);
      }
      el.insertBefore(row, el.firstChild);
      st.tapeShown = t.no;
    }
  }

  function renderNotes() {
    st.notesDirty = false;
    const ul = $("notes");
    ul.textContent = "";
    for (const n of st.notes) {
      const li = document.createElement("li");
      const time = document.createElement("time");
      time.textContent = fmtClock(n.at, false);
      li.appendChild(time);
      li.appendChild(document.createTextNode(n.text));
      ul.appendChild(li);
    }
  }

  // ---- chart ---------------------------------------------------------------------------
  let colors = null;
  function readColors() {
    const cs = getComputedStyle(document.documentElement);
    const v = (n) => cs.getPropertyValue(n).trim();
    colors = { line: v("--accent"), fill: v("--accent-fill"), grid: v("--grid-line"), text: v("--muted"), fg: v("--fg"), panel: v("--panel") };
    st.chartDirty = true;
    schedule();
  }
  if (window.matchMedia) {
    const mq = window.matchMedia("(prefers-color-scheme: dark)");
    if (mq.addEventListener) mq.addEventListener("change", readColors);
  }

  function sizeCanvas() {
    const c = $("chart");
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(c.clientWidth * dpr));
    const h = Math.max(1, Math.round(c.clientHeight * dpr));
    if (c.width !== w || c.height !== h) {
      c.width = w;
      c.height = h;
    }
    st.chartDirty = true;
    schedule();
  }

  function drawChart() {
    st.chartDirty = false;
    st.chartAt = performance.now();
    if (!colors) readColors();
    const c = $("chart");
    const ctx = c.getContext("2d");
    const W = c.width;
    const H = c.height;
    const dpr = window.devicePixelRatio || 1;
    ctx.clearRect(0, 0, W, H);
    const r = st.sel ? st.rows.get(st.sel) : null;
    const nowS = wallMs() / 1000;
    const pts = r ? r.series.filter((p) => p.t >= nowS - CHART_SECONDS) : [];
    c.dataset.points = String(pts.length);
    ctx.font = `${11 * dpr}px system-ui, sans-serif`;
    if (!pts.length) {
      ctx.fillStyle = colors.text;
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.fillText(st.sel ? "waiting for trades…" : "", W / 2, H / 2);
      return;
    }
    const dec = r.dec;
    const t1 = nowS;
    const t0 = Math.min(pts[0].t, t1 - 30);
    let lo = Infinity;
    let hi = -Infinity;
    for (const p of pts) {
      if (p.l < lo) lo = p.l;
      if (p.h > hi) hi = p.h;
    }
    if (hi - lo < Math.abs(hi) * 1e-5 || hi === lo) {
      const pad = Math.max(Math.abs(hi) * 1e-4, 10 ** -dec);
      hi += pad;
      lo -= pad;
    }
    const padY = (hi - lo) * 0.08;
    hi += padY;
    lo -= padY;
    const left = 6 * dpr;
    const right = W - 64 * dpr;
    const top = 8 * dpr;
    const bottom = H - 18 * dpr;
    const x = (t) => left + ((t - t0) / (t1 - t0)) * (right - left);
    const y = (v) => bottom - ((v - lo) / (hi - lo)) * (bottom - top);

    // grid lines and price labels
    ctx.strokeStyle = colors.grid;
    ctx.lineWidth = 1;
    ctx.fillStyle = colors.text;
    ctx.textAlign = "left";
    ctx.textBaseline = "middle";
    for (let i = 0; i <= 3; i++) {
      const v = lo + ((hi - lo) * i) / 3;
      const yy = Math.round(y(v)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(left, yy);
      ctx.lineTo(right, yy);
      ctx.stroke();
      ctx.fillText(v.toFixed(dec), right + 6 * dpr, yy);
    }
    // time labels
    ctx.textBaseline = "alphabetic";
    ctx.textAlign = "left";
    ctx.fillText(fmtClock(t0 * 1000, false), left, H - 4 * dpr);
    ctx.textAlign = "right";
    ctx.fillText(fmtClock(t1 * 1000, false), right, H - 4 * dpr);

    // high-low band per second, then the last-price line
    ctx.fillStyle = colors.fill;
    ctx.beginPath();
    pts.forEach((p, i) => (i ? ctx.lineTo(x(p.t + 0.5), y(p.h)) : ctx.moveTo(x(p.t + 0.5), y(p.h))));
    for (let i = pts.length - 1; i >= 0; i--) ctx.lineTo(x(pts[i].t + 0.5), y(pts[i].l));
    ctx.closePath();
    ctx.fill();
    ctx.strokeStyle = colors.line;
    ctx.lineWidth = 1.6 * dpr;
    ctx.lineJoin = "round";
    ctx.beginPath();
    pts.forEach((p, i) => (i ? ctx.lineTo(x(p.t + 0.5), y(p.c)) : ctx.moveTo(x(p.t + 0.5), y(p.c))));
    ctx.stroke();
    const lastP = pts[pts.length - 1];
    const ly = y(lastP.c);
    ctx.fillStyle = colors.line;
    ctx.beginPath();
    ctx.arc(x(lastP.t + 0.5), ly, 3 * dpr, 0, 2 * Math.PI);
    ctx.fill();
    // last price tag on the axis
    const label = lastP.c.toFixed(dec);
    const tw = ctx.measureText(label).width + 8 * dpr;
    ctx.fillRect(right + 2 * dpr, ly - 8 * dpr, tw, 16 * dpr);
    ctx.fillStyle = colors.panel;
    ctx.textAlign = "left";
    ctx.textBaseline = "middle";
    ctx.fillText(label, right + 6 * dpr, ly);
  }

  // ---- picker ------------------------------------------------------------------------
  function renderPicker() {
    const list = $("pick-list");
    const chosen = new Set(st.grid);
    if (list.childElementCount !== st.serverSymbols.length || [...list.children].some((l, i) => l.dataset.symbol !== st.serverSymbols[i])) {
      list.textContent = "";
      for (const s of st.serverSymbols) {
        const label = document.createElement("label");
        label.dataset.symbol = s;
        const box = document.createElement("input");
        box.type = "checkbox";
        box.value = s;
        box.addEventListener("change", onPick);
        const name = document.createElement("span");
        name.textContent = s;
        label.appendChild(box);
        label.appendChild(name);
        list.appendChild(label);
      }
    }
    for (const label of list.children) label.firstChild.checked = chosen.has(label.dataset.symbol);
    setText($("pick-count"), `${st.grid.length}/${st.serverSymbols.length}`);
  }
  function choose(symbols) {
    const all = symbols.length === st.serverSymbols.length;
    st.chosen = all ? null : symbols;
    store.set("symbols", st.chosen); // null (all) is stored as absent: new symbols join
    setGrid();
    syncTicker();
    syncDetail();
  }
  function onPick() {
    const boxes = $("pick-list").querySelectorAll("input");
    choose([...boxes].filter((b) => b.checked).map((b) => b.value));
  }
  $("pick-all").addEventListener("click", () => choose(st.serverSymbols.slice()));
  $("pick-none").addEventListener("click", () => choose([]));
  document.addEventListener("click", (e) => {
    const p = $("picker");
    if (p.open && !p.contains(e.target)) p.open = false;
  });

  // ---- controls --------------------------------------------------------------------
  $("throttle").value = String(st.throttle);
  $("throttle").addEventListener("change", (e) => {
    st.throttle = pick(Number(e.target.value), THROTTLES, 0);
    store.set("throttle", st.throttle);
    subscribeTicker(st.grid); // replaces the options, sends fresh snapshots
    resubscribeBook();
  });
  $("depth").value = String(st.depth);
  $("depth").addEventListener("change", (e) => {
    st.depth = pick(Number(e.target.value), DEPTHS, 10);
    store.set("depth", st.depth);
    resubscribeBook();
    st.detailDirty = true;
    schedule();
  });

  // ---- once a second: rates, latency, connection countdown, heartbeat ---------------
  let lastTick = performance.now();
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
    const msgs = st.counters.messages - st.rate.messages;
    st.rate.messages = st.counters.messages;
    st.rate.perSec = msgs / dt;
    setText($("rate"), st.live ? `${Math.round(st.rate.perSec).toLocaleString("en-US")} msg/s` : "");
    const lat = latencySummary(wallMs());
    setText($("lat-p50"), lat.n ? fmtMs(lat.p50) : "—");
    setText($("lat-p99"), lat.n ? fmtMs(lat.p99) : "—");
    setText($("lat-n"), lat.n.toLocaleString("en-US"));
    updateConnCountdown();
    // heartbeat: ask when quiet, give up on a connection silent for 20 s
    if (st.live) {
      const quiet = now - st.lastRx;
      if (quiet > 20000) lost("no data for 20 s");
      else if (quiet > 5000) send({ op: "ping" });
    }
    if (Math.abs(Date.now() - wallMs()) > 2) anchorClock();
    st.chartDirty = true; // the time axis moves
    schedule();
  }, 1000);

  const loopback = /^(127\.|localhost$|\[::1\]$)/.test(location.hostname);
  setText($("lat-note"), (loopback
    ? "Server on this machine: one clock, no clock difference in these figures."
    : "Server is remote: these figures include the difference between its clock and this one.")
    + " With a throttle they also include the time a state waited for its interval.");

  // ---- engine stage percentiles from /stats ------------------------------------------
  let prevTicks = null;
  async function pollStats() {
    let s;
    try {
      const ctl = new AbortController();
      const timer = setTimeout(() => ctl.abort(), 1800);
      const resp = await fetch("/stats", { cache: "no-store", signal: ctl.signal });
      s = await resp.json();
      clearTimeout(timer);
    } catch (_) {
      setText($("engine-line"), "engine: /stats unreachable");
      prevTicks = null;
      return;
    }
    const win = s.latency_window || {};
    const body = $("stages");
    for (const name of STAGES) {
      let tr = body.querySelector(`tr[data-stage="${name}"]`);
      if (!tr) {
        tr = document.createElement("tr");
        tr.dataset.stage = name;
        for (let i = 0; i < 7; i++) tr.appendChild(document.createElement("td"));
        tr.cells[0].textContent = name;
        body.appendChild(tr);
      }
      const h = win[name] || {};
      const count = h.count || 0;
      setText(tr.cells[1], count.toLocaleString("en-US"));
      const cols = ["p50", "p90", "p99", "p999", "max"];
      cols.forEach((k, i) => setText(tr.cells[i + 2], count ? fmtUs(h[k]) : "—"));
    }
    const feeds = Array.isArray(s.feeds) ? s.feeds : [];
    const ticks = feeds.reduce((a, f) => a + (f.ticks || 0), 0);
    const at = performance.now();
    let rate = "";
    if (prevTicks) rate = ` · ${Math.round(((ticks - prevTicks.ticks) * 1000) / (at - prevTicks.at)).toLocaleString("en-US")} ticks/s`;
    prevTicks = { ticks, at };
    const feedText = feeds.map((f) => `${f.name} ${f.state}`).join(", ");
    const clients = s.clients ? s.clients.count : "?";
    setText($("engine-line"), `engine: feed ${feedText}${rate} · ${clients} client${clients === 1 ? "" : "s"}`);
  }
  setInterval(pollStats, 2000);

  // ---- start ---------------------------------------------------------------------------
  buildHead();
  readColors();
  if (window.ResizeObserver) new ResizeObserver(sizeCanvas).observe($("chart-wrap"));
  else window.addEventListener("resize", sizeCanvas);
  sizeCanvas();
  connect();
  pollStats();

  // A read-only view for tests and the curious: counters and a summary.
  window.tickwire = Object.freeze({
    counters: st.counters,
    state: () => ({
      live: st.live,
      attempt: st.attempt,
      grid: st.grid.slice(),
      selected: st.sel,
      depth: st.depth,
      throttle: st.throttle,
      bookSeq: st.book ? st.book.seq : 0,
      msgPerSec: st.rate.perSec,
    }),
  });
})();
