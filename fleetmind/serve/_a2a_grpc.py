"""The gRPC binding of ``fleetmind a2a serve``: the same request handler, on a port of its own.

gRPC needs HTTP/2, which uvicorn does not speak, so the binding is a ``grpc.aio`` server beside
the HTTP one. Its rules match the HTTP bindings': the bearer token, when given, must come as
``authorization`` metadata (``Bearer <token>``; a call without it ends ``UNAUTHENTICATED``), and a
request message over the size limit ends ``RESOURCE_EXHAUSTED`` before it is parsed.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
import grpc.aio
from a2a.server.request_handlers import GrpcHandler, RequestHandler
from a2a.types import a2a_pb2_grpc

from fleetmind.errors import ConfigError
from fleetmind.serve._http_gate import TokenCheck

if TYPE_CHECKING:
    _Handler: TypeAlias = grpc.RpcMethodHandler[Any, Any]


class GrpcBinding:
    """A gRPC server for one A2A request handler, listening from the moment it is made.

    The port is bound at once, so that the card can name it before the server starts; call
    :meth:`serve` with the handler, then :meth:`stop` when the app stops.

    Args:
        host: The address to listen on.
        port: The port to listen on (0: any free port).
        url_host: The host name clients use (the card's gRPC URL is ``url_host:port``).
        token_check: When given, every call's ``authorization`` metadata must pass it.
        max_message_bytes: Larger request messages are refused.

    Raises:
        ConfigError: The address cannot be listened on.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        url_host: str,
        token_check: TokenCheck | None,
        max_message_bytes: int,
    ) -> None:
        interceptors = [_BearerCheck(token_check)] if token_check is not None else []
        self._server = grpc.aio.server(
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", max_message_bytes),
                # A port another process holds is an error here, not a shared port.
                ("grpc.so_reuseport", 0),
            ],
        )
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if port != 0:
            _check_free(host, port, address)
        try:
            self.port = self._server.add_insecure_port(address)
        except RuntimeError as exc:
            raise ConfigError(f"cannot listen for gRPC on {address}: {exc}") from exc
        if self.port == 0:  # older gRPC releases answer 0 instead of raising
            raise ConfigError(f"cannot listen for gRPC on {address}")
        self.url = f"{url_host}:{self.port}"
        """Where clients reach the service: ``host:port``, the target a gRPC channel takes."""
        self._started = False

    async def serve(self, handler: RequestHandler) -> None:
        """Start answering calls with ``handler``."""
        servicer = GrpcHandler(handler)
        # The SDK's generated gRPC module carries no type hints.
        a2a_pb2_grpc.add_A2AServiceServicer_to_server(servicer, self._server)  # type: ignore[no-untyped-call]
        await self._server.start()
        self._started = True

    async def stop(self, grace_s: float) -> None:
        """Refuse new calls at once; cancel the ones still running after ``grace_s``."""
        if self._started:
            await self._server.stop(grace_s)


class _BearerCheck(grpc.aio.ServerInterceptor):
    """Ends every call whose ``authorization`` metadata fails the token check."""

    def __init__(self, accepts: TokenCheck) -> None:
        self._accepts = accepts

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[_Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> _Handler | None:
        given = [
            value
            for key, value in handler_call_details.invocation_metadata or ()
            if key.lower() == "authorization"
        ]
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        if len(given) == 1 and self._accepts(_as_bytes(given[0])):
            return handler
        reason = "missing bearer token" if not given else "wrong bearer token"
        return _refusal(handler, f"Unauthorized: {reason}")


def _refusal(handler: _Handler, text: str) -> _Handler:
    """A handler of the same kind as ``handler`` that ends the call ``UNAUTHENTICATED``."""

    async def refuse(_request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, text)

    make = (
        grpc.unary_stream_rpc_method_handler
        if handler.response_streaming
        else grpc.unary_unary_rpc_method_handler
    )
    return make(
        refuse,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _as_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _check_free(host: str, port: int, address: str) -> None:
    """Refuse a taken port in plain words before gRPC tries it (gRPC's core would also print
    its own error line on stderr, beside fleetmind's)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As gRPC does: a port left in TIME_WAIT is free, one that something listens on is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"cannot listen for gRPC on {address}: {exc.strerror or exc}"
            ) from exc
