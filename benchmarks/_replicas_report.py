"""The report of benchmarks/replicas.py: its tables as text, and where the figures were taken."""

from __future__ import annotations

import statistics
from typing import Any

from _harness import _table, _version, machine_base, mosquitto_version

CPU_PARTS = ("replicas", "postgres", "mosquitto", "devices", "submitters")


def machine_info(postgres_version: str) -> dict[str, Any]:
    """Where the figures were taken."""
    return {
        **machine_base(),
        "fleetmind": _version("fleetmind"),
        "psycopg": _version("psycopg"),
        "postgresql": postgres_version,
        "mosquitto": mosquitto_version(),
    }


def _s(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _throughput(section: dict[str, Any]) -> list[str]:
    rows = section["rows"]
    first = rows[0]
    lines = [
        f"1. Throughput: {first['tasks']} tasks x {first['subtasks_per_task']} quick subtasks "
        "submitted over the broker at once (first submit to last result), replicas = "
        "`fleetmind orchestrator serve --store postgresql://...` processes; best of "
        f"{len(first['runs'])} round(s)",
    ]
    table: list[tuple[str, ...]] = [
        (
            "replicas",
            "subtasks/s",
            "wall s",
            "CPU s: replicas",
            "PostgreSQL",
            "Mosquitto",
            "devices",
            "submitters",
            "CPU ms/subtask: replicas",
            "all",
            "cores busy",
            "tasks by replica",
        )
    ]
    for row in rows:
        cpu = row["cpu_s"]
        table.append(
            (
                str(row["replicas"]),
                f"{row['subtasks_per_s']:,.0f}",
                _s(row["wall_s"]),
                *(_s(cpu[part]) for part in CPU_PARTS),
                _s(row["replicas_cpu_ms_per_subtask"]),
                _s(row["all_cpu_ms_per_subtask"]),
                f"{row['cpu_busy']:.0%}",
                " ".join(f"{k}:{v}" for k, v in row["tasks_by_replica"].items()),
            )
        )
    lines += _table(table, indent="  ")
    lines.append(
        f"  on this {section['cpu_count']}-CPU machine the replicas, both devices, Mosquitto, "
        "PostgreSQL and the submitting clients share the same cores: past the cores, more "
        "replicas show what they cost (processes, connections, leases), not a speed-up; "
        "replicas add throughput where they have cores (or machines) of their own. cores busy: "
        "all the CPU seconds over wall seconds x CPUs; submitters: this process's clients"
    )
    return lines


def _store(section: dict[str, Any]) -> list[str]:
    lines = [
        f"2. Store cost per subtask, in one process: a Fleet with a fast local agent, "
        f"{section['tasks']} tasks x {section['subtasks_per_task']} subtasks, best round",
    ]
    table: list[tuple[str, ...]] = [
        (
            "store",
            "ms/subtask at once",
            "subtasks/s",
            "transactions",
            "writes",
            "ms/subtask one by one",
            "transactions",
            "writes",
        )
    ]
    for variant in section["variants"]:
        row = [variant["label"]]
        for mode in ("at_once", "one_by_one"):
            figures = variant[mode]
            counts = figures["store_counts"]
            row.append(f"{figures['ms_per_subtask']:.3f}")
            if mode == "at_once":
                row.append(f"{figures['subtasks_per_s']:,.0f}")
            row += [str(counts.get("transactions", "-")), str(counts.get("writes", "-"))]
        table.append(tuple(row))
    lines += _table(table, indent="  ")
    lines.append(
        "  at once: every task submitted together (PostgreSQL commits the writes of many tasks "
        "in one transaction); one by one: each task waits for the one before; replica lease: "
        f"Fleet(replica=Replica(..., lease_s={section['lease_s']:g})), every write fenced by its "
        "epoch; transactions and writes: PostgresStore.stats over the round (group commit; "
        "task creation not included), '-' where a store keeps no counts"
    )
    return lines


def _takeover(section: dict[str, Any]) -> list[str]:
    trials = section["trials"]
    lines = [
        f"3. Takeover: two replicas with --lease {section['lease_s']:g}; a task whose device "
        f"subtask holds {section['hold_s']:g} s; its owner SIGKILLed while the device runs it "
        f"({len(trials)} trial(s), seconds from the SIGKILL)",
    ]
    table: list[tuple[str, ...]] = [
        (
            "trial",
            "lease s",
            "killed",
            "taken over by",
            "epoch",
            "resumed s",
            "first event s",
            "device done s",
            "task done s",
            "status",
            "device runs",
        )
    ]
    for t in trials:
        table.append(
            (
                t["trial"],
                f"{section['lease_s']:g}",
                t["killed"],
                str(t["new_owner"]),
                f"{t['killed_epoch']} -> {t['new_epoch']}",
                _s(t["resumed_s"]),
                _s(t["first_event_s"]),
                _s(t["hold_ended_s"]),
                _s(t["done_s"]),
                t["status"],
                str(t["hold_started_on_device"]),
            )
        )
    resumed = [t["resumed_s"] for t in trials if t["resumed_s"] is not None]
    done = [t["done_s"] for t in trials]
    if len(trials) > 1:
        table.append(
            (
                "median",
                f"{section['lease_s']:g}",
                "",
                "",
                "",
                _s(statistics.median(resumed)) if resumed else "-",
                "",
                "",
                _s(statistics.median(done)),
                "",
                "",
            )
        )
    lines += _table(table, indent="  ")
    lines.append(
        "  resumed: the new owner's task_resumed entry in the store; first event: the first event "
        "of the task a `submit` client got after the kill; device done: the slow agent ended "
        "its subtask; task done: the client got the result (from the new owner); device runs: "
        "how often a device started the slow subtask (1: the new owner took the running "
        "subtask's result over instead of dispatching it again)"
    )
    return lines


def render(document: dict[str, Any]) -> str:
    """The figures as plain, aligned text tables."""
    machine = document["machine"]
    lines = [
        f"Orchestrator replicas on PostgreSQL {machine['postgresql']} (psycopg "
        f"{machine['psycopg']}) and Mosquitto {machine['mosquitto']}, loopback; python "
        f"{machine['python']}, {machine['cpu_count']} CPU(s), load average at start "
        f"{machine['load_average']}",
    ]
    for key, part in (("throughput", _throughput), ("store", _store), ("takeover", _takeover)):
        if key in document:
            lines += ["", *part(document[key])]
    return "\n".join(lines)
