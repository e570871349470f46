"""Routing latency of fleetmind's CapabilityIndex from 1k to 1M agents, beside exact numpy search.

What is measured
    One 768-dimensional vector per agent (the size of all-mpnet-base-v2 embeddings, the default
    model; ``--dimension 384`` for all-MiniLM-L6-v2), all agents in
    one tier (``cloud``), so that one shard of the index is measured. For each fleet size (1k, 10k,
    100k and 1M agents by default) a fresh ``CapabilityIndex`` is built with ``add_many`` in chunks
    of 100k agents, then 500 queries are routed one at a time, as the router does:

        index.search(query_vector, k=5)

    and the p50 and p99 of the per-call wall time are reported in milliseconds (20 warm-up calls
    are not counted). A shard is searched exactly (numpy) below ``exact_below`` vectors (4096 by
    default) and through an HNSW graph (hnswlib) above it, so 1k is the index's exact mode and the
    larger sizes its HNSW mode; the JSON says which under ``index_mode``. The index is built with
    M=16 and ef_construction=80 (``--ef-construction``; 80 keeps the 1M build within the run's
    time budget on a 2-core machine); ``ef`` (search breadth) is passed explicitly (``--ef``) and
    reported. Note that the index asks HNSW for ``4 * k`` = 20 candidates (an agent may own several
    vectors), so the effective search breadth is ``max(ef, 20)``.

    Build time is the wall time of the ``add_many`` calls alone (generating the vectors is not
    counted); it includes the index's Python bookkeeping per agent and the HNSW graph build.

    recall@5 = |index top-5 agent ids ∩ exact top-5 agent ids| / 5, averaged over the queries.

    For every size in HNSW mode, two diagnostics follow the table:
      - an ef sweep: recall@5 and p50 of ``index.search`` for several values of ``ef`` (set on the
        shard between runs, as CapabilityIndex fixes ``ef`` at construction and has no public
        setter), which shows the smallest ``ef`` that reaches recall@5 >= 0.95;
      - the p50 of a bare ``hnswlib.Index.knn_query(q, k=20)`` on the same graph, so that the
        Python overhead of ``index.search`` around the graph walk is visible.
    The report also gives the resident memory after each build and how long one full
    ``gc.collect()`` takes with the index alive (a pause a routing process may hit).

The baseline
    Exact search in numpy over the same vectors, in the same run, with the same queries: the
    vectors as one ``float32`` matrix, ``sims = matrix @ q``, ``np.argpartition`` for the top 5 and
    a sort of those 5. Every query's exact top 5 (the ground truth for recall) is computed in
    batches (``queries @ block.T`` over 65,536-row blocks); the one-at-a-time baseline is then
    timed on at least 100 queries and on all of them unless 30 s (``--exact-budget-s``) run out
    first: at 1M agents each exact query reads 3 GB. Every timed answer is checked against the
    ground truth. The table says how many exact queries were timed when that is fewer than all.

    BLAS runs on one thread (``OPENBLAS_NUM_THREADS=1`` unless set): on a small, shared machine a
    matrix-vector product split across threads waits for the scheduler and got slower, not faster.

Data: synthetic vectors shaped like sentence embeddings
    Uniformly random high-dimensional vectors have no neighbourhoods (HNSW recall collapses on
    them and nearest-neighbour similarity is ~0), so the generator makes clustered, low-rank data:

      - a random orthonormal basis of a 48-dimensional subspace of R^768 (QR of a Gaussian matrix);
      - ``round(2 * sqrt(n))`` cluster centres, standard Gaussian in the 48-d subspace, with
        log-normal popularity weights (sigma 1), so that some topics hold many more agents than
        others, as real capability descriptions do;
      - each agent: a centre drawn by weight + Gaussian noise in the subspace (sigma 0.8 per
        coordinate) mapped into 768-d, + small isotropic noise in all 768 dimensions (sigma 0.05),
        then L2-normalised;
      - queries drawn the same way from a separate seeded stream: fresh points near existing
        centres, never copies of indexed vectors.

    All randomness comes from ``numpy.random.default_rng`` seeded by ``--seed``. The report gives
    the mean similarity of each query to its nearest and 5th-nearest agent: about 0.7-0.8 here,
    where all-MiniLM-L6-v2 gives 0.5-0.8 for related texts; unrelated pairs are near 0.

Memory
    1M x 768 float32 is 3 GB; the benchmark keeps one copy for the exact baseline, the index keeps
    its own copy and hnswlib a third (with its graph links). Sizes run one after another and each
    index is released before the next is built. The peak resident set size (``getrusage``) is
    reported: 6.1 GB for a full run (measured), under the 8 GB this benchmark allows itself.

How to run
    .venv/bin/python benchmarks/routing_scale.py             # 1k..1M: ~10 min on 2 cores
    .venv/bin/python benchmarks/routing_scale.py --quick     # 1k and 10k only
    .venv/bin/python benchmarks/routing_scale.py --sizes 1000,100000 --json out.json
    .venv/bin/python benchmarks/routing_scale.py --profile   # cProfile, 3,000 searches, 100k
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

# One BLAS thread unless the caller says otherwise: on a small shared machine a matrix-vector
# product split over threads waits for the scheduler (10k x 384 measured 8 ms with 2 threads,
# 2.3 ms with 1), which would make the exact baseline look worse than it is. Set before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
from _clustered import ISOTROPIC_SIGMA, SUBSPACE, WITHIN_CLUSTER_SIGMA, ClusteredSpace
from _harness import (
    _peak_rss_mb,
    _progress,
    _rss_mb,
    _table,
    _version,
    benchmark_parser,
    hnswlib_version,
    machine_base,
    profile_report,
    sizes_arg,
    write_json,
)

from fleetmind.orchestrator import CapabilityIndex

DIMENSION = 768
"""The default model's dimension; ``--dimension`` changes it for the run."""
TIER = "cloud"
K = 5
WARMUP = 20
CHUNK = 100_000
M = 16
EF_SWEEP = (20, 32, 48, 64, 96, 128, 192)
MIN_EXACT_QUERIES = 100
RECALL_GOAL = 0.95
P50_GOAL_MS = 1.0


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoEmbedder:
    """The index needs an embedder's name and dimension; this benchmark passes vectors only."""

    dimension: int = DIMENSION

    @property
    def name(self) -> str:
        return f"synthetic-clustered-{self.dimension}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        raise RuntimeError("routing_scale passes vectors to the index; nothing is embedded")


