"""What the store tests write: a real task's log, and task records."""

from __future__ import annotations

from fleetmind._task_log import (
    LogEntry,
    SubtaskFinished,
    SubtaskProgressed,
    SubtaskReassigned,
    SubtaskStarted,
    TaskCancelledEntry,
)
from fleetmind._task_model import Dependency
from fleetmind.orchestrator._graph import TaskGraph
from fleetmind.orchestrator._store import TaskRecord

ERROR = {"type": "SubtaskTimeout", "message": "slow", "retryable": True, "details": {}}


def sample_log() -> list[LogEntry]:
    """The log of a small task that edits, runs, fails over and is cancelled."""
    graph = TaskGraph("sample")
    graph.add_subtask("fetch", skill="web", inputs={"url": "https://example.org"})
    graph.add_subtask(
        "summarise",
        depends_on=[Dependency(source="fetch", target="summarise", kind="data", input="text")],
    )
    graph.add_subtask("notify", depends_on=["summarise"])
    graph.apply(SubtaskStarted(subtask_id="fetch", agent="w1", at=10.0))
    graph.apply(SubtaskReassigned(subtask_id="fetch", agent="w1", error=ERROR, at=11.0))
    graph.apply(SubtaskStarted(subtask_id="fetch", agent="w2", at=12.0))
    graph.apply(SubtaskProgressed(subtask_id="fetch", message="half", fraction=0.5, at=12.5))
    graph.apply(
        SubtaskFinished(
            subtask_id="fetch", status="done", output={"body": "héllo", "n": [1, 2.5]}, at=13.0
        )
    )
    graph.apply(SubtaskStarted(subtask_id="summarise", agent="w3", at=14.0))
    graph.apply(TaskCancelledEntry(reason="user asked", at=15.0))
    return list(graph.log)


def record(task_id: str = "t0123456789", **fields: object) -> TaskRecord:
    """A task record with the given fields (name ``demo`` unless given)."""
    return TaskRecord(id=task_id, name=fields.pop("name", "demo"), **fields)
