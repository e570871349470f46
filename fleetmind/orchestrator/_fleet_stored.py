"""A fleet's tasks in its store: the record of a new one, what a fleet checks and writes
before an engine resumes a stored one, and the memory it keeps beside the store.

These run in a worker thread where the store is across a network (a replica's takeover, its
``resume``): they only read and write the store and rebuild the graph, and touch nothing of
the event loop's. A replica claims the task first, so that every write after carries the
epoch of its claim.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
from pathlib import Path
from typing import Any

from fleetmind._ids import new_task_id
from fleetmind._task_log import LogEntry, TaskCancelledEntry
from fleetmind.agents import IncomingMessage
from fleetmind.errors import FleetStateError, GraphError, MalformedMessage
from fleetmind.memory import MemoryStore
from fleetmind.orchestrator._graph import TaskGraph
from fleetmind.orchestrator._ownership import Replica
from fleetmind.orchestrator._store import Store, TaskRecord

log = logging.getLogger("fleetmind.orchestrator._fleet")

MESSAGE_KEY = "message"
"""The task metadata key that keeps the protocol message a task was started from."""


def new_task(
    graph: TaskGraph,
    task_id: str | None,
    source: str | None,
    metadata: dict[str, Any] | None,
    message: IncomingMessage | None,
    replica: Replica | None,
) -> tuple[TaskRecord, TaskGraph]:
    """The record of a new task (a replica's owned by it) and the copy of ``graph`` it runs
    (the caller's graph stays as it was).

    Raises:
        GraphError: the graph is empty, or has run already.
    """
    if len(graph) == 0:
        raise GraphError(f"task graph {graph.name!r} has no subtasks")
    if graph.is_finished or graph.running_ids():
        raise GraphError(f"task graph {graph.name!r} has already run; build a new one")
    task_id = task_id or new_task_id()
    if message is not None:  # kept with the task, so that a resumed task has it too
        metadata = {**(metadata or {}), MESSAGE_KEY: message.to_json()}
    record = TaskRecord(id=task_id, name=graph.name, source=source, metadata=metadata or {})
    if replica is not None:
        record.owner = replica.id
    return record, graph.copy()


def check_not_ended(record: TaskRecord) -> None:
    """Raise FleetStateError for a task that has ended (nothing to resume)."""
    if record.status not in ("running", "interrupted"):
        raise FleetStateError(f"task {record.id} has already ended ({record.status})")


def local_process_owner() -> str:
    """The owner id under which this process leases the tasks it runs or resumes without
    being an orchestrator replica: ``run-<host>-<pid>``."""
    return f"run-{_host_token()}-{os.getpid()}"


def _host_token() -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", socket.gethostname()).strip("-")[:40] or "host"


def local_process_gone(owner: str | None) -> bool:
    """Whether ``owner`` names a process of this host (see :func:`local_process_owner`) that
    no longer runs: its leases need not be waited out (it was killed, say, a moment ago)."""
    prefix = f"run-{_host_token()}-"
    if owner is None or not owner.startswith(prefix) or not owner[len(prefix) :].isdigit():
        return False
    try:
        os.kill(int(owner[len(prefix) :]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    return False


def claim_resumable(store: Store, replica: Replica | None, record: TaskRecord) -> int | None:
    """A replica's claim on a stored task it is to resume (an interrupted one is set running
    first: only a running task can be claimed); None without a replica.

    Raises:
        FleetStateError: the task has ended, or another replica drives it.
    """
    check_not_ended(record)
    if replica is None:
        return None
    if record.status == "interrupted":  # no one drives it: there is no lease to respect
        store.set_status(record.id, "running")
    epoch = store.claim(record.id, replica.id, replica.lease_s)
    if epoch is None:
        held = store.load(record.id)[0]
        owner = held.owner
        if owner is not None and local_process_gone(owner):
            # A process of this host that is gone holds it: its lease is let go at once.
            store.release(record.id, owner, held.lease_epoch)
            epoch = store.claim(record.id, replica.id, replica.lease_s)
    if epoch is None:
        raise FleetStateError(
            f"task {record.id} is running in another process (owner {owner}); it continues there"
        )
    return epoch


def prepare_resume(
    store: Store, record: TaskRecord, entries: list[LogEntry], epoch: int | None
) -> tuple[TaskGraph, float]:
    """The graph a stored task resumes with, and when its process stopped; what the store
    says of the task is set right first (with the epoch of a replica's claim).

    Raises:
        FleetStateError: the task has ended (or has no graph to run).
    """
    task_id = record.id
    fence = {} if epoch is None else {"epoch": epoch}
    check_not_ended(record)
    if not entries:
        # Stored by an older version without its graph: there is nothing to run.
        store.set_status(task_id, "failed", **fence)
        raise FleetStateError(f"task {task_id} has no log entries: nothing to resume")
    graph = TaskGraph.from_log(entries, name=record.name)
    if graph.is_finished:
        # The process died between the last entry and the status update.
        store.set_status(task_id, graph.status, **fence)
        raise FleetStateError(f"task {task_id} has already ended ({graph.status})")
    # It stopped when interrupted, or else (a crash) after the last thing it logged.
    stopped_at = max(e.at for e in entries)
    if record.status == "interrupted":
        stopped_at = max(stopped_at, record.updated_at)
        store.set_status(task_id, "running", **fence)
    return graph, stopped_at


def cancel_stored(store: Store, replica: Replica | None, task_id: str, reason: str) -> str:
    """Cancel a stored task that no process drives (its process crashed, or was interrupted):
    its log ends with the cancel, as a running task's would, and its status is ``cancelled``.
    A replica claims it first, so that a task another process still drives is left to it.

    Returns the task's status now: ``cancelled``, or how it had ended meanwhile.

    Raises:
        FleetStateError: the task has ended, or another process drives it.
    """
    record, entries = store.load(task_id)
    epoch = claim_resumable(store, replica, record)
    fence = {} if epoch is None else {"epoch": epoch}
    graph = TaskGraph.from_log(entries, name=record.name) if entries else None
    try:
        if graph is not None and graph.is_finished:  # ended, but its status was never written
            store.set_status(task_id, graph.status, **fence)
            return graph.status
        if graph is not None:
            entry = TaskCancelledEntry(reason=reason, at=time.time())
            store.append(task_id, graph.version + 1, [entry], **fence)
        store.set_status(task_id, "cancelled", **fence)
        return "cancelled"
    finally:
        if replica is not None and epoch is not None:
            store.release(task_id, replica.id, epoch)


def stored_message(metadata: dict[str, Any]) -> IncomingMessage | None:
    """The message kept with a task, or None (none kept, or kept by a version that wrote it
    otherwise: the task runs on without it)."""
    value = metadata.get(MESSAGE_KEY)
    if value is None:
        return None
    try:
        return IncomingMessage.from_json(value)
    except MalformedMessage as exc:
        log.warning("the message kept with a task cannot be read: %s", exc)
        return None


def open_memory(memory: MemoryStore | str | Path | bool | None, store: Store) -> MemoryStore | None:
    """The fleet's memory store from what a user passed (True: beside the task store)."""
    if memory is None or memory is False:
        return None
    if isinstance(memory, MemoryStore):
        return memory
    from fleetmind.orchestrator._embedding import SentenceEmbedder

    embed = SentenceEmbedder().embed
    if memory is True:
        return MemoryStore(store.sibling(".memory.db"), embed)
    return MemoryStore(memory, embed)
