"""Order books kept from a snapshot and updates, checked per seq.

Pure data, no I/O: the client feeds it messages in arrival order and asks it whether an
update continues the chain. Nothing here allocates beyond the levels themselves.
"""

from __future__ import annotations

import random as _random
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence, Tuple

Level = Tuple[float, float]
"""A price level: ``(price, size)``."""


def backoff_delay(
    attempt: int,
    initial: float,
    maximum: float,
    random: Callable[[], float] = _random.random,
) -> float:
    """The delay in seconds before reconnect attempt ``attempt`` (0 for the first).

    "Full jitter": a uniform draw in ``[0, min(maximum, initial * 2**attempt))``, which
    spreads the clients of a restarted engine over the whole window.
    """
    step = min(maximum, initial * 2 ** min(attempt, 30))
    return random() * step


@dataclass(frozen=True)
class Book:
    """A book as the app reads it: at most ``depth`` levels a side, bids highest first."""

    symbol: str
    seq: int
    ready: bool
    """False until the first snapshot, and from a broken chain or a reconnect until the next."""
    depth: int
    resyncs: int
    """How many times the chain broke and the book was resubscribed."""
    bids: Sequence[Level]
    asks: Sequence[Level]

    @property
    def best_bid(self) -> Optional[Level]:
        """The highest bid, or None."""
        return self.bids[0] if self.bids else None

    @property
    def best_ask(self) -> Optional[Level]:
        """The lowest ask, or None."""
        return self.asks[0] if self.asks else None


@dataclass
class BookState:
    """One symbol's book from a snapshot then updates (size 0 removes a level)."""

    symbol: str
    depth: int
    seq: int = 0
    ready: bool = False
    resyncs: int = 0
    bids: dict = field(default_factory=dict)
    asks: dict = field(default_factory=dict)

    def snapshot(self, m: Mapping[str, Any]) -> None:
        """Replaces the book with a snapshot message."""
        self.bids = {p: s for p, s in m["bids"]}
        self.asks = {p: s for p, s in m["asks"]}
        self.seq = m["seq"]
        self.ready = True

    def update(self, m: Mapping[str, Any]) -> bool:
        """Applies an update if it continues the chain, else changes nothing and returns False.

        Version 2 updates carry ``prev_seq`` (a merged update may skip seqs); version 1
        updates must have the next seq.
        """
        prev = m.get("prev_seq")
        chained = prev == self.seq if isinstance(prev, int) else m["seq"] == self.seq + 1
        if not chained:
            return False
        for side, levels in ((self.bids, m["bids"]), (self.asks, m["asks"])):
            for p, s in levels:
                if s == 0:
                    side.pop(p, None)
                else:
                    side[p] = s
        self.seq = m["seq"]
        return True

    def view(self, depth: Optional[int] = None) -> Book:
        """The sorted top ``depth`` levels (the book's depth by default)."""
        n = self.depth if depth is None else depth
        bids = sorted(self.bids.items(), key=lambda lv: -lv[0])[:n]
        asks = sorted(self.asks.items(), key=lambda lv: lv[0])[:n]
        return Book(self.symbol, self.seq, self.ready, n, self.resyncs, bids, asks)
