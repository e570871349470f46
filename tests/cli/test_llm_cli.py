"""Plain words on the command line: `llm check`, `plan`, `run "..."`, with scripted models served
over real HTTP on loopback, and the real console script in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from fleetmind.orchestrator import SQLiteStore
from fleetmind.testing import Reply, Rule, ScriptedLLMServer, free_port

FLEETMIND = str(Path(sys.executable).parent / "fleetmind")
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TIMEOUT_S = 120

AUDIT_PLAN = {
    "name": "audit",
    "subtasks": [
        {
            "id": "loc",
            "description": "Count lines of code",
            "agent": "loc-counter",
            "inputs": {"path": "."},
        },
        {
            "id": "todos",
            "description": "Find TODO markers",
            "skill": "todo-scan",
            "inputs": {"path": "."},
        },
        {
            "id": "big",
            "description": "List the largest files",
            "agent": "size-auditor",
            "inputs": {"path": "."},
        },
        {
            "id": "deps",
            "description": "Read the declared dependencies",
            "agent": "dependency-auditor",
            "inputs": {"path": "."},
        },
        {
            "id": "findings",
            "description": "Write the report of what to fix first",
            "agent": "reporter",
            "inputs": {
                "path": ".",
                "loc": "${loc}",
                "todos": "${todos}",
                "largest": "${big}",
                "deps": "${deps}",
            },
        },
    ],
}


@pytest.fixture
def server() -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer() as running:
        yield running


def env_for(
    tmp_path: Path, server: ScriptedLLMServer | None = None, **extra: str
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETMIND_")}
    env.update(HOME=str(tmp_path), FLEETMIND_HOME=str(tmp_path / "data"), **extra)
    if server is not None:
        env.update(FLEETMIND_CLOUD_BASE_URL=server.url, FLEETMIND_CLOUD_MODEL="planner-model")
    return env


def fleetmind(
    *args: str, env: dict[str, str], cwd: Path, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FLEETMIND, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        input=stdin,
        timeout=TIMEOUT_S,
    )


def small_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    (repo / "src" / "app.py").write_text("# TODO: handle errors\nprint('hi')\n")
    (repo / "requirements.txt").write_text("httpx>=0.27\nrich==13.7.1\n")
    return repo


# llm check ---------------------------------------------------------------------------------


def test_llm_check_asks_every_configured_endpoint(
    tmp_path: Path, server: ScriptedLLMServer
) -> None:
    server.push(
        Reply.text("OK", usage={"prompt_tokens": 12, "completion_tokens": 1}), Reply.text("OK")
    )
    down = f"http://127.0.0.1:{free_port()}/v1"
    env = env_for(tmp_path, server, FLEETMIND_DEVICE_BASE_URL=down, FLEETMIND_DEVICE_MODEL="small")
    proc = fleetmind("llm", "check", "--json", env=env, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr  # one endpoint is down
    rows = {r["tier"]: r for r in json.loads(proc.stdout)["endpoints"]}
    assert rows["cloud"]["ok"] and rows["cloud"]["answer"] == "OK"
    assert rows["cloud"]["prompt_tokens"] == 12 and rows["cloud"]["plans"]
    assert rows["cloud"]["listed"] is False  # the server lists "scripted-model" only
    assert "pieces" in rows["cloud"]["stream"]
    assert not rows["device"]["ok"] and "cannot connect" in rows["device"]["error"]
    server.push(Reply.text("OK"), Reply.text("OK"))
    table = fleetmind("llm", "check", env=env_for(tmp_path, server), cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "cloud (plans)" in table.stdout and "planner-model" in table.stdout


def test_llm_check_with_nothing_configured(tmp_path: Path) -> None:
    proc = fleetmind("llm", "check", env=env_for(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "FLEETMIND_CLOUD_BASE_URL" in proc.stderr


def test_a_models_file(tmp_path: Path, server: ScriptedLLMServer) -> None:
    server.push(Reply.text("OK"), Reply.text("OK"))
    models = tmp_path / "models.yaml"
    models.write_text(f"models:\n  edge: {{base_url: '{server.url}', model: mid}}\n")
    proc = fleetmind(
        "llm", "check", "--models", str(models), "--json", env=env_for(tmp_path), cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["endpoints"][0]["tier"] == "edge"
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  cloud: {model: m}\n")
    proc = fleetmind("llm", "check", "--models", str(bad), env=env_for(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2 and "models.cloud.base_url: Field required" in proc.stderr


# plan and run "..." ---------------------------------------------------------------------------


def test_plan_saves_a_task_file_that_runs_without_a_model(
    tmp_path: Path, server: ScriptedLLMServer
) -> None:
    repo = small_repo(tmp_path)
    server.push(Reply.text(json.dumps(AUDIT_PLAN)))
    out = tmp_path / "plan.yaml"
    fleet = str(EXAMPLES / "repo_audit.py")
    proc = fleetmind(
        "plan",
        "audit this repository",
        "--fleet",
        fleet,
        "--out",
        str(out),
        env=env_for(tmp_path, server),
        cwd=repo,
    )
    assert proc.returncode == 0, proc.stderr
    assert "findings" in proc.stdout and "planned by scripted-model in 1 round" in proc.stdout
    saved = yaml.safe_load(out.read_text())
    assert saved["description"] == "audit this repository"
    assert (out.parent / saved["fleet"]).resolve() == Path(fleet).resolve()
    # The saved plan runs with no model configured at all.
    proc = fleetmind("run", str(out), "--no-live", "--json", env=env_for(tmp_path), cwd=repo)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert "# Repository audit" in result["outputs"]["findings"]


def test_run_plain_words_plans_shows_and_runs(tmp_path: Path, server: ScriptedLLMServer) -> None:
    repo = small_repo(tmp_path)
    server.push(Reply.text('Here is my plan: {"subtasks": [}'), Reply.text(json.dumps(AUDIT_PLAN)))
    request = "audit this repository and tell me what to fix first"
    proc = fleetmind(
        "run",
        request,
        "--fleet",
        str(EXAMPLES / "repo_audit.py"),
        "--no-live",
        env=env_for(tmp_path, server),
        cwd=repo,
    )
    assert proc.returncode == 0, proc.stderr
    assert "planned by scripted-model in 2 rounds" in proc.stderr
    assert "+ graph edited by deps: added pin-check after deps" in proc.stderr
    assert "+ graph edited by deps: pin-check -> findings" in proc.stderr
    assert "## Dependency pinning" in proc.stdout
    store = SQLiteStore(tmp_path / "data" / "fleetmind.db")
    record = store.tasks()[0]
    assert record.status == "done" and record.metadata["request"] == request
    _, entries = store.load(record.id)
    planned = [e for e in entries if e.kind == "task_planned"]
    assert planned[0].rounds == 2 and planned[0].exchanges[0]["problems"]


def test_plain_words_without_a_model_or_a_fleet(tmp_path: Path) -> None:
    fleet = str(EXAMPLES / "repo_audit.py")
    proc = fleetmind("run", "audit this", "--fleet", fleet, env=env_for(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("fleetmind: error: no model is configured to plan with")
    assert "FLEETMIND_CLOUD_BASE_URL" in proc.stderr and proc.stderr.count("\n") == 1
    proc = fleetmind("run", "audit this", env=env_for(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2 and "needs --fleet" in proc.stderr
    proc = fleetmind("run", "missing.yaml", env=env_for(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2 and "file not found: missing.yaml" in proc.stderr


def test_confirm_asks_before_running(tmp_path: Path, server: ScriptedLLMServer) -> None:
    repo = small_repo(tmp_path)
    server.add_rule(Rule("You plan work", Reply.text(json.dumps(AUDIT_PLAN))))
    args = ("run", "audit it", "--fleet", str(EXAMPLES / "repo_audit.py"), "--confirm", "--no-live")
    proc = fleetmind(*args, env=env_for(tmp_path, server), cwd=repo, stdin="n\n")
    assert proc.returncode == 0 and "not run" in proc.stderr
    assert SQLiteStore(tmp_path / "data" / "fleetmind.db").tasks() == []
    proc = fleetmind(*args, env=env_for(tmp_path, server), cwd=repo, stdin="y\n")
    assert proc.returncode == 0, proc.stderr
    assert "# Repository audit" in proc.stdout


def test_a_plan_that_never_validates_is_refused(tmp_path: Path, server: ScriptedLLMServer) -> None:
    server.add_rule(Rule("", Reply.text('{"subtasks": [{"id": "x", "agent": "nobody"}]}')))
    proc = fleetmind(
        "run",
        "audit it",
        "--fleet",
        str(EXAMPLES / "repo_audit.py"),
        env=env_for(tmp_path, server),
        cwd=tmp_path,
    )
    assert proc.returncode == 2  # exit 1 is for a task that ran and failed
    assert proc.stderr.startswith("fleetmind: error: no valid plan after 3 rounds")
    assert "Traceback" not in proc.stderr
    assert SQLiteStore(tmp_path / "data" / "fleetmind.db").tasks() == []


# An LLM agent with an MCP server's tools ------------------------------------------------------


def test_the_llm_mcp_example(tmp_path: Path, server: ScriptedLLMServer) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("alpha beta gamma\nalpha beta\nalpha\n")
    plan = {
        "subtasks": [
            {
                "id": "answer",
                "description": "How long is notes.txt and which words does it use most?",
                "agent": "text-analyst",
                "inputs": {"path": str(notes)},
            }
        ]
    }
    server.add_rule(Rule("You plan work", Reply.text(json.dumps(plan))))
    server.push(
        Reply.tool("text_stats", {"path": str(notes), "top": 2}),
        Reply.text("notes.txt has 3 lines; most used: alpha, beta"),
    )
    proc = fleetmind(
        "run",
        "How long is notes.txt?",
        "--fleet",
        str(EXAMPLES / "llm_mcp_agent.py"),
        "--no-live",
        "--json",
        env=env_for(tmp_path, server),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        json.loads(proc.stdout)["outputs"]["answer"]
        == "notes.txt has 3 lines; most used: alpha, beta"
    )
    # The tool really ran on the MCP server: its result went back to the model.
    observed = [m for m in server.requests[-1]["messages"] if m["role"] == "tool"]
    assert json.loads(observed[0]["content"]) == {
        "lines": 3,
        "words": 6,
        "top_words": ["alpha", "beta"],
    }
    assert "text_stats" in [t["function"]["name"] for t in server.requests[1]["tools"]]


# Checkpoints: killed mid-loop, resumed from the last finished step ------------------------------

LOOP_FLEET = """
from fleetmind import AgentProfile, Fleet, LLMAgent, tool


