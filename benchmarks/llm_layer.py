"""The LLM layer: what an LLMAgent step costs beside bare HTTP and LangGraph, and how the planner
copes with the answers real models give.

What is measured
    (a) Per-step overhead of an LLM agent. The model is a ``ScriptedLLMServer`` (fleetmind's
    OpenAI-compatible test server) run as a separate process (this script, ``--serve-model``),
    so that it does not share the GIL with the client being measured. It answers from the
    request alone: while the conversation holds fewer than 9 tool results (messages with role
    ``tool``) it asks for one call of the ``lookup`` tool (``{"key": "k<n>"}``), then it answers
    ``done``. One run is therefore 10 steps: 9 model calls that each call the tool once, and a
    final answer. Usage figures are the server's defaults (counted from the text).

    Four sides, all against that one server, in this process and event loop:

      - bare httpx: one ``httpx.AsyncClient`` (keep-alive, made once) POSTs a chat request to
        ``{url}/chat/completions`` and decodes the JSON answer; one request is one sample. The
        body is what an agent sends at its middle step (step 5): a system message, a user
        message, four assistant tool calls with their tool results, and a ``tools`` list with
        one function. Its size is printed beside the size of the request the LLMAgent and the
        ReAct agent actually sent at their step 5 (recorded once, before timing, by an httpx
        transport that counts bytes; the timed clients use the plain network transport).
      - LLMAgent step (SQLite checkpoints): an ``LLMAgent`` (a profile with one skill,
        ``OpenAICompatibleClient(ModelEndpoint(name="cloud", ..., max_retries=0))``, ``tools=
        [lookup]``, a plain synchronous ``@fleetmind.tool`` function returning a string) in a
        ``Fleet`` with the SQLite store in a temporary directory, which turns on the step loop's
        checkpoints in SQLite beside it (what users get by default from the CLI). One subtask
        per task, routed by skill (``SkillRouter``: routing happens once per task, never per
        step, and this keeps the semantic router's embedding model out of the process).
      - LLMAgent step (in-memory): the same agent in a ``Fleet(store=None)``: the task log and
        the loop's checkpoints (LangGraph's ``InMemorySaver``) stay in memory.
      - LangGraph ReAct: LangGraph's prebuilt agent, ``create_react_agent(ChatOpenAI(base_url=
        url, api_key="unused", model="m", max_retries=0), [lookup])`` with a ``langchain_core``
        ``@tool`` that is also a plain synchronous function, no checkpointer.

    A step's time, for the LLMAgent: the time between consecutive step records. Every step is
    recorded as a ``SubtaskProgress`` event carrying the step's record (a model call that asked
    for tools is recorded when its tool calls have run; the final answer when the model call
    returns); the engine stamps each event with its clock (``at``) when it handles the agent's
    report, before writing it to the store. Those stamps are used rather than the time the
    event reaches the benchmark's subscriber, which is woken through two queues and only when
    the agent's task yields (on this machine the two agree to within 0.05 ms at p50 and p99,
    but the stamps cannot carry the subscriber's own scheduling delay). The first step is
    measured from the ``SubtaskStarted`` event's stamp, so it includes what the agent does once
    per run (binding tools, opening the checkpointer, compiling the loop). For the ReAct agent:
    ``astream(stream_mode="updates")`` is read directly, with ``time.perf_counter()`` at each
    update: a step ends with each ``tools`` update and with the final ``agent`` update (the
    same boundaries as the LLMAgent's records); the first step is measured from the call to
    ``astream``. Also reported: the time each LLMAgent step spent in its model call (the
    record's ``latency_s``: ``OpenAICompatibleClient.complete``), the first step apart from the
    later ones, and the wall time of a whole run (submit to result, or the whole ``astream``).

    Each side gets warm-up runs first; then the timed runs go in blocks that alternate the
    sides (A B C D, D C B A, ...), so that noise from the shared machine falls on all alike.
    Objects that exist before timing are moved out of the cyclic garbage collector's reach
    (``gc.freeze()``); what the runs allocate is collected as usual. Ratios use p50s:
    ``step_vs_bare_httpx`` = LLMAgent step (SQLite) / bare httpx request (goal: within 1.2x),
    ``step_vs_langgraph_react`` = LLMAgent step (SQLite) / ReAct step (goal: below 1).

    (b) Planner robustness. A fleet of six ``@agent`` functions (different skills, most with
    required inputs; none ever runs) with ``SkillRouter`` and ``Planner(model)`` (3 rounds).
    Requests are generated from a seeded RNG; each has a valid plan built from one of four
    templates, and a script of the model's answers that starts with a failure mode real
    models produce:

      - read as they are: ``valid`` (a clean answer), ``prose`` (sentences around the JSON),
        ``code_fence`` (the JSON in a Markdown fence);
      - to be repaired: ``missing_field`` (a subtask without a description), ``unknown_agent``,
        ``unknown_skill``, ``unknown_ref`` (an input ``${nope}``), ``missing_input`` (the chosen
        agent's required input left out), ``cycle``, ``truncated`` (cut mid-JSON, with
        ``finish_reason="length"``), ``too_many`` (more subtasks than the planner's limit of
        20), ``not_json`` (prose only), ``json_list`` (the subtasks as a bare JSON list).

    A repairable request gets 1 or 2 bad answers, then the valid one; about 10% of them never
    get a valid one within the planner's 3 rounds and must be refused with ``PlanningError``.
    The script is served by an in-process ``ScriptedLLMServer`` (a responder that picks the
    answer by the request's text and the round, counted from the conversation). Each request's
    outcome: ``valid``, ``refused`` (``PlanningError`` with a one-line message), or ``ERROR``
    (any other exception, a refusal whose message is not one line, or a plan whose graph fails
    the checks: ``fleet.check(graph)`` routes every subtask and checks required inputs, and
    ``TaskGraph.from_log(graph.log)`` must rebuild the same subtasks and dependencies). Nothing
    is ever run: the fleet's store is checked to hold no task at the end. Besides, each outcome
    is compared with what the script meant (valid in round k+1 after k bad answers, or
    refused), and the first round's feedback is checked for naming the actual fault.

    Reported: ``planner_valid_share`` = valid / requests meant to be repairable,
    ``planner_refused_share`` = refused / all, ``planner_clear_share`` = (valid or refused with
    a one-line error) / all (goal: 100%), ``planner_mean_rounds`` over valid plans, and a table
    per failure mode.

Baselines
    Bare httpx to the same server (the floor of one model call over HTTP from Python), and
    LangGraph's own prebuilt ReAct agent on LangChain's ``ChatOpenAI``. Both run against the
    same server process, interleaved with the LLMAgent runs.

How to run
    .venv/bin/python benchmarks/llm_layer.py                 # full run, about 2-3 min
    .venv/bin/python benchmarks/llm_layer.py --quick         # a smoke run, about 10 s
    .venv/bin/python benchmarks/llm_layer.py --json out.json
    .venv/bin/python benchmarks/llm_layer.py --profile       # cProfile the LLMAgent sides

    The model server process is stopped at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import version as package_version
from itertools import pairwise
from pathlib import Path
from typing import Any, TypeVar

import httpx

from fleetmind import Fleet, Planner, TaskGraph, agent, tool
from fleetmind.agents import AgentProfile, LLMAgent, ModelEndpoint, OpenAICompatibleClient
from fleetmind.errors import PlanningError
from fleetmind.orchestrator import SkillRouter, SubtaskProgress, SubtaskStarted
from fleetmind.testing import Reply, ScriptedLLMServer

T = TypeVar("T")
SELF = str(Path(__file__).resolve())
STEPS_PER_RUN = 10
MIDDLE_STEP = 5
START_TIMEOUT_S = 30.0
GOAL_VS_BARE = 1.2
GOAL_VS_REACT = 1.0
DEFAULT_RUNS = 800
QUICK_RUNS = 20
TASK_TEXT = "Look up the keys k0 to k8 one after the other, then say done."

# ---------------------------------------------------------------------------------------------
# The model server (its own process)
# ---------------------------------------------------------------------------------------------


def serve_model(tool_calls: int) -> None:
    """Serve scripted chat completions (``tool_calls`` lookups, then ``done``) until stdin ends."""

    def respond(request: dict[str, Any]) -> Reply:
        if len(server.requests) > 1000:  # it keeps every request: keep its memory flat
            del server.requests[:500], server.headers[:500]
        results = sum(1 for m in request.get("messages") or () if m.get("role") == "tool")
        if results < tool_calls:
            return Reply.tool("lookup", {"key": f"k{results}"})
        return Reply.text("done")

    server = ScriptedLLMServer(responder=respond).start()
    print(f"listening on {server.url}", flush=True)
    # Serve until the benchmark closes our stdin, or ends in any way (even SIGKILL): its end
    # closes the pipe too, so this process never outlives it.
    sys.stdin.read()
    server.stop()


@contextlib.contextmanager
def model_server(tool_calls: int) -> Iterator[str]:
    """Start ``--serve-model`` in a child process; yield its base URL; always stop it.

    The child serves until its stdin closes: on the way out of this block, or when this
    process dies however it dies.
    """
    command = [sys.executable, SELF, "--serve-model", "--tool-calls", str(tool_calls)]
    process = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line: list[str] = []
        reader = threading.Thread(
            target=lambda: line.append(process.stdout.readline() if process.stdout else ""),
            daemon=True,
        )
        reader.start()
        reader.join(START_TIMEOUT_S)
        if not line or not line[0].startswith("listening on "):
            raise RuntimeError(f"the model server did not start (it said {line!r})")
        yield line[0].removeprefix("listening on ").strip()
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


# ---------------------------------------------------------------------------------------------
# (a) The four sides of the step benchmark
# ---------------------------------------------------------------------------------------------


@tool
def lookup(key: str) -> str:
    """Look a key up and return its value."""
    return f"value of {key}"


LOOKUP_SCHEMA = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look a key up and return its value.",
        "parameters": {
            "type": "object",
            "properties": {"key": {"type": "string"}},
            "required": ["key"],
        },
    },
}

PROFILE = AgentProfile(
    id="looker", description="Looks keys up in a table", skills=[{"name": "lookup-keys"}]
)


class CountingTransport(httpx.AsyncHTTPTransport):
    """The network transport, noting the size of every request body it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sizes.append(len(await request.aread()))
        return await super().handle_async_request(request)


