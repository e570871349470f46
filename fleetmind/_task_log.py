"""Entries of a task graph's append-only log.

Everything that changes a task graph is one of these entries: structural edits (add or remove a
subtask or dependency, update a subtask that has not started) and run facts (a subtask started,
was retried, reassigned, finished; the task was cancelled). A graph's current state is the fold
of its log, so the log is what the store persists and what a resumed task replays. Statuses
that follow from others (ready, skipped, failed because a dependency failed) are not logged:
the fold derives them again.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from fleetmind._ids import AgentId, SubtaskId
from fleetmind._task_model import Condition, Dependency, DependencyKind, Subtask


class _Entry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    at: float = 0.0
    """Wall-clock time (Unix seconds) at which the entry was made; 0 when unknown."""


class AddSubtask(_Entry):
    """Add a subtask, optionally with the dependencies that lead into it."""

    kind: Literal["add_subtask"] = "add_subtask"
    subtask: Subtask
    dependencies: tuple[Dependency, ...] = ()


class RemoveSubtask(_Entry):
    """Remove a subtask that has not started, and the control dependencies around it."""

    kind: Literal["remove_subtask"] = "remove_subtask"
    subtask_id: SubtaskId


class UpdateSubtask(_Entry):
    """Replace the definition of a subtask that has not started."""

    kind: Literal["update_subtask"] = "update_subtask"
    subtask: Subtask


class AddDependency(_Entry):
    """Add a dependency whose target has not started."""

    kind: Literal["add_dependency"] = "add_dependency"
    dependency: Dependency


class RemoveDependency(_Entry):
    """Remove a dependency whose target has not started."""

    kind: Literal["remove_dependency"] = "remove_dependency"
    source: SubtaskId
    target: SubtaskId
    input: str | None = None


def add_subtask_edit(
    subtask: Subtask | str, depends_on: Iterable[str | Dependency] = (), **fields: Any
) -> AddSubtask:
    """The edit that adds a subtask (or one built from an id and fields) after its sources.

    ``depends_on`` takes source ids (control dependencies) or whole :class:`Dependency` objects.
    """
    spec = subtask if isinstance(subtask, Subtask) else Subtask(id=subtask, **fields)
    deps = tuple(
        d if isinstance(d, Dependency) else Dependency(source=d, target=spec.id) for d in depends_on
    )
    return AddSubtask(subtask=spec, dependencies=deps)


def add_dependency_edit(
    source: str,
    target: str,
    *,
    kind: DependencyKind | str = DependencyKind.CONTROL,
    condition: Condition | str = Condition.SUCCESS,
    output: str | None = None,
    input: str | None = None,
) -> AddDependency:
    """The edit that makes ``target`` wait for ``source`` (for ``kind="data"``, take its
    output; ``condition``: on which of the source's endings the target runs). The graph, a
    running task's handle and a subtask's context all add dependencies through this."""
    dependency = Dependency(
        source=source,
        target=target,
        kind=DependencyKind(kind),
        condition=Condition(condition),
        output=output,
        input=input,
    )
    return AddDependency(dependency=dependency)


def update_subtask_edit(current: Subtask, **changes: Any) -> UpdateSubtask:
    """The edit that changes fields of ``current`` (its id stays). The graph and a running
    task's handle both update subtasks through this."""
    spec = Subtask.model_validate({**current.model_dump(), **changes, "id": current.id})
    return UpdateSubtask(subtask=spec)


GraphEdit = Annotated[
    AddSubtask | RemoveSubtask | UpdateSubtask | AddDependency | RemoveDependency,
    Field(discriminator="kind"),
]
"""A structural change to a task graph, as a user, a file or an agent's result asks for it."""


class SubtaskStarted(_Entry):
    """An agent was given a ready subtask."""

    kind: Literal["subtask_started"] = "subtask_started"
    subtask_id: SubtaskId
    agent: AgentId


class SubtaskRouted(_Entry):
    """The router's decision for a subtask: ranked candidates with scores, and exclusions."""

    kind: Literal["subtask_routed"] = "subtask_routed"
    subtask_id: SubtaskId
    candidates: tuple[dict[str, Any], ...] = ()
    excluded: dict[str, str] = Field(default_factory=dict)
    review: dict[str, Any] | None = None
    """A language model's verdict on the candidates, when the fleet has a reviewer."""


class SubtaskProgressed(_Entry):
    """A running subtask reported progress (for an LLM agent: one step, with its record)."""

    kind: Literal["subtask_progress"] = "subtask_progress"
    subtask_id: SubtaskId
    message: str = ""
    fraction: float | None = None
    step: dict[str, Any] | None = None
    """An LLM step's record: model, tier, tokens, cost, latency, tool calls, outcome."""


class SubtaskRetried(_Entry):
    """An attempt failed and the same agent will try again after ``delay_s``."""

    kind: Literal["subtask_retried"] = "subtask_retried"
    subtask_id: SubtaskId
    error: dict[str, Any]
    delay_s: float


class SubtaskReassigned(_Entry):
    """An agent failed a subtask for good; it goes back to ready for the next candidate."""

    kind: Literal["subtask_reassigned"] = "subtask_reassigned"
    subtask_id: SubtaskId
    agent: AgentId
    error: dict[str, Any]


class SubtaskRequeued(_Entry):
    """A subtask that was running when its process died goes back to ready (resume)."""

    kind: Literal["subtask_requeued"] = "subtask_requeued"
    subtask_id: SubtaskId
    reason: str = ""


class SubtaskFinished(_Entry):
    """A subtask ended: done with an output, or failed with an error."""

    kind: Literal["subtask_finished"] = "subtask_finished"
    subtask_id: SubtaskId
    status: Literal["done", "failed"]
    output: Any = None
    error: dict[str, Any] | None = None


class SubtaskAnswered(_Entry):
    """A subtask that asked for input (it failed with ``InputRequired``) got its answer.

    It goes back to pending with the answer as its input ``input``, and so do the subtasks its
    failure had failed or skipped without running; subtasks that finished stay finished. The
    one entry that a finished graph takes: it reopens the task.

    ``message`` is the protocol message that answered (``IncomingMessage.to_json()``), when one
    did: the subtask's ``ctx.message`` from then on, its file parts its input ``<input>_files``.
    """

    kind: Literal["subtask_answered"] = "subtask_answered"
    subtask_id: SubtaskId
    answer: Any = None
    input: str = "reply"
    message: dict[str, Any] | None = None


class TaskPlanned(_Entry):
    """The graph was planned from a request in plain words; the planner's exchanges, for audit.

    Each exchange is one round: the model's answer, the validation errors sent back for
    repair (none in the last round of a valid plan), tokens and cost.
    """

    kind: Literal["task_planned"] = "task_planned"
    request: str
    model: str = ""
    rounds: int = 1
    exchanges: tuple[dict[str, Any], ...] = ()


class SubtaskReplanned(_Entry):
    """A subtask failed for good and the planner was asked for a graph edit.

    ``outcome`` is ``edited`` (the edits follow this entry in the log and the failed subtask
    no longer fails the task), ``gave_up`` (the planner saw no way round it) or ``failed`` (no
    valid edit within the planner's rounds, or the model could not be reached).
    """

    kind: Literal["subtask_replanned"] = "subtask_replanned"
    subtask_id: SubtaskId
    outcome: Literal["edited", "gave_up", "failed"]
    reason: str = ""
    edits: int = 0
    exchanges: tuple[dict[str, Any], ...] = ()


class TaskCancelledEntry(_Entry):
    """The task was cancelled: every subtask that has not finished is cancelled."""

    kind: Literal["task_cancelled"] = "task_cancelled"
    reason: str = ""


class TaskResumed(_Entry):
    """A stored task was taken up again after its process stopped (interrupted or crashed).

    ``stopped_at`` is when it stopped: the interruption, or after a crash the last entry made
    before it (0 when unknown). The time in between counts in no subtask's duration.
    """

    kind: Literal["task_resumed"] = "task_resumed"
    stopped_at: float = 0.0

    @property
    def down_s(self) -> float:
        """Seconds the task was stopped (0 when either time is unknown)."""
        return max(self.at - self.stopped_at, 0.0) if self.at and self.stopped_at else 0.0


LogEntry = Annotated[
    AddSubtask
    | RemoveSubtask
    | UpdateSubtask
    | AddDependency
    | RemoveDependency
    | SubtaskStarted
    | SubtaskRouted
    | SubtaskProgressed
    | SubtaskRetried
    | SubtaskReassigned
    | SubtaskRequeued
    | SubtaskFinished
    | SubtaskAnswered
    | TaskPlanned
    | SubtaskReplanned
    | TaskCancelledEntry
    | TaskResumed,
    Field(discriminator="kind"),
]
"""Any entry of a task graph's log."""

STRUCTURAL_KINDS = frozenset(
    {"add_subtask", "remove_subtask", "update_subtask", "add_dependency", "remove_dependency"}
)

log_entry_adapter: TypeAdapter[LogEntry] = TypeAdapter(LogEntry)
graph_edit_adapter: TypeAdapter[GraphEdit] = TypeAdapter(GraphEdit)
