"""Test helpers: the package from this tree, the real tickwire binary on a free loopback
port, and a TCP relay that can freeze or cut the link."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import List, Optional, Set

# Test this tree's package, not an installed copy.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
BINARY = Path(
    os.environ.get("TICKWIRE_BIN")
    or Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target") / "debug" / "tickwire"
)
# Integration tests run when the binary exists; TICKWIRE_BIN set but missing is a failure.
needs_binary = pytest.mark.skipif(
    not BINARY.exists() and not os.environ.get("TICKWIRE_BIN"),
    reason="no tickwire binary (cargo build -p tickwire, or set TICKWIRE_BIN)",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


class Engine:
    """`tickwire serve` with the simulator on 127.0.0.1:port."""

    def __init__(self, port: int, sim_rate: int = 2000) -> None:
        self.port = port
        self.sim_rate = sim_rate
        self.proc: Optional[subprocess.Popen] = None

    async def start(self) -> None:
        end = time.monotonic() + 30
        while time.monotonic() < end:
            self.proc = subprocess.Popen(
                [str(BINARY), "serve", "--listen", f"127.0.0.1:{self.port}", "--no-pin", "--sim-rate", str(self.sim_rate)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            while self.proc.poll() is None and time.monotonic() < end:
                if await asyncio.to_thread(_healthy, self.port):
                    return
                await asyncio.sleep(0.05)
            if self.proc.poll() is None:
                break
            await asyncio.sleep(0.2)  # the port may not be free yet after a kill
        raise RuntimeError(f"tickwire did not become healthy on port {self.port}")

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            await asyncio.to_thread(self.proc.wait, 5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            await asyncio.to_thread(self.proc.wait)


class _Link:
    def __init__(self, down: asyncio.StreamWriter, up: asyncio.StreamWriter) -> None:
        self.down = down
        self.up = up
        self.frozen = False

    def abort(self) -> None:
        self.down.transport.abort()
        self.up.transport.abort()


class Relay:
    """A TCP relay to `target`: `freeze()` stops forwarding on the links open now (both
    ways, nothing closed; new links pass); `cut(s)` resets them and refuses for `s`."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.links: Set[_Link] = set()
        self.refuse_until = 0.0
        self.server: Optional[asyncio.base_events.Server] = None
        self.port = 0
        self.tasks: List[asyncio.Task] = []

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _accept(self, r1: asyncio.StreamReader, w1: asyncio.StreamWriter) -> None:
        if time.monotonic() < self.refuse_until:
            w1.transport.abort()
            return
        r2, w2 = await asyncio.open_connection("127.0.0.1", self.target)
        link = _Link(w1, w2)
        self.links.add(link)

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while True:
                    data = await r.read(65536)
                    if not data:
                        break
                    if link.frozen:
                        await asyncio.sleep(3600)  # held: nothing moves, nothing closes
                    w.write(data)
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                if not link.frozen:
                    link.abort()
                    self.links.discard(link)

        self.tasks += [asyncio.create_task(pipe(r1, w2)), asyncio.create_task(pipe(r2, w1))]

    def freeze(self) -> None:
        for link in self.links:
            link.frozen = True
            link.down.transport.pause_reading()
            link.up.transport.pause_reading()

    def cut(self, seconds: float) -> None:
        self.refuse_until = time.monotonic() + seconds
        for link in list(self.links):
            link.abort()

    async def close(self) -> None:
        for link in list(self.links):
            link.abort()
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


def check_trade_continuity(events) -> None:
    """Every trade seq of one symbol accounted for once: the next trade, or a gap naming
    exactly the skipped range (a reset starts the count afresh)."""
    nxt = None
    for e in events:
        if e.type == "reset":
            nxt = None
        elif e.type == "trade":
            assert nxt is None or e.seq == nxt, f"trade seq {e.seq}, expected {nxt}"
            nxt = e.seq + 1
        elif e.type == "gap":
            assert nxt is None or e.from_seq == nxt, f"gap from {e.from_seq}, expected {nxt}"
            nxt = e.to_seq + 1


def nats_server_bin() -> Optional[str]:
    """Debian's nats-server, or None (scripts/test.sh installs it)."""
    import shutil

    return shutil.which("nats-server") or next(
        (p for p in ("/usr/sbin/nats-server", "/usr/bin/nats-server") if Path(p).exists()), None
    )


class Cluster:
    """A cluster on loopback (docs/cluster.md): nats-server with JetStream in a temporary
    store, one feed node running the simulator, and edge nodes, all with the same feed
    settings (edges require it)."""

    def __init__(self, edges: int = 2) -> None:
        self.n_edges = edges
        self.procs: List[subprocess.Popen] = []
        self.edges: List[int] = []
        self.edge_procs: List[subprocess.Popen] = []

    async def start(self) -> None:
        import tempfile

        self.store = tempfile.TemporaryDirectory(prefix="tickwire-nats-")
        nats = free_port()
        self.procs.append(
            subprocess.Popen(
                [str(nats_server_bin()), "-js", "-a", "127.0.0.1", "-p", str(nats), "-sd", self.store.name],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        end = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", nats), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < end, "nats-server listens"
                await asyncio.sleep(0.02)

        async def node(role: str) -> tuple:
            port = free_port()
            p = subprocess.Popen(
                [str(BINARY), "serve", "--listen", f"127.0.0.1:{port}", "--no-pin", "--workers", "1",
                 "--nats", f"nats://127.0.0.1:{nats}", "--feed", "sim", "--sim-symbols", "2", "--sim-seed", "7",
                 "--role", role],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self.procs.append(p)
            end = time.monotonic() + 30
            while not await asyncio.to_thread(_healthy, port):
                assert time.monotonic() < end, f"{role} node healthy"
                await asyncio.sleep(0.05)
            return port, p

        await node("feed")
        for _ in range(self.n_edges):
            port, p = await node("edge")
            self.edges.append(port)
            self.edge_procs.append(p)

    async def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    await asyncio.to_thread(p.wait, 5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    await asyncio.to_thread(p.wait)
        self.store.cleanup()
