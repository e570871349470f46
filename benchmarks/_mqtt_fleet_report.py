"""The report of benchmarks/mqtt_fleet.py: its tables as text, and where the figures were taken."""

from __future__ import annotations

from importlib.metadata import version as package_version
from typing import Any

from _harness import _table, machine_base
from _mqtt_fleet_setup import (
    DEVICE_WORKERS,
    GOAL_DEVICE_RSS_MB,
    GOAL_DEVICE_START_S,
    GOAL_RATIO,
    Broker,
)


def _goal(ok: bool) -> str:
    return "met" if ok else "NOT met"


def render(document: dict[str, Any]) -> str:
    """The figures as plain, aligned text tables."""
    d = document
    machine = d["machine"]
    lines = [
        f"MQTT fleet on Mosquitto {machine['mosquitto']} (loopback), paho-mqtt "
        f"{machine['paho_mqtt']}, python {machine['python']}, {machine['cpu_count']} CPU(s), "
        f"load average at start {machine['load_average']}",
        "",
        f"1. Round trip, ms: {d['rtt_samples']} sequential one-subtask tasks per row, echo agent "
        f"in another process (dispatch {d['dispatch_bytes']} B, result {d['result_bytes']} B)",
    ]

    cpu = d["rtt_cpu_us_per_round_trip"]

    def row(label: str, key: str, cpu_of: str | None = None) -> tuple[str, ...]:
        p50, p99 = d[f"{key}_ms_p50"], d[f"{key}_ms_p99"]
        versus = f"{p50 / d['bare_rtt_ms_p50']:.2f}" if cpu_of else ""
        spent = ""
        if cpu_of:
            parts = cpu[cpu_of]
            spent = f"{parts['local']:.0f} / {parts['remote']:.0f} / {parts['broker']:.0f}"
        return (label, f"{p50:.3f}", f"{p99:.3f}", versus, spent)

    default = d["default_broker"]
    lines += _table(
        [
            (
                "Mosquitto with set_tcp_nodelay true",
                "p50",
                "p99",
                "p50 / bare",
                "CPU µs/trip: here / other end / broker",
            ),
            row("bare paho, TCP_NODELAY on both clients (bare_rtt)", "bare_rtt", "bare"),
            row(
                "bare paho, paho's default sockets", "bare_paho_defaults_rtt", "bare_paho_defaults"
            ),
            row("fleetmind as shipped: await fleet.run(graph)", "fleetmind_rtt", "fleetmind"),
            row("  of which MqttFleetLink.dispatch", "fleetmind_dispatch"),
            row("  the rest: engine, store, routing", "fleetmind_engine"),
            row(
                "fleetmind + TCP_NODELAY on its sockets: fleet.run",
                "fleetmind_nodelay_rtt",
                "fleetmind_nodelay",
            ),
            row("  of which MqttFleetLink.dispatch", "fleetmind_nodelay_dispatch"),
            row("  the rest: engine, store, routing", "fleetmind_nodelay_engine"),
            row(
                "fleetmind + TCP_NODELAY, SkillRouter (no to_thread)",
                "fleetmind_nodelay_skill_router_rtt",
                "fleetmind_nodelay_skill_router",
            ),
            (f"Mosquitto's default config ({default['samples']} samples each)", "", "", "", ""),
            (
                "bare paho, paho's default sockets",
                f"{default['bare_rtt_ms_p50']:.3f}",
                f"{default['bare_rtt_ms_p99']:.3f}",
                "",
                "",
            ),
            (
                "fleetmind as shipped: await fleet.run(graph)",
                f"{default['fleetmind_rtt_ms_p50']:.3f}",
                f"{default['fleetmind_rtt_ms_p99']:.3f}",
                "",
                "",
            ),
        ],
        indent="  ",
    )
    lines += [
        f"  ratio_p50 (fleetmind as shipped / bare_rtt): {d['ratio_p50']:.2f}; goal <= "
        f"{GOAL_RATIO}: {_goal(d['ratio_p50'] <= GOAL_RATIO)}",
        f"  ratio_nodelay_p50 (fleetmind + TCP_NODELAY / bare_rtt): {d['ratio_nodelay_p50']:.2f}"
        f"; goal <= {GOAL_RATIO}: {_goal(d['ratio_nodelay_p50'] <= GOAL_RATIO)}",
        "",
        "2. Throughput: fan-out of independent subtasks, explicit agent ids round-robin, fleetmind "
        f"as shipped, best of {len(d['devices'][0]['runs'])} run(s)",
    ]
    rows: list[tuple[str, ...]] = [
        (
            "broker",
            "agents",
            "devices x agents",
            "subtasks",
            "subtasks/s",
            "orch CPU s",
            "orch CPU µs/subtask",
            "orch peak RSS MB",
            "broker CPU s",
            "device workers CPU s",
            "join s",
        )
    ]
    notes: list[str] = []
    for label, t in [("tuned broker", t) for t in d["devices"]] + [
        ("default broker", default["fanout"])
    ]:
        if t["stuck"] is not None:
            stuck = t["stuck"]
            notes.append(
                f"  ({len(notes) + 1}) {label}, {t['agents']:,} agents: the {stuck['graph']} graph "
                f"of {stuck['subtasks']:,} subtasks had {stuck['running']:,} still running "
                f"(their results never came) after the time limit; Mosquitto logged "
                f"{t['broker_drop_notices']} 'Outgoing messages are being dropped' notice(s)"
            )
            figures = [f"stuck ({len(notes)})"] + [""] * 5
        else:
            figures = [
                f"{t['subtasks_per_s']:,.0f}",
                f"{t['orchestrator_cpu_s']:.2f}",
                f"{t['orchestrator_cpu_us_per_subtask']:,.0f}",
                f"{t['orchestrator_rss_mb']:.0f}",
                f"{t['broker_cpu_s']:.2f}",
                f"{t['device_workers_cpu_s']:.2f}",
            ]
        rows.append(
            (
                label,
                f"{t['agents']:,}",
                f"{t['devices']:,} x {t['agents_per_device']}",
                f"{t['subtasks']:,}",
                *figures,
                f"{t['join_s']:.2f}",
            )
        )
    lines += _table(rows, indent="  ")
    lines += notes
    lines.append(
        f"  one MQTT connection per device (a DeviceRuntime), {DEVICE_WORKERS} device worker "
        "processes, the orchestrator in its own process; join s = orchestrator connected until "
        "every agent was in the fleet; the default broker's fan-out runs once"
    )
    loaded = ", ".join(f"{m} {'YES' if v else 'no'}" for m, v in d["device_imports"].items())
    lines += [
        "",
        "3. Device runtime: `fleetmind agent serve` with a tiny agents file (echo + probe)",
        f"  start-up, spawn -> card at a subscriber: {d['device_start_s']:.3f} s (median of "
        f"{len(d['device_start_samples_s'])}: "
        + ", ".join(f"{s:.3f}" for s in d["device_start_samples_s"])
        + f"); goal < {GOAL_DEVICE_START_S} s: {_goal(d['goals']['device_start_met'])}",
        f"  RSS once serving: {d['device_rss_mb']:.1f} MB; after the round trips: "
        f"{d['device_rss_after_rtt_mb']:.1f} MB; goal < {GOAL_DEVICE_RSS_MB:.0f} MB: "
        f"{_goal(d['goals']['device_rss_met'])}",
        f"  imported by the device process ({d['device_module_count']} modules): {loaded}",
    ]
    return "\n".join(lines)


def machine_info(broker: Broker) -> dict[str, Any]:
    """Where the figures were taken."""
    return {
        **machine_base(),
        "fleetmind": package_version("fleetmind"),
        "paho_mqtt": package_version("paho-mqtt"),
        "mosquitto": broker.version,
    }
