"""Task files: a task graph written in YAML or JSON, and the fleet that runs it.

```yaml
name: repo-audit
fleet: repo_audit.py            # Python file (relative to this file) or module[:attr]
params:                         # defaults; `fleetmind run --param path=...` overrides
  path: .
subtasks:
  - id: loc
    description: Count lines of code per language
    skill: code-metrics
    inputs: {path: "${params.path}"}
  - id: report
    agent: reporter
    depends_on: [largest]               # control dependency
    inputs:
      loc: ${loc}                        # data dependency: the whole output of `loc`
      todos: ${todos.items}              # data dependency: the field `items` of its output
```

An input value that is exactly ``${ID}`` or ``${ID.FIELD}`` names another subtask's output and
becomes a data dependency. ``${params.NAME}`` is replaced by a parameter, also inside longer
strings. ``depends_on`` entries are ids or ``{id, condition}`` mappings; the condition also
applies to data dependencies on that subtask. ``constraints`` take the keys the routers read:
``tier``, ``device``, ``data``, ``max_cost``, ``max_latency_s`` and ``weights``.

A mistake is reported in one line that names the file and the subtask by its position and id
(``task.yaml: subtask 2 (id 'report'): unknown key 'agnet' (did you mean 'agent'?)``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from fleetmind._suggest import did_you_mean
from fleetmind._task_model import Condition, Dependency, DependencyKind, RetryPolicy, Subtask
from fleetmind._validation import Location, describe_validation_error, format_location
from fleetmind.errors import ConfigError, FleetmindError
from fleetmind.orchestrator._graph import TaskGraph

_REF = re.compile(r"^\$\{\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*\}$")
_PARAM = re.compile(r"\$\{\s*params\.([A-Za-z_][A-Za-z0-9_]*)\s*\}")


class _DependsOn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    condition: Condition = Condition.SUCCESS


def _id_to_mapping(value: Any) -> Any:
    """``depends_on: [a]`` is short for ``depends_on: [{id: a}]``."""
    return {"id": value} if isinstance(value, str) else value


class _Constraints(BaseModel):
    """The constraint keys the routers read; their values are checked when the task is routed
    (they may still hold ``${params.NAME}`` here)."""

    model_config = ConfigDict(extra="forbid")
    tier: Any = None
    device: Any = None
    data: Any = None
    max_cost: Any = None
    max_latency_s: Any = None
    weights: Any = None


class _SubtaskEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    description: str = ""
    agent: str | None = None
    skill: str | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    depends_on: list[Annotated[_DependsOn, BeforeValidator(_id_to_mapping)]] = Field(
        default_factory=list
    )
    timeout_s: float | None = None
    retry: RetryPolicy | None = None
    constraints: _Constraints = Field(default_factory=_Constraints)


class _TaskFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = "task"
    description: str = ""
    fleet: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    subtasks: list[_SubtaskEntry] = Field(min_length=1)


@dataclass
class TaskFile:
    """A task file, read and checked: its graph, where its agents come from, its parameters."""

    path: Path
    graph: TaskGraph
    fleet_ref: str | None
    params: dict[str, Any] = field(default_factory=dict)


def read_task_file(path: str | Path, params: Mapping[str, Any] | None = None) -> TaskFile:
    """Read a YAML or JSON task file into a graph.

    Raises:
        ConfigError: the file is missing, unreadable, malformed, or describes an invalid graph
            (unknown subtask, cycle, unknown parameter); the message names the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"task file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read task file {path}: {exc}") from exc
    parsed = parse_task_text(text, path, params)
    return TaskFile(
        path=path.resolve(), graph=parsed.graph, fleet_ref=parsed.fleet_ref, params=parsed.params
    )


def parse_task_text(
    text: str, path: str | Path, params: Mapping[str, Any] | None = None
) -> TaskFile:
    """Read a task file's content, given as text, into a graph, as :func:`read_task_file` does.

    ``path`` is the file's name (``.json`` is read as JSON, anything else as YAML); messages
    name it as they would name the file. The returned ``path`` is that name as given.

    Raises:
        ConfigError: the content is malformed or describes an invalid graph.
    """
    path = Path(path)
    raw = _parse(path, text)
    spec = _validate(raw, prefix=f"{path}: ")
    merged = {**spec.params, **(params or {})}
    unknown = sorted(set(params or {}) - set(spec.params))
    if unknown:
        hint = did_you_mean(unknown[0], spec.params) if len(unknown) == 1 else ""
        raise ConfigError(
            f"{path}: unknown parameter(s) {', '.join(unknown)}{hint}; "
            f"the file declares: {', '.join(sorted(spec.params)) or 'none'}"
        )
    try:
        graph = _build_graph(spec, merged, raw)
    except FleetmindError as exc:
        raise ConfigError(f"{path}: {exc.message}") from exc
    except ValidationError as exc:  # a dependency the graph refuses (on itself, say)
        raise ConfigError(f"{path}: {describe_validation_error(exc, plain=True)}") from exc
    return TaskFile(path=path, graph=graph, fleet_ref=spec.fleet, params=merged)


def graph_from_entries(
    name: str, subtasks: Sequence[Mapping[str, Any]], params: Mapping[str, Any] | None = None
) -> TaskGraph:
    """A graph from subtask entries written as in a task file (``${id}`` data references,
    ``depends_on``), as the planner writes them.

    Raises:
        ConfigError: an entry is invalid or the graph would be (the first problem found).
    """
    raw = {"name": name, "subtasks": list(subtasks)}
    spec = _validate(raw)
    try:
        return _build_graph(spec, dict(params or {}), raw)
    except FleetmindError as exc:
        raise ConfigError(exc.message) from exc
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, plain=True)) from exc


