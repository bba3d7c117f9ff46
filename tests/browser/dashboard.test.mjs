// The dashboard at `/` in headless Chromium, against the real tickwire binary.
//
//   node --test tests/browser/
//
// Env: TICKWIRE_BIN (default target/debug/tickwire, or under $CARGO_TARGET_DIR),
// CHROMIUM (default /usr/bin/chromium), TICKWIRE_ARTIFACTS (default
// target/browser-artifacts: screenshots and perf.json).
import assert from "node:assert/strict";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";

import {
  artifacts, bareWaitFor, binary, changedRows, freePort, get, launchBare, launchBrowser, readGrid,
  repoRoot, sleep, startEngine, stopAllEngines, stopEngine, waitPricesChange,
} from "./lib.mjs";

const SIM_RATE = 2000;
const LOAD_RATE = 50000;
const PERF_WINDOW_MS = 10000;

let browser;
let engine;
let port;
let page;
const pageErrors = [];

before(async () => {
  fs.mkdirSync(artifacts, { recursive: true });
  port = await freePort();
  engine = await startEngine(port, SIM_RATE);
  browser = await launchBrowser();
}, { timeout: 60000 });

after(async () => {
  try {
    if (browser) await browser.close();
  } finally {
    await stopAllEngines();
  }
}, { timeout: 30000 });

async function openDashboard(p, viewport = { width: 1280, height: 800 }) {
  const pg = await browser.context.newPage();
  pg.on("pageerror", (e) => pageErrors.push(String(e)));
  await pg.setViewportSize(viewport);
  await pg.goto(`http://127.0.0.1:${p}/`);
  return pg;
}

const gridRows = (pg) => pg.$$eval("#grid-body tr", (trs) => trs.length);
const num = (s) => Number(String(s).replace("−", "-"));

async function waitGridFilled(pg, n, timeout = 15000) {
  await pg.waitForFunction(
    (want) => {
      const trs = [...document.querySelectorAll("#grid-body tr")];
      return trs.length === want && trs.every((tr) => tr.querySelector(".c-bid").textContent !== "");
    },
    n,
    { timeout },
  );
}

/** Best bid and ask as shown by the ladder, and every visible level. */
function readBook(pg) {
  return pg.$$eval("#book .lvl", (rows) =>
    rows.map((r) => ({
      bp: r.querySelector(".bp").textContent,
      bs: r.querySelector(".bs").textContent,
      ap: r.querySelector(".ap").textContent,
      as: r.querySelector(".as").textContent,
    })));
}

async function waitBook(pg, depth, timeout = 15000) {
  await pg.waitForFunction(
    (d) => {
      const rows = document.querySelectorAll("#book .lvl");
      return rows.length === d && rows[0].querySelector(".bp").textContent !== "" && rows[0].querySelector(".ap").textContent !== "";
    },
    depth,
    { timeout },
  );
  const book = await readBook(pg);
  const bids = book.filter((l) => l.bp !== "").map((l) => num(l.bp));
  const asks = book.filter((l) => l.ap !== "").map((l) => num(l.ap));
  assert.ok(bids[0] < asks[0], `best bid ${bids[0]} < best ask ${asks[0]}`);
  for (let i = 1; i < bids.length; i++) assert.ok(bids[i] < bids[i - 1], `bids descend: ${bids}`);
  for (let i = 1; i < asks.length; i++) assert.ok(asks[i] > asks[i - 1], `asks ascend: ${asks}`);
  return { bids, asks };
}

/** Pixels of the chart canvas close to the line colour (--accent). */
function chartLinePixels(pg) {
  return pg.evaluate(() => {
    const c = document.getElementById("chart");
    const probe = document.createElement("canvas").getContext("2d");
    probe.fillStyle = getComputedStyle(document.documentElement).getPropertyValue("--accent").trim();
    probe.fillRect(0, 0, 1, 1);
    const [r, g, b] = probe.getImageData(0, 0, 1, 1).data;
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let line = 0;
    let painted = 0;
    for (let i = 0; i < d.length; i += 4) {
      if (d[i + 3] === 0) continue;
      painted++;
      if (d[i + 3] > 200 && Math.abs(d[i] - r) + Math.abs(d[i + 1] - g) + Math.abs(d[i + 2] - b) < 60) line++;
    }
    return { line, painted, points: Number(c.dataset.points || 0) };
  });
}

