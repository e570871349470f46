"""The executor behind ``fleetmind a2a serve``: A2A messages in, fleetmind tasks out.

An A2A message becomes a fleetmind task: its text becomes a one-subtask graph whose input
``text`` is the text (routed by the fleet's router, or to the ``agent`` or ``skill`` named in the
message's metadata; serving one agent, sent to that agent), data parts holding JSON objects add
inputs, and a data part holding a task-graph definition (``{"subtasks": [...], ...}``, as
:meth:`TaskGraph.from_definition` reads it) runs that graph. The engine's event stream is what the
A2A client sees:

====================================  ==========================================================
fleetmind                             A2A
====================================  ==========================================================
task submitted                        ``Task`` in ``submitted``, then ``working``
subtask started / progress / retried  ``working`` status update with a text message
subtask done                          artifact update ``subtask-<id>`` with the subtask's output
task done                             artifact update ``result`` (the final output), then
                                      ``completed``
task failed                           ``failed``, the errors in the status message
an agent raised ``InputRequired``     ``input-required``, the question as the status message; a
                                      follow-up message on the task runs the graph again with
                                      the reply as the asking subtask's input ``reply``
task cancelled (``CancelTask``)       ``canceled``
subtask nobody can take               ``rejected``
====================================  ==========================================================

Answering an ``input-required`` task runs its whole graph again (a fresh fleetmind task), so
subtasks that had finished run once more; subtasks that agents added while the task ran are not
part of the definition that is run again.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from a2a.server.agent_execution import (
    AgentExecutor,
    RequestContext,
    SimpleRequestContextBuilder,
)
from a2a.server.context import ServerCallContext
from a2a.server.events import EventQueue
from a2a.server.tasks import TaskUpdater
from a2a.types import Message, Part, SendMessageRequest, Task, TaskState, TaskStatus
from a2a.utils.errors import InvalidParamsError, UnsupportedOperationError
from google.protobuf import struct_pb2
from google.protobuf.json_format import MessageToDict, ParseDict
from pydantic import ValidationError

from fleetmind._validation import describe_validation_error
from fleetmind.errors import FleetmindError
from fleetmind.orchestrator import (
    Fleet,
    SubtaskDoneEvent,
    SubtaskFailedEvent,
    SubtaskProgressEvent,
    SubtaskReassignedEvent,
    SubtaskRetriedEvent,
    SubtaskStartedEvent,
    TaskEvent,
    TaskGraph,
    TaskHandle,
    TaskResult,
    describe_event,
)
from fleetmind.protocols import data_values, plain_json

REQUEST_SUBTASK = "request"
"""The id of the one subtask a text message becomes."""
RESULT_ARTIFACT = "result"
"""The id of the last artifact of a completed task: the task's final output."""

# ------------------------------------------------------------------------------------------
# The executor: A2A requests in, fleetmind tasks out
# ------------------------------------------------------------------------------------------


@dataclass
class _Run:
    """A fleetmind task running for an A2A task, and the signal that its end was reported."""

    handle: TaskHandle
    ended: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True)
class _Parked:
    """An A2A task waiting in ``input-required``: what to run again, and who asked."""

    definition: dict[str, Any]
    asking: tuple[str, ...]