def chat_body(tool_results: int) -> dict[str, Any]:
    """A chat request as an agent sends it after ``tool_results`` lookups."""
    messages: list[dict[str, Any]] = [
        {
            "role": "system",
            "content": "You are looker, an agent in a fleet. Looks keys up in a table\nUse the "
            "tools when they help; when you have the answer, reply with it in plain words and "
            "call no tool.\nIf the subtask cannot be done, call give_up with the reason.",
        },
        {"role": "user", "content": TASK_TEXT},
    ]
    for n in range(tool_results):
        call = f"call_{n}_0"
        arguments = json.dumps({"key": f"k{n}"})
        messages.append(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call,
                        "type": "function",
                        "function": {"name": "lookup", "arguments": arguments},
                    }
                ],
            }
        )
        messages.append({"role": "tool", "content": f"value of k{n}", "tool_call_id": call})
    return {"model": "m", "messages": messages, "tools": [LOOKUP_SCHEMA]}


@dataclass
class Run:
    """One run of one side: per-step seconds, and extra figures."""

    steps_s: list[float]
    total_s: float
    model_call_s: list[float] = field(default_factory=list)


class BareHttpx:
    """Bare httpx: ``STEPS_PER_RUN`` POSTs of the middle step's request, each timed."""

    label = "bare httpx request"

    def __init__(self, url: str) -> None:
        self.url = f"{url}/chat/completions"
        self.body = chat_body(MIDDLE_STEP - 1)
        self.http = httpx.AsyncClient(timeout=30.0)

    @property
    def body_bytes(self) -> int:
        return len(json.dumps(self.body, separators=(",", ":")))

    async def run(self) -> Run:
        steps = []
        first = time.perf_counter()
        for _ in range(STEPS_PER_RUN):
            start = time.perf_counter()
            response = await self.http.post(self.url, json=self.body)
            data = response.json()
            steps.append(time.perf_counter() - start)
            if response.status_code != 200 or not data["choices"][0]["message"]["tool_calls"]:
                raise AssertionError(f"the bare request got {response.status_code}: {data}")
        return Run(steps, time.perf_counter() - first)

    async def aclose(self) -> None:
        await self.http.aclose()


