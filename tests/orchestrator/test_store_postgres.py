"""What only the PostgreSQL store does: its errors in one line, schema migrations, group
commit, waiting out a server restart, and sync calls made inside a running event loop.

The contract every store keeps is tested in test_store_contract.py; these run against real
PostgreSQL clusters (the session's, or one of the test's own where the server is restarted).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from store_samples import record

from fleetmind._task_log import LogEntry, SubtaskProgressed
from fleetmind.errors import LeaseLost, StoreError, StoreUnavailable
from fleetmind.orchestrator import PostgresStore
from fleetmind.orchestrator._store_open import open_store
from fleetmind.orchestrator._store_postgres_link import Connection
from fleetmind.orchestrator._store_postgres_schema import LATEST
from fleetmind.orchestrator._store_postgres_writer import Write
from fleetmind.testing import LocalPostgres, free_port, start_test_postgres


def progress(n: int) -> LogEntry:
    return SubtaskProgressed(subtask_id="fetch", message=f"step {n}", fraction=0.5, at=float(n))


def wait_until(condition: Callable[[], bool], what: str, deadline_s: float = 60.0) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after a generous deadline."""
    deadline = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def database_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


def as_role(cluster: LocalPostgres, role: str, database: str) -> str:
    return f"postgresql://{role}@127.0.0.1:{cluster.port}/{database}"


def new_role(cluster: LocalPostgres) -> str:
    """A role that may log in and nothing more (roles are the cluster's: each test its own)."""
    role = f"r_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
    return role


def one_line_error(opening: Callable[[], object]) -> str:
    """The message of the StoreError ``opening`` raises, checked to be one line."""
    with pytest.raises(StoreError) as caught:
        opening()
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.fixture
def store(postgres_url: str) -> Iterator[PostgresStore]:
    opened = PostgresStore(postgres_url)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def own_cluster(pg_cluster: LocalPostgres) -> Iterator[LocalPostgres]:
    """A cluster of the test's own, to stop and start (``pg_cluster`` skips the test where
    PostgreSQL is missing)."""
    cluster = start_test_postgres()
    try:
        yield cluster
    finally:
        cluster.close()


# --------------------------------------------------------------------------------------------
# Opening: URLs and errors, one line each
# --------------------------------------------------------------------------------------------


def test_open_store_takes_both_url_schemes(pg_cluster: LocalPostgres, postgres_url: str) -> None:
    schemes = ("postgresql://", "postgres://", "POSTGRESQL://", "Postgres://")
    for url in (postgres_url.replace("postgresql://", scheme, 1) for scheme in schemes):
        opened = open_store(url)
        try:
            assert isinstance(opened, PostgresStore)
            assert opened.shared
            assert opened.sibling(".memory.db") is None
        finally:
            opened.close()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://fleet@127.0.0.1:notaport/db", "port 'notaport' is not a number"),
        ("postgresql://fleet:s3cret@[::1/db", "malformed PostgreSQL URL 'postgresql://fleet:***@"),
        ("postgresql://fleet@127.0.0.1/db?bogus=1", "malformed PostgreSQL URL"),
        ("sqlite:///tmp/fleet.db", "not a PostgreSQL URL"),
    ],
)
def test_a_malformed_url_is_refused_in_one_line(url: str, expected: str) -> None:
    message = one_line_error(lambda: PostgresStore(url))
    assert expected in message
    assert "s3cret" not in message


def test_a_server_that_is_not_running_is_refused_at_once() -> None:
    port = free_port()
    message = one_line_error(lambda: PostgresStore(f"postgresql://fleet@127.0.0.1:{port}/db"))
    assert message == f"cannot reach PostgreSQL at 127.0.0.1:{port}: connection refused " + (
        "(is the server running?)"
    )


def test_a_server_that_never_answers_times_out() -> None:
    with socket.socket() as silent:  # accepts connections (the backlog) and says nothing
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        url = f"postgresql://fleet@127.0.0.1:{port}/db"
        message = one_line_error(lambda: PostgresStore(url, connect_timeout=1))
    assert message == f"cannot reach PostgreSQL at 127.0.0.1:{port}: no answer within 1 s"


