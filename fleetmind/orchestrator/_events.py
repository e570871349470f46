"""The typed event stream of a running task, and the broadcaster that fans it out.

Every consumer (the CLI's live view, an A2A stream, a test) calls ``events()`` and gets every
event from the task's start, in order, no matter when it subscribed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Literal, assert_never

from fleetmind._task_log import (
    AddDependency,
    AddSubtask,
    RemoveDependency,
    RemoveSubtask,
    UpdateSubtask,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Something that happened in a task. ``version`` is the graph's version at that moment."""

    task_id: str
    version: int
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SubtaskReadyEvent(Event):
    """A subtask's dependencies are satisfied; it waits for an agent."""

    kind: Literal["subtask_ready"] = "subtask_ready"
    subtask_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SubtaskRoutedEvent(Event):
    """The router ranked candidate agents for a subtask (and says why others were excluded)."""

    kind: Literal["subtask_routed"] = "subtask_routed"
    subtask_id: str
    candidates: tuple[dict[str, Any], ...]
    """Best first: ``agent_id``, ``score``, ``similarity``, ``via`` and the score's parts."""
    excluded: dict[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class SubtaskStartedEvent(Event):
    """An agent started working on a subtask."""

    kind: Literal["subtask_started"] = "subtask_started"
    subtask_id: str
    agent: str
    routing: tuple[str, ...] = ()
    """The ranked candidate agents the router offered."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SubtaskProgressEvent(Event):
    """A running subtask reported progress."""

    kind: Literal["subtask_progress"] = "subtask_progress"
    subtask_id: str
    message: str
    fraction: float | None
    step: dict[str, Any] | None = None
    """For an LLM agent's step: its record (tier, model, tokens, cost, latency, tool calls)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SubtaskArtifactEvent(Event):
    """A running subtask streamed a chunk of an artifact (``ctx.stream_artifact``).

    Not kept in the task's log: followers of the live stream see the chunks, and the subtask's
    output is what stays.
    """

    kind: Literal["subtask_artifact"] = "subtask_artifact"
    subtask_id: str
    artifact_id: str
    name: str | None
    parts: tuple[dict[str, Any], ...]
    """The chunk's parts as plain JSON (one object per part, with its ``kind``)."""
    append: bool
    """Whether the parts extend the artifact's earlier chunks."""
    last: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class SubtaskRetriedEvent(Event):
    """An attempt failed; the same agent tries again after ``delay_s``."""

    kind: Literal["subtask_retried"] = "subtask_retried"
    subtask_id: str
    agent: str
    attempt: int
    """The attempt that is about to be made (2 for the first retry)."""
    error: dict[str, Any]
    delay_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SubtaskReassignedEvent(Event):
    """An agent failed a subtask for good; the next-best candidate will get it."""

    kind: Literal["subtask_reassigned"] = "subtask_reassigned"
    subtask_id: str
    agent: str
    error: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class SubtaskDoneEvent(Event):
    """A subtask finished with an output."""

    kind: Literal["subtask_done"] = "subtask_done"
    subtask_id: str
    agent: str | None
    output: Any
    duration_s: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SubtaskFailedEvent(Event):
    """A subtask failed: its agents gave up, or a dependency it needed did not succeed."""

    kind: Literal["subtask_failed"] = "subtask_failed"
    subtask_id: str
    agent: str | None
    error: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class SubtaskSkippedEvent(Event):
    """A subtask will not run because of how a dependency ended."""

    kind: Literal["subtask_skipped"] = "subtask_skipped"
    subtask_id: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SubtaskCancelledEvent(Event):
    """A subtask was cancelled with its task."""

    kind: Literal["subtask_cancelled"] = "subtask_cancelled"
    subtask_id: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class GraphEditedEvent(Event):
    """The task graph changed while it ran (an agent's result, or a user's edit)."""

    kind: Literal["graph_edited"] = "graph_edited"
    edit: Any
    """The structural log entry that was applied."""
    by: str | None = None
    """The subtask whose result carried the edit, or None for a user's edit."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SubtaskReplannedEvent(Event):
    """A subtask failed for good and the planner answered with graph edits (or could not)."""

    kind: Literal["subtask_replanned"] = "subtask_replanned"
    subtask_id: str
    outcome: str
    """``edited``, ``gave_up`` or ``failed``."""
    reason: str
    edits: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskFinishedEvent(Event):
    """The task ended: done, failed or cancelled."""

    kind: Literal["task_finished"] = "task_finished"
    status: str
    counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskResumedEvent(Event):
    """A stored task was taken up again after its process stopped (interrupted or crashed)."""

    kind: Literal["task_resumed"] = "task_resumed"
    down_s: float
    """How long it was stopped (0 when unknown): counted in no subtask's duration."""


TaskEvent = (
    SubtaskReadyEvent
    | SubtaskRoutedEvent
    | SubtaskStartedEvent
    | SubtaskProgressEvent
    | SubtaskArtifactEvent
    | SubtaskRetriedEvent
    | SubtaskReassignedEvent
    | SubtaskDoneEvent
    | SubtaskFailedEvent
    | SubtaskSkippedEvent
    | SubtaskCancelledEvent
    | SubtaskReplannedEvent
    | GraphEditedEvent
    | TaskResumedEvent
    | TaskFinishedEvent
)


def describe_event(event: TaskEvent, *, style: Literal["log", "notice"] = "log") -> str | None:
    """One line of text saying what an event means, or None where the style leaves it out.

    ``log`` (a terminal's log of a task) leads with a mark (``▶ s1 started on a``) and has no
    line for a subtask becoming ready or being routed; ``notice`` (a progress notification or
    a status message) reads ``s1: started on a`` and has a line for every event.
    """
    subject: str | None = None
    match event:
        case SubtaskReadyEvent():
            mark, subject, text = "○", event.subtask_id, "ready"
            if style == "log":
                return None
        case SubtaskRoutedEvent():
            best = event.candidates[0]["agent_id"] if event.candidates else "nobody"
            mark, subject, text = "→", event.subtask_id, f"routed, best candidate {best}"
            if style == "log":
                return None
        case SubtaskStartedEvent():
            mark, subject, text = "▶", event.subtask_id, f"started on {event.agent}"
        case SubtaskProgressEvent():
            share = f" ({event.fraction:.0%})" if event.fraction is not None else ""
            mark, subject, text = "…", f"{event.subtask_id}:", f"{event.message}{share}"
        case SubtaskArtifactEvent():
            mark, subject = "⇣", f"{event.subtask_id}:"
            text = f"{'last ' if event.last else ''}chunk of {event.name or event.artifact_id}"
        case SubtaskRetriedEvent():
            mark, subject = "↻", event.subtask_id
            text = (
                f"retry {event.attempt} on {event.agent} in {event.delay_s:.2f}s after: "
                f"{event.error.get('message', '')}"
            )
        case SubtaskReassignedEvent():
            mark, subject = "⇄", event.subtask_id
            text = f"taken from {event.agent}: {event.error.get('message', '')}"
        case SubtaskDoneEvent():
            mark, subject = "✓", event.subtask_id
            if style == "log":
                text = "done" + (
                    f" in {event.duration_s:.2f}s" if event.duration_s is not None else ""
                )
            else:
                text = "done" + (f" by {event.agent}" if event.agent else "")
        case SubtaskFailedEvent():
            mark, subject, text = "✗", event.subtask_id, f"failed: {event.error.get('message', '')}"
        case SubtaskSkippedEvent():
            mark, subject, text = "↷", event.subtask_id, f"skipped: {event.reason}"
        case SubtaskCancelledEvent():
            mark, subject = "⊘", event.subtask_id
            text = "cancelled" + (f": {event.reason}" if event.reason else "")
        case SubtaskReplannedEvent():
            mark, subject = "⟲", event.subtask_id
            edits = f" ({event.edits} edits)" if event.edits else ""
            text = f"replanned: {event.outcome}{edits} — {event.reason}"
        case GraphEditedEvent():
            who = f" by {event.by}" if event.by else ""
            mark, text = "+", f"graph edited{who}: {_edit_text(event.edit)}"
        case TaskResumedEvent():
            mark, text = (
                "⏵",
                f"task {event.task_id} resumed after {_stopped_for(event.down_s)} stopped",
            )
        case TaskFinishedEvent():
            mark, text = "■", f"task {event.task_id} {event.status}"
        case _:
            assert_never(event)
    if style == "log":
        return f"{mark} {subject} {text}" if subject else f"{mark} {text}"
    return f"{subject.removesuffix(':')}: {text}" if subject else text


def _edit_text(edit: Any) -> str:
    """A structural edit in a few words: ``added s3 after s1``, ``s1 -> s2``."""
    match edit:
        case AddSubtask():
            deps = ", ".join(d.source for d in edit.dependencies)
            return f"added {edit.subtask.id}" + (f" after {deps}" if deps else "")
        case RemoveSubtask():
            return f"removed {edit.subtask_id}"
        case UpdateSubtask():
            return f"updated {edit.subtask.id}"
        case AddDependency():
            return f"{edit.dependency.source} -> {edit.dependency.target}"
        case RemoveDependency():
            return f"removed {edit.source} -> {edit.target}"
    return str(getattr(edit, "kind", edit))


def _stopped_for(seconds: float) -> str:
    """A stretch of downtime in words: ``4.2s``, ``3m 05s``, ``2h 07m``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    return f"{minutes // 60}h {minutes % 60:02d}m"


class EventBroadcaster:
    """Keeps a task's events and hands every subscriber all of them, from the first.

    Publishing never blocks the engine: each subscriber has its own unbounded queue, and the
    history is kept so that late subscribers miss nothing.
    """

    def __init__(self) -> None:
        self._history: list[TaskEvent] = []
        self._subscribers: list[asyncio.Queue[TaskEvent | None]] = []
        self._closed = False

    @property
    def history(self) -> list[TaskEvent]:
        """Every event published so far."""
        return list(self._history)

    def publish(self, event: TaskEvent) -> None:
        """Record an event and pass it to every subscriber."""
        self._history.append(event)
        for queue in self._subscribers:
            queue.put_nowait(event)

    def close(self) -> None:
        """End every subscription once it has read all events."""
        self._closed = True
        for queue in self._subscribers:
            queue.put_nowait(None)

    async def subscribe(self) -> AsyncGenerator[TaskEvent]:
        """Every event of the task, from its first, until the task finishes."""
        queue: asyncio.Queue[TaskEvent | None] = asyncio.Queue()
        for event in self._history:
            queue.put_nowait(event)
        if self._closed:
            queue.put_nowait(None)
        self._subscribers.append(queue)
        try:
            while (item := await queue.get()) is not None:
                yield item
        finally:
            self._subscribers.remove(queue)
