"""Tests for fleetmind/agents/_messages.py and what an agent does with it: the parts, the
incoming message and the reply as plain JSON (through the task store and back), streamed
artifact chunks as engine events, ``ctx.message``, and ``TaskRejected``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fleetmind import Fleet, TaskGraph, agent
from fleetmind.agents import (
    DataPart,
    FilePart,
    IncomingMessage,
    Reply,
    SubtaskContext,
    SubtaskResult,
    TextPart,
    as_reply,
    part_from_json,
    part_to_json,
)
from fleetmind.errors import MalformedMessage, TaskRejected, blames_agent, error_from_dict
from fleetmind.orchestrator import SQLiteStore, Subtask, SubtaskArtifactEvent, describe_event

MESSAGE = IncomingMessage(
    parts=(
        TextPart("summarise this", metadata={"lang": "en"}),
        FilePart(content=b"\x00\x01binary", name="a.bin", media_type="application/octet-stream"),
        FilePart(url="https://example.com/b.pdf", name="b.pdf", media_type="application/pdf"),
        DataPart([1, {"two": 2.5}, None]),
    ),
    message_id="m-1",
    task_id="a2a-task",
    context_id="ctx-1",
    metadata={"trace": "abc"},
    reference_task_ids=("earlier",),
)


def test_every_part_kind_survives_json() -> None:
    for part in MESSAGE.parts:
        encoded = json.loads(json.dumps(part_to_json(part)))
        assert part_from_json(encoded) == part


def test_a_message_survives_json_with_its_ids_metadata_and_parts() -> None:
    encoded = json.loads(json.dumps(MESSAGE.to_json()))
    assert IncomingMessage.from_json(encoded) == MESSAGE
    assert MESSAGE.text == "summarise this"
    assert [f.name for f in MESSAGE.files] == ["a.bin", "b.pdf"]
    assert MESSAGE.data == ([1, {"two": 2.5}, None],)


def test_a_reply_survives_json_and_is_recognised_in_either_form() -> None:
    reply = Reply.artifact(
        "report", FilePart(content=b"%PDF", name="r.pdf"), name="report", status="all done"
    )
    encoded = json.loads(json.dumps(reply.to_json()))
    assert Reply.from_json(encoded) == reply
    assert as_reply(encoded) == reply
    assert as_reply(reply) is reply
    assert as_reply({"parts": []}) is None  # an ordinary output that looks a little alike
    assert as_reply({"$type": "fleetmind.reply", "parts": [{"kind": "video"}]}) is None
    direct = Reply.message("hi", DataPart({"x": 1}))
    assert direct.as_message and direct.parts == (TextPart("hi"), DataPart({"x": 1}))


@pytest.mark.parametrize(
    "bad",
    [
        {"kind": "video"},
        {"kind": "text"},
        {"kind": "file", "base64": "not base64!"},
        {"kind": "file", "name": "neither content nor url"},
        {"kind": "data"},
        "text",
    ],
)
def test_a_malformed_part_is_refused_with_a_typed_error(bad: Any) -> None:
    with pytest.raises(MalformedMessage):
        part_from_json(bad)


def test_a_reply_is_kept_as_its_json_and_chunks_append_until_the_last() -> None:
    chunks: list[Any] = []
    ctx = SubtaskContext(task_id="t", subtask=Subtask(id="s"), inputs={}, _artifacts=chunks.append)
    ctx.stream_artifact(["a"], name="story")
    ctx.stream_artifact(["b"], name="story", last=True)
    ctx.stream_artifact(["c"])  # the same id, after its last chunk: a new artifact
    assert [(c.append, c.last) for c in chunks] == [(False, False), (True, True), (False, False)]
    assert SubtaskResult.of(Reply.message("x"), ctx).output == Reply.message("x").to_json()


def test_task_rejected_is_neither_retried_nor_blamed_and_travels_whole() -> None:
    error = TaskRejected("not my kind of work").to_dict()
    assert error["retryable"] is False
    assert not blames_agent(error)
    assert type(error_from_dict(error)) is TaskRejected


@agent(id="streamer")
async def streamer(ctx: SubtaskContext) -> Any:
    assert ctx.message is not None
    ctx.stream_artifact(["part one"], name="story")
    ctx.stream_artifact([DataPart({"n": 2})], name="story", last=True)
    return Reply.artifact(
        f"seen {ctx.message.message_id} with {len(ctx.message.files)} files",
        FilePart(content=b"abc", name="out.txt", media_type="text/plain"),
        status="streamed",
    )


async def test_a_task_started_from_a_message_streams_chunks_and_keeps_its_reply(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "tasks.db")
    fleet = Fleet([streamer], store=store)
    graph = TaskGraph("from a message")
    graph.add_subtask("s", agent="streamer")
    async with fleet:
        handle = fleet.submit(graph, message=MESSAGE)
        events = [e async for e in handle.events()]
        result = await handle.result()
    assert result.status == "done", result.errors
    chunks = [e for e in events if isinstance(e, SubtaskArtifactEvent)]
    assert [(c.append, c.last, c.name) for c in chunks] == [
        (False, False, "story"),
        (True, True, "story"),
    ]
    assert chunks[1].parts == ({"kind": "data", "data": {"n": 2}},)
    assert describe_event(chunks[1]) == "⇣ s: last chunk of story"
    reply = as_reply(result.outputs["s"])
    assert reply is not None and reply.status == "streamed"
    assert reply.parts[0] == TextPart("seen m-1 with 2 files")
    # The store keeps the reply as JSON and the message with the task.
    record, entries = store.load(result.task_id)
    assert IncomingMessage.from_json(record.metadata["message"]) == MESSAGE
    stored = TaskGraph.from_log(entries, name=record.name).state("s").output
    assert as_reply(stored) == reply


async def test_a_rejection_is_not_retried_and_goes_to_no_other_agent() -> None:
    calls: list[str] = []

    @agent(id="picky", skills=["chores"])
    async def picky() -> str:
        calls.append("picky")
        raise TaskRejected("I do not do chores")

    @agent(id="fussy", skills=["chores"])
    async def fussy() -> str:
        calls.append("fussy")
        raise TaskRejected("nor do I")

    graph = TaskGraph("chores")
    graph.add_subtask("c", skill="chores")
    result = await Fleet([picky, fussy]).run(graph)
    assert result.status == "failed"
    assert result.errors["c"]["type"] == "TaskRejected"
    assert len(calls) == 1, calls  # a plain failure would have gone to the other agent
