"""Step router policies beyond the fixed ones: per task, rules, cascade, learned.

Every policy answers the same question (:class:`StepRouter`): which tier takes this step, and
why. They compose: :class:`RulesRouter` puts hard rules (data that must stay local, a spent
budget, a tool that needs the cloud) in front of any other policy, and :class:`PerTaskRouter`
turns any policy into the one-choice-per-task baseline that step-level routing is measured
against.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Protocol

import numpy as np

from fleetmind.agents._step_features import (
    DRAFT_FEATURES,
    draft_features,
    hashed_matrix,
    hashed_ngrams,
    step_text,
    structural_features,
    task_text,
)
from fleetmind.agents._step_model import StepRouterFileError, StepRouterModel
from fleetmind.agents._steps import StepChoice, StepRouter, StepState


class TextEmbedder(Protocol):
    """Anything that embeds texts (the orchestrator's ``SentenceEmbedder`` is one)."""

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def _cheapest(state: StepState) -> str:
    return state.tiers[0]


def _largest(state: StepState) -> str:
    return state.tiers[-1]


# Learned -----------------------------------------------------------------------------------


class LearnedStepRouter:
    """Cloud when the learned model's P(the device will not do) clears its threshold.

    Args:
        model: A trained :class:`StepRouterModel` (``kind="step"``) or the path of its file.
        embedder: Embeds the step's text, when the model was trained on embeddings
            (``fleetmind.orchestrator.SentenceEmbedder(<model>)``).
        cloud_share: Send this share of steps to the cloud (a threshold from the training
            scores) instead of the file's threshold.
    """

    def __init__(
        self,
        model: StepRouterModel | str | Path,
        *,
        embedder: TextEmbedder | None = None,
        cloud_share: float | None = None,
    ) -> None:
        self.model = model if isinstance(model, StepRouterModel) else StepRouterModel.load(model)
        if self.model.kind != "step":
            raise StepRouterFileError(
                "this router file reads device drafts: use it with CascadeRouter"
            )
        wanted = self.model.needs_embedder
        if wanted is not None and embedder is None:
            raise StepRouterFileError(
                f"this router reads the step's text embedded by {wanted}: pass "
                f"embedder=SentenceEmbedder({wanted!r}) (from fleetmind.orchestrator), or load "
                "it with fleetmind.orchestrator.load_step_router"
            )
        self.embedder = embedder
        self.threshold = (
            self.model.threshold if cloud_share is None else self.model.threshold_for(cloud_share)
        )

    async def score(self, state: StepState) -> float:
        """P(this step needs the cloud), as the model estimates it."""
        numeric = np.array([[structural_features(state)[f] for f in self.model.features]])
        text = None
        if self.model.text == "hashed":
            text = hashed_matrix([hashed_ngrams(step_text(state))])
        elif self.embedder is not None and self.model.text_weights.size:
            text = await asyncio.to_thread(self.embedder.embed, [step_text(state)])
        return float(self.model.scores(numeric, text)[0])

    async def choose(self, state: StepState) -> StepChoice:
        p = await self.score(state)
        if p >= self.threshold:
            return StepChoice(
                _largest(state), f"learned: needs cloud p={p:.2f} ≥ {self.threshold:.2f}"
            )
        return StepChoice(
            _cheapest(state), f"learned: needs cloud p={p:.2f} < {self.threshold:.2f}"
        )

    def __repr__(self) -> str:
        return f"LearnedStepRouter(text={self.model.text!r}, threshold={self.threshold:.3f})"


# Cascade -----------------------------------------------------------------------------------


def default_draft_model() -> StepRouterModel:
    """Hand-set weights for a draft's warning signs, for a cascade nobody has trained yet:
    escalate a draft whose calculations do not add up, that has no final answer or a
    fractional one where counts are expected, that was cut off, empty, or whose tool calls did
    not parse. ``fleetmind router train --cascade`` learns better weights from outcomes."""
    weights = {
        "arithmetic_errors": 2.5,
        "no_final_answer": 1.0,
        "final_not_integer": 1.5,
        "final_not_last_result": 1.0,
        "question_numbers_unused": 1.0,
        "hedges": 0.3,
        "truncated": 3.0,
        "empty": 5.0,
        "invalid_tool_call": 3.0,
    }
    n = len(DRAFT_FEATURES)
    return StepRouterModel(
        kind="draft",
        text="none",
        features=DRAFT_FEATURES,
        mean=np.zeros(n),
        scale=np.ones(n),
        weights=np.array([weights.get(f, 0.0) for f in DRAFT_FEATURES]),
        text_weights=np.zeros(0),
        bias=-2.0,
        quantiles=np.linspace(0, 1, 101),
        cloud_share=0.5,
        threshold=0.5,
        trained_on={"source": "hand-set warning signs"},
    )


class CascadeRouter:
    """The device model answers first; its draft is kept unless it looks unreliable.

    The first call for a step asks for a draft from the device tier; the second (with the
    draft in ``state.draft``) scores the draft's warning signs with a ``draft`` model and
    either keeps it (no second model call) or escalates to the cloud, whose answer replaces
    it. The device call is paid either way and counted in the step's cost.

    Args:
        model: A ``draft`` :class:`StepRouterModel` or its file (default: hand-set signs).
        cloud_share: Escalate this share of drafts (needs a trained model), instead of the
            model's threshold.
    """

    def __init__(
        self,
        model: StepRouterModel | str | Path | None = None,
        *,
        cloud_share: float | None = None,
    ) -> None:
        if model is None:
            self.model = default_draft_model()
        else:
            self.model = (
                model if isinstance(model, StepRouterModel) else StepRouterModel.load(model)
            )
        if self.model.kind != "draft":
            raise StepRouterFileError(
                "this router file reads the state before a step: use it with LearnedStepRouter"
            )
        self.threshold = (
            self.model.threshold if cloud_share is None else self.model.threshold_for(cloud_share)
        )

    def draft_risk(self, state: StepState) -> float:
        """P(the draft in ``state`` is wrong), as the draft model estimates it.

        A draft that calls tools has no answer to check: it is judged by whether its calls
        parse and whether it was cut off (1.0 or 0.0)."""
        draft = state.draft
        assert draft is not None
        bad_calls = 0
        for call in draft.tool_calls:
            try:
                call.parsed_arguments()
            except ValueError:
                bad_calls += 1
        if draft.tool_calls:
            return 1.0 if bad_calls or draft.finish_reason == "length" else 0.0
        signs = draft_features(
            draft.content or "",
            task_text(state),
            finish_reason=draft.finish_reason,
        )
        numeric = np.array([[signs[f] for f in self.model.features]])
        return float(self.model.scores(numeric)[0])

    async def choose(self, state: StepState) -> StepChoice:
        device, cloud = _cheapest(state), _largest(state)
        if device == cloud:
            return StepChoice(device, "cascade: one tier only")
        if state.draft is None:
            return StepChoice(device, "cascade: device drafts first", draft=True)
        risk = self.draft_risk(state)
        if risk >= self.threshold:
            return StepChoice(
                cloud, f"cascade: draft risk {risk:.2f} ≥ {self.threshold:.2f}, escalated"
            )
        return StepChoice(device, f"cascade: draft kept, risk {risk:.2f} < {self.threshold:.2f}")

    def __repr__(self) -> str:
        return f"CascadeRouter(threshold={self.threshold:.3f})"


# Per task ----------------------------------------------------------------------------------


class PerTaskRouter:
    """One choice per subtask: ``inner`` decides the first step, every later step follows.

    This is the baseline step-level routing is measured against (the whole subtask on one
    model). Choices are remembered per (task, subtask, agent), the most recent 10,000.
    """

    def __init__(self, inner: StepRouter, *, remember: int = 10_000) -> None:
        self.inner = inner
        self._choices: OrderedDict[tuple[str, str, str], StepChoice] = OrderedDict()
        self._remember = remember

    async def choose(self, state: StepState) -> StepChoice:
        key = (state.task_id, state.subtask_id, state.agent_id)
        known = self._choices.get(key)
        if known is not None and state.step > 1:
            return StepChoice(known.tier, f"per task: {known.reason}")
        choice = await self.inner.choose(replace(state, draft=None))
        choice = StepChoice(choice.tier, choice.reason)  # a per-task choice drafts nothing
        self._choices[key] = choice
        self._choices.move_to_end(key)
        while len(self._choices) > self._remember:
            self._choices.popitem(last=False)
        return choice

    def __repr__(self) -> str:
        return f"PerTaskRouter({self.inner!r})"


# Rules -------------------------------------------------------------------------------------


Rule = Callable[[StepState], StepChoice | None]
"""A rule: a choice when it applies to the state, None when it leaves the step to the next."""


def keep_local_data() -> Rule:
    """Device when the subtask or the agent holds data that must stay on the device."""

    def rule(state: StepState) -> StepChoice | None:
        if state.local_data:
            return StepChoice(_cheapest(state), f"rule: {', '.join(state.local_data)} stays local")
        return None

    return rule


def cloud_for_tools(names: Iterable[str]) -> Rule:
    """Cloud for the step after a call to one of these tools (its results need the big model)."""
    wanted = frozenset(names)

    def rule(state: StepState) -> StepChoice | None:
        called = {
            call.id: call.name
            for message in state.messages
            if message.role == "assistant"
            for call in message.tool_calls
        }
        for message in reversed(state.messages):
            if message.role != "tool":
                break
            name = message.name or called.get(message.tool_call_id or "")
            if name in wanted:
                return StepChoice(_largest(state), f"rule: {name} needs the cloud")
        return None

    return rule


def within_budget(
    *,
    cloud_share: float | None = None,
    min_cost_left: float | None = None,
    min_steps_left: int | None = None,
) -> Rule:
    """Device once a budget is spent: the cloud's share of this subtask's steps would pass
    ``cloud_share`` (the first cloud step is always allowed unless the share is 0), less than
    ``min_cost_left`` of the cost budget is left, or fewer than ``min_steps_left`` steps are."""

    def rule(state: StepState) -> StepChoice | None:
        device = _cheapest(state)
        # A cloud step is allowed while the cloud's steps, this one included, stay within the
        # share of the steps so far (and one may always be taken when the share is not 0).
        allowance = None if cloud_share is None else cloud_share * state.step
        if allowance is not None and cloud_share:
            allowance = max(1.0, allowance)
        if allowance is not None and state.cloud_steps + 1 > allowance + 1e-9:
            return StepChoice(
                device,
                f"rule: cloud budget {cloud_share:.0%} spent "
                f"({state.cloud_steps} of {state.step - 1} steps)",
            )
        if (
            min_cost_left is not None
            and state.cost_left is not None
            and state.cost_left < min_cost_left
        ):
            return StepChoice(device, f"rule: cost budget spent ({state.cost_left:.4g} left)")
        if (
            min_steps_left is not None
            and state.steps_left is not None
            and state.steps_left < min_steps_left
        ):
            return StepChoice(device, f"rule: step budget spent ({state.steps_left} left)")
        return None

    return rule


class RulesRouter:
    """Hard rules first, in order; the first that applies decides, else ``otherwise`` does.

    A budget rule only ever overrides a cloud choice: when ``otherwise`` picks the device
    anyway, its own reason is kept.

    ```python
    RulesRouter([keep_local_data(), within_budget(cloud_share=0.4)], otherwise=learned)
    ```
    """

    def __init__(self, rules: Sequence[Rule], *, otherwise: StepRouter | str = "device") -> None:
        self.rules = tuple(rules)
        self.otherwise = otherwise

    async def choose(self, state: StepState) -> StepChoice:
        for rule in self.rules:
            choice = rule(state)
            if choice is not None and choice.tier in state.tiers:
                if choice.tier == _cheapest(state) and state.draft is not None:
                    return StepChoice(choice.tier, choice.reason)  # keep the draft, no escalation
                if choice.tier == _cheapest(state) and isinstance(self.otherwise, str):
                    return choice
                if choice.tier == _cheapest(state):
                    proposal = await _ask(self.otherwise, state)
                    return proposal if proposal.tier == choice.tier else choice
                return choice
        return await _ask(self.otherwise, state)

    def __repr__(self) -> str:
        return f"RulesRouter({len(self.rules)} rules, otherwise={self.otherwise!r})"


async def _ask(policy: StepRouter | str, state: StepState) -> StepChoice:
    if isinstance(policy, str):
        tier = policy if policy in state.tiers else _cheapest(state)
        return StepChoice(tier, f"default: {tier}")
    return await policy.choose(state)
