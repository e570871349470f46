"""Tests for fleetmind/orchestrator/_fleet.py: Fleet lifecycle, TaskHandle (events, live edits,
cancellation), agents joining and leaving, shared limits, and resuming a stored task.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from fleetmind import Fleet, RetryPolicy, TaskGraph, agent
from fleetmind.agents import FunctionAgent, SubtaskContext
from fleetmind.errors import AgentError, CycleError, FleetStateError, GraphError
from fleetmind.orchestrator import SQLiteStore, SubtaskStatus, TaskEvent

pytestmark = pytest.mark.timeout(10)


def kinds_for(events: list[TaskEvent], subtask_id: str) -> list[str]:
    """The kinds of one subtask's events, in order."""
    return [e.kind for e in events if getattr(e, "subtask_id", None) == subtask_id]


def echo_agent(agent_id: str = "worker", **options: Any) -> FunctionAgent:
    """An agent that returns its subtask's id."""

    @agent(id=agent_id, **options)
    async def echo(ctx: SubtaskContext) -> str:
        return ctx.subtask.id

    return echo


# ---------------------------------------------------------------------------------------------
# Misuse
# ---------------------------------------------------------------------------------------------


async def test_submit_outside_async_with_raises_fleet_state_error() -> None:
    graph = TaskGraph()
    graph.add_subtask("s", agent="worker")
    fleet = Fleet([echo_agent()])

    with pytest.raises(FleetStateError, match="async with"):
        fleet.submit(graph)


async def test_submit_after_the_fleet_closed_raises_and_fleet_enters_once() -> None:
    graph = TaskGraph()
    graph.add_subtask("s", agent="worker")
    fleet = Fleet([echo_agent()])
    async with fleet:
        pass

    with pytest.raises(FleetStateError):
        fleet.submit(graph)
    with pytest.raises(FleetStateError, match="entered once"):
        async with fleet:
            pass


async def test_running_an_empty_graph_raises_graph_error() -> None:
    fleet = Fleet([echo_agent()])

    with pytest.raises(GraphError, match="no subtasks"):
        await fleet.run(TaskGraph("empty"))
    async with fleet:
        with pytest.raises(GraphError, match="no subtasks"):
            fleet.submit(TaskGraph("empty"))
    assert fleet.store.tasks() == []


async def test_a_graph_that_has_run_cannot_be_run_again() -> None:
    graph = TaskGraph()
    graph.add_subtask("s", agent="worker")
    fleet = Fleet([echo_agent()])
    result = await fleet.run(graph)

    # The fleet ran a copy: the caller's graph is untouched and may be run again.
    assert graph.state("s").status is SubtaskStatus.READY
    assert (await fleet.run(graph)).outputs == {"s": "s"}
    with pytest.raises(GraphError, match="already run"):
        await fleet.run(result.graph)


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"agent": "nobody"}, "'nobody'"),
        ({"skill": "juggling"}, "'juggling'"),
        ({}, "no description, agent or skill"),
    ],
)
async def test_unroutable_subtask_fails_with_no_capable_agent(
    fields: dict[str, str], words: str
) -> None:
    graph = TaskGraph()
    graph.add_subtask("s", **fields)
    graph.add_subtask("after", agent="worker", depends_on=["s"])

    result = await Fleet([echo_agent(skills=["work"])]).run(graph)

    assert result.status == "failed"
    assert not result.ok
    assert result.errors["s"]["type"] == "NoCapableAgent"
    assert words in result.errors["s"]["message"]
    assert result.errors["after"]["type"] == "UpstreamFailed"


async def test_fleet_knows_its_agents() -> None:
    a, b = echo_agent("a", max_concurrency=3), echo_agent("b")
    fleet = Fleet([a, b])

    assert fleet.agents == [a, b]
    assert [p.id for p in fleet.profiles] == ["a", "b"]
    assert fleet.agent("a") is a
    assert fleet.agent("zzz") is None
    assert fleet.load("a") == (0, 3)
    assert fleet.remove("a") is a
    assert fleet.agent("a") is None
    with pytest.raises(AgentError, match="'a'"):
        fleet.remove("a")
    with pytest.raises(AgentError):
        fleet.add("not an agent")  # type: ignore[arg-type]


