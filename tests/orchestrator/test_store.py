"""SQLiteStore's own tests (its file, schema versions, processes sharing it), open_store and
the Store base class's defaults; what every store does is in test_store_contract.py."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from plain_store import Plain
from pydantic import BaseModel
from store_samples import record, sample_log

from fleetmind._task_log import AddSubtask, SubtaskFinished, TaskCancelledEntry
from fleetmind._task_model import Subtask
from fleetmind.errors import ConfigError, LeaseLost, StoreError, TaskNotFound
from fleetmind.orchestrator._store import Store, dump_entry
from fleetmind.orchestrator._store_memory import InMemoryStore
from fleetmind.orchestrator._store_open import open_store
from fleetmind.orchestrator._store_sqlite import SQLiteStore
from fleetmind.orchestrator._store_sqlite_schema import SCHEMA_VERSION


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "fleet.db"


@pytest.fixture
def sqlite_store(db_path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(db_path)
    yield store
    store.close()


def test_both_stores_are_stores() -> None:
    assert isinstance(InMemoryStore(), Store)
    assert issubclass(SQLiteStore, Store)


# --------------------------------------------------------------------------------------------
# What the file holds
# --------------------------------------------------------------------------------------------


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


def test_sqlite_store_reports_a_corrupt_entry(sqlite_store: SQLiteStore) -> None:
    sqlite_store.create_task(record("t1"))
    sqlite_store._db.execute(
        "INSERT INTO log (task_id, version, kind, body) VALUES ('t1', 1, 'x', '{\"kind\": \"x\"}')"
    )
    with pytest.raises(StoreError, match="task 't1': log entry 1 is corrupt"):
        sqlite_store.load("t1")


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
# Schema versions
# --------------------------------------------------------------------------------------------

UNVERSIONED_SCHEMA = """
CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    source TEXT,
    metadata TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE log (
    task_id TEXT NOT NULL REFERENCES tasks(id),
    version INTEGER NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (task_id, version)
) WITHOUT ROWID;
CREATE INDEX tasks_by_created ON tasks(created_at);
"""
"""The tables a release before schema versions wrote (``user_version`` 0), records aside."""

RECORDS_TABLE = """
CREATE TABLE records (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    body TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;
"""


def unversioned_file(path: Path, *, records: bool = True) -> None:
    """A store file as a release before schema versions left it: a running task with its log
    (and a record)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    db.executescript(UNVERSIONED_SCHEMA + (RECORDS_TABLE if records else ""))
    db.execute(
        "INSERT INTO tasks VALUES ('t1', 'demo', 'running', 5.0, 6.0, 'task.yaml', '{\"k\": 1}')"
    )
    db.executemany(
        "INSERT INTO log VALUES ('t1', ?, ?, ?)",
        [(n, e.kind, dump_entry(e)) for n, e in enumerate(sample_log(), start=1)],
    )
    if records:
        db.execute("INSERT INTO records VALUES ('ns', 'k', '{\"v\": 1}', 7.0)")
    db.commit()
    assert db.execute("PRAGMA user_version").fetchone() == (0,)
    db.close()


def user_version(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    finally:
        db.close()


def test_a_new_file_has_the_newest_schema(db_path: Path) -> None:
    SQLiteStore(db_path).close()
    assert user_version(db_path) == SCHEMA_VERSION == 2


def test_a_file_from_before_schema_versions_keeps_its_tasks_and_gains_leases(
    db_path: Path,
) -> None:
    unversioned_file(db_path)

    store = SQLiteStore(db_path)
    try:
        rec, entries = store.load("t1")
        assert rec == record(
            "t1", source="task.yaml", metadata={"k": 1}, created_at=5.0, updated_at=6.0
        )
        assert entries == sample_log()
        assert store.get_record("ns", "k") == {"v": 1}
        assert user_version(db_path) == SCHEMA_VERSION

        assert store.orphans() == []  # never leased
        assert store.claim("t1", "a", 60.0) == 1
        assert store.renew("a", 60.0) == {"t1": 1}
        store.append("t1", len(entries) + 1, [TaskCancelledEntry()], epoch=1)
        assert (store.load("t1")[0].owner, len(store.load("t1")[1])) == ("a", len(entries) + 1)
    finally:
        store.close()

    again = SQLiteStore(db_path)  # a migrated file opens as it is
    try:
        assert again.load("t1")[0].lease_epoch == 1
    finally:
        again.close()


def test_a_file_from_before_records_gets_the_table(db_path: Path) -> None:
    unversioned_file(db_path, records=False)

    store = SQLiteStore(db_path)
    try:
        store.put_record("ns", "k", {"v": 2})
        assert store.get_record("ns", "k") == {"v": 2}
        assert store.load("t1")[1] == sample_log()
    finally:
        store.close()


def test_a_file_of_a_newer_release_is_refused_in_one_line(db_path: Path) -> None:
    SQLiteStore(db_path).close()
    db = sqlite3.connect(db_path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()

    with pytest.raises(StoreError) as info:
        SQLiteStore(db_path)

    assert str(info.value) == (
        f"the store at {db_path} has schema version {SCHEMA_VERSION + 1}; this fleetmind "
        f"knows up to {SCHEMA_VERSION}: upgrade fleetmind"
    )
    assert user_version(db_path) == SCHEMA_VERSION + 1


def test_a_migration_that_fails_changes_nothing(db_path: Path) -> None:
    unversioned_file(db_path)
    db = sqlite3.connect(db_path)
    db.execute("ALTER TABLE tasks ADD COLUMN lease_expires_at REAL")  # in the way of version 2
    db.close()

    with pytest.raises(StoreError, match=r"cannot open the store at .*lease_expires_at"):
        SQLiteStore(db_path)

    db = sqlite3.connect(db_path)
    try:
        columns = [row[1] for row in db.execute("PRAGMA table_info(tasks)")]
    finally:
        db.close()
    assert "owner" not in columns  # added before the failing statement, and rolled back
    assert user_version(db_path) == 0


# --------------------------------------------------------------------------------------------
# Processes sharing the file
# --------------------------------------------------------------------------------------------

REPLICA = """
import sys
from fleetmind._task_log import SubtaskProgressed
from fleetmind.orchestrator import SQLiteStore, TaskRecord

path, me = sys.argv[1], sys.argv[2]
store = SQLiteStore(path)
store.create_task(TaskRecord(id=me, name="own", owner=me), lease_s=60.0)
for n in range(1, 31):
    entry = SubtaskProgressed(subtask_id="s", message=str(n), fraction=0.5)
    store.append(me, n, [entry], epoch=1)
print(store.claim("shared", me, 60.0))
store.close()
"""


def test_processes_sharing_the_file_write_together_and_one_takes_an_orphan(
    db_path: Path,
) -> None:
    store = SQLiteStore(db_path)
    try:
        store.create_task(record("shared", owner="gone"), sample_log()[:2], lease_s=60.0)
        assert store.release("shared", "gone", 1)
        names = [f"p{n}" for n in range(4)]
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", REPLICA, str(db_path), name],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for name in names
        ]
        try:
            outputs = [process.communicate(timeout=120) for process in processes]
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        assert [process.returncode for process in processes] == [0] * 4, outputs

        claims = {name: out.strip() for name, (out, _) in zip(names, outputs, strict=True)}
        winners = [name for name, epoch in claims.items() if epoch == "2"]
        assert len(winners) == 1, claims
        assert sorted(claims.values()) == ["2", "None", "None", "None"]
        rec, _ = store.load("shared")
        assert (rec.owner, rec.lease_epoch) == (winners[0], 2)
        for name in names:
            messages = [entry.model_dump()["message"] for entry in store.load(name)[1]]
            assert messages == [str(n) for n in range(1, 31)]
        with pytest.raises(LeaseLost):
            store.append("shared", 3, sample_log()[2:3], epoch=1)  # the old owner's epoch
    finally:
        store.close()


DOOMED = """
import sys
from fleetmind._task_log import SubtaskProgressed
from fleetmind.orchestrator import SQLiteStore, TaskRecord

store = SQLiteStore(sys.argv[1])
store.create_task(TaskRecord(id="t1", name="doomed", owner="doomed"), lease_s=0.2)
version = 0
while True:
    version += 1
    entry = SubtaskProgressed(subtask_id="s", message=str(version), fraction=0.5)
    store.append("t1", version, [entry], epoch=1)
    store.renew("doomed", 0.2)
    print(version, flush=True)
"""


def test_a_killed_owners_entries_survive_and_its_task_is_taken_over(db_path: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", DOOMED, str(db_path)], stdout=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None
            for line in process.stdout:
                if int(line) >= 20:
                    break
            acknowledged = int(line)
            process.send_signal(signal.SIGKILL)  # mid-loop: no close, no clean exit
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()

    store = SQLiteStore(db_path)
    try:
        rec, entries = store.load("t1")  # a gap or a torn entry would raise here
        assert len(entries) >= acknowledged
        assert [entry.model_dump()["message"] for entry in entries] == [
            str(n) for n in range(1, len(entries) + 1)
        ]
        assert (rec.status, rec.owner, rec.lease_epoch) == ("running", "doomed", 1)

        deadline = time.monotonic() + 60
        while "t1" not in store.orphans():
            assert time.monotonic() < deadline, "the killed owner's lease never lapsed"
            time.sleep(0.01)
        assert store.claim("t1", "heir", 60.0) == 2
        with pytest.raises(LeaseLost):
            store.append("t1", len(entries) + 1, [TaskCancelledEntry()], epoch=1)
        store.append("t1", len(entries) + 1, [TaskCancelledEntry()], epoch=2)
    finally:
        store.close()


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
