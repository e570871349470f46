"""Turning a finished task into episodes of the fleet's memory.

Every finished task, each of its subtasks, and each LLM step becomes an episode: what was
asked, which agent acted, how it ended, how long it took and what it cost. Episodes go to the
shared namespace (a task is the fleet's), subtasks and steps also name their agent, so an agent
recalls its own history and the planner recalls what worked for similar requests before.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fleetmind._task_log import SubtaskProgressed, TaskResumed
from fleetmind._task_model import SubtaskStatus
from fleetmind.memory import SHARED, MemoryStore, NewEpisode
from fleetmind.orchestrator._graph import TaskGraph
from fleetmind.orchestrator._task_result import TaskResult

_CLIP = 400


def _clip(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= _CLIP else text[:_CLIP] + "…"


def task_episodes(result: TaskResult) -> list[dict[str, Any]]:
    """The episodes of a finished task: the task, its subtasks, their LLM steps."""
    graph: TaskGraph = result.graph
    episodes: list[dict[str, Any]] = []
    total_cost = 0.0
    agents: list[str] = []
    for subtask in graph:
        state = graph.state(subtask.id)
        if state.status not in (SubtaskStatus.DONE, SubtaskStatus.FAILED):
            continue
        total_cost += state.cost
        if state.agent:
            agents.append(state.agent)
        what = subtask.description or subtask.skill or subtask.id
        if state.status is SubtaskStatus.DONE:
            ending = f"done: {_clip(state.output)}"
        else:
            ending = f"failed: {(state.error or {}).get('message', 'no message')}"
        episodes.append(
            {
                "text": f"{what} — {state.agent or 'no agent'} — {ending}",
                "kind": "subtask",
                "agent_id": state.agent,
                "outcome": state.status.value,
                "duration_s": state.duration_s,
                "cost": state.cost or None,
                "metadata": {"subtask": subtask.id, "attempts": state.total_attempts},
            }
        )
    for entry in graph.log:
        if not isinstance(entry, SubtaskProgressed) or not entry.step:
            continue
        step = entry.step
        if step.get("outcome") in ("shadow",):
            continue
        episodes.append(
            {
                "text": (
                    f"step {step.get('step')} of {entry.subtask_id} on {step.get('tier')} "
                    f"{step.get('model')}: {step.get('outcome')}"
                    + (f" ({step.get('reason')})" if step.get("reason") else "")
                    + (f", error: {step.get('error')}" if step.get("error") else "")
                ),
                "kind": "step",
                "agent_id": graph.state(entry.subtask_id).agent
                if entry.subtask_id in graph
                else None,
                "outcome": step.get("outcome"),
                "duration_s": step.get("latency_s"),
                "cost": step.get("cost") or None,
                "metadata": {"subtask": entry.subtask_id, "tier": step.get("tier")},
            }
        )
    request = graph.request or graph.name
    counts = ", ".join(f"{n} {status}" for status, n in graph.counts().items() if n)
    episodes.insert(
        0,
        {
            "text": f"task: {request} — {result.status} ({counts}); agents: "
            f"{', '.join(dict.fromkeys(agents)) or 'none'}",
            "kind": "task",
            "outcome": result.status,
            "duration_s": _span(graph),
            "cost": total_cost or None,
            "metadata": {"subtasks": len(graph), "request": graph.request},
        },
    )
    return episodes


def _span(graph: TaskGraph) -> float | None:
    """From the first subtask's start to the last one's end, less the time the task was
    stopped in between (None: nothing ran)."""
    states = [graph.state(s.id) for s in graph]
    starts = [s.started_at for s in states if s.started_at]
    ends = [s.finished_at for s in states if s.finished_at]
    if not starts or not ends:
        return None
    first, last = min(starts), max(ends)
    down = sum(
        max(min(e.at, last) - max(e.stopped_at, first), 0.0)
        for e in graph.log
        if isinstance(e, TaskResumed) and e.down_s
    )
    return last - first - down


async def remember_task(memory: MemoryStore, result: TaskResult) -> int:
    """Record a finished task's episodes in ``memory`` and consolidate what now recurs (in a
    worker thread: it embeds)."""
    episodes = [
        NewEpisode(
            episode["text"],
            namespace=SHARED,
            kind=episode["kind"],
            agent_id=episode.get("agent_id"),
            task_id=result.task_id,
            outcome=episode.get("outcome"),
            duration_s=episode.get("duration_s"),
            cost=episode.get("cost"),
            metadata=episode.get("metadata") or {},
        )
        for episode in task_episodes(result)
    ]

    def write() -> int:
        memory.add_episodes(episodes)
        memory.consolidate()
        return len(episodes)

    return await asyncio.to_thread(write)
