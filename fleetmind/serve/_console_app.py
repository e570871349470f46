"""The fleet console's HTTP server: the page, its JSON API and its event stream.

=======================================  ==================================================
``GET /?token=T``                        trade the printed token for a session cookie (303)
``GET /``                                the page (with a session)
``GET /static/...``                      the page's scripts and styles
``GET /api/info``                        mode, read-only, whether plain words are planned
``GET /api/tasks?limit=N``               the newest tasks, each with its subtasks counted
``GET /api/tasks/{id}``                  a task's graph: subtasks, routing, LLM steps, edges
``GET /api/devices``                     devices with presence and their agents
``GET /api/events``                      server-sent events: task, graph, device
``POST /api/tasks``                      submit a task file's content, or plain words (201)
``POST /api/tasks/{id}/cancel|resume``   stop a running task, continue an interrupted one
=======================================  ==================================================

What the data is and where it comes from is the source's part (:mod:`._console_sources`);
who may ask, the gate's (:mod:`._console_auth`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from fleetmind.errors import ConfigError
from fleetmind.serve._console_auth import ConsoleAuth, ConsoleGate, set_cookie_header
from fleetmind.serve._console_events import EventHub
from fleetmind.serve._console_sources import ApiError, ConsoleSource

log = logging.getLogger("fleetmind.console")

STATIC_DIR = Path(__file__).parent / "console_static"
"""Where the built page is (shipped inside the package)."""

MAX_BODY_BYTES = 2 * 1024 * 1024
"""A submitted task file larger than this is refused (HTTP 413)."""

DEFAULT_LIMIT = 100

_WRONG_TOKEN_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>fleetmind console</title></head>
<body><p>wrong or expired token: open the URL that <code>fleetmind console</code> printed</p>
</body></html>
"""

_NO_SESSION_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>fleetmind console</title></head>
<body><p>no console session: open the URL that <code>fleetmind console</code> printed</p>
</body></html>
"""

_NO_API_HEADERS = {"cache-control": "no-store"}


def build_console_app(
    source: ConsoleSource,
    auth: ConsoleAuth,
    *,
    hub: EventHub | None = None,
    static_dir: Path = STATIC_DIR,
    max_body_bytes: int = MAX_BODY_BYTES,
    run_source: bool = True,
) -> Starlette:
    """The console as an ASGI app.

    With ``run_source``, ``source`` feeds the hub while the app runs (its lifespan); without,
    the caller runs it (:func:`serve_console` does, so that a source that cannot start, a
    broker that cannot be reached, is one error before the server starts).
    """
    hub = hub or EventHub()

    async def page(request: Request) -> Response:
        token = request.query_params.get("token")
        if token is not None:
            if not auth.redeem(token):
                return HTMLResponse(_WRONG_TOKEN_PAGE, status_code=401, headers=_NO_API_HEADERS)
            response = RedirectResponse("/", status_code=303, headers=_NO_API_HEADERS)
            response.headers["set-cookie"] = set_cookie_header(auth.open_session())
            return response
        if not auth.allows(request.scope):
            return HTMLResponse(_NO_SESSION_PAGE, status_code=401, headers=_NO_API_HEADERS)
        index = static_dir / "index.html"
        if not index.is_file():
            return PlainTextResponse(
                "the console's page is not in this installation (console_static/index.html); "
                "the API answers under /api",
                status_code=503,
            )
        return FileResponse(index, headers={"cache-control": "no-cache"})

    async def info(request: Request) -> Response:
        return _json(source.info())

    async def tasks(request: Request) -> Response:
        raw = request.query_params.get("limit", str(DEFAULT_LIMIT))
        if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
            raise ApiError(400, f"limit must be a positive whole number, not {raw!r}")
        return _json({"tasks": await source.tasks(int(raw))})

    async def task(request: Request) -> Response:
        return _json(await source.task(request.path_params["task_id"]))

    async def devices(request: Request) -> Response:
        return _json({"devices": await source.devices()})

    async def events(request: Request) -> Response:
        headers = {"cache-control": "no-store", "x-accel-buffering": "no"}
        return StreamingResponse(hub.stream(), media_type="text/event-stream", headers=headers)

    async def submit(request: Request) -> Response:
        body = await _body(request, max_body_bytes)
        if "text" in body:
            text = body["text"]
            if not isinstance(text, str) or not text.strip():
                raise ApiError(400, "text must be a request in plain words")
            if set(body) - {"text"}:
                raise ApiError(400, "give either text, or file_name and content, not both")
            task_id = await source.submit_text(text.strip())
        else:
            name, content = body.get("file_name"), body.get("content")
            params = body.get("params") or {}
            if not isinstance(content, str):
                raise ApiError(400, "give content (a task file's text) or text (plain words)")
            if not isinstance(name, str) or not name.strip():
                raise ApiError(400, "file_name must name the task file (e.g. task.yaml)")
            if not name.lower().endswith((".yaml", ".yml", ".json")):
                raise ApiError(400, f"{name}: a task file is .yaml, .yml or .json")
            if not isinstance(params, dict):
                raise ApiError(400, "params must be an object of parameter values")
            task_id = await source.submit_file(Path(name).name, content, params)
        return _json({"id": task_id}, status=201)

    async def cancel(request: Request) -> Response:
        status = await source.cancel(request.path_params["task_id"])
        return _json({"status": status})

    async def resume(request: Request) -> Response:
        task_id = await source.resume(request.path_params["task_id"])
        return _json({"id": task_id})

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        line = exc.detail if isinstance(exc.detail, str) else str(exc.status_code)
        if request.url.path.startswith("/api"):
            if exc.status_code == 404:
                line = f"no such endpoint: {request.method} {request.url.path}"
            elif exc.status_code == 405:
                line = f"{request.method} is not allowed on {request.url.path}"
            return _json({"error": line}, status=exc.status_code)
        return PlainTextResponse(line, status_code=exc.status_code)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            if run_source:
                async with source.running(hub):
                    yield
            else:
                yield
        finally:
            hub.close()

    routes = [
        Route("/", _answering(page), methods=["GET"]),
        Route("/api/info", _answering(info), methods=["GET"]),
        Route("/api/tasks", _answering(tasks), methods=["GET"]),
        Route("/api/tasks", _answering(submit), methods=["POST"]),
        Route("/api/tasks/{task_id}", _answering(task), methods=["GET"]),
        Route("/api/tasks/{task_id}/cancel", _answering(cancel), methods=["POST"]),
        Route("/api/tasks/{task_id}/resume", _answering(resume), methods=["POST"]),
        Route("/api/devices", _answering(devices), methods=["GET"]),
        Route("/api/events", _answering(events), methods=["GET"]),
        Mount("/static", StaticFiles(directory=static_dir, check_dir=False), name="static"),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(ConsoleGate, auth=auth, max_body_bytes=max_body_bytes)],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )


Handler = Callable[[Request], Awaitable[Response]]


def _answering(handler: Handler) -> Handler:
    """``handler``, answering a refusal (:class:`ApiError`) with its status and line, and a
    failure of its own with a one-line 500 (and one line in the console's log), so that no
    request ever gets, or leaves, a traceback."""

    async def answer(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as exc:
            return _json({"error": exc.message}, status=exc.status)
        except Exception as exc:
            where = f"{request.method} {request.url.path}"
            log.error("console: %s failed: %s: %s", where, type(exc).__name__, exc)
            line = f"internal error ({type(exc).__name__}); see the console's log"
            return _json({"error": line}, status=500)

    return answer


def _json(data: Any, *, status: int = 200) -> Response:
    body = json.dumps(data, default=str, ensure_ascii=False).encode()
    return Response(
        body, status_code=status, media_type="application/json", headers=_NO_API_HEADERS
    )


async def _body(request: Request, limit: int) -> dict[str, Any]:
    """A POST's JSON object, or an :class:`ApiError` that says in one line what is wrong."""
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise ApiError(413, f"the request body is too large (the limit is {limit} bytes)")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request body is not JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "the request body is nested too deeply") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return body


