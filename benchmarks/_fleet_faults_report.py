"""The figures of benchmarks/fleet_faults.py: a summary per fault, the table and its notes, and
where the figures were taken."""

from __future__ import annotations

import statistics
from collections import Counter
from importlib.metadata import version as package_version
from typing import Any

from _fleet_faults_setup import (
    DEAD_AFTER_S,
    DEVICES,
    HEARTBEAT_S,
    ONE_AGENT,
    SLOTS,
    SUBTASKS,
    THREE_AGENTS,
)
from _fleet_faults_trials import Fault, Trial, _round
from _harness import _table, machine_base, mosquitto_version


def summarise(
    fault: Fault, trials: list[Trial], baselines: dict[str, float | None]
) -> dict[str, Any]:
    done = [t for t in trials if t.status == "done"]
    finish = [t.finish_s for t in done if t.finish_s is not None]
    detect = [t.detection_s for t in trials if t.detection_s is not None]
    finish_p50 = statistics.median(finish) if finish else None
    base = baselines.get(fault.baseline)
    summary = {
        "fault": fault.key,
        "title": fault.title,
        "trials": len(trials),
        "hit": sum(t.hit for t in trials),
        "completed": len(done),
        "completion_pct": round(100.0 * len(done) / len(trials), 1) if trials else None,
        "lost": sum(len(t.lost) for t in trials),
        "ended_twice": sum(len(t.ended_twice) for t in trials),
        "started_twice": sum(len(t.started_twice) for t in trials),
        "stale_started": sum(len(t.stale_started) for t in trials),
        "output_mismatches": sum(len(t.output_mismatches) for t in trials),
        "started_again_after_kill": sum(len(t.started_after_kill) for t in trials),
        "detection_s_p50": _round(statistics.median(detect)) if detect else None,
        "detection_s_max": _round(max(detect)) if detect else None,
        "detected": len(detect),
        "detection_via": dict(
            Counter((t.detection_via or "").split(" (")[0] for t in trials if t.detection_via)
        ),
        "back_online_s_p50": _median([t.back_online_s for t in trials]),
        "declared_dead_s_p50": _median([t.declared_dead_s for t in trials]),
        "finish_s_p50": _round(finish_p50),
        "finish_s_max": _round(max(finish)) if finish else None,
        "vs_fault_free": round(finish_p50 / base, 2) if finish_p50 and base else None,
        "goal_met": bool(trials) and all(t.goal_met for t in trials),
        "trials_detail": [t.to_json() for t in trials],
    }
    return summary


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return _round(statistics.median(present)) if present else None


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def render(document: dict[str, Any]) -> str:
    machine, settings = document["machine"], document["settings"]
    lines = [
        f"Fleet under faults: Mosquitto {machine['mosquitto']} (persistent, loopback), fleetmind "
        f"{machine['fleetmind']}, python {machine['python']}, {machine['cpu_count']} CPU(s), "
        f"load average at start {machine['load_average']}",
        f"Task: {SUBTASKS[ONE_AGENT]} subtasks on agent `worker` ({SUBTASKS[THREE_AGENTS]} over "
        f"worker/sorter/packer for fault 6), each holding 0.3-1.0 s; devices "
        f"{' and '.join(DEVICES)}, {SLOTS} slots per agent per device, heartbeat "
        f"{HEARTBEAT_S:g} s; in-process "
        f"MqttFleetLink(dead_after_s={DEAD_AFTER_S:g}); CLI run/resume with the default (three "
        f"heartbeats); {settings['trials']} trials per row, outage {settings['outage_s']:g} s",
        "Goal for every fault: 100% completion, 0 lost, 0 saved results run again (ended twice).",
        "",
    ]
    rows = [
        (
            "fault",
            "trials",
            "hit",
            "completion %",
            "lost",
            "ended twice",
            "started twice",
            "detect p50 s",
            "finish p50 s",
            "vs fault-free",
            "goal",
        )
    ]
    for s in document["faults"]:
        baseline = s["fault"].startswith("fault-free")
        rows.append(
            (
                s["title"],
                str(s["trials"]),
                "-" if baseline else str(s["hit"]),
                _fmt(s["completion_pct"], ".1f"),
                str(s["lost"]),
                str(s["ended_twice"]),
                str(s["started_twice"]),
                _fmt(s["detection_s_p50"]),
                _fmt(s["finish_s_p50"]),
                _fmt(s["vs_fault_free"]),
                ("met" if s["goal_met"] else "NOT met"),
            )
        )
    lines += _table(rows, indent="  ")
    notes = []
    for s in document["faults"]:
        extra = []
        if s["detected"] or s["back_online_s_p50"] is not None:
            via = ", ".join(f"{k} x{n}" for k, n in s["detection_via"].items()) or "-"
            extra.append(
                f"detected in {s['detected']}/{s['trials']} (max {_fmt(s['detection_s_max'])} s, "
                f"first sign: {via})"
            )
        if s["back_online_s_p50"] is not None:
            extra.append(f"back online p50 {_fmt(s['back_online_s_p50'])} s after the kill")
        if s["declared_dead_s_p50"] is not None:
            extra.append(f"declared dead p50 {_fmt(s['declared_dead_s_p50'])} s after the kill")
        if s["fault"] == "device-slow":
            extra.append(f"stale work started on the returned device: {s['stale_started']}")
        if s["fault"] == "orchestrator-kill":
            extra.append(
                f"outputs not as computed: {s['output_mismatches']}; started again after the "
                f"kill: {s['started_again_after_kill']}"
            )
        if s["finish_s_max"] is not None and not s["fault"].startswith("fault-free"):
            extra.append(f"finish max {_fmt(s['finish_s_max'])} s")
        problems = Counter(p for t in s["trials_detail"] for p in t["problems"])
        extra += [f"{n}x {p}" for p, n in problems.items()]
        if extra:
            notes.append(f"  {s['title']}: " + "; ".join(extra))
    if notes:
        lines += ["", "Notes:", *notes]
    failures = [(s, t) for s in document["faults"] for t in s["trials_detail"] if not t["goal_met"]]
    if failures:
        lines += ["", "Where the goal was not met:"]
        for s, t in failures:
            lines.append(
                f"  {s['title']}, trial {t['trial']} (task {t['task_id']}): status {t['status']}"
                f", fault at {_fmt(t['fault_at_s'])} s holding "
                f"{', '.join(t['held_at_fault']) or '-'}"
            )
            for label in ("lost", "ended_twice", "output_mismatches"):
                if t[label]:
                    lines.append(f"    {label.replace('_', ' ')}: {', '.join(t[label])}")
            evidence = t["evidence"]
            for key, error in evidence["errors"].items():
                lines.append(f"    error {key}: {error[:200]}")
            for key, facts in evidence["keys"].items():
                lines.append(
                    f"    {key} audit ({evidence['times']}): {'; '.join(facts['audit']) or 'none'}"
                )
                lines.append(f"    {key} task log: {'; '.join(facts['task_log']) or 'none'}")
            for line in evidence["orchestrator_log"][-8:]:
                lines.append(f"    log: {line[:220]}")
    return "\n".join(lines)


def machine_info() -> dict[str, Any]:
    return {
        **machine_base(),
        "fleetmind": package_version("fleetmind"),
        "paho_mqtt": package_version("paho-mqtt"),
        "mosquitto": mosquitto_version(),
    }
