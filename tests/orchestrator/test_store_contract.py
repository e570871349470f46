"""The contract every store keeps, run unchanged against each of them: the in-memory store,
SQLite and PostgreSQL (skipped with the reason where PostgreSQL is missing)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from store_samples import record, sample_log

from fleetmind._task_log import LogEntry, SubtaskProgressed, TaskCancelledEntry
from fleetmind.errors import LeaseLost, StoreError, TaskNotFound
from fleetmind.orchestrator._graph import TaskGraph
from fleetmind.orchestrator._store import Store
from fleetmind.orchestrator._store_memory import InMemoryStore
from fleetmind.orchestrator._store_open import open_store

LONG = 60.0
"""A lease that cannot lapse during a test."""
SHORT = 0.05
"""A lease that lapses almost at once."""


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "memory":
        opened: Store = InMemoryStore()
    elif request.param == "sqlite":
        opened = open_store(tmp_path / "state" / "fleet.db")
    else:  # only this case needs a PostgreSQL server
        from fleetmind.orchestrator import PostgresStore

        opened = open_store(request.getfixturevalue("postgres_url"))
        assert isinstance(opened, PostgresStore)
    try:
        yield opened
    finally:
        opened.close()


def wait_until(condition: Callable[[], bool], what: str, deadline_s: float = 30.0) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after a generous deadline."""
    deadline = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def wait_lapsed(store: Store, task_id: str) -> None:
    """Wait until the store sees the lease on ``task_id`` lapsed (by its own clock)."""
    wait_until(lambda: task_id in store.orphans(), f"the lease on {task_id} to lapse")


def progress(n: int) -> LogEntry:
    return SubtaskProgressed(subtask_id="fetch", message=f"step {n}", fraction=0.5, at=float(n))


# --------------------------------------------------------------------------------------------
# Tasks and their logs
# --------------------------------------------------------------------------------------------


def test_create_append_load_round_trip(store: Store) -> None:
    rec = record(
        source="tasks/report.yaml",
        metadata={"team": "ana", "tags": ["a", "b"]},
        created_at=1000.5,
        updated_at=1000.5,
    )
    entries = sample_log()
    store.create_task(rec, entries[:2])
    store.append(rec.id, 3, entries[2:4])
    store.append(rec.id, 5, entries[4:])
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


def test_a_new_task_without_entries_has_an_empty_log(store: Store) -> None:
    store.create_task(record("t1"))
    rec, entries = store.load("t1")
    assert rec.status == "running"
    assert rec.source is None
    assert rec.metadata == {}
    assert (rec.owner, rec.lease_epoch) == (None, 0)
    assert entries == []


def test_load_of_an_unknown_task_raises_task_not_found(store: Store) -> None:
    store.create_task(record("t1"))
    with pytest.raises(TaskNotFound, match="no task 'nope' in the store"):
        store.load("nope")
    assert issubclass(TaskNotFound, StoreError)


def test_writes_to_an_unknown_task_raise_task_not_found(store: Store) -> None:
    with pytest.raises(TaskNotFound):
        store.append("nope", 1, [TaskCancelledEntry()])
    with pytest.raises(TaskNotFound):
        store.set_status("nope", "done")
    assert store.tasks() == []


def test_a_duplicate_task_is_refused(store: Store) -> None:
    store.create_task(record("t1", name="first"), sample_log()[:1])
    with pytest.raises(StoreError):
        store.create_task(record("t1", name="second"), sample_log())
    rec, entries = store.load("t1")
    assert rec.name == "first"
    assert entries == sample_log()[:1]


@pytest.mark.parametrize("first_version", [0, 1, 3, 5])
def test_a_log_refuses_entries_that_do_not_follow_it(store: Store, first_version: int) -> None:
    entries = sample_log()
    store.create_task(record("t1"), entries[:3])

    with pytest.raises(
        StoreError, match=f"task 't1': log is at version 3, got entries from {first_version}"
    ):
        store.append("t1", first_version, entries[3:])

    assert store.load("t1")[1] == entries[:3]
    store.append("t1", 4, entries[3:])
    assert store.load("t1")[1] == entries