test("grid, detail (book, chart, tape), latency panel, picker, sorting; screenshots", { timeout: 60000 }, async () => {
  page = await openDashboard(port);
  // All default symbols (the simulator's 16), every row priced.
  await waitGridFilled(page, 16);
  const symbols = (await get(port, "/symbols")).body;
  assert.deepEqual((await readGrid(page)).map((r) => r.symbol), JSON.parse(symbols));
  await page.waitForSelector('#conn[data-state="live"]');

  // Prices move within seconds.
  const before = await readGrid(page);
  const moved = await waitPricesChange(page, before, 4, 10000);
  assert.ok(moved >= 4);

  // Select a symbol: the book is uncrossed and sorted, depth as chosen; the chart draws.
  await page.click('#grid-body tr[data-symbol="sim:ETH-USD"]');
  await page.waitForFunction(() => document.getElementById("d-sym").textContent === "sim:ETH-USD");
  assert.equal(new URL(page.url()).hash, "#sim%3AETH-USD");
  await waitBook(page, 10);
  await page.selectOption("#depth", "5");
  await waitBook(page, 5);
  await page.selectOption("#depth", "20");
  const book20 = await waitBook(page, 20);
  assert.ok(book20.bids.length > 5 && book20.asks.length > 5, "depth 20 shows more than 5 levels a side");
  await page.waitForFunction(() => Number(document.getElementById("chart").dataset.points) >= 2, null, { timeout: 15000 });
  const px = await chartLinePixels(page);
  assert.ok(px.line > 50, `the price line is drawn: ${JSON.stringify(px)}`);
  await page.waitForFunction(() => document.querySelectorAll("#tape .trow.buy, #tape .trow.sell").length >= 3, null, { timeout: 15000 });

  // Latency panel: the page's own figures and the engine's stage percentiles.
  await page.waitForFunction(() => /^[0-9.]+$/.test(document.getElementById("lat-p50").textContent)
    && /^[0-9.]+$/.test(document.getElementById("lat-p99").textContent), null, { timeout: 15000 });
  await page.waitForFunction(() => {
    const tr = document.querySelector('#stages tr[data-stage="tick_to_wire"]');
    return tr && Number(tr.cells[1].textContent.replace(/,/g, "")) > 0 && /^[0-9.,]+$/.test(tr.cells[2].textContent);
  }, null, { timeout: 15000 });
  // The write window in force beside it (an idle engine's is 0: it writes at once).
  await page.waitForFunction(() => /^write window: w0 [0-9.,]+ µs \(busy [0-9]+%\)/.test(document.getElementById("window-line").textContent), null, { timeout: 15000 });
  const lat = await page.evaluate(() => ({
    p50: document.getElementById("lat-p50").textContent,
    p99: document.getElementById("lat-p99").textContent,
  }));
  console.log(`browser latency at ${SIM_RATE} events/s: p50 ${lat.p50} ms, p99 ${lat.p99} ms`);

  // Sorting by clicking headers.
  await page.click('#grid-head th[data-key="last"]');
  await page.waitForFunction(() => document.querySelector('#grid-head th[data-key="last"]').getAttribute("aria-sort") === "descending");
  await sleep(100);
  const lasts = (await readGrid(page)).map((r) => num(r.last));
  assert.deepEqual(lasts, [...lasts].sort((a, b) => b - a), "rows sorted by last, highest first");
  assert.equal((await readGrid(page))[0].symbol, "sim:BTC-USD");
  await page.click('#grid-head th[data-key="symbol"]');
  await sleep(100);
  const names = (await readGrid(page)).map((r) => r.symbol);
  assert.deepEqual(names, [...names].sort((a, b) => a.localeCompare(b)));
  await page.click('#grid-head th[data-key="symbol"]'); // descending
  await page.click('#grid-head th[data-key="symbol"]'); // off: server order
  await sleep(100);
  assert.deepEqual((await readGrid(page)).map((r) => r.symbol), JSON.parse(symbols));

  // Symbol picker: remove a row; the choice survives a reload; "all" brings it back.
  await page.click("#picker summary");
  await page.uncheck('#pick-list input[value="sim:DOGE-USD"]');
  await page.waitForFunction(() => document.querySelectorAll("#grid-body tr").length === 15);
  await page.reload();
  await waitGridFilled(page, 15);
  assert.equal(await page.$('#grid-body tr[data-symbol="sim:DOGE-USD"]'), null);
  assert.equal(await page.textContent("#pick-count"), "15/16");
  // The selected symbol came back from the URL hash.
  await page.waitForFunction(() => document.getElementById("d-sym").textContent === "sim:ETH-USD");
  await page.click("#picker summary");
  await page.click("#pick-all");
  await waitGridFilled(page, 16);
  await page.click("h1"); // closes the picker
  await page.click('#grid-body tr[data-symbol="sim:BTC-USD"]');
  await page.selectOption("#depth", "10");
  await waitBook(page, 10);
  await page.waitForFunction(() => Number(document.getElementById("chart").dataset.points) >= 2);

  // Screenshots: desktop (light and dark) and phone width.
  await sleep(2500); // a little history on the chart and the stats table filled
  await page.screenshot({ path: path.join(artifacts, "desktop.png") });
  await page.emulateMedia({ colorScheme: "dark" });
  await sleep(300);
  await page.screenshot({ path: path.join(artifacts, "desktop-dark.png") });
  await page.emulateMedia({ colorScheme: "light" });
  await page.setViewportSize({ width: 390, height: 844 });
  await sleep(500);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(overflow <= 390, `no sideways scrolling at phone width (scrollWidth ${overflow})`);
  await page.screenshot({ path: path.join(artifacts, "phone.png") });
  await page.screenshot({ path: path.join(artifacts, "phone-full.png"), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 800 });
  assert.deepEqual(pageErrors, []);
});

