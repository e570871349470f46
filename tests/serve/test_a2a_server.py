"""`fleetmind a2a serve`: the real console script, driven by the real a2a-sdk client and httpx."""

from __future__ import annotations

import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from a2a.client import A2AClientError, Client, ClientConfig, create_client
from a2a.helpers import new_data_part
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    StreamResponse,
    Task,
    TaskState,
)
from a2a_harness import CARD, FLEETMIND, A2AServer, serving
from google.protobuf.json_format import MessageToDict
from repo_paths import FIXTURES

from fleetmind.testing import free_port

FLEET = str(FIXTURES / "a2a_fleet.py")
TOKEN = "s3cret-token"
V1 = {"A2A-Version": "1.0"}


@pytest.fixture(scope="module")
def fleet_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[A2AServer]:
    """The whole fixture fleet, no token."""
    with serving(FLEET, tmp_path_factory.mktemp("fleet")) as server:
        yield server


@pytest.fixture(scope="module")
def echo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[A2AServer]:
    """Only the echo agent, behind a bearer token."""
    home = tmp_path_factory.mktemp("echo")
    (home / "token").write_text(TOKEN + "\n")
    (home / "token").chmod(0o600)
    with serving(FLEET, home, "--agent", "echo", "--token-file", str(home / "token")) as server:
        yield server


@asynccontextmanager
async def _client(
    url: str, *, streaming: bool = False, token: str | None = None
) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(headers=headers, timeout=60) as http:
        config = ClientConfig(streaming=streaming, httpx_client=http)
        client = await create_client(url, client_config=config)
        try:
            yield client
        finally:
            await client.close()


def _request(
    text: str = "",
    *,
    data: Any = None,
    metadata: dict[str, Any] | None = None,
    task: Task | None = None,
) -> SendMessageRequest:
    parts = [Part(text=text)] if text else []
    if data is not None:
        parts.append(new_data_part(data))
    message = Message(
        role=Role.ROLE_USER,
        message_id=str(uuid.uuid4()),
        parts=parts,
        metadata=metadata or {},
        task_id=task.id if task else "",
        context_id=task.context_id if task else "",
    )
    return SendMessageRequest(message=message)


async def _send(client: Client, request: SendMessageRequest) -> Task:
    """Send without streaming: the one response holds the task."""
    responses = [r async for r in client.send_message(request)]
    assert len(responses) == 1 and responses[0].HasField("task")
    return responses[0].task


def _text(parts: Any) -> str:
    return "".join(p.text for p in parts)


