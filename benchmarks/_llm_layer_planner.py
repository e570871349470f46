"""Part (b) of benchmarks/llm_layer.py: planning requests whose scripted model answers start with
a failure mode real models produce, and what the planner made of each."""

from __future__ import annotations

import json
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fleetmind import Fleet, Planner, TaskGraph, agent
from fleetmind.agents import ModelEndpoint, OpenAICompatibleClient
from fleetmind.errors import PlanningError
from fleetmind.orchestrator import SkillRouter
from fleetmind.testing import Reply, ScriptedLLMServer

# ---------------------------------------------------------------------------------------------
# (b) Planner robustness
# ---------------------------------------------------------------------------------------------

NEVER_RUN = "the planner benchmark never runs an agent"


@agent(id="fetcher", skills=[{"name": "fetch-page", "tags": ["web"]}])
async def fetcher(url: str) -> str:
    """Downloads a web page and returns its text."""
    raise AssertionError(NEVER_RUN)


@agent(id="summariser", skills=["summarise"])
async def summariser(text: str, max_words: int = 120) -> str:
    """Summarises a text in a few sentences."""
    raise AssertionError(NEVER_RUN)


@agent(id="translator", skills=["translate"])
async def translator(text: str, language: str) -> str:
    """Translates a text into another language."""
    raise AssertionError(NEVER_RUN)


@agent(id="counter", skills=[{"name": "code-metrics", "tags": ["lines-of-code"]}])
async def counter(path: str) -> dict[str, int]:
    """Counts lines of code in a repository."""
    raise AssertionError(NEVER_RUN)


@agent(id="todo-finder", skills=["todo-scan"])
async def todo_finder(path: str) -> list[str]:
    """Finds TODO markers in a repository."""
    raise AssertionError(NEVER_RUN)


@agent(id="reporter", skills=["report-writing"])
async def reporter(summary: Any, details: Any = None, title: str = "") -> str:
    """Writes a short report."""
    raise AssertionError(NEVER_RUN)


PLAN_AGENTS = [fetcher, summariser, translator, counter, todo_finder, reporter]
SKILL_OF = {a.id: a.profile.skills[0].name for a in PLAN_AGENTS}
AGENT_WITH_SKILL = {skill: agent_id for agent_id, skill in SKILL_OF.items()}
NEEDS = {a.id: sorted(a.required_inputs) for a in PLAN_AGENTS}
LANGUAGES = ["German", "French", "Spanish", "Italian", "Dutch", "Polish"]
TOPICS = ["pricing", "release-notes", "security", "roadmap", "changelog", "faq", "blog"]
REPOS = ["./api", "./web", "./cli", "./sdk", "."]
MAX_ROUNDS = 3
MAX_SUBTASKS = 20
NEVER_VALID_SHARE = 0.1

READ_AS_IS = ("valid", "prose", "code_fence")
BROKEN = (
    "missing_field",
    "unknown_agent",
    "unknown_skill",
    "unknown_ref",
    "missing_input",
    "cycle",
    "truncated",
    "too_many",
    "not_json",
    "json_list",
)
MODES = READ_AS_IS + BROKEN
FEEDBACK = {
    "missing_field": "description",
    "unknown_agent": "there is no agent",
    "unknown_skill": "no agent offers skill",
    "unknown_ref": "unknown subtask",
    "missing_input": "needs input",
    "cycle": "cycle",
    "truncated": "cut off",
    "too_many": f"the limit is {MAX_SUBTASKS}",
    "not_json": "no JSON object",
    "json_list": "not a list",
}
"""What the first round's feedback must say for the model to see its actual fault."""


def _entry(
    rng: random.Random, sid: str, agent_id: str, what: str, inputs: dict[str, Any]
) -> dict[str, Any]:
    """A subtask entry naming its agent, its skill, or both (as a model might)."""
    entry: dict[str, Any] = {"id": sid, "description": what}
    how = rng.choice(["agent", "skill", "both"])
    if how in ("agent", "both"):
        entry["agent"] = agent_id
    if how in ("skill", "both"):
        entry["skill"] = SKILL_OF[agent_id]
    entry["inputs"] = inputs
    return entry


