"""Memory: compressing real operational logs, recall at scale, and recall from a device.

1. Compression of real operational logs (extractive, no model)
    The logs are real, produced or found at run time, never committed:

    - Mosquitto 2.0 with ``log_type all`` and ``connection_messages true`` (log file in a
      temporary directory), logins (a password file) and an ACL, through a fault run made by
      this benchmark (about 35 s): an orchestrator (``Fleet`` + ``MqttFleetLink``) in this
      process and three ``fleetmind agent serve`` devices run a 40-subtask task; then pi-2 is
      SIGKILLed (its socket closes), pi-3 is SIGSTOPped (hung: Mosquitto drops it when its 15 s
      keep-alive has run out 1.5 times), a wrong password, an unknown user and an anonymous
      login are tried, a sensor publishes into the fleet's topics against the ACL, an HTTP
      request and a malformed packet reach the MQTT port, a second pi-1 (the same device id)
      runs beside the first while a 20-subtask task runs, pi-2 and pi-3 restart, the broker is
      restarted (SIGTERM, start), and a last 40-subtask task runs. The same run's fleetmind
      processes give a second, small log: the orchestrator's ``fleetmind`` logger (INFO, to a
      file) and each device's output.
    - PostgreSQL (when ``postgres`` and ``psql`` are installed; as the ``postgres`` user when
      run as root): initdb and a server on a free port in a temporary directory, every
      statement and connection logged, a pgbench workload (2 clients x 250 transactions), then
      failed logins, a missing database, a syntax error, a missing table, a duplicate key,
      division by zero, a statement timeout, too many clients, a deadlock, a backend terminated
      by an administrator, a backend SIGKILLed (the server restarts and recovers), more
      pgbench, and a fast shutdown (about 10 s).
    - The system's package logs, when present: /var/log/dpkg.log, /var/log/apt/history.log,
      /var/log/apt/term.log (a missing one is skipped, and the report says so).

    Critical facts come from rules per kind of log, written before any compression result was
    seen (benchmarks/_memory_facts.py, with its comment), independently of fleetmind's PIN_PATTERN:
    Mosquitto (broker start/stop and version, listeners, each client that connected, and each
    client disconnected, closed, timed out, taken over, refused, denied or dropped, errors and
    warnings), fleetmind (devices serving, connections lost, reconnects, rejected messages,
    warnings), PostgreSQL (each ERROR/FATAL/PANIC/WARNING with its DETAIL/HINT and the failed
    STATEMENT, start, listener, ready, shutdown, crash and recovery, who logged in to which
    database), dpkg (each package's final status and version, upgrades, removals), apt history
    (sessions, command lines, every package of an Install/Upgrade/Remove line with its
    versions), apt term (sessions, packages set up or removed with their version, errors and
    warnings). A fact is a tuple of strings from the log; it is kept when every string appears
    in the reduced text (case-sensitive); "on one line" asks that they appear on one line.

    Each log is reduced to 25% of its tokens (the packaged WordPiece tokenizer,
    ``default_tokenizer``) three ways: fleetmind's ``compress(text, budget, goal="what failed
    and why")``; ``truncate(text, budget)`` (the last lines that fit: what a plain buffer
    keeps); and head+tail (the first lines that fit in half the budget, then the last lines
    that fit in the rest). Reported: tokens before and after, compression (1 - after/before),
    facts kept, and AOI's published figures (72.4% compression, 92.8% kept; not re-run) as a
    reference row; then the same at 10%, 25% and 50% budgets. The goal: at least 75%
    compression with at least 95% of critical facts kept, per log.

2. Recall at 1k, 10k and 100k memories (``--quick``: 1k, 10k)
    Half episodes (``add_episode``), half facts (``add_fact``, which merges a near-duplicate
    of a known fact), interleaved, in an in-memory ``MemoryStore`` (SQLite ``:memory:``; exact
    search below 4,096 items, HNSW above). Vectors: synthetic clustered unit vectors of 768
    dimensions shaped like sentence embeddings (routing_scale.py's generator: a 48-d subspace,
    round(2 sqrt(n)) centres of log-normal popularity, spread around them, small isotropic
    noise), fed through an ``embed`` function that maps each text ("memory 123") to its
    precomputed vector. Every memory has the same creation time, so recall's recency bonus is
    the same for all and the ranking is by similarity, like the ground truth's. Queries (300
    per layer; quick 100) are perturbed copies of stored vectors of the layer (cosine ~0.91 to
    the original), also looked up by text. Timed one at a time after 20 warm-up calls:
    ``store.recall(query, layer=..., limit=10)`` and, as the baseline, exact numpy search over
    the layer's vectors (``matrix @ q``, ``argpartition``, sort of the 10). recall@10 = share
    of the exact top 10 of the layer that recall returned. Also: insert time per item (the
    ``add_*`` calls: SQLite row, JSON, index, HNSW insert, a nearest-fact search per fact) and
    resident memory per item (RSS growth over the build / items).

    One more row: about 1,000 real log lines (distinct lines of the logs above, timestamps
    off, 30-240 characters, shuffled; quick 500) embedded with all-MiniLM-L6-v2 (the "light"
    model packaged with fleetmind), and 100 held-out lines as queries (quick 50): there each
    timed recall includes embedding the query, and the embedding alone is timed too. Near-
    duplicate log lines merge as facts, so fewer are stored than offered (the report says how
    many).

3. Remote recall
    Mosquitto on a free port, a ``Fleet(memory=store)`` with ``MqttFleetLink`` in this process
    (the store of the real-text row), and a ``fleetmind agent serve`` device process hosting
    ``recaller``, an agent that runs 5 warm-up and then 100 (quick 30) ``ctx.memory.recall(q,
    limit=10, layer="semantic")`` calls over MQTT and returns their times. The same queries run
    locally on the orchestrator before and after the remote ones (200 samples): straight on
    the store, through ``AgentMemory`` (``ctx.memory`` of an in-process agent: a worker
    thread), and through ``DeviceMemoryService.answer`` (what the orchestrator does for each
    device request, without MQTT). The baseline: a bare MQTT round trip, two ``MqttConnection``
    clients (a pinger here, a responder in its own process) exchanging messages of the same
    sizes as one recall request and its answer, QoS 1. Also: whether the device got the same
    answers as the local recall.

BLAS runs on one thread (``OPENBLAS_NUM_THREADS=1`` unless set), as in routing_scale.py. Every
process and broker the benchmark starts is stopped, and its temporary directories removed,
even on errors or Ctrl-C.

How to run
    .venv/bin/python benchmarks/memory.py                     # about 4 min on 2 cores
    .venv/bin/python benchmarks/memory.py --quick             # about 1.5 min
    .venv/bin/python benchmarks/memory.py --json out.json --only compression

    Needs Mosquitto (``apt-get install mosquitto``; ``/usr/sbin/mosquitto`` is found too);
    PostgreSQL is optional.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from dataclasses import asdict
from typing import Any

# One BLAS thread unless told otherwise (as in routing_scale.py): on a small shared machine a
# matrix-vector product split over threads waits for the scheduler, which would make the exact
# baseline look slower than it is. Set before numpy loads (the helper modules import it).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from _clustered import ISOTROPIC_SIGMA, SUBSPACE, WITHIN_CLUSTER_SIGMA
from _harness import (
    _peak_rss_mb,
    _progress,
    _temp_dir,
    benchmark_parser,
    comma_list,
    run_cleaned_up,
    sizes_arg,
    write_json,
)
from _memory_compression import (
    AOI,
    GOAL,
    GOAL_COMPRESSION,
    GOAL_KEPT,
    MAIN_SHARE,
    SWEEP_SHARES,
    measure_compression,
)
from _memory_logs import LogText, mosquitto_fault_run, postgres_run, system_logs
from _memory_recall import (
    DIMENSION,
    QUERY_ISOTROPIC_SIGMA,
    QUERY_SUBSPACE_SIGMA,
    WARMUP,
    K,
    build_text_store,
    measure_scale,
    measure_text_store,
    memory_texts,
)
from _memory_remote import measure_remote
from _memory_report import machine_info, render

# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------


async def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    from fleetmind.orchestrator import SentenceEmbedder

    started = time.perf_counter()
    machine = machine_info()
    notes: list[str] = []
    workdir = _temp_dir("fleetmind-memory-")
    logs: list[LogText] = []
    fault: dict[str, Any] | None = None
    if "compression" in args.parts:
        try:
            run = await mosquitto_fault_run(workdir)
            logs.append(LogText("mosquitto", "mosquitto", run.mosquitto_log, "fault run (here)"))
            logs.append(
                LogText("fleetmind", "fleetmind", run.fleet_log, "same run: orchestrator, devices")
            )
            fault = {"timeline": run.timeline, "seconds": round(run.seconds, 1)}
        except Exception as exc:
            notes.append(f"mosquitto fault run failed ({type(exc).__name__}: {exc}); skipped")
        postgres = await asyncio.to_thread(postgres_run, notes)
        if postgres is not None:
            logs.append(
                LogText(postgres.name, postgres.kind, postgres.text, f"{postgres.origin}, here")
            )
        logs.extend(system_logs(notes))
    summaries, reductions = measure_compression(logs, SWEEP_SHARES)
    machine["postgresql"] = next((x.origin for x in logs if x.kind == "postgresql"), None)

    scale = []
    if "recall" in args.parts:
        for n in args.sizes:
            _progress(f"recall: {n:,} memories")
            scale.append(measure_scale(n, args.queries, args.seed))
    real_text = remote = None
    if ("recall" in args.parts or "remote" in args.parts) and logs:
        embedder = SentenceEmbedder("light")
        embedder.load()
        texts = memory_texts(logs, args.text_memories + args.text_queries, args.seed)
        memories, queries = texts[: args.text_memories], texts[args.text_memories :]
        _progress(f"real text: embedding {len(memories):,} memories with {embedder.name}")
        store, recorder, insert_s = await asyncio.to_thread(build_text_store, memories, embedder)
        if "recall" in args.parts:
            real_text = measure_text_store(
                store, recorder, insert_s, len(memories), queries, embedder.name
            )
        if "remote" in args.parts:
            _progress("remote recall: Mosquitto, orchestrator, one device")
            remote = await measure_remote(
                store, queries[: args.remote_queries], embedder.name, workdir
            )
        store.close()
    elif "remote" in args.parts or "recall" in args.parts:
        notes.append("no log was read: no real text for the end-to-end and remote recall")

    machine["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    machine["wall_s"] = round(time.perf_counter() - started, 1)
    return {
        "compression": {
            "goal_text": GOAL,
            "main_budget_share": MAIN_SHARE,
            "shares": list(SWEEP_SHARES),
            "aoi_published": AOI,
            "goal": {"compression": GOAL_COMPRESSION, "facts_kept": GOAL_KEPT},
            "logs": [asdict(s) for s in summaries],
            "reductions": [r.to_json() for r in reductions],
        },
        "fault_run": fault,
        "notes": notes,
        "recall": {
            "k": K,
            "scale": [asdict(r) for r in scale],
            "real_text": asdict(real_text) if real_text else None,
            "generator": {
                "dimension": DIMENSION,
                "subspace": SUBSPACE,
                "within_cluster_sigma": WITHIN_CLUSTER_SIGMA,
                "isotropic_sigma": ISOTROPIC_SIGMA,
                "query_subspace_sigma": QUERY_SUBSPACE_SIGMA,
                "query_isotropic_sigma": QUERY_ISOTROPIC_SIGMA,
                "seed": args.seed,
            },
        },
        "remote": asdict(remote) if remote else None,
        "machine": machine,
    }


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser(
        __doc__, "1k and 10k memories, fewer queries", "also write the figures as JSON"
    )
    parser.add_argument("--sizes", type=sizes_arg(100), help="memories (default 1000,10000,100000)")
    parser.add_argument("--queries", type=int, help="timed queries per layer (default 300)")
    parser.add_argument(
        "--only",
        type=comma_list,
        help="comma-separated parts to run: compression, recall, remote (default all)",
    )
    parser.add_argument("--seed", type=int, default=20_240_601, help="seed of the data")
    args = parser.parse_args(argv)
    args.parts = set(args.only or ("compression", "recall", "remote"))
    unknown = args.parts - {"compression", "recall", "remote"}
    if unknown:
        parser.error(f"unknown part(s): {', '.join(sorted(unknown))}")
    if ("recall" in args.parts or "remote" in args.parts) and "compression" not in args.parts:
        args.parts.add("compression")  # the real texts are the logs' lines
    if args.sizes is None:
        args.sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
    args.queries = args.queries or (100 if args.quick else 300)
    if args.queries <= WARMUP:
        parser.error(f"--queries must be more than {WARMUP}")
    args.text_memories = 500 if args.quick else 1_000
    args.text_queries = 50 if args.quick else 100
    args.remote_queries = 30 if args.quick else 100
    document = run_cleaned_up(benchmark(args))
    print(render(document))
    write_json(args.json, document)


if __name__ == "__main__":
    main()
