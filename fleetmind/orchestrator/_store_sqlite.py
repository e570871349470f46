"""The embedded store: every task and record in one SQLite file (WAL).

Several processes may share the file (orchestrator replicas on one machine): it keeps leases,
their expiry read from the machine's clock (``time.time()``), which every process there shares.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fleetmind._task_log import LogEntry
from fleetmind.errors import LeaseLost, StoreError, TaskNotFound
from fleetmind.orchestrator._store import (
    TASK_COLUMNS,
    Store,
    TaskRecord,
    dump_entry,
    entries_from_rows,
    json_fallback,
    lease_seconds,
    parse_record,
    record_from_row,
    record_text,
)
from fleetmind.orchestrator._store_sqlite_schema import migrate

_LEASED = "status = 'running' AND lease_expires_at IS NOT NULL"
"""A running task under a lease (live or lapsed): what the lease methods look at."""


class SQLiteStore(Store):
    """The embedded store: one SQLite file in WAL mode.

    ``synchronous=NORMAL`` keeps every committed entry across a killed process (``kill -9``);
    only a power cut may lose the last commits. Each :meth:`append` is one transaction, so the
    engine writes all entries of one scheduling step together. Writes that check something
    first (a version, a lease's epoch) take the file's write lock before they read, so that
    what they checked holds until they commit, whichever process shares the file.
    """

    shared = True

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        db: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=30
            )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            migrate(db, self.path)
        except (OSError, sqlite3.Error, StoreError) as exc:
            if db is not None:
                db.close()
            if isinstance(exc, StoreError):
                raise
            reason = _plain_reason(exc)
            raise StoreError(f"cannot open the store at {self.path}: {reason}") from exc
        self._db = db
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the database file."""
        self._db.close()

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """One write transaction holding the file's write lock from its start; rolled back
        if anything inside raises."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                yield self._db
                self._db.execute("COMMIT")
            except BaseException as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"cannot write to the store at {self.path}: {exc}") from exc
                raise

    def _missing(self, task_id: str) -> TaskNotFound:
        return TaskNotFound(f"no task {task_id!r} in the store at {self.path}")

    def create_task(
        self, record: TaskRecord, entries: Sequence[LogEntry] = (), *, lease_s: float | None = None
    ) -> None:
        expires_at: float | None = None
        epoch = record.lease_epoch
        if lease_s is not None:
            if record.owner is None:
                raise StoreError(f"task {record.id!r}: a lease needs the record's owner")
            lease_s = lease_seconds(lease_s)
            epoch = 1
        task_row = (
            record.id,
            record.name,
            record.status,
            record.created_at,
            record.updated_at,
            record.source,
            json.dumps(record.metadata, default=json_fallback),
            record.owner,
            epoch,
        )
        rows = [(record.id, n, e.kind, dump_entry(e)) for n, e in enumerate(entries, start=1)]
        with self._writing() as db:
            if lease_s is not None:
                expires_at = time.time() + lease_s
            db.execute(
                f"INSERT INTO tasks ({TASK_COLUMNS}, lease_expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*task_row, expires_at),
            )
            db.executemany(
                "INSERT INTO log (task_id, version, kind, body) VALUES (?, ?, ?, ?)", rows
            )

    def append(
        self,
        task_id: str,
        first_version: int,
        entries: Sequence[LogEntry],
        *,
        epoch: int | None = None,
    ) -> None:
        rows = [
            (task_id, first_version + i, entry.kind, dump_entry(entry))
            for i, entry in enumerate(entries)
        ]
        with self._writing() as db:
            row = db.execute(
                "SELECT owner, lease_epoch, lease_expires_at, "
                "(SELECT COALESCE(MAX(version), 0) FROM log WHERE task_id = tasks.id) "
                "FROM tasks WHERE id = ?",
                (task_id,),
            ).fetchone()
            if row is None:
                raise self._missing(task_id)
            _check_epoch(task_id, epoch, *row[:3])
            last = row[3]
            if first_version != last + 1:
                raise StoreError(
                    f"task {task_id!r}: log is at version {last}, got entries from {first_version}"
                )
            if rows:
                db.executemany(
                    "INSERT INTO log (task_id, version, kind, body) VALUES (?, ?, ?, ?)", rows
                )

    def set_status(self, task_id: str, status: str, *, epoch: int | None = None) -> None:
        with self._writing() as db:
            row = db.execute(
                "SELECT owner, lease_epoch, lease_expires_at FROM tasks WHERE id = ?", (task_id,)
            ).fetchone()
            if row is None:
                raise self._missing(task_id)
            _check_epoch(task_id, epoch, *row)
            db.execute(
                "UPDATE tasks SET status = ?, updated_at = ? WHERE id = ?",
                (status, time.time(), task_id),
            )

    def interrupt(self, task_id: str) -> str | None:
        with self._writing() as db:
            db.execute(
                "UPDATE tasks SET status = 'interrupted', updated_at = ? "
                "WHERE id = ? AND status = 'running'",
                (time.time(), task_id),
            )
            row = db.execute("SELECT status FROM tasks WHERE id = ?", (task_id,)).fetchone()
        return None if row is None else str(row[0])

    def sibling(self, suffix: str) -> Path:
        return self.path.with_name(self.path.stem + suffix)

    def resolve_id(self, prefix: str) -> str:
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM tasks WHERE id >= ? AND id < ? ORDER BY id LIMIT 2",
                (prefix, prefix + "\U0010ffff"),
            ).fetchall()
        if not rows:
            raise self._missing(prefix)
        if len(rows) > 1 and rows[0][0] != prefix:
            raise TaskNotFound(f"task id {prefix!r} is ambiguous; give more characters")
        return str(rows[0][0])

    def load(self, task_id: str) -> tuple[TaskRecord, list[LogEntry]]:
        with self._lock:
            self._db.execute("BEGIN")  # one snapshot: the record and its log as they stood
            try:
                row = self._db.execute(
                    f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?", (task_id,)
                ).fetchone()
                bodies = self._db.execute(
                    "SELECT version, body FROM log WHERE task_id = ? ORDER BY version", (task_id,)
                ).fetchall()
            finally:
                self._db.execute("COMMIT")
        if row is None:
            raise self._missing(task_id)
        return record_from_row(row), entries_from_rows(task_id, bodies)

    def tasks(self, limit: int = 50) -> list[TaskRecord]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {TASK_COLUMNS} FROM tasks ORDER BY created_at DESC LIMIT ?", (limit,)
            ).fetchall()
        return [record_from_row(row) for row in rows]

    # Leases ---------------------------------------------------------------------------------

    def claim(self, task_id: str, owner: str, lease_s: float) -> int | None:
        lease_s = lease_seconds(lease_s)
        with self._writing() as db:
            now = time.time()
            claimed = db.execute(
                "UPDATE tasks SET owner = ?, lease_epoch = lease_epoch + 1, lease_expires_at = ? "
                "WHERE id = ? AND status = 'running' AND (lease_expires_at IS NULL "
                "OR owner = ? OR lease_expires_at <= ?)",
                (owner, now + lease_s, task_id, owner, now),
            ).rowcount
            if not claimed:
                return None
            epoch = db.execute("SELECT lease_epoch FROM tasks WHERE id = ?", (task_id,)).fetchone()
        return int(epoch[0])

    def renew(self, owner: str, lease_s: float) -> dict[str, int]:
        lease_s = lease_seconds(lease_s)
        with self._writing() as db:
            db.execute(
                f"UPDATE tasks SET lease_expires_at = ? WHERE owner = ? AND {_LEASED}",
                (time.time() + lease_s, owner),
            )
            rows = db.execute(
                f"SELECT id, lease_epoch FROM tasks WHERE owner = ? AND {_LEASED}", (owner,)
            ).fetchall()
        return {str(task_id): int(epoch) for task_id, epoch in rows}

    def orphans(self, owner: str | None = None, limit: int = 100) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT id FROM tasks WHERE {_LEASED} AND (lease_expires_at <= ? OR owner = ?) "
                "ORDER BY lease_expires_at, id LIMIT ?",
                (time.time(), owner, limit),
            ).fetchall()
        return [str(row[0]) for row in rows]

    def release(self, task_id: str, owner: str, epoch: int) -> bool:
        with self._writing() as db:
            released = db.execute(
                "UPDATE tasks SET lease_expires_at = ? WHERE id = ? AND owner = ? "
                "AND lease_epoch = ? AND lease_expires_at IS NOT NULL",
                (float("-inf"), task_id, owner, epoch),
            ).rowcount
        return released > 0

    # Records --------------------------------------------------------------------------------

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


def _check_epoch(
    task_id: str, epoch: int | None, owner: str | None, current: int, expires_at: float | None
) -> None:
    """Refuse a write of ``epoch`` unless the task is leased at exactly that epoch (a lapsed
    lease no one claimed still lets its epoch write)."""
    if epoch is None:
        return
    if expires_at is None or current != epoch:
        now = "no lease" if expires_at is None else f"epoch {current} ({owner})"
        raise LeaseLost(f"task {task_id!r} is at {now}: epoch {epoch} may not write it")


def _plain_reason(exc: Exception) -> str:
    """Why a file could not be opened, in words (no "[Errno 20]"), naming the path at fault."""
    if not isinstance(exc, OSError) or not exc.strerror:
        return str(exc)
    if isinstance(exc, FileExistsError) and exc.filename:
        return f"{exc.filename} is a file, not a directory"
    return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