def good_plan(rng: random.Random, n: int) -> tuple[str, dict[str, Any]]:
    """A request (unique by its number) and a valid plan for it, from one of four templates."""
    url = f"https://example.com/{rng.choice(TOPICS)}/{n}"
    other = f"https://example.com/{rng.choice(TOPICS)}/{n}b"
    language, repo = rng.choice(LANGUAGES), rng.choice(REPOS)
    fetch = ("fetch", "fetcher", "download the page", {"url": url})
    templates = [
        (
            f"Request {n}: summarise {url} in {language}.",
            [
                fetch,
                ("summary", "summariser", "summarise the page", {"text": "${fetch}"}),
                (
                    "translate",
                    "translator",
                    "translate",
                    {"text": "${summary}", "language": language},
                ),
            ],
        ),
        (
            f"Request {n}: audit the code in {repo} and write me a report.",
            [
                ("loc", "counter", "count lines of code", {"path": repo}),
                ("todos", "todo-finder", "find TODO markers", {"path": repo}),
                (
                    "report",
                    "reporter",
                    "write the report",
                    {"summary": "${loc}", "details": "${todos}"},
                ),
            ],
        ),
        (
            f"Request {n}: translate {url} into {language} and report on it.",
            [
                fetch,
                (
                    "translate",
                    "translator",
                    "translate",
                    {"text": "${fetch}", "language": language},
                ),
                ("report", "reporter", "write a short report", {"summary": "${translate}"}),
            ],
        ),
        (
            f"Request {n}: compare {url} with {other}.",
            [
                ("page-a", "fetcher", "download the first page", {"url": url}),
                ("page-b", "fetcher", "download the second page", {"url": other}),
                ("sum-a", "summariser", "summarise the first page", {"text": "${page-a}"}),
                (
                    "sum-b",
                    "summariser",
                    "summarise it shortly",
                    {"text": "${page-b}", "max_words": 80},
                ),
                (
                    "compare",
                    "reporter",
                    "compare them",
                    {"summary": "${sum-a}", "details": "${sum-b}"},
                ),
            ],
        ),
    ]
    request, steps = rng.choice(templates)
    return request, {"name": f"request-{n}", "subtasks": [_entry(rng, *step) for step in steps]}


def _text(plan: Any, rng: random.Random) -> str:
    return json.dumps(plan, indent=rng.choice([None, 2]))


def bad_answer(mode: str, plan: dict[str, Any], rng: random.Random) -> Reply:
    """The model's answer for ``plan`` with the fault ``mode`` (read as-is modes are valid)."""
    broken = json.loads(json.dumps(plan))
    subtasks: list[dict[str, Any]] = broken["subtasks"]
    victim = rng.choice(subtasks)
    if mode == "valid":
        return Reply.text(_text(plan, rng))
    if mode == "prose":
        return Reply.text(
            f"Sure! Here is a plan for that:\n{_text(plan, rng)}\nLet me know if you want changes."
        )
    if mode == "code_fence":
        return Reply.text(f"```json\n{json.dumps(plan, indent=2)}\n```")
    if mode == "missing_field":
        del victim["description"]
    elif mode == "unknown_agent":
        victim["agent"] = rng.choice(["summarizer", "web-fetcher", "report-bot", "translate"])
    elif mode == "unknown_skill":
        victim.pop("agent", None)
        victim["skill"] = rng.choice(["summarization", "web-scraping", "translation", "audit"])
    elif mode == "unknown_ref":
        name = rng.choice(sorted(victim["inputs"]))
        victim["inputs"][name] = rng.choice(["${nope}", "${step1}", "${previous}"])
    elif mode == "missing_input":
        chosen = victim.get("agent") or AGENT_WITH_SKILL[victim["skill"]]
        victim["inputs"].pop(rng.choice(NEEDS[chosen]))
    elif mode == "cycle":
        subtasks[0]["depends_on"] = [subtasks[-1]["id"]]
    elif mode == "truncated":
        text = _text(plan, rng)
        return Reply.text(text[: int(len(text) * rng.uniform(0.3, 0.9))], finish_reason="length")
    elif mode == "too_many":
        count = rng.randint(MAX_SUBTASKS + 1, MAX_SUBTASKS + 6)
        broken["subtasks"] = [
            {
                "id": f"fetch-{i}",
                "description": "download one page",
                "agent": "fetcher",
                "inputs": {"url": f"https://example.com/page/{i}"},
            }
            for i in range(count)
        ]
    elif mode == "not_json":
        return Reply.text(
            "I would first download the page, then summarise it, and finally translate the "
            "summary. Shall I go ahead?"
        )
    elif mode == "json_list":
        return Reply.text(_text(subtasks, rng))
    else:
        raise ValueError(mode)
    return Reply.text(_text(broken, rng))


