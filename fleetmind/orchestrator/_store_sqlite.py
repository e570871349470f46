"""The embedded store: every task and record in one SQLite file (WAL)."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fleetmind._task_log import LogEntry, log_entry_adapter
from fleetmind.errors import StoreError, TaskNotFound
from fleetmind.orchestrator._store import (
    Store,
    TaskRecord,
    dump_entry,
    json_fallback,
    parse_record,
    record_text,
)

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

    def create_task(
        self, record: TaskRecord, entries: Sequence[LogEntry] = (), *, lease_s: float | None = None
    ) -> None:
        task_row = (
            record.id,
            record.name,
            record.status,
            record.created_at,
            record.updated_at,
            record.source,
            json.dumps(record.metadata, default=json_fallback),
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

    def append(
        self,
        task_id: str,
        first_version: int,
        entries: Sequence[LogEntry],
        *,
        epoch: int | None = None,
    ) -> None:
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

    def set_status(self, task_id: str, status: str, *, epoch: int | None = None) -> None:
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
        return None if row is None else parse_record(namespace, key, row[0])

    def records(self, namespace: str, prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT key, body FROM records WHERE namespace = ? AND key >= ? AND key < ? "
                "ORDER BY key",
                (namespace, prefix, prefix + "\U0010ffff"),
            ).fetchall()
        return [(key, parse_record(namespace, key, body)) for key, body in rows]

    def delete_record(self, namespace: str, key: str) -> bool:
        with self._lock:
            try:
                cursor = self._db.execute(
                    "DELETE FROM records WHERE namespace = ? AND key = ?", (namespace, key)
                )
            except sqlite3.Error as exc:
                raise StoreError(f"cannot write to the store at {self.path}: {exc}") from exc
        return cursor.rowcount > 0


def _plain_reason(exc: Exception) -> str:
    """Why a file could not be opened, in words (no "[Errno 20]"), naming the path at fault."""
    if not isinstance(exc, OSError) or not exc.strerror:
        return str(exc)
    if isinstance(exc, FileExistsError) and exc.filename:
        return f"{exc.filename} is a file, not a directory"
    return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
