"""`fleetmind a2a check URL`: a user's first look at any A2A agent, on one screen.

The agent card is fetched and read (its caching headers, bindings, capabilities, security),
then every binding the card declares gets one small message, and a streamed one when the card
offers streaming, so that a binding which is declared but does not answer shows up by name.
What is wrong is said in plain words. Only typer and the standard library load with this
module; httpx and the A2A SDK load when the command runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast
from urllib.parse import urlsplit

import typer

from fleetmind.cli._check_report import CheckReport, timed
from fleetmind.cli._help import examples
from fleetmind.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    import httpx
    from a2a.client import Client, ClientCallContext
    from a2a.types import AgentCard, AgentInterface, SendMessageRequest, StreamResponse, Task

CARD_PATH = "/.well-known/agent-card.json"

BINDING_NAMES = {"JSONRPC": "JSON-RPC", "HTTP+JSON": "HTTP+JSON", "GRPC": "gRPC"}
"""The bindings of A2A 1.0, as people write them."""

_FINAL_STATES = {"completed", "failed", "canceled", "rejected"}
_PAUSED_STATES = {"input-required", "auth-required"}

EXAMPLES = examples(
    "fleetmind a2a check http://127.0.0.1:8790",
    "fleetmind a2a check https://agents.example.com/bot --token-file t.txt --json",
)

TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        metavar="TOKEN",
        envvar="FLEETMIND_CHECK_TOKEN",
        help="A bearer token to send.",
        show_default=False,
    ),
]
TokenFileOption = Annotated[
    Path | None,
    typer.Option(
        "--token-file",
        metavar="FILE",
        help="A file holding the bearer token to send.",
        show_default=False,
    ),
]
TimeoutOption = Annotated[
    float,
    typer.Option("--timeout", metavar="SECONDS", min=0.1, help="How long to wait for each answer."),
]
CheckJson = Annotated[bool, typer.Option("--json", help="Print the findings as one JSON document.")]


def check(
    url: Annotated[
        str,
        typer.Argument(
            metavar="URL",
            help="The agent's base URL, or its card's URL.",
            show_default=False,
        ),
    ],
    token: TokenOption = None,
    token_file: TokenFileOption = None,
    message: Annotated[
        str, typer.Option("--message", metavar="TEXT", help="The text of the test message.")
    ] = "ping",
    timeout: TimeoutOption = 60.0,
    as_json: CheckJson = False,
) -> None:
    """Check an A2A agent's card and each binding.

    Fetches the agent card, lists its bindings, capabilities and security, then sends one small
    message over each binding (and a streamed one when the card offers streaming), with the
    latency and the state of each answer. Exit 0 when every check passed, 1 when one failed.
    """
    base, card_url = card_location(url)
    secret = bearer_token(token, token_file)
    report = asyncio.run(probe_a2a(base, card_url, secret, message, timeout))
    raise typer.Exit(report.print(as_json=as_json))


def card_location(url: str) -> tuple[str, str]:
    """The agent's base URL and its card's URL, from either.

    Raises:
        ConfigError: ``url`` is not an http(s) URL with a host.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"an A2A agent's URL starts with http:// or https://; got {url!r}")
    try:
        parts.port  # noqa: B018 - raises for a port that is not a number
    except ValueError as exc:
        raise ConfigError(f"the URL {url!r} has a bad port: {exc}") from exc
    text = url.strip()
    if parts.path.endswith(".json"):
        return text.rsplit("/", 1)[0].removesuffix("/.well-known") + "/", text
    base = text if text.endswith("/") else text + "/"
    return base, base.rstrip("/") + CARD_PATH


def bearer_token(token: str | None, token_file: Path | None) -> str | None:
    """The token to send: ``--token``, or the one in ``--token-file``, or none."""
    from fleetmind.cli._tokens import read_token_file

    if token is not None and token_file is not None:
        raise ConfigError("give --token or --token-file, not both")
    if token_file is not None:
        return read_token_file(token_file)
    if token is not None and (not token.strip() or any(c.isspace() for c in token.strip())):
        raise ConfigError("--token must be one word")
    return token.strip() if token is not None else None


# The probe ----------------------------------------------------------------------------------


