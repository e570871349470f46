"""One agent, or a whole fleet, served as an A2A 1.0 agent: the app, its bindings and the server.

All three bindings of A2A 1.0 share one request handler, and the card declares each of them:

=========  =========================  ==========================================================
binding    URL on the card            endpoints
=========  =========================  ==========================================================
JSON-RPC   ``http://host:port/``      ``POST /`` (``SendMessage``, ``GetTask``, ...)
HTTP+JSON  ``http://host:port/rest``  ``POST /rest/message:send``, ``GET /rest/tasks/{id}``, ...
gRPC       ``host:grpc_port``         the ``a2a.v1.A2AService`` service, on a port of its own
=========  =========================  ==========================================================

What a message becomes and how the engine's events are reported is the executor's part
(:mod:`fleetmind.serve._a2a_executor`). A bearer token, when given, is declared on the card and
required on every A2A endpoint of every binding (the card stays public, as clients must read it
to learn how to authenticate). Request bodies over a size limit are refused (HTTP 413; gRPC
``RESOURCE_EXHAUSTED``) before they are parsed, and so is a part whose media type the card does
not list (``ContentTypeNotSupportedError``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import uvicorn
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_jsonrpc_routes, create_rest_routes
from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute
from starlette.types import Scope

from fleetmind.agents.remote import agent_card
from fleetmind.errors import ConfigError
from fleetmind.orchestrator import Fleet
from fleetmind.serve._a2a_card_route import CARD_MAX_AGE_S, card_route
from fleetmind.serve._a2a_executor import CheckedRequests, FleetExecutor
from fleetmind.serve._a2a_grpc import GrpcBinding
from fleetmind.serve._a2a_push import CheckedPushConfigStore, WebhookSender
from fleetmind.serve._a2a_state import DurablePushConfigStore, DurableTaskStore
from fleetmind.serve._http_gate import ErrorBody, HttpGate, Refusal, exact_bearer

MAX_BODY_BYTES = 4 * 1024 * 1024
"""Request bodies above this size are refused with HTTP 413 (a task graph is far smaller)."""

REST_PATH = "rest"
"""Where the HTTP+JSON binding's endpoints are rooted, below the JSON-RPC URL."""

GRPC_GRACE_S = 2.0
"""How long gRPC calls still running when the server stops may take to end."""

_UNAUTHORIZED = -32000
"""JSON-RPC leaves -32000..-32099 to servers; A2A 1.0 defines no code for a refused token."""


@dataclass(frozen=True)
class A2AEndpoints:
    """Where clients reach each binding of a served fleet (None: the binding is not served)."""

    jsonrpc: str | None
    rest: str | None
    grpc: str | None

    def lines(self) -> list[str]:
        """One ``binding URL`` line per binding served."""
        named = (("JSON-RPC", self.jsonrpc), ("HTTP+JSON", self.rest), ("gRPC", self.grpc))
        return [f"{binding} {where}" for binding, where in named if where is not None]


# ------------------------------------------------------------------------------------------
# HTTP: the app (behind the gate) and the server
# ------------------------------------------------------------------------------------------


_CLIENT_MISTAKES = ("Failed to validate base JSON-RPC request", "Failed to parse request params")
"""What the SDK's JSON-RPC dispatcher logs, with a traceback, when a client sends a malformed
request (it answers -32600 / -32602 as it should)."""


