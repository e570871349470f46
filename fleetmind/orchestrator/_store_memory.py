"""The store that lives in one process: the SDK's default when no path is given.

It keeps leases too, so that several fleets in one process can share it as replicas share a
database (the engine's ownership rules are tested on it without a server).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from fleetmind._task_log import LogEntry
from fleetmind.errors import LeaseLost, StoreError, TaskNotFound
from fleetmind.orchestrator._store import Store, TaskRecord, lease_seconds

F = TypeVar("F", bound=Callable[..., Any])


def _locked(method: F) -> F:
    """One call at a time: replicas' heartbeats call the store from worker threads, and a
    claim must be one step (two threads must never both win a task)."""

    @functools.wraps(method)
    def run(self: InMemoryStore, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return cast(F, run)


@dataclass
class _Lease:
    owner: str
    epoch: int
    expires_at: float


class InMemoryStore(Store):
    """A store that lives in this process only.

    Args:
        clock: The store's clock for leases (seconds); tests pass their own.
    """

    shared = True

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._records: dict[str, TaskRecord] = {}
        self._logs: dict[str, list[LogEntry]] = {}
        self._leases: dict[str, _Lease] = {}
        self._clock = clock
        self._lock = threading.RLock()

    @_locked
    def create_task(
        self, record: TaskRecord, entries: Sequence[LogEntry] = (), *, lease_s: float | None = None
    ) -> None:
        if record.id in self._records:
            raise StoreError(f"task {record.id!r} already exists")
        if lease_s is not None:
            if record.owner is None:
                raise StoreError(f"task {record.id!r}: a lease needs the record's owner")
            expires_at = self._clock() + lease_seconds(lease_s)
            self._leases[record.id] = _Lease(record.owner, 1, expires_at)
            record = record.model_copy(update={"lease_epoch": 1})
        self._records[record.id] = record
        self._logs[record.id] = list(entries)

    def _fence(self, task_id: str, epoch: int | None) -> None:
        if task_id not in self._records:
            raise TaskNotFound(f"no task {task_id!r} in the store")
        if epoch is None:
            return
        lease = self._leases.get(task_id)
        if lease is None or lease.epoch != epoch:
            now = "no lease" if lease is None else f"epoch {lease.epoch} ({lease.owner})"
            raise LeaseLost(f"task {task_id!r} is at {now}: epoch {epoch} may not write it")

    @_locked
    def append(
        self,
        task_id: str,
        first_version: int,
        entries: Sequence[LogEntry],
        *,
        epoch: int | None = None,
    ) -> None:
        self._fence(task_id, epoch)
        log = self._logs[task_id]
        if first_version != len(log) + 1:
            raise StoreError(
                f"task {task_id!r}: log is at version {len(log)}, got entries from {first_version}"
            )
        log.extend(entries)

    @_locked
    def set_status(self, task_id: str, status: str, *, epoch: int | None = None) -> None:
        self._fence(task_id, epoch)
        record = self._records[task_id]
        self._records[task_id] = record.model_copy(
            update={"status": status, "updated_at": time.time()}
        )

    @_locked
    def load(self, task_id: str) -> tuple[TaskRecord, list[LogEntry]]:
        if task_id not in self._records:
            raise TaskNotFound(f"no task {task_id!r} in the store")
        return self._current(task_id), list(self._logs[task_id])

    @_locked
    def tasks(self, limit: int = 50) -> list[TaskRecord]:
        ids = sorted(self._records, key=lambda i: self._records[i].created_at, reverse=True)
        return [self._current(task_id) for task_id in ids[:limit]]

    def _current(self, task_id: str) -> TaskRecord:
        """The record with its lease as it stands."""
        record = self._records[task_id]
        lease = self._leases.get(task_id)
        if lease is None:
            return record
        return record.model_copy(update={"owner": lease.owner, "lease_epoch": lease.epoch})

    @_locked
    def resolve_id(self, prefix: str) -> str:
        if prefix in self._records:
            return prefix
        found = [task_id for task_id in self._records if task_id.startswith(prefix)]
        if not found:
            raise TaskNotFound(f"no task {prefix!r} in the store")
        if len(found) > 1:
            raise TaskNotFound(f"task id {prefix!r} is ambiguous; give more characters")
        return found[0]

    # Leases ---------------------------------------------------------------------------------

    @_locked
    def claim(self, task_id: str, owner: str, lease_s: float) -> int | None:
        lease_s = lease_seconds(lease_s)
        record = self._records.get(task_id)
        if record is None or record.status != "running":
            return None
        now = self._clock()
        lease = self._leases.get(task_id)
        if lease is not None and lease.owner != owner and lease.expires_at > now:
            return None
        epoch = (lease.epoch if lease is not None else record.lease_epoch) + 1
        self._leases[task_id] = _Lease(owner, epoch, now + lease_s)
        return epoch

    @_locked
    def renew(self, owner: str, lease_s: float) -> dict[str, int]:
        expires_at = self._clock() + lease_seconds(lease_s)
        held: dict[str, int] = {}
        for task_id, lease in self._leases.items():
            if lease.owner == owner and self._records[task_id].status == "running":
                lease.expires_at = expires_at
                held[task_id] = lease.epoch
        return held

    @_locked
    def orphans(self, owner: str | None = None, limit: int = 100) -> list[str]:
        now = self._clock()
        found = [
            (lease.expires_at, task_id)
            for task_id, lease in self._leases.items()
            if self._records[task_id].status == "running"
            and (lease.expires_at <= now or (owner is not None and lease.owner == owner))
        ]
        return [task_id for _, task_id in sorted(found)[:limit]]

    @_locked
    def release(self, task_id: str, owner: str, epoch: int) -> bool:
        lease = self._leases.get(task_id)
        if lease is None or lease.owner != owner or lease.epoch != epoch:
            return False
        lease.expires_at = float("-inf")
        return True
