"""Who may use the console: the holder of the token it printed, or of a session opened with it.

The token is made fresh each time the console starts and printed once, in the URL. Opening
that URL trades it, once, for a session: a random id in an HttpOnly, SameSite=Strict cookie,
so that the token leaves the address bar and scripts on other sites can neither read the
session nor send it. The token is then spent: a copy in the browser's history or a terminal's
scrollback opens nothing. A new token comes with each start of the console.

Sessions are kept (as hashes) in a file of the data directory, so that a page open while the
console restarts keeps working. Requests that change something must also carry the header
``X-Fleetmind-Console: 1``, which a form on another site cannot send.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from http.cookies import SimpleCookie
from pathlib import Path

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("fleetmind.console")

COOKIE = "fleetmind_console"
"""The session cookie's name."""

CSRF_HEADER = "x-fleetmind-console"
"""The header every POST must carry (value ``1``)."""

SESSION_S = 30 * 24 * 3600.0
"""How long a session lasts once opened."""

MAX_SESSIONS = 1000
"""Sessions kept at most (the oldest go first)."""


class ConsoleAuth:
    """The console's token and the sessions opened with it.

    Args:
        token: The token to accept (default: a fresh random one).
        sessions_file: Where sessions are kept across restarts (None: in memory only).
    """

    def __init__(self, token: str | None = None, sessions_file: Path | None = None) -> None:
        self.token = token or secrets.token_urlsafe(24)
        self._file = sessions_file
        self._spent = False
        self._sessions: dict[str, float] = self._read()

    def redeem(self, given: str) -> bool:
        """Whether ``given`` is the token, not yet spent (compared in constant time); a
        token that matches is spent by this call."""
        if self._spent or not hmac.compare_digest(given.encode(), self.token.encode()):
            return False
        self._spent = True
        return True

    def forget_sessions(self) -> None:
        """Drop every kept session: each open page must sign in again."""
        self._sessions = {}
        self._write()

    def open_session(self) -> str:
        """A new session id, for the cookie."""
        session = secrets.token_urlsafe(32)
        now = time.time()
        self._sessions = {k: v for k, v in self._sessions.items() if v > now}
        if len(self._sessions) >= MAX_SESSIONS:
            oldest = sorted(self._sessions, key=self._sessions.__getitem__)
            for key in oldest[: len(self._sessions) - MAX_SESSIONS + 1]:
                del self._sessions[key]
        self._sessions[_digest(session)] = now + SESSION_S
        self._write()
        return session

    def session_ok(self, session: str) -> bool:
        expires = self._sessions.get(_digest(session))
        return expires is not None and expires > time.time()

    def allows(self, scope: Scope) -> bool:
        """Whether a request carries a live session cookie."""
        headers = dict(scope.get("headers") or [])
        session = session_cookie(headers.get(b"cookie", b"").decode("latin-1"))
        return session is not None and self.session_ok(session)

    def _read(self) -> dict[str, float]:
        if self._file is None or not self._file.is_file():
            return {}
        try:
            data = json.loads(self._file.read_text(encoding="utf-8"))
            now = time.time()
            return {str(k): float(v) for k, v in dict(data).items() if float(v) > now}
        except (OSError, ValueError, TypeError) as exc:
            log.warning(
                "console sessions in %s cannot be read (%s): pages sign in again", self._file, exc
            )
            return {}

    def _write(self) -> None:
        if self._file is None:
            return
        try:
            self._file.parent.mkdir(parents=True, exist_ok=True)
            partial = self._file.with_suffix(".tmp")
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(self._sessions, out)
            os.replace(partial, self._file)
        except OSError as exc:
            log.warning("console sessions cannot be kept in %s: %s", self._file, exc)


def session_cookie(header: str) -> str | None:
    """The console's session id from a ``Cookie`` header, if it has one."""
    if not header:
        return None
    cookies: SimpleCookie = SimpleCookie()
    try:
        cookies.load(header)
    except Exception:  # http.cookies raises CookieError, and worse on odd input
        return None
    morsel = cookies.get(COOKIE)
    return morsel.value if morsel is not None and morsel.value else None


def set_cookie_header(session: str) -> str:
    """The ``Set-Cookie`` value for a new session: HttpOnly, SameSite=Strict, Path=/."""
    return f"{COOKIE}={session}; HttpOnly; SameSite=Strict; Path=/"


def _digest(session: str) -> str:
    return hashlib.sha256(session.encode()).hexdigest()


class ConsoleGate:
    """Lets through only requests with a session, and POSTs with the header.

    ``/`` (where the token is traded, and the page is served to a session) and ``/static/``
    (the page's scripts and styles, which hold no data) pass; so do non-HTTP scopes.
    Refusals are one-line JSON under ``/api``, plain text elsewhere.
    """

    def __init__(self, app: ASGIApp, *, auth: ConsoleAuth, max_body_bytes: int) -> None:
        self.app = app
        self.auth = auth
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _guarded_headers(send)
        path: str = scope["path"]
        if path == "/" or path.startswith("/static/"):
            await self.app(scope, receive, send)
            return
        if not self.auth.allows(scope):
            what = "no console session: open the URL that `fleetmind console` printed"
            await refuse(send, path, 401, what)
            return
        method: str = scope["method"]
        if method not in ("GET", "HEAD", "OPTIONS", "POST"):  # no route takes it: say that first
            await refuse(send, path, 405, f"{method} is not allowed on {path}")
            return
        if method == "POST":
            headers = dict(scope.get("headers") or [])
            if headers.get(CSRF_HEADER.encode()) != b"1":
                await refuse(send, path, 403, f"a console request must carry {CSRF_HEADER}: 1")
                return
            declared = headers.get(b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
                line = f"the request body is too large (the limit is {self.max_body_bytes} bytes)"
                await refuse(send, path, 413, line, close=True)
                return
        await self.app(scope, receive, send)


CYTOSCAPE_STYLE = "sha256-pgvDUBa4IjFA2yuSJ2cqcyxmNYJMborsd0ORcRv9vw8="
"""The hash of the one ``<style>`` the graph library adds to the page
(``.__________cytoscape_container { position: relative; }``)."""

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; worker-src 'self'; "
    f"style-src 'self' '{CYTOSCAPE_STYLE}'; img-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""Only the console's own files run or style the page: a name rendered as markup by mistake
could still not load or run anything."""

SAFETY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"referrer-policy", b"no-referrer"),
)
"""On every answer: no framing of the console by another site (its buttons cancel tasks),
nothing but its own scripts and styles, no guessing of content types, and no token leaking
in a Referer."""


def _guarded_headers(send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *SAFETY_HEADERS]}
        await send(message)

    return sending


async def refuse(send: Send, path: str, status: int, line: str, *, close: bool = False) -> None:
    """Answer with ``status`` and one line: JSON ``{"error": ...}`` under /api, else text."""
    if path.startswith("/api"):
        body, kind = json.dumps({"error": line}).encode(), b"application/json"
    else:
        body, kind = (line + "\n").encode(), b"text/plain; charset=utf-8"
    headers = [
        (b"content-type", kind),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
