"""Every error fleetmind raises, as one tree.

```
FleetmindError
├── ConfigError              a config file, task file or CLI argument is wrong
│   ├── ModelNotConfigured   plain words need a model, and none is configured
│   ├── MissingExtra         an optional part is not installed (names the extra to install)
│   ├── ModelAssemblyError   a packaged embedding model is missing, damaged or cannot be unpacked
│   ├── StepRouterFileError  a step router file cannot be read
│   ├── OutcomeFileError     a file of model outcomes cannot be used
│   └── MemoryStoreError     a memory operation cannot be done (bad item, unknown id, bad file)
│       └── ItemTooLarge     an item over the size limit
├── GraphError               an edit would break the task graph (cycle, dangling id, ...)
│   └── CycleError
├── AgentError               an agent or profile is defined wrongly (duplicate id, bad signature)
├── StoreError               the durable store cannot be read or written
│   ├── TaskNotFound
│   ├── LeaseLost            another replica took the task over: this one may not write it
│   └── StoreUnavailable     the store's server stayed out of reach (a write's outcome unknown)
├── FleetStateError          a Fleet or handle is used in the wrong state (not started, closed)
│   └── NotWaitingForInput   a task was answered that asks no question
├── MemoryUnavailable        a device cannot reach the fleet's memory now (offline, no answer)
├── MemoryRefused            the orchestrator refused a device's memory request
├── MemoryAccessDenied       a device asked for memory it may not use (or the fleet has none)
├── RunError                 something went wrong while a subtask ran
│   ├── SubtaskFailed        an agent gave up (``retryable``: would another try help?)
│   │   ├── InputRequired    the agent needs more input from whoever asked (not retried)
│   │   ├── TaskRejected     the agent refuses the work itself (not retried nor reassigned)
│   │   ├── AgentLost        the agent's device went away mid-work (the work goes elsewhere)
│   │   └── BudgetExhausted  an LLM agent used up its step, token or cost budget
│   ├── SubtaskTimeout       an attempt ran past its timeout
│   ├── MissingInput         a subtask lacks an input its agent requires
│   ├── UpstreamFailed       a dependency the subtask needed did not succeed
│   ├── NoCapableAgent       no registered agent can take the subtask
│   ├── TaskCancelled        the task was cancelled by its user
│   ├── PlanningError        the planner found no valid plan (or edit) within its rounds
│   └── ModelError           a language model could not be reached or answered badly
│       ├── ModelUnavailable     connection refused, timed out, 5xx (after retries)
│       ├── ModelRateLimited     429 after retries, or a Retry-After beyond the limit
│       ├── ModelRejected        the request was refused (4xx): bad request, bad key
│       ├── ModelResponseInvalid not JSON, no choices, a stream cut off mid-way
│       └── StructuredOutputError an answer never matched the schema asked for
└── ProtocolError            a message crossing a wire is malformed or breaks its protocol
    ├── ServiceUnreachable   a broker or server cannot be reached (refused, unknown host, silent)
    ├── MalformedMessage     not JSON, or not a valid envelope or payload
    ├── MessageTooLarge      over the size limit
    ├── UnsupportedVersion   an envelope version this process does not speak
    ├── UnknownKind          a message kind this process does not know
    └── MCPAuthError         authorizing with an MCP server failed (OAuth)
        ├── MCPAuthorizationRequired  authorization is needed and nobody is at a terminal
        └── MCPAuthorizationDenied    the authorization server refused
```

User mistakes (``ConfigError``, ``GraphError``, ``AgentError``, ``TaskNotFound``) and services
that cannot be reached (``ServiceUnreachable``) are reported by the CLI as one line with exit
code 2. Errors that cross a process boundary travel as
``{type, message, retryable, details}`` (see :meth:`FleetmindError.to_dict`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar


class FleetmindError(Exception):
    """Root of every error fleetmind raises on purpose."""

    retryable: bool = False
    blames_agent: ClassVar[bool] = True
    """Whether the agent that raised it is to blame: another agent may do better, and routing
    learns from it. False for what no agent could fix (a missing input, a failed dependency)."""
    agent_may_return: ClassVar[bool] = False
    """Whether the agent may come back (its device went away): the subtask may wait for it."""
    replan_may_help: ClassVar[bool] = True
    """Whether a new plan may get past a subtask that failed for good with it. False for a
    question for the user, a failure inherited from a dependency (the dependency's own failure
    is what gets replanned), a broken graph edit and a cancellation."""
    type_name: str = ""
    """The original type's name, for an error rebuilt from another process's report of an
    exception fleetmind has no class for (a device's ``ValueError``)."""

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        """The error as it travels in a log entry or over a wire."""
        return {
            "type": self.type_name or type(self).__name__,
            "message": self.message,
            "retryable": self.retryable,
            "details": self.details,
        }


class ConfigError(FleetmindError):
    """A config file, task file or command-line argument is wrong."""


class GraphError(FleetmindError):
    """An edit would break an invariant of the task graph."""

    blames_agent = False
    replan_may_help = False


class CycleError(GraphError):
    """An edit would make the task graph cyclic."""


class AgentError(FleetmindError):
    """An agent or its profile is defined wrongly."""


class StoreError(FleetmindError):
    """The durable store cannot be read or written."""


class TaskNotFound(StoreError):
    """No task with the given id is in the store."""


class LeaseLost(StoreError):
    """This replica no longer owns the task: another claimed it (a later lease epoch), so its
    writes are refused and it must stop driving the task."""


class StoreUnavailable(StoreError):
    """The store's server stayed out of reach for longer than the store waits for it.

    The outcome of the operation is unknown: a write may have been committed just before the
    connection was lost. Epoch fencing and version checks keep a write that landed harmless
    (trying it again finds it stored, another replica's later epoch refuses a stale one).
    """


class FleetStateError(FleetmindError):
    """A fleet, engine or handle was used in a state that does not allow it."""


class NotWaitingForInput(FleetStateError):
    """A task was answered that is not waiting for input: it runs, it ended for another
    reason than a question, or the answer is for a subtask that asked nothing."""


class RunError(FleetmindError):
    """Something went wrong while a subtask ran."""


class SubtaskFailed(RunError):
    """An agent gave up on a subtask.

    Raise it from an agent with ``retryable=False`` to skip the remaining retries (the engine
    then goes straight to the next candidate agent).
    """

    def __init__(
        self, message: str, *, retryable: bool = True, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message, details=details)
        self.retryable = retryable


class InputRequired(SubtaskFailed):
    """An agent cannot go on without more input from whoever asked for the work.

    Raise it from an agent with the question to ask. It is not retried (asking again gives the
    same answer); servers that can hold a conversation, such as the A2A server, turn it into
    their protocol's "input required" state and run the work again with the reply.
    """

    replan_may_help = False

    def __init__(self, question: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(
            question, retryable=False, details={**(details or {}), "question": question}
        )

    @property
    def question(self) -> str:
        """What the agent asks (kept in ``details`` so it survives a trip over the wire)."""
        return str(self.details.get("question", self.message))


class TaskRejected(SubtaskFailed):
    """An agent refuses the work itself: it will not do it, and no other agent is asked.

    Raise it from an agent with the reason. It is neither retried nor given to another agent;
    protocol servers report it as such (A2A: the task's state is ``rejected``).
    """

    blames_agent = False
    replan_may_help = False

    def __init__(self, reason: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(reason, retryable=False, details=details)


class SubtaskTimeout(RunError):
    """One attempt at a subtask ran past its timeout."""

    retryable = True


class MissingInput(RunError):
    """A subtask lacks an input that its agent requires."""

    blames_agent = False


class UpstreamFailed(RunError):
    """A dependency that a subtask needed did not succeed."""

    blames_agent = False
    replan_may_help = False


class NoCapableAgent(RunError):
    """No registered agent can take a subtask."""


class TaskCancelled(RunError):
    """The task was cancelled by its user."""

    replan_may_help = False


class AgentLost(SubtaskFailed):
    """The device an agent runs on went away while the agent worked: another agent may do the
    subtask, or the same one once its device is back (not retried on it meanwhile)."""

    agent_may_return = True

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, retryable=False, details=details)


class BudgetExhausted(SubtaskFailed):
    """An LLM agent used up its step, token or cost budget before it had an answer.

    Not retried on the same agent: the same budget would run out the same way.
    """

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, retryable=False, details=details)


class PlanningError(RunError):
    """The planner could not produce a valid plan (or graph edit) within its repair rounds."""


class ModelNotConfigured(ConfigError):
    """Plain words were given where a model is needed to plan them, and none is configured."""


class MissingExtra(ConfigError, ImportError):
    """A feature needs an optional dependency that is not installed.

    The message names the extra that installs it (``pip install 'fleetmind[orchestrator]'``).
    It is also an ``ImportError``, so code that probes for an optional part keeps working.
    """

    def __init__(self, feature: str, extra: str, reason: str) -> None:
        super().__init__(
            f"{feature} needs the '{extra}' extra ({reason}): pip install 'fleetmind[{extra}]'",
            details={"feature": feature, "extra": extra, "reason": reason},
        )

    @property
    def extra(self) -> str:
        """The extra to install (kept in ``details`` so it survives a trip over the wire)."""
        return str(self.details.get("extra", ""))


class ModelAssemblyError(ConfigError):
    """A packaged model is missing, damaged or cannot be unpacked."""


class StepRouterFileError(ConfigError):
    """A step router file that cannot be read (missing, not JSON, or not a router)."""


class OutcomeFileError(ConfigError):
    """A file of model outcomes that cannot be used (missing, no prompt column, no models)."""


class MemoryStoreError(ConfigError):
    """A memory operation that cannot be done (bad item, unknown id, unreadable file): the
    caller's input is at fault, so the command line reports it in one line."""


class ItemTooLarge(MemoryStoreError):
    """An item over the size limit."""


class MemoryUnavailable(FleetmindError):
    """The fleet's memory cannot be reached from this device now (offline, or no answer)."""


class MemoryRefused(FleetmindError):
    """The orchestrator refused the request (not this device's agent, too large, no memory)."""


class MemoryAccessDenied(FleetmindError):
    """A device asked for memory it may not use (or the fleet has none)."""


class ModelError(RunError):
    """A language model endpoint could not be reached, refused the request, or answered badly.

    ``retryable`` says whether asking again (later, or another agent) may help.
    """

    def __init__(
        self, message: str, *, retryable: bool = True, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message, details=details)
        self.retryable = retryable


class ModelUnavailable(ModelError):
    """The endpoint refused the connection, timed out, or kept answering 5xx."""


class ModelRateLimited(ModelError):
    """The endpoint kept answering 429, or asked to wait longer than allowed."""


class ModelRejected(ModelError):
    """The endpoint refused the request itself (4xx): a bad request, model or API key."""

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, retryable=False, details=details)


