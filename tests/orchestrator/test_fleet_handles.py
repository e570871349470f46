"""A long-running fleet keeps the handles of running tasks and of the latest finished ones only."""

from __future__ import annotations

import asyncio

from fleetmind import Fleet, TaskGraph, agent
from fleetmind.orchestrator import _fleet


@agent(id="noop", description="Does nothing", skills=["noop"])
async def noop() -> str:
    return "ok"


def one_subtask() -> TaskGraph:
    graph = TaskGraph("tiny")
    graph.add_subtask("only", skill="noop")
    return graph


async def test_finished_handles_and_drivers_do_not_pile_up() -> None:
    kept = _fleet._KEPT_FINISHED
    async with Fleet([noop]) as fleet:
        handles = [fleet.submit(one_subtask()) for _ in range(kept + 40)]
        drivers = list(fleet._drivers)
        for handle in handles:
            assert (await handle.result()).ok
        await asyncio.gather(*drivers)  # their done callbacks, registered first, have run
        assert not fleet._drivers
        assert len(fleet._handles) == kept
        assert fleet.handle(handles[-1].task_id) is handles[-1]  # the latest are kept
        assert handles[0].task_id not in fleet._handles
