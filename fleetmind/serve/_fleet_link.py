"""A fleet on an MQTT broker: devices' agents work for it, and it serves them on one session.

:class:`MqttFleetLink` is a :class:`~fleetmind.agents.remote.DeviceLink` whose agent pool is a
:class:`~fleetmind.orchestrator.Fleet`, plus what the fleet serves on the link's session: the
fleet's memory to device agents (:class:`DeviceMemoryService`) and, for orchestrator replicas,
tasks submitted over the broker (:class:`FleetIntake`), which also reports the tasks a replica
fleet takes over from another replica. While the link is open the fleet waits for devices to
come back (``agent_wait_s``) and a resumed engine finds the answers devices sent while it was
down (the link's dispatches are one of the fleet's ``result_sources``).

A task taken over is dispatched again under the new owner's name: its dispatches carry a new
attempt epoch and ``reply_to`` this replica, and a device still running the old owner's
attempt answers both (it runs the subtask once), or sends the new one its saved result. An
answer kept from a replica's previous life for a task another replica drives now (or one that
ended) is acknowledged and dropped, instead of waiting in the replica's session for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from fleetmind.agents import AgentProfile
from fleetmind.agents.remote import (
    DeviceLink,
    DeviceState,
    Dispatches,
    DispatchLimits,
    LinkState,
)
from fleetmind.errors import FleetStateError, ProtocolError, StoreError
from fleetmind.orchestrator import Fleet, local_process_gone
from fleetmind.protocols import BrokerAddress, MqttConnection, Topics
from fleetmind.serve._device_memory_service import DeviceMemoryService, SharedAccess
from fleetmind.serve._intake import FleetIntake

log = logging.getLogger("fleetmind.fleet_link")


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
            on ``fleet``, which must be open (``async with fleet``) while the link is; the
            tasks a replica fleet takes over are reported on their topics as these are.
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
        self.share_group = share_group
        self.accept_tasks = accept_tasks
        self.agent_wait_s = agent_wait_s
        self.intake = FleetIntake(fleet, share_group) if accept_tasks else None
        self.memory_service = DeviceMemoryService(fleet.memory, self._hosts, shared=shared_memory)
        self.device_link = DeviceLink(
            fleet,
            broker,
            fleet_name=fleet_name,
            client_id=client_id,
            replica_id=replica_id,
            dead_after_s=dead_after_s,
            session_expiry_s=session_expiry_s,
            limits=limits,
            memory=self.memory_service,
        )
        self._stack: contextlib.AsyncExitStack | None = None
        self._checking: set[str] = set()
        if fleet.replica is not None:
            self.dispatches.on_kept = self._check_kept

    def _check_kept(self, task_id: str) -> None:
        """An answer was kept for ``task_id``: find out, off the event loop, who drives it."""
        if task_id in self._checking:
            return
        self._checking.add(task_id)
        try:
            self.device_link.spawn(self._drop_unless_driven_here(task_id))
        except FleetStateError:
            self._checking.discard(task_id)

    async def _drop_unless_driven_here(self, task_id: str) -> None:
        """Drop the answers kept for a task that another replica drives or that has ended: no
        engine here will ask for them (should this replica take the task over later, its
        devices give it their saved results)."""
        replica = self.fleet.replica
        assert replica is not None
        try:
            record, _ = await asyncio.to_thread(self.fleet.store.load, task_id)
        except StoreError:
            return  # unknown or unreadable: kept, as on a store of its own
        finally:
            self._checking.discard(task_id)
        if record.status in ("running", "interrupted") and (
            record.owner in (None, replica.id) or local_process_gone(record.owner)
        ):
            return  # driven here, or by a process of this host that is gone: resumable here
        dropped = self.dispatches.drop_task(task_id)
        ended = record.status in ("done", "failed", "cancelled")
        where = "it ended" if ended else f"replica {record.owner} drives it"
        log.info("task %s: %d answer(s) kept for it dropped; %s", task_id, dropped, where)

    def _hosts(self, device: str, agent: str) -> bool:
        return self.device_link.hosts(device, agent)

    async def __aenter__(self) -> MqttFleetLink:
        async with contextlib.AsyncExitStack() as stack:  # undone in reverse order on exit
            await stack.enter_async_context(self.device_link)
            self.fleet.agent_wait_s = max(self.fleet.agent_wait_s, self.agent_wait_s)
            self.fleet.result_sources.append(self.dispatches)
            stack.callback(self._forget_dispatches)
            if self.intake is not None:
                await self._leave_session_intake(self.intake)
                self.intake.attach(self.device_link)
                stack.callback(self.intake.detach)
                # Submitted tasks come on a connection of their own: nothing from then on
                # waits in this link's session for a replica that died.
                await stack.enter_async_context(self.intake.listening(self.device_link))
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        stack, self._stack = self._stack, None
        if stack is None:
            await self.device_link.__aexit__(*exc_info)  # says the link is not open
            return
        await stack.__aexit__(*exc_info)

    def _forget_dispatches(self) -> None:
        with contextlib.suppress(ValueError):
            self.fleet.result_sources.remove(self.dispatches)

    async def _leave_session_intake(self, intake: FleetIntake) -> None:
        """A session kept from a version that took submitted tasks on it stops doing so."""
        connection = self.device_link.connection
        with contextlib.suppress(ProtocolError, FleetStateError, TimeoutError):
            await connection.unsubscribe(intake.topic_filter(self.topics, connection.protocol))

    # The device link's face, for callers of the whole link ----------------------------------

    @property
    def state(self) -> LinkState:
        """``new``, ``open`` or ``closed``: a link opens once."""
        return self.device_link.state

    @property
    def connection(self) -> MqttConnection:
        """The link's MQTT connection (raises :class:`FleetStateError` unless open)."""
        return self.device_link.connection

    @property
    def broker(self) -> BrokerAddress:
        return self.device_link.broker

    @property
    def topics(self) -> Topics:
        return self.device_link.topics

    @property
    def replica_id(self) -> str:
        return self.device_link.replica_id

    @property
    def client_id(self) -> str:
        return self.device_link.client_id

    @property
    def dead_after_s(self) -> float | None:
        return self.device_link.dead_after_s

    @property
    def dispatches(self) -> Dispatches:
        return self.device_link.dispatches

    @property
    def devices(self) -> dict[str, DeviceState]:
        """What the link knows of each device, by id."""
        return self.device_link.devices

    @property
    def ignored(self) -> list[str]:
        """Why messages were dropped (most recent last)."""
        return self.device_link.ignored

    @property
    def profiles(self) -> dict[str, AgentProfile]:
        """Every remote agent's latest card, online or not, by its fleet id."""
        return self.device_link.profiles

    async def settle(self, quiet_s: float = 0.3, timeout_s: float = 3.0) -> None:
        """Wait until retained cards and presence have arrived (no change for ``quiet_s``)."""
        await self.device_link.settle(quiet_s, timeout_s)

    async def wait_for_agents(self, *agent_ids: str, timeout_s: float = 30.0) -> None:
        """Wait until these remote agents are in the fleet (``name@device``, or a name served
        by any device)."""
        await self.device_link.wait_for_agents(*agent_ids, timeout_s=timeout_s)
