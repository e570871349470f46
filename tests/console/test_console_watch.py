"""The store watch on a real SQLite store: it publishes a task's status changes once, and
leaves a task this console follows live to its follower (no second status line)."""

from __future__ import annotations

from pathlib import Path

from fleetmind.orchestrator import SQLiteStore, TaskGraph, TaskRecord
from fleetmind.serve._console_events import EventHub
from fleetmind.serve._console_sources import StoreWatch


def test_a_followed_task_gets_no_status_line_from_the_store(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "fleetmind.db")
    try:
        store.create_task(TaskRecord(id="tfollowed", name="here"))
        store.create_task(TaskRecord(id="telsewhere", name="there"))
        followed = TaskGraph([])
        watch = StoreWatch(
            store, EventHub(), lambda task_id: followed if task_id == "tfollowed" else None
        )
        assert watch.poll() == []  # the first reading is the baseline
        store.set_status("tfollowed", "done")
        store.set_status("telsewhere", "done")
        found = watch.poll()
        assert found == [("task", {"task_id": "telsewhere", "status": "done"})]
        assert watch.poll() == []  # nothing changed since
    finally:
        store.close()
