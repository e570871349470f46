"""Tests for fleetmind/orchestrator/_export.py: Mermaid and Graphviz DOT pictures of a graph."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from fleetmind._task_log import SubtaskFinished, SubtaskStarted, TaskCancelledEntry
from fleetmind._task_model import Dependency
from fleetmind.orchestrator._export import to_dot, to_mermaid
from fleetmind.orchestrator._graph import TaskGraph

CLASS_DEFS = [
    "    classDef pending fill:#eeeeee,stroke:#495057",
    "    classDef ready fill:#fff3bf,stroke:#495057",
    "    classDef running fill:#a5d8ff,stroke:#495057",
    "    classDef done fill:#b2f2bb,stroke:#495057",
    "    classDef failed fill:#ffc9c9,stroke:#495057",
    "    classDef cancelled fill:#dee2e6,stroke:#495057",
    "    classDef skipped fill:#f1f3f5,stroke:#495057",
]
DOT_HEADER = [
    "    rankdir=TB;",
    '    node [shape=box, style="rounded,filled", fontname="Helvetica"];',
]


def demo_graph() -> TaskGraph:
    """fetch (done) feeds summarise (running); notify runs if summarise fails; archive waits."""
    graph = TaskGraph("demo")
    graph.add_subtask("fetch")
    graph.add_subtask(
        "summarise",
        depends_on=[Dependency(source="fetch", target="summarise", kind="data", input="text")],
    )
    graph.add_subtask(
        "notify",
        depends_on=[Dependency(source="summarise", target="notify", condition="failure")],
    )
    graph.add_subtask("archive", depends_on=["fetch"])
    graph.add_dependency("summarise", "archive", kind="data", condition="always", input="report")
    graph.apply(SubtaskStarted(subtask_id="fetch", agent="crawler"))
    graph.apply(SubtaskFinished(subtask_id="fetch", status="done", output={"body": "x"}))
    graph.apply(SubtaskStarted(subtask_id="summarise", agent="writer"))
    return graph


def outcomes_graph() -> TaskGraph:
    """One subtask in each of ready, failed (upstream), skipped and failed (ran)."""
    graph = TaskGraph("outcomes")
    graph.add_subtask("a")
    graph.add_subtask("b", depends_on=["a"])
    graph.add_subtask("c", depends_on=[Dependency(source="a", target="c", condition="failure")])
    graph.add_subtask("d")
    graph.add_subtask("e")
    graph.add_subtask("f", depends_on=[Dependency(source="d", target="f", condition="failure")])
    graph.apply(SubtaskStarted(subtask_id="a", agent="w"))
    graph.apply(SubtaskFinished(subtask_id="a", status="done"))
    graph.apply(SubtaskStarted(subtask_id="d", agent="w"))
    graph.apply(SubtaskFinished(subtask_id="d", status="failed"))
    return graph


def test_mermaid_of_a_graph_with_control_and_data_dependencies() -> None:
    assert to_mermaid(demo_graph()).splitlines() == [
        "flowchart TD",
        '    n0["fetch<br/>done @ crawler"]:::done',
        '    n1["summarise<br/>running @ writer"]:::running',
        '    n2["notify<br/>pending"]:::pending',
        '    n3["archive<br/>pending"]:::pending',
        "    n0 -.->|text| n1",
        "    n1 -->|on failure| n2",
        "    n0 --> n3",
        "    n1 -.->|report, on always| n3",
        *CLASS_DEFS,
    ]
    assert to_mermaid(demo_graph()).endswith("stroke:#495057\n")


def test_dot_of_a_graph_with_control_and_data_dependencies() -> None:
    text = to_dot(demo_graph())

    assert text.splitlines() == [
        'digraph "demo" {',
        *DOT_HEADER,
        '    "fetch" [label="fetch\\ndone @ crawler", fillcolor="#b2f2bb"];',
        '    "summarise" [label="summarise\\nrunning @ writer", fillcolor="#a5d8ff"];',
        '    "notify" [label="notify\\npending", fillcolor="#eeeeee"];',
        '    "archive" [label="archive\\npending", fillcolor="#eeeeee"];',
        '    "fetch" -> "summarise" [style=dashed, label="text"];',
        '    "summarise" -> "notify" [label="on failure"];',
        '    "fetch" -> "archive";',
        '    "summarise" -> "archive" [style=dashed, label="report, on always"];',
        "}",
    ]
    assert text.endswith("}\n")


def test_status_colours_and_classes() -> None:
    graph = outcomes_graph()
    assert {s.id: graph.state(s.id).status.value for s in graph} == {
        "a": "done",
        "b": "ready",
        "c": "skipped",
        "d": "failed",
        "e": "ready",
        "f": "ready",
    }

    mermaid = to_mermaid(graph).splitlines()
    assert mermaid[1:7] == [
        '    n0["a<br/>done @ w"]:::done',
        '    n1["b<br/>ready"]:::ready',
        '    n2["c<br/>skipped"]:::skipped',
        '    n3["d<br/>failed @ w"]:::failed',
        '    n4["e<br/>ready"]:::ready',
        '    n5["f<br/>ready"]:::ready',
    ]
    assert mermaid[7:10] == [
        "    n0 --> n1",
        "    n0 -->|on failure| n2",
        "    n3 -->|on failure| n5",
    ]

    dot = to_dot(graph).splitlines()
    assert dot[3:9] == [
        '    "a" [label="a\\ndone @ w", fillcolor="#b2f2bb"];',
        '    "b" [label="b\\nready", fillcolor="#fff3bf"];',
        '    "c" [label="c\\nskipped", fillcolor="#f1f3f5"];',
        '    "d" [label="d\\nfailed @ w", fillcolor="#ffc9c9"];',
        '    "e" [label="e\\nready", fillcolor="#fff3bf"];',
        '    "f" [label="f\\nready", fillcolor="#fff3bf"];',
    ]

    graph.apply(TaskCancelledEntry())
    assert '    n1["b<br/>cancelled"]:::cancelled' in to_mermaid(graph).splitlines()
    assert '    "b" [label="b\\ncancelled", fillcolor="#dee2e6"];' in to_dot(graph).splitlines()


def test_data_dependency_taking_an_output_field_is_labelled_by_input() -> None:
    graph = TaskGraph("fields")
    graph.add_subtask("a")
    graph.add_subtask("b")
    graph.add_dependency("a", "b", kind="data", output="score", input="value")

    assert "    n0 -.->|value| n1" in to_mermaid(graph).splitlines()
    assert '    "a" -> "b" [style=dashed, label="value"];' in to_dot(graph).splitlines()


def test_empty_graph() -> None:
    assert to_mermaid(TaskGraph()) == "\n".join(["flowchart TD", *CLASS_DEFS]) + "\n"
    assert to_dot(TaskGraph("empty")) == "\n".join(['digraph "empty" {', *DOT_HEADER, "}"]) + "\n"


def test_dot_quotes_the_graph_name() -> None:
    assert to_dot(TaskGraph('my "task"')).splitlines()[0] == 'digraph "my \\"task\\"" {'


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot is not installed")
@pytest.mark.parametrize("make", [demo_graph, outcomes_graph])
def test_dot_output_parses_with_graphviz(make: Callable[[], TaskGraph], tmp_path: Path) -> None:
    source = tmp_path / "graph.dot"
    source.write_text(to_dot(make()))
    result = subprocess.run(
        ["dot", "-Tsvg", str(source)], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "<svg" in result.stdout
