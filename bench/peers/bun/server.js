// Peer "bun": Bun's own server, `Bun.serve` with its WebSocket handler and pub/sub:
// every subscriber joins a topic, and each trade is sent once with `server.publish`
// (uWebSockets fans it out in native code). Serves the subset of docs/protocol.md that
// `tickwire bench compare` uses: `GET /ws`, `subscribe` (answered `subscribed`), `ping`,
// and `trade` messages of `sim:BTC-USD` with contiguous `seq` from 1 and `ingest_ts` in
// ns since the epoch, exactly `--rate` per second (timer-driven: every 1 ms, the trades
// due are made).
//
// bun server.js --port 9002 [--rate 1000]

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? Number(process.argv[i + 1]) : dflt;
}
const port = arg('port', 9002);
const rate = arg('rate', 1000);
const SYMBOL = 'sim:BTC-USD';
const TOPIC = 'trades:sim:BTC-USD';

// Wall clock in ns since the epoch: the realtime origin once, then the monotonic clock.
const wallBase =
  BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6)) - process.hrtime.bigint();
const wallNs = () => wallBase + process.hrtime.bigint();

const server = Bun.serve({
  hostname: '127.0.0.1',
  port,
  fetch(req, server) {
    if (new URL(req.url).pathname === '/ws' && server.upgrade(req)) return undefined;
    return new Response('not found', { status: 404 });
  },
  websocket: {
    perMessageDeflate: false,
    message(ws, data) {
      if (typeof data !== 'string') return ws.close(1003);
      let cmd;
      try {
        cmd = JSON.parse(data);
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
        if (channels.includes('trades') && symbols.includes(SYMBOL)) ws.subscribe(TOPIC);
      } else if (cmd.op === 'ping') {
        ws.send(`{"type":"pong",${id}"ts":${wallNs()}}`);
      } else {
        ws.send(`{"type":"error",${id}"code":"bad_request","message":"unsupported op"}`);
      }
    },
  },
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
  for (; done < due; done++) server.publish(TOPIC, trade());
}, 1);

console.log(`bun peer on 127.0.0.1:${server.port}, ${rate} trades/s`);
const stop = () => {
  server.stop(true);
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
