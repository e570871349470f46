"""Real processes for the fault tests of orchestrator replicas on PostgreSQL: Mosquitto, a
PostgreSQL cluster of the test's own (so that a test may restart it), one device serving the
counted agents of ``tests/fixtures/replica_agents.py``, ``fleetmind orchestrator serve``
replicas that can be SIGKILLed and started again under the same id, and ``fleetmind submit``.

Every process runs in its own process group with its output in a file of the rig's directory
(shown when a wait fails), and :meth:`Rig.close` kills whatever is still running.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from repo_paths import FIXTURES

from fleetmind.protocols import (
    BrokerAddress,
    MqttConnection,
    Topics,
    mosquitto_installed,
    parse_envelope,
)
from fleetmind.testing import LocalPostgres, postgres_missing, start_test_broker
from fleetmind.testing import start_test_postgres as _start_postgres

FLEETMIND = str(Path(sys.executable).parent / "fleetmind")
FLEET = "farm"
DEVICE = "pi-1"
AGENTS = FIXTURES / "replica_agents.py"
LEASE_S = 2.0
"""The replicas' lease: short, so that takeovers happen within a test."""
DEADLINE_S = 120.0
"""How long any one condition is waited for: these machines can be very loaded."""

RELAY_TASK = (
    "name: relay\nsubtasks:\n"
    "  - {id: a, agent: counted, inputs: {key: a}}\n"
    "  - {id: b, agent: gated, inputs: {key: b, after: '${a}'}}\n"
    "  - {id: c, agent: counted, inputs: {key: c, after: '${b}'}}\n"
)
"""``a`` runs at once, ``b`` holds until the gate opens, ``c`` follows ``b``."""
RELAY_OUTPUTS = {"a": "a done", "b": "b done", "c": "c done"}


def missing_parts() -> str | None:
    """Why these tests cannot run here (None when they can); under CI a missing part fails."""
    missing = postgres_missing()
    if missing is None and not mosquitto_installed():
        missing = "needs Mosquitto (shared subscriptions; the embedded broker lacks them)"
    if missing is not None and os.environ.get("CI") == "true":
        raise RuntimeError(f"required under CI: {missing}")
    return missing


