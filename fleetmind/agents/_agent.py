"""The Agent interface, and the ``@agent`` decorator that turns a function into one.

An agent gets a subtask and a :class:`SubtaskContext` and returns its output (any
JSON-serialisable value), or a :class:`SubtaskResult` when it also wants to edit the task graph.
Local Python agents, LLM agents and remote agents (over MQTT or A2A) all share this interface,
so the engine never needs to know which kind it is talking to.
"""

from __future__ import annotations

import abc
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, overload

from pydantic import ValidationError

from fleetmind._task_log import (
    GraphEdit,
    add_dependency_edit,
    add_subtask_edit,
)
from fleetmind._task_model import Condition, Dependency, DependencyKind, Subtask
from fleetmind._validation import describe_validation_error
from fleetmind.agents._messages import ArtifactChunk, IncomingMessage, Part, Reply, parts_of
from fleetmind.agents._profile import AgentLimits, AgentProfile, Skill, Tier
from fleetmind.agents._steps import StepRecord
from fleetmind.errors import AgentError, MissingInput
from fleetmind.tools import ToolRegistry


class ProgressSink(Protocol):
    """Where an agent's progress reports go (the engine, or a remote runtime's publisher).

    ``step`` carries an LLM step's record (see :class:`StepRecord`) with the progress line.
    """

    def __call__(
        self, message: str, fraction: float | None, step: Mapping[str, Any] | None = None
    ) -> None: ...


ArtifactSink = Callable[[ArtifactChunk], None]
"""Where the chunks of an agent's streamed artifacts go (the engine, or a device's publisher)."""


TASK_KEY = "fleetmind_task"
"""The checkpoint metadata key naming the task a step loop belongs to (so the engine can
delete a finished task's checkpoints)."""


class CheckpointSource(Protocol):
    """Where LLM agents keep the checkpoints of their step loops (beside the task store).

    The engine hands one to every agent in its :class:`SubtaskContext`; an agent killed
    mid-loop finds its last finished step there when the task is resumed.
    """

    async def saver(self) -> Any:
        """A LangGraph checkpoint saver (``BaseCheckpointSaver``), opened on first use."""
        ...

    def thread(self, thread_id: str) -> None:
        """Note a thread the agent checkpoints, so it is deleted when the task has ended."""
        ...


