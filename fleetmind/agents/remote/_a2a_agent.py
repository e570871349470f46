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
``ctx.progress`` as they happen, and each artifact update (a whole artifact, or a chunk of one
streamed with ``append`` and ``lastChunk``) to ``ctx.stream_artifact``, so a fleet that serves
over A2A in front of it streams them on; otherwise ``SendMessage`` returns at once and
``GetTask`` polls until the remote task ends. Cancelling the subtask cancels the remote task too.

An answer is the subtask's output: a plain value (the text, or the data) when that is all the
remote agent sent, else a :class:`~fleetmind.agents.Reply` with its parts as they came (files,
text beside data, parts with metadata), and a direct message (no task) always as a reply with
``as_message`` set, so that a fleet serving over A2A passes it on as it came.

The remote task's end maps onto fleetmind's errors: ``completed`` is the output, ``failed`` and
``rejected`` raise :class:`SubtaskFailed`, ``input-required`` raises :class:`InputRequired` with
the remote agent's question, ``auth-required`` fails without retries. The wire itself (the
card, the client, the parts) is :class:`fleetmind.protocols.A2ATransport`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from a2a.client import A2AClientError, A2AClientTimeoutError, Client
from a2a.types import (
    AgentCard,
    Artifact,
    Message,
    Part,
    Role,
    SendMessageRequest,
    StreamResponse,
    Task,
    TaskState,
    TaskStatus,
)
from a2a.utils.errors import A2AError, ContentTypeNotSupportedError, InternalError
from google.protobuf import json_format, struct_pb2

from fleetmind._task_model import Subtask
from fleetmind.agents import AgentProfile, SubtaskContext, Tier
from fleetmind.agents.remote._a2a_card import profile_from_card
from fleetmind.agents.remote._a2a_parts import parts_from_a2a, reply_from_a2a
from fleetmind.agents.remote._base import RemoteAgent
from fleetmind.errors import InputRequired, SubtaskFailed
from fleetmind.protocols import A2ATransport, plain_json

log = logging.getLogger("fleetmind.a2a_client")

_TERMINAL, _INTERRUPTED = A2ATransport.TERMINAL, A2ATransport.INTERRUPTED
_merge_artifact = A2ATransport.merge_artifact
_message_text = A2ATransport.message_text
_parts_value = A2ATransport.parts_value
_one_line = A2ATransport.one_line
_grpc_status = A2ATransport.grpc_status


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
    transport = await A2ATransport.connect(url, token=token, timeout_s=timeout_s)
    try:
        profile = profile_from_card(transport.card, agent_id=agent_id, tier=tier)
    except BaseException:
        await transport.aclose()
        raise
    return A2AAgent(
        transport.card,
        transport,
        url=transport.url,
        profile=profile,
        timeout_s=timeout_s,
    )


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


class A2AAgent(RemoteAgent):
    """A remote A2A agent in a fleet; the engine and the router treat it like a local agent.

    Make one with :func:`connect_a2a_agent`, which reads the card and builds the client.

    Args:
        card: The agent's card.
        client: An A2A client for it, or a :class:`~fleetmind.protocols.A2ATransport`.
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
        client: Client | A2ATransport,
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
        self._transport = (
            client
            if isinstance(client, A2ATransport)
            else A2ATransport(card, client, url=url, http=http)
        )
        self._closed = False

    @property
    def location(self) -> str:
        """The agent's base URL."""
        return self.url

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
        await self._transport.aclose()

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
                    "taskId": ctx.task_id,
                    "subtaskId": subtask.id,
                    "attempt": ctx.attempt,
                }
            }
        )
        return SendMessageRequest(message=message)

    async def _send(
        self, request: SendMessageRequest, run: _RemoteRun, ctx: SubtaskContext
    ) -> None:
        """Send the message; a streaming agent's events are followed until the task ends."""
        # Closing the events' generator ends the HTTP stream.
        events = self._transport.send(request, timeout_s=None if self.streaming else self.timeout_s)
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
            task = await self._transport.get_task(run.task_id, timeout_s=self.timeout_s)
            self._apply_task(task, run, ctx)

    async def _cancel_remote(self, task_id: str) -> None:
        try:
            async with asyncio.timeout(self.cancel_timeout_s):
                await self._transport.cancel_task(task_id, timeout_s=self.cancel_timeout_s)
        except (A2AError, httpx.HTTPError, TimeoutError) as exc:
            # The remote task may have ended meanwhile; nothing more can be done from here.
            log.warning("could not cancel task %s of A2A agent %s: %s", task_id, self.id, exc)

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
                chunk = event.artifact_update
                run.task_id = run.task_id or chunk.task_id
                _merge_artifact(run.artifacts, chunk)
                # Each update is a chunk: a fleet in front of this agent streams it on.
                ctx.stream_artifact(
                    parts_from_a2a(chunk.artifact.parts),
                    artifact_id=chunk.artifact.artifact_id or "artifact",
                    name=chunk.artifact.name or None,
                    last=chunk.last_chunk,
                    append=chunk.append,
                )
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
        if run.reply is not None:  # a direct message: the fleet sees it as one
            reply = run.reply
            metadata = (
                plain_json(json_format.MessageToDict(reply.metadata))
                if reply.HasField("metadata")
                else {}
            )
            return reply_from_a2a(reply.parts, as_message=True, metadata=metadata)
        said = _message_text(run.status.message) if run.status is not None else ""
        details = {"a2a_task_id": run.task_id, "a2a_url": self.url}
        match run.state:
            case TaskState.TASK_STATE_COMPLETED:
                if run.artifacts:
                    last = list(run.artifacts.values())[-1]
                    if _plain(last.parts):
                        return _parts_value(last.parts)
                    # Files, text beside data, or parts with metadata: kept as they came.
                    return reply_from_a2a(last.parts, status=said or None, name=last.name)
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
        status = _grpc_status(exc)
        if status in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
            return SubtaskFailed(
                f"{who} refused our credentials (gRPC {status}); check its token",
                retryable=False,
                details=details,
            )
        if status == "UNAVAILABLE":
            return SubtaskFailed(f"{who} is unreachable over gRPC", details=details)
        if isinstance(exc, ContentTypeNotSupportedError):
            accepted = ", ".join(self.card.default_input_modes) or "none listed"
            return SubtaskFailed(
                f"{who} does not accept the media type of a part we sent "
                f"(it accepts {accepted}): {_one_line(str(exc))}",
                retryable=False,
                details=details,
            )
        if isinstance(exc, A2AClientError):
            return SubtaskFailed(f"{who}: {_one_line(str(exc))}", details=details)
        # An error the remote agent answered with (task not found, invalid params, ...).
        return SubtaskFailed(
            f"{who} answered with an error: {_one_line(str(exc)) or type(exc).__name__}",
            retryable=isinstance(exc, InternalError),
            details=details,
        )


def _plain(parts: Sequence[Part]) -> bool:
    """Whether an answer's parts say no more than a plain output would (one kind of text or
    data, no files, no metadata): then the output is that value, as it always was."""
    kinds = {p.WhichOneof("content") for p in parts}
    if any(p.HasField("metadata") for p in parts) or kinds & {"raw", "url"}:
        return False
    return not ({"text", "data"} <= kinds)
