"""What a step router measures about a step: cheap structural features and the step's text.

One implementation serves every place that needs them — the learned router before a step, the
step's record in the task log (what ``fleetmind router train --from-store`` learns from), the
cascade's look at a device model's draft, and the benchmarks on recorded model outcomes — so a
router trained on one is scored on the same features by the others.

Nothing here keeps a prompt: records carry numbers (structural features) and, for the text, the
indices of hashed word n-grams, from which the words cannot be read back.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from collections.abc import Sequence

import numpy as np

from fleetmind.agents._llm import ChatMessage
from fleetmind.agents._steps import StepState

STRUCTURAL_FEATURES: tuple[str, ...] = (
    "step",
    "messages",
    "tool_results",
    "tool_errors",
    "log_prompt_chars",
    "log_last_chars",
    "digit_share",
    "math_symbols",
    "code",
    "choices",
    "question_marks",
    "local_data",
    "budget_left",
)
"""Features of a step's state, in the order a router model stores its weights for them."""

DRAFT_FEATURES: tuple[str, ...] = (
    "arithmetic_errors",
    "arithmetic_checked",
    "no_final_answer",
    "final_not_integer",
    "final_not_last_result",
    "question_numbers_unused",
    "hedges",
    "log_draft_chars",
    "log_question_chars",
    "truncated",
    "empty",
    "invalid_tool_call",
)
"""Features of a device model's draft answer (the cascade's confidence reads these)."""

HASHED_DIMENSIONS = 4096
"""Buckets of the hashed word n-gram features (a router that needs no embedding model)."""

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_NUMBER = re.compile(r"(?<![\w).])-?\d[\d,]*(?:\.\d+)?")
"""A number; a ``-`` right after a word or a bracket is a subtraction, not a sign."""
_MATH = re.compile(r"[=+*/^<>%√∑∫]|\\frac|\bsqrt\b|\blog\b|\bmod\b")
_CODE = re.compile(r"```|\bdef |\breturn\b|;\s*$|\{\s*$|#include|\bSELECT\b", re.MULTILINE)
_CHOICE = re.compile(r"^\s*\(?[A-Da-d][.)]\s", re.MULTILINE)
_HEDGE = re.compile(
    r"\b(?:assum\w*|approximately|roughly|however|wait|actually|not sure|unclear|cannot|"
    r"can't|unknown|might|perhaps|i think)\b",
    re.IGNORECASE,
)
_CALC = re.compile(r"<<([^=<>]+)=([^<>]+)>>")
_INLINE_CALC = re.compile(
    r"(-?\d[\d,]*(?:\.\d+)?)\s*([-+*/x\u00d7\u00f7])\s*(-?\d[\d,]*(?:\.\d+)?)\s*=\s*\$?(-?\d[\d,]*(?:\.\d+)?)"
)
_FINAL = re.compile(
    r"(?:####|answer is|answer:|final answer[^0-9\-$]*)\s*\$?\s*(-?\d[\d,]*(?:\.\d+)?)",
    re.IGNORECASE,
)
_RESULT = re.compile(r"=\s*\$?\s*(-?\d[\d,]*(?:\.\d+)?)")


def prompt_state(prompt: str, *, step: int = 1) -> StepState:
    """The state of a one-message step (a prompt from a file of recorded model outcomes)."""
    return StepState(
        task_id="",
        subtask_id="",
        agent_id="",
        step=step,
        messages=(ChatMessage.user(prompt),),
        tiers=("device", "cloud"),
    )


def task_text(state: StepState) -> str:
    """The subtask as first asked (the first user message)."""
    for message in state.messages:
        if message.role == "user" and message.content:
            return message.content
    return ""


def step_text(state: StepState, limit: int = 2000) -> str:
    """The text a router embeds: the task, and the latest message when it is not the task."""
    task = task_text(state)
    latest = next((m.content for m in reversed(state.messages) if m.content), "")
    text = task if latest == task else f"{task}\n\n{latest}"
    return text[:limit]


def structural_features(state: StepState) -> dict[str, float]:
    """Cheap numbers about a step's state (see :data:`STRUCTURAL_FEATURES`)."""
    messages = state.messages
    prompt_chars = sum(len(m.content or "") for m in messages)
    latest = next((m.content for m in reversed(messages) if m.content), "") or ""
    text = step_text(state)
    tool_results = [m for m in messages if m.role == "tool"]
    budget = 1.0
    if state.steps_left is not None:
        budget = min(1.0, state.steps_left / max(1, state.steps_left + state.step - 1))
    return {
        "step": float(min(state.step, 20)),
        "messages": float(min(len(messages), 40)),
        "tool_results": float(min(len(tool_results), 20)),
        "tool_errors": float(sum((m.content or "").startswith("error:") for m in tool_results)),
        "log_prompt_chars": math.log1p(prompt_chars),
        "log_last_chars": math.log1p(len(latest)),
        "digit_share": sum(c.isdigit() for c in text) / max(1, len(text)),
        "math_symbols": min(len(_MATH.findall(text)), 50) / 10,
        "code": float(bool(_CODE.search(text))),
        "choices": float(len(_CHOICE.findall(text)) >= 2),
        "question_marks": float(min(text.count("?"), 10)),
        "local_data": float(bool(state.local_data)),
        "budget_left": budget,
    }


def _number(text: str) -> float | None:
    try:
        return float(text.replace(",", "").rstrip("."))
    except ValueError:
        return None


