"""Ctrl-C through the real console script: on a terminal (a pseudo-terminal whose ^C the line
discipline turns into SIGINT) and off one (SIGINT to the process), then `fleetmind resume`.

The first press stops the run even while a tool blocks its worker thread, marks the task
interrupted and names it in the resume hint; a second press leaves at once; resume says it
resumed and counts the time the task was stopped in no duration.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pty_terminal import Terminal

from fleetmind._task_log import TaskResumed
from fleetmind.orchestrator import SQLiteStore, TaskGraph

FLEETMIND = str(Path(sys.executable).parent / "fleetmind")
HINT = re.compile(r"interrupted: resume with fleetmind resume (t[0-9a-f]{10})\b")

AGENTS = '''
import asyncio, os, pathlib, time
from fleetmind import Fleet, agent, tool

LOG = pathlib.Path(os.environ["FM_TEST_LOG"])
GATE = pathlib.Path(os.environ["FM_TEST_GATE"])


def mark(text):
    with LOG.open("a") as f:
        f.write(text + "\\n")


@tool
def wait_for_gate(label: str) -> str:
    """Block the worker thread it runs in until the gate file exists."""
    mark("tool start")
    while not GATE.exists():
        time.sleep(0.05)
    mark("tool end")
    return label


@agent(id="quick")
async def quick(n: int) -> int:
    return n * 10


@agent(id="waiter")
async def waiter(x: int, ctx) -> int:
    result = await ctx.tools.call("wait_for_gate", {"label": "gate"})
    assert result.ok, result.error
    return x + 1


@agent(id="stubborn")
async def stubborn(x: int) -> int:
    mark("stubborn start")
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        mark("stubborn cancelled")
        await asyncio.sleep(600)  # a slow clean-up: only a second Ctrl-C cuts it short
        raise
    return x


@agent(id="adder")
async def adder(a: int, b: int) -> int:
    return a + b


fleet = Fleet([quick, waiter, stubborn, adder], tools=[wait_for_gate])
'''

TOOL_TASK = """
name: interrupt-me
fleet: agents.py
subtasks:
  - {id: one, agent: quick, inputs: {n: 1}}
  - id: wait
    agent: waiter
    inputs: {x: "${one}"}
  - id: sum
    agent: adder
    inputs: {a: "${wait}", b: "${one}"}
"""

STUBBORN_TASK = """
name: stubborn
fleet: agents.py
subtasks:
  - {id: slow, agent: stubborn, inputs: {x: 1}}
"""


class Workspace:
    """A task file, its agents, a data directory and the agents' log and gate."""

    def __init__(self, root: Path, task: str) -> None:
        self.root = root
        (root / "agents.py").write_text(AGENTS)
        (root / "task.yaml").write_text(task)
        self.log = root / "calls.log"
        self.gate = root / "gate"
        self.home = root / "home"
        self.env = {
            **os.environ,
            "FM_TEST_LOG": str(self.log),
            "FM_TEST_GATE": str(self.gate),
            "HOME": str(root),
            "TERM": "xterm-256color",
        }

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def wait_for_call(self, call: str, timeout: float = 120.0) -> None:
        wait_until(lambda: call in self.calls(), timeout, f"the agents never logged {call!r}")

    def store(self) -> SQLiteStore:
        return SQLiteStore(self.home / "fleetmind.db")


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out: {what}")
        time.sleep(0.02)


def the_task(ws: Workspace) -> tuple[str, str]:
    """The one stored task: its id and status."""
    store = ws.store()
    try:
        (record,) = store.tasks()
        return record.id, record.status
    finally:
        store.close()


