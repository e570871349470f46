"""`--json` on the commands that print tables: a list of objects on stdout, nothing else there.

Run through the real console script with a private HOME and data directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

FLEETMIND = str(Path(sys.executable).parent / "fleetmind")

AGENTS = """
from fleetmind import Skill, SubtaskFailed, agent


@agent(id="doubler", skills=["double"])
async def doubler(n: int) -> int:
    return 2 * n


@agent(id="grumpy", skills=["refuse"])
async def grumpy(n: int) -> int:
    raise SubtaskFailed("not today", retryable=False)


@agent(
    id="summariser",
    skills=[Skill(name="summarise", description="short summaries", tags=("text",))],
    tier="cloud",
    cost_per_call=0.002,
    typical_latency_s=1.5,
    max_concurrency=3,
    local_data=["notes"],
)
async def summariser(text: str) -> str:
    return text[:10]
"""

TASK = "fleet: agents.py\nsubtasks:\n  - {id: twice, agent: doubler, inputs: {n: 21}}\n"
FAILING = "fleet: agents.py\nsubtasks:\n  - {id: refused, agent: grumpy, inputs: {n: 1}}\n"


def fleetmind(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR")}
    env["HOME"] = str(cwd / "home")
    env["FLEETMIND_HOME"] = str(cwd / "store")
    return subprocess.run(
        [FLEETMIND, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def json_list(proc: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    """The command succeeded and printed exactly one JSON list of objects on stdout."""
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert isinstance(data, list) and all(isinstance(row, dict) for row in data), data
    return data


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("json")
    (base / "agents.py").write_text(AGENTS)
    (base / "task.yaml").write_text(TASK)
    (base / "failing.yaml").write_text(FAILING)
    return base


def test_tasks_json_lists_every_task_newest_first(workdir: Path) -> None:
    done = json.loads(fleetmind(workdir, "run", "task.yaml", "--json").stdout)
    failed = json.loads(fleetmind(workdir, "run", "failing.yaml", "--json").stdout)
    rows = json_list(fleetmind(workdir, "tasks", "--json"))
    assert [r["id"] for r in rows[:2]] == [failed["task_id"], done["task_id"]]
    newest = rows[0]
    assert set(newest) == {"id", "name", "status", "started_at", "updated_at", "source", "owner"}
    assert newest["status"] == "failed" and rows[1]["status"] == "done"
    assert newest["source"] == str(workdir / "failing.yaml")
    assert newest["owner"].startswith("run-")  # leased to the `fleetmind run` process
    started = datetime.fromisoformat(newest["started_at"])
    assert started.tzinfo is not None
    assert datetime.fromisoformat(newest["updated_at"]) >= started


def test_tasks_json_of_an_empty_store_is_an_empty_list(tmp_path: Path) -> None:
    proc = fleetmind(tmp_path, "tasks", "--json")
    assert json_list(proc) == []
    assert proc.stderr == ""


def test_agents_json_has_every_profile_field(workdir: Path) -> None:
    rows = json_list(fleetmind(workdir, "agents", "--fleet", "agents.py", "--json"))
    assert [r["id"] for r in rows] == ["doubler", "grumpy", "summariser"]
    assert rows[2] == {
        "id": "summariser",
        "name": "summariser",
        "tier": "cloud",
        "cost_per_call": 0.002,
        "typical_latency_s": 1.5,
        "max_concurrency": 3,
        "version": 1,
        "skills": [{"name": "summarise", "description": "short summaries", "tags": ["text"]}],
        "local_data": ["notes"],
    }


def test_a2a_list_json(tmp_path: Path) -> None:
    assert json_list(fleetmind(tmp_path, "a2a", "list", "--json")) == []
    store = tmp_path / "store"
    store.mkdir()
    entries = [
        {"id": "translator", "url": "http://translate.example:9999", "token_file": None},
        {"id": "critic", "url": "http://critic.example", "token_file": "/keys/critic"},
    ]
    (store / "a2a_agents.json").write_text(json.dumps({"version": 1, "agents": entries}))
    rows = json_list(fleetmind(tmp_path, "a2a", "list", "--json"))
    assert rows == sorted(entries, key=lambda e: str(e["id"]))


def test_route_and_show_keep_their_json(workdir: Path) -> None:
    """The commands that had JSON already still print one JSON document (an object)."""
    task_id = json_list(fleetmind(workdir, "tasks", "--json"))[-1]["id"]
    shown = fleetmind(workdir, "show", task_id, "--format", "json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["task"]["id"] == task_id
    routed = fleetmind(
        workdir, "route", "double a number", "--fleet", "agents.py", "--skill", "double", "--json"
    )
    assert routed.returncode == 0, routed.stderr
    assert json.loads(routed.stdout)["candidates"][0]["agent"] == "doubler"
