"""Checking what a planning model wrote, and turning it into a graph or graph edits.

Models answer with prose around the JSON, leave fields out, invent agents and inputs, write
cycles, or stop half way. Every such problem is found here — all of them, not just the first —
and written as a short line the model can act on in its next round. Nothing leaves this module
as a graph or an edit unless it passed every check; the engine would refuse an invalid edit
anyway, and a plan is never executed invalid.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import networkx as nx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fleetmind._task_log import (
    AddDependency,
    AddSubtask,
    GraphEdit,
    RemoveDependency,
    RemoveSubtask,
    SubtaskReplanned,
    UpdateSubtask,
)
from fleetmind._task_model import Dependency, DependencyKind, Subtask, SubtaskStatus
from fleetmind.agents import extract_json
from fleetmind.errors import ConfigError, FleetmindError, GraphError, NoCapableAgent
from fleetmind.orchestrator._fleet_view import FleetView
from fleetmind.orchestrator._graph import TaskGraph
from fleetmind.orchestrator._taskfile import data_reference, graph_from_entries

_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class PlannedSubtask(BaseModel):
    """One subtask as the planner writes it (the task-file form)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="short id: lowercase letters, digits, '-' or '_'")
    description: str = Field(min_length=1, description="what to do, in plain words")
    agent: str | None = Field(default=None, description="an agent id from the fleet, or omit")
    skill: str | None = Field(default=None, description="a skill from the fleet, or omit")
    inputs: dict[str, Any] = Field(
        default_factory=dict,
        description='literal values, or "${id}" / "${id.field}" for another subtask\'s output',
    )
    depends_on: list[str] = Field(
        default_factory=list, description="ids that must finish first (no data passed)"
    )


class PlanDraft(BaseModel):
    """A whole plan as the planner writes it."""

    model_config = ConfigDict(extra="forbid")

    name: str = "plan"
    subtasks: list[PlannedSubtask] = Field(min_length=1)


class Rewire(BaseModel):
    """New inputs for a subtask that has not started (a ``${id}`` input rewires its data)."""

    model_config = ConfigDict(extra="forbid")

    subtask: str
    inputs: dict[str, Any]


