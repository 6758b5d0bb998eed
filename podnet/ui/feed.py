"""What the web view pushes to browsers, bounded everywhere.

- `Feed`: the last `size` flow records (a ring; the oldest falls off), each
  given a sequence number so a browser that reconnects asks only for newer
  ones.
- `Hub`: one bounded asyncio queue per connected browser (server-sent
  events). A browser that does not read (a background tab, a stalled
  socket) must not make the server hold an unbounded backlog: when its
  queue is full, the queue is emptied and one "state" message takes its
  place. The page re-renders from the whole state on every "state", so what
  that browser misses is only the flows in between, which it re-reads from
  the feed by sequence number on the next "state".
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from typing import Any

Obj = dict[str, Any]
FEED_SIZE = 200  # flow records the page can show
QUEUE_SIZE = 64  # messages waiting per browser


class Feed:
    def __init__(self, size: int = FEED_SIZE):
        self._items: deque[Obj] = deque(maxlen=size)
        self._seq = 0
        self._lock = threading.Lock()  # filled from the flow poller's thread, read from the loop

    def add(self, record: Obj) -> Obj:
        """Append `record` with the next seq; a record with the `id` of one
        in the feed (its connection ended: now with bytes) replaces it."""
        with self._lock:
            self._seq += 1
            item = dict(record, seq=self._seq)
            if item.get("id") is not None:
                for old in [i for i in self._items if i.get("id") == item["id"]]:
                    self._items.remove(old)
            self._items.append(item)
            return item

    def since(self, seq: int = 0) -> list[Obj]:
        with self._lock:
            return [i for i in self._items if i["seq"] > seq]

    @property
    def last(self) -> int:
        with self._lock:
            return self._seq


class Hub:
    """Fan-out of (event, data) messages to every browser's queue. Must be
    used from the event loop's thread (publish_threadsafe from others)."""

    def __init__(self, queue_size: int = QUEUE_SIZE):
        self.queue_size = queue_size
        self.clients: set[asyncio.Queue[tuple[str, Any]]] = set()
        self.overflows = 0  # how many times a browser's queue was replaced by one "state"
        self.loop: asyncio.AbstractEventLoop | None = None

    def subscribe(self) -> asyncio.Queue[tuple[str, Any]]:
        q: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize=self.queue_size)
        self.clients.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[tuple[str, Any]]) -> None:
        self.clients.discard(q)

    def publish(self, event: str, data: Any) -> None:
        for q in list(self.clients):
            try:
                q.put_nowait((event, data))
            except asyncio.QueueFull:
                self.overflows += 1
                while not q.empty():
                    q.get_nowait()
                q.put_nowait(("state", None))  # None: the sender reads the current state

    def publish_threadsafe(self, event: str, data: Any) -> None:
        loop = self.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.publish, event, data)
