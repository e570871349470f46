"""Scheduling overhead of fleetmind's engine, beside LangGraph, in one run.

What is measured
    Every subtask runs a no-op agent: an async function that records that it ran and returns
    ``None``. With nothing to do, the wall time of a run is the orchestrator's own cost: routing,
    the graph's fold, the store, events, and starting asyncio tasks. The figure reported is

        microseconds per subtask = wall time of the run / number of subtasks in the graph

    timed from the call that submits the graph (``await fleet.run(graph)``) to its result. Building
    the graph (``TaskGraph``, and LangGraph's ``StateGraph.compile()``) happens before the clock
    starts and is reported on its own. fleetmind's run does include what ``Fleet.run`` does on
    submit: copying the graph and writing its structure to the store.

    Shapes:
      - ``chain-1000``: 1,000 subtasks, each depending on the one before.
      - ``fanout-10000``: a source, 10,000 parallel subtasks, and a sink that waits for all of
        them (10,002 subtasks in the graph).
      - ``layered-10000``: a random layered DAG, 50 layers of 200 subtasks; every subtask after
        the first layer depends on 1-3 random subtasks of the layer before (seeded RNG).

    fleetmind runs twice per shape: with its default in-memory store (``Fleet(store=None)``) and
    with the SQLite store on a temporary file (the CLI's embedded default). Agents allow 100,000
    concurrent calls, so agent limits never throttle.

    Makespan: a 40-subtask layered DAG (8 layers of 5) whose agents ``await asyncio.sleep(d)``
    for seeded durations of 20-100 ms, run by a fleet with the in-memory store. The ratio of
    fleetmind's makespan to the critical path (``TaskGraph.critical_path``) shows what scheduling
    adds to real work: 1.0 is the physical limit. The same DAG run by a minimal hand-written
    asyncio scheduler (every subtask awaits its dependencies' events, then sleeps) gives the
    floor that asyncio's timers alone allow.

The baseline
    LangGraph (``langgraph`` 1.x) in the same process, with the same topology: one node per
    subtask, ``add_edge(a, b)`` for a single dependency and ``add_edge([a, b, c], d)`` (a join that
    waits for all) when a subtask has several, so that each node runs exactly once, as in a DAG.
    The state is a one-field ``TypedDict`` (``Annotated[int, operator.add]``) that no node
    writes. The graph is compiled before the clock starts; ``await app.ainvoke(...)`` is timed. A
    LangGraph run that fails or takes over 120 s is reported as null with the reason.

    Both frameworks' no-op increments a counter keyed by the node's id; after each run the
    benchmark asserts that every node ran exactly once.

Repeats
    Each measurement is repeated (3 times by default, fewer once one measurement has spent 30 s)
    and the best (minimum) time is reported: on a shared machine noise only ever adds time. The
    cyclic garbage collector stays on for what a run allocates (that is part of its real cost),
    but before each run, for both frameworks alike, it is emptied and everything that already
    exists — imports, graph definitions, the other framework's objects — is moved out of its
    reach with ``gc.freeze()``, so that a full collection walks the run's objects and not the
    whole benchmark process. Every sample is kept in the JSON output.

How to run
    .venv/bin/python benchmarks/orchestrator_overhead.py                # full run, about 2 min
    .venv/bin/python benchmarks/orchestrator_overhead.py --quick        # small shapes, one run
    .venv/bin/python benchmarks/orchestrator_overhead.py --json out.json
    .venv/bin/python benchmarks/orchestrator_overhead.py --profile      # cProfile, fanout shape
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import operator
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Annotated, Any, TypedDict

from _harness import (
    _progress,
    _table,
    benchmark_parser,
    frozen_gc,
    machine_base,
    profile_report,
    write_json,
)
from langgraph.graph import END, START, StateGraph

from fleetmind import Fleet, SQLiteStore, SubtaskContext, TaskGraph, agent

LANGGRAPH_TIMEOUT_S = 120.0
REPEAT_BUDGET_S = 30.0
"""Stop repeating a measurement once its runs have taken this long together."""

Deps = dict[str, list[str]]
"""A DAG as subtask id -> ids it depends on, in an order where dependencies come first."""

# Which node ran how often: filled by both frameworks' no-op, checked after every run.
_CALLS: dict[str, int] = {}


# ---------------------------------------------------------------------------------------------
# Shapes
# ---------------------------------------------------------------------------------------------


def chain(n: int) -> Deps:
    """``n`` subtasks, each depending on the one before."""
    return {f"c{i}": [f"c{i - 1}"] if i else [] for i in range(n)}


def fanout(width: int) -> Deps:
    """A source, ``width`` parallel subtasks, and a sink that waits for all of them."""
    middle = [f"m{i}" for i in range(width)]
    return {"src": [], **{sid: ["src"] for sid in middle}, "sink": middle}


def layered(layers: int, width: int, rng: random.Random) -> Deps:
    """``layers`` layers of ``width``; each subtask depends on 1-3 of the previous layer."""
    deps: Deps = {}
    for layer in range(layers):
        for j in range(width):
            preds = rng.sample(range(width), rng.randint(1, min(3, width))) if layer else []
            deps[f"l{layer}.{j}"] = [f"l{layer - 1}.{k}" for k in sorted(preds)]
    return deps


# ---------------------------------------------------------------------------------------------
# The two frameworks
# ---------------------------------------------------------------------------------------------


@agent(id="noop", max_concurrency=100_000)
async def noop(ctx: SubtaskContext) -> None:
    """Record that the subtask ran; nothing else."""
    sid = ctx.subtask.id
    _CALLS[sid] = _CALLS.get(sid, 0) + 1


@agent(id="sleeper", max_concurrency=100_000)
async def sleeper(duration_s: float) -> None:
    """Stand-in for real work of a known duration."""
    await asyncio.sleep(duration_s)


def fleetmind_graph(deps: Deps, name: str) -> TaskGraph:
    """The shape as a TaskGraph of no-op subtasks."""
    graph = TaskGraph(name)
    for sid, preds in deps.items():
        graph.add_subtask(sid, agent="noop", depends_on=preds)
    return graph


class _State(TypedDict):
    count: Annotated[int, operator.add]


def _langgraph_node(name: str) -> Callable[[_State], Awaitable[None]]:
    async def node(state: _State) -> None:
        _CALLS[name] = _CALLS.get(name, 0) + 1

    return node


def langgraph_app(deps: Deps) -> Any:
    """The shape as a compiled LangGraph: one node per subtask, joins for several dependencies."""
    builder = StateGraph(_State)
    has_dependents: set[str] = set()
    for sid, preds in deps.items():
        builder.add_node(sid, _langgraph_node(sid))
        if not preds:
            builder.add_edge(START, sid)
        elif len(preds) == 1:
            builder.add_edge(preds[0], sid)
        else:
            # A join: the node runs once, after every one of its dependencies has run.
            builder.add_edge(preds, sid)
        has_dependents.update(preds)
    for sid in deps:
        if sid not in has_dependents:
            builder.add_edge(sid, END)
    return builder.compile()


def _check_exactly_once(deps: Deps, framework: str) -> None:
    wrong = {sid: _CALLS.get(sid, 0) for sid in deps if _CALLS.get(sid, 0) != 1}
    extra = _CALLS.keys() - deps.keys()
    if wrong or extra or sum(_CALLS.values()) != len(deps):
        sample = dict(list(wrong.items())[:5])
        raise AssertionError(
            f"{framework}: {len(wrong)} node(s) did not run exactly once (e.g. {sample}), "
            f"{len(extra)} unknown node(s)"
        )


async def run_fleetmind(graph: TaskGraph, deps: Deps, sqlite_dir: Path | None) -> float:
    """One timed run; a fresh fleet (and store file) each time, the same graph definition."""
    store = None if sqlite_dir is None else sqlite_dir / f"run-{time.monotonic_ns()}.db"
    fleet = Fleet([noop], store=store)
    _CALLS.clear()
    try:
        with frozen_gc():
            start = time.perf_counter()
            # Fleet.run copies the graph, so one definition serves every run.
            result = await fleet.run(graph)
            elapsed = time.perf_counter() - start
    finally:
        if isinstance(fleet.store, SQLiteStore):
            fleet.store.close()
    if not result.ok:
        raise AssertionError(f"fleetmind run ended {result.status}: {result.errors}")
    _check_exactly_once(deps, "fleetmind")
    return elapsed


async def run_langgraph(app: Any, deps: Deps) -> float:
    """One timed ``ainvoke`` of a compiled graph."""
    _CALLS.clear()
    with frozen_gc():
        start = time.perf_counter()
        # A chain takes one superstep per node: the default recursion limit (25) would stop it.
        config = {"recursion_limit": len(deps) + 10}
        await asyncio.wait_for(app.ainvoke({"count": 0}, config), LANGGRAPH_TIMEOUT_S)
        elapsed = time.perf_counter() - start
    _check_exactly_once(deps, "langgraph")
    return elapsed


async def repeat(measure: Callable[[], Awaitable[float]], times: int) -> list[float]:
    """Up to ``times`` samples, fewer once they have taken ``REPEAT_BUDGET_S`` together."""
    samples: list[float] = []
    while len(samples) < times and sum(samples) < REPEAT_BUDGET_S:
        samples.append(await measure())
    return samples


# ---------------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------------


@dataclass
class ShapeResult:
    """The figures of one shape."""

    name: str
    subtasks: int
    fleetmind_runs_s: list[float] = field(default_factory=list)
    fleetmind_sqlite_runs_s: list[float] = field(default_factory=list)
    langgraph_runs_s: list[float] = field(default_factory=list)
    langgraph_note: str | None = None
    fleetmind_build_s: float = 0.0
    langgraph_build_s: float | None = None

    def us_per_subtask(self, runs: list[float]) -> float | None:
        return min(runs) / self.subtasks * 1e6 if runs else None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "subtasks": self.subtasks,
            "fleetmind_us_per_subtask": self.us_per_subtask(self.fleetmind_runs_s),
            "fleetmind_sqlite_us_per_subtask": self.us_per_subtask(self.fleetmind_sqlite_runs_s),
            "langgraph_us_per_subtask": self.us_per_subtask(self.langgraph_runs_s),
            "langgraph_note": self.langgraph_note,
            "fleetmind_runs_s": self.fleetmind_runs_s,
            "fleetmind_sqlite_runs_s": self.fleetmind_sqlite_runs_s,
            "langgraph_runs_s": self.langgraph_runs_s,
            "fleetmind_build_s": self.fleetmind_build_s,
            "langgraph_compile_s": self.langgraph_build_s,
        }


async def measure_shape(name: str, deps: Deps, times: int, sqlite_dir: Path) -> ShapeResult:
    """fleetmind (memory, SQLite) and LangGraph on one shape."""
    result = ShapeResult(name, len(deps))
    await _measure_fleetmind(result, deps, times, sqlite_dir)
    # fleetmind's graph is gone by now, so it does not weigh on LangGraph's garbage collections.
    _progress(f"{name}: LangGraph")
    try:
        start = time.perf_counter()
        app = langgraph_app(deps)
        result.langgraph_build_s = time.perf_counter() - start
        result.langgraph_runs_s = await repeat(lambda: run_langgraph(app, deps), times)
    except TimeoutError:
        result.langgraph_note = f"did not finish within {LANGGRAPH_TIMEOUT_S:.0f} s"
    except Exception as exc:  # any LangGraph failure is a result to report, not a crash
        result.langgraph_note = f"failed: {type(exc).__name__}: {exc}"[:200]
    return result


async def _measure_fleetmind(result: ShapeResult, deps: Deps, times: int, sqlite_dir: Path) -> None:
    _progress(f"{result.name}: building")
    start = time.perf_counter()
    graph = fleetmind_graph(deps, result.name)
    result.fleetmind_build_s = time.perf_counter() - start
    _progress(f"{result.name}: fleetmind, memory store")
    result.fleetmind_runs_s = await repeat(lambda: run_fleetmind(graph, deps, None), times)
    _progress(f"{result.name}: fleetmind, SQLite store")
    result.fleetmind_sqlite_runs_s = await repeat(
        lambda: run_fleetmind(graph, deps, sqlite_dir), times
    )


@dataclass
class MakespanResult:
    """fleetmind's makespan on sleeping agents against the critical path."""

    subtasks: int
    critical_path_s: float
    makespans_s: list[float]
    asyncio_floor_s: list[float]

    @property
    def ratio(self) -> float:
        return min(self.makespans_s) / self.critical_path_s

    @property
    def floor_ratio(self) -> float:
        return min(self.asyncio_floor_s) / self.critical_path_s

    def to_json(self) -> dict[str, Any]:
        return {
            "subtasks": self.subtasks,
            "critical_path_s": self.critical_path_s,
            "makespans_s": self.makespans_s,
            "makespan_over_critical_path_median": statistics.median(self.makespans_s)
            / self.critical_path_s,
            "asyncio_floor_s": self.asyncio_floor_s,
            "asyncio_floor_over_critical_path": self.floor_ratio,
        }


