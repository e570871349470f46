"""The typed event stream of a running task, and the broadcaster that fans it out.

Every consumer (the CLI's live view, an A2A stream, a test) calls ``events()`` and gets every
event from the task's start, in order, no matter when it subscribed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Something that happened in a task. ``version`` is the graph's version at that moment."""

    task_id: str
    version: int
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SubtaskReady(Event):
    """A subtask's dependencies are satisfied; it waits for an agent."""

    kind: Literal["subtask_ready"] = "subtask_ready"
    subtask_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SubtaskRouted(Event):
    """The router ranked candidate agents for a subtask (and says why others were excluded)."""

    kind: Literal["subtask_routed"] = "subtask_routed"
    subtask_id: str
    candidates: tuple[dict[str, Any], ...]
    """Best first: ``agent_id``, ``score``, ``similarity``, ``via`` and the score's parts."""
    excluded: dict[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class SubtaskStarted(Event):
    """An agent started working on a subtask."""

    kind: Literal["subtask_started"] = "subtask_started"
    subtask_id: str
    agent: str
    routing: tuple[str, ...] = ()
    """The ranked candidate agents the router offered."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SubtaskProgress(Event):
    """A running subtask reported progress."""

    kind: Literal["subtask_progress"] = "subtask_progress"
    subtask_id: str
    message: str
    fraction: float | None
    step: dict[str, Any] | None = None
    """For an LLM agent's step: its record (tier, model, tokens, cost, latency, tool calls)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SubtaskRetried(Event):
    """An attempt failed; the same agent tries again after ``delay_s``."""

    kind: Literal["subtask_retried"] = "subtask_retried"
    subtask_id: str
    agent: str
    attempt: int
    """The attempt that is about to be made (2 for the first retry)."""
    error: dict[str, Any]
    delay_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SubtaskReassigned(Event):
    """An agent failed a subtask for good; the next-best candidate will get it."""

    kind: Literal["subtask_reassigned"] = "subtask_reassigned"
    subtask_id: str
    agent: str
    error: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class SubtaskDone(Event):
    """A subtask finished with an output."""

    kind: Literal["subtask_done"] = "subtask_done"
    subtask_id: str
    agent: str | None
    output: Any
    duration_s: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SubtaskFailed(Event):
    """A subtask failed: its agents gave up, or a dependency it needed did not succeed."""

    kind: Literal["subtask_failed"] = "subtask_failed"
    subtask_id: str
    agent: str | None
    error: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class SubtaskSkipped(Event):
    """A subtask will not run because of how a dependency ended."""

    kind: Literal["subtask_skipped"] = "subtask_skipped"
    subtask_id: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SubtaskCancelled(Event):
    """A subtask was cancelled with its task."""

    kind: Literal["subtask_cancelled"] = "subtask_cancelled"
    subtask_id: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class GraphEdited(Event):
    """The task graph changed while it ran (an agent's result, or a user's edit)."""

    kind: Literal["graph_edited"] = "graph_edited"
    edit: Any
    """The structural log entry that was applied."""
    by: str | None = None
    """The subtask whose result carried the edit, or None for a user's edit."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SubtaskReplanned(Event):
    """A subtask failed for good and the planner answered with graph edits (or could not)."""

    kind: Literal["subtask_replanned"] = "subtask_replanned"
    subtask_id: str
    outcome: str
    """``edited``, ``gave_up`` or ``failed``."""
    reason: str
    edits: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskFinished(Event):
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
    SubtaskReady
    | SubtaskRouted
    | SubtaskStarted
    | SubtaskProgress
    | SubtaskRetried
    | SubtaskReassigned
    | SubtaskDone
    | SubtaskFailed
    | SubtaskSkipped
    | SubtaskCancelled
    | SubtaskReplanned
    | GraphEdited
    | TaskResumedEvent
    | TaskFinished
)


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