test("reconnects and resumes after the engine restarts on the same port", { timeout: 40000 }, async () => {
  assert.ok(page, "the first test opened the page");
  await page.waitForSelector('#conn[data-state="live"]');
  await page.evaluate(() => { window.__noReload = true; });
  const reconnectsBefore = await page.evaluate(() => window.tickwire.counters.reconnects);

  const t0 = Date.now();
  await stopEngine(engine, "SIGKILL"); // a crash: no close frame
  await page.waitForSelector('#conn[data-state="down"]', { timeout: 10000 });
  engine = await startEngine(port, SIM_RATE);
  await page.waitForSelector('#conn[data-state="live"]', { timeout: 20000 });
  const back = Date.now() - t0;

  // Resumed without a reload: the grid moves again, the detail is resubscribed.
  assert.equal(await page.evaluate(() => window.__noReload), true, "no reload");
  assert.equal(await page.evaluate(() => window.tickwire.counters.reconnects), reconnectsBefore + 1);
  // The marks first: the tape keeps the last 50 trades, and new trades push the
  // "reconnected" mark out within seconds.
  const shown = () => page.evaluate(() => JSON.stringify({
    notes: [...document.querySelectorAll("#notes li")].map((li) => li.textContent),
    tape: [...document.querySelectorAll("#tape .trow.mark")].map((r) => r.textContent),
  }));
  await page.waitForFunction(() => [...document.querySelectorAll("#notes li")].some((li) => li.textContent.includes("reconnected")), null, { timeout: 10000 })
    .catch(async (e) => { throw new Error(`no "reconnected" note: ${await shown()}`, { cause: e }); });
  await page.waitForFunction(() => [...document.querySelectorAll("#tape .trow")].some((r) => r.textContent.includes("reconnected")), null, { timeout: 10000 })
    .catch(async (e) => { throw new Error(`no "reconnected" tape mark: ${await shown()}`, { cause: e }); });
  const afterLive = await readGrid(page);
  await waitPricesChange(page, afterLive, 4, 10000);
  await waitBook(page, 10);
  console.log(`reconnect: page live again ${back} ms after the kill`);
  assert.deepEqual(pageErrors, []);
});