async def _asyncio_floor(deps: Deps, durations: dict[str, float]) -> float:
    """The same DAG with no orchestrator: each subtask awaits its dependencies, then sleeps."""
    done = {sid: asyncio.Event() for sid in deps}

    async def run(sid: str) -> None:
        for pred in deps[sid]:
            await done[pred].wait()
        await asyncio.sleep(durations[sid])
        done[sid].set()

    gc.collect()
    start = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for sid in deps:
            tg.create_task(run(sid))
    return time.perf_counter() - start


async def measure_makespan(times: int, seed: int) -> MakespanResult:
    """A 40-subtask layered DAG (8 layers of 5) of agents that sleep 20-100 ms."""
    rng = random.Random(seed)
    deps = layered(8, 5, rng)
    durations = {sid: round(rng.uniform(0.020, 0.100), 4) for sid in deps}
    graph = TaskGraph("makespan")
    for sid, preds in deps.items():
        graph.add_subtask(
            sid, agent="sleeper", inputs={"duration_s": durations[sid]}, depends_on=preds
        )
    critical_path_s, _ = graph.critical_path(durations)

    async def once() -> float:
        fleet = Fleet([sleeper])
        gc.collect()
        start = time.perf_counter()
        result = await fleet.run(graph)
        elapsed = time.perf_counter() - start
        if not result.ok:
            raise AssertionError(f"makespan run ended {result.status}: {result.errors}")
        return elapsed

    _progress("makespan: fleetmind")
    makespans = [await once() for _ in range(times)]
    _progress("makespan: asyncio floor")
    floor = [await _asyncio_floor(deps, durations) for _ in range(times)]
    return MakespanResult(len(deps), critical_path_s, makespans, floor)


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------


