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
import asyncio
import contextlib
import json
import logging
import os
import platform
import random
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from fleetmind import Fleet, TaskGraph
from fleetmind.orchestrator import SkillRouter, SQLiteStore
from fleetmind.orchestrator._fleet_link import MqttFleetLink
from fleetmind.protocols import BrokerAddress

FLEETMIND_CLI = str(Path(sys.executable).parent / "fleetmind")
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
# Processes: Mosquitto, devices, the command line
# ---------------------------------------------------------------------------------------------

_CHILDREN: list[subprocess.Popen[bytes]] = []
"""Every process this benchmark started, killed at exit whatever happened."""
_DIRS: list[Path] = []


def _mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None
    )
    if found is None:
        raise SystemExit("Mosquitto is not installed: apt-get install mosquitto")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, deadline_s: float = 30.0) -> None:
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on port {port}") from None
            time.sleep(0.05)


def _kill(process: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, sig)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def _temp_dir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    _DIRS.append(path)
    return path


class Mosquitto:
    """A persistent Mosquitto on a free loopback port that can be stopped and started again."""

    def __init__(self, workdir: Path) -> None:
        self.binary = _mosquitto_binary()
        self.port = free_port()
        # Root-started Mosquitto drops to its own user: its database needs a directory it may
        # write (the trial's private directory is not one).
        self.store = _temp_dir("fleetmind-faults-db-")
        os.chmod(self.store, 0o777)
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n"
            f"persistence true\npersistence_location {self.store}/\nautosave_interval 1\n"
        )
        self.log = workdir / "mosquitto.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def address(self) -> BrokerAddress:
        return BrokerAddress("127.0.0.1", self.port)

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "-c", str(self.conf)], stdout=log, stderr=log
            )
        _CHILDREN.append(self.process)
        wait_for_port(self.port)

    def stop(self) -> None:
        """Stop it as a service manager does (SIGTERM: it saves its state)."""
        if self.process is not None:
            _kill(self.process, signal.SIGTERM)
        self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.store, ignore_errors=True)


def mosquitto_version() -> str:
    banner = subprocess.run(
        [_mosquitto_binary(), "-h"], capture_output=True, text=True, check=False
    ).stdout
    return banner.split("version", 1)[1].split()[0] if "version" in banner else "?"


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
        with (self.workdir / f"device-{device}.log").open("ab") as log:
            process = subprocess.Popen(command, env=env, stdout=log, stderr=log)
        _CHILDREN.append(process)
        self.processes[device] = process

    def kill(self, device: str) -> None:
        _kill(self.processes[device])

    def close(self) -> None:
        for process in self.processes.values():
            _kill(process)


# ---------------------------------------------------------------------------------------------
# What the agents recorded, and what the wire carried
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mark:
    device: str
    what: str
    key: str
    at: float


def read_audit(path: Path) -> list[Mark]:
    if not path.exists():
        return []
    marks = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 4:
            marks.append(Mark(parts[0], parts[1], parts[2], float(parts[3])))
    return marks


def counts(marks: Iterable[Mark], what: str) -> Counter[str]:
    return Counter(m.key for m in marks if m.what == what)


def running_on(marks: list[Mark], device: str) -> list[str]:
    """Keys the device started and has not ended (per its own lines)."""
    mine = [m for m in marks if m.device == device]
    started, ended = counts(mine, "start"), counts(mine, "end")
    return sorted(k for k in started if started[k] > ended[k])


def agent_of(key: str) -> str:
    return key.rsplit("-", 1)[0]


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


class LogLines(logging.Handler):
    """fleetmind's log records in this process, for the evidence of a failed trial."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(
            f"{record.created:.3f} {record.levelname} {record.name}: {record.getMessage()}"
        )

    def __enter__(self) -> LogLines:
        logger = logging.getLogger("fleetmind")
        self._level = logger.level
        logger.setLevel(logging.INFO)
        logger.addHandler(self)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        logger = logging.getLogger("fleetmind")
        logger.removeHandler(self)
        logger.setLevel(self._level)


async def until(predicate: Callable[[], bool], timeout_s: float, step_s: float = 0.02) -> bool:
    """Wait (without blocking the loop) until ``predicate()`` holds; whether it did."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step_s)
    return True


