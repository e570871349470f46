"""TaskGraph: the mutable DAG of subtasks that a task is.

The graph is pure: it validates and applies log entries, keeps every entry in an append-only
log, and derives what follows from them (which subtasks are ready, which are skipped or failed
because a dependency did not go their way). It does no I/O and knows no clock, so the engine,
the store and the tests can all drive it the same way, and replaying a log rebuilds the graph
exactly.

Invariants, checked on every entry:
- the graph stays acyclic;
- a subtask that is running or finished is never rewritten, removed, or given new dependencies;
- every dependency joins two subtasks that exist (no dangling references);
- once every subtask has finished, the task is over and takes no more entries.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, assert_never

import networkx as nx
from pydantic import ValidationError

from fleetmind._task_log import (
    AddDependency,
    AddSubtask,
    LogEntry,
    RemoveDependency,
    RemoveSubtask,
    SubtaskAnswered,
    SubtaskFinished,
    SubtaskProgressed,
    SubtaskReassigned,
    SubtaskReplanned,
    SubtaskRequeued,
    SubtaskRetried,
    SubtaskRouted,
    SubtaskStarted,
    TaskCancelledEntry,
    TaskPlanned,
    TaskResumed,
    UpdateSubtask,
    add_dependency_edit,
    add_subtask_edit,
    update_subtask_edit,
)
from fleetmind._task_model import (
    Condition,
    Dependency,
    DependencyKind,
    Subtask,
    SubtaskStatus,
)
from fleetmind._validation import describe_validation_error
from fleetmind.agents import IncomingMessage, part_to_json
from fleetmind.errors import CycleError, GraphError, MalformedMessage
from fleetmind.orchestrator._subtask_state import SubtaskState

_S = SubtaskStatus
_STATUS_NAMES = tuple(status.value for status in SubtaskStatus)


@dataclass(frozen=True, slots=True)
class DerivedChange:
    """A status that followed from an entry without being logged itself."""

    subtask_id: str
    status: SubtaskStatus
    reason: str = ""


class TaskGraph:
    """A mutable, validated DAG of subtasks with an append-only log of every change.

    Build one in code with :meth:`add_subtask` / :meth:`add_dependency` (or
    :meth:`from_definition` from a task file), hand it to a :class:`~fleetmind.Fleet`, and edit
    it while it runs. ``TaskGraph.from_log(graph.log)`` rebuilds an equal graph.
    """

    def __init__(self, name: str = "task") -> None:
        self.name = name
        self._specs: dict[str, Subtask] = {}
        self._state: dict[str, SubtaskState] = {}
        self._deps_in: dict[str, dict[tuple[str, str, str], Dependency]] = {}
        self._deps_out: dict[str, dict[tuple[str, str, str], Dependency]] = {}
        self._waiting_on: dict[str, int] = {}
        # networkx mirror of the dependencies, for cycle checks, topological order and the
        # critical path. Built on first use, so copies made to run a graph do not pay for it.
        self._dag: nx.DiGraph[str] | None = None
        self._log: list[LogEntry] = []
        self._open = 0
        self._cancelled = False
        self._newly_ready: list[str] = []
        self._answered_by: dict[str, IncomingMessage] = {}
        self.request: str | None = None
        """The request in plain words this graph was planned from, if it was."""

    # ----------------------------------------------------------------------------------------
    # Building
    # ----------------------------------------------------------------------------------------

    def add_subtask(
        self,
        subtask: Subtask | str,
        *,
        depends_on: Iterable[str | Dependency] = (),
        **fields: Any,
    ) -> Subtask:
        """Add a subtask (or build one from an id and fields) with control/data dependencies.

        ``depends_on`` takes source ids (control dependencies) or full :class:`Dependency`
        objects whose target is this subtask.
        """
        edit = add_subtask_edit(subtask, depends_on, **fields)
        self.apply(edit)
        return edit.subtask

    def add_dependency(
        self,
        source: str,
        target: str,
        *,
        kind: DependencyKind | str = DependencyKind.CONTROL,
        condition: Condition | str = Condition.SUCCESS,
        output: str | None = None,
        input: str | None = None,
    ) -> Dependency:
        """Make ``target`` wait for ``source`` (and, for ``kind="data"``, take its output)."""
        edit = add_dependency_edit(
            source, target, kind=kind, condition=condition, output=output, input=input
        )
        self.apply(edit)
        return edit.dependency

    def remove_subtask(self, subtask_id: str) -> None:
        """Remove a subtask that has not started."""
        self.apply(RemoveSubtask(subtask_id=subtask_id))

    def remove_dependency(self, source: str, target: str, *, input: str | None = None) -> None:
        """Remove the dependency ``source -> target`` (the data one feeding ``input``)."""
        self.apply(RemoveDependency(source=source, target=target, input=input))

    def update_subtask(self, subtask_id: str, **changes: Any) -> Subtask:
        """Change fields of a subtask that has not started."""
        edit = update_subtask_edit(self.subtask(subtask_id), **changes)
        self.apply(edit)
        return edit.subtask

    # ----------------------------------------------------------------------------------------
    # The fold
    # ----------------------------------------------------------------------------------------

    def apply(self, entry: LogEntry) -> list[DerivedChange]:
        """Validate ``entry``, apply it, append it to the log, and return what followed.

        Raises:
            GraphError: the entry would break an invariant; the graph is left unchanged.
        """
        if self.is_finished and self._log and not isinstance(entry, SubtaskAnswered):
            raise GraphError(f"task graph {self.name!r} has finished; it takes no more changes")
        changes: list[DerivedChange] = []
        match entry:
            case AddSubtask():
                self._add_subtask(entry, changes)
            case RemoveSubtask():
                self._remove_subtask(entry.subtask_id)
            case UpdateSubtask():
                self._update_subtask(entry.subtask)
            case AddDependency():
                self._check_dependency(entry.dependency)
                self._link(entry.dependency, changes)
            case RemoveDependency():
                self._remove_dependency(entry)
            case SubtaskStarted():
                state = self._expect(entry.subtask_id, (_S.READY,), "start")
                state.status = _S.RUNNING
                state.agent = entry.agent
                state.attempts = 1
                state.total_attempts += 1
                state.started_at = state.started_at or entry.at or None
            case SubtaskRouted():
                state = self._expect(entry.subtask_id, (_S.READY,), "route")
                state.routing = {"candidates": list(entry.candidates), "excluded": entry.excluded}
            case SubtaskProgressed():
                state = self._expect(entry.subtask_id, (_S.RUNNING,), "report progress for")
                state.progress = entry.message
                state.fraction = entry.fraction
                if entry.step is not None:
                    state.count_step(entry.step)
            case SubtaskRetried():
                state = self._expect(entry.subtask_id, (_S.RUNNING,), "retry")
                state.attempts += 1
                state.total_attempts += 1
                state.error = entry.error
            case SubtaskReassigned():
                state = self._expect(entry.subtask_id, (_S.RUNNING,), "reassign")
                if entry.agent not in state.excluded_agents:
                    state.excluded_agents.append(entry.agent)
                state.error = entry.error
                self._make_ready(entry.subtask_id, state)
            case SubtaskRequeued():
                state = self._expect(entry.subtask_id, (_S.RUNNING,), "requeue")
                self._make_ready(entry.subtask_id, state)
            case SubtaskFinished():
                allowed = (_S.RUNNING,) if entry.status == "done" else (_S.RUNNING, _S.READY)
                state = self._expect(entry.subtask_id, allowed, "finish")
                state.output = entry.output
                state.error = entry.error
                state.finished_at = entry.at or None
                self._finish(entry.subtask_id, _S(entry.status), changes)
            case SubtaskAnswered():
                self._answer(entry, changes)
            case TaskPlanned():
                self.request = entry.request
            case SubtaskReplanned():
                state = self._expect(entry.subtask_id, (_S.RUNNING, _S.READY), "replan")
                state.replanned = entry.outcome
            case TaskCancelledEntry():
                self._cancel(entry.reason or "task cancelled", changes)
            case TaskResumed():
                for state in self._state.values():  # the downtime is no subtask's work
                    if entry.down_s and state.started_at and not state.status.is_terminal:
                        state.paused_s += max(entry.at - max(entry.stopped_at, state.started_at), 0)
            case _:
                assert_never(entry)
        self._log.append(entry)
        return changes

    def _add_subtask(self, entry: AddSubtask, changes: list[DerivedChange]) -> None:
        spec = entry.subtask
        if spec.id in self._specs:
            raise GraphError(f"subtask {spec.id!r} already exists")
        for dep in entry.dependencies:
            if dep.target != spec.id:
                raise GraphError(
                    f"dependency {dep.source!r} -> {dep.target!r} given with subtask "
                    f"{spec.id!r} must lead into it"
                )
            if dep.source not in self._specs:
                raise GraphError(f"subtask {spec.id!r} depends on unknown subtask {dep.source!r}")
        keys = [dep.key for dep in entry.dependencies]
        if len(set(keys)) != len(keys):
            raise GraphError(f"subtask {spec.id!r} lists the same dependency twice")
        _check_unique_inputs(entry.dependencies)
        self._specs[spec.id] = spec
        self._state[spec.id] = SubtaskState()
        self._deps_in[spec.id] = {}
        self._deps_out[spec.id] = {}
        self._waiting_on[spec.id] = 0
        if self._dag is not None:
            self._dag.add_node(spec.id)
        self._open += 1
        for dep in entry.dependencies:
            self._link(dep, changes)
        if self._state[spec.id].status is _S.PENDING and self._waiting_on[spec.id] == 0:
            self._make_ready(spec.id, self._state[spec.id])

    def _remove_subtask(self, subtask_id: str) -> None:
        state = self._expect(subtask_id, (_S.PENDING, _S.READY), "remove")
        for dep in self._deps_out[subtask_id].values():
            if dep.kind is DependencyKind.DATA:
                raise GraphError(
                    f"cannot remove subtask {subtask_id!r}: {dep.target!r} takes its output as "
                    f"input {dep.input!r}; remove that dependency first"
                )
        for dep in list(self._deps_in[subtask_id].values()):
            self._unlink(dep)
        for dep in list(self._deps_out[subtask_id].values()):
            self._unlink(dep)
        del self._specs[subtask_id], self._state[subtask_id], self._waiting_on[subtask_id]
        self._answered_by.pop(subtask_id, None)
        del self._deps_in[subtask_id], self._deps_out[subtask_id]
        if self._dag is not None:
            self._dag.remove_node(subtask_id)
        if not state.status.is_terminal:
            self._open -= 1

    def _update_subtask(self, spec: Subtask) -> None:
        self._expect(spec.id, (_S.PENDING, _S.READY), "update")
        self._specs[spec.id] = spec

    def _check_dependency(self, dep: Dependency) -> None:
        for end in (dep.source, dep.target):
            if end not in self._specs:
                raise GraphError(
                    f"dependency {dep.source!r} -> {dep.target!r} names unknown subtask {end!r}"
                )
        self._expect(dep.target, (_S.PENDING, _S.READY), "add a dependency to")
        if dep.key in self._deps_in[dep.target]:
            raise GraphError(f"dependency {dep.source!r} -> {dep.target!r} already exists")
        _check_unique_inputs((*self._deps_in[dep.target].values(), dep))
        dag = self._networkx()
        if nx.has_path(dag, dep.target, dep.source):
            cycle = nx.shortest_path(dag, dep.target, dep.source)
            raise CycleError(
                f"dependency {dep.source!r} -> {dep.target!r} would close a cycle: "
                + " -> ".join([*cycle, dep.target])
            )

    def _link(self, dep: Dependency, changes: list[DerivedChange]) -> None:
        target_state = self._state[dep.target]
        self._deps_in[dep.target][dep.key] = dep
        self._deps_out[dep.source][dep.key] = dep
        if self._dag is not None:
            self._dag.add_edge(dep.source, dep.target)
        source_status = self._state[dep.source].status
        if target_state.status.is_terminal:
            return  # an earlier dependency of the same new subtask already settled it
        if not source_status.is_terminal:
            self._waiting_on[dep.target] += 1
            if target_state.status is _S.READY:
                target_state.status = _S.PENDING
            return
        verdict = _verdict(dep, source_status)
        if verdict is not None:
            self._finish_without_running(dep.target, verdict[0], verdict[1], changes)

    def _unlink(self, dep: Dependency) -> None:
        del self._deps_in[dep.target][dep.key]
        del self._deps_out[dep.source][dep.key]
        if self._dag is not None and not any(
            d.source == dep.source for d in self._deps_in[dep.target].values()
        ):
            self._dag.remove_edge(dep.source, dep.target)
        if not self._state[dep.source].status.is_terminal:
            self._waiting_on[dep.target] -= 1
            target_state = self._state[dep.target]
            if target_state.status is _S.PENDING and self._waiting_on[dep.target] == 0:
                self._make_ready(dep.target, target_state)

    def _remove_dependency(self, entry: RemoveDependency) -> None:
        key = (entry.source, entry.target, entry.input or "")
        if entry.target not in self._specs or key not in self._deps_in[entry.target]:
            raise GraphError(f"no dependency {entry.source!r} -> {entry.target!r} to remove")
        self._expect(entry.target, (_S.PENDING, _S.READY), "remove a dependency of")
        self._unlink(self._deps_in[entry.target][key])

    def _make_ready(self, subtask_id: str, state: SubtaskState) -> None:
        state.status = _S.READY
        self._newly_ready.append(subtask_id)

    def _finish(self, subtask_id: str, status: SubtaskStatus, changes: list[DerivedChange]) -> None:
        """Mark a subtask terminal and settle every dependent it was holding back."""
        self._state[subtask_id].status = status
        self._open -= 1
        for dep in self._deps_out[subtask_id].values():
            target_state = self._state[dep.target]
            if target_state.status.has_started:
                continue
            self._waiting_on[dep.target] -= 1
            verdict = _verdict(dep, status)
            if verdict is not None:
                self._finish_without_running(dep.target, verdict[0], verdict[1], changes)
            elif self._waiting_on[dep.target] == 0 and target_state.status is _S.PENDING:
                self._make_ready(dep.target, target_state)

    def _finish_without_running(
        self,
        subtask_id: str,
        status: SubtaskStatus,
        reason: str,
        changes: list[DerivedChange],
    ) -> None:
        state = self._state[subtask_id]
        state.reason = reason
        if status is _S.FAILED:
            state.error = {
                "type": "UpstreamFailed",
                "message": reason,
                "retryable": False,
                "details": {},
            }
        changes.append(DerivedChange(subtask_id, status, reason))
        self._finish(subtask_id, status, changes)

    def _answer(self, entry: SubtaskAnswered, changes: list[DerivedChange]) -> None:
        """Reopen a subtask that asked for input, with the answer among its inputs, and the
        subtasks its failure settled without running; each is then settled again by its
        dependencies as they stand (ready, waiting, or skipped for another reason)."""
        state = self._expect(entry.subtask_id, (_S.FAILED,), "answer")
        if self._cancelled or (state.error or {}).get("type") != "InputRequired":
            raise GraphError(f"subtask {entry.subtask_id!r} is not waiting for input")
        spec = self._specs[entry.subtask_id]
        inputs = {**spec.inputs, entry.input: entry.answer}
        if self._answered_by.pop(entry.subtask_id, None) is not None:
            inputs.pop(f"{entry.input}_files", None)  # an earlier answer's files
        if entry.message is not None:
            try:
                message = IncomingMessage.from_json(entry.message)
            except MalformedMessage as exc:
                raise GraphError(f"the answer to {entry.subtask_id!r}: {exc.message}") from None
            self._answered_by[entry.subtask_id] = message
            if message.files:  # as the first message's file parts arrive as input "files"
                inputs[f"{entry.input}_files"] = [part_to_json(p) for p in message.files]
        self._specs[entry.subtask_id] = spec.model_copy(update={"inputs": inputs})
        reopened, frontier = {entry.subtask_id}, [entry.subtask_id]
        while frontier:
            for dep in self._deps_out[frontier.pop()].values():
                target = self._state[dep.target]
                if dep.target not in reopened and target.reason and not target.total_attempts:
                    reopened.add(dep.target)  # failed or skipped without running
                    frontier.append(dep.target)
        for sid in reopened:
            self._state[sid] = self._state[sid].reopened()
            self._open += 1
        for sid in reopened:
            deps = self._deps_in[sid].values()
            self._waiting_on[sid] = sum(not self._state[d.source].status.is_terminal for d in deps)
        for sid in nx.topological_sort(self._networkx().subgraph(reopened)):
            verdicts = [
                _verdict(d, self._state[d.source].status)
                for d in self._deps_in[sid].values()
                if self._state[d.source].status.is_terminal
            ]
            settled = next((v for v in verdicts if v is not None), None)
            if settled is not None:
                self._finish_without_running(sid, settled[0], settled[1], changes)
            elif self._waiting_on[sid] == 0:
                self._make_ready(sid, self._state[sid])

    def _cancel(self, reason: str, changes: list[DerivedChange]) -> None:
        self._cancelled = True
        for subtask_id, state in self._state.items():
            if not state.status.is_terminal:
                state.status = _S.CANCELLED
                state.reason = reason
                self._open -= 1
                changes.append(DerivedChange(subtask_id, _S.CANCELLED, reason))

    def _expect(
        self, subtask_id: str, allowed: Sequence[SubtaskStatus], action: str
    ) -> SubtaskState:
        state = self._state.get(subtask_id)
        if state is None:
            raise GraphError(f"cannot {action} unknown subtask {subtask_id!r}")
        if state.status not in allowed:
            raise GraphError(f"cannot {action} subtask {subtask_id!r}: it is {state.status}")
        return state

    # ----------------------------------------------------------------------------------------
    # Reading
    # ----------------------------------------------------------------------------------------

    @property
    def log(self) -> tuple[LogEntry, ...]:
        """Every entry applied so far, oldest first."""
        return tuple(self._log)

    @property
    def version(self) -> int:
        """How many entries have been applied: the graph's version."""
        return len(self._log)

    @property
    def is_finished(self) -> bool:
        """Whether every subtask has finished (or the task was cancelled)."""
        return self._open == 0 and bool(self._specs or self._cancelled)

    @property
    def status(self) -> str:
        """The task's status: running, done, failed (some subtask failed) or cancelled."""
        if self._cancelled:
            return "cancelled"
        if not self.is_finished:
            return "running"
        if any(s.status is _S.FAILED and s.replanned != "edited" for s in self._state.values()):
            return "failed"
        return "done"

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, subtask_id: object) -> bool:
        return subtask_id in self._specs

    def __iter__(self) -> Iterator[Subtask]:
        return iter(self._specs.values())

    def answered_by(self, subtask_id: str) -> IncomingMessage | None:
        """The message that answered the subtask's latest question, if a message did (the
        subtask's ``ctx.message`` from then on)."""
        return self._answered_by.get(subtask_id)

    def subtask(self, subtask_id: str) -> Subtask:
        """The definition of one subtask."""
        try:
            return self._specs[subtask_id]
        except KeyError:
            raise GraphError(f"unknown subtask {subtask_id!r}") from None

    def state(self, subtask_id: str) -> SubtaskState:
        """What has happened to one subtask so far."""
        try:
            return self._state[subtask_id]
        except KeyError:
            raise GraphError(f"unknown subtask {subtask_id!r}") from None

    @property
    def subtasks(self) -> list[Subtask]:
        """Every subtask, in the order they were added."""
        return list(self._specs.values())

    @property
    def dependencies(self) -> list[Dependency]:
        """Every dependency, grouped by target in the order targets were added."""
        return [dep for deps in self._deps_in.values() for dep in deps.values()]

    def dependencies_of(self, subtask_id: str) -> list[Dependency]:
        """The dependencies leading into one subtask."""
        return list(self._deps_in[subtask_id].values())

    def dependents_of(self, subtask_id: str) -> list[Dependency]:
        """The dependencies leading out of one subtask."""
        return list(self._deps_out[subtask_id].values())

    def drain_ready(self) -> list[str]:
        """Subtasks that became ready since the last call and are still ready."""
        ready, self._newly_ready = self._newly_ready, []
        return [
            sid
            for sid in dict.fromkeys(ready)
            if sid in self._state and self._state[sid].status is _S.READY
        ]

    def ready_ids(self) -> list[str]:
        """Every subtask that is ready now."""
        return [sid for sid, st in self._state.items() if st.status is _S.READY]

    def running_ids(self) -> list[str]:
        """Every subtask that is running now."""
        return [sid for sid, st in self._state.items() if st.status is _S.RUNNING]

    def resolve_inputs(self, subtask_id: str) -> dict[str, Any]:
        """The subtask's literal inputs with the outputs its data dependencies carry.

        Raises:
            GraphError: a data dependency names an output field the source did not produce.
        """
        inputs = dict(self._specs[subtask_id].inputs)
        for dep in self._deps_in[subtask_id].values():
            if dep.kind is not DependencyKind.DATA:
                continue
            source = self._state[dep.source]
            if source.status is not _S.DONE:
                continue
            value = source.output
            if dep.output is not None:
                if not isinstance(value, Mapping) or dep.output not in value:
                    raise GraphError(
                        f"output of subtask {dep.source!r} has no field {dep.output!r} "
                        f"for input {dep.input!r} of {subtask_id!r}"
                    )
                value = value[dep.output]
            assert dep.input is not None
            inputs[dep.input] = value
        return inputs

    def supplied_inputs(self, subtask_id: str) -> set[str]:
        """Names of the inputs a subtask has or will get (literal or through a dependency)."""
        names = set(self._specs[subtask_id].inputs)
        names.update(d.input for d in self._deps_in[subtask_id].values() if d.input is not None)
        return names

    def topological_order(self) -> list[str]:
        """Subtask ids so that every dependency's source comes before its target."""
        return list(nx.topological_sort(self._networkx()))

    def critical_path(self, durations: Mapping[str, float]) -> tuple[float, list[str]]:
        """The longest chain of dependent subtasks, given how long each takes.

        Returns:
            The chain's total duration and its subtask ids, first to last.
        """
        finish: dict[str, float] = {}
        previous: dict[str, str | None] = {}
        dag = self._networkx()
        for sid in nx.topological_sort(dag):
            best_pred = max(dag.predecessors(sid), key=finish.__getitem__, default=None)
            start = finish[best_pred] if best_pred is not None else 0.0
            finish[sid] = start + float(durations.get(sid, 0.0))
            previous[sid] = best_pred
        if not finish:
            return 0.0, []
        last = max(finish, key=finish.__getitem__)
        total = finish[last]
        end: str | None = last
        path: list[str] = []
        while end is not None:
            path.append(end)
            end = previous[end]
        return total, path[::-1]

    def counts(self) -> dict[str, int]:
        """How many subtasks are in each status."""
        counts = dict.fromkeys(_STATUS_NAMES, 0)
        for state in self._state.values():
            counts[state.status] += 1
        return counts

    def _networkx(self) -> nx.DiGraph[str]:
        if self._dag is None:
            dag: nx.DiGraph[str] = nx.DiGraph()
            dag.add_nodes_from(self._specs)
            dag.add_edges_from((d.source, d.target) for d in self.dependencies)
            self._dag = dag
        return self._dag

    # ----------------------------------------------------------------------------------------
    # Round trips
    # ----------------------------------------------------------------------------------------

    def check_edits(self, edits: Iterable[LogEntry], *, first: LogEntry | None = None) -> None:
        """Raise ``GraphError`` unless every one of ``edits`` applies, in order (after
        ``first``), so that a batch is applied all or nothing. Tried on a copy: this graph is
        not touched."""
        trial = self.copy()
        if first is not None:
            trial.apply(first)
        for edit in edits:
            trial.apply(edit)

    def copy(self) -> TaskGraph:
        """An independent graph equal to this one (same log), made without replaying the log."""
        other = TaskGraph(self.name)
        other._specs = dict(self._specs)
        other._state = {sid: st.copy() for sid, st in self._state.items()}
        other._deps_in = {sid: dict(deps) for sid, deps in self._deps_in.items()}
        other._deps_out = {sid: dict(deps) for sid, deps in self._deps_out.items()}
        other._waiting_on = dict(self._waiting_on)
        other._dag = None
        other._log = list(self._log)
        other._open = self._open
        other._cancelled = self._cancelled
        other._newly_ready = list(self._newly_ready)
        other._answered_by = dict(self._answered_by)
        other.request = self.request
        return other

    @classmethod
    def from_log(cls, entries: Iterable[LogEntry], name: str = "task") -> TaskGraph:
        """Rebuild a graph by replaying its log."""
        graph = cls(name)
        for entry in entries:
            graph.apply(entry)
        graph._newly_ready = [sid for sid in graph._newly_ready if sid in graph._state]
        return graph

    @classmethod
    def from_definition(cls, data: Mapping[str, Any]) -> TaskGraph:
        """Build a graph from ``{"name", "subtasks": [...], "dependencies": [...]}``.

        Subtasks may be given in any order; dependencies are linked once all subtasks exist.

        Raises:
            GraphError: The definition is not a valid graph; the message names the first
                problem (definitions also arrive over the wire, from MCP, A2A and MQTT).
        """
        if not isinstance(data, Mapping):
            raise GraphError("a task graph definition must be an object with a 'subtasks' list")
        subtasks, dependencies = data.get("subtasks") or (), data.get("dependencies") or ()
        if not isinstance(subtasks, list | tuple) or not isinstance(dependencies, list | tuple):
            raise GraphError("'subtasks' and 'dependencies' of a task graph must be lists")
        graph = cls(str(data.get("name") or "task"))
        for n, raw in enumerate(subtasks):
            try:
                subtask = Subtask.model_validate(raw)
            except ValidationError as exc:
                raise GraphError(f"subtasks[{n}]: {_first_problem(exc)}") from None
            graph.apply(AddSubtask(subtask=subtask))
        for n, raw in enumerate(dependencies):
            try:
                dependency = Dependency.model_validate(raw)
            except ValidationError as exc:
                raise GraphError(f"dependencies[{n}]: {_first_problem(exc)}") from None
            graph.apply(AddDependency(dependency=dependency))
        return graph

    def to_definition(self) -> dict[str, Any]:
        """The graph's structure as plain data (what :meth:`from_definition` reads)."""
        return {
            "name": self.name,
            "subtasks": [s.model_dump(mode="json", exclude_defaults=True) for s in self],
            "dependencies": [
                d.model_dump(mode="json", exclude_defaults=True) for d in self.dependencies
            ],
        }

    def to_dict(self) -> dict[str, Any]:
        """Structure and current state, for ``fleetmind show --format json`` and APIs."""
        data = self.to_definition()
        data["version"] = self.version
        data["status"] = self.status
        if self.request is not None:
            data["request"] = self.request
        data["state"] = {
            sid: {
                "status": st.status.value,
                "agent": st.agent,
                "attempts": st.total_attempts,
                "duration_s": st.duration_s,
                "error": st.error,
                "reason": st.reason or None,
                "output": st.output,
                "routing": st.routing,
                "steps": st.steps,
                "tokens": st.tokens,
                "cost": st.cost,
                "cloud_steps": st.cloud_steps,
                "all_cloud_cost": st.cloud_cost,
                "replanned": st.replanned,
            }
            for sid, st in self._state.items()
        }
        return data