def _fmt_us(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f}"


def _speedup(langgraph: float | None, fleetmind: float | None) -> str:
    if langgraph is None or not fleetmind:
        return "n/a"
    return f"{langgraph / fleetmind:.1f}x"


def render(
    shapes: list[ShapeResult], makespan: MakespanResult, times: int, machine: dict[str, Any]
) -> str:
    """The results as a plain, aligned text table."""
    header = (
        "shape",
        "subtasks",
        "fleetmind µs/subtask (memory)",
        "fleetmind µs/subtask (SQLite)",
        "LangGraph µs/subtask",
        "speed-up vs LangGraph (memory / SQLite)",
    )
    rows = [header]
    notes: list[str] = []
    for shape in shapes:
        mem = shape.us_per_subtask(shape.fleetmind_runs_s)
        sql = shape.us_per_subtask(shape.fleetmind_sqlite_runs_s)
        lang = shape.us_per_subtask(shape.langgraph_runs_s)
        lang_text = _fmt_us(lang)
        if shape.langgraph_note:
            lang_text = f"null ({len(notes) + 1})"
            notes.append(f"({len(notes) + 1}) LangGraph on {shape.name}: {shape.langgraph_note}")
        rows.append(
            (
                shape.name,
                f"{shape.subtasks:,}",
                _fmt_us(mem),
                _fmt_us(sql),
                lang_text,
                f"{_speedup(lang, mem)} / {_speedup(lang, sql)}",
            )
        )
    lines = [
        "Orchestrator overhead: wall time per subtask with no-op agents, in µs, "
        f"best of up to {times} run(s) (lower is better)",
        "memory = Fleet(store=None) (JSON: fleetmind_us_per_subtask); SQLite = SQLiteStore on a "
        "temp file, the CLI's default (JSON: fleetmind_sqlite_us_per_subtask)",
        f"python {machine['python']}, {machine['cpu_count']} CPU(s), "
        f"langgraph {machine['langgraph']}, load average at start {machine['load_average']}",
        "",
    ]
    lines += _table(rows)
    lines += ["", *notes] if notes else []
    lines.append("")
    lines.append("Graph construction, not in the figures above (seconds, fleetmind / LangGraph):")
    for shape in shapes:
        compile_s = "n/a" if shape.langgraph_build_s is None else f"{shape.langgraph_build_s:.2f}"
        lines.append(f"  {shape.name}: {shape.fleetmind_build_s:.2f} / {compile_s}")
    lines.append("")
    lines.append(
        f"makespan / critical path: {makespan.ratio:.4f} (best of {len(makespan.makespans_s)}; "
        f"makespan {min(makespan.makespans_s) * 1e3:.1f} ms, critical path "
        f"{makespan.critical_path_s * 1e3:.1f} ms, {makespan.subtasks} sleeping subtasks; "
        "physical limit 1.0, goal <= 1.02)"
    )
    lines.append(
        f"  same DAG on bare asyncio (timer floor): {makespan.floor_ratio:.4f}; "
        f"fleetmind adds {(min(makespan.makespans_s) - min(makespan.asyncio_floor_s)) * 1e3:.1f} "
        "ms over it"
    )
    return "\n".join(lines)