async def _rpc(url: str, body: Any, *, headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(timeout=60) as http:
        if isinstance(body, bytes | str):
            return await http.post(url + "/", content=body, headers={**V1, **(headers or {})})
        return await http.post(url + "/", json=body, headers={**V1, **(headers or {})})


async def _still_serves(url: str) -> None:
    async with _client(url) as client:
        task = await _send(client, _request("still here", metadata={"agent": "echo"}))
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert _text(task.artifacts[-1].parts) == "still here"


# The card ---------------------------------------------------------------------------------


def test_the_fleets_card_lists_every_agents_skills(fleet_server: A2AServer) -> None:
    card = httpx.get(fleet_server.url + CARD).json()
    skills = {s["id"]: s for s in card["skills"]}
    assert set(skills) == {"asker/greet", "broken/break", "echo/echo", "slow/count"}
    assert skills["echo/echo"] == {
        "id": "echo/echo",
        "name": "echo",
        "description": "Repeat the text it is given, word for word.",
        "tags": ["repeat", "mirror"],
        "examples": ["echo hello world"],
    }
    assert skills["asker/greet"]["tags"] == ["greet"]  # a skill without tags is its own tag
    assert card["capabilities"]["streaming"] is True
    interfaces = card["supportedInterfaces"]
    assert [(i["protocolBinding"], i["protocolVersion"]) for i in interfaces] == [
        ("JSONRPC", "1.0"),
        ("HTTP+JSON", "1.0"),
        ("GRPC", "1.0"),
    ]
    assert interfaces[0]["url"] == fleet_server.url + "/"
    assert interfaces[1]["url"] == fleet_server.url + "/rest"
    assert interfaces[2]["url"].startswith("127.0.0.1:")  # a port of its own
    assert card["defaultInputModes"] == ["text/plain", "application/json"]
    assert "securitySchemes" not in card and "securityRequirements" not in card


def test_one_agents_card_is_its_profile_and_declares_the_token(echo_server: A2AServer) -> None:
    response = httpx.get(echo_server.url + CARD)  # public, though the endpoint needs a token
    assert response.status_code == 200
    card = response.json()
    assert card["name"] == "echo"
    assert card["description"] == "Echo the text it is given."
    assert card["version"] == "3"
    assert [s["id"] for s in card["skills"]] == ["echo"]
    assert card["securitySchemes"] == {
        "bearer": {
            "httpAuthSecurityScheme": {
                "scheme": "Bearer",
                "description": "The token given to `fleetmind a2a serve`.",
            }
        }
    }
    assert card["securityRequirements"] == [{"schemes": {"bearer": {}}}]


# Messages, tasks, streams -------------------------------------------------------------------


async def test_send_message_completes_with_the_output_as_the_last_artifact(
    echo_server: A2AServer,
) -> None:
    async with _client(echo_server.url, token=TOKEN) as client:
        task = await _send(client, _request("hello over A2A"))
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert [a.artifact_id for a in task.artifacts] == ["subtask-request", "result"]
    assert _text(task.artifacts[-1].parts) == "hello over A2A"
    assert task.history[0].role == Role.ROLE_USER


async def test_get_task_returns_the_finished_task(fleet_server: A2AServer) -> None:
    async with _client(fleet_server.url) as client:
        sent = await _send(client, _request("keep me", metadata={"agent": "echo"}))
        got = await client.get_task(GetTaskRequest(id=sent.id))
    assert got.id == sent.id and got.context_id == sent.context_id
    assert got.status.state == TaskState.TASK_STATE_COMPLETED
    assert [_text(a.parts) for a in got.artifacts] == ["keep me", "keep me"]
    assert _text(got.history[0].parts) == "keep me"


async def test_streaming_reports_progress_then_artifacts_then_completed(
    fleet_server: A2AServer,
) -> None:
    async with _client(fleet_server.url, streaming=True) as client:
        request = _request("count for me", data={"steps": 3}, metadata={"agent": "slow"})
        events: list[StreamResponse] = [e async for e in client.send_message(request)]

    assert events[0].HasField("task")
    assert events[0].task.status.state == TaskState.TASK_STATE_SUBMITTED
    updates = [e.status_update for e in events if e.HasField("status_update")]
    working = [u for u in updates if u.status.state == TaskState.TASK_STATE_WORKING]
    texts = [_text(u.status.message.parts) for u in working]
    assert "request: started on slow" in texts
    assert [t for t in texts if "step" in t] == [
        "request: step 1 of 3 (33%)",
        "request: step 2 of 3 (67%)",
        "request: step 3 of 3 (100%)",
    ]
    progress = [MessageToDict(u.status.message.metadata) for u in working]
    assert {"event": "subtask_progress", "subtaskId": "request", "fraction": 1.0} in progress

    artifacts = [e.artifact_update.artifact for e in events if e.HasField("artifact_update")]
    assert [a.artifact_id for a in artifacts] == ["subtask-request", "result"]
    assert _text(artifacts[-1].parts) == "counted to 3"
    assert events[-1].HasField("status_update")
    assert events[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED
    # The progress came before the first artifact.
    last_step = max(i for i, e in enumerate(events) if "step 3 of 3" in str(e))
    first_artifact = min(i for i, e in enumerate(events) if e.HasField("artifact_update"))
    assert last_step < first_artifact


async def test_cancel_task_cancels_the_running_subtask(fleet_server: A2AServer) -> None:
    request = _request("hold on", data={"hold": True}, metadata={"agent": "slow"})
    async with _client(fleet_server.url, streaming=True) as client:
        states: list[int] = []
        cancelled: Task | None = None
        async for event in client.send_message(request):
            if not event.HasField("status_update"):
                continue
            update = event.status_update
            states.append(update.status.state)
            if cancelled is None and "holding" in _text(update.status.message.parts):
                cancelled = await client.cancel_task(CancelTaskRequest(id=update.task_id))
        assert cancelled is not None
        assert cancelled.status.state == TaskState.TASK_STATE_CANCELED
        assert states[-1] == TaskState.TASK_STATE_CANCELED
        got = await client.get_task(GetTaskRequest(id=cancelled.id))
    assert got.status.state == TaskState.TASK_STATE_CANCELED
    assert [a.artifact_id for a in got.artifacts] == []


async def test_input_required_then_a_reply_on_the_same_task_completes(
    fleet_server: A2AServer,
) -> None:
    async with _client(fleet_server.url) as client:
        asked = await _send(client, _request("greet me", metadata={"agent": "asker"}))
        assert asked.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
        assert _text(asked.status.message.parts) == "What is your name?"
        parked = await client.get_task(GetTaskRequest(id=asked.id))
        assert parked.status.state == TaskState.TASK_STATE_INPUT_REQUIRED

        done = await _send(client, _request("Ada", task=asked))
    assert done.id == asked.id
    assert done.status.state == TaskState.TASK_STATE_COMPLETED
    assert _text(done.artifacts[-1].parts) == "hello Ada"
    user_texts = [_text(m.parts) for m in done.history if m.role == Role.ROLE_USER]
    assert user_texts == ["greet me", "Ada"]


async def test_cancel_task_while_waiting_for_input(fleet_server: A2AServer) -> None:
    async with _client(fleet_server.url) as client:
        asked = await _send(client, _request("greet me", metadata={"agent": "asker"}))
        assert asked.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
        cancelled = await client.cancel_task(CancelTaskRequest(id=asked.id))
    assert cancelled.status.state == TaskState.TASK_STATE_CANCELED


async def test_a_data_part_with_a_graph_definition_runs_that_graph(fleet_server: A2AServer) -> None:
    graph = {
        "name": "two echoes",
        "subtasks": [
            {"id": "first", "agent": "echo", "inputs": {"text": "relayed"}},
            {"id": "second", "agent": "echo"},
        ],
        "dependencies": [{"source": "first", "target": "second", "kind": "data", "input": "text"}],
    }
    async with _client(fleet_server.url) as client:
        task = await _send(client, _request(data=graph))
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert [a.artifact_id for a in task.artifacts] == ["subtask-first", "subtask-second", "result"]
    assert _text(task.artifacts[-1].parts) == "relayed"


async def test_structured_outputs_travel_as_data_parts(fleet_server: A2AServer) -> None:
    graph = {
        "subtasks": [
            {"id": "a", "agent": "echo", "inputs": {"text": "one"}},
            {"id": "b", "agent": "echo", "inputs": {"text": "two"}},
        ]
    }
    async with _client(fleet_server.url) as client:
        task = await _send(client, _request(data=graph))
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    final = task.artifacts[-1].parts[0]
    assert final.HasField("data")  # two final subtasks: their outputs by id
    assert MessageToDict(final.data) == {"a": "one", "b": "two"}


async def test_plain_text_is_routed_by_the_fleets_router(fleet_server: A2AServer) -> None:
    async with _client(fleet_server.url) as client:
        task = await _send(client, _request("please echo this sentence back to me"))
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert task.artifacts[0].metadata["agent"] == "echo"
    assert _text(task.artifacts[-1].parts) == "please echo this sentence back to me"


async def test_a_failed_subtask_fails_the_task(fleet_server: A2AServer) -> None:
    async with _client(fleet_server.url) as client:
        task = await _send(client, _request("this", metadata={"skill": "break"}))
    assert task.status.state == TaskState.TASK_STATE_FAILED
    assert _text(task.status.message.parts) == "failed: request: cannot do 'this'"
    errors = MessageToDict(task.status.message.metadata)["errors"]
    assert errors["request"]["type"] == "SubtaskFailed"
    assert [a.artifact_id for a in task.artifacts] == []


async def test_a_subtask_no_agent_can_take_is_rejected(fleet_server: A2AServer) -> None:
    async with _client(fleet_server.url) as client:
        task = await _send(client, _request("anyone?", metadata={"agent": "nobody"}))
    assert task.status.state == TaskState.TASK_STATE_REJECTED
    assert "nobody" in _text(task.status.message.parts)


# Bearer token ---------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", TOKEN])
async def test_a_missing_or_wrong_token_gets_401(
    echo_server: A2AServer, header: str | None
) -> None:
    body = {"jsonrpc": "2.0", "id": 7, "method": "GetTask", "params": {"id": "x"}}
    headers = {"Authorization": header} if header else {}
    response = await _rpc(echo_server.url, body, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    error = response.json()
    assert error["jsonrpc"] == "2.0" and error["id"] is None
    assert error["error"]["code"] == -32000
    assert "Unauthorized" in error["error"]["message"]


async def test_the_client_without_the_token_is_refused(echo_server: A2AServer) -> None:
    async with _client(echo_server.url) as client:
        with pytest.raises(A2AClientError, match="401"):
            await _send(client, _request("let me in"))


async def test_the_right_token_is_let_through(echo_server: A2AServer) -> None:
    body = {"jsonrpc": "2.0", "id": 8, "method": "GetTask", "params": {"id": "no-such-task"}}
    response = await _rpc(echo_server.url, body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response.json()["error"]["code"] == -32001  # past the gate: the task is unknown


# Protocol errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code"),
    [
        pytest.param(b"{not json", -32700, id="not-json"),
        pytest.param({"jsonrpc": "2.0", "id": 1, "params": {}}, -32600, id="no-method"),
        pytest.param({"jsonrpc": "2.0", "id": 2, "method": "NoSuchMethod"}, -32601, id="unknown"),
        pytest.param(
            {"jsonrpc": "2.0", "id": 3, "method": "SendMessage", "params": {"message": 5}},
            -32602,
            id="bad-params",
        ),
        pytest.param(
            {"jsonrpc": "2.0", "id": 4, "method": "GetTask", "params": {"id": "nope"}},
            -32001,
            id="unknown-task",
        ),
        pytest.param(
            {"jsonrpc": "2.0", "id": 5, "method": "CancelTask", "params": {"id": "nope"}},
            -32001,
            id="cancel-unknown-task",
        ),
    ],
)
async def test_malformed_requests_get_json_rpc_errors(
    fleet_server: A2AServer, body: Any, code: int
) -> None:
    response = await _rpc(fleet_server.url, body)
    assert response.status_code == 200
    payload = response.json()
    assert payload["jsonrpc"] == "2.0"
    assert payload["error"]["code"] == code
    if isinstance(body, dict):
        assert payload["id"] == body["id"]
    await _still_serves(fleet_server.url)


async def test_a_message_with_nothing_to_do_is_invalid_params(fleet_server: A2AServer) -> None:
    message = {"role": "ROLE_USER", "messageId": "m1", "parts": [{"data": [1, 2]}]}
    body = {"jsonrpc": "2.0", "id": 9, "method": "SendMessage", "params": {"message": message}}
    response = await _rpc(fleet_server.url, body)
    assert response.json()["error"]["code"] == -32602
    assert "JSON object" in response.json()["error"]["message"]
    await _still_serves(fleet_server.url)


async def test_an_invalid_graph_definition_is_invalid_params(fleet_server: A2AServer) -> None:
    graph = {"subtasks": [{"id": "a", "agent": "echo"}], "dependencies": [{"source": "a"}]}
    message = {"role": "ROLE_USER", "messageId": "m2", "parts": [{"data": graph}]}
    body = {"jsonrpc": "2.0", "id": 11, "method": "SendMessage", "params": {"message": message}}
    response = await _rpc(fleet_server.url, body)
    error = response.json()["error"]
    assert error["code"] == -32602
    assert error["message"].startswith("invalid task graph: ")
    await _still_serves(fleet_server.url)


async def test_an_oversized_body_gets_413_and_the_server_keeps_serving(
    fleet_server: A2AServer,
) -> None:
    text = "x" * (5 * 1024 * 1024)
    message = {"role": "ROLE_USER", "messageId": "big", "parts": [{"text": text}]}
    body = {"jsonrpc": "2.0", "id": 10, "method": "SendMessage", "params": {"message": message}}
    response = await _rpc(fleet_server.url, body)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == -32600
    assert "too large" in response.json()["error"]["message"]
    async with httpx.AsyncClient() as http:
        assert (await http.get(fleet_server.url + CARD)).status_code == 200
    await _still_serves(fleet_server.url)


# The command line ---------------------------------------------------------------------------


async def test_sigterm_stops_the_server_cleanly_while_a_task_runs(tmp_path: Path) -> None:
    with serving(FLEET, tmp_path) as server:
        request = _request("hold on", data={"hold": True}, metadata={"agent": "slow"})
        async with _client(server.url, streaming=True) as client:
            async for event in client.send_message(request):
                if event.HasField("status_update") and "holding" in str(event):
                    break
        code = server.stop()
    assert code == 0, server.log.read_text()
    assert "stopped" in server.log.read_text()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FLEETMIND, "a2a", "serve", "--fleet", FLEET, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_an_unknown_agent_is_a_one_line_error(tmp_path: Path) -> None:
    done = _cli("--agent", "nobody", "--port", str(free_port()), "--data-dir", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.startswith("fleetmind: error: ")
    assert "no agent 'nobody'" in done.stderr and "echo" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("content", [None, "", "two words"])
def test_a_bad_token_file_is_a_one_line_error(tmp_path: Path, content: str | None) -> None:
    token = tmp_path / "token"
    if content is not None:
        token.write_text(content)
    done = _cli("--port", str(free_port()), "--token-file", str(token), "--data-dir", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.startswith("fleetmind: error: token file") or "cannot read" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_taken_port_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = _cli("--port", str(port), "--data-dir", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.startswith("fleetmind: error: cannot listen on 127.0.0.1:")
    assert len(done.stderr.strip().splitlines()) == 1
