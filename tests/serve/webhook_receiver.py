"""A webhook receiver for the push notification tests: a real HTTP server on a free loopback port
that records the POSTs it accepts, and can refuse or hold calls."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from a2a.types import StreamResponse
from google.protobuf.json_format import ParseDict

DEADLINE_S = 60.0


@dataclass(frozen=True)
class Call:
    """One POST the receiver accepted."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def update(self) -> StreamResponse:
        """The body read as the StreamResponse it must be (fails on any unknown field)."""
        return ParseDict(self.body, StreamResponse())


class Receiver:
    """Records accepted POSTs in order of arrival.

    Args:
        refuse_first: Answer this many calls with ``refuse_status`` before accepting any.
        refuse_status: The HTTP status of a refusal.
        hold: When given, every call waits for this event before it is answered.
    """

    def __init__(
        self,
        *,
        refuse_first: int = 0,
        refuse_status: int = 503,
        hold: threading.Event | None = None,
    ) -> None:
        self.calls: list[Call] = []
        self.refused = 0
        self._refuse_first = refuse_first
        self._hold = hold
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                if hold is not None:
                    hold.wait(timeout=DEADLINE_S)
                with receiver._changed:
                    if receiver.refused < receiver._refuse_first:
                        receiver.refused += 1
                        status = refuse_status
                    else:
                        headers = {k.lower(): v for k, v in self.headers.items()}
                        receiver.calls.append(Call(self.path, headers, body))
                        status = 200
                    receiver._changed.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self._hold is not None:
            self._hold.set()  # no call stays held
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    async def wait_for(self, ready: Callable[[list[Call]], bool]) -> list[Call]:
        """The calls so far, once ``ready`` holds for them."""

        def wait() -> list[Call]:
            with self._changed:
                if not self._changed.wait_for(lambda: ready(self.calls), timeout=DEADLINE_S):
                    pytest.fail(f"the webhook did not get the expected calls: {self.calls}")
                return list(self.calls)

        return await asyncio.to_thread(wait)
