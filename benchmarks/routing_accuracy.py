"""Routing accuracy: does each subtask reach an agent that can do it?

What is measured
    A labeled set shipped in ``benchmarks/data/routing/``: 54 agent profiles written like a real
    company fleet (overlapping neighbours, broad agents with narrow skills, device/edge/cloud
    tiers, costs, latencies, data that must stay on a device) and 348 subtasks worded
    independently of the profiles, each labeled with the agent(s) that may take it — or with
    none, when no agent can (53 of them: 44 that nobody in the fleet can do, 9 where the
    subtask's constraints rule out every capable agent). 48 subtasks carry constraints (tier,
    cost or latency ceiling, local data) that change the answer.

    For every subtask the router under test returns a ranked list or refuses.
      - ``top1`` / ``top3``: share of answerable subtasks whose first / first three candidates
        include a correct agent (a refusal counts as wrong).
      - ``refused_impossible``: share of unanswerable subtasks that were refused.
      - ``false_refusals``: share of answerable subtasks that were refused.

Routers
    - fleetmind's ``SemanticRouter`` (all-MiniLM-L6-v2 vectors of each agent, skill and
      example; hard constraints first; cost-biased score; refusal below a similarity
      threshold).
    - Baseline: BM25 (Okapi, k1 = 1.5, b = 0.75) over the same capability texts, one document
      per agent, with the same hard constraints applied, and a refusal threshold on the BM25
      score chosen the same way as the semantic one.

Calibration
    Each router's refusal threshold is chosen on the even-numbered subtasks (the calibration
    half) to maximise correct decisions (right agent first, or refusal when none fits), then
    reported on the odd-numbered half (held out) and on the whole set. ``--threshold`` fixes
    the semantic threshold instead (the fleet default is the calibrated value).

How to run
    .venv/bin/python benchmarks/routing_accuracy.py
    .venv/bin/python benchmarks/routing_accuracy.py --json out.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import platform
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fleetmind.agents import AgentProfile
from fleetmind.errors import NoCapableAgent
from fleetmind.orchestrator import SemanticRouter, Subtask, capability_texts
from fleetmind.orchestrator._semantic import DEFAULT_MIN_SIMILARITY

DATA = Path(__file__).parent / "data" / "routing"


@dataclass(frozen=True)
class Case:
    """One labeled subtask."""

    id: str
    description: str
    expected: frozenset[str]
    constraints: dict[str, Any]

    @property
    def number(self) -> int:
        return int(re.sub(r"\D", "", self.id))


def load() -> tuple[list[AgentProfile], list[Case]]:
    """The labeled set."""
    agents = [
        AgentProfile.model_validate(a) for a in yaml.safe_load((DATA / "agents.yaml").read_text())
    ]
    cases = [
        Case(c["id"], c["description"], frozenset(c["expected"]), c.get("constraints") or {})
        for c in yaml.safe_load((DATA / "subtasks.yaml").read_text())
    ]
    return agents, cases


# A decision: ranked candidates with their best "match" value (similarity or BM25 score).
Ranked = list[tuple[str, float]]


def semantic_rankings(agents: list[AgentProfile], cases: list[Case]) -> dict[str, Ranked]:
    """fleetmind's router with refusal switched off: the ranking it would act on."""
    router = SemanticRouter(min_similarity=-1.0)
    router.agents_changed(added=agents)
    by_id = {a.id: a for a in agents}
    subtasks = {
        c.id: Subtask(id="s", description=c.description, constraints=c.constraints) for c in cases
    }
    router.prepare(list(subtasks.values()))
    rankings: dict[str, Ranked] = {}
    for case in cases:
        try:
            decision = router.route(subtasks[case.id], by_id)
        except NoCapableAgent:  # every agent excluded by a hard constraint
            rankings[case.id] = []
            continue
        similarity = {s.agent_id: s.similarity for s in decision.scores}
        rankings[case.id] = [(a, similarity.get(a, 0.0)) for a in decision.candidates]
    return rankings


_TOKEN = re.compile(r"[a-z0-9]+")


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


class BM25:
    """Okapi BM25 over one document per agent."""

    def __init__(self, documents: dict[str, str], k1: float = 1.5, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.docs = {agent: Counter(tokens(text)) for agent, text in documents.items()}
        self.lengths = {agent: sum(c.values()) for agent, c in self.docs.items()}
        self.average = sum(self.lengths.values()) / len(self.lengths)
        frequency: Counter[str] = Counter()
        for counts in self.docs.values():
            frequency.update(counts.keys())
        n = len(self.docs)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in frequency.items()}

    def score(self, query: str, agent: str) -> float:
        counts, length = self.docs[agent], self.lengths[agent]
        total = 0.0
        for term in tokens(query):
            tf = counts.get(term, 0)
            if tf:
                norm = tf + self.k1 * (1 - self.b + self.b * length / self.average)
                total += self.idf[term] * tf * (self.k1 + 1) / norm
        return total


def bm25_rankings(agents: list[AgentProfile], cases: list[Case]) -> dict[str, Ranked]:
    """BM25 over the same capability texts, under the same hard constraints."""
    index = BM25({a.id: " ".join(t for _, t in capability_texts(a)) for a in agents})
    checker = SemanticRouter(min_similarity=-1.0)  # only its constraint check is used
    rankings: dict[str, Ranked] = {}
    for case in cases:
        allowed = [a for a in agents if checker._violation(a, case.constraints) is None]
        scored = sorted(
            ((a.id, index.score(case.description, a.id)) for a in allowed), key=lambda x: -x[1]
        )
        rankings[case.id] = scored
    return rankings


