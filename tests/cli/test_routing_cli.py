"""`fleetmind agents`, `fleetmind route`, and routing decisions in `fleetmind show`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

FLEETMIND = str(Path(sys.executable).parent / "fleetmind")
EXAMPLES = Path(__file__).parents[2] / "examples"

pytestmark = pytest.mark.timeout(300)

AGENTS = """
from fleetmind import agent

@agent(id="cloud-translator", tier="cloud", cost_per_call=0.02,
       description="Translates documents between English, German, French and Spanish.")
async def cloud_translator(ctx) -> str:
    return "cloud: " + ctx.subtask.description

@agent(id="phone-translator", tier="device", local_data=["phone-notes"],
       description="Translates short texts offline on the phone.")
async def phone_translator(ctx) -> str:
    return "phone: " + ctx.subtask.description
"""

TASK = """
name: routed
fleet: agents.py
subtasks:
  - id: note
    description: translate my grocery note into German
    constraints: {data: [phone-notes]}
"""


def fleetmind(*args: str, home: Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [FLEETMIND, *args, "--data-dir", str(home)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=cwd,
    )


def test_agents_lists_every_profile(tmp_path: Path) -> None:
    proc = fleetmind("agents", "--fleet", str(EXAMPLES / "repo_audit.py"), home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for agent_id in ("loc-counter", "todo-finder", "size-auditor", "reporter", "pin-checker"):
        assert agent_id in proc.stdout


def test_route_ranks_by_meaning_and_explains_exclusions(tmp_path: Path) -> None:
    (tmp_path / "agents.py").write_text(AGENTS)
    fleet = str(tmp_path / "agents.py")
    ok = fleetmind("route", "put this letter into French", "--fleet", fleet, home=tmp_path)
    assert ok.returncode == 0, ok.stderr
    rows = [line for line in ok.stdout.splitlines() if "translator" in line]
    assert len(rows) == 2
    assert {"cloud-translator", "phone-translator"} == {
        name for row in rows for name in ("cloud-translator", "phone-translator") if name in row
    }

    constrained = fleetmind(
        "route",
        "put this letter into French",
        "--fleet",
        fleet,
        "--max-cost",
        "0.01",
        home=tmp_path,
    )
    assert constrained.returncode == 0, constrained.stderr
    assert "cost 0.02 is over the ceiling 0.01" in constrained.stdout
    # The embedding cache and the index were persisted beside the store.
    assert (tmp_path / "embeddings.db").exists()
    assert (tmp_path / "capability-index" / "index.json").exists()

    refused = fleetmind("route", "fix the leaking kitchen tap", "--fleet", fleet, home=tmp_path)
    assert refused.returncode == 1
    assert "no capable agent" in refused.stdout

    bad = fleetmind("route", "translate", "--fleet", fleet, "--tier", "moon", home=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "fleetmind: error: unknown tier in constraints: ['moon'] (use device, edge or cloud)"
    ]


def test_run_records_routing_and_show_displays_it(tmp_path: Path) -> None:
    (tmp_path / "agents.py").write_text(AGENTS)
    (tmp_path / "task.yaml").write_text(TASK)
    run = fleetmind("run", str(tmp_path / "task.yaml"), "--json", home=tmp_path)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    # The data must stay on the phone: the cloud translator may not take it.
    assert result["outputs"] == {"note": "phone: translate my grocery note into German"}

    shown = fleetmind("show", result["task_id"], home=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "routing" in shown.stdout
    assert "phone-translator" in shown.stdout
    assert "must stay local" in shown.stdout
