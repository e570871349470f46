"""Memory: compressing real operational logs, recall at scale, and recall from a device.

1. Compression of real operational logs (extractive, no model)
    The logs are real, produced or found at run time, never committed:

    - Mosquitto 2.0 with ``log_type all`` and ``connection_messages true`` (log file in a
      temporary directory), logins (a password file) and an ACL, through a fault run made by
      this benchmark (about 35 s): an orchestrator (``Fleet`` + ``MqttFleetLink``) in this
      process and three ``fleetmind agent serve`` devices run a 40-subtask task; then pi-2 is
      SIGKILLed (its socket closes), pi-3 is SIGSTOPped (hung: Mosquitto drops it when its 15 s
      keep-alive has run out 1.5 times), a wrong password, an unknown user and an anonymous
      login are tried, a sensor publishes into the fleet's topics against the ACL, an HTTP
      request and a malformed packet reach the MQTT port, a second pi-1 (the same device id)
      runs beside the first while a 20-subtask task runs, pi-2 and pi-3 restart, the broker is
      restarted (SIGTERM, start), and a last 40-subtask task runs. The same run's fleetmind
      processes give a second, small log: the orchestrator's ``fleetmind`` logger (INFO, to a
      file) and each device's output.
    - PostgreSQL (when ``postgres`` and ``psql`` are installed; as the ``postgres`` user when
      run as root): initdb and a server on a free port in a temporary directory, every
      statement and connection logged, a pgbench workload (2 clients x 250 transactions), then
      failed logins, a missing database, a syntax error, a missing table, a duplicate key,
      division by zero, a statement timeout, too many clients, a deadlock, a backend terminated
      by an administrator, a backend SIGKILLed (the server restarts and recovers), more
      pgbench, and a fast shutdown (about 10 s).
    - The system's package logs, when present: /var/log/dpkg.log, /var/log/apt/history.log,
      /var/log/apt/term.log (a missing one is skipped, and the report says so).

    Critical facts come from rules per kind of log, written before any compression result was
    seen (the code just below, with its comment), independently of fleetmind's PIN_PATTERN:
    Mosquitto (broker start/stop and version, listeners, each client that connected, and each
    client disconnected, closed, timed out, taken over, refused, denied or dropped, errors and
    warnings), fleetmind (devices serving, connections lost, reconnects, rejected messages,
    warnings), PostgreSQL (each ERROR/FATAL/PANIC/WARNING with its DETAIL/HINT and the failed
    STATEMENT, start, listener, ready, shutdown, crash and recovery, who logged in to which
    database), dpkg (each package's final status and version, upgrades, removals), apt history
    (sessions, command lines, every package of an Install/Upgrade/Remove line with its
    versions), apt term (sessions, packages set up or removed with their version, errors and
    warnings). A fact is a tuple of strings from the log; it is kept when every string appears
    in the reduced text (case-sensitive); "on one line" asks that they appear on one line.

    Each log is reduced to 25% of its tokens (the packaged WordPiece tokenizer,
    ``default_tokenizer``) three ways: fleetmind's ``compress(text, budget, goal="what failed
    and why")``; ``truncate(text, budget)`` (the last lines that fit: what a plain buffer
    keeps); and head+tail (the first lines that fit in half the budget, then the last lines
    that fit in the rest). Reported: tokens before and after, compression (1 - after/before),
    facts kept, and AOI's published figures (72.4% compression, 92.8% kept; not re-run) as a
    reference row; then the same at 10%, 25% and 50% budgets. The goal: at least 75%
    compression with at least 95% of critical facts kept, per log.

2. Recall at 1k, 10k and 100k memories (``--quick``: 1k, 10k)
    Half episodes (``add_episode``), half facts (``add_fact``, which merges a near-duplicate
    of a known fact), interleaved, in an in-memory ``MemoryStore`` (SQLite ``:memory:``; exact
    search below 4,096 items, HNSW above). Vectors: synthetic clustered unit vectors of 768
    dimensions shaped like sentence embeddings (routing_scale.py's generator: a 48-d subspace,
    round(2 sqrt(n)) centres of log-normal popularity, spread around them, small isotropic
    noise), fed through an ``embed`` function that maps each text ("memory 123") to its
    precomputed vector. Every memory has the same creation time, so recall's recency bonus is
    the same for all and the ranking is by similarity, like the ground truth's. Queries (300
    per layer; quick 100) are perturbed copies of stored vectors of the layer (cosine ~0.91 to
    the original), also looked up by text. Timed one at a time after 20 warm-up calls:
    ``store.recall(query, layer=..., limit=10)`` and, as the baseline, exact numpy search over
    the layer's vectors (``matrix @ q``, ``argpartition``, sort of the 10). recall@10 = share
    of the exact top 10 of the layer that recall returned. Also: insert time per item (the
    ``add_*`` calls: SQLite row, JSON, index, HNSW insert, a nearest-fact search per fact) and
    resident memory per item (RSS growth over the build / items).

    One more row: about 1,000 real log lines (distinct lines of the logs above, timestamps
    off, 30-240 characters, shuffled; quick 500) embedded with all-MiniLM-L6-v2 (the "light"
    model packaged with fleetmind), and 100 held-out lines as queries (quick 50): there each
    timed recall includes embedding the query, and the embedding alone is timed too. Near-
    duplicate log lines merge as facts, so fewer are stored than offered (the report says how
    many).

3. Remote recall
    Mosquitto on a free port, a ``Fleet(memory=store)`` with ``MqttFleetLink`` in this process
    (the store of the real-text row), and a ``fleetmind agent serve`` device process hosting
    ``recaller``, an agent that runs 5 warm-up and then 100 (quick 30) ``ctx.memory.recall(q,
    limit=10, layer="semantic")`` calls over MQTT and returns their times. The same queries run
    locally on the orchestrator before and after the remote ones (200 samples): straight on
    the store, through ``AgentMemory`` (``ctx.memory`` of an in-process agent: a worker
    thread), and through ``DeviceMemoryService.answer`` (what the orchestrator does for each
    device request, without MQTT). The baseline: a bare MQTT round trip, two ``MqttConnection``
    clients (a pinger here, a responder in its own process) exchanging messages of the same
    sizes as one recall request and its answer, QoS 1. Also: whether the device got the same
    answers as the local recall.

BLAS runs on one thread (``OPENBLAS_NUM_THREADS=1`` unless set), as in routing_scale.py. Every
process and broker the benchmark starts is stopped, and its temporary directories removed,
even on errors or Ctrl-C.

How to run
    .venv/bin/python benchmarks/memory.py                     # about 4 min on 2 cores
    .venv/bin/python benchmarks/memory.py --quick             # about 1.5 min
    .venv/bin/python benchmarks/memory.py --json out.json --only compression

    Needs Mosquitto (``apt-get install mosquitto``; ``/usr/sbin/mosquitto`` is found too);
    PostgreSQL is optional.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import math
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

# One BLAS thread unless told otherwise (as in routing_scale.py): on a small shared machine a
# matrix-vector product split over threads waits for the scheduler, which would make the exact
# baseline look slower than it is. Set before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

# ---------------------------------------------------------------------------------------------
# Critical facts: the rules, per kind of log
#
# WRITTEN BEFORE ANY COMPRESSION RESULT WAS SEEN, and not changed after. They say what an
# operator reading the log after an incident must still be able to learn from it — what ran,
# what changed, who connected, who was refused or dropped, what failed and with which message —
# from the log formats alone (Mosquitto 2.0, dpkg, apt, PostgreSQL 15), independently of
# fleetmind's PIN_PATTERN and of its template rules: the rules are not tuned to the compressor,
# nor the compressor to them. A fact is a tuple of strings copied from the log. It counts as
# kept when every string of it appears in the reduced text (case-sensitive: the issue's
# definition); "kept on one line", reported beside it, asks that they all appear on one line of
# the reduced text (a package and its version, a client id and what happened to it).
# ---------------------------------------------------------------------------------------------

Fact = tuple[str, ...]


@dataclass(frozen=True)
class Rule:
    """A line pattern and the fact a matching line states."""

    name: str
    pattern: re.Pattern[str]
    fact: Callable[[re.Match[str]], Fact]


def _rule(name: str, pattern: str, fact: Callable[[re.Match[str]], Fact]) -> Rule:
    return Rule(name, re.compile(pattern), fact)


def _tokens(text: str) -> Fact:
    """Every whitespace-separated word of a message (for errors no specific rule names)."""
    return tuple(dict.fromkeys(text.split()))


TROUBLE = re.compile(
    r"\b(?:error|errors|warning|fatal|panic|fail|failed|failure|unable|cannot|refused|denied)\b",
    re.IGNORECASE,
)
"""Words that make an otherwise unnamed line an error or a warning: the whole message is then
a fact (every word of it must survive)."""

MOSQUITTO_PREFIX = re.compile(r"^\d{9,11}: ")
MOSQUITTO_RULES = (
    _rule("broker start", r"^mosquitto version \S+ starting", lambda m: (m[0],)),
    _rule("broker stop", r"^mosquitto version \S+ terminating", lambda m: (m[0],)),
    _rule(
        "listener",
        r"^Opening (ipv4|ipv6) listen socket on port (\d+)",
        lambda m: (f"Opening {m[1]} listen socket on port", m[2]),
    ),
    _rule(
        "client connected",
        r"^New client connected from \S+ as (\S+) \(",
        lambda m: ("New client connected", m[1]),
    ),
    _rule(
        "client disconnected", r"^Client (\S+) disconnected\.$", lambda m: ("disconnected", m[1])
    ),
    _rule(
        "connection closed",
        r"^Client (\S+) closed its connection",
        lambda m: ("closed its connection", m[1]),
    ),
    _rule(
        "keepalive timeout",
        r"^Client (\S+) has exceeded timeout",
        lambda m: ("has exceeded timeout", m[1]),
    ),
    _rule(
        "socket error",
        r"^Socket error on client (\S+), disconnecting",
        lambda m: ("Socket error on client", m[1]),
    ),
    _rule(
        "not authorised",
        r"^Client (\S+) disconnected, (not authori[sz]ed)",
        lambda m: (m[2], m[1]),
    ),
    _rule(
        "session taken over",
        r"^Client (\S+) already connected, closing old connection",
        lambda m: ("already connected, closing old connection", m[1]),
    ),
    _rule(
        "protocol error",
        r"^Client (\S+) disconnected due to (.+?)\.?$",
        lambda m: (f"disconnected due to {m[2]}", m[1]),
    ),
    _rule(
        "denied",
        r"^Denied (PUBLISH|SUBSCRIBE) from (\S+) .*?'([^']*)'",
        lambda m: (f"Denied {m[1]} from", m[2], m[3]),
    ),
    _rule(
        "messages dropped",
        r"^Outgoing messages are being dropped for client (\S+)",
        lambda m: ("Outgoing messages are being dropped", m[1]),
    ),
)

DPKG_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")
DPKG_RULES = (
    _rule("upgrade", r"^upgrade (\S+) (\S+) (\S+)$", lambda m: ("upgrade", m[1], m[2], m[3])),
    _rule("remove", r"^(remove|purge) (\S+) (\S+)", lambda m: (m[1], m[2], m[3])),
)
DPKG_ROUTINE = re.compile(r"^(?:install|configure|trigproc|startup|conffile) ")
"""dpkg's routine action lines (package names such as ``libgpg-error-dev`` hold trouble words)."""
DPKG_STATUS = re.compile(r"^status (\S+) (\S+) (\S+)$")
"""The last status line of each package is a fact: ``status installed PKG VERSION`` (or the
state it was left in, when that is not ``installed``)."""

