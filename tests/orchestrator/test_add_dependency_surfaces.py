"""The graph, a running task's handle and a subtask's context add dependencies alike,
condition included (one implementation behind all three)."""

from __future__ import annotations

import asyncio

from fleetmind import Fleet, SubtaskContext, TaskGraph, agent
from fleetmind.orchestrator import Condition, Dependency, DependencyKind, SubtaskStartedEvent

EXPECTED = Dependency(
    source="a", target="b", kind=DependencyKind.CONTROL, condition=Condition.FAILURE
)


def graph_of_two() -> TaskGraph:
    graph = TaskGraph("two")
    graph.add_subtask("a", skill="fail")
    graph.add_subtask("b", skill="ok")
    return graph


@agent(id="failer", description="Always fails", skills=["fail"])
async def failer() -> str:
    raise RuntimeError("as planned")


@agent(id="fine", description="Always works", skills=["ok"])
async def fine() -> str:
    return "ran"


def test_on_the_graph() -> None:
    graph = graph_of_two()
    assert graph.add_dependency("a", "b", condition="failure") == EXPECTED
    assert EXPECTED in graph.dependencies


async def test_on_a_running_task_s_handle() -> None:
    gate = asyncio.Event()

    @agent(id="holder", description="Holds until let go", skills=["hold"])
    async def holder() -> str:
        await gate.wait()
        return "held"

    graph = graph_of_two()
    graph.add_subtask("first", skill="hold")
    graph.add_dependency("first", "b")  # b cannot start before the edit below
    async with Fleet([holder, failer, fine]) as fleet:
        handle = fleet.submit(graph)
        async for event in handle.events():  # edit while "first" holds b back
            if isinstance(event, SubtaskStartedEvent) and event.subtask_id == "first":
                break
        added = await handle.add_dependency("a", "b", condition="failure")
        gate.set()
        result = await handle.result()
    assert added == EXPECTED
    assert EXPECTED in result.graph.dependencies
    assert result.graph.state("b").status.value == "done"  # a failed, so b ran


async def test_from_a_subtask_s_context() -> None:
    @agent(id="planner", description="Adds a fallback", skills=["plan"])
    async def planner(ctx: SubtaskContext) -> str:
        ctx.add_subtask("fallback", skill="ok")
        assert ctx.add_dependency("a", "fallback", condition="failure").condition is (
            Condition.FAILURE
        )
        return "planned"

    graph = TaskGraph("ctx")
    graph.add_subtask("first", skill="plan")
    graph.add_subtask("a", skill="fail", depends_on=["first"])
    async with Fleet([planner, failer, fine]) as fleet:
        result = await fleet.run(graph)
    assert result.graph.state("fallback").status.value == "done"
