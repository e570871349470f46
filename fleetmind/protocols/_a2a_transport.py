"""The wire half of an A2A client: one agent's card, its transport, and the parts it answers with.

:meth:`A2ATransport.connect` reads an agent's card from ``/.well-known/agent-card.json`` and
builds the a2a-sdk client for a transport both sides speak (JSON-RPC, HTTP+JSON or gRPC, in the
order the card lists them); the transport then sends messages, follows or polls remote tasks and
cancels them. A bearer token travels on every binding: as an ``Authorization`` header over HTTP,
as ``authorization`` metadata over gRPC. What a remote task's end means for a fleet — an
output, a failure, a question — is the agent's business: see
:class:`fleetmind.agents.remote.A2AAgent`.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from typing import Any, cast
from urllib.parse import urlsplit

import grpc
import grpc.aio
import httpx
from a2a.client import (
    A2ACardResolver,
    AgentCardResolutionError,
    Client,
    ClientCallContext,
    ClientConfig,
    ClientFactory,
)
from a2a.types import (
    AgentCard,
    Artifact,
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Part,
    SendMessageRequest,
    StreamResponse,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
)
from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH, TransportProtocol
from a2a.utils.errors import A2AError

from fleetmind.errors import ConfigError
from fleetmind.protocols._a2a_values import data_values

log = logging.getLogger("fleetmind.a2a_client")

TERMINAL = frozenset(
    {
        TaskState.TASK_STATE_COMPLETED,
        TaskState.TASK_STATE_FAILED,
        TaskState.TASK_STATE_CANCELED,
        TaskState.TASK_STATE_REJECTED,
    }
)
"""Remote task states after which nothing more happens."""
INTERRUPTED = frozenset({TaskState.TASK_STATE_INPUT_REQUIRED, TaskState.TASK_STATE_AUTH_REQUIRED})
"""Remote task states that wait for something only the caller can give."""
BINDINGS = (TransportProtocol.JSONRPC, TransportProtocol.HTTP_JSON, TransportProtocol.GRPC)
"""The A2A bindings this client speaks."""


class A2ATransport:
    """One A2A agent's endpoint: its card and an a2a-sdk client for it.

    Make one with :meth:`connect`; close it with :meth:`aclose`. The readers of what an agent
    answers (task states, parts, artifacts) come with it, so a user of the transport needs no
    other import.

    Args:
        card: The agent's card.
        client: An A2A client for it.
        url: Its base URL.
        http: The HTTP client under ``client``, closed with the transport.
    """

    TERMINAL = TERMINAL
    INTERRUPTED = INTERRUPTED

    def __init__(
        self,
        card: AgentCard,
        client: Client,
        *,
        url: str,
        http: httpx.AsyncClient | None = None,
        token: str | None = None,
    ) -> None:
        self.card = card
        self.url = url
        self.binding = next(
            (
                i.protocol_binding
                for i in card.supported_interfaces
                if i.protocol_binding in BINDINGS
            ),
            TransportProtocol.JSONRPC,
        )
        """The binding spoken to the agent: the first of the card's that this client has."""
        self._client = client
        self._http = http
        # Sent with every call, whatever the binding (the HTTP client also has it as a header).
        self._parameters = {"Authorization": f"Bearer {token}"} if token else None

    @classmethod
    async def connect(
        cls, url: str, *, token: str | None = None, timeout_s: float = 30.0
    ) -> A2ATransport:
        """Read the card of the agent at ``url`` and build a client for it.

        Raises:
            ConfigError: The URL is not an http(s) URL, serves no A2A agent card, or the agent
                speaks no transport this client has.
        """
        base = base_url(url)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        # Streams stay open as long as the remote agent works, so reads have no timeout; every
        # other call passes its own (see call_context).
        timeout = httpx.Timeout(timeout_s, read=None)
        http = httpx.AsyncClient(headers=headers, timeout=timeout, follow_redirects=True)
        try:
            card = await fetch_card(http, base, timeout_s)
            streaming = card.capabilities.streaming
            config = ClientConfig(
                streaming=streaming,
                polling=not streaming,
                httpx_client=http,
                grpc_channel_factory=grpc_channel,
                supported_protocol_bindings=list(BINDINGS),
            )
            try:
                client = ClientFactory(config).create(card)
            except ValueError as exc:
                offered = ", ".join(i.protocol_binding for i in card.supported_interfaces)
                raise ConfigError(
                    f"A2A agent {card.name!r} at {base} offers no transport fleetmind speaks "
                    f"(it offers {offered or 'none'}; fleetmind speaks {', '.join(BINDINGS)})"
                ) from exc
        except BaseException:
            await http.aclose()
            raise
        return cls(card, client, url=base, http=http, token=token)

    @property
    def streaming(self) -> bool:
        """Whether the remote agent streams its progress (its card says so)."""
        return self.card.capabilities.streaming

    def send(
        self, request: SendMessageRequest, *, timeout_s: float | None
    ) -> AsyncGenerator[StreamResponse, None]:
        """Send a message; the events that follow (one, without streaming). Close the
        generator to end the HTTP stream."""
        context = call_context(timeout_s, self._parameters)
        return cast(
            AsyncGenerator[StreamResponse, None],
            self._client.send_message(request, context=context),
        )

    async def get_task(self, task_id: str, *, timeout_s: float) -> Task:
        """The remote task as it stands now."""
        return await self._client.get_task(
            GetTaskRequest(id=task_id), context=call_context(timeout_s, self._parameters)
        )

    async def cancel_task(self, task_id: str, *, timeout_s: float) -> None:
        """Ask the agent to cancel a remote task."""
        await self._client.cancel_task(
            CancelTaskRequest(id=task_id), context=call_context(timeout_s, self._parameters)
        )

    async def aclose(self) -> None:
        """Close the client and the HTTP connection under it."""
        try:
            await self._client.close()
        except A2AError as exc:
            log.debug("closing the A2A client of %s: %s", self.url, exc)
        finally:
            if self._http is not None:
                await self._http.aclose()

    @staticmethod
    def merge_artifact(artifacts: dict[str, Artifact], update: TaskArtifactUpdateEvent) -> None:
        """See :func:`merge_artifact`."""
        merge_artifact(artifacts, update)

    @staticmethod
    def message_text(message: Message) -> str:
        """See :func:`message_text`."""
        return message_text(message)

    @staticmethod
    def parts_value(parts: Sequence[Part]) -> Any:
        """See :func:`parts_value`."""
        return parts_value(parts)

    @staticmethod
    def one_line(text: str, limit: int = 300) -> str:
        """See :func:`one_line`."""
        return one_line(text, limit)

    @staticmethod
    def grpc_status(exc: BaseException) -> str | None:
        """See :func:`grpc_status`."""
        return grpc_status(exc)


