"""The asyncio client: one connection task, reconnects, heartbeat, subscriptions.

Contract (the same behaviour as clients/js; the protocol is shared/protocol.md):

- One task (``Client._run``) owns the WebSocket: it connects, resubscribes, reads and
  reconnects. One more task, the heartbeat, lives while a connection is open. ``close()``
  cancels both and waits for them: nothing is left running.
- It offers the subprotocol ``tickwire.v2``; a server that answers none speaks version 1
  (books resynced by snapshot, no trade recovery: after a reconnect a jump in trade seqs
  reaches the app as a ``gap`` with reason ``reconnect``).
- States: connecting -> open -> reconnecting -> open ... -> closed; ``reconnecting`` as
  soon as the link is lost (a read error or heartbeat silence), not after a close
  handshake.
- Backpressure: each subscription has a bounded queue of events. When the app does not
  read and the queue is full, the reader waits, the socket's buffers fill, and the engine
  treats this client as slow (conflated books and tickers, trade ``gap``s): exactly what
  the protocol promises a slow reader. While the reader waits on the app, the heartbeat
  does not count the silence against the link.
- Books: one per symbol per client, updated as messages arrive (so ``sub.book()`` may be
  ahead of the event the app is handling), checked by ``prev_seq`` (v2) or contiguous
  seqs (v1); a broken chain resubscribes that book alone. Every snapshot at the book's
  depth is the engine's state at its seq, so no reply tracking is needed.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import json
import random as _random
import types
import urllib.parse
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, List, Optional, Sequence, Set, Union

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from ._book import Book, BookState, backoff_delay

SUBPROTOCOL_JSON = "tickwire.v2"
"""The subprotocol of version 2 with JSON messages."""
SUBPROTOCOL_BINARY = "tickwire.v2.bin"
"""The subprotocol of version 2 with the binary encoding (not yet spoken by the engine)."""

TokenSource = Union[None, str, Callable[[], Union[str, Awaitable[str]]]]


class State(str, enum.Enum):
    """The connection's state; equal to its string (``State.OPEN == "open"``)."""

    CONNECTING = "connecting"
    OPEN = "open"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"

    def __str__(self) -> str:
        return self.value


class Event(types.SimpleNamespace):
    """One event: ``.type`` and the message's fields as attributes (``.symbol``, ``.seq``...).

    Types: ``trade``, ``ticker``, ``book``, ``gap`` (from the engine, or the client's own
    with reason ``reconnect``/``missing``), ``reset`` (trade seqs start afresh: an engine
    restart or a new epoch), ``resync`` (a broken book chain), ``state`` (``.state``) and
    ``error`` (``.code``, ``.message``).
    """

    type: str


class _Closed(Exception):
    pass


class Subscription:
    """What ``Client.subscribe`` returns: an async iterator of events, and the books."""

    def __init__(
        self,
        client: "Client",
        symbols: Sequence[str],
        channels: Sequence[str],
        depth: Optional[int],
        throttle_ms: Optional[int],
        queue_size: int,
    ) -> None:
        if isinstance(symbols, str) or not symbols:
            raise TypeError("subscribe: symbols must be a non-empty list of strings")
        if isinstance(channels, str) or not channels:
            raise TypeError("subscribe: channels must be a non-empty list")
        for ch in channels:
            if ch not in ("ticker", "trades", "book"):
                raise ValueError(f"subscribe: unknown channel {ch!r} (ticker, trades or book)")
        self.symbols: List[str] = list(dict.fromkeys(symbols))
        self.channels: List[str] = list(dict.fromkeys(channels))
        self.depth = depth
        self.throttle_ms = throttle_ms
        self.closed = False
        self._client = client
        self._queue: "asyncio.Queue[Optional[Event]]" = asyncio.Queue(maxsize=queue_size)

    def holds(self, symbol: str, channel: str) -> bool:
        """Whether this subscription gets ``channel`` events of ``symbol``."""
        return not self.closed and channel in self.channels and symbol in self.symbols

    def book(self, symbol: str, depth: Optional[int] = None) -> Optional[Book]:
        """The book of ``symbol`` (the latest state received), or None if not held here."""
        if "book" not in self.channels or symbol not in self.symbols:
            return None
        b = self._client._books.get(symbol)
        if b is None:
            return None
        return b.view(depth if depth is not None else (self.depth if self.depth is not None else b.depth))

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        event = await self._queue.get()
        if event is None:
            # Closed. The sentinel goes back, so that a second `async for` ends too.
            if not self._queue.full():
                self._queue.put_nowait(None)
            raise StopAsyncIteration
        return event

    async def close(self) -> None:
        """Stops this subscription; pairs no other subscription holds are unsubscribed."""
        if self.closed:
            return
        self.closed = True
        await self._client._unsubscribe(self)
        self._end()

    def _end(self) -> None:
        # Make room for the sentinel: a closed subscription's unread events do not matter.
        while self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(None)