// An engine with an auth secret: the page's `?token=` goes on to the socket.
test("with an auth secret, the dashboard opened with ?token= goes live", { timeout: 40000 }, async () => {
  const secret = "browser test secret, at least 32 bytes long";
  const b64 = (v) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url");
  const unsigned = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ exp: Math.floor(Date.now() / 1000) + 600 })}`;
  const sig = crypto.createHmac("sha256", secret).update(unsigned).digest("base64url");
  const authPort = await freePort();
  const authEngine = await startEngine(authPort, SIM_RATE, { env: { TICKWIRE_AUTH_SECRET: secret } });
  const pg = await browser.context.newPage();
  try {
    await pg.goto(`http://127.0.0.1:${authPort}/?token=${unsigned}.${sig}`);
    await pg.waitForSelector('#conn[data-state="live"]', { timeout: 15000 });
    await waitGridFilled(pg, 16);
  } finally {
    await pg.close();
    await stopEngine(authEngine);
  }
});

// Measured in a Chromium driven over a bare DevTools pipe (see launchBare): under
// Playwright, DevTools would copy every WebSocket frame to this process.
test(`main-thread blocking at ${LOAD_RATE} events/s (reported, loosely checked)`, { timeout: 75000 }, async () => {
  if (page) await page.close();
  await stopEngine(engine);
  const loadPort = await freePort();
  const load = await startEngine(loadPort, LOAD_RATE);
  let bare;
  try {
    bare = await launchBare(`http://127.0.0.1:${loadPort}/`);
    await bareWaitFor(bare, `(() => {
      const trs = [...document.querySelectorAll("#grid-body tr")];
      return trs.length === 16 && trs.every((tr) => tr.querySelector(".c-bid").textContent !== "");
    })()`, 20000, "the grid");
    await bareWaitFor(bare, `document.querySelectorAll("#book .lvl .bp")[0]?.textContent !== ""
      && document.querySelectorAll("#book .lvl").length === 10`, 20000, "the book");
    await sleep(1000);

    const phases = [];
    for (const throttle of [0, 100]) {
      await bare.evaluate(`(() => { const s = document.getElementById("throttle");
        s.value = "${throttle}"; s.dispatchEvent(new Event("change")); })()`);
      await sleep(2000);
      phases.push(await measure(bare, loadPort, throttle));
    }
    const result = {
      when: new Date().toISOString(),
      command: `tickwire serve --no-pin --sim-rate ${LOAD_RATE} (${path.relative(repoRoot, binary) || binary}); node --test tests/browser/`,
      sim_rate_requested: LOAD_RATE,
      window_ms: PERF_WINDOW_MS,
      viewport: "1280x800",
      browser: await bare.evaluate("navigator.userAgent"),
      machine: { cpus: os.cpus().length, model: os.cpus()[0] && os.cpus()[0].model, loadavg: os.loadavg().map((v) => Math.round(v * 100) / 100) },
      phases,
    };
    fs.writeFileSync(path.join(artifacts, "perf.json"), JSON.stringify(result, null, 2) + "\n");
    for (const p of phases) {
      console.log(`dashboard under load (throttle ${p.throttle_ms} ms): engine ${p.engine_events_per_s} events/s (${p.engine_ticks_per_s} ticks/s); ` +
        `page ${p.page_messages_per_s} msg/s, ${p.worker_frames_per_s} frames of changes/s, ${p.renders_per_s} renders/s; ` +
        `long tasks ${p.longtask_count} (max ${p.longtask_max_ms} ms, total ${p.longtask_total_ms} ms); ` +
        `rAF ${p.raf_per_s}/s, max gap ${p.raf_gap_max_ms} ms, p99 ${p.raf_gap_p99_ms} ms; prices changed in ${p.rows_changed}/16 rows`);
      // Loose sanity only: the page keeps receiving and rendering under load.
      assert.ok(p.page_messages_per_s > 100, `the page receives data under load: ${p.page_messages_per_s} msg/s`);
      assert.ok(p.renders > 5, `the page renders under load: ${p.renders}`);
      assert.ok(p.rows_changed > 0, "prices change under load");
    }
    const notes = await bare.evaluate('document.getElementById("notes").textContent');
    assert.ok(!notes.includes("worker error"), notes);
  } finally {
    if (bare) await bare.close();
    await stopEngine(load);
  }
});

