"""Property tests for fleetmind/orchestrator/_graph.py: random edits and run facts keep it sound.

Each example applies a random sequence of log entries, valid or not, through
:meth:`TaskGraph.apply`. A refused entry must raise ``GraphError`` and leave the graph as it was;
after every step the graph's invariants are checked against a model computed here from the
public reading API, and at the end the log must replay to an equal graph, also after a JSON
round trip of every entry.
"""

from __future__ import annotations

from typing import Any

import networkx as nx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetmind._task_log import (
    AddDependency,
    AddSubtask,
    LogEntry,
    RemoveDependency,
    RemoveSubtask,
    SubtaskFinished,
    SubtaskProgressed,
    SubtaskReassigned,
    SubtaskRequeued,
    SubtaskRetried,
    SubtaskRouted,
    SubtaskStarted,
    TaskCancelledEntry,
    UpdateSubtask,
    log_entry_adapter,
)
from fleetmind._task_model import Condition, Dependency, Subtask
from fleetmind._task_model import SubtaskStatus as S
from fleetmind.errors import GraphError
from fleetmind.orchestrator._graph import TaskGraph

IDS = [f"s{i}" for i in range(9)]
UNKNOWN = "ghost"
AGENTS = ["w1", "w2", "w3"]
INPUTS = ["x", "y", "z"]
ERROR = {"type": "SubtaskFailed", "message": "boom", "retryable": True, "details": {}}

outputs = st.one_of(
    st.none(),
    st.integers(-5, 5),
    st.sampled_from(["", "out", "ünï"]),
    st.dictionaries(st.sampled_from(["f", "g"]), st.integers(0, 9), max_size=2),
)

# Operation names, repeated to weigh how often each is drawn. Cancelling ends the task, so it
# is rare enough that most examples run for a while first.
OPERATIONS = (
    ["add_subtask"] * 16
    + ["add_dependency"] * 12
    + ["remove_dependency"] * 4
    + ["remove_subtask"] * 4
    + ["update_subtask"] * 3
    + ["start"] * 12
    + ["finish"] * 12
    + ["fail_ready"] * 2
    + ["progress", "retry"]
    + ["route"] * 2
    + ["reassign"] * 3
    + ["requeue"] * 3
    + ["cancel"]
)


def outcome(condition: Condition, source: S) -> str:
    """What a finished source means for its target (the documented semantics)."""
    match condition:
        case Condition.SUCCESS:
            if source is S.DONE:
                return "run"
            return "skipped" if source is S.SKIPPED else "failed"
        case Condition.ALWAYS:
            return "run"
        case Condition.FAILURE:
            return "run" if source is S.FAILED else "skipped"


def allows(condition: Condition, source: S) -> bool:
    return outcome(condition, source) == "run"


def settles(dep: Dependency, graph: TaskGraph, how: str | None = None) -> bool:
    """Whether ``dep``'s source has finished so that its target cannot run (``how``: as what)."""
    status = graph.state(dep.source).status
    if not status.is_terminal:
        return False
    result = outcome(dep.condition, status)
    return result != "run" if how is None else result == how


# Strategies are built once: building them on every draw costs more than the graph work.
_INDEX = st.integers(0, 255)
_COUNT = st.integers(0, 3)
_AT = st.integers(0, 100)
_BOOL = st.booleans()
_OPERATION = st.sampled_from(OPERATIONS)
_INPUTS_LITERAL = st.dictionaries(st.sampled_from(INPUTS), st.integers(), max_size=1)
DESCRIPTIONS = ["", "a", "b", "ünï"]


def choose(data: st.DataObject, pool: list[Any]) -> Any:
    """One element of ``pool`` (shrinks towards the first)."""
    return pool[data.draw(_INDEX) % len(pool)]


def pick(data: st.DataObject, options: list[str], unknown: bool = True) -> str:
    """One of ``options``, or now and then an id no subtask has."""
    if not options or (unknown and data.draw(_INDEX) % 8 == 7):
        return UNKNOWN
    return choose(data, options)


def draw_dependency(data: st.DataObject, source: str, target: str) -> Dependency:
    condition = choose(data, list(Condition))
    if data.draw(_BOOL):
        return Dependency(source=source, target=target, condition=condition)
    return Dependency(
        source=source,
        target=target,
        kind="data",
        condition=condition,
        output=choose(data, [None, "f"]),
        input=choose(data, INPUTS),
    )


