"""The durable store: every task's log, written before the engine acts on it.

A task is a row of metadata plus its append-only log of entries; the graph is rebuilt by
replaying that log (see :meth:`TaskGraph.from_log`). :class:`SQLiteStore` is the embedded
default (one file, WAL); :class:`InMemoryStore` keeps nothing across processes. Any subclass of
:class:`Store` can back a fleet (a PostgreSQL store for several replicas, later).

Beside the tasks, a store keeps *records*: JSON documents by ``(namespace, key)``, which the
protocol servers use for their own state (an A2A task, a webhook's address), so that it lasts
exactly as long as the fleet's tasks do.
"""

from __future__ import annotations

import abc
import json
import sqlite3
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fleetmind._task_log import LogEntry, log_entry_adapter
from fleetmind.errors import ConfigError, StoreError, TaskNotFound


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


class Store(abc.ABC):
    """Where tasks and their logs live.

    Five methods must be written; :meth:`interrupt`, :meth:`resolve_id`, :meth:`sibling` and
    the record methods (:meth:`put_record`, :meth:`get_record`, :meth:`records`,
    :meth:`delete_record`) have defaults that suit a store that keeps no files and matches ids
    exactly. A durable store overrides the record methods too, writing records as durably as
    its tasks.
    """

    @abc.abstractmethod
    def create_task(self, record: TaskRecord, entries: Sequence[LogEntry] = ()) -> None:
        """Register a new task with the first entries of its log, in one transaction (a task
        is never stored without its graph)."""

    @abc.abstractmethod
    def append(self, task_id: str, first_version: int, entries: Sequence[LogEntry]) -> None:
        """Append entries to a task's log; ``first_version`` is the first entry's version."""

    @abc.abstractmethod
    def set_status(self, task_id: str, status: str) -> None:
        """Record the task's status (running, interrupted, done, failed, cancelled)."""

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
        return None if text is None else _parse_record(namespace, key, text)

    def records(self, namespace: str, prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
        """Every ``(key, document)`` of a namespace whose key starts with ``prefix``, by key."""
        kept = self._memory_records()
        return [
            (key, _parse_record(namespace, key, kept[(space, key)]))
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


def _parse_record(namespace: str, key: str, text: str) -> dict[str, Any]:
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise StoreError(f"record {key!r} in {namespace!r} is corrupt")
    return document


def _json_fallback(value: Any) -> Any:
    """How outputs that JSON does not know are stored: their dict form, else their text."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    return repr(value)


def dump_entry(entry: LogEntry) -> str:
    """One log entry as JSON text."""
    return entry.model_dump_json(fallback=_json_fallback)


class InMemoryStore(Store):
    """A store that lives in this process only (the SDK's default when no path is given)."""

    def __init__(self) -> None:
        self._records: dict[str, TaskRecord] = {}
        self._logs: dict[str, list[LogEntry]] = {}

    def create_task(self, record: TaskRecord, entries: Sequence[LogEntry] = ()) -> None:
        if record.id in self._records:
            raise StoreError(f"task {record.id!r} already exists")
        self._records[record.id] = record
        self._logs[record.id] = list(entries)

    def append(self, task_id: str, first_version: int, entries: Sequence[LogEntry]) -> None:
        log = self._logs.get(task_id)
        if log is None:
            raise TaskNotFound(f"no task {task_id!r} in the store")
        if first_version != len(log) + 1:
            raise StoreError(
                f"task {task_id!r}: log is at version {len(log)}, got entries from {first_version}"
            )
        log.extend(entries)

    def set_status(self, task_id: str, status: str) -> None:
        record = self._records.get(task_id)
        if record is None:
            raise TaskNotFound(f"no task {task_id!r} in the store")
        self._records[task_id] = record.model_copy(
            update={"status": status, "updated_at": time.time()}
        )

    def load(self, task_id: str) -> tuple[TaskRecord, list[LogEntry]]:
        if task_id not in self._records:
            raise TaskNotFound(f"no task {task_id!r} in the store")
        return self._records[task_id], list(self._logs[task_id])

    def tasks(self, limit: int = 50) -> list[TaskRecord]:
        records = sorted(self._records.values(), key=lambda r: r.created_at, reverse=True)
        return records[:limit]

    def resolve_id(self, prefix: str) -> str:
        if prefix in self._records:
            return prefix
        found = [task_id for task_id in self._records if task_id.startswith(prefix)]
        if not found:
            raise TaskNotFound(f"no task {prefix!r} in the store")
        if len(found) > 1:
            raise TaskNotFound(f"task id {prefix!r} is ambiguous; give more characters")
        return found[0]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    source TEXT,
    metadata TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS log (
    task_id TEXT NOT NULL REFERENCES tasks(id),
    version INTEGER NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (task_id, version)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tasks_by_created ON tasks(created_at);
CREATE TABLE IF NOT EXISTS records (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    body TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;
"""


class SQLiteStore(Store):
    """The embedded store: one SQLite file in WAL mode.

    ``synchronous=NORMAL`` keeps every committed entry across a killed process (``kill -9``);
    only a power cut may lose the last commits. Each :meth:`append` is one transaction, so the
    engine writes all entries of one scheduling step together.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=30
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            reason = _plain_reason(exc)
            raise StoreError(f"cannot open the store at {self.path}: {reason}") from exc
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the database file."""
        self._db.close()

    def create_task(self, record: TaskRecord, entries: Sequence[LogEntry] = ()) -> None:
        task_row = (
            record.id,
            record.name,
            record.status,
            record.created_at,
            record.updated_at,
            record.source,
            json.dumps(record.metadata, default=_json_fallback),
        )
        rows = [(record.id, n, e.kind, dump_entry(e)) for n, e in enumerate(entries, start=1)]
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(
                    "INSERT INTO tasks (id, name, status, created_at, updated_at, source, "
                    "metadata) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    task_row,
                )
                self._db.executemany(
                    "INSERT INTO log (task_id, version, kind, body) VALUES (?, ?, ?, ?)", rows
                )
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise StoreError(f"cannot write to the store at {self.path}: {exc}") from exc

    def append(self, task_id: str, first_version: int, entries: Sequence[LogEntry]) -> None:
        if not entries:
            return
        rows = [
            (task_id, first_version + i, entry.kind, dump_entry(entry))
            for i, entry in enumerate(entries)
        ]
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                exists, last = self._db.execute(
                    "SELECT EXISTS (SELECT 1 FROM tasks WHERE id = ?), "
                    "(SELECT COALESCE(MAX(version), 0) FROM log WHERE task_id = ?)",
                    (task_id, task_id),
                ).fetchone()
                if not exists:
                    raise TaskNotFound(f"no task {task_id!r} in the store at {self.path}")
                if first_version != last + 1:
                    raise StoreError(
                        f"task {task_id!r}: log is at version {last}, "
                        f"got entries from {first_version}"
                    )
                self._db.executemany(
                    "INSERT INTO log (task_id, version, kind, body) VALUES (?, ?, ?, ?)", rows
                )
                self._db.execute("COMMIT")
            except (sqlite3.Error, StoreError) as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if isinstance(exc, StoreError):
                    raise
                raise StoreError(f"cannot write to the store at {self.path}: {exc}") from exc

    def set_status(self, task_id: str, status: str) -> None:
        with self._lock:
            try:  # one statement: a transaction of its own
                cursor = self._db.execute(
                    "UPDATE tasks SET status = ?, updated_at = ? WHERE id = ?",
                    (status, time.time(), task_id),
                )
            except sqlite3.Error as exc:
                raise StoreError(f"cannot write to the store at {self.path}: {exc}") from exc
        if cursor.rowcount == 0:
            raise TaskNotFound(f"no task {task_id!r} in the store at {self.path}")

    def interrupt(self, task_id: str) -> str | None:
        with self._lock:
            try:
                self._db.execute(
                    "UPDATE tasks SET status = 'interrupted', updated_at = ? "
                    "WHERE id = ? AND status = 'running'",
                    (time.time(), task_id),
                )
                row = self._db.execute(
                    "SELECT status FROM tasks WHERE id = ?", (task_id,)
                ).fetchone()
            except sqlite3.Error as exc:
                raise StoreError(f"cannot write to the store at {self.path}: {exc}") from exc
        return None if row is None else str(row[0])

    def _record(self, row: tuple[Any, ...]) -> TaskRecord:
        return TaskRecord(
            id=row[0],
            name=row[1],
            status=row[2],
            created_at=row[3],
            updated_at=row[4],
            source=row[5],
            metadata=json.loads(row[6] or "{}"),
        )

    def sibling(self, suffix: str) -> Path:
        return self.path.with_name(self.path.stem + suffix)

    def resolve_id(self, prefix: str) -> str:
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM tasks WHERE id >= ? AND id < ? ORDER BY id LIMIT 2",
                (prefix, prefix + "\U0010ffff"),
            ).fetchall()
        if not rows:
            raise TaskNotFound(f"no task {prefix!r} in the store at {self.path}")
        if len(rows) > 1 and rows[0][0] != prefix:
            raise TaskNotFound(f"task id {prefix!r} is ambiguous; give more characters")
        return str(rows[0][0])

    def load(self, task_id: str) -> tuple[TaskRecord, list[LogEntry]]:
        with self._lock:
            row = self._db.execute(
                "SELECT id, name, status, created_at, updated_at, source, metadata "
                "FROM tasks WHERE id = ?",
                (task_id,),
            ).fetchone()
            if row is None:
                raise TaskNotFound(f"no task {task_id!r} in the store at {self.path}")
            bodies = self._db.execute(
                "SELECT version, body FROM log WHERE task_id = ? ORDER BY version", (task_id,)
            ).fetchall()
        entries: list[LogEntry] = []
        for expected, (version, body) in enumerate(bodies, start=1):
            if version != expected:
                raise StoreError(f"task {task_id!r}: log entry {expected} is missing")
            try:
                entries.append(log_entry_adapter.validate_json(body))
            except ValidationError as exc:
                raise StoreError(f"task {task_id!r}: log entry {version} is corrupt") from exc
        return self._record(row), entries

    def tasks(self, limit: int = 50) -> list[TaskRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, name, status, created_at, updated_at, source, metadata "
                "FROM tasks ORDER BY created_at DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [self._record(row) for row in rows]

    def put_record(self, namespace: str, key: str, document: Mapping[str, Any]) -> None:
        row = (namespace, key, record_text(document), time.time())
        with self._lock:
            try:  # one statement outside a transaction is a transaction of its own
                self._db.execute(
                    "INSERT INTO records (namespace, key, body, updated_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (namespace, key) DO UPDATE SET body = excluded.body, "
                    "updated_at = excluded.updated_at",
                    row,
                )
            except sqlite3.Error as exc:
                raise StoreError(f"cannot write to the store at {self.path}: {exc}") from exc

    def get_record(self, namespace: str, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT body FROM records WHERE namespace = ? AND key = ?", (namespace, key)
            ).fetchone()
        return None if row is None else _parse_record(namespace, key, row[0])

    def records(self, namespace: str, prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT key, body FROM records WHERE namespace = ? AND key >= ? AND key < ? "
                "ORDER BY key",
                (namespace, prefix, prefix + "\U0010ffff"),
            ).fetchall()
        return [(key, _parse_record(namespace, key, body)) for key, body in rows]

    def delete_record(self, namespace: str, key: str) -> bool:
        with self._lock:
            try:
                cursor = self._db.execute(
                    "DELETE FROM records WHERE namespace = ? AND key = ?", (namespace, key)
                )
            except sqlite3.Error as exc:
                raise StoreError(f"cannot write to the store at {self.path}: {exc}") from exc
        return cursor.rowcount > 0


_STORE_METHODS = ("create_task", "append", "set_status", "load", "tasks")


class _Delegating(Store):
    """A store written before :class:`Store` was a base class: its five methods are used, and
    the defaults of the rest."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def create_task(self, record: TaskRecord, entries: Sequence[LogEntry] = ()) -> None:
        self._inner.create_task(record, entries)

    def append(self, task_id: str, first_version: int, entries: Sequence[LogEntry]) -> None:
        self._inner.append(task_id, first_version, entries)

    def set_status(self, task_id: str, status: str) -> None:
        self._inner.set_status(task_id, status)

    def load(self, task_id: str) -> tuple[TaskRecord, list[LogEntry]]:
        found: tuple[TaskRecord, list[LogEntry]] = self._inner.load(task_id)
        return found

    def tasks(self, limit: int = 50) -> list[TaskRecord]:
        records: list[TaskRecord] = self._inner.tasks(limit)
        return records


def _plain_reason(exc: Exception) -> str:
    """Why a file could not be opened, in words (no "[Errno 20]"), naming the path at fault."""
    if not isinstance(exc, OSError) or not exc.strerror:
        return str(exc)
    if isinstance(exc, FileExistsError) and exc.filename:
        return f"{exc.filename} is a file, not a directory"
    return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror


def open_store(target: object) -> Store:
    """A store from what a user passed: a Store, a path to a SQLite file, or None (memory).

    Raises:
        ConfigError: ``target`` is none of these.
    """
    if target is None:
        return InMemoryStore()
    if isinstance(target, str | Path):
        return SQLiteStore(target)
    if isinstance(target, Store):
        return target
    if not all(callable(getattr(target, name, None)) for name in _STORE_METHODS):
        raise ConfigError(
            f"{type(target).__name__} is not a store: give a path, or subclass "
            "fleetmind.orchestrator.Store"
        )
    warnings.warn(
        f"{type(target).__name__} does not subclass fleetmind.orchestrator.Store; subclass it "
        "so that the fleet sees every method it may call",
        DeprecationWarning,
        stacklevel=3,
    )
    return _Delegating(target)
