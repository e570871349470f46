"""The MQTT fleet under real faults: real Mosquitto, devices in their own processes, agents that
audit every start and end of their work. Nothing may be lost, nothing finished may run again,
nothing superseded may start."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fleet_harness import FLEETMIND, MOSQUITTO, Devices, Mosquitto

from fleetmind import Fleet, Subtask, TaskGraph
from fleetmind.orchestrator import SkillRouter, SQLiteStore
from fleetmind.protocols import BrokerAddress
from fleetmind.serve import MqttFleetLink

if MOSQUITTO is None and os.environ.get("CI") == "true":
    raise RuntimeError("Mosquitto is required under CI: apt-get install mosquitto")
pytestmark = [
    pytest.mark.skipif(MOSQUITTO is None, reason="needs Mosquitto (persistent sessions)"),
    pytest.mark.timeout(240),
]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    mosquitto = Mosquitto(tmp_path)
    try:
        yield mosquitto
    finally:
        mosquitto.close()


@pytest.fixture
def devices(tmp_path: Path, broker: Mosquitto) -> Iterator[Devices]:
    started = Devices(tmp_path, broker.url)
    try:
        yield started
    finally:
        started.close()


def address(broker: Mosquitto) -> BrokerAddress:
    return BrokerAddress("127.0.0.1", broker.port)


def work(*keys: str, hold: float = 0.0, **fields: object) -> TaskGraph:
    graph = TaskGraph("audited")
    for key in keys:
        graph.add_subtask(key, skill="work", inputs={"key": key, "hold": hold}, **fields)
    return graph


async def test_a_device_killed_and_restarted_within_the_grace_period_redoes_its_work(
    broker: Mosquitto, devices: Devices
) -> None:
    devices.start("pi-1")
    fleet = Fleet(router=SkillRouter())
    async with MqttFleetLink(fleet, address(broker), dead_after_s=30) as link:
        await link.wait_for_agents("worker@pi-1")
        async with fleet:
            handle = fleet.submit(work("a", "b", "c", hold=1.5))
            await devices.until(lambda: len(devices.counts("start")) == 3, "three starts")
            devices.kill("pi-1")  # mid-work: nothing has ended
            devices.start("pi-1")  # back at once, well within the grace period
            result = await asyncio.wait_for(handle.result(), 90)

    assert result.status == "done", result.errors
    assert devices.counts("end") == {"a": 1, "b": 1, "c": 1}  # each finished exactly once
    assert devices.counts("start") == {"a": 2, "b": 2, "c": 2}  # lost in the crash, redone
    assert not [e for e in result.graph.log if e.kind == "subtask_reassigned"]


async def test_work_given_to_another_device_never_starts_on_the_one_that_comes_back(
    broker: Mosquitto, devices: Devices
) -> None:
    devices.start("pi-1")
    devices.start("pi-2")
    fleet = Fleet(router=SkillRouter())
    async with MqttFleetLink(fleet, address(broker), dead_after_s=1.5) as link:
        await link.wait_for_agents("worker@pi-1", "worker@pi-2")
        devices.kill("pi-1")  # gone, but the orchestrator does not know yet
        graph = work("x")
        graph.update_subtask("x", constraints={"device": "pi-1"}, retry={"max_attempts": 1})
        graph.add_subtask("y", agent="worker", inputs={"key": "y"})
        async with fleet:
            handle = fleet.submit(graph)
            # x waits in pi-1's session; pi-1 is declared dead and x fails over... to nobody
            # else (its constraint), so it waits for pi-1's agents to come back.
            await devices.until(lambda: devices.counts("end")["y"] == 1, "y done elsewhere")
            await asyncio.sleep(3)  # pi-1 is dead by now; x's dispatch was cancelled
            devices.start("pi-1")  # it comes back: its session held the stale dispatch
            result = await asyncio.wait_for(handle.result(), 90)

    assert result.status == "done", result.errors
    # The stale copy was never started: x ran once, as a new attempt after pi-1 came back.
    assert devices.counts("start")["x"] == 1 and devices.counts("end")["x"] == 1
    assert result.graph.state("x").total_attempts >= 2


async def test_a_broker_outage_of_sixty_seconds_mid_task_loses_nothing(
    broker: Mosquitto, devices: Devices
) -> None:
    devices.start("pi-1")
    devices.start("pi-2")
    keys = [f"k{n}" for n in range(20)]
    fleet = Fleet(router=SkillRouter())
    async with MqttFleetLink(fleet, address(broker), dead_after_s=3) as link:
        await link.wait_for_agents("worker@pi-1", "worker@pi-2")
        async with fleet:
            handle = fleet.submit(work(*keys, hold=0.5))
            await devices.until(lambda: sum(devices.counts("end").values()) >= 3, "some done")
            broker.stop()
            await asyncio.sleep(60)  # far longer than any heartbeat window
            broker.start()
            result = await asyncio.wait_for(handle.result(), 120)

    assert result.status == "done", result.errors
    assert devices.counts("end") == dict.fromkeys(keys, 1)
    assert sum(devices.counts("start").values()) == len(keys)  # nothing ran twice


def test_an_orchestrator_killed_after_its_devices_answered_uses_their_answers(
    tmp_path: Path, broker: Mosquitto, devices: Devices
) -> None:
    devices.start("pi-1", hold_s=1.0)
    (tmp_path / "task.yaml").write_text(
        "name: answered\nsubtasks:\n"
        + "".join(f"  - {{id: s{n}, agent: worker, inputs: {{key: s{n}}}}}\n" for n in range(5))
    )
    home = tmp_path / "home"
    run = [FLEETMIND, "run", str(tmp_path / "task.yaml"), "--broker", broker.url]
    orchestrator = subprocess.Popen(
        [*run, "--no-live", "--data-dir", str(home)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180  # a loaded machine starts `fleetmind run` slowly
        while len(devices.counts("start")) < 5:
            assert time.monotonic() < deadline, devices.lines()
            time.sleep(0.02)
        os.killpg(orchestrator.pid, signal.SIGKILL)  # the devices finish without it
        orchestrator.wait(timeout=10)
        deadline = time.monotonic() + 60
        while len(devices.counts("end")) < 5:
            assert time.monotonic() < deadline, devices.lines()
            time.sleep(0.02)
        devices.start("pi-2")  # now a fresh device is on offer too: the answers still stand
        store = SQLiteStore(home / "fleetmind.db")
        (record,) = store.tasks()
        store.close()
        resume = [FLEETMIND, "resume", record.id, "--broker", broker.url, "--json"]
        resumed = subprocess.run(
            [*resume, "--data-dir", str(home)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        if orchestrator.poll() is None:
            orchestrator.kill()
            orchestrator.wait(timeout=10)

    assert resumed.returncode == 0, resumed.stderr
    outputs = json.loads(resumed.stdout)["outputs"]
    assert outputs == {f"s{n}": f"s{n} by pi-1" for n in range(5)}
    assert sum(devices.counts("start").values()) == 5  # every answer was used: nothing re-ran


async def test_a_fan_out_on_mosquittos_default_limits_completes(
    tmp_path: Path, devices: Devices
) -> None:
    small = Mosquitto(tmp_path, persistent=False)  # 1,000 queued + 20 in flight per client
    try:
        devices.broker_url = small.url
        devices.start("pi-1")
        keys = [f"f{n}" for n in range(3000)]
        fleet = Fleet(router=SkillRouter())
        async with MqttFleetLink(fleet, address(small)) as link:
            await link.wait_for_agents("worker@pi-1")
            result = await asyncio.wait_for(fleet.run(work(*keys)), 180)
    finally:
        devices.close()
        small.close()
    assert result.status == "done", list(result.errors.items())[:3]
    assert len(result.outputs) == len(keys)
    assert devices.counts("end") == dict.fromkeys(keys, 1)


async def test_the_same_agent_on_two_devices_is_two_candidates_and_runs_once(
    broker: Mosquitto, devices: Devices
) -> None:
    devices.start("pi-1")
    devices.start("pi-2")
    fleet = Fleet(router=SkillRouter())
    graph = TaskGraph("shared")
    for n in range(10):
        graph.add_subtask(f"w{n}", agent="worker", inputs={"key": f"w{n}", "hold": 0.2})
    graph.add_subtask(
        "there", agent="worker", inputs={"key": "there"}, constraints={"device": "pi-2"}
    )
    async with MqttFleetLink(fleet, address(broker)) as link:
        await link.wait_for_agents("worker@pi-1", "worker@pi-2")
        assert {a.id for a in fleet.agents} >= {"worker@pi-1", "worker@pi-2", "picky@pi-1"}
        named = fleet.route(Subtask(id="q", agent="worker")).candidates
        assert sorted(named) == ["worker@pi-1", "worker@pi-2"]  # two candidates
        result = await fleet.run(graph)

    assert result.status == "done", result.errors
    lines = devices.lines()
    assert devices.counts("start") == dict.fromkeys([*(f"w{n}" for n in range(10)), "there"], 1)
    assert "pi-2 start there" in lines and result.graph.state("there").agent == "worker@pi-2"


async def test_a_deterministic_error_is_tried_once_here_and_on_a_device(
    broker: Mosquitto, devices: Devices
) -> None:
    from fleetmind import agent

    tries: list[str] = []

    @agent(id="local-picky", skills=["pick-local"])
    async def local_picky(key: str) -> str:
        tries.append(key)
        raise ValueError(f"cannot work with {key}")

    devices.start("pi-1")
    fleet = Fleet([local_picky], router=SkillRouter())
    graph = TaskGraph("errors")
    graph.add_subtask("remote", agent="picky", inputs={"key": "r"})
    graph.add_subtask("local", agent="local-picky", inputs={"key": "l"})
    async with MqttFleetLink(fleet, address(broker)) as link:
        await link.wait_for_agents("picky@pi-1")
        result = await fleet.run(graph)

    assert result.errors["remote"]["type"] == result.errors["local"]["type"] == "ValueError"
    assert result.errors["remote"]["retryable"] is result.errors["local"]["retryable"] is False
    assert tries == ["l"] and devices.counts("start")["r"] == 1  # one try each, same rule