class EditDraft(BaseModel):
    """A replan as the planner writes it."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1)
    give_up: bool = False
    add: list[PlannedSubtask] = Field(default_factory=list)
    remove: list[str] = Field(default_factory=list)
    rewire: list[Rewire] = Field(default_factory=list)


def read_answer(text: str, truncated: bool) -> tuple[Any, list[str]]:
    """The JSON value of an answer, or the problems that prevent reading it."""
    cut_off = [
        "your answer was cut off at the token limit before the JSON ended; "
        "answer with a shorter plan"
    ]
    try:
        value = extract_json(text)
    except ValueError as exc:
        if truncated or "cut off" in str(exc):
            return None, cut_off
        return None, [f"{exc}; answer with one JSON object and nothing else"]
    if truncated:
        return None, cut_off  # whatever parsed is a piece of the answer, not the answer
    if not isinstance(value, dict):
        return None, ["the answer must be one JSON object, not a list or a value"]
    return value, []


def validation_problems(exc: ValidationError, data: Any) -> list[str]:
    """Every problem pydantic found, each located by subtask id where there is one."""
    problems = []
    for err in exc.errors():
        loc = list(err["loc"])
        where = ".".join(str(p) for p in loc)
        if len(loc) >= 2 and loc[0] in ("subtasks", "add") and isinstance(loc[1], int):
            entries = data.get(loc[0]) if isinstance(data, dict) else None
            entry = entries[loc[1]] if isinstance(entries, list) and loc[1] < len(entries) else {}
            label = (
                f"subtask {entry.get('id')!r}"
                if isinstance(entry, dict) and entry.get("id")
                else f"{loc[0]} entry {loc[1] + 1}"
            )
            where = ".".join([label, *(str(p) for p in loc[2:])])
        message = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "is not a field (fields: id, description, agent, skill, inputs, depends_on)"
        problems.append(f"{where}: {message}" if where else message)
    return problems


def check_subtasks(
    subtasks: Sequence[PlannedSubtask],
    view: FleetView,
    *,
    known_ids: Iterable[str] = (),
    max_subtasks: int | None = None,
) -> list[str]:
    """Problems with planned subtasks: ids, agents, skills, references, cycles, inputs.

    Args:
        subtasks: The planned subtasks.
        view: The fleet they will run on.
        known_ids: Ids of subtasks that exist already (a replan may refer to them).
        max_subtasks: The most subtasks a plan may have.
    """
    problems: list[str] = []
    existing = set(known_ids)
    ids = [s.id for s in subtasks]
    if max_subtasks is not None and len(subtasks) > max_subtasks:
        problems.append(
            f"the plan has {len(subtasks)} subtasks; the limit is {max_subtasks}: merge some"
        )
    for sid in sorted({i for i in ids if ids.count(i) > 1}):
        problems.append(f"subtask id {sid!r} is used more than once")
    for sid in ids:
        if not _ID.match(sid):
            problems.append(
                f"subtask id {sid!r} is not valid: use lowercase letters, digits, '-' or '_'"
            )
        elif sid in existing:
            problems.append(f"subtask id {sid!r} exists already; choose a new id")
    visible = set(ids) | existing
    skills = view.skills
    edges: list[tuple[str, str]] = []
    for s in subtasks:
        if s.agent is not None and s.agent not in view.agents:
            problems.append(
                f"subtask {s.id!r}: there is no agent {s.agent!r}"
                f"{_did_you_mean(s.agent, view.agents)}; use an agent id from the fleet, or "
                "leave agent out"
            )
        if s.skill is not None and s.skill.casefold() not in skills:
            problems.append(
                f"subtask {s.id!r}: no agent offers skill {s.skill!r}"
                f"{_did_you_mean(s.skill, skills)}; use a listed skill, or leave skill out and "
                "describe the work"
            )
        for name, value in s.inputs.items():
            ref = data_reference(value)
            if ref is None:
                continue
            source = ref[0] if ref[0] in visible else str(value)[2:-1]
            if source not in visible:
                problems.append(
                    f"subtask {s.id!r}: input {name!r} refers to unknown subtask {ref[0]!r}"
                    f"{_did_you_mean(ref[0], visible)}"
                )
            elif source == s.id:
                problems.append(f"subtask {s.id!r}: input {name!r} refers to the subtask itself")
            else:
                edges.append((source, s.id))
        for source in s.depends_on:
            if source not in visible:
                problems.append(
                    f"subtask {s.id!r}: depends_on names unknown subtask {source!r}"
                    f"{_did_you_mean(source, visible)}"
                )
            elif source == s.id:
                problems.append(f"subtask {s.id!r} cannot depend on itself")
            else:
                edges.append((source, s.id))
    dag = nx.DiGraph(edges)
    for cycle in list(nx.simple_cycles(dag))[:3]:
        problems.append(
            "the plan has a cycle: " + " -> ".join([*cycle, cycle[0]]) + "; remove one of these"
        )
    return problems


def check_placement(subtasks: Sequence[Subtask], graph: TaskGraph, view: FleetView) -> list[str]:
    """Problems placing subtasks of ``graph`` on the fleet: nobody can take one, or the agent
    that would take it needs an input the plan does not give it."""
    problems = []
    for subtask in subtasks:
        try:
            decision = view.route(subtask)
        except NoCapableAgent as exc:
            problems.append(f"subtask {subtask.id!r}: {exc.message}")
            continue
        agent = view.agents.get(decision.candidates[0]) if decision.candidates else None
        if agent is None:
            continue
        missing = set(agent.needs) - graph.supplied_inputs(subtask.id)
        if missing:
            problems.append(
                f"subtask {subtask.id!r} goes to agent {agent.id!r}, which needs input(s) "
                f"{', '.join(sorted(missing))}; give them in inputs"
            )
    return problems


def build_plan(
    value: Mapping[str, Any], view: FleetView, max_subtasks: int
) -> tuple[TaskGraph | None, PlanDraft | None, list[str]]:
    """A graph from a plan's JSON, or every problem that stands in the way."""
    try:
        draft = PlanDraft.model_validate(value)
    except ValidationError as exc:
        return None, None, validation_problems(exc, value)
    problems = check_subtasks(draft.subtasks, view, max_subtasks=max_subtasks)
    if problems:
        return None, draft, problems
    entries = [_entry(s) for s in draft.subtasks]
    try:
        graph = graph_from_entries(draft.name or "plan", entries)
    except ConfigError as exc:
        return None, draft, [exc.message]
    problems = check_placement(graph.subtasks, graph, view)
    return (None if problems else graph), draft, problems


