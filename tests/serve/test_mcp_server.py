"""`fleetmind mcp serve`: the fleet as an MCP server, driven by the MCP SDK's own client.

The server runs as the real console script, over stdio (spawned by the client) and over
streamable HTTP (in its own process on a free port). Malformed requests over HTTP are sent with
raw httpx, since the SDK's client never sends them. A few checks of argument handling run
in-process, where they are cheap.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError
from mcp_harness import FIXTURE, FLEETMIND, JSON_RPC, SERVE, THREE, MCPServer, server_env, serving

from fleetmind import Fleet
from fleetmind.cli._target import load_fleet
from fleetmind.orchestrator import SkillRouter, SQLiteStore
from fleetmind.serve import build_mcp_server
from fleetmind.testing import free_port

TOOLS = {"submit_task", "get_task", "get_result", "list_agents", "cancel_task"}
TOKEN = "s3cret-token"
# The handshake-era revision is the one whose sessions are opened with `initialize` and named
# by the Mcp-Session-Id header.
HANDSHAKE_VERSION = "2025-11-25"

WAITING = {"name": "waiting", "subtasks": [{"id": "nap", "skill": "wait"}]}

pytestmark = pytest.mark.timeout(120)


@dataclass
class Progress:
    """Progress notifications of one call, and an event set when the last one arrives."""

    until: str = "done"
    """How the task ends: the last notification is ``task <id> <until>``."""
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
        if self.task_id and message == f"task {self.task_id} {self.until}":
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
    values = [p for p, _, _ in progress.seen]
    assert all(later > earlier for earlier, later in itertools.pairwise(values)), values
    assert values[0] == 0 and values[-1] == 3

    result = await client.call_tool("get_result", {"task_id": state["task_id"]})
    assert result.structured_content == {
        "task_id": state["task_id"],
        "status": "done",
        "finished": True,
        "resumable": False,
        "outputs": {"greet": "hello ada", "count": 3, "loud": "HELLO ADA"},
        "errors": {},
    }
    return str(state["task_id"])


# stdio ----------------------------------------------------------------------------------------


async def test_over_stdio_a_graph_runs_to_its_result_with_progress(tmp_path: Path) -> None:
    params = StdioServerParameters(
        command=FLEETMIND,
        args=["mcp", "serve", "--stdio", "--fleet", FIXTURE, "--data-dir", str(tmp_path)],
        env=server_env(tmp_path),
        cwd=str(tmp_path),
    )
    async with Client(params) as client:
        listed = await client.list_tools()
        assert {t.name for t in listed.tools} == TOOLS
        assert all(t.output_schema for t in listed.tools)  # structured results
        task_id = await _follow_three(client)

        # Mistakes are one-line tool errors, and the server keeps serving. ("tnothex" is not
        # hexadecimal, so never the prefix of a real task id, which would resolve.)
        assert _error_line(await client.call_tool("get_task", {"task_id": "tnothex"})) == (
            "Error executing tool get_task: unknown task id 'tnothex'"
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
        progress = Progress(until="cancelled")
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


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[MCPServer]:
    """A server of its own for one test, which may stop it (SIGTERM) itself."""
    with serving(tmp_path) as server:
        yield server


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MCPServer]:
    """A server without a token, shared by the tests that send it bad requests."""
    with serving(tmp_path_factory.mktemp("open")) as server:
        yield server


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MCPServer]:
    """A server that wants `Authorization: Bearer s3cret-token`."""
    home = tmp_path_factory.mktemp("token")
    token = home / "token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    with serving(home, "--token-file", str(token)) as server:
        yield server


async def test_over_http_tools_and_graph_resource(http_server: MCPServer) -> None:
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
    http_server: MCPServer,
) -> None:
    async with Client(http_server.url) as client:
        started = await client.call_tool("submit_task", {"graph": WAITING})
        task_id = started.structured_content["task_id"]
    http_server.process.send_signal(signal.SIGTERM)
    assert http_server.process.wait(timeout=30) == 0
    record, _ = SQLiteStore(http_server.data_dir / "fleetmind.db").load(task_id)
    assert record.status == "cancelled"


async def test_over_http_text_becomes_one_subtask_routed_by_meaning(
    http_server: MCPServer,
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


# Bad input over HTTP: the protocol's error answers, and the server keeps serving ----------------


async def _post(url: str, body: Any, *, headers: dict[str, str] | None = None) -> httpx.Response:
    """POST one body as a streamable-HTTP client would (bytes as they are, else as JSON)."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with httpx.AsyncClient(timeout=60) as http:
        return await http.post(url, content=content, headers={**JSON_RPC, **(headers or {})})


