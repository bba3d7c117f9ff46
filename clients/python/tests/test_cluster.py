"""Edge failover: two edges on NATS (docs/cluster.md), the client given both URLs; edge 1
is killed and the client moves to edge 2 by itself."""

from __future__ import annotations

import asyncio
import time

import pytest

from conftest import Cluster, check_trade_continuity, nats_server_bin, needs_binary
from tickwire_client import Client

BTC = "sim:BTC-USD"


@needs_binary
@pytest.mark.skipif(nats_server_bin() is None, reason="no nats-server (scripts/test.sh installs it)")
def test_edge_failover() -> None:
    async def main() -> None:
        cluster = Cluster(2)
        await cluster.start()
        try:
            urls = [f"ws://127.0.0.1:{p}/ws" for p in cluster.edges]
            async with Client(urls=urls, heartbeat=1.0) as c:
                sub = await c.subscribe(symbols=[BTC], channels=["trades", "book"], depth=10)
                events: list = []

                async def read() -> None:
                    async for e in sub:
                        events.append(e)

                reader = asyncio.create_task(read())

                async def until(pred, timeout: float, what: str) -> None:
                    end = time.monotonic() + timeout
                    while not pred():
                        assert time.monotonic() < end, f"timed out: {what}"
                        await asyncio.sleep(0.01)

                def trades(since: int = 0) -> int:
                    return sum(1 for e in events[since:] if e.type == "trade")

                await until(lambda: trades() >= 10, 30, "trades from edge 1")
                before = len(events)
                cluster.edge_procs[0].kill()
                await until(lambda: c.state == "reconnecting", 3, "reconnecting")
                await c.wait_state("open", 10)
                await until(lambda: trades(before) >= 10, 30, "trades from edge 2")
                await until(lambda: sub.book(BTC).ready, 5, "the book from edge 2")
                flow = [e for e in events if e.type in ("trade", "gap", "reset")]
                # The edges share the seqs: nothing restarts, no trade twice, every skipped
                # seq named by a gap.
                check_trade_continuity(flow)
                # TODO(#24, cluster part): the contract puts the epoch in the bus, shared by
                # every edge, so that edge 2 honours `since` and nothing restarts. Today each
                # edge names its own epoch: edge 2's differs, and the library tells the app
                # that trades start afresh (one reset, reason "epoch"). When the epoch lives
                # in the bus, assert instead: no reset and no gap at all.
                resets = [e for e in events[before:] if e.type == "reset"]
                assert len(resets) == 1 and resets[0].reason == "epoch", [vars(r) for r in resets]
                reader.cancel()
        finally:
            await cluster.stop()

    asyncio.run(main())