def data_reference(value: Any) -> tuple[str, str | None] | None:
    """``("loc", None)`` for ``"${loc}"``, ``("loc", "total")`` for ``"${loc.total}"``, else None.

    ``${params.x}`` is a parameter, not a reference. A dotted name is read as one id when the
    caller knows such an id; :func:`graph_from_entries` decides that with the subtasks' ids.
    """
    match = _REF.match(value) if isinstance(value, str) else None
    if match is None or match.group(1).startswith("params."):
        return None
    source, _, field_name = match.group(1).partition(".")
    return source, field_name or None


def _parse(path: Path, text: str) -> Any:
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{exc.lineno}: malformed JSON: {exc.msg}") from exc
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f":{mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(f"{path}{where}: malformed YAML: {problem}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a task file must be a mapping with a 'subtasks' list")
    return data


def _validate(raw: Mapping[str, Any], *, prefix: str = "") -> _TaskFile:
    """The task file's structure checked, its first problem told in the file's own terms."""
    try:
        return _TaskFile.model_validate(raw)
    except ValidationError as exc:
        problem = describe_validation_error(
            exc, plain=True, model=_TaskFile, where=lambda loc: _where(loc, raw)
        )
        raise ConfigError(f"{prefix}{problem}") from exc


def _where(loc: Location, raw: Mapping[str, Any]) -> str:
    """``subtask 2 (id 'report')``, then the place inside it, for a location in a task file."""
    if len(loc) < 2 or loc[0] != "subtasks" or not isinstance(loc[1], int):
        return format_location(loc)
    label = _subtask_label(loc[1], raw)
    inside = format_location(loc[2:])
    return f"{label}: {inside}" if inside else label


def _inside(index: int, raw: Mapping[str, Any]) -> Callable[[Location], str]:
    """Names a location inside the subtask at ``index`` (for errors of the built subtask)."""
    return lambda loc: _where(("subtasks", index, *loc), raw)


def _subtask_label(index: int, raw: Mapping[str, Any]) -> str:
    entries = raw.get("subtasks")
    entry = entries[index] if isinstance(entries, list) and index < len(entries) else None
    subtask_id = entry.get("id") if isinstance(entry, dict) else None
    if isinstance(subtask_id, str):
        return f"subtask {index + 1} (id {subtask_id!r})"
    return f"subtask {index + 1}"


def _substitute(value: Any, params: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        whole = _PARAM.fullmatch(value.strip())
        if whole:
            return _param(whole.group(1), params)
        return _PARAM.sub(lambda m: str(_param(m.group(1), params)), value)
    if isinstance(value, list):
        return [_substitute(v, params) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, params) for k, v in value.items()}
    return value


def _param(name: str, params: Mapping[str, Any]) -> Any:
    if name not in params:
        raise ConfigError(f"unknown parameter ${{params.{name}}}{did_you_mean(name, params)}")
    return params[name]


def _build_graph(spec: _TaskFile, params: Mapping[str, Any], raw: Mapping[str, Any]) -> TaskGraph:
    graph = TaskGraph(spec.name)
    ids = {entry.id for entry in spec.subtasks}
    dependencies: list[Dependency] = []
    for index, entry in enumerate(spec.subtasks):
        conditions: dict[str, Condition] = {}
        for dep in entry.depends_on:
            source, condition = dep.id, dep.condition
            if source not in ids:
                raise ConfigError(
                    f"subtask {entry.id!r} depends on unknown subtask {source!r}"
                    f"{did_you_mean(source, ids)}"
                )
            conditions[source] = condition
        literal: dict[str, Any] = {}
        data_sources: set[str] = set()
        for name, value in entry.inputs.items():
            ref = _REF.match(value) if isinstance(value, str) else None
            if ref is None or ref.group(1).startswith("params."):
                literal[name] = _substitute(value, params)
                continue
            name_ref = ref.group(1)
            source, _, output = (name_ref, "", "") if name_ref in ids else name_ref.partition(".")
            if source not in ids:
                raise ConfigError(
                    f"input {name!r} of subtask {entry.id!r} refers to unknown subtask {source!r}"
                    f"{did_you_mean(source, ids)}"
                )
            data_sources.add(source)
            dependencies.append(
                Dependency(
                    source=source,
                    target=entry.id,
                    kind=DependencyKind.DATA,
                    condition=conditions.get(source, Condition.SUCCESS),
                    output=output or None,
                    input=name,
                )
            )
        for source, condition in conditions.items():
            if source not in data_sources:
                dependencies.append(Dependency(source=source, target=entry.id, condition=condition))
        fields: dict[str, Any] = {
            "id": entry.id,
            "description": entry.description,
            "agent": entry.agent,
            "skill": entry.skill,
            "inputs": literal,
            "timeout_s": entry.timeout_s,
            "constraints": _substitute(entry.constraints.model_dump(exclude_unset=True), params),
        }
        if entry.retry is not None:
            fields["retry"] = entry.retry
        try:
            graph.add_subtask(Subtask(**fields))
        except ValidationError as exc:
            problem = describe_validation_error(exc, plain=True, where=_inside(index, raw))
            raise ConfigError(problem) from exc
    for dependency in dependencies:
        graph.add_dependency(
            dependency.source,
            dependency.target,
            kind=dependency.kind,
            condition=dependency.condition,
            output=dependency.output,
            input=dependency.input,
        )
    return graph
