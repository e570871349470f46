"""Real processes for fault tests of the MQTT fleet: Mosquitto that can be stopped and started
again with its state, `fleetmind agent serve` devices that can be SIGKILLed and restarted, and
agents that audit every start and end of their work in a shared file."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

FLEETMIND = str(Path(sys.executable).parent / "fleetmind")
MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None
)

AUDITED_AGENTS = """
import asyncio, os, pathlib
from fleetmind import agent

DEVICE = os.environ["FM_DEVICE"]
AUDIT = pathlib.Path(os.environ["FM_AUDIT"])
HOLD = float(os.environ.get("FM_HOLD") or 0)


def mark(what, key):
    with AUDIT.open("a") as f:
        f.write(f"{DEVICE} {what} {key}\\n")


@agent(id="worker", skills=["work"], max_concurrency=200)
async def worker(key: str, hold: float = 0.0) -> str:
    \"\"\"Does a piece of work that must be done once.\"\"\"
    mark("start", key)
    await asyncio.sleep(hold or HOLD)
    mark("end", key)
    return f"{key} by {DEVICE}"


@agent(id="picky", skills=["pick"])
async def picky(key: str) -> str:
    \"\"\"Refuses bad input: the same refusal every time.\"\"\"
    mark("start", key)
    raise ValueError(f"cannot work with {key}")
"""


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


class Mosquitto:
    """A Mosquitto on a free port. ``persistent`` keeps sessions and queued messages across a
    stop and start (as a deployed broker does); ``defaults`` leaves Mosquitto's own limits."""

    def __init__(self, workdir: Path, *, persistent: bool = True) -> None:
        assert MOSQUITTO is not None, "Mosquitto is not installed"
        self.port = free_port()
        # Mosquitto started as root drops to its own user, which cannot enter pytest's private
        # temporary directories: its database goes to a directory it may write.
        self.store = Path(tempfile.mkdtemp(prefix="fleetmind-faults-"))
        os.chmod(self.store, 0o777)
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true", "set_tcp_nodelay true"]
        if persistent:
            lines += [
                "persistence true",
                f"persistence_location {self.store}/",
                "autosave_interval 1",
            ]
        self.conf = workdir / f"mosquitto-{self.port}.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        """Stop it the way a service manager does (it saves its state)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)
        self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.store, ignore_errors=True)


@dataclass
class Devices:
    """`fleetmind agent serve` processes of the audited agents, by device id."""

    workdir: Path
    broker_url: str
    heartbeat_s: float = 0.5
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def audit(self) -> Path:
        return self.workdir / "audit.log"

    def start(self, device: str, *, hold_s: float = 0.0) -> subprocess.Popen[bytes]:
        agents = self.workdir / "audited_agents.py"
        if not agents.exists():
            agents.write_text(AUDITED_AGENTS)
        env = {
            **os.environ,
            "FM_DEVICE": device,
            "FM_AUDIT": str(self.audit),
            "FM_HOLD": str(hold_s),
        }
        process = subprocess.Popen(
            [
                *(FLEETMIND, "agent", "serve", str(agents), "--broker", self.broker_url),
                *("--device-id", device, "--heartbeat", str(self.heartbeat_s)),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.processes[device] = process
        return process

    def kill(self, device: str) -> None:
        process = self.processes[device]
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)

    def lines(self) -> list[str]:
        return self.audit.read_text().splitlines() if self.audit.exists() else []

    def counts(self, what: str) -> Counter[str]:
        """How often each key was started (``start``) or finished (``end``), on any device."""
        return Counter(line.split()[2] for line in self.lines() if line.split()[1] == what)

    async def until(
        self, predicate: Callable[[], bool], what: str, deadline_s: float = 60.0
    ) -> None:
        """Wait (without blocking the event loop) until ``predicate()`` holds."""
        deadline = time.monotonic() + deadline_s
        while not predicate():
            assert time.monotonic() < deadline, f"timed out: {what}; audit: {self.lines()[-20:]}"
            await asyncio.sleep(0.02)
