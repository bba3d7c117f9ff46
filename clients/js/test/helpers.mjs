// Test helpers: the real tickwire binary on a free loopback port, and a TCP relay that
// can freeze or cut the link (what a dead Wi-Fi or a NAT timeout does to a client).
import { spawn } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
export const binary =
  (process.env.TICKWIRE_BIN && path.resolve(process.env.TICKWIRE_BIN)) ||
  path.join(process.env.CARGO_TARGET_DIR || path.join(repoRoot, "target"), "debug", "tickwire");
/** Integration tests run when the binary exists; TICKWIRE_BIN set but missing is a failure. */
export const haveBinary = fs.existsSync(binary) || Boolean(process.env.TICKWIRE_BIN);

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `pred` every 10 ms until it is truthy; throws `what` after `ms`. */
export async function until(pred, ms, what) {
  const end = Date.now() + ms;
  for (;;) {
    const v = pred();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms: ${what}`);
    await sleep(10);
  }
}

/** A free TCP port on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function health(port) {
  return new Promise((resolve) => {
    const req = http.get({ host: "127.0.0.1", port, path: "/health", timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(false));
  });
}

const running = new Set();
process.on("exit", () => {
  for (const p of running) try { p.kill("SIGKILL"); } catch (_) { /* gone */ }
});

/** Starts `tickwire serve` with the simulator on 127.0.0.1:port; resolves once healthy. */
export async function startEngine(port, simRate = 2000) {
  const end = Date.now() + 30000;
  while (Date.now() < end) {
    const proc = spawn(binary, ["serve", "--listen", `127.0.0.1:${port}`, "--no-pin", "--sim-rate", String(simRate)], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    let log = "";
    proc.stderr.on("data", (c) => { log = (log + c).slice(-4000); });
    running.add(proc);
    const done = new Promise((resolve) => proc.on("exit", () => { running.delete(proc); resolve(); }));
    let exited = false;
    done.then(() => { exited = true; });
    while (!exited && Date.now() < end) {
      if (await health(port)) return { proc, done, port, log: () => log };
      await sleep(50);
    }
    if (!exited) break;
    await sleep(200); // the port may not be free yet after a kill: try again
  }
  throw new Error(`tickwire did not become healthy on port ${port}`);
}

/** Stops an engine (SIGTERM, or SIGKILL for a crash) and waits for its exit. */
export async function stopEngine(engine, signal = "SIGTERM") {
  if (!engine) return;
  engine.proc.kill(signal);
  const t = setTimeout(() => engine.proc.kill("SIGKILL"), 5000);
  await engine.done;
  clearTimeout(t);
}

/**
 * A TCP relay on a free port to `targetPort`. `freeze()` stops forwarding on the links
 * open now, in both directions, without closing them (new links pass); `cut(ms)` resets
 * every link and refuses new ones for `ms`.
 */
export async function startRelay(targetPort) {
  const links = new Set();
  let refuseUntil = 0;
  const server = net.createServer((down) => {
    if (Date.now() < refuseUntil) {
      down.resetAndDestroy();
      return;
    }
    const up = net.connect(targetPort, "127.0.0.1");
    const link = { down, up, frozen: false };
    links.add(link);
    const pipe = (from, to) => from.on("data", (c) => { if (!link.frozen) to.write(c); });
    pipe(down, up);
    pipe(up, down);
    const end = () => {
      links.delete(link);
      down.destroy();
      up.destroy();
    };
    down.on("close", end).on("error", end);
    up.on("close", end).on("error", end);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: server.address().port,
    freeze() {
      for (const l of links) {
        l.frozen = true;
        // Stop reading too, as a dead path would: nothing moves, nothing closes.
        l.down.pause();
        l.up.pause();
      }
    },
    cut(ms) {
      refuseUntil = Date.now() + ms;
      for (const l of links) l.down.resetAndDestroy();
    },
    async close() {
      for (const l of links) {
        l.down.destroy();
        l.up.destroy();
      }
      await new Promise((r) => server.close(r));
    },
  };
}

/**
 * Checks that trade seqs and gaps of one symbol account for every seq exactly once:
 * each trade is the next seq, or a gap names exactly the skipped range. `events` are
 * trade and gap messages in arrival order (resets start a fresh count).
 */
export function checkTradeContinuity(events) {
  let next = null;
  for (const e of events) {
    if (e.type === "reset") {
      next = null;
    } else if (e.type === "trade") {
      if (next !== null && e.seq !== next) throw new Error(`trade seq ${e.seq}, expected ${next}`);
      next = e.seq + 1;
    } else if (e.type === "gap") {
      if (next !== null && e.from_seq !== next) throw new Error(`gap from ${e.from_seq}, expected ${next}`);
      next = e.to_seq + 1;
    }
  }
}

/** Debian's nats-server, or null when it is not installed (scripts/test.sh installs it). */
export function natsServerBin() {
  for (const dir of [...(process.env.PATH || "").split(":"), "/usr/sbin", "/usr/bin"]) {
    const p = path.join(dir, "nats-server");
    if (dir && fs.existsSync(p)) return p;
  }
  return null;
}

async function waitPort(port, ms) {
  const end = Date.now() + ms;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, "127.0.0.1", () => { s.destroy(); resolve(true); });
      s.on("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`nothing listens on ${port}`);
    await sleep(20);
  }
}

/**
 * A cluster on loopback (docs/cluster.md): nats-server with JetStream in a temporary
 * store, one feed node running the simulator, and `edges` edge nodes. Every node has the
 * same feed settings, as edges require. `stop()` ends every process.
 */
export async function startCluster(edges = 2) {
  const procs = [];
  const store = fs.mkdtempSync(path.join((await import("node:os")).tmpdir(), "tickwire-nats-"));
  const natsPort = await freePort();
  const spawnTracked = (bin, args) => {
    const p = spawn(bin, args, { stdio: "ignore" });
    running.add(p);
    const done = new Promise((resolve) => p.on("exit", () => { running.delete(p); resolve(); }));
    const proc = { p, done };
    procs.push(proc);
    return proc;
  };
  const stopProc = async (proc, signal = "SIGTERM") => {
    if (proc.p.exitCode !== null || proc.p.signalCode !== null) return;
    proc.p.kill(signal);
    const t = setTimeout(() => proc.p.kill("SIGKILL"), 5000);
    await proc.done;
    clearTimeout(t);
  };
  spawnTracked(natsServerBin(), ["-js", "-a", "127.0.0.1", "-p", String(natsPort), "-sd", store]);
  await waitPort(natsPort, 10000);
  const node = async (role) => {
    const port = await freePort();
    const proc = spawnTracked(binary, [
      "serve", "--listen", `127.0.0.1:${port}`, "--no-pin", "--workers", "1",
      "--nats", `nats://127.0.0.1:${natsPort}`, "--feed", "sim", "--sim-symbols", "2", "--sim-seed", "7",
      "--role", role,
    ]);
    const end = Date.now() + 30000;
    while (!(await health(port))) {
      if (Date.now() > end) throw new Error(`${role} node on ${port} did not become healthy`);
      await sleep(50);
    }
    return { port, proc };
  };
  const feed = await node("feed");
  const edgeNodes = [];
  for (let i = 0; i < edges; i++) edgeNodes.push(await node("edge"));
  return {
    feed,
    edges: edgeNodes,
    kill: (n) => stopProc(n.proc, "SIGKILL"),
    async stop() {
      for (const proc of procs.slice().reverse()) await stopProc(proc);
      fs.rmSync(store, { recursive: true, force: true });
    },
  };
}
