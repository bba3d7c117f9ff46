// Types of the tickwire client (src/index.js). The wire messages are those of
// shared/protocol.md, versions 1 and 2.

/** The connection's state, as the "state" event reports it. */
export type State = "connecting" | "open" | "reconnecting" | "closed";

/** A channel of a subscription. */
export type Channel = "ticker" | "trades" | "book";

/** A price level: [price, size]. */
export type Level = [number, number];

export interface Trade {
  type: "trade";
  symbol: string;
  seq: number;
  price: number;
  size: number;
  side: "buy" | "sell" | null;
  trade_id: string | null;
  ts: number;
  ingest_ts: number;
}

export interface Ticker {
  type: "ticker";
  symbol: string;
  seq: number;
  bid: number | null;
  bid_size: number | null;
  ask: number | null;
  ask_size: number | null;
  last: number | null;
  last_size: number | null;
  volume: number;
  ts: number;
  ingest_ts: number;
}

/** A book message, delivered after the client's book was updated with it. */
export interface BookMessage {
  type: "book";
  symbol: string;
  seq: number;
  /** Version 2 updates: the seq of the book state this update applies to. */
  prev_seq?: number;
  snapshot: boolean;
  bids: Level[];
  asks: Level[];
  ts: number;
  ingest_ts: number;
}

/**
 * Seqs that will not come. `reason` is the engine's (`slow_consumer`, `feed_gap`,
 * `expired`, or a later word) or the client's own: `reconnect` (version 1: trades
 * missed while the link was down) and `missing` (a jump without a gap message).
 */
export interface Gap {
  type: "gap";
  symbol: string;
  channel: Channel;
  from_seq: number;
  to_seq: number;
  reason: string;
}

/**
 * Trade seqs start afresh: an engine that restarted (`reason` "restart", seen in
 * version 1 as seqs going back) or a new epoch (`reason` "epoch", version 2).
 */
export interface Reset {
  type: "reset";
  symbol: string;
  channel: "trades";
  reason: "restart" | "epoch";
  epoch: string | null;
  /** The last trade seq held before the reset. */
  last_seq: number;
}

/** A book update did not continue the chain; the book is resubscribed alone. */
export interface Resync {
  type: "resync";
  symbol: string;
  held_seq: number;
  seq: number;
  prev_seq?: number;
}

/** A server `error` message, or the client's own (`code` "token", "connect", "handler"). */
export interface ErrorEvent {
  type: "error";
  id?: number;
  code: string;
  message: string;
  error?: unknown;
}

/** A book as the app reads it: at most `depth` levels a side, bids highest first. */
export interface BookView {
  symbol: string;
  seq: number;
  /** False until the first snapshot, and from a broken chain or a reconnect until the next. */
  ready: boolean;
  depth: number;
  /** How many times the chain broke and the book was resubscribed. */
  resyncs: number;
  bids: Level[];
  asks: Level[];
  bestBid: Level | null;
  bestAsk: Level | null;
}

export interface BackoffOptions {
  /** The first retry comes within this many ms (full jitter: uniform in [0, initialMs)). Default 500. */
  initialMs?: number;
  /** The cap of the doubling window. Default 5000. */
  maxMs?: number;
  /** A link up this long resets the window to `initialMs`. Default 5000. */
  resetAfterMs?: number;
}

export interface ClientOptions {
  /** The engine's WebSocket URL, e.g. ws://127.0.0.1:8080/ws. */
  url?: string;
  /** URLs to fail over between (the edges of a cluster); each attempt takes the next. */
  urls?: string[];
  /** A token, or a callback asked again on every (re)connect; sent as `?token=`. */
  token?: string | (() => string | Promise<string>);
  /** An application `ping` every this many ms; no message for 3× this: the link is dead. Default 5000. */
  heartbeatMs?: number;
  /** "json" (default); "binary" throws until the engine speaks tickwire.v2.bin. */
  protocol?: "json" | "binary";
  /** A connection not open after this many ms is abandoned and retried. Default 10000. */
  connectTimeoutMs?: number;
  backoff?: BackoffOptions;
  /** The WebSocket constructor; default `globalThis.WebSocket` (Node 20: pass `ws`'s). */
  WebSocket?: unknown;
  /** The random source of the jitter (tests). Default Math.random. */
  random?: () => number;
}

export interface SubscribeOptions {
  symbols: string[];
  channels: Channel[];
  /** Book levels per side, 1..=1000 (engine default 10). One depth per symbol per client. */
  depth?: number;
  /** At most one ticker/book message per symbol per interval (trades are never throttled). */
  throttleMs?: number;
}

export interface SubscriptionEvents {
  trade: Trade;
  ticker: Ticker;
  book: BookMessage;
  gap: Gap;
  reset: Reset;
  resync: Resync;
}

export declare class Subscription {
  readonly symbols: string[];
  readonly channels: Channel[];
  readonly depth: number | undefined;
  readonly throttleMs: number | undefined;
  readonly closed: boolean;
  on<K extends keyof SubscriptionEvents>(type: K, fn: (event: SubscriptionEvents[K]) => void): this;
  off<K extends keyof SubscriptionEvents>(type: K, fn: (event: SubscriptionEvents[K]) => void): this;
  /** The book of `symbol`, or null when this subscription does not hold it. */
  book(symbol: string, depth?: number): BookView | null;
  /** Stops the subscription; pairs no other subscription holds are unsubscribed. */
  close(): void;
}

export interface ClientEvents {
  state: State;
  error: ErrorEvent;
}

export declare class TickwireClient {
  constructor(options: ClientOptions);
  readonly state: State;
  /** 2 or 1 while open (1: the server answered no subprotocol), else 0. */
  readonly version: 0 | 1 | 2;
  /** The epoch of the trade seqs held (version 2), or null. */
  readonly epoch: string | null;
  on<K extends keyof ClientEvents>(type: K, fn: (event: ClientEvents[K]) => void): this;
  off<K extends keyof ClientEvents>(type: K, fn: (event: ClientEvents[K]) => void): this;
  /** Returns the subscription at once; it is (re)sent on every connection. */
  subscribe(options: SubscribeOptions): Subscription;
  /** The engine's symbols; waits for the link when it is down. */
  symbols(): Promise<string[]>;
  /** Ends the connection and every timer. */
  close(): void;
}

/** Full-jitter backoff: uniform in [0, min(maxMs, initialMs * 2^attempt)). */
export declare function backoffDelay(attempt: number, options: { initialMs: number; maxMs: number }, random?: () => number): number;

export declare class BookState {
  constructor(symbol: string, depth: number);
  symbol: string;
  depth: number;
  seq: number;
  ready: boolean;
  resyncs: number;
  snapshot(m: BookMessage): void;
  /** Applies an update that continues the chain; false (nothing changed) otherwise. */
  update(m: BookMessage): boolean;
  view(depth?: number): BookView;
}

export declare const SUBPROTOCOL_JSON: "tickwire.v2";
export declare const SUBPROTOCOL_BINARY: "tickwire.v2.bin";
export declare const DEFAULTS: {
  readonly heartbeatMs: number;
  readonly connectTimeoutMs: number;
  readonly backoff: Required<BackoffOptions>;
};
