"""The MQTT fleet on a real Mosquitto: round trip, throughput, and the device runtime's footprint.

What is measured
    The benchmark starts its own Mosquitto on a free loopback port (anonymous logins, a
    temporary config) and stops it at the end, whatever happens. That broker is tuned with two
    lines, each for a reason found while writing this benchmark:

      - ``set_tcp_nodelay true``: Mosquitto's default leaves Nagle's algorithm on for the
        sockets it writes, which alone adds about 40 ms to every QoS 1 round trip and would
        bury everything else measured here;
      - ``max_queued_messages 100000``: with the default (1,000 queued + 20 in flight per
        client) Mosquitto drops QoS 1 messages for the orchestrator when it falls behind — the
        results of a 2,000-subtask fan-out (those subtasks then run forever) and the retained
        cards and presence of more than about 1,000 agents and devices when it subscribes.

    A second Mosquitto with the default config (what ``fleetmind broker config`` writes today,
    less its logins) is started for a short comparison: round trips, then one fan-out over
    1,000 devices with a time limit, whose lost results are counted instead of waited for.

    Client sockets matter as much: paho-mqtt does not set ``TCP_NODELAY`` by itself (fleetmind's
    ``MqttConnection`` does, when paho opens a socket). fleetmind's round trip is also measured
    with ``TCP_NODELAY`` forced on every socket paho opens (a patch of paho's
    ``Client._create_socket`` applied by this benchmark inside the orchestrator and the device
    process; fleetmind's code is unchanged), which should match the row as shipped.

    1. Round trip. One device process (``fleetmind agent serve`` with a tiny agents file, so it
       runs on its own interpreter and event loop) hosts an ``echo`` agent. The benchmark
       process runs an in-process ``Fleet`` (its default router) joined to the broker by an
       ``MqttFleetLink`` and runs one-subtask graphs one after the other (the subtask names the
       echo agent by id; its input is a 64-character string). Two figures per run:

         - ``fleetmind_rtt``: wall time of ``await fleet.run(graph)``, submit to result — the
           engine, the store, routing, the MQTT dispatch and the device's work;
         - ``fleetmind_dispatch``: wall time of ``MqttFleetLink.dispatch`` alone (what
           ``DeviceAgent.run`` awaits: build the dispatch envelope, publish it with QoS 1, wait
           for the device's result and parse it), timed by a subclass that wraps it.

       The baseline, in the same run and on the same broker: a bare paho-mqtt ping-pong. Two
       paho clients with threaded network loops and MQTT 5, QoS 1 both ways; the responder is a
       separate process that answers every ping from its network thread. Pings and pongs are
       as large as the dispatch and result envelopes fleetmind sent (sniffed from the broker
       during warm-up). The main thread publishes a ping and waits on a ``threading.Event``
       that the pong sets. The bare ping-pong runs with ``TCP_NODELAY`` on both clients (the
       transport's floor: ``bare_rtt``) and with paho's default sockets.

       One more fleetmind variant (TCP_NODELAY) uses a second ``Fleet`` routed by
       ``SkillRouter`` over the same remote agent and link: that router has no ``prepare``
       step, so the engine skips the ``asyncio.to_thread`` hop it makes before scheduling a new
       graph with the default router; the difference is that hop's cost.

       Every variant gets 30 warm-up round trips; then 300 timed ones each (quick: 60) run in
       three interleaved blocks (bare, fleetmind, ..., bare, fleetmind, ...) so that noise
       from the shared machine falls on all alike. Objects that exist before timing are moved
       out of the cyclic garbage collector's reach (``gc.freeze()``); what the runs allocate is
       collected as usual. Reported: p50 and p99; ``ratio_p50`` = fleetmind as shipped p50 /
       bare p50 (goal: ``<= 1.5``), and ``ratio_nodelay_p50`` for fleetmind with TCP_NODELAY.
       Beside them, the CPU time one round trip cost in this process (``getrusage``, paho's
       threads included), in the process at the other end (device or responder) and in the
       broker (both ``/proc/<pid>/stat``, 10 ms ticks); it includes whatever else those
       processes do meanwhile (idle threads, heartbeats), which shows in the 44 ms variants.

    2. Throughput. Simulated devices are ``DeviceRuntime`` instances, many per process: four
       worker processes each run a share of them on one event loop (every runtime has its own
       MQTT connection and paho network thread, as a real device would). Each device hosts one
       no-op agent (``async def noop(n): return n``, ``max_concurrency=100``). Configurations:
       100 agents on 100 devices and 1,000 agents on 1,000 devices (1,001 MQTT connections),
       fleetmind as shipped, on the tuned broker (the default broker's fan-out is the
       comparison above). The orchestrator is a separate, fresh process (so its CPU time and
       peak RSS are its own): a ``Fleet`` and an ``MqttFleetLink`` that wait until every agent
       has joined, run one warm-up graph with one subtask per agent, then time a fan-out of
       2,000 independent subtasks (quick: 200), each naming an agent by id, round-robin, from
       submit to result (``fleet.submit(graph)``, then ``handle.result()``: the engine that
       ``fleet.run`` drives, but a run whose results were lost can be stopped at a time limit).
       Reported per configuration, for the best of three runs (quick: one): subtasks/s, the
       orchestrator's CPU seconds during the run (``getrusage(RUSAGE_SELF)`` user+sys, paho's
       thread included), its peak RSS over its whole life (``ru_maxrss``), the CPU seconds the
       broker and the device workers used meanwhile (``/proc/<pid>/stat``), and how long the
       agents took to join the fleet once the orchestrator had connected.

    3. The device runtime's footprint. ``fleetmind agent serve AGENTS.py --broker ...`` is
       spawned three times (quick: once). Start-up is the wall time from spawning it until its
       agent's card (retained) reaches a paho subscriber that was listening beforehand: start-up
       to useful. RSS is ``VmRSS`` from ``/proc/<pid>/status`` once its presence says online,
       and again after the round trips of (1), which the last of them serves. Goals: under
       1.5 s and under 80 MB. A ``probe`` agent in the same file, dispatched once, answers
       which of torch, sentence_transformers, hnswlib, transformers, numpy and networkx the
       device process has imported.

Baselines
    The bare paho ping-pong above. /work/shared/ENVIRONMENT.md gives 0.2-0.25 ms for a paho
    loopback round trip and 5-6k msg/s at QoS 1 on this kind of machine.

How to run
    .venv/bin/python benchmarks/mqtt_fleet.py                # full run, about 2-3 min
    .venv/bin/python benchmarks/mqtt_fleet.py --quick        # fewer samples and subtasks
    .venv/bin/python benchmarks/mqtt_fleet.py --json out.json
    .venv/bin/python benchmarks/mqtt_fleet.py --profile      # cProfile the round trip instead

    Needs Mosquitto (``apt-get install mosquitto``; ``/usr/sbin/mosquitto`` is found too).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import tempfile
from pathlib import Path
from typing import Any

from _harness import _progress, _stop, benchmark_parser, profile_calls, profile_report, write_json
from _mqtt_fleet_report import machine_info, render
from _mqtt_fleet_rtt import (
    Device,
    bare_responder,
    device_cli,
    fleet_round_trip,
    measure_default_broker,
    measure_round_trips,
    probe_device,
    spawn_device,
    summary_ms,
)
from _mqtt_fleet_setup import (
    AGENTS_FILE,
    GOAL_DEVICE_RSS_MB,
    GOAL_DEVICE_START_S,
    GOAL_RATIO,
    HEAVY_MODULES,
    WARMUP,
    Broker,
    mosquitto,
    rss_mb,
)
from _mqtt_fleet_throughput import measure_throughput, orchestrate, serve_devices

# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------


def _raise_fd_limit() -> None:
    """A thousand MQTT connections need file descriptors: raise the soft limit to the hard."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


