"""Steps of a run, applied to a TaskGraph as the engine would log them (shared by the graph's
tests)."""

from __future__ import annotations

from typing import Any

from fleetmind._task_log import SubtaskFinished, SubtaskStarted
from fleetmind.orchestrator._graph import DerivedChange, TaskGraph

ERROR = {"type": "SubtaskFailed", "message": "boom", "retryable": True, "details": {}}


def start(graph: TaskGraph, sid: str, agent: str = "worker", at: float = 0.0) -> None:
    graph.apply(SubtaskStarted(subtask_id=sid, agent=agent, at=at))


def finish(
    graph: TaskGraph,
    sid: str,
    status: str = "done",
    output: Any = None,
    error: dict[str, Any] | None = None,
    at: float = 0.0,
) -> list[DerivedChange]:
    if status == "failed" and error is None:
        error = ERROR
    return graph.apply(
        SubtaskFinished(subtask_id=sid, status=status, output=output, error=error, at=at)
    )


def run(
    graph: TaskGraph, sid: str, status: str = "done", output: Any = None
) -> list[DerivedChange]:
    start(graph, sid)
    return finish(graph, sid, status, output)


def statuses(graph: TaskGraph) -> dict[str, str]:
    return {s.id: graph.state(s.id).status.value for s in graph}


def snapshot(graph: TaskGraph) -> tuple[dict[str, Any], int]:
    return graph.to_dict(), graph.version
