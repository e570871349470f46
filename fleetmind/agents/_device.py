"""The device runtime: serves local agents to a fleet over an MQTT broker.

``fleetmind agent serve`` runs one of these. It announces each agent's card (retained) and the
device's presence (retained, with a last will that says offline), takes dispatched subtasks
from its agents' inboxes, runs them within each agent's concurrency limit, and streams progress
and results back. A dispatch redelivered by the broker (QoS 1 after a reconnect) is recognised
by its message id and has no second effect. A malformed message gets an error reply and the
runtime keeps running.

It imports no embedding or ANN library: routing happens where the orchestrator runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from fleetmind._task_model import Subtask
from fleetmind.agents._agent import Agent, SubtaskContext, SubtaskResult
from fleetmind.errors import FleetmindError, MalformedMessage, ProtocolError
from fleetmind.protocols._envelope import (
    CancelPayload,
    CardPayload,
    DispatchPayload,
    ErrorPayload,
    PresencePayload,
    ProgressPayload,
    ResultPayload,
    new_envelope,
    parse_envelope,
)
from fleetmind.protocols._mqtt import BrokerAddress, Message, MqttConnection
from fleetmind.protocols._topics import Topics

log = logging.getLogger("fleetmind.device")

_SEEN_LIMIT = 10_000


class DeviceRuntime:
    """Serves ``agents`` as device ``device_id`` of a fleet, until cancelled.

    Args:
        device_id: The device's name (its MQTT username, normally).
        agents: The agents it hosts.
        broker: Where the broker is and how to log in.
        fleet: The fleet's name (topic prefix).
        heartbeat_s: How often presence is refreshed; the orchestrator declares the device
            dead after a few missed heartbeats.
    """

    def __init__(
        self,
        device_id: str,
        agents: Sequence[Agent],
        broker: BrokerAddress,
        *,
        fleet: str = "default",
        heartbeat_s: float = 5.0,
    ) -> None:
        self.device_id = device_id
        self.agents = {a.id: a for a in agents}
        self.broker = broker
        self.topics = Topics(fleet)
        self.heartbeat_s = heartbeat_s
        self._slots = {a.id: asyncio.Semaphore(a.profile.limits.max_concurrency) for a in agents}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._running: dict[str, asyncio.Task[None]] = {}
        self.ready = asyncio.Event()

    def _presence(self, state: str) -> bytes:
        payload = PresencePayload(
            state=state, agents=tuple(self.agents), heartbeat_s=self.heartbeat_s
        )
        return new_envelope("presence", self.device_id, payload).to_bytes()

    async def run(self) -> None:
        """Connect, announce, serve dispatches until cancelled, then say offline."""
        will = (self.topics.presence(self.device_id), self._presence("offline"))
        async with (
            MqttConnection(self.broker, f"fm-device-{self.device_id}", will=will) as mqtt,
            asyncio.TaskGroup() as tasks,
        ):
            await mqtt.subscribe(
                self.topics.device_inbox(self.device_id),
                *(self.topics.agent_inbox(a) for a in self.agents),
            )
            for agent in self.agents.values():
                card = CardPayload(
                    device=self.device_id, profile=agent.profile.model_dump(mode="json")
                )
                await mqtt.publish(
                    self.topics.card(agent.id),
                    new_envelope("card", self.device_id, card).to_bytes(),
                    retain=True,
                )
            await mqtt.publish(
                self.topics.presence(self.device_id), self._presence("online"), retain=True
            )
            heartbeat = tasks.create_task(self._heartbeat(mqtt))
            self.ready.set()
            # Dispatches are handled as they are read (no queue in between); this task only
            # waits to be cancelled.
            mqtt.handle_messages(lambda message: self._receive(mqtt, tasks, message))
            try:
                await asyncio.get_running_loop().create_future()
            finally:
                heartbeat.cancel()
                for running in self._running.values():
                    running.cancel()
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

    async def _heartbeat(self, mqtt: MqttConnection) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            mqtt.publish_nowait(
                self.topics.presence(self.device_id), self._presence("online"), retain=True
            )

    def _receive(self, mqtt: MqttConnection, tasks: asyncio.TaskGroup, message: Message) -> None:
        try:
            envelope, payload = parse_envelope(message.payload)
        except ProtocolError as exc:
            log.warning("rejected a message on %s: %s", message.topic, exc.message)
            self._reply_error(mqtt, exc, exc.details.get("id"))
            return
        if envelope.id in self._seen:
            return  # a redelivered duplicate: it already had its effect
        self._seen[envelope.id] = None
        if len(self._seen) > _SEEN_LIMIT:
            self._seen.popitem(last=False)
        match payload:
            case DispatchPayload():
                agent = self.agents.get(payload.agent)
                if agent is None or message.topic != self.topics.agent_inbox(payload.agent):
                    self._reply_error(
                        mqtt,
                        ProtocolError(f"agent {payload.agent!r} is not on this device"),
                        envelope.id,
                        payload.reply_to,
                    )
                    return
                run = tasks.create_task(self._execute_safely(mqtt, envelope.id, agent, payload))
                self._running[envelope.id] = run
            case CancelPayload():
                running = self._running.get(envelope.correlation_id or "")
                if running is not None:
                    running.cancel()
            case _:
                log.info("ignored a %s message on %s", envelope.kind, message.topic)

    def _reply_error(
        self,
        mqtt: MqttConnection,
        error: FleetmindError,
        about: str | None,
        reply_to: str | None = None,
    ) -> None:
        reply = new_envelope(
            "error", self.device_id, ErrorPayload(error=error.to_dict()), correlation_id=about
        )
        mqtt.publish_nowait(self.topics.device_out(self.device_id, reply_to), reply.to_bytes())

    async def _execute_safely(
        self, mqtt: MqttConnection, dispatch_id: str, agent: Agent, job: DispatchPayload
    ) -> None:
        """Run one dispatch; nothing it raises may take the runtime (and its TaskGroup) down."""
        try:
            await self._execute(mqtt, dispatch_id, agent, job)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("dispatch %s failed inside the device runtime", dispatch_id)
        finally:
            self._running.pop(dispatch_id, None)

    async def _execute(
        self, mqtt: MqttConnection, dispatch_id: str, agent: Agent, job: DispatchPayload
    ) -> None:
        out = self.topics.device_out(self.device_id, job.reply_to)
        try:
            subtask = Subtask.model_validate(job.subtask)
        except ValidationError as exc:
            problem = MalformedMessage(
                f"dispatch {dispatch_id}: subtask is invalid: {exc.errors()[0]['msg']}"
            )
            self._reply_error(mqtt, problem, dispatch_id, job.reply_to)
            return

        def progress(
            message: str, fraction: float | None, step: Mapping[str, Any] | None = None
        ) -> None:
            body = ProgressPayload(
                task_id=job.task_id,
                subtask_id=subtask.id,
                message=message,
                fraction=fraction,
                step=dict(step) if step else None,
            )
            update = new_envelope("progress", self.device_id, body, correlation_id=dispatch_id)
            mqtt.publish_nowait(out, update.to_bytes())

        ctx = SubtaskContext(
            task_id=job.task_id,
            subtask=subtask,
            inputs=dict(job.inputs),
            attempt=job.attempt,
            agent_id=agent.id,
            _progress=progress,
        )
        try:
            async with self._slots[agent.id]:
                raw = await agent.run(subtask, ctx)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._send_result(mqtt, dispatch_id, job, "failed", error=_error(exc))
            return
        result = raw if isinstance(raw, SubtaskResult) else SubtaskResult(raw)
        edits = tuple(e.model_dump(mode="json") for e in (*ctx.edits, *result.edits))
        await self._send_result(mqtt, dispatch_id, job, "done", output=result.output, edits=edits)

    async def _send_result(
        self,
        mqtt: MqttConnection,
        dispatch_id: str,
        job: DispatchPayload,
        status: str,
        *,
        output: Any = None,
        error: dict[str, Any] | None = None,
        edits: tuple[dict[str, Any], ...] = (),
    ) -> None:
        body = ResultPayload(
            task_id=job.task_id,
            subtask_id=str(job.subtask.get("id", "")),
            status=status,  # type: ignore[arg-type]
            output=output,
            error=error,
            edits=edits,
        )
        result = new_envelope("result", self.device_id, body, correlation_id=dispatch_id)
        await mqtt.publish(self.topics.device_out(self.device_id, job.reply_to), result.to_bytes())


def _error(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, FleetmindError):
        return exc.to_dict()
    retryable = not isinstance(exc, ValueError | TypeError)
    message = str(exc) or type(exc).__name__
    return {"type": type(exc).__name__, "message": message, "retryable": retryable, "details": {}}