@dataclass
class PlanCase:
    """One planning request, its scripted answers, and what came of it."""

    n: int
    request: str
    mode: str
    answers: list[Reply]
    expect_rounds: int | None
    """The round whose answer is valid; None: never valid (must be refused)."""
    good: dict[str, Any]
    outcome: str = ""
    """``valid``, ``refused`` or ``ERROR``."""
    rounds: int = 0
    detail: str = ""
    """The refusal's message, the error, or why a valid plan is not the scripted one."""
    first_problems: list[str] = field(default_factory=list)
    """The feedback the model got after its first answer."""

    @property
    def as_scripted(self) -> bool:
        """Valid in the round the script meant (with its valid plan), or refused if meant."""
        if self.expect_rounds is None:
            return self.outcome == "refused"
        return self.outcome == "valid" and self.rounds == self.expect_rounds and not self.detail

    @property
    def feedback_on_target(self) -> bool | None:
        """Whether the first round's feedback names the fault (None: nothing to name)."""
        if self.mode not in FEEDBACK or not self.first_problems:
            return None
        return any(FEEDBACK[self.mode] in p for p in self.first_problems)


def plan_cases(count: int, seed: int) -> list[PlanCase]:
    """``count`` requests, each mode equally often (in a seeded order)."""
    rng = random.Random(seed)
    modes = [MODES[i % len(MODES)] for i in range(count)]
    rng.shuffle(modes)
    broken = [i for i, m in enumerate(modes) if m in BROKEN]
    never = set(rng.sample(broken, k=max(1, round(count * NEVER_VALID_SHARE))))
    cases = []
    for n, mode in enumerate(modes):
        request, good = good_plan(rng, n)
        if mode in READ_AS_IS:
            answers, expect = [bad_answer(mode, good, rng)], 1
        elif n in never:
            later = [bad_answer(rng.choice(BROKEN), good, rng) for _ in range(MAX_ROUNDS - 1)]
            answers, expect = [bad_answer(mode, good, rng), *later], None
        else:
            bad = rng.choice([1, 1, 1, 2, 2])
            answers = [bad_answer(mode, good, rng) for _ in range(bad)]
            answers.append(Reply.text(_text(good, rng)))
            expect = bad + 1
        cases.append(PlanCase(n, request, mode, answers, expect, good))
    return cases


def plan_responder(cases: list[PlanCase]) -> Callable[[dict[str, Any]], Reply]:
    """Answer each planning request from its script: the round is counted from the messages."""
    by_request = {case.request: case.answers for case in cases}

    def respond(request: dict[str, Any]) -> Reply:
        messages = request.get("messages") or []
        answers = by_request.get(messages[1]["content"] if len(messages) > 1 else "")
        if answers is None:
            return Reply.error(400, "not a scripted request")
        round_ = sum(1 for m in messages if m.get("role") == "assistant")
        return answers[min(round_, len(answers) - 1)]  # a rejected valid answer is repeated

    return respond


def graph_problem(fleet: Fleet, graph: TaskGraph) -> str:
    """Why a returned plan's graph is not valid ('' when it is)."""
    try:
        fleet.check(graph)
    except Exception as exc:
        return f"fleet.check: {type(exc).__name__}: {exc}"
    try:
        rebuilt = TaskGraph.from_log(graph.log, name=graph.name)
    except Exception as exc:
        return f"TaskGraph.from_log: {type(exc).__name__}: {exc}"
    if [s.model_dump() for s in rebuilt] != [s.model_dump() for s in graph]:
        return "the graph rebuilt from its log has other subtasks"
    if _edges(rebuilt) != _edges(graph):
        return "the graph rebuilt from its log has other dependencies"
    return ""


def _edges(graph: TaskGraph) -> list[str]:
    return sorted(json.dumps(d.model_dump(mode="json"), sort_keys=True) for d in graph.dependencies)


