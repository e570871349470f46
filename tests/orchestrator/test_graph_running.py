"""Tests for fleetmind/orchestrator/_graph.py: the facts of a run (retries, reassignment,
requeue, cancellation), order and critical path, status, and round trips."""

from __future__ import annotations

import json
from typing import Any

import pytest
from graph_steps import ERROR, finish, run, snapshot, start, statuses

from fleetmind._task_log import (
    RemoveDependency,
    SubtaskProgressed,
    SubtaskReassigned,
    SubtaskRequeued,
    SubtaskRetried,
    TaskCancelledEntry,
)
from fleetmind._task_model import Dependency, RetryPolicy
from fleetmind._task_model import SubtaskStatus as S
from fleetmind.errors import CycleError, GraphError
from fleetmind.orchestrator._graph import DerivedChange, TaskGraph

# --------------------------------------------------------------------------------------------
# Cancellation
# --------------------------------------------------------------------------------------------


def test_cancellation_cancels_every_unfinished_subtask() -> None:
    graph = TaskGraph()
    graph.add_subtask("done")
    graph.add_subtask("running")
    graph.add_subtask("ready")
    graph.add_subtask("pending", depends_on=["running"])
    run(graph, "done", output=1)
    start(graph, "running")

    changes = graph.apply(TaskCancelledEntry(reason="user asked"))

    assert changes == [
        DerivedChange("running", S.CANCELLED, "user asked"),
        DerivedChange("ready", S.CANCELLED, "user asked"),
        DerivedChange("pending", S.CANCELLED, "user asked"),
    ]
    assert statuses(graph) == {
        "done": "done",
        "running": "cancelled",
        "ready": "cancelled",
        "pending": "cancelled",
    }
    assert graph.state("done").output == 1
    assert graph.state("pending").reason == "user asked"
    assert graph.state("done").reason == ""
    assert graph.is_finished
    assert graph.status == "cancelled"
    assert graph.drain_ready() == []
    with pytest.raises(GraphError, match="has finished"):
        finish(graph, "running", "done")


def test_cancellation_without_reason_and_of_an_empty_graph() -> None:
    graph = TaskGraph()
    graph.add_subtask("a")
    graph.apply(TaskCancelledEntry())
    assert graph.state("a").reason == "task cancelled"

    empty = TaskGraph()
    assert not empty.is_finished
    assert empty.status == "running"
    assert empty.apply(TaskCancelledEntry()) == []
    assert empty.is_finished
    assert empty.status == "cancelled"


# --------------------------------------------------------------------------------------------
# Running facts: retries, reassignment, requeue
# --------------------------------------------------------------------------------------------


def test_start_retry_progress_and_finish_are_recorded() -> None:
    graph = TaskGraph()
    graph.add_subtask("a")
    start(graph, "a", agent="w1", at=100.0)
    graph.apply(SubtaskProgressed(subtask_id="a", message="half", fraction=0.5))
    graph.apply(SubtaskRetried(subtask_id="a", error=ERROR, delay_s=0.2))
    finish(graph, "a", output={"k": "v"}, at=104.5)

    state = graph.state("a")
    assert state.status is S.DONE
    assert state.agent == "w1"
    assert state.attempts == 2
    assert state.total_attempts == 2
    assert state.progress == "half"
    assert state.fraction == 0.5
    assert state.error is None
    assert state.output == {"k": "v"}
    assert state.duration_s == 4.5


def test_reassign_moves_running_back_to_ready_and_excludes_the_agent() -> None:
    graph = TaskGraph()
    graph.add_subtask("a")
    graph.drain_ready()
    start(graph, "a", agent="w1")
    graph.apply(SubtaskRetried(subtask_id="a", error=ERROR, delay_s=0.1))

    changes = graph.apply(SubtaskReassigned(subtask_id="a", agent="w1", error=ERROR))

    assert changes == []
    state = graph.state("a")
    assert state.status is S.READY
    assert state.excluded_agents == ["w1"]
    assert state.error == ERROR
    assert graph.drain_ready() == ["a"]

    start(graph, "a", agent="w2")
    assert (state.attempts, state.total_attempts, state.agent) == (1, 3, "w2")
    graph.apply(SubtaskReassigned(subtask_id="a", agent="w2", error=ERROR))
    start(graph, "a", agent="w1")
    graph.apply(SubtaskReassigned(subtask_id="a", agent="w1", error=ERROR))
    assert state.excluded_agents == ["w1", "w2"]


