"""The executor behind ``fleetmind a2a serve``: A2A messages in, fleetmind tasks out.

An A2A message becomes a fleetmind task: its text becomes a one-subtask graph whose input
``text`` is the text (routed by the fleet's router, or to the ``agent`` or ``skill`` named in the
message's metadata; serving one agent, sent to that agent), data parts holding JSON objects add
inputs, and a data part holding a task-graph definition (``{"subtasks": [...], ...}``, as
:meth:`TaskGraph.from_definition` reads it) runs that graph; file parts become the input
``files`` (``fleetmind.agents.part_to_json``'s form). Every agent of the task sees the whole
message as ``ctx.message`` (its ids, metadata and parts). The engine's event stream is what the
A2A client sees:

====================================  ==========================================================
fleetmind                             A2A
====================================  ==========================================================
task submitted                        ``Task`` in ``submitted``, then ``working``
subtask started / progress / retried  ``working`` status update with a text message
subtask done                          artifact update ``subtask-<id>`` with the subtask's output
``ctx.stream_artifact``               artifact update ``subtask-<id>-<artifact>``, chunk by
                                      chunk (``append``, ``lastChunk``)
task done                             artifact update ``result`` (the final output), then
                                      ``completed``; a ``Reply`` gives the parts (any kind),
                                      the artifact's name and the status text
a ``Reply.message`` answer            a ``Message`` and no ``Task`` (see
                                      :mod:`fleetmind.serve._a2a_answers`), or, once the task
                                      was reported, ``completed`` with the reply as its message
task failed                           ``failed``, the errors in the status message
an agent raised ``InputRequired``     ``input-required``, the question as the status message; a
                                      follow-up message on the task continues the same
                                      fleetmind task, the asking subtask with the reply as its
                                      input ``reply``
task cancelled (``CancelTask``)       ``canceled``
subtask nobody can take               ``rejected``
an agent raised ``TaskRejected``      ``rejected``, the reasons in the status message
====================================  ==========================================================

Answering an ``input-required`` task (:meth:`Fleet.answer`) runs again only the subtasks that
asked and those their questions held back: finished subtasks are not run again, and subtasks that
agents added while the task ran stay. A follow-up may give the task id alone: its context is the
task's. A2A tasks and which fleetmind task runs each are kept in the fleet's store
(:mod:`fleetmind.serve._a2a_state`), so a restarted server answers for them, resumes those that
were working, and takes answers to those that were waiting for input.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from a2a.server.agent_execution import (
    AgentExecutor,
    RequestContext,
    SimpleRequestContextBuilder,
)
from a2a.server.context import ServerCallContext
from a2a.server.events import EventConsumer, EventQueue, EventQueueLegacy
from a2a.server.tasks import (
    PushNotificationEvent,
    PushNotificationSender,
    TaskManager,
    TaskStore,
    TaskUpdater,
)
from a2a.types import (
    Message,
    Part,
    SendMessageRequest,
    Task,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)
from a2a.utils.errors import InvalidParamsError, UnsupportedOperationError
from google.protobuf.json_format import MessageToDict
from pydantic import ValidationError

from fleetmind._validation import describe_validation_error
from fleetmind.agents import FilePart, IncomingMessage, as_reply, part_to_json
from fleetmind.agents.remote import message_from_a2a, parts_from_a2a
from fleetmind.errors import FleetmindError
from fleetmind.orchestrator import (
    Fleet,
    SubtaskArtifactEvent,
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
from fleetmind.serve._a2a_answers import (
    HeldEvents,
    answer_directly,
    chunk_parts,
    is_direct,
    output_parts,
    release,
    status_parts,
    wants_a_task,
)
from fleetmind.serve._a2a_state import DurableTaskStore, link_run, linked_run, owner_context

REQUEST_SUBTASK = "request"
"""The id of the one subtask a text message becomes."""
RESULT_ARTIFACT = "result"
"""The id of the last artifact of a completed task: the task's final output."""
_CHECKED_KEPT = 256
"""How many checked messages' graphs wait to be run (a refused message's is dropped later)."""
_ENDED = frozenset(
    {
        TaskState.TASK_STATE_COMPLETED,
        TaskState.TASK_STATE_CANCELED,
        TaskState.TASK_STATE_FAILED,
        TaskState.TASK_STATE_REJECTED,
    }
)