# ---------------------------------------------------------------------------------------------
# Faults and trials
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    key: str
    title: str
    agents: tuple[str, ...]
    baseline: str
    """The key of the fault-free run of the same task shape."""
    cli: bool = False

    @property
    def is_baseline(self) -> bool:
        return self.key == self.baseline

    @property
    def device_fault(self) -> bool:
        return self.key in ("device-fast", "device-slow", "multi-agent-kill")


FAULTS = (
    Fault("fault-free", "fault-free, 1 agent", ONE_AGENT, "fault-free"),
    Fault("fault-free-3", "fault-free, 3 agents", THREE_AGENTS, "fault-free-3"),
    Fault("fault-free-cli", "fault-free, CLI", ONE_AGENT, "fault-free-cli", cli=True),
    Fault("device-fast", "1. device kill, fast restart", ONE_AGENT, "fault-free"),
    Fault("device-slow", "2. device kill, slow restart", ONE_AGENT, "fault-free"),
    Fault("broker-restart", "3. broker restart", ONE_AGENT, "fault-free"),
    Fault("broker-outage", "4. broker outage", ONE_AGENT, "fault-free"),
    Fault("orchestrator-kill", "5. orchestrator kill + resume", ONE_AGENT, "fault-free-cli", True),
    Fault("multi-agent-kill", "6. kill of a 3-agent device", THREE_AGENTS, "fault-free-3"),
)


def injection_delay_s(fault: Fault, number: int) -> float:
    """The seeded extra wait before trial ``number`` of ``fault`` injects it."""
    return random.Random(f"{fault.key}/{number}").uniform(0.0, JITTER_S)


def hold_s(n: int) -> float:
    return round(0.3 + 0.07 * ((7 * n) % 11), 2)


def subtask_plan(agents: tuple[str, ...]) -> list[tuple[str, str, float]]:
    """(key, agent, hold) for every subtask of the task shape."""
    plan = []
    for n in range(SUBTASKS[agents]):
        name = agents[n % len(agents)]
        plan.append((f"{name}-{n:02d}", name, hold_s(n)))
    return plan


def task_graph(agents: tuple[str, ...]) -> TaskGraph:
    graph = TaskGraph("fleet-faults")
    for key, name, hold in subtask_plan(agents):
        graph.add_subtask(key, agent=name, inputs={"key": key, "hold": hold})
    return graph


def task_yaml(agents: tuple[str, ...]) -> str:
    lines = ["name: fleet-faults", "subtasks:"]
    for key, name, hold in subtask_plan(agents):
        lines.append(f"  - {{id: {key}, agent: {name}, inputs: {{key: {key}, hold: {hold}}}}}")
    return "\n".join(lines) + "\n"