def test_first_ctrl_c_on_a_terminal_stops_a_blocked_tool_and_names_the_task(
    tmp_path: Path,
) -> None:
    ws = Workspace(tmp_path, TOOL_TASK)
    term = Terminal([FLEETMIND, "run", "task.yaml", "--data-dir", str(ws.home)], ws.env, tmp_path)
    try:
        ws.wait_for_call("tool start")  # the tool now blocks a worker thread for good
        wait_until(lambda: "waiter" in term.text, 60, "the live table never showed the agent")
        pressed = time.monotonic()
        term.press_ctrl_c()
        code = term.wait(timeout=60)
        took = time.monotonic() - pressed
    finally:
        term.close()
    print(f"\nterminal, blocked tool: one Ctrl-C ended the run in {took:.2f} s")

    task_id, status = the_task(ws)
    output = term.text
    assert code == 130, output
    assert status == "interrupted"
    assert HINT.findall(output) == [task_id], output
    assert f"interrupt-me · task {task_id}" in output  # the live table was up
    assert "Traceback" not in output
    assert "tool end" not in ws.calls()

    listed = subprocess.run(
        [FLEETMIND, "tasks", "--json", "--data-dir", str(ws.home)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert [(t["id"], t["status"]) for t in json.loads(listed.stdout)] == [(task_id, "interrupted")]
    shown = subprocess.run(
        [FLEETMIND, "show", task_id, "--data-dir", str(ws.home)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert f"task {task_id} · interrupted" in shown.stdout
    assert re.search(r"wait\s.*interrupted\s.*waiter", shown.stdout), shown.stdout


def test_a_second_ctrl_c_leaves_at_once_while_the_first_waits_for_a_slow_cleanup(
    tmp_path: Path,
) -> None:
    ws = Workspace(tmp_path, STUBBORN_TASK)
    # A grace period longer than the test's deadline: only the second press can end the run.
    env = {**ws.env, "FLEETMIND_STOP_GRACE_S": "600"}
    term = Terminal([FLEETMIND, "run", "task.yaml", "--data-dir", str(ws.home)], env, tmp_path)
    try:
        ws.wait_for_call("stubborn start")
        term.press_ctrl_c()
        ws.wait_for_call("stubborn cancelled")  # the first press reached the agent
        assert term.process.poll() is None  # and its clean-up holds the run
        pressed = time.monotonic()
        term.press_ctrl_c()
        code = term.wait(timeout=60)
        took = time.monotonic() - pressed
    finally:
        term.close()
    print(f"\nterminal, slow clean-up: the second Ctrl-C ended the run in {took:.2f} s")

    task_id, status = the_task(ws)
    assert code == 130, term.text
    assert status == "interrupted"
    assert HINT.findall(term.text) == [task_id], term.text
    assert "Traceback" not in term.text


def test_interrupted_off_a_terminal_then_resumed_without_counting_the_downtime(
    tmp_path: Path,
) -> None:
    ws = Workspace(tmp_path, TOOL_TASK)
    args = ["--data-dir", str(ws.home), "--no-live"]
    run = subprocess.Popen(
        [FLEETMIND, "run", "task.yaml", *args],
        cwd=tmp_path,
        env=ws.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ws.wait_for_call("tool start")
        pressed = time.monotonic()
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=60)
        took = time.monotonic() - pressed
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    print(f"\npipe, blocked tool: SIGINT ended the run in {took:.2f} s")
    task_id, status = the_task(ws)
    assert run.returncode == 130, err
    assert status == "interrupted"
    assert err.splitlines()[-1] == f"interrupted: resume with fleetmind resume {task_id}"
    assert "Traceback" not in err

    ws.gate.touch()
    resumed = subprocess.run(
        [FLEETMIND, "resume", task_id[:7], *args, "--json"],
        cwd=tmp_path,
        env=ws.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["outputs"] == {"one": 10, "wait": 11, "sum": 21}
    lines = resumed.stderr.splitlines()
    assert re.fullmatch(
        rf"task {task_id} \(interrupt-me\) resumed after \d+\.\ds stopped", lines[0]
    ), lines
    assert f"task {task_id} (interrupt-me) started" not in lines
    assert ws.calls().count("tool start") == 2  # the interrupted call ran again, once

    store = ws.store()
    try:
        (record,) = store.tasks()
        _, entries = store.load(task_id)
    finally:
        store.close()
    assert record.status == "done"
    (back,) = [e for e in entries if isinstance(e, TaskResumed)]
    assert back.down_s > 0
    state = TaskGraph.from_log(entries).state("wait")
    assert state.started_at is not None and state.finished_at is not None
    span = state.finished_at - state.started_at
    down = back.at - max(back.stopped_at, state.started_at)
    assert state.duration_s == pytest.approx(span - down)
    assert state.duration_s is not None and state.duration_s < span
    done_line = next(line for line in lines if line.startswith("✓ wait done in "))
    assert done_line == f"✓ wait done in {state.duration_s:.2f}s"
