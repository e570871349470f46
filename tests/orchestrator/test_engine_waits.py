"""Tests of subtasks waiting for agents (fleetmind/orchestrator/_engine_waits.py and the engine's
requeue of a lost agent's work): a fleet whose agents come and go, as devices do, lets a
subtask nobody can take wait a while instead of failing it at once."""

from __future__ import annotations

import pytest

from fleetmind import Fleet, TaskGraph, agent
from fleetmind.agents import FunctionAgent, SubtaskContext
from fleetmind.errors import AgentLost

pytestmark = pytest.mark.timeout(30)


def worker(agent_id: str = "late", cost: float = 0.0) -> FunctionAgent:
    @agent(id=agent_id, skills=["work"], cost_per_call=cost)
    async def work(ctx: SubtaskContext) -> str:
        return f"{ctx.subtask.id} by {ctx.agent_id} (attempt {ctx.attempt})"

    return work


def one(agent_id: str | None = None) -> TaskGraph:
    graph = TaskGraph()
    graph.add_subtask("w", skill=None if agent_id else "work", agent=agent_id)
    return graph


async def test_a_subtask_nobody_can_take_runs_when_an_agent_joins() -> None:
    fleet = Fleet()
    fleet.agent_wait_s = 120.0  # far beyond the test's timeout: only the join can wake it
    async with fleet:
        handle = fleet.submit(one("late"))
        async for event in handle.events():
            if event.kind == "subtask_ready":
                break
        fleet.add(worker("late"))
        result = await handle.result()

    assert result.outputs == {"w": "w by late (attempt 1)"}


async def test_a_wait_that_runs_out_fails_the_subtask_as_unroutable() -> None:
    fleet = Fleet()
    fleet.agent_wait_s = 0.2

    result = await fleet.run(one("late"))

    assert result.errors["w"]["type"] == "NoCapableAgent"


def losing_once() -> FunctionAgent:
    lost: list[int] = []

    @agent(id="flaky", skills=["work"])
    async def flaky(ctx: SubtaskContext) -> str:
        if not lost:
            lost.append(1)
            raise AgentLost("its device went away")
        return "back"

    return flaky


async def test_work_of_a_lost_agent_waits_for_it_when_nobody_else_can_do_it() -> None:
    fleet = Fleet([losing_once()])
    fleet.agent_wait_s = 120.0

    result = await fleet.run(one())

    assert result.outputs == {"w": "back"}
    requeued = [e for e in result.graph.log if e.kind == "subtask_requeued"]
    assert len(requeued) == 1 and "its device went away" in requeued[0].reason


async def test_work_of_a_lost_agent_fails_when_the_fleet_does_not_wait() -> None:
    result = await Fleet([losing_once()]).run(one())

    assert result.errors["w"]["type"] == "AgentLost"


async def test_work_of_a_lost_agent_goes_to_another_agent_when_there_is_one() -> None:
    fleet = Fleet([losing_once(), worker("steady", cost=1.0)])  # the lost one is cheaper
    fleet.agent_wait_s = 120.0

    result = await fleet.run(one())

    assert result.outputs == {"w": "w by steady (attempt 1)"}
    kinds = [e.kind for e in result.graph.log]
    assert "subtask_reassigned" in kinds and "subtask_requeued" not in kinds