@dataclass
class Trial:
    """One run of one task under one fault."""

    fault: str
    trial: int
    task_id: str
    keys: list[str]
    status: str = "not finished"
    finish_s: float | None = None
    injected: bool = False
    hit: bool = False
    fault_at_s: float | None = None
    """When the fault was injected, from submit."""
    fault_wall: float | None = None
    held: list[str] = field(default_factory=list)
    """Keys the victim was running when the fault hit."""
    detection_s: float | None = None
    detection_via: str | None = None
    back_online_s: float | None = None
    """From the SIGKILL until the orchestrator saw the device's new boot online."""
    declared_dead_s: float | None = None
    restart_wall: float | None = None
    errors: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    done_keys: list[str] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    log_entries: list[dict[str, Any]] = field(default_factory=list)
    orchestrator_log: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """Anything the trial could not do as planned (a fault not injected, a slow restart...)."""

    # Figures from the audit ------------------------------------------------------------------

    @property
    def ends(self) -> Counter[str]:
        return counts(self.marks, "end")

    @property
    def starts(self) -> Counter[str]:
        return counts(self.marks, "start")

    @property
    def lost(self) -> list[str]:
        ends, done = self.ends, set(self.done_keys)
        return [k for k in self.keys if ends[k] == 0 or k not in done]

    @property
    def ended_twice(self) -> list[str]:
        return sorted(k for k, n in self.ends.items() if n >= 2)

    @property
    def started_twice(self) -> list[str]:
        return sorted(k for k, n in self.starts.items() if n >= 2)

    @property
    def stale_started(self) -> list[str]:
        """Held keys that started on the victim again after it came back (slow restart)."""
        if self.restart_wall is None or self.fault != "device-slow":
            return []
        return sorted(
            {
                m.key
                for m in self.marks
                if m.what == "start"
                and m.device == VICTIM
                and m.key in self.held
                and m.at >= self.restart_wall
            }
        )

    @property
    def output_mismatches(self) -> list[str]:
        """Outputs that are not what a device that ended the key computed (orchestrator kill)."""
        if self.fault not in ("orchestrator-kill", "fault-free-cli"):
            return []
        wrong = []
        for key in self.done_keys:
            computed = {
                f"{key} by {m.device}" for m in self.marks if m.key == key and m.what == "end"
            }
            if self.outputs.get(key) not in computed:
                wrong.append(key)
        return sorted(wrong)

    @property
    def started_after_kill(self) -> list[str]:
        """Keys started before the orchestrator's kill that started again after it."""
        if self.fault != "orchestrator-kill" or self.fault_wall is None:
            return []
        before = {m.key for m in self.marks if m.what == "start" and m.at < self.fault_wall}
        return sorted(
            {
                m.key
                for m in self.marks
                if m.what == "start" and m.at >= self.fault_wall and m.key in before
            }
        )

    @property
    def goal_met(self) -> bool:
        return (
            self.status == "done"
            and not self.lost
            and not self.ended_twice
            and not self.output_mismatches
        )

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "trial": self.trial,
            "task_id": self.task_id,
            "status": self.status,
            "finish_s": _round(self.finish_s),
            "injected": self.injected,
            "hit": self.hit,
            "fault_at_s": _round(self.fault_at_s),
            "held_at_fault": self.held,
            "detection_s": _round(self.detection_s),
            "detection_via": self.detection_via,
            "back_online_s": _round(self.back_online_s),
            "declared_dead_s": _round(self.declared_dead_s),
            "lost": self.lost,
            "ended_twice": self.ended_twice,
            "started_twice": self.started_twice,
            "stale_started": self.stale_started,
            "output_mismatches": self.output_mismatches,
            "started_again_after_kill": self.started_after_kill,
            "problems": self.problems,
            "goal_met": self.goal_met,
        }
        if not self.goal_met:
            document["evidence"] = self.evidence()
        return document

    def evidence(self) -> dict[str, Any]:
        """Audit lines, log entries and orchestrator log lines about the keys that failed."""
        keys = sorted({*self.lost, *self.ended_twice, *self.output_mismatches})[:8]
        origin = self.fault_wall or 0.0

        def rel(at: float) -> str:
            return f"{at - origin:+.2f}s"

        return {
            "times": "relative to the fault" if self.fault_wall else "unix time",
            "errors": dict(list(self.errors.items())[:5]),
            "keys": {
                key: {
                    "audit": [
                        f"{m.device} {m.what} {rel(m.at)}" for m in self.marks if m.key == key
                    ],
                    "task_log": [
                        f"{e['kind']} {e.get('agent') or e.get('status') or ''} "
                        f"{rel(e['at'])} {e.get('error') or ''}".rstrip()
                        for e in self.log_entries
                        if e.get("subtask_id") == key
                    ],
                    "output": self.outputs.get(key),
                }
                for key in keys
            },
            "orchestrator_log": [
                _relative_line(line, origin)
                for line in self.orchestrator_log
                if line.startswith(("run: ", "resume: "))  # the command line's own output
                or any(k in line for k in keys)
                or " WARNING " in line
                or " ERROR " in line
            ][-40:],
        }


