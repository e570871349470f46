"""The real logs of benchmarks/memory.py, produced or found at run time: Mosquitto and the fleet's
own processes through a fault run, PostgreSQL through errors, a crash and a stop, and the
system's package logs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _harness import (
    FLEETMIND_CLI,
    MosquittoProcess,
    _progress,
    _spawn,
    _stop,
    _temp_dir,
    _track,
    free_port,
    mosquitto_binary,
    until,
)

# ---------------------------------------------------------------------------------------------
# Processes: the broker and the devices (every one is stopped at exit, whatever happened)
# ---------------------------------------------------------------------------------------------


class Mosquitto(MosquittoProcess):
    """Mosquitto on a free loopback port, optionally with logins, an ACL and a full log."""

    def __init__(self, *, users: dict[str, str] | None = None, log_all: bool = False) -> None:
        binary = mosquitto_binary()
        if binary is None:
            raise RuntimeError("Mosquitto is not installed (apt-get install mosquitto)")
        # Started as root, Mosquitto drops to its own user: what it reads and writes must be
        # open to it, in a directory of its own (the run's private one is not).
        self.dir = _temp_dir("fleetmind-memory-mosquitto-")
        os.chmod(self.dir, 0o777)
        super().__init__(binary, free_port(), self.dir / "mosquitto.conf", self.dir / "stdout.log")
        self.log = self.dir / "mosquitto.log"
        lines = [f"listener {self.port} 127.0.0.1", "set_tcp_nodelay true"]
        if users:
            passwords = self.dir / "passwords"
            passwords.write_text("".join(f"{user}:{pw}\n" for user, pw in users.items()))
            subprocess.run(
                [shutil.which("mosquitto_passwd") or "mosquitto_passwd", "-U", str(passwords)],
                check=True,
                capture_output=True,
            )
            os.chmod(passwords, 0o644)
            acl = self.dir / "acl"
            # Every fleet login may use the fleet's topics; the sensor only its own.
            acl.write_text(
                "".join(
                    f"user {user}\ntopic readwrite fleetmind/#\n\n"
                    for user in users
                    if user != "sensor-7"
                )
                + "user sensor-7\ntopic write sensors/sensor-7/#\n"
            )
            os.chmod(acl, 0o644)
            lines += ["allow_anonymous false", f"password_file {passwords}", f"acl_file {acl}"]
        else:
            lines.append("allow_anonymous true")
        if log_all:
            self.log.touch()
            os.chmod(self.log, 0o666)
            lines += [
                f"log_dest file {self.log}",
                "log_type all",
                "connection_messages true",
                "log_timestamp true",
                "persistence true",
                f"persistence_location {self.dir}/",
                "autosave_interval 5",
            ]
        self.conf.write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------------
# Logs (a): Mosquitto and the fleet's own processes through a fault-injection run
# ---------------------------------------------------------------------------------------------

AGENTS_FILE = '''\
"""Device agents for benchmarks/memory.py: work that takes a while, and a recaller that times
the fleet's memory as seen from the device (ctx.memory.recall over MQTT)."""

import asyncio
import time

from fleetmind import agent


@agent(id="worker", skills=["work"], description="Does a unit of work that takes a while.")
async def worker(key: str, hold: float = 0.2) -> str:
    await asyncio.sleep(hold)
    return key


@agent(id="recaller", skills=["recall"], description="Times recalls of the fleet's memory.")
async def recaller(
    ctx, queries: list[str], limit: int = 10, warmup: int = 5, layer: str = "semantic"
) -> dict:
    for query in queries[:warmup]:
        await ctx.memory.recall(query, limit=limit, layer=layer)
    seconds, answers = [], []
    for query in queries:
        start = time.perf_counter()
        found = await ctx.memory.recall(query, limit=limit, layer=layer)
        seconds.append(time.perf_counter() - start)
        answers.append([item.text for item in found])
    return {"seconds": seconds, "answers": answers}


