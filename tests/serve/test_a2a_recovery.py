"""A crash between a fleetmind task's end and the A2A record of it: the next server reports the
task as it ended, without running anything again."""

from __future__ import annotations

import asyncio
from pathlib import Path

from a2a.types import Task, TaskState, TaskStatus

from fleetmind import Fleet, TaskGraph, agent
from fleetmind.serve._a2a_executor import FleetExecutor
from fleetmind.serve._a2a_state import DurableTaskStore, link_run, owner_context

DEADLINE_S = 60.0


async def test_a_task_that_ended_before_its_a2a_record_is_reported_as_it_ended(
    tmp_path: Path,
) -> None:
    runs: list[str] = []

    @agent(id="echo", skills=["echo"])
    async def echo(text: str) -> str:
        runs.append(text)
        return text.upper()

    graph = TaskGraph.from_definition(
        {
            "name": "crash",
            "subtasks": [{"id": "request", "agent": "echo", "inputs": {"text": "hi"}}],
        }
    )
    store_path = tmp_path / "fleet.db"
    # The first server: the fleetmind task ran to its end, the A2A record still says working
    # (the process died before it wrote the end).
    async with Fleet([echo], store=store_path) as fleet:
        result = await fleet.run(graph, task_id="fm-1")
        assert result.status == "done"
        tasks = DurableTaskStore(fleet.store)
        working = Task(
            id="a2a-1",
            context_id="ctx-1",
            status=TaskStatus(state=TaskState.TASK_STATE_WORKING),
        )
        await tasks.save(working, owner_context(""))
        link_run(fleet.store, "a2a-1", "fm-1")
    assert runs == ["hi"]

    # The next server takes it up.
    async with Fleet([echo], store=store_path) as fleet:
        tasks = DurableTaskStore(fleet.store)
        executor = FleetExecutor(fleet)
        await executor.recover(tasks)
        async with asyncio.timeout(DEADLINE_S):
            while True:
                task = await tasks.get("a2a-1", owner_context(""))
                assert task is not None
                if task.status.state != TaskState.TASK_STATE_WORKING:
                    break
                await asyncio.sleep(0.05)
        await executor.aclose()
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert [a.parts[0].text for a in task.artifacts if a.artifact_id == "result"] == ["HI"]
    assert runs == ["hi"]  # nothing ran again
