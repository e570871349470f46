"""The durable store: every task's log, written before the engine acts on it.

A task is a row of metadata plus its append-only log of entries; the graph is rebuilt by
replaying that log (see :meth:`TaskGraph.from_log`). :class:`SQLiteStore` is the embedded
default (one file, WAL); :class:`InMemoryStore` keeps nothing across processes;
:class:`PostgresStore` is shared by orchestrator replicas. Any subclass of :class:`Store` can
back a fleet.

Replicas sharing a store drive each running task through a *lease* (:meth:`Store.claim`): one
owner at a time, renewed by heartbeats, taken over by another replica once it lapses. Every
claim starts a new *epoch*, and the owner's writes carry theirs (``epoch=``): a write of an
earlier epoch is refused with :class:`~fleetmind.errors.LeaseLost`, so an owner that was
presumed dead and comes back can never drive a task another replica took over (fencing).

Beside the tasks, a store keeps *records*: JSON documents by ``(namespace, key)``, which the
protocol servers use for their own state (an A2A task, a webhook's address), so that it lasts
exactly as long as the fleet's tasks do.
"""

from __future__ import annotations

import abc
import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fleetmind._task_log import LogEntry, log_entry_adapter
from fleetmind.errors import StoreError, TaskNotFound


class TaskRecord(BaseModel):
    """What the store knows about a task besides its log."""

    model_config = ConfigDict(extra="forbid")

    id: str
    name: str
    status: str = "running"
    """running, interrupted (stopped by its user; resumable), done, failed or cancelled."""
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)
    source: str | None = None
    """Where the task came from (a task file or Python module), so it can be resumed."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    owner: str | None = None
    """The replica whose lease drives the task; None for a task that was never leased (one
    process runs it, as with the embedded store)."""
    lease_epoch: int = 0
    """How many times the task has been claimed: the epoch its owner's writes must carry."""


