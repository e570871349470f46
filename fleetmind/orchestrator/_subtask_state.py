"""What has happened to one subtask so far, as the task graph derives it from the log."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fleetmind._task_model import SubtaskStatus


@dataclass(slots=True)
class SubtaskState:
    """What has happened to one subtask so far (derived from the log)."""

    status: SubtaskStatus = SubtaskStatus.PENDING
    agent: str | None = None
    attempts: int = 0
    """Attempts made on the current agent."""
    total_attempts: int = 0
    """Attempts made on every agent, over the subtask's whole life."""
    excluded_agents: list[str] = field(default_factory=list)
    """Agents that failed this subtask for good and are not asked again."""
    output: Any = None
    error: dict[str, Any] | None = None
    reason: str = ""
    """Why the subtask was skipped, cancelled or failed without running."""
    progress: str = ""
    fraction: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    paused_s: float = 0.0
    """Time between start and finish when the task's process was down (not counted)."""
    routing: dict[str, Any] | None = None
    """The latest routing decision: ranked candidates with scores, and exclusions."""
    steps: int = 0
    """LLM steps recorded for this subtask (every attempt)."""
    tokens: int = 0
    cost: float = 0.0
    cloud_steps: int = 0
    cloud_cost: float = 0.0
    """What the subtask's steps would have cost had every one run on the cloud model."""
    replanned: str | None = None
    """How replanning ended after this subtask failed for good: edited, gave_up or failed.
    A failed subtask that was replanned with edits no longer fails the task."""

    def copy(self) -> SubtaskState:
        """An independent copy (``dataclasses.replace`` is several times slower)."""
        return SubtaskState(
            self.status,
            self.agent,
            self.attempts,
            self.total_attempts,
            list(self.excluded_agents),
            self.output,
            self.error,
            self.reason,
            self.progress,
            self.fraction,
            self.started_at,
            self.finished_at,
            self.paused_s,
            self.routing,
            self.steps,
            self.tokens,
            self.cost,
            self.cloud_steps,
            self.cloud_cost,
            self.replanned,
        )

    def reopened(self) -> SubtaskState:
        """A pending state for the subtask run again (an answered question): its history,
        attempts made, routing and what its steps cost, stays; its outcome goes."""
        fresh = SubtaskState(total_attempts=self.total_attempts, routing=self.routing)
        fresh.steps, fresh.tokens, fresh.cost = self.steps, self.tokens, self.cost
        fresh.cloud_steps, fresh.cloud_cost = self.cloud_steps, self.cloud_cost
        return fresh

    @property
    def duration_s(self) -> float | None:
        """Seconds from first start to finish, less downtime, when both times are known."""
        if self.started_at and self.finished_at:
            return max(self.finished_at - self.started_at - self.paused_s, 0.0)
        return None

    def count_step(self, step: Mapping[str, Any]) -> None:
        """Add one LLM step's tokens and cost to the totals (an escalated draft or a shadow
        answer adds its tokens and cost, not a step)."""
        extra_call = step.get("outcome") in ("escalated", "shadow")
        if not extra_call:
            self.steps += 1
        try:
            self.tokens += int(step.get("prompt_tokens") or 0) + int(
                step.get("completion_tokens") or 0
            )
            self.cost += float(step.get("cost") or 0.0)
            if not extra_call:
                cloud_cost = step.get("cloud_cost")
                if cloud_cost is None and step.get("tier") == "cloud":
                    cloud_cost = step.get("cost")
                self.cloud_cost += float(cloud_cost or 0.0)
        except (TypeError, ValueError):
            pass  # a malformed record from a remote agent counts as a step, nothing more
        if step.get("tier") == "cloud" and not extra_call:
            self.cloud_steps += 1
