"""A store from what a user passed: a Store, a SQLite path, a PostgreSQL URL, or nothing."""

from __future__ import annotations

import re
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
"""How a PostgreSQL store's URL starts, in any case (a path without a scheme is SQLite's)."""


def is_postgres_url(text: str) -> bool:
    """Whether ``text`` names a PostgreSQL store (its scheme read in any case)."""
    return text.strip().lower().startswith(POSTGRES_SCHEMES)


def redact_url(url: str) -> str:
    """``url`` with its password (``user:PASSWORD@``, or a ``password=`` parameter) shown as
    ``***``, so that error lines and logs do not give it away."""
    url = re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/@?#]*):[^@/?#]*@", r"\1:***@", url)
    return re.sub(r"(?i)(password=)[^&]*", r"\1***", url)


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


def open_store(target: object, *, read_only: bool = False) -> Store:
    """A store from what a user passed: a Store, a ``postgresql://`` (or ``postgres://``, in
    any case) URL, a path to a SQLite file, or None (memory).

    Args:
        target: What names the store.
        read_only: Only to be read (listing tasks): a PostgreSQL store then needs no more
            than SELECT on its tables, and refuses writes.

    Raises:
        ConfigError: ``target`` is none of these (a URL of another scheme, say).
        StoreError: the store cannot be opened (the message names it without its password).
        MissingExtra: a PostgreSQL URL without the ``postgres`` extra installed.
    """
    if target is None:
        return InMemoryStore()
    if isinstance(target, str) and is_postgres_url(target):
        from fleetmind.orchestrator._store_postgres import PostgresStore

        return PostgresStore(target.strip(), read_only=read_only)
    if isinstance(target, str) and re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", target.strip()):
        scheme = target.strip().split("://", 1)[0]
        raise ConfigError(f"unknown scheme {scheme!r} (give a postgresql:// URL or a SQLite file)")
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
