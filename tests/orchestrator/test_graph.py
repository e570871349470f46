"""Tests for fleetmind/orchestrator/_graph.py: building a graph, the ready set, data inputs,
cycles, and the edits it refuses (a refused edit leaves the graph as it was)."""

from __future__ import annotations

from typing import Any

import pytest
from graph_steps import finish, run, snapshot, start, statuses
from pydantic import ValidationError

from fleetmind._task_log import (
    AddDependency,
    AddSubtask,
    RemoveSubtask,
    SubtaskRequeued,
    SubtaskStarted,
    TaskCancelledEntry,
    UpdateSubtask,
)
from fleetmind._task_model import Condition, Dependency, DependencyKind, RetryPolicy, Subtask
from fleetmind._task_model import SubtaskStatus as S
from fleetmind.errors import CycleError, GraphError
from fleetmind.orchestrator._graph import DerivedChange, TaskGraph

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
        lambda: graph.apply(TaskCancelledEntry()),
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


def test_a_batch_of_edits_is_checked_all_or_nothing_without_touching_the_graph() -> None:
    graph = TaskGraph()
    graph.add_subtask("a")
    before = snapshot(graph)
    good = AddSubtask(subtask=Subtask(id="b"), dependencies=(Dependency(source="a", target="b"),))
    needs_b = AddDependency(dependency=Dependency(source="b", target="a"))

    graph.check_edits([good])
    with pytest.raises(CycleError):
        graph.check_edits([good, needs_b])  # b -> a closes a cycle with a -> b
    with pytest.raises(GraphError, match="'b'"):
        graph.check_edits([needs_b])  # b does not exist without the first edit
    graph.check_edits([needs_b], first=AddSubtask(subtask=Subtask(id="b")))

    assert snapshot(graph) == before
