"""Replicas on one shared store, as the client and the devices see them: a submit delivered to
a replica whose store has the task already is never refused, a taken-over task's result reaches
the task's topic from its new owner, a device answers the new owner's dispatch of a subtask it
still runs for the old owner (running it once), and a killed replica leaves nothing in the
replicas' shared subscription that would keep the tasks submitted after it for itself.

Real Mosquitto (shared subscriptions, kept sessions), a real device runtime, and replicas in
this process (in the last test, `fleetmind orchestrator serve` processes); the fault tests of a
task's owner SIGKILLed are in test_replica_faults.py.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fleetmind import Fleet, TaskGraph, agent
from fleetmind.agents import SubtaskContext
from fleetmind.agents.remote import DeviceRuntime, dispatch_id
from fleetmind.errors import FleetStateError, TaskNotFound
from fleetmind.orchestrator import InMemoryStore, Replica, Subtask
from fleetmind.protocols import (
    BrokerAddress,
    MqttConnection,
    PresencePayload,
    SubmitPayload,
    Topics,
    mosquitto_installed,
    new_envelope,
    parse_envelope,
)
from fleetmind.serve import MqttFleetLink, SubmittedTaskResult, submit_via_broker
from fleetmind.testing import start_test_broker

if not mosquitto_installed():
    if os.environ.get("CI") == "true":
        raise RuntimeError("Mosquitto is required under CI: apt-get install mosquitto")
    pytest.skip(
        "needs Mosquitto (shared subscriptions; the embedded broker lacks them)",
        allow_module_level=True,
    )

pytestmark = pytest.mark.timeout(120)
FLEETMIND = str(Path(sys.executable).parent / "fleetmind")
FLEET = "farm"
DEADLINE_S = 60.0


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    handle, port, credentials = start_test_broker(
        tmp_path, devices={"pi-1": ["gated"]}, fleet=FLEET, embedded=False
    )
    with handle:
        yield port, credentials


def login(port: int, credentials: dict[str, str], user: str) -> BrokerAddress:
    return BrokerAddress("127.0.0.1", port, username=user, password=credentials[user])


class Gate:
    """Holds the device's agent until the test opens it, and counts the agent's runs."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.runs: list[int] = []
        self.started = asyncio.Event()


GATE = Gate()


@agent(id="gated", skills=["square a number when let through"])
async def gated(n: int) -> int:
    GATE.runs.append(n)
    GATE.started.set()
    await GATE.open.wait()
    return n * n


@pytest.fixture(autouse=True)
def fresh_gate() -> None:
    global GATE
    GATE = Gate()


def square(n: int) -> TaskGraph:
    graph = TaskGraph(f"square-{n}")
    graph.add_subtask("sq", agent="gated", inputs={"n": n})
    return graph


async def until(condition: Callable[[], object], what: str) -> None:
    """Wait, without blocking the event loop, until ``condition()`` holds."""
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out: {what}"
        await asyncio.sleep(0.05)


def replica_link(
    fleet: Fleet, address: BrokerAddress, name: str, group: str | None
) -> MqttFleetLink:
    return MqttFleetLink(
        fleet,
        address,
        fleet_name=FLEET,
        client_id=f"fm-orch-{name}",
        replica_id=name,
        share_group=group,
        accept_tasks=True,
    )


