"""Plain words from the console go through the fleet's planner, and an LLM agent's steps show
in the graph with the model and tier chosen for each: a real console process, a scripted
model over HTTP. A subtask that adds subtasks while it runs shows as a live edit."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import CONSOLE_FLEET, EventReader, RunningConsole
from repo_paths import FIXTURES

from fleetmind.testing import Reply, Rule, ScriptedLLMServer

Console = Callable[..., RunningConsole]
POST = {"X-Fleetmind-Console": "1"}
DEADLINE_S = 90.0

PLAN = {
    "name": "greet-and-note",
    "subtasks": [
        {"id": "greet", "description": "greet Ada", "agent": "greeter", "inputs": {"name": "Ada"}},
        {
            "id": "note",
            "description": "write a short note for the greeting",
            "agent": "writer",
            "inputs": {"greeting": "${greet}"},
        },
    ],
}


@pytest.fixture
def model() -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer() as server:
        server.add_rule(Rule("You plan work", Reply.text(json.dumps(PLAN))))
        server.add_rule(Rule("", Reply.text("Dear Ada, hello.")))
        yield server


def wait_done(client: httpx.Client, task_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        view = client.get(f"/api/tasks/{task_id}").json()
        if view.get("status") in ("done", "failed", "cancelled"):
            return view
        assert time.monotonic() < deadline, f"task {task_id} never ended: {view}"
        time.sleep(0.1)


@pytest.mark.timeout(240)
def test_plain_words_are_planned_and_the_llm_steps_are_shown(
    console_factory: Console, model: ScriptedLLMServer, tmp_path: Path
) -> None:
    env = {
        "HOME": str(tmp_path),
        "FLEETMIND_CLOUD_BASE_URL": model.url,
        "FLEETMIND_CLOUD_MODEL": "scripted-cloud",
    }
    running = console_factory("--fleet", str(FIXTURES / "console_llm_fleet.py"), env=env)
    client = running.client()
    assert client.get("/api/info").json()["can_plan"] is True

    request = "greet Ada and write her a note"
    answer = client.post("/api/tasks", json={"text": request}, headers=POST)
    assert answer.status_code == 201, answer.text
    view = wait_done(client, answer.json()["id"])
    assert (view["status"], view["name"], view["request"]) == ("done", "greet-and-note", request)
    assert view["edges"] == [
        {"source": "greet", "target": "note", "kind": "data", "condition": "success"}
    ]
    note = next(s for s in view["subtasks"] if s["id"] == "note")
    assert note["agent"] == "writer"
    assert len(note["steps"]) >= 1
    step = note["steps"][0]
    assert (step["model"], step["tier"]) == ("scripted-model", "cloud")  # as the server said
    assert step["step"] == 1 and step["outcome"] == "answer"
    assert step["prompt_tokens"] > 0 and isinstance(step["reason"], str) and step["at"] > 0
    greet = next(s for s in view["subtasks"] if s["id"] == "greet")
    assert greet["steps"] == []
    assert any(request in str(r["messages"]) for r in model.requests)


def test_a_subtask_that_adds_subtasks_shows_as_a_live_edit(console_factory: Console) -> None:
    running = console_factory("--fleet", str(CONSOLE_FLEET))
    client = running.client()
    reader = EventReader(running)
    content = "name: grows\nsubtasks:\n  - {id: root, agent: expander, inputs: {count: 2}}\n"
    try:
        answer = client.post(
            "/api/tasks", json={"file_name": "grows.yaml", "content": content}, headers=POST
        )
        assert answer.status_code == 201, answer.text
        task_id = answer.json()["id"]
        seen = reader.wait_for(
            lambda e: e.event == "task" and e.data == {"task_id": task_id, "status": "done"}
        )
    finally:
        reader.close()
    edits = [
        e.data["event"]
        for e in seen
        if e.event == "graph" and e.data["event"]["kind"] == "graph_edited"  # type: ignore[index]
    ]
    added = [edit["edit"]["subtask"]["id"] for edit in edits]  # type: ignore[index]
    assert added == ["root-more-0", "root-more-1"]
    assert all(edit["by"] == "root" for edit in edits)  # type: ignore[index]
    view = client.get(f"/api/tasks/{task_id}").json()
    assert [s["id"] for s in view["subtasks"]] == ["root", "root-more-0", "root-more-1"]
    assert all(s["status"] == "done" for s in view["subtasks"])
    assert {(e["source"], e["target"]) for e in view["edges"]} == {
        ("root", "root-more-0"),
        ("root", "root-more-1"),
    }