def _ping(request_id: int) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "ping"}


def _reply(response: httpx.Response) -> dict[str, Any]:
    """The JSON-RPC answer to a request: the JSON body, or the answer in the SSE stream."""
    if response.headers["content-type"].startswith("text/event-stream"):
        # A stream opens with a priming event: an id and empty data, no message.
        lines = response.text.splitlines()
        data = [line.removeprefix("data:") for line in lines if line.startswith("data:")]
        events = [json.loads(d) for d in data if d.strip()]
        answers = [e for e in events if "id" in e]
        assert len(answers) == 1, response.text
        return answers[0]
    answer: dict[str, Any] = response.json()
    return answer


async def _session(url: str, headers: dict[str, str] | None = None) -> dict[str, str]:
    """Open a session the handshake way (initialize, then initialized): the headers it needs.

    Streamable HTTP answers a request that is no `initialize` and names no session with
    `Bad Request: Missing session ID`, so method and params mistakes are made inside one.
    """
    init = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": HANDSHAKE_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "raw-httpx", "version": "0"},
        },
    }
    opened = await _post(url, init, headers=headers)
    assert opened.status_code == 200 and "result" in _reply(opened), opened.text
    session = {
        **(headers or {}),
        "Mcp-Session-Id": opened.headers["mcp-session-id"],
        "MCP-Protocol-Version": HANDSHAKE_VERSION,
    }
    initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    assert (await _post(url, initialized, headers=session)).status_code == 202
    return session


