// tickwire client for browsers and Node >= 20: one ES module, no dependencies beyond the
// platform's WebSocket, no build step. The engine serves this very file at
// /tickwire-client.js (embedded with include_str!), and the dashboard's worker imports it.
//
// Contract (the protocol is shared/protocol.md, versions 1 and 2):
// - One WebSocket at a time. It offers the subprotocol `tickwire.v2`; a server that
//   answers none speaks version 1, and the client then resyncs books by snapshot and has
//   no trade recovery (after a reconnect, a jump in trade seqs reaches the app as a
//   `gap` with reason `reconnect`). Browsers, undici and `ws` all fail a handshake whose
//   offered subprotocol gets no answer (WHATWG WebSocket, "establish a WebSocket
//   connection"), so an attempt that offered `tickwire.v2` and failed before opening is
//   retried at once without the offer; every later reconnect offers it again, so an
//   engine upgraded to version 2 is picked up.
// - States: connecting -> open -> reconnecting -> open ... -> closed. `reconnecting` is
//   reported as soon as the link is lost (close, error or heartbeat silence), not after
//   a close handshake.
// - Reconnects use exponential backoff with full jitter; the attempt count resets once a
//   link has stayed up for `backoff.resetAfterMs`. Each attempt asks the `token` callback
//   again and moves to the next of `urls`.
// - Books: one per symbol per client, from a snapshot then updates checked by `prev_seq`
//   (v2) or contiguous seqs (v1). A broken chain resubscribes that book alone and drops
//   updates until a snapshot comes. The client never guesses which snapshot answers
//   which subscribe: every snapshot at the book's depth is the engine's truth at its seq,
//   so a late snapshot of a previous subscription cannot corrupt the book (this is what
//   made the dashboard show 5 levels at depth 20).
// - Timers: one retry timer while reconnecting, one heartbeat interval while open, one
//   connect timeout while connecting. `close()` clears them all.

/** The subprotocol of version 2 with JSON messages. */
export const SUBPROTOCOL_JSON = "tickwire.v2";
/** The subprotocol of version 2 with the binary encoding (not yet spoken by the engine). */
export const SUBPROTOCOL_BINARY = "tickwire.v2.bin";

/** Defaults of the options, each documented in index.d.ts. */
export const DEFAULTS = Object.freeze({
  heartbeatMs: 5000,
  connectTimeoutMs: 10000,
  backoff: Object.freeze({ initialMs: 500, maxMs: 5000, resetAfterMs: 5000 }),
});

const OPEN = 1;
const now = () => (typeof performance !== "undefined" ? performance.now() : Date.now());

/**
 * The delay before reconnect attempt `attempt` (0 for the first): "full jitter", a
 * uniform draw in [0, min(maxMs, initialMs * 2^attempt)). Full jitter spreads the
 * clients of a restarted engine over the whole window instead of bunching them.
 */
export function backoffDelay(attempt, { initialMs, maxMs }, random = Math.random) {
  const step = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 30));
  return random() * step;
}

/** A tiny event emitter; a throwing handler is reported on `onThrow`, never rethrown. */
class Emitter {
  constructor(onThrow) {
    this._handlers = new Map();
    this._onThrow = onThrow;
  }
  on(type, fn) {
    if (typeof fn !== "function") throw new TypeError(`handler for "${type}" must be a function`);
    if (!this._handlers.has(type)) this._handlers.set(type, []);
    this._handlers.get(type).push(fn);
    return this;
  }
  off(type, fn) {
    const list = this._handlers.get(type);
    if (list) this._handlers.set(type, list.filter((f) => f !== fn));
    return this;
  }
  emit(type, value) {
    const list = this._handlers.get(type);
    if (!list) return;
    for (const fn of list) {
      try {
        fn(value);
      } catch (e) {
        // An app bug must not break the stream for everyone else.
        if (this._onThrow) this._onThrow(e, type);
      }
    }
  }
}

/**
 * One order book kept from a snapshot and updates. `ready` is false until a snapshot
 * arrives and after a broken chain (until the next snapshot).
 */
export class BookState {
  constructor(symbol, depth) {
    this.symbol = symbol;
    this.depth = depth;
    this.seq = 0;
    this.ready = false;
    this.resyncs = 0;
    this.bids = new Map();
    this.asks = new Map();
  }

