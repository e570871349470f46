"""The set-up of benchmarks/mqtt_fleet.py: its settings, the tiny agents file a device serves, the
broker, what a process has used, and paho clients (with ``TCP_NODELAY`` or without)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from _harness import _stop, free_port, mosquitto_version, require_mosquitto, wait_for_port
from paho.mqtt.enums import CallbackAPIVersion

from fleetmind.protocols._mqtt import BrokerAddress

SCRIPT = str(Path(__file__).resolve().with_name("mqtt_fleet.py"))
"""The script its helper processes run (``--role``)."""
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
    binary = require_mosquitto()
    version = mosquitto_version()
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
            try:
                wait_for_port(port, process, deadline_s=10)
            except RuntimeError:
                continue  # it exited (port taken?) or never listened: try another port
            yield Broker(
                BrokerAddress("127.0.0.1", port), process, version, config, tmp / f"{name}.log"
            )
            return
        finally:
            _stop(process)
    raise SystemExit(f"mosquitto did not start; see {tmp / f'{name}.log'}")


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
