"""Pictures of a task graph: Mermaid and Graphviz DOT, coloured by status."""

from __future__ import annotations

import json

from fleetmind._task_model import Condition, DependencyKind, SubtaskStatus
from fleetmind.orchestrator._graph import TaskGraph

_COLOURS = {
    SubtaskStatus.PENDING: "#eeeeee",
    SubtaskStatus.READY: "#fff3bf",
    SubtaskStatus.RUNNING: "#a5d8ff",
    SubtaskStatus.DONE: "#b2f2bb",
    SubtaskStatus.FAILED: "#ffc9c9",
    SubtaskStatus.CANCELLED: "#dee2e6",
    SubtaskStatus.SKIPPED: "#f1f3f5",
}


def _label(graph: TaskGraph, subtask_id: str) -> str:
    state = graph.state(subtask_id)
    agent = f" @ {state.agent}" if state.agent else ""
    return f"{subtask_id}\n{state.status.value}{agent}"


def _edge_label(kind: DependencyKind, condition: Condition, port: str | None) -> str:
    parts = []
    if kind is DependencyKind.DATA:
        parts.append(port or "data")
    if condition is not Condition.SUCCESS:
        parts.append(f"on {condition.value}")
    return ", ".join(parts)


def to_mermaid(graph: TaskGraph) -> str:
    """The graph as a Mermaid flowchart; data dependencies are dashed and labelled."""
    node_ids = {sid: f"n{i}" for i, sid in enumerate(s.id for s in graph)}
    lines = ["flowchart TD"]
    for sid, node in node_ids.items():
        text = _label(graph, sid).replace('"', "'").replace("\n", "<br/>")
        lines.append(f'    {node}["{text}"]:::{graph.state(sid).status.value}')
    for dep in graph.dependencies:
        label = _edge_label(dep.kind, dep.condition, dep.input)
        arrow = "-.->" if dep.kind is DependencyKind.DATA else "-->"
        label_part = f"|{label}|" if label else ""
        lines.append(f"    {node_ids[dep.source]} {arrow}{label_part} {node_ids[dep.target]}")
    for status, colour in _COLOURS.items():
        lines.append(f"    classDef {status.value} fill:{colour},stroke:#495057")
    return "\n".join(lines) + "\n"


def to_dot(graph: TaskGraph) -> str:
    """The graph as Graphviz DOT; data dependencies are dashed and labelled."""
    lines = [
        f"digraph {json.dumps(graph.name)} {{",
        "    rankdir=TB;",
        '    node [shape=box, style="rounded,filled", fontname="Helvetica"];',
    ]
    for subtask in graph:
        state = graph.state(subtask.id)
        lines.append(
            f"    {json.dumps(subtask.id)} [label={json.dumps(_label(graph, subtask.id))}, "
            f'fillcolor="{_COLOURS[state.status]}"];'
        )
    for dep in graph.dependencies:
        attrs = []
        if dep.kind is DependencyKind.DATA:
            attrs.append("style=dashed")
        label = _edge_label(dep.kind, dep.condition, dep.input)
        if label:
            attrs.append(f"label={json.dumps(label)}")
        suffix = f" [{', '.join(attrs)}]" if attrs else ""
        lines.append(f"    {json.dumps(dep.source)} -> {json.dumps(dep.target)}{suffix};")
    lines.append("}")
    return "\n".join(lines) + "\n"