def llm_agent(url: str, transport: httpx.AsyncBaseTransport | None = None) -> LLMAgent:
    endpoint = ModelEndpoint(name="cloud", base_url=url, model="m", max_retries=0)
    model = OpenAICompatibleClient(endpoint, transport=transport)
    return LLMAgent(PROFILE, model=model, tools=[lookup])


def lookup_graph() -> TaskGraph:
    graph = TaskGraph("lookups")
    graph.add_subtask("look", description=TASK_TEXT, skill="lookup-keys")
    return graph


class FleetmindSide:
    """An LLMAgent in a fleet: one subtask per task, its steps timed from the event stream."""

    def __init__(self, label: str, url: str, store: Path | None) -> None:
        self.label = label
        self.agent = llm_agent(url)
        self.fleet = Fleet([self.agent], router=SkillRouter(), store=store)
        self.graph = lookup_graph()
        self._stack = contextlib.AsyncExitStack()

    async def start(self) -> None:
        await self._stack.enter_async_context(self.fleet)

    async def run(self) -> Run:
        start = time.perf_counter()
        handle = self.fleet.submit(self.graph)
        started: float | None = None
        marks: list[float] = []
        model_calls: list[float] = []
        outcomes: list[str] = []
        async for event in handle.events():
            if isinstance(event, SubtaskStarted):
                started = event.at
            elif isinstance(event, SubtaskProgress) and event.step is not None:
                marks.append(event.at)
                model_calls.append(float(event.step["latency_s"]))
                outcomes.append(str(event.step["outcome"]))
        result = await handle.result()
        total = time.perf_counter() - start
        expected = ["tool_calls"] * (STEPS_PER_RUN - 1) + ["answer"]
        if not result.ok or result.outputs["look"] != "done" or outcomes != expected:
            raise AssertionError(f"{self.label}: {result.status}, {result.errors}, {outcomes}")
        assert started is not None
        return Run([b - a for a, b in pairwise([started, *marks])], total, model_calls)

    async def aclose(self) -> None:
        await self._stack.aclose()
        for model in self.agent.models.values():
            await model.aclose()


