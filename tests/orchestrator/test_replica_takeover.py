"""Fleets as replicas sharing one store: tasks leased to the replica that runs them, taken
over when that replica stops renewing, fenced so that the old owner writes nothing after.

Two fleets in one process share an in-memory store (one object), a SQLite file or a
PostgreSQL database (a store each, as two processes would open them). A replica "dies" in two
honest ways: its heartbeats stop reaching the store (a store wrapper that fails its lease
calls, as a lost connection would) while its engine lives on, or its fleet is cancelled with
the store unreachable, so that nothing is released.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from plain_store import Plain

from fleetmind import Fleet, InputRequired, TaskGraph, agent
from fleetmind._task_log import LogEntry
from fleetmind.agents import FunctionAgent, SubtaskContext
from fleetmind.errors import ConfigError, FleetStateError, LeaseLost, StoreError
from fleetmind.orchestrator import (
    InMemoryStore,
    PostgresStore,
    Replica,
    SQLiteStore,
    Store,
    TaskEvent,
    TaskHandle,
    TaskRecord,
)

pytestmark = pytest.mark.timeout(90)

DEADLINE_S = 30.0
"""How long any one awaited condition may take (generous: the machine may be busy)."""


class Reachable(Store):
    """A replica's way to a shared store, which can be cut: its lease calls (renew, claim,
    orphans, release) then fail as a lost connection does, while its task writes still go
    through — a replica whose heartbeats stopped, and whose engine comes back to write."""

    shared = True

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.cut = False

    def _lease_call(self) -> None:
        if self.cut:
            raise StoreError("connection to the store lost")

    def create_task(
        self, record: TaskRecord, entries: Sequence[LogEntry] = (), *, lease_s: float | None = None
    ) -> None:
        self.inner.create_task(record, entries, lease_s=lease_s)

    def append(
        self,
        task_id: str,
        first_version: int,
        entries: Sequence[LogEntry],
        *,
        epoch: int | None = None,
    ) -> None:
        self.inner.append(task_id, first_version, entries, epoch=epoch)

    def set_status(self, task_id: str, status: str, *, epoch: int | None = None) -> None:
        self.inner.set_status(task_id, status, epoch=epoch)

    def load(self, task_id: str) -> tuple[TaskRecord, list[LogEntry]]:
        return self.inner.load(task_id)

    def tasks(self, limit: int = 50) -> list[TaskRecord]:
        return self.inner.tasks(limit)

    def claim(self, task_id: str, owner: str, lease_s: float) -> int | None:
        self._lease_call()
        return self.inner.claim(task_id, owner, lease_s)

    def renew(self, owner: str, lease_s: float) -> dict[str, int]:
        self._lease_call()
        return self.inner.renew(owner, lease_s)

    def orphans(self, owner: str | None = None, limit: int = 100) -> list[str]:
        self._lease_call()
        return self.inner.orphans(owner, limit)

    def release(self, task_id: str, owner: str, epoch: int) -> bool:
        self._lease_call()
        return self.inner.release(task_id, owner, epoch)


Opener = Callable[[], Store]
"""Opens the shared store as one more replica would: the same object, or the same file."""


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def shared_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    opened: list[SQLiteStore | PostgresStore] = []
    memory = InMemoryStore()
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else ""

    def open_one() -> Store:
        if request.param == "memory":
            return memory
        store = PostgresStore(url) if url else SQLiteStore(tmp_path / "fleet.db")
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()


class Worker:
    """The agent each replica runs (id ``worker``): every run is counted, by replica; the
    subtask ``slow`` waits on its replica's gate."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, str]] = []
        self.gates: dict[str, asyncio.Event] = {}
        self.slow_started: dict[str, asyncio.Event] = {}

    def on(self, replica: str, *, gated: bool) -> FunctionAgent:
        gate = self.gates.setdefault(replica, asyncio.Event())
        if not gated:
            gate.set()
        started = self.slow_started.setdefault(replica, asyncio.Event())

        @agent(id="worker")
        async def worker(ctx: SubtaskContext) -> str:
            self.runs.append((replica, ctx.subtask.id))
            if ctx.subtask.id == "slow":
                started.set()
                await gate.wait()
            return f"{ctx.subtask.id} by {replica}"

        return worker

    def ran(self, subtask_id: str) -> list[str]:
        return [replica for replica, sid in self.runs if sid == subtask_id]