def draw_entry(data: st.DataObject, graph: TaskGraph) -> LogEntry:
    ids = [s.id for s in graph]
    ready, running = graph.ready_ids(), graph.running_ids()
    op = data.draw(_OPERATION)
    at = float(data.draw(_AT))
    match op:
        case "add_subtask":
            unused = [i for i in IDS if i not in graph]
            new_id = choose(data, unused if unused and data.draw(_INDEX) % 4 else IDS)
            deps: list[Dependency] = []
            if ids:
                # Finished sources are rarer but matter most (they settle the new subtask).
                finished = [i for i in ids if graph.state(i).status.is_terminal]
                sources = [
                    choose(data, finished if finished and data.draw(_BOOL) else ids)
                    for _ in range(data.draw(_COUNT))
                ]
                deps = [draw_dependency(data, src, new_id) for src in sources if src != new_id]
            return AddSubtask(
                subtask=Subtask(id=new_id, description=choose(data, DESCRIPTIONS)),
                dependencies=tuple(deps),
                at=at,
            )
        case "add_dependency":
            source, target = pick(data, ids), pick(data, ids)
            if source == target:
                target = "ghost2"
            return AddDependency(dependency=draw_dependency(data, source, target), at=at)
        case "remove_dependency":
            existing = graph.dependencies
            if existing and data.draw(_BOOL):
                dep = choose(data, existing)
                return RemoveDependency(source=dep.source, target=dep.target, input=dep.input)
            return RemoveDependency(
                source=pick(data, ids),
                target=pick(data, ids),
                input=choose(data, [None, *INPUTS]),
            )
        case "remove_subtask":
            return RemoveSubtask(subtask_id=pick(data, ids), at=at)
        case "update_subtask":
            return UpdateSubtask(
                subtask=Subtask(
                    id=pick(data, ids),
                    description=choose(data, DESCRIPTIONS),
                    inputs=data.draw(_INPUTS_LITERAL),
                ),
                at=at,
            )
        case "start":
            return SubtaskStarted(
                subtask_id=pick(data, ready or ids, unknown=not ready),
                agent=choose(data, AGENTS),
                at=at,
            )
        case "finish":
            status = choose(data, ["done", "failed"])
            return SubtaskFinished(
                subtask_id=pick(data, running or ids, unknown=not running),
                status=status,
                output=data.draw(outputs),
                error=ERROR if status == "failed" else None,
                at=at,
            )
        case "fail_ready":
            return SubtaskFinished(
                subtask_id=pick(data, ready or ids), status="failed", error=ERROR, at=at
            )
        case "route":
            return SubtaskRouted(
                subtask_id=pick(data, ready or ids, unknown=not ready),
                candidates=({"agent": choose(data, AGENTS), "score": 0.5},),
                excluded={choose(data, AGENTS): "busy"},
                at=at,
            )
        case "progress":
            return SubtaskProgressed(
                subtask_id=pick(data, running or ids), message="m", fraction=0.5, at=at
            )
        case "retry":
            return SubtaskRetried(subtask_id=pick(data, running or ids), error=ERROR, delay_s=0.1)
        case "reassign":
            return SubtaskReassigned(
                subtask_id=pick(data, running or ids),
                agent=choose(data, AGENTS),
                error=ERROR,
                at=at,
            )
        case "requeue":
            return SubtaskRequeued(subtask_id=pick(data, running or ids), reason="died", at=at)
        case "cancel":
            return TaskCancelledEntry(reason=choose(data, ["", "stop"]), at=at)
    raise AssertionError(op)


