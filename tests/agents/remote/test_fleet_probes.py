"""Probes of a fleet on the broker configuration fleetmind generates (passwords, ACL): what a
device may try with its own credentials changes nothing it must not change."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleetmind import Fleet, SubtaskFailed, TaskGraph, agent
from fleetmind.agents.remote import DeviceRuntime, dispatch_id
from fleetmind.orchestrator import SkillRouter
from fleetmind.protocols import BrokerAddress
from fleetmind.protocols._envelope import PresencePayload, ResultPayload, encode
from fleetmind.protocols._mqtt import MqttConnection
from fleetmind.protocols._topics import Topics
from fleetmind.serve import MqttFleetLink
from fleetmind.testing import start_test_broker

pytestmark = pytest.mark.timeout(120)
FLEETMIND = str(Path(sys.executable).parent / "fleetmind")
T = Topics("probe")

runs: list[str] = []


@agent(id="worker", skills=["work"])
async def worker(key: str) -> str:
    runs.append(key)
    return f"genuine {key}"


attempts: list[int] = []


@agent(id="flaky", skills=["flaky"])
async def flaky(key: str) -> str:
    attempts.append(len(attempts) + 1)
    if len(attempts) == 1:
        raise SubtaskFailed("try again", retryable=True)
    return f"second try {key}"


@dataclass
class Probe:
    port: int
    credentials: dict[str, str]
    embedded: bool

    def login(self, user: str) -> BrokerAddress:
        return BrokerAddress("127.0.0.1", self.port, username=user, password=self.credentials[user])


@pytest.fixture
async def probe(tmp_path: Path) -> AsyncIterator[Probe]:
    handle, port, credentials = start_test_broker(
        tmp_path, {"pi-7": ["worker", "flaky", "camera"], "evil": ["notes"]}, fleet="probe"
    )
    with handle:
        if handle.embedded:
            pytest.skip("needs Mosquitto (passwords and the ACL)")
        yield Probe(port, credentials, handle.embedded)


@pytest.fixture(autouse=True)
def _clean() -> None:
    runs.clear()
    attempts.clear()


async def serving(
    probe: Probe, tasks: asyncio.TaskGroup
) -> tuple[DeviceRuntime, asyncio.Task[None]]:
    device = DeviceRuntime(
        "pi-7", [worker, flaky], probe.login("pi-7"), fleet="probe", heartbeat_s=0.5
    )
    task = tasks.create_task(device.run())
    await asyncio.wait_for(device.ready.wait(), 30)
    return device, task


async def test_a_device_cannot_pre_answer_work_it_was_not_given(probe: Probe) -> None:
    fleet = Fleet(router=SkillRouter())
    graph = TaskGraph("pre-answer")
    graph.add_subtask("job", agent="worker", inputs={"key": "k"})
    forged = ResultPayload(task_id="t-probe-1", subtask_id="job", status="done", output="forged")
    async with asyncio.TaskGroup() as tasks:
        _, device_task = await serving(probe, tasks)
        async with (
            MqttFleetLink(fleet, probe.login("orchestrator"), fleet_name="probe") as link,
            MqttConnection(probe.login("pi-7"), "pi-7-rogue") as rogue,
        ):
            await link.wait_for_agents("worker@pi-7")
            # The device answers the task's first dispatch before it is made (it can compute
            # its name: the task, the subtask, the epoch).
            await rogue.publish(
                T.device_out("pi-7", link.replica_id),
                encode("result", "pi-7", forged, correlation_id=dispatch_id("t-probe-1", "job", 1)),
            )
            await link.settle()
            result = await fleet.run(graph, task_id="t-probe-1")
        device_task.cancel()
    assert result.outputs == {"job": "genuine k"} and runs == ["k"]


async def test_a_repeated_failure_is_not_the_next_attempts_answer(probe: Probe) -> None:
    fleet = Fleet(router=SkillRouter())
    graph = TaskGraph("replay")
    graph.add_subtask("job", agent="flaky", inputs={"key": "k"}, retry={"initial_backoff_s": 0.3})
    async with asyncio.TaskGroup() as tasks:
        _, device_task = await serving(probe, tasks)
        async with (
            MqttFleetLink(fleet, probe.login("orchestrator"), fleet_name="probe") as link,
            MqttConnection(probe.login("orchestrator"), "sniffer") as sniffer,
            MqttConnection(probe.login("pi-7"), "pi-7-rogue") as rogue,
        ):
            await sniffer.subscribe(T.all_device_out(link.replica_id))
            await link.wait_for_agents("flaky@pi-7")
            async with fleet:
                handle = fleet.submit(graph)
                async for message in sniffer.messages():
                    sent = json.loads(message.payload)
                    if sent["kind"] == "result":
                        failure = message.payload
                        break
                # The same message again (same id, same correlation id), during the back-off.
                await rogue.publish(message.topic, failure)
                result = await handle.result()
        device_task.cancel()
    assert result.outputs == {"job": "second try k"} and attempts == [1, 2]


async def test_another_devices_presence_cannot_take_an_agent_away(probe: Probe) -> None:
    fleet = Fleet(router=SkillRouter())
    async with asyncio.TaskGroup() as tasks:
        _, device_task = await serving(probe, tasks)
        async with (
            MqttFleetLink(fleet, probe.login("orchestrator"), fleet_name="probe") as link,
            MqttConnection(probe.login("evil"), "evil-1") as evil,
        ):
            await link.wait_for_agents("worker@pi-7")
            for state in ("online", "offline"):
                presence = PresencePayload(
                    state=state, agents=("worker", "camera"), heartbeat_s=0.5
                )
                await evil.publish(
                    T.presence("evil"), encode("presence", "evil", presence), retain=True
                )
            await asyncio.sleep(3)  # well past evil's grace period
            assert fleet.agent("worker@pi-7") is not None
            assert not [a for a in fleet.agents if a.id.endswith("@evil")]
            await evil.publish(T.presence("evil"), b"", retain=True)
        device_task.cancel()


async def test_a_device_cannot_knock_the_orchestrator_off_the_broker(probe: Probe) -> None:
    fleet = Fleet(router=SkillRouter())
    graph = TaskGraph("steady")
    graph.add_subtask("job", agent="worker", inputs={"key": "k"})
    async with asyncio.TaskGroup() as tasks:
        _, device_task = await serving(probe, tasks)
        async with MqttFleetLink(fleet, probe.login("orchestrator"), fleet_name="probe") as link:
            await link.wait_for_agents("worker@pi-7")
            connected_at = link.connection.connected_at
            # The names a device sees in dispatches (reply_to) and the old client ids.
            for guess in (link.replica_id, f"fm-orchestrator-{link.replica_id}", "orchestrator"):
                async with MqttConnection(probe.login("pi-7"), guess):
                    pass
            result = await fleet.run(graph)
            assert link.connection.connected_at == connected_at
        device_task.cancel()
    assert result.outputs == {"job": "genuine k"}


@pytest.mark.parametrize(
    "raw",
    [
        b'{"v": 1, "kind": "presence", "id": "p1", "sender": "evil", "sent_at": 1e300, '
        b'"payload": {"state": "online", "heartbeat_s": 1}}',
        b'{"v": 1, "kind": "presence", "id": "p2", "sender": "evil", "sent_at": NaN, '
        b'"payload": {"state": "online"}}',
    ],
)
async def test_a_retained_presence_with_an_impossible_time(
    probe: Probe, tmp_path: Path, raw: bytes
) -> None:
    async with MqttConnection(probe.login("evil"), "evil-2") as evil:
        await evil.publish(T.presence("evil"), raw, retain=True)
    password = tmp_path / "orch.pw"
    password.write_text(probe.credentials["orchestrator"])
    listed = await asyncio.to_thread(
        subprocess.run,
        [
            *(FLEETMIND, "devices", "--broker", f"mqtt://127.0.0.1:{probe.port}"),
            *(
                "--username",
                "orchestrator",
                "--password-file",
                str(password),
                "--fleet-name",
                "probe",
            ),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert listed.returncode == 0, listed.stderr
    assert "Traceback" not in listed.stderr + listed.stdout


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (
            b'{"v": 1, "kind": ["dispatch"], "id": "m1", "sender": "x", "sent_at": 1, '
            b'"payload": {}}',
            "unknown message kind",
        ),
        (
            b'{"v": 1, "kind": "dispatch", "id": "m2", "sender": "x", "sent_at": '
            + b"9" * 5000
            + b', "payload": {}}',
            "not JSON",
        ),
        (
            b'{"v": 1, "kind": "dispatch", "id": "", "sender": "x", "sent_at": 1, "payload": {}}',
            "id",
        ),
        (
            b'{"v": 1, "kind": "dispatch", "id": "'
            + b"a" * 500
            + b'", "sender": "x", "sent_at": 1, "payload": {}}',
            "id",
        ),
        (
            b'{"v": 1, "kind": "cancel", "id": "m5", "sender": "x", "sent_at": 1, "payload": '
            b'{"task_id": "t", "subtask_id": "s", "reason": "' + b"r" * 5000 + b'"}}',
            "reason",
        ),
    ],
)
async def test_malformed_messages_get_an_error_reply_and_the_device_keeps_serving(
    probe: Probe, raw: bytes, problem: str
) -> None:
    fleet = Fleet(router=SkillRouter())
    graph = TaskGraph("after")
    graph.add_subtask("job", agent="worker", inputs={"key": "still"})
    async with asyncio.TaskGroup() as tasks:
        _, device_task = await serving(probe, tasks)
        async with (
            MqttConnection(probe.login("orchestrator"), "prober") as prober,
            MqttFleetLink(fleet, probe.login("orchestrator"), fleet_name="probe") as link,
        ):
            await prober.subscribe(T.device_out("pi-7"))
            await prober.publish(T.device_inbox("pi-7"), raw)
            async with asyncio.timeout(30):
                async for message in prober.messages():
                    reply = json.loads(message.payload)
                    break
            assert reply["kind"] == "error" and problem in reply["payload"]["error"]["message"]
            assert "\n" not in reply["payload"]["error"]["message"]
            await link.wait_for_agents("worker@pi-7")
            result = await fleet.run(graph)
        device_task.cancel()
    assert result.outputs == {"job": "genuine still"}