def build_edits(
    value: Mapping[str, Any], graph: TaskGraph, failed_id: str, view: FleetView
) -> tuple[EditDraft | None, list[GraphEdit], list[str]]:
    """Graph edits from a replan's JSON, tried on a copy of ``graph``; or the problems."""
    try:
        draft = EditDraft.model_validate(value)
    except ValidationError as exc:
        return None, [], validation_problems(exc, value)
    if draft.give_up:
        return draft, [], []
    if not (draft.add or draft.remove or draft.rewire):
        return draft, [], ["the answer changes nothing: add, remove or rewire, or give_up"]
    problems = check_subtasks(draft.add, view, known_ids=[s.id for s in graph])
    if problems:
        return draft, [], problems
    edits: list[GraphEdit] = []
    added = {s.id for s in draft.add}
    for planned in _in_dependency_order(draft.add):
        spec, deps = _subtask_and_dependencies(planned, {*added, *(s.id for s in graph)})
        edits.append(AddSubtask(subtask=spec, dependencies=tuple(deps)))
    for rewire in draft.rewire:
        if rewire.subtask not in graph and rewire.subtask not in added:
            problems.append(f"rewire: there is no subtask {rewire.subtask!r}")
            continue
        edits.extend(_rewire_edits(rewire, graph, {*added, *(s.id for s in graph)}))
    edits.extend(RemoveSubtask(subtask_id=sid) for sid in draft.remove)
    if problems:
        return draft, [], problems
    trial = graph.copy()
    try:
        trial.apply(SubtaskReplanned(subtask_id=failed_id, outcome="edited"))
        for edit in edits:
            trial.apply(edit)
    except GraphError as exc:
        return draft, [], [f"the edit cannot be applied: {exc.message}"]
    if failed_id in trial:
        holding = [
            d.target
            for d in trial.dependents_of(failed_id)
            if not trial.state(d.target).status.has_started and d.condition.value == "success"
        ]
        if holding:
            problems.append(
                f"subtask(s) {', '.join(sorted(set(holding)))} still wait for the failed "
                f"subtask {failed_id!r} and would fail too: rewire or remove them"
            )
    changed = [
        trial.subtask(e.subtask.id) for e in edits if isinstance(e, AddSubtask | UpdateSubtask)
    ]
    problems.extend(check_placement(changed, trial, view))
    return draft, ([] if problems else edits), problems


def graph_summary(graph: TaskGraph) -> str:
    """The graph as the replanner sees it: one line per subtask with status, agent, inputs."""
    lines = []
    for subtask in graph:
        state = graph.state(subtask.id)
        status = state.status.value
        if state.status is SubtaskStatus.FAILED and state.error:
            status += f": {state.error.get('message', '')[:160]}"
        inputs = dict(subtask.inputs)
        for dep in graph.dependencies_of(subtask.id):
            if dep.kind is DependencyKind.DATA and dep.input:
                inputs[dep.input] = f"${{{dep.source}{'.' + dep.output if dep.output else ''}}}"
        after = [
            d.source for d in graph.dependencies_of(subtask.id) if d.kind is DependencyKind.CONTROL
        ]
        parts = [f"- {subtask.id} [{status}]"]
        if state.agent:
            parts.append(f" agent {state.agent}")
        parts.append(f": {subtask.description or '(no description)'}")
        if inputs:
            shown = ", ".join(f"{k}={_short(v)}" for k, v in inputs.items())
            parts.append(f"; inputs: {shown}")
        if after:
            parts.append(f"; after: {', '.join(after)}")
        lines.append("".join(parts))
    return "\n".join(lines)


