"""The messages of an engine's inbox: everything that happens to a running task arrives as one.

Runners (one per running subtask), the agent directory, the replanner, timers and the task's
handle post these; the engine's loop applies them one by one. A runner's message carries its
run token, so that a message from a run that was superseded changes nothing. What is left in
the inbox when the engine stops is settled by :func:`settle_leftovers`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fleetmind._task_log import GraphEdit
from fleetmind.agents import ArtifactChunk, SubtaskResult
from fleetmind.errors import FleetStateError
from fleetmind.orchestrator._replan import ReplanDecision

if TYPE_CHECKING:
    from fleetmind.orchestrator._attempt import GaveUp
    from fleetmind.orchestrator._directory import AgentDirectory

Hooks = tuple[Callable[[], None], ...]
"""What to call once an attempt's outcome is in the store (``SubtaskContext.after_saved``)."""


@dataclass(frozen=True, slots=True)
class RunSucceeded:
    subtask_id: str
    agent_id: str
    token: int
    result: SubtaskResult
    saved: Hooks = ()


@dataclass(frozen=True, slots=True)
class RunRetrying:
    subtask_id: str
    agent_id: str
    token: int
    attempt: int
    error: dict[str, Any]
    delay_s: float
    saved: Hooks = ()


@dataclass(frozen=True, slots=True)
class RunGaveUp:
    subtask_id: str
    agent_id: str
    token: int
    error: dict[str, Any]
    step: GaveUp
    """What follows (decided by :func:`~fleetmind.orchestrator._attempt.next_step`)."""
    saved: Hooks = ()


@dataclass(frozen=True, slots=True)
class AgentsChanged:
    """Agents joined the fleet, or a wait for them ran out: route the waiting subtasks."""


@dataclass(frozen=True, slots=True)
class ProgressReported:
    subtask_id: str
    token: int
    message: str
    fraction: float | None
    step: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ArtifactStreamed:
    subtask_id: str
    token: int
    chunk: ArtifactChunk


@dataclass(frozen=True, slots=True)
class Replanned:
    subtask_id: str
    error: dict[str, Any]
    """The failure that was replanned."""
    decision: ReplanDecision | None
    problem: str = ""
    """Why there is no decision (the planner or its model failed)."""


@dataclass(frozen=True, slots=True)
class SlotOffered:
    subtask_id: str
    agent_id: str


@dataclass(frozen=True, slots=True)
class AgentGone:
    subtask_id: str


@dataclass(frozen=True, slots=True)
class EditRequested:
    edit: GraphEdit
    done: asyncio.Future[None]


@dataclass(frozen=True, slots=True)
class CancelRequested:
    reason: str


@dataclass(frozen=True, slots=True)
class LeaseEnded:
    """The replica's lease on the task is gone (another replica claimed it): stop driving it."""


Message = (
    RunSucceeded
    | RunRetrying
    | RunGaveUp
    | ProgressReported
    | ArtifactStreamed
    | SlotOffered
    | AgentGone
    | EditRequested
    | CancelRequested
    | LeaseEnded
    | Replanned
    | AgentsChanged
)


def settle_leftovers(
    inbox: asyncio.Queue[Message], directory: AgentDirectory, task_id: str
) -> None:
    """Settle the messages left when a task's engine stops: refuse the edits, hand back the
    slots offered. (A late Replanned, of a task cancelled meanwhile, needs nothing.)"""
    while not inbox.empty():
        message = inbox.get_nowait()
        if isinstance(message, EditRequested) and not message.done.done():
            message.done.set_exception(
                FleetStateError(f"task {task_id} has finished; it cannot be edited")
            )
        elif isinstance(message, SlotOffered):
            directory.release(message.agent_id)