class ClusteredEmbeddings(ClusteredSpace):
    """Clustered, low-rank unit vectors for ``n`` agents (see the module docstring)."""

    def __init__(self, n: int, seed: int) -> None:
        super().__init__(n, seed, DIMENSION)
        self.n = n
        self.seed = seed

    def agents(self, chunk: int) -> Iterator[np.ndarray]:
        """The agents' vectors, ``chunk`` rows at a time (``n`` rows in all)."""
        rng = np.random.default_rng([self.seed, self.n, 1])
        for start in range(0, self.n, chunk):
            yield self._draw(min(chunk, self.n - start), rng)

    def queries(self, count: int) -> np.ndarray:
        """Fresh points near the same centres, from their own random stream."""
        return self._draw(count, np.random.default_rng([self.seed, self.n, 2]))


def agent_id(row: int) -> str:
    return f"agent-{row:07d}"


# ---------------------------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------------------------


@dataclass
class EfPoint:
    ef: int
    recall_at_5: float
    p50_ms: float


@dataclass
class SizeResult:
    agents: int
    index_mode: str
    build_s: float
    hnsw_p50_ms: float
    hnsw_p99_ms: float
    exact_p50_ms: float
    exact_p99_ms: float
    recall_at_5: float
    exact_queries_timed: int
    clusters: int
    query_top1_similarity_mean: float
    query_top5_similarity_mean: float
    rss_after_build_mb: float
    index_bytes_per_agent: int
    full_gc_ms: float
    raw_hnswlib_p50_ms: float | None = None
    ef_sweep: list[EfPoint] = field(default_factory=list)

    @property
    def speedup_p50(self) -> float:
        return self.exact_p50_ms / self.hnsw_p50_ms

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["speedup_p50"] = round(self.speedup_p50, 2)
        return data


