"""Orchestrator replicas on one PostgreSQL: throughput by replica count, store cost, takeover time.

Set-up (once for the whole run, every part stopped and removed at the end)
    - PostgreSQL: a cluster of its own in a temporary directory on a free loopback port
      (``fleetmind.testing.start_test_postgres``); every measurement gets a fresh database.
    - Mosquitto: ``fleetmind.testing.start_test_broker`` (the fleet's generated logins and
      ACL) on a free loopback port, fleet ``bench``.
    - Two devices, ``dev-1`` and ``dev-2``: ``fleetmind agent serve`` processes serving two
      agents: ``quick`` (returns its input at once) and ``slow`` (holds its subtask
      ``hold`` seconds, and writes to a file when it starts and ends it); each takes up to
      256 subtasks at once, so no replica ever waits for a device's slot.
    - Replicas: ``fleetmind orchestrator serve --store postgresql://... --replica-id ID``
      processes (``--lease SECONDS`` for the takeover), stopped with Ctrl-C's signal at the
      end of each measurement (a clean stop releases its leases).

What is measured
    1. Throughput with 1, 2 and 4 replicas (``--replicas``). For each count: a fresh
       database, the replicas started, then warm-up tasks until every replica has run one
       (each has met the devices and the store). A round is ``--tasks`` tasks (default 40;
       quick 6) of ``--subtasks`` independent ``quick`` subtasks each (default 25; quick 4),
       handed to the fleet over the broker at once (``submit_via_broker`` for each, all
       awaited together; the broker's shared subscription spreads them over the replicas),
       timed from the first submit to the last result. Reported for the best of three rounds
       (quick: one): subtasks/s, wall time, the CPU seconds of each part over the round
       (``/proc``: the replicas, PostgreSQL's server and backends, Mosquitto, the devices;
       ``getrusage``: this process, whose clients submit), the CPU cost per subtask, how busy
       the cores were, and how many tasks each replica ran. On a machine with 2 cores every
       process shares them: one replica (one Python process) can leave a core idle, but past
       the cores the curve shows the overhead of more replicas, not a speed-up.
    2. Store cost per subtask, in this process: one ``Fleet`` with a fast local agent runs the
       same tasks on a SQLite file (the baseline), on PostgreSQL (``PostgresStore``), and on
       PostgreSQL as a leased replica (``Fleet(replica=Replica("bench", lease_s=15))``: every
       write carries its epoch and is fenced). Each variant: a warm-up, then rounds of
       ``--tasks`` tasks x ``--subtasks`` subtasks, all submitted at once (group commit
       gathers the writes of many tasks) and one after another; best of three rounds (quick:
       one), in ms per subtask; plus the store's own write and transaction counters where it
       keeps them.
    3. Takeover: two fresh replicas with ``--lease`` (default 2 s), a task of a ``slow``
       device subtask (``--hold``, default 4 s) and a ``quick`` one after it, submitted over
       the broker. Once the device has started the slow subtask, the replica holding the
       task's lease (its owner in the store) is SIGKILLed. Timed from the kill: the other
       replica's ``task_resumed`` entry in the store, the first event of the task the
       submitting client got, the device ending its subtask, and the client getting the
       result. ``--trials`` takeovers (default 3; quick 1), each with fresh replicas.

How to run
    .venv/bin/python benchmarks/replicas.py                  # about 1 min
    .venv/bin/python benchmarks/replicas.py --quick          # fewer tasks, one round each
    .venv/bin/python benchmarks/replicas.py --json out.json --only throughput,takeover

    Needs PostgreSQL (``apt-get install postgresql``), psycopg (``pip install
    'fleetmind[postgres]'``) and Mosquitto (``apt-get install mosquitto``).
"""

from __future__ import annotations

import argparse
from typing import Any

import _replicas_store
import _replicas_takeover
import _replicas_throughput
from _harness import benchmark_parser, comma_list, run_cleaned_up, sizes_arg, write_json
from _replicas_report import machine_info, render
from _replicas_setup import Rig, rig

PARTS = ("throughput", "store", "takeover")


def _postgres_version(setup: Rig) -> str:
    import psycopg

    with psycopg.connect(setup.postgres.url()) as connection:
        row = connection.execute("SHOW server_version").fetchone()
    return str(row[0]).split()[0] if row else "?"


async def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement asked for; returns the JSON document."""
    tasks = args.tasks or (6 if args.quick else 40)
    subtasks = args.subtasks or (4 if args.quick else 25)
    repeats = 1 if args.quick else 3
    trials = args.trials or (1 if args.quick else 3)
    document: dict[str, Any] = {}
    with rig() as setup:
        document["machine"] = machine_info(_postgres_version(setup))
        if "throughput" in args.only:
            rows = [
                await _replicas_throughput.measure(setup, count, tasks, subtasks, repeats)
                for count in args.replicas
            ]
            cpu_count = document["machine"]["cpu_count"]
            document["throughput"] = {"rows": rows, "cpu_count": cpu_count}
        if "store" in args.only:
            document["store"] = await _replicas_store.measure(setup, tasks, subtasks, repeats)
        if "takeover" in args.only:
            document["takeover"] = await _replicas_takeover.measure(
                setup, trials, args.lease, args.hold
            )
    return document


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser(__doc__, "fewer tasks, one round and one takeover")
    parser.add_argument(
        "--replicas",
        type=sizes_arg(1),
        default=[1, 2, 4],
        metavar="N,N",
        help="replica counts for the throughput (default 1,2,4)",
    )
    parser.add_argument("--tasks", type=int, metavar="N", help="tasks per round")
    parser.add_argument("--subtasks", type=int, metavar="N", help="subtasks per task")
    parser.add_argument("--trials", type=int, metavar="N", help="takeovers")
    parser.add_argument(
        "--lease", type=float, default=2.0, metavar="SECONDS", help="the replicas' lease"
    )
    parser.add_argument(
        "--hold", type=float, default=4.0, metavar="SECONDS", help="the slow subtask's hold"
    )
    parser.add_argument(
        "--only",
        type=comma_list,
        default=list(PARTS),
        metavar="PARTS",
        help=f"which parts to run (of {','.join(PARTS)})",
    )
    args = parser.parse_args(argv)
    unknown = [part for part in args.only if part not in PARTS]
    if unknown:
        parser.error(f"--only: unknown part(s) {','.join(unknown)}; use {','.join(PARTS)}")
    document = run_cleaned_up(benchmark(args))
    print(render(document))
    write_json(args.json, document)


if __name__ == "__main__":
    main()