  /** Replaces the book with a snapshot message. */
  snapshot(m) {
    this.bids.clear();
    this.asks.clear();
    for (const [p, s] of m.bids) this.bids.set(p, s);
    for (const [p, s] of m.asks) this.asks.set(p, s);
    this.seq = m.seq;
    this.ready = true;
  }

  /**
   * Applies an update if it continues the chain: `prev_seq` equal to the held seq
   * (version 2, where merged updates skip seqs) or, without `prev_seq`, `seq` one more
   * than the held seq (version 1). Returns false, changing nothing, on a broken chain.
   */
  update(m) {
    const chained = typeof m.prev_seq === "number" ? m.prev_seq === this.seq : m.seq === this.seq + 1;
    if (!chained) return false;
    for (const [p, s] of m.bids) (s === 0 ? this.bids.delete(p) : this.bids.set(p, s));
    for (const [p, s] of m.asks) (s === 0 ? this.asks.delete(p) : this.asks.set(p, s));
    this.seq = m.seq;
    return true;
  }

  /** The book as the app reads it: sorted levels (at most `depth` a side) and the best. */
  view(depth = this.depth) {
    const bids = [...this.bids].sort((a, b) => b[0] - a[0]).slice(0, depth);
    const asks = [...this.asks].sort((a, b) => a[0] - b[0]).slice(0, depth);
    return {
      symbol: this.symbol,
      seq: this.seq,
      ready: this.ready,
      depth,
      resyncs: this.resyncs,
      bids,
      asks,
      bestBid: bids.length ? bids[0] : null,
      bestAsk: asks.length ? asks[0] : null,
    };
  }
}

/**
 * What `client.subscribe` returns: events of its symbols and channels, and their books.
 * It is live at once; the client (re)sends its subscribe on every connection.
 */
export class Subscription {
  constructor(client, { symbols, channels, depth, throttleMs }) {
    if (!Array.isArray(symbols) || symbols.length === 0) throw new TypeError("subscribe: symbols must be a non-empty array");
    if (!Array.isArray(channels) || channels.length === 0) throw new TypeError("subscribe: channels must be a non-empty array");
    for (const ch of channels) {
      if (ch !== "ticker" && ch !== "trades" && ch !== "book") {
        throw new TypeError(`subscribe: unknown channel "${ch}" (ticker, trades or book)`);
      }
    }
    this.symbols = [...new Set(symbols)];
    this.channels = [...new Set(channels)];
    this.depth = depth;
    this.throttleMs = throttleMs;
    this.closed = false;
    this._client = client;
    this._events = new Emitter((e, type) => client._handlerThrew(e, type));
  }

  /**
   * Adds a handler: "trade", "ticker", "book" (after the book was updated), "gap",
   * "reset" (trade seqs restart: a new epoch), "resync" (a broken book chain).
   */
  on(type, fn) {
    this._events.on(type, fn);
    return this;
  }

  /** Removes a handler added with `on`. */
  off(type, fn) {
    this._events.off(type, fn);
    return this;
  }

  /** The book of `symbol` (top `depth` levels a side), or null if this does not hold it. */
  book(symbol, depth) {
    if (!this.channels.includes("book") || !this.symbols.includes(symbol)) return null;
    const b = this._client._books.get(symbol);
    if (!b) return null;
    return b.view(depth ?? this.depth ?? b.depth);
  }

  /** Stops this subscription; pairs that no other subscription holds are unsubscribed. */
  close() {
    if (this.closed) return;
    this.closed = true;
    this._client._unsubscribe(this);
  }

  _holds(symbol, channel) {
    return !this.closed && this.channels.includes(channel) && this.symbols.includes(symbol);
  }
}

/**
 * A tickwire client: one connection (reconnected as needed), any number of
 * subscriptions, books kept per symbol.
 */