# ------------------------------------------------------------------------------------------
# The server
# ------------------------------------------------------------------------------------------


class _Server(uvicorn.Server):
    """uvicorn, minus its signal handling (:func:`serve_console` owns SIGINT and SIGTERM),
    calling ``on_started`` once the app has started (its source is open) and it serves."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self._on_started()


async def serve_console(
    source: ConsoleSource,
    host: str = "127.0.0.1",
    port: int = 8700,
    *,
    auth: ConsoleAuth | None = None,
    static_dir: Path = STATIC_DIR,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the console on ``host:port`` until SIGINT or SIGTERM.

    Args:
        source: Where the data comes from (opened while the console serves).
        host: The address to listen on (loopback by default).
        port: The port (0: any free one).
        auth: The token and sessions (default: a fresh token, sessions in memory).
        static_dir: The built page.
        ready: Called with the URL to open (token included) once the server listens.

    Raises:
        ConfigError: The address cannot be listened on, or the source cannot start.
    """
    auth = auth or ConsoleAuth()
    hub = EventHub()
    sock = listen(host, port)
    with contextlib.closing(sock):
        url = f"http://{_url_host(host)}:{sock.getsockname()[1]}/?token={auth.token}"
        app = build_console_app(source, auth, hub=hub, static_dir=static_dir, run_source=False)
        async with source.running(hub):  # its errors (a broker not there) come out here
            server = await _serve(app, sock, hub, url, ready)
    if not server.started:
        raise ConfigError(f"the console on {host}:{port} did not start (see its log)")


async def _serve(
    app: Starlette,
    sock: socket.socket,
    hub: EventHub,
    url: str,
    ready: Callable[[str], None] | None,
) -> uvicorn.Server:
    """Run uvicorn on ``sock`` until SIGINT or SIGTERM; the server, to see if it started."""
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    server = _Server(config, lambda: ready(url) if ready is not None else None)
    loop = asyncio.get_running_loop()

    def stop() -> None:
        hub.close()  # open streams end now, so that the server need not wait for them
        server.should_exit = True

    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop)
    try:
        await server.serve(sockets=[sock])
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
    return server


def listen(host: str, port: int) -> socket.socket:
    """A listening socket, bound here so that a taken port is one line, not a traceback."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except (OSError, OverflowError) as exc:
        sock.close()
        reason = getattr(exc, "strerror", None) or exc
        raise ConfigError(f"cannot listen on {host}:{port}: {reason}") from None
    return sock


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "", "::"):
        return socket.gethostname()
    return f"[{host}]" if ":" in host else host
