"""The orchestrator's side of the MQTT fleet: remote agents join and leave a Fleet.

A :class:`MqttFleetLink` listens for agent cards and device presence. When a device is online
its agents enter the fleet as :class:`RemoteAgent` proxies — ``name@device``, so the same agent
on two devices is two candidates — and the engine and the router treat them like local ones.
A device that says offline keeps its agents (and the dispatches waiting in its session) for a
grace period; a device that stays away, or stops heartbeating, is declared dead: its agents
leave and its attempts go to other agents. Time the orchestrator itself spends cut off from
the broker never counts against a device.

Dispatching, answers, resends, claims and flow control are :class:`Dispatches`' job. Messages
are acknowledged to the broker only once their effect is saved (answers to dispatches) or
handled (everything else), so an orchestrator that dies loses nothing the broker holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from fleetmind._ids import remote_agent_id
from fleetmind._task_model import Subtask
from fleetmind.agents import Agent, AgentProfile, SubtaskContext
from fleetmind.errors import FleetStateError, ProtocolError, error_outcome
from fleetmind.orchestrator._dispatches import Dispatches, DispatchLimits
from fleetmind.orchestrator._fleet import Fleet
from fleetmind.orchestrator._memory_service import DeviceMemoryService, SharedAccess
from fleetmind.protocols._envelope import (
    CardPayload,
    ClaimPayload,
    ErrorPayload,
    MemoryRequestPayload,
    PresencePayload,
    ProgressPayload,
    ResultPayload,
    SubmitPayload,
    TaskEventPayload,
    encode,
    parse_envelope,
)
from fleetmind.protocols._mqtt import BrokerAddress, Message, MqttConnection
from fleetmind.protocols._topics import Topics

log = logging.getLogger("fleetmind.fleet_link")
_CARD_WAIT_S = 5.0
"""How long a memory request waits for the card that names its agent (after a restart)."""


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
    """Names of the agents it announced with a card."""
    offline_since: float | None = None
    """When it said it went offline; its in-flight work fails over after a grace period."""
    boot: str | None = None
    """Its process's boot id: a new one means it restarted (and lost what it was running)."""


class RemoteAgent(Agent):
    """An agent on a device, reached through the fleet link; same interface as a local one."""

    def __init__(self, profile: AgentProfile, link: MqttFleetLink, device: str) -> None:
        super().__init__(profile)
        self.device = device
        self._link = link

    async def run(self, subtask: Subtask, ctx: SubtaskContext) -> Any:
        return await self._link.dispatches.dispatch(self.device, self.id, subtask, ctx)


