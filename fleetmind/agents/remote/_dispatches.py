"""Every dispatch an orchestrator has out on devices, and the rules that get each one answered
exactly once.

- **A dispatch is named by what it is**: the task, the subtask and the attempt's epoch (its
  number over the subtask's whole life). The name follows from the task's log, so a resumed
  orchestrator knows which answers kept for it are answers to its own dispatches, and a
  device can tell a dispatch it has seen from a new one.
- **Nothing is waited on for ever.** A device lists the dispatches it holds in every
  heartbeat; one it does not list a heartbeat and a half after it was sent is sent again (same
  name: the device runs it at most once), and after three silent resends the attempt fails
  and the engine retries or reassigns it. A dispatch whose subtask has a timeout expires at
  the broker with it.
- **Nothing superseded runs.** When an attempt is given up (its device dead, its timeout
  passed, the task cancelled) the device is told to cancel it; a device that may have missed
  that asks first (``claim``) and is answered ``cancel`` for anything no longer out. An
  attempt whose task was handed over to another replica (see
  :data:`~fleetmind.agents.remote.HANDED_OVER`) is not given up: the device's run goes on.
- **Flow control**: at most ``max_in_flight`` dispatches are out at once, and at most
  ``max_per_device`` on one device, well below what a broker queues for one client (Mosquitto
  keeps 1,000 by default and drops the rest).
- **Streamed chunks pass through.** A device's ``artifact`` messages go to the attempt's
  ``ctx.stream_artifact`` while the dispatch is out, so the engine reports them as it does a
  local agent's; chunks of a dispatch that is not out are dropped.
- **Answers are acknowledged once saved.** The broker keeps a device's answer in the
  orchestrator's session until the engine has written its outcome to the store; answers to
  dispatches of a previous life of this orchestrator are kept (bounded) until the resumed
  engine asks for them, or until the orchestrator learns that another replica drives their
  task (:meth:`Dispatches.drop_task`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from pydantic import ValidationError

from fleetmind._ids import agent_name
from fleetmind._task_log import graph_edit_adapter
from fleetmind._task_model import Subtask
from fleetmind._validation import describe_validation_error
from fleetmind.agents import SubtaskContext, SubtaskResult, part_from_json
from fleetmind.agents.remote._base import Recovered, handed_over
from fleetmind.errors import (
    AgentLost,
    FleetmindError,
    FleetStateError,
    MalformedMessage,
    ProtocolError,
    SubtaskFailed,
    error_from_dict,
)
from fleetmind.protocols import (
    ArtifactPayload,
    CancelPayload,
    ClaimPayload,
    ErrorPayload,
    Message,
    MqttConnection,
    PresencePayload,
    ProceedPayload,
    ProgressPayload,
    ResultPayload,
    Topics,
    encode,
    encode_fields,
)

log = logging.getLogger("fleetmind.dispatches")

_KEPT_ANSWERS = 500
"""Answers to unknown dispatches kept for a resumed engine (each is also held by the broker
until acknowledged, so the number stays well below a session's in-flight limit)."""
_KEPT_BYTES = 64 << 20
_REMEMBERED = 20_000


def dispatch_id(task_id: str, subtask_id: str, epoch: int) -> str:
    """The name of the ``epoch``-th attempt at a subtask of a task (hex, 32 characters)."""
    return hashlib.sha1(f"{task_id}/{subtask_id}/{epoch}".encode()).hexdigest()[:32]


@dataclass
class _Out:
    """One dispatch out on a device."""

    dispatch_id: str
    device: str
    agent: str
    inbox: str
    message: bytes
    ctx: SubtaskContext
    future: asyncio.Future[SubtaskResult]
    sent_at: float
    last_sent: float
    resends: int = 0


@dataclass
class _Kept:
    """An answer to a dispatch that is not out (yet): perhaps one of a previous life."""

    device: str
    payload: ResultPayload | ErrorPayload
    message: Message
    size: int

    @property
    def task_id(self) -> str | None:
        """The task it is about (an error reply does not say)."""
        return self.payload.task_id if isinstance(self.payload, ResultPayload) else None


@dataclass
class DispatchLimits:
    """How many dispatches may be out at once, and how patient the orchestrator is."""

    max_in_flight: int = 500
    max_per_device: int = 100
    max_resends: int = 3
    """Resends of a dispatch its device does not list before the attempt fails."""


@dataclass
class _Windows:
    total: asyncio.Semaphore
    per_device: dict[str, asyncio.Semaphore] = field(default_factory=dict)


class Dispatches:
    """The orchestrator's dispatches on one broker connection.

    Args:
        topics: The fleet's topics.
        replica_id: This orchestrator's name: devices answer on ``out/<replica_id>``.
        limits: Flow control and patience.
    """

    def __init__(
        self, topics: Topics, replica_id: str, limits: DispatchLimits | None = None
    ) -> None:
        self.topics = topics
        self.replica_id = replica_id
        self.limits = limits or DispatchLimits()
        self.out: dict[str, _Out] = {}
        self._by_device: dict[str, set[str]] = {}
        self._windows: _Windows | None = None
        self._kept: OrderedDict[str, _Kept] = OrderedDict()
        self._kept_bytes = 0
        self._ended: OrderedDict[str, str] = OrderedDict()
        """Dispatches of this life that are no longer out (id -> device), to cancel if a device
        still holds one."""
        self._elsewhere: OrderedDict[str, None] = OrderedDict()
        """Tasks another replica drives: answers about them are not kept."""
        self.on_kept: Callable[[str], None] | None = None
        """Told the task of each answer kept for a resumed engine, so that the orchestrator can
        check whether it still drives that task (see :meth:`drop_task`)."""
        self._mqtt: MqttConnection | None = None

    def attach(self, mqtt: MqttConnection) -> None:
        """Use this connection (and create the flow-control windows on this loop)."""
        self._mqtt = mqtt
        self._windows = _Windows(asyncio.Semaphore(self.limits.max_in_flight))

    def detach(self) -> None:
        """Stop using the connection: dispatching raises until :meth:`attach` is called again."""
        self._mqtt = None
        self._windows = None

    @property
    def attached(self) -> bool:
        """Whether a connection is attached."""
        return self._mqtt is not None

    # Dispatching ------------------------------------------------------------------------------

    async def dispatch(
        self, device: str, agent_id: str, subtask: Subtask, ctx: SubtaskContext
    ) -> SubtaskResult:
        """Send an attempt at ``subtask`` to ``agent_id`` on ``device`` and wait for its answer.

        Raises:
            FleetmindError: the device's error, or the attempt given up (device gone, silent).
            FleetStateError: the link is not connected.
        """
        if self._mqtt is None or self._windows is None:
            raise FleetStateError("the fleet link is not connected")
        did = dispatch_id(ctx.task_id, subtask.id, ctx.epoch)
        self._elsewhere.pop(ctx.task_id, None)  # driven here (again)
        kept = self._kept.pop(did, None)
        if kept is not None:
            # An "answer" to a dispatch that had not been made: never taken for one (a device
            # may not pre-answer work it has not been given).
            self._kept_bytes -= kept.size
            self.ack(kept.message)
        windows = self._windows
        device_window = windows.per_device.setdefault(
            device, asyncio.Semaphore(self.limits.max_per_device)
        )
        async with windows.total, device_window:
            # The fields of a DispatchPayload, built here from values already checked.
            job = {
                "task_id": ctx.task_id,
                "agent": agent_name(agent_id),
                "subtask": subtask.model_dump(mode="json", exclude_defaults=True),
                "inputs": ctx.inputs,
                "attempt": ctx.attempt,
                "epoch": ctx.epoch,
                "reply_to": self.replica_id,
                "deadline_s": subtask.timeout_s,
            }
            if ctx.message is not None:  # only then: a device that predates it still takes
                job["message"] = ctx.message.to_json()  # every other dispatch
            message = encode_fields("dispatch", self.replica_id, job, message_id=did)
            now = time.monotonic()
            future: asyncio.Future[SubtaskResult] = asyncio.get_running_loop().create_future()
            out = _Out(
                did,
                device,
                agent_id,
                self.topics.device_inbox(device),
                message,
                ctx,
                future,
                now,
                now,
            )
            self.out[did] = out
            self._by_device.setdefault(device, set()).add(did)
            try:
                self._send(out)
                return await future
            except asyncio.CancelledError as exc:
                if handed_over(exc):
                    # Its task goes on at another replica, whose dispatch of the subtask joins
                    # the device's run: forgotten here, and the device is told nothing (not
                    # even when it lists the dispatch in a heartbeat).
                    self._forget(did, ended=False)
                else:  # the engine gave up on this attempt (cancelled, timed out)
                    self._cancel_on_device(out, "cancelled by the orchestrator")
                raise
            finally:
                self._forget(did)

    def _send(self, out: _Out) -> None:
        assert self._mqtt is not None
        expiry = out.ctx.subtask.timeout_s
        with contextlib.suppress(ProtocolError, FleetStateError):  # resent when it is back
            self._mqtt.publish_nowait(out.inbox, out.message, expiry_s=expiry)

    def _forget(self, did: str, *, ended: bool = True) -> None:
        out = self.out.pop(did, None)
        if out is None:
            return
        held = self._by_device.get(out.device)
        if held is not None:
            held.discard(did)
        if not ended:
            return
        self._ended[did] = out.device
        while len(self._ended) > _REMEMBERED:
            self._ended.popitem(last=False)

    def _cancel_on_device(self, out: _Out, reason: str) -> None:
        if self._mqtt is None:
            return
        body = CancelPayload(task_id=out.ctx.task_id, subtask_id=out.ctx.subtask.id, reason=reason)
        notice = encode("cancel", self.replica_id, body, correlation_id=out.dispatch_id)
        with contextlib.suppress(ProtocolError, FleetStateError):
            self._mqtt.publish_nowait(out.inbox, notice)

    # Answers --------------------------------------------------------------------------------

    def answer(
        self, device: str, correlation_id: str | None, payload: Any, message: Message
    ) -> bool:
        """A device's message about a dispatch. Returns whether to acknowledge it now (the
        others are acknowledged once their outcome is saved, or when a kept one is dropped)."""
        out = self.out.get(correlation_id or "")
        if out is None or out.device != device:
            return self._stray(device, correlation_id, payload, message)
        if out.future.done():
            return True
        match payload:
            case ProgressPayload():
                out.ctx.progress(payload.message, payload.fraction, step=payload.step)
                return True
            case ArtifactPayload():
                _stream(out.ctx, device, payload)
                return True
            case ClaimPayload():
                self._proceed(out)
                return True
            case ResultPayload() | ErrorPayload():
                outcome = _outcome(payload)
                out.ctx.after_saved(partial(self.ack, message))
                if isinstance(outcome, SubtaskResult):
                    out.future.set_result(outcome)
                else:
                    out.future.set_exception(outcome)
                return False
        return True

    def _stray(
        self, device: str, correlation_id: str | None, payload: Any, message: Message
    ) -> bool:
        if isinstance(payload, ClaimPayload) and correlation_id:
            # Not out (any more): superseded, cancelled, or from a previous life. Do not start.
            self._send_cancel(device, correlation_id, payload.task_id, payload.subtask_id)
            return True
        if isinstance(payload, ResultPayload | ErrorPayload) and correlation_id:
            if correlation_id in self._ended:
                return True  # a late or repeated answer to an attempt already settled
            kept = _Kept(device, payload, message, len(message.payload))
            if kept.task_id in self._elsewhere:
                return True  # another replica's task: its owner has the device's answer
            self._kept[correlation_id] = kept
            self._kept_bytes += kept.size
            while self._kept and (
                len(self._kept) > _KEPT_ANSWERS or self._kept_bytes > _KEPT_BYTES
            ):
                _, dropped = self._kept.popitem(last=False)
                self._kept_bytes -= dropped.size
                self.ack(dropped.message)
            if kept.task_id is not None and self.on_kept is not None:
                self.on_kept(kept.task_id)
            return False
        return True

    def drop_task(self, task_id: str) -> int:
        """Another replica drives ``task_id`` now (or it has ended): the answers kept for it
        are acknowledged and dropped, and those that come later are not kept, until this
        orchestrator dispatches for the task again. Returns how many were dropped.

        Nothing is lost: a device that answered keeps its result, and gives it to whichever
        replica dispatches the subtask again."""
        self._elsewhere[task_id] = None
        self._elsewhere.move_to_end(task_id)
        while len(self._elsewhere) > _REMEMBERED:
            self._elsewhere.popitem(last=False)
        dropped = [did for did, kept in self._kept.items() if kept.task_id == task_id]
        for did in dropped:
            kept = self._kept.pop(did)
            self._kept_bytes -= kept.size
            self.ack(kept.message)
        return len(dropped)

    def recovered(
        self, task_id: str, subtask_id: str, agent_id: str, epochs: range
    ) -> Recovered | None:
        """An answer kept for one of these attempts, from the device of ``agent_id``."""
        device = agent_id.partition("@")[2]
        if not device:
            return None
        self._elsewhere.pop(task_id, None)  # a resumed engine here drives it
        for epoch in reversed(epochs):
            did = dispatch_id(task_id, subtask_id, epoch)
            kept = self._kept.get(did)
            if kept is not None and kept.device == device:
                del self._kept[did]
                self._kept_bytes -= kept.size
                self._ended[did] = device
                return _outcome(kept.payload), partial(self.ack, kept.message)
        return None

    def ack(self, message: Message) -> None:
        """Acknowledge a device's answer to the broker (its outcome is saved, or dropped)."""
        if self._mqtt is not None:
            self._mqtt.ack(message)

    # What devices hold ------------------------------------------------------------------------

    def reconcile(self, device: str, presence: PresencePayload, restarted: bool) -> None:
        """Compare what a device says it holds with what is out on it: send again what it
        lacks, cancel what it holds but nobody waits for."""
        now = time.monotonic()
        held = set(presence.running)
        patience = max(1.5 * (presence.heartbeat_s or 5.0), 1.0)
        for did in list(self._by_device.get(device, ())):
            out = self.out[did]
            if did in held:
                out.resends = 0
                continue
            if not restarted and now - out.last_sent < patience:
                continue  # it may still be on its way
            if out.resends >= self.limits.max_resends:
                if not out.future.done():
                    out.future.set_exception(
                        SubtaskFailed(
                            f"device {device} did not take dispatch {did} after "
                            f"{out.resends} resends"
                        )
                    )
                continue
            out.resends += 1
            out.last_sent = now
            self._send(out)
        for did in held:
            if self._ended.get(did) == device:
                self._send_cancel(device, did, None, None)

    def device_gone(self, device: str, why: str) -> None:
        """The device is dead: its attempts fail (the engine gives them to other agents) and it
        is told to drop them, should it come back."""
        for did in list(self._by_device.get(device, ())):
            out = self.out.get(did)
            if out is None or out.future.done():
                continue
            self._cancel_on_device(out, f"reassigned: device {why}")
            out.future.set_exception(AgentLost(f"device {device} {why}"))

    def close(self) -> None:
        """The link closes: every attempt out fails (the task stays resumable)."""
        for out in list(self.out.values()):
            if not out.future.done():
                out.future.set_exception(FleetStateError("the fleet link closed"))

    # Sending small replies ----------------------------------------------------------------

    def _proceed(self, out: _Out) -> None:
        assert self._mqtt is not None
        body = ProceedPayload(task_id=out.ctx.task_id, subtask_id=out.ctx.subtask.id)
        notice = encode("proceed", self.replica_id, body, correlation_id=out.dispatch_id)
        with contextlib.suppress(ProtocolError, FleetStateError):
            self._mqtt.publish_nowait(out.inbox, notice)

    def _send_cancel(
        self, device: str, did: str, task_id: str | None, subtask_id: str | None
    ) -> None:
        if self._mqtt is None:
            return
        body = CancelPayload(
            task_id=task_id or "unknown", subtask_id=subtask_id or "unknown", reason="not wanted"
        )
        notice = encode("cancel", self.replica_id, body, correlation_id=did)
        with contextlib.suppress(ProtocolError, FleetStateError):
            self._mqtt.publish_nowait(self.topics.device_inbox(device), notice)


def _outcome(payload: ResultPayload | ErrorPayload) -> SubtaskResult | FleetmindError:
    """What a device's answer means for the engine: a result, or the error to raise."""
    if isinstance(payload, ErrorPayload):
        return error_from_dict(payload.error)
    if payload.status != "done":
        return error_from_dict(payload.error or {})
    try:
        edits = tuple(graph_edit_adapter.validate_python(e) for e in payload.edits)
    except ValidationError as exc:
        return SubtaskFailed(f"device sent an invalid graph edit: {describe_validation_error(exc)}")
    return SubtaskResult(payload.output, edits)


def _stream(ctx: SubtaskContext, device: str, chunk: ArtifactPayload) -> None:
    """Pass a device's chunk on to the attempt's context (one with a malformed part is
    dropped with a log line: the device's result still settles the attempt)."""
    try:
        parts = [part_from_json(p) for p in chunk.parts]
    except MalformedMessage as exc:
        log.warning("dropped a chunk of artifact %r from %s: %s", chunk.artifact_id, device, exc)
        return
    ctx.stream_artifact(
        parts, artifact_id=chunk.artifact_id, name=chunk.name, last=chunk.last, append=chunk.append
    )