export class TickwireClient {
  constructor(options = {}) {
    const { url, urls, token, heartbeatMs, protocol = "json", connectTimeoutMs, backoff } = options;
    const list = urls ?? (url ? [url] : []);
    if (!Array.isArray(list) || list.length === 0) throw new TypeError("TickwireClient: give `url` or a non-empty `urls`");
    if (protocol === "binary") {
      throw new Error('TickwireClient: protocol "binary" (tickwire.v2.bin) is not supported yet: the engine does not speak it; use "json"');
    }
    if (protocol !== "json") throw new TypeError(`TickwireClient: unknown protocol "${protocol}" ("json" or "binary")`);
    const WS = options.WebSocket ?? globalThis.WebSocket;
    if (typeof WS !== "function") {
      throw new TypeError("TickwireClient: no WebSocket in this runtime; pass one as the `WebSocket` option (e.g. from the `ws` package)");
    }
    this._WS = WS;
    this._urls = list.slice();
    this._urlIndex = 0;
    this._token = token;
    this._heartbeatMs = heartbeatMs ?? DEFAULTS.heartbeatMs;
    this._connectTimeoutMs = connectTimeoutMs ?? DEFAULTS.connectTimeoutMs;
    this._backoff = { ...DEFAULTS.backoff, ...(backoff || {}) };
    this._random = options.random ?? Math.random;
    this._events = new Emitter((e, type) => this._handlerThrew(e, type));
    this._state = "connecting";
    this._ws = null;
    this._version = 0; // 1 or 2 once a connection is open
    this._epoch = null; // the epoch of the seqs held (version 2)
    this._attempt = 0;
    this._offerV2 = true; // false for one attempt after a handshake that offered it failed
    this._openedAt = 0;
    this._lastRx = 0;
    this._lastPing = 0;
    this._retryTimer = null;
    this._heartbeatTimer = null;
    this._connectTimer = null;
    this._nextId = 1;
    this._subs = []; // live subscriptions, in the order they were made
    this._books = new Map(); // symbol -> BookState
    this._bookOptions = new Map(); // symbol -> {depth, throttleMs} of the last book subscribe
    this._lastTrade = new Map(); // symbol -> last trade seq held (for `since` and gap checks)
    this._fresh = new Set(); // symbols whose first trade on this connection is not checked yet
    this._pending = new Map(); // id -> {resolve, reject} of requests (symbols)
    this._connect();
  }

  /** The current state: "connecting", "open", "reconnecting" or "closed". */
  get state() {
    return this._state;
  }

  /** The protocol version of the open connection: 2, 1, or 0 when none is open. */
  get version() {
    return this._ws && this._ws.readyState === OPEN ? this._version : 0;
  }

  /** The epoch of the trade seqs held (version 2), or null. */
  get epoch() {
    return this._epoch;
  }

  /** Adds a handler: "state" (the state string) or "error" (server errors and others). */
  on(type, fn) {
    this._events.on(type, fn);
    return this;
  }

  /** Removes a handler added with `on`. */
  off(type, fn) {
    this._events.off(type, fn);
    return this;
  }

  /** Subscribes; returns the subscription at once, sent now or when the link is open. */
  subscribe({ symbols, channels, depth, throttleMs }) {
    if (this._state === "closed") throw new Error("subscribe on a closed TickwireClient");
    const sub = new Subscription(this, { symbols, channels, depth, throttleMs });
    this._subs.push(sub);
    if (sub.channels.includes("book")) {
      for (const s of sub.symbols) {
        const depthNow = depth ?? 10;
        const b = this._books.get(s);
        if (!b) this._books.set(s, new BookState(s, depthNow));
        else if (b.depth !== depthNow) {
          // Another depth: only a snapshot made at the new depth may fill the book.
          b.depth = depthNow;
          b.ready = false;
        }
        this._bookOptions.set(s, { depth: depthNow, throttleMs });
      }
    }
    if (this._isOpen()) this._sendSubscribe(sub, false);
    return sub;
  }

  /** The engine's symbols (the `symbols` command); waits for the link if it is down. */
  symbols() {
    return this._request({ op: "symbols" }).then((m) => m.symbols);
  }

  /** Ends everything: the connection, every timer; the state becomes "closed". */
  close() {
    if (this._state === "closed") return;
    this._clearTimers();
    const ws = this._ws;
    this._ws = null;
    if (ws) this._drop(ws, 1000, "client closed");
    for (const p of this._pending.values()) p.reject(new Error("TickwireClient closed"));
    this._pending.clear();
    this._setState("closed");
  }

  // ---- connection ----------------------------------------------------------------------

  _isOpen() {
    return this._ws !== null && this._ws.readyState === OPEN && this._version !== 0;
  }