APT_HISTORY_RULES = (
    _rule("session", r"^Start-Date: (\S+)\s+(\S+)", lambda m: (m[1], m[2])),
    _rule("command", r"^Commandline: (.+)$", lambda m: (m[1],)),
    _rule("requested by", r"^Requested-By: (.+)$", lambda m: (m[1],)),
    _rule("error", r"^Error: (.+)$", lambda m: _tokens(m[1])),
)
APT_PACKAGES = re.compile(r"^(Install|Upgrade|Remove|Purge|Downgrade|Reinstall): (.+)$")
APT_PACKAGE = re.compile(r"(\S+) \(([^)]*)\)")
"""Each package of an Install/Upgrade/... line: (``Install:``, package, version[, new])."""

APT_TERM_RULES = (
    _rule("session", r"^Log started: (\S+)\s+(\S+)", lambda m: (m[1], m[2])),
    _rule(
        "configured",
        r"^Setting up (\S+) \(([^)]+)\)",
        lambda m: ("Setting up", m[1], m[2]),
    ),
    _rule("removed", r"^Removing (\S+) \(([^)]+)\)", lambda m: ("Removing", m[1], m[2])),
    _rule("apt error", r"^[EW]: (.+)$", lambda m: _tokens(m[0])),
)
APT_TERM_ROUTINE = re.compile(
    r"^(?:Selecting previously unselected package|Preparing to unpack|Unpacking|Setting up|"
    r"Processing triggers for|\(Reading database)"
)
"""Routine package lines (package names such as ``libgpg-error-dev`` hold trouble words)."""

POSTGRES_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \S+ \[\d+\] ")
POSTGRES_RULES = (
    _rule("error", r"^(ERROR|FATAL|PANIC|WARNING):\s+(.+)$", lambda m: (m[1], m[2])),
    _rule("error detail", r"^(DETAIL|HINT):\s+(.+)$", lambda m: (m[1], m[2])),
    _rule("start", r"^LOG:\s+starting (PostgreSQL \S+)", lambda m: ("starting", m[1])),
    _rule(
        "listening",
        r"^LOG:\s+listening on (IPv4|IPv6) address \"([^\"]+)\", port (\d+)",
        lambda m: (f'listening on {m[1]} address "{m[2]}", port', m[3]),
    ),
    _rule(
        "state",
        r"^LOG:\s+(database system is ready to accept connections|database system is shut down"
        r"|received (?:fast|smart|immediate) shutdown request)",
        lambda m: (m[1],),
    ),
    _rule(
        "crash and recovery",
        r"^LOG:\s+(.*(?:terminated by signal|terminating any other active|reinitializing"
        r"|not properly shut down|automatic recovery|was interrupted).*)$",
        lambda m: _tokens(m[1]),
    ),
    _rule(
        "login",
        r"^LOG:\s+connection authorized: user=(\S+) database=(\S+)",
        lambda m: ("connection authorized", f"user={m[1]}", f"database={m[2]}"),
    ),
)
POSTGRES_STATEMENT = re.compile(r"^STATEMENT:\s+(.+)$")
"""The statement that failed (the line after an ERROR of the same process)."""


FLEET_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (?:[A-Z]+ \S+: )?")
FLEET_RULES = (
    _rule(
        "device serving",
        r"^device (\S+) serving (.+) on (\S+)$",
        lambda m: (f"device {m[1]} serving", m[2]),
    ),
    _rule(
        "connection lost",
        r"^MQTT connection to (\S+) lost \((.*)\)",
        lambda m: ("MQTT connection to", m[1], f"lost ({m[2]})"),
    ),
    _rule("reconnected", r"^reconnected to (\S+)", lambda m: ("reconnected to", m[1])),
    _rule(
        "message rejected",
        r"^rejected a message on (\S+): (.+)$",
        lambda m: ("rejected a message on", m[1], m[2]),
    ),
)
FLEET_LEVEL = re.compile(r"^\S+ \S+ (WARNING|ERROR|CRITICAL) ")
"""fleetmind's own processes: the orchestrator's log (written by this benchmark's handler,
``time LEVEL logger: message``) and each device's output (``fleetmind agent serve``)."""


