"""Every fleetmind error lives in ``fleetmind.errors`` and comes back whole from its dict.

An error that crosses a process boundary travels as ``to_dict()`` and is rebuilt with
``error_from_dict``: a class defined anywhere else would come back as a plain ``RunError``.
"""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import fleetmind
from fleetmind import errors

_ALL = sorted(errors._all_errors(errors.FleetmindError), key=lambda cls: cls.__name__)


def _instance(cls: type[errors.FleetmindError]) -> errors.FleetmindError:
    if cls is errors.MissingExtra:
        return errors.MissingExtra("a feature", "orchestrator", "numpy is missing")
    if cls is errors.InputRequired:
        return errors.InputRequired("which file?")
    return cls("something went wrong", details={"where": "here"})


@pytest.mark.parametrize("cls", _ALL, ids=lambda cls: cls.__name__)
def test_each_error_rebuilds_from_its_dict(cls: type[errors.FleetmindError]) -> None:
    original = _instance(cls)
    rebuilt = errors.error_from_dict(original.to_dict())
    assert type(rebuilt) is cls
    assert rebuilt.to_dict() == original.to_dict()
    assert rebuilt.type_name == ""


def test_every_error_class_is_defined_in_errors_module() -> None:
    for info in pkgutil.walk_packages(fleetmind.__path__, "fleetmind."):
        try:
            importlib.import_module(info.name)
        except ImportError:
            continue  # an optional extra that is not installed
    outside = [
        f"{cls.__module__}.{cls.__name__}"
        for cls in errors._all_errors(errors.FleetmindError)
        if cls.__module__ != "fleetmind.errors"
    ]
    assert outside == []


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("fleetmind.memory._items", "MemoryStoreError"),
        ("fleetmind.memory._items", "ItemTooLarge"),
        ("fleetmind.memory", "ItemTooLarge"),
        ("fleetmind.agents._step_outcomes", "OutcomeFileError"),
        ("fleetmind.agents._step_model", "StepRouterFileError"),
        ("fleetmind.orchestrator._embedding_models", "ModelAssemblyError"),
        ("fleetmind.agents.remote._device_memory", "MemoryUnavailable"),
        ("fleetmind.agents.remote._device_memory", "MemoryRefused"),
        ("fleetmind.serve._device_memory_service", "MemoryAccessDenied"),
    ],
)
def test_moved_errors_still_import_from_their_old_modules(module: str, name: str) -> None:
    assert getattr(importlib.import_module(module), name) is getattr(errors, name)


def test_an_error_without_a_class_keeps_its_name() -> None:
    rebuilt = errors.error_from_dict({"type": "ValueError", "message": "bad", "retryable": False})
    assert type(rebuilt) is errors.RunError
    assert rebuilt.to_dict()["type"] == "ValueError"


@pytest.mark.parametrize(
    ("error", "may_help"),
    [
        ({"type": "InputRequired", "message": "which file?"}, False),
        ({"type": "UpstreamFailed", "message": "a failed"}, False),
        ({"type": "GraphError", "message": "bad edit"}, False),
        ({"type": "CycleError", "message": "cycle"}, False),
        ({"type": "TaskCancelled", "message": "cancelled"}, False),
        ({"type": "SubtaskFailed", "message": "gave up"}, True),
        ({"type": "NoCapableAgent", "message": "nobody"}, True),
        ({"type": "ValueError", "message": "bad value"}, True),
        (errors.UpstreamFailed("a failed"), False),
        (errors.SubtaskTimeout("too slow"), True),
    ],
)
def test_replan_may_help_follows_the_error_class(
    error: dict[str, str] | errors.FleetmindError, may_help: bool
) -> None:
    assert errors.replan_may_help(error) is may_help