def _arithmetic(draft: str) -> tuple[int, int]:
    """(wrong, checked) calculations written out in the draft (``a op b = c``, ``<<a*b=c>>``)."""
    wrong = checked = 0
    for expression, value in _CALC.findall(draft):
        claimed = _number(value)
        computed = _evaluate(expression)
        checked += 1
        if (
            claimed is None
            or computed is None
            or abs(computed - claimed) > 1e-4 * max(1, abs(claimed))
        ):
            wrong += 1
    for left, op, right, value in _INLINE_CALC.findall(_CALC.sub(" ", draft)):
        a, b, c = _number(left), _number(right), _number(value)
        if a is None or b is None or c is None:
            continue
        if op in "/\u00f7" and b == 0:
            continue
        result = {"+": a + b, "-": a - b, "*": a * b, "x": a * b, "\u00d7": a * b}.get(op)
        if result is None:
            result = a / b
        checked += 1
        if abs(result - c) > 1e-2 * max(1.0, abs(c)):
            wrong += 1
    return wrong, checked


_SAFE_EXPRESSION = re.compile(r"^[\d\s.+\-*/()]+$")


def _evaluate(expression: str) -> float | None:
    """An arithmetic expression's value (digits, + - * / and brackets only; nothing is run)."""
    text = (
        expression.replace(",", "").replace("x", "*").replace("\u00d7", "*").replace("\u00f7", "/")
    )
    if not _SAFE_EXPRESSION.match(text) or len(text) > 200:
        return None
    return _Arithmetic(text).value()


class _Arithmetic:
    """A tiny recursive-descent evaluator for + - * / and brackets (no ``eval``)."""

    def __init__(self, text: str) -> None:
        self.tokens: list[str] = re.findall(r"\d+(?:\.\d+)?|[-+*/()]", text)
        self.at = 0

    def value(self) -> float | None:
        try:
            result = self._sum()
        except (IndexError, ZeroDivisionError, ValueError):
            return None
        return result if self.at == len(self.tokens) else None

    def _next(self) -> str:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def _peek(self) -> str | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def _sum(self) -> float:
        total = self._product()
        while self._peek() in ("+", "-"):
            total = total + self._product() if self._next() == "+" else total - self._product()
        return total

    def _product(self) -> float:
        total = self._unary()
        while self._peek() in ("*", "/"):
            total = total * self._unary() if self._next() == "*" else total / self._unary()
        return total

    def _unary(self) -> float:
        if self._peek() == "-":
            self._next()
            return -self._unary()
        token = self._next()
        if token == "(":
            inner = self._sum()
            if self._next() != ")":
                raise ValueError("unbalanced")
            return inner
        return float(token)


def draft_features(
    draft: str,
    question: str,
    *,
    finish_reason: str | None = None,
    tool_call_errors: int = 0,
) -> dict[str, float]:
    """What a device model's draft says about its own reliability (see :data:`DRAFT_FEATURES`).

    Signals that need no second model: calculations that do not add up, no clear final
    answer, a final answer that is not the last result worked out, numbers of the question
    the draft never used, hedging, a cut-off answer, tool calls that did not parse.
    """
    wrong, checked = _arithmetic(draft)
    finals = _FINAL.findall(draft)
    final = _number(finals[-1]) if finals else None
    body = draft[: draft.rfind("####")] if "####" in draft else draft
    results = [_number(r) for r in _RESULT.findall(body)]
    results = [r for r in results if r is not None]
    question_numbers = {_number(n) for n in _NUMBER.findall(question)} - {None}
    draft_numbers = {_number(n) for n in _NUMBER.findall(draft)} - {None}
    unused = len(question_numbers - draft_numbers) / max(1, len(question_numbers))
    return {
        "arithmetic_errors": float(min(wrong, 5)),
        "arithmetic_checked": float(min(checked, 20)) / 10,
        "no_final_answer": float(final is None),
        "final_not_integer": float(final is not None and final != int(final)),
        "final_not_last_result": float(
            final is not None and bool(results) and results[-1] != final
        ),
        "question_numbers_unused": unused,
        "hedges": float(min(len(_HEDGE.findall(draft)), 10)),
        "log_draft_chars": math.log1p(len(draft)),
        "log_question_chars": math.log1p(len(question)),
        "truncated": float(finish_reason == "length"),
        "empty": float(not draft.strip()),
        "invalid_tool_call": float(min(tool_call_errors, 5)),
    }


def hashed_ngrams(text: str) -> list[int]:
    """The buckets of the text's words and word pairs (sorted, distinct): text features a
    router can use without an embedding model, and that a step's record can keep without
    keeping the words."""
    words = _WORD.findall(text.lower())[:400]
    grams = [*words, *(f"{a} {b}" for a, b in itertools.pairwise(words))]
    buckets = {
        int.from_bytes(hashlib.blake2b(g.encode(), digest_size=4).digest(), "little")
        % HASHED_DIMENSIONS
        for g in grams
    }
    return sorted(buckets)


def hashed_matrix(rows: Sequence[Sequence[int]]) -> np.ndarray:
    """Rows of bucket indices as an L2-normalised dense matrix, one row per text."""
    matrix = np.zeros((len(rows), HASHED_DIMENSIONS), dtype=np.float32)
    for i, buckets in enumerate(rows):
        if buckets:
            matrix[i, list(buckets)] = 1.0 / math.sqrt(len(buckets))
    return matrix
