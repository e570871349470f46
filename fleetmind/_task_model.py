"""The vocabulary of task graphs: subtasks, dependencies, retry policies and statuses.

It lives outside `orchestrator/` because agents speak it too (an agent receives a Subtask) and
agents must not import the orchestrator. `fleetmind.orchestrator` re-exports it.

These are pydantic models because they cross boundaries: they are read from YAML/JSON task
files, written to the store, and sent to remote agents.
"""

from __future__ import annotations

import enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fleetmind._ids import AgentId, SubtaskId


class SubtaskStatus(enum.StrEnum):
    """Where a subtask is in its life: pending -> ready -> running -> a terminal status."""

    PENDING = "pending"
    READY = "ready"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"

    @property
    def is_terminal(self) -> bool:
        """Whether the subtask has finished, one way or another."""
        return self in _TERMINAL

    @property
    def has_started(self) -> bool:
        """Whether the subtask is running or finished: such subtasks are never rewritten."""
        return self not in (SubtaskStatus.PENDING, SubtaskStatus.READY)


_TERMINAL = frozenset(
    {SubtaskStatus.DONE, SubtaskStatus.FAILED, SubtaskStatus.CANCELLED, SubtaskStatus.SKIPPED}
)


class RetryPolicy(BaseModel):
    """How often, and how patiently, one agent is asked again after a failed attempt.

    After ``max_attempts`` failed attempts on one agent, the engine hands the subtask to the
    next-best candidate agent (which gets its own ``max_attempts``), and fails it only when no
    candidate is left.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_attempts: int = Field(default=3, ge=1, le=100)
    initial_backoff_s: float = Field(default=0.2, ge=0)
    backoff_multiplier: float = Field(default=2.0, ge=1)
    max_backoff_s: float = Field(default=30.0, ge=0)

    def backoff_s(self, failed_attempts: int) -> float:
        """Seconds to wait after the ``failed_attempts``-th failure (1-based)."""
        delay = self.initial_backoff_s * self.backoff_multiplier ** max(failed_attempts - 1, 0)
        return min(delay, self.max_backoff_s)


class Subtask(BaseModel):
    """One unit of work in a task graph: what to do, with which inputs, by whom.

    An agent is chosen by its explicit ``agent`` id when one is given, otherwise by ``skill`` (a
    skill name or tag that the agent's profile declares).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: SubtaskId
    description: str = ""
    agent: AgentId | None = None
    skill: str | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    timeout_s: float | None = Field(default=None, gt=0)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    constraints: dict[str, Any] = Field(default_factory=dict)


class DependencyKind(enum.StrEnum):
    """``control``: the target waits for the source. ``data``: the source's output feeds it."""

    CONTROL = "control"
    DATA = "data"


class Condition(enum.StrEnum):
    """When a dependency lets its target run, given how the source ended.

    - ``success``: only if the source is done. A failed or cancelled source fails the target
      (``UpstreamFailed``); a skipped source skips it.
    - ``always``: whatever the source's outcome, once it has finished.
    - ``failure``: only if the source failed (a fallback or clean-up step); otherwise skipped.
    """

    SUCCESS = "success"
    ALWAYS = "always"
    FAILURE = "failure"


class Dependency(BaseModel):
    """An edge ``source -> target`` of the task graph.

    For a ``data`` dependency, the source's output (or its field ``output`` when the output is a
    mapping) becomes the target's input named ``input``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: SubtaskId
    target: SubtaskId
    kind: DependencyKind = DependencyKind.CONTROL
    condition: Condition = Condition.SUCCESS
    output: str | None = None
    input: str | None = None

    @model_validator(mode="after")
    def _check_shape(self) -> Dependency:
        if self.source == self.target:
            raise ValueError(f"subtask {self.source!r} cannot depend on itself")
        if self.kind is DependencyKind.DATA and not self.input:
            raise ValueError(
                f"data dependency {self.source!r} -> {self.target!r} needs an 'input' name"
            )
        if self.kind is DependencyKind.CONTROL and (self.input or self.output):
            raise ValueError(
                f"control dependency {self.source!r} -> {self.target!r} cannot carry data; "
                "use kind: data"
            )
        return self

    @property
    def key(self) -> tuple[str, str, str]:
        """Identity of the edge: one control edge per pair, one data edge per target input."""
        return (self.source, self.target, self.input or "")


TaskStatus = Literal["running", "interrupted", "done", "failed", "cancelled"]
"""A task's status in the store; ``interrupted``: stopped by its user (Ctrl-C), resumable."""
