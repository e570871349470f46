"""Tests for fleetmind/orchestrator/_graph.py: dependency conditions, and how a failure or a
skip travels along chains (also into subtasks added with several dependencies)."""

from __future__ import annotations

import pytest
from graph_steps import ERROR, finish, run, snapshot, start, statuses

from fleetmind._task_log import AddDependency, AddSubtask, TaskCancelledEntry
from fleetmind._task_model import Dependency, Subtask
from fleetmind._task_model import SubtaskStatus as S
from fleetmind.errors import GraphError
from fleetmind.orchestrator._graph import DerivedChange, TaskGraph, _verdict

# --------------------------------------------------------------------------------------------
# Conditions
# --------------------------------------------------------------------------------------------


UPSTREAM_FAILED = "UpstreamFailed"

CONDITION_CASES = [
    # condition, source outcome, target status, reason
    ("success", "done", S.READY, ""),
    ("success", "failed", S.FAILED, "dependency 's' failed"),
    ("success", "skipped", S.SKIPPED, "dependency 's' was skipped"),
    ("always", "done", S.READY, ""),
    ("always", "failed", S.READY, ""),
    ("always", "skipped", S.READY, ""),
    ("failure", "done", S.SKIPPED, "runs only if 's' fails; it done"),
    ("failure", "failed", S.READY, ""),
    ("failure", "skipped", S.SKIPPED, "runs only if 's' fails; it skipped"),
]


def _source_ending(graph: TaskGraph, outcome: str) -> list[DerivedChange]:
    """Bring subtask 's' (which depends on 'r') to ``outcome``; return the derived changes."""
    if outcome == "skipped":
        # 's' runs only if 'r' fails; 'r' succeeds, so 's' is skipped.
        return run(graph, "r")
    changes = run(graph, "r")
    return changes + run(graph, "s", status=outcome)


def _base_graph(outcome: str) -> TaskGraph:
    graph = TaskGraph()
    graph.add_subtask("keep")  # stays ready so that the task is not over
    graph.add_subtask("r")
    cond = "failure" if outcome == "skipped" else "success"
    graph.add_subtask("s", depends_on=[Dependency(source="r", target="s", condition=cond)])
    return graph


@pytest.mark.parametrize(("condition", "outcome", "expected", "reason"), CONDITION_CASES)
def test_condition_settles_target_when_source_finishes(
    condition: str, outcome: str, expected: S, reason: str
) -> None:
    graph = _base_graph(outcome)
    graph.add_subtask("t", depends_on=[Dependency(source="s", target="t", condition=condition)])
    assert graph.state("t").status is S.PENDING

    changes = _source_ending(graph, outcome)

    assert graph.state("s").status.value == outcome
    state = graph.state("t")
    assert state.status is expected
    assert state.reason == reason
    if expected is S.READY:
        assert DerivedChange("t", expected, reason) not in changes
        assert state.error is None
        assert "t" in graph.drain_ready()
    else:
        assert DerivedChange("t", expected, reason) in changes
        assert "t" not in graph.drain_ready()
    if expected is S.FAILED:
        assert state.error == {
            "type": UPSTREAM_FAILED,
            "message": reason,
            "retryable": False,
            "details": {},
        }
    elif expected is S.SKIPPED:
        assert state.error is None


@pytest.mark.parametrize(("condition", "outcome", "expected", "reason"), CONDITION_CASES)
def test_condition_settles_target_added_after_source_finished(
    condition: str, outcome: str, expected: S, reason: str
) -> None:
    graph = _base_graph(outcome)
    _source_ending(graph, outcome)

    changes = graph.apply(
        AddSubtask(
            subtask=Subtask(id="t"),
            dependencies=(Dependency(source="s", target="t", condition=condition),),
        )
    )

    assert graph.state("t").status is expected
    assert graph.state("t").reason == reason
    if expected is S.READY:
        assert changes == []
    else:
        assert changes == [DerivedChange("t", expected, reason)]
    if expected is S.FAILED:
        assert graph.state("t").error["type"] == UPSTREAM_FAILED


