"""Group commit: the log appends and status changes of every task, committed in batches.

One writer drains the queue of pending writes and commits all it found in one transaction:
while a commit is on its way to the disk, the writes made meanwhile gather for the next one,
so a busy orchestrator pays one round trip and one flush for many writes. Each write is still
checked on its own (its task exists, its versions follow on, its lease epoch is current) under
a lock of its task's row, and one that fails its checks fails alone: the rest commit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from dataclasses import dataclass, field

from fleetmind.errors import LeaseLost, StoreError, StoreUnavailable, TaskNotFound
from fleetmind.orchestrator._store_postgres_link import Connection, Link, settle

_MAX_BATCH = 1000

_LOCK_TASKS = """
SELECT id, owner, lease_epoch, lease_expires_at IS NOT NULL,
       COALESCE((SELECT max(version) FROM fleetmind_log WHERE task_id = t.id), 0)
FROM fleetmind_tasks AS t WHERE id = ANY(%s) ORDER BY id FOR NO KEY UPDATE
"""
_INSERT_LOG = """
INSERT INTO fleetmind_log (task_id, version, kind, body)
SELECT * FROM unnest(%s::text[], %s::integer[], %s::text[], %s::text[])
"""
_SET_STATUS = """
UPDATE fleetmind_tasks AS t SET status = v.status, updated_at = v.at
FROM unnest(%s::text[], %s::text[], %s::float8[]) AS v(id, status, at) WHERE t.id = v.id
"""
_STORED_BODIES = """
SELECT body FROM fleetmind_log WHERE task_id = %s AND version BETWEEN %s AND %s ORDER BY version
"""


@dataclass(eq=False)
class Write:
    """One pending write: entries appended to a task's log, or its new status."""

    task_id: str
    epoch: int | None
    done: concurrent.futures.Future[None] = field(default_factory=concurrent.futures.Future)
    first_version: int = 0
    entries: list[tuple[str, str]] = field(default_factory=list)
    """``(kind, body)`` of each entry appended."""
    status: str | None = None
    at: float = 0.0
    """When the status changed (``updated_at``)."""
    retried: bool = False
    """Whether a try of this write ended with the connection lost: its commit may have
    landed, so entries found stored as they are here count as written."""


def _take(write: Write) -> bool:
    """Take ``write`` into a batch, unless its caller cancelled it while it was queued (then
    it is dropped, never sent); from now on cancelling it no longer stops it."""
    return write.done.set_running_or_notify_cancel()


@dataclass
class _Row:
    """A task's row as the batch sees it, locked."""

    owner: str | None
    epoch: int
    leased: bool
    stored: int
    """The last version committed before this batch."""
    last: int
    """The last version once this batch's accepted appends are in."""