async def probe_a2a(
    base: str, card_url: str, token: str | None, text: str, wait_s: float
) -> CheckReport:
    """Fetch the card at ``card_url``, then try every binding it declares."""
    import httpx
    from a2a.utils.constants import PROTOCOL_VERSION_CURRENT, VERSION_HEADER

    from fleetmind.cli._wait import waiting

    report = CheckReport("A2A agent", base)
    headers = {VERSION_HEADER: PROTOCOL_VERSION_CURRENT}
    async with httpx.AsyncClient(
        timeout=httpx.Timeout(wait_s), headers=headers, follow_redirects=True
    ) as http:
        with waiting(f"fetching the agent card at {card_url}"):
            card = await _fetch_card(http, card_url, token, report)
        if card is None:
            return report
        _describe_card(card, report)
        interfaces = list(card.supported_interfaces)
        if not interfaces:
            report.failed(
                "bindings",
                "none declared",
                "the card declares no binding (supportedInterfaces is empty): "
                "no client can reach this agent",
            )
            return report
        if card.security_requirements and token is None:
            for interface in interfaces:
                report.skipped(_binding(interface), "not tried: the agent needs a token")
            report.problems.append(
                f"the agent needs a bearer token ({_schemes(card)}): give it with --token "
                "or --token-file"
            )
            return report
        for interface in interfaces:
            label = _binding(interface)
            with waiting(f"sending a message over {label}"):
                sent = await _round_trip(http, card, interface, token, text, wait_s, report)
            if sent and card.capabilities.streaming:
                with waiting(f"streaming a message over {label}"):
                    await _round_trip(
                        http, card, interface, token, text, wait_s, report, streaming=True
                    )
    return report


async def _fetch_card(
    http: httpx.AsyncClient, card_url: str, token: str | None, report: CheckReport
) -> AgentCard | None:
    """The card, or None after recording why there is none."""
    import httpx
    from a2a.client.card_resolver import parse_agent_card
    from google.protobuf.json_format import ParseError

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with timed() as took:
        try:
            response = await http.get(card_url, headers=headers)
        except httpx.TimeoutException:
            response = None
            reason = f"no answer within {http.timeout.read:g} s"
        except httpx.HTTPError as exc:
            response = None
            reason = network_reason(exc)
    report.data["card"] = {"url": card_url}
    if response is None:
        report.failed(
            "card", reason, f"the agent card at {card_url} is unreachable: {reason}", took.ms
        )
        return None
    info = report.data["card"]
    info.update(
        status=response.status_code,
        etag=response.headers.get("etag"),
        cache_control=response.headers.get("cache-control"),
        last_modified=response.headers.get("last-modified"),
    )
    status = f"HTTP {response.status_code}"
    if response.status_code != 200:
        if response.status_code in (404, 405):
            hint = f"there is no agent card at {card_url}: this is not an A2A agent, or not its URL"
        elif response.status_code in (401, 403) and token is None:
            hint = f"the agent card at {card_url} needs a token ({status}): give it with --token"
        else:
            hint = f"the agent card at {card_url} is refused: {status}"
        report.failed("card", status, hint, took.ms)
        return None
    try:
        document = response.json()
    except ValueError:
        kind = response.headers.get("content-type", "no content type")
        report.failed(
            "card",
            f"{status}, not JSON ({kind})",
            f"the agent card at {card_url} is not JSON ({kind}): this is not an A2A agent",
            took.ms,
        )
        return None
    try:
        card = parse_agent_card(document)
    except (ParseError, TypeError, ValueError) as exc:
        reason = " ".join(str(exc).split())[:300]
        report.failed(
            "card", f"{status}, invalid card", f"the agent card is not valid: {reason}", took.ms
        )
        return None
    missing = [key for key in ("name", "version") if not getattr(card, key)]
    if missing:
        report.failed(
            "card",
            f"{status}, incomplete card",
            f"the agent card has no {' or '.join(missing)}",
            took.ms,
        )
        return card
    report.ok("card", f"{status}, a valid agent card", took.ms)
    return card


