"""A store from what a user passed: a Store, a SQLite path, a PostgreSQL URL, or nothing."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fleetmind._task_log import LogEntry
from fleetmind.errors import ConfigError
from fleetmind.orchestrator._store import Store, TaskRecord
from fleetmind.orchestrator._store_memory import InMemoryStore
from fleetmind.orchestrator._store_sqlite import SQLiteStore

_STORE_METHODS = ("create_task", "append", "set_status", "load", "tasks")
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
"""How a PostgreSQL store's URL starts (anything else is a SQLite path)."""


class _Delegating(Store):
    """A store written before :class:`Store` was a base class: its five methods are used, and
    the defaults of the rest."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def create_task(
        self, record: TaskRecord, entries: Sequence[LogEntry] = (), *, lease_s: float | None = None
    ) -> None:
        self._inner.create_task(record, entries)

    def append(
        self,
        task_id: str,
        first_version: int,
        entries: Sequence[LogEntry],
        *,
        epoch: int | None = None,
    ) -> None:
        self._inner.append(task_id, first_version, entries)

    def set_status(self, task_id: str, status: str, *, epoch: int | None = None) -> None:
        self._inner.set_status(task_id, status)

    def load(self, task_id: str) -> tuple[TaskRecord, list[LogEntry]]:
        found: tuple[TaskRecord, list[LogEntry]] = self._inner.load(task_id)
        return found

    def tasks(self, limit: int = 50) -> list[TaskRecord]:
        records: list[TaskRecord] = self._inner.tasks(limit)
        return records


def open_store(target: object) -> Store:
    """A store from what a user passed: a Store, a ``postgresql://`` (or ``postgres://``) URL,
    a path to a SQLite file, or None (memory).

    Raises:
        ConfigError: ``target`` is none of these.
        StoreError: the store cannot be opened.
    """
    if target is None:
        return InMemoryStore()
    if isinstance(target, str) and target.startswith(POSTGRES_SCHEMES):
        from fleetmind.orchestrator._store_postgres import PostgresStore

        return PostgresStore(target)
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