def _verdict(dep: Dependency, source_status: SubtaskStatus) -> tuple[SubtaskStatus, str] | None:
    """What a finished source means for its target: None (may run) or a terminal status."""
    match dep.condition:
        case Condition.ALWAYS:
            return None
        case Condition.SUCCESS:
            if source_status is _S.DONE:
                return None
            if source_status is _S.SKIPPED:
                return _S.SKIPPED, f"dependency {dep.source!r} was skipped"
            return _S.FAILED, f"dependency {dep.source!r} {source_status.value}"
        case Condition.FAILURE:
            if source_status is _S.FAILED:
                return None
            return _S.SKIPPED, f"runs only if {dep.source!r} fails; it {source_status.value}"
        case _:
            assert_never(dep.condition)


def _check_unique_inputs(deps: Iterable[Dependency]) -> None:
    seen: dict[str, str] = {}
    for dep in deps:
        if dep.input is None:
            continue
        if dep.input in seen:
            raise GraphError(
                f"input {dep.input!r} of subtask {dep.target!r} is fed by both "
                f"{seen[dep.input]!r} and {dep.source!r}"
            )
        seen[dep.input] = dep.source


def _first_problem(exc: ValidationError) -> str:
    """The first problem pydantic found, as ``field: message``."""
    return describe_validation_error(exc, show_input=False)