def _describe_card(card: AgentCard, report: CheckReport) -> None:
    """What the card says about the agent: facts for the screen, data for JSON."""
    from google.protobuf.json_format import MessageToDict

    info = report.data["card"]
    versions = sorted({i.protocol_version or "unstated" for i in card.supported_interfaces})
    report.fact("agent", f"{card.name} {card.version}".strip())
    if card.description:
        report.fact("about", _cut(card.description, 100))
    report.fact("protocol", ", ".join(versions) or "unstated")
    caching = [
        f"ETag {info['etag']}" if info.get("etag") else "no ETag",
        f"Cache-Control {info['cache_control']}"
        if info.get("cache_control")
        else "no Cache-Control",
    ]
    if info.get("last_modified"):
        caching.append(f"Last-Modified {info['last_modified']}")
    report.fact("caching", ", ".join(caching))
    for n, interface in enumerate(card.supported_interfaces):
        version = f" (protocol {interface.protocol_version})" if interface.protocol_version else ""
        report.fact("bindings" if n == 0 else "", f"{_binding(interface)} {interface.url}{version}")
    caps = card.capabilities
    words = [
        f"streaming {'yes' if caps.streaming else 'no'}",
        f"push notifications {'yes' if caps.push_notifications else 'no'}",
        f"extended card {'yes' if caps.extended_agent_card else 'no'}",
    ]
    if caps.extensions:
        words.append("extensions: " + ", ".join(e.uri for e in caps.extensions))
    report.fact("capabilities", ", ".join(words))
    report.fact("security", _schemes(card) + (", required" if card.security_requirements else ""))
    skills = [s.id or s.name for s in card.skills]
    shown = ", ".join(skills[:8]) + (", ..." if len(skills) > 8 else "")
    report.fact("skills", f"{len(skills)}: {shown}" if skills else "none")
    info.update(
        name=card.name,
        version=card.version,
        protocol_versions=versions,
        bindings=[
            {
                "binding": i.protocol_binding,
                "url": i.url,
                "protocol_version": i.protocol_version,
            }
            for i in card.supported_interfaces
        ],
        capabilities={
            "streaming": caps.streaming,
            "push_notifications": caps.push_notifications,
            "extended_agent_card": caps.extended_agent_card,
        },
        security_schemes=MessageToDict(card)["securitySchemes"] if card.security_schemes else {},
        security_required=bool(card.security_requirements),
        skills=skills,
    )


def _schemes(card: AgentCard) -> str:
    """The card's security schemes in words: ``bearer (HTTP Bearer)``."""
    if not card.security_schemes:
        return "none"
    words = []
    for name, scheme in card.security_schemes.items():
        kind = scheme.WhichOneof("scheme")
        if kind == "http_auth_security_scheme":
            what = f"HTTP {scheme.http_auth_security_scheme.scheme or 'auth'}"
        elif kind == "api_key_security_scheme":
            key = scheme.api_key_security_scheme
            what = f"API key in {key.location or 'a'} {key.name or 'parameter'}"
        elif kind == "oauth2_security_scheme":
            what = "OAuth 2"
        elif kind == "open_id_connect_security_scheme":
            what = "OpenID Connect"
        elif kind == "mtls_security_scheme":
            what = "mutual TLS"
        else:
            what = "unknown kind"
        words.append(f"{name} ({what})")
    return ", ".join(words)


# One round trip on one binding --------------------------------------------------------------