def test_an_unknown_database_is_named(pg_cluster: LocalPostgres) -> None:
    message = one_line_error(lambda: PostgresStore(pg_cluster.url("no_such_db")))
    assert message.startswith(f"PostgreSQL at 127.0.0.1:{pg_cluster.port} has no database")
    assert "'no_such_db'" in message


def test_an_unknown_user_is_refused(pg_cluster: LocalPostgres) -> None:
    message = one_line_error(lambda: PostgresStore(as_role(pg_cluster, "nobody_here", "db")))
    assert message.startswith(f"PostgreSQL at 127.0.0.1:{pg_cluster.port} refused user")
    assert "'nobody_here'" in message and "no such role" in message


def test_a_user_who_may_not_create_tables_is_told_the_grant(
    pg_cluster: LocalPostgres, postgres_url: str
) -> None:
    role = new_role(pg_cluster)
    database = database_of(postgres_url)
    message = one_line_error(lambda: PostgresStore(as_role(pg_cluster, role, database)))
    assert f"PostgreSQL user '{role}' may not create the store's tables" in message
    assert f'GRANT CREATE ON SCHEMA "public" TO "{role}"' in message


def test_a_user_who_may_not_use_the_tables_is_told_the_grant(
    pg_cluster: LocalPostgres, postgres_url: str
) -> None:
    PostgresStore(postgres_url).close()  # the owner makes the tables
    role = new_role(pg_cluster)
    url = as_role(pg_cluster, role, database_of(postgres_url))
    message = one_line_error(lambda: PostgresStore(url))
    assert message.startswith(f"PostgreSQL user '{role}' lacks fleetmind_tasks SELECT, ")
    grants = (
        f'GRANT SELECT ON fleetmind_schema TO "{role}"; GRANT SELECT, INSERT, UPDATE, DELETE '
        f'ON fleetmind_tasks, fleetmind_log, fleetmind_records TO "{role}"'
    )
    assert message.endswith(f"as the tables' owner, run {grants}")

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(grants)
    granted = PostgresStore(url)  # the tables exist: using them needs no CREATE
    try:
        granted.create_task(record("t1"), [progress(1)])
        assert granted.load("t1")[1] == [progress(1)]
    finally:
        granted.close()


def test_a_role_that_may_only_read_opens_the_store_read_only(
    pg_cluster: LocalPostgres, postgres_url: str
) -> None:
    role = new_role(pg_cluster)
    url = as_role(pg_cluster, role, database_of(postgres_url))
    fresh = one_line_error(lambda: PostgresStore(url, read_only=True))
    assert "may not create the store's tables" in fresh  # an empty database is migrated first
    owner = PostgresStore(postgres_url)
    try:
        owner.create_task(record("t1", owner="r1"), [progress(0)], lease_s=60)
    finally:
        owner.close()
    message = one_line_error(lambda: PostgresStore(url, read_only=True))
    assert message.endswith(
        f'run GRANT SELECT ON fleetmind_schema TO "{role}"; GRANT SELECT ON fleetmind_tasks, '
        f'fleetmind_log, fleetmind_records TO "{role}"'
    )
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(
            "GRANT SELECT ON fleetmind_schema, fleetmind_tasks, fleetmind_log, "
            f'fleetmind_records TO "{role}"'
        )
    assert "lacks fleetmind_tasks INSERT" in one_line_error(lambda: PostgresStore(url))
    reader = PostgresStore(url, read_only=True)
    try:
        assert [(t.id, t.owner) for t in reader.tasks()] == [("t1", "r1")]
        assert reader.load(reader.resolve_id("t"))[1] == [progress(0)]
        writes: list[Callable[[], object]] = [
            lambda: reader.append("t1", 2, [progress(1)]),
            lambda: reader.set_status("t1", "done"),
            lambda: reader.create_task(record("t2")),
            lambda: reader.claim("t1", "r2", 60),
            lambda: reader.put_record("notes", "k", {"a": 1}),
        ]
        for write in writes:
            assert one_line_error(write).endswith("was opened read-only: it cannot write")
    finally:
        reader.close()


# --------------------------------------------------------------------------------------------
# Migrations
# --------------------------------------------------------------------------------------------


