"""The one JSON envelope every fleet message travels in, and the payload of each kind.

```json
{"v": 1, "kind": "dispatch", "id": "5f0c...", "correlation_id": null,
 "sender": "orchestrator", "sent_at": 1732400000.25, "payload": {...}}
```

Receivers parse with :func:`parse_envelope`, which never raises anything but a
:class:`~fleetmind.errors.ProtocolError` subclass — a process that receives messages answers a
bad one with an ``error`` message or drops it with a log line, and keeps running. Every number
on the wire is bounded (no NaN, no infinity, no integer of a thousand digits), every string and
list has a maximum length, so a hostile or broken peer cannot make a receiver allocate without
end or trip over a value it cannot handle.

Messages are written with orjson straight from the payload's fields (the sender built them, so
they are not validated again); they are read with orjson and validated with pydantic.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fleetmind._ids import PlainId, SubtaskId, TaskId
from fleetmind._validation import describe_validation_error
from fleetmind.errors import MalformedMessage, MessageTooLarge, UnknownKind, UnsupportedVersion

PROTOCOL_VERSION: Literal[1] = 1
MAX_MESSAGE_BYTES = 1 << 20
"""Default size limit: 1 MiB (Mosquitto's own default limit is far larger; devices are not)."""

MAX_SECONDS = 10_000_000.0
"""The longest duration on the wire (about 115 days): heartbeats, deadlines."""
MAX_TIMESTAMP = 10_000_000_000.0
"""The latest time on the wire (Unix seconds, the year 2286)."""

_MESSAGE_ID = r"^[A-Za-z0-9._:-]{1,64}$"
MessageId = Annotated[str, Field(pattern=_MESSAGE_ID)]
"""A message's id: what replies name as their correlation id."""
_MESSAGE_ID_RE = re.compile(_MESSAGE_ID)
Seconds = Annotated[float, Field(gt=0, le=MAX_SECONDS, allow_inf_nan=False)]
Text = Annotated[str, Field(max_length=4000)]


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class CardPayload(_Payload):
    """An agent's profile, published retained by the device that hosts it."""

    device: PlainId
    profile: dict[str, Any]


class PresencePayload(_Payload):
    """A device is online (with its agents and heartbeat period) or offline (last will).

    Online presence is refreshed every ``heartbeat_s``; three missed beats mean the device is
    gone. ``running`` lists the dispatches the device is working on (the orchestrator resends
    a dispatch the device does not list, and cancels one it lists but no longer wants), and
    ``boot`` changes whenever the device process starts again.
    """

    state: Literal["online", "offline"]
    agents: tuple[PlainId, ...] = Field(default=(), max_length=10_000)
    heartbeat_s: Seconds | None = None
    boot: MessageId | None = None
    running: tuple[MessageId, ...] = Field(default=(), max_length=100_000)


class DispatchPayload(_Payload):
    """A subtask for an agent. Replies carry this message's id as their correlation id.

    ``epoch`` numbers the dispatches of one subtask over its whole life (retries and
    reassignments included): a device runs each dispatch id at most once, and a subtask that
    already succeeded on the device is answered from its result, whatever the epoch.
    """

    task_id: TaskId
    agent: PlainId
    """The agent's name on the device (its id there, without ``@device``)."""
    subtask: dict[str, Any]
    inputs: dict[str, Any] = Field(default_factory=dict)
    attempt: int = Field(default=1, ge=1, le=10_000)
    epoch: int = Field(default=1, ge=1, le=1_000_000)
    reply_to: PlainId | None = None
    """The orchestrator replica to answer: replies go to ``out/<reply_to>`` instead of ``out``."""
    deadline_s: Seconds | None = None
    """How long the orchestrator waits for the result before it gives the subtask to another
    agent (None: as long as the device reports the dispatch in its heartbeats)."""
    message: dict[str, Any] | None = None
    """The protocol message the task was started from (the agent's ``ctx.message``), as
    ``IncomingMessage.to_json`` writes it; sent only for tasks started from one."""


class CancelPayload(_Payload):
    """Stop working on a dispatched subtask, or do not start it (correlation id: the dispatch)."""

    task_id: TaskId
    subtask_id: SubtaskId
    reason: Text = ""


class ClaimPayload(_Payload):
    """May this dispatch still start? (device -> orchestrator; correlation id: the dispatch).

    A device asks before it starts a dispatch that may have waited for it while it was away
    (delivered again, or queued in its session): the orchestrator may have given the subtask
    to another agent meanwhile. The answer is ``proceed`` or ``cancel``.
    """

    task_id: TaskId
    subtask_id: SubtaskId


class ProceedPayload(_Payload):
    """Yes, start it (orchestrator -> device; correlation id: the dispatch)."""

    task_id: TaskId
    subtask_id: SubtaskId


class SyncPayload(_Payload):
    """A marker a device sends to its own inbox after reconnecting: when it comes back, the
    messages that waited in its session while it was away have all arrived before it."""


class ProgressPayload(_Payload):
    """Progress of a dispatched subtask (correlation id: the dispatch)."""

    task_id: TaskId
    subtask_id: SubtaskId
    message: Text = ""
    fraction: float | None = Field(default=None, ge=0, le=1)
    step: dict[str, Any] | None = None
    """An LLM agent's step record (tier, model, tokens, cost, latency, tool calls, outcome)."""


class ArtifactPayload(_Payload):
    """One chunk of an artifact a dispatched subtask streams (``ctx.stream_artifact``;
    correlation id: the dispatch). ``append``: the parts extend the artifact's earlier chunks;
    ``last``: no more chunks of it follow."""

    task_id: TaskId
    subtask_id: SubtaskId
    artifact_id: Annotated[str, Field(min_length=1, max_length=200)]
    name: Annotated[str, Field(max_length=200)] | None = None
    parts: tuple[dict[str, Any], ...] = Field(default=(), max_length=1000)
    """The chunk's parts, as ``fleetmind.agents.part_to_json`` writes them."""
    append: bool = False
    last: bool = False


class ResultPayload(_Payload):
    """How a dispatched subtask ended (correlation id: the dispatch)."""

    task_id: TaskId
    subtask_id: SubtaskId
    status: Literal["done", "failed"]
    output: Any = None
    error: dict[str, Any] | None = None
    edits: tuple[dict[str, Any], ...] = Field(default=(), max_length=1000)


class SubmitPayload(_Payload):
    """A task for the fleet's orchestrators; one replica of the group takes it."""

    task_id: TaskId
    graph: dict[str, Any]
    """The task graph's definition (``TaskGraph.to_definition()``)."""
    source: Text | None = None


class TaskEventPayload(_Payload):
    """One event of a submitted task, on its events topic; the last one carries the result."""

    task_id: TaskId
    event: dict[str, Any]
    result: dict[str, Any] | None = None
    """On ``task_finished``: ``{status, outputs, errors}``."""


class TaskCancelPayload(_Payload):
    """Cancel a submitted task (on its control topic): the replica that drives it cancels it,
    and its end goes out on the task's events topic as usual; the other replicas ignore it."""

    task_id: TaskId
    reason: Annotated[str, Field(min_length=1, max_length=500)] = "cancelled by user"


class ErrorPayload(_Payload):
    """A message was rejected (correlation id: the rejected message, when it had one)."""

    error: dict[str, Any]


MemoryText = Annotated[str, Field(min_length=1, max_length=20_000)]


class MemoryRequestPayload(_Payload):
    """A device agent asks the fleet's memory (on its ``out`` topic; the answer comes to its
    inbox as ``memory_response`` with this message's id as correlation id).

    The orchestrator decides the namespace: the agent's own (``agent:<name>``, for an agent
    the sending device hosts) or, with ``shared``, the fleet's shared one.
    """

    op: Literal["remember", "recall"]
    agent: PlainId
    """The agent's name on the device (without ``@device``)."""
    task_id: TaskId | None = None
    shared: bool = False
    layer: Literal["episodic", "semantic"] | None = None
    text: MemoryText | None = None
    """``remember``: what to keep."""
    key: Annotated[str, Field(max_length=200)] | None = None
    query: Annotated[str, Field(min_length=1, max_length=4000)] | None = None
    """``recall``: what to look for."""
    limit: int = Field(default=5, ge=1, le=50)
    outcome: Annotated[str, Field(max_length=32)] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class MemoryResponsePayload(_Payload):
    """The answer to a ``memory_request``: the stored item, or the recalled ones, or why not."""

    ok: bool
    items: tuple[dict[str, Any], ...] = Field(default=(), max_length=50)
    error: dict[str, Any] | None = None


_PAYLOADS: dict[str, type[_Payload]] = {
    "card": CardPayload,
    "presence": PresencePayload,
    "dispatch": DispatchPayload,
    "cancel": CancelPayload,
    "claim": ClaimPayload,
    "proceed": ProceedPayload,
    "sync": SyncPayload,
    "progress": ProgressPayload,
    "artifact": ArtifactPayload,
    "result": ResultPayload,
    "error": ErrorPayload,
    "submit": SubmitPayload,
    "task_event": TaskEventPayload,
    "task_cancel": TaskCancelPayload,
    "memory_request": MemoryRequestPayload,
    "memory_response": MemoryResponsePayload,
}

MessageKind = Literal[
    "card",
    "presence",
    "dispatch",
    "cancel",
    "claim",
    "proceed",
    "sync",
    "progress",
    "artifact",
    "result",
    "error",
    "submit",
    "task_event",
    "task_cancel",
    "memory_request",
    "memory_response",
]


class Envelope(BaseModel):
    """One fleet message: who sent what, when, in reply to what."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    v: Literal[1] = PROTOCOL_VERSION
    kind: MessageKind
    id: MessageId
    correlation_id: MessageId | None = None
    sender: PlainId
    sent_at: float = Field(ge=0, le=MAX_TIMESTAMP)
    payload: dict[str, Any]

    def body(self) -> _Payload:
        """The payload, validated for this kind."""
        return _PAYLOADS[self.kind].model_validate(self.payload)

    def to_bytes(self) -> bytes:
        """The envelope as UTF-8 JSON."""
        return orjson.dumps(
            {
                "v": self.v,
                "kind": self.kind,
                "id": self.id,
                "correlation_id": self.correlation_id,
                "sender": self.sender,
                "sent_at": self.sent_at,
                "payload": self.payload,
            },
            default=_jsonable,
        )


def new_envelope(
    kind: MessageKind,
    sender: str,
    payload: _Payload,
    *,
    correlation_id: str | None = None,
    message_id: str | None = None,
) -> Envelope:
    """An envelope for a payload, with a fresh id and the current time.

    Not validated again: the payload is a model the sender built, and the other fields are
    this process's own.
    """
    return Envelope.model_construct(
        v=PROTOCOL_VERSION,
        kind=kind,
        id=message_id or uuid.uuid4().hex,
        correlation_id=correlation_id,
        sender=sender,
        sent_at=time.time(),
        payload=payload.model_dump(mode="json"),
    )


def encode(
    kind: MessageKind,
    sender: str,
    payload: _Payload,
    *,
    correlation_id: str | None = None,
    message_id: str | None = None,
) -> bytes:
    """A message's bytes, straight from its payload (the hot path of dispatches and results)."""
    return orjson.dumps(
        {
            "v": PROTOCOL_VERSION,
            "kind": kind,
            "id": message_id or uuid.uuid4().hex,
            "correlation_id": correlation_id,
            "sender": sender,
            "sent_at": time.time(),
            "payload": payload.model_dump(),
        },
        default=_jsonable,
    )


def encode_fields(
    kind: MessageKind,
    sender: str,
    payload: dict[str, Any],
    *,
    correlation_id: str | None = None,
    message_id: str | None = None,
) -> bytes:
    """A message's bytes from a payload already in its wire form (fields this process built
    and vouches for, written without a model in between: the dispatch hot path)."""
    return orjson.dumps(
        {
            "v": PROTOCOL_VERSION,
            "kind": kind,
            "id": message_id or uuid.uuid4().hex,
            "correlation_id": correlation_id,
            "sender": sender,
            "sent_at": time.time(),
            "payload": payload,
        },
        default=_jsonable,
    )


def _jsonable(value: Any) -> Any:
    """What orjson cannot write itself: models as their dicts, sets as lists, others as text."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return repr(value)


def message_id_of(raw: Any) -> str | None:
    """The id of a (perhaps malformed) message, if it has a usable one to reply to."""
    if isinstance(raw, dict):
        candidate = raw.get("id")
        if isinstance(candidate, str) and _MESSAGE_ID_RE.match(candidate):
            return candidate
    return None


def parse_envelope(data: bytes, *, max_bytes: int = MAX_MESSAGE_BYTES) -> tuple[Envelope, _Payload]:
    """Parse and validate a received message and its payload.

    Raises:
        MessageTooLarge, MalformedMessage, UnsupportedVersion, UnknownKind: with a one-line
            message naming the problem (and ``details["id"]`` when the message had a usable id).
    """
    if len(data) > max_bytes:
        raise MessageTooLarge(f"message of {len(data)} bytes is over the limit of {max_bytes}")
    try:
        raw = orjson.loads(data)
    except (orjson.JSONDecodeError, ValueError, RecursionError) as exc:
        # Not UTF-8, not JSON, NaN or an integer of more than 64 bits, nesting too deep.
        raise MalformedMessage(f"message is not JSON: {str(exc)[:200]}") from None
    if not isinstance(raw, dict):
        raise MalformedMessage("message is not a JSON object")
    message_id = message_id_of(raw)
    details = {"id": message_id} if message_id else {}
    version = raw.get("v")
    if version != PROTOCOL_VERSION or isinstance(version, bool):
        raise UnsupportedVersion(
            f"envelope version {_short(version)} is not supported (this process speaks "
            f"{PROTOCOL_VERSION})",
            details=details,
        )
    kind = raw.get("kind")
    if not isinstance(kind, str) or kind not in _PAYLOADS:
        raise UnknownKind(f"unknown message kind {_short(kind)}", details=details)
    problem = _envelope_problem(raw)
    if problem is not None:
        raise MalformedMessage(f"{kind} message: {problem}", details=details)
    # Checked field by field above (the hot path of every message): no second validation.
    envelope = Envelope.model_construct(**raw)
    try:
        return envelope, _PAYLOADS[kind].model_validate(raw["payload"])
    except ValidationError as exc:
        raise MalformedMessage(f"{kind} message: payload.{_first(exc)}", details=details) from None


_FIELDS = frozenset({"v", "kind", "id", "correlation_id", "sender", "sent_at", "payload"})
_PLAIN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _envelope_problem(raw: dict[str, Any]) -> str | None:
    """What is wrong with an envelope's own fields (the same rules as :class:`Envelope`)."""
    extra = set(raw) - _FIELDS
    if extra:
        return f"{sorted(extra)[0]}: Extra inputs are not permitted"
    for name in ("id", "sender", "sent_at", "payload"):
        if name not in raw:
            return f"{name}: Field required"
    message_id, correlation = raw["id"], raw.get("correlation_id")
    if not isinstance(message_id, str) or not _MESSAGE_ID_RE.match(message_id):
        return "id: must be 1-64 of A-Z a-z 0-9 . _ : -"
    if correlation is not None and (
        not isinstance(correlation, str) or not _MESSAGE_ID_RE.match(correlation)
    ):
        return "correlation_id: must be 1-64 of A-Z a-z 0-9 . _ : -"
    if not isinstance(raw["sender"], str) or not _PLAIN_ID_RE.match(raw["sender"]):
        return "sender: must be a name of 1-64 of A-Z a-z 0-9 . _ -"
    sent_at = raw["sent_at"]
    if isinstance(sent_at, bool) or not isinstance(sent_at, int | float):
        return "sent_at: must be a number"
    if not 0 <= sent_at <= MAX_TIMESTAMP:
        return f"sent_at: must be between 0 and {MAX_TIMESTAMP:.0f}"
    if not isinstance(raw["payload"], dict):
        return "payload: must be an object"
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _first(exc: ValidationError) -> str:
    return describe_validation_error(exc, show_input=False)
