"""One agent, or a whole fleet, served as an A2A 1.0 agent: the app, its bindings and the server.

What a message becomes and how the engine's events are reported is the executor's part
(:mod:`fleetmind.serve._a2a_executor`). A bearer token, when given, is declared on the card and
required on every A2A endpoint (the card stays public, as clients must read it to learn how to
authenticate). Request bodies over a size limit are refused with HTTP 413 before they are parsed.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from urllib.parse import urlsplit

import uvicorn
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH
from starlette.applications import Starlette
from starlette.middleware import Middleware

from fleetmind.agents.remote import agent_card
from fleetmind.errors import ConfigError
from fleetmind.orchestrator import Fleet
from fleetmind.serve._a2a_executor import CheckedRequests, FleetExecutor
from fleetmind.serve._a2a_state import DurableTaskStore
from fleetmind.serve._http_gate import HttpGate, exact_bearer

MAX_BODY_BYTES = 4 * 1024 * 1024
"""Request bodies above this size are refused with HTTP 413 (a task graph is far smaller)."""

_UNAUTHORIZED = -32000
"""JSON-RPC leaves -32000..-32099 to servers; A2A 1.0 defines no code for a refused token."""


# ------------------------------------------------------------------------------------------
# HTTP: the app (behind the gate) and the server
# ------------------------------------------------------------------------------------------


def build_a2a_app(
    fleet: Fleet,
    *,
    url: str,
    token: str | None = None,
    name: str | None = None,
    description: str | None = None,
    streaming: bool = True,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> Starlette:
    """An ASGI app that serves ``fleet`` as one A2A agent at ``url``.

    The app opens the fleet when it starts and closes it when it stops (cancelling the tasks
    it still runs), so hand it a fleet that is not open yet. A fleet of one agent is served as
    that agent: its card is the agent's profile, and every message goes to it.

    Args:
        fleet: The agents to serve.
        url: The JSON-RPC endpoint as clients reach it (its path is where the app listens).
        token: When given, every JSON-RPC request needs ``Authorization: Bearer <token>``.
        name: The card's name (default: derived from the profiles).
        description: The card's description (default: derived from the profiles).
        streaming: Offer ``SendStreamingMessage``.
        max_body_bytes: Larger request bodies are refused with HTTP 413.
    """
    if token is not None and not token.strip():
        raise ConfigError("the A2A bearer token is empty")
    card = agent_card(
        fleet.profiles,
        name=name,
        description=description,
        url=url,
        streaming=streaming,
        bearer_auth=token is not None,
    )
    executor = FleetExecutor(fleet)
    tasks = DurableTaskStore(fleet.store)
    handler = DefaultRequestHandler(
        agent_executor=executor,
        task_store=tasks,
        agent_card=card,
        request_context_builder=CheckedRequests(executor.definition),
    )
    rpc_path = urlsplit(url).path or "/"

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with fleet:
            await executor.recover(tasks)  # tasks a previous run left working
            try:
                yield
            finally:
                await handler.aclose()  # cancels running executions ...
                await executor.aclose()  # ... and whatever fleetmind task is left

    return Starlette(
        routes=[*create_agent_card_routes(card), *create_jsonrpc_routes(handler, rpc_path)],
        middleware=[
            # The bearer token, then the body size, before the A2A routes see a request.
            Middleware(
                HttpGate,
                token_check=exact_bearer(token) if token is not None else None,
                realm="a2a",
                unauthorized_code=_UNAUTHORIZED,
                max_body_bytes=max_body_bytes,
                public_paths=frozenset({AGENT_CARD_WELL_KNOWN_PATH}),
            )
        ],
        lifespan=lifespan,
    )


class _Server(uvicorn.Server):
    """uvicorn, minus its signal handling: :func:`serve_a2a` owns SIGINT and SIGTERM.

    uvicorn re-raises a caught signal once it has shut down, which would turn a clean stop
    into a KeyboardInterrupt or a kill; here a signal just ends :func:`serve_a2a`.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_a2a(
    fleet: Fleet,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    *,
    url: str | None = None,
    name: str | None = None,
    description: str | None = None,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve ``fleet`` as an A2A agent on ``host:port`` until SIGINT or SIGTERM.

    Runs uvicorn inside the running event loop; the fleet is open while it serves, and tasks
    still running when a signal comes are cancelled before this returns.

    Args:
        fleet: The agents to serve (not yet open).
        host: The address to listen on.
        port: The port to listen on (0: any free port).
        token: When given, clients must send it as a bearer token.
        url: The URL clients use (default: ``http://host:port/``).
        name: The card's name.
        description: The card's description.
        ready: Called with the URL once the server listens.

    Raises:
        ConfigError: The address cannot be listened on.
    """
    sock = _listen(host, port)
    with contextlib.closing(sock):
        bound_port = sock.getsockname()[1]
        url = url or f"http://{_url_host(host)}:{bound_port}/"
        app = build_a2a_app(fleet, url=url, token=token, name=name, description=description)
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=5,
        )
        server = _Server(config)
        loop = asyncio.get_running_loop()

        def stop() -> None:
            server.should_exit = True

        signals = (signal.SIGINT, signal.SIGTERM)
        for sig in signals:
            loop.add_signal_handler(sig, stop)
        try:
            if ready is not None:
                ready(url)
            await server.serve(sockets=[sock])
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
    if not server.started:
        raise ConfigError(f"the A2A server on {host}:{bound_port} did not start (see its log)")


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket, bound here so that a taken port is a clear error, not an exit."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP given explicitly: asyncio sets TCP_NODELAY on accepted connections only for
    # sockets that say so, and Nagle would delay each small answer by ~40 ms.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    except OverflowError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc}") from exc
    return sock


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "", "::"):
        return socket.gethostname()
    return f"[{host}]" if ":" in host else host
