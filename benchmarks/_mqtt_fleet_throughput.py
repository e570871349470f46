"""Throughput in benchmarks/mqtt_fleet.py: many simulated devices in worker processes, and a
fresh orchestrator process that times a fan-out of independent subtasks over them."""

from __future__ import annotations

import asyncio
import gc
import json
import resource
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _harness import _role_command, _tail
from _mqtt_fleet_setup import DEVICE_WORKERS, SCRIPT, Broker, cpu_s

from fleetmind import Fleet, TaskGraph, agent
from fleetmind.agents import Agent
from fleetmind.agents.remote import DeviceRuntime
from fleetmind.protocols._mqtt import BrokerAddress
from fleetmind.serve import MqttFleetLink

# ---------------------------------------------------------------------------------------------
# 2. Throughput with many simulated devices
# ---------------------------------------------------------------------------------------------


def noop_agent(agent_id: str) -> Agent:
    """A no-op agent: returns its input."""

    @agent(id=agent_id, max_concurrency=100)
    async def noop(n: int) -> int:
        return n

    return noop


def agent_ids(devices: int, agents_per_device: int) -> list[str]:
    """The simulated agents' ids, device by device."""
    return [f"noop-{d}-{k}" for d in range(devices) for k in range(agents_per_device)]


async def serve_devices(
    port: int, fleet: str, first: int, count: int, agents_per_device: int
) -> None:
    """Run ``count`` device runtimes on this event loop until SIGTERM (a device worker)."""
    address = BrokerAddress("127.0.0.1", port)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    runtimes = [
        DeviceRuntime(
            f"sim-{d}",
            [noop_agent(f"noop-{d}-{k}") for k in range(agents_per_device)],
            address,
            fleet=fleet,
        )
        for d in range(first, first + count)
    ]
    async with asyncio.TaskGroup() as tasks:
        serving = []
        # Connect in batches: a thousand simultaneous CONNECTs overflow the listen backlog.
        for start in range(0, len(runtimes), 25):
            batch = runtimes[start : start + 25]
            serving += [tasks.create_task(r.run()) for r in batch]
            await asyncio.gather(*(r.ready.wait() for r in batch))
        print("ready", flush=True)
        await stop.wait()
        for task in serving:
            task.cancel()


async def _run_within(fleet: Fleet, graph: TaskGraph, timeout_s: float) -> tuple[float | None, Any]:
    """Submit a graph and wait for it; ``(None, counts)`` if it is still running at the limit.

    A result the broker dropped leaves its subtask running forever (the device is alive, so
    nothing fails over): the limit turns that into a figure instead of a hung benchmark.
    """
    start = time.perf_counter()
    handle = fleet.submit(graph)
    try:
        result = await asyncio.wait_for(asyncio.shield(handle.result()), timeout_s)
    except TimeoutError:
        counts = handle.graph.counts()
        await handle.cancel("benchmark time limit")
        return None, counts
    return time.perf_counter() - start, result


async def orchestrate(
    port: int,
    fleet_name: str,
    devices: int,
    agents_per_device: int,
    subtasks: int,
    repeats: int,
    timeout_s: float,
    broker_pid: int,
    worker_pids: list[int],
) -> dict[str, Any]:
    """The orchestrator process of the throughput measurement; returns its figures."""
    ids = agent_ids(devices, agents_per_device)
    fleet = Fleet()
    address = BrokerAddress("127.0.0.1", port)
    graph = TaskGraph(f"fanout-{subtasks}")
    for i in range(subtasks):
        graph.add_subtask(f"s{i}", agent=ids[i % len(ids)], inputs={"n": i})
    warmup = TaskGraph("warmup")
    for i, agent_id in enumerate(ids):
        warmup.add_subtask(f"w{i}", agent=agent_id, inputs={"n": i})
    expected = {f"s{i}": i for i in range(subtasks)}
    runs: list[dict[str, float]] = []
    stuck: dict[str, Any] | None = None
    async with (
        MqttFleetLink(
            fleet, address, fleet_name=fleet_name, client_id=f"fm-bench-{fleet_name}"
        ) as link,
        fleet,
    ):
        start = time.perf_counter()
        await link.wait_for_agents(*ids, timeout_s=180)
        join_s = time.perf_counter() - start
        wall, outcome = await _run_within(fleet, warmup, timeout_s)
        if wall is None:
            stuck = {"graph": "warm-up", "subtasks": len(ids), **outcome}
        elif not outcome.ok:
            errors = list(outcome.errors.items())[:3]
            raise AssertionError(f"warm-up ended {outcome.status}: {errors}")
        for _ in range(repeats if stuck is None else 0):
            gc.collect()
            before = resource.getrusage(resource.RUSAGE_SELF)
            broker_before = cpu_s(broker_pid)
            workers_before = sum(cpu_s(pid) for pid in worker_pids)
            wall, outcome = await _run_within(fleet, graph, timeout_s)
            after = resource.getrusage(resource.RUSAGE_SELF)
            if wall is None:
                stuck = {"graph": "fan-out", "subtasks": subtasks, **outcome}
                break
            if outcome.outputs != expected:
                errors = list(outcome.errors.items())[:3]
                raise AssertionError(f"fan-out ended {outcome.status}: {errors}")
            runs.append(
                {
                    "wall_s": wall,
                    "orchestrator_cpu_s": (after.ru_utime + after.ru_stime)
                    - (before.ru_utime + before.ru_stime),
                    "broker_cpu_s": cpu_s(broker_pid) - broker_before,
                    "devices_cpu_s": sum(cpu_s(pid) for pid in worker_pids) - workers_before,
                }
            )
        ignored = len(link.ignored)
        dropped = link.connection.dropped
    return {
        "join_s": join_s,
        "runs": runs,
        "stuck": stuck,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "ignored": ignored,
        "dropped": dropped,
    }


