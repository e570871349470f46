"""The console's live feed: one hub that every source publishes to, fanned out to each page
over server-sent events.

A page that falls behind loses its stream (its queue is bounded) and reconnects, catching up
from the API, so that one stuck browser tab never holds the server's memory. Nothing is
replayed on reconnect: each event carries an ``id:`` for the browser's bookkeeping only.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

HEARTBEAT_S = 15.0
"""A comment line this often keeps proxies and the browser from closing an idle stream."""

QUEUE_LIMIT = 2000
"""Events a page may have unread before its stream is closed (it reconnects and catches up)."""


class EventHub:
    """Hands every published event to every open stream, each with a growing id."""

    def __init__(self, *, heartbeat_s: float = HEARTBEAT_S, queue_limit: int = QUEUE_LIMIT) -> None:
        self.heartbeat_s = heartbeat_s
        self._limit = queue_limit
        self._next_id = 0
        self._streams: set[asyncio.Queue[bytes | None]] = set()
        self._closed = False

    @property
    def streams(self) -> int:
        """How many pages are following now."""
        return len(self._streams)

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        """Send ``data`` as an event named ``kind`` to every open stream; never blocks."""
        self._next_id += 1
        body = json.dumps(data, default=str, separators=(",", ":"))
        frame = f"id: {self._next_id}\nevent: {kind}\ndata: {body}\n\n".encode()
        for queue in list(self._streams):
            if queue.qsize() >= self._limit:  # too slow a reader: its stream ends, it reconnects
                self._drop(queue)
            else:
                queue.put_nowait(frame)

    def close(self) -> None:
        """End every stream (the server is stopping)."""
        self._closed = True
        for queue in list(self._streams):
            self._drop(queue)

    def _drop(self, queue: asyncio.Queue[bytes | None]) -> None:
        self._streams.discard(queue)
        queue.put_nowait(None)

    async def stream(self) -> AsyncIterator[bytes]:
        """One page's stream: a first comment at once, then events and heartbeats.

        Ends when the hub closes or the page is too slow; a page that goes away is forgotten
        as soon as its response is cancelled (the ``finally`` below).
        """
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        if self._closed:
            return
        self._streams.add(queue)
        try:
            yield b"retry: 2000\n: connected\n\n"
            while True:
                try:
                    frame = await asyncio.wait_for(queue.get(), self.heartbeat_s)
                except TimeoutError:
                    yield b": heartbeat\n\n"
                    continue
                if frame is None:
                    return
                yield frame
        finally:
            self._streams.discard(queue)