def plan_entries(draft: PlanDraft) -> list[dict[str, Any]]:
    """The plan's subtasks as task-file entries (for ``fleetmind plan --out``)."""
    return [_entry(s) for s in draft.subtasks]


def _entry(planned: PlannedSubtask) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": planned.id, "description": planned.description}
    if planned.agent:
        entry["agent"] = planned.agent
    if planned.skill:
        entry["skill"] = planned.skill
    if planned.inputs:
        entry["inputs"] = dict(planned.inputs)
    if planned.depends_on:
        entry["depends_on"] = list(planned.depends_on)
    return entry


def _subtask_and_dependencies(
    planned: PlannedSubtask, ids: set[str]
) -> tuple[Subtask, list[Dependency]]:
    literal: dict[str, Any] = {}
    deps: list[Dependency] = []
    data_sources: set[str] = set()
    for name, value in planned.inputs.items():
        source, output = _resolve(value, ids)
        if source is None:
            literal[name] = value
            continue
        data_sources.add(source)
        deps.append(
            Dependency(
                source=source,
                target=planned.id,
                kind=DependencyKind.DATA,
                output=output,
                input=name,
            )
        )
    for source in planned.depends_on:
        if source not in data_sources:
            deps.append(Dependency(source=source, target=planned.id))
    spec = Subtask(
        id=planned.id,
        description=planned.description,
        agent=planned.agent,
        skill=planned.skill,
        inputs=literal,
    )
    return spec, deps


def _rewire_edits(rewire: Rewire, graph: TaskGraph, ids: set[str]) -> list[GraphEdit]:
    edits: list[GraphEdit] = []
    literal: dict[str, Any] = {}
    existing = (
        {d.input: d for d in graph.dependencies_of(rewire.subtask)}
        if rewire.subtask in graph
        else {}
    )
    for name, value in rewire.inputs.items():
        old = existing.get(name)
        if old is not None:
            edits.append(RemoveDependency(source=old.source, target=old.target, input=old.input))
        source, output = _resolve(value, ids)
        if source is None:
            literal[name] = value
        else:
            dep = Dependency(
                source=source,
                target=rewire.subtask,
                kind=DependencyKind.DATA,
                output=output,
                input=name,
            )
            edits.append(AddDependency(dependency=dep))
    if literal and rewire.subtask in graph:
        current = graph.subtask(rewire.subtask)
        spec = current.model_copy(update={"inputs": {**current.inputs, **literal}})
        edits.append(UpdateSubtask(subtask=spec))
    return edits


def _resolve(value: Any, ids: set[str]) -> tuple[str | None, str | None]:
    ref = data_reference(value)
    if ref is None:
        return None, None
    whole = str(value).strip()[2:-1].strip()
    if whole in ids:
        return whole, None
    return ref


def _in_dependency_order(subtasks: Sequence[PlannedSubtask]) -> list[PlannedSubtask]:
    by_id = {s.id: s for s in subtasks}
    dag: nx.DiGraph[str] = nx.DiGraph()
    dag.add_nodes_from(by_id)
    for s in subtasks:
        for value in s.inputs.values():
            ref = data_reference(value)
            if ref is not None and ref[0] in by_id:
                dag.add_edge(ref[0], s.id)
        for source in s.depends_on:
            if source in by_id:
                dag.add_edge(source, s.id)
    return [by_id[i] for i in nx.topological_sort(dag)]


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def first_problem(exc: FleetmindError) -> str:
    """An error as one line for the model."""
    return exc.message.splitlines()[0] if exc.message else type(exc).__name__
