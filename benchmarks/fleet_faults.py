"""The MQTT fleet under injected faults: is work lost, or finished work run again?

What is promised
    A device reboot, a broker restart or an orchestrator crash loses no work and runs no
    finished work twice (README, "the fleet's promises under faults"; docs/protocol.md). This
    benchmark injects each fault many times with real processes and a real Mosquitto, and
    counts what the agents themselves recorded.

Set-up (fresh for every trial)
    - Mosquitto on a free loopback port, anonymous logins, ``persistence true`` with
      ``autosave_interval 1`` (a deployed broker keeps sessions and queued messages across a
      stop and start). Mosquitto started as root drops to its own user, so its database lives
      in a world-writable temporary directory of its own.
    - Two devices, ``pi-1`` and ``pi-2``: each a ``fleetmind agent serve`` process
      (``--heartbeat 0.5``) serving audited agents from a generated agents file. Every agent
      appends ``"<device> start <key> <unix time>"`` when it starts a subtask and
      ``"<device> end <key> <unix time>"`` when it has finished it (just before it returns its
      output, ``"<key> by <device>"``) to an audit file shared by the trial's devices; each
      agent takes 2 subtasks at once (``max_concurrency=2``).
    - The task: 30 independent subtasks ``worker-00`` ... ``worker-29``, each naming the agent
      ``worker`` (served by both devices: ``worker@pi-1`` and ``worker@pi-2`` are two
      candidates, so work can fail over) and holding 0.3-1.0 s (``0.3 + 0.07 * (7n mod 11)``).
      At most 4 run at once, so the task lasts about 5 s and a fault lands while part of the
      work runs, part is done and part waits. For the multi-agent kill both devices serve three
      agents, ``worker``, ``sorter`` and ``packer``, and the task has 36 subtasks, round-robin
      over the three (12 run at once).
    - The orchestrator: for every fault but the orchestrator kill, a ``Fleet`` (``SkillRouter``,
      tasks kept in memory) joined to the broker by ``MqttFleetLink(dead_after_s=5)`` in this
      process (``dead_after_s`` set explicitly: a device whose heartbeats stop, or that said
      offline, is declared dead after 5 s; the default would be three heartbeats, 1.5 s). The
      task is submitted with ``fleet.submit(graph)`` once every agent has joined. For the
      orchestrator kill: the command line, ``fleetmind run task.yaml --broker URL --no-live
      --data-dir DIR`` in its own process group, then ``fleetmind resume TASK_ID --broker URL
      --json --data-dir DIR`` (their link uses the default: dead after three heartbeats).

Faults (each injected in ``--trials`` trials, default 10; ``--quick``: 2 trials, 10 s outage)
    The fault is injected once at least 4 subtasks have ended (per the audit) and, for device
    faults, once ``pi-1`` is running work (started, not ended); "hit" counts trials where the
    victim held running work at that moment (for the orchestrator kill: where some subtasks
    had ended and others were still running). It then lands a seeded random 0-0.6 s later, so
    the trials hit different instants: mid-run, just after an agent ended, while a result is
    still on its way to the orchestrator's store.

    1. device kill, fast restart: SIGKILL ``pi-1``, start it again at once (same device id, so
       the same MQTT client id and persistent session; well inside the 5 s grace period).
    2. device kill, slow restart: SIGKILL ``pi-1``; start it again only once the orchestrator
       has declared it dead (its agents left the fleet) plus 1 s. Its work goes to ``pi-2``;
       the dispatches that waited in its session must not run when it returns ("stale
       started" counts held keys started again on ``pi-1`` after its restart).
    3. broker restart: SIGTERM Mosquitto (it saves its state), start it again at once.
    4. broker outage: SIGTERM Mosquitto, wait ``--outage-s`` (default 60; quick 10), start it.
    5. orchestrator kill + resume: SIGKILL the ``fleetmind run`` process group; wait until the
       devices have ended every subtask they had started (at most 30 s); then ``fleetmind
       resume``. Also checked: every output of the resumed result equals what a device
       computed (``"<key> by <device>"`` of a device that recorded ``end`` for that key), and
       no subtask that had started before the kill started again after it.
    6. kill of a device holding several agents: the three-agent task; SIGKILL ``pi-1`` once it
       runs work of at least two of its agents (three if that happens within 5 s), start it
       again at once.

    Plus fault-free baselines of each task shape (in-process one agent, in-process three
    agents, command line), ``--trials`` each, for the time comparison.

What is counted, per trial (from the audit file, read 3 s after the task ended so that late
re-runs are seen too)
    - completion: the task ended ``done`` (within 180 s + the outage; a task still running then
      counts as not completed, and is cancelled).
    - lost: subtasks that never finished: no ``end`` line in the audit, or not ``done`` in the
      orchestrator's result.
    - ended twice: subtasks with two or more ``end`` lines: a finished (saved) result that was
      computed again. Goal: none.
    - started twice: subtasks with two or more ``start`` lines. Expected where the first run
      died with its device (its result never existed); reported, not a goal.
    - time to detect (device faults only): from the SIGKILL (wall clock) to the first sign in
      the task's log or on the wire that the orchestrator acted on the work the killed device
      held (the subtasks it had started and not ended): a ``subtask_reassigned``,
      ``subtask_retried``, ``subtask_requeued`` or ``subtask_started`` entry for one of them
      in the task's log (entries carry the engine's wall-clock time), or an orchestrator's
      ``dispatch`` or ``proceed`` about one of them published to any device's inbox (seen by a
      plain MQTT subscriber in this process). A fast restart shows only on the wire: the
      broker delivers the dispatches kept in the device's session again, the restarted device
      claims them, and the orchestrator answers ``proceed`` (or sends the dispatch again if
      the device lacks it) without a new log entry. The JSON says which sign came first.
    - time to finish: from submit to the result (in-process); from the start of ``fleetmind
      run`` to the exit of ``fleetmind resume`` for the orchestrator kill (including the wait
      for the devices, at most one hold). Compared (p50 / p50) with the fault-free run of the
      same shape (the command-line baseline for the orchestrator kill, timed from the start
      of ``fleetmind run`` to its exit). Trials that did not complete are left out of the
      time, and counted above.

The table
    One row per fault (and per baseline): trials, hit, completion %, lost, ended twice and
    started twice (summed over the trials), detection p50, finish p50, finish p50 / fault-free
    p50, and whether the goal was met in every trial: completed, 0 lost, 0 ended twice (and,
    for the orchestrator kill, every output as a device computed it). Notes below it give the
    first signs of detection, how soon a restarted device was back online (the orchestrator
    saw its new boot id), when a slowly restarted one was declared dead, stale work started on
    it, and anything a trial could not do as planned. Every trial that missed the goal is
    listed with its evidence: the audit lines and task-log entries of the keys concerned
    (timed from the fault) and the orchestrator's warnings (in-process) or the tail of the
    command line's output. ``--json`` writes all of it, per trial.

How to run
    .venv/bin/python benchmarks/fleet_faults.py                 # about 25-30 min (outages)
    .venv/bin/python benchmarks/fleet_faults.py --quick         # about 3 min
    .venv/bin/python benchmarks/fleet_faults.py --json out.json --only device-fast,broker-restart

    Needs Mosquitto (``apt-get install mosquitto``; ``/usr/sbin/mosquitto`` is found too) and
    paho-mqtt (a fleetmind dependency).
"""

