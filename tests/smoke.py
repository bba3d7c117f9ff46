#!/usr/bin/env python3
"""Smoke test of the tickwire binary as a third-party client sees it.

Starts `tickwire serve` on a free loopback port with the simulator, connects with the
Python `websockets` library, follows protocol.md (subscribe, snapshots, data flow), checks
that only the asked-for symbols and channels arrive, then stops the server with SIGTERM
and expects a 1001 close and a clean exit. Bounded in time; stops by itself.
"""
import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import websockets
from prometheus_client.parser import text_string_to_metric_families


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(port: int, proc: subprocess.Popen, deadline_s: float = 30.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"server exited early with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if r.status == 200:
                    return
        except Exception:
            pass
        time.sleep(0.05)
    raise SystemExit("server did not become healthy")


def check_metrics(port: int) -> None:
    """/metrics parses with the reference Prometheus client's parser and has what we promise."""
    # Histograms are published once a second: wait (bounded) for the first deliveries.
    for _ in range(50):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        t2w = families.get("tickwire_tick_to_wire_seconds")
        if t2w and [s.value for s in t2w.samples if s.name.endswith("_count")][0] > 0:
            break
        time.sleep(0.1)
    for name in ["tickwire_clients", "tickwire_messages_sent", "tickwire_feed_ticks"]:
        assert name in families, (name, sorted(families))
    t2w = families["tickwire_tick_to_wire_seconds"]
    assert t2w.type == "summary", t2w.type
    quantiles = {s.labels.get("quantile"): s.value for s in t2w.samples if "quantile" in s.labels}
    assert set(quantiles) == {"0.5", "0.9", "0.99", "0.999", "0.9999"}, quantiles
    count = [s.value for s in t2w.samples if s.name.endswith("_count")][0]
    print(f"smoke: /metrics parses ({len(families)} families, tick_to_wire count {count})")


async def client(port: int, proc: subprocess.Popen) -> None:
    want = ["sim:BTC-USD", "sim:ETH-USD"]
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws", max_size=2**22) as ws:
        await ws.send(json.dumps({"op": "subscribe", "id": 1, "channels": ["ticker", "trades", "book"],
                                  "symbols": want, "depth": 10}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert reply == {"type": "subscribed", "id": 1, "channels": ["ticker", "trades", "book"],
                         "symbols": want}, reply
        seen = {}
        last_trade = {}
        for _ in range(5000):
            m = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert m["type"] in ("ticker", "trade", "book"), m
            assert m["symbol"] in want, m
            seen[m["type"]] = seen.get(m["type"], 0) + 1
            if m["type"] == "trade":
                prev = last_trade.get(m["symbol"])
                assert prev is None or m["seq"] == prev + 1, (prev, m)
                last_trade[m["symbol"]] = m["seq"]
            if len(seen) == 3 and min(seen.values()) >= 10:
                break
        assert len(seen) == 3 and min(seen.values()) >= 10, seen
        check_metrics(port)
        proc.send_signal(signal.SIGTERM)
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        except websockets.ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else None
            assert code == 1001, f"close code {code}"
    print(f"smoke: ok ({seen})")


def main() -> None:
    binary = sys.argv[1]
    port = free_port()
    proc = subprocess.Popen([binary, "serve", "--listen", f"127.0.0.1:{port}", "--no-pin",
                             "--sim-rate", "5000"])
    try:
        wait_healthy(port, proc)
        asyncio.run(asyncio.wait_for(client(port, proc), 60))
        assert proc.wait(timeout=15) == 0, f"exit code {proc.returncode}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
