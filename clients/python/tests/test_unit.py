"""Unit tests: book chain checking, backoff, and the state machine against a scripted
in-process WebSocket server on 127.0.0.1 (no engine)."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Dict, List, Optional

import pytest
from websockets.asyncio.server import ServerConnection, serve

from tickwire_client import BookState, Client, State, backoff_delay

A = "sim:AAA-USD"


def book(seq: int, bids, asks, snapshot: bool = False, **extra: Any) -> Dict[str, Any]:
    return {"type": "book", "symbol": A, "seq": seq, "snapshot": snapshot, "bids": bids, "asks": asks, "ts": 1, "ingest_ts": 1, **extra}


def trade(seq: int) -> Dict[str, Any]:
    return {"type": "trade", "symbol": A, "seq": seq, "price": 1.5, "size": 1, "side": "buy", "trade_id": str(seq), "ts": 1, "ingest_ts": 1}


def test_backoff_full_jitter_capped() -> None:
    assert backoff_delay(0, 0.5, 5.0, lambda: 0.999) == pytest.approx(0.4995)
    assert backoff_delay(1, 0.5, 5.0, lambda: 0.5) == 0.5
    assert backoff_delay(3, 0.5, 5.0, lambda: 0.5) == 2.0
    assert backoff_delay(40, 0.5, 5.0, lambda: 0.999) == pytest.approx(4.995)
    assert all(backoff_delay(a, 0.5, 5.0) < 5.0 for a in range(60))


def test_book_chain_v1_and_v2() -> None:
    b = BookState(A, 2)
    b.snapshot(book(10, [[100, 1], [99, 2]], [[101, 1]], True))
    assert b.update(book(11, [[100, 0], [98, 3]], [[101, 2]]))
    v = b.view()
    assert (v.seq, v.bids, v.asks, v.best_bid, v.best_ask) == (11, [(99, 2), (98, 3)], [(101, 2)], (99, 2), (101, 2))
    assert not b.update(book(13, [[97, 1]], [])), "v1: seq 12 missing"
    assert b.seq == 11
    assert b.update(book(15, [[97, 1]], [], prev_seq=11)), "v2: a merged update"
    assert not b.update(book(16, [], [], prev_seq=14))
    assert len(b.view(1).bids) == 1


class FakeEngine:
    """A scripted server: records each connection's commands; the test sends and drops."""

    def __init__(self, subprotocol: Optional[str] = None) -> None:
        self.subprotocol = subprotocol
        self.conns: List[ServerConnection] = []
        self.commands: List[List[Dict[str, Any]]] = []
        self.paths: List[str] = []

    async def __aenter__(self) -> "FakeEngine":
        def select(conn: ServerConnection, offered: Any) -> Optional[str]:
            return self.subprotocol if self.subprotocol in offered else None

        self.server = await serve(self._handler, "127.0.0.1", 0, select_subprotocol=select, compression=None)
        self.url = f"ws://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/ws"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _handler(self, conn: ServerConnection) -> None:
        self.conns.append(conn)
        self.paths.append(conn.request.path)
        cmds: List[Dict[str, Any]] = []
        self.commands.append(cmds)
        try:
            async for raw in conn:
                cmds.append(json.loads(raw))
        except Exception:
            pass

    async def send(self, msg: Dict[str, Any], conn: int = -1) -> None:
        await self.conns[conn].send(json.dumps(msg))

    def take(self, conn: int = -1) -> List[Dict[str, Any]]:
        cmds = self.commands[conn]
        out = [{k: v for k, v in c.items() if k != "id"} for c in cmds if c.get("op") != "ping"]
        cmds.clear()
        return out

    def drop(self, conn: int = -1) -> None:
        self.conns[conn].transport.abort()


async def until(pred, timeout: float = 3.0) -> None:
    end = asyncio.get_running_loop().time() + timeout
    while not pred():
        assert asyncio.get_running_loop().time() < end, "timed out"
        await asyncio.sleep(0.005)


async def drain(sub, n: int, timeout: float = 3.0) -> list:
    out = []
    for _ in range(n):
        out.append(await asyncio.wait_for(sub.__anext__(), timeout))
    return out