def check_invariants(
    graph: TaskGraph, cancelled: bool, ready_before: set[str], drained: list[str]
) -> None:
    ids = [s.id for s in graph]
    assert len(set(ids)) == len(ids) == len(graph)

    dag = nx.DiGraph()
    dag.add_nodes_from(ids)
    for dep in graph.dependencies:
        assert dep.source in graph, dep
        assert dep.target in graph, dep
        assert dep.source != dep.target
        dag.add_edge(dep.source, dep.target)
    assert nx.is_directed_acyclic_graph(dag)
    order = graph.topological_order()
    assert sorted(order) == sorted(ids)
    for dep in graph.dependencies:
        assert order.index(dep.source) < order.index(dep.target)

    for sid in ids:
        state = graph.state(sid)
        incoming = graph.dependencies_of(sid)
        for dep in incoming:
            assert dep.target == sid
            assert dep in graph.dependents_of(dep.source)
        inputs = [d.input for d in incoming if d.input is not None]
        assert len(inputs) == len(set(inputs))
        if state.status.has_started:
            continue
        waiting = any(not graph.state(d.source).status.is_terminal for d in incoming)
        runnable = all(
            graph.state(d.source).status.is_terminal
            and allows(d.condition, graph.state(d.source).status)
            for d in incoming
        )
        assert (state.status is S.READY) == runnable, (sid, state.status, incoming)
        assert (state.status is S.PENDING) == waiting, (sid, state.status, incoming)
        assert not any(settles(d, graph) for d in incoming), (sid, incoming)

    for sid in ids:
        state = graph.state(sid)
        if state.status is S.SKIPPED:
            assert any(settles(d, graph, "skipped") for d in graph.dependencies_of(sid)), sid
        if state.error and state.error["type"] == "UpstreamFailed":
            assert state.status is S.FAILED
            assert any(settles(d, graph, "failed") for d in graph.dependencies_of(sid)), sid

    counts = graph.counts()
    assert sum(counts.values()) == len(graph)
    for status in S:
        assert counts[status.value] == sum(graph.state(i).status is status for i in ids)
    assert graph.ready_ids() == [i for i in ids if graph.state(i).status is S.READY]
    assert graph.running_ids() == [i for i in ids if graph.state(i).status is S.RUNNING]

    all_done = all(graph.state(i).status.is_terminal for i in ids)
    assert graph.is_finished == (all_done and (bool(ids) or cancelled)), graph.counts()
    if cancelled:
        expected = "cancelled"
    elif not graph.is_finished:
        expected = "running"
    elif counts["failed"]:
        expected = "failed"
    else:
        expected = "done"
    assert graph.status == expected

    assert len(drained) == len(set(drained))
    assert set(drained) <= set(graph.ready_ids())
    assert set(graph.ready_ids()) - ready_before <= set(drained)


def exercise(data: st.DataObject) -> None:
    graph = TaskGraph("prop")
    # A few independent subtasks to start from, so that some finish while the task goes on.
    for sid in IDS[: data.draw(st.integers(0, 4), label="seeded")]:
        graph.add_subtask(sid)
    cancelled = False
    applied = graph.version
    for _ in range(data.draw(st.integers(1, 50), label="steps")):
        entry = draw_entry(data, graph)
        before, version = graph.to_dict(), graph.version
        ready_before = set(graph.ready_ids())
        started = {s.id: s for s in graph if graph.state(s.id).status.has_started}
        finished = {
            s.id: graph.state(s.id).status for s in graph if graph.state(s.id).status.is_terminal
        }
        try:
            graph.apply(entry)
        except GraphError:
            assert graph.to_dict() == before
            assert graph.version == version
            if graph.is_finished:
                break  # it takes nothing more: the rest of the steps would all be refused
            continue
        applied += 1
        assert graph.version == version + 1
        assert graph.log[-1] is entry
        cancelled = cancelled or isinstance(entry, TaskCancelledEntry)
        # A running or finished subtask is never rewritten nor removed; a finished one stays so.
        for sid, spec in started.items():
            assert graph.subtask(sid) == spec
        for sid, status in finished.items():
            assert graph.state(sid).status is status
        check_invariants(graph, cancelled, ready_before, graph.drain_ready())

    assert graph.version == applied == len(graph.log)
    rebuilt = TaskGraph.from_log(graph.log, name=graph.name)
    assert rebuilt.to_dict() == graph.to_dict()
    assert rebuilt.ready_ids() == graph.ready_ids()

    wire = [log_entry_adapter.validate_json(entry.model_dump_json()) for entry in graph.log]
    assert wire == list(graph.log)
    assert TaskGraph.from_log(wire, name=graph.name).to_dict() == graph.to_dict()


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.data())
def test_random_entries_keep_the_graph_sound(data: st.DataObject) -> None:
    exercise(data)


def test_model_semantics_table() -> None:
    # The model above is what the properties are checked against; pin it to the docs.
    table: dict[tuple[str, str], bool] = {
        (c.value, s.value): allows(c, s)
        for c in Condition
        for s in (S.DONE, S.FAILED, S.SKIPPED, S.CANCELLED)
    }
    assert table == {
        ("success", "done"): True,
        ("success", "failed"): False,
        ("success", "skipped"): False,
        ("success", "cancelled"): False,
        ("always", "done"): True,
        ("always", "failed"): True,
        ("always", "skipped"): True,
        ("always", "cancelled"): True,
        ("failure", "done"): False,
        ("failure", "failed"): True,
        ("failure", "skipped"): False,
        ("failure", "cancelled"): False,
    }