def schema_versions(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT version FROM fleetmind_schema ORDER BY version").fetchall()
    return [row[0] for row in rows]


def test_a_fresh_database_gets_the_latest_schema_and_keeps_it(postgres_url: str) -> None:
    first = PostgresStore(postgres_url)
    first.create_task(record("t1"), [progress(1)])
    first.close()
    assert schema_versions(postgres_url) == list(range(1, LATEST + 1))

    again = PostgresStore(postgres_url)  # reopening migrates nothing and loses nothing
    try:
        assert again.load("t1")[1] == [progress(1)]
    finally:
        again.close()
    assert schema_versions(postgres_url) == list(range(1, LATEST + 1))


def test_a_database_of_a_newer_fleetmind_is_refused(postgres_url: str) -> None:
    PostgresStore(postgres_url).close()
    with psycopg.connect(postgres_url) as conn:
        conn.execute("INSERT INTO fleetmind_schema (version) VALUES (%s)", (LATEST + 1,))
    message = one_line_error(lambda: PostgresStore(postgres_url))
    assert message.endswith(
        f"has schema version {LATEST + 1}; this fleetmind knows up to {LATEST}: upgrade fleetmind"
    )


def test_replicas_opening_a_fresh_database_together_both_work(postgres_url: str) -> None:
    start = threading.Barrier(3)
    opened: list[PostgresStore] = []
    failed: list[BaseException] = []

    def open_one() -> None:
        start.wait()
        try:
            opened.append(PostgresStore(postgres_url))
        except BaseException as exc:
            failed.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert failed == []
        for n, replica in enumerate(opened):
            replica.create_task(record(f"t{n}"), [progress(n)])
        assert {task.id for task in opened[0].tasks()} == {"t0", "t1", "t2"}
    finally:
        for replica in opened:
            replica.close()
    assert schema_versions(postgres_url) == list(range(1, LATEST + 1))


# --------------------------------------------------------------------------------------------
# Replicas: two stores on one database
# --------------------------------------------------------------------------------------------


def test_replicas_see_one_another_and_a_takeover_fences_the_old_owner(
    postgres_url: str,
) -> None:
    first, second = PostgresStore(postgres_url), PostgresStore(postgres_url)
    try:
        first.create_task(record("t1", owner="r1"), [progress(0)], lease_s=60)
        assert [(t.id, t.owner, t.lease_epoch) for t in second.tasks()] == [("t1", "r1", 1)]
        assert second.claim("t1", "r2", 60) is None  # r1's lease is live
        assert first.release("t1", "r1", 1)
        assert second.orphans() == ["t1"]
        assert second.claim("t1", "r2", 60) == 2
        with pytest.raises(LeaseLost, match="is at epoch 2 \\(r2\\): epoch 1 may not write it"):
            first.append("t1", 2, [progress(1)], epoch=1)
        second.append("t1", 2, [progress(1)], epoch=2)
        assert first.renew("r1", 60) == {}
        assert second.renew("r2", 60) == {"t1": 2}
        assert first.load("t1")[1] == [progress(0), progress(1)]
    finally:
        first.close()
        second.close()


# --------------------------------------------------------------------------------------------
# Group commit
# --------------------------------------------------------------------------------------------


async def test_concurrent_writes_commit_together_each_log_in_order(
    store: PostgresStore,
) -> None:
    task_ids = [f"t{n:02d}" for n in range(50)]
    for task_id in task_ids:
        store.create_task(record(task_id), [progress(0)])

    async def drive(task_id: str) -> None:
        for n in range(1, 5):  # as the engine does: each write awaited before the next
            await store.append_async(task_id, n + 1, [progress(n)])

    await asyncio.gather(*(drive(task_id) for task_id in task_ids))
    for task_id in task_ids:
        assert store.load(task_id)[1] == [progress(n) for n in range(5)]
    assert store.stats["writes"] == 200
    assert store.stats["transactions"] < 200 / 4


class RowLock:
    """A task's row locked by another session: the store's writer waits on it."""

    def __init__(self, url: str, task_id: str) -> None:
        self._conn = psycopg.connect(url)
        self._conn.execute("SELECT 1 FROM fleetmind_tasks WHERE id = %s FOR UPDATE", (task_id,))
        self._url = url

    def writer_waits(self) -> bool:
        with psycopg.connect(self._url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"
            ).fetchone()
        return row is not None and row[0] > 0

    def release(self) -> None:
        self._conn.commit()
        self._conn.close()


async def test_a_write_failing_its_checks_fails_alone_in_its_batch(
    store: PostgresStore, postgres_url: str
) -> None:
    for task_id in ("blocker", "a", "b", "gap"):
        store.create_task(record(task_id), [progress(0)])
    store.create_task(record("leased", owner="r1"), [progress(0)], lease_s=60)
    assert store.claim("leased", "r1", 60) == 2  # epoch 1's writes are refused from now on

    lock = RowLock(postgres_url, "blocker")
    try:
        first = asyncio.ensure_future(store.append_async("blocker", 2, [progress(1)]))
        await asyncio.to_thread(wait_until, lock.writer_waits, "the writer to wait")
        before = store.stats["transactions"]
        batch = [  # queued while the writer waits: committed as one batch
            store.append_async("a", 2, [progress(1), progress(2)]),
            store.append_async("leased", 2, [progress(1)], epoch=1),
            store.append_async("b", 2, [progress(1)]),
            store.append_async("gap", 5, [progress(5)]),
            store.set_status_async("a", "done"),
            store.set_status_async("leased", "done", epoch=2),
        ]
        pending = [asyncio.ensure_future(write) for write in batch]
        await asyncio.sleep(0)
    finally:
        await asyncio.to_thread(lock.release)
    await first
    outcomes = await asyncio.gather(*pending, return_exceptions=True)

    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], LeaseLost)
    assert "is at epoch 2 (r1): epoch 1 may not write it" in str(outcomes[1])
    assert type(outcomes[3]) is StoreError
    assert "log is at version 1, got entries from 5" in str(outcomes[3])
    assert outcomes[4:] == [None, None]
    assert store.stats["transactions"] == before + 2  # the blocked write's, then the batch's
    assert store.load("a")[1] == [progress(0), progress(1), progress(2)]
    assert store.load("a")[0].status == "done"
    assert store.load("b")[1] == [progress(0), progress(1)]
    assert store.load("leased")[1] == [progress(0)]
    assert store.load("leased")[0].status == "done"
    assert store.load("gap")[1] == [progress(0)]


