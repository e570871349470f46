"""A task as its user holds it: the handle of a running task, a snapshot of a stored one, and
the questions a task that stopped for input waits on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass
from typing import Any

from fleetmind._task_log import (
    GraphEdit,
    RemoveSubtask,
    add_dependency_edit,
    add_subtask_edit,
    update_subtask_edit,
)
from fleetmind._task_model import Condition, Dependency, DependencyKind, Subtask, SubtaskStatus
from fleetmind.orchestrator._engine import Engine
from fleetmind.orchestrator._events import TaskEvent
from fleetmind.orchestrator._graph import TaskGraph
from fleetmind.orchestrator._task_result import TaskResult


class TaskHandle:
    """A submitted task: follow its events, edit it live, cancel it, await its result."""

    def __init__(self, engine: Engine, done: asyncio.Future[TaskResult]) -> None:
        self._engine = engine
        self._done = done
        self.taken_over_from: str | None = None
        """For a task this replica took over: the replica that drove it before (its own id
        for one it held before a restart); None for the others."""

    @property
    def task_id(self) -> str:
        """The task's id in the store."""
        return self._engine.task_id

    @property
    def graph(self) -> TaskGraph:
        """The live graph (read it; edit it through the handle)."""
        return self._engine.graph

    def done(self) -> bool:
        """Whether the task has ended."""
        return self._done.done()

    def events(self) -> AsyncGenerator[TaskEvent]:
        """Every event of the task from its start, until it finishes; any number may follow."""
        return self._engine.events.subscribe()

    async def result(self) -> TaskResult:
        """Wait for the task to end and return how it ended."""
        return await asyncio.shield(self._done)

    async def cancel(self, reason: str = "cancelled by user") -> TaskResult:
        """Cancel the task and wait until its running subtasks have stopped."""
        self._engine.cancel(reason)
        return await self.result()

    async def edit(self, edit: GraphEdit) -> None:
        """Apply a structural edit while the task runs (``GraphError`` if it is invalid)."""
        await self._engine.edit(edit)

    async def add_subtask(
        self,
        subtask: Subtask | str,
        *,
        depends_on: Iterable[str | Dependency] = (),
        **fields: Any,
    ) -> Subtask:
        """Add a subtask to the running task."""
        edit = add_subtask_edit(subtask, depends_on, **fields)
        await self.edit(edit)
        return edit.subtask

    async def add_dependency(
        self,
        source: str,
        target: str,
        *,
        kind: DependencyKind | str = DependencyKind.CONTROL,
        condition: Condition | str = Condition.SUCCESS,
        output: str | None = None,
        input: str | None = None,
    ) -> Dependency:
        """Add a dependency whose target has not started."""
        edit = add_dependency_edit(
            source, target, kind=kind, condition=condition, output=output, input=input
        )
        await self.edit(edit)
        return edit.dependency

    async def remove_subtask(self, subtask_id: str) -> None:
        """Remove a subtask that has not started."""
        await self.edit(RemoveSubtask(subtask_id=subtask_id))

    async def update_subtask(self, subtask_id: str, **changes: Any) -> Subtask:
        """Change fields of a subtask that has not started."""
        edit = update_subtask_edit(self.graph.subtask(subtask_id), **changes)
        await self.edit(edit)
        return edit.subtask


@dataclass(frozen=True)
class TaskSnapshot:
    """A task of the fleet as it stands: running here, or kept in the fleet's store."""

    task_id: str
    status: str
    """running, done, failed or cancelled."""
    graph: TaskGraph
    """The live graph of a task running here (read it), else the graph rebuilt from its log."""
    handle: TaskHandle | None
    """The task's handle, when this fleet runs it."""


def waiting_questions(graph: TaskGraph) -> dict[str, str]:
    """The questions of a graph that failed only because agents asked for input (else none):
    each asking subtask's question, by id. Subtasks failed by a question upstream count as
    waiting with it."""
    if graph.status != "failed":
        return {}
    questions: dict[str, str] = {}
    for subtask in graph:
        state = graph.state(subtask.id)
        error = state.error or {}
        if state.status is not SubtaskStatus.FAILED or state.replanned == "edited":
            continue
        if error.get("type") == "InputRequired":
            details = error.get("details") or {}
            questions[subtask.id] = str(details.get("question") or error.get("message") or "")
        elif error.get("type") != "UpstreamFailed":
            return {}
    return questions
