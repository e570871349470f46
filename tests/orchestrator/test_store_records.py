"""The store's records: JSON documents by (namespace, key), the same contract on every store."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from plain_store import Plain

from fleetmind.errors import StoreError
from fleetmind.orchestrator._store import Store, TaskRecord
from fleetmind.orchestrator._store_memory import InMemoryStore
from fleetmind.orchestrator._store_sqlite import SQLiteStore


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "memory":
        yield InMemoryStore()
        return
    opened = SQLiteStore(tmp_path / "fleet.db")
    yield opened
    opened.close()


def test_a_record_round_trips_and_is_replaced(store: Store) -> None:
    assert store.get_record("a2a.task", "t1") is None
    store.put_record("a2a.task", "t1", {"state": "working", "n": [1, 2.5], "x": None})
    assert store.get_record("a2a.task", "t1") == {"state": "working", "n": [1, 2.5], "x": None}

    store.put_record("a2a.task", "t1", {"state": "completed"})

    assert store.get_record("a2a.task", "t1") == {"state": "completed"}
    assert store.records("a2a.task") == [("t1", {"state": "completed"})]


def test_a_read_record_is_a_copy(store: Store) -> None:
    store.put_record("ns", "k", {"items": [1]})
    got = store.get_record("ns", "k")
    assert got is not None
    got["items"].append(2)
    assert store.get_record("ns", "k") == {"items": [1]}


def test_namespaces_keep_records_apart(store: Store) -> None:
    store.put_record("one", "k", {"v": 1})
    store.put_record("two", "k", {"v": 2})

    assert store.get_record("one", "k") == {"v": 1}
    assert store.get_record("two", "k") == {"v": 2}
    assert store.records("one") == [("k", {"v": 1})]


def test_records_are_listed_by_key_and_by_prefix(store: Store) -> None:
    for key in ("b/2", "a/1", "b/1", "c"):
        store.put_record("ns", key, {"key": key})

    assert [key for key, _ in store.records("ns")] == ["a/1", "b/1", "b/2", "c"]
    assert store.records("ns", prefix="b/") == [("b/1", {"key": "b/1"}), ("b/2", {"key": "b/2"})]
    assert store.records("ns", prefix="z") == []
    assert store.records("empty") == []


def test_delete_says_whether_there_was_a_record(store: Store) -> None:
    store.put_record("ns", "k", {"v": 1})

    assert store.delete_record("ns", "k") is True
    assert store.delete_record("ns", "k") is False
    assert store.get_record("ns", "k") is None
    assert store.records("ns") == []


def test_a_document_that_is_not_json_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="JSON only"):
        store.put_record("ns", "k", {"when": object()})
    with pytest.raises(StoreError, match="JSON object, not list"):
        store.put_record("ns", "k", [1, 2])  # type: ignore[arg-type]
    assert store.get_record("ns", "k") is None


def test_records_do_not_touch_tasks(store: Store) -> None:
    store.create_task(TaskRecord(id="t1", name="demo"))
    store.put_record("ns", "t1", {"v": 1})
    assert [r.id for r in store.tasks()] == ["t1"]
    assert store.load("t1")[1] == []


def test_records_outlive_the_sqlite_store_that_wrote_them(tmp_path: Path) -> None:
    path = tmp_path / "fleet.db"
    first = SQLiteStore(path)
    first.put_record("a2a.task", "t1", {"state": "working"})
    first.close()

    second = SQLiteStore(path)
    try:
        assert second.get_record("a2a.task", "t1") == {"state": "working"}
    finally:
        second.close()


def test_a_store_made_before_records_existed_gets_the_table(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    SQLiteStore(path).close()
    db = sqlite3.connect(path)
    db.execute("DROP TABLE records")  # as a store written before records existed
    db.close()

    store = SQLiteStore(path)
    try:
        store.put_record("ns", "k", {"v": 1})
        assert store.get_record("ns", "k") == {"v": 1}
    finally:
        store.close()


def test_a_corrupt_record_is_reported_with_its_key(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "fleet.db")
    try:
        store.put_record("ns", "k", {"v": 1})
        raw = sqlite3.connect(tmp_path / "fleet.db")
        raw.execute("UPDATE records SET body = 'not json'")
        raw.commit()
        raw.close()
        with pytest.raises(StoreError, match="record 'k' in 'ns' is corrupt"):
            store.get_record("ns", "k")
    finally:
        store.close()


class _Minimal(Plain, Store):
    """A store that writes only the five required methods."""


def test_a_store_without_its_own_records_keeps_them_in_memory() -> None:
    store = _Minimal()
    store.put_record("ns", "k", {"v": 1})
    assert store.get_record("ns", "k") == {"v": 1}
    assert store.records("ns") == [("k", {"v": 1})]
    assert store.delete_record("ns", "k") is True