  async _connect() {
    this._retryTimer = null;
    const url = this._urls[this._urlIndex % this._urls.length];
    let token = this._token;
    if (typeof token === "function") {
      try {
        token = await token(); // asked on every attempt, so that it can be refreshed
      } catch (e) {
        this._events.emit("error", { type: "error", code: "token", message: `token callback failed: ${e && e.message}`, error: e });
        if (this._state !== "closed") this._scheduleReconnect();
        return;
      }
    }
    if (this._state === "closed") return;
    const full = token ? `${url}${url.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}` : url;
    let ws;
    try {
      ws = new this._WS(full, this._offerV2 ? [SUBPROTOCOL_JSON] : []);
    } catch (e) {
      this._events.emit("error", { type: "error", code: "connect", message: String(e && e.message), error: e });
      this._scheduleReconnect();
      return;
    }
    this._ws = ws;
    this._version = 0;
    ws.onopen = () => this._onOpen(ws);
    ws.onmessage = (ev) => this._onMessage(ws, ev);
    ws.onclose = (ev) => this._lost(ws, `closed (${ev && ev.code})`);
    ws.onerror = () => this._lost(ws, "socket error");
    this._connectTimer = setTimeout(() => this._lost(ws, "connect timeout"), this._connectTimeoutMs);
  }

  _onOpen(ws) {
    if (ws !== this._ws) return;
    clearTimeout(this._connectTimer);
    this._connectTimer = null;
    // A server that answers no subprotocol speaks version 1 (protocol.md, Version 2).
    this._version = ws.protocol === SUBPROTOCOL_JSON ? 2 : 1;
    this._openedAt = now();
    this._lastRx = this._openedAt;
    this._lastPing = this._openedAt;
    // Held books are stale until their snapshot on this connection.
    for (const b of this._books.values()) b.ready = false;
    this._fresh = new Set(this._lastTrade.keys());
    const tick = Math.max(10, Math.min(1000, this._heartbeatMs / 4));
    this._heartbeatTimer = setInterval(() => this._heartbeat(), tick);
    // Resubscribe before telling the app, so that what its "open" handler sends comes after.
    const resume = this._version === 2 && this._epoch !== null;
    for (const sub of this._subs) this._sendSubscribe(sub, resume);
    for (const [id, p] of this._pending) this._send({ ...p.cmd, id });
    this._setState("open");
  }

  _heartbeat() {
    const t = now();
    if (t - this._lastRx >= 3 * this._heartbeatMs) {
      this._lost(this._ws, `no message for ${3 * this._heartbeatMs} ms`);
      return;
    }
    if (t - this._lastPing >= this._heartbeatMs) {
      this._lastPing = t;
      this._send({ op: "ping" });
    }
  }

  // The link is gone (or judged dead): report it at once, then retry after a backoff.
  _lost(ws, why) {
    if (ws !== this._ws || ws === null) return;
    this._ws = null;
    this._drop(ws, 4000, why);
    clearInterval(this._heartbeatTimer);
    clearTimeout(this._connectTimer);
    this._heartbeatTimer = null;
    this._connectTimer = null;
    const opened = this._openedAt !== 0;
    if (opened && now() - this._openedAt >= this._backoff.resetAfterMs) this._attempt = 0;
    this._openedAt = 0;
    this._version = 0;
    if (this._state !== "connecting") this._setState("reconnecting");
    if (!opened && this._offerV2) {
      // Maybe a version 1 engine refusing the offer: try once more at once without it.
      this._offerV2 = false;
      this._connect();
      return;
    }
    this._offerV2 = true;
    this._scheduleReconnect();
  }

  _scheduleReconnect() {
    if (this._retryTimer || this._state === "closed") return;
    const delay = backoffDelay(this._attempt, this._backoff, this._random);
    this._attempt++;
    this._urlIndex++; // fail over: the next of `urls` (the same one when there is one)
    this._retryTimer = setTimeout(() => this._connect(), delay);
  }

  _drop(ws, code, reason) {
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    // Guard against late events from a socket we no longer listen to.
    ws.onerror = () => {};
    try {
      // `ws` (Node) waits up to 30 s for a close handshake that a frozen link never
      // completes; terminate() ends it now. Browsers have no terminate.
      if (typeof ws.terminate === "function") ws.terminate();
      else ws.close(code, reason.slice(0, 100));
    } catch (_) {
      try { ws.close(); } catch (_e) { /* already closed */ }
    }
  }

