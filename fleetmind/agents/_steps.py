"""Steps of an LLM agent: what a step router sees, what it chooses, and what each step records.

Before every step an :class:`LLMAgent` asks its :class:`StepRouter` which model tier to use —
the small model on the device or the big one in the cloud — and after every step it records a
:class:`StepRecord` in the task's log (model, tokens, cost, latency, tool calls, outcome). The
records are what the learned router trains on.

The fixed policies (:class:`AlwaysDevice`, :class:`AlwaysCloud`, or :class:`FixedStepRouter`
for any tier) live here; other policies implement the same one-method interface.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from fleetmind.agents._llm import ChatMessage, Completion

StepOutcome = Literal["tool_calls", "answer", "error", "escalated", "shadow"]
"""``escalated``: a device model's draft that a cascade did not accept (the cloud model's step
follows under the same step number). ``shadow``: the other tier's answer to a shadowed step,
paid for to learn whether the two agree, and not used. Neither counts as a step."""


@dataclass(frozen=True)
class StepState:
    """What a step router may look at before a step.

    Attributes:
        task_id, subtask_id, agent_id: Whose step it is.
        step: The step about to run (1 for the first).
        messages: The conversation so far (system and user messages, answers, tool results).
        tiers: The tiers the agent has a model for, smallest first.
        steps_left, tokens_left, cost_left: What remains of the agent's budgets (None: no limit).
        local_data: Data sets the subtask or agent says must stay on the device.
        draft: The device model's draft answer, when a cascade asked for one first.
        cloud_steps: Steps of this subtask that ran on the cloud model so far.
    """

    task_id: str
    subtask_id: str
    agent_id: str
    step: int
    messages: tuple[ChatMessage, ...]
    tiers: tuple[str, ...]
    steps_left: int | None = None
    tokens_left: int | None = None
    cost_left: float | None = None
    local_data: tuple[str, ...] = ()
    draft: Completion | None = None
    cloud_steps: int = 0


@dataclass(frozen=True)
class StepChoice:
    """Which tier's model takes a step, and why (the reason goes into the step's record).

    ``draft``: run the step on ``tier`` and ask again with its answer in ``StepState.draft``
    (a cascade looks at the device model's answer before it accepts or escalates it).
    """

    tier: str
    reason: str = ""
    draft: bool = False


@runtime_checkable
class StepRouter(Protocol):
    """Chooses the model tier for each step of an LLM agent."""

    async def choose(self, state: StepState) -> StepChoice:
        """The tier for the step described by ``state`` (one of ``state.tiers``)."""
        ...


class FixedStepRouter:
    """Always the same tier (the baseline every other policy is measured against)."""

    def __init__(self, tier: str) -> None:
        self.tier = tier

    async def choose(self, state: StepState) -> StepChoice:
        return StepChoice(self.tier, f"always {self.tier}")

    def __repr__(self) -> str:
        return f"FixedStepRouter({self.tier!r})"


class AlwaysDevice(FixedStepRouter):
    """Every step on the device model."""

    def __init__(self) -> None:
        super().__init__("device")


class AlwaysCloud(FixedStepRouter):
    """Every step on the cloud model."""

    def __init__(self) -> None:
        super().__init__("cloud")


@dataclass(frozen=True)
class ToolOutcome:
    """One tool call of a step and how it went (arguments are not kept: they may be large)."""

    name: str
    ok: bool
    error: str | None = None


@dataclass(frozen=True)
class StepRecord:
    """One step of an LLM agent, as it is logged and streamed.

    It never holds prompts, answers or keys: only what the step cost and how it went.
    """

    step: int
    tier: str
    model: str
    reason: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tokens_estimated: bool = False
    cost: float = 0.0
    latency_s: float = 0.0
    tool_calls: tuple[ToolOutcome, ...] = field(default_factory=tuple)
    outcome: StepOutcome = "answer"
    finish_reason: str | None = None
    error: str | None = None
    cloud_cost: float | None = None
    """What the step would have cost on the cloud model (its tokens at the cloud's prices)."""
    features: Mapping[str, float] = field(default_factory=dict)
    """The state's structural features (what a learned router trains on)."""
    text_buckets: tuple[int, ...] = ()
    """Hashed word n-grams of the step's text (features, not the words)."""
    agreement: bool | None = None
    """Whether the device and the cloud model took the same action (steps run on both)."""

    @classmethod
    def of(
        cls,
        step: int,
        completion: Completion,
        choice: StepChoice,
        *,
        tool_calls: tuple[ToolOutcome, ...] = (),
        outcome: StepOutcome = "answer",
        error: str | None = None,
        **extra: Any,
    ) -> StepRecord:
        """The record of a step whose model call returned ``completion`` (``extra``: the
        trace fields: ``cloud_cost``, ``features``, ``text_buckets``, ``agreement``)."""
        return cls(
            step=step,
            tier=choice.tier,
            model=completion.model,
            reason=choice.reason,
            prompt_tokens=completion.usage.prompt_tokens,
            completion_tokens=completion.usage.completion_tokens,
            tokens_estimated=completion.usage.estimated,
            cost=completion.cost,
            latency_s=round(completion.latency_s, 6),
            tool_calls=tool_calls,
            outcome=outcome,
            finish_reason=completion.finish_reason,
            error=error,
            **extra,
        )

    def to_dict(self) -> dict[str, Any]:
        """The record as plain data (log entries and wire messages carry this)."""
        data = asdict(self)
        data["tool_calls"] = [asdict(t) for t in self.tool_calls]
        data["features"] = dict(self.features)
        data["text_buckets"] = list(self.text_buckets)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StepRecord:
        """A record from :meth:`to_dict`'s form (unknown keys are ignored)."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["tool_calls"] = tuple(ToolOutcome(**t) for t in data.get("tool_calls") or ())
        known["text_buckets"] = tuple(int(b) for b in data.get("text_buckets") or ())
        known["features"] = {str(k): float(v) for k, v in (data.get("features") or {}).items()}
        return cls(**known)

    def summary(self) -> str:
        """One line for people: ``step 2 · cloud big-model · 350 tok · 0.84 s · search, read``."""
        parts = [
            f"step {self.step}",
            f"{self.tier} {self.model}",
            *([self.reason] if self.reason else []),
            f"{self.prompt_tokens + self.completion_tokens} tok",
        ]
        if self.cost:
            parts.append(f"cost {self.cost:.4g}")
        parts.append(f"{self.latency_s:.2f} s")
        if self.tool_calls:
            parts.append("called " + ", ".join(t.name for t in self.tool_calls))
        elif self.outcome == "answer":
            parts.append("answered")
        elif self.outcome == "escalated":
            parts.append("draft escalated")
        elif self.outcome == "shadow":
            parts.append("shadow answer")
        if self.error:
            parts.append(f"error: {self.error}")
        return " · ".join(parts)
