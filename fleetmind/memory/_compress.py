"""Extractive compression: fit text into a token budget without losing what must survive.

Operational text (logs, tool output, long conversations) repeats itself: the same message
with different numbers, clients or times. The compressor works line by line:

1. Each line loses its timestamp and is reduced to a *template*: numbers, hex ids, addresses,
   paths and quoted strings become ``<*>``.
2. Lines with the same template collapse into one: the first line as written, how many times
   it occurred, and the distinct values that varied (``x37; values: pi-2, pi-7, …``). Which
   client disconnected survives; the 37 copies do not.
3. Each collapsed line is *pinned* when it carries what must not be lost — an error, a
   failure, a decision, the goal — and otherwise scored by how much it shares with the
   current goal and how rare it is.
4. While the text is over budget, the lowest-scoring unpinned lines go; if pinned lines alone
   are over, their value lists shrink, and last the oldest pinned lines go.

The result keeps the original order of first occurrences. Nothing here calls a model.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from fleetmind.memory._tokens import default_tokenizer

_TIMESTAMP = re.compile(
    r"^\s*(?:"
    r"\d{9,10}(?:\.\d+)?:\s*"  # epoch seconds (Mosquitto)
    r"|\[?\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?"  # ISO 8601
    r"(?:Z|[+-]\d{2}:?\d{2})?(?: (?:UTC|GMT|[A-Z]{1,3}T)\b)?\]?\s*"
    r"|[A-Z][a-z]{2} +\d{1,2} \d{2}:\d{2}:\d{2}\s*"  # syslog
    r")"
)
_VARIABLE = re.compile(
    r"(?P<quoted>'[^']*'|\"[^\"]*\")"
    r"|(?P<addr>\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b)"
    r"|(?P<path>(?<![\w.])/[\w./-]+)"
    r"|(?P<hex>\b(?=[0-9a-f]*\d)[0-9a-f]{8,}\b)"
    r"|(?P<ident>\b[A-Za-z][\w.]*[-_@][\w.@-]*\d[\w.@-]*\b)"
    r"|(?P<number>(?<![\w.])-?\d+(?:\.\d+)?(?:[a-zA-Z%]{0,3})\b)"
)
PIN_PATTERN = re.compile(
    r"\b(?:error|errors|fail(?:ed|ure|s)?|fatal|panic|exception|traceback|refused|denied|"
    r"timed? ?out|timeout|abort(?:ed)?|killed|crash(?:ed)?|corrupt(?:ed)?|invalid|"
    r"unauthori[sz]ed|not authori[sz]ed|disconnect(?:ed)?|lost|unreachable|warning|"
    r"decided|decision|chose|must|goal)\b",
    re.IGNORECASE,
)
"""Words that pin a line: errors and failures, decisions, the goal."""
_WORD = re.compile(r"[a-z][a-z0-9_]+")
_STOP = frozenset(
    {
        "the",
        "a",
        "an",
        "and",
        "or",
        "of",
        "to",
        "in",
        "on",
        "for",
        "with",
        "from",
        "by",
        "at",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "this",
        "that",
        "it",
        "as",
        "not",
        "no",
    }
)


@dataclass
class Line:
    """One collapsed line: its first occurrence, repetitions and varying values."""

    first: str
    template: str
    order: int
    count: int = 1
    values: list[str] = field(default_factory=list)
    pinned: bool = False
    score: float = 0.0
    max_values: int = 8

    def render(self) -> str:
        if self.count == 1:
            return self.first
        shown = self.values[: self.max_values]
        more = len(self.values) - len(shown)
        tail = f"; values: {', '.join(shown)}" + (f", … {more} more" if more > 0 else "")
        return f"{self.first} (x{self.count}{tail if self.values else ''})"


@dataclass(frozen=True)
class Compressed:
    """What compression kept, and how much it saved."""

    text: str
    tokens_before: int
    tokens_after: int
    lines_before: int
    lines_after: int

    @property
    def ratio(self) -> float:
        """Share of tokens removed (0.75: a quarter is left)."""
        return 1.0 - self.tokens_after / self.tokens_before if self.tokens_before else 0.0


def template_of(line: str) -> tuple[str, list[str]]:
    """A line's template and the values that fill its ``<*>`` slots."""
    values: list[str] = []

    def slot(match: re.Match[str]) -> str:
        values.append(match.group(0))
        return "<*>"

    return _VARIABLE.sub(slot, line), values


