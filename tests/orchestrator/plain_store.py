"""A store with the five methods a store must have and nothing more, each handed to an
in-memory store: what the tests of the Store base class's defaults build on."""

from __future__ import annotations

from collections.abc import Sequence

from fleetmind._task_log import LogEntry
from fleetmind.orchestrator._store import TaskRecord
from fleetmind.orchestrator._store_memory import InMemoryStore


class Plain:
    """A store from before Store was a base class: the five methods, nothing more."""

    def __init__(self) -> None:
        self.inner = InMemoryStore()

    def create_task(self, record: TaskRecord, entries: Sequence[LogEntry] = ()) -> None:
        self.inner.create_task(record, entries)

    def append(self, task_id: str, first_version: int, entries: Sequence[LogEntry]) -> None:
        self.inner.append(task_id, first_version, entries)

    def set_status(self, task_id: str, status: str) -> None:
        self.inner.set_status(task_id, status)

    def load(self, task_id: str) -> tuple[TaskRecord, list[LogEntry]]:
        return self.inner.load(task_id)

    def tasks(self, limit: int = 50) -> list[TaskRecord]:
        return self.inner.tasks(limit)