class MqttFleetLink:
    """Connects a Fleet to an MQTT broker so that devices' agents work for it.

    Args:
        fleet: The fleet remote agents join.
        broker: The broker and the orchestrator's login.
        fleet_name: The fleet's topic prefix name.
        client_id: Stable, so the broker keeps this orchestrator's session (and the answers
            queued while it was away); default: from ``replica_id`` and the login (see
            :meth:`BrokerAddress.client_id`).
        share_group: With ``accept_tasks``, replicas of one group split submitted tasks
            between them (an MQTT shared subscription); without a group every orchestrator
            that accepts tasks gets every one.
        dead_after_s: Declare a device dead when no heartbeat came for this long, or when it
            said offline and did not return within it (default: three of its heartbeats).
        accept_tasks: Take tasks submitted over the broker (``fleetmind submit``) and run them
            on ``fleet``, which must be open (``async with fleet``) while the link is.
        replica_id: This orchestrator's name in dispatches, so devices answer it alone.
        session_expiry_s: How long the broker keeps this link's session while it is away; 0
            for a short-lived look at the fleet.
        agent_wait_s: How long a subtask no agent can take waits for devices to come back
            before it fails (the fleet's ``agent_wait_s`` becomes at least this).
        limits: Flow control: dispatches out at once, per device, and resends.
        shared_memory: What device agents may do in the fleet's shared memory namespace
            (``read-write``, ``read`` or ``none``); their own agents' namespaces are always
            theirs. The fleet's memory is ``fleet.memory``.
    """

    def __init__(
        self,
        fleet: Fleet,
        broker: BrokerAddress,
        *,
        fleet_name: str = "default",
        client_id: str | None = None,
        share_group: str | None = None,
        dead_after_s: float | None = None,
        accept_tasks: bool = False,
        replica_id: str | None = None,
        session_expiry_s: int = 3600,
        agent_wait_s: float = 120.0,
        limits: DispatchLimits | None = None,
        shared_memory: SharedAccess = "read-write",
    ) -> None:
        self.fleet = fleet
        self.broker = broker
        self.topics = Topics(fleet_name)
        self.replica_id = replica_id or _replica_name(client_id or "orchestrator")
        self.client_id = client_id or broker.client_id("orchestrator", self.replica_id)
        self.share_group = share_group
        self.dead_after_s = dead_after_s
        self.accept_tasks = accept_tasks
        self.agent_wait_s = agent_wait_s
        self._session_expiry_s = session_expiry_s
        self.dispatches = Dispatches(self.topics, self.replica_id, limits)
        self._forwarders: set[asyncio.Task[None]] = set()
        self._card_arrived = asyncio.Event()
        """Set (and replaced) whenever a device announces an agent."""
        self._accepted: dict[str, None] = {}
        """Ids of tasks taken from the broker (a redelivered submit is not run twice)."""
        self.devices: dict[str, DeviceState] = {}
        self._cards: dict[tuple[str, str], AgentProfile] = {}
        """(device, agent name) -> the card's profile."""
        self._serving: dict[str, set[str]] = {}
        """Agent name -> the devices that announced it."""
        self._mqtt: MqttConnection | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._changed = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self.ignored: list[str] = []
        """Why messages were dropped (most recent last; for logs, tests and `fleetmind devices`)."""
        self.memory_service = DeviceMemoryService(
            fleet.memory,
            lambda device, agent: agent in self.devices.get(device, DeviceState(device)).agents,
            shared=shared_memory,
        )

    async def __aenter__(self) -> MqttFleetLink:
        mqtt = await MqttConnection(
            self.broker,
            self.client_id,
            session_expiry_s=self._session_expiry_s,
            manual_ack=True,
        ).__aenter__()
        self._mqtt = mqtt
        try:
            self.dispatches.attach(mqtt)
            self._tasks = asyncio.TaskGroup()
            await self._tasks.__aenter__()
            # Handled as they are read: an answer reaches its waiting dispatch without a queue.
            mqtt.handle_messages(self._receive)
            filters = [
                self.topics.all_device_out(),  # devices that answer on `out` (shell devices)
                self.topics.all_device_out(self.replica_id),
            ]
            if self.accept_tasks:
                filters.append(self._intake_filter())
            await mqtt.subscribe(*filters)
            # Cards and presence are retained and sent again whenever they change: QoS 0 keeps
            # the burst of a thousand devices' retained messages out of the broker's per-client
            # queue (Mosquitto drops QoS 1 messages beyond its limit, 1,000 by default).
            await mqtt.subscribe(self.topics.all_cards, self.topics.all_presence, qos=0)
        except BaseException:
            if self._tasks is not None:
                with contextlib.suppress(BaseException):
                    await self._tasks.__aexit__(None, None, None)
            await mqtt.__aexit__(None, None, None)
            raise
        self._loops = [self._tasks.create_task(self._watch_heartbeats())]
        self.fleet.agent_wait_s = max(self.fleet.agent_wait_s, self.agent_wait_s)
        self.fleet.result_sources.append(self.dispatches)
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
        with contextlib.suppress(ValueError):
            self.fleet.result_sources.remove(self.dispatches)
        if self.accept_tasks:
            # Leaving the group: tasks submitted from now on go to the other replicas instead
            # of waiting in this replica's session.
            with contextlib.suppress(ProtocolError, FleetStateError, TimeoutError):
                await self._mqtt.unsubscribe(self._intake_filter())
        for forwarder in self._forwarders:
            forwarder.cancel()
        self.dispatches.close()
        for task in self._loops:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._tasks.__aexit__(None, None, None)
        await self._mqtt.__aexit__(*exc_info)

    @property
    def profiles(self) -> dict[str, AgentProfile]:
        """Every remote agent's latest card, online or not, by its fleet id."""
        return {remote_agent_id(name, device): p for (device, name), p in self._cards.items()}

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
        """Wait until these remote agents are in the fleet (``name@device``, or a name served
        by any device)."""
        async with asyncio.timeout(timeout_s):
            while not all(self._has_agent(a) for a in agent_ids):
                self._changed.clear()
                await self._changed.wait()

    def _has_agent(self, wanted: str) -> bool:
        if self.fleet.agent(wanted) is not None:
            return True
        return "@" not in wanted and any(
            self.fleet.agent(remote_agent_id(wanted, d)) is not None
            for d in self._serving.get(wanted, ())
        )

    # Receiving ---------------------------------------------------------------------------------

    def _ignore(self, why: str) -> None:
        log.warning("ignored: %s", why)
        self.ignored.append(why)
        del self.ignored[:-100]

    def _receive(self, message: Message) -> None:
        assert self._mqtt is not None
        if self._handle(message):
            self._mqtt.ack(message)

    def _handle(self, message: Message) -> bool:
        """Act on a message; whether to acknowledge it now (not: once its effect is saved)."""
        if not message.payload:
            return True  # a cleared retained message
        try:
            envelope, payload = parse_envelope(message.payload)
        except ProtocolError as exc:
            self._ignore(f"malformed message on {message.topic}: {exc.message}")
            return True
        # fleetmind/<fleet>/devices/<device>/(presence|out[/<replica>]|agents/<agent>/card)
        parts = message.topic.split("/")
        owner = parts[3] if len(parts) >= 5 and parts[2] == "devices" else ""
        match payload:
            case SubmitPayload():
                if message.topic != self.topics.submit or not self.accept_tasks:
                    self._ignore(f"a task submitted on {message.topic}")
                    return True
                self._on_submit(envelope.sender, payload)
            case CardPayload():
                topic_agent = parts[5] if len(parts) == 7 else ""
                self._on_card(owner, topic_agent, envelope.sender, payload)
            case PresencePayload():
                if owner != envelope.sender:
                    self._ignore(f"presence for {owner} sent by {envelope.sender}")
                    return True
                self._on_presence(owner, payload)
                device = self.devices[owner]
                device.last_seen_at = max(device.last_seen_at, envelope.sent_at)
            case MemoryRequestPayload():
                if owner != envelope.sender:
                    self._ignore(f"memory request on {owner}'s output sent by {envelope.sender}")
                    return True
                assert self._tasks is not None
                server = self._tasks.create_task(
                    self._serve_memory(owner, envelope.id, payload, message)
                )
                self._forwarders.add(server)
                server.add_done_callback(self._forwarders.discard)
                return False  # acknowledged once answered: a write is saved first
            case ResultPayload() | ProgressPayload() | ErrorPayload() | ClaimPayload():
                if owner != envelope.sender:
                    self._ignore(f"message on {owner}'s output sent by {envelope.sender}")
                    return True
                return self.dispatches.answer(owner, envelope.correlation_id, payload, message)
            case _:
                self._ignore(f"unexpected {envelope.kind} message on {message.topic}")
        return True

    def _on_card(self, device_id: str, topic_agent: str, sender: str, card: CardPayload) -> None:
        if sender != card.device or sender != device_id:
            self._ignore(f"card for device {card.device} on {device_id}'s topic sent by {sender}")
            return
        try:
            profile = AgentProfile.model_validate(card.profile)
        except ValidationError as exc:
            self._ignore(f"bad card from {sender}: {exc.errors()[0]['msg']}")
            return
        if profile.id != topic_agent or "@" in profile.id:
            self._ignore(f"card of {profile.id} published on {topic_agent}'s topic by {sender}")
            return
        remote = profile.model_copy(
            update={"id": remote_agent_id(profile.id, device_id), "device": device_id}
        )
        self._cards[(device_id, profile.id)] = remote
        self._serving.setdefault(profile.id, set()).add(device_id)
        self._changed.set()
        device = self.devices.setdefault(device_id, DeviceState(device_id))
        device.agents.add(profile.id)
        arrived, self._card_arrived = self._card_arrived, asyncio.Event()
        arrived.set()
        if device.online:
            self._join(device_id, profile.id)

    def _on_presence(self, device_id: str, presence: PresencePayload) -> None:
        device = self.devices.setdefault(device_id, DeviceState(device_id))
        device.last_seen = time.monotonic()
        self._changed.set()
        device.heartbeat_s = presence.heartbeat_s
        if presence.state == "online":
            restarted = device.boot is not None and presence.boot != device.boot
            device.boot = presence.boot
            device.offline_since = None
            if not device.online:
                device.online = True
                for name in device.agents:
                    self._join(device_id, name)
            self.dispatches.reconcile(device_id, presence, restarted)
        elif device.online:
            # A broker restart or a device's reboot also produces this message, so the device
            # gets a grace period: dispatches to it wait in its persistent session meanwhile,
            # and only if it is not back in time do its agents leave and its work fail over.
            device.online = False
            device.offline_since = time.monotonic()

    def _join(self, device_id: str, name: str) -> None:
        profile = self._cards.get((device_id, name))
        if profile is None:
            return
        current = self.fleet.agent(profile.id)
        if isinstance(current, RemoteAgent) and current.profile == profile:
            return
        self.fleet.add(RemoteAgent(profile, self, device_id))
        self._changed.set()

    def _device_gone(self, device: DeviceState, why: str) -> None:
        """The device is dead: its agents leave and its attempts fail over."""
        device.online = False
        device.offline_since = None
        for name in device.agents:
            agent_id = remote_agent_id(name, device.device_id)
            if isinstance(self.fleet.agent(agent_id), RemoteAgent):
                self.fleet.remove(agent_id)
        self.dispatches.device_gone(device.device_id, why)
        self._changed.set()

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
            error = error_outcome(exc)
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

    async def _serve_memory(
        self, device: str, request_id: str, request: MemoryRequestPayload, message: Message
    ) -> None:
        """Answer a device agent's memory request on the device's inbox, then acknowledge it
        (stopped before, the broker hands it over again); never raises.

        A restarted orchestrator gets the requests queued in its session before the devices'
        retained cards, so it waits a little for the card that names the agent before it
        judges who may use that agent's memory.
        """
        assert self._mqtt is not None
        deadline = time.monotonic() + _CARD_WAIT_S
        while request.agent not in self._announced(device):
            arrived = self._card_arrived
            try:
                await asyncio.wait_for(arrived.wait(), deadline - time.monotonic())
            except TimeoutError:
                break
        response = await self.memory_service.answer(device, request)
        with contextlib.suppress(ProtocolError):
            await self._mqtt.publish(
                self.topics.device_inbox(device),
                encode("memory_response", self.replica_id, response, correlation_id=request_id),
            )
        self._mqtt.ack(message)

    def _announced(self, device: str) -> set[str]:
        """The agents ``device`` announced with cards (none yet: an empty set)."""
        state = self.devices.get(device)
        return state.agents if state is not None else set()

    async def _send_event(
        self, task_id: str, event: dict[str, Any], result: dict[str, Any] | None
    ) -> None:
        assert self._mqtt is not None
        body = TaskEventPayload(task_id=task_id, event=event, result=result)
        await self._mqtt.publish(
            self.topics.task_events(task_id), encode("task_event", self.replica_id, body)
        )

    async def _watch_heartbeats(self) -> None:
        assert self._mqtt is not None
        mqtt = self._mqtt
        while True:
            await asyncio.sleep(0.5)
            if not mqtt.is_connected:
                continue  # cut off ourselves: nobody's silence means anything meanwhile
            now = time.monotonic()
            # Silence counts only from our latest (re)connection: while we were cut off from
            # the broker nobody's heartbeats could reach us.
            since = mqtt.connected_at
            for device in list(self.devices.values()):
                grace = self.dead_after_s or 3 * (device.heartbeat_s or 5.0)
                if device.offline_since is not None:
                    if now - max(device.offline_since, since) > grace:
                        self._device_gone(
                            device, f"went offline and did not return within {grace:g} s"
                        )
                    continue
                if not device.online or not device.heartbeat_s:
                    continue
                if now - max(device.last_seen, since) > grace:
                    self._device_gone(device, f"missed heartbeats for {grace:g} s")


def _replica_name(client_id: str) -> str:
    """A topic-safe replica name from an MQTT client id."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", client_id)[:64].strip("-")
    return name or "orchestrator"
