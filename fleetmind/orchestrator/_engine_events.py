"""What a task's followers see when a log entry is applied: the entry as typed events.

Pure: it reads the graph after the entry was applied and returns events; the engine publishes
them once the entry is saved. Entries are matched by type, and the match ends in
``assert_never``, so a new kind of entry cannot silently emit nothing.
"""

from __future__ import annotations

from typing import Any, assert_never

from fleetmind._task_log import (
    AddDependency,
    AddSubtask,
    LogEntry,
    RemoveDependency,
    RemoveSubtask,
    SubtaskAnswered,
    SubtaskFinished,
    SubtaskProgressed,
    SubtaskReassigned,
    SubtaskReplanned,
    SubtaskRequeued,
    SubtaskRetried,
    SubtaskRouted,
    SubtaskStarted,
    TaskCancelledEntry,
    TaskPlanned,
    TaskResumed,
    UpdateSubtask,
)
from fleetmind._task_model import SubtaskStatus
from fleetmind.orchestrator import _events as ev
from fleetmind.orchestrator._engine_messages import ArtifactStreamed
from fleetmind.orchestrator._graph import DerivedChange, TaskGraph


def artifact_event(
    message: ArtifactStreamed, task_id: str, version: int, at: float
) -> ev.SubtaskArtifactEvent:
    """The event of a chunk an agent streamed (no log entry: chunks are not kept)."""
    chunk = message.chunk
    return ev.SubtaskArtifactEvent(
        task_id=task_id,
        version=version,
        at=at,
        subtask_id=message.subtask_id,
        artifact_id=chunk.artifact_id,
        name=chunk.name,
        parts=chunk.parts_json(),
        append=chunk.append,
        last=chunk.last,
    )


def events_for(
    entry: LogEntry,
    changes: list[DerivedChange],
    graph: TaskGraph,
    *,
    task_id: str,
    now: float,
    by: str | None,
    routing: tuple[str, ...] = (),
) -> list[ev.TaskEvent]:
    """The events an entry (already applied to ``graph``) and what followed from it emit.

    Args:
        entry: The applied entry.
        changes: Statuses that followed from it (skips, cancellations, upstream failures).
        graph: The graph after the entry.
        task_id: The task's id.
        now: The time to stamp events with when the entry has none.
        by: Who made a structural edit (a subtask id, ``planner``, or None for a user).
        routing: For a start: the ranked candidates the router offered.
    """
    base: dict[str, Any] = {"task_id": task_id, "version": graph.version, "at": entry.at or now}
    out: list[ev.TaskEvent] = []
    match entry:
        case SubtaskStarted():
            out.append(
                ev.SubtaskStartedEvent(
                    **base, subtask_id=entry.subtask_id, agent=entry.agent, routing=routing
                )
            )
        case SubtaskRouted():
            out.append(
                ev.SubtaskRoutedEvent(
                    **base,
                    subtask_id=entry.subtask_id,
                    candidates=entry.candidates,
                    excluded=entry.excluded,
                )
            )
        case SubtaskProgressed():
            out.append(
                ev.SubtaskProgressEvent(
                    **base,
                    subtask_id=entry.subtask_id,
                    message=entry.message,
                    fraction=entry.fraction,
                    step=entry.step,
                )
            )
        case SubtaskRetried():
            state = graph.state(entry.subtask_id)
            out.append(
                ev.SubtaskRetriedEvent(
                    **base,
                    subtask_id=entry.subtask_id,
                    agent=state.agent or "",
                    attempt=state.attempts,  # already counts the attempt about to be made
                    error=entry.error,
                    delay_s=entry.delay_s,
                )
            )
        case SubtaskReassigned():
            out.append(
                ev.SubtaskReassignedEvent(
                    **base, subtask_id=entry.subtask_id, agent=entry.agent, error=entry.error
                )
            )
        case SubtaskFinished():
            state = graph.state(entry.subtask_id)
            if entry.status == "done":
                out.append(
                    ev.SubtaskDoneEvent(
                        **base,
                        subtask_id=entry.subtask_id,
                        agent=state.agent,
                        output=entry.output,
                        duration_s=state.duration_s,
                    )
                )
            else:
                out.append(
                    ev.SubtaskFailedEvent(
                        **base,
                        subtask_id=entry.subtask_id,
                        agent=state.agent,
                        error=entry.error or {},
                    )
                )
        case SubtaskReplanned():
            out.append(
                ev.SubtaskReplannedEvent(
                    **base,
                    subtask_id=entry.subtask_id,
                    outcome=entry.outcome,
                    reason=entry.reason,
                    edits=entry.edits,
                )
            )
        case (
            AddSubtask() | RemoveSubtask() | UpdateSubtask() | AddDependency() | RemoveDependency()
        ):
            out.append(ev.GraphEditedEvent(**base, edit=entry, by=by))
        case TaskResumed():
            out.append(ev.TaskResumedEvent(**base, down_s=entry.down_s))
        case SubtaskRequeued() | SubtaskAnswered() | TaskPlanned() | TaskCancelledEntry():
            pass  # followers learn of these through the changes they cause
        case _:
            assert_never(entry)
    for change in changes:
        sid = change.subtask_id
        if change.status is SubtaskStatus.SKIPPED:
            out.append(ev.SubtaskSkippedEvent(**base, subtask_id=sid, reason=change.reason))
        elif change.status is SubtaskStatus.CANCELLED:
            out.append(ev.SubtaskCancelledEvent(**base, subtask_id=sid, reason=change.reason))
        elif change.status is SubtaskStatus.FAILED:
            out.append(
                ev.SubtaskFailedEvent(
                    **base, subtask_id=sid, agent=None, error=graph.state(sid).error or {}
                )
            )
    return out
