"""The seam through which a resumed engine finds answers that arrived while it was down.

A device may finish a subtask while the orchestrator that dispatched it is dead; the broker
keeps the answer in the orchestrator's session and hands it over when the orchestrator comes
back. The fleet link holds such answers (for dispatches the task's log shows were made: same
subtask, same agent, an attempt the log allows) and gives them to the engine, which uses them
instead of running the subtask again — whichever agent the router would choose now.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from fleetmind.agents import SubtaskResult
from fleetmind.errors import FleetmindError

Recovered = tuple[SubtaskResult | FleetmindError, Callable[[], None]]
"""An attempt's outcome, and what to call once the engine has saved it (the acknowledgement)."""


@runtime_checkable
class ResultSource(Protocol):
    """Keeps answers to attempts made before a crash."""

    def recovered(
        self, task_id: str, subtask_id: str, agent_id: str, epochs: range
    ) -> Recovered | None:
        """The outcome of one of these attempts of the subtask on that agent, if one came."""
        ...
