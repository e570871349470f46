"""Answering a task that stopped for questions continues the same task: finished subtasks are
not run again, the asking ones (and those their question held back) run with the reply."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from fleetmind import Fleet, InputRequired, TaskGraph, agent
from fleetmind._task_log import SubtaskAnswered, SubtaskFinished, SubtaskStarted
from fleetmind.agents import (
    Agent,
    FilePart,
    IncomingMessage,
    SubtaskContext,
    TextPart,
    part_to_json,
)
from fleetmind.errors import (
    FleetStateError,
    GraphError,
    NotWaitingForInput,
    SubtaskFailed,
    TaskNotFound,
)

QUESTION = {
    "type": "InputRequired",
    "message": "which colour?",
    "retryable": False,
    "details": {"question": "which colour?"},
}


def make_agents(runs: Counter[str]) -> list[Agent]:
    """Agents that count their runs: a fetcher, an asker (until it has a reply), a painter."""

    @agent(id="fetcher", skills=["fetch"])
    async def fetcher() -> str:
        runs["fetch"] += 1
        return "canvas"

    @agent(id="asker", skills=["ask"])
    async def asker(thing: str, reply: str | None = None) -> str:
        runs["ask"] += 1
        if reply is None:
            raise InputRequired("which colour?")
        return f"{reply} {thing}"

    @agent(id="painter", skills=["paint"])
    async def painter(what: str) -> str:
        runs["paint"] += 1
        return f"painted {what}"

    @agent(id="breaker", skills=["break"])
    async def breaker() -> str:
        raise SubtaskFailed("broken for good", retryable=False)

    return [fetcher, asker, painter, breaker]


def chain() -> TaskGraph:
    """fetch -> ask -> paint, and a side subtask that needs nothing."""
    graph = TaskGraph("chain")
    graph.add_subtask("fetch", skill="fetch")
    graph.add_subtask("ask", skill="ask")
    graph.add_dependency("fetch", "ask", kind="data", input="thing")
    graph.add_subtask("paint", skill="paint")
    graph.add_dependency("ask", "paint", kind="data", input="what")
    graph.add_subtask("side", skill="fetch")
    return graph


async def test_an_answer_runs_only_what_the_question_held_back(tmp_path: Path) -> None:
    runs: Counter[str] = Counter()
    async with Fleet(make_agents(runs), store=tmp_path / "fleet.db") as fleet:
        first = await fleet.submit(chain()).result()
        assert first.status == "failed"
        assert first.errors["paint"]["type"] == "UpstreamFailed"
        assert fleet.questions(first.task_id) == {"ask": "which colour?"}
        assert runs == {"fetch": 2, "ask": 1}

        handle = fleet.answer(first.task_id, {"ask": "blue"})
        result = await handle.result()

    assert handle.task_id == first.task_id  # the same task, not a new one
    assert result.status == "done"
    assert result.outputs == {
        "fetch": "canvas",
        "side": "canvas",
        "ask": "blue canvas",
        "paint": "painted blue canvas",
    }
    assert runs == {"fetch": 2, "ask": 2, "paint": 1}  # fetch and side ran once
    assert result.graph.subtask("ask").inputs == {"reply": "blue"}
    assert result.graph.state("ask").total_attempts == 2
    assert fleet.questions(first.task_id) == {}
    record, entries = fleet.store.load(first.task_id)
    assert record.status == "done"
    assert [e.subtask_id for e in entries if isinstance(e, SubtaskAnswered)] == ["ask"]


async def test_subtasks_added_while_the_task_ran_stay(tmp_path: Path) -> None:
    runs: Counter[str] = Counter()
    started = asyncio.Event()
    release = asyncio.Event()

    @agent(id="slow-asker", skills=["slow-ask"])
    async def slow_asker(reply: str | None = None) -> str:
        runs["slow-ask"] += 1
        if reply is None:
            started.set()
            await release.wait()
            raise InputRequired("go on?")
        return reply

    graph = TaskGraph("grows")
    graph.add_subtask("ask", skill="slow-ask")
    async with Fleet([*make_agents(runs), slow_asker], store=tmp_path / "f.db") as fleet:
        handle = fleet.submit(graph)
        await started.wait()
        await handle.add_subtask("extra", skill="fetch")
        await handle.add_subtask("after", skill="paint", inputs={"what": "x"}, depends_on=["ask"])
        release.set()
        first = await handle.result()
        assert first.status == "failed"
        assert runs == {"slow-ask": 1, "fetch": 1}

        result = await fleet.answer(first.task_id, {"ask": "yes"}).result()

    assert result.status == "done"
    assert [s.id for s in result.graph] == ["ask", "extra", "after"]
    assert result.outputs["ask"] == "yes"
    assert runs == {"slow-ask": 2, "fetch": 1, "paint": 1}


async def test_the_question_survives_a_restart_of_the_fleet(tmp_path: Path) -> None:
    runs: Counter[str] = Counter()
    path = tmp_path / "fleet.db"
    first = await Fleet(make_agents(runs), store=path).run(chain())

    fleet = Fleet(make_agents(runs), store=path)
    assert fleet.questions(first.task_id[:6]) == {"ask": "which colour?"}
    async with fleet:
        result = await fleet.answer(first.task_id[:6], {"ask": "red"}).result()

    assert result.outputs["paint"] == "painted red canvas"
    assert runs == {"fetch": 2, "ask": 2, "paint": 1}


async def test_answering_one_of_two_questions_leaves_the_other_waiting() -> None:
    runs: Counter[str] = Counter()
    graph = TaskGraph("two")
    graph.add_subtask("one", skill="ask", inputs={"thing": "a"})
    graph.add_subtask("two", skill="ask", inputs={"thing": "b"})
    async with Fleet(make_agents(runs)) as fleet:
        first = await fleet.submit(graph).result()
        assert fleet.questions(first.task_id) == {"one": "which colour?", "two": "which colour?"}

        again = await fleet.answer(first.task_id, {"one": "green"}).result()
        assert again.status == "failed"
        assert again.outputs == {"one": "green a"}
        assert fleet.questions(first.task_id) == {"two": "which colour?"}

        last = await fleet.answer(first.task_id, {"two": "grey"}).result()
    assert last.outputs == {"one": "green a", "two": "grey b"}
    assert runs == {"ask": 4}


async def test_a_task_that_is_not_waiting_for_input_is_refused(tmp_path: Path) -> None:
    runs: Counter[str] = Counter()
    done = TaskGraph("done")
    done.add_subtask("fetch", skill="fetch")
    broken = chain()
    broken.add_subtask("break", skill="break")
    async with Fleet(make_agents(runs), store=tmp_path / "f.db") as fleet:
        finished = await fleet.submit(done).result()
        with pytest.raises(NotWaitingForInput, match=r"is not waiting for input \(it is done\)"):
            fleet.answer(finished.task_id, {"fetch": "x"})

        failed = await fleet.submit(broken).result()
        assert fleet.questions(failed.task_id) == {}  # it failed for another reason too
        with pytest.raises(NotWaitingForInput, match="it is failed"):
            fleet.answer(failed.task_id, {"ask": "x"})

        asking = await fleet.submit(chain()).result()
        with pytest.raises(NotWaitingForInput, match=r"subtask 'fetch' of task .* asked nothing"):
            fleet.answer(asking.task_id, {"fetch": "x"})
        with pytest.raises(NotWaitingForInput, match=r"no reply given; .* waits on: ask"):
            fleet.answer(asking.task_id, {})
        with pytest.raises(TaskNotFound):
            fleet.answer("no-such-task", {"ask": "x"})
        _, entries = fleet.store.load(asking.task_id)
        assert not any(isinstance(e, SubtaskAnswered) for e in entries)  # nothing was written

    with pytest.raises(FleetStateError, match="needs a started fleet"):
        fleet.answer(asking.task_id, {"ask": "x"})


# The fold: what the log entry does to a graph ------------------------------------------------


def asked_graph() -> TaskGraph:
    """a -> asker -> b, asker -> c (runs only if asker fails), d independent; asker asked."""
    graph = TaskGraph("g")
    for sid in ("a", "asker", "b", "c", "d"):
        graph.add_subtask(sid)
    graph.add_dependency("a", "asker")
    graph.add_dependency("asker", "b")
    graph.add_dependency("asker", "c", condition="failure")
    for sid, output in (("a", 1), ("d", 4)):
        graph.apply(SubtaskStarted(subtask_id=sid, agent="x"))
        graph.apply(SubtaskFinished(subtask_id=sid, status="done", output=output))
    graph.apply(SubtaskStarted(subtask_id="asker", agent="x"))
    graph.apply(SubtaskFinished(subtask_id="asker", status="failed", error=QUESTION))
    graph.apply(SubtaskStarted(subtask_id="c", agent="x"))
    graph.apply(SubtaskFinished(subtask_id="c", status="done", output="fallback"))
    return graph


def test_the_answer_reopens_the_asker_and_what_it_held_back() -> None:
    graph = asked_graph()
    assert graph.is_finished and graph.status == "failed"

    graph.apply(SubtaskAnswered(subtask_id="asker", answer={"colour": "blue"}))

    assert not graph.is_finished
    assert graph.status == "running"
    assert graph.counts()["done"] == 3  # a, d and the fallback c that ran
    assert graph.state("asker").status == "ready"
    assert graph.state("asker").error is None
    assert graph.state("b").status == "pending"
    assert graph.subtask("asker").inputs == {"reply": {"colour": "blue"}}
    assert TaskGraph.from_log(graph.log, "g").to_dict() == graph.to_dict()


def test_a_subtask_held_back_for_another_reason_stays_settled() -> None:
    graph = TaskGraph("g")
    for sid in ("a", "asker", "s", "e"):
        graph.add_subtask(sid)
    graph.add_dependency("a", "s", condition="failure")
    graph.add_dependency("s", "e")
    graph.add_dependency("asker", "e", kind="data", input="x")
    graph.apply(SubtaskStarted(subtask_id="a", agent="x"))
    graph.apply(SubtaskFinished(subtask_id="a", status="done"))
    graph.apply(SubtaskStarted(subtask_id="asker", agent="x"))
    graph.apply(SubtaskFinished(subtask_id="asker", status="failed", error=QUESTION))
    assert graph.state("e").status == "skipped"

    graph.apply(SubtaskAnswered(subtask_id="asker", answer="x", input="colour"))

    assert graph.state("asker").status == "ready"
    assert graph.state("e").status == "skipped"  # s still skips it, answer or not
    assert graph.subtask("asker").inputs == {"colour": "x"}
    graph.apply(SubtaskStarted(subtask_id="asker", agent="x"))
    graph.apply(SubtaskFinished(subtask_id="asker", status="done", output="ok"))
    assert graph.is_finished and graph.status == "done"


def test_only_a_subtask_that_asked_can_be_answered() -> None:
    graph = asked_graph()
    for sid in ("a", "b", "nope"):
        with pytest.raises(GraphError):
            graph.apply(SubtaskAnswered(subtask_id=sid, answer="x"))
    assert graph.is_finished  # nothing changed

    other = TaskGraph("other")
    other.add_subtask("s")
    other.apply(SubtaskStarted(subtask_id="s", agent="x"))
    error = {**QUESTION, "type": "SubtaskFailed"}
    other.apply(SubtaskFinished(subtask_id="s", status="failed", error=error))
    with pytest.raises(GraphError, match="'s' is not waiting for input"):
        other.apply(SubtaskAnswered(subtask_id="s", answer="x"))


# The answering message: the asker's ctx.message and files ----------------------------------

FIRST = IncomingMessage(parts=(TextPart("paint the canvas"),), message_id="m-first", task_id="t1")
PHOTO = FilePart(content=b"\x89PNG colour", name="colour.png", media_type="image/png")
FOLLOW_UP = IncomingMessage(
    parts=(TextPart("blue, as in the photo"), PHOTO),
    message_id="m-follow-up",
    task_id="t1",
    metadata={"from": "client"},
)


def seeing_agents(seen: list[tuple[str, Any]], held: asyncio.Event | None = None) -> list[Agent]:
    """Agents that record what they see: the asker its message, reply and files; a noter its
    message. With ``held``, the answered asker sets it and runs on forever (a process that
    stops meanwhile)."""

    @agent(id="asker", skills=["ask"])
    async def asker(
        ctx: SubtaskContext, reply: str | None = None, reply_files: list[Any] | None = None
    ) -> str:
        seen.append(("ask", (ctx.message, reply, reply_files)))
        if reply is None:
            raise InputRequired("which colour?")
        if held is not None:
            held.set()
            await asyncio.Event().wait()
        return reply

    @agent(id="noter", skills=["note"])
    async def noter(ctx: SubtaskContext) -> str:
        seen.append((ctx.subtask.id, ctx.message))
        return "noted"

    return [asker, noter]


def asking_graph() -> TaskGraph:
    """side; ask -> after (held back by the question)."""
    graph = TaskGraph("asking")
    graph.add_subtask("side", skill="note")
    graph.add_subtask("ask", skill="ask")
    graph.add_subtask("after", skill="note", depends_on=["ask"])
    return graph


async def test_the_answering_message_reaches_the_asker_only(tmp_path: Path) -> None:
    seen: list[tuple[str, Any]] = []
    async with Fleet(seeing_agents(seen), store=tmp_path / "f.db") as fleet:
        first = await fleet.submit(asking_graph(), message=FIRST).result()
        assert fleet.questions(first.task_id) == {"ask": "which colour?"}
        result = await fleet.answer(first.task_id, {"ask": "blue"}, message=FOLLOW_UP).result()

    assert result.status == "done"
    asked = [value for sid, value in seen if sid == "ask"]
    assert asked == [(FIRST, None, None), (FOLLOW_UP, "blue", [part_to_json(PHOTO)])]
    assert dict((sid, v) for sid, v in seen if sid != "ask") == {"side": FIRST, "after": FIRST}
    _, entries = fleet.store.load(first.task_id)
    (answered,) = [e for e in entries if isinstance(e, SubtaskAnswered)]
    assert answered.message == FOLLOW_UP.to_json()  # plain JSON in the log


async def test_the_answering_message_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "f.db"
    seen: list[tuple[str, Any]] = []
    held = asyncio.Event()

    async def first_process() -> None:
        async with Fleet(seeing_agents(seen, held), store=path) as fleet:
            first = await fleet.submit(asking_graph(), task_id="job", message=FIRST).result()
            assert first.status == "failed"
            await fleet.answer("job", {"ask": "blue"}, message=FOLLOW_UP).result()

    process = asyncio.ensure_future(first_process())
    await held.wait()  # the answered asker is running
    process.cancel()
    with pytest.raises(asyncio.CancelledError):
        await process

    seen.clear()
    async with Fleet(seeing_agents(seen), store=path) as fleet:
        result = await fleet.submit_resume("job").result()

    assert result.status == "done"
    assert seen == [("ask", (FOLLOW_UP, "blue", [part_to_json(PHOTO)])), ("after", FIRST)]


def test_the_latest_answer_decides_the_message_and_files() -> None:
    graph = asked_graph()
    graph.apply(SubtaskAnswered(subtask_id="asker", answer="x", message=FOLLOW_UP.to_json()))
    assert graph.answered_by("asker") == FOLLOW_UP
    assert graph.answered_by("b") is None
    assert graph.subtask("asker").inputs == {"reply": "x", "reply_files": [part_to_json(PHOTO)]}
    assert TaskGraph.from_log(graph.log, "g").answered_by("asker") == FOLLOW_UP
    assert graph.copy().answered_by("asker") == FOLLOW_UP

    graph.apply(SubtaskStarted(subtask_id="asker", agent="x"))
    graph.apply(SubtaskFinished(subtask_id="asker", status="failed", error=QUESTION))
    graph.apply(SubtaskAnswered(subtask_id="asker", answer="y"))  # no message this time
    assert graph.answered_by("asker") is None
    assert graph.subtask("asker").inputs == {"reply": "y"}


def test_an_answer_whose_message_is_not_one_is_refused() -> None:
    graph = asked_graph()
    with pytest.raises(GraphError, match=r"the answer to 'asker': not a fleetmind\.message"):
        graph.apply(SubtaskAnswered(subtask_id="asker", answer="x", message={"parts": []}))
    assert graph.is_finished  # nothing changed