@dataclass
class Rig:
    """The processes of one test and where their traces go."""

    workdir: Path
    broker_port: int
    credentials: dict[str, str]
    postgres: LocalPostgres
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)
    starts: Counter[str] = field(default_factory=Counter)
    _store: Any = None

    # Paths and addresses -----------------------------------------------------------------

    @property
    def store_url(self) -> str:
        return self.postgres.url("fleet")

    @property
    def broker_url(self) -> str:
        return f"mqtt://127.0.0.1:{self.broker_port}"

    @property
    def runs_file(self) -> Path:
        return self.workdir / "runs.log"

    @property
    def gate(self) -> Path:
        return self.workdir / "gate"

    def login(self, user: str) -> list[str]:
        password = self.workdir / f"{user}.pw"
        if not password.exists():
            password.write_text(self.credentials[user])
        return ["--username", user, "--password-file", str(password)]

    def address(self) -> BrokerAddress:
        return BrokerAddress(
            "127.0.0.1",
            self.broker_port,
            username="orchestrator",
            password=self.credentials["orchestrator"],
        )

    # Processes -----------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Path:
        self.starts[name] += 1
        log = self.workdir / "logs" / f"{name}.{self.starts[name]}.log"
        log.parent.mkdir(exist_ok=True)
        with log.open("wb") as out:
            self.processes[name] = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                start_new_session=True,  # its own process group, killed as one
            )
        self.logs[name] = log
        return log

    def output(self, name: str) -> str:
        """What the latest start of ``name`` has printed so far."""
        return self.logs[name].read_text(errors="replace")

    def _ready(self, name: str, marker: str) -> None:
        self.until(
            lambda: marker in self.output(name),
            f"{name} says {marker!r}",
            alive=(name,),
        )

    def start_device(self) -> None:
        """``fleetmind agent serve`` of the counted agents; returns once it serves them."""
        self._spawn(
            DEVICE,
            [
                *(FLEETMIND, "agent", "serve", str(AGENTS), "--broker", self.broker_url),
                *("--fleet-name", FLEET, "--heartbeat", "0.5", *self.login(DEVICE)),
            ],
            {"FM_RUNS": str(self.runs_file), "FM_GATE": str(self.gate)},
        )
        self._ready(DEVICE, "serving")

    def start_replicas(self, *replicas: str, lease_s: float = LEASE_S) -> None:
        """``fleetmind orchestrator serve`` on the shared store, one per id (started together);
        returns once each takes tasks."""
        for replica in replicas:
            self._spawn(
                replica,
                [
                    *(FLEETMIND, "orchestrator", "serve", "--broker", self.broker_url),
                    *("--fleet-name", FLEET, *self.login("orchestrator")),
                    *("--store", self.store_url, "--lease", f"{lease_s:g}"),
                    *("--replica-id", replica, "--data-dir", str(self.workdir / replica)),
                ],
            )
        for replica in replicas:
            self._ready(replica, "taking tasks")

    def kill(self, name: str) -> None:
        """SIGKILL the process (its whole group), as a crash or the OOM killer would."""
        process = self.processes[name]
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def stop(self, name: str) -> int:
        """Ctrl-C, as its user stops it; its exit code once it has exited."""
        process = self.processes[name]
        process.send_signal(signal.SIGINT)
        self.until(lambda: process.poll() is not None, f"{name} stops")
        return process.wait()

    def freeze(self, name: str, frozen: bool = True) -> None:
        """SIGSTOP the process (a hung machine: it neither works nor lets go), or SIGCONT."""
        os.killpg(self.processes[name].pid, signal.SIGSTOP if frozen else signal.SIGCONT)

    def alive(self, name: str) -> bool:
        return self.processes[name].poll() is None

    def submit(self, task_yaml: str = RELAY_TASK) -> None:
        """``fleetmind submit --json`` in the background (its answer: :meth:`submitted`)."""
        task = self.workdir / "task.yaml"
        task.write_text(task_yaml)
        self._spawn(
            "submit",
            [
                *(FLEETMIND, "submit", str(task), "--broker", self.broker_url),
                *("--fleet-name", FLEET, *self.login("orchestrator"), "--json"),
                *("--timeout", "400", "--orchestrator-timeout", str(DEADLINE_S)),
            ],
        )

    def submitted(self) -> dict[str, Any]:
        """The submitter's JSON answer once it exits 0 (its exit and output otherwise)."""
        process = self.processes["submit"]
        self.until(lambda: process.poll() is not None, "the submitter gets the result")
        text = self.output("submit")
        assert process.returncode == 0, text
        start = text.find("{")
        assert start >= 0, text
        answer: dict[str, Any] = json.loads(text[start:])
        return answer

    def close(self) -> None:
        if self._store is not None:
            with suppress(Exception):
                self._store.close()
        for name in self.processes:
            with suppress(Exception):
                self.kill(name)

    # What happened -----------------------------------------------------------------------

    def runs(self, what: str = "start") -> Counter[str]:
        """How often each key's run started (``start``) or ended (``end``) on the device."""
        text = self.runs_file.read_text() if self.runs_file.exists() else ""
        # Only whole lines count: the device may be writing the last one right now.
        lines = text.split("\n")[:-1]
        return Counter(line.split()[1] for line in lines if line.split()[0] == what)

    def open_gate(self) -> None:
        self.gate.touch()

    def store(self) -> Any:
        """The test's own connection to the replicas' store (a PostgresStore)."""
        if self._store is None:
            from fleetmind.orchestrator import PostgresStore

            self._store = PostgresStore(self.store_url)
        return self._store

    def forget_store(self) -> None:
        """Close the test's connection (before its server stops)."""
        if self._store is not None:
            self._store.close()
            self._store = None

    def the_task(self) -> Any:
        """The one task in the store (a TaskRecord), once there is one."""
        found: list[Any] = []

        def stored() -> bool:
            found[:] = self.store().tasks(10)
            return len(found) == 1

        self.until(stored, "the submitted task is stored")
        return found[0]

    def record(self, task_id: str) -> Any:
        return self.store().load(task_id)[0]

    def entries(self, task_id: str) -> list[Any]:
        return list(self.store().load(task_id)[1])

    def wait_for_answer(self, replica: str) -> None:
        """Open the gate and return once the device's answer to ``replica`` is at the broker
        (held in that replica's session while it is away)."""
        topics = Topics(FLEET)

        async def watch() -> None:
            client = f"fm-watch-{os.getpid()}"
            async with MqttConnection(self.address(), client, session_expiry_s=0) as mqtt:
                await mqtt.subscribe(topics.device_out(DEVICE, replica))
                self.open_gate()
                async for message in mqtt.messages():
                    envelope, _ = parse_envelope(message.payload)
                    if envelope.kind == "result":
                        return

        asyncio.run(asyncio.wait_for(watch(), DEADLINE_S))

    def until(
        self,
        predicate: Callable[[], bool],
        what: str,
        *,
        alive: tuple[str, ...] = (),
        deadline_s: float = DEADLINE_S,
    ) -> None:
        """Wait until ``predicate()`` holds; fail with every process's last output when it
        does not within the deadline, or when one of ``alive`` exits meanwhile."""
        deadline = time.monotonic() + deadline_s
        while not predicate():
            for name in alive:
                assert self.alive(name), f"{name} exited while waiting: {what}\n{self.trace()}"
            assert time.monotonic() < deadline, f"timed out: {what}\n{self.trace()}"
            time.sleep(0.05)

    def trace(self) -> str:
        """The last lines of every process's output, and the device's runs."""
        parts = [f"runs: {dict(self.runs())} ended {dict(self.runs('end'))}"]
        for name, log in self.logs.items():
            lines = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
            state = "running" if self.alive(name) else f"exit {self.processes[name].returncode}"
            parts.append(f"--- {name} ({state}):\n" + "\n".join(lines))
        return "\n".join(parts)


@contextmanager
def replica_rig(tmp_path: Path) -> Iterator[Rig]:
    """Mosquitto, PostgreSQL (an empty database ``fleet``) and the device, stopped on exit."""
    missing = missing_parts()
    if missing is not None:
        pytest.skip(missing)
    handle, port, credentials = start_test_broker(
        tmp_path, {DEVICE: ["counted", "gated"]}, fleet=FLEET, embedded=False
    )
    with handle:
        postgres = _start_postgres()
        rig = Rig(tmp_path, port, credentials, postgres)
        try:
            postgres.create_database("fleet")
            rig.start_device()
            yield rig
        finally:
            rig.close()
            postgres.close()