class ReactSide:
    """LangGraph's prebuilt ReAct agent, its steps timed from ``astream`` updates."""

    label = "LangGraph ReAct step"

    def __init__(self, url: str, http: httpx.AsyncClient | None = None) -> None:
        from langchain_core.tools import tool as lc_tool
        from langchain_openai import ChatOpenAI
        from langgraph.prebuilt import create_react_agent

        @lc_tool("lookup")
        def lookup_tool(key: str) -> str:
            """Look a key up and return its value."""
            return f"value of {key}"

        options: dict[str, Any] = {"http_async_client": http} if http is not None else {}
        model = ChatOpenAI(base_url=url, api_key="unused", model="m", max_retries=0, **options)
        with warnings.catch_warnings():  # moved to langchain.agents in LangGraph 1.0
            warnings.simplefilter("ignore")
            self.react = create_react_agent(model, [lookup_tool])

    async def run(self) -> Run:
        marks: list[float] = []
        answer = None
        start = time.perf_counter()
        inputs = {"messages": [("user", TASK_TEXT)]}
        async for update in self.react.astream(inputs, stream_mode="updates"):
            now = time.perf_counter()
            if "tools" in update:
                marks.append(now)
            elif "agent" in update:
                message = update["agent"]["messages"][-1]
                if not message.tool_calls:
                    marks.append(now)
                    answer = message.content
        total = time.perf_counter() - start
        if answer != "done" or len(marks) != STEPS_PER_RUN:
            raise AssertionError(f"the ReAct agent answered {answer!r} after {len(marks)} steps")
        return Run([b - a for a, b in pairwise([start, *marks])], total)

    async def aclose(self) -> None:
        return None


