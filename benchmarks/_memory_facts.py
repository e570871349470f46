"""The critical facts of benchmarks/memory.py: the rules, per kind of log, and what they find."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

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