const READ_GRID = `[...document.querySelectorAll("#grid-body tr")].map((tr) => ({
  symbol: tr.dataset.symbol, bid: tr.querySelector(".c-bid").textContent,
  ask: tr.querySelector(".c-ask").textContent, last: tr.querySelector(".c-last").textContent }))`;

async function measure(bare, loadPort, throttle) {
  const stats0 = JSON.parse((await get(loadPort, "/stats", 5000)).body);
  const grid0 = await bare.evaluate(READ_GRID);
  const t0 = Date.now();
  // In the page: long tasks (PerformanceObserver) and requestAnimationFrame gaps over
  // the window, and the page's counters before and after.
  const m = await bare.evaluate(`new Promise((resolve) => {
    const long = [];
    const gaps = [];
    const obs = new PerformanceObserver((list) => { for (const e of list.getEntries()) long.push(e.duration); });
    obs.observe({ type: "longtask" });
    const c0 = { ...window.tickwire.counters };
    const start = performance.now();
    let last = start;
    let stop = false;
    const frame = () => {
      const now = performance.now();
      gaps.push(now - last);
      last = now;
      if (!stop) requestAnimationFrame(frame);
    };
    requestAnimationFrame(frame);
    setTimeout(() => {
      stop = true;
      obs.disconnect();
      resolve({ long, gaps, c0, c1: { ...window.tickwire.counters }, ms: performance.now() - start });
    }, ${PERF_WINDOW_MS});
  })`);
  const secs = (Date.now() - t0) / 1000;
  const stats1 = JSON.parse((await get(loadPort, "/stats", 5000)).body);
  const grid1 = await bare.evaluate(READ_GRID);
  const ticks = (s) => s.feeds.reduce((a, f) => a + f.ticks, 0);
  const events = (s) => s.feeds.reduce((a, f) => a + f.messages, 0); // the sim's events
  const pageSecs = m.ms / 1000;
  const gaps = [...m.gaps].sort((a, b) => a - b);
  const r1 = (v) => Math.round(v * 10) / 10;
  const per = (k) => r1((m.c1[k] - m.c0[k]) / pageSecs);
  return {
    throttle_ms: throttle,
    seconds: r1(secs),
    engine_events_per_s: Math.round((events(stats1) - events(stats0)) / secs),
    engine_ticks_per_s: Math.round((ticks(stats1) - ticks(stats0)) / secs),
    engine_conflated: stats1.clients.conflated - stats0.clients.conflated,
    engine_gaps_sent: stats1.clients.gaps - stats0.clients.gaps,
    page_messages_per_s: Math.round(per("messages")),
    page_gaps: m.c1.gaps - m.c0.gaps,
    page_book_resyncs: m.c1.resyncs - m.c0.resyncs,
    worker_frames_per_s: per("frames"),
    renders: m.c1.renders - m.c0.renders,
    renders_per_s: per("renders"),
    longtask_count: m.long.length,
    longtask_max_ms: r1(Math.max(0, ...m.long)),
    longtask_total_ms: r1(m.long.reduce((a, b) => a + b, 0)),
    raf_per_s: r1(gaps.length / pageSecs),
    raf_gap_max_ms: r1(gaps.length ? gaps[gaps.length - 1] : 0),
    raf_gap_p99_ms: r1(gaps.length ? gaps[Math.min(gaps.length - 1, Math.floor(gaps.length * 0.99))] : 0),
    rows_changed: changedRows(grid0, grid1),
  };
}