from __future__ import annotations

import argparse
from typing import Any

from _fleet_faults_report import _fmt, machine_info, render, summarise
from _fleet_faults_run import run_cli, run_in_process
from _fleet_faults_setup import (
    DEAD_AFTER_S,
    ENDS_BEFORE_FAULT,
    HEARTBEAT_S,
    JITTER_S,
    LIMIT_S,
    ONE_AGENT,
    SLOTS,
    SUBTASKS,
    THREE_AGENTS,
)
from _fleet_faults_trials import FAULTS, Trial, subtask_plan
from _harness import (
    _progress,
    benchmark_parser,
    comma_list,
    require_fleetmind_cli,
    require_mosquitto,
    run_cleaned_up,
    write_json,
)


async def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    machine = machine_info()
    chosen = [f for f in FAULTS if not args.only or f.key in args.only]
    needed = {f.baseline for f in chosen}
    plan = [f for f in FAULTS if f in chosen or f.key in needed]
    baselines: dict[str, float | None] = {}
    summaries = []
    for fault in plan:
        trials = []
        for number in range(1, args.trials + 1):
            try:
                if fault.cli:
                    trial = await run_cli(fault, number)
                else:
                    trial = await run_in_process(fault, number, args.outage_s)
            except Exception as exc:  # one broken trial is a finding, not the end of the run
                keys = [k for k, _, _ in subtask_plan(fault.agents)]
                trial = Trial(fault.key, number, "?", keys, status="error")
                trial.problems.append(f"the trial failed: {type(exc).__name__}: {exc}")
            _progress(
                f"{fault.key} {number}/{args.trials}: {trial.status}, "
                f"{_fmt(trial.finish_s)} s, lost {len(trial.lost)}, ended twice "
                f"{len(trial.ended_twice)}, started twice {len(trial.started_twice)}, "
                f"detect {_fmt(trial.detection_s)} s {' '.join(trial.problems)}"
            )
            trials.append(trial)
        summary = summarise(fault, trials, baselines)
        if fault.is_baseline:
            baselines[fault.key] = summary["finish_s_p50"]
            summary["vs_fault_free"] = 1.0 if summary["finish_s_p50"] else None
        summaries.append(summary)
    return {
        "benchmark": "fleet_faults",
        "machine": machine,
        "settings": {
            "trials": args.trials,
            "quick": args.quick,
            "outage_s": args.outage_s,
            "subtasks": {"one_agent": SUBTASKS[ONE_AGENT], "three_agents": SUBTASKS[THREE_AGENTS]},
            "hold_s": [0.3, 1.0],
            "slots_per_agent_per_device": SLOTS,
            "heartbeat_s": HEARTBEAT_S,
            "dead_after_s": DEAD_AFTER_S,
            "ends_before_fault": ENDS_BEFORE_FAULT,
            "injection_jitter_s": [0.0, JITTER_S],
            "limit_s": LIMIT_S,
        },
        "goal": "100% completion, 0 lost, 0 ended twice (saved results run again), every fault",
        "faults": summaries,
    }


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser(__doc__, "2 trials, 10 s outage")
    parser.add_argument("--trials", type=int, help="trials per fault (default 10; quick 2)")
    parser.add_argument("--outage-s", type=float, help="broker outage (default 60; quick 10)")
    parser.add_argument(
        "--only",
        type=comma_list,
        help="comma-separated faults to run (their fault-free baseline runs too): "
        + ", ".join(f.key for f in FAULTS),
    )
    args = parser.parse_args(argv)
    args.trials = args.trials or (2 if args.quick else 10)
    args.outage_s = args.outage_s if args.outage_s is not None else (10.0 if args.quick else 60.0)
    unknown = set(args.only or ()) - {f.key for f in FAULTS}
    if unknown:
        parser.error(f"unknown fault(s): {', '.join(sorted(unknown))}")
    require_fleetmind_cli()
    require_mosquitto()
    document = run_cleaned_up(benchmark(args))
    print(render(document))
    write_json(args.json, document)


if __name__ == "__main__":
    main()
