"""Fleet A delegates a subtask to fleet B over A2A, both ways round: SDK and command line.

Fleet B is `fleetmind a2a serve` in its own process on a free loopback port; fleet A runs here
(or as `fleetmind run`), with local agents before and after the delegated subtask.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from a2a_harness import FLEETMIND, serving
from repo_paths import FIXTURES

from fleetmind import Fleet, SubtaskContext, TaskGraph, agent

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def fleet_b(tmp_path: Path) -> Iterator[str]:
    """`fleetmind a2a serve` of the fixture fleet, stopped (SIGINT) at the end."""
    home = tmp_path / "b"
    with serving(FIXTURES / "a2a_fleet.py", home, stop_signal=signal.SIGINT) as server:
        yield server.url


@agent(id="planner")
async def planner(steps: int) -> int:
    return steps + 1


@agent(id="reporter")
async def reporter(counted: str, ctx: SubtaskContext) -> str:
    return f"B said: {counted}"


async def test_fleet_a_delegates_to_fleet_b_and_streams_its_progress(fleet_b: str) -> None:
    fleet = Fleet([planner, reporter])
    remote = await fleet.add_a2a_agent(fleet_b, agent_id="fleet-b")
    assert remote.profile.id == "fleet-b"
    assert any("count" in (s.name + s.description).lower() for s in remote.profile.skills)
    graph = TaskGraph("delegate")
    graph.add_subtask("plan", agent="planner", inputs={"steps": 2})
    graph.add_subtask("count", agent="fleet-b", description="Count slowly, reporting every step.")
    graph.add_dependency("plan", "count", kind="data", input="steps")
    graph.add_subtask("report", agent="reporter")
    graph.add_dependency("count", "report", kind="data", input="counted")
    async with fleet:
        handle = fleet.submit(graph)
        progress = [
            e.message
            async for e in handle.events()
            if e.kind == "subtask_progress" and e.subtask_id == "count"
        ]
        result = await handle.result()
    assert remote.closed  # the fleet closed its connection to B

    assert result.status == "done", result.errors
    assert result.outputs["plan"] == 3
    assert result.outputs["report"] == "B said: counted to 3"
    # B's engine events, streamed over A2A, became progress of A's subtask.
    assert any("step 3 of 3" in m for m in progress), progress


def test_cli_a2a_add_then_run_uses_the_remote_agent(tmp_path: Path, fleet_b: str) -> None:
    home = tmp_path / "a"
    added = subprocess.run(
        [FLEETMIND, "a2a", "add", fleet_b, "--id", "fleet-b", "--data-dir", str(home)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert added.returncode == 0, added.stderr
    assert "fleet-b" in added.stdout
    listed = subprocess.run(
        [FLEETMIND, "a2a", "list", "--data-dir", str(home)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert fleet_b in listed.stdout

    (tmp_path / "local.py").write_text(
        "from fleetmind import agent\n"
        "@agent(id='shout')\n"
        "async def shout(text: str) -> str:\n"
        "    return text.upper()\n"
    )
    (tmp_path / "task.yaml").write_text(
        "name: across\nfleet: local.py\nsubtasks:\n"
        "  - {id: hello, agent: fleet-b, description: echo hello there,"
        " inputs: {text: hello there}}\n"
        "  - {id: loud, agent: shout, inputs: {text: '${hello}'}}\n"
    )
    ran = subprocess.run(
        [FLEETMIND, "run", str(tmp_path / "task.yaml"), "--json", "--data-dir", str(home)],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert ran.returncode == 0, ran.stderr
    outputs = json.loads(ran.stdout)["outputs"]
    assert outputs["loud"] == str(outputs["hello"]).upper()
    assert "HELLO THERE" in outputs["loud"]

    removed = subprocess.run(
        [FLEETMIND, "a2a", "remove", "fleet-b", "--data-dir", str(home)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert removed.returncode == 0, removed.stderr
    again = subprocess.run(
        [FLEETMIND, "run", str(tmp_path / "task.yaml"), "--json", "--data-dir", str(home)],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert again.returncode == 2
    assert "fleet-b" in again.stderr and again.stderr.count("\n") == 1
