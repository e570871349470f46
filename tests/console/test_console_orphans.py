"""Resume and cancel from the console of tasks it does not run, against real processes: a task
a live `fleetmind run` drives is refused (409, naming that process), one whose `fleetmind run`
was killed is resumed or cancelled once its lease has lapsed, and one stored running without a
lease (by an older version) is taken up as it always was."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from conftest import CONSOLE_FLEET, FLEETMIND, RunningConsole

from fleetmind._task_log import TaskCancelledEntry
from fleetmind.orchestrator import SQLiteStore, TaskRecord, parse_task_text

Console = Callable[..., RunningConsole]
POST = {"X-Fleetmind-Console": "1"}
DEADLINE_S = 90.0

HELD = (
    "name: held\n"
    "subtasks:\n"
    "  - {id: wait, agent: slow, inputs: {key: w}}\n"
    "  - {id: then, agent: quick, inputs: {after: '${wait}'}}\n"
)
"""``wait`` holds until the gate file exists."""


def wait_until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out: {what}"
        time.sleep(0.05)


def stored(console: RunningConsole) -> list[TaskRecord]:
    store = SQLiteStore(console.data_dir / "fleetmind.db")
    try:
        return store.tasks()
    finally:
        store.close()


def lapsed(console: RunningConsole) -> list[str]:
    store = SQLiteStore(console.data_dir / "fleetmind.db")
    try:
        return store.orphans()
    finally:
        store.close()


@contextmanager
def run_elsewhere(
    console: RunningConsole, tmp_path: Path, lease_s: float = 15.0
) -> Iterator[tuple[subprocess.Popen[str], TaskRecord]]:
    """`fleetmind run` of the held task on the console's data directory, in a process of its
    own; yields it and the task's record once the task runs (killed at the end if it still runs)."""
    (tmp_path / "held.yaml").write_text(HELD)
    env = {**os.environ, "FM_CONSOLE_GATE": str(console.gate), "FLEETMIND_LEASE_S": str(lease_s)}
    argv = [FLEETMIND, "run", "held.yaml", "--fleet", str(CONSOLE_FLEET), "--no-live"]
    run = subprocess.Popen(
        [*argv, "--data-dir", str(console.data_dir)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: len(stored(console)) == 1, "the run never stored its task")
        (record,) = stored(console)
        yield run, record
    finally:
        if run.poll() is None:
            run.kill()
        run.communicate()


def killed_run(console: RunningConsole, tmp_path: Path) -> str:
    """A task whose `fleetmind run` was killed while it ran, its lease lapsed since."""
    with run_elsewhere(console, tmp_path, lease_s=1.0) as (run, record):
        run.send_signal(signal.SIGKILL)
        run.wait(DEADLINE_S)
    wait_until(lambda: record.id in lapsed(console), "the killed run's lease never lapsed")
    (after,) = stored(console)
    assert after.status == "running"
    return record.id


def post(client: httpx.Client, task_id: str, action: str) -> httpx.Response:
    return client.post(f"/api/tasks/{task_id}/{action}", headers=POST)


@pytest.mark.timeout(300)
def test_a_task_another_live_process_runs_is_neither_resumed_nor_cancelled_here(
    console_factory: Console, tmp_path: Path
) -> None:
    console = console_factory("--fleet", str(CONSOLE_FLEET))
    client = console.client()
    with run_elsewhere(console, tmp_path) as (run, record):
        assert record.owner is not None and record.owner.endswith(f"-{run.pid}")
        line = (
            f"task {record.id} is running in another process (owner {record.owner}); "
            "it continues there"
        )
        for action in ("resume", "cancel"):
            answer = post(client, record.id, action)
            assert (answer.status_code, answer.json()) == (409, {"error": line}), action
        console.gate.touch()
        _, err = run.communicate(timeout=DEADLINE_S)
        assert run.returncode == 0, err
    (done,) = stored(console)
    assert done.status == "done"


@pytest.mark.timeout(300)
def test_the_task_of_a_killed_run_is_cancelled_from_the_console(
    console_factory: Console, tmp_path: Path
) -> None:
    console = console_factory("--fleet", str(CONSOLE_FLEET))
    client = console.client()
    task_id = killed_run(console, tmp_path)

    answer = post(client, task_id, "cancel")
    assert (answer.status_code, answer.json()) == (200, {"status": "cancelled"})
    view = client.get(f"/api/tasks/{task_id}").json()
    assert view["status"] == "cancelled"
    assert [s["status"] for s in view["subtasks"]] == ["cancelled", "cancelled"]
    store = SQLiteStore(console.data_dir / "fleetmind.db")
    try:
        _, entries = store.load(task_id)
    finally:
        store.close()
    assert isinstance(entries[-1], TaskCancelledEntry)
    again = post(client, task_id, "cancel")
    assert again.status_code == 409
    assert again.json() == {"error": f"task {task_id} is not running here (it is cancelled)"}


@pytest.mark.timeout(300)
def test_the_task_of_a_killed_run_is_resumed_from_the_console(
    console_factory: Console, tmp_path: Path
) -> None:
    console = console_factory("--fleet", str(CONSOLE_FLEET))
    client = console.client()
    task_id = killed_run(console, tmp_path)

    console.gate.touch()
    answer = post(client, task_id, "resume")
    assert (answer.status_code, answer.json()) == (200, {"id": task_id})
    wait_until(
        lambda: client.get(f"/api/tasks/{task_id}").json()["status"] == "done",
        "the resumed task never finished",
    )
    view = client.get(f"/api/tasks/{task_id}").json()
    assert [s["status"] for s in view["subtasks"]] == ["done", "done"]
    (record,) = stored(console)
    assert record.status == "done"


@pytest.mark.timeout(300)
def test_a_running_task_that_was_never_leased_is_cancelled_and_one_is_resumed(
    console_factory: Console,
) -> None:
    console = console_factory("--fleet", str(CONSOLE_FLEET))
    client = console.client()
    graph = parse_task_text(HELD, "held.yaml").graph
    store = SQLiteStore(console.data_dir / "fleetmind.db")
    try:
        for task_id in ("told-to-stop", "told-to-go"):  # as an older version left them
            store.create_task(TaskRecord(id=task_id, name="held"), graph.log)
    finally:
        store.close()

    answer = post(client, "told-to-stop", "cancel")
    assert (answer.status_code, answer.json()) == (200, {"status": "cancelled"})
    console.gate.touch()
    answer = post(client, "told-to-go", "resume")
    assert (answer.status_code, answer.json()) == (200, {"id": "told-to-go"})
    wait_until(
        lambda: (
            {r.id: r.status for r in stored(console)}
            == {"told-to-stop": "cancelled", "told-to-go": "done"}
        ),
        "the tasks never ended as asked",
    )