async def test_a_submit_that_reaches_a_replica_whose_store_has_the_task_is_not_refused(
    broker: tuple[int, dict[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fleetmind.fleet_link")
    port, credentials = broker
    orchestrator = login(port, credentials, "orchestrator")
    device = DeviceRuntime("pi-1", [gated], login(port, credentials, "pi-1"), fleet=FLEET)
    store = InMemoryStore()
    fleets = [Fleet(store=store), Fleet(store=store)]
    task_id = "t-again-1"

    def submit() -> asyncio.Task[SubmittedTaskResult]:
        return asyncio.create_task(
            submit_via_broker(
                orchestrator, square(4), fleet_name=FLEET, task_id=task_id, timeout_s=DEADLINE_S
            )
        )

    def noticed() -> int:
        return sum("is in the store already" in r.getMessage() for r in caplog.records)

    async with asyncio.TaskGroup() as background:
        serving = background.create_task(device.run())
        async with (
            # No group: both replicas get every submit, and one finds the other's task stored.
            replica_link(fleets[0], orchestrator, "a", None) as link_a,
            replica_link(fleets[1], orchestrator, "b", None) as link_b,
            fleets[0],
            fleets[1],
        ):
            await link_a.wait_for_agents("gated")
            await link_b.wait_for_agents("gated")
            first = submit()
            await until(lambda: noticed() >= 1, "the second replica saw the task stored")
            await GATE.started.wait()
            # The same submit once more (as the broker would deliver it again), while it runs.
            body = SubmitPayload(task_id=task_id, graph=square(4).to_definition())
            async with MqttConnection(orchestrator, "fm-resend", session_expiry_s=0) as resend:
                await resend.publish(
                    Topics(FLEET).submit, new_envelope("submit", "client", body).to_bytes()
                )
            await until(lambda: noticed() >= 3, "both replicas saw the task stored again")
            GATE.open.set()
            result = await first
            after = await submit()  # and once it has ended: its stored result comes back
        serving.cancel()

    for answered in (result, after):
        assert (answered.status, answered.outputs) == ("done", {"sq": 16})
    assert GATE.runs == [4]  # run once, whatever was delivered how often
    assert store.load(task_id)[0].status == "done"


async def test_a_taken_over_tasks_result_reaches_the_submitter_from_the_new_owner(
    broker: tuple[int, dict[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fleetmind.fleet_link")
    port, credentials = broker
    orchestrator = login(port, credentials, "orchestrator")
    device = DeviceRuntime("pi-1", [gated], login(port, credentials, "pi-1"), fleet=FLEET)
    store = InMemoryStore()  # shared by the two replicas, as a PostgreSQL database would be
    fleets = {name: Fleet(store=store, replica=Replica(name, lease_s=1.0)) for name in "ab"}
    task_id = "t-moved-1"
    stopped = {name: asyncio.Event() for name in "ab"}
    ready = {name: asyncio.Event() for name in "ab"}

    async def serve(name: str) -> None:
        """One replica, until told to stop: the link outlives the fleet, as in the CLI."""
        async with replica_link(fleets[name], orchestrator, name, "crew") as link, fleets[name]:
            await link.wait_for_agents("gated")
            ready[name].set()
            await stopped[name].wait()

    def owner() -> str | None:
        try:
            return store.load(task_id)[0].owner
        except TaskNotFound:
            return None

    async with asyncio.TaskGroup() as background:
        serving = background.create_task(device.run())
        replicas = {name: background.create_task(serve(name)) for name in "ab"}
        await asyncio.gather(*(event.wait() for event in ready.values()))
        client = background.create_task(
            submit_via_broker(
                orchestrator, square(7), fleet_name=FLEET, task_id=task_id, timeout_s=DEADLINE_S
            )
        )
        await GATE.started.wait()
        first = owner()
        assert first in ("a", "b")
        survivor = "b" if first == "a" else "a"
        replicas[first].cancel()  # the owner stops (Ctrl-C): its lease is released
        await until(lambda: owner() == survivor, f"replica {survivor} took the task over")
        GATE.open.set()
        result = await client
        stopped[survivor].set()
        serving.cancel()

    assert (result.status, result.outputs) == ("done", {"sq": 49})
    assert result.replica == survivor  # reported by the new owner, to the client that waited
    assert store.load(task_id)[0].status == "done"
    assert any(f"taken over by replica {survivor}" in r.getMessage() for r in caplog.records)


async def test_an_owner_whose_lease_was_taken_stops_reporting_and_the_new_owner_reports(
    broker: tuple[int, dict[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fleetmind.fleet_link")
    port, credentials = broker
    orchestrator = login(port, credentials, "orchestrator")
    device = DeviceRuntime("pi-1", [gated], login(port, credentials, "pi-1"), fleet=FLEET)
    store = InMemoryStore()
    fleets = {name: Fleet(store=store, replica=Replica(name, lease_s=1.0)) for name in "ab"}
    task_id = "t-fenced-1"

    def said(words: str) -> bool:
        return any(words in r.getMessage() for r in caplog.records)

    async with asyncio.TaskGroup() as background:
        serving = background.create_task(device.run())
        async with (
            replica_link(fleets["a"], orchestrator, "a", "crew") as link_a,
            replica_link(fleets["b"], orchestrator, "b", "crew") as link_b,
            fleets["a"],
            fleets["b"],
        ):
            await link_a.wait_for_agents("gated")
            await link_b.wait_for_agents("gated")
            client = asyncio.create_task(
                submit_via_broker(
                    orchestrator, square(8), fleet_name=FLEET, task_id=task_id, timeout_s=60
                )
            )
            await GATE.started.wait()
            record = store.load(task_id)[0]
            first = record.owner
            assert first in ("a", "b")
            survivor = "b" if first == "a" else "a"
            # The owner is cut off long enough for another replica to claim the task (a
            # paused machine, a partition); it is still running when it hears of it.
            assert store.release(task_id, first, record.lease_epoch)
            assert store.claim(task_id, survivor, 1.0) is not None
            await until(lambda: said(f"replica {first} lost its lease"), "the old owner stopped")
            await until(lambda: said(f"taken over by replica {survivor}"), "the new owner follows")
            GATE.open.set()
            result = await client
        serving.cancel()

    assert (result.status, result.outputs) == ("done", {"sq": 64})
    assert result.replica == survivor
    assert store.load(task_id)[0].owner == survivor


async def test_a_device_answers_the_new_owners_dispatch_of_a_subtask_it_runs_for_the_old(
    broker: tuple[int, dict[str, str]],
) -> None:
    port, credentials = broker
    orchestrator = login(port, credentials, "orchestrator")
    device = DeviceRuntime(
        "pi-1", [gated], login(port, credentials, "pi-1"), fleet=FLEET, heartbeat_s=0.2
    )
    subtask = Subtask(id="sq", agent="gated", inputs={"n": 5})

    def attempt(epoch: int) -> SubtaskContext:
        return SubtaskContext(
            task_id="t-moved", subtask=subtask, inputs={"n": 5}, agent_id="gated@pi-1", epoch=epoch
        )

    held: set[str] = set()

    def heard(message: object) -> None:
        _, payload = parse_envelope(message.payload)  # type: ignore[attr-defined]
        if isinstance(payload, PresencePayload):
            held.clear()
            held.update(payload.running)

    old, new = dispatch_id("t-moved", "sq", 1), dispatch_id("t-moved", "sq", 2)
    async with asyncio.TaskGroup() as background:
        serving = background.create_task(device.run())
        await device.ready.wait()
        async with MqttConnection(orchestrator, "fm-watch-presence", session_expiry_s=0) as watch:
            watch.handle_messages(heard)
            await watch.subscribe(Topics(FLEET).presence("pi-1"), qos=0)
            # The old owner dispatches the first attempt, then goes away without a word.
            async with replica_link(Fleet(), orchestrator, "a", None) as link_a:
                old_attempt = asyncio.create_task(
                    link_a.dispatches.dispatch("pi-1", "gated@pi-1", subtask, attempt(1))
                )
                await GATE.started.wait()
            with pytest.raises(FleetStateError):
                await old_attempt
            # The new owner's attempt (the next epoch, answered to it) while the first runs.
            async with replica_link(Fleet(), orchestrator, "b", None) as link_b:
                new_attempt = asyncio.create_task(
                    link_b.dispatches.dispatch("pi-1", "gated@pi-1", subtask, attempt(2))
                )
                await until(lambda: {old, new} <= held, "the device holds both dispatches")
                GATE.open.set()
                answer = await new_attempt
            # The old owner, back under its name, finds its answer kept and keeps working.
            async with replica_link(Fleet(), orchestrator, "a", None) as link_a:
                await until(
                    lambda: (
                        link_a.dispatches.recovered("t-moved", "sq", "gated@pi-1", range(1, 2))
                        is not None
                    ),
                    "the old owner's answer waited in its session",
                )
                other = Subtask(id="other", agent="gated", inputs={"n": 6})
                ctx = SubtaskContext(task_id="t-next", subtask=other, inputs={"n": 6}, epoch=1)
                later = await link_a.dispatches.dispatch("pi-1", "gated@pi-1", other, ctx)
        serving.cancel()

    assert answer.output == 25
    assert GATE.runs == [5, 6]  # the moved subtask ran once
    assert later.output == 36


def test_tasks_submitted_after_a_replica_is_killed_go_to_the_replicas_that_are_up(
    tmp_path: Path, broker: tuple[int, dict[str, str]]
) -> None:
    port, credentials = broker
    (tmp_path / "orchestrator.pw").write_text(credentials["orchestrator"])
    login_args = [
        "--username",
        "orchestrator",
        "--password-file",
        str(tmp_path / "orchestrator.pw"),
    ]
    logs = {name: tmp_path / f"{name}.log" for name in ("r1", "r2")}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, log in logs.items():
            with log.open("wb") as out:
                processes[name] = subprocess.Popen(
                    [
                        *(
                            FLEETMIND,
                            "orchestrator",
                            "serve",
                            "--broker",
                            f"mqtt://127.0.0.1:{port}",
                        ),
                        *("--fleet-name", FLEET, "--group", "crew", "--replica-id", name),
                        *("--data-dir", str(tmp_path / name), *login_args),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=out,
                )
        deadline = time.monotonic() + DEADLINE_S
        while not all("taking tasks" in log.read_text() for log in logs.values()):
            assert time.monotonic() < deadline, {n: p.read_text() for n, p in logs.items()}
            assert all(p.poll() is None for p in processes.values()), logs
            time.sleep(0.1)
        processes["r1"].send_signal(signal.SIGKILL)
        processes["r1"].wait(timeout=30)
        results = asyncio.run(_square_on_the_fleet(port, credentials, range(2, 8)))
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

    assert [(r.status, r.outputs, r.replica) for r in results] == [
        ("done", {"sq": n * n}, "r2") for n in range(2, 8)
    ]


async def _square_on_the_fleet(
    port: int, credentials: dict[str, str], numbers: range
) -> list[SubmittedTaskResult]:
    """Submit one task per number, with a device that serves the agent, and wait for all."""
    GATE.open.set()
    device = DeviceRuntime("pi-1", [gated], login(port, credentials, "pi-1"), fleet=FLEET)
    orchestrator = login(port, credentials, "orchestrator")
    async with asyncio.TaskGroup() as background:
        serving = background.create_task(device.run())
        results = await asyncio.gather(
            *(
                submit_via_broker(orchestrator, square(n), fleet_name=FLEET, timeout_s=DEADLINE_S)
                for n in numbers
            )
        )
        serving.cancel()
    return results
