"""The A2A server's state in the fleet's durable store: tasks, webhooks, and which fleetmind
task runs each A2A task.

The SDK keeps A2A tasks in memory by default, so a restarted server would forget every task
while the fleetmind tasks behind them live on. Here each A2A task is a store record, as is each
task's list of push-notification configurations, so they last as long as the fleet's tasks: a
restarted ``fleetmind a2a serve`` on the same store answers ``GetTask`` for the tasks of its
previous run, and finds the fleetmind task to resume or answer.

The SDK saves a task after every event it reports, several times per message, so a task record
holds the protobuf's binary form (base64 text in ``proto``): written and read in microseconds,
where its JSON form costs tens of them each way. Records of the older JSON form (``task``)
are still read.
"""

from __future__ import annotations

import base64
import binascii
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

from a2a.auth.user import User
from a2a.server.context import ServerCallContext
from a2a.server.owner_resolver import OwnerResolver, resolve_user_scope
from a2a.server.tasks import PushNotificationConfigStore, TaskStore
from a2a.server.tasks.push_notification_config_store import normalize_push_notification_config
from a2a.types import (
    ListTasksRequest,
    ListTasksResponse,
    Task,
    TaskPushNotificationConfig,
    TaskState,
)
from a2a.utils.constants import DEFAULT_LIST_TASKS_PAGE_SIZE
from a2a.utils.errors import InvalidParamsError
from a2a.utils.task import (
    ListTasksCursor,
    decode_list_tasks_cursor,
    decode_page_token,
    encode_list_tasks_cursor,
)
from google.protobuf.json_format import MessageToDict, ParseDict, ParseError
from google.protobuf.message import DecodeError

from fleetmind.errors import StoreError
from fleetmind.orchestrator import Store

TASKS = "a2a.task"
"""The record namespace of A2A tasks, keyed by task id."""
PUSH_CONFIGS = "a2a.push"
"""The record namespace of push-notification configurations, keyed by task id."""
RUNS = "a2a.run"
"""The record namespace that maps an A2A task id to the fleetmind task that runs it."""

_CONFIGS_KEPT = 1024
"""How many tasks' push-notification configurations a configuration store remembers."""

_WAITING_STATES = frozenset({TaskState.TASK_STATE_SUBMITTED, TaskState.TASK_STATE_WORKING})


def _sort_key(document: dict[str, Any]) -> tuple[bool, int, str]:
    """The order of ``ListTasks``: latest status first, then by id (both descending)."""
    stamp = document.get("stamp_ns")
    return (stamp is not None, int(stamp or 0), str(document["task_id"]))


class DurableTaskStore(TaskStore):
    """The SDK's task store over a fleetmind :class:`Store`: each task one record.

    Tasks belong to the user who made them (``owner_resolver``, the SDK's default: the
    authenticated user's name), as in the SDK's own stores; another user neither reads,
    lists nor deletes them.
    """

    def __init__(self, store: Store, owner_resolver: OwnerResolver = resolve_user_scope) -> None:
        self.store = store
        self._owner = owner_resolver
        self.on_cancelled: Callable[[str], None] | None = None
        """Told the id of each task saved as canceled: the SDK cancels a task it does not run
        itself (one taken up after a restart) by writing it so, and its runner must stop."""

    async def save(self, task: Task, context: ServerCallContext) -> None:
        stamp = task.status.timestamp.ToNanoseconds() if task.status.HasField("timestamp") else None
        self.store.put_record(
            TASKS,
            task.id,
            {
                "owner": self._owner(context),
                "task_id": task.id,
                "context_id": task.context_id,
                "state": int(task.status.state),
                "stamp_ns": stamp,
                "proto": base64.b64encode(task.SerializeToString()).decode("ascii"),
            },
        )
        if task.status.state == TaskState.TASK_STATE_CANCELED and self.on_cancelled is not None:
            self.on_cancelled(task.id)

    async def get(self, task_id: str, context: ServerCallContext) -> Task | None:
        document = self.store.get_record(TASKS, task_id)
        if document is None or document.get("owner") != self._owner(context):
            return None
        return _task(document)

    async def list(self, params: ListTasksRequest, context: ServerCallContext) -> ListTasksResponse:
        owner = self._owner(context)
        found = [d for _, d in self.store.records(TASKS) if d.get("owner") == owner]
        if params.context_id:
            found = [d for d in found if d.get("context_id") == params.context_id]
        if params.status:
            found = [d for d in found if d.get("state") == params.status]
        if params.HasField("status_timestamp_after"):
            after_ns = params.status_timestamp_after.ToNanoseconds()
            found = [
                d for d in found if d.get("stamp_ns") is not None and d["stamp_ns"] >= after_ns
            ]
        found.sort(key=_sort_key, reverse=True)
        start = _page_start(found, params.page_token) if params.page_token else 0
        size = params.page_size or DEFAULT_LIST_TASKS_PAGE_SIZE
        page = found[start : start + size]
        more = start + size < len(found)
        return ListTasksResponse(
            tasks=[_task(d) for d in page],
            next_page_token=encode_list_tasks_cursor(_cursor(page[-1])) if more else None,
            total_size=len(found),
            page_size=size,
        )

    async def delete(self, task_id: str, context: ServerCallContext) -> None:
        document = self.store.get_record(TASKS, task_id)
        if document is not None and document.get("owner") == self._owner(context):
            self.store.delete_record(TASKS, task_id)

    def unfinished(self) -> Iterator[tuple[str, Task]]:
        """``(owner, task)`` of every task that was submitted or working (when the server
        stopped, for a store read at start-up)."""
        for _, document in self.store.records(TASKS):
            if document.get("state") in _WAITING_STATES:
                yield str(document.get("owner") or ""), _task(document)


