// Helpers for the browser tests: start and stop the real tickwire binary, launch
// Debian's Chromium headless through playwright-core, small waits.
import { spawn } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
export const binary =
  (process.env.TICKWIRE_BIN && path.resolve(process.env.TICKWIRE_BIN)) ||
  path.join(process.env.CARGO_TARGET_DIR || path.join(repoRoot, "target"), "debug", "tickwire");
export const artifacts = process.env.TICKWIRE_ARTIFACTS || path.join(repoRoot, "target", "browser-artifacts");
export const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A free TCP port on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** GET a path on the engine; resolves {status, body}. */
export function get(port, p, timeoutMs = 2000) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: "127.0.0.1", port, path: p, timeout: timeoutMs }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode, body }));
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
  });
}

const running = new Set();
// Last resort: never leave an engine behind, whatever happened to the test process.
process.on("exit", () => {
  for (const e of running) {
    try { e.proc.kill("SIGKILL"); } catch (_) { /* gone */ }
  }
});

/**
 * Starts `tickwire serve` on 127.0.0.1:port with the simulator and waits until
 * /health answers 200. Retries the start a few times if the port is not free yet
 * (a restart on the same port).
 */
export async function startEngine(port, simRate, { deadlineMs = 30000, env = {} } = {}) {
  if (!fs.existsSync(binary)) throw new Error(`no tickwire binary at ${binary} (cargo build -p tickwire, or set TICKWIRE_BIN)`);
  const end = Date.now() + deadlineMs;
  let lastErr = "";
  while (Date.now() < end) {
    const proc = spawn(binary, ["serve", "--listen", `127.0.0.1:${port}`, "--no-pin", "--sim-rate", String(simRate)], {
      stdio: ["ignore", "ignore", "pipe"],
      env: { ...process.env, ...env },
    });
    const engine = { proc, port, log: "", exited: null };
    running.add(engine);
    proc.stderr.setEncoding("utf8");
    proc.stderr.on("data", (c) => {
      engine.log = (engine.log + c).slice(-16384);
    });
    engine.done = new Promise((resolve) => proc.on("exit", (code, sig) => {
      engine.exited = { code, sig };
      running.delete(engine);
      resolve(engine.exited);
    }));
    while (Date.now() < end && !engine.exited) {
      try {
        const r = await get(port, "/health", 1000);
        if (r.status === 200) return engine;
      } catch (_) { /* not up yet */ }
      await sleep(50);
    }
    if (!engine.exited) {
      await stopEngine(engine);
      break;
    }
    lastErr = `exited with ${JSON.stringify(engine.exited)}: ${engine.log.slice(-2000)}`;
    await sleep(200);
  }
  throw new Error(`tickwire did not become healthy on port ${port}. ${lastErr}`);
}

/** Stops an engine (SIGTERM, or the given signal), SIGKILL after 5 s. */
export async function stopEngine(engine, signal = "SIGTERM") {
  if (!engine || engine.exited) return engine && engine.exited;
  engine.proc.kill(signal);
  const timer = setTimeout(() => engine.proc.kill("SIGKILL"), 5000);
  const result = await engine.done;
  clearTimeout(timer);
  return result;
}

export async function stopAllEngines() {
  await Promise.all([...running].map((e) => stopEngine(e)));
}

/** Launches Chromium headless with a fresh profile; close() also removes the profile. */
export async function launchBrowser() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "tickwire-chromium-"));
  let context;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: chromiumPath,
      headless: true,
      viewport: { width: 1280, height: 800 },
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
      timeout: 30000,
    });
  } catch (e) {
    fs.rmSync(profile, { recursive: true, force: true });
    throw e;
  }
  return {
    context,
    async close() {
      try {
        await context.close();
      } finally {
        fs.rmSync(profile, { recursive: true, force: true });
      }
    },
  };
}

/** The grid as [{symbol, bid, ask, last}] (text) in the page's order. */
export function readGrid(page) {
  return page.$$eval("#grid-body tr", (trs) =>
    trs.map((tr) => ({
      symbol: tr.dataset.symbol,
      bid: tr.querySelector(".c-bid").textContent,
      ask: tr.querySelector(".c-ask").textContent,
      last: tr.querySelector(".c-last").textContent,
    })));
}

