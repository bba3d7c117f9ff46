// tickwire dashboard, the page half: renders what the client worker
// (dashboard-worker.js, which speaks protocol.md over /ws) reports.
//
// The worker takes every WebSocket message off this thread and keeps the market state;
// the page pulls one frame of changes at a time and renders it on requestAnimationFrame,
// then pulls the next: one render per animation frame at most, however fast the market.
// Every string from the server goes into the page through textContent (never innerHTML).
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
  const FLASH_MS = 350;
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
    serverSymbols: [],
    chosen: store.get("symbols", null), // null: every symbol the server has
    grid: [], // symbols shown, in server order
    rows: new Map(), // symbol -> row view
    sel: null,
    depth: pick(store.get("depth", 10), DEPTHS, 10),
    throttle: pick(store.get("throttle", 0), THROTTLES, 0),
    sort: savedSort && COLUMNS.some((c) => c.key === savedSort.key) ? savedSort : { key: null, dir: 1 },
    sortAt: 0,
    orderDirty: true,
    book: null,
    tape: [], // entries on screen, oldest first
    tapeNew: [], // entries to put on screen at the next render
    tapeFmt: "",
    series: { sym: null, points: [] },
    detailDirty: true,
    chartDirty: true,
    chartAt: 0,
    notes: [],
    notesDirty: false,
    conn: null,
    summary: null,
    live: false,
  };
  // Counters: the worker's (messages by type, gaps, resyncs, reconnects, frames) and
  // this thread's renders. Read by the tests through window.tickwire.
  const counters = { messages: 0, ticker: 0, trade: 0, book: 0, gaps: 0, resyncs: 0, reconnects: 0, errors: 0, frames: 0, renders: 0 };

  // ---- number formatting -------------------------------------------------------------
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
    if (Math.abs(p) < 0.005) return "0.00%";
    return (p > 0 ? "+" : "−") + Math.abs(p).toFixed(2) + "%";
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

  // ---- the worker ------------------------------------------------------------------
  const worker = new Worker("/dashboard-worker.js", { type: "module" });
  const tell = (msg) => worker.postMessage(msg);
  let pullOutstanding = false;
  function pull() {
    if (!pullOutstanding) {
      pullOutstanding = true;
      tell({ cmd: "pull" });
    }
  }
  worker.onerror = (e) => {
    note(`dashboard worker error: ${e.message || "unknown"}`);
    console.error("dashboard worker:", e.message, e.filename, e.lineno);
  };

  worker.onmessage = (ev) => {
    const f = ev.data;
    pullOutstanding = false;
    Object.assign(counters, f.counters, { renders: counters.renders });
    if (f.conn) {
      st.conn = f.conn;
      st.live = f.conn.state === "live";
    }
    if (f.symbols) {
      st.serverSymbols = f.symbols;
      renderPicker();
    }
    if (f.grid) setGrid(f.grid);
    if (f.rows) {
      for (const u of f.rows) {
        const r = st.rows.get(u.sym);
        if (!r) continue;
        for (const k of ["bid", "ask", "last", "open", "vol", "ups", "dec", "sdec"]) r[k] = u[k];
        for (const k of ["bid", "ask", "last"]) if (u.moves[k]) r.moves[k] = u.moves[k];
        r.dirty = true;
        if (u.sym === st.sel) st.detailDirty = true;
      }
    }
    if (f.book && f.book.sym === st.sel) {
      st.book = f.book;
      st.detailDirty = true;
    }
    if (f.tape && f.tape.sym === st.sel) {
      if (f.tape.reset) {
        st.tape = [];
        st.tapeNew = [];
        st.tapeFmt = ""; // clears the rows on screen
      }
      for (const t of f.tape.add) st.tapeNew.push(t);
      if (st.tapeNew.length > TAPE_MAX) st.tapeNew.splice(0, st.tapeNew.length - TAPE_MAX);
      st.detailDirty = true;
    }
    if (f.series && f.series.sym === st.sel) {
      st.series = f.series;
      st.chartDirty = true;
    }
    if (f.notes) for (const n of f.notes) note(n.text, n.at);
    if (f.summary) st.summary = f.summary;
    schedule();
  };

  // ---- notes (gaps, resyncs, reconnects, errors) ----------------------------------
  function note(text, at) {
    st.notes.unshift({ at: at || Date.now(), text });
    if (st.notes.length > 4) st.notes.length = 4;
    st.notesDirty = true;
    schedule();
  }

  // ---- grid and selection ------------------------------------------------------------
  function newRow(sym) {
    return { sym, dec: 0, sdec: 0, bid: null, ask: null, last: null, open: null, vol: null, ups: 0, dirty: true, moves: { bid: 0, ask: 0, last: 0 }, el: null };
  }

  function setGrid(grid) {
    st.grid = grid;
    const keep = new Set(grid);
    for (const [s, r] of st.rows) {
      if (!keep.has(s)) {
        if (r.el) r.el.tr.remove();
        st.rows.delete(s);
      }
    }
    for (const s of grid) if (!st.rows.has(s)) st.rows.set(s, newRow(s));
    if (!st.sel || !keep.has(st.sel)) {
      const hashSym = symbolFromHash();
      const saved = store.get("selected", null);
      select(keep.has(hashSym) ? hashSym : keep.has(saved) ? saved : grid[0] || null);
    }
    st.orderDirty = true;
    renderPicker();
    schedule();
  }

  function select(sym) {
    if (sym === st.sel) return;
    st.sel = sym;
    st.book = null;
    st.tape = [];
    st.tapeNew = [];
    st.tapeFmt = "";
    st.series = { sym, points: [] };
    st.detailDirty = st.chartDirty = true;
    if (sym) {
      store.set("selected", sym);
      const hash = "#" + encodeURIComponent(sym);
      if (location.hash !== hash) history.replaceState(null, "", hash);
    }
    for (const r of st.rows.values()) if (r.el) r.el.tr.classList.toggle("selected", r.sym === sym);
    tell({ cmd: "select", symbol: sym });
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

  // ---- rendering -------------------------------------------------------------------
  let rafPending = false;
  function schedule() {
    if (!rafPending) {
      rafPending = true;
      requestAnimationFrame(render);
    }
  }

  function render() {
    rafPending = false;
    counters.renders++;
    const now = performance.now();
    renderGrid(now);
    if (st.detailDirty) renderDetail();
    if (st.chartDirty) {
      if (now - st.chartAt >= 100) drawChart();
      else schedule();
    }
    if (st.notesDirty) renderNotes();
    if (st.conn) {
      const el = $("conn");
      if (el.dataset.state !== st.conn.state) el.dataset.state = st.conn.state;
      setText(el, st.conn.text);
    }
    if (st.summary) renderSummary(st.summary);
    pull(); // ready for the next frame of changes
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
    cells.symbol.title = r.sym;
    cells.symbol.classList.add("sym");
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
      default: return r[key];
    }
  }

  // Flashes are a class held for FLASH_MS, not a CSS animation: a cell is painted when
  // it changes, not on every frame.
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
      $("grid-empty").hidden = rows.length > 0 || !st.serverSymbols.length;
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
      const chgCls = "c-chg" + (chg > 0 ? " pos" : chg < 0 ? " neg" : "");
      if (c.chg.className !== chgCls) c.chg.className = chgCls;
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
    const fits = b && b.ready && b.depth === depth;
    const bids = fits ? b.bids : [];
    const asks = fits ? b.asks : [];
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
    if (!st.sel) info = "";
    else if (!fits) info = b && b.resyncs ? `resyncing (${b.lastResync})…` : "waiting for the snapshot…";
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
    let add = st.tapeNew;
    st.tapeNew = [];
    if (st.tapeFmt !== fmt) {
      el.textContent = "";
      st.tapeFmt = fmt;
      add = st.tape.concat(add); // redraw what was on screen in the new format
      st.tape = [];
    }
    if (add.length > TAPE_MAX) add = add.slice(add.length - TAPE_MAX);
    for (const t of add) {
      let row;
      if (el.childElementCount >= TAPE_MAX) row = el.lastElementChild;
      else {
        row = document.createElement("div");
        row.innerHTML = '<span class="t"></span><span class="p"></span><span class="s"></span>';
      }
      const [ct, cp, cs] = row.children;
      if (t.mark) {
        row.className = "trow mark";
        ct.textContent = t.mark;
        cp.textContent = "";
        cs.textContent = "";
      } else {
        row.className = "trow " + (t.side === "buy" ? "buy" : t.side === "sell" ? "sell" : "");
        ct.textContent = fmtClock(t.ts / 1e6, true);
        cp.textContent = fmtFixed(t.price, dec);
        cs.textContent = fmtFixed(t.size, sdec);
      }
      el.insertBefore(row, el.firstChild);
      st.tape.push(t);
    }
    if (st.tape.length > TAPE_MAX) st.tape.splice(0, st.tape.length - TAPE_MAX);
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

  function renderSummary(s) {
    st.summary = null;
    setText($("rate"), s.live ? `${Math.round(s.msgPerSec).toLocaleString("en-US")} msg/s` : "");
    const lat = s.lat;
    setText($("lat-p50"), lat.n ? fmtMs(lat.p50) : "—");
    setText($("lat-p99"), lat.n ? fmtMs(lat.p99) : "—");
    setText($("lat-n"), lat.n.toLocaleString("en-US"));
  }

  // ---- chart ---------------------------------------------------------------------------
  let colors = null;
  function readColors() {
    const cs = getComputedStyle(document.documentElement);
    const v = (n) => cs.getPropertyValue(n).trim();
    colors = { line: v("--accent"), fill: v("--accent-fill"), grid: v("--grid-line"), text: v("--muted"), panel: v("--panel") };
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
    const nowS = Date.now() / 1000;
    const pts = r && st.series.sym === st.sel ? st.series.points.filter((p) => p.t >= nowS - CHART_SECONDS) : [];
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
    const t1 = Math.max(nowS, pts[pts.length - 1].t + 1);
    const t0 = Math.min(pts[0].t, t1 - 30);
    let lo = Infinity;
    let hi = -Infinity;
    for (const p of pts) {
      if (p.l < lo) lo = p.l;
      if (p.h > hi) hi = p.h;
    }
    if (hi - lo < Math.abs(hi) * 1e-5) {
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
    const tagY = y(pts[pts.length - 1].c); // the last price's tag: no axis label under it
    for (let i = 0; i <= 3; i++) {
      const v = lo + ((hi - lo) * i) / 3;
      const yy = Math.round(y(v)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(left, yy);
      ctx.lineTo(right, yy);
      ctx.stroke();
      if (Math.abs(yy - tagY) > 15 * dpr) ctx.fillText(v.toFixed(dec), right + 6 * dpr, yy);
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
    tell({ cmd: "choose", symbols: st.chosen });
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
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape") $("picker").open = false;
  });

  // ---- controls --------------------------------------------------------------------
  $("throttle").value = String(st.throttle);
  $("throttle").addEventListener("change", (e) => {
    st.throttle = pick(Number(e.target.value), THROTTLES, 0);
    store.set("throttle", st.throttle);
    tell({ cmd: "throttle", throttle: st.throttle });
  });
  $("depth").value = String(st.depth);
  $("depth").addEventListener("change", (e) => {
    st.depth = pick(Number(e.target.value), DEPTHS, 10);
    store.set("depth", st.depth);
    tell({ cmd: "depth", depth: st.depth });
    st.detailDirty = true;
    schedule();
  });

  const loopback = /^(127\.|localhost$|\[::1\]$)/.test(location.hostname);
  setText($("lat-note"), (loopback
    ? "Server on this machine: one clock, no clock difference in these figures."
    : "Server is remote: these figures include the difference between its clock and this one.")
    + " With a throttle they also include the time a state waited for its interval.");

  // The chart's time axis moves even when the price does not.
  setInterval(() => {
    st.chartDirty = true;
    schedule();
  }, 1000);

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
      ["p50", "p90", "p99", "p999", "max"].forEach((k, i) => setText(tr.cells[i + 2], count ? fmtUs(h[k]) : "—"));
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
    // The coalescing window in force beside tick_to_wire: what the engine chose to add.
    const workers = Array.isArray(s.workers) ? s.workers : [];
    const winText = workers.map((w) => {
      const busy = typeof w.busy_share === "number" ? ` (busy ${Math.round(w.busy_share * 100)}%)` : "";
      return `w${w.worker} ${(w.coalesce_window_us || 0).toLocaleString("en-US")} µs${busy}`;
    }).join(" · ");
    setText($("window-line"), `write window: ${winText || "—"}`);
  }
  setInterval(pollStats, 2000);

  // The socket's URL: wss on an https page; a `?token=` on the page's URL (an engine run
  // with an auth secret) goes on to the socket, which is where the engine checks it.
  function socketUrl() {
    const token = new URLSearchParams(location.search).get("token");
    const base = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
    return token ? base + "?token=" + encodeURIComponent(token) : base;
  }

  // ---- start ---------------------------------------------------------------------------
  buildHead();
  readColors();
  if (window.ResizeObserver) new ResizeObserver(sizeCanvas).observe($("chart-wrap"));
  else window.addEventListener("resize", sizeCanvas);
  sizeCanvas();
  tell({
    cmd: "init",
    url: socketUrl(),
    chosen: st.chosen,
    sel: null, // chosen once the symbols are known
    depth: st.depth,
    throttle: st.throttle,
  });
  pull();
  pollStats();

  // A read-only view for tests and the curious: counters and a summary.
  window.tickwire = Object.freeze({
    counters,
    state: () => ({
      live: st.live,
      grid: st.grid.slice(),
      selected: st.sel,
      depth: st.depth,
      throttle: st.throttle,
      bookSeq: st.book ? st.book.seq : 0,
    }),
  });
})();
