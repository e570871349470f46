"""What `fleetmind a2a check` and `fleetmind mcp check` find, on one screen or as JSON.

A probe fills a :class:`CheckReport`: facts (what the peer says about itself), checks (what was
tried, each passed, failed or skipped, with its latency) and problems in plain words. The same
report prints as aligned lines for a person or as one JSON document for a script; the exit code
is 0 when every check passed and 1 when one failed. Only the standard library is used here, so
that the commands' help stays fast.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

Outcome = Literal["ok", "failed", "skipped"]

_MARKS: dict[Outcome, str] = {"ok": "ok", "failed": "FAILED", "skipped": "skipped"}


@dataclass
class Check:
    """One thing tried: its outcome, one line saying what happened, and how long it took."""

    name: str
    outcome: Outcome
    line: str
    ms: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The check as JSON: name, outcome, line, ms and its details."""
        ms = None if self.ms is None else round(self.ms, 2)
        return {"name": self.name, "outcome": self.outcome, "line": self.line, "ms": ms} | (
            self.details
        )


@dataclass
class CheckReport:
    """Everything one probe found about one peer."""

    kind: str
    """What was probed, in words: ``A2A agent``, ``MCP server``."""
    target: str
    facts: list[tuple[str, str]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    """What the facts say, as JSON (the card, the capabilities, ...)."""

    @property
    def passed(self) -> bool:
        """Whether every check passed and nothing is wrong."""
        return not self.problems and all(c.outcome != "failed" for c in self.checks)

    def fact(self, label: str, value: str) -> None:
        """Add a line of what the peer says about itself."""
        self.facts.append((label, value))

    def ok(self, name: str, line: str, ms: float | None = None, **details: Any) -> Check:
        """Record a check that passed."""
        return self._add(Check(name, "ok", line, ms, details))

    def failed(
        self, name: str, line: str, problem: str, ms: float | None = None, **details: Any
    ) -> Check:
        """Record a check that failed, and what is wrong in plain words."""
        self.problems.append(problem)
        return self._add(Check(name, "failed", line, ms, {"problem": problem} | details))

    def skipped(self, name: str, line: str, **details: Any) -> Check:
        """Record a check that was not tried, and why."""
        return self._add(Check(name, "skipped", line, None, details))

    def _add(self, check: Check) -> Check:
        self.checks.append(check)
        return check

    def as_dict(self) -> dict[str, Any]:
        """The report as one JSON document."""
        return {
            "kind": self.kind,
            "target": self.target,
            "ok": self.passed,
            **self.data,
            "checks": [c.as_dict() for c in self.checks],
            "problems": list(self.problems),
        }

    def lines(self) -> list[str]:
        """The report as lines for a person: facts, checks, then what is wrong."""
        out = [f"{self.kind} {self.target}"]
        width = max((len(label) for label, _ in self.facts), default=0)
        out += [f"  {label.ljust(width)}  {value}" for label, value in self.facts]
        if self.checks:
            out.append("checks")
            name_width = max(len(c.name) for c in self.checks)
            mark_width = max(len(_MARKS[c.outcome]) for c in self.checks)
            took = {id(c): _ms(c.ms) if c.ms is not None else "" for c in self.checks}
            took_width = max(len(t) for t in took.values())
            for c in self.checks:
                mark = _MARKS[c.outcome].ljust(mark_width)
                ms = took[id(c)].rjust(took_width)
                out.append(f"  {c.name.ljust(name_width)}  {mark}  {ms}  {c.line}".rstrip())
        if self.problems:
            out.append("problems")
            out += [f"  - {problem}" for problem in self.problems]
        failed = sum(c.outcome == "failed" for c in self.checks)
        tried = sum(c.outcome != "skipped" for c in self.checks)
        if self.passed:
            out.append(f"all {tried} check(s) passed")
        elif failed:
            out.append(f"{failed} of {tried} check(s) failed")
        else:
            out.append(f"{len(self.problems)} problem(s)")
        return out

    def print(self, *, as_json: bool) -> int:
        """Print the report (as JSON or as lines) and return the exit code: 0 passed, 1 not."""
        if as_json:
            print(json.dumps(self.as_dict(), indent=2, default=str))
        else:
            print("\n".join(self.lines()))
        return 0 if self.passed else 1


def _ms(ms: float) -> str:
    return f"{ms:.0f} ms" if ms >= 10 else f"{ms:.1f} ms"


class Stopwatch:
    """The time of one step, in milliseconds (see :func:`timed`)."""

    ms: float = 0.0


@contextmanager
def timed() -> Iterator[Stopwatch]:
    """Time the body; the stopwatch holds the milliseconds once the body ends (or raises)."""
    watch = Stopwatch()
    start = time.perf_counter()
    try:
        yield watch
    finally:
        watch.ms = (time.perf_counter() - start) * 1e3
