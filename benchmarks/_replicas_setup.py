"""The set-up of benchmarks/replicas.py: one PostgreSQL cluster, one Mosquitto with the fleet's
logins, the device processes serving the benchmark's agents, and orchestrator replicas as
``fleetmind orchestrator serve`` processes, every one stopped at the end."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from _harness import FLEETMIND_CLI, _spawn, _stop, _tail, _temp_dir

from fleetmind.protocols import BrokerAddress
from fleetmind.testing import LocalPostgres, start_test_broker, start_test_postgres

FLEET = "bench"
DEVICES = ("dev-1", "dev-2")
AGENTS = ("quick", "slow")
DEVICE_SLOTS = 256
"""Subtasks one device runs at once: the quick agent never makes a replica wait for a slot."""
START_LIMIT_S = 60.0

AGENTS_FILE = '''\
"""Agents for benchmarks/replicas.py: a quick one, and a slow one that says when it starts."""

import asyncio
import os
import pathlib
import time

from fleetmind import agent

MARKS = pathlib.Path(os.environ["FM_BENCH_MARKS"])
SLOTS = int(os.environ["FM_BENCH_SLOTS"])


@agent(id="quick", max_concurrency=SLOTS)
async def quick(n: int) -> int:
    return n


@agent(id="slow", max_concurrency=SLOTS)
async def slow(key: str, hold: float) -> str:
    with MARKS.open("a") as marks:
        marks.write(f"start {key} {time.time():.3f}\\n")
    await asyncio.sleep(hold)
    with MARKS.open("a") as marks:
        marks.write(f"end {key} {time.time():.3f}\\n")
    return key
'''


@dataclass
class Rig:
    """The benchmark's shared parts: a PostgreSQL cluster, a broker and the devices."""

    work: Path
    postgres: LocalPostgres
    broker_port: int
    broker_pid: int
    passwords: dict[str, Path]
    devices: list[subprocess.Popen[bytes]] = field(default_factory=list)
    databases: int = 0

    @property
    def broker_url(self) -> str:
        return f"mqtt://127.0.0.1:{self.broker_port}"

    @property
    def marks(self) -> Path:
        """Where the slow agent writes when it starts and ends a subtask."""
        return self.work / "marks.log"

    def address(self) -> BrokerAddress:
        """The orchestrator's login (a submitter uses it too)."""
        password = self.passwords["orchestrator"].read_text()
        return BrokerAddress("127.0.0.1", self.broker_port, "orchestrator", password)

    def new_database(self, purpose: str) -> str:
        """A fresh, empty database of the cluster: its URL."""
        self.databases += 1
        return self.postgres.create_database(f"bench_{purpose}_{self.databases}")

    def login(self, user: str) -> list[str]:
        return ["--username", user, "--password-file", str(self.passwords[user])]


@contextlib.contextmanager
def rig() -> Iterator[Rig]:
    """PostgreSQL, Mosquitto and the device processes; all stopped and removed at the end."""
    work = _temp_dir("fleetmind-replicas-bench-")
    postgres = start_test_postgres()
    broker = None
    setup: Rig | None = None
    try:
        devices = {device: list(AGENTS) for device in DEVICES}
        broker = start_test_broker(work, devices=devices, fleet=FLEET, embedded=False)
        passwords = {}
        for user, password in broker.credentials.items():
            passwords[user] = work / f"{user}.pw"
            passwords[user].write_text(password)
        setup = Rig(work, postgres, broker.port, broker.handle.pid, passwords)
        (work / "agents.py").write_text(AGENTS_FILE)
        env = {
            **os.environ,
            "FM_BENCH_MARKS": str(setup.marks),
            "FM_BENCH_SLOTS": str(DEVICE_SLOTS),
        }
        for device in DEVICES:
            log = work / f"{device}.log"
            command = [FLEETMIND_CLI, "agent", "serve", str(work / "agents.py")]
            command += ["--broker", setup.broker_url, "--fleet-name", FLEET, *setup.login(device)]
            setup.devices.append(_spawn(command, log, env=env))
            wait_for_line(setup.devices[-1], log, "serving", f"device {device}")
        yield setup
    finally:
        if setup is not None:
            for process in setup.devices:
                _stop(process, signal.SIGINT)
        if broker is not None:
            broker.handle.stop()
        postgres.close()


def wait_for_line(
    process: subprocess.Popen[bytes],
    log: Path,
    text: str,
    what: str,
    limit_s: float = START_LIMIT_S,
) -> None:
    """Return once ``text`` shows in the process's log; fail if it exits or time runs out."""
    deadline = time.monotonic() + limit_s
    while text not in (log.read_text(errors="replace") if log.exists() else ""):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start:\n{_tail(log)}")
        time.sleep(0.05)


@dataclass
class Replica:
    """One ``fleetmind orchestrator serve`` process on the shared PostgreSQL store."""

    id: str
    process: subprocess.Popen[bytes]
    log: Path


def start_replicas(
    setup: Rig, store_url: str, ids: list[str], group: str, lease_s: float | None = None
) -> list[Replica]:
    """Start one replica per id (all at once), then wait until each takes tasks.

    Each measurement's replicas form a ``--group`` of their own: the broker keeps a SIGKILLed
    replica's session (and its share of the group's submits, queued until it comes back), so
    a group that had a replica killed would hold back some of the next measurement's tasks.
    """
    replicas = []
    for replica_id in ids:
        log = setup.work / f"replica-{replica_id}.log"
        command = [FLEETMIND_CLI, "orchestrator", "serve", "--broker", setup.broker_url]
        command += ["--fleet-name", FLEET, *setup.login("orchestrator")]
        command += ["--store", store_url, "--replica-id", replica_id, "--group", group]
        command += ["--data-dir", str(setup.work / f"data-{replica_id}")]
        if lease_s is not None:
            command += ["--lease", f"{lease_s:g}"]
        replicas.append(Replica(replica_id, _spawn(command, log), log))
    try:
        for replica in replicas:
            wait_for_line(replica.process, replica.log, "taking tasks", f"replica {replica.id}")
    except BaseException:
        stop_replicas(replicas)
        raise
    return replicas


def stop_replicas(replicas: list[Replica]) -> None:
    """Stop every replica as Ctrl-C does (its leases released), killing any that hang."""
    for replica in replicas:
        if replica.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(replica.process.pid, signal.SIGINT)
    for replica in replicas:
        try:
            replica.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            _stop(replica.process, signal.SIGKILL)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_s(postgres: LocalPostgres) -> float:
    """CPU seconds of the PostgreSQL server and every backend it forked (the ones still
    running; a backend that ended took its seconds with it)."""
    try:
        postmaster = int((postgres.data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    total = cpu_s(postmaster)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if parent == postmaster:
            total += cpu_s(int(entry.name))
    return total


def marks_of(setup: Rig, key: str, what: str) -> list[float]:
    """When the slow agent wrote ``what`` (start or end) for ``key``, each time (Unix time)."""
    if not setup.marks.exists():
        return []
    found = []
    for line in setup.marks.read_text().splitlines():
        parts = line.split()
        if parts[:2] == [what, key]:
            found.append(float(parts[2]))
    return found


async def marked(setup: Rig, key: str, what: str, limit_s: float) -> float | None:
    """When the slow agent first wrote ``what`` (start or end) for ``key`` (Unix time),
    waiting up to ``limit_s``; None if it did not."""
    deadline = time.monotonic() + limit_s
    while not (found := marks_of(setup, key, what)):
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(0.02)
    return found[0]