class FleetExecutor(AgentExecutor):
    """Runs A2A messages as task graphs on a fleet and reports the engine's events as A2A events.

    The fleet must be open (inside ``async with fleet``) while requests arrive; the app that
    :func:`build_a2a_app` returns opens it for as long as it serves.
    """

    def __init__(self, fleet: Fleet) -> None:
        self._fleet = fleet
        self._runs: dict[str, _Run] = {}
        self._parked: dict[str, _Parked] = {}
        self._preparing: dict[str, bool] = {}
        """A2A tasks whose graph is being prepared, and whether a cancel came meanwhile."""

    @property
    def _only_agent(self) -> str | None:
        agents = self._fleet.agents
        return agents[0].id if len(agents) == 1 else None

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Start a task for a new message, or run a parked task again with the reply."""
        message = context.message
        if message is None or not context.task_id or not context.context_id:
            raise InvalidParamsError(message="SendMessage needs a message")
        task_id, context_id = context.task_id, context.context_id
        updater = TaskUpdater(event_queue, task_id, context_id)
        planned: TaskGraph | None = None
        if context.current_task is None:
            definition = self.definition(message)
            await event_queue.enqueue_event(
                Task(
                    id=task_id,
                    context_id=context_id,
                    status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED),
                    history=[message],
                )
            )
            request = self._plannable(message)
            if request is not None:
                await updater.start_work(_agent_message(updater, "planning the request"))
                try:
                    planned = (await self._fleet.plan(request)).graph
                except FleetmindError as exc:  # no valid plan, or the model is unreachable
                    await updater.failed(_agent_message(updater, f"cannot plan: {exc.message}"))
                    return
                definition = planned.to_definition()
        else:
            parked = self._parked.pop(task_id, None)
            if parked is None:
                # A message for a task that runs (or has ended) is refused; the task goes on.
                raise UnsupportedOperationError(message=f"task {task_id} is not waiting for input")
            definition = _with_reply(parked, _reply_of(message))
        await self._run(definition, updater, planned)

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Cancel the fleetmind task; the run reports ``canceled`` itself when it has stopped."""
        task_id = context.task_id or ""
        run = self._runs.get(task_id)
        if run is not None:
            await run.handle.cancel("cancelled by the A2A client")
            await run.ended.wait()
            return
        if task_id in self._preparing:
            self._preparing[task_id] = True  # _run sees it before it starts anything
        # Parked in input-required (or not started yet): nothing runs, so the cancellation is
        # reported here.
        self._parked.pop(task_id, None)
        updater = TaskUpdater(event_queue, task_id, context.context_id or "")
        await updater.cancel(_agent_message(updater, "cancelled by the A2A client"))

    async def aclose(self) -> None:
        """Cancel every fleetmind task still running for an A2A task (the server is stopping)."""
        for run in list(self._runs.values()):
            await run.handle.cancel("the A2A server stopped")
        self._parked.clear()

    # One run -------------------------------------------------------------------------------

    async def _run(
        self, definition: dict[str, Any], updater: TaskUpdater, planned: TaskGraph | None = None
    ) -> None:
        graph = planned if planned is not None else TaskGraph.from_definition(definition)
        # Embedding words (a model call) happens off the loop's thread, as in a task.
        self._preparing[updater.task_id] = False
        problem: FleetmindError | None = None
        try:
            await self._fleet.acheck(graph)
        except FleetmindError as exc:  # nobody can take a subtask, or it lacks an input
            problem = exc
        finally:
            cancelled = self._preparing.pop(updater.task_id, False)
        if cancelled:  # CancelTask came while the words were embedded: already reported
            return
        if problem is not None:
            await updater.reject(_agent_message(updater, problem.message))
            return
        handle = self._fleet.submit(
            graph,
            source="a2a",
            metadata={"a2a_task_id": updater.task_id, "a2a_context_id": updater.context_id},
        )
        run = _Run(handle)
        self._runs[updater.task_id] = run
        try:
            await updater.start_work(
                _agent_message(updater, f"running {len(graph)} subtask(s) as {handle.task_id}")
            )
            async for event in handle.events():
                await _forward(event, updater)
            await self._report_end(await handle.result(), definition, updater)
        except asyncio.CancelledError:
            # The A2A side stopped this run (server shutdown): stop the fleetmind task with it.
            if not handle.done():
                await handle.cancel("the A2A request was cancelled")
            raise
        finally:
            del self._runs[updater.task_id]
            run.ended.set()

    async def _report_end(
        self, result: TaskResult, definition: dict[str, Any], updater: TaskUpdater
    ) -> None:
        if result.status == "done":
            await updater.add_artifact(
                [_part(_final_output(result))],
                artifact_id=RESULT_ARTIFACT,
                name=RESULT_ARTIFACT,
                metadata={"fleetmind_task_id": result.task_id},
            )
            await updater.complete(_agent_message(updater, "done"))
        elif result.status == "cancelled":
            await updater.cancel(_agent_message(updater, "cancelled"))
        else:
            questions = {
                sid: str(err.get("details", {}).get("question") or err.get("message", ""))
                for sid, err in result.errors.items()
                if err.get("type") == "InputRequired"
            }
            others = {
                sid: err
                for sid, err in result.errors.items()
                if err.get("type") not in ("InputRequired", "UpstreamFailed")
            }
            if questions and not others:
                # Only missing answers stopped the task: ask, and run it again with the reply.
                self._parked[updater.task_id] = _Parked(definition, tuple(questions))
                text = (
                    next(iter(questions.values()))
                    if len(questions) == 1
                    else "\n".join(f"{sid}: {q}" for sid, q in questions.items())
                )
                await updater.requires_input(
                    _agent_message(updater, text, {"questions": questions})
                )
                return
            text = "; ".join(
                f"{sid}: {err.get('message', '')}" for sid, err in result.errors.items()
            )
            await updater.failed(
                _agent_message(updater, f"failed: {text}", {"errors": result.errors})
            )

    # Messages -> task graph definitions --------------------------------------------------------

    def definition(self, message: Message) -> dict[str, Any]:
        """The task graph a message asks for (``InvalidParamsError`` when it asks for nothing)."""
        texts = [p.text for p in message.parts if p.HasField("text") and p.text]
        data = data_values(message.parts)
        graphs = [d for d in data if isinstance(d, dict) and "subtasks" in d]
        if len(graphs) > 1:
            raise InvalidParamsError(message="a message may carry one task graph, not several")
        if graphs:
            definition = self._pinned(graphs[0])
        else:
            inputs: dict[str, Any] = {}
            for value in data:
                if not isinstance(value, dict):
                    raise InvalidParamsError(
                        message="a data part must be a JSON object (inputs) or a task graph"
                    )
                inputs.update(value)
            text = "\n".join(texts)
            if not text and not inputs:
                raise InvalidParamsError(message="the message has no text and no data")
            if text:
                inputs.setdefault("text", text)
            subtask: dict[str, Any] = {"id": REQUEST_SUBTASK, "description": text, "inputs": inputs}
            routing = plain_json(MessageToDict(message.metadata))
            for key in ("agent", "skill"):
                if isinstance(routing.get(key), str):
                    subtask[key] = routing[key]
            definition = self._pinned({"name": "a2a request", "subtasks": [subtask]})
        try:
            TaskGraph.from_definition(definition)
        except (ValidationError, FleetmindError, TypeError, ValueError) as exc:
            raise InvalidParamsError(message=f"invalid task graph: {_first_line(exc)}") from exc
        return definition

    def _plannable(self, message: Message) -> str | None:
        """The request in plain words, when the fleet's planner should turn it into a graph:
        a text message, with no graph, no inputs and no agent or skill named, to a fleet of
        several agents that has a planner."""
        if self._fleet.planner is None or self._only_agent is not None:
            return None
        if data_values(message.parts):
            return None
        routing = plain_json(MessageToDict(message.metadata))
        if any(isinstance(routing.get(k), str) for k in ("agent", "skill")):
            return None
        text = "\n".join(p.text for p in message.parts if p.HasField("text") and p.text)
        return text if text.strip() else None

    def _pinned(self, definition: dict[str, Any]) -> dict[str, Any]:
        """Serving one agent, every subtask that names no agent or skill goes to it."""
        only = self._only_agent
        subtasks = definition.get("subtasks")
        if only is None or not isinstance(subtasks, list):
            return definition
        pinned = [
            {**s, "agent": only}
            if isinstance(s, dict) and s.get("agent") is None and s.get("skill") is None
            else s
            for s in subtasks
        ]
        return {**definition, "subtasks": pinned}


