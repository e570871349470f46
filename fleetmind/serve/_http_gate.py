"""The gate in front of fleetmind's JSON-RPC servers over HTTP (A2A and MCP).

It checks the bearer token, then the body size, and hands the body on; a refusal is a JSON-RPC
error object in the body with an HTTP status that says the same, which is what JSON-RPC
clients surface as the error. What differs between the servers is a parameter: how a token is
compared, the realm and error code of a 401, paths that stay public, a last look at the body
(MCP's check that it is a JSON-RPC message), and the body of a refusal on a path that does not
speak JSON-RPC (A2A's HTTP+JSON binding).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.types import Message as AsgiMessage

INVALID_REQUEST = -32600
"""JSON-RPC's Invalid Request: the code of a body refused for its size."""

DRAIN_BYTES = 64 * 1024 * 1024
"""A refused body up to this size is read and dropped before the answer, so that the client,
still sending, reads the answer instead of a connection reset; a larger one is cut off."""


@dataclass(frozen=True)
class Refusal:
    """A request the gate answers itself: HTTP status, JSON-RPC error, and the request's id."""

    status: int
    code: int
    text: str
    request_id: int | str | None = None


TokenCheck = Callable[[bytes], bool]
"""Whether an ``Authorization`` header value carries the token."""

BodyCheck = Callable[[Scope, bytes], Refusal | None]
"""A last look at a whole body within the limit: a refusal, or None to hand it on."""

ErrorBody = Callable[[Scope, Refusal], bytes | None]
"""The body of a refusal for a request whose protocol is not JSON-RPC (None: a JSON-RPC error)."""


def exact_bearer(token: str) -> TokenCheck:
    """Accept exactly ``Bearer <token>``."""
    expected = f"Bearer {token}".encode()

    def accepts(given: bytes) -> bool:
        # compare_digest takes as long whatever the token's content: no timing oracle.
        return hmac.compare_digest(given, expected)

    return accepts


def case_blind_bearer(token: str) -> TokenCheck:
    """Accept ``<scheme> <token>`` for any case of ``Bearer`` and whitespace around the token."""
    expected = token.encode()

    def accepts(given: bytes) -> bool:
        scheme, _, credentials = given.partition(b" ")
        # compare_digest takes as long whatever the token's content: no timing oracle.
        matches = hmac.compare_digest(credentials.strip(), expected)
        return scheme.lower() == b"bearer" and matches

    return accepts


class HttpGate:
    """Checks the bearer token, then the body size (then ``check_body``) before ``app``.

    The body is read here (at most ``max_body_bytes`` of it) and handed on, so an oversized
    request never reaches a JSON parser and a refused one costs no more than the limit.
    Non-HTTP scopes (lifespan: the app starts and stops) and ``public_paths`` pass unchecked.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        token_check: TokenCheck | None,
        realm: str,
        unauthorized_code: int,
        max_body_bytes: int,
        public_paths: frozenset[str] = frozenset(),
        check_body: BodyCheck | None = None,
        error_body: ErrorBody | None = None,
    ) -> None:
        self.app = app
        self._error_body = error_body
        self._accepts = token_check
        self._realm = realm.encode()
        self._unauthorized = unauthorized_code
        self._max = max_body_bytes
        self._public = public_paths
        self._check_body = check_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self._public:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = _content_length(headers)
        if self._accepts is not None:
            given = headers.get(b"authorization")
            if given is None or not self._accepts(given):
                challenge = b'Bearer realm="' + self._realm + b'"'
                if given is not None:
                    challenge += b', error="invalid_token"'
                reason = "missing bearer token" if given is None else "wrong bearer token"
                drained = await _drain(receive, declared, 0)
                refusal = Refusal(401, self._unauthorized, f"Unauthorized: {reason}")
                refused = self._body(scope, refusal)
                await _refuse(send, refusal, challenge=challenge, keep_alive=drained, body=refused)
                return
        if declared is not None and declared > self._max:
            drained = await _drain(receive, declared, 0)
            too_large = self._too_large()
            await _refuse(send, too_large, keep_alive=drained, body=self._body(scope, too_large))
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self._max:
                drained = not more or await _drain(receive, declared, len(body))
                too_large = self._too_large()
                refused = self._body(scope, too_large)
                await _refuse(send, too_large, keep_alive=drained, body=refused)
                return
        if self._check_body is not None:
            late = self._check_body(scope, bytes(body))
            if late is not None:
                await _refuse(send, late)
                return
        await self.app(scope, _replay(bytes(body), receive), send)

    def _body(self, scope: Scope, refusal: Refusal) -> bytes | None:
        return self._error_body(scope, refusal) if self._error_body is not None else None

    def _too_large(self) -> Refusal:
        text = f"Invalid Request: payload too large (the limit is {self._max} bytes)"
        return Refusal(413, INVALID_REQUEST, text)


async def _drain(receive: Receive, declared: int | None, seen: int) -> bool:
    """Read and drop the rest of a request body; False if it was cut off instead."""
    if declared is not None and declared > DRAIN_BYTES:
        return False
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return False
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            return True
        if seen > DRAIN_BYTES:
            return False


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the body read by the gate, then waits on the real one."""
    sent = False

    async def replay() -> AsgiMessage:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the client to go away

    return replay


def _content_length(headers: dict[bytes, bytes]) -> int | None:
    raw = headers.get(b"content-length")
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


async def _refuse(
    send: Send,
    refusal: Refusal,
    *,
    challenge: bytes | None = None,
    keep_alive: bool = True,
    body: bytes | None = None,
) -> None:
    """An error response (a JSON-RPC error unless ``body`` is given) with an HTTP status that
    says the same."""
    if body is None:
        error = {"code": refusal.code, "message": refusal.text}
        body = json.dumps({"jsonrpc": "2.0", "id": refusal.request_id, "error": error}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if not keep_alive:
        headers.append((b"connection", b"close"))  # part of the body is still unread
    if challenge is not None:
        headers.append((b"www-authenticate", challenge))
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
