"""Store cost in benchmarks/replicas.py: one in-process fleet with fast local agents runs the
same tasks on SQLite, on PostgreSQL, and on PostgreSQL as a leased replica (fenced writes)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _harness import _progress, _temp_dir
from _replicas_setup import Rig

from fleetmind import Fleet, TaskGraph, agent
from fleetmind.agents import Agent
from fleetmind.orchestrator import PostgresStore, Replica, SQLiteStore, Store

LEASE_S = 15.0
VARIANTS = ("sqlite", "sqlite_leased", "postgres", "postgres_leased")
LABELS = {
    "sqlite": "SQLite file (baseline)",
    "sqlite_leased": "SQLite file, replica lease",
    "postgres": "PostgreSQL",
    "postgres_leased": "PostgreSQL, replica lease",
}


def local_agent() -> Agent:
    """A fast local agent: the store's cost is most of what a subtask costs."""

    @agent(id="quick", max_concurrency=1000)
    async def quick(n: int) -> int:
        return n

    return quick


def tasks_of(prefix: str, tasks: int, subtasks: int) -> list[TaskGraph]:
    graphs = []
    for t in range(tasks):
        graph = TaskGraph(f"{prefix}-{t}")
        for i in range(subtasks):
            graph.add_subtask(f"s{i}", agent="quick", inputs={"n": i})
        graphs.append(graph)
    return graphs


async def _run(fleet: Fleet, graphs: list[TaskGraph], at_once: bool) -> float:
    """Wall seconds to run the graphs, all submitted together or one after the other."""
    start = time.perf_counter()
    if at_once:
        handles = [fleet.submit(graph) for graph in graphs]
        results = [await handle.result() for handle in handles]
    else:
        results = [await fleet.run(graph) for graph in graphs]
    wall = time.perf_counter() - start
    failed = [r for r in results if not r.ok]
    if failed:
        raise RuntimeError(f"{len(failed)} task(s) failed: {list(failed[0].errors.items())[:2]}")
    return wall


def store_counters(store: Store) -> dict[str, int] | None:
    """The store's own write and transaction counts, where it keeps them."""
    stats = getattr(store, "stats", None)
    if callable(stats):
        stats = stats()
    if stats is None:
        return None
    if not isinstance(stats, dict):
        stats = vars(stats)
    return {k: v for k, v in stats.items() if isinstance(v, int | float)}


def _difference(after: dict[str, int] | None, before: dict[str, int] | None) -> dict[str, int]:
    if after is None or before is None:
        return {}
    return {k: v - before.get(k, 0) for k, v in after.items()}


async def _variant(
    name: str, make_store: Callable[[], Store], tasks: int, subtasks: int, repeats: int
) -> dict[str, Any]:
    store = make_store()
    replica = Replica("bench", lease_s=LEASE_S) if name.endswith("_leased") else None
    options: dict[str, Any] = {"replica": replica} if replica is not None else {}
    figures: dict[str, Any] = {"variant": name, "label": LABELS[name]}
    try:
        async with Fleet([local_agent()], store=store, **options) as fleet:
            await _run(fleet, tasks_of("warm", 2, subtasks), at_once=True)
            for mode, at_once in (("at_once", True), ("one_by_one", False)):
                walls, counts = [], []
                for r in range(repeats):
                    before = store_counters(store)
                    walls.append(
                        await _run(fleet, tasks_of(f"{mode}-{r}", tasks, subtasks), at_once)
                    )
                    counts.append(_difference(store_counters(store), before))
                best = min(range(repeats), key=lambda i: walls[i])
                figures[mode] = {
                    "wall_s": walls[best],
                    "ms_per_subtask": walls[best] / (tasks * subtasks) * 1e3,
                    "subtasks_per_s": tasks * subtasks / walls[best],
                    "store_counts": counts[best],
                    "walls_s": walls,
                }
    finally:
        close = getattr(store, "close", None)
        if callable(close):
            with contextlib.suppress(Exception):
                close()
    return figures


async def measure(setup: Rig, tasks: int, subtasks: int, repeats: int) -> dict[str, Any]:
    """Each variant on a fresh store: ``repeats`` rounds of ``tasks`` tasks of ``subtasks``
    subtasks, all at once and then one after the other; the best round of each."""
    work = _temp_dir("fleetmind-replicas-sqlite-")
    makers: dict[str, Callable[[], Store]] = {
        "sqlite": lambda: SQLiteStore(Path(work) / "fleet.db"),
        "sqlite_leased": lambda: SQLiteStore(Path(work) / "leased.db"),
        "postgres": lambda: PostgresStore(setup.new_database("cost")),
        "postgres_leased": lambda: PostgresStore(setup.new_database("cost_leased")),
    }
    variants = []
    for name in VARIANTS:
        _progress(f"store cost: {LABELS[name]}, {tasks} tasks x {subtasks} subtasks")
        variants.append(await _variant(name, makers[name], tasks, subtasks, repeats))
    return {"tasks": tasks, "subtasks_per_task": subtasks, "lease_s": LEASE_S, "variants": variants}
