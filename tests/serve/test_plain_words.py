"""Plain words through the fleet's MCP server and A2A server go through the planner when a
model is configured: real servers in their own processes, a scripted model over HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from a2a.client import ClientConfig, create_client
from a2a.types import GetTaskRequest, Message, Part, Role, SendMessageRequest, TaskState
from mcp import Client, StdioServerParameters
from repo_paths import FIXTURES

from fleetmind.testing import Reply, Rule, ScriptedLLMServer, free_port

pytestmark = pytest.mark.timeout(180)
FLEETMIND = str(Path(sys.executable).parent / "fleetmind")

GREET_AND_SHOUT = {
    "name": "greet-loud",
    "subtasks": [
        {"id": "greet", "description": "greet Ada", "agent": "greeter", "inputs": {"name": "Ada"}},
        {
            "id": "loud",
            "description": "shout it",
            "agent": "shouter",
            "inputs": {"text": "${greet}"},
        },
    ],
}


TERMINAL = {
    TaskState.TASK_STATE_COMPLETED,
    TaskState.TASK_STATE_FAILED,
    TaskState.TASK_STATE_CANCELED,
    TaskState.TASK_STATE_REJECTED,
}


@pytest.fixture
def model() -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer() as server:
        yield server


def env_with(model: ScriptedLLMServer, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETMIND_")}
    env.update(
        HOME=str(home),
        PYTHONUNBUFFERED="1",
        FLEETMIND_CLOUD_BASE_URL=model.url,
        FLEETMIND_CLOUD_MODEL="planner",
    )
    return env


async def test_mcp_submit_task_with_text_is_planned(
    tmp_path: Path, model: ScriptedLLMServer
) -> None:
    model.add_rule(Rule("You plan work", Reply.text(json.dumps(GREET_AND_SHOUT))))
    params = StdioServerParameters(
        command=FLEETMIND,
        args=[
            "mcp",
            "serve",
            "--stdio",
            "--fleet",
            str(FIXTURES / "mcp_fleet.py"),
            "--data-dir",
            str(tmp_path),
        ],
        env=env_with(model, tmp_path),
        cwd=str(tmp_path),
    )
    async with Client(params) as client:
        done = await client.call_tool("submit_task", {"text": "greet Ada loudly", "wait": True})
        state = done.structured_content
        assert state["status"] == "done"
        assert {s["id"] for s in state["subtasks"]} == {"greet", "loud"}
        result = await client.call_tool("get_result", {"task_id": state["task_id"]})
        assert result.structured_content["outputs"]["loud"] == "HELLO ADA"
    assert "greet Ada loudly" in model.requests[0]["messages"][1]["content"]


async def test_mcp_text_that_cannot_be_planned_is_a_one_line_tool_error(
    tmp_path: Path, model: ScriptedLLMServer
) -> None:
    model.add_rule(Rule("", Reply.text("no idea")))
    params = StdioServerParameters(
        command=FLEETMIND,
        args=[
            "mcp",
            "serve",
            "--stdio",
            "--fleet",
            str(FIXTURES / "mcp_fleet.py"),
            "--data-dir",
            str(tmp_path),
        ],
        env=env_with(model, tmp_path),
        cwd=str(tmp_path),
    )
    async with Client(params) as client:
        answer = await client.call_tool("submit_task", {"text": "do something odd"})
        assert answer.is_error
        text = answer.content[0].text
        assert "cannot plan this request: no valid plan after 3 rounds" in text
        assert "\n" not in text


@pytest.fixture
def a2a_fleet(tmp_path: Path, model: ScriptedLLMServer) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [
            *(FLEETMIND, "a2a", "serve", "--fleet", str(FIXTURES / "a2a_fleet.py")),
            *("--port", str(port), "--data-dir", str(tmp_path / "data")),
        ],
        env=env_with(model, tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/.well-known/agent-card.json", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"a2a serve did not start: {process.communicate()[1]}")
            time.sleep(0.1)
        yield url
    finally:
        if process.poll() is None:
            process.send_signal(2)
        try:
            process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


async def test_an_a2a_message_in_plain_words_is_planned(
    a2a_fleet: str, model: ScriptedLLMServer
) -> None:
    plan = {
        "subtasks": [
            {"id": "first", "description": "echo", "agent": "echo", "inputs": {"text": "ping"}},
            {
                "id": "second",
                "description": "count",
                "agent": "slow",
                "inputs": {"steps": 2},
                "depends_on": ["first"],
            },
        ]
    }
    model.add_rule(Rule("You plan work", Reply.text(json.dumps(plan))))
    async with httpx.AsyncClient(timeout=60) as http:
        client = await create_client(
            a2a_fleet, client_config=ClientConfig(httpx_client=http, streaming=False)
        )
        try:
            message = Message(
                message_id="m1",
                role=Role.ROLE_USER,
                parts=[Part(text="echo ping, then count to two")],
            )
            final = None
            async for event in client.send_message(SendMessageRequest(message=message)):
                final = event
            task = final.task
            deadline = time.monotonic() + 60
            while task.status.state not in TERMINAL:
                assert time.monotonic() < deadline, task.status
                await asyncio.sleep(0.05)
                task = await client.get_task(GetTaskRequest(id=task.id))
        finally:
            await client.close()
    assert task.status.state == TaskState.TASK_STATE_COMPLETED, task.status
    result = [p.text for a in task.artifacts if a.artifact_id == "result" for p in a.parts]
    assert result == ["counted to 2"]
    assert "echo ping, then count to two" in model.requests[0]["messages"][1]["content"]