async def request_sizes(url: str) -> dict[str, int]:
    """Bytes of the step-5 request each agent sends (one run each, before timing)."""
    transport = CountingTransport()
    probe = llm_agent(url, transport)
    fleet = Fleet([probe], router=SkillRouter())
    result = await fleet.run(lookup_graph())
    assert result.ok, result.errors
    for model in probe.models.values():
        await model.aclose()
    react_transport = CountingTransport()
    async with httpx.AsyncClient(transport=react_transport) as http:
        await ReactSide(url, http).run()
    return {
        "llm_agent": transport.sizes[MIDDLE_STEP - 1],
        "langgraph_react": react_transport.sizes[MIDDLE_STEP - 1],
    }


# ---------------------------------------------------------------------------------------------
# (a) Timing
# ---------------------------------------------------------------------------------------------


def percentile(samples: list[float], q: int) -> float:
    """The q-th percentile (inclusive method)."""
    if len(samples) == 1:
        return samples[0]
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1]


@dataclass
class SideResult:
    """Every timed run of one side."""

    key: str
    label: str
    runs: list[Run] = field(default_factory=list)

    @property
    def steps_s(self) -> list[float]:
        return [s for run in self.runs for s in run.steps_s]

    def figures(self) -> dict[str, Any]:
        steps = self.steps_s
        later = [s for run in self.runs for s in run.steps_s[1:]]
        totals = [run.total_s for run in self.runs]
        out: dict[str, Any] = {
            "label": self.label,
            "ms_p50": round(percentile(steps, 50) * 1e3, 3),
            "ms_p99": round(percentile(steps, 99) * 1e3, 3),
            "ms_mean": round(statistics.fmean(steps) * 1e3, 3),
            "first_step_ms_p50": round(percentile([r.steps_s[0] for r in self.runs], 50) * 1e3, 3),
            "later_steps_ms_p50": round(percentile(later, 50) * 1e3, 3),
            "run_ms_p50": round(percentile(totals, 50) * 1e3, 3),
            "samples": len(steps),
            "runs": len(self.runs),
        }
        calls = [c for run in self.runs for c in run.model_call_s]
        if calls:
            out["model_call_ms_p50"] = round(percentile(calls, 50) * 1e3, 3)
        return out


Side = BareHttpx | FleetmindSide | ReactSide


