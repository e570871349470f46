"""Tests for fleetmind/orchestrator/_store.py: SQLiteStore, InMemoryStore and open_store."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from plain_store import Plain
from pydantic import BaseModel

from fleetmind._task_log import (
    AddSubtask,
    LogEntry,
    SubtaskFinished,
    SubtaskProgressed,
    SubtaskReassigned,
    SubtaskStarted,
    TaskCancelledEntry,
)
from fleetmind._task_model import Dependency, Subtask
from fleetmind.errors import ConfigError, StoreError, TaskNotFound
from fleetmind.orchestrator._graph import TaskGraph
from fleetmind.orchestrator._store import Store, TaskRecord, dump_entry
from fleetmind.orchestrator._store_memory import InMemoryStore
from fleetmind.orchestrator._store_open import open_store
from fleetmind.orchestrator._store_sqlite import SQLiteStore

ERROR = {"type": "SubtaskTimeout", "message": "slow", "retryable": True, "details": {}}


def sample_log() -> list[LogEntry]:
    """The log of a small task that edits, runs, fails over and is cancelled."""
    graph = TaskGraph("sample")
    graph.add_subtask("fetch", skill="web", inputs={"url": "https://example.org"})
    graph.add_subtask(
        "summarise",
        depends_on=[Dependency(source="fetch", target="summarise", kind="data", input="text")],
    )
    graph.add_subtask("notify", depends_on=["summarise"])
    graph.apply(SubtaskStarted(subtask_id="fetch", agent="w1", at=10.0))
    graph.apply(SubtaskReassigned(subtask_id="fetch", agent="w1", error=ERROR, at=11.0))
    graph.apply(SubtaskStarted(subtask_id="fetch", agent="w2", at=12.0))
    graph.apply(SubtaskProgressed(subtask_id="fetch", message="half", fraction=0.5, at=12.5))
    graph.apply(
        SubtaskFinished(
            subtask_id="fetch", status="done", output={"body": "héllo", "n": [1, 2.5]}, at=13.0
        )
    )
    graph.apply(SubtaskStarted(subtask_id="summarise", agent="w3", at=14.0))
    graph.apply(TaskCancelledEntry(reason="user asked", at=15.0))
    return list(graph.log)


def record(task_id: str = "t0123456789", **fields: object) -> TaskRecord:
    return TaskRecord(id=task_id, name=fields.pop("name", "demo"), **fields)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "fleet.db"


@pytest.fixture
def sqlite_store(db_path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(db_path)
    yield store
    store.close()


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, db_path: Path) -> Iterator[Store]:
    if request.param == "memory":
        yield InMemoryStore()
        return
    sqlite = SQLiteStore(db_path)
    yield sqlite
    sqlite.close()


# --------------------------------------------------------------------------------------------
# Behaviour both stores share
# --------------------------------------------------------------------------------------------


def test_create_append_load_round_trip(store: Store) -> None:
    rec = record(
        source="tasks/report.yaml",
        metadata={"owner": "ana", "tags": ["a", "b"]},
        created_at=1000.5,
        updated_at=1000.5,
    )
    entries = sample_log()
    store.create_task(rec)
    store.append(rec.id, 1, entries[:3])
    store.append(rec.id, 4, entries[3:])
    store.append(rec.id, len(entries) + 1, [])  # nothing to write is fine

    loaded_record, loaded = store.load(rec.id)

    assert loaded_record == rec
    assert loaded == entries
    assert [e.kind for e in loaded] == [
        "add_subtask",
        "add_subtask",
        "add_subtask",
        "subtask_started",
        "subtask_reassigned",
        "subtask_started",
        "subtask_progress",
        "subtask_finished",
        "subtask_started",
        "task_cancelled",
    ]
    rebuilt = TaskGraph.from_log(loaded, name="sample")
    assert rebuilt.to_dict() == TaskGraph.from_log(entries, name="sample").to_dict()
    assert rebuilt.status == "cancelled"
    assert rebuilt.state("fetch").output == {"body": "héllo", "n": [1, 2.5]}


def test_new_task_has_an_empty_log(store: Store) -> None:
    store.create_task(record("t1"))
    rec, entries = store.load("t1")
    assert rec.status == "running"
    assert rec.source is None
    assert rec.metadata == {}
    assert entries == []


def test_load_of_unknown_task_raises_task_not_found(store: Store) -> None:
    store.create_task(record("t1"))
    with pytest.raises(TaskNotFound, match="no task 'nope' in the store"):
        store.load("nope")
    assert issubclass(TaskNotFound, StoreError)


def test_duplicate_task_is_refused(store: Store) -> None:
    store.create_task(record("t1", name="first"))
    with pytest.raises(StoreError):
        store.create_task(record("t1", name="second"))
    assert store.load("t1")[0].name == "first"


def test_tasks_are_listed_newest_first(store: Store) -> None:
    store.create_task(record("old", created_at=100.0))
    store.create_task(record("new", created_at=300.0))
    store.create_task(record("mid", created_at=200.0))

    assert [r.id for r in store.tasks()] == ["new", "mid", "old"]
    assert [r.id for r in store.tasks(limit=2)] == ["new", "mid"]
    assert store.tasks(limit=0) == []


def test_set_status_updates_status_and_time(store: Store) -> None:
    store.create_task(record("t1", created_at=100.0, updated_at=100.0))

    store.set_status("t1", "failed")

    rec, _ = store.load("t1")
    assert rec.status == "failed"
    assert rec.created_at == 100.0
    assert rec.updated_at > 100.0
    assert [r.status for r in store.tasks()] == ["failed"]


def test_writes_to_an_unknown_task_raise_task_not_found(store: Store) -> None:
    entry = TaskCancelledEntry()
    with pytest.raises(TaskNotFound):
        store.append("nope", 1, [entry])
    with pytest.raises(TaskNotFound):
        store.set_status("nope", "done")


def test_both_stores_are_stores() -> None:
    assert isinstance(InMemoryStore(), Store)
    assert issubclass(SQLiteStore, Store)


# --------------------------------------------------------------------------------------------
# Versions
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("first_version", [0, 1, 3, 5])
def test_memory_store_refuses_non_contiguous_versions(first_version: int) -> None:
    store = InMemoryStore()
    store.create_task(record("t1"))
    entries = sample_log()
    store.append("t1", 1, entries[:3])

    with pytest.raises(
        StoreError, match=f"task 't1': log is at version 3, got entries from {first_version}"
    ):
        store.append("t1", first_version, entries[3:])

    assert store.load("t1")[1] == entries[:3]
    store.append("t1", 4, entries[3:])
    assert store.load("t1")[1] == entries


def test_sqlite_store_refuses_a_duplicate_version_atomically(
    sqlite_store: SQLiteStore, db_path: Path
) -> None:
    entries = sample_log()
    sqlite_store.create_task(record("t1"))
    sqlite_store.append("t1", 1, entries[:3])

    # Versions 3 (taken) and 4 (free): the whole batch is refused.
    with pytest.raises(StoreError, match="log is at version 3, got entries from 3"):
        sqlite_store.append("t1", 3, entries[3:5])

    assert sqlite_store.load("t1")[1] == entries[:3]
    sqlite_store.append("t1", 4, entries[3:])
    assert sqlite_store.load("t1")[1] == entries


def test_sqlite_store_load_detects_a_gap(sqlite_store: SQLiteStore) -> None:
    entries = sample_log()
    sqlite_store.create_task(record("t1"))
    sqlite_store.append("t1", 1, entries[:2])
    # Written behind the store's back: version 3 is missing.
    sqlite_store._db.execute(
        "INSERT INTO log (task_id, version, kind, body) VALUES (?, ?, ?, ?)",
        ("t1", 4, entries[3].kind, dump_entry(entries[3])),
    )

    with pytest.raises(StoreError, match="task 't1': log entry 3 is missing"):
        sqlite_store.load("t1")


def test_sqlite_store_refuses_a_gap(sqlite_store: SQLiteStore) -> None:
    entries = sample_log()
    sqlite_store.create_task(record("t1"))
    sqlite_store.append("t1", 1, entries[:2])

    with pytest.raises(StoreError):
        sqlite_store.append("t1", 4, entries[3:4])
    assert sqlite_store.load("t1")[1] == entries[:2]


def test_sqlite_store_reports_a_corrupt_entry(sqlite_store: SQLiteStore) -> None:
    sqlite_store.create_task(record("t1"))
    sqlite_store._db.execute(
        "INSERT INTO log (task_id, version, kind, body) VALUES ('t1', 1, 'x', '{\"kind\": \"x\"}')"
    )
    with pytest.raises(StoreError, match="task 't1': log entry 1 is corrupt"):
        sqlite_store.load("t1")


# --------------------------------------------------------------------------------------------
# SQLite specifics
# --------------------------------------------------------------------------------------------


def test_resolve_id_matches_a_unique_prefix(store: Store) -> None:
    for task_id in ("t1abc", "t1abd", "t2xyz", "run", "run-2"):
        store.create_task(record(task_id))

    assert store.resolve_id("t2") == "t2xyz"
    assert store.resolve_id("t1abc") == "t1abc"
    assert store.resolve_id("t1abd") == "t1abd"
    assert store.resolve_id("run") == "run"  # an exact id wins over longer ones
    assert store.resolve_id("run-") == "run-2"
    with pytest.raises(TaskNotFound, match="task id 't1ab' is ambiguous"):
        store.resolve_id("t1ab")
    with pytest.raises(TaskNotFound, match="task id 't' is ambiguous"):
        store.resolve_id("t")
    with pytest.raises(TaskNotFound, match="no task 't3' in the store"):
        store.resolve_id("t3")
    with pytest.raises(TaskNotFound, match="no task 'T1'"):
        store.resolve_id("T1")  # ids are case-sensitive


def test_reopened_store_sees_the_data(db_path: Path) -> None:
    entries = sample_log()
    first = SQLiteStore(db_path)
    first.create_task(record("t1", created_at=5.0, metadata={"k": 1}))
    first.append("t1", 1, entries)
    first.set_status("t1", "cancelled")
    first.close()

    second = SQLiteStore(str(db_path))
    try:
        rec, loaded = second.load("t1")
        assert rec.status == "cancelled"
        assert rec.metadata == {"k": 1}
        assert rec.created_at == 5.0
        assert loaded == entries
        assert [r.id for r in second.tasks()] == ["t1"]
        second.append("t1", len(entries) + 1, [TaskCancelledEntry()])
        assert len(second.load("t1")[1]) == len(entries) + 1
    finally:
        second.close()


def test_two_open_stores_share_one_file(db_path: Path) -> None:
    writer, reader = SQLiteStore(db_path), SQLiteStore(db_path)
    try:
        writer.create_task(record("t1"))
        writer.append("t1", 1, sample_log()[:2])
        assert len(reader.load("t1")[1]) == 2
    finally:
        writer.close()
        reader.close()


def test_sqlite_store_uses_wal(sqlite_store: SQLiteStore, db_path: Path) -> None:
    assert sqlite_store._db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert sqlite_store._db.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
    other = sqlite3.connect(db_path)
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        other.close()
    assert db_path.exists()


class Opaque:
    def __repr__(self) -> str:
        return "<Opaque 7>"


class Point(BaseModel):
    x: int
    y: int


def test_outputs_json_cannot_encode_are_stored(sqlite_store: SQLiteStore) -> None:
    output = {
        "set": {"b", "a", "c"},
        "frozen": frozenset({3, 1}),
        "object": Opaque(),
        "model": Point(x=1, y=2),
    }
    entry = SubtaskFinished(subtask_id="a", status="done", output=output)
    sqlite_store.create_task(record("t1", metadata={"tags": {"y", "x"}, "obj": Opaque()}))

    sqlite_store.append("t1", 1, [entry])

    rec, (loaded,) = sqlite_store.load("t1")
    assert isinstance(loaded, SubtaskFinished)
    assert sorted(loaded.output["set"]) == ["a", "b", "c"]
    assert sorted(loaded.output["frozen"]) == [1, 3]
    assert loaded.output["object"] == "<Opaque 7>"
    assert loaded.output["model"] == {"x": 1, "y": 2}
    assert rec.metadata == {"tags": ["x", "y"], "obj": "<Opaque 7>"}
    assert json.loads(dump_entry(entry))["output"]["object"] == "<Opaque 7>"


def test_entries_are_stored_as_json_text(sqlite_store: SQLiteStore) -> None:
    entry = AddSubtask(subtask=Subtask(id="a", inputs={"q": "ü"}))
    sqlite_store.create_task(record("t1"))
    sqlite_store.append("t1", 1, [entry])

    rows = sqlite_store._db.execute("SELECT task_id, version, kind, body FROM log").fetchall()

    assert len(rows) == 1
    task_id, version, kind, body = rows[0]
    assert (task_id, version, kind) == ("t1", 1, "add_subtask")
    assert json.loads(body)["subtask"] == {
        "id": "a",
        "description": "",
        "agent": None,
        "skill": None,
        "inputs": {"q": "ü"},
        "timeout_s": None,
        "retry": {
            "max_attempts": 3,
            "initial_backoff_s": 0.2,
            "backoff_multiplier": 2.0,
            "max_backoff_s": 30.0,
        },
        "constraints": {},
    }


def test_opening_under_a_file_raises_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    path = blocker / "fleet.db"

    with pytest.raises(StoreError, match="cannot open the store at") as info:
        SQLiteStore(path)

    assert str(path) in str(info.value)
    assert str(info.value).endswith(f"{blocker} is a file, not a directory")
    assert isinstance(info.value.__cause__, OSError)


def test_opening_a_directory_raises_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as info:
        SQLiteStore(tmp_path)
    assert str(tmp_path) in str(info.value)
    assert isinstance(info.value.__cause__, sqlite3.Error)


def test_open_store_picks_the_store(tmp_path: Path) -> None:
    assert isinstance(open_store(None), InMemoryStore)
    mine = InMemoryStore()
    assert open_store(mine) is mine
    for target in (tmp_path / "a.db", str(tmp_path / "b.db")):
        opened = open_store(target)
        assert isinstance(opened, SQLiteStore)
        assert opened.path == Path(target)
        assert isinstance(opened, Store)
        opened.close()


# --------------------------------------------------------------------------------------------
# The Store base class: defaults, and stores that do not subclass it
# --------------------------------------------------------------------------------------------


def test_a_store_that_does_not_subclass_store_is_used_with_a_warning() -> None:
    with pytest.warns(DeprecationWarning, match="Plain does not subclass"):
        store = open_store(Plain())
    store.create_task(record("t1abc"), sample_log())

    assert isinstance(store, Store)
    assert store.tasks()[0].id == "t1abc"
    assert store.load("t1abc")[1] == sample_log()
    assert store.resolve_id("t1abc") == "t1abc"  # the default: exact ids only
    with pytest.raises(TaskNotFound):
        store.resolve_id("t1")
    assert store.sibling(".memory.db") is None  # it keeps no files the fleet knows of


def test_something_that_is_not_a_store_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match="int is not a store: give a path, or subclass"):
        open_store(42)


def test_files_that_belong_with_a_store_go_beside_it(sqlite_store: SQLiteStore) -> None:
    assert sqlite_store.sibling(".memory.db") == sqlite_store.path.with_name("fleet.memory.db")
    assert InMemoryStore().sibling(".checkpoints.db") is None