  _clearTimers() {
    clearTimeout(this._retryTimer);
    clearInterval(this._heartbeatTimer);
    clearTimeout(this._connectTimer);
    this._retryTimer = this._heartbeatTimer = this._connectTimer = null;
  }

  _setState(state) {
    if (this._state === state) return;
    this._state = state;
    this._events.emit("state", state);
  }

  _handlerThrew(e, type) {
    if (type === "error") return; // never loop
    this._events.emit("error", { type: "error", code: "handler", message: `a "${type}" handler threw: ${e && e.message}`, error: e });
  }

  _send(cmd) {
    if (!this._isOpen()) return 0;
    const id = cmd.id ?? this._nextId++;
    this._ws.send(JSON.stringify({ ...cmd, id }));
    return id;
  }

  _request(cmd) {
    return new Promise((resolve, reject) => {
      if (this._state === "closed") {
        reject(new Error("TickwireClient closed"));
        return;
      }
      const id = this._nextId++;
      this._pending.set(id, { cmd, resolve, reject });
      this._send({ ...cmd, id }); // or, if not open, at the next open
    });
  }

  _sendSubscribe(sub, resume) {
    const cmd = { op: "subscribe", channels: sub.channels, symbols: sub.symbols };
    if (sub.channels.includes("book") && sub.depth !== undefined) cmd.depth = sub.depth;
    if (sub.throttleMs !== undefined) cmd.throttle_ms = sub.throttleMs;
    if (resume && sub.channels.includes("trades")) {
      // Version 2 recovery: the trades after the last seq held, in the same epoch.
      const since = {};
      for (const s of sub.symbols) if (this._lastTrade.has(s)) since[s] = this._lastTrade.get(s);
      if (Object.keys(since).length) {
        cmd.epoch = this._epoch;
        cmd.since = since;
      }
    }
    return this._send(cmd);
  }

  _resubscribeBook(symbol) {
    const o = this._bookOptions.get(symbol) || {};
    const cmd = { op: "subscribe", channels: ["book"], symbols: [symbol] };
    if (o.depth !== undefined) cmd.depth = o.depth;
    if (o.throttleMs !== undefined) cmd.throttle_ms = o.throttleMs;
    this._send(cmd);
  }

  _unsubscribe(sub) {
    this._subs = this._subs.filter((s) => s !== sub);
    const drop = new Map(); // channel -> symbols no other subscription holds
    for (const ch of sub.channels) {
      for (const s of sub.symbols) {
        if (this._subs.some((o) => o._holds(s, ch))) continue;
        if (!drop.has(ch)) drop.set(ch, []);
        drop.get(ch).push(s);
        if (ch === "book") {
          this._books.delete(s);
          this._bookOptions.delete(s);
        }
        if (ch === "trades") {
          this._lastTrade.delete(s);
          this._fresh.delete(s);
        }
      }
    }
    // One command per distinct symbol list keeps the count (and the rate limit) low.
    const bySymbols = new Map();
    for (const [ch, syms] of drop) {
      const key = syms.join("\n");
      if (!bySymbols.has(key)) bySymbols.set(key, { symbols: syms, channels: [] });
      bySymbols.get(key).channels.push(ch);
    }
    for (const { symbols, channels } of bySymbols.values()) this._send({ op: "unsubscribe", channels, symbols });
  }

  // ---- messages --------------------------------------------------------------------------

  _onMessage(ws, ev) {
    if (ws !== this._ws) return;
    this._lastRx = now();
    let m;
    try {
      m = JSON.parse(typeof ev.data === "string" ? ev.data : new TextDecoder().decode(ev.data));
    } catch (_) {
      return;
    }
    if (m === null || typeof m !== "object") return;
    switch (m.type) {
      case "trade": this._onTrade(m); break;
      case "ticker": this._deliver(m.symbol, "ticker", "ticker", m); break;
      case "book": this._onBook(m); break;
      case "gap": this._onGap(m); break;
      case "subscribed": this._onSubscribed(m); break;
      case "symbols": this._answer(m); break;
      case "error": {
        const p = this._pending.get(m.id);
        if (p) {
          this._pending.delete(m.id);
          p.reject(Object.assign(new Error(m.message), { code: m.code }));
        }
        this._events.emit("error", m);
        break;
      }
      default: // pong, unsubscribed, and types a later version adds: ignored
    }
  }