async def measure_steps(
    sides: list[tuple[str, Side]], *, runs: int, warmup: int
) -> list[SideResult]:
    """Warm every side up, then time ``runs`` runs of each in alternating blocks."""
    results = [SideResult(key, side.label) for key, side in sides]
    for _ in range(warmup):
        for _, side in sides:
            await side.run()
    blocks = max(1, min(10, runs))
    per_block = [runs // blocks + (1 if b < runs % blocks else 0) for b in range(blocks)]
    order = list(zip(sides, results, strict=True))
    gc.collect()
    gc.freeze()
    try:
        for block, count in enumerate(per_block):
            for (_, side), result in order if block % 2 == 0 else order[::-1]:
                for _ in range(count):
                    result.runs.append(await side.run())
            _progress(f"step benchmark: block {block + 1}/{blocks} done")
    finally:
        gc.unfreeze()
    return results


@contextlib.asynccontextmanager
async def step_sides(url: str, tmp: Path) -> AsyncIterator[list[tuple[str, Side]]]:
    """The four sides, ready to run; closed afterwards."""
    bare = BareHttpx(url)
    sqlite = FleetmindSide("LLMAgent step (SQLite checkpoints)", url, tmp / "tasks.db")
    memory = FleetmindSide("LLMAgent step (in-memory)", url, None)
    react = ReactSide(url)
    try:
        await sqlite.start()
        await memory.start()
        yield [("bare_httpx", bare), ("step", sqlite), ("step_in_memory", memory), ("react", react)]
    finally:
        for side in (react, memory, sqlite, bare):
            await side.aclose()


async def bench_steps(url: str, tmp: Path, runs: int, warmup: int) -> dict[str, Any]:
    sizes = await request_sizes(url)
    async with step_sides(url, tmp) as sides:
        sizes["bare_httpx"] = next(s for k, s in sides if isinstance(s, BareHttpx)).body_bytes
        results = await measure_steps(sides, runs=runs, warmup=warmup)
    figures = {r.key: r.figures() for r in results}
    step, bare, react = figures["step"], figures["bare_httpx"], figures["react"]
    vs_bare = step["ms_p50"] / bare["ms_p50"]
    vs_react = step["ms_p50"] / react["ms_p50"]
    return {
        "step_overhead_ms_p50": step["ms_p50"],
        "step_overhead_ms_p99": step["ms_p99"],
        "step_in_memory_ms_p50": figures["step_in_memory"]["ms_p50"],
        "step_in_memory_ms_p99": figures["step_in_memory"]["ms_p99"],
        "bare_httpx_ms_p50": bare["ms_p50"],
        "bare_httpx_ms_p99": bare["ms_p99"],
        "langgraph_react_ms_p50": react["ms_p50"],
        "langgraph_react_ms_p99": react["ms_p99"],
        "step_vs_bare_httpx": round(vs_bare, 2),
        "step_vs_langgraph_react": round(vs_react, 2),
        "goal_vs_bare_met": vs_bare <= GOAL_VS_BARE,
        "goal_vs_react_met": vs_react < GOAL_VS_REACT,
        "step_sides": figures,
        "step_request_bytes": sizes,
        "steps_per_run": STEPS_PER_RUN,
    }


def _module_of(where: tuple[str, int, str]) -> str:
    """A profiler entry's package (site-packages), fleetmind module, or stdlib module."""
    path, _, name = where
    if path == "~":
        return "(waiting for I/O: epoll)" if "epoll" in name else "(C built-ins)"
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0]
    if "/fleetmind/" in path:
        return "fleetmind." + path.rsplit("/fleetmind/", 1)[1].removesuffix(".py").replace("/", ".")
    if "/lib/python3" in path:  # the standard library: its package, or its module
        parts = path.split("/lib/python3", 1)[1].split("/")[1:]
        return parts[0].removesuffix(".py")
    return path


