"""How the A2A server answers with what agents return: parts of any kind, a direct message
instead of a task, and a new task's events held back until it is clear which of the two.

A2A lets an agent answer ``SendMessage`` with a ``Message`` and no ``Task`` at all, but only
when the message is the first and only event of the request. An agent decides how it answers
when it returns (:meth:`Reply.message`), so :class:`HeldEvents` keeps a new task's first events
(the ``Task`` itself, and ``working`` updates that say what the fleet is doing) until the
agent speaks: its progress, a streamed chunk, an output that is not a direct message, or any
other end of the task sends them on, in order. A client that asked to get the task back at
once (``returnImmediately``), or to have it pushed to a webhook, gets it at once, and a direct
message then comes as the task's final status message.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from a2a.server.agent_execution import RequestContext
from a2a.server.events import Event, EventQueue
from a2a.server.tasks import TaskUpdater
from a2a.types import Message, Part, Role, Task, TaskState, TaskStatusUpdateEvent
from google.protobuf import struct_pb2
from google.protobuf.json_format import ParseDict

from fleetmind.agents import Reply, TextPart, as_reply, part_from_json
from fleetmind.agents.remote import parts_to_a2a


class HeldEvents(EventQueue):
    """An event queue that holds a new task's first events while ``hold`` says so.

    A ``Task`` and ``working`` status updates are held; :meth:`release` (or any other event,
    such as an artifact or an end) sends them on first. :meth:`answer` replaces them all with
    a direct message.
    """

    def __init__(self, queue: EventQueue, *, hold: bool) -> None:
        self._queue = queue
        self._held: list[Event] | None = [] if hold else None

    @property
    def holding(self) -> bool:
        """Whether nothing has been sent yet (a direct message may still answer)."""
        return self._held is not None

    async def enqueue_event(self, event: Event) -> None:
        if self._held is not None:
            if isinstance(event, Task) or (
                isinstance(event, TaskStatusUpdateEvent)
                and event.status.state == TaskState.TASK_STATE_WORKING
            ):
                self._held.append(event)
                return
            await self.release()
        await self._queue.enqueue_event(event)

    async def release(self) -> None:
        """Send what is held (the task is a task), and hold nothing from now on."""
        held, self._held = self._held, None
        for event in held or ():
            await self._queue.enqueue_event(event)

    async def answer(self, message: Message) -> bool:
        """Answer with ``message`` alone, dropping what is held; False once anything was sent."""
        if self._held is None:
            return False
        self._held = None
        await self._queue.enqueue_event(message)
        return True


def wants_a_task(context: RequestContext) -> bool:
    """Whether the client asked for a task: to get it back at once, or to be told of its
    changes at a webhook. Its events are then never held."""
    configuration = context.configuration
    return configuration is not None and (
        configuration.return_immediately or configuration.HasField("task_push_notification_config")
    )


async def release(updater: TaskUpdater) -> None:
    """The agent spoke: the task's held events go out (if its events are held at all)."""
    if isinstance(updater.event_queue, HeldEvents):
        await updater.event_queue.release()


async def answer_directly(updater: TaskUpdater, reply: Reply) -> bool:
    """Answer with a reply as a direct message, if nothing of the task was sent yet."""
    queue = updater.event_queue
    if not isinstance(queue, HeldEvents) or not queue.holding:
        return False
    message = Message(
        message_id=uuid.uuid4().hex,
        role=Role.ROLE_AGENT,
        context_id=updater.context_id,
        parts=parts_to_a2a(reply.parts),
    )
    if reply.metadata:
        message.metadata.update(_jsonable(dict(reply.metadata)))
    return await queue.answer(message)


def is_direct(output: Any) -> bool:
    """Whether an output is a reply meant as a direct message."""
    reply = as_reply(output)
    return reply is not None and reply.as_message


def output_parts(value: Any) -> list[Part]:
    """An output as A2A parts: a reply's own parts, text as a text part, anything else as
    JSON in a data part."""
    reply = as_reply(value)
    if reply is not None:
        return parts_to_a2a(reply.parts)
    if isinstance(value, str):
        return [Part(text=value)]
    data = ParseDict(_jsonable(value), struct_pb2.Value())
    return [Part(data=data, media_type="application/json")]


def status_parts(reply: Reply) -> list[Part]:
    """A direct reply that comes as a task's final status message: its status text first."""
    lead = (TextPart(reply.status),) if reply.status else ()
    return parts_to_a2a((*lead, *reply.parts))


def chunk_parts(parts: tuple[dict[str, Any], ...]) -> list[Part]:
    """A streamed chunk's parts (as engine events carry them) as A2A parts."""
    return parts_to_a2a(part_from_json(p) for p in parts)


def _jsonable(value: Any) -> Any:
    """Outputs may hold anything; what JSON cannot hold travels as its ``str``."""
    return json.loads(json.dumps(value, default=str))
