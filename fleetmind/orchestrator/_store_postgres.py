"""The store replicas share: every task, log and record in one PostgreSQL database.

Leases run on the server's clock (``clock_timestamp()``), so replicas on machines whose clocks
disagree still agree on when a lease lapses. Log entries are the same JSON text as in SQLite.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import json
import math
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from fleetmind._extras import require

require("psycopg", "postgres", "a PostgreSQL store")
require("psycopg_pool", "postgres", "a PostgreSQL store")

from psycopg import errors  # noqa: E402

from fleetmind._task_log import LogEntry  # noqa: E402
from fleetmind.errors import StoreError, TaskNotFound  # noqa: E402
from fleetmind.orchestrator._store import (  # noqa: E402
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
from fleetmind.orchestrator._store_postgres_link import Connection, Link  # noqa: E402
from fleetmind.orchestrator._store_postgres_target import parse_target  # noqa: E402
from fleetmind.orchestrator._store_postgres_writer import GroupWriter, Write  # noqa: E402

_open_stores: weakref.WeakSet[PostgresStore] = weakref.WeakSet()
"""Stores not closed yet: closed at exit, so their queued writes are committed and their thread
does not die with a pending task (Python would report it)."""


@atexit.register
def _close_open_stores() -> None:
    for store in list(_open_stores):
        with contextlib.suppress(StoreError):
            store.close()


_CREATE = """
WITH task AS (
    INSERT INTO fleetmind_tasks (id, name, status, created_at, updated_at, source, metadata,
                                 owner, lease_epoch, lease_expires_at)
    VALUES (%(id)s, %(name)s, %(status)s, %(created_at)s, %(updated_at)s, %(source)s,
            %(metadata)s, %(owner)s, %(epoch)s,
            clock_timestamp() + make_interval(secs => %(lease_s)s::float8))
    RETURNING id
)
INSERT INTO fleetmind_log (task_id, version, kind, body)
SELECT task.id, v.version, v.kind, v.body
FROM task, unnest(%(versions)s::integer[], %(kinds)s::text[], %(bodies)s::text[])
    AS v(version, kind, body)
"""
_LOAD = f"""
SELECT {TASK_COLUMNS},
    ARRAY(SELECT version FROM fleetmind_log WHERE task_id = t.id ORDER BY version),
    ARRAY(SELECT body FROM fleetmind_log WHERE task_id = t.id ORDER BY version)
FROM fleetmind_tasks AS t WHERE id = %s
"""
_INTERRUPT = """
WITH changed AS (
    UPDATE fleetmind_tasks SET status = 'interrupted', updated_at = %(at)s
    WHERE id = %(id)s AND status = 'running' RETURNING status
)
SELECT COALESCE((SELECT status FROM changed),
                (SELECT status FROM fleetmind_tasks WHERE id = %(id)s))
"""
_CLAIM = """
UPDATE fleetmind_tasks
SET owner = %(owner)s, lease_epoch = lease_epoch + 1,
    lease_expires_at = clock_timestamp() + make_interval(secs => %(lease_s)s::float8)
WHERE id = %(id)s AND status = 'running'
    AND (lease_expires_at IS NULL OR owner = %(owner)s OR lease_expires_at <= clock_timestamp())
RETURNING lease_epoch
"""
_RENEW = """
UPDATE fleetmind_tasks AS t
SET lease_expires_at = clock_timestamp() + make_interval(secs => %(lease_s)s::float8)
FROM (
    SELECT id FROM fleetmind_tasks
    WHERE owner = %(owner)s AND status = 'running' AND lease_expires_at IS NOT NULL
    ORDER BY id FOR NO KEY UPDATE
) AS held
WHERE t.id = held.id
RETURNING t.id, t.lease_epoch
"""
"""Rows are locked in the order of their ids, as the writer locks them: no deadlock."""
_ORPHANS = """
SELECT id FROM fleetmind_tasks
WHERE status = 'running' AND lease_expires_at IS NOT NULL
    AND (lease_expires_at <= clock_timestamp() OR owner = %(owner)s)
