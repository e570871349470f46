"""Any A2A agent joins a fleet: its Agent Card becomes a profile, subtasks become A2A tasks.

```python
agent = await connect_a2a_agent("https://translator.example.com", token=TOKEN)
fleet.add(agent)
fleet.on_close(agent.aclose)
```

:func:`connect_a2a_agent` reads the agent's card from ``/.well-known/agent-card.json`` and returns
an :class:`A2AAgent`, which the router and the engine treat like any local agent. Each subtask is
sent as one A2A message (a text part with the description, a data part with the inputs). When
the card says the agent streams, ``SendStreamingMessage`` carries its status updates to
``ctx.progress`` as they happen; otherwise ``SendMessage`` returns at once and ``GetTask`` polls
until the remote task ends. Cancelling the subtask cancels the remote task too.

The remote task's end maps onto fleetmind's errors: ``completed`` is the output, ``failed`` and
``rejected`` raise :class:`SubtaskFailed`, ``input-required`` raises :class:`InputRequired` with
the remote agent's question, ``auth-required`` fails without retries.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
import unicodedata
import uuid
from collections.abc import AsyncGenerator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import httpx
from a2a.client import (
    A2ACardResolver,
    A2AClientError,
    A2AClientTimeoutError,
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
    Role,
    SendMessageRequest,
    StreamResponse,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatus,
)
from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH, TransportProtocol
from a2a.utils.errors import A2AError, InternalError
from google.protobuf import json_format, struct_pb2

from fleetmind._ids import is_valid_id
from fleetmind._task_model import Subtask
from fleetmind.agents._agent import Agent, SubtaskContext
from fleetmind.agents._profile import AgentProfile, Skill, Tier
from fleetmind.errors import ConfigError, InputRequired, SubtaskFailed
from fleetmind.protocols._a2a_values import data_values

log = logging.getLogger("fleetmind.a2a_client")

_TERMINAL = frozenset(
    {
        TaskState.TASK_STATE_COMPLETED,
        TaskState.TASK_STATE_FAILED,
        TaskState.TASK_STATE_CANCELED,
        TaskState.TASK_STATE_REJECTED,
    }
)
_INTERRUPTED = frozenset({TaskState.TASK_STATE_INPUT_REQUIRED, TaskState.TASK_STATE_AUTH_REQUIRED})


# Profile --------------------------------------------------------------------------------------


def profile_from_card(
    card: AgentCard, *, agent_id: str | None = None, tier: Tier | str | None = None
) -> AgentProfile:
    """The fleetmind profile of an A2A agent, read from its Agent Card.

    The card's skills become the profile's skills (with their descriptions, tags and examples;
    a skill's id is added as a tag so that ``skill=`` finds it by id too). The id is a slug of
    the card's name unless ``agent_id`` is given; the tier is ``cloud`` unless ``tier`` says
    otherwise, since a card alone does not tell where the agent runs.

    Raises:
        ConfigError: ``agent_id`` or ``tier`` is not valid.
    """
    if agent_id is not None and not is_valid_id(agent_id):
        raise ConfigError(
            f"agent id {agent_id!r} is not valid: use letters, digits, '.', '_' or '-' "
            "(at most 64, starting with a letter or digit)"
        )
    try:
        the_tier = Tier(tier) if tier is not None else Tier.CLOUD
    except ValueError:
        raise ConfigError(f"unknown tier {tier!r}; use device, edge or cloud") from None
    return AgentProfile(
        id=agent_id or slug(card.name),
        name=card.name,
        description=card.description,
        skills=_skills(card),
        tier=the_tier,
        version=_card_version(card.version),
    )


def slug(name: str) -> str:
    """A valid agent id made from a display name (``"Translate Bot 2"`` -> ``translate-bot-2``)."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    text = re.sub(r"[^a-z0-9._-]+", "-", ascii_name.casefold())
    text = re.sub(r"-{2,}", "-", text).lstrip("._-")[:64].rstrip("._-")
    return text or "a2a-agent"


def _skills(card: AgentCard) -> tuple[Skill, ...]:
    skills: list[Skill] = []
    seen: set[str] = set()
    for remote in card.skills:
        name = remote.name.strip() or remote.id.strip()
        if not name:
            continue
        if name.casefold() in seen:
            # Profiles need unique skill names; a card may repeat a display name.
            name = f"{name} ({remote.id})" if remote.id else f"{name} {len(skills) + 1}"
        seen.add(name.casefold())
        tags = list(dict.fromkeys(t for t in remote.tags if t))
        if remote.id and remote.id != name and remote.id not in tags:
            tags.append(remote.id)
        skills.append(
            Skill(
                name=name,
                description=remote.description,
                tags=tuple(tags),
                examples=tuple(e for e in remote.examples if e),
            )
        )
    return tuple(skills)


def _card_version(version: str) -> int:
    """A card's version as a profile version: its leading (major) number, at least 1."""
    match = re.match(r"\s*v?(\d+)", version)
    return max(int(match.group(1)), 1) if match else 1


# Connecting -----------------------------------------------------------------------------------


async def connect_a2a_agent(
    url: str,
    *,
    token: str | None = None,
    agent_id: str | None = None,
    tier: Tier | str | None = None,
    timeout_s: float = 30.0,
) -> A2AAgent:
    """Read an A2A agent's card and return it as a fleetmind agent.

    Args:
        url: The agent's base URL (its card is at ``URL/.well-known/agent-card.json``; the card's
            own URL is accepted too).
        token: A bearer token sent with every request.
        agent_id: The agent's id in the fleet (default: a slug of the card's name).
        tier: Where the agent runs, for routing constraints (default: ``cloud``).
        timeout_s: How long one request (other than a stream) may take.

    Close the agent with :meth:`A2AAgent.aclose` when done (``Fleet.on_close`` does it for a
    fleet's agents).

    Raises:
        ConfigError: The URL is not an http(s) URL, serves no A2A agent card, or the agent
            speaks no transport this client has.
    """
    base = _base_url(url)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    # Streams stay open as long as the remote agent works, so reads have no timeout; every
    # other call passes its own (see A2AAgent._call).
    timeout = httpx.Timeout(timeout_s, read=None)
    http = httpx.AsyncClient(headers=headers, timeout=timeout, follow_redirects=True)
    try:
        card = await _fetch_card(http, base, timeout_s)
        profile = profile_from_card(card, agent_id=agent_id, tier=tier)
        streaming = card.capabilities.streaming
        config = ClientConfig(
            streaming=streaming,
            polling=not streaming,
            httpx_client=http,
            supported_protocol_bindings=[TransportProtocol.JSONRPC, TransportProtocol.HTTP_JSON],
        )
        try:
            client = ClientFactory(config).create(card)
        except ValueError as exc:
            offered = ", ".join(i.protocol_binding for i in card.supported_interfaces)
            raise ConfigError(
                f"A2A agent {card.name!r} at {base} offers no transport fleetmind speaks "
                f"(it offers {offered or 'none'}; fleetmind speaks JSONRPC and HTTP+JSON)"
            ) from exc
    except BaseException:
        await http.aclose()
        raise
    return A2AAgent(card, client, url=base, profile=profile, http=http, timeout_s=timeout_s)


def _base_url(url: str) -> str:
    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError) as exc:
        raise ConfigError(f"{url!r} is not a valid URL: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(f"{url!r} is not an http(s) URL of an A2A agent")
    text = str(parsed).rstrip("/")
    return text.removesuffix(AGENT_CARD_WELL_KNOWN_PATH).rstrip("/")


async def _fetch_card(http: httpx.AsyncClient, base: str, timeout_s: float) -> AgentCard:
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
            why = f"cannot connect ({_one_line(str(cause)) or type(cause).__name__})"
        elif isinstance(cause, json.JSONDecodeError):
            why = "the answer is not JSON"
        else:
            why = "not an A2A agent card"
        raise ConfigError(f"no A2A agent card at {where}: {why}") from exc
    if not card.name or not card.supported_interfaces:
        missing = "name" if not card.name else "interface URL"
        raise ConfigError(f"{where} is not an A2A agent card: it has no {missing}")
    return card


# The agent ------------------------------------------------------------------------------------


@dataclass
class _RemoteRun:
    """What is known of one remote task while it runs."""

    task_id: str = ""
    state: int = TaskState.TASK_STATE_UNSPECIFIED
    status: TaskStatus | None = None
    artifacts: dict[str, Artifact] = field(default_factory=dict)
    reply: Message | None = None
    """The answer of an agent that replied with a message instead of a task."""
    reported: set[str] = field(default_factory=set)

    @property
    def finished(self) -> bool:
        return self.reply is not None or self.state in _TERMINAL or self.state in _INTERRUPTED

    @property
    def cancellable(self) -> bool:
        return bool(self.task_id) and self.reply is None and self.state not in _TERMINAL


class A2AAgent(Agent):
    """A remote A2A agent in a fleet; the engine and the router treat it like a local agent.

    Make one with :func:`connect_a2a_agent`, which reads the card and builds the client.

    Args:
        card: The agent's card.
        client: An A2A client for it.
        url: Its base URL (for messages and ``fleetmind a2a list``).
        profile: Its profile (default: :func:`profile_from_card`).
        http: The HTTP client under ``client``, closed with the agent.
        timeout_s: How long one request other than a stream may take.
        poll_interval_s: The longest wait between two ``GetTask`` polls (they start faster).
        cancel_timeout_s: How long cancelling the remote task may hold up our cancellation.
    """

    def __init__(
        self,
        card: AgentCard,
        client: Client,
        *,
        url: str,
        profile: AgentProfile | None = None,
        http: httpx.AsyncClient | None = None,
        timeout_s: float = 30.0,
        poll_interval_s: float = 1.0,
        cancel_timeout_s: float = 5.0,
    ) -> None:
        super().__init__(profile if profile is not None else profile_from_card(card))
        self.card = card
        self.url = url
        self.timeout_s = timeout_s
        self.poll_interval_s = poll_interval_s
        self.cancel_timeout_s = cancel_timeout_s
        self._client = client
        self._http = http
        self._closed = False

    @property
    def streaming(self) -> bool:
        """Whether the remote agent streams its progress (its card says so)."""
        return self.card.capabilities.streaming

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return self._closed

    async def aclose(self) -> None:
        """Close the connection to the remote agent; safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._client.close()
        except A2AError as exc:
            log.debug("closing the A2A client of %s: %s", self.id, exc)
        finally:
            if self._http is not None:
                await self._http.aclose()

    async def __aenter__(self) -> A2AAgent:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def run(self, subtask: Subtask, ctx: SubtaskContext) -> Any:
        """Send the subtask to the remote agent and wait for the remote task to end."""
        if self._closed:
            raise SubtaskFailed(f"A2A agent {self.id!r} is closed", retryable=False)
        request = self._request(subtask, ctx)
        run = _RemoteRun()
        try:
            try:
                await self._send(request, run, ctx)
                await self._poll(run, ctx)
            except asyncio.CancelledError:
                if run.cancellable:
                    # Our cancellation must reach the remote agent even though we are being
                    # cancelled ourselves, so the request is shielded (and bounded in time).
                    await asyncio.shield(self._cancel_remote(run.task_id))
                raise
        except (A2AError, httpx.HTTPError) as exc:
            raise self._failure(exc, run) from exc
        except (json_format.ParseError, ValueError) as exc:
            raise SubtaskFailed(
                f"A2A agent {self.id!r} at {self.url} sent a malformed answer: "
                f"{_one_line(str(exc))}",
                details={"a2a_url": self.url},
            ) from exc
        return self._outcome(run)

    # Sending ----------------------------------------------------------------------------------

    def _request(self, subtask: Subtask, ctx: SubtaskContext) -> SendMessageRequest:
        try:
            inputs = json.loads(json.dumps(ctx.inputs))
            data = json_format.ParseDict(inputs, struct_pb2.Value())
        except (TypeError, ValueError, json_format.ParseError) as exc:
            raise SubtaskFailed(
                f"the inputs of subtask {subtask.id!r} cannot be sent to A2A agent "
                f"{self.id!r}: {_one_line(str(exc))}",
                retryable=False,
            ) from exc
        text = subtask.description or subtask.skill or subtask.id
        message = Message(
            message_id=uuid.uuid4().hex,
            role=Role.ROLE_USER,
            parts=[Part(text=text), Part(data=data, media_type="application/json")],
        )
        message.metadata.update(
            {
                "fleetmind": {
                    "task_id": ctx.task_id,
                    "subtask_id": subtask.id,
                    "attempt": ctx.attempt,
                }
            }
        )
        return SendMessageRequest(message=message)

    async def _send(
        self, request: SendMessageRequest, run: _RemoteRun, ctx: SubtaskContext
    ) -> None:
        """Send the message; a streaming agent's events are followed until the task ends."""
        context = None if self.streaming else self._call(self.timeout_s)
        # The client's send_message is an async generator: closing it ends the HTTP stream.
        events = cast(
            AsyncGenerator[StreamResponse, None],
            self._client.send_message(request, context=context),
        )
        async with contextlib.aclosing(events) as stream:
            async for event in stream:
                self._apply(event, run, ctx)
                if run.finished:
                    return

    async def _poll(self, run: _RemoteRun, ctx: SubtaskContext) -> None:
        """Ask for the task until it ends (all of a non-streaming run; after a cut stream)."""
        if run.finished:
            return
        if not run.task_id:
            raise SubtaskFailed(f"A2A agent {self.id!r} answered with neither a task nor a message")
        # Quick agents answer within milliseconds: poll soon, then back off.
        delay = min(0.005, self.poll_interval_s)
        while not run.finished:
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.poll_interval_s)
            task = await self._client.get_task(
                GetTaskRequest(id=run.task_id), context=self._call(self.timeout_s)
            )
            self._apply_task(task, run, ctx)

    async def _cancel_remote(self, task_id: str) -> None:
        try:
            async with asyncio.timeout(self.cancel_timeout_s):
                await self._client.cancel_task(
                    CancelTaskRequest(id=task_id), context=self._call(self.cancel_timeout_s)
                )
        except (A2AError, httpx.HTTPError, TimeoutError) as exc:
            # The remote task may have ended meanwhile; nothing more can be done from here.
            log.warning("could not cancel task %s of A2A agent %s: %s", task_id, self.id, exc)

    @staticmethod
    def _call(timeout_s: float) -> ClientCallContext:
        return ClientCallContext(timeout=timeout_s)

    # Receiving --------------------------------------------------------------------------------

    def _apply(self, event: StreamResponse, run: _RemoteRun, ctx: SubtaskContext) -> None:
        match event.WhichOneof("payload"):
            case "task":
                self._apply_task(event.task, run, ctx)
            case "status_update":
                update = event.status_update
                run.task_id = run.task_id or update.task_id
                self._apply_status(update.status, run, ctx)
            case "artifact_update":
                run.task_id = run.task_id or event.artifact_update.task_id
                _merge_artifact(run.artifacts, event.artifact_update)
            case "message":
                run.reply = event.message
            case _:
                log.debug("ignored an empty event from A2A agent %s", self.id)

    def _apply_task(self, task: Task, run: _RemoteRun, ctx: SubtaskContext) -> None:
        run.task_id = task.id or run.task_id
        if task.artifacts:
            run.artifacts = {a.artifact_id or str(i): a for i, a in enumerate(task.artifacts)}
        self._apply_status(task.status, run, ctx)

    def _apply_status(self, status: TaskStatus, run: _RemoteRun, ctx: SubtaskContext) -> None:
        run.state = status.state
        run.status = status
        if status.state in _TERMINAL or status.state in _INTERRUPTED:
            return
        text = _message_text(status.message) if status.HasField("message") else ""
        key = status.message.message_id or text
        if text and key not in run.reported:
            # A poll sees the same status again and again; report each message once.
            run.reported.add(key)
            ctx.progress(text)

    def _outcome(self, run: _RemoteRun) -> Any:
        if run.reply is not None:
            return _parts_value(run.reply.parts)
        said = _message_text(run.status.message) if run.status is not None else ""
        details = {"a2a_task_id": run.task_id, "a2a_url": self.url}
        match run.state:
            case TaskState.TASK_STATE_COMPLETED:
                if run.artifacts:
                    return _parts_value(list(run.artifacts.values())[-1].parts)
                if run.status is not None and run.status.HasField("message"):
                    return _parts_value(run.status.message.parts)
                return None
            case TaskState.TASK_STATE_FAILED:
                raise SubtaskFailed(
                    f"A2A agent {self.id!r} failed: {said or 'it gave no reason'}", details=details
                )
            case TaskState.TASK_STATE_REJECTED:
                raise SubtaskFailed(
                    f"A2A agent {self.id!r} rejected the subtask: {said or 'it gave no reason'}",
                    retryable=False,
                    details=details,
                )
            case TaskState.TASK_STATE_CANCELED:
                raise SubtaskFailed(
                    f"A2A agent {self.id!r} cancelled the task" + (f": {said}" if said else ""),
                    retryable=False,
                    details=details,
                )
            case TaskState.TASK_STATE_INPUT_REQUIRED:
                raise InputRequired(
                    said or f"A2A agent {self.id!r} needs more input", details=details
                )
            case TaskState.TASK_STATE_AUTH_REQUIRED:
                raise SubtaskFailed(
                    f"A2A agent {self.id!r} needs authentication"
                    + (f": {said}" if said else "; check its token"),
                    retryable=False,
                    details=details,
                )
            case state:
                raise SubtaskFailed(
                    f"A2A agent {self.id!r} stopped in state {TaskState.Name(state)}",
                    details=details,
                )

    def _failure(self, exc: A2AError | httpx.HTTPError, run: _RemoteRun) -> SubtaskFailed:
        """A transport or protocol error as one clear line (retryable when another try may help)."""
        who = f"A2A agent {self.id!r} at {self.url}"
        details = {"a2a_url": self.url, **({"a2a_task_id": run.task_id} if run.task_id else {})}
        cause = exc.__cause__ if isinstance(exc, A2AClientError) else exc
        if isinstance(exc, A2AClientTimeoutError) or isinstance(cause, httpx.TimeoutException):
            return SubtaskFailed(f"{who} did not answer in time", details=details)
        if isinstance(cause, httpx.HTTPStatusError):
            code = cause.response.status_code
            if code in (401, 403):
                return SubtaskFailed(
                    f"{who} refused our credentials (HTTP {code}); check its token",
                    retryable=False,
                    details=details,
                )
            return SubtaskFailed(
                f"{who} answered HTTP {code}", retryable=code >= 500, details=details
            )
        if isinstance(cause, httpx.RequestError):
            reason = _one_line(str(cause)) or type(cause).__name__
            return SubtaskFailed(f"{who} is unreachable: {reason}", details=details)
        if isinstance(exc, A2AClientError):
            return SubtaskFailed(f"{who}: {_one_line(str(exc))}", details=details)
        # An error the remote agent answered with (task not found, invalid params, ...).
        return SubtaskFailed(
            f"{who} answered with an error: {_one_line(str(exc)) or type(exc).__name__}",
            retryable=isinstance(exc, InternalError),
            details=details,
        )


# Parts ----------------------------------------------------------------------------------------


def _merge_artifact(artifacts: dict[str, Artifact], update: TaskArtifactUpdateEvent) -> None:
    key = update.artifact.artifact_id or str(len(artifacts))
    current = artifacts.get(key)
    if update.append and current is not None:
        current.parts.extend(update.artifact.parts)
        return
    copy = Artifact()
    copy.CopyFrom(update.artifact)
    artifacts[key] = copy


def _message_text(message: Message) -> str:
    """A message for people: its text parts, else its data as JSON; on one line."""
    texts = [p.text for p in message.parts if p.WhichOneof("content") == "text" and p.text]
    if texts:
        return _one_line(" ".join(texts))
    data = data_values(message.parts)
    return json.dumps(data[0] if len(data) == 1 else data) if data else ""


def _parts_value(parts: Sequence[Part]) -> Any:
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


def _one_line(text: str, limit: int = 300) -> str:
    lines: Iterable[str] = (line.strip() for line in text.strip().splitlines())
    joined = " ".join(line for line in lines if line)
    return joined if len(joined) <= limit else joined[: limit - 1] + "…"