def _task(document: dict[str, Any]) -> Task:
    """The task a record holds: its binary form, or the JSON form of older records."""
    try:
        proto = document.get("proto")
        if isinstance(proto, str):
            task = Task()
            task.ParseFromString(base64.b64decode(proto, validate=True))
            return task
        return ParseDict(document["task"], Task())
    except (KeyError, ParseError, DecodeError, binascii.Error) as exc:
        raise StoreError(f"A2A task {document.get('task_id')!r} is corrupt in the store") from exc


def _cursor(document: dict[str, Any]) -> ListTasksCursor:
    stamp = document.get("stamp_ns")
    return ListTasksCursor(timestamp_ns=stamp, task_id=str(document["task_id"]))


def _page_start(found: list[dict[str, Any]], token: str) -> int:
    """Where the page after ``token`` starts in ``found`` (sorted as listed)."""
    cursor = decode_list_tasks_cursor(token)
    if cursor is None:  # a token of the SDK's older form names the page's first task
        first = decode_page_token(token)
        for n, document in enumerate(found):
            if document["task_id"] == first:
                return n
        raise InvalidParamsError(message=f"Invalid page token: {token}")
    after = cursor.sort_key()
    return next((n for n, d in enumerate(found) if _sort_key(d) < after), len(found))


class DurablePushConfigStore(PushNotificationConfigStore):
    """The SDK's push-notification configuration store over a fleetmind :class:`Store`.

    One record per task holds its configurations, each with the user who set it: a user reads
    and deletes only their own, and dispatch sees all of them. A configuration's credentials
    are kept as given, in the store's file (keep that file private). The server that owns the
    store writes them through this object alone, so what it last read or wrote is what the
    store holds.
    """

    def __init__(self, store: Store, owner_resolver: OwnerResolver = resolve_user_scope) -> None:
        self.store = store
        self._owner = owner_resolver
        self._known: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        """The configurations of recent tasks as last read or written: dispatch asks after
        every event of a task, and most tasks have none, so the store is read once per task."""

    def _entries(self, task_id: str) -> list[dict[str, Any]]:
        known = self._known.get(task_id)
        if known is None:
            document = self.store.get_record(PUSH_CONFIGS, task_id)
            found = (document or {}).get("configs")
            known = list(found) if isinstance(found, list) else []
        self._keep(task_id, known)
        return list(known)

    def _keep(self, task_id: str, entries: list[dict[str, Any]]) -> None:
        self._known[task_id] = entries
        self._known.move_to_end(task_id)
        if len(self._known) > _CONFIGS_KEPT:
            self._known.popitem(last=False)

    def _write(self, task_id: str, entries: list[dict[str, Any]]) -> None:
        self._known.pop(task_id, None)  # a failed write leaves the store to be read again
        if entries:
            self.store.put_record(PUSH_CONFIGS, task_id, {"configs": entries})
        else:
            self.store.delete_record(PUSH_CONFIGS, task_id)
        self._keep(task_id, list(entries))

    async def set_info(
        self,
        task_id: str,
        notification_config: TaskPushNotificationConfig,
        context: ServerCallContext,
    ) -> TaskPushNotificationConfig:
        owner = self._owner(context)
        stored = normalize_push_notification_config(task_id, notification_config)
        entries = [
            e
            for e in self._entries(task_id)
            if not (e.get("owner") == owner and e.get("id") == stored.id)
        ]
        entries.append({"owner": owner, "id": stored.id, "config": MessageToDict(stored)})
        self._write(task_id, entries)
        return stored

    async def get_info(
        self, task_id: str, context: ServerCallContext
    ) -> list[TaskPushNotificationConfig]:
        owner = self._owner(context)
        return [_config(e) for e in self._entries(task_id) if e.get("owner") == owner]

    async def get_info_for_dispatch(self, task_id: str) -> list[TaskPushNotificationConfig]:
        return [_config(e) for e in self._entries(task_id)]

    async def delete_info(
        self, task_id: str, context: ServerCallContext, config_id: str | None = None
    ) -> None:
        owner = self._owner(context)
        kept = [
            e
            for e in self._entries(task_id)
            if e.get("owner") != owner or (config_id is not None and e.get("id") != config_id)
        ]
        self._write(task_id, kept)


def _config(entry: dict[str, Any]) -> TaskPushNotificationConfig:
    try:
        return ParseDict(entry["config"], TaskPushNotificationConfig())
    except (KeyError, ParseError) as exc:
        raise StoreError("a push-notification configuration is corrupt in the store") from exc


# Which fleetmind task runs an A2A task --------------------------------------------------------


def link_run(store: Store, a2a_task_id: str, fleetmind_task_id: str) -> None:
    """Remember that ``fleetmind_task_id`` runs the A2A task (before its first event)."""
    store.put_record(RUNS, a2a_task_id, {"fleetmind_task_id": fleetmind_task_id})


def linked_run(store: Store, a2a_task_id: str) -> str | None:
    """The fleetmind task that runs an A2A task, if one was started for it."""
    document = store.get_record(RUNS, a2a_task_id)
    found = (document or {}).get("fleetmind_task_id")
    return found if isinstance(found, str) else None


class _Owner(User):
    """The user a task belongs to, for work the server does on its own (a resumed task)."""

    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def is_authenticated(self) -> bool:
        return bool(self._name)

    @property
    def user_name(self) -> str:
        return self._name


def owner_context(owner: str) -> ServerCallContext:
    """A call context for ``owner``, for writes no request makes (resuming after a restart)."""
    return ServerCallContext(user=_Owner(owner))