@pytest.mark.parametrize(("condition", "outcome", "expected", "reason"), CONDITION_CASES)
def test_condition_settles_target_given_dependency_after_source_finished(
    condition: str, outcome: str, expected: S, reason: str
) -> None:
    graph = _base_graph(outcome)
    graph.add_subtask("t")
    _source_ending(graph, outcome)

    changes = graph.apply(
        AddDependency(dependency=Dependency(source="s", target="t", condition=condition))
    )

    assert graph.state("t").status is expected
    assert changes == ([] if expected is S.READY else [DerivedChange("t", expected, reason)])


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("success", (S.FAILED, "dependency 's' cancelled")),
        ("always", None),
        ("failure", (S.SKIPPED, "runs only if 's' fails; it cancelled")),
    ],
)
def test_verdict_for_a_cancelled_source(condition: str, expected: tuple[S, str] | None) -> None:
    # A cancelled source only arises from TaskCancelledEntry, which ends the whole task, so the rule
    # is checked on the verdict function itself.
    dep = Dependency(source="s", target="t", condition=condition)
    assert _verdict(dep, S.CANCELLED) == expected


@pytest.mark.parametrize(("condition", "outcome", "expected", "reason"), CONDITION_CASES)
def test_verdict_table(condition: str, outcome: str, expected: S, reason: str) -> None:
    dep = Dependency(source="s", target="t", condition=condition)
    verdict = _verdict(dep, S(outcome))
    assert verdict == (None if expected is S.READY else (expected, reason))


def test_task_cancelled_cancels_dependents_of_every_status() -> None:
    graph = TaskGraph()
    graph.add_subtask("s")
    for condition in ("success", "always", "failure"):
        graph.add_subtask(
            condition, depends_on=[Dependency(source="s", target=condition, condition=condition)]
        )
    start(graph, "s")

    graph.apply(TaskCancelledEntry(reason="stop"))

    assert set(statuses(graph).values()) == {"cancelled"}
    assert graph.state("always").reason == "stop"


def test_a_failed_and_a_skipped_dependency_both_settle_the_target() -> None:
    graph = TaskGraph()
    graph.add_subtask("a")
    graph.add_subtask("b")
    graph.add_subtask("c", depends_on=["a", "b"])
    graph.add_subtask("keep")

    run(graph, "a", status="failed")
    assert graph.state("c").status is S.FAILED
    assert graph.state("c").reason == "dependency 'a' failed"

    run(graph, "b")
    assert graph.state("c").status is S.FAILED
    assert graph.state("c").reason == "dependency 'a' failed"


def test_target_waits_for_every_source_before_running() -> None:
    graph = TaskGraph()
    graph.add_subtask("a")
    graph.add_subtask("b")
    graph.add_subtask(
        "c",
        depends_on=[
            Dependency(source="a", target="c", condition="always"),
            Dependency(source="b", target="c", condition="failure"),
        ],
    )
    run(graph, "a", status="failed")
    assert graph.state("c").status is S.PENDING
    run(graph, "b", status="failed")
    assert graph.state("c").status is S.READY


# --------------------------------------------------------------------------------------------
# Propagation along chains
# --------------------------------------------------------------------------------------------


def test_failure_propagates_down_a_chain() -> None:
    graph = TaskGraph()
    graph.add_subtask("a")
    graph.add_subtask("b", depends_on=["a"])
    graph.add_subtask("c", depends_on=["b"])
    graph.add_subtask("d", depends_on=["c"])

    changes = run(graph, "a", status="failed")

    assert changes == [
        DerivedChange("b", S.FAILED, "dependency 'a' failed"),
        DerivedChange("c", S.FAILED, "dependency 'b' failed"),
        DerivedChange("d", S.FAILED, "dependency 'c' failed"),
    ]
    assert statuses(graph) == {"a": "failed", "b": "failed", "c": "failed", "d": "failed"}
    assert graph.state("d").error["type"] == "UpstreamFailed"
    assert graph.state("a").error == ERROR
    assert graph.is_finished
    assert graph.status == "failed"