async def plan_one(fleet: Fleet, case: PlanCase) -> None:
    """Plan one request (nothing runs) and record how it went."""
    exchanges: Any = ()
    try:
        plan = await fleet.plan(case.request)
    except PlanningError as exc:
        exchanges = exc.details.get("exchanges") or ()
        case.rounds = len(exchanges)
        one_line = bool(exc.message.strip()) and "\n" not in exc.message
        case.outcome = "refused" if one_line else "ERROR"
        case.detail = exc.message
    except Exception as exc:
        case.outcome, case.detail = "ERROR", f"{type(exc).__name__}: {exc}"
    else:
        exchanges = plan.exchanges
        case.rounds = plan.rounds
        case.detail = graph_problem(fleet, plan.graph)
        case.outcome = "ERROR" if case.detail else "valid"
        scripted = sorted(e["id"] for e in case.good["subtasks"])
        if not case.detail and sorted(s.id for s in plan.graph) != scripted:
            case.detail = "a valid plan, but not the scripted valid answer"
    if exchanges:
        case.first_problems = [str(p) for p in exchanges[0].get("problems") or ()]


async def bench_planner(count: int, seed: int) -> dict[str, Any]:
    """Plan every request against the scripted model; the shares and the per-mode table."""
    cases = plan_cases(count, seed)
    start = time.perf_counter()
    with ScriptedLLMServer(responder=plan_responder(cases)) as server:
        endpoint = ModelEndpoint(name="cloud", base_url=server.url, model="planner", max_retries=0)
        async with OpenAICompatibleClient(endpoint) as model:
            fleet = Fleet(PLAN_AGENTS, router=SkillRouter(), planner=Planner(model))
            for case in cases:
                await plan_one(fleet, case)
    elapsed = time.perf_counter() - start
    executed = fleet.store.tasks()
    if executed:
        raise AssertionError(f"the planner benchmark ran {len(executed)} task(s)")
    repairable = [c for c in cases if c.expect_rounds is not None]
    valid = [c for c in cases if c.outcome == "valid"]
    refused = [c for c in cases if c.outcome == "refused"]
    per_mode = []
    for mode in MODES:
        of_mode = [c for c in cases if c.mode == mode]
        valid_of_mode = [c for c in of_mode if c.outcome == "valid"]
        fed = [c.feedback_on_target for c in of_mode if c.feedback_on_target is not None]
        per_mode.append(
            {
                "mode": mode,
                "requests": len(of_mode),
                "meant_refused": sum(c.expect_rounds is None for c in of_mode),
                "valid": len(valid_of_mode),
                "refused": sum(c.outcome == "refused" for c in of_mode),
                "errors": sum(c.outcome == "ERROR" for c in of_mode),
                "mean_rounds": _mean([c.rounds for c in valid_of_mode]),
                "feedback_on_target": round(sum(fed) / len(fed), 3) if fed else None,
                "as_scripted": sum(c.as_scripted for c in of_mode),
            }
        )
    return {
        "planner_requests": len(cases),
        "planner_valid_share": round(
            len([c for c in repairable if c.outcome == "valid"]) / len(repairable), 4
        ),
        "planner_refused_share": round(len(refused) / len(cases), 4),
        "planner_clear_share": round((len(valid) + len(refused)) / len(cases), 4),
        "planner_mean_rounds": _mean([c.rounds for c in valid]),
        "planner_errors": sum(c.outcome == "ERROR" for c in cases),
        "planner_meant_repairable": len(repairable),
        "planner_meant_refused": len(cases) - len(repairable),
        "planner_as_scripted_share": round(sum(c.as_scripted for c in cases) / len(cases), 4),
        "planner_seed": seed,
        "planner_seconds": round(elapsed, 2),
        "planner_per_mode": per_mode,
        "planner_not_as_scripted": [
            {
                "request": c.n,
                "mode": c.mode,
                "expected": "refused" if c.expect_rounds is None else f"valid in {c.expect_rounds}",
                "got": f"{c.outcome} in {c.rounds}",
                "detail": c.detail,
            }
            for c in cases
            if not c.as_scripted
        ],
        "planner_feedback_misses": [
            {"request": c.n, "mode": c.mode, "first_problems": c.first_problems}
            for c in cases
            if c.feedback_on_target is False
        ],
        "planner_refusals": [c.detail for c in refused][:5],
    }


def _mean(values: list[int]) -> float | None:
    return round(statistics.fmean(values), 3) if values else None