async def test_handle_lookup() -> None:
    graph = TaskGraph()
    graph.add_subtask("s", agent="worker")
    async with Fleet([echo_agent()]) as fleet:
        handle = fleet.submit(graph, task_id="my-task")
        assert fleet.handle("my-task") is handle
        assert handle.task_id == "my-task"
        with pytest.raises(FleetStateError):
            fleet.handle("other")
        result = await handle.result()
    assert handle.done()
    assert result.task_id == "my-task"
    assert fleet.store.load("my-task")[0].status == "done"


# ---------------------------------------------------------------------------------------------
# Limits shared by tasks
# ---------------------------------------------------------------------------------------------


async def test_concurrency_limit_is_shared_by_tasks_of_one_fleet() -> None:
    running = peak = 0
    per_task: dict[str, int] = {}

    @agent(id="worker", skills=["work"], max_concurrency=2)
    async def worker(ctx: SubtaskContext) -> str:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        per_task[ctx.task_id] = per_task.get(ctx.task_id, 0) + 1
        try:
            await asyncio.sleep(0.005)
        finally:
            running -= 1
        return ctx.subtask.id

    graphs = []
    for name in ("one", "two"):
        graph = TaskGraph(name)
        for i in range(3):
            graph.add_subtask(f"{name}{i}", skill="work")
        graphs.append(graph)

    fleet = Fleet([worker])
    async with fleet:
        handles = [fleet.submit(g) for g in graphs]
        results = [await h.result() for h in handles]

    assert peak == 2
    assert [r.status for r in results] == ["done", "done"]
    assert results[0].outputs == {f"one{i}": f"one{i}" for i in range(3)}
    assert results[1].outputs == {f"two{i}": f"two{i}" for i in range(3)}
    assert per_task == {handles[0].task_id: 3, handles[1].task_id: 3}
    assert fleet.load("worker") == (0, 2)


# ---------------------------------------------------------------------------------------------
# Live edits by the user
# ---------------------------------------------------------------------------------------------


async def test_user_edits_a_running_task() -> None:
    gate_running = asyncio.Event()
    open_gate = asyncio.Event()
    ran: list[str] = []

    @agent(id="worker")
    async def worker(ctx: SubtaskContext) -> str:
        ran.append(ctx.subtask.id)
        if ctx.subtask.id == "gate":
            gate_running.set()
            await open_gate.wait()
        return f"{ctx.subtask.id}:{ctx.inputs.get('v')}"

    graph = TaskGraph()
    graph.add_subtask("gate", agent="worker")
    graph.add_subtask("later", agent="worker", inputs={"v": 1}, depends_on=["gate"])
    graph.add_subtask("doomed", agent="worker", depends_on=["gate"])

    async with Fleet([worker]) as fleet:
        handle = fleet.submit(graph)
        await gate_running.wait()

        added = await handle.add_subtask("extra", agent="worker", depends_on=["gate"])
        await handle.add_dependency("extra", "later")
        await handle.remove_subtask("doomed")
        updated = await handle.update_subtask("later", inputs={"v": 2})
        with pytest.raises(GraphError, match="cycle") as caught:
            await handle.add_dependency("later", "extra")
        with pytest.raises(GraphError):
            await handle.update_subtask("gate", inputs={"v": 3})  # it is running

        open_gate.set()
        events = [e async for e in handle.events()]
        result = await handle.result()

    assert isinstance(caught.value, CycleError)
    assert added.id == "extra"
    assert (updated.id, updated.agent, updated.inputs) == ("later", "worker", {"v": 2})
    assert result.status == "done"
    assert ran == ["gate", "extra", "later"]
    assert result.outputs == {"gate": "gate:None", "extra": "extra:None", "later": "later:2"}
    assert "doomed" not in result.graph
    edited = [e for e in events if e.kind == "graph_edited"]
    assert [e.edit.kind for e in edited] == [
        "add_subtask",
        "add_dependency",
        "remove_subtask",
        "update_subtask",
    ]
    assert all(e.by is None for e in edited)
    assert events[-1].kind == "task_finished"
    assert events[-1].status == "done"