async def test_a_batch_the_server_refuses_is_split_to_fail_only_the_culprit(
    store: PostgresStore, postgres_url: str
) -> None:
    for task_id in ("blocker", "a"):
        store.create_task(record(task_id), [progress(0)])
    lock = RowLock(postgres_url, "blocker")
    try:
        first = asyncio.ensure_future(store.set_status_async("blocker", "done"))
        await asyncio.to_thread(wait_until, lock.writer_waits, "the writer to wait")
        pending = [
            asyncio.ensure_future(store.append_async("a", 2, [progress(1)])),
            asyncio.ensure_future(store.set_status_async("a", "bad\x00status")),
        ]
        await asyncio.sleep(0)
    finally:
        await asyncio.to_thread(lock.release)
    await first
    good, bad = await asyncio.gather(*pending, return_exceptions=True)
    assert good is None
    assert isinstance(bad, StoreError)
    assert "\n" not in str(bad)
    assert store.load("a")[1] == [progress(0), progress(1)]
    assert store.load("a")[0].status == "running"


def test_an_append_retried_after_its_commit_landed_counts_as_done(
    store: PostgresStore,
) -> None:
    """A commit whose acknowledgement was lost with the connection is tried again: entries
    already stored exactly so count as written, anything else is still refused."""
    store.create_task(record("t1"), [progress(0)])
    store.append("t1", 2, [progress(1), progress(2)])

    def retried(entries: list[LogEntry]) -> Write:
        rows = [(entry.kind, entry.model_dump_json()) for entry in entries]
        write = Write("t1", None, first_version=2, entries=rows, retried=True)
        store._writer.submit(write)
        write.done.result()
        return write

    stored = store.load("t1")[1]
    retried([stored[1], stored[2]])
    with pytest.raises(StoreError, match="log is at version 3, got entries from 2"):
        retried([progress(1), progress(7)])
    with pytest.raises(StoreError, match="log is at version 3, got entries from 2"):
        store.append("t1", 2, [progress(1), progress(2)])  # a first try is never a retry
    assert store.load("t1")[1] == [progress(0), progress(1), progress(2)]