class _ClientMistakeLines(logging.Filter):
    """Keeps a client's malformed request to the SDK's one error line, without the traceback:
    the mistake is the client's, the answer says it, and the server is fine."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage() in _CLIENT_MISTAKES:
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def _quiet_client_mistakes() -> None:
    dispatcher = logging.getLogger("a2a.server.routes.jsonrpc_dispatcher")
    if not any(isinstance(f, _ClientMistakeLines) for f in dispatcher.filters):
        dispatcher.addFilter(_ClientMistakeLines())


def build_a2a_app(
    fleet: Fleet,
    *,
    url: str,
    token: str | None = None,
    name: str | None = None,
    description: str | None = None,
    streaming: bool = True,
    max_body_bytes: int = MAX_BODY_BYTES,
    jsonrpc: bool = True,
    rest: bool = True,
    grpc: GrpcBinding | None = None,
    input_modes: Sequence[str] | None = None,
    card_max_age_s: int = CARD_MAX_AGE_S,
) -> Starlette:
    """An ASGI app that serves ``fleet`` as one A2A agent at ``url``.

    The app opens the fleet when it starts and closes it when it stops (cancelling the tasks
    it still runs), so hand it a fleet that is not open yet. A fleet of one agent is served as
    that agent: its card is the agent's profile, and every message goes to it. A gRPC binding
    given answers from the app's start to its stop.

    Args:
        fleet: The agents to serve.
        url: The JSON-RPC endpoint as clients reach it (its path is where the app listens);
            the HTTP+JSON endpoints are below it, at ``rest``.
        token: When given, every A2A request needs ``Authorization: Bearer <token>``.
        name: The card's name (default: derived from the profiles).
        description: The card's description (default: derived from the profiles).
        streaming: Offer ``SendStreamingMessage``.
        max_body_bytes: Larger request bodies are refused with HTTP 413.
        jsonrpc: Serve the JSON-RPC binding.
        rest: Serve the HTTP+JSON binding.
        grpc: Serve the gRPC binding on this server (made with the same token and limit).
        input_modes: The media types a message's parts may have (others are refused; default:
            text and JSON).
        card_max_age_s: How long clients may cache the card.
    """
    if token is not None and not token.strip():
        raise ConfigError("the A2A bearer token is empty")
    endpoints = _endpoints(url, jsonrpc=jsonrpc, rest=rest, grpc=grpc)
    _quiet_client_mistakes()
    card = agent_card(
        fleet.profiles,
        name=name,
        description=description,
        url=endpoints.jsonrpc,
        rest_url=endpoints.rest,
        grpc_url=endpoints.grpc,
        input_modes=input_modes,
        streaming=streaming,
        bearer_auth=token is not None,
        push_notifications=True,
    )
    executor = FleetExecutor(fleet)
    tasks = DurableTaskStore(fleet.store)
    push_configs = CheckedPushConfigStore(DurablePushConfigStore(fleet.store))
    push_sender = WebhookSender(push_configs)
    handler = DefaultRequestHandler(
        agent_executor=executor,
        task_store=tasks,
        agent_card=card,
        request_context_builder=CheckedRequests(
            executor.definition, tasks, executor.check_follow_up
        ),
        push_config_store=push_configs,
        push_sender=push_sender,
        validate_input_modes=True,  # a part of a media type the card does not list: -32005
    )
    rpc_path = urlsplit(url).path or "/"
    routes: list[BaseRoute] = [card_route(card, max_age_s=card_max_age_s)]
    if jsonrpc:
        routes += create_jsonrpc_routes(handler, rpc_path)
    if rest:
        routes += create_rest_routes(handler, path_prefix=_rest_path(rpc_path))

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with fleet, push_sender:  # the sender closes first, after the last updates
            if grpc is not None:
                await grpc.serve(handler)
            await executor.recover(tasks, push_sender)  # tasks a previous run left working
            try:
                yield
            finally:
                # gRPC refuses new calls at once; its calls still running end with the rest.
                stopping = asyncio.ensure_future(grpc.stop(GRPC_GRACE_S)) if grpc else None
                await handler.aclose()  # cancels running executions ...
                await executor.aclose()  # ... and whatever fleetmind task is left
                if stopping is not None:
                    await stopping

    return Starlette(
        routes=routes,
        middleware=[
            # The bearer token, then the body size, before the A2A routes see a request.
            Middleware(
                HttpGate,
                token_check=exact_bearer(token) if token is not None else None,
                realm="a2a",
                unauthorized_code=_UNAUTHORIZED,
                max_body_bytes=max_body_bytes,
                public_paths=frozenset({AGENT_CARD_WELL_KNOWN_PATH}),
                error_body=_rest_refusal(rpc_path if jsonrpc else None),
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
    grpc_port: int | None = 0,
    jsonrpc: bool = True,
    rest: bool = True,
    input_modes: Sequence[str] | None = None,
    ready: Callable[[A2AEndpoints], None] | None = None,
) -> None:
    """Serve ``fleet`` as an A2A agent on ``host:port`` until SIGINT or SIGTERM.

    Runs uvicorn (JSON-RPC and HTTP+JSON) and a gRPC server inside the running event loop; the
    fleet is open while they serve, and tasks still running when a signal comes are cancelled
    before this returns.

    Args:
        fleet: The agents to serve (not yet open).
        host: The address to listen on.
        port: The port to listen on (0: any free port).
        token: When given, clients must send it as a bearer token.
        url: The URL clients use (default: ``http://host:port/``).
        name: The card's name.
        description: The card's description.
        grpc_port: The port of the gRPC binding (0: any free port; None: no gRPC).
        jsonrpc: Serve the JSON-RPC binding.
        rest: Serve the HTTP+JSON binding.
        input_modes: The media types a message's parts may have (default: text and JSON).
        ready: Called with the bindings' URLs once the server listens.

    Raises:
        ConfigError: An address cannot be listened on.
    """
    sock = _listen(host, port)
    with contextlib.closing(sock):
        bound_port = sock.getsockname()[1]
        public_url = url or f"http://{_url_host(host)}:{bound_port}/"
        grpc = None
        if grpc_port is not None:
            grpc = GrpcBinding(
                host,
                grpc_port,
                url_host=_url_host(host),
                token_check=exact_bearer(token) if token else None,
                max_message_bytes=MAX_BODY_BYTES,
            )

        def announce() -> None:
            if ready is not None:
                ready(_endpoints(public_url, jsonrpc=jsonrpc, rest=rest, grpc=grpc))

        try:
            app = build_a2a_app(
                fleet,
                url=public_url,
                token=token,
                name=name,
                description=description,
                jsonrpc=jsonrpc,
                rest=rest,
                grpc=grpc,
                input_modes=input_modes,
            )
            server = await _serve(app, sock, announce)
        finally:
            if grpc is not None:  # the port is let go even when the app never started
                await grpc.stop(0)
    if not server.started:
        raise ConfigError(f"the A2A server on {host}:{bound_port} did not start (see its log)")


async def _serve(app: Starlette, sock: socket.socket, ready: Callable[[], None]) -> _Server:
    """Run uvicorn on ``sock`` until SIGINT or SIGTERM; the server, to see if it started."""
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
        ready()
        await server.serve(sockets=[sock])
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
    return server


def _endpoints(
    url: str, *, jsonrpc: bool = True, rest: bool = True, grpc: GrpcBinding | None = None
) -> A2AEndpoints:
    base = url if url.endswith("/") else url + "/"
    return A2AEndpoints(
        jsonrpc=url if jsonrpc else None,
        rest=base + REST_PATH if rest else None,
        grpc=grpc.url if grpc is not None else None,
    )


_REST_STATUS = {401: "UNAUTHENTICATED", 413: "RESOURCE_EXHAUSTED"}
"""The google.rpc status name of each HTTP status the gate answers with."""


def _rest_refusal(rpc_path: str | None) -> ErrorBody:
    """Refusals on every path but the JSON-RPC endpoint's are HTTP+JSON errors: a
    ``google.rpc.Status`` under ``error``, as that binding's clients read them."""

    def body(scope: Scope, refusal: Refusal) -> bytes | None:
        if rpc_path is not None and scope["path"].rstrip("/") == rpc_path.rstrip("/"):
            return None
        status = _REST_STATUS.get(refusal.status, "INVALID_ARGUMENT")
        error = {"code": refusal.status, "status": status, "message": refusal.text}
        return json.dumps({"error": error}).encode()

    return body


def _rest_path(rpc_path: str) -> str:
    """The HTTP+JSON binding's root, below the JSON-RPC endpoint's path."""
    return rpc_path.rstrip("/") + "/" + REST_PATH


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
