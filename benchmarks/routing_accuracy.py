"""Routing accuracy: does each subtask reach an agent that can do it, and is what nobody can do
refused?

The labeled set
    ``benchmarks/data/routing/``: agent profiles written like real fleets (overlapping
    neighbours that differ by tier, cost or one skill; broad agents whose one narrow skill is
    the only right answer; device, edge and cloud tiers; data that must stay on a device;
    agents placed on named devices) and subtasks worded independently of the profiles, each
    labeled with every agent that may take it, or with none: either nobody in the fleet can
    do it, or its constraints rule out everyone who could.

Figures (per router)
    - top-1 / top-3: share of answerable subtasks whose first / first three candidates include
      a right agent (a refusal counts as wrong).
    - refused impossible: share of unanswerable subtasks refused.
    - false refusals: share of answerable subtasks refused.
    Refusal thresholds are calibrated on the even-numbered subtasks (the most impossible ones
    refused with at most 2.5% of possible ones wrongly refused there, so that the goal of at
    most 5% holds on unseen subtasks) and reported on the odd-numbered
    half (held out), which is the figure that counts; the whole set is shown too. "as shipped"
    uses the model's default threshold in fleetmind.

Routers, side by side in one run
    - fleetmind's ``SemanticRouter`` with each packaged embedding model, each in a fresh
      process so that its model load time and resident memory are its own: all-mpnet-base-v2
      (the default) and all-MiniLM-L6-v2 (the light option). Also measured: embedding time per
      subtask (one query at a time, as the engine routes a subtask added late) and per subtask
      in one batch (as a planned task is routed).
    - Baseline: BM25 (Okapi, k1 = 1.5, b = 0.75) over the same capability texts, one document
      per agent, under the same hard constraints, its threshold calibrated the same way.
    - With ``--review``: the default router plus a language-model reviewer
      (``RouteReviewer``) on its top five candidates, using the configured models
      (``fleetmind llm check``), with accuracy and cost per routed subtask. With
      ``--review-scripted``: the same reviewer against a scripted loopback server that always
      confirms the first candidate, with realistic prices: this measures what reviewing costs
      per routed subtask (prompt and answer tokens, time), not what it is worth.

How to run
    .venv/bin/python benchmarks/routing_accuracy.py
    .venv/bin/python benchmarks/routing_accuracy.py --json out.json --review-scripted
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from _harness import comma_list, write_json

from fleetmind.agents import AgentProfile
from fleetmind.errors import NoCapableAgent
from fleetmind.orchestrator import SemanticRouter, Subtask, capability_texts
from fleetmind.orchestrator._constraints import violation
from fleetmind.orchestrator._embedding_models import DEFAULT_MODEL, MODELS, embedding_model

DATA = Path(__file__).parent / "data" / "routing"
MAX_FALSE_REFUSALS = 0.05
"""The goal: at most this share of possible subtasks wrongly refused (on the held-out half)."""
CALIBRATION_FALSE_REFUSALS = 0.025
"""The budget thresholds are calibrated to on the calibration half: half the goal, because a
threshold fitted to one half at exactly 5% wrongly refused twice that on the other."""
REVIEWED_CANDIDATES = 5


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


def subtask_of(case: Case) -> Subtask:
    return Subtask(id=case.id, description=case.description, constraints=case.constraints)


# A decision: ranked candidates, each with its best similarity (or BM25 score); [] when every
# agent was excluded by a hard constraint.
Ranked = list[tuple[str, float]]


# One model, measured in a process of its own ---------------------------------------------------


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure_model(model: str) -> dict[str, Any]:
    """Load ``model``, route every labeled subtask with refusal off, and time the parts."""
    agents, cases = load()
    rss_start = _rss_mb()
    started = time.perf_counter()
    import sentence_transformers  # noqa: F401 - the import is part of what a first use pays

    import_s = time.perf_counter() - started
    from fleetmind.orchestrator._embedding import SentenceEmbedder

    embedder = SentenceEmbedder(model)
    started = time.perf_counter()
    folder = embedder.model.locate()  # assembles into the cache the first time
    locate_s = time.perf_counter() - started
    started = time.perf_counter()
    embedder.load()
    load_s = time.perf_counter() - started
    rss_loaded = _rss_mb()

    router = SemanticRouter(embedder, min_similarity=-1.0)
    by_id = {a.id: a for a in agents}
    started = time.perf_counter()
    router.agents_changed(added=agents)
    router.index  # embeds every capability text  # noqa: B018
    index_s = time.perf_counter() - started
    texts = sum(len(capability_texts(a)) for a in agents)

    subtasks = [subtask_of(c) for c in cases]
    singles = []
    for subtask in subtasks[:60]:  # one at a time, as a subtask added late is routed
        started = time.perf_counter()
        embedder.embed([subtask.description])
        singles.append(time.perf_counter() - started)
    started = time.perf_counter()
    router.prepare(subtasks)  # one batch, as a planned task is routed
    batch_s = time.perf_counter() - started

    rankings: dict[str, Ranked] = {}
    started = time.perf_counter()
    for case, subtask in zip(cases, subtasks, strict=True):
        try:
            decision = router.route(subtask, by_id)
        except NoCapableAgent:
            rankings[case.id] = []
            continue
        similarity = {s.agent_id: s.similarity for s in decision.scores}
        rankings[case.id] = [(a, similarity.get(a, 0.0)) for a in decision.candidates[:10]]
    route_s = time.perf_counter() - started
    return {
        "model": embedder.name,
        "dimension": embedder.dimension,
        "folder": str(folder),
        "import_s": import_s,
        "locate_s": locate_s,
        "load_s": load_s,
        "rss_before_mb": rss_start,
        "rss_loaded_mb": rss_loaded,
        "rss_end_mb": _rss_mb(),
        "index_s": index_s,
        "capability_texts": texts,
        "embed_one_ms_p50": statistics.median(singles) * 1000,
        "embed_batch_ms_per_subtask": batch_s / len(subtasks) * 1000,
        "route_ms_per_subtask": route_s / len(subtasks) * 1000,
        "rankings": rankings,
    }


def measure_in_child(model: str) -> dict[str, Any]:
    """``measure_model`` in a fresh interpreter (its load time and memory are its own)."""
    child = subprocess.run(
        [sys.executable, __file__, "--measure-model", model],
        capture_output=True,
        text=True,
        check=False,
    )
    if child.returncode != 0:
        raise SystemExit(f"measuring {model} failed:\n{child.stderr[-3000:]}")
    return json.loads(child.stdout)


# The baseline -----------------------------------------------------------------------------------

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
    rankings: dict[str, Ranked] = {}
    for case in cases:
        allowed = [a for a in agents if violation(a, case.constraints) is None]
        scored = sorted(
            ((a.id, index.score(case.description, a.id)) for a in allowed), key=lambda x: -x[1]
        )
        rankings[case.id] = scored[:10]
    return rankings


# Figures ----------------------------------------------------------------------------------------


@dataclass
class Figures:
    top1: float
    top3: float
    refused_impossible: float
    false_refusals: float
    answerable: int
    impossible: int


def evaluate(
    rankings: dict[str, Ranked],
    cases: Sequence[Case],
    threshold: float,
    refused: set[str] = frozenset(),  # type: ignore[assignment]
) -> Figures:
    """Accuracy when subtasks whose best match is below ``threshold`` (or in ``refused``)
    are refused."""
    top1 = top3 = refused_ok = false_refusals = 0
    answerable = [c for c in cases if c.expected]
    impossible = [c for c in cases if not c.expected]
    for case in cases:
        ranked = rankings[case.id]
        refuses = not ranked or ranked[0][1] < threshold or case.id in refused
        if not case.expected:
            refused_ok += refuses
            continue
        if refuses:
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
    """The highest refusal threshold that wrongly refuses at most 2.5% of ``cases``' answerable
    subtasks (so the most impossible ones are refused within that budget)."""
    values = sorted({r[0][1] for r in rankings.values() if r})
    cuts = [values[0] - 1e-9] + [(a + b) / 2 for a, b in itertools.pairwise(values)]
    budget = CALIBRATION_FALSE_REFUSALS
    allowed = [t for t in cuts if evaluate(rankings, cases, t).false_refusals <= budget]
    return max(allowed) if allowed else cuts[0]


def figures_row(
    name: str,
    rankings: dict[str, Ranked],
    cases: list[Case],
    threshold: float,
    refused: set[str] = frozenset(),  # type: ignore[assignment]
) -> dict[str, Any]:
    held_out = [c for c in cases if c.number % 2 == 1]
    calibration = [c for c in cases if c.number % 2 == 0]
    row: dict[str, Any] = {"router": name, "threshold": threshold}
    for part, subset in (("held_out", held_out), ("calibration", calibration), ("all", cases)):
        f = evaluate(rankings, subset, threshold, refused)
        row[part] = {
            "top1": f.top1,
            "top3": f.top3,
            "refused_impossible": f.refused_impossible,
            "false_refusals": f.false_refusals,
            "answerable": f.answerable,
            "impossible": f.impossible,
        }
    constrained = [c for c in cases if c.constraints and c.expected]
    row["top1_constrained"] = evaluate(rankings, constrained, threshold, refused).top1
    return row


# Review by a language model -------------------------------------------------------------------


async def review_all(
    agents: list[AgentProfile],
    cases: list[Case],
    rankings: dict[str, Ranked],
    client: Any,
) -> tuple[dict[str, Ranked], set[str], dict[str, Any]]:
    """Ask the reviewer about each subtask's top candidates; the reviewed rankings, the
    subtasks it refused, and its cost."""
    from fleetmind.orchestrator import RouteReviewer

    reviewer = RouteReviewer(client, candidates=REVIEWED_CANDIDATES)
    by_id = {a.id: a for a in agents}
    reviewed: dict[str, Ranked] = {}
    refused: set[str] = set()
    failures = 0
    latencies: list[float] = []

    async def one(case: Case) -> None:
        nonlocal failures
        ranked = rankings[case.id]
        if not ranked:
            reviewed[case.id] = ranked
            return
        verdict = await reviewer.review(subtask_of(case), [a for a, _ in ranked], by_id)
        latencies.append(verdict.latency_s)
        failures += verdict.failed
        if verdict.refused:
            refused.add(case.id)
        order = [a for a, _ in ranked]
        if verdict.agent in order:
            order.remove(verdict.agent)
            order.insert(0, verdict.agent)
        similarity = dict(ranked)
        reviewed[case.id] = [(a, similarity[a]) for a in order]

    async with asyncio.TaskGroup() as group:
        for case in cases:
            group.create_task(one(case))
    await client.aclose()
    asked = max(reviewer.questions, 1)
    cost = {
        "model": reviewer.client.model_name,
        "questions": reviewer.questions,
        "failures": failures,
        "cost_per_routed_subtask": reviewer.cost / asked,
        "tokens_per_routed_subtask": reviewer.tokens / asked,
        "latency_ms_p50": statistics.median(latencies) * 1000 if latencies else None,
    }
    return reviewed, refused, cost


def scripted_reviewer_client() -> tuple[Any, Any]:
    """A client on a loopback server that confirms the first candidate of every question,
    priced like a small hosted model ($0.15 / $0.60 per million tokens in / out)."""
    from fleetmind.agents import ModelEndpoint, OpenAICompatibleClient
    from fleetmind.agents._models import ModelPrices
    from fleetmind.testing import Reply, ScriptedLLMServer

    def confirm_first(request: dict[str, Any]) -> Reply:
        text = request["messages"][1]["content"]
        first = re.search(r"^- id: (\S+)$", text, re.M)
        reason = "its profile covers this subtask"
        chosen = first.group(1) if first else None
        return Reply.text(json.dumps({"agent": chosen, "reason": reason}))

    server = ScriptedLLMServer(responder=confirm_first).start()
    endpoint = ModelEndpoint(
        name="cloud",
        base_url=server.url,
        model="scripted-model",
        prices=ModelPrices(input_per_mtok=0.15, output_per_mtok=0.60),
    )
    return server, OpenAICompatibleClient(endpoint)


def configured_reviewer_client() -> Any:
    from fleetmind.agents import ModelConfig, OpenAICompatibleClient

    config = ModelConfig.load()
    return OpenAICompatibleClient(config.endpoint(config.planner_tier()))


# The run -----------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    agents, cases = load()
    calibration = [c for c in cases if c.number % 2 == 0]
    report: dict[str, Any] = {
        "benchmark": "routing_accuracy",
        "agents": len(agents),
        "subtasks": len(cases),
        "answerable": sum(1 for c in cases if c.expected),
        "impossible": sum(1 for c in cases if not c.expected),
        "constrained": sum(1 for c in cases if c.constraints),
        "max_false_refusals": MAX_FALSE_REFUSALS,
        "calibration_false_refusals": CALIBRATION_FALSE_REFUSALS,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average": list(os.getloadavg()),
        },
        "models": [],
        "rows": [],
    }
    measured: dict[str, dict[str, Any]] = {}
    for name in args.models:
        model = embedding_model(name)
        print(f"measuring {model.name} in a fresh process ...", file=sys.stderr)
        data = measure_in_child(model.name)
        measured[model.name] = data
        rankings = data.pop("rankings")
        data["rankings"] = rankings
        threshold = calibrate(rankings, calibration)
        report["models"].append(
            {k: v for k, v in data.items() if k != "rankings"}
            | {"threshold_calibrated": threshold, "threshold_shipped": model.refusal_similarity}
        )
        report["rows"].append(figures_row(f"fleetmind, {model.name}", rankings, cases, threshold))
        report["rows"].append(
            figures_row(
                f"  as shipped (threshold {model.refusal_similarity:.3f})",
                rankings,
                cases,
                model.refusal_similarity,
            )
        )
    bm25 = bm25_rankings(agents, cases)
    report["rows"].append(figures_row("BM25 keywords", bm25, cases, calibrate(bm25, calibration)))

    base = measured.get(DEFAULT_MODEL) or next(iter(measured.values()))
    for mode in ("review_scripted", "review"):
        if not getattr(args, mode):
            continue
        server = None
        if mode == "review_scripted":
            server, client = scripted_reviewer_client()
        else:
            client = configured_reviewer_client()
        try:
            reviewed, refused, cost = asyncio.run(
                review_all(agents, cases, base["rankings"], client)
            )
        finally:
            if server is not None:
                server.stop()
        threshold = calibrate(reviewed, calibration)
        label = (
            "reviewer, scripted (cost only)"
            if mode == "review_scripted"
            else f"reviewer, {cost['model']}"
        )
        row = figures_row(f"{base['model']} + {label}", reviewed, cases, threshold, refused)
        row["review"] = cost
        report["rows"].append(row)
    for data in measured.values():
        data.pop("rankings", None)
    return report


def percent(value: float) -> str:
    return f"{value:.1%}"


def print_table(r: dict[str, Any]) -> None:
    print(
        f"Routing accuracy: {r['subtasks']} labeled subtasks ({r['answerable']} answerable, "
        f"{r['impossible']} impossible, {r['constrained']} constrained) over {r['agents']} "
        f"agents; {r['machine']['cpus']} CPUs, load {r['machine']['load_average'][0]:.2f}"
    )
    print(
        "refusal thresholds calibrated on the even-numbered half (at most "
        f"{r['calibration_false_refusals']:.1%} false refusals there; the goal is "
        f"{r['max_false_refusals']:.0%}); figures on the odd-numbered "
        "half (held out), whole set in brackets\n"
    )
    header = (
        f"{'router':<48}{'top-1':>15}{'top-3':>15}{'refused impossible':>21}"
        f"{'false refusals':>17}{'threshold':>11}"
    )
    print(header)
    print("-" * len(header))
    for row in r["rows"]:

        def cell(key: str, width: int, row: dict[str, Any] = row) -> str:
            text = f"{percent(row['held_out'][key])} ({percent(row['all'][key])})"
            return f"{text:>{width}}"

        print(
            f"{row['router']:<48}{cell('top1', 15)}{cell('top3', 15)}"
            f"{cell('refused_impossible', 21)}{cell('false_refusals', 17)}"
            f"{row['threshold']:>11.3f}"
        )
    print()
    header = (
        f"{'model':<20}{'dim':>5}{'load s':>8}{'import s':>10}{'RSS MB':>9}"
        f"{'embed 1 ms':>12}{'batch ms/subtask':>18}{'index s':>9}"
    )
    print(header)
    print("-" * len(header))
    for m in r["models"]:
        print(
            f"{m['model']:<20}{m['dimension']:>5}{m['load_s'] + m['locate_s']:>8.2f}"
            f"{m['import_s']:>10.2f}{m['rss_end_mb']:>9.0f}{m['embed_one_ms_p50']:>12.1f}"
            f"{m['embed_batch_ms_per_subtask']:>18.1f}{m['index_s']:>9.2f}"
        )
    print(
        "load s: finding (or assembling, the first time) and loading the model; import s: "
        "importing sentence-transformers and torch (paid once, whatever the model); RSS MB: "
        "the process's resident memory after routing every subtask; embed 1 ms: one subtask alone "
        "(p50); batch: per subtask, all in one batch; index s: embedding every agent's "
        "capability texts"
    )
    for row in r["rows"]:
        review = row.get("review")
        if review:
            print(
                f"\n{row['router']}: {review['questions']} questions, "
                f"${review['cost_per_routed_subtask']:.6f} and "
                f"{review['tokens_per_routed_subtask']:.0f} tokens per routed subtask, "
                f"p50 {review['latency_ms_p50']:.0f} ms each, {review['failures']} failed"
            )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    parser.add_argument(
        "--models",
        type=comma_list,
        default=list(MODELS),
        help="embedding models to compare (default: " + ", ".join(MODELS) + ")",
    )
    parser.add_argument(
        "--review", action="store_true", help="add the reviewer on the configured model"
    )
    parser.add_argument(
        "--review-scripted",
        action="store_true",
        help="add the reviewer on a scripted loopback server (cost and time per subtask only)",
    )
    parser.add_argument("--measure-model", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure_model:
        json.dump(measure_model(args.measure_model), sys.stdout)
        return 0
    report = run(args)
    print_table(report)
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
