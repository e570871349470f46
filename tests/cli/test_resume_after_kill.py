"""A task whose process is killed with SIGKILL mid-run is finished by `fleetmind resume`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from fleetmind.orchestrator import SQLiteStore

FLEETMIND = str(Path(sys.executable).parent / "fleetmind")

AGENTS = """
import asyncio, os, pathlib
from fleetmind import agent

LOG = pathlib.Path(os.environ["FM_TEST_LOG"])
GATE = pathlib.Path(os.environ["FM_TEST_GATE"])


def mark(text):
    with LOG.open("a") as f:
        f.write(text + "\\n")


@agent(id="quick")
async def quick(n: int) -> int:
    mark(f"quick {n}")
    return n * 10


@agent(id="blocking")
async def blocking(x: int) -> int:
    mark("blocking start")
    while not GATE.exists():  # the first process is killed while it waits here
        await asyncio.sleep(0.02)
    mark("blocking end")
    return x + 1


@agent(id="adder")
async def adder(a: int, b: int) -> int:
    mark("adder")
    return a + b
"""

TASK = """
name: kill-and-resume
fleet: agents.py
subtasks:
  - {id: one, agent: quick, inputs: {n: 1}}
  - {id: two, agent: quick, inputs: {n: 2}}
  - id: wait
    agent: blocking
    inputs: {x: "${one}"}
  - id: sum
    agent: adder
    inputs: {a: "${wait}", b: "${two}"}
"""


def _wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the task to reach the kill point")
        time.sleep(0.02)


def test_sigkill_mid_task_then_resume_finishes_without_rerunning_done_work(
    tmp_path: Path,
) -> None:
    (tmp_path / "agents.py").write_text(AGENTS)
    (tmp_path / "task.yaml").write_text(TASK)
    log, gate, home = tmp_path / "calls.log", tmp_path / "gate", tmp_path / "home"
    env = {**os.environ, "FM_TEST_LOG": str(log), "FM_TEST_GATE": str(gate)}
    args = ["--data-dir", str(home), "--no-live"]

    process = subprocess.Popen(
        [FLEETMIND, "run", str(tmp_path / "task.yaml"), *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(lambda: log.exists() and "blocking start" in log.read_text())
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(timeout=10) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    store = SQLiteStore(home / "fleetmind.db")
    (record,) = store.tasks()
    assert record.status == "running"
    shown = subprocess.run(
        [FLEETMIND, "show", record.id, "--format", "json", "--data-dir", str(home)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    state = json.loads(shown.stdout)["graph"]["state"]
    assert {k: v["status"] for k, v in state.items()} == {
        "one": "done",
        "two": "done",
        "wait": "running",
        "sum": "pending",
    }

    gate.touch()
    resumed = subprocess.run(
        [FLEETMIND, "resume", record.id[:6], *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout)
    assert result["status"] == "done"
    assert result["outputs"] == {"one": 10, "two": 20, "wait": 11, "sum": 31}

    calls = log.read_text().splitlines()
    # Done subtasks ran once; the one in flight at the kill ran again; the rest ran once.
    assert sorted(calls) == sorted(
        ["quick 1", "quick 2", "blocking start", "blocking start", "blocking end", "adder"]
    )
    _, entries = store.load(record.id)
    requeued = [e for e in entries if e.kind == "subtask_requeued"]
    assert [e.subtask_id for e in requeued] == ["wait"]
    assert store.tasks()[0].status == "done"
    store.close()


def test_resume_runs_with_the_memory_and_step_router_the_run_was_given(tmp_path: Path) -> None:
    (tmp_path / "agents.py").write_text(AGENTS)
    (tmp_path / "task.yaml").write_text(TASK)
    log, gate, home = tmp_path / "calls.log", tmp_path / "gate", tmp_path / "home"
    env = {**os.environ, "FM_TEST_LOG": str(log), "FM_TEST_GATE": str(gate)}
    args = ["--data-dir", str(home), "--no-live"]
    settings = ["--memory", "--step-router", "device", "--cloud-budget", "0.25"]
    process = subprocess.Popen(
        [FLEETMIND, "run", str(tmp_path / "task.yaml"), *args, *settings],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(lambda: log.exists() and "blocking start" in log.read_text(), timeout=120)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    store = SQLiteStore(home / "fleetmind.db")
    (record,) = store.tasks()
    store.close()
    assert record.metadata["memory"] is True
    assert record.metadata["step_router"] == "device"
    assert record.metadata["cloud_budget"] == 0.25

    gate.touch()
    resumed = subprocess.run(
        [FLEETMIND, "resume", record.id, *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    # The resumed run recorded the task in the memory, as the first run would have.
    stats = subprocess.run(
        [FLEETMIND, "memory", "stats", "--json", "--data-dir", str(home)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert json.loads(stats.stdout)["layers"]["episodic"]["shared"] >= 5