def _relative_line(line: str, origin: float) -> str:
    """A log line of this process (it starts with its Unix time) timed from the fault."""
    stamp, _, rest = line.partition(" ")
    try:
        at = float(stamp)
    except ValueError:
        return line
    return f"{at - origin:+.2f}s {rest}" if origin else line


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _entries(graph: TaskGraph) -> list[dict[str, Any]]:
    """The task's log, minus bulky fields (subtask definitions, routing candidates)."""
    out = []
    for entry in graph.log:
        data = entry.model_dump(mode="json", exclude={"subtask", "candidates", "excluded"})
        if data.get("error"):
            error = data["error"]
            data["error"] = f"{error.get('type')}: {str(error.get('message'))[:160]}"
        out.append(data)
    return out


def detection(trial: Trial, seen: list[tuple[float, str, dict[str, Any]]]) -> None:
    """The first sign that the orchestrator acted on the work the killed device held."""
    if trial.fault_wall is None or not trial.held:
        return
    held, kill = set(trial.held), trial.fault_wall
    found: list[tuple[float, str]] = []
    for entry in trial.log_entries:
        if entry["kind"] in ACTIONS and entry.get("subtask_id") in held and entry["at"] >= kill:
            agent = f" ({entry['agent']})" if entry.get("agent") else ""
            found.append((entry["at"] - kill, f"log: {entry['kind']}{agent}"))
    for at, topic, envelope in seen:
        kind = envelope.get("kind")
        if kind not in ("dispatch", "proceed") or at < kill:
            continue
        payload = envelope.get("payload") or {}
        subtask = (payload.get("subtask") or {}).get("id") or payload.get("subtask_id")
        if subtask in held:
            found.append((at - kill, f"wire: {kind} to {topic.split('/')[3]}"))
    if found:
        trial.detection_s, trial.detection_via = min(found)


async def inject(
    fault: Fault,
    trial: Trial,
    *,
    t0: float,
    broker: Mosquitto,
    devices: Devices,
    link: MqttFleetLink,
    fleet: Fleet,
    outage_s: float,
) -> None:
    """Wait for the moment, then inject the fault (in-process orchestrator)."""

    def ended() -> int:
        return sum(counts(read_audit(devices.audit), "end").values())

    def victim_busy() -> bool:
        return ended() >= ENDS_BEFORE_FAULT and bool(running_on(read_audit(devices.audit), VICTIM))

    def any_busy() -> bool:
        marks = read_audit(devices.audit)
        return ended() >= ENDS_BEFORE_FAULT and any(running_on(marks, d) for d in DEVICES)

    def victim_agents() -> int:
        return len({agent_of(k) for k in running_on(read_audit(devices.audit), VICTIM)})

    if fault.device_fault:
        if not await until(victim_busy, 60):
            trial.problems.append(
                f"{VICTIM} never held running work after {ENDS_BEFORE_FAULT} ends"
            )
            return
        # A device with several agents: work of two agents at least, of all three if that
        # comes within 5 s.
        several = fault.key == "multi-agent-kill"
        if several and not await until(lambda: victim_agents() >= 3, 5):
            await until(lambda: victim_agents() >= 2, 30)
        await asyncio.sleep(injection_delay_s(fault, trial.trial))
        trial.held = running_on(read_audit(devices.audit), VICTIM)
        old = link.devices.get(VICTIM)
        old_boot = old.boot if old is not None else None
        trial.fault_at_s = time.perf_counter() - t0
        trial.fault_wall = time.time()
        devices.kill(VICTIM)
        trial.injected, trial.hit = True, bool(trial.held)
        if fault.key == "device-slow":
            names = [f"{a}@{VICTIM}" for a in fault.agents]
            dead = await until(
                lambda: all(fleet.agent(n) is None for n in names), DEAD_AFTER_S + 30
            )
            trial.declared_dead_s = time.time() - trial.fault_wall
            if not dead:
                trial.problems.append(
                    f"{VICTIM} was not declared dead within {DEAD_AFTER_S + 30} s"
                )
            await asyncio.sleep(1.0)
        trial.restart_wall = time.time()
        devices.start(VICTIM)

        def back() -> bool:
            state = link.devices.get(VICTIM)
            return state is not None and state.online and state.boot != old_boot

        if await until(back, 60):
            trial.back_online_s = time.time() - trial.fault_wall
            if fault.key != "device-slow" and trial.back_online_s > DEAD_AFTER_S:
                trial.problems.append(
                    f"the restarted device was back only after {trial.back_online_s:.1f} s, "
                    f"beyond the {DEAD_AFTER_S:g} s grace period"
                )
        else:
            trial.problems.append(f"the restarted {VICTIM} was not seen online within 60 s")
        return
    # Broker faults.
    if not await until(any_busy, 60):
        trial.problems.append(f"no device held running work after {ENDS_BEFORE_FAULT} ends")
        return
    await asyncio.sleep(injection_delay_s(fault, trial.trial))
    trial.held = sorted({k for d in DEVICES for k in running_on(read_audit(devices.audit), d)})
    trial.fault_at_s = time.perf_counter() - t0
    trial.fault_wall = time.time()
    await asyncio.to_thread(broker.stop)
    trial.injected, trial.hit = True, bool(trial.held)
    if fault.key == "broker-outage":
        await asyncio.sleep(outage_s)
    await asyncio.to_thread(broker.start)


