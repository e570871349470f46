"""The MCP progress meter: whatever the events, every value is larger than the one before."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from fleetmind.orchestrator import (
    SubtaskDoneEvent,
    SubtaskProgressEvent,
    SubtaskReadyEvent,
    TaskEvent,
    TaskFinishedEvent,
)
from fleetmind.serve._mcp_progress import ProgressMeter

_IDS = ["a", "b", "c", "d"]


def _event(kind: str, sid: str, fraction: float) -> TaskEvent:
    common = {"task_id": "t", "version": 1, "at": 0.0}
    if kind == "ready":
        return SubtaskReadyEvent(subtask_id=sid, **common)
    if kind == "progress":
        return SubtaskProgressEvent(subtask_id=sid, message="m", fraction=fraction, **common)
    return SubtaskDoneEvent(subtask_id=sid, agent="x", output=1, duration_s=0.1, **common)


_events = st.lists(
    st.tuples(
        st.sampled_from(["ready", "progress", "done"]),
        st.sampled_from(_IDS),
        st.floats(min_value=-1, max_value=2),
    ),
    max_size=60,
)


@given(_events, st.integers(min_value=1, max_value=4))
def test_progress_rises_with_every_event_and_only_the_end_reaches_the_total(
    events: list[tuple[str, str, float]], grown: int
) -> None:
    meter = ProgressMeter()
    size = 2
    values = [meter.start(size)]
    for kind, sid, fraction in events:
        size = min(size + (1 if kind == "ready" else 0), 2 + grown)
        values.append(meter.advance(_event(kind, sid, fraction), size))
    end = meter.advance(TaskFinishedEvent(task_id="t", version=1, at=0.0, status="done"), size)
    progresses = [p for p, _ in values] + [end[0]]
    assert all(b > a for a, b in itertools.pairwise(progresses))
    assert all(p < total for p, total in values)
    assert end[0] == end[1]


def test_values_read_as_short_decimals() -> None:
    meter = ProgressMeter()
    meter.start(3)
    shown = [meter.advance(_event("progress", "a", f / 10), 3)[0] for f in range(1, 10)]
    assert all(len(repr(v).split(".")[-1]) <= 4 for v in shown), shown
