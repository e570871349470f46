"""Tasks submitted over the broker, run on a fleet: the replicas' side of ``fleetmind submit``.

A client publishes a task's graph on the fleet's submit topic (:func:`submit_via_broker`); the
orchestrator replicas that accept tasks subscribe to it — as one MQTT shared-subscription group
when they have one, so each task goes to one replica — and the replica that takes it runs it on
its fleet and publishes the task's events and result on the task's own topic.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from typing import Any

from fleetmind.agents.remote import DeviceLink
from fleetmind.errors import FleetStateError, ProtocolError, error_outcome
from fleetmind.orchestrator import Fleet, TaskGraph
from fleetmind.protocols import SubmitPayload, TaskEventPayload, Topics, encode

log = logging.getLogger("fleetmind.fleet_link")

_REMEMBERED = 10_000
"""Ids of accepted tasks kept to recognise a redelivered submit."""


class FleetIntake:
    """Runs tasks submitted over the broker on ``fleet`` (a :class:`TaskIntake` of a link).

    Args:
        fleet: Where the tasks run; it must be open (``async with fleet``) while the link is.
        share_group: Replicas of one group split submitted tasks between them (an MQTT shared
            subscription); without a group every replica that accepts tasks gets every one.
    """

    def __init__(self, fleet: Fleet, share_group: str | None = None) -> None:
        self.fleet = fleet
        self.share_group = share_group
        self._accepted: dict[str, None] = {}

    def topic_filter(self, topics: Topics, protocol: str) -> str:
        if self.share_group and protocol == "3.1.1":
            # Shared subscriptions are MQTT 5 (the embedded development broker has none): this
            # replica takes every submitted task.
            log.warning(
                "the broker speaks MQTT 3.1.1 only: group %r cannot split tasks between replicas",
                self.share_group,
            )
            return topics.intake(None)
        return topics.intake(self.share_group)

    def submitted(self, link: DeviceLink, sender: str, task: SubmitPayload) -> None:
        if task.task_id in self._accepted:
            return  # a redelivered submit: the task already runs here
        self._accepted[task.task_id] = None
        while len(self._accepted) > _REMEMBERED:
            self._accepted.pop(next(iter(self._accepted)))
        link.spawn(self._run(link, sender, task))

    async def _run(self, link: DeviceLink, sender: str, submitted: SubmitPayload) -> None:
        """Run a submitted task and stream its events to its topic; never raises."""
        task_id = submitted.task_id
        # A task can arrive (from this replica's session) before the fleet is entered.
        await self.fleet.wait_open()
        try:
            graph = TaskGraph.from_definition(submitted.graph)
            handle = self.fleet.submit(
                graph, task_id=task_id, source=submitted.source or f"mqtt:{sender}"
            )
        except Exception as exc:  # a bad submission must not take the link down
            error = error_outcome(exc)
            log.warning("refused task %s from %s: %s", task_id, sender, error["message"])
            with contextlib.suppress(ProtocolError, FleetStateError):
                await _send_event(
                    link,
                    task_id,
                    {"kind": "task_refused", "task_id": task_id},
                    {"status": "failed", "outputs": {}, "errors": {"": error}},
                )
            return
        replica = link.replica_id
        log.info("running task %s from %s on replica %s", task_id, sender, replica)
        try:
            async for event in handle.events():
                await _send_event(link, task_id, {**dataclasses.asdict(event)}, None)
            result = await handle.result()
            summary = {"status": result.status, "outputs": result.outputs, "errors": result.errors}
            finished = {"kind": "task_result", "task_id": task_id, "replica": replica}
            await _send_event(link, task_id, finished, summary)
        except (ProtocolError, FleetStateError) as exc:
            log.warning("could not report task %s: %s", task_id, exc)
        except Exception:
            log.exception("task %s from %s failed inside the fleet link", task_id, sender)


async def _send_event(
    link: DeviceLink, task_id: str, event: dict[str, Any], result: dict[str, Any] | None
) -> None:
    body = TaskEventPayload(task_id=task_id, event=event, result=result)
    await link.connection.publish(
        link.topics.task_events(task_id), encode("task_event", link.replica_id, body)
    )