async def profile_steps(url: str, tmp: Path, runs: int) -> None:
    """cProfile both LLMAgent sides; print self time per step by module, and the top functions.

    cProfile sees this thread only: what aiosqlite's thread does for the checkpointer shows as
    time waiting in epoll. Coroutines count a call per resumption, so call counts run high.
    """
    for label, store in (("SQLite checkpoints", tmp / "profile.db"), ("in-memory", None)):
        side = FleetmindSide(f"LLMAgent step ({label})", url, store)
        await side.start()
        try:
            for _ in range(3):
                await side.run()
            profiler = cProfile.Profile()
            start = time.perf_counter()
            profiler.enable()
            for _ in range(runs):
                await side.run()
            profiler.disable()
            elapsed = time.perf_counter() - start
        finally:
            await side.aclose()
        steps = runs * STEPS_PER_RUN
        stats = pstats.Stats(profiler)
        by_module: dict[str, float] = {}
        for where, (_, _, own, _, _) in stats.stats.items():  # type: ignore[attr-defined]
            by_module[_module_of(where)] = by_module.get(_module_of(where), 0.0) + own
        print(
            f"\n{side.label}: {runs} runs, {elapsed / steps * 1e3:.2f} ms per step under "
            "cProfile; self time per step by module:"
        )
        for module, own in sorted(by_module.items(), key=lambda kv: -kv[1])[:15]:
            print(f"  {own / steps * 1e3:7.3f} ms  {module}")
        own_code = sum(v for k, v in by_module.items() if k.startswith("fleetmind."))
        print(f"  {own_code / steps * 1e3:7.3f} ms  (fleetmind, all its modules together)")
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(15)
        print(out.getvalue())


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


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def _progress(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for i, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  " + "  ".join(cells).rstrip())
        if i == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    return lines


def _goal(ok: bool) -> str:
    return "goal met" if ok else "goal NOT met"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render(d: dict[str, Any]) -> str:
    """The figures as plain, aligned text tables."""
    machine = d["machine"]
    sides = d["step_sides"]
    sizes = d["step_request_bytes"]
    bare_p50 = sides["bare_httpx"]["ms_p50"]
    lines = [
        "The LLM layer: LLMAgent steps beside bare httpx and LangGraph's ReAct agent; planner "
        "repair",
        f"python {machine['python']}, langgraph {machine['langgraph']}, langchain-openai "
        f"{machine['langchain_openai']}, httpx {machine['httpx']}, {machine['cpu_count']} "
        f"CPU(s), load average at start {machine['load_average']}",
        "",
        f"(a) ms per step, lower is better: {d['steps_per_run']} steps per run (9 tool calls, "
        "then the answer); scripted model server in its own process",
    ]
    rows: list[tuple[str, ...]] = [
        ("side", "p50", "p99", "mean", "step 1 p50", "steps 2+ p50", "run p50", "samples",
         "vs bare p50", "vs ReAct p50")
    ]  # fmt: skip
    for key in ("bare_httpx", "step", "step_in_memory", "react"):
        s = sides[key]
        rows.append(
            (
                s["label"],
                f"{s['ms_p50']:.2f}",
                f"{s['ms_p99']:.2f}",
                f"{s['ms_mean']:.2f}",
                f"{s['first_step_ms_p50']:.2f}",
                f"{s['later_steps_ms_p50']:.2f}",
                f"{s['run_ms_p50']:.1f}",
                str(s["samples"]),
                f"{s['ms_p50'] / bare_p50:.2f}x",
                f"{s['ms_p50'] / sides['react']['ms_p50']:.2f}x",
            )
        )
    lines += _table(rows)
    lines += [
        "",
        f"  step_vs_bare_httpx = {d['step_vs_bare_httpx']:.2f} (goal <= {GOAL_VS_BARE}): "
        f"{_goal(d['goal_vs_bare_met'])}",
        f"  step_vs_langgraph_react = {d['step_vs_langgraph_react']:.2f} (goal < "
        f"{GOAL_VS_REACT:g}): {_goal(d['goal_vs_react_met'])}",
        "  the model call inside an LLMAgent step (OpenAICompatibleClient.complete): "
        f"{sides['step']['model_call_ms_p50']:.2f} ms p50 (SQLite side), "
        f"{sides['step_in_memory']['model_call_ms_p50']:.2f} ms (in-memory side)",
        f"  request body at step {MIDDLE_STEP}: bare httpx {sizes['bare_httpx']} B, LLMAgent "
        f"{sizes['llm_agent']} B, ReAct {sizes['langgraph_react']} B",
        "  LLMAgent: engine event stamps between step records (step 1 from SubtaskStarted); "
        "ReAct: perf_counter at astream updates; bare: one request; run = submit to result",
        "",
        f"(b) Planner robustness: {d['planner_requests']} requests (seed {d['planner_seed']}), "
        f"{d['planner_meant_refused']} scripted never to become valid in {MAX_ROUNDS} rounds; "
        f"{d['planner_seconds']:.1f} s",
        f"  valid after repair: {_share(d['planner_valid_share'])} of the "
        f"{d['planner_meant_repairable']} meant to be repairable; refused: "
        f"{_share(d['planner_refused_share'])} of all; errors: {d['planner_errors']}",
        f"  valid, or refused with a one-line error: {_share(d['planner_clear_share'])} "
        f"(goal 100%): {_goal(d['planner_clear_share'] >= 1.0)}",
        f"  mean rounds over valid plans: {_num(d['planner_mean_rounds'])}; outcome and round "
        f"as scripted: {_share(d['planner_as_scripted_share'])}",
        "",
    ]
    rows = [
        ("failure mode", "requests", "never valid", "valid", "refused", "errors", "mean rounds",
         "feedback names it", "as scripted")
    ]  # fmt: skip
    for m in d["planner_per_mode"]:
        rows.append(
            (
                m["mode"],
                str(m["requests"]),
                str(m["meant_refused"]),
                str(m["valid"]),
                str(m["refused"]),
                str(m["errors"]),
                _num(m["mean_rounds"]),
                _share(m["feedback_on_target"]),
                f"{m['as_scripted']}/{m['requests']}",
            )
        )
    lines += _table(rows)
    lines.append(
        "  feedback names it: the first round's problems name the fault the answer had "
        "(read-as-is modes have none)"
    )
    for title, items, show in (
        ("not as scripted", d["planner_not_as_scripted"], lambda u: f"expected {u['expected']}, "
         f"got {u['got']}: {u['detail']}"),
        ("first-round feedback that misses the fault", d["planner_feedback_misses"],
         lambda u: "; ".join(u["first_problems"])),
    ):  # fmt: skip
        if items:
            lines.append(f"  {title}: {len(items)} request(s); the first 3:")
            lines += [f"    #{u['request']} {u['mode']}: {show(u)[:160]}" for u in items[:3]]
    if d["planner_refusals"]:
        lines.append(f"  a refusal reads: {d['planner_refusals'][0][:160]}")
    lines.append(f"\nwhole run: {d['elapsed_s']:.0f} s")
    return "\n".join(lines)


def machine_info() -> dict[str, Any]:
    """Where the figures were taken."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "fleetmind": package_version("fleetmind"),
        "httpx": package_version("httpx"),
        "langgraph": package_version("langgraph"),
        "langchain_openai": package_version("langchain-openai"),
        "openai": package_version("openai"),
    }


async def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Both parts; prints the tables and returns the JSON document."""
    machine = machine_info()
    runs = args.runs if args.runs is not None else (QUICK_RUNS if args.quick else DEFAULT_RUNS)
    warmup = 1 if args.quick else 3
    start = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="fleetmind-bench-llm-") as tmp,
        model_server(STEPS_PER_RUN - 1) as url,
    ):
        _progress(f"model server at {url}; {runs} timed runs per side")
        steps = await bench_steps(url, Path(tmp), runs, warmup)
    _progress("planner robustness")
    planner = await bench_planner(args.plan_requests, args.seed)
    document: dict[str, Any] = {
        **steps,
        **planner,
        "quick": args.quick,
        "elapsed_s": round(time.monotonic() - start, 1),
        "machine": machine,
    }
    print(render(document))
    return document


