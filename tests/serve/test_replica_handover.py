"""A replica that closes hands its running tasks over: the device is not told to cancel their
attempts, so the replica that takes a task over joins the device's run instead of starting the
subtask again; a user's cancel still stops the attempt on the device.

Real Mosquitto (the fleet's ACL), a real device runtime, and replica fleets with their links
in this process on one in-memory store (shared, as a PostgreSQL database would be).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fleetmind import Fleet, TaskGraph, agent
from fleetmind.agents.remote import DeviceRuntime
from fleetmind.errors import LeaseLost, StoreError
from fleetmind.orchestrator import InMemoryStore, Replica, TaskHandle, TaskResult
from fleetmind.protocols import (
    BrokerAddress,
    Message,
    MqttConnection,
    Topics,
    mosquitto_installed,
    parse_envelope,
)
from fleetmind.serve import MqttFleetLink
from fleetmind.testing import start_test_broker

if not mosquitto_installed():
    if os.environ.get("CI") == "true":
        raise RuntimeError("Mosquitto is required under CI: apt-get install mosquitto")
    pytest.skip("needs Mosquitto (the fleet's ACL)", allow_module_level=True)

pytestmark = pytest.mark.timeout(120)
FLEET = "farm"
DEADLINE_S = 60.0


class Gate:
    """Holds the agent until the test opens it; counts its runs and how they ended."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.go = asyncio.Event()
        self.runs = 0
        self.cancelled = 0


GATE = Gate()


@pytest.fixture(autouse=True)
def fresh_gate() -> None:
    global GATE
    GATE = Gate()


@agent(id="held", skills=["holds until let go"])
async def held(n: int) -> int:
    GATE.runs += 1
    GATE.started.set()
    try:
        await GATE.go.wait()
    except asyncio.CancelledError:
        GATE.cancelled += 1
        raise
    return n + 1


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    handle, port, credentials = start_test_broker(
        tmp_path, devices={"pi-1": ["held"]}, fleet=FLEET, embedded=False
    )
    with handle:
        yield port, credentials


def login(port: int, credentials: dict[str, str], user: str) -> BrokerAddress:
    return BrokerAddress("127.0.0.1", port, username=user, password=credentials[user])


def graph() -> TaskGraph:
    graph = TaskGraph("handed")
    graph.add_subtask("hold", agent="held", inputs={"n": 41})
    return graph


async def until(condition: Callable[[], object], what: str) -> None:
    """Wait, without blocking the event loop, until ``condition()`` holds."""
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out: {what}"
        await asyncio.sleep(0.05)


class Inbox:
    """The kinds of message the device's inbox gets (dispatches, cancels, ...)."""

    def __init__(self) -> None:
        self.kinds: list[str] = []

    def heard(self, message: Message) -> None:
        envelope, _ = parse_envelope(message.payload)
        self.kinds.append(envelope.kind)


async def watching(address: BrokerAddress, inbox: Inbox) -> MqttConnection:
    connection = MqttConnection(address, "fm-watch-inbox", session_expiry_s=0)
    await connection.__aenter__()
    connection.handle_messages(inbox.heard)
    await connection.subscribe(Topics(FLEET).device_inbox("pi-1"), qos=1)
    return connection


class Silenced(InMemoryStore):
    """A shared store whose renewals fail for the replicas in ``silent`` (their heartbeats no
    longer reach it, as over a lost connection), while everything else still goes through."""

    def __init__(self) -> None:
        super().__init__()
        self.silent: set[str] = set()

    def renew(self, owner: str, lease_s: float) -> dict[str, int]:
        if owner in self.silent:
            raise StoreError("connection to the store lost")
        return super().renew(owner, lease_s)


def replica(
    store: InMemoryStore, address: BrokerAddress, name: str, lease_s: float = 3.0
) -> MqttFleetLink:
    fleet = Fleet(store=store, replica=Replica(name, lease_s=lease_s))
    return MqttFleetLink(
        fleet, address, fleet_name=FLEET, client_id=f"fm-orch-{name}", replica_id=name
    )