def test_a_batch_that_overlaps_the_log_is_refused_whole(store: Store) -> None:
    entries = sample_log()
    store.create_task(record("t1"), entries[:3])

    with pytest.raises(StoreError, match="log is at version 3, got entries from 3"):
        store.append("t1", 3, entries[3:5])  # version 3 is taken, version 4 is free

    assert store.load("t1")[1] == entries[:3]


def test_tasks_are_listed_newest_first(store: Store) -> None:
    store.create_task(record("old", created_at=100.0))
    store.create_task(record("new", created_at=300.0))
    store.create_task(record("mid", created_at=200.0))

    assert [r.id for r in store.tasks()] == ["new", "mid", "old"]
    assert [r.id for r in store.tasks(limit=2)] == ["new", "mid"]
    assert store.tasks(limit=0) == []


def test_set_status_updates_the_status_and_its_time(store: Store) -> None:
    store.create_task(record("t1", created_at=100.0, updated_at=100.0))

    store.set_status("t1", "failed")

    rec, _ = store.load("t1")
    assert rec.status == "failed"
    assert rec.created_at == 100.0
    assert rec.updated_at > 100.0
    assert [r.status for r in store.tasks()] == ["failed"]


def test_interrupt_stops_only_a_running_task(store: Store) -> None:
    store.create_task(record("run"))
    store.create_task(record("done"))
    store.set_status("done", "done")

    assert store.interrupt("run") == "interrupted"
    assert store.interrupt("run") == "interrupted"
    assert store.interrupt("done") == "done"
    assert store.interrupt("nope") is None
    assert store.load("run")[0].status == "interrupted"
    assert store.load("done")[0].status == "done"


def test_resolve_id_matches_an_exact_id_or_a_unique_prefix(store: Store) -> None:
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


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


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
    store.create_task(record("t1"))
    store.put_record("ns", "t1", {"v": 1})
    assert [r.id for r in store.tasks()] == ["t1"]
    assert store.load("t1")[1] == []


# --------------------------------------------------------------------------------------------
# Leases
# --------------------------------------------------------------------------------------------


def test_a_store_that_keeps_leases_says_so(store: Store) -> None:
    assert store.shared is True


def test_a_task_created_with_a_lease_is_its_owners_at_epoch_1(store: Store) -> None:
    store.create_task(record("t1", owner="a"), sample_log()[:2], lease_s=LONG)

    rec, entries = store.load("t1")

    assert (rec.owner, rec.lease_epoch) == ("a", 1)
    assert entries == sample_log()[:2]
    assert [(r.id, r.owner, r.lease_epoch) for r in store.tasks()] == [("t1", "a", 1)]
    assert store.renew("a", LONG) == {"t1": 1}
    assert store.orphans() == []


def test_a_lease_needs_an_owner(store: Store) -> None:
    with pytest.raises(StoreError, match="owner"):
        store.create_task(record("t1"), lease_s=LONG)
    with pytest.raises(TaskNotFound):
        store.load("t1")


def test_a_live_lease_of_another_owner_is_not_claimed(store: Store) -> None:
    store.create_task(record("t1", owner="a"), lease_s=LONG)

    assert store.claim("t1", "b", LONG) is None

    rec, _ = store.load("t1")
    assert (rec.owner, rec.lease_epoch) == ("a", 1)
    assert store.renew("b", LONG) == {}


def test_a_lapsed_lease_is_claimed_at_the_next_epoch(store: Store) -> None:
    store.create_task(record("t1", owner="a"), lease_s=SHORT)
    wait_lapsed(store, "t1")

    assert store.claim("t1", "b", LONG) == 2

    rec, _ = store.load("t1")
    assert (rec.owner, rec.lease_epoch) == ("b", 2)
    assert store.orphans() == []
    assert store.claim("t1", "c", LONG) is None  # b's lease is live now


def test_an_owner_claiming_its_own_task_starts_a_new_epoch(store: Store) -> None:
    store.create_task(record("t1", owner="a"), lease_s=LONG)

    assert store.claim("t1", "a", LONG) == 2
    assert store.claim("t1", "a", LONG) == 3
    assert store.load("t1")[0].lease_epoch == 3


def test_a_task_never_leased_is_no_ones_orphan_but_can_be_claimed(store: Store) -> None:
    store.create_task(record("t1"))

    assert store.orphans() == []
    assert store.orphans(owner="a") == []
    assert store.renew("a", LONG) == {}
    assert store.claim("t1", "a", LONG) == 1
    assert store.load("t1")[0].owner == "a"