def strip_timestamp(line: str) -> str:
    """The line without a leading timestamp (epoch, ISO 8601 or syslog)."""
    return _TIMESTAMP.sub("", line, count=1)


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


def collapse(text: str, *, pin: Callable[[str], bool] | None = None) -> list[Line]:
    """The text's lines, timestamps removed, repeated templates collapsed (first-seen order)."""
    is_pinned = pin or (lambda line: bool(PIN_PATTERN.search(line)))
    groups: dict[str, Line] = {}
    for raw in text.splitlines():
        line = strip_timestamp(raw).rstrip()
        if not line.strip():
            continue
        template, values = template_of(line)
        group = groups.get(template)
        if group is None:
            groups[template] = Line(line, template, len(groups), pinned=is_pinned(line))
            group = groups[template]
            group.values.extend(dict.fromkeys(values))
            continue
        group.count += 1
        for value in values:
            if value not in group.values and len(group.values) < 64:
                group.values.append(value)
    # A template's own first-line values are not "varying" unless others differ.
    for group in groups.values():
        if group.count == 1:
            group.values = []
    return list(groups.values())


def compress(
    text: str,
    budget_tokens: int,
    *,
    goal: str = "",
    pin: Callable[[str], bool] | None = None,
    count: Callable[[str], int] | None = None,
) -> Compressed:
    """``text`` within ``budget_tokens``, keeping pinned lines and what matters to ``goal``."""
    counter = count or default_tokenizer().count
    lines_before = sum(1 for line in text.splitlines() if line.strip())
    before = counter(text)
    lines = collapse(text, pin=pin)
    goal_words = _words(goal)
    frequency = Counter(w for line in lines for w in _words(line.template))
    for line in lines:
        words = _words(line.template)
        overlap = len(words & goal_words) / (1 + len(goal_words)) if goal_words else 0.0
        rarity = sum(1.0 / frequency[w] for w in words) / (1 + len(words))
        line.score = 2.0 * overlap + rarity + 0.3 / math.log2(2 + line.count)
    kept = sorted(lines, key=lambda g: g.order)
    costs = {id(g): counter(g.render()) + 1 for g in kept}

    def total() -> int:
        return sum(costs[id(g)] for g in kept)

    for victim in sorted((g for g in lines if not g.pinned), key=lambda g: g.score):
        if total() <= budget_tokens:
            break
        kept.remove(victim)
    for limit in (4, 2, 1, 0):
        if total() <= budget_tokens:
            break
        for group in kept:
            if group.count > 1 and len(group.values) > limit:
                group.max_values = limit
                costs[id(group)] = counter(group.render()) + 1
    while total() > budget_tokens and kept:
        kept.remove(min(kept, key=lambda g: (g.score, -g.order)))
    result = "\n".join(g.render() for g in kept)
    return Compressed(result, before, counter(result), lines_before, len(kept))


def truncate(text: str, budget_tokens: int, *, count: Callable[[str], int] | None = None) -> str:
    """The baseline: the text's last lines that fit in the budget (what a plain buffer keeps)."""
    counter = count or default_tokenizer().count
    kept: list[str] = []
    used = 0
    for line in reversed(text.splitlines()):
        cost = counter(line) + 1
        if used + cost > budget_tokens:
            break
        kept.append(line)
        used += cost
    return "\n".join(reversed(kept))


def sentences(text: str) -> Sequence[str]:
    """Prose cut into sentences (for texts that are not line-oriented)."""
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+(?=[A-Z0-9])", text) if s.strip()]