def call_context(
    timeout_s: float | None, parameters: Mapping[str, str] | None = None
) -> ClientCallContext:
    """The per-call settings of one request that may take at most ``timeout_s`` (None: no
    limit), with ``parameters`` sent as headers (HTTP) or metadata (gRPC)."""
    return ClientCallContext(
        timeout=timeout_s, service_parameters=dict(parameters) if parameters else None
    )


def grpc_channel(url: str) -> grpc.aio.Channel:
    """A gRPC channel to an A2A agent's gRPC interface: ``host:port`` (as servers commonly
    declare it) or ``http://host:port`` without TLS, ``https://host[:port]`` with TLS."""
    parsed = urlsplit(url if "://" in url else f"//{url}")
    if not parsed.hostname:
        raise ConfigError(f"{url!r} is not a gRPC address (host:port)")
    secure = parsed.scheme == "https"
    port = parsed.port or (443 if secure else 80)
    host = f"[{parsed.hostname}]" if ":" in parsed.hostname else parsed.hostname
    target = f"{host}:{port}"
    if secure:
        return grpc.aio.secure_channel(target, grpc.ssl_channel_credentials())
    return grpc.aio.insecure_channel(target)


def grpc_status(exc: BaseException) -> str | None:
    """The gRPC status name (``UNAUTHENTICATED``, ``UNAVAILABLE``, ...) of a failed gRPC call
    behind ``exc``, or None when ``exc`` did not come from one."""
    cause = exc.__cause__
    if isinstance(cause, grpc.aio.AioRpcError):
        return str(cause.code().name)
    return None


