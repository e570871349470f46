"""The store's records beyond the contract every store keeps (test_store_contract.py): how
SQLiteStore keeps them, and the base class's default for a store that keeps none."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from plain_store import Plain

from fleetmind.errors import StoreError
from fleetmind.orchestrator._store import Store
from fleetmind.orchestrator._store_sqlite import SQLiteStore


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