/** How many rows of `before` show different prices in `after`. */
export function changedRows(before, after) {
  const old = new Map(before.map((r) => [r.symbol, r]));
  let n = 0;
  for (const r of after) {
    const o = old.get(r.symbol);
    if (o && (o.bid !== r.bid || o.ask !== r.ask || o.last !== r.last)) n++;
  }
  return n;
}

/** Waits until at least `min` rows' prices differ from `before`. */
export async function waitPricesChange(page, before, min, timeoutMs) {
  const end = Date.now() + timeoutMs;
  let n = 0;
  while (Date.now() < end) {
    n = changedRows(before, await readGrid(page));
    if (n >= min) return n;
    await sleep(200);
  }
  throw new Error(`only ${n} rows changed price within ${timeoutMs} ms (wanted ${min})`);
}

/**
 * Chromium driven over a bare DevTools pipe (--remote-debugging-pipe), for measuring.
 * Playwright enables the Network domain, so DevTools copies every WebSocket frame the
 * page receives to the test process: tens of thousands of events per second under load,
 * work a real user's browser does not do. This driver enables no domain: it navigates,
 * evaluates and nothing else.
 */
export async function launchBare(url, { width = 1280, height = 800 } = {}) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "tickwire-chromium-"));
  const proc = spawn(chromiumPath, [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    `--user-data-dir=${profile}`, "--remote-debugging-pipe", `--window-size=${width},${height}`, "about:blank",
  ], { stdio: ["ignore", "ignore", "ignore", "pipe", "pipe"] });
  const exited = new Promise((resolve) => proc.on("exit", resolve));
  const toChrome = proc.stdio[3];
  const fromChrome = proc.stdio[4];
  let nextId = 1;
  const waiting = new Map();
  let buf = Buffer.alloc(0);
  fromChrome.on("data", (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    let end;
    while ((end = buf.indexOf(0)) >= 0) {
      const msg = JSON.parse(buf.subarray(0, end).toString("utf8"));
      buf = buf.subarray(end + 1);
      const w = msg.id && waiting.get(msg.id);
      if (w) {
        waiting.delete(msg.id);
        if (msg.error) w.reject(new Error(`${w.method}: ${msg.error.message}`));
        else w.resolve(msg.result);
      }
    }
  });
  const send = (method, params = {}, sessionId) => new Promise((resolve, reject) => {
    const id = nextId++;
    waiting.set(id, { resolve, reject, method });
    toChrome.write(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }) + "\0");
  });
  const close = async () => {
    try {
      await Promise.race([send("Browser.close"), sleep(3000)]);
    } catch (_) { /* going anyway */ }
    const t = setTimeout(() => proc.kill("SIGKILL"), 3000);
    await exited;
    clearTimeout(t);
    fs.rmSync(profile, { recursive: true, force: true });
  };
  try {
    const { targetInfos } = await send("Target.getTargets");
    const target = targetInfos.find((t) => t.type === "page");
    const { sessionId } = await send("Target.attachToTarget", { targetId: target.targetId, flatten: true });
    await send("Emulation.setDeviceMetricsOverride", { width, height, deviceScaleFactor: 1, mobile: false }, sessionId);
    await send("Page.navigate", { url }, sessionId);
    const evaluate = async (expression) => {
      const r = await send("Runtime.evaluate", { expression, awaitPromise: true, returnByValue: true }, sessionId);
      if (r.exceptionDetails) throw new Error(`page: ${r.exceptionDetails.exception ? r.exceptionDetails.exception.description : r.exceptionDetails.text}`);
      return r.result.value;
    };
    return { evaluate, close };
  } catch (e) {
    await close();
    throw e;
  }
}

/** Polls `expression` in a bare page until it is truthy. */
export async function bareWaitFor(page, expression, timeoutMs, what) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    try {
      if (await page.evaluate(expression)) return;
    } catch (_) { /* page still loading */ }
    await sleep(200);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what || expression}`);
}
