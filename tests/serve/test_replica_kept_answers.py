"""A replica back from a crash drops the device answers kept in its session for tasks another
replica drives now, and keeps those of its own tasks for their resumed engines.

Real Mosquitto (kept sessions, the fleet's ACL), a real device runtime, and replicas' links in
this process on one in-memory store (shared, as a PostgreSQL database would be).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fleetmind import Fleet, agent
from fleetmind.agents import SubtaskContext
from fleetmind.agents.remote import DeviceRuntime, dispatch_id
from fleetmind.errors import FleetStateError
from fleetmind.orchestrator import InMemoryStore, Replica, Subtask, TaskRecord
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
    pytest.skip("needs Mosquitto (kept sessions, the fleet's ACL)", allow_module_level=True)

pytestmark = pytest.mark.timeout(120)
FLEET = "farm"
DEADLINE_S = 60.0


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    handle, port, credentials = start_test_broker(
        tmp_path, devices={"pi-1": ["doubler"]}, fleet=FLEET, embedded=False
    )
    with handle:
        yield port, credentials


def login(port: int, credentials: dict[str, str], user: str) -> BrokerAddress:
    return BrokerAddress("127.0.0.1", port, username=user, password=credentials[user])


class Gate:
    """Holds the device's agent until the test opens it."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.started: list[int] = []


GATE = Gate()


@pytest.fixture(autouse=True)
def fresh_gate() -> None:
    global GATE
    GATE = Gate()


@agent(id="doubler", skills=["double a number when let through"])
async def doubler(n: int) -> int:
    GATE.started.append(n)
    await GATE.open.wait()
    return 2 * n


async def until(condition: Callable[[], object], what: str) -> None:
    """Wait, without blocking the event loop, until ``condition()`` holds."""
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out: {what}"
        await asyncio.sleep(0.05)


def attempt(task_id: str, n: int) -> tuple[Subtask, SubtaskContext]:
    subtask = Subtask(id="double", agent="doubler", inputs={"n": n})
    context = SubtaskContext(
        task_id=task_id, subtask=subtask, inputs={"n": n}, agent_id="doubler@pi-1", epoch=1
    )
    return subtask, context


def replica_link(fleet: Fleet, address: BrokerAddress) -> MqttFleetLink:
    return MqttFleetLink(fleet, address, fleet_name=FLEET, client_id="fm-orch-a", replica_id="a")


async def test_a_restarted_replica_drops_answers_kept_for_tasks_another_replica_drives(
    broker: tuple[int, dict[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fleetmind.fleet_link")
    port, credentials = broker
    orchestrator = login(port, credentials, "orchestrator")
    device = DeviceRuntime("pi-1", [doubler], login(port, credentials, "pi-1"), fleet=FLEET)
    store = InMemoryStore()
    answered: list[str | None] = []

    def heard(message: Message) -> None:
        envelope, _ = parse_envelope(message.payload)
        if envelope.kind == "result":
            answered.append(envelope.correlation_id)

    moved, own = attempt("t-moved", 3), attempt("t-own", 4)
    async with asyncio.TaskGroup() as background:
        serving = background.create_task(device.run())
        await device.ready.wait()
        async with MqttConnection(orchestrator, "fm-watch", session_expiry_s=0) as watch:
            watch.handle_messages(heard)
            await watch.subscribe(Topics(FLEET).device_out("pi-1", "a"))
            # Replica a's first life: two subtasks out on the device when it dies.
            async with replica_link(Fleet(), orchestrator) as first_life:
                outs = [
                    asyncio.create_task(
                        first_life.dispatches.dispatch("pi-1", "doubler@pi-1", *job)
                    )
                    for job in (moved, own)
                ]
                await until(lambda: len(GATE.started) == 2, "both subtasks run on the device")
            for out in outs:
                with pytest.raises(FleetStateError):
                    await out
            # Meanwhile replica b took one task over; the other is still a's.
            store.create_task(TaskRecord(id="t-moved", name="moved", owner="b"), [], lease_s=600)
            store.create_task(TaskRecord(id="t-own", name="own", owner="a"), [], lease_s=600)
            GATE.open.set()  # the device answers a, whose session keeps both answers
            ids = [dispatch_id(task, "double", 1) for task in ("t-moved", "t-own")]
            await until(lambda: set(ids) <= set(answered), "the device answered both")

        # Replica a comes back on the shared store.
        fleet = Fleet(store=store, replica=Replica("a", lease_s=600))
        async with replica_link(fleet, orchestrator) as second_life:
            await until(
                lambda: any(
                    "task t-moved: 1 answer(s) kept for it dropped; replica b drives it"
                    in r.getMessage()
                    for r in caplog.records
                ),
                "the answer for the task b drives was dropped",
            )
            kept: list[object] = []

            def recover() -> bool:
                found = second_life.dispatches.recovered(
                    "t-own", "double", "doubler@pi-1", range(1, 2)
                )
                if found is not None:
                    kept.append(found[0])
                return bool(kept)

            # Taken, not acknowledged (its engine would do that once the outcome is saved).
            await until(recover, "the answer for a's own task was kept")

        # Back once more (a plain fleet, which keeps every answer it gets): only the answer
        # that was kept is still in the session; the dropped one was acknowledged.
        async with replica_link(Fleet(), orchestrator) as third_life:
            fresh = attempt("t-fresh", 5)
            later = await third_life.dispatches.dispatch("pi-1", "doubler@pi-1", *fresh)
            found = {
                task: third_life.dispatches.recovered(task, "double", "doubler@pi-1", range(1, 2))
                for task in ("t-moved", "t-own")
            }
        serving.cancel()

    assert later.output == 10
    assert [getattr(outcome, "output", outcome) for outcome in kept] == [8]
    assert found["t-moved"] is None
    assert found["t-own"] is not None