async def benchmark(args: argparse.Namespace, broker: Broker, tmp: Path) -> dict[str, Any]:
    """Every measurement; returns the JSON document."""
    machine = machine_info(broker)
    samples = 60 if args.quick else 300
    rounds = 1 if args.quick else 3
    starts = 1 if args.quick else 3
    subtasks = 200 if args.quick else 2000
    repeats = 1 if args.quick else 3
    default_samples = 20 if args.quick else 60

    (tmp / "agents.py").write_text(AGENTS_FILE)
    devices: list[Device] = []
    try:
        for i in range(starts):
            _progress(f"device start-up {i + 1}/{starts}")
            if devices:
                _stop(devices[-1].process)
            devices.append(spawn_device(tmp, broker.address, f"dev-{i}"))
        shipped = devices[-1]
        probe = await probe_device(broker.address, shipped)
        _progress(f"round trips: {samples} of each variant")
        rtt = await measure_round_trips(broker, tmp, shipped, samples, rounds)
        rss_after = rss_mb(shipped.process.pid)
    finally:
        for started in devices:
            _stop(started.process)
    _progress(f"round trips on a default-config Mosquitto: {default_samples} of each")
    default = await measure_default_broker(tmp, default_samples, subtasks, 20 if args.quick else 30)

    throughput = []
    for n_devices, per_device in ((100, 1), (1000, 1)):
        _progress(f"throughput: {n_devices} devices x {per_device} agent, {subtasks} subtasks")
        throughput.append(
            await measure_throughput(broker, tmp, n_devices, per_device, subtasks, repeats, 120)
        )

    taken = rtt["samples_s"]
    figures: dict[str, Any] = {}
    for key, name in (
        ("fleetmind_rtt", "fleetmind"),
        ("fleetmind_dispatch", "fleetmind_dispatch"),
        ("fleetmind_engine", "fleetmind_engine"),
        ("bare_rtt", "bare"),
        ("bare_paho_defaults_rtt", "bare_paho_defaults"),
        ("fleetmind_nodelay_rtt", "fleetmind_nodelay"),
        ("fleetmind_nodelay_dispatch", "fleetmind_nodelay_dispatch"),
        ("fleetmind_nodelay_engine", "fleetmind_nodelay_engine"),
        ("fleetmind_nodelay_skill_router_rtt", "fleetmind_nodelay_skill_router"),
    ):
        ms = summary_ms(taken[name])
        figures[f"{key}_ms_p50"], figures[f"{key}_ms_p99"] = ms["p50"], ms["p99"]
    bare = figures["bare_rtt_ms_p50"], figures["bare_rtt_ms_p99"]
    ratio_p50 = figures["fleetmind_rtt_ms_p50"] / bare[0]
    ratio_nodelay_p50 = figures["fleetmind_nodelay_rtt_ms_p50"] / bare[0]
    default_bare = summary_ms(default["samples_s"]["bare_paho_defaults"])
    default_fleet = summary_ms(default["samples_s"]["fleetmind"])
    start_samples = [d.start_s for d in devices]
    return {
        **figures,
        "ratio_p50": ratio_p50,
        "ratio_p99": figures["fleetmind_rtt_ms_p99"] / bare[1],
        "ratio_nodelay_p50": ratio_nodelay_p50,
        "ratio_nodelay_p99": figures["fleetmind_nodelay_rtt_ms_p99"] / bare[1],
        "dispatch_ratio_nodelay_p50": figures["fleetmind_nodelay_dispatch_ms_p50"] / bare[0],
        "rtt_samples": len(taken["fleetmind"]),
        "rtt_cpu_us_per_round_trip": rtt["cpu_us"],
        "dispatch_bytes": rtt["sizes"]["dispatch"],
        "result_bytes": rtt["sizes"]["result"],
        "broker_config": broker.config,
        "default_broker": {
            "config": default["config"],
            "samples": len(default["samples_s"]["fleetmind"]),
            "bare_rtt_ms_p50": default_bare["p50"],
            "bare_rtt_ms_p99": default_bare["p99"],
            "fleetmind_rtt_ms_p50": default_fleet["p50"],
            "fleetmind_rtt_ms_p99": default_fleet["p99"],
            "fanout": default["fanout"],
        },
        "devices": [t.to_json() for t in throughput],
        "device_rss_mb": shipped.rss_mb,
        "device_rss_after_rtt_mb": rss_after,
        "device_start_s": statistics.median(start_samples),
        "device_start_samples_s": start_samples,
        "device_rss_samples_mb": [d.rss_mb for d in devices],
        "device_imports": probe["loaded"],
        "device_imports_heavy": any(probe["loaded"][m] for m in HEAVY_MODULES),
        "device_module_count": probe["module_count"],
        "goals": {
            "ratio_p50_max": GOAL_RATIO,
            "ratio_p50_met": ratio_p50 <= GOAL_RATIO,
            "ratio_nodelay_p50_met": ratio_nodelay_p50 <= GOAL_RATIO,
            "device_rss_mb_max": GOAL_DEVICE_RSS_MB,
            "device_rss_met": shipped.rss_mb < GOAL_DEVICE_RSS_MB,
            "device_start_s_max": GOAL_DEVICE_START_S,
            "device_start_met": statistics.median(start_samples) < GOAL_DEVICE_START_S,
        },
        "samples_ms": {name: [s * 1e3 for s in values] for name, values in taken.items()},
        "machine": machine,
    }


