"""Tests for fleetmind/orchestrator/_engine.py: cancellation, and the graph edits agents return
with their results (applied all or nothing).

Every test runs real agents on a real Fleet (in-memory store) and synchronises on
``asyncio.Event``s or the task's event stream; sleeps inside agents only simulate work.
"""

from __future__ import annotations

import asyncio

import pytest
from engine_harness import FAST, index_of, of_kind, run_collect

from fleetmind import Fleet, SubtaskResult, TaskGraph, agent
from fleetmind.agents import SubtaskContext
from fleetmind.orchestrator import AddSubtask, Dependency, Subtask, SubtaskStatus

pytestmark = pytest.mark.timeout(10)


# ---------------------------------------------------------------------------------------------
# Cancellation
# ---------------------------------------------------------------------------------------------


async def test_cancel_stops_running_subtasks_and_never_starts_the_rest() -> None:
    started: list[str] = []
    saw_cancel: list[str] = []
    both_running = asyncio.Event()

    @agent(id="worker", skills=["work"], max_concurrency=2)
    async def worker(ctx: SubtaskContext) -> str:
        started.append(ctx.subtask.id)
        if len(started) == 2:
            both_running.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            saw_cancel.append(ctx.subtask.id)
            raise
        return "never"

    graph = TaskGraph("cancel me")
    graph.add_subtask("x", skill="work")
    graph.add_subtask("y", skill="work")
    graph.add_subtask("queued", skill="work")  # waits for a slot
    graph.add_subtask("after", skill="work", depends_on=["x"])  # waits for x
    fleet = Fleet([worker])

    async with fleet:
        handle = fleet.submit(graph)
        await both_running.wait()
        assert handle.graph.state("queued").status is SubtaskStatus.READY
        result = await handle.cancel()
        events = [e async for e in handle.events()]

    assert started == ["x", "y"]
    assert sorted(saw_cancel) == ["x", "y"]
    assert result.status == "cancelled"
    assert not result.ok
    for sid in ("x", "y", "queued", "after"):
        assert result.graph.state(sid).status is SubtaskStatus.CANCELLED
    assert sorted(e.subtask_id for e in of_kind(events, "subtask_cancelled")) == [
        "after",
        "queued",
        "x",
        "y",
    ]
    assert [e.subtask_id for e in of_kind(events, "subtask_started")] == ["x", "y"]
    assert events[-1].kind == "task_finished"
    assert events[-1].status == "cancelled"
    assert fleet.store.load(handle.task_id)[0].status == "cancelled"
    assert fleet.load("worker") == (0, 2)


async def test_cancel_after_finish_changes_nothing() -> None:
    @agent(id="worker")
    async def worker() -> str:
        return "ok"

    graph = TaskGraph()
    graph.add_subtask("s", agent="worker")
    async with Fleet([worker]) as fleet:
        handle = fleet.submit(graph)
        await handle.result()
        result = await handle.cancel()

    assert result.status == "done"
    assert result.outputs == {"s": "ok"}


# Regression: cancelling right after submit(), before the engine's loop started, used to
# raise AssertionError (Engine.cancel posted to an inbox that did not exist yet).
async def test_cancel_right_after_submit_cancels_the_task() -> None:
    calls = 0

    @agent(id="worker")
    async def worker() -> str:
        nonlocal calls
        calls += 1
        return "ok"

    graph = TaskGraph()
    graph.add_subtask("s", agent="worker")
    async with Fleet([worker]) as fleet:
        handle = fleet.submit(graph)
        result = await handle.cancel()

    assert result.status == "cancelled"
    assert calls == 0


# ---------------------------------------------------------------------------------------------
# Graph edits carried by agents' results
# ---------------------------------------------------------------------------------------------


