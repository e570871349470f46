"""Tests for fleetmind/orchestrator/_graph.py: building, the fold, the ready set and round trips."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from fleetmind._task_log import (
    AddDependency,
    AddSubtask,
    RemoveDependency,
    RemoveSubtask,
    SubtaskFinished,
    SubtaskProgressed,
    SubtaskReassigned,
    SubtaskRequeued,
    SubtaskRetried,
    SubtaskStarted,
    TaskCancelled,
    UpdateSubtask,
)
from fleetmind._task_model import (
    Condition,
    Dependency,
    DependencyKind,
    RetryPolicy,
    Subtask,
)
from fleetmind._task_model import SubtaskStatus as S
from fleetmind.errors import CycleError, GraphError
from fleetmind.orchestrator._graph import DerivedChange, TaskGraph, _verdict

ERROR = {"type": "SubtaskFailed", "message": "boom", "retryable": True, "details": {}}


def start(graph: TaskGraph, sid: str, agent: str = "worker", at: float = 0.0) -> None:
    graph.apply(SubtaskStarted(subtask_id=sid, agent=agent, at=at))


def finish(
    graph: TaskGraph,
    sid: str,
    status: str = "done",
    output: Any = None,
    error: dict[str, Any] | None = None,
    at: float = 0.0,
) -> list[DerivedChange]:
    if status == "failed" and error is None:
        error = ERROR
    return graph.apply(
        SubtaskFinished(subtask_id=sid, status=status, output=output, error=error, at=at)
    )


def run(
    graph: TaskGraph, sid: str, status: str = "done", output: Any = None
) -> list[DerivedChange]:
    start(graph, sid)
    return finish(graph, sid, status, output)


def statuses(graph: TaskGraph) -> dict[str, str]:
    return {s.id: graph.state(s.id).status.value for s in graph}


def snapshot(graph: TaskGraph) -> tuple[dict[str, Any], int]:
    return graph.to_dict(), graph.version


# --------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------


def test_add_subtask_from_id_and_fields() -> None:
    graph = TaskGraph("build")
    spec = graph.add_subtask("fetch", description="Fetch it", skill="web", inputs={"url": "u"})

    assert spec == Subtask(id="fetch", description="Fetch it", skill="web", inputs={"url": "u"})
    assert graph.subtask("fetch") is spec
    assert len(graph) == 1
    assert "fetch" in graph
    assert "other" not in graph
    assert graph.subtasks == [spec]
    assert list(graph) == [spec]
    assert graph.version == 1
    assert graph.log == (AddSubtask(subtask=spec),)
    assert graph.state("fetch").status is S.READY


def test_add_subtask_from_subtask_object_keeps_it() -> None:
    graph = TaskGraph()
    spec = Subtask(id="a", agent="bot", timeout_s=5, retry=RetryPolicy(max_attempts=1))

    assert graph.add_subtask(spec) is spec
    assert graph.subtask("a").retry.max_attempts == 1
    assert graph.subtask("a").timeout_s == 5.0


def test_depends_on_takes_ids_and_dependency_objects() -> None:
    graph = TaskGraph()
    graph.add_subtask("a")
    graph.add_subtask("b")
    data = Dependency(source="b", target="c", kind="data", input="text")
    graph.add_subtask("c", depends_on=["a", data])

    control = Dependency(source="a", target="c")
    assert graph.dependencies == [control, data]
    assert graph.dependencies_of("c") == [control, data]
    assert graph.dependents_of("a") == [control]
    assert graph.dependents_of("b") == [data]
    assert graph.dependencies_of("a") == []
    assert graph.log[-1] == AddSubtask(subtask=Subtask(id="c"), dependencies=(control, data))
    assert graph.version == 3


def test_add_dependency_builds_and_logs_the_dependency() -> None:
    graph = TaskGraph()
    graph.add_subtask("a")
    graph.add_subtask("b")

    dep = graph.add_dependency(
        "a", "b", kind="data", condition="always", output="summary", input="text"
    )

    assert dep == Dependency(
        source="a",
        target="b",
        kind=DependencyKind.DATA,
        condition=Condition.ALWAYS,
        output="summary",
        input="text",
    )
    assert graph.dependencies == [dep]
    assert graph.log[-1] == AddDependency(dependency=dep)
    assert graph.state("b").status is S.PENDING
    assert graph.supplied_inputs("b") == {"text"}


def test_update_subtask_replaces_fields_and_keeps_id() -> None:
    graph = TaskGraph()
    graph.add_subtask("a", description="old", inputs={"x": 1})

    spec = graph.update_subtask("a", description="new", agent="bot")

    assert spec == Subtask(id="a", description="new", agent="bot", inputs={"x": 1})
    assert graph.subtask("a") == spec
    assert graph.log[-1] == UpdateSubtask(subtask=spec)
    assert graph.state("a").status is S.READY


def test_duplicate_subtask_id_is_refused_and_graph_unchanged() -> None:
    graph = TaskGraph()
    graph.add_subtask("a", description="first")
    before = snapshot(graph)

    with pytest.raises(GraphError, match="subtask 'a' already exists"):
        graph.add_subtask("a", description="second")

    assert snapshot(graph) == before
    assert graph.subtask("a").description == "first"


def test_duplicate_dependency_is_refused() -> None:
    graph = TaskGraph()
    graph.add_subtask("a")
    graph.add_subtask("b", depends_on=["a"])
    before = snapshot(graph)

    with pytest.raises(GraphError, match="dependency 'a' -> 'b' already exists"):
        graph.add_dependency("a", "b")

    assert snapshot(graph) == before


def test_control_and_data_dependency_between_same_pair_coexist() -> None:
    graph = TaskGraph()
    graph.add_subtask("a")
    graph.add_subtask("b", depends_on=["a"])
    graph.add_dependency("a", "b", kind="data", input="x")
    graph.add_dependency("a", "b", kind="data", input="y")

    assert [d.key for d in graph.dependencies] == [("a", "b", ""), ("a", "b", "x"), ("a", "b", "y")]
    graph.remove_dependency("a", "b", input="x")
    assert [d.key for d in graph.dependencies] == [("a", "b", ""), ("a", "b", "y")]
    assert graph.topological_order() == ["a", "b"]


def test_one_input_fed_by_two_sources_is_refused() -> None:
    graph = TaskGraph()
    graph.add_subtask("a")
    graph.add_subtask("b")
    graph.add_subtask("c")
    graph.add_dependency("a", "c", kind="data", input="text")
    before = snapshot(graph)

    with pytest.raises(GraphError, match="input 'text' of subtask 'c' is fed by both 'a' and 'b'"):
        graph.add_dependency("b", "c", kind="data", input="text")
    assert snapshot(graph) == before

    with pytest.raises(GraphError, match="fed by both"):
        graph.add_subtask(
            "d",
            depends_on=[
                Dependency(source="a", target="d", kind="data", input="x"),
                Dependency(source="b", target="d", kind="data", input="x"),
            ],
        )
    assert snapshot(graph) == before


def test_dependency_given_with_a_subtask_must_lead_into_it() -> None:
    graph = TaskGraph()
    graph.add_subtask("a")
    graph.add_subtask("b")
    before = snapshot(graph)

    with pytest.raises(GraphError, match="given with subtask 'c' must lead into it"):
        graph.add_subtask("c", depends_on=[Dependency(source="a", target="b")])

    assert snapshot(graph) == before
    assert "c" not in graph


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (lambda g: g.add_subtask("c", depends_on=["ghost"]), "depends on unknown subtask 'ghost'"),
        (lambda g: g.add_dependency("ghost", "a"), "names unknown subtask 'ghost'"),
        (lambda g: g.add_dependency("a", "ghost"), "names unknown subtask 'ghost'"),
        (lambda g: g.remove_dependency("a", "ghost"), "no dependency 'a' -> 'ghost' to remove"),
        (lambda g: g.remove_dependency("b", "a"), "no dependency 'b' -> 'a' to remove"),
        (lambda g: g.remove_subtask("ghost"), "cannot remove unknown subtask 'ghost'"),
        (lambda g: g.update_subtask("ghost", description="x"), "unknown subtask 'ghost'"),
        (lambda g: start(g, "ghost"), "cannot start unknown subtask 'ghost'"),
        (lambda g: finish(g, "ghost", "failed"), "cannot finish unknown subtask 'ghost'"),
    ],
)
def test_dangling_references_are_refused(action: Any, message: str) -> None:
    graph = TaskGraph()
    graph.add_subtask("a")
    graph.add_subtask("b")
    before = snapshot(graph)

    with pytest.raises(GraphError, match=message):
        action(graph)

    assert snapshot(graph) == before
    assert len(graph.dependencies) == 0


def test_reading_unknown_subtask_raises_graph_error() -> None:
    graph = TaskGraph()
    with pytest.raises(GraphError, match="unknown subtask 'x'"):
        graph.subtask("x")
    with pytest.raises(GraphError, match="unknown subtask 'x'"):
        graph.state("x")


def test_dependency_shape_is_validated_by_the_model() -> None:
    with pytest.raises(ValidationError, match="cannot depend on itself"):
        Dependency(source="a", target="a")
    with pytest.raises(ValidationError, match="needs an 'input' name"):
        Dependency(source="a", target="b", kind="data")
    with pytest.raises(ValidationError, match="cannot carry data"):
        Dependency(source="a", target="b", input="x")
    assert Dependency(source="a", target="b", kind="data", input="x").key == ("a", "b", "x")


# --------------------------------------------------------------------------------------------
# Ready set
# --------------------------------------------------------------------------------------------


def test_drain_ready_reports_new_ready_subtasks_once() -> None:
    graph = TaskGraph()
    graph.add_subtask("a")
    graph.add_subtask("b")
    graph.add_subtask("c", depends_on=["a", "b"])

    assert graph.drain_ready() == ["a", "b"]
    assert graph.drain_ready() == []
    assert graph.ready_ids() == ["a", "b"]
    assert statuses(graph) == {"a": "ready", "b": "ready", "c": "pending"}

    run(graph, "a")
    assert graph.drain_ready() == []
    assert graph.state("c").status is S.PENDING

    start(graph, "b")
    assert graph.running_ids() == ["b"]
    assert graph.ready_ids() == []
    finish(graph, "b")
    assert graph.drain_ready() == ["c"]
    assert graph.ready_ids() == ["c"]
    assert graph.running_ids() == []


def test_drain_ready_leaves_out_subtasks_that_are_no_longer_ready() -> None:
    graph = TaskGraph()
    graph.add_subtask("r")
    graph.add_subtask("x")
    graph.add_subtask("gone")
    start(graph, "r")
    graph.add_dependency("r", "x")
    graph.remove_subtask("gone")

    assert graph.drain_ready() == []
    assert statuses(graph) == {"r": "running", "x": "pending"}


def test_drain_ready_lists_each_subtask_once() -> None:
    graph = TaskGraph()
    graph.add_subtask("r")
    graph.add_subtask("x")
    graph.drain_ready()
    start(graph, "r")
    graph.add_dependency("r", "x")
    graph.remove_dependency("r", "x")
    start(graph, "x")
    graph.apply(SubtaskRequeued(subtask_id="x"))

    assert graph.drain_ready() == ["x"]


def test_drain_ready_after_from_log_lists_each_subtask_once() -> None:
    log = [
        AddSubtask(subtask=Subtask(id="x")),
        SubtaskStarted(subtask_id="x", agent="w"),
        SubtaskRequeued(subtask_id="x"),
    ]
    assert TaskGraph.from_log(log).drain_ready() == ["x"]


def test_adding_dependency_on_unfinished_source_makes_ready_target_pending() -> None:
    graph = TaskGraph()
    graph.add_subtask("a")
    graph.add_subtask("b")
    graph.drain_ready()

    graph.add_dependency("a", "b")

    assert statuses(graph) == {"a": "ready", "b": "pending"}
    assert graph.drain_ready() == []


def test_adding_dependency_on_done_source_keeps_target_ready() -> None:
    graph = TaskGraph()
    graph.add_subtask("a")
    graph.add_subtask("b")
    run(graph, "a")

    assert graph.add_dependency("a", "b").source == "a"
    assert graph.state("b").status is S.READY


def test_removing_last_blocking_dependency_makes_target_ready() -> None:
    graph = TaskGraph()
    graph.add_subtask("a")
    graph.add_subtask("b")
    graph.add_subtask("c", depends_on=["a", "b"])
    graph.drain_ready()

    graph.remove_dependency("a", "c")
    assert graph.state("c").status is S.PENDING
    graph.remove_dependency("b", "c")
    assert graph.state("c").status is S.READY
    assert graph.drain_ready() == ["c"]
    assert graph.dependencies == []


def test_removing_a_subtask_releases_its_dependents() -> None:
    graph = TaskGraph()
    graph.add_subtask("a")
    graph.add_subtask("b", depends_on=["a"])
    graph.add_subtask("c", depends_on=["b"])
    graph.drain_ready()

    graph.remove_subtask("b")

    assert "b" not in graph
    assert graph.dependencies == []
    assert statuses(graph) == {"a": "ready", "c": "ready"}
    assert graph.drain_ready() == ["c"]
    assert graph.log[-1] == RemoveSubtask(subtask_id="b")


def test_removed_subtask_id_can_be_added_again() -> None:
    graph = TaskGraph()
    graph.add_subtask("a", description="one")
    graph.remove_subtask("a")
    graph.add_subtask("a", description="two")

    assert graph.subtask("a").description == "two"
    assert graph.drain_ready() == ["a"]


# --------------------------------------------------------------------------------------------
# Data inputs
# --------------------------------------------------------------------------------------------


def test_data_dependency_passes_whole_output_and_a_field() -> None:
    graph = TaskGraph()
    graph.add_subtask("a")
    graph.add_subtask("b", inputs={"lang": "en", "text": "literal"})
    graph.add_dependency("a", "b", kind="data", input="text")
    graph.add_dependency("a", "b", kind="data", output="score", input="score")
    assert graph.resolve_inputs("b") == {"lang": "en", "text": "literal"}
    assert graph.supplied_inputs("b") == {"lang", "text", "score"}

    run(graph, "a", output={"score": 0.9, "extra": [1, 2]})

    assert graph.resolve_inputs("b") == {
        "lang": "en",
        "text": {"score": 0.9, "extra": [1, 2]},
        "score": 0.9,
    }


def test_data_dependency_with_scalar_output() -> None:
    graph = TaskGraph()
    graph.add_subtask("a")
    graph.add_subtask("b", depends_on=[Dependency(source="a", target="b", kind="data", input="n")])
    run(graph, "a", output=42)

    assert graph.resolve_inputs("b") == {"n": 42}


@pytest.mark.parametrize("output", [{"other": 1}, "plain text", None, [1, 2]])
def test_missing_output_field_raises_graph_error(output: Any) -> None:
    graph = TaskGraph()
    graph.add_subtask("a")
    graph.add_subtask("b")
    graph.add_dependency("a", "b", kind="data", output="summary", input="text")
    run(graph, "a", output=output)

    with pytest.raises(GraphError, match="output of subtask 'a' has no field 'summary'"):
        graph.resolve_inputs("b")


def test_data_from_source_that_did_not_succeed_is_not_supplied() -> None:
    graph = TaskGraph()
    graph.add_subtask("a")
    graph.add_subtask("b", inputs={"k": 1})
    graph.add_dependency("a", "b", kind="data", condition="always", input="text")
    run(graph, "a", status="failed", output="partial")

    assert graph.state("b").status is S.READY
    assert graph.resolve_inputs("b") == {"k": 1}


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
    # A cancelled source only arises from TaskCancelled, which ends the whole task, so the rule
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

    graph.apply(TaskCancelled(reason="stop"))

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
# Cycles
# --------------------------------------------------------------------------------------------


def test_cycle_is_refused_and_named() -> None:
    graph = TaskGraph()
    graph.add_subtask("a")
    graph.add_subtask("b", depends_on=["a"])
    graph.add_subtask("c", depends_on=["b"])
    before = snapshot(graph)

    with pytest.raises(CycleError) as info:
        graph.add_dependency("c", "a")

    assert str(info.value) == "dependency 'c' -> 'a' would close a cycle: a -> b -> c -> a"
    assert isinstance(info.value, GraphError)
    assert snapshot(graph) == before
    assert graph.topological_order() == ["a", "b", "c"]


def test_two_node_cycle_through_a_data_dependency_is_refused() -> None:
    graph = TaskGraph()
    graph.add_subtask("a")
    graph.add_subtask("b")
    graph.add_dependency("a", "b", kind="data", input="x")

    with pytest.raises(CycleError, match="a -> b -> a"):
        graph.add_dependency("b", "a", kind="data", input="y")
    assert len(graph.dependencies) == 1


def test_cycle_check_forgets_removed_dependencies() -> None:
    graph = TaskGraph()
    graph.add_subtask("a")
    graph.add_subtask("b", depends_on=["a"])
    graph.add_dependency("a", "b", kind="data", input="x")
    graph.remove_dependency("a", "b")
    with pytest.raises(CycleError):
        graph.add_dependency("b", "a")  # the data dependency a -> b still stands

    graph.remove_dependency("a", "b", input="x")
    graph.add_dependency("b", "a")
    assert graph.topological_order() == ["b", "a"]


# --------------------------------------------------------------------------------------------
# Refused edits
# --------------------------------------------------------------------------------------------


def _graph_with_x(status: str) -> TaskGraph:
    """A graph whose subtask 'x' is ``status``, with 'y' (ready) and 'keep' (ready)."""
    graph = TaskGraph()
    graph.add_subtask("keep")
    graph.add_subtask("y")
    if status == "skipped":
        graph.add_subtask("r")
        graph.add_subtask("x", depends_on=[Dependency(source="r", target="x", condition="failure")])
        graph.add_dependency("y", "x")
        run(graph, "r")
        run(graph, "y")
    else:
        graph.add_subtask("x", depends_on=["y"])
        run(graph, "y")
        start(graph, "x")
        if status != "running":
            finish(graph, "x", status)
    assert graph.state("x").status.value == status
    return graph


@pytest.mark.parametrize("status", ["running", "done", "failed", "skipped"])
@pytest.mark.parametrize(
    ("action", "verb"),
    [
        (lambda g: g.update_subtask("x", description="changed"), "update"),
        (lambda g: g.apply(UpdateSubtask(subtask=Subtask(id="x"))), "update"),
        (lambda g: g.remove_subtask("x"), "remove"),
        (lambda g: g.add_dependency("keep", "x"), "add a dependency to"),
        (lambda g: g.remove_dependency("y", "x"), "remove a dependency of"),
        (lambda g: start(g, "x"), "start"),
    ],
)
def test_edits_of_started_subtasks_are_refused(status: str, action: Any, verb: str) -> None:
    graph = _graph_with_x(status)
    before = snapshot(graph)
    spec = graph.subtask("x")

    with pytest.raises(GraphError, match=f"cannot {verb} subtask 'x': it is {status}"):
        action(graph)

    assert snapshot(graph) == before
    assert graph.subtask("x") is spec


def test_started_subtask_may_still_be_a_source() -> None:
    graph = _graph_with_x("running")
    graph.add_dependency("x", "keep")
    assert graph.state("keep").status is S.PENDING
    finish(graph, "x")
    assert graph.state("keep").status is S.READY


def test_removing_a_subtask_that_feeds_data_is_refused() -> None:
    graph = TaskGraph()
    graph.add_subtask("a")
    graph.add_subtask("b")
    graph.add_dependency("a", "b", kind="data", input="text")
    before = snapshot(graph)

    with pytest.raises(
        GraphError,
        match="cannot remove subtask 'a': 'b' takes its output as input 'text'",
    ):
        graph.remove_subtask("a")
    assert snapshot(graph) == before

    graph.remove_dependency("a", "b", input="text")
    graph.remove_subtask("a")
    assert [s.id for s in graph] == ["b"]


def test_removing_a_data_consumer_is_allowed() -> None:
    graph = TaskGraph()
    graph.add_subtask("a")
    graph.add_subtask("b")
    graph.add_dependency("a", "b", kind="data", input="text")

    graph.remove_subtask("b")

    assert graph.dependencies == []
    assert graph.dependents_of("a") == []


def test_finish_rules() -> None:
    graph = TaskGraph()
    graph.add_subtask("a")
    graph.add_subtask("b", depends_on=["a"])
    with pytest.raises(GraphError, match="cannot finish subtask 'a': it is ready"):
        finish(graph, "a", "done")
    with pytest.raises(GraphError, match="cannot finish subtask 'b': it is pending"):
        finish(graph, "b", "failed")

    # A ready subtask may fail without running (no capable agent, say).
    changes = finish(graph, "a", "failed")
    assert graph.state("a").status is S.FAILED
    assert graph.state("a").agent is None
    assert changes == [DerivedChange("b", S.FAILED, "dependency 'a' failed")]


def test_edits_after_the_task_finished_are_refused() -> None:
    graph = TaskGraph()
    graph.add_subtask("a")
    run(graph, "a", output="out")
    assert graph.is_finished
    assert graph.status == "done"
    before = snapshot(graph)

    for action in (
        lambda: graph.add_subtask("b"),
        lambda: graph.apply(TaskCancelled()),
        lambda: graph.update_subtask("a", description="x"),
    ):
        with pytest.raises(GraphError, match="task graph 'task' has finished"):
            action()
    assert snapshot(graph) == before


def test_removing_the_last_unfinished_subtask_ends_the_task() -> None:
    graph = TaskGraph()
    graph.add_subtask("a")
    graph.add_subtask("b")
    run(graph, "a")
    assert not graph.is_finished

    graph.remove_subtask("b")

    assert graph.is_finished
    assert graph.status == "done"


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

    changes = graph.apply(TaskCancelled(reason="user asked"))

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
    graph.apply(TaskCancelled())
    assert graph.state("a").reason == "task cancelled"

    empty = TaskGraph()
    assert not empty.is_finished
    assert empty.status == "running"
    assert empty.apply(TaskCancelled()) == []
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