def test_states_v1_resubscribe_book_resync_and_reconnect_gap() -> None:
    async def main() -> None:
        async with FakeEngine() as eng:
            async with Client(eng.url, heartbeat=5, backoff_initial=0.02) as c:
                sub = await c.subscribe(symbols=[A], channels=["trades", "book"], depth=2)
                await c.wait_state("open", 3)
                assert c.state == State.OPEN and c.state == "open" and c.version == 1
                await until(lambda: eng.commands and eng.commands[0])
                assert eng.take() == [{"op": "subscribe", "channels": ["trades", "book"], "symbols": [A], "depth": 2}]
                await eng.send(book(3, [[1, 1]], []))  # before any snapshot: dropped
                await eng.send(book(5, [[1, 1]], [[2, 1]], True))
                await eng.send(book(6, [[1, 2]], []))
                await eng.send(book(8, [[1, 3]], []))  # 7 missing: this book alone again
                await eng.send(book(9, [[1, 5]], [[2, 1]], True))
                await eng.send(trade(1))
                await eng.send(trade(2))
                evs = await drain(sub, 7)
                assert [(e.type, getattr(e, "seq", None)) for e in evs] == [
                    ("state", None), ("book", 5), ("book", 6), ("resync", 8), ("book", 9), ("trade", 1), ("trade", 2),
                ]
                assert evs[0].state == "open"
                await until(lambda: eng.commands[0])
                assert eng.take() == [{"op": "subscribe", "channels": ["book"], "symbols": [A], "depth": 2}]
                b = sub.book(A)
                assert (b.seq, b.bids, b.resyncs, b.ready) == (9, [(1, 5)], 1, True)

                eng.drop()
                evs = await drain(sub, 2)
                assert [e.state for e in evs] == ["reconnecting", "open"]
                await until(lambda: len(eng.commands) == 2 and eng.commands[1])
                assert eng.take() == [{"op": "subscribe", "channels": ["trades", "book"], "symbols": [A], "depth": 2}]
                assert sub.book(A).ready is False
                await eng.send(trade(7))  # v1: the outage's trades reach the app as a gap
                evs = await drain(sub, 2)
                assert [(e.type, vars(e)) for e in evs][0] == (
                    "gap", {"type": "gap", "symbol": A, "channel": "trades", "from_seq": 3, "to_seq": 6, "reason": "reconnect"},
                )
                assert evs[1].seq == 7 and evs[1].price == 1.5
            assert c.state == "closed"
            assert [t for t in asyncio.all_tasks() if t.get_name().startswith("tickwire")] == []

    asyncio.run(main())


def test_v1_restart_is_a_reset_and_duplicates_are_dropped() -> None:
    async def main() -> None:
        async with FakeEngine() as eng:
            async with Client(eng.url, backoff_initial=0.02) as c:
                sub = await c.subscribe(symbols=[A], channels=["trades"])
                await c.wait_state("open", 3)
                for s in (40, 41, 41):
                    await eng.send(trade(s))
                eng.drop()
                await c.wait_state("reconnecting", 3)
                await c.wait_state("open", 3)
                await eng.send(trade(3))
                evs = [e for e in await drain(sub, 7) if e.type != "state"]
                assert [(e.type, getattr(e, "seq", getattr(e, "last_seq", None))) for e in evs] == [
                    ("trade", 40), ("trade", 41), ("reset", 41), ("trade", 3),
                ]

    asyncio.run(main())