async def _still_serves(url: str, token: str | None = None) -> None:
    """A good call through the SDK's own client still gets its answer."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else None
    async with (
        create_mcp_http_client(headers=headers) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        listed = await client.call_tool("list_agents", {})
    assert not listed.is_error
    assert len(listed.structured_content["agents"]) == 4


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        # Not JSON: answered by the SDK's transport.
        pytest.param(b"{not json", -32700, "Parse error", id="not-json"),
        # JSON but no JSON-RPC message: answered by fleetmind's gate (the SDK says -32602).
        pytest.param(
            {"jsonrpc": "2.0", "id": 1, "params": {}}, -32600, 'no "method"', id="no-method"
        ),
        pytest.param(
            {"jsonrpc": "1.0", "id": 2, "method": "ping"},
            -32600,
            '"jsonrpc" must be "2.0"',
            id="wrong-version",
        ),
        pytest.param(
            {"jsonrpc": "2.0", "id": 3, "method": "ping", "params": [1]},
            -32600,
            '"params" must be an object',
            id="params-not-object",
        ),
        pytest.param(
            [{"jsonrpc": "2.0", "id": 4, "method": "ping"}], -32600, "batches", id="batch"
        ),
        pytest.param(b'"ping"', -32600, "expected a JSON-RPC message object", id="a-string"),
    ],
)
async def test_malformed_json_rpc_gets_its_error_code(
    open_server: MCPServer, body: Any, code: int, message: str
) -> None:
    response = await _post(open_server.url, body)
    assert response.status_code == 400
    answer = response.json()
    assert answer["jsonrpc"] == "2.0"
    assert answer["error"]["code"] == code
    assert message in answer["error"]["message"]
    assert "\n" not in answer["error"]["message"]
    assert answer["id"] == (body["id"] if isinstance(body, dict) else None)
    await _still_serves(open_server.url)


@pytest.mark.parametrize(
    ("method", "params", "code", "message"),
    [
        pytest.param("tasks/juggle", {}, -32601, "Method not found", id="unknown-method"),
        # Params that do not fit CallToolRequest's schema are a protocol error.
        pytest.param(
            "tools/call",
            {"name": "get_task", "arguments": 5},
            -32602,
            "Invalid request parameters",
            id="arguments-not-an-object",
        ),
        pytest.param(
            "tools/call", {"arguments": {}}, -32602, "Invalid request parameters", id="no-tool-name"
        ),
        # A tool the server does not have is a protocol error too, as the spec's example shows.
        pytest.param(
            "tools/call",
            {"name": "juggle", "arguments": {}},
            -32602,
            "Unknown tool: juggle",
            id="unknown-tool",
        ),
    ],
)
async def test_in_a_session_a_bad_request_gets_a_json_rpc_error(
    open_server: MCPServer, method: str, params: dict[str, Any], code: int, message: str
) -> None:
    session = await _session(open_server.url)
    request = {"jsonrpc": "2.0", "id": 11, "method": method, "params": params}
    response = await _post(open_server.url, request, headers=session)
    assert response.status_code == 200  # the answer travels in the request's SSE stream
    answer = _reply(response)
    assert answer["id"] == 11
    assert answer["error"]["code"] == code
    assert answer["error"]["message"] == message
    ping = await _post(open_server.url, _ping(12), headers=session)
    assert _reply(ping) == {"jsonrpc": "2.0", "id": 12, "result": {}}  # the session lives on
    await _still_serves(open_server.url)


@pytest.mark.parametrize(
    ("arguments", "line"),
    [
        # Arguments that miss the tool's input schema are a tool error, not -32602: the
        # 2025-11-25 spec has input validation errors reported as tool execution errors, so
        # that a model can read and correct them; the SDK does so, fleetmind makes it one line.
        pytest.param(
            {"name": "get_task", "arguments": {}},
            "Error executing tool get_task: invalid arguments: task_id: Field required",
            id="missing-argument",
        ),
        pytest.param(
            {"name": "get_result", "arguments": {"task_id": "t1", "timeout_s": -1}},
            "Error executing tool get_result: invalid arguments: timeout_s: "
            "Input should be greater than or equal to 0",
            id="argument-out-of-range",
        ),
        pytest.param(
            {"name": "get_task", "arguments": {"task_id": "tnothing"}},
            "Error executing tool get_task: unknown task id 'tnothing'",
            id="unknown-task-id",
        ),
        pytest.param(
            {"name": "cancel_task", "arguments": {"task_id": "tnothing"}},
            "Error executing tool cancel_task: unknown task id 'tnothing'",
            id="cancel-unknown-task-id",
        ),
    ],
)
async def test_in_a_session_bad_tool_arguments_are_one_line_tool_errors(
    open_server: MCPServer, arguments: dict[str, Any], line: str
) -> None:
    session = await _session(open_server.url)
    request = {"jsonrpc": "2.0", "id": 21, "method": "tools/call", "params": arguments}
    answer = _reply(await _post(open_server.url, request, headers=session))
    assert answer["id"] == 21 and "error" not in answer
    assert answer["result"]["isError"] is True
    assert answer["result"]["content"] == [{"type": "text", "text": line}]
    await _still_serves(open_server.url)


async def _chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_an_oversized_body_gets_413(open_server: MCPServer, declared: bool) -> None:
    session = await _session(open_server.url)
    arguments = {"text": "x" * (5 * 1024 * 1024)}
    request = {
        "jsonrpc": "2.0",
        "id": 31,
        "method": "tools/call",
        "params": {"name": "submit_task", "arguments": arguments},
    }
    body = json.dumps(request).encode()
    async with httpx.AsyncClient(timeout=60) as http:
        # Without a length the body arrives chunked, and is counted as it comes.
        content: bytes | AsyncIterator[bytes] = body if declared else _chunks(body)
        response = await http.post(
            open_server.url, content=content, headers={**JSON_RPC, **session}
        )
    assert response.status_code == 413
    answer = response.json()
    assert answer["error"]["code"] == -32600
    assert answer["error"]["message"] == (
        "Invalid Request: payload too large (the limit is 4194304 bytes)"
    )
    ping = await _post(open_server.url, _ping(32), headers=session)
    assert _reply(ping)["result"] == {}
    await _still_serves(open_server.url)


# Bearer token -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong-token", f"Basic {TOKEN}", TOKEN, "Bearer"],
    ids=["missing", "wrong", "other-scheme", "no-scheme", "no-token"],
)
async def test_a_missing_or_wrong_token_gets_401(
    token_server: MCPServer, header: str | None
) -> None:
    headers = {"Authorization": header} if header is not None else None
    response = await _post(token_server.url, _ping(41), headers=headers)
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    # RFC 6750: no error code when no credentials came, invalid_token when wrong ones did.
    assert ('error="invalid_token"' in challenge) == (header is not None)
    answer = response.json()
    assert answer["id"] is None and answer["error"]["code"] == -32600
    reason = "missing" if header is None else "wrong"
    assert answer["error"]["message"] == f"Unauthorized: {reason} bearer token"
    await _still_serves(token_server.url, TOKEN)


async def test_the_token_is_checked_before_the_body_is_read(token_server: MCPServer) -> None:
    # An oversized body without the token is refused as unauthorized: nothing about the
    # endpoint is told to a caller who may not use it.
    response = await _post(token_server.url, b"x" * (5 * 1024 * 1024))
    assert response.status_code == 401
    await _still_serves(token_server.url, TOKEN)


async def test_the_sdk_client_without_the_token_is_refused(token_server: MCPServer) -> None:
    with pytest.raises(ExceptionGroup) as caught:
        async with Client(token_server.url) as client:
            await client.list_tools()
    assert caught.group_contains(MCPError, match="^Unauthorized: missing bearer token$")


async def test_the_right_token_works_through_the_sdk_client(token_server: MCPServer) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        create_mcp_http_client(headers=headers) as http,
        Client(streamable_http_client(token_server.url, http_client=http)) as client,
    ):
        assert {t.name for t in (await client.list_tools()).tools} == TOOLS
        done = await client.call_tool("submit_task", {"text": "Please greet Ada", "wait": True})
        assert done.structured_content["status"] == "done"
        missing = await client.call_tool("get_task", {"task_id": "tnothing"})
        assert _error_line(missing).endswith("unknown task id 'tnothing'")
    # The handshake way, too: the session is opened and used with the token.
    session = await _session(token_server.url, headers)
    ping = await _post(token_server.url, _ping(42), headers=session)
    assert _reply(ping)["result"] == {}
    unknown = {"jsonrpc": "2.0", "id": 43, "method": "tasks/juggle"}
    answer = _reply(await _post(token_server.url, unknown, headers=session))
    assert answer["error"]["code"] == -32601


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
        (
            ["--fleet", FIXTURE, "--stdio", "--token-file", "token"],
            "--token-file applies to --http only",
        ),
        (
            ["--fleet", FIXTURE, "--stdio", "--stream-window", "5"],
            "--stream-window applies to --http only",
        ),
        (
            ["--fleet", FIXTURE, "--http", "127.0.0.1:1", "--stream-window", "0"],
            "--stream-window must be a positive number of seconds; got 0.0",
        ),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    done = subprocess.run(
        [FLEETMIND, "mcp", "serve", *args, "--data-dir", str(tmp_path)],
        env=server_env(tmp_path),
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
            env=server_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2
    assert done.stderr.startswith(f"fleetmind: error: cannot listen on 127.0.0.1:{port}: ")
    assert done.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read token file"),
        ("  \n", "is empty"),
        ("two words", "the token must be one word of printable ASCII"),
    ],
    ids=["missing", "empty", "two-words"],
)
def test_a_bad_token_file_is_one_line(tmp_path: Path, content: str | None, message: str) -> None:
    token = tmp_path / "token"
    if content is not None:
        token.write_text(content)
        token.chmod(0o600)
    done = subprocess.run(
        [*SERVE, "--http", f"127.0.0.1:{free_port()}", "--token-file", str(token)],
        env=server_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("fleetmind: error: ")
    assert message in done.stderr


def test_a_token_file_others_can_read_is_warned_about(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN)
    token.chmod(0o644)
    with socket.socket() as busy:  # a taken port ends the command once the token was read
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [*SERVE, "--http", f"127.0.0.1:{port}", "--token-file", str(token)],
            env=server_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2
    warning, error = done.stderr.splitlines()
    assert warning == f"warning: token file {token} can be read by other users"
    assert error.startswith("fleetmind: error: cannot listen on ")


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
