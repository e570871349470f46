"""A long-running fleet keeps the handles of running tasks and of the latest finished ones only,
and finds a task by (a prefix of) its id whether it runs here or is only in the store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fleetmind import Fleet, TaskGraph, agent
from fleetmind.agents import SubtaskContext
from fleetmind.errors import TaskNotFound
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


async def test_a_task_is_found_running_here_or_in_the_store_by_a_prefix(tmp_path: Path) -> None:
    release = asyncio.Event()

    @agent(id="waiter", skills=["wait"])
    async def waiter(ctx: SubtaskContext) -> str:
        await release.wait()
        return "released"

    fleet = Fleet([noop, waiter], store=tmp_path / "tasks.db")
    done = await fleet.run(one_subtask(), task_id="stored-1")
    waiting = TaskGraph("waiting")
    waiting.add_subtask("w", skill="wait")
    async with fleet:
        handle = fleet.submit(waiting, task_id="live-1")
        live = fleet.task("live")
        stored = fleet.task("stored")
        assert (live.task_id, live.status, live.handle) == ("live-1", "running", handle)
        assert live.graph is handle.graph
        assert (stored.task_id, stored.status, stored.handle) == ("stored-1", "done", None)
        assert stored.graph.state("only").output == done.outputs["only"]
        release.set()
    assert fleet.task("live-1").status == "done"
    for unknown in ("", "nope", "-1"):
        with pytest.raises(TaskNotFound):
            fleet.task(unknown)