async def profile_round_trip(args: argparse.Namespace, broker: Broker, tmp: Path) -> None:
    """cProfile of the orchestrator side of the round trip, with TCP_NODELAY on its sockets.

    With Nagle on, the profile would only show the event loop waiting; with TCP_NODELAY what
    is left is fleetmind's own work (the device runs in another process, unprofiled).
    """
    samples = 100 if args.quick else 500
    (tmp / "agents.py").write_text(AGENTS_FILE)
    device = spawn_device(tmp, broker.address, "dev-profile", nodelay=True)
    try:
        async with fleet_round_trip(
            broker.address, device, "fm-bench-profile", nodelay=True
        ) as trip:
            for _ in range(WARMUP):
                await trip.once()
            profiler, elapsed = await profile_calls(trip.once, samples)
    finally:
        _stop(device.process)
    print(profile_report(profiler, 25, 30))
    print(
        f"{samples} round trips under the profiler: {elapsed:.3f} s, "
        f"{elapsed / samples * 1e3:.3f} ms each"
    )


def run_role(role: str, role_args: dict[str, Any]) -> None:
    """This script as one of its helper processes."""
    if role == "bare-responder":
        bare_responder(**role_args)
    elif role == "device-cli":
        device_cli(**role_args)
    elif role == "device-worker":
        _raise_fd_limit()
        asyncio.run(serve_devices(**role_args))
    elif role == "orchestrator":
        _raise_fd_limit()
        print(json.dumps(asyncio.run(orchestrate(**role_args))), flush=True)
    else:
        raise SystemExit(f"unknown role {role!r}")


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser(__doc__, "fewer samples and subtasks")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile the round trip's orchestrator side"
    )
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--role-args", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role:
        run_role(args.role, json.loads(args.role_args))
        return
    _raise_fd_limit()
    with (
        tempfile.TemporaryDirectory(prefix="fleetmind-mqtt-bench-") as tmp,
        mosquitto(Path(tmp)) as broker,
    ):
        if args.profile:
            asyncio.run(profile_round_trip(args, broker, Path(tmp)))
            return
        document = asyncio.run(benchmark(args, broker, Path(tmp)))
    print(render(document))
    write_json(args.json, document)


if __name__ == "__main__":
    main()
