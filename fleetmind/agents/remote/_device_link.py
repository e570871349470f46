"""Devices' agents join and leave an agent pool over MQTT: cards, presence and heartbeats.

A :class:`DeviceLink` listens for agent cards and device presence. When a device is online its
agents enter the pool (a Fleet, say) as :class:`DeviceAgent` proxies — ``name@device``, so the
same agent on two devices is two candidates — and the engine and the router treat them like
local ones. A device that says offline keeps its agents (and the dispatches waiting in its
session) for a grace period; a device that stays away, or stops heartbeating, is declared dead:
its agents leave and its attempts go to other agents. Time the link itself spends cut off from
the broker never counts against a device.

Dispatching, answers, resends, claims and flow control are :class:`Dispatches`' job. Two more
services may share the link's session, each given as a collaborator: a :class:`TaskIntake`
takes tasks submitted over the broker, a :class:`MemoryResponder` answers device agents'
memory requests (``fleetmind.serve`` has both). Messages are acknowledged to the broker only
once their effect is saved (answers to dispatches, memory writes) or handled (everything
else), so a link that dies loses nothing the broker holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import ValidationError

from fleetmind._ids import remote_agent_id
from fleetmind._validation import describe_validation_error
from fleetmind.agents import AgentProfile
from fleetmind.agents.remote._base import AgentPool
from fleetmind.agents.remote._device_agent import DeviceAgent
from fleetmind.agents.remote._dispatches import Dispatches, DispatchLimits
from fleetmind.errors import FleetStateError, ProtocolError
from fleetmind.protocols import (
    ArtifactPayload,
    BrokerAddress,
    CardPayload,
    ClaimPayload,
    ErrorPayload,
    MemoryRequestPayload,
    MemoryResponsePayload,
    Message,
    MqttConnection,
    PresencePayload,
    ProgressPayload,
    ResultPayload,
    SubmitPayload,
    Topics,
    encode,
    parse_envelope,
)

log = logging.getLogger("fleetmind.fleet_link")
_CARD_WAIT_S = 5.0
"""How long a memory request waits for the card that names its agent (after a restart)."""
_WATCH_S = 0.5
"""How often devices' silence is checked."""

LinkState = Literal["new", "open", "closed"]


@dataclass
class DeviceState:
    """What the link knows of one device."""

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


class TaskIntake(Protocol):
    """Takes tasks submitted over the broker on the link's session."""

    def topic_filter(self, topics: Topics, protocol: str) -> str:
        """What to subscribe to for submitted tasks (``protocol``: the MQTT version spoken)."""
        ...

    def submitted(self, link: DeviceLink, sender: str, task: SubmitPayload) -> None:
        """A task arrived; run it in the background (:meth:`DeviceLink.spawn`)."""
        ...


class MemoryResponder(Protocol):
    """Answers a device agent's memory request (the link checks nothing itself)."""

    async def answer(self, device: str, request: MemoryRequestPayload) -> MemoryResponsePayload:
        """What to send back; never raises."""
        ...