class ModelResponseInvalid(ModelError):
    """The answer was not what the API promises: not JSON, no choices, a stream cut off."""


class StructuredOutputError(ModelError):
    """A model's answers never matched the schema they were asked for, after repair rounds."""

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, retryable=False, details=details)


class ProtocolError(FleetmindError):
    """A message crossing a wire is malformed or breaks its protocol."""


class ServiceUnreachable(ProtocolError):
    """A broker or server cannot be reached: the connection was refused, the host is unknown,
    or it did not answer within the connect timeout. The message names where and why."""


class MalformedMessage(ProtocolError):
    """A message is not JSON, or not a valid envelope or payload."""


class MessageTooLarge(ProtocolError):
    """A message is over the size limit."""


class UnsupportedVersion(ProtocolError):
    """A message's envelope version is one this process does not speak."""


class UnknownKind(ProtocolError):
    """A message's kind is one this process does not know."""


class MCPAuthError(ProtocolError):
    """Authorizing fleetmind with an MCP server failed; the message says why and what to do."""


class MCPAuthorizationRequired(MCPAuthError):
    """The server needs authorization and nobody is at a terminal to give it."""


class MCPAuthorizationDenied(MCPAuthError):
    """The authorization server refused: the user said no, or the request was not allowed."""


_DETERMINISTIC = (
    ValueError,
    TypeError,
    LookupError,
    AttributeError,
    NotImplementedError,
    AssertionError,
)
"""Exceptions that come back the same on every try: a bug or bad data, not bad luck."""


