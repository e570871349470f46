"""`fleetmind resume` of a task another `fleetmind run` drives, through the real console script.

A run leases its task in the data directory's store: a resume while that process lives is
refused with one line (the task runs once), and once the process is killed and its lease has
lapsed, a resume finishes the task.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from fleetmind.orchestrator import SQLiteStore

FLEETMIND = str(Path(sys.executable).parent / "fleetmind")

AGENTS = """
import asyncio, os, pathlib
from fleetmind import Fleet, agent

LOG = pathlib.Path(os.environ["FM_TEST_LOG"])
GATE = pathlib.Path(os.environ["FM_TEST_GATE"])


@agent(id="slow")
async def slow(x: int) -> int:
    with LOG.open("a") as f:
        f.write("slow start\\n")
    while not GATE.exists():
        await asyncio.sleep(0.05)
    return x + 1


fleet = Fleet([slow])
"""

TASK = """
name: leased
fleet: agents.py
subtasks:
  - {id: step, agent: slow, inputs: {x: 1}}
"""


class Workspace:
    """A task file, its agent, a data directory, and the agent's log and gate."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "agents.py").write_text(AGENTS)
        (root / "task.yaml").write_text(TASK)
        self.log = root / "calls.log"
        self.gate = root / "gate"
        self.home = root / "home"
        self.env = {
            **os.environ,
            "FM_TEST_LOG": str(self.log),
            "FM_TEST_GATE": str(self.gate),
            "HOME": str(root),
        }

    def starts(self) -> int:
        return self.log.read_text().splitlines().count("slow start") if self.log.exists() else 0

    def start_run(self, env: dict[str, str]) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [FLEETMIND, "run", "task.yaml", "--data-dir", str(self.home), "--no-live", "--json"],
            cwd=self.root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def resume(self, task_id: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [FLEETMIND, "resume", task_id, "--data-dir", str(self.home), "--no-live", "--json"],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def the_task(self) -> tuple[str, str, str | None]:
        """The one stored task: its id, status and owner."""
        store = SQLiteStore(self.home / "fleetmind.db")
        try:
            (record,) = store.tasks()
            return record.id, record.status, record.owner
        finally:
            store.close()

    def lapsed(self) -> list[str]:
        store = SQLiteStore(self.home / "fleetmind.db")
        try:
            return store.orphans()
        finally:
            store.close()


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out: {what}")
        time.sleep(0.05)


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
    process.communicate()


def test_a_resume_is_refused_while_the_run_that_drives_the_task_lives(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    run = ws.start_run(ws.env)
    try:
        wait_until(lambda: ws.starts() == 1, "the run never started its subtask")
        task_id, status, owner = ws.the_task()
        assert status == "running"
        assert owner is not None and owner.startswith("run-") and owner.endswith(f"-{run.pid}")

        refused = ws.resume(task_id)
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.splitlines() == [
            f"fleetmind: error: task {task_id} is running in another process (owner {owner}); "
            "it continues there"
        ]
        assert refused.stdout == ""

        ws.gate.touch()
        out, err = run.communicate(timeout=120)
    finally:
        stop(run)
    assert run.returncode == 0, err
    assert json.loads(out)["outputs"] == {"step": 2}
    assert ws.starts() == 1  # the refused resume ran nothing
    assert ws.the_task()[1] == "done"


def test_a_resume_finishes_the_task_of_a_killed_run_once_its_lease_lapsed(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    run = ws.start_run({**ws.env, "FLEETMIND_LEASE_S": "1"})
    try:
        wait_until(lambda: ws.starts() == 1, "the run never started its subtask")
        task_id, _, owner = ws.the_task()
        run.send_signal(signal.SIGKILL)  # a crash: nothing is released or marked
        run.communicate(timeout=60)
    finally:
        stop(run)
    assert ws.the_task() == (task_id, "running", owner)
    wait_until(lambda: task_id in ws.lapsed(), "the killed run's lease never lapsed")

    ws.gate.touch()
    resumed = ws.resume(task_id)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["outputs"] == {"step": 2}
    assert ws.starts() == 2  # the killed attempt, and the resumed one
    assert ws.the_task()[1] == "done"


def test_a_bad_lease_setting_is_one_line(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    run = ws.start_run({**ws.env, "FLEETMIND_LEASE_S": "soon"})
    try:
        _, err = run.communicate(timeout=120)
    finally:
        stop(run)
    assert run.returncode == 2
    assert err.splitlines() == [
        "fleetmind: error: FLEETMIND_LEASE_S='soon' is not a positive number of seconds"
    ]
    assert ws.starts() == 0