class DeviceLink:
    """Keeps an agent pool in step with the devices of one fleet on an MQTT broker.

    An async context manager, used once: entered it is open, exited (or failed to open) it is
    closed, and entering it again raises :class:`FleetStateError`.

    Args:
        pool: Where devices' agents join and leave (a Fleet; a dict-like pool to only look).
        broker: The broker and the link's login.
        fleet_name: The fleet's topic prefix name.
        client_id: Stable, so the broker keeps this link's session (and the answers queued
            while it was away); default: from ``replica_id`` and the login (see
            :meth:`BrokerAddress.client_id`).
        replica_id: This link's name in dispatches, so devices answer it alone.
        dead_after_s: Declare a device dead when no heartbeat came for this long, or when it
            said offline and did not return within it (default: three of its heartbeats).
        session_expiry_s: How long the broker keeps this link's session while it is away; 0
            for a short-lived look at the fleet.
        limits: Flow control: dispatches out at once, per device, and resends.
        intake: Takes tasks submitted over the broker (none: such messages are ignored).
        memory: Answers device agents' memory requests (none: such messages are ignored).
    """

    def __init__(
        self,
        pool: AgentPool,
        broker: BrokerAddress,
        *,
        fleet_name: str = "default",
        client_id: str | None = None,
        replica_id: str | None = None,
        dead_after_s: float | None = None,
        session_expiry_s: int = 3600,
        limits: DispatchLimits | None = None,
        intake: TaskIntake | None = None,
        memory: MemoryResponder | None = None,
    ) -> None:
        self.pool = pool
        self.broker = broker
        self.topics = Topics(fleet_name)
        self.replica_id = replica_id or _replica_name(client_id or "orchestrator")
        self.client_id = client_id or broker.client_id("orchestrator", self.replica_id)
        self.dead_after_s = dead_after_s
        self.intake = intake
        self.memory = memory
        self._session_expiry_s = session_expiry_s
        self.dispatches = Dispatches(self.topics, self.replica_id, limits)
        self.devices: dict[str, DeviceState] = {}
        self.ignored: list[str] = []
        """Why messages were dropped (most recent last; for logs, tests and `fleetmind devices`)."""
        self._state: LinkState = "new"
        self._stack: contextlib.AsyncExitStack | None = None
        self._mqtt: MqttConnection | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._card_arrived = asyncio.Event()
        """Set (and replaced) whenever a device announces an agent."""
        self._cards: dict[tuple[str, str], AgentProfile] = {}
        """(device, agent name) -> the card's profile."""
        self._serving: dict[str, set[str]] = {}
        """Agent name -> the devices that announced it."""
        self._changed = asyncio.Event()

    @property
    def state(self) -> LinkState:
        """``new`` (not entered yet), ``open``, or ``closed`` (exited, or failed to open)."""
        return self._state

    @property
    def connection(self) -> MqttConnection:
        """The link's MQTT connection.

        Raises:
            FleetStateError: The link is not open.
        """
        if self._state != "open" or self._mqtt is None:
            raise FleetStateError(f"the device link is {self._state}, not open")
        return self._mqtt

    async def __aenter__(self) -> DeviceLink:
        if self._state != "new":
            raise FleetStateError(
                f"the device link is {self._state}: a link opens once, make a new one"
            )
        self._state = "closed"  # until every step below has worked
        async with contextlib.AsyncExitStack() as stack:
            # Undone in reverse order on exit, or as soon as a step fails.
            mqtt = await stack.enter_async_context(
                MqttConnection(
                    self.broker,
                    self.client_id,
                    session_expiry_s=self._session_expiry_s,
                    manual_ack=True,
                )
            )
            stack.callback(self._forget_connection)
            self.dispatches.attach(mqtt)
            stack.callback(self.dispatches.detach)
            tasks = asyncio.TaskGroup()
            await tasks.__aenter__()
            stack.push_async_callback(_close_group, tasks)
            stack.callback(self.dispatches.close)
            stack.callback(self._stop_background)
            self._mqtt, self._tasks = mqtt, tasks
            self._state = "open"
            stack.callback(self._closing)
            # Handled as they are read: an answer reaches its waiting dispatch without a queue.
            mqtt.handle_messages(self._receive)
            filters = [
                self.topics.all_device_out(),  # devices that answer on `out` (shell devices)
                self.topics.all_device_out(self.replica_id),
            ]
            if self.intake is not None:
                intake_filter = self.intake.topic_filter(self.topics, mqtt.protocol)
                filters.append(intake_filter)
                stack.push_async_callback(self._leave_intake, mqtt, intake_filter)
            await mqtt.subscribe(*filters)
            # Cards and presence are retained and sent again whenever they change: QoS 0 keeps
            # the burst of a thousand devices' retained messages out of the broker's per-client
            # queue (Mosquitto drops QoS 1 messages beyond its limit, 1,000 by default).
            await mqtt.subscribe(self.topics.all_cards, self.topics.all_presence, qos=0)
            self.spawn(self._watch_heartbeats())
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        if self._state != "open" or self._stack is None:
            raise FleetStateError(f"the device link is {self._state}, not open")
        stack, self._stack = self._stack, None
        await stack.__aexit__(*exc_info)

    def spawn(self, job: Coroutine[Any, Any, None]) -> None:
        """Run ``job`` in the background for as long as the link is open (cancelled on exit).

        Raises:
            FleetStateError: The link is not open.
        """
        if self._state != "open" or self._tasks is None:
            job.close()
            raise FleetStateError(f"the device link is {self._state}, not open")
        task = self._tasks.create_task(job)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _closing(self) -> None:
        # From here on nothing new starts and no message is acknowledged: what arrives while
        # the link closes is handed over again to its next session.
        self._state = "closed"

    def _stop_background(self) -> None:
        for task in self._background:
            task.cancel()

    def _forget_connection(self) -> None:
        self._state = "closed"
        self._mqtt = self._tasks = None

    @staticmethod
    async def _leave_intake(mqtt: MqttConnection, topic_filter: str) -> None:
        # Leaving a replica group: tasks submitted from now on go to the other replicas
        # instead of waiting in this link's session.
        with contextlib.suppress(ProtocolError, FleetStateError, TimeoutError):
            await mqtt.unsubscribe(topic_filter)

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
        """Wait until these remote agents are in the pool (``name@device``, or a name served
        by any device)."""
        async with asyncio.timeout(timeout_s):
            while not all(self._has_agent(a) for a in agent_ids):
                self._changed.clear()
                await self._changed.wait()

    def _has_agent(self, wanted: str) -> bool:
        if self.pool.agent(wanted) is not None:
            return True
        return "@" not in wanted and any(
            self.pool.agent(remote_agent_id(wanted, d)) is not None
            for d in self._serving.get(wanted, ())
        )

    # Receiving ---------------------------------------------------------------------------------

    def _ignore(self, why: str) -> None:
        log.warning("ignored: %s", why)
        self.ignored.append(why)
        del self.ignored[:-100]

    def _receive(self, message: Message) -> None:
        if self._state == "open" and self._mqtt is not None and self._handle(message):
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
                if message.topic != self.topics.submit or self.intake is None:
                    self._ignore(f"a task submitted on {message.topic}")
                    return True
                self.intake.submitted(self, envelope.sender, payload)
            case CardPayload():
                topic_agent = parts[5] if len(parts) == 7 else ""
                self._on_card(owner, topic_agent, envelope.sender, payload)
            case PresencePayload():
                if owner != envelope.sender:
                    self._ignore(f"presence for {owner} sent by {envelope.sender}")
                    return True
                self._on_presence(owner, payload)
                device = self.devices[owner]
                # A last will is written when the device connects: the offline presence it
                # becomes must not move "last seen" back to that moment.
                device.last_seen_at = max(device.last_seen_at, envelope.sent_at)
            case MemoryRequestPayload():
                if owner != envelope.sender:
                    self._ignore(f"memory request on {owner}'s output sent by {envelope.sender}")
                    return True
                if self.memory is None:
                    self._ignore(f"memory request from {owner}: this link serves no memory")
                    return True
                self.spawn(self._serve_memory(self.memory, owner, envelope.id, payload, message))
                return False  # acknowledged once answered: a write is saved first
            case (
                ResultPayload()
                | ProgressPayload()
                | ArtifactPayload()
                | ErrorPayload()
                | ClaimPayload()
            ):
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
            self._ignore(f"bad card from {sender}: {describe_validation_error(exc)}")
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
        current = self.pool.agent(profile.id)
        if isinstance(current, DeviceAgent) and current.profile == profile:
            return
        self.pool.add(DeviceAgent(profile, self.dispatches, device_id))
        self._changed.set()

    def _device_gone(self, device: DeviceState, why: str) -> None:
        """The device is dead: its agents leave and its attempts fail over."""
        device.online = False
        device.offline_since = None
        for name in device.agents:
            agent_id = remote_agent_id(name, device.device_id)
            if isinstance(self.pool.agent(agent_id), DeviceAgent):
                self.pool.remove(agent_id)
        self.dispatches.device_gone(device.device_id, why)
        self._changed.set()

    async def _serve_memory(
        self,
        memory: MemoryResponder,
        device: str,
        request_id: str,
        request: MemoryRequestPayload,
        message: Message,
    ) -> None:
        """Answer a device agent's memory request on the device's inbox, then acknowledge it
        (stopped before, the broker hands it over again); never raises.

        A restarted orchestrator gets the requests queued in its session before the devices'
        retained cards, so it waits a little for the card that names the agent before it
        judges who may use that agent's memory.
        """
        mqtt = self.connection
        deadline = time.monotonic() + _CARD_WAIT_S
        while request.agent not in self._announced(device):
            arrived = self._card_arrived
            try:
                await asyncio.wait_for(arrived.wait(), deadline - time.monotonic())
            except TimeoutError:
                break
        response = await memory.answer(device, request)
        with contextlib.suppress(ProtocolError, FleetStateError):
            await mqtt.publish(
                self.topics.device_inbox(device),
                encode("memory_response", self.replica_id, response, correlation_id=request_id),
            )
        mqtt.ack(message)

    def hosts(self, device: str, agent: str) -> bool:
        """Whether ``device`` announced ``agent`` with a card (who may use that agent's memory)."""
        return agent in self._announced(device)

    def _announced(self, device: str) -> set[str]:
        """The agents ``device`` announced with cards (none yet: an empty set)."""
        state = self.devices.get(device)
        return state.agents if state is not None else set()

    async def _watch_heartbeats(self) -> None:
        mqtt = self.connection
        checked = awake_since = time.monotonic()
        while True:
            await asyncio.sleep(_WATCH_S)
            now = time.monotonic()
            if now - checked > _WATCH_S + 1.0:
                # This process was paused (SIGSTOP, a suspended machine) or starved: the
                # heartbeats that came meanwhile wait unread, so silence counts from now.
                awake_since = now
            checked = now
            if not mqtt.is_connected:
                continue  # cut off ourselves: nobody's silence means anything meanwhile
            # Silence counts only from our latest (re)connection: while we were cut off from
            # the broker nobody's heartbeats could reach us.
            since = max(mqtt.connected_at, awake_since)
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


async def _close_group(tasks: asyncio.TaskGroup) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        await tasks.__aexit__(None, None, None)