# ------------------------------------------------------------------------------------------
# The executor: A2A requests in, fleetmind tasks out
# ------------------------------------------------------------------------------------------


@dataclass
class _Run:
    """A fleetmind task running for an A2A task, and the signal that its end was reported."""

    handle: TaskHandle
    ended: asyncio.Event = field(default_factory=asyncio.Event)


class FleetExecutor(AgentExecutor):
    """Runs A2A messages as task graphs on a fleet and reports the engine's events as A2A events.

    The fleet must be open (inside ``async with fleet``) while requests arrive; the app that
    :func:`build_a2a_app` returns opens it for as long as it serves.
    """

    def __init__(self, fleet: Fleet) -> None:
        self._fleet = fleet
        self._runs: dict[str, _Run] = {}
        self._recovering: set[asyncio.Task[Any]] = set()
        self._taken_up: dict[str, bool] = {}
        """A2A tasks taken up after a restart, and whether a client cancelled one meanwhile."""
        self._preparing: dict[str, bool] = {}
        """A2A tasks whose graph is being prepared, and whether a cancel came meanwhile."""
        self._checked: OrderedDict[str, tuple[Message, TaskGraph]] = OrderedDict()
        """The graphs of messages checked and not run yet, by message id."""

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
        if context.current_task is not None:
            # A follow-up's context is its task's (CheckedRequests gives it to one that names
            # none; the SDK refuses one naming another).
            context_id = context.current_task.context_id
        # A new task's first events wait until it is clear whether a direct message answers.
        hold = context.current_task is None and not wants_a_task(context)
        updater = TaskUpdater(HeldEvents(event_queue, hold=hold), task_id, context_id)
        if context.current_task is None:
            graph = self._graph(message)
            await updater.event_queue.enqueue_event(
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
                    graph = (await self._fleet.plan(request)).graph
                except FleetmindError as exc:  # no valid plan, or the model is unreachable
                    await updater.failed(_agent_message(updater, f"cannot plan: {exc.message}"))
                    return
        else:
            await self._answer(message, updater)
            return
        await self._run(graph, updater, message_from_a2a(message))

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
        # Waiting for input (or not started yet): nothing runs, so the cancellation is
        # reported here.
        updater = TaskUpdater(event_queue, task_id, context.context_id or "")
        await updater.cancel(_agent_message(updater, "cancelled by the A2A client"))

    async def aclose(self) -> None:
        """Cancel every fleetmind task still running for an A2A task (the server is stopping)."""
        for run in list(self._runs.values()):
            await run.handle.cancel("the A2A server stopped")
        for recovering in list(self._recovering):
            recovering.cancel()
        await asyncio.gather(*self._recovering, return_exceptions=True)

    async def recover(
        self, tasks: DurableTaskStore, push: PushNotificationSender | None = None
    ) -> None:
        """Take up the A2A tasks that were submitted or working when the server last stopped.

        The fleetmind task behind each is resumed (what had finished is not run again) and
        reported as before, into ``tasks`` and to the task's webhooks through ``push``; one
        that ended meanwhile is reported as it ended, and one that never got a fleetmind task
        is reported failed. Call it once the fleet is open; the work goes on in the background
        until it ends or :meth:`aclose`. (Clients follow such a task with ``GetTask`` or
        webhooks; a stream to subscribe to exists only for tasks a request started.)
        """
        tasks.on_cancelled = self._cancelled_in_store
        for owner, task in list(tasks.unfinished()):
            work = asyncio.create_task(self._recover(owner, task, tasks, push))
            self._recovering.add(work)
            work.add_done_callback(self._recovering.discard)

    async def _recover(
        self, owner: str, task: Task, tasks: DurableTaskStore, push: PushNotificationSender | None
    ) -> None:
        queue = EventQueueLegacy()
        manager = TaskManager(
            task_store=tasks,
            context=owner_context(owner),
            task_id=task.id,
            context_id=task.context_id,
            initial_message=None,
        )

        async def save() -> None:
            async for event in EventConsumer(queue).consume_all():
                if self._taken_up.get(task.id) and not _cancels(event):
                    continue  # cancelled by a client: what the run still says is not kept
                await manager.process(event)
                if push is not None and isinstance(event, PushNotificationEvent):
                    await push.send_notification(task.id, event)

        self._taken_up[task.id] = False
        saving = asyncio.create_task(save())
        updater = TaskUpdater(queue, task.id, task.context_id)
        try:
            await self._take_up(updater)
        finally:
            await queue.close()
            await saving
            del self._taken_up[task.id]

    def _cancelled_in_store(self, task_id: str) -> None:
        """The SDK wrote a task canceled; one taken up after a restart is not the SDK's to
        stop (it never calls :meth:`cancel` for it), so its fleetmind task is cancelled here."""
        run = self._runs.get(task_id)
        if task_id not in self._taken_up or run is None or self._taken_up[task_id]:
            return
        self._taken_up[task_id] = True
        stopping = asyncio.get_running_loop().create_task(
            run.handle.cancel("cancelled by the A2A client")
        )
        self._recovering.add(stopping)
        stopping.add_done_callback(self._recovering.discard)

    async def _take_up(self, updater: TaskUpdater) -> None:
        running = linked_run(self._fleet.store, updater.task_id)
        if running is None:
            text = "the server stopped before this task started; send the message again"
            await updater.failed(_agent_message(updater, text))
            return
        try:
            handle = self._fleet.submit_resume(running)
        except FleetmindError as exc:  # it ended meanwhile, or cannot be taken up
            ended = None
            with contextlib.suppress(FleetmindError):
                ended = self._fleet.task(running)
            if ended is not None and ended.status in ("done", "failed", "cancelled"):
                await self._report_end(TaskResult.of(running, ended.graph), updater)
            else:
                text = f"cannot resume {running} after the server restarted: {exc.message}"
                await updater.failed(_agent_message(updater, text))
            return
        await self._follow(handle, updater, f"resumed {running} after the server restarted")

    # One run -------------------------------------------------------------------------------

    async def _run(
        self, graph: TaskGraph, updater: TaskUpdater, message: IncomingMessage | None = None
    ) -> None:
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
            message=message,
        )
        link_run(self._fleet.store, updater.task_id, handle.task_id)
        note = f"running {len(graph)} subtask(s) as {handle.task_id}"
        await self._follow(handle, updater, note)

    def check_follow_up(self, task: Task) -> None:
        """Refuse a message on a stored task that cannot answer it (``UnsupportedOperationError``).

        Called before the SDK runs anything for the message: refused from :meth:`execute`, the
        refusal would be logged as a crash and the task written failed, though it goes on.
        """
        if task.status.state in _ENDED:
            return  # the SDK refuses a message on an ended task itself
        if task.status.state != TaskState.TASK_STATE_INPUT_REQUIRED or not self._waiting(task.id):
            raise UnsupportedOperationError(message=f"task {task.id} is not waiting for input")

    def _waiting(self, task_id: str) -> tuple[str, dict[str, str]] | None:
        """The fleetmind task behind an A2A task and its questions, while it waits for answers
        (read from the store, so this works after a restart too)."""
        running = linked_run(self._fleet.store, task_id)
        if running is None or task_id in self._runs:
            return None
        try:
            questions = self._fleet.questions(running)
        except FleetmindError:  # its fleetmind task is gone
            return None
        return (running, questions) if questions else None

    async def _answer(self, message: Message, updater: TaskUpdater) -> None:
        """A follow-up to a task in ``input-required``: the same fleetmind task goes on, the
        asking subtasks with the reply as their input ``reply``, the follow-up as their
        ``ctx.message`` and its file parts as their input ``reply_files``."""
        task_id = updater.task_id
        waiting = self._waiting(task_id)
        if waiting is None:
            # Only when a second answer raced the first past check_follow_up.
            raise UnsupportedOperationError(message=f"task {task_id} is not waiting for input")
        running, questions = waiting
        handle = self._fleet.answer(
            running, dict.fromkeys(questions, _reply_of(message)), message=message_from_a2a(message)
        )
        await self._follow(handle, updater, f"answered: {handle.task_id} goes on")

    async def _follow(self, handle: TaskHandle, updater: TaskUpdater, note: str) -> None:
        """Report a fleetmind task's events as the A2A task's, up to how it ends."""
        run = _Run(handle)
        self._runs[updater.task_id] = run
        try:
            await updater.start_work(_agent_message(updater, note))
            async for event in handle.events():
                await _forward(event, updater)
            await self._report_end(await handle.result(), updater)
        except asyncio.CancelledError:
            # The A2A side stopped this run (server shutdown): stop the fleetmind task with it.
            if not handle.done():
                await handle.cancel("the A2A request was cancelled")
            raise
        finally:
            del self._runs[updater.task_id]
            run.ended.set()

    async def _report_end(self, result: TaskResult, updater: TaskUpdater) -> None:
        if result.status == "done":
            output = _final_output(result)
            reply = as_reply(output)
            if reply is not None and reply.as_message:
                if await answer_directly(updater, reply):
                    return  # a Message, and no task at all
                # The task was reported already: the reply is its final status message.
                await updater.complete(updater.new_agent_message(status_parts(reply)))
                return
            await updater.add_artifact(
                output_parts(output),
                artifact_id=RESULT_ARTIFACT,
                name=reply.name if reply is not None and reply.name else RESULT_ARTIFACT,
                metadata={
                    **(dict(reply.metadata) if reply is not None else {}),
                    "fleetmindTaskId": result.task_id,
                },
            )
            status = reply.status if reply is not None and reply.status else "done"
            await updater.complete(_agent_message(updater, status))
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
                # Only missing answers stopped the task: ask; a follow-up continues it.
                text = (
                    next(iter(questions.values()))
                    if len(questions) == 1
                    else "\n".join(f"{sid}: {q}" for sid, q in questions.items())
                )
                await updater.requires_input(
                    _agent_message(updater, text, {"questions": questions})
                )
                return
            rejected = {
                sid: err for sid, err in result.errors.items() if err.get("type") == "TaskRejected"
            }
            if rejected and all(
                err.get("type") in ("TaskRejected", "UpstreamFailed")
                for err in result.errors.values()
            ):
                # The agents refused the work themselves.
                text = "; ".join(f"{sid}: {e.get('message', '')}" for sid, e in rejected.items())
                await updater.reject(
                    _agent_message(updater, f"rejected: {text}", {"errors": result.errors})
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
        """The task graph a message asks for (``InvalidParamsError`` when it asks for nothing).

        The graph read from it is kept for :meth:`execute` (``CheckedRequests`` calls this
        first), which then builds nothing again.
        """
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
            files = [
                part_to_json(p) for p in parts_from_a2a(message.parts) if isinstance(p, FilePart)
            ]
            if not text and not inputs and not files:
                raise InvalidParamsError(message="the message has no text, no data and no file")
            if text:
                inputs.setdefault("text", text)
            if files:  # as part_to_json writes them: kind, name, media_type, base64 or url
                inputs.setdefault("files", files)
            subtask: dict[str, Any] = {"id": REQUEST_SUBTASK, "description": text, "inputs": inputs}
            routing = plain_json(MessageToDict(message.metadata))
            for key in ("agent", "skill"):
                if isinstance(routing.get(key), str):
                    subtask[key] = routing[key]
            definition = self._pinned({"name": "a2a request", "subtasks": [subtask]})
        try:
            graph = TaskGraph.from_definition(definition)
        except (ValidationError, FleetmindError, TypeError, ValueError) as exc:
            raise InvalidParamsError(message=f"invalid task graph: {_first_line(exc)}") from exc
        self._checked[message.message_id] = (message, graph)
        self._checked.move_to_end(message.message_id)
        if len(self._checked) > _CHECKED_KEPT:
            self._checked.popitem(last=False)
        return definition

    def _graph(self, message: Message) -> TaskGraph:
        """The graph of a new message: the one :meth:`definition` read from this very message
        (each is used once, as the engine edits its graph), else read now."""
        kept = self._checked.pop(message.message_id, None)
        if kept is not None and kept[0] == message:
            return kept[1]
        self.definition(message)
        return self._checked.pop(message.message_id)[1]

    def _plannable(self, message: Message) -> str | None:
        """The request in plain words, when the fleet's planner should turn it into a graph:
        a text message, with no graph, no inputs and no agent or skill named, to a fleet of
        several agents that has a planner."""
        if self._fleet.planner is None or self._only_agent is not None:
            return None
        if any(p.WhichOneof("content") not in ("text", None) for p in message.parts):
            return None  # data or files: routed with them as inputs, not planned from words
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
        case SubtaskDoneEvent() if is_direct(event.output):
            return  # a direct message: the answer itself, sent when the task ends
        case SubtaskDoneEvent():
            await updater.add_artifact(
                output_parts(event.output),
                artifact_id=f"subtask-{event.subtask_id}",
                name=event.subtask_id,
                metadata={"subtaskId": event.subtask_id, "agent": event.agent},
            )
            return
        case SubtaskArtifactEvent():
            await updater.add_artifact(
                chunk_parts(event.parts),
                artifact_id=f"subtask-{event.subtask_id}-{event.artifact_id}",
                name=event.name or event.artifact_id,
                metadata={"subtaskId": event.subtask_id},
                append=event.append,
                last_chunk=event.last,
            )
            return
        case SubtaskFailedEvent() if event.error.get("type") == "InputRequired":
            return  # reported as input-required when the task ends
        case SubtaskProgressEvent():
            await release(updater)  # the agent speaks: the task is a task
            details.update(subtaskId=event.subtask_id, fraction=event.fraction)
        case SubtaskStartedEvent():
            details["subtaskId"] = event.subtask_id
        case SubtaskRetriedEvent() | SubtaskReassignedEvent() | SubtaskFailedEvent():
            details.update(subtaskId=event.subtask_id, error=event.error)
        case _:
            return
    text = describe_event(event, style="notice") or event.kind
    await updater.update_status(
        TaskState.TASK_STATE_WORKING, message=_agent_message(updater, text, details)
    )


def _agent_message(
    updater: TaskUpdater, text: str, metadata: dict[str, Any] | None = None
) -> Message:
    return updater.new_agent_message(
        [Part(text=text)], metadata=None if metadata is None else _jsonable(metadata)
    )


def _final_output(result: TaskResult) -> Any:
    """The output of the one final subtask, or every final subtask's output by id."""
    sinks = [s.id for s in result.graph if not result.graph.dependents_of(s.id)]
    if len(sinks) == 1:
        return result.outputs.get(sinks[0])
    return {sid: result.outputs.get(sid) for sid in sinks}


def _cancels(event: Any) -> bool:
    """Whether an event reports its task canceled."""
    is_task = isinstance(event, Task | TaskStatusUpdateEvent)
    return is_task and bool(event.status.state == TaskState.TASK_STATE_CANCELED)


def _reply_of(message: Message) -> Any:
    """A follow-up's answer: its text, or else its one data value."""
    text = "\n".join(p.text for p in message.parts if p.HasField("text") and p.text)
    if text:
        return text
    data = data_values(message.parts)
    return data[0] if len(data) == 1 else (data or "")


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
    """Refuses a malformed message, or a follow-up its task cannot take, before the SDK runs
    anything for it, and gives a follow-up that names no context its task's context.

    Raised here, an error becomes the error answer and nothing else; raised from the executor,
    it would also leave a failed task behind. The context is looked up in the store: after a
    restart the SDK holds no task in memory to take it from, and would start the follow-up in
    a context of its own, which the task's events then contradict.
    """

    def __init__(
        self,
        check: Callable[[Message], object],
        tasks: TaskStore,
        check_follow_up: Callable[[Task], object],
    ) -> None:
        super().__init__()
        self._check = check
        self._tasks = tasks
        self._check_follow_up = check_follow_up

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
        elif params is not None and task_id:
            stored = task or await self._tasks.get(task_id, context)
            if stored is not None:  # else the SDK answers that it has no such task
                self._check_follow_up(stored)
                context_id = context_id or stored.context_id
        return await super().build(context, params, task_id, context_id, task)
