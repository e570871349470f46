"""The device runtime: serves local agents to a fleet over an MQTT broker.

``fleetmind agent serve`` runs one of these. It announces each agent's card (retained) and the
device's presence (retained, with a last will that says offline), takes dispatched subtasks
from its inbox, runs them within each agent's concurrency limit, and streams progress, the
chunks of the artifacts its agents stream, and results back. Its promises, which the
orchestrator relies on:

- **Each dispatch runs at most once here.** A dispatch id seen again (the broker's redelivery,
  the orchestrator's resend) is answered from the cached result when it has finished, and
  ignored while it runs. A subtask that already succeeded here is never run again for the same
  task: a later dispatch of it (a resumed orchestrator) gets the saved result.
- **Nothing superseded starts.** A dispatch that may have waited for the device while it was
  away — delivered again (``dup``), or arriving before the device's own sync marker comes back
  after a reconnect with a kept session — is *claimed* first: the orchestrator answers
  ``proceed`` or ``cancel``. Unanswered, the claim lapses and the work is not started (the
  orchestrator resends what it still wants).
- **Work in progress is visible.** Every heartbeat lists the dispatches the device holds
  (``running``) and the process's ``boot`` id, so the orchestrator resends a dispatch the
  device does not have (lost, or lost in a crash) and cancels one it no longer wants.
- **A run speaks to whoever drives its task now.** A later dispatch of a subtask already running
  here (a replica that took the task over) joins that run: its progress, streamed chunks and
  memory requests go to the newest such dispatch from then on (back to the one before if that
  one is cancelled), and its result to every one.
- A malformed message gets an error reply (or a log line), and the runtime keeps running.

It imports no embedding or ANN library: routing happens where the orchestrator runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from fleetmind._task_model import Subtask
from fleetmind._validation import describe_validation_error
from fleetmind.agents import (
    Agent,
    ArtifactChunk,
    IncomingMessage,
    SubtaskContext,
    SubtaskResult,
    part_to_json,
)
from fleetmind.agents.remote._device_memory import DeviceMemoryChannel, MemoryUnavailable
from fleetmind.errors import (
    FleetmindError,
    MalformedMessage,
    MessageTooLarge,
    ProtocolError,
    error_outcome,
)
from fleetmind.protocols import (
    MAX_MESSAGE_BYTES,
    ArtifactPayload,
    BrokerAddress,
    CancelPayload,
    CardPayload,
    ClaimPayload,
    DispatchPayload,
    Envelope,
    ErrorPayload,
    MemoryRequestPayload,
    MemoryResponsePayload,
    Message,
    MqttConnection,
    PresencePayload,
    ProceedPayload,
    ProgressPayload,
    ResultPayload,
    SyncPayload,
    Topics,
    encode,
    parse_envelope,
)

log = logging.getLogger("fleetmind.device")

_CACHED_RESULTS = 1000
_CACHED_BYTES = 32 << 20
_REMEMBERED_CANCELS = 10_000
_CATCH_UP_LIMIT_S = 10.0
"""The longest a reconnect's catch-up lasts if the sync marker never comes back."""


@dataclass
class _Job:
    """A dispatch this device holds: waiting for a claim's answer, or running."""

    dispatch_id: str
    job: DispatchPayload
    agent: Agent
    subtask: Subtask
    message: Message
    """The MQTT message it came in, acknowledged when the job ends."""
    runner: asyncio.Task[None] | None = None
    claimed_at: float | None = None
    also: dict[str, str | None] = field(default_factory=dict)
    """Later dispatches of the same subtask (a resumed orchestrator's): id -> reply_to. They
    get this run's result instead of a second run."""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.job.task_id, self.subtask.id, self.job.agent)

    def asker(self) -> tuple[str, str | None]:
        """The dispatch (id, reply_to) that hears this run's progress, chunks and memory
        requests: the newest one attached, whose replica drives the task now (the first
        one's may be gone), else the one it runs for."""
        if self.also:
            return next(reversed(self.also.items()))
        return self.dispatch_id, self.job.reply_to


