"""Orchestrator replicas that share submitted tasks through an MQTT shared subscription.

Real Mosquitto (shared subscriptions are an MQTT 5 feature the embedded broker lacks), real
device runtimes, and, in the last test, every part as its own process through the CLI.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetmind import Fleet, TaskGraph, agent
from fleetmind.agents.remote import DeviceRuntime
from fleetmind.errors import RunError
from fleetmind.protocols._broker import mosquitto_installed
from fleetmind.protocols._mqtt import BrokerAddress
from fleetmind.serve import MqttFleetLink, submit_via_broker
from fleetmind.testing import start_test_broker

if not mosquitto_installed():
    if os.environ.get("CI") == "true":
        raise RuntimeError("Mosquitto is required under CI: apt-get install mosquitto")
    pytest.skip(
        "needs Mosquitto (shared subscriptions; the embedded broker lacks them)",
        allow_module_level=True,
    )

pytestmark = pytest.mark.timeout(90)
FLEETMIND = str(Path(sys.executable).parent / "fleetmind")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    handle, port, credentials = start_test_broker(
        tmp_path, devices={"pi-1": ["squarer"]}, fleet="farm", embedded=False
    )
    with handle:
        yield port, credentials


def login(port: int, credentials: dict[str, str], user: str) -> BrokerAddress:
    return BrokerAddress("127.0.0.1", port, username=user, password=credentials[user])


@agent(id="squarer", skills=["square a number"])
async def squarer(n: int) -> int:
    await asyncio.sleep(0.05)  # long enough for tasks to overlap on the replicas
    return n * n


def square_task(n: int) -> TaskGraph:
    graph = TaskGraph(f"square-{n}")
    graph.add_subtask("sq", agent="squarer", inputs={"n": n})
    return graph


async def test_replicas_split_submitted_tasks_and_each_gets_its_own_results(
    broker: tuple[int, dict[str, str]],
) -> None:
    port, credentials = broker
    orchestrator = login(port, credentials, "orchestrator")
    device = DeviceRuntime("pi-1", [squarer], login(port, credentials, "pi-1"), fleet="farm")
    fleets = [Fleet(), Fleet()]
    async with asyncio.TaskGroup() as tasks:
        serving = tasks.create_task(device.run())
        async with (
            fleets[0],
            fleets[1],
            MqttFleetLink(
                fleets[0],
                orchestrator,
                fleet_name="farm",
                client_id="fm-orch-a",
                replica_id="a",
                share_group="crew",
                accept_tasks=True,
            ) as link_a,
            MqttFleetLink(
                fleets[1],
                orchestrator,
                fleet_name="farm",
                client_id="fm-orch-b",
                replica_id="b",
                share_group="crew",
                accept_tasks=True,
            ) as link_b,
        ):
            await link_a.wait_for_agents("squarer")
            await link_b.wait_for_agents("squarer")
            results = await asyncio.gather(
                *(
                    submit_via_broker(orchestrator, square_task(n), fleet_name="farm", timeout_s=60)
                    for n in range(12)
                )
            )
            refused = None
            try:
                bad = {
                    "name": "bad",
                    "subtasks": [{"id": "x", "agent": "squarer"}],
                    "dependencies": [{"source": "nowhere", "target": "x"}],
                }
                await submit_via_broker(
                    orchestrator, _Definition(bad), fleet_name="farm", timeout_s=30
                )
            except RunError as exc:
                refused = exc.message
            ignored = [*link_a.ignored, *link_b.ignored]
        serving.cancel()

    assert [r.outputs for r in results] == [{"sq": n * n} for n in range(12)]
    assert all(r.ok for r in results)
    by_replica = {r.replica for r in results}
    assert by_replica == {"a", "b"}  # the broker handed tasks to both replicas
    ran_here = {fleet: {t.id for t in fleet.store.tasks(100)} for fleet in fleets}
    assert not (ran_here[fleets[0]] & ran_here[fleets[1]])  # ... and each task to one only
    assert len(ran_here[fleets[0]] | ran_here[fleets[1]]) == 12
    # Every result went to the replica that dispatched it: none was dropped as unexpected.
    assert not [why for why in ignored if "not pending" in why], ignored
    assert refused is not None and "refused task" in refused and "nowhere" in refused
    events = [e["kind"] for e in results[0].events]
    assert events[0] == "subtask_ready" and "subtask_done" in events


class _Definition(TaskGraph):
    """A graph whose definition is given as is, to send an invalid one."""

    def __init__(self, definition: dict) -> None:
        super().__init__(definition["name"])
        self._raw = definition

    def to_definition(self) -> dict:
        return self._raw


def test_cli_replicas_devices_and_submit_as_separate_processes(
    tmp_path: Path, broker: tuple[int, dict[str, str]]
) -> None:
    port, credentials = broker
    (tmp_path / "agents.py").write_text(
        "from fleetmind import agent\n"
        "@agent(id='squarer', skills=['square a number'])\n"
        "async def squarer(n: int) -> int:\n"
        "    return n * n\n"
    )
    (tmp_path / "task.yaml").write_text(
        "name: squares\nparams: {n: 3}\nsubtasks:\n"
        "  - {id: sq, agent: squarer, inputs: {n: '${params.n}'}}\n"
        "  - {id: again, agent: squarer, inputs: {n: '${sq}'}}\n"
    )
    url = f"mqtt://127.0.0.1:{port}"
    for user in ("orchestrator", "pi-1"):
        (tmp_path / f"{user}.pw").write_text(credentials[user])
    orch_login = [
        "--username",
        "orchestrator",
        "--password-file",
        str(tmp_path / "orchestrator.pw"),
    ]
    common = ["--broker", url, "--fleet-name", "farm"]
    processes: list[subprocess.Popen[str]] = []
    try:
        processes.append(
            subprocess.Popen(
                [
                    *(FLEETMIND, "agent", "serve", str(tmp_path / "agents.py"), *common),
                    *("--username", "pi-1", "--password-file", str(tmp_path / "pi-1.pw")),
                ],
                stderr=subprocess.PIPE,
                text=True,
            )
        )
        for replica in ("r1", "r2"):
            processes.append(
                subprocess.Popen(
                    [
                        *(FLEETMIND, "orchestrator", "serve", *common, *orch_login),
                        *("--replica-id", replica, "--data-dir", str(tmp_path / replica)),
                    ],
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        for process in processes:  # each says when it is serving
            assert process.stderr is not None
            line = process.stderr.readline()
            assert "serving" in line or "taking tasks" in line, line
        replicas = set()
        deadline = time.monotonic() + 60
        for n in range(2, 8):
            done = subprocess.run(
                [
                    *(FLEETMIND, "submit", str(tmp_path / "task.yaml"), *common, *orch_login),
                    *("--param", f"n={n}", "--json", "--timeout", "30"),
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
            data = json.loads(done.stdout)
            assert data["outputs"] == {"sq": n * n, "again": n**4}
            replicas.add(data["replica"])
            if replicas == {"r1", "r2"} or time.monotonic() > deadline:
                break
        assert replicas == {"r1", "r2"}
        shown = subprocess.run(
            [
                *(FLEETMIND, "submit", str(tmp_path / "task.yaml"), *common, *orch_login),
                *("--param", "n=3", "--timeout", "30"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert shown.returncode == 0, shown.stderr
        # the events come back over the broker and read as `fleetmind run` prints them
        assert "▶ sq started on" in shown.stderr, shown.stderr
        assert "✓ sq done in" in shown.stderr, shown.stderr
        assert "subtask_ready" not in shown.stderr, shown.stderr

        refused = subprocess.run(
            [FLEETMIND, "submit", str(tmp_path / "agents.py"), *common],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert refused.returncode == 2
        assert "takes a task file" in refused.stderr
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in processes:
            try:
                process.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()


def test_stopping_a_replica_hands_its_running_task_over_and_the_device_runs_it_once(
    tmp_path: Path, broker: tuple[int, dict[str, str]]
) -> None:
    from fleetmind.orchestrator import SQLiteStore

    port, credentials = broker
    log, gate = tmp_path / "calls.log", tmp_path / "gate"
    (tmp_path / "agents.py").write_text(
        "import asyncio, os, pathlib\n"
        "from fleetmind import agent\n"
        "LOG = pathlib.Path(os.environ['FM_LOG'])\n"
        "GATE = pathlib.Path(os.environ['FM_GATE'])\n"
        "@agent(id='squarer')\n"
        "async def squarer(n: int) -> int:\n"
        "    LOG.open('a').write('started\\n')\n"
        "    try:\n"
        "        while not GATE.exists():\n"
        "            await asyncio.sleep(0.05)\n"
        "    except asyncio.CancelledError:\n"
        "        LOG.open('a').write('cancelled\\n')\n"
        "        raise\n"
        "    LOG.open('a').write('finished\\n')\n"
        "    return n * n\n"
    )
    (tmp_path / "task.yaml").write_text(
        "name: long\nsubtasks:\n  - {id: sq, agent: squarer, inputs: {n: 3}}\n"
    )
    url = f"mqtt://127.0.0.1:{port}"
    for user in ("orchestrator", "pi-1"):
        (tmp_path / f"{user}.pw").write_text(credentials[user])
    orch = ["--username", "orchestrator", "--password-file", str(tmp_path / "orchestrator.pw")]
    common = ["--broker", url, "--fleet-name", "farm"]
    env = {**os.environ, "FM_LOG": str(log), "FM_GATE": str(gate)}
    device = subprocess.Popen(
        [
            *(FLEETMIND, "agent", "serve", str(tmp_path / "agents.py"), *common),
            *("--username", "pi-1", "--password-file", str(tmp_path / "pi-1.pw")),
        ],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    serve = [FLEETMIND, "orchestrator", "serve", *common, *orch, "--data-dir", str(tmp_path / "r")]
    replica = subprocess.Popen(serve, stderr=subprocess.PIPE, text=True)
    submitter = restarted = None
    try:
        for process in (device, replica):
            assert process.stderr is not None
            line = process.stderr.readline()
            assert "serving" in line or "taking tasks" in line, line
        submitter = subprocess.Popen(
            [FLEETMIND, "submit", str(tmp_path / "task.yaml"), *common, *orch],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while "started" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline, "the subtask never started"
            time.sleep(0.05)
        replica.send_signal(signal.SIGINT)
        _, err = replica.communicate(timeout=60)
        assert replica.returncode == 0, err
        (record,) = SQLiteStore(tmp_path / "r" / "fleetmind.db").tasks(10)
        assert record.status == "running"  # handed over (its lease released), not failed
        # Back under its name, the replica takes the task over: its dispatch joins the run
        # the device kept going (or gets its saved result).
        restarted = subprocess.Popen(serve, stderr=subprocess.PIPE, text=True)
        assert restarted.stderr is not None
        line = restarted.stderr.readline()
        assert "taking tasks" in line, line
        gate.touch()
        assert submitter.wait(timeout=120) == 0  # the submitter got the result
    finally:
        for process in (replica, restarted, device, submitter):
            if process is not None and process.poll() is None:
                process.kill()
            if process is not None:
                process.communicate()
    (record,) = SQLiteStore(tmp_path / "r" / "fleetmind.db").tasks(10)
    assert record.status == "done"
    assert log.read_text().split() == ["started", "finished"]  # never cancelled, run once