def _percentiles_ms(samples_ns: list[int]) -> tuple[float, float]:
    p50, p99 = np.percentile(np.asarray(samples_ns, dtype=np.float64), [50, 99]) / 1e6
    return round(float(p50), 4), round(float(p99), 4)


def exact_top(matrix: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The baseline: brute-force inner products and a partial sort (rows, similarities)."""
    sims = matrix @ query
    top = np.argpartition(sims, len(sims) - k)[-k:]
    top = top[np.argsort(-sims[top])]
    return top, sims[top]


def ground_truth(matrix: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k rows and similarities of every query, batched over row blocks (for recall)."""
    best_rows = np.zeros((len(queries), 0), dtype=np.int64)
    best_sims = np.zeros((len(queries), 0), dtype=np.float32)
    for start in range(0, len(matrix), 65_536):
        sims = queries @ matrix[start : start + 65_536].T
        keep = min(K, sims.shape[1])
        top = np.argpartition(sims, sims.shape[1] - keep, axis=1)[:, -keep:]
        rows = np.concatenate([best_rows, top + start], axis=1)
        values = np.concatenate([best_sims, np.take_along_axis(sims, top, axis=1)], axis=1)
        order = np.argsort(-values, axis=1)[:, :K]
        best_rows = np.take_along_axis(rows, order, axis=1)
        best_sims = np.take_along_axis(values, order, axis=1)
    return best_rows, best_sims


def time_exact(
    matrix: np.ndarray, queries: np.ndarray, truth_rows: np.ndarray, budget_s: float
) -> list[int]:
    """Per-query times (ns) of the exact baseline, one query at a time.

    At least ``MIN_EXACT_QUERIES`` queries are timed, then more until all are or ``budget_s`` is
    spent (at 1M agents one exact query reads 3 GB). Each answer is checked against the
    batched ground truth, so the timed code is the one that defines recall.
    """
    for q in queries[: 5 if len(matrix) > CHUNK else WARMUP]:  # 5 x 3 GB warms enough
        exact_top(matrix, q, K)
    times: list[int] = []
    clock = time.perf_counter_ns
    deadline = clock() + int(budget_s * 1e9)
    for i, q in enumerate(queries):
        if i >= MIN_EXACT_QUERIES and clock() > deadline:
            break
        start = clock()
        top, _ = exact_top(matrix, q, K)
        times.append(clock() - start)
        if set(top.tolist()) != set(truth_rows[i].tolist()):
            raise RuntimeError(f"exact search disagrees with the ground truth on query {i}")
    return times


def time_index(index: CapabilityIndex, queries: np.ndarray) -> tuple[list[int], list[list[str]]]:
    """Per-query times (ns) and the agent ids ``index.search`` returned."""
    for q in queries[:WARMUP]:
        index.search(q, k=K)
    times: list[int] = []
    found: list[list[str]] = []
    clock = time.perf_counter_ns
    for q in queries:
        start = clock()
        matches = index.search(q, k=K)
        times.append(clock() - start)
        found.append([m.agent_id for m in matches])
    return times, found


def recall_at_k(found: list[list[str]], truth_rows: np.ndarray) -> float:
    hits = 0
    for ids, rows in zip(found, truth_rows, strict=True):
        hits += len(set(ids[:K]) & {agent_id(int(r)) for r in rows})
    return hits / (K * len(found))


def _shard(index: CapabilityIndex) -> Any:
    """The measured shard (private: used only for the diagnostics, never for the figures)."""
    shards = getattr(index, "_shards", None)
    return shards.get(TIER) if isinstance(shards, dict) else None


def build_index(
    data: ClusteredEmbeddings, args: argparse.Namespace
) -> tuple[CapabilityIndex, np.ndarray, float]:
    """A fresh index holding every agent, our own copy of the vectors, and the build seconds."""
    index = CapabilityIndex(
        NoEmbedder(DIMENSION),
        exact_below=args.exact_below,
        ef=args.ef,
        m=M,
        ef_construction=args.ef_construction,
    )
    matrix = np.empty((data.n, DIMENSION), dtype=np.float32)
    build_s = 0.0
    start_row = 0
    for chunk in data.agents(CHUNK):
        end_row = start_row + len(chunk)
        matrix[start_row:end_row] = chunk
        ids = [agent_id(row) for row in range(start_row, end_row)]
        start = time.perf_counter()
        index.add_many(ids, TIER, chunk)
        build_s += time.perf_counter() - start
        start_row = end_row
        if data.n > CHUNK:
            _progress(f"{data.n:,} agents: {end_row:,} indexed, {build_s:.0f} s in add_many")
    return index, matrix, build_s


def ef_sweep(index: CapabilityIndex, queries: np.ndarray, truth_rows: np.ndarray) -> list[EfPoint]:
    """recall@5 and p50 of ``index.search`` for several ``ef`` on the already built graph."""
    shard = _shard(index)
    if shard is None or getattr(shard, "hnsw", None) is None or not hasattr(shard, "ef"):
        return []
    original = shard.ef
    points = []
    try:
        for ef in EF_SWEEP:
            shard.ef = ef
            times, found = time_index(index, queries)
            p50, _ = _percentiles_ms(times)
            points.append(EfPoint(ef, round(recall_at_k(found, truth_rows), 4), p50))
    finally:
        shard.ef = original
    return points


def raw_hnswlib_p50(index: CapabilityIndex, queries: np.ndarray, ef: int) -> float | None:
    """p50 of the bare graph walk ``knn_query(q, k=20)`` that one ``index.search`` makes."""
    shard = _shard(index)
    graph = getattr(shard, "hnsw", None)
    if graph is None:
        return None
    graph.set_ef(max(ef, 4 * K))
    for q in queries[:WARMUP]:
        graph.knn_query(q, k=4 * K)
    times = []
    clock = time.perf_counter_ns
    for q in queries:
        start = clock()
        graph.knn_query(q, k=4 * K)
        times.append(clock() - start)
    return _percentiles_ms(times)[0]


def measure_size(n: int, args: argparse.Namespace) -> SizeResult:
    """Build the index for ``n`` agents, time both searches, and release everything."""
    data = ClusteredEmbeddings(n, args.seed)
    gc.collect()
    rss_before = _rss_mb()
    index, matrix, build_s = build_index(data, args)
    rss = _rss_mb()
    # What the index holds per agent: the growth of the process during the build, less the
    # benchmark's own copy of the vectors.
    index_bytes = (rss - rss_before) * 2**20 - matrix.nbytes
    shard = _shard(index)
    mode = "hnsw" if n >= args.exact_below else "exact"
    if shard is not None:
        mode = "hnsw" if shard.hnsw is not None else "exact"
    queries = data.queries(args.queries)
    gc.collect()
    start = time.perf_counter()
    gc.collect()
    full_gc_ms = (time.perf_counter() - start) * 1e3

    _progress(f"{n:,} agents: built in {build_s:.1f} s ({mode}); timing exact numpy search")
    truth_rows, truth_sims = ground_truth(matrix, queries)
    exact_times = time_exact(matrix, queries, truth_rows, args.exact_budget_s)
    del matrix  # the baseline is done: free 3 GB at 1M before the diagnostics
    gc.collect()
    _progress(f"{n:,} agents: timing index.search")
    index_times, found = time_index(index, queries)
    result = SizeResult(
        agents=n,
        index_mode=mode,
        build_s=round(build_s, 2),
        hnsw_p50_ms=_percentiles_ms(index_times)[0],
        hnsw_p99_ms=_percentiles_ms(index_times)[1],
        exact_p50_ms=_percentiles_ms(exact_times)[0],
        exact_p99_ms=_percentiles_ms(exact_times)[1],
        recall_at_5=round(recall_at_k(found, truth_rows), 4),
        exact_queries_timed=len(exact_times),
        clusters=data.clusters,
        query_top1_similarity_mean=round(float(truth_sims[:, 0].mean()), 3),
        query_top5_similarity_mean=round(float(truth_sims[:, K - 1].mean()), 3),
        rss_after_build_mb=round(rss, 1),
        index_bytes_per_agent=round(max(index_bytes, 0) / n),
        full_gc_ms=round(full_gc_ms, 1),
    )
    if mode == "hnsw":
        _progress(f"{n:,} agents: diagnostics (bare hnswlib, ef sweep)")
        result.raw_hnswlib_p50_ms = raw_hnswlib_p50(index, queries, args.ef)
        result.ef_sweep = ef_sweep(index, queries, truth_rows)
    del index
    gc.collect()
    return result


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def render(results: list[SizeResult], args: argparse.Namespace, machine: dict[str, Any]) -> str:
    """The results as a plain, aligned text table, then growth, goals and diagnostics."""
    rows: list[tuple[str, ...]] = [
        (
            "agents",
            "mode",
            "build s",
            "fleetmind p50 ms",
            "p99 ms",
            "exact p50 ms",
            "p99 ms",
            "recall@5",
            "speed-up p50",
        )
    ]
    for r in results:
        rows.append(
            (
                f"{r.agents:,}",
                r.index_mode,
                f"{r.build_s:.1f}",
                f"{r.hnsw_p50_ms:.3f}",
                f"{r.hnsw_p99_ms:.3f}",
                f"{r.exact_p50_ms:.3f}",
                f"{r.exact_p99_ms:.3f}",
                f"{r.recall_at_5:.3f}",
                f"{r.speedup_p50:.1f}x",
            )
        )
    lines = [
        f"Routing latency: CapabilityIndex.search(q, k={K}) vs exact numpy, one query at a time, "
        f"{args.queries} queries per size",
        f"index: one tier, exact_below={args.exact_below}, M={M}, "
        f"ef_construction={args.ef_construction}, ef={args.ef} "
        f"(effective max(ef, {4 * K}))",
        f"python {machine['python']}, numpy {machine['numpy']}, hnswlib {machine['hnswlib']}, "
        f"{machine['cpu_count']} CPU(s), load average at start {machine['load_average']}",
        "",
        *_table(rows, left=0),
        "",
    ]
    partial = [r for r in results if r.exact_queries_timed < args.queries]
    if partial:
        lines.append(
            "exact p50/p99 timed on fewer queries (time budget): "
            + ", ".join(f"{r.agents:,}: {r.exact_queries_timed}" for r in partial)
            + f"; recall uses all {args.queries}"
        )
    if len(results) >= 2:
        first, last = results[0], results[-1]
        growth = last.hnsw_p50_ms / first.hnsw_p50_ms
        agents = last.agents / first.agents
        exponent = math.log(growth) / math.log(agents)  # p50 ~ agents ** exponent
        kind = "sub-linear" if exponent < 0.5 else "below linear" if exponent < 0.9 else "linear"
        lines.append(
            f"growth: p50 at {last.agents:,} / p50 at {first.agents:,} = {growth:.1f}x for "
            f"{agents:,.0f}x the agents, i.e. p50 ~ agents^{exponent:.2f} ({kind}); exact numpy "
            f"grew {last.exact_p50_ms / first.exact_p50_ms:.1f}x"
        )
        hnsw = [r for r in results if r.index_mode == "hnsw"]
        if len(hnsw) >= 2 and hnsw[0] is not first:
            lines.append(
                f"  within HNSW mode: {hnsw[-1].hnsw_p50_ms / hnsw[0].hnsw_p50_ms:.1f}x from "
                f"{hnsw[0].agents:,} to {hnsw[-1].agents:,} agents "
                f"({hnsw[-1].agents / hnsw[0].agents:,.0f}x)"
            )
    largest = results[-1]
    met = largest.hnsw_p50_ms < P50_GOAL_MS and largest.recall_at_5 >= RECALL_GOAL
    lines.append(
        f"goal at {largest.agents:,} agents: p50 < {P50_GOAL_MS:g} ms with recall@5 >= "
        f"{RECALL_GOAL}: {'met' if met else 'NOT met'} "
        f"(p50 {largest.hnsw_p50_ms:.3f} ms, recall@5 {largest.recall_at_5:.3f})"
    )
    lines.append("")
    lines.append("data: mean similarity of a query to its nearest / 5th-nearest agent")
    for r in results:
        lines.append(
            f"  {r.agents:>9,}: {r.query_top1_similarity_mean:.3f} / "
            f"{r.query_top5_similarity_mean:.3f} ({r.clusters:,} clusters)"
        )
    lines.append("")
    lines.append(
        "memory: RSS after each build (MB; includes the benchmark's own copy of the vectors): "
        + ", ".join(f"{r.agents:,}: {r.rss_after_build_mb:,.0f}" for r in results)
    )
    lines.append(
        "        index memory per agent (bytes; RSS growth during the build less the vectors' "
        "copy): " + ", ".join(f"{r.agents:,}: {r.index_bytes_per_agent:,}" for r in results)
    )
    lines.append(f"        peak RSS of the run: {_peak_rss_mb():,.0f} MB (getrusage)")
    lines.append(
        "full gc.collect() with the index alive (ms): "
        + ", ".join(f"{r.agents:,}: {r.full_gc_ms:,.1f}" for r in results)
    )
    hnsw = [r for r in results if r.index_mode == "hnsw"]
    if hnsw:
        lines.append("")
        lines.append(
            f"Python overhead: index.search p50 vs bare hnswlib knn_query(q, k={4 * K}) p50 "
            "on the same graph (ms)"
        )
        for r in hnsw:
            if r.raw_hnswlib_p50_ms is not None:
                lines.append(
                    f"  {r.agents:>9,}: {r.hnsw_p50_ms:.3f} vs {r.raw_hnswlib_p50_ms:.3f} "
                    f"(+{(r.hnsw_p50_ms - r.raw_hnswlib_p50_ms) * 1e3:.0f} µs)"
                )
        lines.append("")
        lines.append("ef sweep (index.search, same graph): ef -> recall@5 / p50 ms")
        for r in hnsw:
            points = "  ".join(f"{p.ef}: {p.recall_at_5:.3f}/{p.p50_ms:.3f}" for p in r.ef_sweep)
            enough = [p.ef for p in r.ef_sweep if p.recall_at_5 >= RECALL_GOAL]
            least = f"smallest ef with recall@5 >= {RECALL_GOAL}: {enough[0] if enough else 'none'}"
            lines.append(f"  {r.agents:>9,}: {points}")
            lines.append(f"  {'':>9}  {least}")
    return "\n".join(lines)


def machine_info() -> dict[str, Any]:
    """Where the figures were taken."""
    return {
        **machine_base(implementation=True),
        "numpy": np.__version__,
        "hnswlib": hnswlib_version(),
        "fleetmind": _version("fleetmind"),
    }


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Measure every size, print the report, and return the JSON document."""
    machine = machine_info()
    results: list[SizeResult] = []
    started = time.perf_counter()
    for n in args.sizes:
        results.append(measure_size(n, args))
        _progress(f"{n:,} agents done, {time.perf_counter() - started:.0f} s elapsed")
    print(render(results, args, machine))
    machine["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    machine["wall_s"] = round(time.perf_counter() - started, 1)
    first, last = results[0], results[-1]
    return {
        "sizes": [r.to_json() for r in results],
        "ef": args.ef,
        "effective_ef": max(args.ef, 4 * K),
        "m": M,
        "ef_construction": args.ef_construction,
        "exact_below": args.exact_below,
        "k": K,
        "queries": args.queries,
        "p50_growth": {
            "from_agents": first.agents,
            "to_agents": last.agents,
            "ratio": round(last.hnsw_p50_ms / first.hnsw_p50_ms, 2),
        },
        "data": {
            "generator": "clustered low-rank (see module docstring)",
            "dimension": DIMENSION,
            "subspace": SUBSPACE,
            "clusters": "round(2 * sqrt(n)), log-normal weights",
            "within_cluster_sigma": WITHIN_CLUSTER_SIGMA,
            "isotropic_sigma": ISOTROPIC_SIGMA,
            "seed": args.seed,
        },
        "machine": machine,
    }


def profile(args: argparse.Namespace) -> None:
    """cProfile of 3,000 ``index.search`` calls on a 100k-agent index (10k with --quick)."""
    n = 10_000 if args.quick else 100_000
    data = ClusteredEmbeddings(n, args.seed)
    index, matrix, build_s = build_index(data, args)
    del matrix
    queries = data.queries(3_000)
    for q in queries[:WARMUP]:
        index.search(q, k=K)
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    for q in queries:
        index.search(q, k=K)
    profiler.disable()
    elapsed = time.perf_counter() - start
    print(profile_report(profiler, 15))
    print(
        f"{len(queries):,} searches on {n:,} agents (built in {build_s:.1f} s): {elapsed:.3f} s "
        f"under the profiler, {elapsed / len(queries) * 1e6:.0f} µs per search"
    )


def main(argv: list[str] | None = None) -> None:
    global DIMENSION
    parser = benchmark_parser(__doc__, "sizes 1k and 10k only")
    parser.add_argument(
        "--sizes",
        type=sizes_arg(2 * K),
        help="comma-separated agent counts (default 1000,...,1000000)",
    )
    parser.add_argument("--queries", type=int, default=500, help="timed queries per size")
    parser.add_argument("--ef", type=int, default=64, help="HNSW search breadth")
    parser.add_argument(
        "--exact-budget-s",
        type=float,
        default=30.0,
        help=f"time spent timing exact search per size (at least {MIN_EXACT_QUERIES} queries)",
    )
    parser.add_argument("--ef-construction", type=int, default=80, help="HNSW build breadth")
    parser.add_argument("--exact-below", type=int, default=4096, help="exact search below this")
    parser.add_argument("--seed", type=int, default=20_240_601, help="seed of the data")
    parser.add_argument(
        "--dimension",
        type=int,
        default=DIMENSION,
        help=f"vector size (default {DIMENSION}, all-mpnet-base-v2; 384 for all-MiniLM-L6-v2)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="cProfile 3,000 searches at 100k agents instead"
    )
    args = parser.parse_args(argv)
    if args.dimension < 2 * SUBSPACE:
        parser.error(f"--dimension must be at least {2 * SUBSPACE}")
    DIMENSION = args.dimension
    if args.sizes is None:
        args.sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000, 1_000_000]
    if args.queries < WARMUP:
        parser.error(f"--queries must be at least {WARMUP}")
    if args.profile:
        profile(args)
        return
    document = benchmark(args)
    write_json(args.json, document)


if __name__ == "__main__":
    main()
