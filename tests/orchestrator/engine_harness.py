"""Running a task on a fleet and reading its event stream (shared by the engine's tests)."""

from __future__ import annotations

from typing import Any

from fleetmind import Fleet, RetryPolicy, TaskGraph
from fleetmind.orchestrator import TaskEvent, TaskResult

FAST = RetryPolicy(max_attempts=3, initial_backoff_s=0.001, max_backoff_s=0.001)
"""Retries with back-offs short enough to keep a test fast."""


async def run_collect(fleet: Fleet, graph: TaskGraph) -> tuple[TaskResult, list[TaskEvent]]:
    """Run a graph on a fleet and return its result with its whole event stream."""
    async with fleet:
        handle = fleet.submit(graph)
        events = [event async for event in handle.events()]
        result = await handle.result()
    return result, events


def of_kind(events: list[TaskEvent], kind: str, subtask_id: str | None = None) -> list[Any]:
    """The events of one kind (for one subtask, when given)."""
    return [
        e
        for e in events
        if e.kind == kind and (subtask_id is None or getattr(e, "subtask_id", None) == subtask_id)
    ]


def index_of(events: list[TaskEvent], kind: str, subtask_id: str) -> int:
    """Position of the first event of a kind for a subtask."""
    for i, e in enumerate(events):
        if e.kind == kind and getattr(e, "subtask_id", None) == subtask_id:
            return i
    raise AssertionError(f"no {kind} event for {subtask_id}")