ORDER BY lease_expires_at, id LIMIT %(limit)s
"""
_RELEASE = """
UPDATE fleetmind_tasks SET lease_expires_at = '-infinity'
WHERE id = %s AND owner = %s AND lease_epoch = %s AND lease_expires_at IS NOT NULL
"""
_PUT_RECORD = """
INSERT INTO fleetmind_records (namespace, key, body, updated_at) VALUES (%s, %s, %s, %s)
ON CONFLICT (namespace, key) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at
"""


class PostgresStore(Store):
    """A store in a PostgreSQL database, which orchestrator replicas share.

    The tables are made (and later migrated) when the store opens. Writes from every task are
    committed together in batches (group commit); while the server is out of reach (restarted,
    a connection dropped) reads and writes wait and try again, until ``reconnect_s`` after
    the server went out of reach; then they raise :class:`~fleetmind.errors.StoreUnavailable`.

    Args:
        url: ``postgresql://user[:password]@host[:port]/database`` (or ``postgres://``).
        pool_size: The most connections kept open to the server.
        reconnect_s: How long operations wait for a server out of reach before they fail
            (one window per outage, shared by every operation waiting through it).
        connect_timeout: How long the first connection may take before opening fails.
        read_only: Only to be read (listing tasks): a role with no more than SELECT on the
            tables opens it, and every write raises StoreError.

    Raises:
        StoreError: the URL is malformed, the server cannot be reached or refuses the user,
            the database is missing or newer than this code, or its user may not create or
            use the store's tables (each said in one line).
    """

    shared = True

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 4,
        reconnect_s: float = 60.0,
        connect_timeout: float = 10.0,
        read_only: bool = False,
    ) -> None:
        self._target = parse_target(url)
        if not isinstance(pool_size, int) or pool_size < 1:
            raise StoreError(f"a pool holds at least one connection, not {pool_size!r}")
        for name, value in (("reconnect_s", reconnect_s), ("connect_timeout", connect_timeout)):
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise StoreError(f"{name} is a number of seconds, not {value!r}")
        self._link = Link(
            self._target,
            pool_size=pool_size,
            reconnect_s=float(reconnect_s),
            connect_timeout=float(connect_timeout),
            read_only=read_only,
        )
        self._writer = GroupWriter(self._link)
        self._link.call(self._start_writer())
        _open_stores.add(self)

    async def _start_writer(self) -> None:
        self._writer.start()

    @property
    def where(self) -> str:
        """The store's server and database (``host:port/database``)."""
        return self._target.where

    @property
    def stats(self) -> dict[str, int]:
        """Counts so far: the write ``transactions`` committed and the ``writes`` in them
        (group commit), and the operations ``retried`` for a connection lost."""
        return {
            "transactions": self._writer.transactions,
            "writes": self._writer.writes,
            "retried": self._link.retried,
        }

    def close(self) -> None:
        """Commit the writes queued, close the connections and stop the store's thread."""
        _open_stores.discard(self)
        self._link.close(self._writer.stop)

    def __repr__(self) -> str:
        return f"PostgresStore({self._target.where!r})"

    # Tasks ------------------------------------------------------------------------------------

    def create_task(
        self, record: TaskRecord, entries: Sequence[LogEntry] = (), *, lease_s: float | None = None
    ) -> None:
        if lease_s is not None:
            lease_s = lease_seconds(lease_s)
            if record.owner is None:
                raise StoreError(f"task {record.id!r}: a lease needs the record's owner")
        bodies = [dump_entry(entry) for entry in entries]
        params: dict[str, Any] = {
            "id": record.id,
            "name": record.name,
            "status": record.status,
            "created_at": record.created_at,
            "updated_at": record.updated_at,
            "source": record.source,
            "metadata": json.dumps(record.metadata, default=json_fallback),
            "owner": record.owner,
            "epoch": record.lease_epoch if lease_s is None else 1,
            "lease_s": lease_s,
            "versions": list(range(1, len(bodies) + 1)),
            "kinds": [entry.kind for entry in entries],
            "bodies": bodies,
        }
        tries = 0

        async def create(conn: Connection) -> None:
            nonlocal tries
            tries += 1
            try:
                await conn.execute(_CREATE, params)
            except errors.UniqueViolation as exc:
                if tries > 1 and await _stored_as(conn, record, bodies):
                    return  # the first try's commit landed before its connection was lost
                raise StoreError(f"task {record.id!r} already exists") from exc

        self._link.run("write", create)

    def append(
        self,
        task_id: str,
        first_version: int,
        entries: Sequence[LogEntry],
        *,
        epoch: int | None = None,
    ) -> None:
        self._submit(self._append_write(task_id, first_version, entries, epoch)).result()

    async def append_async(
        self,
        task_id: str,
        first_version: int,
        entries: Sequence[LogEntry],
        *,
        epoch: int | None = None,
    ) -> None:
        write = self._submit(self._append_write(task_id, first_version, entries, epoch))
        await asyncio.wrap_future(write)

    def set_status(self, task_id: str, status: str, *, epoch: int | None = None) -> None:
        self._submit(Write(task_id, epoch, status=status, at=time.time())).result()

    async def set_status_async(
        self, task_id: str, status: str, *, epoch: int | None = None
    ) -> None:
        write = self._submit(Write(task_id, epoch, status=status, at=time.time()))
        await asyncio.wrap_future(write)

    @staticmethod
    def _append_write(
        task_id: str, first_version: int, entries: Sequence[LogEntry], epoch: int | None
    ) -> Write:
        rows: list[tuple[str, str]] = [(entry.kind, dump_entry(entry)) for entry in entries]
        return Write(task_id, epoch, first_version=first_version, entries=rows)

    def _submit(self, write: Write) -> concurrent.futures.Future[None]:
        if self._link.read_only:
            raise self._link.read_only_error()
        self._writer.submit(write)
        return write.done

    def interrupt(self, task_id: str) -> str | None:
        async def interrupt(conn: Connection) -> str | None:
            cursor = await conn.execute(_INTERRUPT, {"id": task_id, "at": time.time()})
            row = await cursor.fetchone()
            return None if row is None or row[0] is None else str(row[0])

        if "\x00" in task_id:
            return None
        return self._link.run("write", interrupt)

    def load(self, task_id: str) -> tuple[TaskRecord, list[LogEntry]]:
        async def load(conn: Connection) -> tuple[Any, ...] | None:
            return await (await conn.execute(_LOAD, (task_id,))).fetchone()

        row = None if "\x00" in task_id else self._link.run("read", load)
        if row is None:
            raise TaskNotFound(f"no task {task_id!r} in the store at {self.where}")
        entries = entries_from_rows(task_id, zip(row[-2], row[-1], strict=True))
        return record_from_row(row), entries

    def tasks(self, limit: int = 50) -> list[TaskRecord]:
        async def tasks(conn: Connection) -> list[tuple[Any, ...]]:
            query = f"SELECT {TASK_COLUMNS} FROM fleetmind_tasks ORDER BY created_at DESC LIMIT %s"
            return await (await conn.execute(query, (max(limit, 0),))).fetchall()

        return [record_from_row(row) for row in self._link.run("read", tasks)]

    def resolve_id(self, prefix: str) -> str:
        async def matching(conn: Connection) -> list[str]:
            cursor = await conn.execute(
                "SELECT id FROM fleetmind_tasks WHERE id LIKE %s ORDER BY id LIMIT 2",
                (_like_prefix(prefix),),
            )
            return [str(row[0]) for row in await cursor.fetchall()]

        found = [] if "\x00" in prefix else self._link.run("read", matching)
        if not found:
            raise TaskNotFound(f"no task {prefix!r} in the store at {self.where}")
        if len(found) > 1 and found[0] != prefix:
            raise TaskNotFound(f"task id {prefix!r} is ambiguous; give more characters")
        return found[0]

    # Leases -----------------------------------------------------------------------------------

    def claim(self, task_id: str, owner: str, lease_s: float) -> int | None:
        params = {"id": task_id, "owner": owner, "lease_s": lease_seconds(lease_s)}

        async def claim(conn: Connection) -> int | None:
            row = await (await conn.execute(_CLAIM, params)).fetchone()
            return None if row is None else int(row[0])

        return self._link.run("write", claim)

    def renew(self, owner: str, lease_s: float) -> dict[str, int]:
        params = {"owner": owner, "lease_s": lease_seconds(lease_s)}

        async def renew(conn: Connection) -> dict[str, int]:
            rows = await (await conn.execute(_RENEW, params)).fetchall()
            return {str(task_id): int(epoch) for task_id, epoch in rows}

        return self._link.run("write", renew)

    def orphans(self, owner: str | None = None, limit: int = 100) -> list[str]:
        params = {"owner": owner, "limit": max(limit, 0)}

        async def orphans(conn: Connection) -> list[str]:
            rows = await (await conn.execute(_ORPHANS, params)).fetchall()
            return [str(row[0]) for row in rows]

        return self._link.run("read", orphans)

    def release(self, task_id: str, owner: str, epoch: int) -> bool:
        async def release(conn: Connection) -> bool:
            cursor = await conn.execute(_RELEASE, (task_id, owner, epoch))
            return cursor.rowcount > 0

        return self._link.run("write", release)

    # Records ----------------------------------------------------------------------------------

    def put_record(self, namespace: str, key: str, document: Mapping[str, Any]) -> None:
        row = (namespace, key, record_text(document), time.time())

        async def put(conn: Connection) -> None:
            await conn.execute(_PUT_RECORD, row)

        self._link.run("write", put)

    def get_record(self, namespace: str, key: str) -> dict[str, Any] | None:
        async def get(conn: Connection) -> str | None:
            cursor = await conn.execute(
                "SELECT body FROM fleetmind_records WHERE namespace = %s AND key = %s",
                (namespace, key),
            )
            row = await cursor.fetchone()
            return None if row is None else str(row[0])

        if "\x00" in namespace + key:
            return None
        text = self._link.run("read", get)
        return None if text is None else parse_record(namespace, key, text)

    def records(self, namespace: str, prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
        async def matching(conn: Connection) -> list[tuple[Any, ...]]:
            cursor = await conn.execute(
                "SELECT key, body FROM fleetmind_records WHERE namespace = %s AND key LIKE %s "
                "ORDER BY key",
                (namespace, _like_prefix(prefix)),
            )
            return await cursor.fetchall()

        if "\x00" in namespace + prefix:
            return []
        rows = self._link.run("read", matching)
        return [(str(key), parse_record(namespace, str(key), body)) for key, body in rows]

    def delete_record(self, namespace: str, key: str) -> bool:
        async def delete(conn: Connection) -> bool:
            cursor = await conn.execute(
                "DELETE FROM fleetmind_records WHERE namespace = %s AND key = %s",
                (namespace, key),
            )
            return cursor.rowcount > 0

        if "\x00" in namespace + key:
            return False
        return self._link.run("write", delete)


def _like_prefix(prefix: str) -> str:
    """A LIKE pattern matching the strings that start with ``prefix``."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


async def _stored_as(conn: Connection, record: TaskRecord, bodies: list[str]) -> bool:
    """Whether the task is stored as ``record`` with exactly the log ``bodies``."""
    cursor = await conn.execute(
        "SELECT name, created_at, ARRAY(SELECT body FROM fleetmind_log WHERE task_id = t.id "
        "ORDER BY version) FROM fleetmind_tasks AS t WHERE id = %s",
        (record.id,),
    )
    row = await cursor.fetchone()
    return row is not None and (row[0], row[1], list(row[2])) == (
        record.name,
        record.created_at,
        bodies,
    )