class DeviceRuntime:
    """Serves ``agents`` as device ``device_id`` of a fleet, until cancelled.

    Args:
        device_id: The device's name (its MQTT username, normally).
        agents: The agents it hosts.
        broker: Where the broker is and how to log in.
        fleet: The fleet's name (topic prefix).
        heartbeat_s: How often presence is refreshed; the orchestrator declares the device
            dead after three missed heartbeats.
        claim_timeout_s: How long a claimed dispatch waits for the orchestrator's answer
            (default: four heartbeats).
    """

    def __init__(
        self,
        device_id: str,
        agents: Sequence[Agent],
        broker: BrokerAddress,
        *,
        fleet: str = "default",
        heartbeat_s: float = 5.0,
        claim_timeout_s: float | None = None,
    ) -> None:
        self.device_id = device_id
        self.agents = {a.id: a for a in agents}
        self.broker = broker
        self.topics = Topics(fleet)
        self.heartbeat_s = heartbeat_s
        self.claim_timeout_s = claim_timeout_s or 4 * heartbeat_s
        self.boot = uuid.uuid4().hex[:16]
        """Changes every time the process starts: the orchestrator sees a restart."""
        self._slots = {a.id: asyncio.Semaphore(a.profile.limits.max_concurrency) for a in agents}
        self._jobs: dict[str, _Job] = {}
        self._running_keys: dict[tuple[str, str, str], _Job] = {}
        self._results: OrderedDict[str, tuple[ResultPayload, int]] = OrderedDict()
        self._result_bytes = 0
        self._succeeded: OrderedDict[tuple[str, str, str], str] = OrderedDict()
        self._cancelled: OrderedDict[str, None] = OrderedDict()
        self._catching_up_until = 0.0
        self._marker: str | None = None
        self._mqtt: MqttConnection | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self.ready = asyncio.Event()
        self.memory = DeviceMemoryChannel(
            self._send_memory_request,
            lambda: self._mqtt is not None and self._mqtt.is_connected,
        )
        """The fleet's memory, for this device's agents (``ctx.memory``)."""

    # Lifecycle ------------------------------------------------------------------------------

    def _presence(self, state: Literal["online", "offline"]) -> bytes:
        payload = PresencePayload(
            state=state,
            agents=tuple(self.agents),
            heartbeat_s=self.heartbeat_s,
            boot=self.boot,
            running=self._held() if state == "online" else (),
        )
        return encode("presence", self.device_id, payload)

    def _held(self) -> tuple[str, ...]:
        """Every dispatch id this device works on (or waits to hear about)."""
        ids = list(self._jobs)
        for job in self._jobs.values():
            ids.extend(job.also)
        return tuple(ids)

    async def run(self) -> None:
        """Connect, announce, serve dispatches until cancelled, then say offline."""
        will = (self.topics.presence(self.device_id), self._presence("offline"))
        client_id = self.broker.client_id("device", self.device_id)
        async with (
            # A dispatch is acknowledged to the broker only once this device is done with it:
            # if the process dies first, the broker delivers it again when the device is back.
            MqttConnection(self.broker, client_id, will=will, manual_ack=True) as mqtt,
            asyncio.TaskGroup() as tasks,
        ):
            self._mqtt, self._tasks = mqtt, tasks
            mqtt.on_connected(self._reconnected)
            if mqtt.session_present:
                # What waited in our session arrives first: it may have been given to another
                # device meanwhile, so until our marker comes back every dispatch is claimed.
                self._catch_up()
            # Handled as they are read (no queue in between), including any that arrived
            # while we connected.
            mqtt.handle_messages(self._receive)
            await mqtt.subscribe(self.topics.device_inbox(self.device_id))
            for agent in self.agents.values():
                card = CardPayload(
                    device=self.device_id, profile=agent.profile.model_dump(mode="json")
                )
                try:
                    await mqtt.publish(
                        self.topics.card(self.device_id, agent.id),
                        encode("card", self.device_id, card),
                        retain=True,
                    )
                except ProtocolError as exc:
                    raise ProtocolError(
                        f"the broker refused the card of agent {agent.id!r} of device "
                        f"{self.device_id!r} ({exc}): is the agent listed for this device in "
                        "the broker's devices file?"
                    ) from exc
            await mqtt.publish(
                self.topics.presence(self.device_id), self._presence("online"), retain=True
            )
            heartbeat = tasks.create_task(self._heartbeat())
            self.ready.set()
            try:
                await asyncio.get_running_loop().create_future()
            finally:
                heartbeat.cancel()
                for job in self._jobs.values():
                    if job.runner is not None:
                        job.runner.cancel()
                # Say goodbye, but do not wait for a broker that is gone (its last will
                # says the same thing when the connection drops).
                with contextlib.suppress(ProtocolError, TimeoutError):
                    async with asyncio.timeout(2):
                        await asyncio.shield(
                            mqtt.publish(
                                self.topics.presence(self.device_id),
                                self._presence("offline"),
                                retain=True,
                            )
                        )

    def _reconnected(self, session_present: bool) -> None:
        """Back on the broker: announce ourselves, and catch up on what waited for us."""
        assert self._mqtt is not None
        if session_present:
            self._catch_up()
        self._mqtt.publish_nowait(
            self.topics.presence(self.device_id), self._presence("online"), retain=True
        )

    def _catch_up(self) -> None:
        """Until our own marker comes back, every dispatch may be one that waited for us."""
        assert self._mqtt is not None
        self._marker = uuid.uuid4().hex
        self._catching_up_until = time.monotonic() + _CATCH_UP_LIMIT_S
        self._mqtt.publish_nowait(
            self.topics.device_inbox(self.device_id),
            encode("sync", self.device_id, SyncPayload(), message_id=self._marker),
        )

    @property
    def catching_up(self) -> bool:
        """Whether dispatches that waited in the session may still be arriving."""
        return time.monotonic() < self._catching_up_until

    async def _heartbeat(self) -> None:
        assert self._mqtt is not None
        while True:
            await asyncio.sleep(self.heartbeat_s)
            now = time.monotonic()
            for job in list(self._jobs.values()):
                claimed = job.claimed_at
                if (
                    job.runner is None
                    and claimed is not None
                    and now - claimed > self.claim_timeout_s
                ):
                    # Nobody said go: not started. If the orchestrator still wants it, it
                    # sends it again once our heartbeat no longer lists it.
                    del self._jobs[job.dispatch_id]
                    self._mqtt.ack(job.message)
            self._mqtt.publish_nowait(
                self.topics.presence(self.device_id), self._presence("online"), retain=True
            )

    # Receiving ------------------------------------------------------------------------------

    def _receive(self, message: Message) -> None:
        assert self._mqtt is not None
        if not self._handle(message):
            self._mqtt.ack(message)

    def _handle(self, message: Message) -> bool:
        """Act on a message; whether a job now holds it (and acknowledges it when done)."""
        try:
            envelope, payload = parse_envelope(message.payload)
        except ProtocolError as exc:
            log.warning("rejected a message on %s: %s", message.topic, exc.message)
            self._reply_error(exc, exc.details.get("id"))
            return False
        match payload:
            case DispatchPayload():
                return self._on_dispatch(envelope, payload, message)
            case CancelPayload():
                self._on_cancel(envelope.correlation_id)
            case ProceedPayload():
                job = self._jobs.get(envelope.correlation_id or "")
                if job is not None and job.runner is None:
                    self._start(job)
            case SyncPayload():
                if envelope.id == self._marker:
                    self._catching_up_until = 0.0
            case MemoryResponsePayload():
                self.memory.answered(envelope.correlation_id, payload)
            case _:
                log.info("ignored a %s message on %s", envelope.kind, message.topic)
        return False

    def _on_dispatch(self, envelope: Envelope, job: DispatchPayload, message: Message) -> bool:
        dispatch_id = envelope.id
        agent = self.agents.get(job.agent)
        if agent is None:
            problem = ProtocolError(f"agent {job.agent!r} is not on device {self.device_id}")
            self._reply_error(problem, dispatch_id, job.reply_to)
            return False
        try:
            subtask = Subtask.model_validate(job.subtask)
        except ValidationError as exc:
            problem = MalformedMessage(
                f"dispatch {dispatch_id}: subtask is invalid: {describe_validation_error(exc)}"
            )
            self._reply_error(problem, dispatch_id, job.reply_to)
            return False
        if dispatch_id in self._cancelled or dispatch_id in self._jobs:
            return False  # told not to run it, or holding it already
        key = (job.task_id, subtask.id, job.agent)
        running = self._running_keys.get(key)
        if running is not None and running.runner is not None:
            running.also[dispatch_id] = job.reply_to  # answered when that run ends
            return False
        cached = self._results.get(dispatch_id)
        if cached is not None:
            self._send_result(dispatch_id, job.reply_to, cached[0])  # its answer was lost
            return False
        done_as = self._succeeded.get((job.task_id, subtask.id, job.agent))
        if done_as is not None and done_as in self._results:
            # Already done here for this task (asked again by a resumed orchestrator, say):
            # the saved result stands; nothing runs twice.
            self._send_result(dispatch_id, job.reply_to, self._results[done_as][0])
            return False
        held = _Job(dispatch_id, job, agent, subtask, message)
        self._jobs[dispatch_id] = held
        if message.dup or self.catching_up:
            # It may have waited for us while the orchestrator gave it to someone else: ask.
            held.claimed_at = time.monotonic()
            claim = ClaimPayload(task_id=job.task_id, subtask_id=subtask.id)
            self._publish_out(
                job.reply_to, encode("claim", self.device_id, claim, correlation_id=dispatch_id)
            )
            return True
        self._start(held)
        return True

    def _on_cancel(self, dispatch_id: str | None) -> None:
        if not dispatch_id:
            return
        self._cancelled[dispatch_id] = None
        while len(self._cancelled) > _REMEMBERED_CANCELS:
            self._cancelled.popitem(last=False)
        for job in self._jobs.values():
            if dispatch_id in job.also:
                del job.also[dispatch_id]  # that asker gave up; the run goes on for the other
                return
        found = self._jobs.get(dispatch_id)
        if found is None:
            return
        job = found
        if job.also:
            # Another dispatch of the same subtask still wants this run: it answers that one.
            new_id, reply_to = next(iter(job.also.items()))
            del job.also[new_id]
            del self._jobs[dispatch_id]
            job.dispatch_id = new_id
            job.job = job.job.model_copy(update={"reply_to": reply_to})
            self._jobs[new_id] = job
            return
        if job.runner is not None:
            job.runner.cancel()
        else:
            del self._jobs[dispatch_id]
            assert self._mqtt is not None
            self._mqtt.ack(job.message)

    def _start(self, job: _Job) -> None:
        assert self._tasks is not None
        job.claimed_at = None
        self._running_keys[job.key] = job
        job.runner = self._tasks.create_task(self._execute_safely(job))

    # Running ---------------------------------------------------------------------------------

    async def _execute_safely(self, job: _Job) -> None:
        """Run one dispatch; nothing it raises may take the runtime (and its TaskGroup) down."""
        try:
            await self._execute(job)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("dispatch %s failed inside the device runtime", job.dispatch_id)
        finally:
            self._jobs.pop(job.dispatch_id, None)
            if self._running_keys.get(job.key) is job:
                del self._running_keys[job.key]
            if self._mqtt is not None:
                self._mqtt.ack(job.message)  # done with it: the broker may forget it

    async def _execute(self, held: _Job) -> None:
        job, subtask = held.job, held.subtask

        def progress(
            message: str, fraction: float | None, step: Mapping[str, Any] | None = None
        ) -> None:
            dispatch_id, reply_to = held.asker()
            body = ProgressPayload(
                task_id=job.task_id,
                subtask_id=subtask.id,
                message=message[:4000],
                fraction=fraction,
                step=dict(step) if step else None,
            )
            # A progress line may be lost (QoS 0: it never fills the broker's queues); a step's
            # record is kept in the task's log, so it goes with QoS 1.
            self._publish_out(
                reply_to,
                encode("progress", self.device_id, body, correlation_id=dispatch_id),
                qos=1 if step else 0,
            )

        def stream(chunk: ArtifactChunk) -> None:
            # QoS 1, like the result after it on the same topic: the broker keeps their order,
            # so every chunk reaches the orchestrator before the attempt's end.
            dispatch_id, reply_to = held.asker()
            self._publish_out(reply_to, _artifact_message(self.device_id, dispatch_id, held, chunk))

        ctx = SubtaskContext(
            task_id=job.task_id,
            subtask=subtask,
            inputs=dict(job.inputs),
            attempt=job.attempt,
            agent_id=held.agent.id,
            _progress=progress,
            _artifacts=stream,
            memory=self.memory.for_agent(held.agent.id, job.task_id, lambda: held.asker()[1]),
            message=_incoming(job.message, held.dispatch_id),
        )
        try:
            async with self._slots[held.agent.id]:
                raw = await held.agent.run(subtask, ctx)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            result = ResultPayload(
                task_id=job.task_id,
                subtask_id=subtask.id,
                status="failed",
                error=error_outcome(exc),
            )
        else:
            outcome = SubtaskResult.of(raw, ctx)
            edits = tuple(e.model_dump(mode="json") for e in outcome.edits)
            result = ResultPayload(
                task_id=job.task_id,
                subtask_id=subtask.id,
                status="done",
                output=outcome.output,
                edits=edits,
            )
        # The dispatch this run answers may have changed while it ran (see _on_cancel).
        dispatch_id, job = held.dispatch_id, held.job
        data = encode("result", self.device_id, result, correlation_id=dispatch_id)
        self._remember(dispatch_id, held.key, result, len(data))
        for also_id, reply_to in held.also.items():
            self._remember(also_id, held.key, result, len(data))
            self._send_result(also_id, reply_to, result)
        assert self._mqtt is not None
        # Once the broker has the answer, the dispatch may be acknowledged (see the caller).
        await self._mqtt.publish(self.topics.device_out(self.device_id, job.reply_to), data)

    def _remember(
        self, dispatch_id: str, key: tuple[str, str, str], result: ResultPayload, size: int
    ) -> None:
        """Keep a result (bounded), so a lost answer can be sent again without running again."""
        self._results[dispatch_id] = (result, size)
        self._result_bytes += size
        if result.status == "done":
            self._succeeded[key] = dispatch_id
        while self._results and (
            len(self._results) > _CACHED_RESULTS or self._result_bytes > _CACHED_BYTES
        ):
            _, (_, dropped) = self._results.popitem(last=False)
            self._result_bytes -= dropped
        while len(self._succeeded) > _CACHED_RESULTS:
            self._succeeded.popitem(last=False)

    # Sending --------------------------------------------------------------------------------

    def _publish_out(self, reply_to: str | None, data: bytes, *, qos: int = 1) -> None:
        assert self._mqtt is not None
        self._mqtt.publish_nowait(self.topics.device_out(self.device_id, reply_to), data, qos=qos)

    def _send_memory_request(
        self, message_id: str, request: MemoryRequestPayload, replica: str | None
    ) -> None:
        if self._mqtt is None:
            raise MemoryUnavailable("the device is not connected to the fleet yet")
        self._mqtt.publish_nowait(
            self.topics.device_out(self.device_id, replica),
            encode("memory_request", self.device_id, request, message_id=message_id),
        )

    def _send_result(self, dispatch_id: str, reply_to: str | None, result: ResultPayload) -> None:
        self._publish_out(
            reply_to, encode("result", self.device_id, result, correlation_id=dispatch_id)
        )

    def _reply_error(
        self, error: FleetmindError, about: str | None, reply_to: str | None = None
    ) -> None:
        if self._mqtt is None:
            return
        body = ErrorPayload(error=error.to_dict())
        self._publish_out(reply_to, encode("error", self.device_id, body, correlation_id=about))