def error_outcome(exc: BaseException, *, timeout_message: str | None = None) -> dict[str, Any]:
    """What an exception raised by an agent means for its subtask, as it is logged and sent:
    ``{type, message, retryable, details}``.

    The one rule used wherever work runs — the engine, a device's runtime, the fleet link:
    a fleetmind error says itself whether another try may help; a timeout may (it becomes a
    :class:`SubtaskTimeout`, told with ``timeout_message`` when the caller knows more);
    ``ValueError``, ``TypeError``, ``LookupError``, ``AttributeError``, ``NotImplementedError``
    and assertion failures will not (the same input fails the same way); any other exception (a
    dropped connection, a full disk, ``RuntimeError``) may.
    """
    if isinstance(exc, FleetmindError):
        return exc.to_dict()
    if isinstance(exc, TimeoutError):
        return SubtaskTimeout(timeout_message or str(exc) or "attempt timed out").to_dict()
    message = str(exc) or type(exc).__name__
    return {
        "type": type(exc).__name__,
        "message": message,
        "retryable": not isinstance(exc, _DETERMINISTIC),
        "details": {},
    }


def error_from_dict(data: dict[str, Any]) -> FleetmindError:
    """Rebuild an error that was stored or sent with :meth:`FleetmindError.to_dict`."""
    name = str(data.get("type") or "RunError")
    cls = _ERRORS_BY_NAME.get(name, RunError)
    err = cls.__new__(cls)
    details = data.get("details")
    FleetmindError.__init__(
        err, str(data.get("message", "")), details=details if isinstance(details, dict) else {}
    )
    err.retryable = bool(data.get("retryable", False))
    if name not in _ERRORS_BY_NAME:
        err.type_name = name[:100]
    return err


