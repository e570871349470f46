"""What agents see of an A2A message and how they answer, end to end: `fleetmind a2a serve` of
a fixture fleet in its own process, driven by the a2a-sdk client.

Agents see the message's id, metadata, the A2A task and context ids, and its file parts; they
answer with files and data parts, a direct message (no task), an artifact streamed in chunks,
a status text, or a rejection. A fleet that calls such a server through ``A2AAgent`` streams the
chunks on as its own events.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from a2a.client import Client
from a2a.types import (
    GetTaskRequest,
    ListTasksRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    StreamResponse,
    Task,
    TaskState,
)
from a2a_harness import sdk_client, serving
from google.protobuf.json_format import MessageToDict
from repo_paths import FIXTURES

from fleetmind import Fleet, TaskGraph
from fleetmind.agents import DataPart, FilePart, TextPart, as_reply
from fleetmind.orchestrator import SubtaskArtifactEvent

pytestmark = pytest.mark.timeout(180)
FLEET = str(FIXTURES / "a2a_agent_api_fleet.py")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The whole fixture fleet; a message names its agent in its metadata."""
    with serving(FLEET, tmp_path_factory.mktemp("api"), start_s=90) as running:
        yield running.url


@pytest.fixture(scope="module")
def mirror_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Only the mirror agent: every message goes to it."""
    home = tmp_path_factory.mktemp("mirror")
    with serving(FLEET, home, "--agent", "mirror", start_s=90) as running:
        yield running.url


@pytest.fixture(scope="module")
def streamer_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Only the streamer agent: every message goes to it."""
    home = tmp_path_factory.mktemp("streamer")
    with serving(FLEET, home, "--agent", "streamer", start_s=90) as running:
        yield running.url


def _request(agent: str, *parts: Part, **metadata: Any) -> SendMessageRequest:
    message = Message(
        role=Role.ROLE_USER,
        message_id=str(uuid.uuid4()),
        parts=list(parts),
        metadata={"agent": agent, **metadata},
    )
    return SendMessageRequest(message=message)


async def _responses(client: Client, request: SendMessageRequest) -> list[StreamResponse]:
    return [r async for r in client.send_message(request)]


async def _task(client: Client, request: SendMessageRequest) -> Task:
    responses = await _responses(client, request)
    assert len(responses) == 1 and responses[0].HasField("task"), responses
    return responses[0].task


def _data(part: Part) -> Any:
    return MessageToDict(part.data)


async def test_the_agent_sees_the_message_and_answers_with_data_a_file_and_a_status(
    server: str,
) -> None:
    request = _request(
        "inspector",
        Part(text="look at these"),
        Part(raw=b"file body", filename="notes.txt", media_type="text/plain"),
        Part(url="https://example.com/a.txt", filename="a.txt", media_type="text/plain"),
        trace="t-42",
    )
    request.message.reference_task_ids.append("an-earlier-task")
    async with sdk_client(server) as client:
        task = await _task(client, request)

    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert "".join(p.text for p in task.status.message.parts) == "inspected"
    result = task.artifacts[-1]
    assert result.artifact_id == "result" and result.name == "inspection"
    seen_part, file_part = result.parts
    seen = _data(seen_part)
    assert seen["message_id"] == request.message.message_id
    assert (seen["task_id"], seen["context_id"]) == (task.id, task.context_id)
    assert seen["metadata"] == {"agent": "inspector", "trace": "t-42"}
    assert seen["reference_task_ids"] == ["an-earlier-task"]
    assert seen["text"] == "look at these"
    assert seen["files"] == [
        {"name": "notes.txt", "media_type": "text/plain", "content": "file body", "url": None},
        {
            "name": "a.txt",
            "media_type": "text/plain",
            "content": None,
            "url": "https://example.com/a.txt",
        },
    ]
    assert "files" in seen["inputs"] and "text" in seen["inputs"]
    assert file_part.raw == b"seen: look at these"
    assert (file_part.filename, file_part.media_type) == ("seen.txt", "text/plain")


@pytest.mark.parametrize("streaming", [False, True])
async def test_a_direct_reply_is_a_message_and_no_task(server: str, streaming: bool) -> None:
    request = _request("greeter", Part(text="world"))
    async with sdk_client(server, streaming=streaming) as client:
        responses = await _responses(client, request)
        assert [r.WhichOneof("payload") for r in responses] == ["message"]
        message = responses[0].message
        assert message.role == Role.ROLE_AGENT
        assert [p.text for p in message.parts] == ["hello, world"]
        assert MessageToDict(message.metadata) == {"mood": "cheerful"}
        assert not message.task_id and message.context_id
        # No task was made for it: the context holds none.
        listed = await client.list_tasks(ListTasksRequest(context_id=message.context_id))
        assert list(listed.tasks) == []


