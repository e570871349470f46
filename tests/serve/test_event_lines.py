"""Every kind of task event has a one-line description for MCP progress notifications."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from fleetmind.orchestrator import _events
from fleetmind.serve._mcp_results import event_message

SAMPLES: dict[str, object] = {"str": "s1", "int": 1, "float": 0.5, "bool": True}


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
        hint = str(hints[field.name])
        base = next((v for k, v in SAMPLES.items() if hint.startswith(k)), None)
        values[field.name] = base if base is not None else ({} if "dict" in hint else ())
    return cls(**values)


def test_every_event_kind_is_sampled() -> None:
    kinds = {cls.__name__ for cls in event_kinds()}
    assert {"SubtaskReplanned", "TaskFinished", "SubtaskRouted"} <= kinds
    assert len(kinds) == len(typing.get_args(_events.TaskEvent))


@pytest.mark.parametrize("cls", event_kinds(), ids=lambda c: c.__name__)
def test_every_event_has_a_one_line_message(cls: type[_events.Event]) -> None:
    message = event_message(sample(cls))  # type: ignore[arg-type]
    assert message and "\n" not in message
