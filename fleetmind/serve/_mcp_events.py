"""Resumable SSE streams for the MCP server over HTTP: the events a client may have missed.

In protocol 2025-11-25 (sessions opened with ``initialize``) every SSE event carries an id, a
POST's stream opens with a priming event (an id, empty data and a ``retry`` delay), and a
client whose stream broke (or that the server closed, to avoid holding a connection for a long
call) sends ``GET`` with ``Last-Event-ID`` to get what it missed. The SDK's transport does the
HTTP side and writes every event to an :class:`EventStore`; this is that store.

- Bounded: each stream keeps its newest ``max_events`` events and the store its
  ``max_streams`` most recently written streams; older ones are dropped.
- In memory: the SDK keeps its sessions in memory too, so after a restart no session (and no
  event id) is valid any more; a copy on disk would serve nobody.
- Per session: request ids repeat from session to session, so a stream belongs to the session
  that wrote it, and an event id is honoured only in that session. :class:`SessionScopes` (in
  front of the SDK's app) tells the store which session a request belongs to; an event id the
  session does not know gets a 400 instead of an empty stream that a client would poll forever.
- Gap-free: after replaying what was missed, a request's stream follows the live events itself
  until the request's answer (or until ``window_s`` passes, when the client resumes again),
  so no event falls between the replay and the live tail.

Protocol 2026-07-28 has no resumability: each request there is a single exchange.
"""

from __future__ import annotations

import contextvars
import json
import math
import secrets
from collections import OrderedDict, deque

import anyio
from mcp.server.streamable_http import (
    GET_STREAM_KEY,
    EventCallback,
    EventId,
    EventMessage,
    EventStore,
    StreamId,
)
from mcp.types import INVALID_REQUEST, JSONRPCError, JSONRPCMessage, JSONRPCResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.types import Message as AsgiMessage

MAX_EVENTS = 256
"""Events kept per stream (a task followed with progress sends one per task event)."""

MAX_STREAMS = 256
"""Streams kept in all; the least recently written one goes first."""

MAX_SESSIONS = 10_000
"""Sessions remembered by :class:`SessionScopes` (the SDK's own default limit)."""


class _Owner:
    """One MCP session's part of the store; compared by identity."""

    __slots__ = ()


_OWNER: contextvars.ContextVar[_Owner | None] = contextvars.ContextVar(
    "fleetmind_mcp_stream_owner", default=None
)
"""The session of the request being served. Set by :class:`SessionScopes`; the task that routes
a session's messages is started while its ``initialize`` request is served, so it inherits it."""


class _Stream:
    """The kept events of one SSE stream, and a way to wait for the next one."""

    def __init__(self, owner: _Owner | None, stream_id: str, max_events: int) -> None:
        self.owner = owner
        self.stream_id = stream_id
        self.token = secrets.token_hex(8)
        self.events: deque[tuple[int, JSONRPCMessage | None]] = deque(maxlen=max_events)
        self.last = 0
        self.ended = False
        self.changed = anyio.Event()

    def add(self, message: JSONRPCMessage | None) -> EventId:
        self.last += 1
        self.events.append((self.last, message))
        if self.stream_id != GET_STREAM_KEY and isinstance(message, JSONRPCResponse | JSONRPCError):
            self.ended = True  # a request's stream ends with its answer
        self.changed.set()
        self.changed = anyio.Event()
        return self.event_id(self.last)

    def event_id(self, number: int) -> EventId:
        return f"{self.token}-{number}"

    def after(self, number: int) -> list[tuple[int, JSONRPCMessage | None]]:
        return [(n, message) for n, message in self.events if n > number]