async def test_edit_of_a_finished_task_raises_fleet_state_error() -> None:
    graph = TaskGraph()
    graph.add_subtask("s", agent="worker")
    async with Fleet([echo_agent()]) as fleet:
        handle = fleet.submit(graph)
        await handle.result()
        with pytest.raises(FleetStateError, match="not running"):
            await handle.add_subtask("late", agent="worker")


# Regression: an edit arriving after the engine's loop ended, while cancelled subtasks still
# cleaned up, used to be queued in an inbox nobody read: the caller waited forever.
async def test_edit_while_a_cancelled_task_winds_down_does_not_hang() -> None:
    running = asyncio.Event()
    cleaning = asyncio.Event()
    finish_cleanup = asyncio.Event()

    @agent(id="worker")
    async def worker() -> str:
        running.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            # Clean up, then re-raise (as the style guide asks of agents).
            cleaning.set()
            await finish_cleanup.wait()
            raise
        return "never"

    graph = TaskGraph()
    graph.add_subtask("s", agent="worker")
    async with Fleet([worker]) as fleet:
        handle = fleet.submit(graph)
        await running.wait()
        cancelling = asyncio.ensure_future(handle.cancel())
        await cleaning.wait()
        try:
            with pytest.raises((FleetStateError, GraphError)):
                async with asyncio.timeout(0.3):
                    await handle.add_subtask("late", agent="worker")
        finally:
            finish_cleanup.set()
            result = await cancelling

    assert result.status == "cancelled"


# ---------------------------------------------------------------------------------------------
# Agents joining and leaving
# ---------------------------------------------------------------------------------------------


async def test_agent_added_mid_run_takes_subtasks_added_later() -> None:
    gate_running = asyncio.Event()
    open_gate = asyncio.Event()

    @agent(id="first")
    async def first(ctx: SubtaskContext) -> str:
        gate_running.set()
        await open_gate.wait()
        return "first"

    @agent(id="newcomer", skills=["fresh"])
    async def newcomer(ctx: SubtaskContext) -> str:
        return f"newcomer did {ctx.subtask.id}"

    graph = TaskGraph()
    graph.add_subtask("gate", agent="first")

    async with Fleet([first]) as fleet:
        handle = fleet.submit(graph)
        await gate_running.wait()
        fleet.add(newcomer)
        await handle.add_subtask("by_skill", skill="fresh")
        await handle.add_subtask("by_id", agent="newcomer", depends_on=["gate"])
        open_gate.set()
        result = await handle.result()

    assert result.status == "done"
    assert result.outputs == {
        "gate": "first",
        "by_skill": "newcomer did by_skill",
        "by_id": "newcomer did by_id",
    }
    assert result.graph.state("by_skill").agent == "newcomer"


