"""The trials of benchmarks/fleet_faults.py: the faults, the task each trial runs, what the agents
recorded, and the figures and evidence a trial yields."""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _fleet_faults_setup import ACTIONS, JITTER_S, ONE_AGENT, SUBTASKS, THREE_AGENTS, VICTIM

from fleetmind import TaskGraph

# ---------------------------------------------------------------------------------------------
# What the agents recorded
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
