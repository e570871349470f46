"""The seam between the engine and whoever replans a task when a subtask fails for good.

The engine does not know about models or prompts: when a subtask has no agent left to try (or
no agent could take it at all), it hands a :class:`ReplanRequest` to its :class:`Replanner` and
goes on running the rest of the graph. The answer comes back as graph edits, which the engine
applies through the same validated live-edit path as any other edit, and logs with the reason.
The :class:`~fleetmind.orchestrator.Planner` is the replanner of planned tasks. A failure no
new plan can help (see :func:`fleetmind.errors.replan_may_help`) is not handed over.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from fleetmind._task_log import GraphEdit
from fleetmind.orchestrator._graph import TaskGraph


@dataclass(frozen=True)
class ReplanRequest:
    """A subtask failed for good; what the replanner knows.

    Attributes:
        task_id: The task.
        graph: A copy of the graph as it stands (the failed subtask is not finished yet).
        subtask_id: The subtask that failed.
        error: Its last error, ``{type, message, retryable, details}``.
        replans_done: Replans already made for this task.
    """

    task_id: str
    graph: TaskGraph
    subtask_id: str
    error: dict[str, Any]
    replans_done: int


@dataclass(frozen=True)
class ReplanDecision:
    """The replanner's answer: edits to apply (none when it gives up), and why."""

    edits: tuple[GraphEdit, ...]
    reason: str
    exchanges: tuple[dict[str, Any], ...] = ()
    """The model exchanges behind the decision, for the log."""


@runtime_checkable
class Replanner(Protocol):
    """Answers a subtask's failure with edits to the part of the graph that has not started."""

    async def replan(self, request: ReplanRequest) -> ReplanDecision:
        """Edits that work round the failure, or none (with the reason) when there is no way.

        Raises:
            PlanningError: no valid edit within the replanner's rounds.
            ModelError: the model could not be asked.
        """
        ...
