"""Part (a) of benchmarks/llm_layer.py: the scripted model server in its own process, the four
sides of the step benchmark (bare httpx, LLMAgent with SQLite or in memory, LangGraph's ReAct
agent), their interleaved timing, and the profile of the LLMAgent sides."""

from __future__ import annotations

import contextlib
import json
import pstats
import statistics
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
from _harness import _progress, frozen_gc, percentile, profile_calls, profile_report

from fleetmind import Fleet, TaskGraph, tool
from fleetmind.agents import AgentProfile, LLMAgent, ModelEndpoint, OpenAICompatibleClient
from fleetmind.orchestrator import SkillRouter, SubtaskProgressEvent, SubtaskStartedEvent
from fleetmind.testing import Reply, ScriptedLLMServer

SELF = str(Path(__file__).resolve().with_name("llm_layer.py"))
"""The script the model server process runs (``--serve-model``)."""
STEPS_PER_RUN = 10
MIDDLE_STEP = 5
START_TIMEOUT_S = 30.0
GOAL_VS_BARE = 1.2
GOAL_VS_REACT = 1.0
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
            if isinstance(event, SubtaskStartedEvent):
                started = event.at
            elif isinstance(event, SubtaskProgressEvent) and event.step is not None:
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
    with frozen_gc():
        for block, count in enumerate(per_block):
            for (_, side), result in order if block % 2 == 0 else order[::-1]:
                for _ in range(count):
                    result.runs.append(await side.run())
            _progress(f"step benchmark: block {block + 1}/{blocks} done")
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
            profiler, elapsed = await profile_calls(side.run, runs)
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
        print(profile_report(profiler, 15))