async def test_removing_an_agent_reroutes_subtasks_waiting_for_its_slot() -> None:
    busy = asyncio.Event()
    release = asyncio.Event()
    ran: list[tuple[str, str]] = []

    @agent(id="cheap", skills=["work"], max_concurrency=1, cost_per_call=0.1)
    async def cheap(ctx: SubtaskContext) -> str:
        ran.append(("cheap", ctx.subtask.id))
        busy.set()
        await release.wait()
        return "cheap"

    @agent(id="dear", skills=["work"], max_concurrency=1, cost_per_call=1.0)
    async def dear(ctx: SubtaskContext) -> str:
        ran.append(("dear", ctx.subtask.id))
        return "dear"

    graph = TaskGraph()
    graph.add_subtask("hog", skill="work")
    graph.add_subtask("waiter", skill="work")

    # Only 'cheap' is in the fleet at first: 'hog' takes its one slot and 'waiter' queues.
    async with Fleet([cheap]) as fleet:
        handle = fleet.submit(graph)
        await busy.wait()
        assert handle.graph.state("waiter").status is SubtaskStatus.READY
        fleet.add(dear)
        assert handle.graph.state("waiter").status is SubtaskStatus.READY  # not rerouted yet
        fleet.remove("cheap")
        events: list[TaskEvent] = []
        async for event in handle.events():
            events.append(event)
            if event.kind == "subtask_done" and event.subtask_id == "waiter":
                release.set()
        result = await handle.result()

    assert result.status == "done"
    assert ran == [("cheap", "hog"), ("dear", "waiter")]
    assert result.outputs == {"hog": "cheap", "waiter": "dear"}
    assert result.graph.state("waiter").agent == "dear"
    assert kinds_for(events, "waiter") == [
        "subtask_ready",
        "subtask_routed",  # first to both agents, while it waits for a slot
        "subtask_routed",  # again when "cheap" leaves: now to "dear" alone
        "subtask_started",
        "subtask_done",
    ]


async def test_removing_the_only_candidate_fails_waiting_subtasks() -> None:
    busy = asyncio.Event()
    release = asyncio.Event()

    @agent(id="solo", skills=["work"], max_concurrency=1)
    async def solo() -> str:
        busy.set()
        await release.wait()
        return "solo"

    graph = TaskGraph()
    graph.add_subtask("hog", skill="work")
    graph.add_subtask("waiter", skill="work")

    async with Fleet([solo]) as fleet:
        handle = fleet.submit(graph)
        await busy.wait()
        fleet.remove("solo")
        async for event in handle.events():
            if event.kind == "subtask_failed":
                release.set()
        result = await handle.result()

    assert result.status == "failed"
    assert result.outputs == {"hog": "solo"}  # a running subtask finishes on a removed agent
    assert result.errors["waiter"]["type"] == "NoCapableAgent"


async def test_new_version_with_more_slots_serves_waiting_subtasks() -> None:
    busy = asyncio.Event()
    release = asyncio.Event()
    ran: list[tuple[int, str]] = []

    def make(version: int, limit: int) -> FunctionAgent:
        @agent(id="worker", skills=["work"], max_concurrency=limit, version=version)
        async def worker(ctx: SubtaskContext) -> str:
            ran.append((version, ctx.subtask.id))
            if ctx.subtask.id == "hog":
                busy.set()
                await release.wait()
            return f"v{version}"

        return worker

    graph = TaskGraph()
    graph.add_subtask("hog", skill="work")
    graph.add_subtask("waiter", skill="work")

    async with Fleet([make(1, 1)]) as fleet:
        handle = fleet.submit(graph)
        await busy.wait()
        fleet.add(make(2, 2))
        assert fleet.load("worker") == (2, 2)  # the freed capacity went to the waiter
        async for event in handle.events():
            if event.kind == "subtask_done" and event.subtask_id == "waiter":
                release.set()
        result = await handle.result()

    assert ran == [(1, "hog"), (2, "waiter")]
    assert result.outputs == {"hog": "v1", "waiter": "v2"}


async def test_updating_a_waiting_subtask_routes_it_again() -> None:
    busy = asyncio.Event()
    release = asyncio.Event()

    @agent(id="busy", max_concurrency=1)
    async def busy_agent(ctx: SubtaskContext) -> str:
        busy.set()
        await release.wait()
        return "busy"

    @agent(id="idle")
    async def idle(ctx: SubtaskContext) -> str:
        return f"idle:{ctx.inputs['n']}"

    graph = TaskGraph()
    graph.add_subtask("hog", agent="busy")
    graph.add_subtask("waiter", agent="busy", inputs={"n": 1})

    async with Fleet([busy_agent, idle]) as fleet:
        handle = fleet.submit(graph)
        await busy.wait()
        await handle.update_subtask("waiter", agent="idle", inputs={"n": 2})
        async for event in handle.events():
            if event.kind == "subtask_done" and event.subtask_id == "waiter":
                release.set()
        result = await handle.result()

    assert result.outputs == {"hog": "busy", "waiter": "idle:2"}
    assert result.graph.state("waiter").agent == "idle"
    assert fleet.load("busy") == (0, 1)


