"""What the terminal shows while a task runs, and after it ends."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from fleetmind.cli._elicit import paused_while_asking
from fleetmind.cli._wait import status_line
from fleetmind.orchestrator import (
    SubtaskStatus,
    TaskEvent,
    TaskGraph,
    TaskHandle,
    TaskResult,
    TaskResumedEvent,
    describe_event,
)

_STYLE = {
    SubtaskStatus.PENDING: ("·", "dim"),
    SubtaskStatus.READY: ("○", "yellow"),
    SubtaskStatus.RUNNING: ("◐", "cyan"),
    SubtaskStatus.DONE: ("✓", "green"),
    SubtaskStatus.FAILED: ("✗", "red"),
    SubtaskStatus.CANCELLED: ("⊘", "magenta"),
    SubtaskStatus.SKIPPED: ("↷", "dim"),
}


def graph_table(
    graph: TaskGraph, title: str | None = None, *, stopped_at: float | None = None
) -> Table:
    """One row per subtask: status, agent, attempts, duration, and what it is doing or why not.

    ``stopped_at``: when the task was interrupted; what ran then shows as interrupted, its
    clock stopped there.
    """
    table = Table(title=title, title_justify="left", expand=False, show_lines=False)
    table.add_column("subtask", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("agent", no_wrap=True)
    table.add_column("tries", justify="right")
    table.add_column("time", justify="right")
    table.add_column("note", overflow="ellipsis", max_width=60)
    now = time.time() if stopped_at is None else stopped_at
    for subtask in graph:
        state = graph.state(subtask.id)
        glyph, style = _STYLE[state.status]
        label = state.status.value
        if stopped_at is not None and state.status is SubtaskStatus.RUNNING:
            glyph, style, label = "‖", "yellow", "interrupted"
        if state.duration_s is not None:
            took = f"{state.duration_s:.2f}s"
        elif state.status is SubtaskStatus.RUNNING and state.started_at:
            took = f"{max(now - state.started_at - state.paused_s, 0.0):.1f}s"
        else:
            took = ""
        note = ""
        if state.status is SubtaskStatus.FAILED and state.error:
            note = f"{state.error.get('type')}: {state.error.get('message')}"
        elif state.reason:
            note = state.reason
        elif state.status is SubtaskStatus.RUNNING and state.progress:
            pct = f" ({state.fraction:.0%})" if state.fraction is not None else ""
            note = state.progress + pct
        elif state.status is SubtaskStatus.RUNNING and state.error:
            note = f"retrying after {state.error.get('type')}: {state.error.get('message')}"
        table.add_row(
            escape(subtask.id),
            Text(f"{glyph} {label}", style=style),
            escape(state.agent or ""),
            str(state.total_attempts or ""),
            took,
            Text(note, style="red" if state.status is SubtaskStatus.FAILED else "dim"),
        )
    return table


def steps_table(entries: Sequence[Any]) -> Table | None:
    """Every LLM step of a task: subtask, step, tier and model, why, tokens, cost — or None."""
    rows = [e for e in entries if getattr(e, "kind", "") == "subtask_progress" and e.step]
    if not rows:
        return None
    table = Table(title="LLM steps", title_justify="left")
    for column in ("subtask", "step", "model", "why", "tokens", "cost", "outcome"):
        table.add_column(
            column, justify="right" if column in ("step", "tokens", "cost") else "left"
        )
    for entry in rows:
        step = entry.step
        tokens = int(step.get("prompt_tokens") or 0) + int(step.get("completion_tokens") or 0)
        cost = float(step.get("cost") or 0.0)
        table.add_row(
            escape(entry.subtask_id),
            str(step.get("step", "")),
            escape(f"{step.get('tier', '')} {step.get('model', '')}".strip()),
            escape(str(step.get("reason") or "")),
            f"{tokens:,}",
            f"{cost:.4g}" if cost else "",
            escape(str(step.get("outcome") or "")),
        )
    return table


def routing_table(graph: TaskGraph) -> Table | None:
    """The router's decisions: top candidates with scores, and exclusions (None if none)."""
    rows = [(s.id, graph.state(s.id).routing) for s in graph if graph.state(s.id).routing]
    if not rows:
        return None
    table = Table(title="routing", title_justify="left")
    table.add_column("subtask", no_wrap=True)
    table.add_column("candidates (score / similarity)", overflow="ellipsis")
    table.add_column("excluded", overflow="ellipsis", style="dim")
    for subtask_id, routing in rows:
        assert routing is not None
        candidates = ", ".join(
            f"{c['agent_id']} ({c['score']:.2f} / {c['similarity']:.2f})"
            if "score" in c
            else str(c["agent_id"])
            for c in routing["candidates"]
        )
        excluded = "; ".join(f"{a}: {why}" for a, why in routing["excluded"].items())
        table.add_row(escape(subtask_id), escape(candidates), escape(excluded))
    return table


