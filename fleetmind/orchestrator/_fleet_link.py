"""The orchestrator's side of the MQTT fleet: remote agents join and leave a Fleet.

A :class:`MqttFleetLink` listens for agent cards and device presence. When a device is online
its agents enter the fleet as :class:`RemoteAgent` proxies — the engine and the router treat
them like local ones — and when its presence says offline, or its heartbeats stop for
``dead_after_s``, they leave and their in-flight subtasks fail over to the next candidate.

Results are accepted only from the device a subtask was dispatched to and only while that
dispatch is pending: a result or progress message from another device, for an unknown id, or
replayed after the subtask moved on changes nothing (it is logged and dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from fleetmind._task_log import graph_edit_adapter
from fleetmind._task_model import Subtask
from fleetmind.agents import Agent, AgentProfile, SubtaskContext, SubtaskResult
from fleetmind.errors import (
    FleetmindError,
    FleetStateError,
    ProtocolError,
    SubtaskFailed,
    error_from_dict,
)
from fleetmind.orchestrator._fleet import Fleet
from fleetmind.protocols._envelope import (
    CancelPayload,
    CardPayload,
    DispatchPayload,
    ErrorPayload,
    PresencePayload,
    ProgressPayload,
    ResultPayload,
    SubmitPayload,
    TaskEventPayload,
    new_envelope,
    parse_envelope,
)
from fleetmind.protocols._mqtt import BrokerAddress, Message, MqttConnection
from fleetmind.protocols._topics import Topics

log = logging.getLogger("fleetmind.fleet_link")


@dataclass
class DeviceState:
    """What the orchestrator knows of one device."""

    device_id: str
    online: bool = False
    last_seen: float = 0.0
    """When the last presence or heartbeat arrived (monotonic clock)."""
    last_seen_at: float = 0.0
    """When the device sent it (its wall clock, Unix seconds)."""
    heartbeat_s: float | None = None
    agents: set[str] = field(default_factory=set)
    offline_since: float | None = None
    """When it said it went offline; its in-flight work fails over after a grace period."""


@dataclass
class _Pending:
    device: str
    future: asyncio.Future[SubtaskResult]
    ctx: SubtaskContext


class RemoteAgent(Agent):
    """An agent on another device, reached through the fleet link; same interface as a local one."""

    def __init__(self, profile: AgentProfile, link: MqttFleetLink, device: str) -> None:
        super().__init__(profile)
        self.device = device
        self._link = link

    async def run(self, subtask: Subtask, ctx: SubtaskContext) -> Any:
        return await self._link.dispatch(self, subtask, ctx)


class MqttFleetLink:
    """Connects a Fleet to an MQTT broker so that devices' agents work for it.

    Args:
        fleet: The fleet remote agents join.
        broker: The broker and the orchestrator's login.
        fleet_name: The fleet's topic prefix name.
        client_id: Stable, so the broker keeps this orchestrator's session (and results queued
            while it was away).
        share_group: With ``accept_tasks``, replicas of one group split submitted tasks
            between them (an MQTT shared subscription); without a group every orchestrator
            that accepts tasks gets every one.
        dead_after_s: Declare a device dead when no heartbeat came for this long (default:
            three of its heartbeat periods).
        accept_tasks: Take tasks submitted over the broker (``fleetmind submit``) and run them
            on ``fleet``, which must be open (``async with fleet``) while the link is.
        replica_id: This orchestrator's name in dispatches, so devices answer it alone
            (default: derived from ``client_id``).
        session_expiry_s: How long the broker keeps this link's session while it is away; 0
            for a short-lived look at the fleet.
    """

    def __init__(
        self,
        fleet: Fleet,
        broker: BrokerAddress,
        *,
        fleet_name: str = "default",
        client_id: str = "fm-orchestrator",
        share_group: str | None = None,
        dead_after_s: float | None = None,
        accept_tasks: bool = False,
        replica_id: str | None = None,
        session_expiry_s: int = 3600,
    ) -> None:
        self.fleet = fleet
        self.broker = broker
        self.topics = Topics(fleet_name)
        self.client_id = client_id
        self.share_group = share_group
        self.dead_after_s = dead_after_s
        self.accept_tasks = accept_tasks
        self.replica_id = replica_id or _replica_name(client_id)
        self._session_expiry_s = session_expiry_s
        self._forwarders: set[asyncio.Task[None]] = set()
        self._accepted: dict[str, None] = {}
        """Ids of tasks taken from the broker (a redelivered submit is not run twice)."""
        self.devices: dict[str, DeviceState] = {}
        self._cards: dict[str, tuple[str, AgentProfile]] = {}
        self._pending: dict[str, _Pending] = {}
        self._orphans: dict[tuple[str, str], tuple[str, ResultPayload]] = {}
        self._mqtt: MqttConnection | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._changed = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self.ignored: list[str] = []
        """Why messages were dropped (most recent last; for logs, tests and `fleetmind devices`)."""

    async def __aenter__(self) -> MqttFleetLink:
        self._mqtt = await MqttConnection(
            self.broker, self.client_id, session_expiry_s=self._session_expiry_s
        ).__aenter__()
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        # Handled as they are read: a result reaches its waiting dispatch without a queue.
        self._mqtt.handle_messages(self._receive)
        filters = [
            self.topics.all_cards,
            self.topics.all_presence,
            self.topics.all_device_out(),  # devices that answer on `out` (e.g. shell devices)
            self.topics.all_device_out(self.replica_id),
        ]
        if self.accept_tasks:
            filters.append(self._intake_filter())
        await self._mqtt.subscribe(*filters)
        self._loops = [self._tasks.create_task(self._watch_heartbeats())]
        return self

    def _intake_filter(self) -> str:
        assert self._mqtt is not None
        if self.share_group and self._mqtt.protocol == "3.1.1":
            # Shared subscriptions are MQTT 5 (the embedded development broker has none): this
            # orchestrator takes every submitted task.
            log.warning(
                "the broker speaks MQTT 3.1.1 only: group %r cannot split tasks between replicas",
                self.share_group,
            )
            return self.topics.intake(None)
        return self.topics.intake(self.share_group)

    async def __aexit__(self, *exc_info: Any) -> None:
        assert self._tasks is not None and self._mqtt is not None
        if self.accept_tasks:
            # Leaving the group: tasks submitted from now on go to the other replicas instead
            # of waiting in this replica's session.
            with contextlib.suppress(ProtocolError, FleetStateError, TimeoutError):
                await self._mqtt.unsubscribe(self._intake_filter())
        for forwarder in self._forwarders:
            forwarder.cancel()
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(FleetStateError("the fleet link closed"))
        for task in self._loops:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._tasks.__aexit__(None, None, None)
        await self._mqtt.__aexit__(*exc_info)

    @property
    def profiles(self) -> dict[str, AgentProfile]:
        """Every remote agent's latest card, online or not, by agent id."""
        return {agent_id: profile for agent_id, (_, profile) in self._cards.items()}

    async def settle(self, quiet_s: float = 0.3, timeout_s: float = 3.0) -> None:
        """Wait until retained cards and presence have arrived (no change for ``quiet_s``)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while True:
                    self._changed.clear()
                    try:
                        async with asyncio.timeout(quiet_s):
                            await self._changed.wait()
                    except TimeoutError:
                        return

    async def wait_for_agents(self, *agent_ids: str, timeout_s: float = 30.0) -> None:
        """Wait until these remote agents are in the fleet."""
        async with asyncio.timeout(timeout_s):
            while not all(self.fleet.agent(a) is not None for a in agent_ids):
                self._changed.clear()
                await self._changed.wait()

    # Dispatch ----------------------------------------------------------------------------------

    async def dispatch(self, agent: RemoteAgent, subtask: Subtask, ctx: SubtaskContext) -> Any:
        """Send a subtask to its device and wait for the result (cancelling it if cancelled)."""
        if self._mqtt is None:
            raise FleetStateError("the fleet link is not connected")
        orphan = self._orphans.pop((ctx.task_id, subtask.id), None)
        if orphan is not None and orphan[0] == agent.device:
            # This device finished the subtask while we were down: its answer stands.
            outcome = _outcome(orphan[1])
            if isinstance(outcome, SubtaskResult):
                return outcome
            raise outcome
        dispatch_id = uuid.uuid4().hex
        future: asyncio.Future[SubtaskResult] = asyncio.get_running_loop().create_future()
        self._pending[dispatch_id] = _Pending(agent.device, future, ctx)
        job = DispatchPayload(
            task_id=ctx.task_id,
            agent=agent.id,
            subtask=subtask.model_dump(mode="json"),
            inputs=ctx.inputs,
            attempt=ctx.attempt,
            reply_to=self.replica_id,
        )
        message = new_envelope("dispatch", "orchestrator", job, message_id=dispatch_id)
        try:
            await self._mqtt.publish(self.topics.agent_inbox(agent.id), message.to_bytes())
            result = await future
        except asyncio.CancelledError:
            cancel = CancelPayload(task_id=ctx.task_id, subtask_id=subtask.id, reason="cancelled")
            notice = new_envelope("cancel", "orchestrator", cancel, correlation_id=dispatch_id)
            with contextlib.suppress(ProtocolError, FleetStateError):
                self._mqtt.publish_nowait(self.topics.agent_inbox(agent.id), notice.to_bytes())
            raise
        finally:
            self._pending.pop(dispatch_id, None)
        return result

    # Receiving ---------------------------------------------------------------------------------

    def _ignore(self, why: str) -> None:
        log.warning("ignored: %s", why)
        self.ignored.append(why)
        del self.ignored[:-100]

    def _receive(self, message: Message) -> None:
        if not message.payload:
            return  # a cleared retained message
        try:
            envelope, payload = parse_envelope(message.payload)
        except ProtocolError as exc:
            self._ignore(f"malformed message on {message.topic}: {exc.message}")
            return
        # fleetmind/<fleet>/<agents|devices>/<owner>/<what>[/<replica>]
        parts = message.topic.split("/")
        owner = parts[3] if len(parts) in (5, 6) else ""
        match payload:
            case SubmitPayload():
                if message.topic != self.topics.submit or not self.accept_tasks:
                    self._ignore(f"a task submitted on {message.topic}")
                    return
                self._on_submit(envelope.sender, payload)
            case CardPayload():
                self._on_card(owner, envelope.sender, payload)
            case PresencePayload():
                if owner != envelope.sender:
                    self._ignore(f"presence for {owner} sent by {envelope.sender}")
                    return
                self._on_presence(owner, payload)
                self.devices[owner].last_seen_at = envelope.sent_at
            case ResultPayload() | ProgressPayload() | ErrorPayload():
                if owner != envelope.sender:
                    self._ignore(f"message on {owner}'s output sent by {envelope.sender}")
                    return
                self._on_output(owner, envelope.correlation_id, payload)
            case _:
                self._ignore(f"unexpected {envelope.kind} message on {message.topic}")

    def _on_card(self, topic_agent: str, sender: str, card: CardPayload) -> None:
        if sender != card.device:
            self._ignore(f"card for device {card.device} sent by {sender}")
            return
        try:
            profile = AgentProfile.model_validate(card.profile)
        except ValidationError as exc:
            self._ignore(f"bad card from {sender}: {exc.errors()[0]['msg']}")
            return
        if profile.id != topic_agent:
            self._ignore(f"card of {profile.id} published on {topic_agent}'s topic by {sender}")
            return
        self._cards[profile.id] = (card.device, profile)
        self._changed.set()
        device = self.devices.setdefault(card.device, DeviceState(card.device))
        device.agents.add(profile.id)
        if device.online:
            self._join(profile.id)

    def _on_presence(self, device_id: str, presence: PresencePayload) -> None:
        device = self.devices.setdefault(device_id, DeviceState(device_id))
        device.last_seen = time.monotonic()
        self._changed.set()
        device.heartbeat_s = presence.heartbeat_s
        if presence.state == "online":
            device.agents.update(presence.agents)
            device.offline_since = None
            if not device.online:
                device.online = True
                for agent_id in device.agents:
                    self._join(agent_id)
                self._changed.set()
        elif device.online:
            # A broker restart also produces this message, so the device gets a grace period:
            # dispatches to it wait in its persistent session meanwhile, and only if it is not
            # back in time do its agents leave and its in-flight subtasks fail over.
            device.online = False
            device.offline_since = time.monotonic()
            self._changed.set()

    def _join(self, agent_id: str) -> None:
        known = self._cards.get(agent_id)
        if known is None:
            return
        device, profile = known
        current = self.fleet.agent(agent_id)
        if isinstance(current, RemoteAgent) and current.profile == profile:
            return
        self.fleet.add(RemoteAgent(profile, self, device))
        self._changed.set()

    def _leave(self, device: DeviceState) -> None:
        device.online = False
        for agent_id in device.agents:
            if isinstance(self.fleet.agent(agent_id), RemoteAgent):
                self.fleet.remove(agent_id)
        self._changed.set()

    def _device_gone(self, device: DeviceState, why: str) -> None:
        """The device is dead: its agents leave and its in-flight subtasks fail over."""
        self._leave(device)
        device.offline_since = None
        for pending in list(self._pending.values()):
            if pending.device == device.device_id and not pending.future.done():
                pending.future.set_exception(
                    SubtaskFailed(f"device {device.device_id} {why}", retryable=False)
                )
        self._changed.set()

    def _on_output(self, device_id: str, correlation_id: str | None, payload: Any) -> None:
        pending = self._pending.get(correlation_id or "")
        if pending is None or pending.device != device_id:
            if isinstance(payload, ResultPayload) and pending is None:
                # Perhaps the answer to a dispatch made before this orchestrator restarted:
                # kept, and used only if the resumed task dispatches that very subtask to an
                # agent of this same device again (see dispatch()).
                self._orphans[(payload.task_id, payload.subtask_id)] = (device_id, payload)
                while len(self._orphans) > 1000:
                    self._orphans.pop(next(iter(self._orphans)))
            self._ignore(
                f"{type(payload).__name__} from {device_id} for dispatch {correlation_id}, "
                "which is not pending for that device"
            )
            return
        if pending.future.done():
            return
        if isinstance(payload, ProgressPayload):
            pending.ctx.progress(payload.message, payload.fraction, step=payload.step)
            return
        outcome = _outcome(payload)
        if isinstance(outcome, SubtaskResult):
            pending.future.set_result(outcome)
        else:
            pending.future.set_exception(outcome)

    # Tasks submitted over the broker ------------------------------------------------------------

    def _on_submit(self, sender: str, submitted: SubmitPayload) -> None:
        if submitted.task_id in self._accepted:
            return  # a redelivered submit: the task already runs here
        self._accepted[submitted.task_id] = None
        while len(self._accepted) > 10_000:
            self._accepted.pop(next(iter(self._accepted)))
        assert self._tasks is not None
        forwarder = self._tasks.create_task(self._run_submitted(sender, submitted))
        self._forwarders.add(forwarder)
        forwarder.add_done_callback(self._forwarders.discard)

    async def _run_submitted(self, sender: str, submitted: SubmitPayload) -> None:
        """Run a submitted task and stream its events to its topic; never raises."""
        from fleetmind.orchestrator._graph import TaskGraph

        task_id = submitted.task_id
        # A task can arrive (from this replica's session) before the fleet is entered.
        await self.fleet.wait_open()
        try:
            graph = TaskGraph.from_definition(submitted.graph)
            handle = self.fleet.submit(
                graph, task_id=task_id, source=submitted.source or f"mqtt:{sender}"
            )
        except Exception as exc:  # a bad submission must not take the link down
            error = exc.to_dict() if isinstance(exc, FleetmindError) else _plain_error(exc)
            log.warning("refused task %s from %s: %s", task_id, sender, error["message"])
            with contextlib.suppress(ProtocolError, FleetStateError):
                await self._send_event(
                    task_id,
                    {"kind": "task_refused", "task_id": task_id},
                    {"status": "failed", "outputs": {}, "errors": {"": error}},
                )
            return
        log.info("running task %s from %s on replica %s", task_id, sender, self.replica_id)
        try:
            async for event in handle.events():
                await self._send_event(task_id, {**dataclasses.asdict(event)}, None)
            result = await handle.result()
            summary = {"status": result.status, "outputs": result.outputs, "errors": result.errors}
            finished = {"kind": "task_result", "task_id": task_id, "replica": self.replica_id}
            await self._send_event(task_id, finished, summary)
        except (ProtocolError, FleetStateError) as exc:
            log.warning("could not report task %s: %s", task_id, exc)
        except Exception:
            log.exception("task %s from %s failed inside the fleet link", task_id, sender)

    async def _send_event(
        self, task_id: str, event: dict[str, Any], result: dict[str, Any] | None
    ) -> None:
        assert self._mqtt is not None
        body = TaskEventPayload(task_id=task_id, event=event, result=result)
        message = new_envelope("task_event", self.replica_id, body)
        await self._mqtt.publish(self.topics.task_events(task_id), message.to_bytes())

    async def _watch_heartbeats(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            # While we were cut off from the broker nobody's heartbeats could reach us: count
            # silence only from our latest (re)connection.
            connected_at = self._mqtt.connected_at if self._mqtt is not None else 0.0
            for device in list(self.devices.values()):
                grace = self.dead_after_s or 3 * (device.heartbeat_s or 5.0)
                if device.offline_since is not None and now - device.offline_since > grace:
                    self._device_gone(device, f"went offline and did not return within {grace:g} s")
                    continue
                if not device.online or not device.heartbeat_s:
                    continue
                limit = self.dead_after_s or 3 * device.heartbeat_s
                if now - max(device.last_seen, connected_at) > limit:
                    self._device_gone(device, f"missed heartbeats for {limit:g} s")


def _plain_error(exc: Exception) -> dict[str, Any]:
    return {"type": type(exc).__name__, "message": str(exc), "retryable": False, "details": {}}


def _replica_name(client_id: str) -> str:
    """A topic-safe replica name from an MQTT client id."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", client_id)[:64].strip("-")
    return name or "orchestrator"


def _outcome(payload: ResultPayload | ErrorPayload) -> SubtaskResult | FleetmindError:
    """What a device's answer means for the engine: a result, or the error to raise."""
    if isinstance(payload, ErrorPayload):
        return error_from_dict(payload.error)
    if payload.status != "done":
        return error_from_dict(payload.error or {})
    try:
        edits = tuple(graph_edit_adapter.validate_python(e) for e in payload.edits)
    except ValidationError as exc:
        return SubtaskFailed(f"device sent an invalid graph edit: {exc.errors()[0]['msg']}")
    return SubtaskResult(payload.output, edits)