def error_type(error: Mapping[str, Any] | BaseException) -> type[FleetmindError]:
    """The fleetmind class of an error, raised here or reported as ``{type, ...}`` (an error
    fleetmind has no class for, such as a device's ``ValueError``, counts as a ``RunError``)."""
    if isinstance(error, FleetmindError):
        return type(error)
    if isinstance(error, BaseException):
        return RunError
    return _ERRORS_BY_NAME.get(str(error.get("type") or "RunError"), RunError)


def blames_agent(error: Mapping[str, Any] | BaseException) -> bool:
    """Whether the agent that failed with ``error`` is to blame (see
    :attr:`FleetmindError.blames_agent`): what decides between trying another agent and
    failing the subtask, and whether routing learns from the failure."""
    return error_type(error).blames_agent


def replan_may_help(error: Mapping[str, Any] | BaseException) -> bool:
    """Whether a new plan may get past a subtask that failed for good with ``error`` (see
    :attr:`FleetmindError.replan_may_help`)."""
    return error_type(error).replan_may_help


def _all_errors(root: type[FleetmindError]) -> list[type[FleetmindError]]:
    return [root, *(c for sub in root.__subclasses__() for c in _all_errors(sub))]


_ERRORS_BY_NAME: dict[str, type[FleetmindError]] = {
    cls.__name__: cls for cls in _all_errors(FleetmindError)
}