def machine_info() -> dict[str, Any]:
    """Where the figures were taken."""
    return {
        **machine_base(implementation=True),
        "fleetmind": package_version("fleetmind"),
        "langgraph": package_version("langgraph"),
    }


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------


def shapes_for(quick: bool, seed: int) -> list[tuple[str, Deps]]:
    """The shapes to run: full sizes, or small ones that only check the script works."""
    rng = random.Random(seed)
    if quick:
        return [
            ("chain-100", chain(100)),
            ("fanout-1000", fanout(1000)),
            ("layered-1000", layered(10, 100, rng)),
        ]
    return [
        ("chain-1000", chain(1000)),
        ("fanout-10000", fanout(10_000)),
        ("layered-10000", layered(50, 200, rng)),
    ]


async def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Run every measurement, print the table, and return the JSON document."""
    machine = machine_info()
    times = 1 if args.quick else args.repeat
    shapes: list[ShapeResult] = []
    with tempfile.TemporaryDirectory(prefix="fleetmind-bench-") as tmp:
        for name, deps in shapes_for(args.quick, args.seed):
            shapes.append(await measure_shape(name, deps, times, Path(tmp)))
    makespan = await measure_makespan(max(times, 1), args.seed)
    print(render(shapes, makespan, times, machine))
    return {
        "shapes": [shape.to_json() for shape in shapes],
        "makespan_over_critical_path": makespan.ratio,
        "makespan": makespan.to_json(),
        "statistic": f"best (minimum) of up to {times} run(s)",
        "machine": machine,
    }


def profile(args: argparse.Namespace) -> None:
    """cProfile of fleetmind (memory store) on the fanout shape, and its garbage collections.

    Prints the top 15 functions by own time, fleetmind's functions by cumulative time, and how
    long the cyclic garbage collector paused the run (its pauses land in whatever function
    allocated at that moment, so they inflate the own time of cheap functions at random).
    """
    width = 1000 if args.quick else 10_000
    deps = fanout(width)
    graph = fleetmind_graph(deps, f"fanout-{width}")
    fleet = Fleet([noop])
    pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
    started: list[float] = []

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started.append(time.perf_counter())
        elif started:
            pauses[info["generation"]].append(time.perf_counter() - started.pop())

    _CALLS.clear()
    gc.collect()
    gc.freeze()  # as in the timed runs
    gc.callbacks.append(on_gc)
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    result = asyncio.run(fleet.run(graph))
    profiler.disable()
    elapsed = time.perf_counter() - start
    gc.callbacks.remove(on_gc)
    gc.unfreeze()
    assert result.ok
    _check_exactly_once(deps, "fleetmind")
    print(profile_report(profiler, 15, 12))
    print(f"run under the profiler: {elapsed:.3f} s for {len(deps):,} subtasks")
    for generation, times in pauses.items():
        print(
            f"cyclic GC, generation {generation}: {len(times)} collections, "
            f"{sum(times):.3f} s in total"
        )


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser(__doc__, "small shapes, one run (smoke test)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (best kept)")
    parser.add_argument("--seed", type=int, default=20_240_601, help="seed of the random DAGs")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile fleetmind on the fanout shape instead"
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.profile:
        profile(args)
        return
    document = asyncio.run(benchmark(args))
    write_json(args.json, document)


if __name__ == "__main__":
    main()