async def until_terminated(work: Awaitable[T]) -> T:
    """Run ``work``; SIGTERM cancels it as Ctrl-C does, so every ``finally`` runs."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await work


async def profile(args: argparse.Namespace) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="fleetmind-bench-llm-") as tmp,
        model_server(STEPS_PER_RUN - 1) as url,
    ):
        await profile_steps(url, Path(tmp), args.runs or 50)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write figures as JSON")
    parser.add_argument("--quick", action="store_true", help="few runs (a smoke run)")
    parser.add_argument(
        "--runs",
        type=int,
        help=f"timed runs per side in (a) (default {DEFAULT_RUNS}; quick {QUICK_RUNS})",
    )
    parser.add_argument(
        "--plan-requests", type=int, default=130, help="planning requests in (b) (default 130)"
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of (b)'s requests")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile the LLMAgent side of (a) instead"
    )
    parser.add_argument("--serve-model", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tool-calls", type=int, default=STEPS_PER_RUN - 1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if (args.runs is not None and args.runs < 1) or args.plan_requests < len(MODES):
        parser.error(f"--runs must be at least 1 and --plan-requests at least {len(MODES)}")
    if args.serve_model:
        serve_model(args.tool_calls)
        return
    try:
        if args.profile:
            asyncio.run(until_terminated(profile(args)))
            return
        document = asyncio.run(until_terminated(benchmark(args)))
    except asyncio.CancelledError:
        raise SystemExit("stopped (SIGTERM or Ctrl-C); the model server is stopped") from None
    if args.json is not None:
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
