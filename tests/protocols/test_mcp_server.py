"""`fleetmind mcp serve`: the fleet as an MCP server, driven by the MCP SDK's own client.

The server runs as the real console script, over stdio (spawned by the client) and over
streamable HTTP (in its own process on a free port). A few checks of argument handling run
in-process, where they are cheap.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError

from fleetmind import Fleet
from fleetmind.cli._target import load_fleet
from fleetmind.orchestrator import SkillRouter, SQLiteStore
from fleetmind.protocols._mcp_server import build_mcp_server
from fleetmind.testing import free_port

FLEETMIND = str(Path(sys.executable).parent / "fleetmind")
FIXTURE = str(Path(__file__).resolve().parents[1] / "fixtures" / "mcp_fleet.py")
SERVE = [FLEETMIND, "mcp", "serve", "--fleet", FIXTURE]
TOOLS = {"submit_task", "get_task", "get_result", "list_agents", "cancel_task"}

# Three subtasks: `greet` and `count` run side by side, `loud` shouts what `greet` wrote.
THREE = {
    "name": "three",
    "subtasks": [
        {"id": "greet", "skill": "greeting", "inputs": {"name": "ada"}},
        {"id": "count", "skill": "counting", "inputs": {"n": 3}},
        {"id": "loud", "skill": "shout"},
    ],
    "dependencies": [
        {"source": "greet", "target": "loud", "kind": "data", "input": "text"},
        {"source": "count", "target": "loud"},
    ],
}
WAITING = {"name": "waiting", "subtasks": [{"id": "nap", "skill": "wait"}]}

pytestmark = pytest.mark.timeout(120)


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "HOME": str(home), "PYTHONUNBUFFERED": "1"}


@dataclass
class Progress:
    """Progress notifications of one call, and an event set when the last one arrives."""

    until: str = "task done"
    seen: list[tuple[float, float | None, str | None]] = field(default_factory=list)
    task_id: str = ""
    started: asyncio.Event = field(default_factory=asyncio.Event)
    complete: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.seen.append((progress, total, message))
        if message and message.endswith(" submitted"):
            self.task_id = message.split()[1]
        if message and message.endswith(": started on sleeper"):
            self.started.set()
        if message == self.until:
            self.complete.set()


def _error_line(result: Any) -> str:
    assert result.is_error, result
    text = result.content[0].text
    assert "\n" not in text, text
    return text


async def _follow_three(client: Client) -> str:
    """Submit the three-subtask graph, follow it to its end, check progress and result."""
    progress = Progress()
    submitted = await client.call_tool(
        "submit_task", {"graph": THREE, "wait": True}, progress_callback=progress
    )
    assert not submitted.is_error, submitted.content
    state = submitted.structured_content
    assert state["status"] == "done" and state["finished"]
    by_id = {s["id"]: s for s in state["subtasks"]}
    assert by_id["loud"]["output"] == "HELLO ADA"
    assert by_id["count"]["agent"] == "slow-counter"

    await asyncio.wait_for(progress.complete.wait(), 30)
    messages = [m for _, _, m in progress.seen]
    assert messages[0] == f"task {state['task_id']} submitted"
    assert "count: started on slow-counter" in messages
    assert "count: counted 2 of 3 (67%)" in messages  # the agent's own progress
    assert "loud: done by shouter" in messages
    assert all(total == 3 for _, total, _ in progress.seen)
    counts = [p for p, _, _ in progress.seen]
    assert counts == sorted(counts) and counts[0] == 0 and counts[-1] == 3

    result = await client.call_tool("get_result", {"task_id": state["task_id"]})
    assert result.structured_content == {
        "task_id": state["task_id"],
        "status": "done",
        "finished": True,
        "outputs": {"greet": "hello ada", "count": 3, "loud": "HELLO ADA"},
        "errors": {},
    }
    return str(state["task_id"])


# stdio ----------------------------------------------------------------------------------------


async def test_over_stdio_a_graph_runs_to_its_result_with_progress(tmp_path: Path) -> None:
    params = StdioServerParameters(
        command=FLEETMIND,
        args=["mcp", "serve", "--stdio", "--fleet", FIXTURE, "--data-dir", str(tmp_path)],
        env=_env(tmp_path),
        cwd=str(tmp_path),
    )
    async with Client(params) as client:
        listed = await client.list_tools()
        assert {t.name for t in listed.tools} == TOOLS
        assert all(t.output_schema for t in listed.tools)  # structured results
        task_id = await _follow_three(client)

        # Mistakes are one-line tool errors, and the server keeps serving.
        assert _error_line(await client.call_tool("get_task", {"task_id": "t0"})) == (
            "Error executing tool get_task: unknown task id 't0'"
        )
        cyclic = {
            "subtasks": [{"id": "a", "skill": "greeting"}, {"id": "b", "skill": "greeting"}],
            "dependencies": [{"source": "a", "target": "b"}, {"source": "b", "target": "a"}],
        }
        line = _error_line(await client.call_tool("submit_task", {"graph": cyclic}))
        assert "invalid task graph" in line and "cycl" in line
        again = await client.call_tool("get_task", {"task_id": task_id})
        assert again.structured_content["status"] == "done"

        # A call that waits for a task does not hold the server up: another call cancels it.
        progress = Progress(until="task cancelled")
        async with asyncio.TaskGroup() as tg:
            waiting = tg.create_task(
                client.call_tool(
                    "submit_task", {"graph": WAITING, "wait": True}, progress_callback=progress
                )
            )
            await progress.started.wait()
            cancelled = await client.call_tool("cancel_task", {"task_id": progress.task_id})
            assert cancelled.structured_content["status"] == "cancelled"
        assert waiting.result().structured_content["status"] == "cancelled"
        await asyncio.wait_for(progress.complete.wait(), 30)
        assert "nap: cancelled: cancelled via MCP" in [m for _, _, m in progress.seen]

    # The client closed stdin: the server stopped, and the task is in the data dir's store.
    record, _ = SQLiteStore(tmp_path / "fleetmind.db").load(task_id)
    assert record.status == "done" and record.name == "three"

    # A new server on the same data directory reads it from there (a unique prefix will do).
    async with Client(params) as client:
        state = (await client.call_tool("get_task", {"task_id": task_id[:7]})).structured_content
        assert state["task_id"] == task_id and state["status"] == "done"
        assert state["subtasks"][2]["output"] == "HELLO ADA"
        result = await client.call_tool("get_result", {"task_id": task_id})
        assert result.structured_content["outputs"]["loud"] == "HELLO ADA"
        ended = await client.call_tool("cancel_task", {"task_id": task_id})
        assert ended.structured_content["status"] == "done"  # it had already ended
        read = await client.read_resource(f"fleetmind://tasks/{task_id}/graph")
        assert json.loads(read.contents[0].text)["state"]["greet"]["output"] == "hello ada"


# streamable HTTP -------------------------------------------------------------------------------


@dataclass
class HttpServer:
    url: str
    process: subprocess.Popen[bytes]
    data_dir: Path


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[HttpServer]:
    """`fleetmind mcp serve --http` in its own process, stopped (SIGTERM) by the test."""
    port = free_port()
    process = subprocess.Popen(
        [*SERVE, "--http", f"127.0.0.1:{port}", "--data-dir", str(tmp_path)],
        env=_env(tmp_path),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_until_listening(process, port)
        yield HttpServer(f"http://127.0.0.1:{port}/mcp", process, tmp_path)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        assert process.stderr is not None
        process.stderr.close()


def _wait_until_listening(process: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            assert process.stderr is not None
            pytest.fail(f"the server exited early: {process.stderr.read().decode()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail("the server never accepted connections")


async def test_over_http_tools_and_graph_resource(http_server: HttpServer) -> None:
    async with Client(http_server.url) as client:
        listed = await client.list_tools()
        assert {t.name for t in listed.tools} == TOOLS
        task_id = await _follow_three(client)

        agents = (await client.call_tool("list_agents", {})).structured_content["agents"]
        assert [a["id"] for a in agents] == ["greeter", "shouter", "sleeper", "slow-counter"]
        greeter = agents[0]
        assert greeter["tier"] == "device"
        assert greeter["description"].startswith("Writes a friendly greeting")
        assert greeter["skills"] == [
            {"name": "greeting", "description": "Greet someone by name", "tags": ["hello"]}
        ]

        state = (await client.call_tool("get_task", {"task_id": task_id})).structured_content
        assert state["graph_uri"] == f"fleetmind://tasks/{task_id}/graph"
        assert [(s["id"], s["status"], s["agent"]) for s in state["subtasks"]] == [
            ("greet", "done", "greeter"),
            ("count", "done", "slow-counter"),
            ("loud", "done", "shouter"),
        ]

        # The graph as a resource: listed, and read through the template.
        templates = await client.list_resource_templates()
        assert [t.uri_template for t in templates.resource_templates] == [
            "fleetmind://tasks/{task_id}/graph"
        ]
        resources = {r.uri for r in (await client.list_resources()).resources}
        assert {"fleetmind://tasks", state["graph_uri"]} <= resources
        read = await client.read_resource(state["graph_uri"])
        graph = json.loads(read.contents[0].text)
        assert read.contents[0].mime_type == "application/json"
        assert graph["task_id"] == task_id and graph["status"] == "done"
        assert graph["dependencies"] == THREE["dependencies"]
        assert graph["state"]["loud"]["output"] == "HELLO ADA"
        listing = json.loads((await client.read_resource("fleetmind://tasks")).contents[0].text)
        assert [t["task_id"] for t in listing["tasks"]] == [task_id]
        with pytest.raises(MCPError, match="unknown task id 'tnothing'"):
            await client.read_resource("fleetmind://tasks/tnothing/graph")

        # A task that would never end: get_result gives up after its timeout, cancel ends it.
        started = await client.call_tool("submit_task", {"graph": WAITING})
        waiting_id = started.structured_content["task_id"]
        pending = await client.call_tool("get_result", {"task_id": waiting_id, "timeout_s": 0})
        assert pending.structured_content["finished"] is False
        assert pending.structured_content["status"] == "running"
        cancelled = await client.call_tool("cancel_task", {"task_id": waiting_id})
        assert cancelled.structured_content["status"] == "cancelled"
        assert cancelled.structured_content["finished"] is True
        state = (await client.call_tool("get_task", {"task_id": waiting_id})).structured_content
        assert state["subtasks"][0]["status"] == "cancelled"

        # Errors leave the server serving.
        for name, args in [
            ("get_result", {"task_id": "tmissing"}),
            ("cancel_task", {"task_id": "tmissing"}),
            ("submit_task", {"graph": {"subtasks": [{"id": "x", "skill": "juggling"}]}}),
        ]:
            line = _error_line(await client.call_tool(name, args))
            assert "tmissing" in line or "juggling" in line
        assert not (await client.call_tool("list_agents", {})).is_error


async def test_over_http_stopping_the_server_cancels_its_running_tasks(
    http_server: HttpServer,
) -> None:
    async with Client(http_server.url) as client:
        started = await client.call_tool("submit_task", {"graph": WAITING})
        task_id = started.structured_content["task_id"]
    http_server.process.send_signal(signal.SIGTERM)
    assert http_server.process.wait(timeout=30) == 0
    record, _ = SQLiteStore(http_server.data_dir / "fleetmind.db").load(task_id)
    assert record.status == "cancelled"


async def test_over_http_text_becomes_one_subtask_routed_by_meaning(
    http_server: HttpServer,
) -> None:
    async with Client(http_server.url) as client:
        done = await client.call_tool(
            "submit_task", {"text": "Please greet Ada warmly", "wait": True}
        )
    state = done.structured_content
    assert state["name"] == "Please greet Ada warmly"
    assert [(s["description"], s["agent"], s["status"]) for s in state["subtasks"]] == [
        ("Please greet Ada warmly", "greeter", "done")
    ]


# Command line -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fleet", FIXTURE], "give exactly one of --stdio or --http HOST:PORT"),
        (["--fleet", FIXTURE, "--stdio", "--http", "127.0.0.1:1"], "give exactly one of"),
        (["--fleet", FIXTURE, "--http", "localhost"], "--http expects HOST:PORT"),
        (["--fleet", FIXTURE, "--http", "127.0.0.1:70000"], "between 1 and 65535"),
        (["--stdio"], "Missing option '--fleet'"),
        (["--stdio", "--fleet", "nosuch.py"], "fleet file not found: nosuch.py"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    done = subprocess.run(
        [FLEETMIND, "mcp", "serve", *args, "--data-dir", str(tmp_path)],
        env=_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("fleetmind: error: ")
    assert message in done.stderr


def test_a_busy_port_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [*SERVE, "--http", f"127.0.0.1:{port}", "--data-dir", str(tmp_path)],
            env=_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2
    assert done.stderr.startswith(f"fleetmind: error: cannot listen on 127.0.0.1:{port}: ")
    assert done.stderr.count("\n") == 1


# In-process: what a caller may get wrong ----------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({}, "give exactly one of `graph` (a task graph definition) or `text`"),
        ({"graph": WAITING, "text": "hi"}, "give exactly one of"),
        ({"text": "   "}, "`text` is empty"),
        ({"graph": "{not json"}, "invalid task graph: not JSON"),
        ({"graph": "[1]"}, "expected an object with a 'subtasks' list"),
        ({"graph": {"subtasks": []}}, "'subtasks' must be a non-empty list"),
        ({"graph": {"subtask": []}}, "unknown field(s) subtask"),
        ({"graph": {"subtasks": [{"id": "a", "nope": 1}]}}, "subtasks[0]: nope: Extra inputs"),
        (
            {"graph": {"subtasks": [{"id": "a"}], "dependencies": [{"source": "a"}]}},
            "dependencies[0]: target: Field required",
        ),
        (
            {
                "graph": {
                    "subtasks": [{"id": "a"}],
                    "dependencies": [{"source": "a", "target": "b"}],
                }
            },
            "invalid task graph: ",
        ),
        (
            {"graph": {"subtasks": [{"id": "a", "skill": "shout"}]}},
            "cannot run this task: ",  # shouter needs a `text` input
        ),
        ({"graph": {"subtasks": [{"id": "a", "agent": "ghost"}]}}, "agent 'ghost'"),
    ],
)
async def test_submit_task_mistakes_are_tool_errors(
    arguments: dict[str, Any], message: str
) -> None:
    agents = load_fleet(FIXTURE).agents
    fleet = Fleet(agents, router=SkillRouter())
    server = build_mcp_server(fleet)
    async with fleet, Client(server) as client:
        line = _error_line(await client.call_tool("submit_task", arguments))
        assert line.startswith("Error executing tool submit_task: ")
        assert message in line
        assert not (await client.call_tool("list_agents", {})).is_error
