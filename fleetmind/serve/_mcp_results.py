"""What the MCP server answers with: result models, and the fleet's state converted to them.

Pydantic models, so that MCP clients receive structured content with an output schema.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mcp.server.mcpserver.exceptions import (
    ToolError,
)
from pydantic import BaseModel, Field, ValidationError
from pydantic_core import to_jsonable_python

from fleetmind._validation import describe_validation_error
from fleetmind.agents import AgentProfile
from fleetmind.errors import FleetmindError
from fleetmind.orchestrator import (
    Dependency,
    Subtask,
    SubtaskStatus,
    TaskGraph,
)

_DEFINITION_KEYS = frozenset({"name", "subtasks", "dependencies"})
_TEXT_SUBTASK_ID = "request"
GRAPH_URI_TEMPLATE = "fleetmind://tasks/{task_id}/graph"
_ENDED = frozenset({"done", "failed", "cancelled"})


def has_ended(status: str) -> bool:
    """Whether a task with this status is over: not running, and not interrupted (which
    ``fleetmind resume`` continues)."""
    return status in _ENDED


def graph_uri(task_id: str) -> str:
    """The resource URI of a task's graph."""
    return GRAPH_URI_TEMPLATE.format(task_id=task_id)


# Results ------------------------------------------------------------------------------------
# Pydantic models, so that clients receive structured content with an output schema.


class SubtaskInfo(BaseModel):
    """One subtask of a task, as it stands."""

    id: str
    description: str
    status: str
    agent: str | None = None
    attempts: int = 0
    output: Any = None
    error: dict[str, Any] | None = None
    reason: str | None = None
    """Why it was skipped, cancelled, or failed without running."""
    progress: str | None = None
    """The latest progress message of a running subtask."""


class TaskState(BaseModel):
    """A task: its status and every subtask's status, agent, output and error."""

    task_id: str
    name: str
    status: str
    """running, interrupted, done, failed or cancelled."""
    finished: bool
    resumable: bool = False
    """Interrupted by its user: ``fleetmind resume <task_id>`` continues it."""
    counts: dict[str, int]
    """How many subtasks are in each status."""
    subtasks: list[SubtaskInfo]
    graph_uri: str


class TaskOutcome(BaseModel):
    """How a task ended (or that it has not ended yet): outputs and errors by subtask id."""

    task_id: str
    status: str
    finished: bool
    resumable: bool = False
    """Interrupted by its user: ``fleetmind resume <task_id>`` continues it."""
    outputs: dict[str, Any]
    errors: dict[str, dict[str, Any]]


class SkillInfo(BaseModel):
    """A skill an agent offers."""

    name: str
    description: str = ""
    tags: list[str] = Field(default_factory=list)


class AgentInfo(BaseModel):
    """An agent of the fleet, as routing sees it."""

    id: str
    name: str
    description: str
    skills: list[SkillInfo]
    tier: str


class AgentList(BaseModel):
    """Every agent of the fleet."""

    agents: list[AgentInfo]


# Conversions ---------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """Agent outputs may be any Python object: send what JSON can carry, else its repr."""
    return to_jsonable_python(value, fallback=repr)


def dumps_json(data: Mapping[str, Any]) -> str:
    return json.dumps(_jsonable(data), indent=2)


def task_state(task_id: str, status: str, graph: TaskGraph) -> TaskState:
    """The :class:`TaskState` of a graph."""
    subtasks = []
    for subtask in graph:
        st = graph.state(subtask.id)
        subtasks.append(
            SubtaskInfo(
                id=subtask.id,
                description=subtask.description,
                status=st.status.value,
                agent=st.agent,
                attempts=st.total_attempts,
                output=_jsonable(st.output),
                error=_jsonable(st.error),
                reason=st.reason or None,
                progress=(st.progress or None) if st.status is SubtaskStatus.RUNNING else None,
            )
        )
    return TaskState(
        task_id=task_id,
        name=graph.name,
        status=status,
        finished=has_ended(status),
        resumable=status == "interrupted",
        counts=graph.counts(),
        subtasks=subtasks,
        graph_uri=graph_uri(task_id),
    )


def task_outcome(task_id: str, status: str, graph: TaskGraph, *, finished: bool) -> TaskOutcome:
    """The :class:`TaskOutcome` of a graph."""
    outputs: dict[str, Any] = {}
    errors: dict[str, dict[str, Any]] = {}
    for subtask in graph:
        st = graph.state(subtask.id)
        if st.status is SubtaskStatus.DONE:
            outputs[subtask.id] = _jsonable(st.output)
        elif st.status is SubtaskStatus.FAILED and st.error:
            errors[subtask.id] = _jsonable(st.error)
    return TaskOutcome(
        task_id=task_id,
        status=status,
        finished=finished,
        resumable=status == "interrupted",
        outputs=outputs,
        errors=errors,
    )


def agent_info(profile: AgentProfile) -> AgentInfo:
    """The :class:`AgentInfo` of a profile."""
    return AgentInfo(
        id=profile.id,
        name=profile.display_name,
        description=profile.description,
        skills=[
            SkillInfo(name=s.name, description=s.description, tags=list(s.tags))
            for s in profile.skills
        ],
        tier=profile.tier.value,
    )


def build_graph(graph: Any, text: str | None) -> TaskGraph:
    """The graph a ``submit_task`` call describes, or a ``ToolError`` saying what is wrong."""
    if (graph is None) == (text is None):
        raise ToolError("give exactly one of `graph` (a task graph definition) or `text`")
    if text is not None:
        words = " ".join(text.split())
        if not words:
            raise ToolError("`text` is empty; say what the task is")
        built = TaskGraph(words if len(words) <= 60 else words[:59] + "…")
        built.add_subtask(Subtask(id=_TEXT_SUBTASK_ID, description=text.strip()))
        return built
    data: Any = graph
    if isinstance(graph, str):
        try:
            data = json.loads(graph)
        except json.JSONDecodeError as exc:
            raise ToolError(
                f"invalid task graph: not JSON ({exc.msg}, line {exc.lineno})"
            ) from None
    if not isinstance(data, dict):
        raise ToolError("invalid task graph: expected an object with a 'subtasks' list")
    unknown = sorted(set(data) - _DEFINITION_KEYS)
    if unknown:
        raise ToolError(
            f"invalid task graph: unknown field(s) {', '.join(unknown)}; "
            "expected name, subtasks, dependencies"
        )
    subtasks, dependencies = data.get("subtasks"), data.get("dependencies") or []
    if not isinstance(subtasks, list) or not subtasks:
        raise ToolError("invalid task graph: 'subtasks' must be a non-empty list")
    if not isinstance(dependencies, list):
        raise ToolError("invalid task graph: 'dependencies' must be a list")
    # Validated one by one first, so that the message can say which entry is wrong.
    for where, model, items in (
        ("subtasks", Subtask, subtasks),
        ("dependencies", Dependency, dependencies),
    ):
        for i, item in enumerate(items):
            try:
                model.model_validate(item)
            except ValidationError as exc:
                problem = describe_validation_error(exc, show_input=False, count_more=True)
                raise ToolError(f"invalid task graph: {where}[{i}]: {problem}") from None
    try:
        return TaskGraph.from_definition(data)
    except FleetmindError as exc:
        raise ToolError(f"invalid task graph: {exc.message}") from None