def two_steps() -> TaskGraph:
    graph = TaskGraph("two-steps")
    graph.add_subtask("first", agent="worker")
    graph.add_subtask("slow", agent="worker", depends_on=["first"])
    return graph


class Takeovers:
    """What a fleet's ``on_takeover`` callbacks received."""

    def __init__(self, fleet: Fleet) -> None:
        self.handles: list[TaskHandle] = []
        self._came = asyncio.Event()
        fleet.on_takeover(self._taken)

    def _taken(self, handle: TaskHandle) -> None:
        self.handles.append(handle)
        self._came.set()

    async def first(self) -> TaskHandle:
        async with asyncio.timeout(DEADLINE_S):
            await self._came.wait()
        return self.handles[0]


async def collect(handle: TaskHandle) -> list[TaskEvent]:
    return [event async for event in handle.events()]


class Running:
    """A fleet held open by a task of its own, so that a test can close it by cancelling it
    (as a server's shutdown does) without closing the test's own scope."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self._stop = asyncio.Event()
        self.task = asyncio.ensure_future(self._hold())

    async def _hold(self) -> None:
        async with self.fleet:
            await self._stop.wait()

    async def open(self) -> Fleet:
        async with asyncio.timeout(DEADLINE_S):
            await self.fleet.wait_open()
        return self.fleet

    async def cancel(self) -> None:
        """Close the fleet by cancelling it: its running tasks stop where they are."""
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task

    async def close(self) -> None:
        """Close the fleet as its body ends: it waits for its tasks first."""
        self._stop.set()
        async with asyncio.timeout(DEADLINE_S):
            await self.task

    async def stop(self) -> None:
        """However the test went, the fleet is closed when it ends."""
        if not self.task.done():
            self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def started_on(worker: Worker, replica: str) -> None:
    async with asyncio.timeout(DEADLINE_S):
        await worker.slow_started[replica].wait()


# ---------------------------------------------------------------------------------------------
# Takeover and fencing
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("learns_by", ["its late write", "its heartbeat"])
async def test_a_replica_that_stops_renewing_loses_its_task_and_writes_nothing_after(
    shared_store: Opener, learns_by: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    worker = Worker()
    to_a = Reachable(shared_store())
    a = Running(Fleet([worker.on("a", gated=True)], store=to_a, replica=Replica("a", 0.6)))
    b = Fleet([worker.on("b", gated=False)], store=shared_store(), replica=Replica("b", 3.0))
    takeovers = Takeovers(b)
    try:
        fleet_a = await a.open()
        handle_a = fleet_a.submit(two_steps())
        task_id = handle_a.task_id
        events_a = asyncio.ensure_future(collect(handle_a))
        await started_on(worker, "a")
        assert to_a.load(task_id)[0].owner == "a"
        to_a.cut = True  # a's heartbeats stop reaching the store; its engine runs on

        async with b:
            taken = await takeovers.first()
            assert taken.task_id == task_id
            async with asyncio.timeout(DEADLINE_S):
                result = await taken.result()
            assert result.status == "done"
            assert result.outputs == {"first": "first by a", "slow": "slow by b"}
            record, log_after_b = b.store.load(task_id)
            assert (record.status, record.owner, record.lease_epoch) == ("done", "b", 2)
            assert "task_finished" in [e.kind for e in await collect(taken)]
            assert "task_resumed" in [e.kind for e in log_after_b]

            if learns_by == "its late write":
                worker.gates["a"].set()  # a's slow subtask answers now, after the takeover
            else:
                to_a.cut = False  # a's next heartbeat finds the task is no longer its own
            with pytest.raises(LeaseLost):
                async with asyncio.timeout(DEADLINE_S):
                    await handle_a.result()
            async with asyncio.timeout(DEADLINE_S):
                kinds_a = [e.kind for e in await events_a]
            assert "task_finished" not in kinds_a  # a claims no end it did not reach
            record, log_now = b.store.load(task_id)
            assert log_now == log_after_b  # a wrote nothing after the takeover
            assert (record.status, record.owner, record.lease_epoch) == ("done", "b", 2)
        await a.close()
    finally:
        await a.stop()
    assert worker.ran("first") == ["a"]  # done before the takeover: not run again
    assert worker.ran("slow") == ["a", "b"]
    said = [r.getMessage() for r in caplog.records]
    assert f"task {task_id} was taken over by another replica" in said
    assert any("could not renew or claim leases: connection to the store lost" in m for m in said)


async def test_a_replica_closing_cleanly_hands_its_task_over_at_once(
    shared_store: Opener,
) -> None:
    worker = Worker()
    # a's lease would last a minute: only its release lets b take the task over sooner.
    a = Running(Fleet([worker.on("a", gated=True)], store=shared_store(), replica=Replica("a", 60)))
    b = Fleet([worker.on("b", gated=False)], store=shared_store(), replica=Replica("b", 3.0))
    takeovers = Takeovers(b)
    try:
        handle_a = (await a.open()).submit(two_steps())
        task_id = handle_a.task_id
        await started_on(worker, "a")
        async with b:
            with pytest.raises(FleetStateError, match=r"running in another process \(owner a\)"):
                b.submit_resume(task_id)  # a holds it: b may not drive it too
            await a.cancel()  # a server's shutdown: a's task stops where it is, still running
            taken = await takeovers.first()  # long before a's lease of a minute would lapse
            async with asyncio.timeout(DEADLINE_S):
                result = await taken.result()
        assert taken.task_id == task_id
        record = b.store.load(task_id)[0]
        assert (record.status, record.owner, record.lease_epoch) == ("done", "b", 2)
        assert result.outputs == {"first": "first by a", "slow": "slow by b"}
    finally:
        await a.stop()
    assert worker.ran("first") == ["a"]
    assert worker.ran("slow") == ["a", "b"]


async def test_a_restarted_replica_takes_its_own_task_back_at_once(shared_store: Opener) -> None:
    worker = Worker()
    to_a = Reachable(shared_store())
    first_a = Running(Fleet([worker.on("a", gated=True)], store=to_a, replica=Replica("a", 60)))
    try:
        task_id = (await first_a.open()).submit(two_steps()).task_id
        await started_on(worker, "a")
        to_a.cut = True
        await first_a.cancel()  # dies with the store out of reach: nothing is released
    finally:
        await first_a.stop()
    record = to_a.inner.load(task_id)[0]
    assert (record.status, record.owner, record.lease_epoch) == ("running", "a", 1)

    # Its lease has most of a minute to run, but it is the same replica's, started again.
    again = Fleet([worker.on("a-again", gated=False)], store=shared_store(), replica=Replica("a"))
    takeovers = Takeovers(again)
    async with again:
        taken = await takeovers.first()
        async with asyncio.timeout(DEADLINE_S):
            result = await taken.result()
    assert taken.task_id == task_id
    assert result.outputs == {"first": "first by a", "slow": "slow by a-again"}
    assert worker.ran("first") == ["a"]
    record = again.store.load(task_id)[0]
    assert (record.status, record.owner, record.lease_epoch) == ("done", "a", 2)


async def test_a_replica_leases_the_tasks_it_creates_and_ends_the_lease_with_the_task(
    shared_store: Opener,
) -> None:
    worker = Worker()
    fleet = Fleet([worker.on("a", gated=True)], store=shared_store(), replica=Replica("a", 60))
    assert fleet.replica == Replica("a", 60)
    async with fleet:
        handle = fleet.submit(two_steps())
        await started_on(worker, "a")
        record = fleet.store.load(handle.task_id)[0]
        assert (record.status, record.owner, record.lease_epoch) == ("running", "a", 1)
        assert fleet.store.renew("a", 60) == {handle.task_id: 1}
        assert fleet.store.orphans() == []  # a live lease: no one's orphan
        with pytest.raises(FleetStateError, match="running here already"):
            fleet.submit_resume(handle.task_id)  # a second engine of its own would be fenced
        worker.gates["a"].set()
        result = await handle.result()
    assert result.status == "done"
    assert fleet.store.load(handle.task_id)[0].status == "done"
    assert fleet.store.renew("a", 60) == {}


async def test_a_replica_whose_body_raises_releases_the_task_it_stops(
    shared_store: Opener,
) -> None:
    worker = Worker()
    store = shared_store()
    a = Fleet([worker.on("a", gated=True)], store=store, replica=Replica("a", 60))
    with pytest.raises(ValueError, match="the user's own error"):
        async with a:
            task_id = a.submit(two_steps()).task_id
            await started_on(worker, "a")
            raise ValueError("the user's own error")
    record = store.load(task_id)[0]
    assert (record.status, record.owner, record.lease_epoch) == ("running", "a", 1)
    assert store.orphans() == [task_id]  # released: any replica may take it now


def asker() -> FunctionAgent:
    """An agent that asks a question until it has a reply."""

    @agent(id="asker")
    async def ask(reply: str | None = None) -> str:
        if reply is None:
            raise InputRequired("which colour?")
        return f"painted {reply}"

    return ask


async def test_a_task_that_asked_on_one_replica_is_answered_on_another(
    shared_store: Opener,
) -> None:
    graph = TaskGraph("asks")
    graph.add_subtask("ask", agent="asker")
    a = Fleet([asker()], store=shared_store(), replica=Replica("a", 60))
    b = Fleet([asker()], store=shared_store(), replica=Replica("b", 60))
    async with a:
        asked = await a.submit(graph).result()
    assert asked.status == "failed"
    async with b:
        assert b.questions(asked.task_id) == {"ask": "which colour?"}
        answered = await b.answer(asked.task_id, {"ask": "blue"}).result()
    assert answered.outputs == {"ask": "painted blue"}
    record = b.store.load(asked.task_id)[0]
    assert (record.status, record.owner, record.lease_epoch) == ("done", "b", 2)


# ---------------------------------------------------------------------------------------------
# Without replicas, and misuse
# ---------------------------------------------------------------------------------------------


class Legacy(Plain, Store):
    """A store written before leases: its writes take no ``epoch``, its tasks no lease."""


async def test_without_a_replica_nothing_is_leased_and_older_stores_still_work() -> None:
    worker = Worker()
    for store in (InMemoryStore(), Legacy()):
        fleet = Fleet([worker.on("solo", gated=False)], store=store)
        assert fleet.replica is None
        result = await fleet.run(two_steps(), task_id="solo1")
        assert result.status == "done"
        record = store.load("solo1")[0]
        assert (record.status, record.owner, record.lease_epoch) == ("done", None, 0)
    assert InMemoryStore().orphans() == []


def test_a_replica_needs_a_store_that_replicas_can_share() -> None:
    with pytest.raises(ConfigError, match="replica 'a' needs a store that replicas can share"):
        Fleet(store=Legacy(), replica=Replica("a"))


@pytest.mark.parametrize(
    ("replica_id", "lease_s", "problem"),
    [
        ("a b", 15.0, "replica id 'a b' is not valid"),
        ("", 15.0, "replica id '' is not valid"),
        ("a", 0, "positive number of seconds, not 0"),
        ("a", -1.0, "positive number of seconds, not -1.0"),
        ("a", math.inf, "finite number of seconds, not inf"),
        ("a", math.nan, "positive number of seconds, not nan"),
    ],
)
def test_a_replica_with_a_bad_id_or_lease_is_refused_in_one_line(
    replica_id: str, lease_s: float, problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem) as raised:
        Replica(replica_id, lease_s)
    assert "\n" not in str(raised.value)