async def _round_trip(
    http: httpx.AsyncClient,
    card: AgentCard,
    interface: AgentInterface,
    token: str | None,
    text: str,
    wait_s: float,
    report: CheckReport,
    *,
    streaming: bool = False,
) -> bool:
    """Send ``text`` over one binding and record the answer; whether the binding answered."""
    from a2a.client import ClientCallContext

    label = _binding(interface)
    name = f"{label} {'stream' if streaming else 'send'}"
    where = f"the {label} binding at {interface.url}"
    details: dict[str, Any] = {"binding": interface.protocol_binding, "url": interface.url}
    if not interface.url:
        report.failed(
            name, "no URL", f"the card declares the {label} binding without a URL", **details
        )
        return False
    try:
        client = _client_for(card, interface, http, streaming=streaming)
    except (ValueError, ImportError) as exc:
        reason = " ".join(str(exc).split())
        report.skipped(name, f"fleetmind cannot speak this binding: {reason}", **details)
        return False
    auth = {"Authorization": f"Bearer {token}"} if token else None
    context = ClientCallContext(timeout=wait_s, service_parameters=auth)
    events = 0
    first_ms: float | None = None
    task: Task | None = None
    answer = status_text = ""
    state = "unknown"
    start = time.perf_counter()
    with timed() as took:
        try:
            async with (
                asyncio.timeout(wait_s),
                contextlib.aclosing(_events(client, text, context)) as stream,
            ):
                async for event in stream:
                    events += 1
                    if first_ms is None:
                        first_ms = (time.perf_counter() - start) * 1e3
                    kind = event.WhichOneof("payload")
                    if kind == "message":
                        state, answer = "message", _parts_text(event.message.parts)
                        break
                    if kind == "task":
                        task = event.task
                        state = _state(task.status.state)
                        answer = _task_text(task) or answer
                    elif kind == "status_update":
                        state = _state(event.status_update.status.state)
                        said = _parts_text(event.status_update.status.message.parts)
                        status_text = said or status_text
                    elif kind == "artifact_update":
                        answer = _parts_text(event.artifact_update.artifact.parts) or answer
                    if state in _FINAL_STATES or state in _PAUSED_STATES:
                        break
        except Exception as exc:  # every failure is reported, none is raised
            failure: BaseException | None = exc
        else:
            failure = None
    if failure is not None:
        line, problem = _failure(failure, where, token, wait_s)
        report.failed(name, line, problem, took.ms, **details)
        await _close(client)
        return False
    if task is not None and state not in _FINAL_STATES and task.id:
        await _cancel(client, task.id, context)
    await _close(client)
    answer = answer or status_text
    said = f", answered {_cut(answer, 50)!r}" if answer else ""
    line = f"answered with a message{said}" if state == "message" else f"task {state}{said}"
    if streaming:
        first = f", first after {first_ms:.0f} ms" if first_ms is not None else ""
        line += f" ({events} event{'s' if events != 1 else ''}{first})"
    data = details | {"state": state, "events": events}
    if state == "unknown":
        report.failed(
            name, "no task or message in the answer", f"{where} gave an empty answer", took.ms
        )
        return False
    report.ok(name, line, took.ms, **data)
    return True


def _client_for(
    card: AgentCard, interface: AgentInterface, http: httpx.AsyncClient, *, streaming: bool
) -> Client:
    """An SDK client that speaks exactly this interface of the card."""
    from a2a.client import ClientConfig, ClientFactory
    from a2a.types import AgentCard

    only = AgentCard()
    only.CopyFrom(card)
    del only.supported_interfaces[:]
    only.supported_interfaces.append(interface)
    config = ClientConfig(
        streaming=streaming,
        httpx_client=http,
        grpc_channel_factory=_grpc_channel,
        supported_protocol_bindings=[interface.protocol_binding],
    )
    return ClientFactory(config).create(only)


def _grpc_channel(url: str) -> Any:
    """A gRPC channel to a card's gRPC URL (``host:port``, or with a scheme)."""
    import grpc

    parts = urlsplit(url if "://" in url else f"grpc://{url}")
    target = parts.netloc or url
    if parts.scheme in ("https", "grpcs"):
        return grpc.aio.secure_channel(target, grpc.ssl_channel_credentials())
    return grpc.aio.insecure_channel(target)


def _events(
    client: Client, text: str, context: ClientCallContext
) -> AsyncGenerator[StreamResponse, None]:
    """The answer's events (the SDK's client yields them from an async generator)."""
    return cast(
        "AsyncGenerator[StreamResponse, None]", client.send_message(_request(text), context=context)
    )


def _request(text: str) -> SendMessageRequest:
    """A small user message holding ``text``."""
    from a2a.types import Message, Part, Role, SendMessageRequest

    message = Message(message_id=uuid.uuid4().hex, role=Role.ROLE_USER, parts=[Part(text=text)])
    return SendMessageRequest(message=message)