async def _forward(event: TaskEvent, updater: TaskUpdater) -> None:
    """Report one engine event to the A2A client (events it has no use for are dropped)."""
    details: dict[str, Any] = {"event": event.kind}
    match event:
        case SubtaskDoneEvent():
            await updater.add_artifact(
                [_part(event.output)],
                artifact_id=f"subtask-{event.subtask_id}",
                name=event.subtask_id,
                metadata={"subtask_id": event.subtask_id, "agent": event.agent},
            )
            return
        case SubtaskFailedEvent() if event.error.get("type") == "InputRequired":
            return  # reported as input-required when the task ends
        case SubtaskProgressEvent():
            details.update(subtask_id=event.subtask_id, fraction=event.fraction)
        case SubtaskStartedEvent():
            details["subtask_id"] = event.subtask_id
        case SubtaskRetriedEvent() | SubtaskReassignedEvent() | SubtaskFailedEvent():
            details.update(subtask_id=event.subtask_id, error=event.error)
        case _:
            return
    text = describe_event(event, style="notice") or event.kind
    await updater.update_status(
        TaskState.TASK_STATE_WORKING, message=_agent_message(updater, text, details)
    )


def _agent_message(
    updater: TaskUpdater, text: str, metadata: dict[str, Any] | None = None
) -> Message:
    return updater.new_agent_message([Part(text=text)], metadata=_jsonable(metadata))