async def test_a_write_cancelled_while_queued_is_never_sent(
    store: PostgresStore, postgres_url: str
) -> None:
    for task_id in ("blocker", "a"):
        store.create_task(record(task_id), [progress(0)])
    lock = RowLock(postgres_url, "blocker")
    try:
        first = asyncio.ensure_future(store.set_status_async("blocker", "done"))
        await asyncio.to_thread(wait_until, lock.writer_waits, "the writer to wait")
        queued = asyncio.ensure_future(store.append_async("a", 2, [progress(1)]))
        await asyncio.sleep(0)
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
    finally:
        await asyncio.to_thread(lock.release)
    await first
    await store.append_async("a", 2, [progress(2)])  # queued after it: version 2 is free
    assert store.load("a")[1] == [progress(0), progress(2)]


def raising(sqlstate: str, times: int) -> Callable[[Connection], Awaitable[str]]:
    """An operation whose first ``times`` tries fail with ``sqlstate`` (then it answers)."""
    tries = 0

    async def operation(conn: Connection) -> str:
        nonlocal tries
        tries += 1
        if tries <= times:
            await conn.execute(
                f"DO $$ BEGIN RAISE EXCEPTION 'made to fail' USING ERRCODE = '{sqlstate}'; END $$"
            )
        return f"answered after {tries} tries"

    return operation