def test_requeue_moves_running_back_to_ready() -> None:
    graph = TaskGraph()
    graph.add_subtask("a")
    graph.drain_ready()
    start(graph, "a", agent="w1")

    graph.apply(SubtaskRequeued(subtask_id="a", reason="process died"))

    state = graph.state("a")
    assert state.status is S.READY
    assert state.excluded_agents == []
    assert state.total_attempts == 1
    assert graph.drain_ready() == ["a"]
    assert graph.ready_ids() == ["a"]


@pytest.mark.parametrize(
    ("entry", "verb"),
    [
        (SubtaskReassigned(subtask_id="a", agent="w", error=ERROR), "reassign"),
        (SubtaskRequeued(subtask_id="a"), "requeue"),
        (SubtaskRetried(subtask_id="a", error=ERROR, delay_s=1), "retry"),
        (SubtaskProgressed(subtask_id="a", message="m"), "report progress for"),
    ],
)
def test_running_facts_need_a_running_subtask(entry: Any, verb: str) -> None:
    graph = TaskGraph()
    graph.add_subtask("a")
    before = snapshot(graph)

    with pytest.raises(GraphError, match=f"cannot {verb} subtask 'a': it is ready"):
        graph.apply(entry)
    assert snapshot(graph) == before


# --------------------------------------------------------------------------------------------
# Order and critical path
# --------------------------------------------------------------------------------------------


def _diamond() -> TaskGraph:
    graph = TaskGraph("diamond")
    graph.add_subtask("a")
    graph.add_subtask("b", depends_on=["a"])
    graph.add_subtask("c", depends_on=["a"])
    graph.add_subtask("d", depends_on=["b", "c"])
    graph.add_subtask("e")
    return graph


def test_topological_order_puts_sources_first() -> None:
    graph = _diamond()
    order = graph.topological_order()

    assert sorted(order) == ["a", "b", "c", "d", "e"]
    for dep in graph.dependencies:
        assert order.index(dep.source) < order.index(dep.target)
    assert TaskGraph().topological_order() == []


def test_critical_path_takes_the_longest_chain() -> None:
    graph = _diamond()

    assert graph.critical_path({"a": 2, "b": 3, "c": 10, "d": 1, "e": 1}) == (
        13.0,
        ["a", "c", "d"],
    )
    assert graph.critical_path({"a": 2, "b": 30, "c": 10, "d": 1}) == (33.0, ["a", "b", "d"])
    assert graph.critical_path({"e": 100}) == (100.0, ["e"])
    assert graph.critical_path({"d": 1.5}) == (1.5, ["a", "b", "d"])
    assert TaskGraph().critical_path({}) == (0.0, [])


# --------------------------------------------------------------------------------------------
# Status and round trips
# --------------------------------------------------------------------------------------------


def test_status_follows_the_subtasks() -> None:
    graph = TaskGraph()
    assert graph.status == "running"
    graph.add_subtask("a")
    graph.add_subtask("b", depends_on=[Dependency(source="a", target="b", condition="failure")])
    assert graph.status == "running"
    run(graph, "a")
    assert graph.state("b").status is S.SKIPPED
    assert graph.status == "done"

    failing = TaskGraph()
    failing.add_subtask("a")
    failing.add_subtask("b")
    run(failing, "a", status="failed")
    assert failing.status == "running"
    run(failing, "b")
    assert failing.status == "failed"


def test_counts_cover_every_status() -> None:
    graph = _diamond()
    run(graph, "a")
    start(graph, "b")

    assert graph.counts() == {
        "pending": 1,
        "ready": 2,
        "running": 1,
        "done": 1,
        "failed": 0,
        "cancelled": 0,
        "skipped": 0,
    }


def _rich_graph() -> TaskGraph:
    graph = TaskGraph("report")
    graph.add_subtask("fetch", skill="web", inputs={"url": "https://example.org"}, timeout_s=10)
    graph.add_subtask(
        "summarise",
        agent="writer",
        retry=RetryPolicy(max_attempts=1),
        constraints={"local": True},
        depends_on=[
            Dependency(source="fetch", target="summarise", kind="data", output="body", input="text")
        ],
    )
    graph.add_subtask("notify", description="Tell someone")
    graph.add_dependency("summarise", "notify", condition="failure")
    graph.add_dependency("fetch", "notify", condition="always")
    return graph


