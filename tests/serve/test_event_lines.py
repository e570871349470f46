"""Every kind of task event has a one-line description, in each style its callers use."""

from __future__ import annotations

import dataclasses
import types
import typing

import pytest

from fleetmind.orchestrator import _events, describe_event

SAMPLES: dict[object, object] = {str: "s1", int: 1, float: 0.5, bool: True}


def event_kinds() -> list[type[_events.Event]]:
    return [
        cls
        for cls in vars(_events).values()
        if isinstance(cls, type) and issubclass(cls, _events.Event) and cls is not _events.Event
    ]


def sample(cls: type[_events.Event]) -> _events.Event:
    """An instance with a plausible value in every field that has no default."""
    values: dict[str, object] = {}
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.default is not dataclasses.MISSING or field.name == "kind":
            continue
        if field.default_factory is not dataclasses.MISSING:
            continue
        hint = hints[field.name]
        options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        base = next((SAMPLES[option] for option in options if option in SAMPLES), None)
        values[field.name] = base if base is not None else ({} if "dict" in str(hint) else ())
    return cls(**values)


def test_every_event_kind_is_sampled() -> None:
    kinds = {cls.__name__ for cls in event_kinds()}
    assert {"SubtaskReplannedEvent", "TaskFinishedEvent", "SubtaskRoutedEvent"} <= kinds
    assert len(kinds) == len(typing.get_args(_events.TaskEvent))


@pytest.mark.parametrize("cls", event_kinds(), ids=lambda c: c.__name__)
def test_every_event_has_a_one_line_notice(cls: type[_events.Event]) -> None:
    message = describe_event(sample(cls), style="notice")  # type: ignore[arg-type]
    assert message and "\n" not in message


@pytest.mark.parametrize("cls", event_kinds(), ids=lambda c: c.__name__)
def test_a_log_line_is_one_line_or_none_for_ready_and_routed(cls: type[_events.Event]) -> None:
    line = describe_event(sample(cls))  # type: ignore[arg-type]
    if cls in (_events.SubtaskReadyEvent, _events.SubtaskRoutedEvent):
        assert line is None
    else:
        assert line and "\n" not in line


BASE = {"task_id": "t1", "version": 3, "at": 0.0}
ERROR = {"type": "SubtaskTimeout", "message": "too slow"}


@pytest.mark.parametrize(
    ("event", "log", "notice"),
    [
        (
            _events.SubtaskStartedEvent(**BASE, subtask_id="s", agent="a"),
            "▶ s started on a",
            "s: started on a",
        ),
        (
            _events.SubtaskDoneEvent(**BASE, subtask_id="s", agent="a", output=1, duration_s=1.5),
            "✓ s done in 1.50s",
            "s: done by a",
        ),
        (
            _events.SubtaskFailedEvent(**BASE, subtask_id="s", agent="a", error=ERROR),
            "✗ s failed: too slow",
            "s: failed: too slow",
        ),
        (
            _events.SubtaskProgressEvent(**BASE, subtask_id="s", message="half", fraction=0.5),
            "… s: half (50%)",
            "s: half (50%)",
        ),
        (
            _events.SubtaskCancelledEvent(**BASE, subtask_id="s", reason="user asked"),
            "⊘ s cancelled: user asked",
            "s: cancelled: user asked",
        ),
        (
            _events.SubtaskReplannedEvent(
                **BASE, subtask_id="s", outcome="edited", reason="split it", edits=2
            ),
            "⟲ s replanned: edited (2 edits) — split it",
            "s: replanned: edited (2 edits) — split it",
        ),
        (
            _events.TaskResumedEvent(**BASE, down_s=125.0),
            "⏵ task t1 resumed after 2m 05s stopped",
            "task t1 resumed after 2m 05s stopped",
        ),
        (
            _events.TaskFinishedEvent(**BASE, status="done"),
            "■ task t1 done",
            "task t1 done",
        ),
        (
            _events.SubtaskRoutedEvent(
                **BASE, subtask_id="s", candidates=({"agent_id": "a"},), excluded={}
            ),
            None,
            "s: routed, best candidate a",
        ),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, _events.Event) else "",
)
def test_each_style_words_an_event_its_own_way(
    event: _events.TaskEvent, log: str | None, notice: str
) -> None:
    assert describe_event(event) == log
    assert describe_event(event, style="notice") == notice


def test_a_graph_edit_says_what_changed_and_who_changed_it() -> None:
    from fleetmind.orchestrator import AddSubtask, Dependency, Subtask

    edit = AddSubtask(
        subtask=Subtask(id="c", description="check"),
        dependencies=(Dependency(source="a", target="c"),),
    )
    event = _events.GraphEditedEvent(**BASE, edit=edit, by="a")
    assert describe_event(event) == "+ graph edited by a: added c after a"
    assert describe_event(event, style="notice") == "graph edited by a: added c after a"
