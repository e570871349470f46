"""Round trips in benchmarks/mqtt_fleet.py: a device process and its start-up, fleetmind's round
trip through a ``Fleet`` and its link, the bare paho ping-pong beside it, interleaved."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from _harness import FLEETMIND_CLI, _progress, _role_command, _stop, _tail, frozen_gc, percentile
from _mqtt_fleet_setup import (
    PROBED_MODULES,
    RTT_FLEET,
    RTT_FLEET_NODELAY,
    RTT_TEXT,
    SCRIPT,
    WARMUP,
    Broker,
    _connect,
    _disconnect,
    _paho_client,
    cpu_s,
    mosquitto,
    rss_mb,
    tcp_nodelay_for_paho,
)
from _mqtt_fleet_throughput import measure_throughput

from fleetmind import Fleet, SubtaskContext, TaskGraph
from fleetmind.orchestrator._router import SkillRouter
from fleetmind.protocols._mqtt import BrokerAddress
from fleetmind.protocols._topics import Topics
from fleetmind.serve import MqttFleetLink

# ---------------------------------------------------------------------------------------------
# 3. The device runtime: start-up and memory
# ---------------------------------------------------------------------------------------------


@dataclass
class Device:
    """A ``fleetmind agent serve`` process started by :func:`spawn_device`."""

    device_id: str
    process: subprocess.Popen[bytes]
    start_s: float
    """Spawn until its echo agent's card reached a subscriber."""
    rss_mb: float
    """VmRSS once its presence said online."""

    @property
    def echo(self) -> str:
        return f"echo-{self.device_id}"

    @property
    def probe(self) -> str:
        return f"probe-{self.device_id}"


