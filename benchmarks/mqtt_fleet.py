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
           ``RemoteAgent.run`` awaits: build the dispatch envelope, publish it with QoS 1, wait
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
import contextlib
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from fleetmind import Fleet, SubtaskContext, TaskGraph, agent
from fleetmind.agents import Agent
from fleetmind.agents._device import DeviceRuntime
from fleetmind.orchestrator._fleet_link import MqttFleetLink
from fleetmind.orchestrator._router import SkillRouter
from fleetmind.protocols._mqtt import BrokerAddress
from fleetmind.protocols._topics import Topics

FLEETMIND_CLI = str(Path(sys.executable).parent / "fleetmind")
RTT_FLEET = "bench-rtt"
RTT_FLEET_NODELAY = "bench-rtt-nodelay"
"""The TCP_NODELAY variant has a fleet of its own: two links on one fleet would each see (and
log as not theirs) the other's results."""
RTT_TEXT = "x" * 64
WARMUP = 30
PROBED_MODULES = ("torch", "sentence_transformers", "hnswlib", "transformers", "numpy", "networkx")
HEAVY_MODULES = ("torch", "sentence_transformers", "hnswlib")
DEVICE_WORKERS = 4
TUNED_BROKER = "set_tcp_nodelay true\nmax_queued_messages 100000\n"
"""Lines added to the main broker's config (see the module docstring for why)."""
GOAL_RATIO = 1.5
GOAL_DEVICE_RSS_MB = 80.0
GOAL_DEVICE_START_S = 1.5

AGENTS_FILE = '''\
"""Tiny agents for benchmarks/mqtt_fleet.py: an echo, and a probe of what the device imported."""

import os
import sys

from fleetmind import agent

DEVICE = os.environ["FM_BENCH_DEVICE"]


@agent(id=f"echo-{DEVICE}", max_concurrency=64)
async def echo(text: str) -> str:
    return text


@agent(id=f"probe-{DEVICE}")
async def probe(modules: list[str]) -> dict:
    return {"loaded": {m: m in sys.modules for m in modules}, "module_count": len(sys.modules)}
'''


# ---------------------------------------------------------------------------------------------
# Processes, sockets and the broker
# ---------------------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on loopback that nobody holds right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None
    )
    if found is None:
        raise SystemExit("Mosquitto is not installed: apt-get install mosquitto")
    return found


@dataclass
class Broker:
    """A Mosquitto started by :func:`mosquitto`."""

    address: BrokerAddress
    process: subprocess.Popen[bytes]
    version: str
    config: str
    log: Path


@contextlib.contextmanager
def mosquitto(tmp: Path, *, tuned: bool = True) -> Iterator[Broker]:
    """Mosquitto on a free loopback port, anonymous logins allowed; always stopped at the end.

    Args:
        tmp: Where its config and log go.
        tuned: With :data:`TUNED_BROKER` settings; otherwise Mosquitto's defaults.
    """
    binary = _mosquitto_binary()
    banner = subprocess.run([binary, "-h"], capture_output=True, text=True, check=False).stdout
    version = banner.split("version", 1)[1].split()[0] if "version" in banner else "?"
    name = "mosquitto" if tuned else "mosquitto-default"
    for _ in range(3):  # another process may take the port between free_port() and the bind
        port = free_port()
        config = f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        if tuned:
            config += TUNED_BROKER
        (tmp / f"{name}.conf").write_text(config)
        with (tmp / f"{name}.log").open("wb") as log:
            process = subprocess.Popen(
                [binary, "-c", str(tmp / f"{name}.conf")], stdout=log, stderr=log
            )
        try:
            deadline = time.monotonic() + 10
            while process.poll() is None and time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.02)
            else:
                continue  # it exited (port taken?) or never listened: try another port
            yield Broker(
                BrokerAddress("127.0.0.1", port), process, version, config, tmp / f"{name}.log"
            )
            return
        finally:
            _stop(process)
    raise SystemExit(f"mosquitto did not start; see {tmp / f'{name}.log'}")


