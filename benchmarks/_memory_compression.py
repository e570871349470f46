"""Compression in benchmarks/memory.py: each log reduced to a budget by fleetmind's compress,
by truncation and by head+tail, and the critical facts each kept."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from _harness import _progress
from _memory_facts import FACT_RULES, Fact
from _memory_logs import LogText

# ---------------------------------------------------------------------------------------------
# Compression: fleetmind's compress vs truncation to the same budget
# ---------------------------------------------------------------------------------------------

GOAL = "what failed and why"
"""The goal given to ``compress`` (the same short goal for every log)."""
MAIN_SHARE = 0.25
"""The budget: a quarter of the log's tokens, so that the goal's 75% compression is reached
exactly when the budget is used."""
SWEEP_SHARES = (0.10, 0.25, 0.50)
AOI = {"compression": 0.724, "facts_kept": 0.928}
"""AOI's published figures (its paper; not re-run here): 72.4% compression, 92.8% kept."""
GOAL_COMPRESSION = 0.75
GOAL_KEPT = 0.95
METHODS = ("fleetmind", "truncate", "head+tail")


def head_tail(text: str, budget_tokens: int, count: Callable[[str], int]) -> str:
    """The first lines that fit in half the budget, then the last lines that fit in the rest
    (line cost as ``truncate`` counts it: the line's tokens + 1)."""
    lines = text.splitlines()
    head: list[str] = []
    used = 0
    for line in lines:
        cost = count(line) + 1
        if used + cost > budget_tokens // 2:
            break
        head.append(line)
        used += cost
    tail: list[str] = []
    for line in reversed(lines[len(head) :]):
        cost = count(line) + 1
        if used + cost > budget_tokens:
            break
        tail.append(line)
        used += cost
    return "\n".join(head + tail[::-1])


def facts_kept(facts: Iterable[Fact], reduced: str) -> tuple[list[Fact], list[Fact]]:
    """The facts kept (every string in the text), and those kept with all strings on one line."""
    lines = reduced.splitlines()
    anywhere, one_line = [], []
    for fact in facts:
        if all(part in reduced for part in fact):
            anywhere.append(fact)
            if any(all(part in line for part in fact) for line in lines):
                one_line.append(fact)
    return anywhere, one_line


@dataclass
class Reduction:
    log: str
    method: str
    budget_share: float
    budget_tokens: int
    tokens_before: int
    tokens_after: int
    facts: int
    kept: int
    kept_one_line: int
    seconds: float
    lines_after: int
    lost: list[list[str]] = field(default_factory=list)
    """The facts not kept, each as [rule, *strings]."""
    split: list[list[str]] = field(default_factory=list)
    """The facts kept, but not on one line, each as [rule, *strings]."""

    @property
    def compression(self) -> float:
        return 1.0 - self.tokens_after / self.tokens_before if self.tokens_before else 0.0

    @property
    def kept_share(self) -> float:
        return self.kept / self.facts if self.facts else 1.0

    @property
    def kept_one_line_share(self) -> float:
        return self.kept_one_line / self.facts if self.facts else 1.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["compression"] = round(self.compression, 4)
        data["facts_kept"] = round(self.kept_share, 4)
        data["facts_kept_one_line"] = round(self.kept_one_line_share, 4)
        data["seconds"] = round(self.seconds, 3)
        return data


def reduce_log(log: LogText, facts: dict[Fact, str], method: str, share: float) -> Reduction:
    from fleetmind.memory import compress, default_tokenizer, truncate

    count = default_tokenizer().count
    before = count(log.text)
    budget = max(1, int(before * share))
    start = time.perf_counter()
    if method == "fleetmind":
        reduced = compress(log.text, budget, goal=GOAL).text
    elif method == "truncate":
        reduced = truncate(log.text, budget)
    else:
        reduced = head_tail(log.text, budget, count)
    seconds = time.perf_counter() - start
    anywhere, one_line = facts_kept(facts, reduced)
    kept, together = set(anywhere), set(one_line)
    return Reduction(
        log=log.name,
        method=method,
        budget_share=share,
        budget_tokens=budget,
        tokens_before=before,
        tokens_after=count(reduced),
        facts=len(facts),
        kept=len(anywhere),
        kept_one_line=len(one_line),
        seconds=seconds,
        lines_after=len(reduced.splitlines()),
        lost=[[rule, *f] for f, rule in facts.items() if f not in kept],
        split=[[rule, *f] for f, rule in facts.items() if f in kept and f not in together],
    )


@dataclass
class LogSummary:
    name: str
    kind: str
    origin: str
    lines: int
    tokens: int
    facts: int
    facts_by_rule: dict[str, int]


def measure_compression(
    logs: list[LogText], shares: Sequence[float]
) -> tuple[list[LogSummary], list[Reduction]]:
    from fleetmind.memory import default_tokenizer

    summaries, reductions = [], []
    for log in logs:
        facts = FACT_RULES[log.kind](log.text)
        by_rule: dict[str, int] = {}
        for rule in facts.values():
            by_rule[rule] = by_rule.get(rule, 0) + 1
        summaries.append(
            LogSummary(
                log.name,
                log.kind,
                log.origin,
                sum(1 for line in log.text.splitlines() if line.strip()),
                default_tokenizer().count(log.text),
                len(facts),
                by_rule,
            )
        )
        for share in shares:
            for method in METHODS:
                reductions.append(reduce_log(log, facts, method, share))
        _progress(f"compression: {log.name} done")
    return summaries, reductions