def _part(value: Any) -> Part:
    """Text travels as a text part; any other output as JSON in a data part."""
    if isinstance(value, str):
        return Part(text=value)
    return Part(data=ParseDict(_jsonable(value), struct_pb2.Value()), media_type="application/json")


def _final_output(result: TaskResult) -> Any:
    """The output of the one final subtask, or every final subtask's output by id."""
    sinks = [s.id for s in result.graph if not result.graph.dependents_of(s.id)]
    if len(sinks) == 1:
        return result.outputs.get(sinks[0])
    return {sid: result.outputs.get(sid) for sid in sinks}


def _reply_of(message: Message) -> Any:
    """A follow-up's answer: its text, or else its one data value."""
    text = "\n".join(p.text for p in message.parts if p.HasField("text") and p.text)
    if text:
        return text
    data = data_values(message.parts)
    return data[0] if len(data) == 1 else (data or "")


def _with_reply(parked: _Parked, reply: Any) -> dict[str, Any]:
    subtasks = [
        {**s, "inputs": {**(s.get("inputs") or {}), "reply": reply}}
        if isinstance(s, dict) and s.get("id") in parked.asking
        else s
        for s in parked.definition.get("subtasks", [])
    ]
    return {**parked.definition, "subtasks": subtasks}


def _jsonable(value: Any) -> Any:
    """Agent outputs may hold anything; what JSON cannot hold travels as its ``str``."""
    return json.loads(json.dumps(value, default=str))


def _first_line(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return describe_validation_error(exc, show_input=False)
    if isinstance(exc, FleetmindError):
        return exc.message
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class CheckedRequests(SimpleRequestContextBuilder):
    """Refuses a new task's malformed message before a task exists for it.

    Raised here, ``InvalidParamsError`` becomes the JSON-RPC error answer and nothing else;
    raised from the executor, it would also leave a failed task behind.
    """

    def __init__(self, check: Callable[[Message], object]) -> None:
        super().__init__()
        self._check = check

    async def build(
        self,
        context: ServerCallContext,
        params: SendMessageRequest | None = None,
        task_id: str | None = None,
        context_id: str | None = None,
        task: Task | None = None,
    ) -> RequestContext:
        if params is not None and not task_id:
            self._check(params.message)
        return await super().build(context, params, task_id, context_id, task)