@dataclass
class SubtaskContext:
    """What an agent knows about the subtask it is running, and how it talks back.

    ``inputs`` holds the subtask's literal inputs merged with the outputs of its data
    dependencies. Graph edits made through :meth:`add_subtask` and :meth:`add_dependency` are
    applied when the subtask finishes successfully, while the rest of the task keeps running.
    A task started from a protocol message shows it as :attr:`message`; an agent answers with a
    :class:`~fleetmind.agents.Reply` to choose its parts, streams with :meth:`stream_artifact`,
    and refuses the work with :class:`~fleetmind.errors.TaskRejected`.
    """

    task_id: str
    subtask: Subtask
    inputs: dict[str, Any]
    attempt: int = 1
    agent_id: str = ""
    _progress: ProgressSink | None = None
    edits: list[GraphEdit] = field(default_factory=list)
    tools: ToolRegistry = field(default_factory=ToolRegistry)
    """The fleet's tools (local ``@tool`` functions and MCP servers' tools) this agent may call."""
    checkpoints: CheckpointSource | None = None
    """Where step loops keep their checkpoints (None: nowhere durable, e.g. on a device)."""
    epoch: int = 1
    """Which attempt at the subtask this is, over its whole life (retries and other agents
    included): remote agents name their dispatches by it."""
    _after_saved: list[Callable[[], None]] = field(default_factory=list)
    memory: Any = None
    """The fleet's memory as this agent sees it (``fleetmind.memory.AgentMemory``: remember
    and recall in its own namespace and the shared one), or None when the fleet keeps none."""
    dependents: tuple[str, ...] = ()
    """Ids of the subtasks that wait for this one (known to local agents), so that an agent
    can wire a follow-up into a plan whose ids it did not choose."""
    message: IncomingMessage | None = None
    """The protocol message the task was started from (an A2A message: its ids, metadata and
    parts), or None for a task that was not started from one."""
    _artifacts: ArtifactSink | None = None
    _streaming: set[str] = field(default_factory=set)

    def progress(
        self,
        message: str,
        fraction: float | None = None,
        *,
        step: Mapping[str, Any] | None = None,
    ) -> None:
        """Report progress; it reaches every follower of the task's event stream.

        ``step`` is an LLM step's record as plain data (what :meth:`record_step` sends);
        remote agents pass on the records their device sent.
        """
        if self._progress is not None:
            if step is None:
                self._progress(message, fraction)
            else:
                self._progress(message, fraction, step)

    def stream_artifact(
        self,
        parts: Iterable[Part | str],
        *,
        artifact_id: str = "stream",
        name: str | None = None,
        last: bool = False,
        append: bool | None = None,
    ) -> None:
        """Send one chunk of an artifact while the agent works (A2A: an artifact update).

        The first chunk of ``artifact_id`` starts the artifact; later ones append to it until a
        chunk marked ``last``. Strings become text parts. Where nobody follows the task's
        events (a plain ``fleet.run``), chunks are dropped; the subtask's output is what stays.
        ``append`` overrides that reckoning, for agents that pass on chunks another one marked
        (a remote agent's: a chunk that does not append starts the artifact again).
        """
        chunk = ArtifactChunk(
            artifact_id=artifact_id,
            parts=parts_of(parts),
            name=name,
            append=artifact_id in self._streaming if append is None else append,
            last=last,
        )
        if last:
            self._streaming.discard(artifact_id)
        else:
            self._streaming.add(artifact_id)
        if self._artifacts is not None:
            self._artifacts(chunk)

    def after_saved(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once this attempt's outcome is written to the task's store (a
        remote agent acknowledges the device's answer only then, so a crash in between means
        the broker delivers the answer again)."""
        self._after_saved.append(callback)

    def record_step(self, record: StepRecord) -> None:
        """Record one LLM step: a progress event that carries the step's record, kept in the
        task's log (model, tokens, cost, latency, tool calls, outcome)."""
        self.progress(record.summary(), step=record.to_dict())

    def add_subtask(
        self,
        subtask: Subtask | str,
        *,
        depends_on: Iterable[str | Dependency] = (),
        **fields: Any,
    ) -> Subtask:
        """Ask for a follow-up subtask; it may depend on this or any other subtask."""
        edit = add_subtask_edit(subtask, depends_on, **fields)
        self.edits.append(edit)
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
        """Ask for a new dependency between subtasks that have not started."""
        edit = add_dependency_edit(
            source, target, kind=kind, condition=condition, output=output, input=input
        )
        self.edits.append(edit)
        return edit.dependency


@dataclass(frozen=True)
class SubtaskResult:
    """An agent's output together with the graph edits it asks for."""

    output: Any = None
    edits: tuple[GraphEdit, ...] = ()

    @classmethod
    def of(cls, raw: Any, ctx: SubtaskContext) -> SubtaskResult:
        """What an agent's ``run`` returned, with the edits it asked for through ``ctx``
        first (a plain output, or a result carrying edits of its own)."""
        if isinstance(raw, SubtaskResult):
            return cls(_plain(raw.output), (*ctx.edits, *raw.edits))
        return cls(_plain(raw), tuple(ctx.edits))


def _plain(output: Any) -> Any:
    """A :class:`Reply` is kept as its JSON, as the store and the wire to devices keep it, so
    that an output is the same live, resumed and sent back by a device."""
    return output.to_json() if isinstance(output, Reply) else output


class Agent(abc.ABC):
    """Base class of every agent.

    Subclass it, set ``profile`` (or pass one to ``__init__``) and implement :meth:`run`.
    """

    profile: AgentProfile

    def __init__(self, profile: AgentProfile | None = None) -> None:
        if profile is not None:
            self.profile = profile
        if not isinstance(getattr(self, "profile", None), AgentProfile):
            raise AgentError(f"{type(self).__name__} has no AgentProfile")

    @property
    def id(self) -> str:
        """The agent's id (from its profile)."""
        return self.profile.id

    @property
    def required_inputs(self) -> frozenset[str]:
        """Inputs the agent cannot run without; checked before a task starts."""
        return frozenset()

    @property
    def optional_inputs(self) -> frozenset[str]:
        """Inputs the agent reads when given (the planner shows them beside the required)."""
        return frozenset()

    def missing_inputs(self, subtask_id: str, supplied: Iterable[str]) -> MissingInput | None:
        """The error for a subtask given only ``supplied`` inputs when this agent requires
        more, or None. Checked before a task starts, before each dispatch and, for a function
        agent, on the machine where it runs."""
        required = self.required_inputs
        if not required:
            return None
        missing = required - set(supplied)
        if not missing:
            return None
        return MissingInput(
            f"subtask {subtask_id!r} is missing input(s) {', '.join(sorted(missing))} "
            f"required by agent {self.id!r}"
        )

    @property
    def online(self) -> bool:
        """Whether the agent can be reached now. A local agent always can; a remote one may be
        away for a while and back (its device rebooting): routers pass it over meanwhile."""
        return True

    @abc.abstractmethod
    async def run(self, subtask: Subtask, ctx: SubtaskContext) -> Any:
        """Do the subtask and return its output (or a :class:`SubtaskResult`)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.profile.id!r} v{self.profile.version}>"


AgentFunction = Callable[..., Awaitable[Any]]


class FunctionAgent(Agent):
    """An agent made from an async function; inputs are passed as keyword arguments.

    A parameter named ``ctx`` receives the :class:`SubtaskContext`; every other parameter is
    filled from the subtask's inputs by name. Parameters without defaults are required inputs.
    """

    def __init__(self, fn: AgentFunction, profile: AgentProfile) -> None:
        if not inspect.iscoroutinefunction(fn):
            raise AgentError(f"@agent needs an async function; {fn.__qualname__} is not")
        super().__init__(profile)
        self._fn = fn
        signature = inspect.signature(fn)
        positional_only = [
            n
            for n, p in signature.parameters.items()
            if p.kind is inspect.Parameter.POSITIONAL_ONLY
        ]
        if positional_only:
            raise AgentError(
                f"{fn.__qualname__}: inputs are passed by name; parameter(s) "
                f"{', '.join(positional_only)} cannot be positional-only"
            )
        self._takes_ctx = "ctx" in signature.parameters
        self._takes_any = any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()
        )
        self._params = {
            name: p
            for name, p in signature.parameters.items()
            if name != "ctx"
            and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        }
        self._required = frozenset(
            name for name, p in self._params.items() if p.default is inspect.Parameter.empty
        )

    @property
    def required_inputs(self) -> frozenset[str]:
        return self._required

    @property
    def optional_inputs(self) -> frozenset[str]:
        return frozenset(self._params) - self._required

    @property
    def function(self) -> AgentFunction:
        """The wrapped function."""
        return self._fn

    async def run(self, subtask: Subtask, ctx: SubtaskContext) -> Any:
        missing = self.missing_inputs(subtask.id, ctx.inputs)
        if missing is not None:
            raise missing
        if self._takes_any:
            kwargs = dict(ctx.inputs)
        else:
            kwargs = {k: v for k, v in ctx.inputs.items() if k in self._params}
        if self._takes_ctx:
            kwargs["ctx"] = ctx
        return await self._fn(**kwargs)

    async def __call__(self, **kwargs: Any) -> Any:
        """Call the wrapped function directly (handy in tests)."""
        return await self._fn(**kwargs)


@overload
def agent(fn: AgentFunction, /) -> FunctionAgent: ...
@overload
def agent(
    *,
    id: str | None = None,
    name: str = "",
    description: str | None = None,
    skills: Iterable[str | Skill | Mapping[str, Any]] = (),
    tier: Tier | str = Tier.DEVICE,
    cost_per_call: float = 0.0,
    typical_latency_s: float = 0.0,
    max_concurrency: int = 4,
    local_data: Iterable[str] = (),
    device: str | None = None,
    version: int = 1,
) -> Callable[[AgentFunction], FunctionAgent]: ...


def agent(
    fn: AgentFunction | None = None,
    /,
    *,
    id: str | None = None,
    name: str = "",
    description: str | None = None,
    skills: Iterable[str | Skill | Mapping[str, Any]] = (),
    tier: Tier | str = Tier.DEVICE,
    cost_per_call: float = 0.0,
    typical_latency_s: float = 0.0,
    max_concurrency: int = 4,
    local_data: Iterable[str] = (),
    device: str | None = None,
    version: int = 1,
) -> FunctionAgent | Callable[[AgentFunction], FunctionAgent]:
    """Turn an async function into an agent.

    The id defaults to the function's name (``_`` becomes ``-``), the description to its
    docstring. A skill given as a plain string is a skill of that name. ``device`` names the
    machine the agent runs on, for subtasks that require one (``constraints: {device: ...}``);
    served by ``fleetmind agent serve``, an agent takes its device's id instead.

    Example:
        >>> @agent(skills=["greeting"])
        ... async def greeter(name: str) -> str:
        ...     return f"hello {name}"
    """

    def wrap(func: AgentFunction) -> FunctionAgent:
        try:
            parsed_skills = tuple(_to_skill(s) for s in skills)
        except AgentError as exc:
            raise AgentError(f"agent {func.__qualname__}: {exc.message}") from exc.__cause__
        try:
            profile = AgentProfile(
                id=id or func.__name__.replace("_", "-"),
                name=name,
                description=description
                if description is not None
                else inspect.cleandoc(func.__doc__ or ""),
                skills=parsed_skills,
                tier=Tier(tier),
                cost_per_call=cost_per_call,
                typical_latency_s=typical_latency_s,
                limits=AgentLimits(max_concurrency=max_concurrency, local_data=tuple(local_data)),
                device=device,
                version=version,
            )
        except (ValidationError, ValueError) as exc:
            raise AgentError(f"agent {func.__qualname__}: {_first_error(exc)}") from exc
        return FunctionAgent(func, profile)

    return wrap(fn) if fn is not None else wrap


def _to_skill(value: str | Skill | Mapping[str, Any]) -> Skill:
    if isinstance(value, Skill):
        return value
    try:
        if isinstance(value, str):
            return Skill(name=value)
        return Skill.model_validate(value)
    except ValidationError as exc:
        raise AgentError(f"skill {value!r}: {_first_error(exc)}") from exc


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return describe_validation_error(exc, show_input=False)
    return str(exc)
