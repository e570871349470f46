"""The set-up of benchmarks/fleet_faults.py: its settings, and one trial's processes (a
persistent Mosquitto, the devices serving the audited agents, a plain MQTT watcher), always
stopped and removed at the end of the trial."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from _harness import (
    FLEETMIND_CLI,
    MosquittoProcess,
    _spawn,
    _stop,
    _temp_dir,
    free_port,
    require_mosquitto,
)
from paho.mqtt.enums import CallbackAPIVersion

from fleetmind.protocols import BrokerAddress

DEVICES = ("pi-1", "pi-2")
VICTIM = "pi-1"
ONE_AGENT = ("worker",)
THREE_AGENTS = ("worker", "sorter", "packer")
SUBTASKS = {ONE_AGENT: 30, THREE_AGENTS: 36}
SLOTS = 2
"""Subtasks each agent takes at once on one device."""
HEARTBEAT_S = 0.5
DEAD_AFTER_S = 5.0
"""The in-process link's ``dead_after_s``."""
ENDS_BEFORE_FAULT = 4
JITTER_S = 0.6
"""The fault lands a seeded random 0-0.6 s after its moment came, so trials hit different
instants (mid-run, just after an agent ended, while a result is on its way)."""
LIMIT_S = 180.0
"""How long a task may take (plus the outage) before it counts as not completed."""
SETTLE_S = 3.0
"""Wait after the task ended before the audit is read (late re-runs show up)."""
ACTIONS = ("subtask_reassigned", "subtask_retried", "subtask_requeued", "subtask_started")

AGENTS_FILE = '''\
"""Audited agents for benchmarks/fleet_faults.py: each appends start and end lines to a file."""

import asyncio
import os
import pathlib
import time

from fleetmind import agent

DEVICE = os.environ["FM_DEVICE"]
AUDIT = pathlib.Path(os.environ["FM_AUDIT"])
SLOTS = int(os.environ["FM_SLOTS"])


def mark(what, key):
    with AUDIT.open("a") as f:
        f.write(f"{DEVICE} {what} {key} {time.time():.3f}\\n")


def audited(name):
    async def work(key: str, hold: float = 0.5) -> str:
        mark("start", key)
        await asyncio.sleep(hold)
        mark("end", key)
        return f"{key} by {DEVICE}"

    return agent(
        id=name,
        skills=[name],
        max_concurrency=SLOTS,
        description=f"Does {name} work that must be done once.",
    )(work)


agents = [audited(name) for name in os.environ["FM_AGENTS"].split(",")]
'''


# ---------------------------------------------------------------------------------------------
# Processes: Mosquitto, devices, a watcher of the wire, the command line
# ---------------------------------------------------------------------------------------------


class Mosquitto(MosquittoProcess):
    """A persistent Mosquitto on a free loopback port that can be stopped and started again."""

    def __init__(self, workdir: Path) -> None:
        binary, port = require_mosquitto(), free_port()
        # Root-started Mosquitto drops to its own user: its database needs a directory it may
        # write (the trial's private directory is not one).
        self.store = _temp_dir("fleetmind-faults-db-")
        os.chmod(self.store, 0o777)
        super().__init__(binary, port, workdir / "mosquitto.conf", workdir / "mosquitto.log")
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n"
            f"persistence true\npersistence_location {self.store}/\nautosave_interval 1\n"
        )

    @property
    def address(self) -> BrokerAddress:
        return BrokerAddress("127.0.0.1", self.port)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.store, ignore_errors=True)


@dataclass
class Devices:
    """``fleetmind agent serve`` processes of the audited agents, by device id."""

    workdir: Path
    broker_url: str
    agents: tuple[str, ...]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def audit(self) -> Path:
        return self.workdir / "audit.log"

    def start(self, device: str) -> None:
        agents_file = self.workdir / "audited_agents.py"
        if not agents_file.exists():
            agents_file.write_text(AGENTS_FILE)
        env = {
            **os.environ,
            "FM_DEVICE": device,
            "FM_AUDIT": str(self.audit),
            "FM_AGENTS": ",".join(self.agents),
            "FM_SLOTS": str(SLOTS),
        }
        command = [FLEETMIND_CLI, "agent", "serve", str(agents_file), "--broker", self.broker_url]
        command += ["--device-id", device, "--heartbeat", str(HEARTBEAT_S)]
        log = self.workdir / f"device-{device}.log"
        self.processes[device] = _spawn(command, log, env=env)

    def kill(self, device: str) -> None:
        _stop(self.processes[device], signal.SIGKILL)

    def close(self) -> None:
        for process in self.processes.values():
            _stop(process, signal.SIGKILL)


class Watcher:
    """A plain MQTT subscriber (paho, its own network thread) that timestamps what it sees."""

    def __init__(self, port: int, *topics: str) -> None:
        self.seen: list[tuple[float, str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"fm-bench-watch-{secrets.token_hex(4)}",
            protocol=mqtt.MQTTv5,
        )
        client.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 0) for t in topics])
        client.on_subscribe = lambda c, u, mid, rc, p: self._subscribed.set()
        client.on_message = self._on_message
        client.connect("127.0.0.1", port)
        client.loop_start()
        self._client = client

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            envelope = json.loads(message.payload)
        except ValueError:
            return
        if isinstance(envelope, dict):
            with self._lock:
                self.seen.append((time.time(), message.topic, envelope))

    def snapshot(self) -> list[tuple[float, str, dict[str, Any]]]:
        with self._lock:
            return list(self.seen)

    async def ready(self) -> None:
        if not await asyncio.to_thread(self._subscribed.wait, 10):
            raise RuntimeError("the watcher could not subscribe")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.disconnect()
        self._client.loop_stop()


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=20)


@dataclass
class Rig:
    """One trial's working directory, broker and devices, and what the trial adds to them."""

    work: Path
    broker: Mosquitto
    devices: Devices
    watcher: Watcher | None = None
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    """Command-line processes, each in its own process group."""


@contextlib.contextmanager
def rig(fault_key: str, agents: tuple[str, ...]) -> Iterator[Rig]:
    """A fresh rig for one trial; at the end every process of it is stopped and its
    directories removed, whatever happened."""
    work = _temp_dir(f"fleetmind-faults-{fault_key}-")
    broker = Mosquitto(work)
    setup = Rig(work, broker, Devices(work, broker.url, agents))
    try:
        yield setup
    finally:
        for process in setup.processes:
            _kill_group(process)
        if setup.watcher is not None:
            setup.watcher.close()
        setup.devices.close()
        broker.close()
        shutil.rmtree(work, ignore_errors=True)