async def finish_injection(injector: asyncio.Task[None], trial: Trial) -> None:
    """Let an injected fault play out (a restarted device comes back before the audit is
    read); cancel one that never found its moment."""
    if trial.fault_wall is None and not injector.done():
        injector.cancel()
        trial.problems.append("the task ended before the fault was injected")
    try:
        await injector
    except asyncio.CancelledError:
        if trial.fault_wall is not None:
            raise
    except Exception as exc:
        trial.problems.append(f"injecting the fault failed: {type(exc).__name__}: {exc}")


class _Abandon(Exception):
    """The task did not finish in time: leave the fleet (its drivers are cancelled)."""


async def run_in_process(fault: Fault, number: int, outage_s: float) -> Trial:
    """One trial with the orchestrator in this process."""
    work = _temp_dir(f"fleetmind-faults-{fault.key}-")
    task_id = f"{fault.key}-{number:02d}-{secrets.token_hex(3)}"
    trial = Trial(fault.key, number, task_id, [k for k, _, _ in subtask_plan(fault.agents)])
    broker = Mosquitto(work)
    devices = Devices(work, broker.url, fault.agents)
    watcher: Watcher | None = None
    try:
        await asyncio.to_thread(broker.start)
        for device in DEVICES:
            devices.start(device)
        fleet = Fleet(router=SkillRouter())
        with LogLines() as logs, contextlib.suppress(_Abandon):
            async with MqttFleetLink(fleet, broker.address, dead_after_s=DEAD_AFTER_S) as link:
                wanted = [f"{a}@{d}" for a in fault.agents for d in DEVICES]
                await link.wait_for_agents(*wanted, timeout_s=60)
                if fault.device_fault:
                    watcher = Watcher(broker.port, "fleetmind/default/devices/+/inbox")
                    await watcher.ready()
                async with fleet:
                    t0 = time.perf_counter()
                    handle = fleet.submit(task_graph(fault.agents), task_id=task_id)
                    injector = None
                    if not fault.is_baseline:
                        injector = asyncio.create_task(
                            inject(
                                fault,
                                trial,
                                t0=t0,
                                broker=broker,
                                devices=devices,
                                link=link,
                                fleet=fleet,
                                outage_s=outage_s,
                            )
                        )
                    limit = LIMIT_S + (outage_s if fault.key == "broker-outage" else 0)
                    try:
                        result = await asyncio.wait_for(handle.result(), limit)
                    except TimeoutError:
                        result = None
                        trial.problems.append(f"the task had not ended after {limit:g} s")
                    else:
                        trial.finish_s = time.perf_counter() - t0
                        trial.status = result.status
                        trial.errors = {
                            k: f"{v.get('type')}: {v.get('message')}"
                            for k, v in result.errors.items()
                        }
                        trial.outputs = dict(result.outputs)
                    if injector is not None:
                        await finish_injection(injector, trial)
                    await asyncio.sleep(SETTLE_S)
                    graph = handle.graph
                    trial.done_keys = [k for k in trial.keys if graph.state(k).status == "done"]
                    trial.log_entries = _entries(graph)
                    if result is None:
                        raise _Abandon
        trial.orchestrator_log = logs.lines
        trial.marks = read_audit(devices.audit)
        if fault.device_fault and watcher is not None:
            detection(trial, watcher.snapshot())
    finally:
        if watcher is not None:
            watcher.close()
        devices.close()
        broker.close()
        shutil.rmtree(work, ignore_errors=True)
    return trial


