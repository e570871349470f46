"""`fleetmind agents`, `fleetmind route`, and routing decisions in `fleetmind show`."""

from __future__ import annotations

import json
import os
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
    assert "no capable agent: no agent's profile is close enough" in refused.stderr
    assert "nearest: phone-translator" in refused.stderr.replace("\n", " ")
    assert "query" not in refused.stderr  # never an id the user did not give

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


PLACED = """
from fleetmind import agent

@agent(id="doorbell", device="rpi-frontdoor",
       description="Watches the front door camera and says who rang the bell.")
async def doorbell(ctx) -> str:
    return "door"

@agent(id="garden-cam", device="rpi-backyard",
       description="Watches the garden camera and says who is in the garden.")
async def garden_cam(ctx) -> str:
    return "garden"
"""


def test_route_json_and_device_placement(tmp_path: Path) -> None:
    (tmp_path / "agents.py").write_text(PLACED)
    fleet = str(tmp_path / "agents.py")
    placed = fleetmind(
        "route",
        "who is at the door?",
        "--fleet",
        fleet,
        "--device",
        "rpi-frontdoor",
        "--json",
        home=tmp_path,
    )
    assert placed.returncode == 0, placed.stderr
    decision = json.loads(placed.stdout)
    assert [c["agent"] for c in decision["candidates"]] == ["doorbell"]
    assert decision["constraints"] == {"device": "rpi-frontdoor"}
    assert decision["excluded"] == {
        "garden-cam": "runs on device rpi-backyard, not on rpi-frontdoor"
    }
    assert decision["refused"] is None
    assert 0 < decision["candidates"][0]["similarity"] <= 1

    nowhere = fleetmind(
        "route",
        "who is at the door?",
        "--fleet",
        fleet,
        "--device",
        "rpi-attic",
        "--json",
        home=tmp_path,
    )
    assert nowhere.returncode == 1
    refused = json.loads(nowhere.stdout)["refused"]
    assert refused["reason"] == "no agent satisfies its constraints"
    assert set(refused["excluded"]) == {"doorbell", "garden-cam"}
    assert all("not on rpi-attic" in why for why in refused["excluded"].values())

    plain = fleetmind(
        "route", "who is at the door?", "--fleet", fleet, "--device", "rpi-attic", home=tmp_path
    )
    assert plain.returncode == 1
    first = plain.stderr.splitlines()[0]
    assert first == "no capable agent: no agent satisfies its constraints"
    assert "()" not in plain.stderr and "query" not in plain.stderr


def test_route_review_by_a_model_explains_its_choice(tmp_path: Path) -> None:
    import re

    from fleetmind.testing import Reply, ScriptedLLMServer

    (tmp_path / "agents.py").write_text(PLACED)
    fleet = str(tmp_path / "agents.py")

    def review(request: dict) -> Reply:
        asked = request["messages"][1]["content"]
        if "courier" in asked:
            return Reply.text(json.dumps({"agent": None, "reason": "neither agent opens doors"}))
        last = re.findall(r"^- id: (\S+)$", asked, re.M)[-1]  # the embedding's runner-up
        return Reply.text(json.dumps({"agent": last, "reason": f"{last} sees that spot"}))

    with ScriptedLLMServer(responder=review) as llm:
        env = {
            **os.environ,
            "FLEETMIND_CLOUD_BASE_URL": llm.url,
            "FLEETMIND_CLOUD_MODEL": "scripted-model",
        }
        plain = fleetmind(
            "route", "who is out there by the camera?", "--fleet", fleet, "--json", home=tmp_path
        )
        assert plain.returncode == 0, plain.stderr
        order = [c["agent"] for c in json.loads(plain.stdout)["candidates"]]
        assert len(order) == 2 and not llm.requests  # no review unless asked
        chosen = subprocess.run(
            [
                FLEETMIND,
                "route",
                "who is out there by the camera?",
                "--fleet",
                fleet,
                "--review",
                "--json",
                "--data-dir",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=240,
            env=env,
        )
        assert chosen.returncode == 0, chosen.stderr
        decision = json.loads(chosen.stdout)
        assert [c["agent"] for c in decision["candidates"]] == order[::-1]
        assert decision["review"]["reason"] == f"{order[1]} sees that spot"
        assert decision["review"]["failed"] is False
        asked = llm.requests[0]["messages"][1]["content"]
        assert "who is out there by the camera?" in asked and "- id: doorbell" in asked

        refused = subprocess.run(
            [
                FLEETMIND,
                "route",
                "open the front door camera gate for the courier",
                "--fleet",
                fleet,
                "--review",
                "--data-dir",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=240,
            env=env,
        )
    said = refused.stderr.replace("\n", " ")
    assert refused.returncode == 1, refused.stdout
    assert "reviewer refused" in said and "neither agent opens doors" in said