def test_to_definition_is_plain_data() -> None:
    assert _rich_graph().to_definition() == {
        "name": "report",
        "subtasks": [
            {
                "id": "fetch",
                "skill": "web",
                "inputs": {"url": "https://example.org"},
                "timeout_s": 10.0,
            },
            {
                "id": "summarise",
                "agent": "writer",
                "retry": {"max_attempts": 1},
                "constraints": {"local": True},
            },
            {"id": "notify", "description": "Tell someone"},
        ],
        "dependencies": [
            {
                "source": "fetch",
                "target": "summarise",
                "kind": "data",
                "output": "body",
                "input": "text",
            },
            {"source": "summarise", "target": "notify", "condition": "failure"},
            {"source": "fetch", "target": "notify", "condition": "always"},
        ],
    }


def test_definition_json_round_trip() -> None:
    graph = _rich_graph()
    definition = json.loads(json.dumps(graph.to_definition()))

    rebuilt = TaskGraph.from_definition(definition)

    assert rebuilt.name == "report"
    assert rebuilt.to_definition() == graph.to_definition()
    assert rebuilt.subtasks == graph.subtasks
    assert rebuilt.dependencies == graph.dependencies
    assert statuses(rebuilt) == {"fetch": "ready", "summarise": "pending", "notify": "pending"}


def test_from_definition_accepts_any_subtask_order_and_defaults() -> None:
    graph = TaskGraph.from_definition(
        {
            "subtasks": [{"id": "b"}, {"id": "a"}],
            "dependencies": [{"source": "a", "target": "b"}],
        }
    )
    assert graph.name == "task"
    assert statuses(graph) == {"b": "pending", "a": "ready"}
    assert TaskGraph.from_definition({}).to_definition() == {
        "name": "task",
        "subtasks": [],
        "dependencies": [],
    }
    with pytest.raises(CycleError):
        TaskGraph.from_definition(
            {
                "subtasks": [{"id": "a"}, {"id": "b"}],
                "dependencies": [{"source": "a", "target": "b"}, {"source": "b", "target": "a"}],
            }
        )


EXPECTED_FETCH_STATE = {
    "status": "done",
    "agent": "crawler",
    "attempts": 1,
    "duration_s": 2.0,
    "error": None,
    "reason": None,
    "output": {"body": "hello"},
}


def test_to_dict_has_structure_and_state() -> None:
    graph = _rich_graph()
    start(graph, "fetch", agent="crawler", at=10.0)
    finish(graph, "fetch", output={"body": "hello"}, at=12.0)

    data = graph.to_dict()

    assert data["version"] == 7
    assert data["status"] == "running"
    fetch = data["state"]["fetch"]
    assert {key: fetch[key] for key in EXPECTED_FETCH_STATE} == EXPECTED_FETCH_STATE
    assert data["state"]["summarise"]["status"] == "ready"
    assert data["state"]["notify"]["status"] == "pending"
    assert graph.resolve_inputs("summarise") == {"text": "hello"}


def test_from_log_rebuilds_an_equal_graph() -> None:
    graph = _rich_graph()
    graph.add_subtask("extra")
    graph.remove_subtask("extra")
    start(graph, "fetch", agent="crawler", at=1.0)
    graph.apply(SubtaskReassigned(subtask_id="fetch", agent="crawler", error=ERROR))
    start(graph, "fetch", agent="other", at=2.0)
    finish(graph, "fetch", output={"body": "x"}, at=3.0)
    run(graph, "summarise", status="failed")

    rebuilt = TaskGraph.from_log(graph.log, name=graph.name)

    assert rebuilt.to_dict() == graph.to_dict()
    assert rebuilt.log == graph.log
    assert rebuilt.state("fetch") == graph.state("fetch")
    assert rebuilt.drain_ready() == ["notify"]


def test_remove_dependency_entry_is_logged() -> None:
    graph = TaskGraph()
    graph.add_subtask("a")
    graph.add_subtask("b")
    graph.add_dependency("a", "b", kind="data", input="x")
    graph.remove_dependency("a", "b", input="x")

    assert graph.log[-1] == RemoveDependency(source="a", target="b", input="x")
    assert graph.version == 4