async def test_a_direct_reply_after_progress_ends_the_task_with_it(server: str) -> None:
    async with sdk_client(server, streaming=True) as client:
        responses = await _responses(client, _request("chatty", Part(text="shall we?")))
    kinds = [r.WhichOneof("payload") for r in responses]
    assert kinds[0] == "task" and "message" not in kinds
    final = responses[-1].status_update.status
    assert final.state == TaskState.TASK_STATE_COMPLETED
    assert [p.text for p in final.message.parts] == ["answered", "after some thought: yes"]


async def test_a_client_that_wants_the_task_at_once_gets_it(server: str) -> None:
    async with sdk_client(server, polling=True) as client:
        first = await _task(client, _request("greeter", Part(text="there")))
        deadline = time.monotonic() + 60
        task = first
        while task.status.state != TaskState.TASK_STATE_COMPLETED:
            assert time.monotonic() < deadline, task
            await asyncio.sleep(0.02)  # a polling client's pace
            task = await client.get_task(GetTaskRequest(id=first.id))
    assert [p.text for p in task.status.message.parts] == ["hello, there"]


async def test_a_streamed_artifact_arrives_in_chunks(server: str) -> None:
    async with sdk_client(server, streaming=True) as client:
        responses = await _responses(client, _request("streamer", Part(text="a story")))
    chunks = [
        r.artifact_update
        for r in responses
        if r.HasField("artifact_update") and r.artifact_update.artifact.name == "story"
    ]
    assert [(c.append, c.last_chunk) for c in chunks] == [
        (False, False),
        (True, False),
        (True, True),
    ]
    assert len({c.artifact.artifact_id for c in chunks}) == 1
    assert chunks[0].artifact.parts[0].text == "once upon a time"
    assert _data(chunks[1].artifact.parts[0]) == {"chapter": 2}
    assert responses[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED
    async with sdk_client(server) as client:  # the stored task holds the whole artifact
        task = await client.get_task(GetTaskRequest(id=chunks[0].task_id))
    story = next(a for a in task.artifacts if a.name == "story")
    assert [p.WhichOneof("content") for p in story.parts] == ["text", "data", "text"]


async def test_an_agent_rejects_the_task(server: str) -> None:
    async with sdk_client(server) as client:
        task = await _task(client, _request("refuser", Part(text="do the dishes")))
    assert task.status.state == TaskState.TASK_STATE_REJECTED
    text = "".join(p.text for p in task.status.message.parts)
    assert "I will not do the dishes" in text


async def test_a_fleet_calling_an_agent_over_a2a_sees_what_it_sent(mirror_server: str) -> None:
    fleet = Fleet()
    await fleet.add_a2a_agent(mirror_server, agent_id="remote")
    graph = TaskGraph("across")
    graph.add_subtask("files", agent="remote", inputs={"text": "a file please", "x": 7})
    graph.add_subtask("chat", agent="remote", inputs={"text": "a message please"})
    async with fleet:
        result = await fleet.run(graph)
    assert result.status == "done", result.errors
    files = as_reply(result.outputs["files"])
    assert files is not None and not files.as_message
    assert files.parts == (
        DataPart({"x": 7}),
        FilePart(content=b"a file please", name="said.txt", media_type="text/plain"),
    )
    chat = as_reply(result.outputs["chat"])
    assert chat is not None and chat.as_message
    assert chat.parts == (TextPart("you said: a message please"),)
    assert chat.metadata == {"mood": "cheerful"}


async def test_a_fleet_calling_a_streaming_fleet_over_a2a_streams_its_chunks_on(
    streamer_server: str,
) -> None:
    fleet = Fleet()
    await fleet.add_a2a_agent(streamer_server, agent_id="remote")
    graph = TaskGraph("relay")
    graph.add_subtask("tell", agent="remote", inputs={"text": "a story"})
    async with fleet:
        handle = fleet.submit(graph)
        events = [e async for e in handle.events()]
        result = await handle.result()
    assert result.status == "done", result.errors
    assert result.outputs["tell"] == "told"  # the whole answer, as without streaming
    chunks = [e for e in events if isinstance(e, SubtaskArtifactEvent) and e.name == "story"]
    assert [(c.subtask_id, c.append, c.last) for c in chunks] == [
        ("tell", False, False),
        ("tell", True, False),
        ("tell", True, True),
    ]
    assert len({c.artifact_id for c in chunks}) == 1
    assert [c.parts for c in chunks] == [
        ({"kind": "text", "text": "once upon a time"},),
        ({"kind": "data", "data": {"chapter": 2}},),
        ({"kind": "text", "text": "the end"},),
    ]
    done = next(i for i, e in enumerate(events) if e.kind == "subtask_done")
    assert all(events.index(c) < done for c in chunks)
