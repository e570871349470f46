"""`fleetmind mcp serve` in depth: progress that goes up with every notification, the error
codes the spec gives a caller's mistakes (and no traceback for them), the plan_task prompt, and
resumable SSE streams (protocol 2025-11-25).

The server runs as the real console script in its own process on a free port. The SDK's own
client shows what a host sees; raw httpx shows the wire details the SDK's client hides: event
ids, the priming event and its retry field, and the replay after ``Last-Event-ID``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client
from mcp.server.streamable_http import EventMessage
from mcp.shared.exceptions import MCPError
from mcp.types import JSONRPCNotification, JSONRPCResponse
from mcp_harness import JSON_RPC, THREE, MCPServer, serving

from fleetmind.serve._mcp_events import StreamEvents

HANDSHAKE = "2025-11-25"
AGENTS = ("greeter", "shouter", "sleeper", "slow-counter")
TOKEN = "depth-token"

STEPS = 60
"""The long task counts this far, reporting progress at every step (at least 20 ms each)."""
LONG = {"name": "long", "subtasks": [{"id": "count", "skill": "counting", "inputs": {"n": STEPS}}]}
WINDOW_S = "0.3"
"""The stream window of the server that closes long streams: shorter than the long task."""

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MCPServer]:
    with serving(tmp_path_factory.mktemp("depth")) as served:
        yield served


@pytest.fixture(scope="module")
def windowed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MCPServer]:
    """A server that closes a call's stream after WINDOW_S seconds."""
    home = tmp_path_factory.mktemp("windowed")
    with serving(home, "--stream-window", WINDOW_S) as served:
        yield served


# Progress --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["modern", "legacy"])
async def test_progress_goes_up_with_every_notification(server: MCPServer, mode: str) -> None:
    seen: list[tuple[float, float | None, str | None]] = []
    ended = asyncio.Event()

    async def record(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))
        if message and message.startswith("task ") and message.endswith(" done"):
            ended.set()

    options: dict[str, Any] = {} if mode == "modern" else {"mode": "legacy"}
    async with Client(server.url, **options) as client:
        done = await client.call_tool(
            "submit_task", {"graph": THREE, "wait": True}, progress_callback=record
        )
        task_id = done.structured_content["task_id"]
        assert done.structured_content["status"] == "done"
        await asyncio.wait_for(ended.wait(), 60)  # notifications may trail the result

    values = [progress for progress, _, _ in seen]
    messages = [message for _, _, message in seen]
    assert len(values) >= 10, seen  # ready, routed, started, progress, done... for each subtask
    assert all(later > earlier for earlier, later in itertools.pairwise(values)), values
    assert all(total == 3 for _, total, _ in seen), seen
    assert values[0] == 0 and values[-1] == 3
    assert messages[0] == f"task {task_id} submitted" and messages[-1] == f"task {task_id} done"
    assert all(messages)
    # The values follow the work: a finished subtask counts 1, and only the end reaches 3.
    at = dict(zip(messages, values, strict=True))
    assert at["count: counted 2 of 3 (67%)"] > at["count: counted 1 of 3 (33%)"]
    assert 2 <= at["loud: started on shouter"] < at["loud: done by shouter"] < 3


# Mistakes: the spec's error code, and no traceback -----------------------------------------------


async def test_unknown_names_get_invalid_params_without_a_traceback(tmp_path: Path) -> None:
    with serving(tmp_path) as served:
        for options in ({}, {"mode": "legacy"}):
            async with Client(served.url, **options) as client:
                mistakes: list[tuple[Callable[[], Any], str]] = [
                    (lambda: client.get_prompt("nope"), "Unknown prompt: nope"),
                    (
                        lambda: client.get_prompt("plan_task", {}),
                        "prompt plan_task needs the argument(s): goal",
                    ),
                    (lambda: client.call_tool("nope", {}), "Unknown tool: nope"),
                    (
                        lambda: client.read_resource("fleetmind://nope"),
                        "Unknown resource: fleetmind://nope",
                    ),
                    (
                        lambda: client.read_resource("fleetmind://tasks/tnothing/graph"),
                        "unknown task id 'tnothing'",
                    ),
                ]
                for call, message in mistakes:
                    with pytest.raises(MCPError) as raised:
                        await call()
                    assert raised.value.error.code == -32602, (options, message)
                    assert raised.value.error.message == message
                assert not (await client.call_tool("list_agents", {})).is_error
        log = served.stop()
    assert "Traceback" not in log, log


async def test_the_plan_task_prompt_describes_the_fleet(server: MCPServer) -> None:
    async with Client(server.url) as client:
        listed = (await client.list_prompts()).prompts
        assert [p.name for p in listed] == ["plan_task"]
        assert [(a.name, a.required) for a in listed[0].arguments or []] == [("goal", True)]
        got = await client.get_prompt("plan_task", {"goal": "Greet Ada, then shout it"})
    assert len(got.messages) == 1 and got.messages[0].role == "user"
    content = got.messages[0].content
    assert content.type == "text"
    text = content.text
    assert "Greet Ada, then shout it" in text
    assert all(f"- {agent} (" in text for agent in AGENTS)
    assert "Skills: greeting." in text and '"dependencies"' in text and "submit_task" in text


