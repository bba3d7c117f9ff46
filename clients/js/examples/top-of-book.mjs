// Prints the BTC top of book each time it changes.
//
//   node clients/js/examples/top-of-book.mjs [ws://127.0.0.1:8080/ws] [--changes N]
//
// Node 22+ and browsers have a global WebSocket; on Node 20 this uses the `ws` package
// (npm ci in clients/js installs it).
import { TickwireClient } from "../src/index.js";

const args = process.argv.slice(2);
const url = args.find((a) => a.startsWith("ws")) ?? "ws://127.0.0.1:8080/ws";
const n = args.indexOf("--changes");
const maxChanges = n >= 0 ? Number(args[n + 1]) : Infinity;
const WebSocket = globalThis.WebSocket ?? (await import("ws")).default;
const SYMBOL = "sim:BTC-USD";

const client = new TickwireClient({ url, WebSocket });
client.on("state", (s) => console.log(`[${s}]`));
client.on("error", (e) => console.error(`error ${e.code}: ${e.message}`));

const sub = client.subscribe({ symbols: [SYMBOL], channels: ["book"], depth: 1 });
let last = "";
let changes = 0;
sub.on("book", () => {
  const { seq, bestBid, bestAsk } = sub.book(SYMBOL);
  const line = `${SYMBOL} bid ${bestBid ? `${bestBid[1]} @ ${bestBid[0]}` : "-"}  ask ${bestAsk ? `${bestAsk[1]} @ ${bestAsk[0]}` : "-"}`;
  if (line === last) return;
  last = line;
  console.log(`${line}  (seq ${seq})`);
  if (++changes >= maxChanges) client.close();
});
sub.on("gap", (g) => console.log(`gap ${g.channel} ${g.from_seq}-${g.to_seq} (${g.reason})`));