class StreamEvents(EventStore):
    """An in-memory, bounded, per-session event store that follows a resumed stream live.

    Args:
        max_events: Events kept per stream.
        max_streams: Streams kept in all.
        window_s: How long a resumed stream stays open at most (None: until its answer).
    """

    def __init__(
        self,
        *,
        max_events: int = MAX_EVENTS,
        max_streams: int = MAX_STREAMS,
        window_s: float | None = None,
    ) -> None:
        self._max_events = max_events
        self._max_streams = max_streams
        self._window_s = window_s
        self._streams: OrderedDict[tuple[_Owner | None, str], _Stream] = OrderedDict()
        self._by_token: dict[str, _Stream] = {}

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        key = (_OWNER.get(), stream_id)
        stream = self._streams.get(key)
        if stream is None or stream.ended:
            # A new stream, or a request id used again after its first request was answered.
            stream = self._open(key)
        else:
            self._streams.move_to_end(key)
        return stream.add(message)

    async def replay_events_after(
        self, last_event_id: EventId, send_callback: EventCallback
    ) -> StreamId | None:
        """Send what followed ``last_event_id``, then the live events of a request's stream.

        Always None: the stream is followed here until the request's answer or the window's
        end, so the transport need not (and must not) attach its own live tail to it.
        """
        found = self._find(last_event_id, _OWNER.get())
        if found is None:
            return None
        stream, seen = found
        window = self._window_s if self._window_s is not None else math.inf
        with anyio.move_on_after(window):
            while True:
                changed = stream.changed
                for number, message in stream.after(seen):
                    seen = number
                    if message is not None:  # priming events carry no message
                        await send_callback(EventMessage(message, stream.event_id(number)))
                if stream.ended and not stream.after(seen):
                    return None
                await changed.wait()
        return None

    def knows(self, event_id: str, owner: _Owner | None) -> bool:
        """Whether ``event_id`` names a kept stream of ``owner``'s session."""
        return self._find(event_id, owner) is not None

    def forget(self, owner: _Owner) -> None:
        """Drop every stream of a session that has ended."""
        for key in [key for key in self._streams if key[0] is owner]:
            self._by_token.pop(self._streams.pop(key).token, None)

    def _open(self, key: tuple[_Owner | None, str]) -> _Stream:
        replaced = self._streams.pop(key, None)
        if replaced is not None:
            self._by_token.pop(replaced.token, None)
        stream = _Stream(key[0], key[1], self._max_events)
        self._streams[key] = stream
        self._by_token[stream.token] = stream
        while len(self._streams) > self._max_streams:
            _, oldest = self._streams.popitem(last=False)
            self._by_token.pop(oldest.token, None)
        return stream

    def _find(self, event_id: str, owner: _Owner | None) -> tuple[_Stream, int] | None:
        token, _, number = event_id.strip().rpartition("-")
        stream = self._by_token.get(token)
        if stream is None or stream.owner is not owner or not number.isdigit():
            return None
        if int(number) > stream.last:
            return None  # an id this stream never gave out
        return stream, int(number)


class SessionScopes:
    """ASGI middleware that tells :class:`StreamEvents` which session a request belongs to.

    A request without ``Mcp-Session-Id`` may open a session: it gets a new owner, remembered
    under the session id its answer names. A ``GET`` that resumes with a ``Last-Event-ID`` its
    session does not know is answered with 400 here. A ``DELETE`` that ends a session drops
    its streams.
    """

    def __init__(self, app: ASGIApp, events: StreamEvents, max_sessions: int = MAX_SESSIONS):
        self.app = app
        self._events = events
        self._max_sessions = max_sessions
        self._owners: OrderedDict[str, _Owner] = OrderedDict()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        session = headers.get(b"mcp-session-id")
        owner: _Owner | None
        if session is None:
            owner = _Owner()
            send = self._remembering(owner, send)
        else:
            owner = self._owners.get(session.decode("latin-1"))
            last = headers.get(b"last-event-id")
            if scope["method"] == "GET" and last is not None and owner is not None:
                event_id = last.decode("latin-1")
                if not self._events.knows(event_id, owner):
                    await _unknown_event(send, event_id)
                    return
        reset = _OWNER.set(owner)
        try:
            await self.app(scope, receive, send)
        finally:
            _OWNER.reset(reset)
        if session is not None and scope["method"] == "DELETE" and owner is not None:
            self._owners.pop(session.decode("latin-1"), None)
            self._events.forget(owner)

    def _remembering(self, owner: _Owner, send: Send) -> Send:
        """A ``send`` that remembers ``owner`` under the session id the answer names."""

        async def remembering(message: AsgiMessage) -> None:
            if message["type"] == "http.response.start":
                named = dict(message.get("headers", [])).get(b"mcp-session-id")
                if named is not None and message["status"] < 400:
                    self._owners[named.decode("latin-1")] = owner
                    while len(self._owners) > self._max_sessions:
                        self._owners.popitem(last=False)
            await send(message)

        return remembering


async def _unknown_event(send: Send, event_id: str) -> None:
    """Answer a resumption from an event id this session does not know (or no longer keeps)."""
    text = f"Bad Request: unknown or expired Last-Event-ID {event_id[:80]!r}"
    error = {"code": INVALID_REQUEST, "message": text}
    body = json.dumps({"jsonrpc": "2.0", "id": None, "error": error}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 400, "headers": headers})
    await send({"type": "http.response.body", "body": body})
