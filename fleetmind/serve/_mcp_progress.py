"""MCP progress for a running task: a value that goes up with every notification.

MCP requires each progress notification of a request to carry a larger ``progress`` than the
one before, even when nothing measurable moved (a subtask became ready, was routed, retried).
The value here counts subtasks: a finished one (done, failed, skipped or cancelled) is worth 1,
a running one the share of its work its agent reports (up to 0.9, so that finishing still
shows), and ``total`` is the number of subtasks, which grows when the graph does. An event that
moves nothing still nudges the value a little towards the total, and only the task's end
reaches the total itself.
"""

from __future__ import annotations

import math

from fleetmind.orchestrator import (
    SubtaskCancelledEvent,
    SubtaskDoneEvent,
    SubtaskFailedEvent,
    SubtaskProgressEvent,
    SubtaskSkippedEvent,
    TaskEvent,
    TaskFinishedEvent,
)

_FINISHING = (SubtaskDoneEvent, SubtaskFailedEvent, SubtaskSkippedEvent, SubtaskCancelledEvent)

RUNNING_SHARE = 0.9
"""The most a running subtask counts for, however far its agent says it has come."""

END_ROOM = 0.01
"""How far below the total the value stays until the task has ended."""

NUDGE = 0.01
"""The share of the distance to the total that an event which moves nothing adds."""


class ProgressMeter:
    """Turns one task's events into (progress, total) pairs that only ever go up."""

    def __init__(self) -> None:
        self._last: float | None = None
        self._finished: set[str] = set()
        self._running: dict[str, float] = {}

    def start(self, subtasks: int) -> tuple[float, float]:
        """The pair for the first notification: the task was submitted, nothing has run."""
        return self._next(0.0, float(max(subtasks, 1)), ended=False)

    def advance(self, event: TaskEvent, subtasks: int) -> tuple[float, float]:
        """The pair for the notification of ``event``; ``subtasks`` is the graph's size now."""
        if isinstance(event, _FINISHING):
            self._finished.add(event.subtask_id)
            self._running.pop(event.subtask_id, None)
        elif (
            isinstance(event, SubtaskProgressEvent)
            and event.fraction is not None
            and event.subtask_id not in self._finished
        ):
            share = min(max(event.fraction, 0.0), 1.0) * RUNNING_SHARE
            self._running[event.subtask_id] = max(self._running.get(event.subtask_id, 0), share)
        total = float(max(subtasks, len(self._finished), 1))
        done = len(self._finished) + sum(self._running.values())
        return self._next(done, total, ended=isinstance(event, TaskFinishedEvent))

    def _next(self, done: float, total: float, *, ended: bool) -> tuple[float, float]:
        target = total if ended else min(done, total - END_ROOM)
        last = self._last
        if last is None or target > last:
            value = target
        else:
            value = last + max(total - last, 0.0) * NUDGE
            if value <= last:  # so close to the total that the nudge vanished in rounding
                value = math.nextafter(last, math.inf)
        # Four decimals read better (0.18, not 0.18000000000000002) wherever that keeps the
        # value rising and, before the end, below the total.
        rounded = round(value, 4)
        if (last is None or rounded > last) and (ended or rounded < total):
            value = rounded
        self._last = value
        return value, max(total, value)
