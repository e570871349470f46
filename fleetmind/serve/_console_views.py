"""The JSON shapes the console's API answers with: tasks, graphs, devices and live events.

Times are Unix seconds (numbers, or null when unknown), so that the page computes ages and
running durations itself. A graph is read the same way whether it runs here or was loaded
from the store's log: what the graph's state keeps (status, agent, attempts, routing) and what
only the log has (each LLM step's record, how many retries).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from fleetmind.agents import AgentProfile
from fleetmind.orchestrator import LogEntry, TaskEvent, TaskGraph, TaskRecord


def task_summary(record: TaskRecord, counts: dict[str, int]) -> dict[str, Any]:
    """One row of the task list."""
    return {
        "id": record.id,
        "name": record.name,
        "status": record.status,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "owner": record.owner,
        "source": record.source,
        "counts": counts,
    }


def graph_view(
    task_id: str, status: str, graph: TaskGraph, entries: Sequence[LogEntry]
) -> dict[str, Any]:
    """A task with every subtask's state, how it was routed and its LLM steps, and its edges."""
    retries: Counter[str] = Counter()
    steps: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:  # a tagged union: its kind says which entry it is
        if entry.kind == "subtask_retried":
            retries[entry.subtask_id] += 1
        elif entry.kind == "subtask_progress" and entry.step is not None:
            steps.setdefault(entry.subtask_id, []).append({**entry.step, "at": entry.at})
    subtasks = []
    for subtask in graph:
        state = graph.state(subtask.id)
        error = state.error
        subtasks.append(
            {
                "id": subtask.id,
                "description": subtask.description,
                "agent": state.agent or subtask.agent,
                "skill": subtask.skill,
                "status": state.status.value,
                "attempts": state.total_attempts,
                "retries": retries[subtask.id],
                "started_at": state.started_at,
                "ended_at": state.finished_at,
                "duration_s": state.duration_s,
                "paused_s": state.paused_s,
                "progress": state.progress or None,
                "fraction": state.fraction,
                "reason": state.reason or None,
                "routing": state.routing,
                "steps": steps.get(subtask.id, []),
                "error": _error_line(error) if error else None,
            }
        )
    view: dict[str, Any] = {
        "id": task_id,
        "name": graph.name,
        "status": status,
        "version": graph.version,
        "counts": graph.counts(),
        "subtasks": subtasks,
        "edges": [
            {
                "source": dep.source,
                "target": dep.target,
                "kind": dep.kind.value,
                "condition": dep.condition.value,
            }
            for dep in graph.dependencies
        ],
    }
    if graph.request:
        view["request"] = graph.request
    return view


def _error_line(error: dict[str, Any]) -> str:
    kind, message = error.get("type"), error.get("message")
    if kind and message:
        return f"{kind}: {message}"
    return str(message or kind or error)


def device_view(
    device_id: str, online: bool, last_seen_at: float | None, profiles: Iterable[AgentProfile]
) -> dict[str, Any]:
    """A device and the agents it serves."""
    return {
        "id": device_id,
        "online": online,
        "last_seen_at": last_seen_at or None,
        "agents": [
            {"id": p.id, "skills": [s.name for s in p.skills]}
            for p in sorted(profiles, key=lambda p: p.id)
        ],
    }


def event_dict(event: TaskEvent) -> dict[str, Any]:
    """A live event as plain JSON (a graph edit's log entry as its own fields)."""
    return {f.name: plain(getattr(event, f.name)) for f in dataclasses.fields(event)}


def entry_dict(entry: LogEntry) -> dict[str, Any]:
    """A stored log entry as plain JSON (what the store-only console streams)."""
    return dict(entry.model_dump(mode="json"))


def plain(value: Any) -> Any:
    """``value`` with pydantic models and tuples made JSON-ready."""
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value
