"""Submit a task to a fleet's orchestrators over the broker, and follow it to its end.

The client needs no agents and no store: it publishes the task's graph on the fleet's submit
topic, where one orchestrator replica takes it (``fleetmind orchestrator serve``), and reads
the task's events from the task's own topic until the replica reports the result.

Replicas take submits on a connection that keeps no session, so a submit that the broker handed
to a replica which then hung or died is gone with it. The client therefore sends the same submit
(the same task id) again every few seconds until a replica says it has the task (its
``task_accepted`` event, or any event of the task); replicas that share a store recognise the
task id and run it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fleetmind._ids import new_task_id
from fleetmind.errors import ProtocolError, RunError
from fleetmind.orchestrator import TaskGraph
from fleetmind.protocols import (
    BrokerAddress,
    MqttConnection,
    SubmitPayload,
    TaskEventPayload,
    Topics,
    new_envelope,
)
from fleetmind.protocols import parse_envelope as _parse

log = logging.getLogger("fleetmind.submit")

RESEND_S = 3.0
"""How often a submit no replica has accepted yet is sent again."""

ACCEPTED = "task_accepted"
"""The event kind a replica publishes on the task's topic as soon as it has the task."""


@dataclass(frozen=True)
class SubmittedTaskResult:
    """How a task submitted over the broker ended, as its orchestrator reported it."""

    task_id: str
    status: str
    outputs: dict[str, Any]
    errors: dict[str, dict[str, Any]]
    replica: str
    """The orchestrator replica that ran the task."""
    events: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "done"


async def submit_via_broker(
    broker: BrokerAddress,
    graph: TaskGraph,
    *,
    fleet_name: str = "default",
    task_id: str | None = None,
    source: str | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    timeout_s: float | None = None,
    on_submitted: Callable[[], None] | None = None,
    on_accepted: Callable[[str], None] | None = None,
    resend_s: float | None = RESEND_S,
) -> SubmittedTaskResult:
    """Hand ``graph`` to the fleet's orchestrators and wait for its result.

    Args:
        broker: The fleet's broker and a login allowed to submit (an orchestrator account).
        graph: The task; it is sent as its definition, so it must not have run.
        fleet_name: The fleet's name (its topic prefix).
        task_id: The task's id (default: a new one).
        source: Where the task came from, kept with it by the orchestrator.
        on_event: Called with each of the task's events (a dict with its ``kind``) as it comes.
        timeout_s: Give up after this long (``TimeoutError``); no orchestrator taking the task
            looks the same as a slow one.
        on_submitted: Called once the task is on the broker, before any orchestrator has
            taken it.
        on_accepted: Called once, with the replica's name, when an orchestrator says it has
            the task (its ``task_accepted`` event, which ``on_event`` does not get, or the
            task's first event from an orchestrator that sends none).
        resend_s: Send the submit again this often (seconds) until an orchestrator has
            accepted it; None sends it once. Replicas that share a store run it once however
            often it comes; replicas that each keep their own store can run a task twice if
            one takes longer than this to accept it.

    Raises:
        RunError: The orchestrator refused the task (an invalid graph, say).
    """
    if resend_s is not None and resend_s <= 0:
        raise ValueError(f"resend_s must be positive, not {resend_s}")
    topics = Topics(fleet_name)
    task_id = task_id or new_task_id()
    client_id = broker.client_id("submit", f"{os.getpid()}-{task_id}")
    events: list[dict[str, Any]] = []
    accepted = asyncio.Event()
    async with (
        asyncio.timeout(timeout_s),
        # A session that outlives a short drop of the connection keeps the task's events.
        MqttConnection(broker, client_id, session_expiry_s=300) as mqtt,
    ):
        await mqtt.subscribe(topics.task_events(task_id))
        body = SubmitPayload(task_id=task_id, graph=graph.to_definition(), source=source)
        submit = new_envelope("submit", "client", body).to_bytes()  # sent again as it is
        await mqtt.publish(topics.submit, submit)
        if on_submitted is not None:
            on_submitted()
        resending = asyncio.create_task(
            _resend(mqtt, topics.submit, submit, accepted, resend_s, task_id)
        )
        try:
            async for message in mqtt.messages():
                try:
                    envelope, payload = _parse(message.payload)
                except ProtocolError:
                    continue
                if not isinstance(payload, TaskEventPayload) or payload.task_id != task_id:
                    continue
                kind = payload.event.get("kind")
                if not accepted.is_set():
                    accepted.set()
                    if on_accepted is not None:
                        replica = payload.event.get("replica") if kind == ACCEPTED else None
                        on_accepted(str(replica or envelope.sender))
                if kind == ACCEPTED:
                    continue  # another replica's answer to a resent submit, or a repeat
                if payload.result is None:
                    events.append(payload.event)
                    if on_event is not None:
                        on_event(payload.event)
                    continue
                result = payload.result
                if kind == "task_refused":
                    refusal = result["errors"][""]
                    raise RunError(f"the orchestrator refused task {task_id}: {refusal['message']}")
                return SubmittedTaskResult(
                    task_id=task_id,
                    status=str(result.get("status")),
                    outputs=dict(result.get("outputs") or {}),
                    errors=dict(result.get("errors") or {}),
                    replica=envelope.sender,
                    events=events,
                )
        finally:
            resending.cancel()
            await asyncio.gather(resending, return_exceptions=True)
    raise ProtocolError(f"the connection closed before task {task_id} finished")


async def _resend(
    mqtt: MqttConnection,
    topic: str,
    submit: bytes,
    accepted: asyncio.Event,
    every_s: float | None,
    task_id: str,
) -> None:
    """Publish ``submit`` again every ``every_s`` seconds until ``accepted`` is set.

    A replica that the broker handed the submit to may have hung or died before taking it;
    the next copy goes to a replica that is up (the broker's shared subscription skips the
    dead one once its connection is gone).
    """
    if every_s is None:
        return
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(accepted.wait(), every_s)
            return
        log.info("no orchestrator has accepted task %s yet: it is sent again", task_id)
        try:
            await mqtt.publish(topic, submit)
        except ProtocolError as exc:  # the connection's own end is reported by messages()
            log.warning("could not send task %s again: %s", task_id, exc.message)
