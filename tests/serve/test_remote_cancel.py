"""Cancelling a task over the broker: a client publishes ``task_cancel`` on the task's control
topic, and the replica that drives the task cancels it there. Real Mosquitto, a real
``fleetmind orchestrator serve`` and a real ``fleetmind agent serve`` device whose agent runs
until it is cancelled (it writes down that it was).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
from replica_harness import replica_rig

from fleetmind import TaskGraph
from fleetmind.protocols import (
    BrokerAddress,
    MqttConnection,
    TaskCancelPayload,
    Topics,
    encode,
    mosquitto_installed,
)
from fleetmind.serve import submit_via_broker
from fleetmind.testing import start_test_broker

pytestmark = pytest.mark.timeout(300)

FLEETMIND = str(Path(sys.executable).parent / "fleetmind")
FLEET = "farm"  # the replica rig's fleet too
DEVICE = "pi-1"
DEADLINE_S = 120.0
"""How long any one condition is waited for: these machines can be very loaded."""

AGENT = '''
import asyncio
import os
from pathlib import Path

from fleetmind import agent

RUNS = Path(os.environ["FM_RUNS"])


@agent(id="slow", skills=["wait"])
async def slow(key: str) -> str:
    """Runs until it is cancelled, and writes down that it started and that it was."""
    with RUNS.open("a") as runs:
        runs.write(f"start {key}\\n")
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        with RUNS.open("a") as runs:
            runs.write(f"cancelled {key}\\n")
        raise
    return f"{key} done"
'''


class Rig:
    """The broker, the device and the replica of one test, and their output."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}
        self.runs_file = workdir / "runs.log"
        self.broker, self.port, self.credentials = start_test_broker(
            workdir, devices={DEVICE: ["slow"]}, fleet=FLEET, embedded=False
        )

    def address(self) -> BrokerAddress:
        password = self.credentials["orchestrator"]
        return BrokerAddress("127.0.0.1", self.port, username="orchestrator", password=password)

    def login(self, user: str) -> list[str]:
        password = self.workdir / f"{user}.pw"
        password.write_text(self.credentials[user])
        return ["--username", user, "--password-file", str(password)]

    def spawn(self, name: str, argv: list[str], marker: str) -> None:
        log = self.logs[name] = self.workdir / f"{name}.log"
        with log.open("wb") as out:
            self.processes[name] = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "FM_RUNS": str(self.runs_file)},
            )
        self.until(lambda: marker in self.output(name), f"{name} says {marker!r}")

    def output(self, name: str) -> str:
        return self.logs[name].read_text(errors="replace")

    def runs(self) -> list[str]:
        text = self.runs_file.read_text() if self.runs_file.exists() else ""
        return text.split("\n")[:-1]

    def until(self, predicate: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + DEADLINE_S
        while not predicate():
            for name, process in self.processes.items():
                assert process.poll() is None, f"{name} exited: {what}\n{self.trace()}"
            assert time.monotonic() < deadline, f"timed out: {what}\n{self.trace()}"
            time.sleep(0.05)

    async def until_async(self, predicate: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + DEADLINE_S
        while not predicate():
            assert time.monotonic() < deadline, f"timed out: {what}\n{self.trace()}"
            await asyncio.sleep(0.05)

    def trace(self) -> str:
        parts = [f"--- {name}\n{self.output(name)[-3000:]}" for name in self.logs]
        return "\n".join([*parts, f"--- runs\n{self.runs()}"])

    def close(self) -> None:
        for process in self.processes.values():
            with suppress(ProcessLookupError):
                process.kill()
            process.wait(timeout=30)
        self.broker.stop()


@contextmanager
def fleet(tmp_path: Path) -> Iterator[Rig]:
    """A device serving the ``slow`` agent and one replica taking tasks."""
    if not mosquitto_installed() and os.environ.get("CI") != "true":
        pytest.skip("needs Mosquitto")
    rig = Rig(tmp_path)
    try:
        agents = tmp_path / "slow_agents.py"
        agents.write_text(AGENT)
        rig.spawn(
            DEVICE,
            [
                *(
                    FLEETMIND,
                    "agent",
                    "serve",
                    str(agents),
                    "--broker",
                    f"mqtt://127.0.0.1:{rig.port}",
                ),
                *("--fleet-name", FLEET, *rig.login(DEVICE)),
            ],
            "serving",
        )
        rig.spawn(
            "replica",
            [
                *(FLEETMIND, "orchestrator", "serve", "--broker", f"mqtt://127.0.0.1:{rig.port}"),
                *("--fleet-name", FLEET, *rig.login("orchestrator")),
                *("--data-dir", str(tmp_path / "replica")),
            ],
            "taking tasks",
        )
        yield rig
    finally:
        rig.close()


async def publish(address: BrokerAddress, topic: str, payload: bytes) -> None:
    async with MqttConnection(address, f"fm-test-{os.getpid()}", session_expiry_s=0) as mqtt:
        await mqtt.publish(topic, payload, qos=1)


def test_a_cancel_on_the_control_topic_ends_the_task_cancelled(tmp_path: Path) -> None:
    with fleet(tmp_path) as rig:
        topics = Topics(FLEET)
        graph = TaskGraph("wait")
        graph.add_subtask("a", agent="slow", inputs={"key": "a"})
        events: list[dict[str, Any]] = []

        async def scenario() -> Any:
            submitting = asyncio.create_task(
                submit_via_broker(
                    rig.address(),
                    graph,
                    fleet_name=FLEET,
                    task_id="tcancel0001",
                    on_event=events.append,
                    timeout_s=DEADLINE_S,
                )
            )
            await rig.until_async(lambda: "start a" in rig.runs(), "the device runs a")
            control = topics.task_control("tcancel0001")
            # A malformed request is dropped with one line, and the task runs on.
            await publish(rig.address(), control, b"{not json")
            await rig.until_async(
                lambda: f"malformed message on {control}" in rig.output("replica"),
                "the replica drops the malformed request",
            )
            assert not submitting.done()
            # A cancel of a task no replica drives changes nothing.
            other = TaskCancelPayload(task_id="tother00001", reason="not here")
            await publish(
                rig.address(), topics.task_control("tother00001"), encode("task_cancel", "t", other)
            )
            request = TaskCancelPayload(task_id="tcancel0001", reason="stopped by a test")
            await publish(rig.address(), control, encode("task_cancel", "tester", request))
            return await submitting

        result = asyncio.run(scenario())
        assert result.status == "cancelled", rig.trace()
        assert "subtask_cancelled" in [e.get("kind") for e in events]
        rig.until(lambda: "cancelled a" in rig.runs(), "the device's run is cancelled")
        assert rig.runs().count("start a") == 1
        dropped = f"malformed message on {topics.task_control('tcancel0001')}"
        assert rig.output("replica").count(dropped) == 1


def test_a_task_taken_over_is_cancelled_by_its_new_owner(tmp_path: Path) -> None:
    """Two replicas on one PostgreSQL: the owner is killed mid-task, the other takes the task
    over, and a cancel then reaches the new owner (the old one is gone; nobody else acts)."""
    with replica_rig(tmp_path) as rig:
        rig.start_replicas("r1", "r2")
        rig.submit()
        rig.until(lambda: rig.runs()["b"] == 1, "b runs on the device", alive=("r1", "r2"))
        task = rig.the_task()
        other = "r2" if task.owner == "r1" else "r1"
        rig.kill(task.owner)
        rig.until(lambda: rig.record(task.id).owner == other, "the other replica takes over")
        request = TaskCancelPayload(task_id=task.id, reason="stopped after a takeover")
        body = encode("task_cancel", "tester", request)
        control = Topics(FLEET).task_control(task.id)
        # Sent again until acted on: the new owner follows the task a moment after it claims it.
        deadline = time.monotonic() + DEADLINE_S
        resend_at = 0.0
        while rig.record(task.id).status != "cancelled":
            assert time.monotonic() < deadline, f"the task is not cancelled\n{rig.trace()}"
            if time.monotonic() >= resend_at:
                asyncio.run(publish(rig.address(), control, body))
                resend_at = time.monotonic() + 2.0
            time.sleep(0.05)
        submit = rig.processes["submit"]
        rig.until(lambda: submit.poll() is not None, "the submitter gets the end")
        assert rig.record(task.id).owner == other
        assert rig.alive(other), rig.trace()

    assert '"status": "cancelled"' in rig.output("submit"), rig.output("submit")
    assert rig.runs() == {"a": 1, "b": 1}  # c never started