@tool
def lookup(key: str) -> str:
    \"\"\"Look a key up.\"\"\"
    return "value-of-" + key


thinker = LLMAgent(
    AgentProfile(id="thinker", skills=[{"name": "think"}], tier="cloud"),
    model="cloud",
    tools=[lookup],
)
fleet = Fleet([thinker])
"""

LOOP_TASK = """
name: loop
fleet: fleet.py
subtasks:
  - {id: think, description: "Think it through", skill: think}
"""


def test_an_llm_agent_killed_mid_loop_resumes_from_its_last_step(
    tmp_path: Path, server: ScriptedLLMServer
) -> None:
    (tmp_path / "fleet.py").write_text(LOOP_FLEET)
    (tmp_path / "task.yaml").write_text(LOOP_TASK)
    key = "sk-test-never-stored-4711"
    server.api_key = key
    server.push(
        Reply.tool("lookup", {"key": "a"}),
        Reply.tool("lookup", {"key": "b"}),
        Reply.text("never answered", delay_s=60),  # step 3: the process is killed meanwhile
    )
    env = env_for(tmp_path, server, FLEETMIND_CLOUD_API_KEY=key)
    proc = subprocess.Popen(
        [FLEETMIND, "run", "task.yaml", "--no-live"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while len(server.requests) < 3 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert len(server.requests) == 3, proc.stderr.read() if proc.poll() is not None else ""
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()
    store = SQLiteStore(tmp_path / "data" / "fleetmind.db")
    task_id = store.tasks()[0].id
    server.push(Reply.text("a and b looked up"))
    resumed = fleetmind("resume", task_id, "--no-live", "--json", env=env, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["outputs"]["think"] == "a and b looked up"
    # Steps 1 and 2 were not paid again: the resumed loop asked step 3 once more, and only that.
    assert len(server.requests) == 4
    last = server.requests[-1]["messages"]
    assert [m["content"] for m in last if m["role"] == "tool"] == ["value-of-a", "value-of-b"]
    # The key went over HTTP only: not into the task log, the store or the checkpoints.
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path