@pytest.mark.parametrize("sqlstate", ["53100", "57014", "53200", "XX000"])
def test_a_statement_refused_for_what_it_is_fails_at_once(
    store: PostgresStore, sqlstate: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A disk full, a query cancelled, out of memory: trying again would not help."""
    caplog.set_level(logging.WARNING)
    message = one_line_error(lambda: store._link.run("read", raising(sqlstate, 1)))
    assert message.endswith(": made to fail")
    assert store.stats["retried"] == 0
    assert not [r for r in caplog.records if "PostgreSQL" in r.getMessage()]


@pytest.mark.parametrize(
    ("sqlstate", "lost"), [("40P01", False), ("40001", False), ("57P01", True)]
)
def test_a_lost_race_or_a_server_going_away_is_tried_again(
    store: PostgresStore, sqlstate: str, lost: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """A deadlock or serialization failure is tried again quietly; a server shutting down is
    an outage, said in one line when it starts and one when it ends."""
    caplog.set_level(logging.WARNING)
    assert store._link.run("read", raising(sqlstate, 2)) == "answered after 3 tries"
    assert store.stats["retried"] == 2
    said = [r.getMessage() for r in caplog.records if "PostgreSQL" in r.getMessage()]
    assert [m.split(" (")[0] for m in said] == (
        [f"lost PostgreSQL at {store.where}", f"reached PostgreSQL at {store.where} again"]
        if lost
        else []
    )


# --------------------------------------------------------------------------------------------
# A server restarted, a server gone
# --------------------------------------------------------------------------------------------


async def test_a_write_made_while_the_server_restarts_lands(
    own_cluster: LocalPostgres, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    url = own_cluster.create_database("fleet")
    store = PostgresStore(url, reconnect_s=60)
    try:
        store.create_task(record("t1"), [progress(0)])
        await asyncio.to_thread(own_cluster.stop)
        write = asyncio.ensure_future(store.append_async("t1", 2, [progress(1)]))
        status = asyncio.ensure_future(store.set_status_async("t1", "done"))
        await asyncio.to_thread(
            wait_until, lambda: store.stats["retried"] > 0, "the writer to find the server gone"
        )
        assert not write.done()  # waiting for the server, not failed
        await asyncio.to_thread(own_cluster.start)
        await write
        await status
        record_now, entries = await asyncio.to_thread(store.load, "t1")
        assert entries == [progress(0), progress(1)]
        assert record_now.status == "done"
    finally:
        store.close()
    where = f"127.0.0.1:{own_cluster.port}/fleet"
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    lost = [m for m in said if m.startswith(f"lost PostgreSQL at {where} (")]
    assert lost and all(m.endswith("); trying again for up to 60 s") for m in lost)
    assert said[0] == lost[0] and said[-1] == f"reached PostgreSQL at {where} again"
    assert set(said) - set(lost) == {said[-1]}  # one line each: none of the pool's own reports


async def test_a_write_whose_connection_is_killed_is_made_once_on_another(
    store: PostgresStore, postgres_url: str
) -> None:
    store.create_task(record("t1"), [progress(0)])
    lock = RowLock(postgres_url, "t1")
    try:
        write = asyncio.ensure_future(store.append_async("t1", 2, [progress(1)]))
        await asyncio.to_thread(wait_until, lock.writer_waits, "the writer to wait")
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        await asyncio.to_thread(
            wait_until, lambda: store.stats["retried"] > 0, "the writer to try again"
        )
        await asyncio.to_thread(wait_until, lock.writer_waits, "the writer to wait again")
    finally:
        await asyncio.to_thread(lock.release)
    await write
    assert store.load("t1")[1] == [progress(0), progress(1)]
    assert store.stats["writes"] == 1


def test_a_server_gone_longer_than_reconnect_s_fails_in_one_line(
    own_cluster: LocalPostgres,
) -> None:
    url = own_cluster.create_database("fleet")
    store = PostgresStore(url, reconnect_s=0.5, connect_timeout=2)
    try:
        store.create_task(record("t1"), [progress(0)])
        own_cluster.stop()
        for attempt in (lambda: store.load("t1"), lambda: store.append("t1", 2, [progress(1)])):
            with pytest.raises(StoreUnavailable) as caught:
                attempt()
            message = str(caught.value)
            assert "\n" not in message
            assert f"PostgreSQL at 127.0.0.1:{own_cluster.port}/fleet out of reach for 0.5 s" in (
                message
            )
        assert message.endswith("; whether the last write landed is unknown")
        # The outage's window is spent: what comes next tries once, not for another window.
        retried = store.stats["retried"]
        with pytest.raises(StoreUnavailable):
            store.set_status("t1", "done")
        assert store.stats["retried"] == retried
        own_cluster.start()
        assert store.load("t1")[1] == [progress(0)]  # and it comes back by itself
    finally:
        store.close()


# --------------------------------------------------------------------------------------------
# Inside a running event loop; closing
# --------------------------------------------------------------------------------------------


async def test_sync_calls_inside_a_running_loop_and_awaited_writes_do_not_block_it(
    store: PostgresStore, postgres_url: str
) -> None:
    store.create_task(record("t1"), [progress(0)])  # sync, as the engine creates tasks
    store.append("t1", 2, [progress(1)])
    lock = RowLock(postgres_url, "t1")
    try:
        write = asyncio.ensure_future(store.append_async("t1", 3, [progress(2)]))
        await asyncio.to_thread(wait_until, lock.writer_waits, "the writer to wait")
        ticks = 0
        for _ in range(20):  # the loop runs on while the write waits for the row
            await asyncio.sleep(0)
            ticks += 1
        assert ticks == 20 and not write.done()
    finally:
        await asyncio.to_thread(lock.release)
    await write
    store.set_status("t1", "done")
    assert store.load("t1")[0].status == "done"
    assert store.load("t1")[1] == [progress(0), progress(1), progress(2)]


def test_a_closed_store_says_so_and_closes_twice(postgres_url: str) -> None:
    opened = PostgresStore(postgres_url)
    opened.create_task(record("t1"))
    opened.close()
    opened.close()
    with pytest.raises(StoreError, match="is closed"):
        opened.load("t1")
    with pytest.raises(StoreError, match="is closed"):
        opened.append("t1", 1, [progress(1)])


def test_a_store_left_open_is_closed_at_exit_with_its_writes(postgres_url: str) -> None:
    """A script that never calls close() exits quietly, its last write committed."""
    script = (
        "import asyncio\n"
        "from fleetmind.orchestrator import PostgresStore\n"
        "from store_samples import record\n"
        f"store = PostgresStore({postgres_url!r})\n"
        "store.create_task(record('left-open'))\n"
        "asyncio.run(store.set_status_async('left-open', 'done'))\n"
    )
    here = str(Path(__file__).parent)
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([here, *sys.path])},
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    store = PostgresStore(postgres_url)
    try:
        assert store.load("left-open")[0].status == "done"
    finally:
        store.close()
