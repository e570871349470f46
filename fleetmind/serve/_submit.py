"""Submit a task to a fleet's orchestrators over the broker, and follow it to its end.

The client needs no agents and no store: it publishes the task's graph on the fleet's submit
topic, where one orchestrator replica takes it (``fleetmind orchestrator serve``), and reads
the task's events from the task's own topic until the replica reports the result.
"""

from __future__ import annotations

import asyncio
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
            taken it (its first event says one has).

    Raises:
        RunError: The orchestrator refused the task (an invalid graph, say).
    """
    topics = Topics(fleet_name)
    task_id = task_id or new_task_id()
    client_id = broker.client_id("submit", f"{os.getpid()}-{task_id}")
    events: list[dict[str, Any]] = []
    async with (
        asyncio.timeout(timeout_s),
        # A session that outlives a short drop of the connection keeps the task's events.
        MqttConnection(broker, client_id, session_expiry_s=300) as mqtt,
    ):
        await mqtt.subscribe(topics.task_events(task_id))
        body = SubmitPayload(task_id=task_id, graph=graph.to_definition(), source=source)
        await mqtt.publish(topics.submit, new_envelope("submit", "client", body).to_bytes())
        if on_submitted is not None:
            on_submitted()
        async for message in mqtt.messages():
            try:
                envelope, payload = _parse(message.payload)
            except ProtocolError:
                continue
            if not isinstance(payload, TaskEventPayload) or payload.task_id != task_id:
                continue
            if payload.result is None:
                events.append(payload.event)
                if on_event is not None:
                    on_event(payload.event)
                continue
            result = payload.result
            if payload.event.get("kind") == "task_refused":
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
    raise ProtocolError(f"the connection closed before task {task_id} finished")
