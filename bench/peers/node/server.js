// Peer "node": Node.js with the `ws` package, the way its README broadcasts: one
// `WebSocketServer` on an `http` server, and `client.send(text)` for every subscriber of
// every trade. Serves the subset of docs/protocol.md that `tickwire bench compare` uses:
// `GET /ws`, `subscribe` (answered `subscribed`), `ping`, and `trade` messages of
// `sim:BTC-USD` with contiguous `seq` from 1 and `ingest_ts` in ns since the epoch,
// exactly `--rate` per second (timer-driven: every 1 ms, the trades due are made).
//
// node server.js --port 9001 [--rate 1000]
'use strict';
const http = require('node:http');
const { WebSocketServer } = require('ws');

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? Number(process.argv[i + 1]) : dflt;
}
const port = arg('port', 9001);
const rate = arg('rate', 1000);
const SYMBOL = 'sim:BTC-USD';

// Wall clock in ns since the epoch: the realtime origin once, then the monotonic clock.
const wallBase =
  BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6)) - process.hrtime.bigint();
const wallNs = () => wallBase + process.hrtime.bigint();

const subscribers = new Set();
const server = http.createServer((req, res) => {
  res.writeHead(404).end();
});
const wss = new WebSocketServer({ server, path: '/ws' });

wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => {
    if (isBinary) return ws.close(1003);
    let cmd;
    try {
      cmd = JSON.parse(data.toString());
    } catch {
      return ws.send('{"type":"error","code":"bad_json","message":"not JSON"}');
    }
    const id = Number.isInteger(cmd.id) ? `"id":${cmd.id},` : '';
    if (cmd.op === 'subscribe') {
      const channels = Array.isArray(cmd.channels) ? cmd.channels : [];
      const symbols = Array.isArray(cmd.symbols) ? cmd.symbols : [];
      ws.send(
        `{"type":"subscribed",${id}"channels":${JSON.stringify(channels)},"symbols":${JSON.stringify(symbols)}}`,
      );
      if (channels.includes('trades') && symbols.includes(SYMBOL)) subscribers.add(ws);
    } else if (cmd.op === 'ping') {
      ws.send(`{"type":"pong",${id}"ts":${wallNs()}}`);
    } else {
      ws.send(`{"type":"error",${id}"code":"bad_request","message":"unsupported op"}`);
    }
  });
  ws.on('close', () => subscribers.delete(ws));
  ws.on('error', () => subscribers.delete(ws));
});

// The synthetic trades: the same shape and size as the engine's `--sim-trades-only`.
let seq = 0;
let rng = 1;
function nextRandom() {
  // xorshift32: cheap and deterministic.
  rng ^= rng << 13;
  rng ^= rng >>> 17;
  rng ^= rng << 5;
  return rng >>> 0;
}
function trade() {
  seq += 1;
  const r = nextRandom();
  const buy = (r & 1) === 1;
  const size = (1 + ((r >>> 1) % 2500)) / 10000;
  const ts = wallNs();
  return `{"type":"trade","symbol":"${SYMBOL}","seq":${seq},"price":${buy ? '67000' : '66999.9'},"size":${size},"side":"${buy ? 'buy' : 'sell'}","trade_id":"${seq}","ts":${ts},"ingest_ts":${ts}}`;
}

const start = process.hrtime.bigint();
let done = 0;
setInterval(() => {
  const due = Number(((process.hrtime.bigint() - start) * BigInt(rate)) / 1000000000n);
  if (due - done > rate) done = due; // more than a second behind: forget the backlog
  for (; done < due; done++) {
    const msg = trade();
    for (const ws of subscribers) ws.send(msg);
  }
}, 1);

server.listen(port, '127.0.0.1', () => {
  console.log(`node ws peer on 127.0.0.1:${port}, ${rate} trades/s`);
});
const stop = () => {
  for (const ws of wss.clients) ws.terminate();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