def llm_line(graph: TaskGraph) -> str:
    """``LLM: 7 steps (3 on the cloud, 43%), 12,400 tokens, cost 0.0123 (all on the cloud: 0.0310)``
    — or "" without steps."""
    states = [graph.state(s.id) for s in graph]
    steps = sum(s.steps for s in states)
    if not steps:
        return ""
    cloud = sum(s.cloud_steps for s in states)
    tokens = sum(s.tokens for s in states)
    cost = sum(s.cost for s in states)
    all_cloud = sum(s.cloud_cost for s in states)
    line = (
        f"LLM: {steps} step{'s' * (steps != 1)} ({cloud} on the cloud, {cloud / steps:.0%}), "
        f"{tokens:,} tokens"
    )
    if cost:
        line += f", cost {cost:.4g}"
    if all_cloud and cloud < steps:
        line += f" (all on the cloud: {all_cloud:.4g})"
    return line


def counts_line(graph: TaskGraph) -> str:
    """``3 done · 1 running · 2 pending`` for the statuses that occur."""
    counts = graph.counts()
    return " · ".join(f"{n} {status}" for status, n in counts.items() if n)


class TaskView:
    """Follows a task's events: a live table on a terminal, one line per event otherwise."""

    def __init__(self, console: Console, log_console: Console, *, live: bool) -> None:
        self._console = console
        self._log = log_console
        self._live = live
        self._wait: str | None = None

    async def follow(self, handle: TaskHandle) -> None:
        """Show the task until it finishes (a resumed task says so, and for how long it was
        stopped: its first event)."""
        graph = handle.graph
        if not self._live:
            opened = False
            async for event in handle.events():
                if not opened:
                    opened = True
                    self._log.print(_opening(handle, event), highlight=False, markup=False)
                    if isinstance(event, TaskResumedEvent):
                        continue
                line = describe_event(event)
                if line:
                    self._log.print(line, highlight=False, markup=False)
            if not opened:
                self._log.print(_opening(handle, None), highlight=False, markup=False)
            return
        title = f"{graph.name} · task {handle.task_id}"

        def render() -> Group:
            parts: list[Text | Table] = [
                graph_table(graph, title),
                Text(counts_line(graph), style="dim"),
            ]
            if self._wait is not None:
                parts.append(Text(f"{self._wait}…", style="yellow"))
            return Group(*parts)

        def show_wait(text: str | None) -> None:
            self._wait = text

        live = Live(get_renderable=render, console=self._console, refresh_per_second=8)
        with live, status_line.shown_by(show_wait), paused_while_asking(live):
            async for event in handle.events():
                if isinstance(event, TaskResumedEvent):
                    title = f"{graph.name} · task {handle.task_id} · resumed"
        if not self._console.is_terminal:
            self._console.line()  # off a terminal, Live leaves its last frame unterminated

    def summary(self, result: TaskResult, *, show_table: bool) -> None:
        """The final table, the status line, and the outputs of the final subtasks."""
        graph = result.graph
        if show_table:
            self._console.print(graph_table(graph, f"{graph.name} · task {result.task_id}"))
        style = {"done": "green", "failed": "red", "cancelled": "magenta"}.get(result.status, "")
        self._console.print(
            Text(f"task {result.task_id} {result.status}: {counts_line(graph)}", style=style)
        )
        llm = llm_line(graph)
        if llm:
            self._console.print(Text(llm, style="dim"))
        for subtask in graph:
            if graph.dependents_of(subtask.id) or subtask.id not in result.outputs:
                continue
            self._console.print(Text(f"\n── {subtask.id} ──", style="bold"))
            # Outputs go out as they are: no wrapping, no markup, so they can be piped.
            self._console.file.write(format_output(result.outputs[subtask.id]).rstrip("\n") + "\n")
            self._console.file.flush()


def format_output(value: Any) -> str:
    """Text outputs as they are; anything else as indented JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, default=str, ensure_ascii=False)


def _opening(handle: TaskHandle, first: TaskEvent | None) -> str:
    """``task t… (name) started``, or ``resumed after 2m 05s stopped``."""
    begins = f"task {handle.task_id} ({handle.graph.name})"
    if isinstance(first, TaskResumedEvent):
        said = describe_event(first, style="notice") or ""
        return begins + said.removeprefix(f"task {handle.task_id}")
    return f"{begins} started"