def _strip(prefix: re.Pattern[str], line: str) -> str:
    return prefix.sub("", line, count=1).rstrip()


def _apply(rules: Sequence[Rule], message: str, facts: dict[Fact, str]) -> bool:
    for rule in rules:
        match = rule.pattern.search(message)
        if match:
            facts.setdefault(rule.fact(match), rule.name)
            return True
    return False


def mosquitto_facts(text: str) -> dict[Fact, str]:
    facts: dict[Fact, str] = {}
    for line in text.splitlines():
        message = _strip(MOSQUITTO_PREFIX, line)
        if not _apply(MOSQUITTO_RULES, message, facts) and TROUBLE.search(message):
            facts.setdefault(_tokens(message), "error or warning")
    return facts


def dpkg_facts(text: str) -> dict[Fact, str]:
    facts: dict[Fact, str] = {}
    last: dict[str, tuple[str, str]] = {}
    for line in text.splitlines():
        message = _strip(DPKG_PREFIX, line)
        status = DPKG_STATUS.match(message)
        if status:
            last[status[2]] = (status[1], status[3])
        elif (
            not _apply(DPKG_RULES, message, facts)
            and not DPKG_ROUTINE.match(message)
            and TROUBLE.search(message)
        ):
            facts.setdefault(_tokens(message), "error or warning")
    for package, (state, version) in last.items():
        facts.setdefault((f"status {state}", package, version), f"final status ({state})")
    return facts


def apt_history_facts(text: str) -> dict[Fact, str]:
    facts: dict[Fact, str] = {}
    for line in text.splitlines():
        packages = APT_PACKAGES.match(line)
        if packages:
            for name, versions in APT_PACKAGE.findall(packages[2]):
                kept = [v.strip() for v in versions.split(",") if v.strip() != "automatic"]
                facts.setdefault((f"{packages[1]}:", name, *kept), f"package ({packages[1]})")
        elif not _apply(APT_HISTORY_RULES, line, facts) and TROUBLE.search(line):
            facts.setdefault(_tokens(line), "error or warning")
    return facts


def apt_term_facts(text: str) -> dict[Fact, str]:
    facts: dict[Fact, str] = {}
    for line in text.splitlines():
        message = line.strip()
        if _apply(APT_TERM_RULES, message, facts):
            continue
        if not APT_TERM_ROUTINE.match(message) and TROUBLE.search(message):
            facts.setdefault(_tokens(message), "error or warning")
    return facts


def postgres_facts(text: str) -> dict[Fact, str]:
    facts: dict[Fact, str] = {}
    after_error = False
    for line in text.splitlines():
        if line.startswith("\t"):  # a DETAIL that goes on (a deadlock's processes)
            if after_error:
                facts.setdefault((line.strip(),), "error detail")
            continue
        message = _strip(POSTGRES_PREFIX, line)
        statement = POSTGRES_STATEMENT.match(message)
        if statement:
            if after_error:
                facts.setdefault(("STATEMENT:", statement[1]), "failed statement")
            continue
        matched = _apply(POSTGRES_RULES, message, facts)
        if re.match(r"^(ERROR|FATAL|PANIC):", message):
            after_error = True
        elif not re.match(r"^(DETAIL|HINT|CONTEXT):", message):
            after_error = False
        if not matched and not message.startswith("LOG:") and TROUBLE.search(message):
            facts.setdefault(_tokens(message), "error or warning")
    return facts


def fleet_facts(text: str) -> dict[Fact, str]:
    facts: dict[Fact, str] = {}
    for line in text.splitlines():
        message = _strip(FLEET_PREFIX, line)
        if _apply(FLEET_RULES, message, facts):
            continue
        if FLEET_LEVEL.match(line) or TROUBLE.search(message):
            facts.setdefault(_tokens(message), "error or warning")
    return facts


FACT_RULES: dict[str, Callable[[str], dict[Fact, str]]] = {
    "fleetmind": fleet_facts,
    "mosquitto": mosquitto_facts,
    "dpkg": dpkg_facts,
    "apt-history": apt_history_facts,
    "apt-term": apt_term_facts,
    "postgresql": postgres_facts,
}


# ---------------------------------------------------------------------------------------------
# Processes: every one this benchmark starts is stopped at exit, whatever happened
# ---------------------------------------------------------------------------------------------

FLEETMIND_CLI = str(Path(sys.executable).parent / "fleetmind")
_CHILDREN: list[subprocess.Popen[bytes]] = []
_DIRS: list[Path] = []


def _progress(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def _temp_dir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    _DIRS.append(path)
    return path


def _spawn(command: list[str], log: Path, **options: Any) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=out, **options)
    _CHILDREN.append(process)
    return process


def _stop(process: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    if process is None:
        return
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, sig)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def _cleanup() -> None:
    for process in _CHILDREN:
        with contextlib.suppress(Exception):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGCONT)  # a frozen device must be able to die
                process.kill()
            process.wait(timeout=10)
    for path in _DIRS:
        shutil.rmtree(path, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], deadline_s: float = 30.0) -> None:
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on port {port}") from None
            time.sleep(0.05)


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None
    )


def mosquitto_version() -> str:
    binary = mosquitto_binary()
    if binary is None:
        return "not installed"
    banner = subprocess.run([binary, "-h"], capture_output=True, text=True, check=False).stdout
    return banner.split("version", 1)[1].split()[0] if "version" in banner else "?"


class Mosquitto:
    """Mosquitto on a free loopback port, optionally with logins, an ACL and a full log."""

    def __init__(self, *, users: dict[str, str] | None = None, log_all: bool = False) -> None:
        binary = mosquitto_binary()
        if binary is None:
            raise RuntimeError("Mosquitto is not installed (apt-get install mosquitto)")
        self.binary = binary
        self.port = free_port()
        # Started as root, Mosquitto drops to its own user: what it reads and writes must be
        # open to it, in a directory of its own (the run's private one is not).
        self.dir = _temp_dir("fleetmind-memory-mosquitto-")
        os.chmod(self.dir, 0o777)
        self.log = self.dir / "mosquitto.log"
        self.output = self.dir / "stdout.log"
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
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = _spawn([self.binary, "-c", str(self.conf)], self.output)
        wait_for_port(self.port, self.process)

    def stop(self) -> None:
        """As a service manager stops it (SIGTERM: it saves its state and says so)."""
        _stop(self.process)
        self.process = None


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


async def _until(predicate: Callable[[], bool], timeout_s: float, step_s: float = 0.1) -> bool:
    """Wait until ``predicate()`` holds (True), or ``timeout_s`` passed (False)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step_s)


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
    from fleetmind.orchestrator._fleet_link import MqttFleetLink
    from fleetmind.protocols import BrokerAddress

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

            if not await _until(lambda: online() == 3, 90):
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
            timed_out = await _until(
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
            if not await _until(lambda: online() == 3, 60):
                timeline.append("pi-2 and pi-3 did not come back within 60 s")
            mark("broker restart (SIGTERM, start again)")
            broker.stop()
            await asyncio.sleep(1.0)
            broker.start()
            if not await _until(lambda: online() == 3, 60):
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
        _CHILDREN.append(process)
        return process

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


# ---------------------------------------------------------------------------------------------
# Compression: fleetmind's compress vs truncation to the same budget
# ---------------------------------------------------------------------------------------------

GOAL = "what failed and why"
"""The goal given to ``compress`` (the same short goal for every log)."""
MAIN_SHARE = 0.25
"""The budget: a quarter of the log's tokens, so that the goal's 75% compression is reached
exactly when the budget is used."""
SWEEP_SHARES = (0.10, 0.25, 0.50)
AOI = {"compression": 0.724, "facts_kept": 0.928}
"""AOI's published figures (its paper; not re-run here): 72.4% compression, 92.8% kept."""
GOAL_COMPRESSION = 0.75
GOAL_KEPT = 0.95
METHODS = ("fleetmind", "truncate", "head+tail")