async def _cancel(client: Client, task_id: str, context: ClientCallContext) -> None:
    """Leave nothing waiting or running behind the check (best effort)."""
    from a2a.types import CancelTaskRequest

    with contextlib.suppress(Exception):
        async with asyncio.timeout(5):
            await client.cancel_task(CancelTaskRequest(id=task_id), context=context)


async def _close(client: Client) -> None:
    with contextlib.suppress(Exception):
        await client.close()


def _failure(exc: BaseException, where: str, token: str | None, timeout: float) -> tuple[str, str]:
    """The line and the problem, in plain words, for a round trip that failed."""
    from a2a.client import A2AClientTimeoutError
    from a2a.utils.errors import A2AError

    status, network, rpc_code = _causes(exc)
    if isinstance(exc, TimeoutError | A2AClientTimeoutError) or rpc_code == "DEADLINE_EXCEEDED":
        return f"no answer within {timeout:g} s", f"{where} did not answer within {timeout:g} s"
    if status in (401, 403) or rpc_code in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
        what = f"HTTP {status}" if status else rpc_code
        if token is None:
            return f"{what}: needs a bearer token", (
                f"{where} needs a bearer token ({what}): give it with --token or --token-file"
            )
        return f"{what}: token refused", f"{where} refused the token ({what})"
    if network is not None:
        return f"no answer: {network}", f"{where} does not answer: {network}"
    if rpc_code == "UNAVAILABLE":
        return "no answer: unavailable", f"{where} does not answer (gRPC UNAVAILABLE)"
    if status is not None:
        return f"HTTP {status}", f"{where} answered HTTP {status}"
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    message = _cut(" ".join(str(message).split()), 200)
    if isinstance(exc, A2AError):
        return f"error: {message}", f"{where} answered with an error: {message}"
    return f"failed: {message}", f"{where} failed: {message}"


def _causes(exc: BaseException) -> tuple[int | None, str | None, str | None]:
    """From an exception's chain: the HTTP status, a network failure, a gRPC status code."""
    import httpx

    status = network = rpc_code = None
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, httpx.HTTPStatusError):
            status = current.response.status_code
        elif isinstance(current, httpx.TimeoutException):
            pass
        elif isinstance(current, httpx.HTTPError) and network is None:
            network = network_reason(current)
        code = getattr(current, "code", None)
        if callable(code) and rpc_code is None:
            with contextlib.suppress(Exception):
                rpc_code = str(code().name)
        current = current.__cause__ or current.__context__
    return status, network, rpc_code


def network_reason(exc: BaseException) -> str:
    """``connection refused``, ``unknown host``, ... for a transport failure."""
    import errno
    import socket

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, socket.gaierror):
            return "unknown host"
        if isinstance(current, OSError) and current.errno is not None:
            if current.errno == errno.ECONNREFUSED:
                return "connection refused"
            return (current.strerror or str(current)).lower()
        current = current.__cause__ or current.__context__
    text = " ".join(str(exc).split())
    if "certificate" in text.lower():
        return f"TLS certificate problem: {_cut(text, 100)}"
    return _cut(text, 120) or type(exc).__name__


# Words --------------------------------------------------------------------------------------


def _binding(interface: AgentInterface) -> str:
    return BINDING_NAMES.get(interface.protocol_binding, interface.protocol_binding or "?")


def _state(value: int) -> str:
    """``completed``, ``input-required``, ... for a TaskState."""
    from a2a.types import TaskState

    return TaskState.Name(value).removeprefix("TASK_STATE_").lower().replace("_", "-")


def _task_text(task: Task) -> str:
    for artifact in reversed(task.artifacts):
        text = _parts_text(artifact.parts)
        if text:
            return text
    return _parts_text(task.status.message.parts)


def _parts_text(parts: Any) -> str:
    """The text of message parts: text as it is, data as JSON, files by name."""
    from google.protobuf.json_format import MessageToJson

    pieces = []
    for part in parts:
        kind = part.WhichOneof("content")
        if kind == "text":
            pieces.append(part.text)
        elif kind == "data":
            pieces.append(" ".join(MessageToJson(part.data).split()))
        elif kind in ("url", "raw"):
            pieces.append(f"<file {part.filename or part.media_type or kind}>")
    return " ".join(" ".join(pieces).split())


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