class Client:
    """A tickwire client: one connection (reconnected as needed), any number of subscriptions.

    Use it as ``async with Client(url) as c:``; ``heartbeat`` is in seconds (an
    application ``ping`` that often; no message for three times it: the link is dead).
    ``token`` is a string or a callable (sync or async) asked again on every connect and
    sent as the ``token`` query parameter. ``urls`` are failed over between, one attempt
    each in turn. ``protocol="binary"`` raises until the engine speaks ``tickwire.v2.bin``.
    """

    def __init__(
        self,
        url: Optional[str] = None,
        *,
        urls: Optional[Sequence[str]] = None,
        token: TokenSource = None,
        heartbeat: float = 5.0,
        protocol: str = "json",
        connect_timeout: float = 10.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 5.0,
        backoff_reset_after: float = 5.0,
        queue_size: int = 10000,
        random: Callable[[], float] = _random.random,
    ) -> None:
        if protocol == "binary":
            raise NotImplementedError(
                'protocol "binary" (tickwire.v2.bin) is not supported yet: the engine does not speak it; use "json"'
            )
        if protocol != "json":
            raise ValueError(f'unknown protocol {protocol!r} ("json" or "binary")')
        self._urls: List[str] = list(urls) if urls else ([url] if url else [])
        if not self._urls:
            raise ValueError("Client: give a url or a non-empty urls")
        self._token = token
        self.heartbeat = heartbeat
        self._connect_timeout = connect_timeout
        self._backoff = (backoff_initial, backoff_max, backoff_reset_after)
        self._queue_size = queue_size
        self._random = random
        self._state = State.CONNECTING
        self._state_changed = asyncio.Event()
        self._ws: Optional[ClientConnection] = None
        self._version = 0
        self._epoch: Optional[str] = None
        self._next_id = 1
        self._subs: List[Subscription] = []
        self._books: Dict[str, BookState] = {}
        self._book_options: Dict[str, Dict[str, int]] = {}
        self._last_trade: Dict[str, int] = {}
        self._fresh: Set[str] = set()
        self._pending: Dict[int, "asyncio.Future[Dict[str, Any]]"] = {}
        self._pending_cmds: Dict[int, Dict[str, Any]] = {}
        self._last_rx = 0.0
        self._waiting_on_app = False
        self._task: Optional[asyncio.Task[None]] = None

    # ---- public ---------------------------------------------------------------------------

    @property
    def state(self) -> State:
        """The current state (a ``str`` enum: compare with ``"open"``)."""
        return self._state

    @property
    def version(self) -> int:
        """2 or 1 while open (1: the server answered no subprotocol), else 0."""
        return self._version if self._state == State.OPEN else 0

    @property
    def epoch(self) -> Optional[str]:
        """The epoch of the trade seqs held (version 2), or None."""
        return self._epoch

    async def __aenter__(self) -> "Client":
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def start(self) -> None:
        """Starts connecting (``async with`` does it)."""
        if self._task is None and self._state != State.CLOSED:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="tickwire-client")

    async def subscribe(
        self,
        symbols: Sequence[str],
        channels: Sequence[str],
        depth: Optional[int] = None,
        throttle_ms: Optional[int] = None,
    ) -> Subscription:
        """Subscribes; returns at once (sent now, or on the next connection)."""
        if self._state == State.CLOSED:
            raise RuntimeError("subscribe on a closed Client")
        sub = Subscription(self, symbols, channels, depth, throttle_ms, self._queue_size)
        self._subs.append(sub)
        if "book" in sub.channels:
            d = depth if depth is not None else 10
            for s in sub.symbols:
                b = self._books.get(s)
                if b is None:
                    self._books[s] = BookState(s, d)
                elif b.depth != d:
                    b.depth = d  # another depth: only a snapshot at it may fill the book
                    b.ready = False
                opts = {"depth": d}
                if throttle_ms is not None:
                    opts["throttle_ms"] = throttle_ms
                self._book_options[s] = opts
        if self._state == State.OPEN:
            await self._send_subscribe(sub, resume=False)
        return sub

    async def symbols(self) -> List[str]:
        """The engine's symbols; waits for the link when it is down."""
        reply = await self._request({"op": "symbols"})
        return list(reply.get("symbols", []))

    async def wait_state(self, state: Union[State, str], timeout: Optional[float] = None) -> None:
        """Waits until the state is ``state`` (tests, examples)."""

        async def wait() -> None:
            while self._state != state:
                self._state_changed.clear()
                await self._state_changed.wait()

        await asyncio.wait_for(wait(), timeout)

    async def close(self) -> None:
        """Ends the connection and every task; the state becomes ``closed``."""
        if self._state == State.CLOSED:
            return
        self._set_state(State.CLOSED)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        ws, self._ws = self._ws, None
        if ws is not None:
            ws.transport.abort()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(RuntimeError("Client closed"))
        self._pending.clear()
        for sub in self._subs:
            sub._end()

    # ---- connection -----------------------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        index = 0
        offer_v2 = True
        loop = asyncio.get_running_loop()
        while self._state != State.CLOSED:
            url = self._urls[index % len(self._urls)]
            opened_at = None
            try:
                token = self._token() if callable(self._token) else self._token
                if inspect.isawaitable(token):
                    token = await token  # asked on every attempt, so that it can be refreshed
                ws = await self._open(url, token, offer_v2)
                opened_at = loop.time()
                await self._serve(ws)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - every failure of a link means: reconnect
                if opened_at is None:
                    self._emit_all(Event(type="error", code="connect", message=f"{url}: {e}"))
            finally:
                ws, self._ws = self._ws, None
                if ws is not None:
                    ws.transport.abort()  # no close handshake on a link judged dead
            if self._state == State.CLOSED:
                return
            self._version = 0
            if self._state == State.OPEN:
                self._set_state(State.RECONNECTING)
            if opened_at is None and offer_v2:
                # Browsers fail a handshake whose offered subprotocol gets no answer; this
                # library does not, but retries the same way for the same behaviour.
                offer_v2 = False
                continue
            offer_v2 = True
            if opened_at is not None and loop.time() - opened_at >= self._backoff[2]:
                attempt = 0
            delay = backoff_delay(attempt, self._backoff[0], self._backoff[1], self._random)
            attempt += 1
            index += 1  # fail over: the next of urls (the same one when there is one)
            await asyncio.sleep(delay)

    async def _open(self, url: str, token: Optional[str], offer_v2: bool) -> ClientConnection:
        if token:
            url = f"{url}{'&' if '?' in url else '?'}token={urllib.parse.quote(token, safe='')}"
        kwargs: Dict[str, Any] = dict(
            subprotocols=[SUBPROTOCOL_JSON] if offer_v2 else None,
            open_timeout=self._connect_timeout,
            ping_interval=None,  # the application heartbeat below does it, as in browsers
            compression=None,
            max_size=16 * 1024 * 1024,
            close_timeout=1,
        )
        if "proxy" in inspect.signature(connect.__init__).parameters:
            kwargs["proxy"] = None  # loopback and edges are dialled directly
        ws = await connect(url, **kwargs)
        self._ws = ws
        return ws

    async def _serve(self, ws: ClientConnection) -> None:
        loop = asyncio.get_running_loop()
        self._version = 2 if ws.subprotocol == SUBPROTOCOL_JSON else 1
        self._last_rx = loop.time()
        for b in self._books.values():
            b.ready = False  # stale until its snapshot on this connection
        self._fresh = set(self._last_trade)
        resume = self._version == 2 and self._epoch is not None
        for sub in list(self._subs):
            await self._send_subscribe(sub, resume)
        for id_, cmd in list(self._pending_cmds.items()):
            await self._send({**cmd, "id": id_})
        self._set_state(State.OPEN)
        heartbeat = loop.create_task(self._heartbeat(ws), name="tickwire-heartbeat")
        try:
            async for raw in ws:
                self._last_rx = loop.time()
                try:
                    m = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(m, dict):
                    await self._handle(m)
                    self._last_rx = loop.time()
        finally:
            heartbeat.cancel()
            try:
                await heartbeat
            except asyncio.CancelledError:
                pass

    async def _heartbeat(self, ws: ClientConnection) -> None:
        loop = asyncio.get_running_loop()
        tick = max(0.01, min(1.0, self.heartbeat / 4))
        last_ping = loop.time()
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            if self._waiting_on_app:
                self._last_rx = now  # we are not reading: the silence is ours, not the link's
                continue
            if now - self._last_rx >= 3 * self.heartbeat:
                # Dead: report it now, and abort the link (the read loop then ends).
                self._set_state(State.RECONNECTING)
                ws.transport.abort()
                return
            if now - last_ping >= self.heartbeat:
                last_ping = now
                try:
                    await asyncio.wait_for(self._send({"op": "ping"}), self.heartbeat)
                except (asyncio.TimeoutError, WebSocketException, OSError):
                    pass

    def _set_state(self, state: State) -> None:
        if self._state == state:
            return
        self._state = state
        self._state_changed.set()
        if state != State.CLOSED:
            self._emit_all(Event(type="state", state=state))

    async def _send(self, cmd: Dict[str, Any]) -> int:
        ws = self._ws
        if ws is None:
            return 0
        if "id" not in cmd:
            cmd = {**cmd, "id": self._next_id}
            self._next_id += 1
        await ws.send(json.dumps(cmd, separators=(",", ":")))
        return int(cmd["id"])

    async def _request(self, cmd: Dict[str, Any]) -> Dict[str, Any]:
        if self._state == State.CLOSED:
            raise RuntimeError("Client closed")
        id_ = self._next_id
        self._next_id += 1
        fut: "asyncio.Future[Dict[str, Any]]" = asyncio.get_running_loop().create_future()
        self._pending[id_] = fut
        self._pending_cmds[id_] = cmd
        try:
            if self._state == State.OPEN:
                await self._send({**cmd, "id": id_})
            return await fut
        finally:
            self._pending.pop(id_, None)
            self._pending_cmds.pop(id_, None)

    async def _send_subscribe(self, sub: Subscription, resume: bool) -> None:
        cmd: Dict[str, Any] = {"op": "subscribe", "channels": sub.channels, "symbols": sub.symbols}
        if "book" in sub.channels and sub.depth is not None:
            cmd["depth"] = sub.depth
        if sub.throttle_ms is not None:
            cmd["throttle_ms"] = sub.throttle_ms
        if resume and "trades" in sub.channels:
            # Version 2 recovery: the trades after the last seq held, in the same epoch.
            since = {s: self._last_trade[s] for s in sub.symbols if s in self._last_trade}
            if since:
                cmd["epoch"] = self._epoch
                cmd["since"] = since
        await self._send(cmd)

    async def _unsubscribe(self, sub: Subscription) -> None:
        self._subs = [s for s in self._subs if s is not sub]
        drop: Dict[str, List[str]] = {}
        for ch in sub.channels:
            for s in sub.symbols:
                if any(o.holds(s, ch) for o in self._subs):
                    continue
                drop.setdefault(ch, []).append(s)
                if ch == "book":
                    self._books.pop(s, None)
                    self._book_options.pop(s, None)
                if ch == "trades":
                    self._last_trade.pop(s, None)
                    self._fresh.discard(s)
        by_symbols: Dict[tuple, List[str]] = {}
        for ch, syms in drop.items():
            by_symbols.setdefault(tuple(syms), []).append(ch)
        for syms, chans in by_symbols.items():
            try:
                await self._send({"op": "unsubscribe", "channels": chans, "symbols": list(syms)})
            except (WebSocketException, OSError):
                pass  # the link is down: the next connection does not subscribe it anyway

    # ---- messages -------------------------------------------------------------------------

    async def _deliver(self, symbol: str, channel: str, event: Event) -> None:
        for sub in self._subs:
            if sub.holds(symbol, channel):
                await self._put(sub, event)

    async def _put(self, sub: Subscription, event: Event) -> None:
        if sub._queue.full():
            self._waiting_on_app = True
            try:
                await sub._queue.put(event)
            finally:
                self._waiting_on_app = False
        else:
            sub._queue.put_nowait(event)

    def _emit_all(self, event: Event) -> None:
        # State changes and errors go to every subscription, dropped where the app is
        # behind: they are rare, and the state is always readable as Client.state.
        for sub in self._subs:
            if not sub._queue.full():
                sub._queue.put_nowait(event)

    async def _handle(self, m: Dict[str, Any]) -> None:
        t = m.get("type")
        if t == "trade":
            await self._on_trade(m)
        elif t == "ticker":
            await self._deliver(m["symbol"], "ticker", Event(**m))
        elif t == "book":
            await self._on_book(m)
        elif t == "gap":
            await self._on_gap(m)
        elif t == "subscribed":
            await self._on_subscribed(m)
        elif t == "symbols":
            fut = self._pending.get(m.get("id"))  # type: ignore[arg-type]
            if fut is not None and not fut.done():
                fut.set_result(m)
        elif t == "error":
            fut = self._pending.get(m.get("id"))  # type: ignore[arg-type]
            if fut is not None and not fut.done():
                fut.set_exception(RuntimeError(f"{m.get('code')}: {m.get('message')}"))
            self._emit_all(Event(**m))
        # pong, unsubscribed and types a later version adds: ignored

    async def _on_subscribed(self, m: Dict[str, Any]) -> None:
        epoch = m.get("epoch")
        recovered = m.get("recovered")
        if isinstance(epoch, str):
            if self._epoch is not None and epoch != self._epoch and not recovered:
                for s in m.get("symbols", []):
                    await self._reset(s, "epoch", epoch)
            self._epoch = epoch
        if isinstance(recovered, dict):
            for s, ok in recovered.items():
                if ok:
                    self._fresh.discard(s)  # the replay continues our seqs
                else:
                    await self._reset(s, "epoch", epoch if isinstance(epoch, str) else None)

    async def _reset(self, symbol: str, reason: str, epoch: Optional[str]) -> None:
        if symbol not in self._last_trade:
            return
        last = self._last_trade.pop(symbol)
        self._fresh.discard(symbol)
        await self._deliver(
            symbol,
            "trades",
            Event(type="reset", symbol=symbol, channel="trades", reason=reason, epoch=epoch, last_seq=last),
        )

    async def _on_trade(self, m: Dict[str, Any]) -> None:
        s = m["symbol"]
        seq = m["seq"]
        last = self._last_trade.get(s)
        if last is not None:
            if s in self._fresh:
                self._fresh.discard(s)
                if seq <= last:
                    # Version 1 has no epoch: seqs that went back mean the engine restarted.
                    await self._reset(s, "restart", None)
                elif seq > last + 1:
                    await self._gap(s, last + 1, seq - 1, "reconnect")
            elif seq <= last:
                return  # a duplicate (a replay overlapping what we hold): never twice
            elif seq > last + 1:
                await self._gap(s, last + 1, seq - 1, "missing")
        else:
            self._fresh.discard(s)
        self._last_trade[s] = seq
        await self._deliver(s, "trades", Event(**m))

    async def _on_gap(self, m: Dict[str, Any]) -> None:
        s = m["symbol"]
        if m.get("channel") == "trades":
            last = self._last_trade.get(s)
            fresh = s in self._fresh
            self._fresh.discard(s)
            if last is not None:
                # A gap may name seqs the app already holds (a fresh cluster edge reports
                # what it never had, from seq 1): only the seqs after the last held are.
                if m["to_seq"] <= last:
                    return
                if m["from_seq"] <= last:
                    m = {**m, "from_seq": last + 1}
                elif m["from_seq"] > last + 1:
                    # Seqs between what we hold and the engine's gap (after a reconnect).
                    await self._gap(s, last + 1, m["from_seq"] - 1, "reconnect" if fresh else "missing")
            self._last_trade[s] = m["to_seq"]
        await self._deliver(s, m.get("channel", ""), Event(**m))

    async def _gap(self, symbol: str, first: int, last: int, reason: str) -> None:
        event = Event(type="gap", symbol=symbol, channel="trades", from_seq=first, to_seq=last, reason=reason)
        await self._deliver(symbol, "trades", event)

    async def _on_book(self, m: Dict[str, Any]) -> None:
        s = m["symbol"]
        b = self._books.get(s)
        if b is None:
            return  # a book no longer held (a late frame after an unsubscribe)
        if m.get("snapshot"):
            b.snapshot(m)
        else:
            if not b.ready:
                return  # a snapshot is on its way
            if not b.update(m):
                held = b.seq
                b.ready = False
                b.resyncs += 1
                await self._deliver(
                    s,
                    "book",
                    Event(type="resync", symbol=s, held_seq=held, seq=m["seq"], prev_seq=m.get("prev_seq")),
                )
                cmd: Dict[str, Any] = {"op": "subscribe", "channels": ["book"], "symbols": [s]}
                cmd.update(self._book_options.get(s, {}))
                await self._send(cmd)  # this book alone
                return
        await self._deliver(s, "book", Event(**m))