# Resumable streams on the wire (protocol 2025-11-25) ----------------------------------------------


async def _session(http: httpx.AsyncClient, url: str, headers: dict[str, str]) -> dict[str, str]:
    """Open a session the handshake way; the headers its requests need."""
    init = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": HANDSHAKE,
            "capabilities": {},
            "clientInfo": {"name": "raw-httpx", "version": "0"},
        },
    }
    opened = await http.post(url, json=init, headers={**JSON_RPC, **headers})
    assert opened.status_code == 200, opened.text
    session = {
        **JSON_RPC,
        **headers,
        "Mcp-Session-Id": opened.headers["mcp-session-id"],
        "MCP-Protocol-Version": HANDSHAKE,
    }
    initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    assert (await http.post(url, json=initialized, headers=session)).status_code == 202
    return session


def _call(request_id: int, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    params = {"name": tool, "arguments": arguments, "_meta": {"progressToken": f"p{request_id}"}}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


def _events(text: str) -> list[dict[str, str]]:
    """The SSE events of a whole response body, each as its fields."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields = dict(line.partition(":")[::2] for line in block.splitlines() if line)
        if fields:
            events.append({name: value.removeprefix(" ") for name, value in fields.items()})
    return events


async def _read_until(
    response: httpx.Response, enough: Callable[[list[dict[str, str]]], bool]
) -> list[dict[str, str]]:
    """Read SSE events off a streamed response until ``enough`` says so or the stream ends."""
    events: list[dict[str, str]] = []
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
            continue
        if fields:
            events.append(fields)
            fields = {}
            if enough(events):
                break
    return events


def _messages(events: list[dict[str, str]]) -> list[dict[str, Any]]:
    """The JSON-RPC messages among SSE events (priming events have none)."""
    return [json.loads(e["data"]) for e in events if e.get("data")]


def _answer(events: list[dict[str, str]], request_id: int) -> dict[str, Any] | None:
    return next((m for m in _messages(events) if m.get("id") == request_id), None)


def _counted(events: list[dict[str, str]]) -> list[str]:
    """The agent's own progress lines, in order."""
    return [
        m["params"]["message"]
        for m in _messages(events)
        if m.get("method") == "notifications/progress"
        and m["params"]["message"].startswith("count: counted ")
    ]


async def test_a_post_stream_is_primed_and_every_event_has_an_id(server: MCPServer) -> None:
    async with httpx.AsyncClient(timeout=60) as http:
        session = await _session(http, server.url, {})
        response = await http.post(server.url, json=_call(7, "list_agents", {}), headers=session)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = _events(response.text)
    priming = events[0]
    assert priming["data"] == "" and priming["id"] and priming["retry"] == "1000"
    ids = [e.get("id") for e in events]
    assert all(ids) and len(set(ids)) == len(ids), events
    answer = _answer(events, 7)
    assert answer is not None and len(answer["result"]["structuredContent"]["agents"]) == 4


async def test_a_dropped_stream_resumes_with_last_event_id(server: MCPServer) -> None:
    """A client that lost its POST stream gets what it missed, then the rest, on a GET."""
    async with httpx.AsyncClient(timeout=60) as http:
        session = await _session(http, server.url, {})
        call = _call(8, "submit_task", {"graph": LONG, "wait": True})
        async with http.stream("POST", server.url, json=call, headers=session) as posted:
            before = await _read_until(posted, lambda seen: len(_counted(seen)) >= 4)
        # The connection is gone; the task runs on. Resume from the second counting step, as
        # if the later events had been lost on the way.
        counted_ids = [e["id"] for e in before if _counted([e])]
        resume_from = counted_ids[1]
        lost = before[[e.get("id") for e in before].index(resume_from) + 1 :]
        resumed = await http.get(
            server.url, headers={**session, "Last-Event-ID": resume_from}, timeout=120
        )
    assert resumed.status_code == 200, resumed.text
    after = _events(resumed.text)
    assert after[: len(lost)] == lost  # the missed events first, ids and all
    answer = _answer(after, 8)
    assert answer is not None and answer["result"]["structuredContent"]["status"] == "done"
    # Nothing missing, nothing twice: every step, in order, across both connections.
    steps = _counted(before[: before.index(lost[0])] if lost else before) + _counted(after)
    assert steps == [
        f"count: counted {i} of {STEPS} ({i / STEPS:.0%})" for i in range(1, STEPS + 1)
    ]


async def test_the_server_closes_a_long_stream_and_the_client_resumes(windowed: MCPServer) -> None:
    async with httpx.AsyncClient(timeout=60) as http:
        session = await _session(http, windowed.url, {})
        posted = await http.post(
            windowed.url,
            json=_call(9, "submit_task", {"graph": LONG, "wait": True}),
            headers=session,
        )
        events = _events(posted.text)
        assert _answer(events, 9) is None  # closed by the server before the answer
        connections = 1
        deadline = time.monotonic() + 120
        while _answer(events, 9) is None and time.monotonic() < deadline:
            resumed = await http.get(
                windowed.url, headers={**session, "Last-Event-ID": events[-1]["id"]}
            )
            assert resumed.status_code == 200, resumed.text
            events += _events(resumed.text)
            connections += 1
    answer = _answer(events, 9)
    assert answer is not None and answer["result"]["structuredContent"]["status"] == "done"
    assert connections >= 2
    ids = [e["id"] for e in events]
    assert len(set(ids)) == len(ids)
    steps = _counted(events)
    assert steps == [
        f"count: counted {i} of {STEPS} ({i / STEPS:.0%})" for i in range(1, STEPS + 1)
    ]


async def test_the_sdk_client_follows_a_stream_the_server_closes(windowed: MCPServer) -> None:
    seen: list[tuple[float, str | None]] = []
    ended = asyncio.Event()

    async def record(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, message))
        if message and message.startswith("task ") and message.endswith(" done"):
            ended.set()

    async with Client(windowed.url, mode="legacy") as client:
        done = await client.call_tool(
            "submit_task", {"graph": LONG, "wait": True}, progress_callback=record
        )
        assert done.structured_content["status"] == "done"
        await asyncio.wait_for(ended.wait(), 60)  # notifications may trail the result
    values = [progress for progress, _ in seen]
    assert all(later > earlier for earlier, later in itertools.pairwise(values)), values
    steps = [m for _, m in seen if m and m.startswith("count: counted ")]
    assert len(steps) == STEPS