def test_skip_propagates_until_an_always_dependency() -> None:
    graph = TaskGraph()
    graph.add_subtask("a")
    graph.add_subtask("b", depends_on=[Dependency(source="a", target="b", condition="failure")])
    graph.add_subtask("c", depends_on=["b"])
    graph.add_subtask("d", depends_on=[Dependency(source="c", target="d", condition="always")])
    graph.add_subtask("e", depends_on=["d"])

    changes = run(graph, "a")

    assert changes == [
        DerivedChange("b", S.SKIPPED, "runs only if 'a' fails; it done"),
        DerivedChange("c", S.SKIPPED, "dependency 'b' was skipped"),
    ]
    assert statuses(graph) == {
        "a": "done",
        "b": "skipped",
        "c": "skipped",
        "d": "ready",
        "e": "pending",
    }
    run(graph, "d")
    run(graph, "e")
    assert graph.status == "done"


def test_fallback_runs_when_main_path_fails() -> None:
    graph = TaskGraph()
    graph.add_subtask("main")
    graph.add_subtask("use", depends_on=["main"])
    graph.add_subtask(
        "fallback", depends_on=[Dependency(source="main", target="fallback", condition="failure")]
    )
    graph.add_subtask(
        "cleanup", depends_on=[Dependency(source="use", target="cleanup", condition="always")]
    )

    run(graph, "main", status="failed")

    assert statuses(graph) == {
        "main": "failed",
        "use": "failed",
        "fallback": "ready",
        "cleanup": "ready",
    }
    assert graph.drain_ready() == ["cleanup", "fallback"]


# --------------------------------------------------------------------------------------------
# Several dependencies given with a new subtask
# --------------------------------------------------------------------------------------------


def test_subtask_added_with_two_settling_sources_is_settled_once() -> None:
    graph = TaskGraph()
    for sid in ("x", "a", "b"):
        graph.add_subtask(sid)
        start(graph, sid)
    finish(graph, "a", "failed")
    finish(graph, "b", "failed")

    changes = graph.apply(
        AddSubtask(
            subtask=Subtask(id="c"),
            dependencies=(Dependency(source="a", target="c"), Dependency(source="b", target="c")),
        )
    )

    assert changes == [DerivedChange("c", S.FAILED, "dependency 'a' failed")]
    assert graph.state("c").status is S.FAILED
    assert graph.state("x").status is S.RUNNING
    assert graph.dependencies_of("c") == [
        Dependency(source="a", target="c"),
        Dependency(source="b", target="c"),
    ]
    assert not graph.is_finished
    assert graph.status == "running"
    finish(graph, "x", "done")
    assert graph.is_finished
    assert graph.status == "failed"


def test_subtask_added_with_a_settling_and_an_unfinished_source() -> None:
    graph = TaskGraph()
    graph.add_subtask("a")
    graph.add_subtask("b")
    run(graph, "a")
    graph.add_subtask(
        "c",
        depends_on=[Dependency(source="a", target="c", condition="failure"), "b"],
    )

    assert graph.state("c").status is S.SKIPPED
    assert graph.state("c").reason == "runs only if 'a' fails; it done"
    run(graph, "b")
    assert graph.state("c").status is S.SKIPPED
    assert graph.status == "done"


def test_subtask_added_with_a_repeated_dependency_is_refused() -> None:
    graph = TaskGraph()
    graph.add_subtask("a")
    before = snapshot(graph)

    with pytest.raises(GraphError, match="subtask 'b' lists the same dependency twice"):
        graph.add_subtask("b", depends_on=["a", "a"])

    assert snapshot(graph) == before
    assert "b" not in graph