def test_only_a_running_task_is_claimed(store: Store) -> None:
    ended = {"done": "done", "failed": "failed", "cancelled": "cancelled", "stopped": "interrupted"}
    for task_id, status in ended.items():
        store.create_task(record(task_id, owner="a"), lease_s=SHORT)
        store.set_status(task_id, status)
    store.create_task(record("running", owner="a"), lease_s=SHORT)
    wait_lapsed(store, "running")  # the leases taken before it have lapsed too

    assert store.orphans(owner="a") == ["running"]
    for task_id in ended:
        assert store.claim(task_id, "b", LONG) is None
        assert store.claim(task_id, "a", LONG) is None
        assert store.load(task_id)[0].owner == "a"
    assert store.claim("nope", "b", LONG) is None
    assert store.renew("a", LONG) == {"running": 1}
    assert store.claim("running", "b", LONG) is None


def test_orphans_come_longest_lapsed_first_with_the_owners_own(store: Store) -> None:
    store.create_task(record("z-first", owner="a"), lease_s=SHORT)
    store.create_task(record("y-second", owner="a"), lease_s=2 * SHORT)
    store.create_task(record("x-live", owner="me"), lease_s=LONG)
    store.create_task(record("w-never"))
    wait_lapsed(store, "y-second")

    assert store.orphans() == ["z-first", "y-second"]
    assert store.orphans(limit=1) == ["z-first"]
    assert store.orphans(owner="me") == ["z-first", "y-second", "x-live"]
    assert store.orphans(owner="nobody") == ["z-first", "y-second"]


def test_renew_extends_what_its_owner_still_holds(store: Store) -> None:
    store.create_task(record("kept", owner="a"), lease_s=SHORT)
    store.create_task(record("taken", owner="a"), lease_s=SHORT)
    store.create_task(record("other", owner="c"), lease_s=LONG)
    wait_lapsed(store, "taken")
    wait_lapsed(store, "kept")
    assert store.claim("taken", "b", LONG) == 2

    assert store.renew("a", LONG) == {"kept": 1}  # lapsed, but no one claimed it

    assert store.orphans() == []
    assert store.claim("kept", "b", LONG) is None
    assert store.renew("b", LONG) == {"taken": 2}
    store.set_status("kept", "done")
    assert store.renew("a", LONG) == {}


def test_release_lets_another_owner_take_the_task_at_once(store: Store) -> None:
    store.create_task(record("t1", owner="a"), lease_s=LONG)

    assert store.release("t1", "b", 1) is False
    assert store.release("t1", "a", 2) is False
    assert store.claim("t1", "b", LONG) is None
    assert store.release("t1", "a", 1) is True

    assert store.orphans() == ["t1"]
    assert store.claim("t1", "b", LONG) == 2
    assert store.release("t1", "a", 1) is False
    assert store.load("t1")[0].owner == "b"


# --------------------------------------------------------------------------------------------
# Fencing: a write carries its owner's epoch
# --------------------------------------------------------------------------------------------


def taken_over(store: Store) -> list[LogEntry]:
    """A task leased to ``a`` at epoch 1 with three entries, then taken over by ``b`` (epoch
    2); its entries."""
    entries = sample_log()
    store.create_task(record("t1", owner="a"), entries[:2], lease_s=LONG)
    store.append("t1", 3, entries[2:3], epoch=1)
    assert store.release("t1", "a", 1)
    assert store.claim("t1", "b", LONG) == 2
    return entries


def test_a_lapsed_lease_no_one_claimed_still_writes(store: Store) -> None:
    entries = sample_log()
    store.create_task(record("t1", owner="a"), entries[:2], lease_s=SHORT)
    wait_lapsed(store, "t1")

    store.append("t1", 3, entries[2:], epoch=1)
    store.set_status("t1", "cancelled", epoch=1)

    rec, loaded = store.load("t1")
    assert (rec.status, rec.lease_epoch) == ("cancelled", 1)
    assert loaded == entries