class Store(abc.ABC):
    """Where tasks and their logs live.

    Five methods must be written; :meth:`interrupt`, :meth:`resolve_id`, :meth:`sibling` and
    the record methods (:meth:`put_record`, :meth:`get_record`, :meth:`records`,
    :meth:`delete_record`) have defaults that suit a store that keeps no files and matches ids
    exactly. A durable store overrides the record methods too, writing records as durably as
    its tasks. A store that replicas may share overrides the lease methods (:meth:`claim`,
    :meth:`renew`, :meth:`orphans`, :meth:`release`; :attr:`shared` true) and honours
    ``lease_s`` and ``epoch`` in its writes; the others never receive them.
    """

    shared: bool = False
    """Whether several processes (orchestrator replicas) may share this store: it keeps
    leases and fences writes by epoch."""

    @abc.abstractmethod
    def create_task(
        self, record: TaskRecord, entries: Sequence[LogEntry] = (), *, lease_s: float | None = None
    ) -> None:
        """Register a new task with the first entries of its log, in one transaction (a task
        is never stored without its graph). With ``lease_s`` (a shared store only), the task
        starts leased to ``record.owner`` at epoch 1 for that many seconds of the store's
        clock."""

    @abc.abstractmethod
    def append(
        self,
        task_id: str,
        first_version: int,
        entries: Sequence[LogEntry],
        *,
        epoch: int | None = None,
    ) -> None:
        """Append entries to a task's log; ``first_version`` is the first entry's version.

        Raises:
            LeaseLost: ``epoch`` is given and the task's lease is at another epoch now.
        """

    @abc.abstractmethod
    def set_status(self, task_id: str, status: str, *, epoch: int | None = None) -> None:
        """Record the task's status (running, interrupted, done, failed, cancelled).

        Raises:
            LeaseLost: ``epoch`` is given and the task's lease is at another epoch now.
        """

    async def append_async(
        self,
        task_id: str,
        first_version: int,
        entries: Sequence[LogEntry],
        *,
        epoch: int | None = None,
    ) -> None:
        """:meth:`append`, for the engine's event loop. A store whose writes leave the process
        overrides it (to wait without blocking the loop, and to commit the writes of many
        tasks together); this default writes at once, as a local file is written faster than
        a thread could be handed the work.

        A write whose caller was cancelled after the store sent it, or that ended in
        :class:`~fleetmind.errors.StoreUnavailable` (the server went out of reach), may still
        have landed. That is safe: the task's versions refuse a second copy of the entries,
        and a later lease epoch refuses the writes of a replica that lost the task."""
        if epoch is None:
            self.append(task_id, first_version, entries)
        else:
            self.append(task_id, first_version, entries, epoch=epoch)

    async def set_status_async(
        self, task_id: str, status: str, *, epoch: int | None = None
    ) -> None:
        """:meth:`set_status`, for the engine's event loop (see :meth:`append_async`)."""
        if epoch is None:
            self.set_status(task_id, status)
        else:
            self.set_status(task_id, status, epoch=epoch)

    @abc.abstractmethod
    def load(self, task_id: str) -> tuple[TaskRecord, list[LogEntry]]:
        """A task's record and its whole log (``TaskNotFound`` if there is none)."""

    @abc.abstractmethod
    def tasks(self, limit: int = 50) -> list[TaskRecord]:
        """The most recent tasks, newest first."""

    def interrupt(self, task_id: str) -> str | None:
        """Mark a running task interrupted: its user stopped it and ``resume`` continues it.

        Returns the task's status afterwards (``interrupted``, or how it had already ended),
        or None when there is no such task. This default reads the task first; a store that
        can should check and write in one step.
        """
        try:
            record, _ = self.load(task_id)
        except TaskNotFound:
            return None
        if record.status == "running":
            self.set_status(task_id, "interrupted")
            return "interrupted"
        return record.status

    def resolve_id(self, prefix: str) -> str:
        """The full id of the one task whose id starts with ``prefix`` (an exact id wins).

        This default knows exact ids only.

        Raises:
            TaskNotFound: no task has that id or prefix, or several have the prefix.
        """
        self.load(prefix)
        return prefix

    def sibling(self, suffix: str) -> Path | None:
        """Where a file that belongs with the store goes (an agent memory, LLM checkpoints):
        beside it, its name ending in ``suffix`` (``fleet.db`` -> ``fleet.memory.db``); None
        for a store that keeps no files, whose companions stay in memory too."""
        return None

    def close(self) -> None:
        """Let go of what the store holds (a file, a server's connections), once its writes
        are done; closing twice is harmless. This default holds nothing."""
        return None

    # Leases: which replica drives a running task -------------------------------------------

    def claim(self, task_id: str, owner: str, lease_s: float) -> int | None:
        """Lease a running task to ``owner`` for ``lease_s`` seconds of the store's clock.

        The lease is taken when it is free, lapsed, or already ``owner``'s (a restarted
        replica claiming its own tasks back), and every claim starts a new epoch, so that the
        writes of whoever drove the task before are refused from now on.

        Returns:
            The new epoch, or None: the task is not running, or another owner's lease on it
            has not lapsed.
        """
        raise StoreError(f"{type(self).__name__} cannot be shared by replicas: it keeps no leases")

    def renew(self, owner: str, lease_s: float) -> dict[str, int]:
        """Extend every lease ``owner`` holds on a running task to ``lease_s`` from now.

        Returns:
            The tasks ``owner`` still holds, with their epochs; one it thought it held and is
            missing here was taken over (or ended).
        """
        raise StoreError(f"{type(self).__name__} cannot be shared by replicas: it keeps no leases")

    def orphans(self, owner: str | None = None, limit: int = 100) -> list[str]:
        """Running tasks whose lease has lapsed (and, with ``owner``, those leased to it: a
        restarted replica's own), the longest lapsed first. A task that was never leased is
        no one's orphan."""
        raise StoreError(f"{type(self).__name__} cannot be shared by replicas: it keeps no leases")

    def release(self, task_id: str, owner: str, epoch: int) -> bool:
        """End ``owner``'s lease at ``epoch`` now (a replica stopping cleanly), so that
        another replica takes the task over at once; whether it was held so."""
        raise StoreError(f"{type(self).__name__} cannot be shared by replicas: it keeps no leases")

    # Records: JSON documents by (namespace, key) ------------------------------------------

    def put_record(self, namespace: str, key: str, document: Mapping[str, Any]) -> None:
        """Keep ``document`` under ``(namespace, key)``, replacing what was there.

        This default keeps records in this process only.

        Raises:
            StoreError: the document is not a JSON object.
        """
        self._memory_records()[(namespace, key)] = record_text(document)

    def get_record(self, namespace: str, key: str) -> dict[str, Any] | None:
        """The document kept under ``(namespace, key)`` (a fresh copy), or None."""
        text = self._memory_records().get((namespace, key))
        return None if text is None else parse_record(namespace, key, text)

    def records(self, namespace: str, prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
        """Every ``(key, document)`` of a namespace whose key starts with ``prefix``, by key."""
        kept = self._memory_records()
        return [
            (key, parse_record(namespace, key, kept[(space, key)]))
            for space, key in sorted(kept)
            if space == namespace and key.startswith(prefix)
        ]

    def delete_record(self, namespace: str, key: str) -> bool:
        """Forget the document under ``(namespace, key)``; whether there was one."""
        return self._memory_records().pop((namespace, key), None) is not None

    def _memory_records(self) -> dict[tuple[str, str], str]:
        """The records of the defaults, made on first use (subclasses need not call an
        ``__init__`` of this class)."""
        kept: dict[tuple[str, str], str] = vars(self).setdefault("_kept_records", {})
        return kept


def record_text(document: Mapping[str, Any]) -> str:
    """A record's document as JSON text (``StoreError`` unless it is a JSON object)."""
    if not isinstance(document, Mapping):
        raise StoreError(f"a record is a JSON object, not {type(document).__name__}")
    try:
        return json.dumps(document, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"a record must hold JSON only: {exc}") from exc


def parse_record(namespace: str, key: str, text: str) -> dict[str, Any]:
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise StoreError(f"record {key!r} in {namespace!r} is corrupt")
    return document


def lease_seconds(lease_s: float) -> float:
    """``lease_s`` checked: a lease lasts a positive, finite number of seconds."""
    if not (isinstance(lease_s, int | float) and math.isfinite(lease_s) and lease_s > 0):
        raise StoreError(f"a lease lasts a positive number of seconds, not {lease_s!r}")
    return float(lease_s)


TASK_COLUMNS = "id, name, status, created_at, updated_at, source, metadata, owner, lease_epoch"
"""The columns of a task's row in a SQL store, in the order :func:`record_from_row` reads."""


def record_from_row(row: Sequence[Any]) -> TaskRecord:
    """A task record from a SQL row of :data:`TASK_COLUMNS` (metadata as JSON text)."""
    return TaskRecord(
        id=row[0],
        name=row[1],
        status=row[2],
        created_at=row[3],
        updated_at=row[4],
        source=row[5],
        metadata=json.loads(row[6] or "{}"),
        owner=row[7],
        lease_epoch=row[8],
    )


def entries_from_rows(task_id: str, rows: Iterable[tuple[int, str]]) -> list[LogEntry]:
    """A task's log from its stored ``(version, JSON text)`` rows in version order; a gap or an
    entry that does not parse is a ``StoreError``."""
    entries: list[LogEntry] = []
    for expected, (version, body) in enumerate(rows, start=1):
        if version != expected:
            raise StoreError(f"task {task_id!r}: log entry {expected} is missing")
        try:
            entries.append(log_entry_adapter.validate_json(body))
        except ValidationError as exc:
            raise StoreError(f"task {task_id!r}: log entry {version} is corrupt") from exc
    return entries


def json_fallback(value: Any) -> Any:
    """How outputs that JSON does not know are stored: their dict form, else their text."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    return repr(value)


def dump_entry(entry: LogEntry) -> str:
    """One log entry as JSON text."""
    return entry.model_dump_json(fallback=json_fallback)