def test_v2_epoch_since_recovered_false() -> None:
    async def main() -> None:
        async with FakeEngine(subprotocol="tickwire.v2") as eng:
            async with Client(eng.url, backoff_initial=0.02) as c:
                sub = await c.subscribe(symbols=[A], channels=["trades"])
                await c.wait_state("open", 3)
                assert c.version == 2
                await eng.send({"type": "subscribed", "id": 1, "channels": ["trades"], "symbols": [A], "epoch": "e1"})
                await eng.send(trade(10))
                await drain(sub, 2)
                await until(lambda: eng.commands[0])
                eng.take()
                eng.drop()
                await c.wait_state("reconnecting", 3)
                await c.wait_state("open", 3)
                await until(lambda: len(eng.commands) == 2 and eng.commands[1])
                assert eng.take() == [{"op": "subscribe", "channels": ["trades"], "symbols": [A], "epoch": "e1", "since": {A: 10}}]
                await eng.send({"type": "subscribed", "id": 2, "channels": ["trades"], "symbols": [A], "epoch": "e1", "recovered": {A: True}})
                await eng.send(trade(10))  # an overlap: never twice
                await eng.send(trade(11))
                evs = [e for e in await drain(sub, 3) if e.type != "state"]
                assert [e.seq for e in evs] == [11]
                eng.drop()
                await c.wait_state("reconnecting", 3)
                await c.wait_state("open", 3)
                await eng.send({"type": "subscribed", "id": 3, "channels": ["trades"], "symbols": [A], "epoch": "e2", "recovered": {A: False}})
                await eng.send(trade(1))
                evs = [e for e in await drain(sub, 4) if e.type != "state"]
                assert [(e.type, getattr(e, "epoch", None)) for e in evs] == [("reset", "e2"), ("trade", None)]
                assert c.epoch == "e2"

    asyncio.run(main())


def test_heartbeat_pings_and_dead_link() -> None:
    async def main() -> None:
        async with FakeEngine() as eng:
            async with Client(eng.url, heartbeat=0.05, backoff_initial=5) as c:
                await c.wait_state("open", 3)
                t0 = asyncio.get_running_loop().time()
                await c.wait_state("reconnecting", 1)  # the fake never answers the pings
                took = asyncio.get_running_loop().time() - t0
                assert 0.14 <= took < 1.0, took
                assert any(cmd.get("op") == "ping" for cmd in eng.commands[0])

    asyncio.run(main())


def test_token_callback_each_connect_urls_rotate_binary_refused() -> None:
    with pytest.raises(NotImplementedError, match="binary.*not supported yet"):
        Client("ws://127.0.0.1:1/ws", protocol="binary")

    async def main() -> None:
        async with FakeEngine() as e1, FakeEngine() as e2:
            n = 0

            async def token() -> str:
                nonlocal n
                n += 1
                return f"t{n}"

            async with Client(urls=[e1.url, e2.url], token=token, backoff_initial=0.01) as c:
                await c.wait_state("open", 3)
                assert await asyncio.wait_for(asyncio.shield(_symbols(c, e1)), 3) == [A]
                e1.drop()
                await c.wait_state("reconnecting", 3)
                await c.wait_state("open", 3)
                assert e1.paths == ["/ws?token=t1"] and e2.paths == ["/ws?token=t2"]

    asyncio.run(main())


async def _symbols(c: Client, eng: FakeEngine) -> list:
    task = asyncio.create_task(c.symbols())
    await until(lambda: any(x.get("op") == "symbols" for x in eng.commands[-1]))
    cmd = next(x for x in eng.commands[-1] if x.get("op") == "symbols")
    await eng.send({"type": "symbols", "id": cmd["id"], "symbols": [A]})
    return await task


def test_gaps_naming_held_seqs_are_trimmed() -> None:
    async def main() -> None:
        async with FakeEngine() as eng:
            async with Client(eng.url) as c:
                sub = await c.subscribe(symbols=[A], channels=["trades"])
                await c.wait_state("open", 3)

                def gap(a: int, b: int) -> Dict[str, Any]:
                    return {"type": "gap", "symbol": A, "channel": "trades", "from_seq": a, "to_seq": b, "reason": "feed_gap"}

                for msg in [trade(1), trade(2), trade(3), gap(2, 3), gap(1, 10), trade(11)]:
                    await eng.send(msg)
                evs = [e for e in await drain(sub, 6) if e.type != "state"]
                assert [(e.type, getattr(e, "seq", None) or (e.from_seq, e.to_seq)) for e in evs] == [
                    ("trade", 1), ("trade", 2), ("trade", 3), ("gap", (4, 10)), ("trade", 11),
                ]

    asyncio.run(main())
