"""tickwire_client: an asyncio client for the tickwire market-data engine.

It reconnects with jittered backoff, notices dead links with an application heartbeat,
resubscribes everything after a reconnect (with trade recovery where the engine speaks
protocol version 2), keeps order books checked per seq, and delivers every event::

    async with Client("ws://127.0.0.1:8080/ws") as c:
        sub = await c.subscribe(symbols=["sim:BTC-USD"], channels=["book"], depth=5)
        async for event in sub:
            if event.type == "book":
                print(sub.book("sim:BTC-USD").best_bid)

See README.md beside this package and examples/top_of_book.py.
"""

from ._book import Book, BookState, Level, backoff_delay
from ._client import SUBPROTOCOL_BINARY, SUBPROTOCOL_JSON, Client, Event, State, Subscription

__all__ = [
    "Book",
    "BookState",
    "Client",
    "Event",
    "Level",
    "State",
    "Subscription",
    "SUBPROTOCOL_BINARY",
    "SUBPROTOCOL_JSON",
    "backoff_delay",
]
__version__ = "0.1.0"
