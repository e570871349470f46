"""The one JSON envelope every fleet message travels in, and the payload of each kind.

```json
{"v": 1, "kind": "dispatch", "id": "5f0c...", "correlation_id": null,
 "sender": "orchestrator", "sent_at": 1732400000.25, "payload": {...}}
```

Receivers parse with :func:`parse_envelope`, which never raises anything but a
:class:`~fleetmind.errors.ProtocolError` subclass — a process that receives messages answers a
bad one with an ``error`` message or drops it with a log line, and keeps running.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from fleetmind._ids import AgentId, SubtaskId, TaskId
from fleetmind.errors import MalformedMessage, MessageTooLarge, UnknownKind, UnsupportedVersion

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 1 << 20
"""Default size limit: 1 MiB (Mosquitto's own default limit is far larger; devices are not)."""


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CardPayload(_Payload):
    """An agent's profile, published retained by the device that hosts it."""

    device: AgentId
    profile: dict[str, Any]


class PresencePayload(_Payload):
    """A device is online (with its agents and heartbeat period) or offline (last will)."""

    state: Literal["online", "offline"]
    agents: tuple[AgentId, ...] = ()
    heartbeat_s: float | None = Field(default=None, gt=0)


class DispatchPayload(_Payload):
    """A subtask for an agent. Replies carry this message's id as their correlation id."""

    task_id: TaskId
    agent: AgentId
    subtask: dict[str, Any]
    inputs: dict[str, Any] = Field(default_factory=dict)
    attempt: int = Field(default=1, ge=1)
    reply_to: AgentId | None = None
    """The orchestrator replica to answer: replies go to ``out/<reply_to>`` instead of ``out``."""


class CancelPayload(_Payload):
    """Stop working on a dispatched subtask (correlation id: the dispatch)."""

    task_id: TaskId
    subtask_id: SubtaskId
    reason: str = ""


class ProgressPayload(_Payload):
    """Progress of a dispatched subtask (correlation id: the dispatch)."""

    task_id: TaskId
    subtask_id: SubtaskId
    message: str = ""
    fraction: float | None = Field(default=None, ge=0, le=1)
    step: dict[str, Any] | None = None
    """An LLM agent's step record (tier, model, tokens, cost, latency, tool calls, outcome)."""


class ResultPayload(_Payload):
    """How a dispatched subtask ended (correlation id: the dispatch)."""

    task_id: TaskId
    subtask_id: SubtaskId
    status: Literal["done", "failed"]
    output: Any = None
    error: dict[str, Any] | None = None
    edits: tuple[dict[str, Any], ...] = ()


class SubmitPayload(_Payload):
    """A task for the fleet's orchestrators; one replica of the group takes it."""

    task_id: TaskId
    graph: dict[str, Any]
    """The task graph's definition (``TaskGraph.to_definition()``)."""
    source: str | None = None


class TaskEventPayload(_Payload):
    """One event of a submitted task, on its events topic; the last one carries the result."""

    task_id: TaskId
    event: dict[str, Any]
    result: dict[str, Any] | None = None
    """On ``task_finished``: ``{status, outputs, errors}``."""


class ErrorPayload(_Payload):
    """A message was rejected (correlation id: the rejected message, when it had one)."""

    error: dict[str, Any]


_PAYLOADS: dict[str, type[_Payload]] = {
    "card": CardPayload,
    "presence": PresencePayload,
    "dispatch": DispatchPayload,
    "cancel": CancelPayload,
    "progress": ProgressPayload,
    "result": ResultPayload,
    "error": ErrorPayload,
    "submit": SubmitPayload,
    "task_event": TaskEventPayload,
}

MessageKind = Literal[
    "card",
    "presence",
    "dispatch",
    "cancel",
    "progress",
    "result",
    "error",
    "submit",
    "task_event",
]


class Envelope(BaseModel):
    """One fleet message: who sent what, when, in reply to what."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = PROTOCOL_VERSION
    kind: MessageKind
    id: Annotated[str, Field(min_length=1, max_length=64)]
    correlation_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    sender: AgentId
    sent_at: float
    payload: dict[str, Any]

    def body(self) -> _Payload:
        """The payload, validated for this kind."""
        return _PAYLOADS[self.kind].model_validate(self.payload)

    def to_bytes(self) -> bytes:
        """The envelope as UTF-8 JSON."""
        return self.model_dump_json().encode()


def new_envelope(
    kind: MessageKind,
    sender: str,
    payload: _Payload,
    *,
    correlation_id: str | None = None,
    message_id: str | None = None,
) -> Envelope:
    """An envelope for a payload, with a fresh id and the current time."""
    return Envelope(
        kind=kind,
        id=message_id or uuid.uuid4().hex,
        correlation_id=correlation_id,
        sender=sender,
        sent_at=time.time(),
        payload=payload.model_dump(mode="json"),
    )


_envelope_adapter: TypeAdapter[Envelope] = TypeAdapter(Envelope)


def parse_envelope(data: bytes, *, max_bytes: int = MAX_MESSAGE_BYTES) -> tuple[Envelope, _Payload]:
    """Parse and validate a received message and its payload.

    Raises:
        MessageTooLarge, MalformedMessage, UnsupportedVersion, UnknownKind: with a one-line
            message naming the problem (and ``details["id"]`` when the message had an id).
    """
    if len(data) > max_bytes:
        raise MessageTooLarge(f"message of {len(data)} bytes is over the limit of {max_bytes}")
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise MalformedMessage(f"message is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise MalformedMessage("message is not a JSON object")
    details = {"id": raw["id"]} if isinstance(raw.get("id"), str) else {}
    version = raw.get("v")
    if version != PROTOCOL_VERSION:
        raise UnsupportedVersion(
            f"envelope version {version!r} is not supported (this process speaks "
            f"{PROTOCOL_VERSION})",
            details=details,
        )
    kind = raw.get("kind")
    if kind not in _PAYLOADS:
        raise UnknownKind(f"unknown message kind {kind!r}", details=details)
    try:
        envelope = _envelope_adapter.validate_python(raw)
    except ValidationError as exc:
        raise MalformedMessage(f"{kind} message: {_first(exc)}", details=details) from None
    try:
        return envelope, envelope.body()
    except ValidationError as exc:
        raise MalformedMessage(f"{kind} message: payload.{_first(exc)}", details=details) from None


def _first(exc: ValidationError) -> str:
    err = exc.errors()[0]
    return f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