def _spawn_cli(
    command: list[str], log: Path, stdout: Path | None = None
) -> subprocess.Popen[bytes]:
    """A command-line process in its own process group; stderr (and stdout) to files."""
    with log.open("ab") as err, (stdout or log).open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=err, start_new_session=True)
    _CHILDREN.append(process)
    return process


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=20)


async def _wait_process(process: subprocess.Popen[bytes], timeout_s: float) -> int | None:
    """The exit code, or None if it still runs after ``timeout_s`` (it is then killed)."""
    if await until(lambda: process.poll() is not None, timeout_s, step_s=0.05):
        return process.returncode
    _kill_group(process)
    return None


def _task_id_from(log: Path, home: Path) -> str:
    found = re.search(r"fleetmind resume (\S+)", log.read_text(errors="replace"))
    if found:
        return found.group(1)
    store = SQLiteStore(home / "fleetmind.db")
    try:
        (record,) = store.tasks()
    finally:
        store.close()
    return record.id


def _tail(path: Path, lines: int = 40) -> list[str]:
    if not path.exists():
        return []
    return path.read_text(errors="replace").splitlines()[-lines:]


async def run_cli(fault: Fault, number: int) -> Trial:
    """One trial with the command line as the orchestrator."""
    work = _temp_dir(f"fleetmind-faults-{fault.key}-")
    trial = Trial(fault.key, number, "?", [k for k, _, _ in subtask_plan(fault.agents)])
    broker = Mosquitto(work)
    devices = Devices(work, broker.url, fault.agents)
    watcher: Watcher | None = None
    processes: list[subprocess.Popen[bytes]] = []
    try:
        await asyncio.to_thread(broker.start)
        watcher = Watcher(broker.port, "fleetmind/default/devices/+/presence")
        await watcher.ready()
        for device in DEVICES:
            devices.start(device)

        def online() -> bool:
            states = {
                t.split("/")[3]: e.get("payload", {}).get("state") for _, t, e in watcher.snapshot()
            }
            return all(states.get(d) == "online" for d in DEVICES)

        if not await until(online, 60, step_s=0.05):
            raise RuntimeError("the devices did not come online")
        (work / "task.yaml").write_text(task_yaml(fault.agents))
        home = work / "home"
        run_log = work / "run.log"
        t0 = time.perf_counter()
        run = [FLEETMIND_CLI, "run", str(work / "task.yaml"), "--broker", broker.url]
        orchestrator = _spawn_cli([*run, "--no-live", "--data-dir", str(home)], run_log)
        processes.append(orchestrator)
        if fault.is_baseline:
            code = await _wait_process(orchestrator, LIMIT_S)
            if code is None:
                trial.problems.append(f"fleetmind run had not ended after {LIMIT_S:g} s")
            else:
                trial.finish_s = time.perf_counter() - t0
            trial.task_id = _task_id_from(run_log, home)
            store = SQLiteStore(home / "fleetmind.db")
            try:
                record, entries = store.load(trial.task_id)
                graph = TaskGraph.from_log(entries, name=record.name)
            finally:
                store.close()
            trial.status = record.status if code is not None else "not finished"
            trial.done_keys = [k for k in trial.keys if graph.state(k).status == "done"]
            trial.outputs = {k: graph.state(k).output for k in trial.done_keys}
            trial.log_entries = _entries(graph)
            trial.orchestrator_log = _tail(run_log)
        else:

            def answered() -> bool:
                marks = read_audit(devices.audit)
                return sum(counts(marks, "end").values()) >= ENDS_BEFORE_FAULT and any(
                    running_on(marks, d) for d in DEVICES
                )

            if not await until(answered, 60):
                trial.problems.append("no moment with some subtasks ended and others running")
            await asyncio.sleep(injection_delay_s(fault, number))
            trial.held = sorted(
                {k for d in DEVICES for k in running_on(read_audit(devices.audit), d)}
            )
            trial.fault_at_s = time.perf_counter() - t0
            trial.fault_wall = time.time()
            _kill_group(orchestrator)
            trial.injected, trial.hit = True, bool(trial.held)

            def settled() -> bool:
                marks = read_audit(devices.audit)
                return not any(running_on(marks, d) for d in DEVICES)

            if not await until(settled, 30):
                trial.problems.append("the devices had not ended their work 30 s after the kill")
            trial.task_id = _task_id_from(run_log, home)
            resume_log = work / "resume.log"
            resume_out = work / "resume.json"
            command = [FLEETMIND_CLI, "resume", trial.task_id, "--broker", broker.url, "--json"]
            command += ["--data-dir", str(home)]
            resumed = _spawn_cli(command, resume_log, stdout=resume_out)
            processes.append(resumed)
            code = await _wait_process(resumed, LIMIT_S)
            trial.orchestrator_log = [
                *(f"run: {line}" for line in _tail(run_log, 15)),
                *(f"resume: {line}" for line in _tail(resume_log, 25)),
            ]
            if code is None:
                trial.problems.append(f"fleetmind resume had not ended after {LIMIT_S:g} s")
            else:
                trial.finish_s = time.perf_counter() - t0
                try:
                    document = json.loads(resume_out.read_text())
                except ValueError:
                    trial.problems.append(f"fleetmind resume exited {code} without JSON")
                    document = {}
                trial.status = document.get("status", f"exit {code}")
                trial.outputs = document.get("outputs") or {}
                trial.errors = {
                    k: f"{v.get('type')}: {v.get('message')}"
                    for k, v in (document.get("errors") or {}).items()
                }
                trial.done_keys = [k for k in trial.keys if k in trial.outputs]
                store = SQLiteStore(home / "fleetmind.db")
                try:
                    record, entries = store.load(trial.task_id)
                    trial.log_entries = _entries(TaskGraph.from_log(entries, name=record.name))
                finally:
                    store.close()
        await asyncio.sleep(SETTLE_S)
        trial.marks = read_audit(devices.audit)
    finally:
        for process in processes:
            _kill_group(process)
        if watcher is not None:
            watcher.close()
        devices.close()
        broker.close()
        shutil.rmtree(work, ignore_errors=True)
    return trial


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------


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
    lines += _table(rows)
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
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "fleetmind": package_version("fleetmind"),
        "paho_mqtt": package_version("paho-mqtt"),
        "mosquitto": mosquitto_version(),
    }