@dataclass
class Throughput:
    """One throughput configuration's figures."""

    devices: int
    agents_per_device: int
    subtasks: int
    devices_ready_s: float
    join_s: float
    runs: list[dict[str, float]]
    stuck: dict[str, Any] | None
    """When a run did not finish in time: which graph, and its subtasks' states then."""
    broker_drop_notices: int
    """Mosquitto's "Outgoing messages are being dropped" log lines meanwhile."""
    peak_rss_mb: float
    ignored: int
    dropped: int

    def to_json(self) -> dict[str, Any]:
        best = min(self.runs, key=lambda r: r["wall_s"]) if self.runs else None
        return {
            "agents": self.devices * self.agents_per_device,
            "subtasks": self.subtasks,
            "subtasks_per_s": self.subtasks / best["wall_s"] if best else None,
            "orchestrator_cpu_s": best["orchestrator_cpu_s"] if best else None,
            "orchestrator_rss_mb": self.peak_rss_mb,
            "devices": self.devices,
            "agents_per_device": self.agents_per_device,
            "mqtt_connections": self.devices + 1,
            "device_workers": DEVICE_WORKERS,
            "orchestrator_cpu_us_per_subtask": best["orchestrator_cpu_s"] / self.subtasks * 1e6
            if best
            else None,
            "broker_cpu_s": best["broker_cpu_s"] if best else None,
            "device_workers_cpu_s": best["devices_cpu_s"] if best else None,
            "wall_s": best["wall_s"] if best else None,
            "runs": self.runs,
            "stuck": self.stuck,
            "broker_drop_notices": self.broker_drop_notices,
            "devices_ready_s": self.devices_ready_s,
            "join_s": self.join_s,
            "ignored_messages": self.ignored,
            "dropped_messages": self.dropped,
        }


def broker_drop_notices(broker: Broker) -> int:
    """How often Mosquitto has logged that it dropped messages queued for a client."""
    try:
        text = broker.log.read_text(errors="replace")
    except OSError:
        return 0
    return text.count("Outgoing messages are being dropped")


async def measure_throughput(
    broker: Broker,
    tmp: Path,
    devices: int,
    agents_per_device: int,
    subtasks: int,
    repeats: int,
    timeout_s: float,
) -> Throughput:
    """Start the device workers, then the orchestrator process; always stop them all."""
    fleet_name = f"bench-{devices}x{agents_per_device}"
    notices_before = broker_drop_notices(broker)
    workers: list[asyncio.subprocess.Process] = []
    logs: list[Path] = []
    try:
        start = time.perf_counter()
        share = -(-devices // DEVICE_WORKERS)
        for w, first in enumerate(range(0, devices, share)):
            logs.append(tmp / f"{fleet_name}-worker-{w}.log")
            with logs[-1].open("wb") as log:
                workers.append(
                    await asyncio.create_subprocess_exec(
                        *_role_command(
                            SCRIPT,
                            "device-worker",
                            port=broker.address.port,
                            fleet=fleet_name,
                            first=first,
                            count=min(share, devices - first),
                            agents_per_device=agents_per_device,
                        ),
                        stdout=asyncio.subprocess.PIPE,
                        stderr=log,
                    )
                )
        for worker, log_path in zip(workers, logs, strict=True):
            assert worker.stdout is not None
            try:
                line = await asyncio.wait_for(worker.stdout.readline(), 180)
            except TimeoutError:
                line = b""
            if line.strip() != b"ready":
                raise RuntimeError(f"a device worker did not start:\n{_tail(log_path)}")
        devices_ready_s = time.perf_counter() - start
        orchestrator = await asyncio.create_subprocess_exec(
            *_role_command(
                SCRIPT,
                "orchestrator",
                port=broker.address.port,
                fleet_name=fleet_name,
                devices=devices,
                agents_per_device=agents_per_device,
                subtasks=subtasks,
                repeats=repeats,
                timeout_s=timeout_s,
                broker_pid=broker.process.pid,
                worker_pids=[w.pid for w in workers],
            ),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            stdout, stderr = await asyncio.wait_for(orchestrator.communicate(), 300)
        except TimeoutError:
            orchestrator.kill()
            await orchestrator.wait()
            raise RuntimeError("the orchestrator process took over 300 s") from None
        if orchestrator.returncode != 0:
            raise RuntimeError(f"the orchestrator process failed:\n{stderr.decode()[-3000:]}")
        figures = json.loads(stdout.decode().strip().splitlines()[-1])
        return Throughput(
            devices=devices,
            agents_per_device=agents_per_device,
            subtasks=subtasks,
            devices_ready_s=devices_ready_s,
            join_s=figures["join_s"],
            runs=figures["runs"],
            stuck=figures["stuck"],
            broker_drop_notices=broker_drop_notices(broker) - notices_before,
            peak_rss_mb=figures["peak_rss_mb"],
            ignored=figures["ignored"],
            dropped=figures["dropped"],
        )
    finally:
        for worker in workers:
            if worker.returncode is None:
                worker.terminate()
        for worker in workers:
            try:
                await asyncio.wait_for(worker.wait(), 20)
            except TimeoutError:
                worker.kill()
                await worker.wait()