# ---------------------------------------------------------------------------------------------
# Resuming a stored task
# ---------------------------------------------------------------------------------------------


async def test_resume_reruns_only_the_unfinished_subtasks(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    calls: list[str] = []
    in_flight = asyncio.Event()

    @agent(id="worker")
    async def crashing(ctx: SubtaskContext) -> str:
        calls.append(ctx.subtask.id)
        if ctx.subtask.id == "second":
            in_flight.set()
            await asyncio.Event().wait()  # the process "dies" while this runs
        return f"{ctx.subtask.id} v1"

    graph = TaskGraph("resumable")
    graph.add_subtask("first", agent="worker")
    graph.add_subtask("second", agent="worker", depends_on=["first"])
    graph.add_subtask("third", agent="worker", depends_on=["second"])

    store = SQLiteStore(path)
    try:
        crashed = asyncio.ensure_future(Fleet([crashing], store=store).run(graph, task_id="job1"))
        await in_flight.wait()
        crashed.cancel()
        with pytest.raises(asyncio.CancelledError):
            await crashed
        record, entries = store.load("job1")
    finally:
        store.close()
    assert record.status == "running"
    assert calls == ["first", "second"]
    assert [e.kind for e in entries].count("subtask_started") == 2

    @agent(id="worker")
    async def working(ctx: SubtaskContext) -> str:
        calls.append(ctx.subtask.id)
        return f"{ctx.subtask.id} v2:{ctx.attempt}"

    calls.clear()
    store = SQLiteStore(path)
    try:
        result = await Fleet([working], store=store).resume("job1")
        record, entries = store.load("job1")
    finally:
        store.close()

    assert calls == ["second", "third"]
    assert result.status == "done"
    assert result.outputs == {"first": "first v1", "second": "second v2:1", "third": "third v2:1"}
    assert record.status == "done"
    requeued = [e for e in entries if e.kind == "subtask_requeued"]
    assert [e.subtask_id for e in requeued] == ["second"]
    assert result.graph.state("second").total_attempts == 2


async def test_resume_of_a_finished_task_raises_fleet_state_error(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "tasks.db")
    try:
        graph = TaskGraph()
        graph.add_subtask("s", agent="worker")
        fleet = Fleet([echo_agent()], store=store)
        await fleet.run(graph, task_id="done1")
        with pytest.raises(FleetStateError, match="already ended"):
            await fleet.resume("done1")
    finally:
        store.close()


async def test_submit_resume_continues_a_stored_task(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    in_flight = asyncio.Event()

    @agent(id="worker")
    async def stuck(ctx: SubtaskContext) -> str:
        in_flight.set()
        await asyncio.Event().wait()
        return "never"

    graph = TaskGraph()
    graph.add_subtask("s", agent="worker", retry=RetryPolicy(max_attempts=1))
    store = SQLiteStore(path)
    try:
        crashed = asyncio.ensure_future(Fleet([stuck], store=store).run(graph, task_id="job2"))
        await in_flight.wait()
        crashed.cancel()
        with pytest.raises(asyncio.CancelledError):
            await crashed

        async with Fleet([echo_agent()], store=store) as fleet:
            handle = fleet.submit_resume("job2")
            events = [e async for e in handle.events()]
            result = await handle.result()
    finally:
        store.close()

    assert result.outputs == {"s": "s"}
    assert [e.kind for e in events] == [
        "task_resumed",  # with how long the task was stopped
        "subtask_ready",
        "subtask_started",
        "subtask_done",
        "task_finished",
    ]