def head_tail(text: str, budget_tokens: int, count: Callable[[str], int]) -> str:
    """The first lines that fit in half the budget, then the last lines that fit in the rest
    (line cost as ``truncate`` counts it: the line's tokens + 1)."""
    lines = text.splitlines()
    head: list[str] = []
    used = 0
    for line in lines:
        cost = count(line) + 1
        if used + cost > budget_tokens // 2:
            break
        head.append(line)
        used += cost
    tail: list[str] = []
    for line in reversed(lines[len(head) :]):
        cost = count(line) + 1
        if used + cost > budget_tokens:
            break
        tail.append(line)
        used += cost
    return "\n".join(head + tail[::-1])


def facts_kept(facts: Iterable[Fact], reduced: str) -> tuple[list[Fact], list[Fact]]:
    """The facts kept (every string in the text), and those kept with all strings on one line."""
    lines = reduced.splitlines()
    anywhere, one_line = [], []
    for fact in facts:
        if all(part in reduced for part in fact):
            anywhere.append(fact)
            if any(all(part in line for part in fact) for line in lines):
                one_line.append(fact)
    return anywhere, one_line


@dataclass
class Reduction:
    log: str
    method: str
    budget_share: float
    budget_tokens: int
    tokens_before: int
    tokens_after: int
    facts: int
    kept: int
    kept_one_line: int
    seconds: float
    lines_after: int
    lost: list[list[str]] = field(default_factory=list)
    """The facts not kept, each as [rule, *strings]."""
    split: list[list[str]] = field(default_factory=list)
    """The facts kept, but not on one line, each as [rule, *strings]."""

    @property
    def compression(self) -> float:
        return 1.0 - self.tokens_after / self.tokens_before if self.tokens_before else 0.0

    @property
    def kept_share(self) -> float:
        return self.kept / self.facts if self.facts else 1.0

    @property
    def kept_one_line_share(self) -> float:
        return self.kept_one_line / self.facts if self.facts else 1.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["compression"] = round(self.compression, 4)
        data["facts_kept"] = round(self.kept_share, 4)
        data["facts_kept_one_line"] = round(self.kept_one_line_share, 4)
        data["seconds"] = round(self.seconds, 3)
        return data


def reduce_log(log: LogText, facts: dict[Fact, str], method: str, share: float) -> Reduction:
    from fleetmind.memory import compress, default_tokenizer, truncate

    count = default_tokenizer().count
    before = count(log.text)
    budget = max(1, int(before * share))
    start = time.perf_counter()
    if method == "fleetmind":
        reduced = compress(log.text, budget, goal=GOAL).text
    elif method == "truncate":
        reduced = truncate(log.text, budget)
    else:
        reduced = head_tail(log.text, budget, count)
    seconds = time.perf_counter() - start
    anywhere, one_line = facts_kept(facts, reduced)
    kept, together = set(anywhere), set(one_line)
    return Reduction(
        log=log.name,
        method=method,
        budget_share=share,
        budget_tokens=budget,
        tokens_before=before,
        tokens_after=count(reduced),
        facts=len(facts),
        kept=len(anywhere),
        kept_one_line=len(one_line),
        seconds=seconds,
        lines_after=len(reduced.splitlines()),
        lost=[[rule, *f] for f, rule in facts.items() if f not in kept],
        split=[[rule, *f] for f, rule in facts.items() if f in kept and f not in together],
    )


@dataclass
class LogSummary:
    name: str
    kind: str
    origin: str
    lines: int
    tokens: int
    facts: int
    facts_by_rule: dict[str, int]


def measure_compression(
    logs: list[LogText], shares: Sequence[float]
) -> tuple[list[LogSummary], list[Reduction]]:
    from fleetmind.memory import default_tokenizer

    summaries, reductions = [], []
    for log in logs:
        facts = FACT_RULES[log.kind](log.text)
        by_rule: dict[str, int] = {}
        for rule in facts.values():
            by_rule[rule] = by_rule.get(rule, 0) + 1
        summaries.append(
            LogSummary(
                log.name,
                log.kind,
                log.origin,
                sum(1 for line in log.text.splitlines() if line.strip()),
                default_tokenizer().count(log.text),
                len(facts),
                by_rule,
            )
        )
        for share in shares:
            for method in METHODS:
                reductions.append(reduce_log(log, facts, method, share))
        _progress(f"compression: {log.name} done")
    return summaries, reductions


# ---------------------------------------------------------------------------------------------
# Recall at scale: MemoryStore.recall vs exact numpy search
# ---------------------------------------------------------------------------------------------

DIMENSION = 768
SUBSPACE = 48
WITHIN_CLUSTER_SIGMA = 0.8
ISOTROPIC_SIGMA = 0.05
QUERY_SUBSPACE_SIGMA = 0.06
QUERY_ISOTROPIC_SIGMA = 0.006
K = 10
WARMUP = 20