class GroupWriter:
    """Commits queued writes in batches, one transaction each (see the module's docstring)."""

    def __init__(self, link: Link) -> None:
        self._link = link
        self._queue: asyncio.Queue[Write | None] | None = None
        self._task: asyncio.Task[None] | None = None
        self.transactions = 0
        """Batches committed."""
        self.writes = 0
        """Writes committed in them."""

    def start(self) -> None:
        """Start writing (on the link's loop)."""
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="fleetmind-writer")

    def submit(self, write: Write) -> None:
        """Queue ``write`` (from any thread); its ``done`` future tells how it went."""
        self._link.call_soon(self._enqueue, write)

    def _enqueue(self, write: Write) -> None:
        if self._queue is None or self._task is None or self._task.done():
            settle(write.done, StoreError(f"the store at {self._link.target.where} is closed"))
        else:
            self._queue.put_nowait(write)

    async def stop(self) -> None:
        """Write what is queued, then stop."""
        if self._queue is not None and self._task is not None:
            self._queue.put_nowait(None)
            await self._task

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            first = await self._queue.get()
            if first is None:
                return
            batch = [first] if _take(first) else []
            stopping = False
            while len(batch) < _MAX_BATCH and not self._queue.empty():
                write = self._queue.get_nowait()
                if write is None:
                    stopping = True
                    break
                if _take(write):
                    batch.append(write)
            if not batch:
                if stopping:
                    return
                continue
            try:
                await self._commit(batch)
            except Exception as exc:  # never lose the writer: its callers wait on it
                for write in batch:
                    settle(write.done, StoreError(f"cannot write the store: {exc}"))
            if stopping:
                return

    async def _commit(self, batch: list[Write]) -> None:
        """Commit ``batch`` in one transaction; a batch the server refuses as a whole (not a
        write's own checks) is committed one write at a time, so only the culprit fails."""

        def mark_retried() -> None:
            for write in batch:
                write.retried = True

        async def transact(conn: Connection) -> dict[Write, StoreError]:
            return await self._transact(conn, batch)

        try:
            failures = await self._link.using("write", transact, on_retry=mark_retried)
        except StoreError as exc:
            if len(batch) == 1 or isinstance(exc, StoreUnavailable):
                for write in batch:
                    settle(write.done, exc)
                return
            for write in batch:
                await self._commit([write])
            return
        self.transactions += 1
        self.writes += len(batch) - len(failures)
        for write in batch:
            settle(write.done, failures.get(write))

    async def _transact(self, conn: Connection, batch: list[Write]) -> dict[Write, StoreError]:
        """Check and write ``batch`` in one transaction; the writes that failed their checks."""
        failures: dict[Write, StoreError] = {}
        async with conn.transaction():
            cursor = await conn.execute(_LOCK_TASKS, (sorted({w.task_id for w in batch}),))
            rows = {
                task_id: _Row(owner, epoch, leased, last, last)
                for task_id, owner, epoch, leased, last in await cursor.fetchall()
            }
            log: tuple[list[str], list[int], list[str], list[str]] = ([], [], [], [])
            statuses: dict[str, tuple[str, float]] = {}
            for write in batch:
                problem = await self._check(conn, write, rows.get(write.task_id))
                if problem is not None:
                    failures[write] = problem
                elif write.status is not None:
                    statuses[write.task_id] = (write.status, write.at)
                else:
                    row = rows[write.task_id]
                    if write.first_version != row.last + 1:
                        continue  # stored before the connection was lost: nothing to add
                    for version, (kind, body) in enumerate(write.entries, write.first_version):
                        log[0].append(write.task_id)
                        log[1].append(version)
                        log[2].append(kind)
                        log[3].append(body)
                    row.last += len(write.entries)
            if log[0]:
                await conn.execute(_INSERT_LOG, log)
            if statuses:
                ids = list(statuses)
                await conn.execute(
                    _SET_STATUS,
                    (ids, [statuses[i][0] for i in ids], [statuses[i][1] for i in ids]),
                )
        return failures

    async def _check(self, conn: Connection, write: Write, row: _Row | None) -> StoreError | None:
        """Why ``write`` may not be made (None: it may)."""
        where = self._link.target.where
        if row is None:
            return TaskNotFound(f"no task {write.task_id!r} in the store at {where}")
        if write.epoch is not None and (not row.leased or row.epoch != write.epoch):
            now = f"epoch {row.epoch} ({row.owner})" if row.leased else "no lease"
            return LeaseLost(
                f"task {write.task_id!r} is at {now}: epoch {write.epoch} may not write it"
            )
        if write.status is not None or write.first_version == row.last + 1:
            return None
        end = write.first_version + len(write.entries) - 1
        if write.retried and write.entries and write.first_version >= 1 and end <= row.stored:
            cursor = await conn.execute(_STORED_BODIES, (write.task_id, write.first_version, end))
            if [body for (body,) in await cursor.fetchall()] == [b for _, b in write.entries]:
                return None
        return StoreError(
            f"task {write.task_id!r}: log is at version {row.last}, "
            f"got entries from {write.first_version}"
        )
