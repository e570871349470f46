"""The console of a fleet on an MQTT broker: its devices, and the tasks its replicas run.

Devices are watched through an :class:`MqttFleetLink` that takes no tasks and keeps no
session (a look at the fleet, as ``fleetmind devices`` takes). The tasks' events are read from
their topics on a connection of their own. Tasks go to the orchestrator replicas through
:func:`submit_via_broker`. With a store (the one the replicas share) the task list and graphs
come from it; without one, the console knows the tasks it has seen on the broker since it
started, and the graphs of those it submitted, their states followed from the events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from fleetmind._ids import new_task_id
from fleetmind.errors import FleetmindError, ProtocolError, RunError
from fleetmind.orchestrator import (
    Fleet,
    InMemoryStore,
    SkillRouter,
    Store,
    TaskGraph,
    parse_task_text,
)
from fleetmind.protocols import (
    BrokerAddress,
    MqttConnection,
    TaskCancelPayload,
    TaskEventPayload,
    Topics,
    encode,
)
from fleetmind.protocols import parse_envelope as _parse
from fleetmind.serve._console_events import EventHub
from fleetmind.serve._console_sources import POLL_S, ApiError, ConsoleSource
from fleetmind.serve._console_views import device_view, graph_view
from fleetmind.serve._fleet_link import MqttFleetLink
from fleetmind.serve._submit import ACCEPTED, submit_via_broker

log = logging.getLogger("fleetmind.console")

KEPT_TASKS = 500
CANCEL_REASON = "cancelled from the console"
_ENDED = ("done", "failed", "cancelled")
"""Tasks seen on the broker that a console without a store remembers (the newest)."""

_STATUS_OF = {
    "subtask_ready": "ready",
    "subtask_started": "running",
    "subtask_retried": "running",
    "subtask_reassigned": "ready",
    "subtask_done": "done",
    "subtask_failed": "failed",
    "subtask_skipped": "skipped",
    "subtask_cancelled": "cancelled",
}


class BrokerSource(ConsoleSource):
    """A fleet's devices and replicas, seen through its broker.

    Args:
        broker: The broker and a login that may read the fleet and submit tasks (an
            orchestrator account).
        fleet_name: The fleet's name on the broker.
        store: The store the replicas share (None: only what the broker shows).
    """

    mode = "broker"
    watch_logs = False  # the tasks' events come from the broker

    def __init__(
        self,
        broker: BrokerAddress,
        *,
        fleet_name: str = "default",
        store: Store | None = None,
        poll_s: float = POLL_S,
    ) -> None:
        super().__init__(store or InMemoryStore(), fleet_name=fleet_name, poll_s=poll_s)
        self.broker = broker
        self.has_store = store is not None
        self.topics = Topics(fleet_name)
        self._link: MqttFleetLink | None = None
        self._seen: dict[str, dict[str, Any]] = {}
        self._graphs: dict[str, TaskGraph] = {}
        self._states: dict[str, dict[str, dict[str, Any]]] = {}
        self._jobs: set[asyncio.Task[None]] = set()
        self._hub: EventHub | None = None

    @property
    def read_only(self) -> bool:
        return False

    # Devices ------------------------------------------------------------------------------

    async def devices(self) -> list[dict[str, Any]]:
        link = self._link
        if link is None:
            return []
        return [self._device(state.device_id) for state in link.devices.values()]

    def _device(self, device_id: str) -> dict[str, Any]:
        assert self._link is not None
        state = self._link.devices[device_id]
        profiles = self._link.profiles
        mine = [p for p in profiles.values() if p.device == device_id]
        return device_view(device_id, state.online, state.last_seen_at, mine)

    async def _watch_devices(self, hub: EventHub) -> None:
        shown: dict[str, tuple[bool, float, frozenset[str]]] = {}
        while True:
            link = self._link
            if link is not None:
                for device_id, state in list(link.devices.items()):
                    now = (state.online, state.last_seen_at, frozenset(state.agents))
                    if shown.get(device_id) != now:
                        shown[device_id] = now
                        hub.publish(
                            "device",
                            {
                                "id": device_id,
                                "online": state.online,
                                "last_seen_at": state.last_seen_at or None,
                            },
                        )
            await asyncio.sleep(self.poll_s)

    # Tasks --------------------------------------------------------------------------------

    async def tasks(self, limit: int) -> list[dict[str, Any]]:
        if self.has_store:
            return await super().tasks(limit)
        rows = sorted(self._seen.values(), key=lambda r: r["created_at"], reverse=True)
        return [dict(r, counts=self._counts_of(r["id"])) for r in rows[:limit]]

    def _counts_of(self, task_id: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for state in self._states.get(task_id, {}).values():
            counts[state["status"]] = counts.get(state["status"], 0) + 1
        return counts

    async def task(self, task_id: str) -> dict[str, Any]:
        if self.has_store:
            try:
                return await super().task(task_id)
            except ApiError as exc:  # submitted here, and no replica has stored it yet
                if exc.status != 404 or task_id not in self._graphs:
                    raise
        graph = self._graphs.get(task_id)
        if graph is None:
            known = task_id in self._seen
            why = "its graph is known only to its replica's store (give --store)" if known else ""
            raise ApiError(404, f"no task {task_id}" + (f": {why}" if why else ""))
        seen = self._seen.get(task_id, {})
        view = graph_view(task_id, seen.get("status", "running"), graph, ())
        states = self._states.get(task_id, {})
        for subtask in view["subtasks"]:
            subtask.update(states.get(subtask["id"], {}))
        view["counts"] = self._counts_of(task_id) or view["counts"]
        return view

    def _track(self, task_id: str, event: Mapping[str, Any], hub: EventHub) -> None:
        """Follow one wire event of a task: its row, and its subtask's state."""
        now = time.time()
        row = self._seen.get(task_id)
        if row is None:
            row = self._seen[task_id] = {
                "id": task_id,
                "name": str(event.get("name") or task_id),
                "status": "running",
                "created_at": now,
                "updated_at": now,
                "owner": None,
                "source": None,
            }
            if len(self._seen) > KEPT_TASKS:
                oldest = min(self._seen.values(), key=lambda r: r["created_at"])["id"]
                self._forget(oldest)
            if not self.has_store:
                hub.publish("task", {"task_id": task_id, "status": "running"})
        row["updated_at"] = now
        kind = str(event.get("kind", ""))
        if kind == ACCEPTED:
            row["owner"] = event.get("replica")
            return
        subtask_id = event.get("subtask_id")
        status = _STATUS_OF.get(kind)
        if isinstance(subtask_id, str) and status is not None:
            state = self._states.setdefault(task_id, {}).setdefault(subtask_id, {"retries": 0})
            state["status"] = status
            if kind == "subtask_started":
                state["agent"] = event.get("agent")
                state["started_at"] = state.get("started_at") or event.get("at")
                state["attempts"] = int(state.get("attempts") or 0) + 1
            elif kind == "subtask_retried":
                state["retries"] += 1
                state["attempts"] = int(state.get("attempts") or 0)
            elif kind in ("subtask_done", "subtask_failed", "subtask_cancelled"):
                state["ended_at"] = event.get("at")
                if event.get("duration_s") is not None:
                    state["duration_s"] = event.get("duration_s")
                error = event.get("error")
                if isinstance(error, dict):
                    state["error"] = f"{error.get('type')}: {error.get('message')}"
        elif kind == "subtask_routed" and isinstance(subtask_id, str):
            state = self._states.setdefault(task_id, {}).setdefault(subtask_id, {"retries": 0})
            state["routing"] = {
                "candidates": event.get("candidates") or [],
                "excluded": event.get("excluded") or {},
            }
        if kind in ("task_finished", "task_result"):
            self._finish(task_id, str(event.get("status") or row["status"]), hub)

    def _finish(self, task_id: str, status: str, hub: EventHub) -> None:
        row = self._seen.get(task_id)
        if row is None or row["status"] == status:
            return
        row["status"] = status
        if not self.has_store:
            hub.publish("task", {"task_id": task_id, "status": status})

    def _forget(self, task_id: str) -> None:
        self._seen.pop(task_id, None)
        self._graphs.pop(task_id, None)
        self._states.pop(task_id, None)

    async def _follow_tasks(self, hub: EventHub) -> None:
        """Every task event of the fleet, from its topics, as ``graph`` events; a lost
        connection is made again."""
        while True:
            try:
                await self._read_task_events(hub)
            except (ProtocolError, OSError) as exc:
                log.warning("task events from the broker: %s; connecting again", exc)
            await asyncio.sleep(max(self.poll_s, 1.0))

    async def _read_task_events(self, hub: EventHub) -> None:
        client_id = self.broker.client_id("console-tasks", str(os.getpid()))
        async with MqttConnection(self.broker, client_id, session_expiry_s=0) as mqtt:
            await mqtt.subscribe(f"{self.topics.prefix}/tasks/+/events")
            async for message in mqtt.messages():
                try:
                    _, payload = _parse(message.payload)
                except ProtocolError:
                    continue
                if not isinstance(payload, TaskEventPayload):
                    continue
                event = dict(payload.event)
                if payload.result is not None:
                    event.setdefault("status", payload.result.get("status"))
                self._track(payload.task_id, event, hub)
                if event.get("kind") != ACCEPTED:
                    data = {
                        "task_id": payload.task_id,
                        "version": event.get("version"),
                        "event": event,
                    }
                    hub.publish("graph", data)

    # Submitting ---------------------------------------------------------------------------

    async def submit_file(self, file_name: str, content: str, params: Mapping[str, Any]) -> str:
        try:
            parsed = parse_task_text(content, file_name, params)
        except FleetmindError as exc:
            raise ApiError(400, exc.message) from None
        hub = self._hub
        if hub is None:
            raise ApiError(503, "the console is not connected to the broker yet")
        task_id = new_task_id()
        graph = parsed.graph
        self._graphs[task_id] = graph.copy()
        self._states[task_id] = {s.id: {"status": "pending", "retries": 0} for s in graph}
        self._track(task_id, {"kind": "submitted", "name": graph.name}, hub)
        job = asyncio.create_task(
            self._submit(task_id, graph, hub), name=f"console submit {task_id}"
        )
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)
        return task_id

    async def _submit(self, task_id: str, graph: TaskGraph, hub: EventHub) -> None:
        try:
            result = await submit_via_broker(
                self.broker, graph, fleet_name=self.fleet_name, task_id=task_id
            )
        except RunError as exc:  # a replica refused it
            log.warning("task %s: %s", task_id, exc.message)
            self._finish(task_id, "failed", hub)
        except FleetmindError as exc:
            log.warning("task %s could not be submitted: %s", task_id, exc.message)
            self._finish(task_id, "failed", hub)
        else:
            self._finish(task_id, result.status, hub)

    async def submit_text(self, text: str) -> str:
        raise ApiError(
            400,
            "plain words are planned by a fleet run here (fleetmind console --fleet FILE.py); "
            "over the broker, submit a task file",
        )

    async def cancel(self, task_id: str) -> str:
        """Ask the replica that drives the task to cancel it (``task_cancel`` on the task's
        control topic); the page sees the task end through its events."""
        full_id, status = await self._status_of(task_id)
        if status in _ENDED:
            raise ApiError(409, f"task {full_id} has ended ({status})")
        if status == "interrupted":
            raise ApiError(
                409,
                f"task {full_id} is interrupted: a replica resumes it, then it can be cancelled",
            )
        request = TaskCancelPayload(task_id=full_id, reason=CANCEL_REASON)
        client_id = self.broker.client_id("console-cancel", f"{os.getpid()}-{full_id}")
        try:
            async with MqttConnection(self.broker, client_id, session_expiry_s=0) as mqtt:
                sender = f"console-{os.getpid()}"
                await mqtt.publish(
                    self.topics.task_control(full_id), encode("task_cancel", sender, request)
                )
        except (ProtocolError, OSError) as exc:
            raise ApiError(
                503, f"the cancel of task {full_id} did not reach the broker: {exc}"
            ) from None
        log.info("asked the replicas to cancel task %s", full_id)
        return "cancelling"

    async def _status_of(self, task_id: str) -> tuple[str, str]:
        """A task's full id and its status, from the store or from what the broker showed."""
        if self.has_store and task_id not in self._graphs:
            full_id = await asyncio.to_thread(self._resolve, task_id)
            record, _ = await asyncio.to_thread(self._guarded, lambda: self.store.load(full_id))
            return full_id, record.status
        seen = self._seen.get(task_id)
        if seen is None:
            raise ApiError(404, f"no task {task_id} seen on the broker since the console started")
        return task_id, str(seen["status"])

    async def resume(self, task_id: str) -> str:
        raise ApiError(501, "the broker's replicas resume their interrupted tasks themselves")

    # Running ------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def running(self, hub: EventHub) -> AsyncIterator[None]:
        link = MqttFleetLink(
            Fleet(router=SkillRouter()),
            self.broker,
            fleet_name=self.fleet_name,
            client_id=self.broker.client_id("console", str(os.getpid())),
            session_expiry_s=0,  # a look at the fleet leaves no session behind
        )
        async with link:
            self._link = link
            self._hub = hub
            workers = [
                asyncio.create_task(self._watch_devices(hub), name="console devices"),
                asyncio.create_task(self._follow_tasks(hub), name="console task events"),
            ]
            try:
                if self.has_store:
                    async with super().running(hub):
                        yield
                else:
                    yield
            finally:
                self._hub = None
                for work in [*workers, *self._jobs]:
                    work.cancel()
                await asyncio.gather(*workers, *self._jobs, return_exceptions=True)
                self._link = None