@dataclass
class Figures:
    top1: float
    top3: float
    refused_impossible: float
    false_refusals: float
    answerable: int
    impossible: int


def evaluate(rankings: dict[str, Ranked], cases: Sequence[Case], threshold: float) -> Figures:
    """Accuracy when subtasks whose best match is below ``threshold`` are refused."""
    top1 = top3 = refused_ok = false_refusals = 0
    answerable = [c for c in cases if c.expected]
    impossible = [c for c in cases if not c.expected]
    for case in cases:
        ranked = rankings[case.id]
        refused = not ranked or ranked[0][1] < threshold
        if not case.expected:
            refused_ok += refused
            continue
        if refused:
            false_refusals += 1
            continue
        ids = [a for a, _ in ranked]
        top1 += ids[0] in case.expected
        top3 += bool(set(ids[:3]) & case.expected)
    return Figures(
        top1=top1 / len(answerable),
        top3=top3 / len(answerable),
        refused_impossible=refused_ok / len(impossible) if impossible else 1.0,
        false_refusals=false_refusals / len(answerable),
        answerable=len(answerable),
        impossible=len(impossible),
    )


def calibrate(rankings: dict[str, Ranked], cases: Sequence[Case]) -> float:
    """The refusal threshold that makes the most correct decisions on ``cases``."""
    values = sorted({v for r in rankings.values() for _, v in r[:1]})
    candidates = [values[0] - 1e-9] + [(a + b) / 2 for a, b in itertools.pairwise(values)]

    def correct(threshold: float) -> int:
        f = evaluate(rankings, cases, threshold)
        return round(f.top1 * f.answerable + f.refused_impossible * f.impossible)

    return max(candidates, key=lambda t: (correct(t), -t))


def run(threshold: float | None) -> dict[str, Any]:
    agents, cases = load()
    start = time.perf_counter()
    semantic = semantic_rankings(agents, cases)
    semantic_s = time.perf_counter() - start
    start = time.perf_counter()
    bm25 = bm25_rankings(agents, cases)
    bm25_s = time.perf_counter() - start
    calibration = [c for c in cases if c.number % 2 == 0]
    held_out = [c for c in cases if c.number % 2 == 1]
    semantic_threshold = threshold if threshold is not None else calibrate(semantic, calibration)
    bm25_threshold = calibrate(bm25, calibration)
    report: dict[str, Any] = {
        "agents": len(agents),
        "subtasks": len(cases),
        "answerable": sum(1 for c in cases if c.expected),
        "impossible": sum(1 for c in cases if not c.expected),
        "constrained": sum(1 for c in cases if c.constraints),
        "semantic_threshold": semantic_threshold,
        "semantic_threshold_default": DEFAULT_MIN_SIMILARITY,
        "bm25_threshold": bm25_threshold,
        "semantic_seconds": semantic_s,
        "bm25_seconds": bm25_s,
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
    }
    for name, rankings, cut in (
        ("semantic", semantic, semantic_threshold),
        ("bm25", bm25, bm25_threshold),
    ):
        for part, subset in (("", cases), ("_held_out", held_out)):
            f = evaluate(rankings, subset, cut)
            report[f"{name}_top1{part}"] = f.top1
            report[f"{name}_top3{part}"] = f.top3
            report[f"{name}_refused_impossible{part}"] = f.refused_impossible
            report[f"{name}_false_refusals{part}"] = f.false_refusals
    report["refused_impossible"] = report["semantic_refused_impossible"]
    constrained = [c for c in cases if c.constraints and c.expected]
    report["semantic_top1_constrained"] = evaluate(semantic, constrained, semantic_threshold).top1
    report["bm25_top1_constrained"] = evaluate(bm25, constrained, bm25_threshold).top1
    return report


def print_table(r: dict[str, Any]) -> None:
    print(
        f"Routing accuracy on {r['subtasks']} labeled subtasks ({r['answerable']} answerable, "
        f"{r['impossible']} impossible, {r['constrained']} constrained) over {r['agents']} agents"
    )
    print(
        f"refusal thresholds calibrated on the even-numbered half: semantic similarity "
        f"{r['semantic_threshold']:.3f}, BM25 score {r['bm25_threshold']:.2f}\n"
    )
    header = (
        f"{'router':<24}{'top-1':>8}{'top-3':>8}{'refused impossible':>20}"
        f"{'false refusals':>16}{'top-1 constrained':>19}"
    )
    print(header)
    print("-" * len(header))
    for name, label in (("semantic", "fleetmind semantic"), ("bm25", "BM25 keywords")):
        print(
            f"{label:<24}{r[f'{name}_top1']:>8.1%}{r[f'{name}_top3']:>8.1%}"
            f"{r[f'{name}_refused_impossible']:>20.1%}{r[f'{name}_false_refusals']:>16.1%}"
            f"{r[f'{name}_top1_constrained']:>19.1%}"
        )
    print("\nheld-out half only (odd-numbered subtasks):")
    for name, label in (("semantic", "fleetmind semantic"), ("bm25", "BM25 keywords")):
        print(
            f"{label:<24}{r[f'{name}_top1_held_out']:>8.1%}{r[f'{name}_top3_held_out']:>8.1%}"
            f"{r[f'{name}_refused_impossible_held_out']:>20.1%}"
            f"{r[f'{name}_false_refusals_held_out']:>16.1%}"
        )
    print(
        f"\nrouting time: semantic {r['semantic_seconds']:.1f} s (model load and embedding "
        "included), "
        f"BM25 {r['bm25_seconds']:.2f} s"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    parser.add_argument("--threshold", type=float, help="fix the semantic refusal threshold")
    args = parser.parse_args(argv)
    report = run(args.threshold)
    print_table(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