  _answer(m) {
    const p = this._pending.get(m.id);
    if (!p) return;
    this._pending.delete(m.id);
    p.resolve(m);
  }

  _deliver(symbol, channel, type, m) {
    for (const sub of this._subs) if (sub._holds(symbol, channel)) sub._events.emit(type, m);
  }

  _onSubscribed(m) {
    if (typeof m.epoch === "string") {
      if (this._epoch !== null && m.epoch !== this._epoch && !m.recovered) {
        // A new numbering without a `since` asked: the held trade seqs mean nothing now.
        for (const s of m.symbols || []) this._reset(s, "epoch", m.epoch);
      }
      this._epoch = m.epoch;
    }
    if (m.recovered && typeof m.recovered === "object") {
      for (const [s, ok] of Object.entries(m.recovered)) {
        if (ok) this._fresh.delete(s); // the replay continues our seqs: check them as usual
        else this._reset(s, "epoch", m.epoch ?? null);
      }
    }
  }

  // Trade seqs restart (an engine that started afresh): the app is told, and the next
  // trade is taken as the new start.
  _reset(symbol, reason, epoch) {
    if (!this._lastTrade.has(symbol)) return;
    const last = this._lastTrade.get(symbol);
    this._lastTrade.delete(symbol);
    this._fresh.delete(symbol);
    this._deliver(symbol, "trades", "reset", { type: "reset", symbol, channel: "trades", reason, epoch, last_seq: last });
  }

  _onTrade(m) {
    const s = m.symbol;
    const last = this._lastTrade.get(s);
    if (last !== undefined) {
      if (this._fresh.has(s)) {
        this._fresh.delete(s);
        if (m.seq <= last) {
          // Version 1 has no epoch: seqs that went back mean the engine started afresh.
          this._reset(s, "restart", null);
        } else if (m.seq > last + 1) {
          // Version 1 (or a failed recovery): what came while we were away is lost.
          this._deliver(s, "trades", "gap", { type: "gap", symbol: s, channel: "trades", from_seq: last + 1, to_seq: m.seq - 1, reason: "reconnect" });
        }
      } else if (m.seq <= last) {
        return; // a duplicate (a replay overlapping what we hold): never deliver twice
      } else if (m.seq > last + 1) {
        // The engine never skips without a gap; should it, the app still hears of it.
        this._deliver(s, "trades", "gap", { type: "gap", symbol: s, channel: "trades", from_seq: last + 1, to_seq: m.seq - 1, reason: "missing" });
      }
    } else {
      this._fresh.delete(s);
    }
    this._lastTrade.set(s, m.seq);
    this._deliver(s, "trades", "trade", m);
  }

  _onGap(m) {
    if (m.channel === "trades") {
      const last = this._lastTrade.get(m.symbol);
      const fresh = this._fresh.delete(m.symbol);
      if (last !== undefined) {
        // A gap may name seqs the app already holds (a fresh cluster edge reports what it
        // never had, from seq 1): only the seqs after the last one held are missing.
        if (m.to_seq <= last) return;
        if (m.from_seq <= last) m = { ...m, from_seq: last + 1 };
        else if (m.from_seq > last + 1) {
          // Seqs between what we hold and the engine's gap (after a reconnect).
          const reason = fresh ? "reconnect" : "missing";
          this._deliver(m.symbol, "trades", "gap", { type: "gap", symbol: m.symbol, channel: "trades", from_seq: last + 1, to_seq: m.from_seq - 1, reason });
        }
      }
      this._lastTrade.set(m.symbol, m.to_seq);
    }
    this._deliver(m.symbol, m.channel, "gap", m);
  }

  _onBook(m) {
    const b = this._books.get(m.symbol);
    if (!b) return; // a book we no longer hold (a late frame after an unsubscribe)
    if (m.snapshot) {
      b.snapshot(m);
    } else {
      if (!b.ready) return; // a snapshot is on its way; updates before it mean nothing
      if (!b.update(m)) {
        const held = b.seq;
        b.ready = false;
        b.resyncs++;
        this._deliver(m.symbol, "book", "resync", { type: "resync", symbol: m.symbol, held_seq: held, seq: m.seq, prev_seq: m.prev_seq });
        this._resubscribeBook(m.symbol); // this book alone
        return;
      }
    }
    this._deliver(m.symbol, "book", "book", m);
  }
}