def base_url(url: str) -> str:
    """An A2A agent's base URL from what a user gave (the card's own URL is accepted too).

    Raises:
        ConfigError: Not an http(s) URL.
    """
    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError) as exc:
        raise ConfigError(f"{url!r} is not a valid URL: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(f"{url!r} is not an http(s) URL of an A2A agent")
    text = str(parsed).rstrip("/")
    return text.removesuffix(AGENT_CARD_WELL_KNOWN_PATH).rstrip("/")


async def fetch_card(http: httpx.AsyncClient, base: str, timeout_s: float) -> AgentCard:
    """The agent card served at ``base``.

    Raises:
        ConfigError: There is none, or what is there is not a usable card (one line saying why).
    """
    where = base + AGENT_CARD_WELL_KNOWN_PATH
    try:
        card = await A2ACardResolver(http, base).get_agent_card(http_kwargs={"timeout": timeout_s})
    except AgentCardResolutionError as exc:
        cause = exc.__cause__
        if exc.status_code is not None:
            why = f"HTTP {exc.status_code}"
        elif isinstance(cause, httpx.TimeoutException):
            why = f"no answer within {timeout_s:g} s"
        elif isinstance(cause, httpx.RequestError):
            why = f"cannot connect ({one_line(str(cause)) or type(cause).__name__})"
        elif isinstance(cause, json.JSONDecodeError):
            why = "the answer is not JSON"
        else:
            why = "not an A2A agent card"
        raise ConfigError(f"no A2A agent card at {where}: {why}") from exc
    if not card.name or not card.supported_interfaces:
        missing = "name" if not card.name else "interface URL"
        raise ConfigError(f"{where} is not an A2A agent card: it has no {missing}")
    return card


# Parts ----------------------------------------------------------------------------------------


def merge_artifact(artifacts: dict[str, Artifact], update: TaskArtifactUpdateEvent) -> None:
    """Apply an artifact update (a new artifact, a replacement, or parts appended)."""
    key = update.artifact.artifact_id or str(len(artifacts))
    current = artifacts.get(key)
    if update.append and current is not None:
        current.parts.extend(update.artifact.parts)
        return
    copy = Artifact()
    copy.CopyFrom(update.artifact)
    artifacts[key] = copy


def message_text(message: Message) -> str:
    """A message for people: its text parts, else its data as JSON; on one line."""
    texts = [p.text for p in message.parts if p.WhichOneof("content") == "text" and p.text]
    if texts:
        return one_line(" ".join(texts))
    data = data_values(message.parts)
    return json.dumps(data[0] if len(data) == 1 else data) if data else ""


def parts_value(parts: Sequence[Part]) -> Any:
    """The output carried by some parts: their data if any, else their text, else their files."""
    data = data_values(parts)
    if data:
        return data[0] if len(data) == 1 else data
    texts = [p.text for p in parts if p.WhichOneof("content") == "text"]
    if texts:
        return "\n".join(texts)
    files = [_file(p) for p in parts if p.WhichOneof("content") in ("url", "raw")]
    if files:
        return files[0] if len(files) == 1 else files
    return None


def _file(part: Part) -> dict[str, str]:
    out = {"media_type": part.media_type, "filename": part.filename}
    if part.WhichOneof("content") == "url":
        out["url"] = part.url
    else:
        out["base64"] = base64.b64encode(part.raw).decode("ascii")
    return {k: v for k, v in out.items() if v}


def one_line(text: str, limit: int = 300) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    lines: Iterable[str] = (line.strip() for line in text.strip().splitlines())
    joined = " ".join(line for line in lines if line)
    return joined if len(joined) <= limit else joined[: limit - 1] + "…"