def _progress(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


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


def _cleanup() -> None:
    for process in _CHILDREN:
        with contextlib.suppress(Exception):
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
    for path in _DIRS:
        shutil.rmtree(path, ignore_errors=True)


def _interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write figures as JSON")
    parser.add_argument("--quick", action="store_true", help="2 trials, 10 s outage")
    parser.add_argument("--trials", type=int, help="trials per fault (default 10; quick 2)")
    parser.add_argument("--outage-s", type=float, help="broker outage (default 60; quick 10)")
    parser.add_argument(
        "--only",
        type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
        help="comma-separated faults to run (their fault-free baseline runs too): "
        + ", ".join(f.key for f in FAULTS),
    )
    args = parser.parse_args(argv)
    args.trials = args.trials or (2 if args.quick else 10)
    args.outage_s = args.outage_s if args.outage_s is not None else (10.0 if args.quick else 60.0)
    unknown = set(args.only or ()) - {f.key for f in FAULTS}
    if unknown:
        parser.error(f"unknown fault(s): {', '.join(sorted(unknown))}")
    if not shutil.which(FLEETMIND_CLI):
        raise SystemExit(f"{FLEETMIND_CLI} not found: install fleetmind in this environment")
    _mosquitto_binary()
    signal.signal(signal.SIGTERM, _interrupted)
    try:
        document = asyncio.run(benchmark(args))
    except KeyboardInterrupt:
        print(
            "interrupted: every process and directory of the benchmark is removed", file=sys.stderr
        )
        raise SystemExit(130) from None
    finally:
        _cleanup()
    print(render(document))
    if args.json is not None:
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