async def test_an_event_id_of_another_session_or_none_gets_400(server: MCPServer) -> None:
    async with httpx.AsyncClient(timeout=60) as http:
        mine = await _session(http, server.url, {})
        theirs = await _session(http, server.url, {})
        posted = await http.post(server.url, json=_call(3, "list_agents", {}), headers=mine)
        priming = _events(posted.text)[0]["id"]
        replayed = await http.get(server.url, headers={**mine, "Last-Event-ID": priming})
        assert replayed.status_code == 200
        assert _answer(_events(replayed.text), 3) is not None
        for session, event_id in [(theirs, priming), (mine, "nonsense"), (mine, priming + "0")]:
            refused = await http.get(server.url, headers={**session, "Last-Event-ID": event_id})
            assert refused.status_code == 400, refused.text
            error = refused.json()["error"]
            assert error["code"] == -32600
            assert error["message"].startswith("Bad Request: unknown or expired Last-Event-ID")


async def test_a_resumption_passes_the_gate_with_the_token(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    with serving(tmp_path, "--token-file", str(token)) as served:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(timeout=60) as http:
            session = await _session(http, served.url, auth)
            posted = await http.post(served.url, json=_call(4, "list_agents", {}), headers=session)
            priming = _events(posted.text)[0]["id"]
            resume = {**session, "Last-Event-ID": priming}
            replayed = await http.get(served.url, headers=resume)
            assert replayed.status_code == 200, replayed.text
            assert _answer(_events(replayed.text), 4) is not None
            del resume["Authorization"]
            refused = await http.get(served.url, headers=resume)
            assert refused.status_code == 401


# The event store's bounds (in-process: no server needed to count what it keeps) -------------------


def _note(number: int) -> JSONRPCNotification:
    return JSONRPCNotification(jsonrpc="2.0", method="notifications/message", params={"n": number})


async def _replayed(events: StreamEvents, last_event_id: str) -> list[int]:
    """The numbers of the notifications replayed after ``last_event_id`` (until the answer)."""
    sent: list[int] = []

    async def send(event: EventMessage) -> None:
        if isinstance(event.message, JSONRPCNotification):
            sent.append((event.message.params or {})["n"])

    assert await events.replay_events_after(last_event_id, send) is None
    return sent


async def test_the_event_store_keeps_the_newest_events_of_the_newest_streams() -> None:
    events = StreamEvents(max_events=3, max_streams=2)
    first = await events.store_event("1", None)  # priming
    ids = [await events.store_event("1", _note(n)) for n in range(1, 6)]
    await events.store_event("1", JSONRPCResponse(jsonrpc="2.0", id=1, result={}))
    # Only the newest three events are kept: a resumption from before them gets those.
    assert await _replayed(events, first) == [4, 5]
    assert await _replayed(events, ids[3]) == [5]
    # A third stream pushes out the least recently written one, and its ids with it.
    await events.store_event("2", None)
    assert events.knows(first, None)
    await events.store_event("3", None)
    assert not events.knows(first, None)
    assert not events.knows("not-an-id", None)