async def test_a_replica_closing_hands_its_task_over_and_the_device_runs_it_once(
    broker: tuple[int, dict[str, str]],
) -> None:
    port, credentials = broker
    orchestrator = login(port, credentials, "orchestrator")
    device = DeviceRuntime("pi-1", [held], login(port, credentials, "pi-1"), fleet=FLEET)
    store, inbox = InMemoryStore(), Inbox()
    submitted: list[str] = []

    async def serve_a() -> None:
        """Replica a as ``orchestrator serve`` runs it, until cancelled (its Ctrl-C)."""
        async with replica(store, orchestrator, "a") as link:
            await link.device_link.wait_for_agents("held@pi-1", timeout_s=DEADLINE_S)
            async with link.fleet:
                submitted.append(link.fleet.submit(graph()).task_id)
                await asyncio.Event().wait()

    async with asyncio.TaskGroup() as background:
        serving = background.create_task(device.run())
        await device.ready.wait()
        watcher = await watching(orchestrator, inbox)
        try:
            replica_a = asyncio.create_task(serve_a())
            await until(lambda: GATE.started.is_set() or replica_a.done(), "the run starts")
            assert not replica_a.done(), replica_a.exception()
            replica_a.cancel()  # Ctrl-C
            with pytest.raises(asyncio.CancelledError):
                await replica_a
            assert store.load(submitted[0])[0].status == "running"
            assert submitted[0] in store.orphans()  # released, for the next replica to take
            taken: asyncio.Future[TaskHandle] = asyncio.get_running_loop().create_future()
            async with replica(store, orchestrator, "b") as link_b:
                await link_b.device_link.wait_for_agents("held@pi-1", timeout_s=DEADLINE_S)
                link_b.fleet.on_takeover(taken.set_result)
                async with link_b.fleet:
                    handle = await asyncio.wait_for(taken, DEADLINE_S)
                    await until(lambda: inbox.kinds.count("dispatch") == 2, "b dispatches it")
                    GATE.go.set()
                    result: TaskResult = await asyncio.wait_for(handle.result(), DEADLINE_S)
        finally:
            await watcher.__aexit__(None, None, None)
        serving.cancel()

    assert result.status == "done" and result.outputs == {"hold": 42}
    assert (GATE.runs, GATE.cancelled) == (1, 0)  # b's dispatch joined a's run
    assert "cancel" not in inbox.kinds, inbox.kinds
    assert store.load(submitted[0])[0].owner == "b"


async def test_a_replica_that_lost_its_lease_leaves_the_run_to_the_new_owner(
    broker: tuple[int, dict[str, str]],
) -> None:
    port, credentials = broker
    orchestrator = login(port, credentials, "orchestrator")
    device = DeviceRuntime("pi-1", [held], login(port, credentials, "pi-1"), fleet=FLEET)
    store, inbox = Silenced(), Inbox()
    async with asyncio.TaskGroup() as background:
        serving = background.create_task(device.run())
        await device.ready.wait()
        watcher = await watching(orchestrator, inbox)
        try:
            async with (
                replica(store, orchestrator, "a", lease_s=1.0) as link_a,
                replica(store, orchestrator, "b") as link_b,
            ):
                for link in (link_a, link_b):
                    await link.device_link.wait_for_agents("held@pi-1", timeout_s=DEADLINE_S)
                taken: asyncio.Future[TaskHandle] = asyncio.get_running_loop().create_future()
                link_b.fleet.on_takeover(taken.set_result)
                async with link_a.fleet:
                    handle_a = link_a.fleet.submit(graph())
                    await asyncio.wait_for(GATE.started.wait(), DEADLINE_S)
                    store.silent.add("a")  # a's lease lapses; its engine runs on
                    async with link_b.fleet:
                        handle_b = await asyncio.wait_for(taken, DEADLINE_S)
                        await until(lambda: inbox.kinds.count("dispatch") == 2, "b dispatches")
                        store.silent.discard("a")  # a's next beat finds the task is b's
                        with pytest.raises(LeaseLost):
                            await asyncio.wait_for(handle_a.result(), DEADLINE_S)
                        GATE.go.set()
                        result = await asyncio.wait_for(handle_b.result(), DEADLINE_S)
        finally:
            await watcher.__aexit__(None, None, None)
        serving.cancel()

    assert result.status == "done" and result.outputs == {"hold": 42}
    assert (GATE.runs, GATE.cancelled) == (1, 0)
    assert "cancel" not in inbox.kinds, inbox.kinds  # a stopped without a word to the device


async def test_a_users_cancel_on_a_replica_still_cancels_on_the_device(
    broker: tuple[int, dict[str, str]],
) -> None:
    port, credentials = broker
    orchestrator = login(port, credentials, "orchestrator")
    device = DeviceRuntime("pi-1", [held], login(port, credentials, "pi-1"), fleet=FLEET)
    store, inbox = InMemoryStore(), Inbox()
    async with asyncio.TaskGroup() as background:
        serving = background.create_task(device.run())
        await device.ready.wait()
        watcher = await watching(orchestrator, inbox)
        try:
            async with replica(store, orchestrator, "a") as link:
                await link.device_link.wait_for_agents("held@pi-1", timeout_s=DEADLINE_S)
                async with link.fleet:
                    handle = link.fleet.submit(graph())
                    await GATE.started.wait()
                    result = await asyncio.wait_for(handle.cancel(), DEADLINE_S)
                    await until(lambda: GATE.cancelled == 1, "the device cancels the run")
        finally:
            await watcher.__aexit__(None, None, None)
        serving.cancel()

    assert result.status == "cancelled"
    assert "cancel" in inbox.kinds, inbox.kinds
    assert GATE.runs == 1