def _stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def rss_mb(pid: int) -> float:
    """Resident memory of a process now (``VmRSS``), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _role_command(role: str, **role_args: Any) -> list[str]:
    """This script, re-run as one of its helper processes."""
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        "--role",
        role,
        "--role-args",
        json.dumps(role_args),
    ]


def _set_nodelay(sock: Any) -> None:
    with contextlib.suppress(OSError, AttributeError):  # not TCP (a Unix socket, a proxy)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


@contextlib.contextmanager
def tcp_nodelay_for_paho(enabled: bool = True) -> Iterator[None]:
    """Set ``TCP_NODELAY`` on every socket paho opens meanwhile (fleetmind's own clients too).

    This is the benchmark's stand-in for the one-line fix in ``MqttConnection`` (see the
    module docstring); fleetmind's code is not touched.
    """
    if not enabled:
        yield
        return
    original = mqtt.Client._create_socket

    def create_socket(self: mqtt.Client) -> Any:
        sock = original(self)
        _set_nodelay(sock)
        return sock

    mqtt.Client._create_socket = create_socket  # type: ignore[method-assign]
    try:
        yield
    finally:
        mqtt.Client._create_socket = original  # type: ignore[method-assign]


def _paho_client(client_id: str, *, nodelay: bool = False) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    if nodelay:
        client.on_socket_open = lambda client, userdata, sock: _set_nodelay(sock)
    return client


def _connect(client: mqtt.Client, address: BrokerAddress, *topics: str) -> None:
    """Connect, subscribe with QoS 1 and start the network thread; return after the SUBACK."""
    subscribed = threading.Event()
    client.on_subscribe = lambda *_: subscribed.set()
    if topics:
        client.on_connect = lambda c, *_: c.subscribe([(t, 1) for t in topics])
    else:
        client.on_connect = lambda *_: subscribed.set()
    client.connect(address.host, address.port)
    client.loop_start()
    if not subscribed.wait(10):
        raise RuntimeError(f"a paho client could not connect to {address.host}:{address.port}")


def _disconnect(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


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
    command = _role_command("device-cli", argv=argv) if nodelay else [FLEETMIND_CLI, *argv]
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
    gc.collect()
    gc.freeze()
    try:
        for _ in range(rounds):
            for name, measure in measures.items():
                before = (_own_cpu_s(), cpu_s(measure.remote_pid), cpu_s(broker_pid))
                out[name] += [await measure.once() for _ in range(per_round)]
                cpu[name]["local"] += _own_cpu_s() - before[0]
                cpu[name]["remote"] += cpu_s(measure.remote_pid) - before[1]
                cpu[name]["broker"] += cpu_s(broker_pid) - before[2]
    finally:
        gc.unfreeze()
    per_trip = {
        name: {part: spent / len(out[name]) * 1e6 for part, spent in parts.items()}
        for name, parts in cpu.items()
    }
    return out, per_trip


def percentile(samples: list[float], q: int) -> float:
    """The q-th percentile (inclusive method)."""
    if len(samples) == 1:
        return samples[0]
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1]


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
        dropped = link._mqtt.dropped if link._mqtt is not None else 0
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


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------


def _progress(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for i, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  " + "  ".join(cells).rstrip())
        if i == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    return lines


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
        ]
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
    lines += _table(rows)
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
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "fleetmind": package_version("fleetmind"),
        "paho_mqtt": package_version("paho-mqtt"),
        "mosquitto": broker.version,
    }


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
            profiler = cProfile.Profile()
            start = time.perf_counter()
            profiler.enable()
            for _ in range(samples):
                await trip.once()
            profiler.disable()
            elapsed = time.perf_counter() - start
    finally:
        _stop(device.process)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(r"fleetmind[/\\]", 30)
    print(out.getvalue())
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
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write figures as JSON")
    parser.add_argument("--quick", action="store_true", help="fewer samples and subtasks")
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
    if args.json is not None:
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