async def test_agent_result_adds_follow_up_subtasks_that_run() -> None:
    release_slow = asyncio.Event()
    ran: list[str] = []

    @agent(id="slow")
    async def slow(ctx: SubtaskContext) -> str:
        ran.append(ctx.subtask.id)
        await release_slow.wait()
        return "slow done"

    @agent(id="planner")
    async def planner(ctx: SubtaskContext) -> str:
        ran.append(ctx.subtask.id)
        # One follow-up after this subtask, one after a subtask that is still running.
        ctx.add_subtask("after_plan", agent="worker", depends_on=["plan"])
        ctx.add_subtask(
            "after_slow",
            agent="worker",
            depends_on=[Dependency(source="slow", target="after_slow", kind="data", input="x")],
        )
        return "planned"

    @agent(id="worker")
    async def worker(ctx: SubtaskContext) -> str:
        ran.append(ctx.subtask.id)
        if ctx.subtask.id == "after_plan":
            release_slow.set()
        return f"{ctx.subtask.id}:{ctx.inputs.get('x')}"

    graph = TaskGraph()
    graph.add_subtask("slow", agent="slow")
    graph.add_subtask("plan", agent="planner")

    result, events = await run_collect(Fleet([slow, planner, worker]), graph)

    assert result.status == "done"
    assert result.outputs["after_plan"] == "after_plan:None"
    assert result.outputs["after_slow"] == "after_slow:slow done"
    assert ran.index("after_slow") > ran.index("after_plan")
    edited = of_kind(events, "graph_edited")
    assert [e.by for e in edited] == ["plan", "plan"]
    assert [e.edit.subtask.id for e in edited] == ["after_plan", "after_slow"]
    assert index_of(events, "subtask_started", "after_slow") > index_of(
        events, "subtask_done", "slow"
    )
    # The edits come before the planner's own completion.
    assert max(events.index(e) for e in edited) < index_of(events, "subtask_done", "plan")


async def test_agent_may_return_edits_in_a_subtask_result() -> None:
    @agent(id="planner")
    async def planner(ctx: SubtaskContext) -> SubtaskResult:
        ctx.add_subtask("from_ctx", agent="worker")
        return SubtaskResult(
            output="plan",
            edits=(AddSubtask(subtask=Subtask(id="from_result", agent="worker")),),
        )

    @agent(id="worker")
    async def worker(ctx: SubtaskContext) -> str:
        return ctx.subtask.id

    graph = TaskGraph()
    graph.add_subtask("plan", agent="planner")

    result = await Fleet([planner, worker]).run(graph)

    assert result.outputs == {"plan": "plan", "from_ctx": "from_ctx", "from_result": "from_result"}


async def test_agent_returning_an_invalid_edit_fails_its_subtask_with_graph_error() -> None:
    @agent(id="planner")
    async def planner(ctx: SubtaskContext) -> str:
        ctx.add_subtask("orphan", agent="planner", depends_on=["ghost"])
        return "planned"

    graph = TaskGraph()
    graph.add_subtask("plan", agent="planner", retry=FAST)
    graph.add_subtask("next", agent="planner", depends_on=["plan"])

    result, events = await run_collect(Fleet([planner]), graph)

    assert result.status == "failed"
    assert result.errors["plan"]["type"] == "GraphError"
    assert "ghost" in result.errors["plan"]["message"]
    assert result.errors["next"]["type"] == "UpstreamFailed"
    assert "orphan" not in result.graph
    assert of_kind(events, "graph_edited") == []
    assert of_kind(events, "subtask_retried") == []


# Regression: an agent's edits used to be applied one by one, so edits before an invalid one
# stayed in the graph (and ran) although the subtask failed.
async def test_invalid_edit_leaves_none_of_the_agents_edits_applied() -> None:
    ran: list[str] = []

    @agent(id="planner")
    async def planner(ctx: SubtaskContext) -> str:
        ctx.add_subtask("good", agent="worker")
        ctx.add_subtask("bad", agent="worker", depends_on=["ghost"])
        return "planned"

    @agent(id="worker")
    async def worker(ctx: SubtaskContext) -> str:
        ran.append(ctx.subtask.id)
        return "ok"

    graph = TaskGraph()
    graph.add_subtask("plan", agent="planner")

    result = await Fleet([planner, worker]).run(graph)

    assert result.errors["plan"]["type"] == "GraphError"
    # "Graph edits ... are applied when the subtask finishes successfully" (SubtaskContext).
    assert "good" not in result.graph
    assert ran == []


async def test_progress_reports_become_events() -> None:
    @agent(id="worker")
    async def worker(ctx: SubtaskContext) -> str:
        ctx.progress("half way", 0.5)
        ctx.progress("almost")
        return "ok"

    graph = TaskGraph()
    graph.add_subtask("s", agent="worker")

    result, events = await run_collect(Fleet([worker]), graph)

    progress = of_kind(events, "subtask_progress", "s")
    assert [(e.message, e.fraction) for e in progress] == [("half way", 0.5), ("almost", None)]
    assert result.graph.state("s").progress == "almost"
    assert index_of(events, "subtask_progress", "s") < index_of(events, "subtask_done", "s")
