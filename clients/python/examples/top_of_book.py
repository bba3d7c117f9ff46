"""Prints the BTC top of book each time it changes.

    python3 clients/python/examples/top_of_book.py [ws://127.0.0.1:8080/ws] [--changes N]
"""

from __future__ import annotations

import argparse
import asyncio

from tickwire_client import Client

SYMBOL = "sim:BTC-USD"


def level(lv) -> str:
    return f"{lv[1]} @ {lv[0]}" if lv else "-"


async def main(url: str, max_changes: float) -> None:
    async with Client(url) as c:
        sub = await c.subscribe(symbols=[SYMBOL], channels=["book"], depth=1)
        last = ""
        changes = 0
        async for event in sub:
            if event.type == "state":
                print(f"[{event.state}]")
            elif event.type == "error":
                print(f"error {event.code}: {event.message}")
            elif event.type == "book":
                b = sub.book(SYMBOL)
                line = f"{SYMBOL} bid {level(b.best_bid)}  ask {level(b.best_ask)}"
                if line != last:
                    last = line
                    print(f"{line}  (seq {b.seq})")
                    changes += 1
                    if changes >= max_changes:
                        return


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("url", nargs="?", default="ws://127.0.0.1:8080/ws")
    ap.add_argument("--changes", type=int, default=None, help="stop after this many changes")
    args = ap.parse_args()
    try:
        asyncio.run(main(args.url, args.changes or float("inf")))
    except KeyboardInterrupt:
        pass