agents = [worker, recaller]
'''

KEEPALIVE_S = 15
"""fleetmind's MQTT keep-alive: Mosquitto drops a silent client after 1.5 times this."""


@dataclass
class Devices:
    """``fleetmind agent serve`` processes, by device id (one login per device)."""

    workdir: Path
    url: str
    passwords: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, device: str, *, login: str | None = None, heartbeat_s: float = 0.5) -> None:
        agents = self.workdir / "bench_agents.py"
        if not agents.exists():
            agents.write_text(AGENTS_FILE)
        login = login or device
        secret = self.workdir / f"password-{login}"
        secret.write_text(self.passwords.get(login, ""))
        command = [FLEETMIND_CLI, "agent", "serve", str(agents), "--broker", self.url]
        if login in self.passwords:
            command += ["--username", login, "--password-file", str(secret)]
        command += ["--device-id", device, "--heartbeat", str(heartbeat_s)]
        key = device if device not in self.processes else f"{device}#{len(self.processes)}"
        self.processes[key] = _spawn(command, self.workdir / f"device-{key}.log")

    def send(self, key: str, sig: int) -> None:
        process = self.processes[key]
        if process.poll() is None:
            os.kill(process.pid, sig)

    def stop(self, key: str, sig: int = signal.SIGTERM) -> None:
        process = self.processes.pop(key)
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGCONT)
        _stop(process, sig)

    def close(self) -> None:
        for key in list(self.processes):
            self.stop(key)


def _work_graph(name: str, count: int) -> Any:
    from fleetmind import TaskGraph

    graph = TaskGraph(name)
    for n in range(count):
        graph.add_subtask(f"w{n:02d}", agent="worker", inputs={"key": f"{name}-{n}", "hold": 0.2})
    return graph


async def _run_task(fleet: Any, graph: Any, timeline: list[str], timeout_s: float = 60) -> None:
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout_s):
            result = await fleet.run(graph)
        outcome = "done" if result.ok else f"failed: {result.errors}"
    except TimeoutError:
        outcome = f"not finished within {timeout_s:g} s"
    timeline.append(f"task {graph.name}: {outcome} ({time.monotonic() - started:.1f} s)")


def _mqtt_connect_packet(client_id: str, keepalive_s: int) -> bytes:
    """An MQTT 3.1.1 CONNECT (anonymous, clean session)."""

    def text(value: str) -> bytes:
        raw = value.encode()
        return len(raw).to_bytes(2, "big") + raw

    body = text("MQTT") + bytes([4, 0x02]) + keepalive_s.to_bytes(2, "big") + text(client_id)
    return bytes([0x10, len(body)]) + body


async def _raw_client(port: int, payload: bytes, hold_s: float) -> None:
    """Open a TCP connection to the broker, send ``payload``, keep the socket for ``hold_s``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    with contextlib.suppress(ConnectionError):
        await writer.drain()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(hold_s):
                await reader.read()
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def _login(port: int, user: str, password: str, timeline: list[str], what: str) -> None:
    from fleetmind.protocols import BrokerAddress, MqttConnection

    address = BrokerAddress("127.0.0.1", port, username=user, password=password)
    try:
        async with MqttConnection(address, address.client_id("device", user)):
            timeline.append(f"{what}: accepted (unexpected)")
    except Exception as exc:
        timeline.append(f"{what}: refused ({type(exc).__name__})")


async def _sensor_publishes_outside_its_topics(
    port: int, password: str, timeline: list[str]
) -> None:
    from fleetmind.errors import FleetmindError
    from fleetmind.protocols import BrokerAddress, MqttConnection

    address = BrokerAddress("127.0.0.1", port, username="sensor-7", password=password)
    async with MqttConnection(address, "sensor-7", session_expiry_s=0) as sensor:
        await sensor.publish("sensors/sensor-7/temperature", b"21.5")
        answers: dict[str, int] = {}
        for n in range(3):  # a misconfigured sensor writing into the fleet's topics
            try:
                await sensor.publish("fleetmind/default/devices/pi-1/inbox", b'{"kind": "x%d"}' % n)
                answer = "accepted"
            except FleetmindError as exc:
                answer = exc.message
            answers[answer] = answers.get(answer, 0) + 1
    for answer, count in answers.items():
        timeline.append(f"sensor-7, {count} publishes into the fleet's topics: {answer}")


@dataclass
class FaultRun:
    mosquitto_log: str
    fleet_log: str
    timeline: list[str]
    seconds: float


async def mosquitto_fault_run(workdir: Path) -> FaultRun:
    """Mosquitto (full log) and a three-device fleet through faults; the logs it left."""
    from fleetmind import Fleet
    from fleetmind.orchestrator import SkillRouter
    from fleetmind.protocols import BrokerAddress
    from fleetmind.serve import MqttFleetLink

    started = time.monotonic()
    users = ["orchestrator", "pi-1", "pi-2", "pi-3", "sensor-7"]
    passwords = {user: secrets.token_hex(8) for user in users}
    broker = Mosquitto(users=passwords, log_all=True)
    devices = Devices(workdir, broker.url, passwords)
    timeline: list[str] = []
    fleet_log = workdir / "orchestrator.log"
    handler = logging.FileHandler(fleet_log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    fleetmind_logger = logging.getLogger("fleetmind")
    fleetmind_logger.addHandler(handler)
    previous_level = fleetmind_logger.level
    fleetmind_logger.setLevel(logging.INFO)

    def mark(what: str) -> None:
        timeline.append(f"{time.monotonic() - started:5.1f} s  {what}")
        _progress(f"fault run: {what}")

    try:
        broker.start()
        mark("broker started with logins and an ACL, log_type all")
        for device in ("pi-1", "pi-2", "pi-3"):
            devices.start(device)
        fleet = Fleet(router=SkillRouter())
        address = BrokerAddress(
            "127.0.0.1", broker.port, username="orchestrator", password=passwords["orchestrator"]
        )
        async with MqttFleetLink(fleet, address, dead_after_s=5.0) as link:

            def online() -> int:
                return sum(1 for d in link.devices.values() if d.online)

            if not await until(lambda: online() == 3, 90, 0.1):
                raise RuntimeError("the three devices did not come online")
            mark("three devices online; a task of 40 subtasks")
            await _run_task(fleet, _work_graph("before", 40), timeline)
            mark("SIGKILL pi-2 (a device that loses power)")
            devices.send("pi-2", signal.SIGKILL)
            mark(f"SIGSTOP pi-3 (a hung device: its keep-alive of {KEEPALIVE_S} s runs out)")
            devices.send("pi-3", signal.SIGSTOP)
            await _login(broker.port, "pi-2", "wrong-password", timeline, "pi-2, wrong password")
            await _login(broker.port, "pi-9", "guess", timeline, "pi-9, unknown user")
            mark("bad logins tried: wrong password, unknown user")
            await _sensor_publishes_outside_its_topics(broker.port, passwords["sensor-7"], timeline)
            mark("sensor-7 published into the fleet's topics (denied by the ACL)")
            await _raw_client(broker.port, b"GET / HTTP/1.1\r\nHost: broker\r\n\r\n", 1.0)
            await _raw_client(broker.port, b"\x10\xff\xff\xff\xff\x01garbage", 1.0)
            mark("an HTTP request and a malformed packet sent to the MQTT port")
            devices.start("pi-1")  # the same device twice: each login knocks the other off
            mark("a second pi-1 started (duplicate device id)")
            await _run_task(fleet, _work_graph("during", 20), timeline, timeout_s=30)
            await asyncio.sleep(3)
            duplicate = [key for key in devices.processes if key.startswith("pi-1#")]
            for key in duplicate:
                devices.stop(key, signal.SIGKILL)
            mark("duplicate pi-1 killed")
            anonymous = _mqtt_connect_packet("no-login", 2)
            await _raw_client(broker.port, anonymous, 1.0)
            mark("an anonymous login tried")
            timed_out = await until(
                lambda: "exceeded timeout" in broker.log.read_text(errors="replace"),
                2 * KEEPALIVE_S,
                0.25,
            )
            mark(f"hung pi-3 {'timed out at the broker' if timed_out else 'NOT timed out'}")
            devices.stop("pi-3", signal.SIGKILL)
            devices.stop("pi-2", signal.SIGKILL)
            devices.start("pi-2")
            devices.start("pi-3")
            mark("pi-2 and pi-3 restarted")
            if not await until(lambda: online() == 3, 60, 0.1):
                timeline.append("pi-2 and pi-3 did not come back within 60 s")
            mark("broker restart (SIGTERM, start again)")
            broker.stop()
            await asyncio.sleep(1.0)
            broker.start()
            if not await until(lambda: online() == 3, 60, 0.1):
                timeline.append("the devices did not come back within 60 s of the restart")
            await asyncio.sleep(1.0)
            mark("three devices back; a task of 40 subtasks")
            await _run_task(fleet, _work_graph("after", 40), timeline)
            devices.close()
            mark("devices stopped (SIGTERM)")
    finally:
        devices.close()
        broker.stop()
        fleetmind_logger.removeHandler(handler)
        fleetmind_logger.setLevel(previous_level)
        handler.close()
    fleet_text, broker_text = await asyncio.to_thread(_read_fault_logs, workdir, broker.log)
    return FaultRun(broker_text, fleet_text, timeline, time.monotonic() - started)


def _read_fault_logs(workdir: Path, broker_log: Path) -> tuple[str, str]:
    """fleetmind's own logs (the orchestrator's, then each device's) and Mosquitto's."""
    paths = [workdir / "orchestrator.log", *sorted(workdir.glob("device-*.log"))]
    fleet = "".join(path.read_text(errors="replace") for path in paths)
    return fleet, broker_log.read_text(errors="replace")


# ---------------------------------------------------------------------------------------------
# Logs (b): the system's package logs; (c): PostgreSQL through errors, a crash and a stop
# ---------------------------------------------------------------------------------------------

SYSTEM_LOGS = (
    ("dpkg", "dpkg", Path("/var/log/dpkg.log")),
    ("apt history", "apt-history", Path("/var/log/apt/history.log")),
    ("apt term", "apt-term", Path("/var/log/apt/term.log")),
)


@dataclass
class LogText:
    name: str
    kind: str
    text: str
    origin: str


def system_logs(notes: list[str]) -> list[LogText]:
    found = []
    for name, kind, path in SYSTEM_LOGS:
        try:
            text = path.read_text(errors="replace")
        except OSError as exc:
            notes.append(f"{name}: {path} not read ({exc.strerror or exc}); skipped")
            continue
        if not text.strip():
            notes.append(f"{name}: {path} is empty; skipped")
            continue
        found.append(LogText(name, kind, text, str(path)))
    return found


def postgres_bin() -> Path | None:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "postgres").exists() and (candidate / "psql").exists():
            return candidate
    found = shutil.which("postgres")
    if found and shutil.which("psql"):
        return Path(found).resolve().parent
    return None


def postgres_run(notes: list[str]) -> LogText | None:
    """PostgreSQL on a free port in a temporary directory: a pgbench workload with every
    statement logged, then errors (failed logins, a missing database, a syntax error, a missing
    table, a duplicate key, division by zero, a statement timeout, too many clients, a
    deadlock), a backend terminated by an administrator, a backend killed (SIGKILL: the server
    restarts and recovers), and a fast shutdown. Its log, or None where it cannot run."""
    bindir = postgres_bin()
    if bindir is None:
        notes.append("postgresql: no postgres/psql binaries found; skipped")
        return None
    options: dict[str, Any] = {}
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            notes.append("postgresql: running as root and no 'postgres' user; skipped")
            return None
        options["user"] = "postgres"
    home = _temp_dir("fleetmind-memory-pg-")
    os.chmod(home, 0o777)
    data, log = home / "data", home / "postgresql.log"
    password = home / "pwfile"
    password.write_text("bench-admin\n")
    os.chmod(password, 0o644)
    port = free_port()
    env = {**os.environ, "LC_ALL": "C", "PGHOST": "127.0.0.1", "PGPORT": str(port)}

    def run(*command: str, user: str = "postgres", pw: str = "bench-admin", **extra: Any) -> Any:
        return subprocess.run(
            [str(bindir / command[0]), *command[1:]],
            env={**env, "PGUSER": user, "PGPASSWORD": pw},
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            **options,
            **extra,
        )

    def background(sql: str, *, user: str = "bench", name: str = "psql") -> Any:
        process = subprocess.Popen(
            [str(bindir / "psql"), "-d", "bench", "-c", sql],
            env={**env, "PGUSER": user, "PGPASSWORD": "bench-pw", "PGAPPNAME": name},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **options,
        )
        return _track(process)

    init = run(
        "initdb", "-D", str(data), "-U", "postgres", "--auth-local=trust",
        "--auth-host=scram-sha-256", f"--pwfile={password}", "-N", "-E", "UTF8",
        "--locale=C",
    )  # fmt: skip
    if init.returncode != 0:
        notes.append(f"postgresql: initdb failed ({init.stderr.strip()[-200:]}); skipped")
        return None
    server = _spawn(
        [
            str(bindir / "postgres"), "-D", str(data), "-c", f"port={port}",
            "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={home}",
            "-c", "log_connections=on", "-c", "log_disconnections=on",
            "-c", "log_statement=all", "-c", "fsync=off", "-c", "max_connections=8",
            "-c", "lc_messages=C", "-c", "log_line_prefix=%m [%p] ",
        ],
        log,
        **options,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while run("pg_isready", "-q").returncode != 0:
            if server.poll() is not None or time.monotonic() > deadline:
                notes.append("postgresql: the server did not start; skipped")
                return None
            time.sleep(0.2)
        run("psql", "-c", "CREATE ROLE bench LOGIN PASSWORD 'bench-pw'")
        run("psql", "-c", "CREATE DATABASE bench OWNER bench")
        run("pgbench", "-i", "-s", "1", "-q", "bench", user="bench", pw="bench-pw")
        run("pgbench", "-n", "-c", "2", "-t", "250", "bench", user="bench", pw="bench-pw")
        # Logins that fail, and a database that is not there.
        run("psql", "-d", "bench", "-c", "SELECT 1", user="bench", pw="wrong-password")
        run("psql", "-d", "bench", "-c", "SELECT 1", user="intruder", pw="guess")
        run("psql", "-d", "benchmark", "-c", "SELECT 1", user="bench", pw="bench-pw")
        for sql in (
            "SELEC abalance FROM pgbench_accounts WHERE aid = 1",
            "SELECT abalance FROM pgbench_acounts WHERE aid = 1",
            "INSERT INTO pgbench_branches (bid, bbalance) VALUES (1, 0)",
            "SELECT sum(abalance) / (SELECT count(*) - count(*) FROM pgbench_tellers) "
            "FROM pgbench_accounts",
            "SET statement_timeout = '300ms'; SELECT pg_sleep(2)",
        ):
            run("psql", "-d", "bench", "-c", sql, user="bench", pw="bench-pw")
        # Too many clients: 5 slots for ordinary users, 6 sessions.
        crowd = [background("SELECT pg_sleep(3)", name=f"crowd-{n}") for n in range(6)]
        for process in crowd:
            process.wait(timeout=60)
        # A deadlock between two transfers that lock the same rows in opposite orders.
        first = background(
            "BEGIN; UPDATE pgbench_branches SET bbalance = bbalance + 1 WHERE bid = 1; "
            "SELECT pg_sleep(1); UPDATE pgbench_tellers SET tbalance = tbalance + 1 "
            "WHERE tid = 1; COMMIT;",
            name="transfer-a",
        )
        second = background(
            "BEGIN; UPDATE pgbench_tellers SET tbalance = tbalance + 1 WHERE tid = 1; "
            "SELECT pg_sleep(1); UPDATE pgbench_branches SET bbalance = bbalance + 1 "
            "WHERE bid = 1; COMMIT;",
            name="transfer-b",
        )
        first.wait(timeout=60)
        second.wait(timeout=60)
        # A report that hangs, terminated by an administrator.
        stuck = background("SELECT pg_sleep(30)", name="stuck-report")
        time.sleep(1.0)
        run(
            "psql", "-d", "bench", "-c",
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'stuck-report'",
        )  # fmt: skip
        stuck.wait(timeout=60)
        # A backend killed outright: the postmaster restarts every process and recovers.
        victim = background("SELECT pg_sleep(30)", name="victim")
        time.sleep(1.0)
        pids = run(
            "psql", "-d", "bench", "-At", "-c",
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'victim'",
        ).stdout.split()  # fmt: skip
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        victim.wait(timeout=60)
        deadline = time.monotonic() + 60
        while run("pg_isready", "-q").returncode != 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        run("pgbench", "-n", "-c", "1", "-t", "50", "bench", user="bench", pw="bench-pw")
    finally:
        _stop(server, signal.SIGINT)  # fast shutdown
    version = run("postgres", "--version").stdout.strip()
    return LogText("postgresql", "postgresql", log.read_text(errors="replace"), version)
