"""The client against the real tickwire binary: an engine restart, a frozen link, a
blip. The engine speaks protocol version 1 today (it answers no subprotocol); where a
result changes once it speaks version 2, the test says so (look for "V2:")."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from typing import Any, AsyncIterator, Dict, List

from websockets.asyncio.client import connect

from conftest import Engine, Relay, check_trade_continuity, free_port, needs_binary
from tickwire_client import Client

BTC = "sim:BTC-USD"


class Recorder:
    """Reads a subscription: every event (stamped with its arrival time), and the book
    (top 10) at each book seq."""

    def __init__(self, sub) -> None:
        self.sub = sub
        self.events: List[Any] = []
        self.books: Dict[int, tuple] = {}
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for e in self.sub:
            e.at = time.monotonic()
            self.events.append(e)
            if e.type == "book":
                b = self.sub.book(BTC, 10)
                if b.ready and b.seq == e.seq:  # the book may be ahead of the event
                    self.books[b.seq] = (e.at, json.dumps([b.bids, b.asks]))

    def of(self, *types: str) -> List[Any]:
        return [e for e in self.events if e.type in types]


async def probe_books(port: int, books: Dict[int, str], depth: int = 10) -> None:
    """An independent reader (raw websockets, its own book code): the engine's top
    `depth` levels of BTC at each seq."""
    async with connect(f"ws://127.0.0.1:{port}/ws", compression=None) as ws:
        await ws.send(json.dumps({"op": "subscribe", "channels": ["book"], "symbols": [BTC], "depth": depth}))
        bids: Dict[float, float] = {}
        asks: Dict[float, float] = {}
        async for raw in ws:
            m = json.loads(raw)
            if m.get("type") != "book":
                continue
            if m["snapshot"]:
                bids.clear()
                asks.clear()
            for side, levels in ((bids, m["bids"]), (asks, m["asks"])):
                for p, s in levels:
                    if s == 0:
                        side.pop(p, None)
                    else:
                        side[p] = s
            top_b = sorted(bids.items(), key=lambda x: -x[0])[:depth]
            top_a = sorted(asks.items(), key=lambda x: x[0])[:depth]
            books[m["seq"]] = json.dumps([top_b, top_a])


async def until(pred, timeout: float, what: str):
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        assert time.monotonic() < end, f"timed out after {timeout} s: {what}"
        await asyncio.sleep(0.01)


@needs_binary
def test_engine_restart() -> None:
    async def main() -> None:
        port = free_port()
        engine = Engine(port)
        await engine.start()
        try:
            # A cap of 1 s (the default is 5 s) so that the client is back within 2 s of
            # the restart whatever its attempt count reached while the engine was down.
            async with Client(f"ws://127.0.0.1:{port}/ws", heartbeat=1.0, backoff_max=1.0) as c:
                sub = await c.subscribe(symbols=[BTC], channels=["ticker", "trades", "book"], depth=10)
                rec = Recorder(sub)
                await c.wait_state("open", 10)
                assert c.version == 2, "the engine answers tickwire.v2"
                await until(lambda: len(rec.of("trade")) >= 20, 20, "trades")
                await asyncio.sleep(4)  # the old engine's seqs get ahead of the new one's
                await engine.stop(signal.SIGKILL)
                await until(lambda: c.state == "reconnecting", 2, "reconnecting as soon as the link is lost")
                await engine.start()
                restarted = time.monotonic()
                probe: Dict[int, str] = {}
                probe_task = asyncio.create_task(probe_books(port, probe))
                try:
                    await c.wait_state("open", 5)

                    def match():
                        for seq, (at, levels) in rec.books.items():
                            if at >= restarted and seq in probe:
                                return seq, at, levels
                        return None

                    seq, at, levels = await until(match, 2.5, "a book after the restart that the probe also saw")
                    assert levels == probe[seq], f"book at seq {seq} equals a fresh snapshot"
                    assert at - restarted <= 2.0, f"book back {at - restarted:.2f} s after the restart"
                    await asyncio.sleep(1)
                    for s, (at, levels) in list(rec.books.items()):
                        if at >= restarted and s in probe:
                            assert levels == probe[s], f"book at seq {s}"
                finally:
                    probe_task.cancel()
                    await asyncio.gather(probe_task, return_exceptions=True)
                # The app is told that trades start afresh: the restarted engine's
                # `subscribed` names a new epoch.
                reset = await until(lambda: rec.of("reset"), 5, "a reset")
                assert reset[0].reason == "epoch"
                check_trade_continuity(rec.of("trade", "gap", "reset"))
                assert [e.state for e in rec.of("state")][:3] == ["open", "reconnecting", "open"]
            rec.task.cancel()
        finally:
            await engine.stop()

    asyncio.run(main())


@contextlib.asynccontextmanager
async def engine_behind_relay() -> AsyncIterator[Relay]:
    """The real engine on a free port and a relay in front of it; both stopped after."""
    port = free_port()
    engine = Engine(port)
    await engine.start()
    relay = Relay(port)
    await relay.start()
    try:
        yield relay
    finally:
        await relay.close()
        await engine.stop()


@needs_binary
def test_dead_link_frozen_relay() -> None:
    async def main() -> None:
        async with engine_behind_relay() as relay:
            async with Client(f"ws://127.0.0.1:{relay.port}/ws", heartbeat=0.3) as c:
                sub = await c.subscribe(symbols=[BTC], channels=["trades", "book"], depth=5)
                rec = Recorder(sub)
                await until(lambda: c.state == "open" and sub.book(BTC).ready, 10, "open with a book")
                relay.freeze()
                t0 = time.monotonic()
                # A bound on liveness, not a timing: on a loaded 2-core machine the event
                # loop can run seconds late (the unit tests check the timeout exactly).
                await until(lambda: c.state == "reconnecting", 0.9 + 10.0, "the heartbeat notices")
                noticed = time.monotonic() - t0
                assert noticed >= 0.8, noticed
                await c.wait_state("open", 5)
                n = len(rec.books)
                await until(lambda: len(rec.books) > n + 3, 5, "book updates again")
                check_trade_continuity(rec.of("trade", "gap", "reset"))
            rec.task.cancel()

    asyncio.run(main())


@needs_binary
def test_blip_one_second() -> None:
    async def main() -> None:
        async with engine_behind_relay() as relay:
            async with Client(f"ws://127.0.0.1:{relay.port}/ws") as c:
                sub = await c.subscribe(symbols=[BTC], channels=["trades"])
                rec = Recorder(sub)
                await until(lambda: len(rec.of("trade")) >= 5, 10, "trades")
                relay.cut(1.0)
                await until(lambda: c.state == "reconnecting", 1, "reconnecting")
                await c.wait_state("open", 10)
                n = len(rec.of("trade"))
                await until(lambda: len(rec.of("trade")) > n + 5, 10, "trades again")
                check_trade_continuity(rec.of("trade", "gap", "reset"))  # no duplicate, no silent hole
                # Version 2 recovers (epoch + since): the outage's trades are replayed.
                assert c.version == 2
                gaps = rec.of("gap")
                assert not gaps, [vars(g) for g in gaps]
            rec.task.cancel()

    asyncio.run(main())


@needs_binary
def test_example_prints_top_of_book() -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    async def main() -> None:
        port = free_port()
        engine = Engine(port)
        await engine.start()
        try:
            here = Path(__file__).resolve().parents[1]
            env = {**os.environ, "PYTHONPATH": str(here / "src")}
            out = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, str(here / "examples" / "top_of_book.py"), f"ws://127.0.0.1:{port}/ws", "--changes", "3"],
                capture_output=True, text=True, timeout=20, env=env, check=True,
            )
            lines = [ln for ln in out.stdout.splitlines() if ln.startswith(f"{BTC} bid")]
            assert len(lines) == 3, out.stdout
        finally:
            await engine.stop()

    asyncio.run(main())


@needs_binary
def test_slow_app_books_match_and_gaps_reach_the_app() -> None:
    """The app reads slowly (a bounded queue, 2 ms per event, depth 50 on every symbol):
    the client stops reading, the engine conflates, and the app still sees books equal to
    an independent fast reader's at every seq it checks, and the engine's gaps.

    V2: also run it with the engine offering tickwire.v2, where the engine may send merged
    updates (`prev_seq` < `seq - 1`) instead of snapshots; assert that some came and that
    the books still match. Today (version 1) the engine resends snapshots."""

    async def main() -> None:
        port = free_port()
        engine = Engine(port, sim_rate=4000)
        await engine.start()
        probe: Dict[int, str] = {}
        probe_task = asyncio.create_task(probe_books(port, probe, depth=50))
        try:
            async with Client(f"ws://127.0.0.1:{port}/ws", queue_size=50) as c:
                symbols = await asyncio.wait_for(c.symbols(), 10)
                sub = await c.subscribe(symbols=symbols, channels=["trades", "book"], depth=50)
                checked: Dict[int, str] = {}
                flows: Dict[str, list] = {}
                gaps = []
                end = time.monotonic() + 8
                async for e in sub:
                    if e.type in ("trade", "gap", "reset"):
                        flows.setdefault(e.symbol, []).append(e)
                    if e.type == "gap" and e.reason == "slow_consumer":
                        gaps.append(e)
                    if e.type == "book" and e.symbol == BTC:
                        # Whatever the app reads must be the engine's book at the book's
                        # seq (which may be ahead of the event in hand).
                        b = sub.book(BTC)
                        if b.ready:
                            checked[b.seq] = json.dumps([b.bids, b.asks])
                    await asyncio.sleep(0.002)  # the slow app
                    if time.monotonic() > end:
                        break
            await asyncio.sleep(0.5)  # the probe catches up with the last seqs checked
            compared = [s for s in checked if s in probe]
            assert len(compared) >= 5, f"{len(compared)} BTC books compared"
            for s in compared:
                assert checked[s] == probe[s], f"book at seq {s}"
            assert gaps, "the engine's slow_consumer gaps reach the app"
            for flow in flows.values():
                check_trade_continuity(flow)
        finally:
            probe_task.cancel()
            await asyncio.gather(probe_task, return_exceptions=True)
            await engine.stop()

    asyncio.run(main())