class ClusteredVectors:
    """Clustered, low-rank unit vectors shaped like sentence embeddings (the generator of
    routing_scale.py): a random 48-dimensional subspace of R^768, round(2 sqrt(n)) centres with
    log-normal popularity, Gaussian spread around them, small isotropic noise, normalised."""

    def __init__(self, n: int, seed: int) -> None:
        rng = np.random.default_rng([seed, n])
        basis, _ = np.linalg.qr(rng.standard_normal((DIMENSION, SUBSPACE)))
        self.basis = basis.T.astype(np.float32)
        self.clusters = max(8, round(2 * math.sqrt(n)))
        self.centres = rng.standard_normal((self.clusters, SUBSPACE)).astype(np.float32)
        weights = rng.lognormal(0.0, 1.0, self.clusters)
        self.weights = weights / weights.sum()
        self.rng = np.random.default_rng([seed, n, 1])

    def draw(self, count: int) -> np.ndarray:
        rng = self.rng
        which = rng.choice(self.clusters, size=count, p=self.weights)
        inside = self.centres[which]
        inside += WITHIN_CLUSTER_SIGMA * rng.standard_normal((count, SUBSPACE), dtype=np.float32)
        vectors = inside @ self.basis
        vectors += ISOTROPIC_SIGMA * rng.standard_normal((count, DIMENSION), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors

    def perturb(self, vectors: np.ndarray) -> np.ndarray:
        """Copies moved a little, in the subspace and off it (cosine ~0.9 to the original)."""
        rng = self.rng
        count = len(vectors)
        moved = vectors + QUERY_SUBSPACE_SIGMA * (
            rng.standard_normal((count, SUBSPACE), dtype=np.float32) @ self.basis
        )
        moved += QUERY_ISOTROPIC_SIGMA * rng.standard_normal((count, DIMENSION), dtype=np.float32)
        moved /= np.linalg.norm(moved, axis=1, keepdims=True)
        return moved


def _rss_mb() -> float:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return _peak_rss_mb()


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def _ms(samples_s: Sequence[float]) -> tuple[float, float]:
    p50, p99 = np.percentile(np.asarray(samples_s, dtype=np.float64), [50, 99]) * 1e3
    return round(float(p50), 4), round(float(p99), 4)


def exact_top(matrix: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    """The baseline: every inner product, a partial sort, a sort of the k best (rows)."""
    sims = matrix @ query
    k = min(k, len(sims))
    top = np.argpartition(sims, len(sims) - k)[-k:]
    return top[np.argsort(-sims[top])]


@dataclass
class LayerResult:
    layer: str
    items: int
    recall_at_10: float
    store_p50_ms: float
    store_p99_ms: float
    exact_p50_ms: float
    exact_p99_ms: float
    query_top1_similarity: float
    query_top10_similarity: float
    embed_p50_ms: float | None = None


@dataclass
class ScaleResult:
    memories: int
    data: str
    index_mode: str
    insert_s: float
    insert_us_per_item: float
    stored: int
    facts_merged: int
    rss_growth_mb: float
    bytes_per_item: int
    queries: int
    layers: list[LayerResult]


class _Recorder:
    """An embedder that remembers what it returned (for the ground truth of real texts)."""

    def __init__(self, embed: Callable[[Sequence[str]], np.ndarray]) -> None:
        self.embed_texts = embed
        self.vectors: dict[str, np.ndarray] = {}

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self.embed_texts(texts)
        for text, vector in zip(texts, vectors, strict=True):
            self.vectors[text] = vector
        return vectors


def _measure_layers(
    store: Any,
    vector_of: Callable[[str], np.ndarray],
    queries: dict[str, list[str]],
    query_vector: Callable[[str], np.ndarray],
    embed_one: Callable[[str], np.ndarray] | None = None,
) -> list[LayerResult]:
    """recall@10 and latency of ``store.recall`` per layer, beside exact numpy search."""
    results = []
    for layer, texts in queries.items():
        items = list(store.items(layer=layer))
        ids = [item.id for item in items]
        matrix = np.stack([vector_of(item.text) for item in items]).astype(np.float32)
        for text in texts[:WARMUP]:
            store.recall(text, layer=layer, limit=K)
        clock = time.perf_counter
        store_times, exact_times, hits, top1, top10 = [], [], 0, [], []
        for text in texts:
            start = clock()
            found = store.recall(text, layer=layer, limit=K)
            store_times.append(clock() - start)
            vector = query_vector(text)
            start = clock()
            rows = exact_top(matrix, vector, K)
            exact_times.append(clock() - start)
            truth = {ids[r] for r in rows}
            hits += len(truth & {r.item.id for r in found})
            sims = matrix[rows] @ vector
            top1.append(float(sims[0]))
            top10.append(float(sims[-1]))
        embed_p50 = None
        if embed_one is not None:
            embed_times = []
            for text in texts:
                start = clock()
                embed_one(text)
                embed_times.append(clock() - start)
            embed_p50 = _ms(embed_times)[0]
        results.append(
            LayerResult(
                layer=layer,
                items=len(items),
                recall_at_10=round(hits / (K * len(texts)), 4),
                store_p50_ms=_ms(store_times)[0],
                store_p99_ms=_ms(store_times)[1],
                exact_p50_ms=_ms(exact_times)[0],
                exact_p99_ms=_ms(exact_times)[1],
                query_top1_similarity=round(float(np.mean(top1)), 3),
                query_top10_similarity=round(float(np.mean(top10)), 3),
                embed_p50_ms=embed_p50,
            )
        )
    return results


def _index_mode(store: Any) -> str:
    index = getattr(store, "_index", None)  # private: only to say which mode was measured
    return str(getattr(index, "mode", "?"))


def measure_scale(n: int, queries: int, seed: int) -> ScaleResult:
    """``n`` memories (half episodes, half facts) with synthetic vectors, through MemoryStore."""
    from fleetmind.memory import MemoryStore

    data = ClusteredVectors(n, seed)
    vectors = data.draw(n)
    sources: dict[str, np.ndarray] = {"memory": vectors}

    def embed(texts: Sequence[str]) -> np.ndarray:
        rows = []
        for text in texts:
            kind, number = text.split()
            rows.append(sources[kind][int(number)])
        return np.stack(rows)

    gc.collect()
    rss_before = _rss_mb()
    store = MemoryStore(None, embed)
    start = time.perf_counter()
    # One time for every memory: recall's recency bonus is then the same for all episodes and
    # the ranking is by similarity alone, as the exact ground truth's is.
    created = time.time() - 3600
    for i in range(n):
        if i % 2 == 0:
            store.add_episode(f"memory {i}", created_at=created)
        else:
            store.add_fact(f"memory {i}", created_at=created)
        if n >= 50_000 and (i + 1) % 25_000 == 0:
            _progress(
                f"recall: {n:,} memories: {i + 1:,} stored, {time.perf_counter() - start:.0f} s"
            )
    insert_s = time.perf_counter() - start
    rss_growth = _rss_mb() - rss_before
    by_layer: dict[str, list[str]] = {}
    stored = 0
    for layer in ("episodic", "semantic"):
        texts = [item.text for item in store.items(layer=layer)]
        stored += len(texts)
        picks = data.rng.choice(len(texts), size=queries, replace=len(texts) < queries)
        sources[f"q{layer}"] = data.perturb(np.stack([embed([texts[p]])[0] for p in picks]))
        by_layer[layer] = [f"q{layer} {j}" for j in range(queries)]
    layers = _measure_layers(
        store, lambda text: embed([text])[0], by_layer, lambda text: embed([text])[0]
    )
    result = ScaleResult(
        memories=n,
        data=f"synthetic clustered {DIMENSION}-d ({data.clusters:,} clusters)",
        index_mode=_index_mode(store),
        insert_s=round(insert_s, 2),
        insert_us_per_item=round(insert_s / n * 1e6, 1),
        stored=stored,
        facts_merged=n - stored,
        rss_growth_mb=round(rss_growth, 1),
        bytes_per_item=round(max(rss_growth, 0.0) * 2**20 / n),
        queries=queries,
        layers=layers,
    )
    store.close()
    sources.clear()
    del store, vectors
    gc.collect()
    return result


def memory_texts(logs: list[LogText], count: int, seed: int) -> list[str]:
    """Distinct log lines (timestamps off) of 30-240 characters, shuffled: real operational
    text for the end-to-end row and the remote recall."""
    prefixes = (MOSQUITTO_PREFIX, DPKG_PREFIX, POSTGRES_PREFIX, FLEET_PREFIX)
    seen: dict[str, None] = {}
    for log in logs:
        for line in log.text.splitlines():
            text = line.strip()
            for prefix in prefixes:
                text = prefix.sub("", text, count=1)
            if 30 <= len(text) <= 240:
                seen.setdefault(text, None)
    texts = list(seen)
    order = np.random.default_rng(seed).permutation(len(texts))
    return [texts[i] for i in order[:count]]


def build_text_store(texts: list[str], embedder: Any) -> tuple[Any, _Recorder, float]:
    """A MemoryStore of real texts (alternately an episode and a fact) embedded by ``embedder``."""
    from fleetmind.memory import MemoryStore

    recorder = _Recorder(embedder.embed)
    store = MemoryStore(None, recorder)
    start = time.perf_counter()
    for i, text in enumerate(texts):
        if i % 2 == 0:
            store.add_episode(text)
        else:
            store.add_fact(text)
    return store, recorder, time.perf_counter() - start


def measure_text_store(
    store: Any, recorder: _Recorder, insert_s: float, requested: int, queries: list[str], model: str
) -> ScaleResult:
    """End-to-end recall on real texts: the query is embedded inside each timed call."""
    embed_one = recorder.embed_texts
    layers = _measure_layers(
        store,
        lambda text: recorder.vectors[text],
        {"episodic": queries, "semantic": queries},
        lambda text: recorder.vectors[text] if text in recorder.vectors else embed_one([text])[0],
        embed_one=lambda text: embed_one([text])[0],
    )
    stored = len(list(store.items()))
    return ScaleResult(
        memories=stored,
        data=f"real log lines, {model}",
        index_mode=_index_mode(store),
        insert_s=round(insert_s, 2),
        insert_us_per_item=round(insert_s / max(stored, 1) * 1e6, 1),
        stored=stored,
        facts_merged=requested - stored,
        rss_growth_mb=0.0,
        bytes_per_item=0,
        queries=len(queries),
        layers=layers,
    )


# ---------------------------------------------------------------------------------------------
# Remote recall: a device agent's ctx.memory.recall over MQTT vs the same recall on the
# orchestrator, and a bare MQTT round trip
# ---------------------------------------------------------------------------------------------

RESPONDER = """\
import asyncio, sys
from fleetmind.protocols import BrokerAddress, MqttConnection

async def main(port, size):
    reply = b"r" * size
    async with MqttConnection(BrokerAddress("127.0.0.1", port), "bench-responder",
                              session_expiry_s=0) as mqtt:
        await mqtt.subscribe("bench/ping")
        mqtt.handle_messages(lambda m: mqtt.publish_nowait("bench/pong", reply, qos=1))
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
"""


@dataclass
class RemoteResult:
    memories: int
    queries: int
    model: str
    request_bytes: int
    response_bytes: int
    local_store_p50_ms: float
    local_store_p99_ms: float
    local_agent_p50_ms: float
    local_agent_p99_ms: float
    local_service_p50_ms: float
    local_service_p99_ms: float
    remote_p50_ms: float
    remote_p99_ms: float
    mqtt_rtt_p50_ms: float
    mqtt_rtt_p99_ms: float
    paired_difference_p50_ms: float
    """Median over queries of (remote time - mean of the two local store times)."""
    same_answers: int
    device_startup_s: float


def _wire_sizes(store: Any, query: str) -> tuple[int, int]:
    """Bytes of one recall request and its answer as they cross the broker."""
    from fleetmind.orchestrator._memory_service import DeviceMemoryService
    from fleetmind.protocols._envelope import MemoryRequestPayload, encode

    request = MemoryRequestPayload(
        op="recall", agent="recaller", task_id="task-0", query=query, limit=K, layer="semantic"
    )
    service = DeviceMemoryService(store, lambda device, agent: True)
    response = asyncio.run(service.answer("pi-1", request))
    message_id = "mem-" + "0" * 20
    return (
        len(encode("memory_request", "pi-1", request, message_id=message_id)),
        len(encode("memory_response", "orchestrator", response, correlation_id=message_id)),
    )


async def _bare_round_trips(port: int, count: int, sizes: tuple[int, int]) -> list[float]:
    """``MqttConnection`` ping-pong: a pinger here, a responder in its own process."""
    from fleetmind.protocols import BrokerAddress, MqttConnection

    responder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        RESPONDER,
        str(port),
        str(sizes[1]),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert responder.stdout is not None and responder.stdin is not None
        async with asyncio.timeout(60):
            ready = await responder.stdout.readline()
        if ready.strip() != b"ready":
            raise RuntimeError("the MQTT responder did not start")
        payload = b"p" * sizes[0]
        times = []
        address = BrokerAddress("127.0.0.1", port)
        async with MqttConnection(address, "bench-pinger", session_expiry_s=0) as mqtt:
            await mqtt.subscribe("bench/pong")
            incoming = mqtt.messages()
            for n in range(count + WARMUP):
                start = time.perf_counter()
                mqtt.publish_nowait("bench/ping", payload, qos=1)
                async with asyncio.timeout(10):
                    await anext(incoming)
                if n >= WARMUP:
                    times.append(time.perf_counter() - start)
        responder.stdin.close()
        async with asyncio.timeout(20):
            await responder.wait()
    finally:
        if responder.returncode is None:
            responder.kill()
            await responder.wait()
    return times


@dataclass
class _LocalPass:
    agent: list[float] = field(default_factory=list)
    store: list[float] = field(default_factory=list)
    service: list[float] = field(default_factory=list)
    answers: list[list[str]] = field(default_factory=list)


async def _local_recalls(store: Any, queries: list[str]) -> _LocalPass:
    """The same recalls on the orchestrator: through ``AgentMemory`` (``ctx.memory`` of an
    in-process agent: a worker thread), straight on the store, and through the service that
    answers devices (``DeviceMemoryService.answer``: what the orchestrator does for each
    device request, without MQTT)."""
    from fleetmind.memory import SHARED, AgentMemory
    from fleetmind.orchestrator._memory_service import DeviceMemoryService
    from fleetmind.protocols._envelope import MemoryRequestPayload

    view = AgentMemory(store, "recaller")
    namespaces = (view.namespace, SHARED)
    service = DeviceMemoryService(store, lambda device, agent: True)
    for query in queries[:5]:
        await view.recall(query, limit=K, layer="semantic")
    done = _LocalPass()
    clock = time.perf_counter
    for query in queries:
        start = clock()
        found = await view.recall(query, limit=K, layer="semantic")
        done.agent.append(clock() - start)
        start = clock()
        store.recall(query, layer="semantic", namespaces=namespaces, limit=K)
        done.store.append(clock() - start)
        request = MemoryRequestPayload(
            op="recall", agent="recaller", query=query, limit=K, layer="semantic"
        )
        start = clock()
        await service.answer("pi-1", request)
        done.service.append(clock() - start)
        done.answers.append([item.text for item in found])
    return done


async def measure_remote(store: Any, queries: list[str], model: str, workdir: Path) -> RemoteResult:
    """The device agent ``recaller`` (a ``fleetmind agent serve`` process) times its own
    recalls; the orchestrator's local recalls run on the same store, with the same queries,
    before and after the remote ones (embedding speed drifts on a shared machine)."""
    from fleetmind import Fleet, TaskGraph
    from fleetmind.orchestrator import SkillRouter
    from fleetmind.orchestrator._fleet_link import MqttFleetLink
    from fleetmind.protocols import BrokerAddress

    before = await _local_recalls(store, queries)
    broker = Mosquitto()
    devices = Devices(workdir, broker.url, {})
    try:
        broker.start()
        fleet = Fleet(router=SkillRouter(), memory=store)
        async with MqttFleetLink(fleet, BrokerAddress("127.0.0.1", broker.port)) as link:
            started = time.monotonic()
            devices.start("pi-1", heartbeat_s=1.0)
            await link.wait_for_agents("recaller", timeout_s=120)
            startup = time.monotonic() - started
            graph = TaskGraph("remote-recall")
            graph.add_subtask(
                "r",
                agent="recaller",
                inputs={"queries": queries, "limit": K, "warmup": 5, "layer": "semantic"},
            )
            async with asyncio.timeout(600):
                result = await fleet.run(graph)
            if not result.ok:
                raise RuntimeError(f"the remote recall task failed: {result.errors}")
            remote = result.outputs["r"]
            devices.close()
        sizes = await asyncio.to_thread(_wire_sizes, store, queries[0])
        rtt = await _bare_round_trips(broker.port, len(queries), sizes)
    finally:
        devices.close()
        broker.stop()
    after = await _local_recalls(store, queries)
    local_store = before.store + after.store
    local_agent = before.agent + after.agent
    local_service = before.service + after.service
    paired = [
        r - (a + b) / 2
        for r, a, b in zip(remote["seconds"], before.store, after.store, strict=True)
    ]
    same = sum(
        mine == theirs for mine, theirs in zip(before.answers, remote["answers"], strict=True)
    )
    request_bytes, response_bytes = sizes
    return RemoteResult(
        memories=len(list(store.items())),
        queries=len(queries),
        model=model,
        request_bytes=request_bytes,
        response_bytes=response_bytes,
        local_store_p50_ms=_ms(local_store)[0],
        local_store_p99_ms=_ms(local_store)[1],
        local_agent_p50_ms=_ms(local_agent)[0],
        local_agent_p99_ms=_ms(local_agent)[1],
        local_service_p50_ms=_ms(local_service)[0],
        local_service_p99_ms=_ms(local_service)[1],
        remote_p50_ms=_ms(remote["seconds"])[0],
        remote_p99_ms=_ms(remote["seconds"])[1],
        mqtt_rtt_p50_ms=_ms(rtt)[0],
        mqtt_rtt_p99_ms=_ms(rtt)[1],
        paired_difference_p50_ms=_ms(paired)[0],
        same_answers=same,
        device_startup_s=round(startup, 1),
    )


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def _table(rows: list[tuple[str, ...]], left: int = 1) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _short(fact: Sequence[str], width: int = 110) -> str:
    text = " | ".join(fact)
    return text if len(text) <= width else text[: width - 1] + "…"


def goal_met(reduction: dict[str, Any]) -> bool:
    return reduction["compression"] >= GOAL_COMPRESSION and reduction["facts_kept"] >= GOAL_KEPT


def render(doc: dict[str, Any]) -> str:
    machine = doc["machine"]
    out = [
        "Memory benchmark: extractive compression of real logs, recall at scale, remote recall",
        f"python {machine['python']}, {machine['cpu_count']} CPU(s), load average at start "
        f"{machine['load_average']}, fleetmind {machine['fleetmind']}, numpy {machine['numpy']}, "
        f"{machine['hnswlib']}, mosquitto {machine['mosquitto']}",
        "",
    ]
    compression = doc["compression"]
    if compression["logs"]:
        out.append(
            f"1. Compression to {_pct(MAIN_SHARE)} of each log's tokens (goal for compress: "
            f'"{GOAL}"); tokens by the packaged WordPiece tokenizer; a fact is kept when all its '
            "strings are in the result"
        )
        rows: list[tuple[str, ...]] = [
            (
                "log",
                "lines",
                "tokens",
                "facts",
                "method",
                "tokens after",
                "compression",
                "facts kept",
                "on one line",
                "ms",
            )
        ]
        main = [r for r in compression["reductions"] if r["budget_share"] == MAIN_SHARE]
        for summary in compression["logs"]:
            for n, method in enumerate(METHODS):
                r = next(x for x in main if x["log"] == summary["name"] and x["method"] == method)
                first = n == 0
                rows.append(
                    (
                        summary["name"] if first else "",
                        f"{summary['lines']:,}" if first else "",
                        f"{summary['tokens']:,}" if first else "",
                        f"{summary['facts']:,}" if first else "",
                        method,
                        f"{r['tokens_after']:,}",
                        _pct(r["compression"]),
                        _pct(r["facts_kept"]),
                        _pct(r["facts_kept_one_line"]),
                        f"{1e3 * r['seconds']:.0f}",
                    )
                )
        rows.append(
            (
                "AOI (published, not re-run)",
                "",
                "",
                "",
                "reference",
                "",
                _pct(AOI["compression"]),
                _pct(AOI["facts_kept"]),
                "",
                "",
            )
        )
        out += _table(rows, left=1)
        out.append("")
        verdicts = []
        for summary in compression["logs"]:
            r = next(x for x in main if x["log"] == summary["name"] and x["method"] == "fleetmind")
            verdicts.append(
                f"{summary['name']}: {'met' if goal_met(r) else 'NOT met'} "
                f"({_pct(r['compression'])}, {_pct(r['facts_kept'])})"
            )
        out.append(
            f"goal >= {_pct(GOAL_COMPRESSION)} compression with >= {_pct(GOAL_KEPT)} of critical "
            "facts kept (fleetmind compress): " + "; ".join(verdicts)
        )
        out.append("")
        out.append("Budget sweep: compression / facts kept")
        rows = [("log", "budget", "fleetmind", "truncate", "head+tail")]
        for summary in compression["logs"]:
            for n, share in enumerate(SWEEP_SHARES):
                cells = []
                for method in METHODS:
                    r = next(
                        x
                        for x in compression["reductions"]
                        if x["log"] == summary["name"]
                        and x["method"] == method
                        and x["budget_share"] == share
                    )
                    cells.append(f"{_pct(r['compression'])} / {_pct(r['facts_kept'])}")
                rows.append((summary["name"] if n == 0 else "", _pct(share), *cells))
        out += _table(rows, left=1)
        out.append("")
        out.append(f"Facts fleetmind compress lost at {_pct(MAIN_SHARE)} (by rule; examples):")
        for summary in compression["logs"]:
            r = next(x for x in main if x["log"] == summary["name"] and x["method"] == "fleetmind")
            split = f"; {len(r['split'])} more kept only across lines" if r["split"] else ""
            if not r["lost"]:
                out.append(f"  {summary['name']}: none{split}")
                for _rule, *fact in r["split"][:4]:
                    out.append(f"      (across lines) {_short(fact)}")
                continue
            by_rule: dict[str, int] = {}
            for rule, *_fact in r["lost"]:
                by_rule[rule] = by_rule.get(rule, 0) + 1
            out.append(
                f"  {summary['name']}: {len(r['lost'])} of {r['facts']} — "
                + ", ".join(f"{rule} {count}" for rule, count in by_rule.items())
                + split
            )
            for _rule, *fact in r["lost"][:4]:
                out.append(f"      {_short(fact)}")
        out.append("")
        out.append(
            "Logs: " + "; ".join(f"{s['name']} ({s['origin']})" for s in compression["logs"])
        )
    for note in doc["notes"]:
        out.append(f"note: {note}")
    if doc.get("fault_run"):
        out.append(f"fault run behind the Mosquitto log ({doc['fault_run']['seconds']:.0f} s):")
        out += [f"  {line.strip()}" for line in doc["fault_run"]["timeline"]]
    out.append("")

    recall = doc["recall"]
    out.append(
        f"2. Recall: MemoryStore.recall(query, layer=..., limit={K}) vs exact numpy search, one "
        "query at a time; recall@10 against the exact top 10 of the layer"
    )
    rows = [
        (
            "memories",
            "data",
            "index",
            "insert µs/item",
            "bytes/item",
            "layer",
            "items",
            "recall@10",
            "p50 ms",
            "p99 ms",
            "exact p50 ms",
            "exact p99 ms",
        )
    ]
    for result in recall["scale"] + ([recall["real_text"]] if recall.get("real_text") else []):
        for n, layer in enumerate(result["layers"]):
            first = n == 0
            rows.append(
                (
                    f"{result['memories']:,}" if first else "",
                    result["data"] if first else "",
                    result["index_mode"] if first else "",
                    f"{result['insert_us_per_item']:,.0f}" if first else "",
                    (f"{result['bytes_per_item']:,}" if result["bytes_per_item"] else "-")
                    if first
                    else "",
                    layer["layer"],
                    f"{layer['items']:,}",
                    f"{layer['recall_at_10']:.3f}",
                    f"{layer['store_p50_ms']:.3f}",
                    f"{layer['store_p99_ms']:.3f}",
                    f"{layer['exact_p50_ms']:.3f}",
                    f"{layer['exact_p99_ms']:.3f}",
                )
            )
    out += _table(rows, left=3)
    out.append("")
    for result in recall["scale"]:
        out.append(
            f"  {result['memories']:,}: inserted in {result['insert_s']:.1f} s, "
            f"{result['facts_merged']} facts merged as near-duplicates, RSS +"
            f"{result['rss_growth_mb']:.0f} MB; query similarity to its nearest / 10th memory "
            + ", ".join(
                f"{x['layer']} {x['query_top1_similarity']:.2f}/{x['query_top10_similarity']:.2f}"
                for x in result["layers"]
            )
        )
    real = recall.get("real_text")
    if real:
        embed = ", ".join(f"{x['layer']} {x['embed_p50_ms']:.1f}" for x in real["layers"])
        requested = real["memories"] + real["facts_merged"]
        out.append(
            f"  real text: {real['memories']:,} stored of {requested:,}"
            f" ({real['facts_merged']} facts merged as near-duplicates); recall p50 includes "
            f"embedding the query; embedding alone p50 (ms): {embed}; exact baseline times the "
            "search on a precomputed query vector"
        )
    out.append("")
    remote = doc.get("remote")
    if remote:
        out.append(
            f"3. Remote recall: {remote['queries']} recalls (limit {K}, semantic layer) over "
            f"{remote['memories']:,} memories of real log lines, {remote['model']}; request "
            f"{remote['request_bytes']} B, answer {remote['response_bytes']:,} B"
        )
        local = remote["local_store_p50_ms"]
        rows = [("path", "p50 ms", "p99 ms", "p50 / local store p50")]
        for name, p50, p99 in (
            ("local: MemoryStore.recall (orchestrator)", local, remote["local_store_p99_ms"]),
            (
                "local: AgentMemory.recall (ctx.memory in-process)",
                remote["local_agent_p50_ms"],
                remote["local_agent_p99_ms"],
            ),
            (
                "local: DeviceMemoryService.answer (no MQTT)",
                remote["local_service_p50_ms"],
                remote["local_service_p99_ms"],
            ),
            (
                "remote: ctx.memory.recall on a device, over MQTT",
                remote["remote_p50_ms"],
                remote["remote_p99_ms"],
            ),
            (
                "bare MQTT round trip (MqttConnection ping-pong)",
                remote["mqtt_rtt_p50_ms"],
                remote["mqtt_rtt_p99_ms"],
            ),
        ):
            rows.append((name, f"{p50:.2f}", f"{p99:.2f}", f"{p50 / local:.2f}x"))
        out += _table(rows, left=1)
        out.append(
            f"  remote - local: {remote['remote_p50_ms'] - local:+.2f} ms at p50, "
            f"{remote['paired_difference_p50_ms']:+.2f} ms median per query (each remote recall "
            "against the mean of the same query's two local ones); local recalls ran before and "
            f"after the remote ones ({2 * remote['queries']} samples); the device got the same "
            f"answers as the local recall for {remote['same_answers']} of {remote['queries']} "
            "queries"
        )
    return "\n".join(out)


def _version(package: str) -> str:
    try:
        return package_version(package)
    except PackageNotFoundError:
        return "unknown"


def machine_info() -> dict[str, Any]:
    hnsw = next(
        (f"{d} {_version(d)}" for d in ("chroma-hnswlib", "hnswlib") if _version(d) != "unknown"),
        "hnswlib unknown",
    )
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "numpy": np.__version__,
        "hnswlib": hnsw,
        "fleetmind": _version("fleetmind"),
        "mosquitto": mosquitto_version(),
    }


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------


async def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    from fleetmind.orchestrator import SentenceEmbedder

    started = time.perf_counter()
    machine = machine_info()
    notes: list[str] = []
    workdir = _temp_dir("fleetmind-memory-")
    logs: list[LogText] = []
    fault: dict[str, Any] | None = None
    if "compression" in args.parts:
        try:
            run = await mosquitto_fault_run(workdir)
            logs.append(LogText("mosquitto", "mosquitto", run.mosquitto_log, "fault run (here)"))
            logs.append(
                LogText("fleetmind", "fleetmind", run.fleet_log, "same run: orchestrator, devices")
            )
            fault = {"timeline": run.timeline, "seconds": round(run.seconds, 1)}
        except Exception as exc:
            notes.append(f"mosquitto fault run failed ({type(exc).__name__}: {exc}); skipped")
        postgres = await asyncio.to_thread(postgres_run, notes)
        if postgres is not None:
            logs.append(
                LogText(postgres.name, postgres.kind, postgres.text, f"{postgres.origin}, here")
            )
        logs.extend(system_logs(notes))
    summaries, reductions = measure_compression(logs, SWEEP_SHARES)
    machine["postgresql"] = next((x.origin for x in logs if x.kind == "postgresql"), None)

    scale = []
    if "recall" in args.parts:
        for n in args.sizes:
            _progress(f"recall: {n:,} memories")
            scale.append(measure_scale(n, args.queries, args.seed))
    real_text = remote = None
    if ("recall" in args.parts or "remote" in args.parts) and logs:
        embedder = SentenceEmbedder("light")
        embedder.load()
        texts = memory_texts(logs, args.text_memories + args.text_queries, args.seed)
        memories, queries = texts[: args.text_memories], texts[args.text_memories :]
        _progress(f"real text: embedding {len(memories):,} memories with {embedder.name}")
        store, recorder, insert_s = await asyncio.to_thread(build_text_store, memories, embedder)
        if "recall" in args.parts:
            real_text = measure_text_store(
                store, recorder, insert_s, len(memories), queries, embedder.name
            )
        if "remote" in args.parts:
            _progress("remote recall: Mosquitto, orchestrator, one device")
            remote = await measure_remote(
                store, queries[: args.remote_queries], embedder.name, workdir
            )
        store.close()
    elif "remote" in args.parts or "recall" in args.parts:
        notes.append("no log was read: no real text for the end-to-end and remote recall")

    machine["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    machine["wall_s"] = round(time.perf_counter() - started, 1)
    return {
        "compression": {
            "goal_text": GOAL,
            "main_budget_share": MAIN_SHARE,
            "shares": list(SWEEP_SHARES),
            "aoi_published": AOI,
            "goal": {"compression": GOAL_COMPRESSION, "facts_kept": GOAL_KEPT},
            "logs": [asdict(s) for s in summaries],
            "reductions": [r.to_json() for r in reductions],
        },
        "fault_run": fault,
        "notes": notes,
        "recall": {
            "k": K,
            "scale": [asdict(r) for r in scale],
            "real_text": asdict(real_text) if real_text else None,
            "generator": {
                "dimension": DIMENSION,
                "subspace": SUBSPACE,
                "within_cluster_sigma": WITHIN_CLUSTER_SIGMA,
                "isotropic_sigma": ISOTROPIC_SIGMA,
                "query_subspace_sigma": QUERY_SUBSPACE_SIGMA,
                "query_isotropic_sigma": QUERY_ISOTROPIC_SIGMA,
                "seed": args.seed,
            },
        },
        "remote": asdict(remote) if remote else None,
        "machine": machine,
    }


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from exc
    if not sizes or min(sizes) < 100:
        raise argparse.ArgumentTypeError("sizes must be at least 100")
    return sizes


def _interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON")
    parser.add_argument("--quick", action="store_true", help="1k and 10k memories, fewer queries")
    parser.add_argument("--sizes", type=_sizes, help="memories (default 1000,10000,100000)")
    parser.add_argument("--queries", type=int, help="timed queries per layer (default 300)")
    parser.add_argument(
        "--only",
        type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
        help="comma-separated parts to run: compression, recall, remote (default all)",
    )
    parser.add_argument("--seed", type=int, default=20_240_601, help="seed of the data")
    args = parser.parse_args(argv)
    args.parts = set(args.only or ("compression", "recall", "remote"))
    unknown = args.parts - {"compression", "recall", "remote"}
    if unknown:
        parser.error(f"unknown part(s): {', '.join(sorted(unknown))}")
    if ("recall" in args.parts or "remote" in args.parts) and "compression" not in args.parts:
        args.parts.add("compression")  # the real texts are the logs' lines
    if args.sizes is None:
        args.sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
    args.queries = args.queries or (100 if args.quick else 300)
    if args.queries <= WARMUP:
        parser.error(f"--queries must be more than {WARMUP}")
    args.text_memories = 500 if args.quick else 1_000
    args.text_queries = 50 if args.quick else 100
    args.remote_queries = 30 if args.quick else 100
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