def _incoming(value: dict[str, Any] | None, dispatch_id: str) -> IncomingMessage | None:
    """The message a dispatch carries for ``ctx.message`` (one that cannot be read is left
    out: the agent runs on its inputs, as for a task not started from a message)."""
    if value is None:
        return None
    try:
        return IncomingMessage.from_json(value)
    except MalformedMessage as exc:
        log.warning("dispatch %s: its message cannot be read: %s", dispatch_id, exc)
        return None


def _artifact_message(device_id: str, dispatch_id: str, held: _Job, chunk: ArtifactChunk) -> bytes:
    """The ``artifact`` message for one streamed chunk; what the wire cannot carry is said to
    the agent that streamed it, in one line (its subtask fails with it unless it catches it)."""
    try:
        body = ArtifactPayload(
            task_id=held.job.task_id,
            subtask_id=held.subtask.id,
            artifact_id=chunk.artifact_id,
            name=None if chunk.name is None else chunk.name[:200],
            parts=tuple(part_to_json(p) for p in chunk.parts),
            append=chunk.append,
            last=chunk.last,
        )
    except ValidationError as exc:
        raise MalformedMessage(
            f"artifact chunk cannot be sent: {describe_validation_error(exc, show_input=False)}"
        ) from None
    data = encode("artifact", device_id, body, correlation_id=dispatch_id)
    if len(data) > MAX_MESSAGE_BYTES:
        raise MessageTooLarge(
            f"artifact chunk of {len(data)} bytes is over the message limit of "
            f"{MAX_MESSAGE_BYTES}; stream it in smaller chunks"
        )
    return data