def spawn_device(
    tmp: Path, address: BrokerAddress, device_id: str, *, nodelay: bool = False
) -> Device:
    """Start a device process and time it until its card arrives.

    With ``nodelay`` the device is this script running ``fleetmind.cli.main`` under
    :func:`tcp_nodelay_for_paho`; otherwise it is the ``fleetmind`` command itself.
    """
    fleet_name = RTT_FLEET_NODELAY if nodelay else RTT_FLEET
    topics = Topics(fleet_name)
    arrived: dict[str, float] = {}
    both = threading.Event()
    card_topic = topics.card(device_id, f"echo-{device_id}")
    presence_topic = topics.presence(device_id)

    def on_message(client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        now = time.perf_counter()
        if message.topic == card_topic:
            arrived.setdefault("card", now)
        elif message.topic == presence_topic and b'"online"' in message.payload:
            arrived.setdefault("online", now)
        if len(arrived) == 2:
            both.set()

    argv = [
        "agent",
        "serve",
        str(tmp / "agents.py"),
        "--broker",
        f"mqtt://{address.host}:{address.port}",
        "--device-id",
        device_id,
        "--fleet-name",
        fleet_name,
    ]
    command = _role_command(SCRIPT, "device-cli", argv=argv) if nodelay else [FLEETMIND_CLI, *argv]
    watcher = _paho_client(f"bench-watch-{device_id}")
    watcher.on_message = on_message
    _connect(watcher, address, card_topic, presence_topic)
    log = tmp / f"device-{device_id}.log"
    try:
        with log.open("wb") as out:
            spawned = time.perf_counter()
            process = subprocess.Popen(
                command, env={**os.environ, "FM_BENCH_DEVICE": device_id}, stdout=out, stderr=out
            )
        if not both.wait(30):
            _stop(process)
            raise RuntimeError(f"device {device_id} did not come online:\n{_tail(log)}")
        return Device(device_id, process, arrived["card"] - spawned, rss_mb(process.pid))
    finally:
        _disconnect(watcher)


def device_cli(argv: list[str]) -> None:
    """``fleetmind <argv>`` with TCP_NODELAY on paho's sockets (a helper process)."""
    from fleetmind.cli import main

    with tcp_nodelay_for_paho():
        sys.exit(main(argv))


# ---------------------------------------------------------------------------------------------
# 1. Round trip
# ---------------------------------------------------------------------------------------------


class TimedLink(MqttFleetLink):
    """The fleet link, with the wall time of every dispatch (publish to parsed result)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dispatch_s: list[float] = []
        untimed = self.dispatches.dispatch

        async def timed(device: str, agent_id: str, subtask: Any, ctx: SubtaskContext) -> Any:
            start = time.perf_counter()
            try:
                return await untimed(device, agent_id, subtask, ctx)
            finally:
                self.dispatch_s.append(time.perf_counter() - start)

        self.dispatches.dispatch = timed  # type: ignore[method-assign]


class FleetRoundTrip:
    """One-subtask tasks to an echo agent through a Fleet and its (timed) link."""

    def __init__(self, fleet: Fleet, link: TimedLink, echo: str) -> None:
        self.fleet = fleet
        self.link = link
        self.echo = echo
        self.graph = TaskGraph("rtt")
        self.graph.add_subtask("echo", agent=echo, inputs={"text": RTT_TEXT})
        self.dispatch_s: list[float] = []
        """The dispatch time of each of this object's runs (the link may serve other fleets)."""

    def with_skill_router(self) -> FleetRoundTrip:
        """The same remote agent and link, in a second Fleet routed by ``SkillRouter``.

        ``SkillRouter`` has no ``prepare`` step, so the engine makes no ``asyncio.to_thread``
        call before scheduling: the difference to the default router is that hop's cost.
        """
        remote = self.fleet.agent(self.echo)
        assert remote is not None
        return FleetRoundTrip(Fleet([remote], router=SkillRouter()), self.link, self.echo)

    async def once(self) -> float:
        """One ``await fleet.run(graph)``, in seconds."""
        start = time.perf_counter()
        result = await self.fleet.run(self.graph)
        elapsed = time.perf_counter() - start
        if result.outputs.get("echo") != RTT_TEXT:
            raise AssertionError(f"echo run ended {result.status}: {result.errors}")
        self.dispatch_s.append(self.link.dispatch_s[-1])
        return elapsed


@contextlib.asynccontextmanager
async def fleet_round_trip(
    address: BrokerAddress, device: Device, client_id: str, *, nodelay: bool
) -> Any:
    """A Fleet joined to the broker (its sockets with TCP_NODELAY or not), ready to run."""
    fleet = Fleet()
    with tcp_nodelay_for_paho(nodelay):  # the socket is opened on enter
        fleet_name = RTT_FLEET_NODELAY if nodelay else RTT_FLEET
        link = TimedLink(fleet, address, fleet_name=fleet_name, client_id=client_id)
        await link.__aenter__()
    try:
        await link.wait_for_agents(device.echo)
        yield FleetRoundTrip(fleet, link, f"{device.echo}@{device.device_id}")
    finally:
        await link.__aexit__(None, None, None)


class BarePingPong:
    """The bare paho ping-pong: a client here, a responder in another process."""

    def __init__(self, address: BrokerAddress, tag: str, *, nodelay: bool) -> None:
        self.address = address
        self.tag = tag
        self.nodelay = nodelay
        self.ping_topic = f"bench/bare/{tag}/ping"
        self.pong_topic = f"bench/bare/{tag}/pong"
        self._pong = threading.Event()
        self._arrived = 0.0
        self._payload = b""
        self._client: mqtt.Client | None = None
        self._responder: asyncio.subprocess.Process | None = None

    async def start(self, ping_bytes: int, pong_bytes: int) -> None:
        """Start the responder process and connect the pinging client."""
        self._payload = b"p" * ping_bytes
        self._responder = await asyncio.create_subprocess_exec(
            *_role_command(
                SCRIPT,
                "bare-responder",
                port=self.address.port,
                tag=self.tag,
                reply_bytes=pong_bytes,
                nodelay=self.nodelay,
            ),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self._responder.stdout is not None
        if (await asyncio.wait_for(self._responder.stdout.readline(), 30)).strip() != b"ready":
            raise RuntimeError("the bare responder did not start")
        self._client = _paho_client(f"bench-bare-pinger-{self.tag}", nodelay=self.nodelay)
        self._client.on_message = self._on_message
        _connect(self._client, self.address, self.pong_topic)

    @property
    def pid(self) -> int:
        """The responder's process id."""
        assert self._responder is not None
        return self._responder.pid

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._arrived = time.perf_counter()
        self._pong.set()

    async def once(self) -> float:
        """One round trip, in seconds (it blocks the event loop meanwhile, on purpose)."""
        assert self._client is not None
        self._pong.clear()
        start = time.perf_counter()
        self._client.publish(self.ping_topic, self._payload, qos=1)
        if not self._pong.wait(10):
            raise RuntimeError("the bare responder did not answer within 10 s")
        return self._arrived - start

    async def close(self) -> None:
        """Disconnect and stop the responder (it leaves when its stdin closes)."""
        if self._client is not None:
            _disconnect(self._client)
        if self._responder is not None:
            if self._responder.stdin is not None:
                self._responder.stdin.close()
            try:
                await asyncio.wait_for(self._responder.wait(), 10)
            except TimeoutError:
                self._responder.kill()
                await self._responder.wait()


def bare_responder(port: int, tag: str, reply_bytes: int, nodelay: bool) -> None:
    """Answer every ping with a pong of ``reply_bytes``, from paho's thread, until stdin closes."""
    reply = b"r" * reply_bytes
    pong_topic = f"bench/bare/{tag}/pong"
    client = _paho_client(f"bench-bare-responder-{tag}", nodelay=nodelay)
    client.on_message = lambda c, u, m: c.publish(pong_topic, reply, qos=1)
    _connect(client, BrokerAddress("127.0.0.1", port), f"bench/bare/{tag}/ping")
    print("ready", flush=True)
    sys.stdin.read()
    _disconnect(client)


async def sniff_sizes(address: BrokerAddress, trip: FleetRoundTrip) -> dict[str, int]:
    """Sizes of the dispatch and result envelopes of one run, as the broker carried them."""
    topics = Topics(RTT_FLEET)
    sizes: dict[str, int] = {}
    loop = asyncio.get_running_loop()
    seen_both = asyncio.Event()

    def on_message(client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        kind = json.loads(message.payload).get("kind")
        if kind in ("dispatch", "result"):
            sizes[kind] = len(message.payload)
        if len(sizes) == 2:
            loop.call_soon_threadsafe(seen_both.set)

    sniffer = _paho_client("bench-sniffer")
    sniffer.on_message = on_message
    _connect(sniffer, address, f"{topics.prefix}/devices/+/inbox", f"{topics.all_device_out()}/#")
    try:
        await trip.once()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(seen_both.wait(), 5)
    finally:
        _disconnect(sniffer)
    if len(sizes) < 2:
        raise RuntimeError(f"did not see both envelopes of a round trip: {sizes}")
    return sizes


async def probe_device(address: BrokerAddress, device: Device) -> dict[str, Any]:
    """Which of :data:`PROBED_MODULES` the device process has imported (dispatched once)."""
    fleet = Fleet()
    async with MqttFleetLink(
        fleet, address, fleet_name=RTT_FLEET, client_id="fm-bench-probe"
    ) as link:
        await link.wait_for_agents(device.probe)
        graph = TaskGraph("probe")
        graph.add_subtask("probe", agent=device.probe, inputs={"modules": list(PROBED_MODULES)})
        result = await fleet.run(graph)
    if not result.ok:
        raise AssertionError(f"probe ended {result.status}: {result.errors}")
    return result.outputs["probe"]


@dataclass
class Measure:
    """One kind of round trip, and the process at its other end (a device or a responder)."""

    once: Callable[[], Awaitable[float]]
    remote_pid: int


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def interleaved(
    measures: dict[str, Measure], samples: int, rounds: int, broker_pid: int
) -> tuple[dict[str, list[float]], dict[str, dict[str, float]]]:
    """Warm every measure up, then take ``samples`` of each in ``rounds`` interleaved blocks.

    Returns the samples (seconds) and, per measure, the CPU time one round trip cost in this
    process (paho threads included), in the remote process and in the broker (microseconds).
    """
    for _ in range(WARMUP):
        for measure in measures.values():
            await measure.once()
    out: dict[str, list[float]] = {name: [] for name in measures}
    cpu = {name: {"local": 0.0, "remote": 0.0, "broker": 0.0} for name in measures}
    per_round = max(1, samples // rounds)
    with frozen_gc():
        for _ in range(rounds):
            for name, measure in measures.items():
                before = (_own_cpu_s(), cpu_s(measure.remote_pid), cpu_s(broker_pid))
                out[name] += [await measure.once() for _ in range(per_round)]
                cpu[name]["local"] += _own_cpu_s() - before[0]
                cpu[name]["remote"] += cpu_s(measure.remote_pid) - before[1]
                cpu[name]["broker"] += cpu_s(broker_pid) - before[2]
    per_trip = {
        name: {part: spent / len(out[name]) * 1e6 for part, spent in parts.items()}
        for name, parts in cpu.items()
    }
    return out, per_trip


def summary_ms(samples_s: list[float]) -> dict[str, float]:
    """p50 and p99 in milliseconds."""
    return {"p50": percentile(samples_s, 50) * 1e3, "p99": percentile(samples_s, 99) * 1e3}


async def measure_round_trips(
    broker: Broker, tmp: Path, shipped: Device, samples: int, rounds: int
) -> dict[str, Any]:
    """fleetmind (as shipped, and with TCP_NODELAY) and the bare ping-pongs, interleaved."""
    address = broker.address
    fast = spawn_device(tmp, address, "dev-nodelay", nodelay=True)
    bare_fast = BarePingPong(address, "nodelay", nodelay=True)
    bare_default = BarePingPong(address, "default", nodelay=False)
    try:
        async with (
            fleet_round_trip(address, shipped, "fm-bench-rtt", nodelay=False) as as_shipped,
            fleet_round_trip(address, fast, "fm-bench-rtt-nodelay", nodelay=True) as with_nodelay,
        ):
            sizes = await sniff_sizes(address, as_shipped)
            await bare_fast.start(sizes["dispatch"], sizes["result"])
            await bare_default.start(sizes["dispatch"], sizes["result"])
            skill_routed = with_nodelay.with_skill_router()
            taken, cpu = await interleaved(
                {
                    "bare": Measure(bare_fast.once, bare_fast.pid),
                    "bare_paho_defaults": Measure(bare_default.once, bare_default.pid),
                    "fleetmind": Measure(as_shipped.once, shipped.process.pid),
                    "fleetmind_nodelay": Measure(with_nodelay.once, fast.process.pid),
                    "fleetmind_nodelay_skill_router": Measure(skill_routed.once, fast.process.pid),
                },
                samples,
                rounds,
                broker.process.pid,
            )
            n = len(taken["fleetmind"])
            taken["fleetmind_dispatch"] = as_shipped.dispatch_s[-n:]
            taken["fleetmind_nodelay_dispatch"] = with_nodelay.dispatch_s[-n:]
    finally:
        await bare_fast.close()
        await bare_default.close()
        _stop(fast.process)
    taken["fleetmind_engine"] = _minus(taken["fleetmind"], taken["fleetmind_dispatch"])
    taken["fleetmind_nodelay_engine"] = _minus(
        taken["fleetmind_nodelay"], taken["fleetmind_nodelay_dispatch"]
    )
    return {"sizes": sizes, "samples_s": taken, "cpu_us": cpu}


def _minus(runs: list[float], dispatches: list[float]) -> list[float]:
    """Per run: fleet.run minus its one dispatch (engine, store, routing, task plumbing)."""
    return [r - d for r, d in zip(runs, dispatches, strict=True)]


async def measure_default_broker(
    tmp: Path, samples: int, subtasks: int, timeout_s: float
) -> dict[str, Any]:
    """On a Mosquitto with its default config: round trips, then one fan-out (time-limited)."""
    with mosquitto(tmp, tuned=False) as broker:
        device = spawn_device(tmp, broker.address, "dev-default-broker")
        bare = BarePingPong(broker.address, "default-broker", nodelay=False)
        try:
            async with fleet_round_trip(
                broker.address, device, "fm-bench-rtt-default-broker", nodelay=False
            ) as trip:
                sizes = await sniff_sizes(broker.address, trip)
                await bare.start(sizes["dispatch"], sizes["result"])
                taken, _ = await interleaved(
                    {
                        "bare_paho_defaults": Measure(bare.once, bare.pid),
                        "fleetmind": Measure(trip.once, device.process.pid),
                    },
                    samples,
                    1,
                    broker.process.pid,
                )
        finally:
            await bare.close()
            _stop(device.process)
        _progress(f"the same broker: 1000 devices x 1 agent, {subtasks} subtasks, one run")
        fanout = await measure_throughput(broker, tmp, 1000, 1, subtasks, 1, timeout_s)
    return {"config": broker.config, "samples_s": taken, "fanout": fanout.to_json()}