def test_the_old_epoch_writes_nothing_after_a_takeover(store: Store) -> None:
    entries = taken_over(store)

    with pytest.raises(LeaseLost, match="t1"):
        store.append("t1", 4, entries[3:], epoch=1)
    with pytest.raises(LeaseLost, match="t1"):
        store.set_status("t1", "failed", epoch=1)
    assert issubclass(LeaseLost, StoreError)

    rec, loaded = store.load("t1")
    assert (rec.status, rec.owner, rec.lease_epoch) == ("running", "b", 2)
    assert loaded == entries[:3]

    store.append("t1", 4, entries[3:], epoch=2)
    store.set_status("t1", "cancelled", epoch=2)
    rec, loaded = store.load("t1")
    assert rec.status == "cancelled"
    assert loaded == entries


def test_an_epoch_is_checked_before_the_version(store: Store) -> None:
    entries = taken_over(store)
    with pytest.raises(LeaseLost):
        store.append("t1", 99, entries[3:], epoch=1)
    with pytest.raises(LeaseLost):
        store.append("t1", 4, entries[3:], epoch=3)  # an epoch not reached yet
    assert store.load("t1")[1] == entries[:3]


def test_a_write_with_an_epoch_to_a_task_never_leased_is_refused(store: Store) -> None:
    store.create_task(record("t1"))
    with pytest.raises(LeaseLost):
        store.append("t1", 1, [TaskCancelledEntry()], epoch=1)
    with pytest.raises(LeaseLost):
        store.set_status("t1", "done", epoch=1)
    rec, loaded = store.load("t1")
    assert (rec.status, loaded) == ("running", [])


def test_writes_without_an_epoch_are_not_fenced(store: Store) -> None:
    entries = taken_over(store)
    store.append("t1", 4, entries[3:4])
    assert store.interrupt("t1") == "interrupted"
    rec, loaded = store.load("t1")
    assert (rec.status, rec.lease_epoch) == ("interrupted", 2)
    assert loaded == entries[:4]


async def test_awaited_writes_are_fenced_too(store: Store) -> None:
    entries = taken_over(store)

    with pytest.raises(LeaseLost):
        await store.append_async("t1", 4, entries[3:], epoch=1)
    with pytest.raises(LeaseLost):
        await store.set_status_async("t1", "failed", epoch=1)
    assert store.load("t1")[1] == entries[:3]

    await store.append_async("t1", 4, entries[3:], epoch=2)
    await store.set_status_async("t1", "cancelled", epoch=2)
    rec, loaded = store.load("t1")
    assert rec.status == "cancelled"
    assert loaded == entries
    with pytest.raises(TaskNotFound):
        await store.append_async("nope", 1, entries[:1])


async def test_many_tasks_writing_at_once_each_get_their_log_in_order(store: Store) -> None:
    tasks, steps = 20, 10
    for n in range(tasks):
        store.create_task(record(f"t{n:02}", owner="a"), lease_s=LONG)

    async def drive(task_id: str) -> None:
        for step in range(steps):
            await store.append_async(task_id, step + 1, [progress(step)], epoch=1)
        await store.set_status_async(task_id, "done", epoch=1)

    await asyncio.gather(*(drive(f"t{n:02}") for n in range(tasks)))

    for n in range(tasks):
        rec, loaded = store.load(f"t{n:02}")
        assert rec.status == "done"
        assert loaded == [progress(step) for step in range(steps)]


def _race_to_claim(store: Store, task_id: str) -> list[int | None]:
    """Two threads claim ``task_id`` at the same moment; what each got."""
    barrier = threading.Barrier(2)
    won: list[int | None] = []

    def claim(owner: str) -> None:
        barrier.wait()
        won.append(store.claim(task_id, owner, 30))

    threads = [threading.Thread(target=claim, args=(owner,)) for owner in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return won


def test_one_claim_wins_when_two_threads_race(store: Store) -> None:
    """Replicas' heartbeats call the store from worker threads: a lapsed task is claimed by
    exactly one of two racing claimants, round after round."""
    for round_no in range(40):
        task_id = f"race{round_no:03d}"
        store.create_task(record(task_id, owner="gone"), lease_s=0.01)
        wait_lapsed(store, task_id)
        won = _race_to_claim(store, task_id)
        assert sorted(won, key=lambda epoch: epoch is None) == [2, None]
