"""Replicas when things go wrong around them: a store out of reach (writes failing, calls
hanging), and two processes started by mistake with one replica id.

The store is reached through :class:`Wire`, a wrapper that can fail every call, or hold every
call until it is let go (as a client retrying a server that went away does), and that counts
the heartbeats' renewals so that a test can wait for some to pass.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from fleetmind import Fleet, TaskGraph, agent
from fleetmind._task_log import LogEntry
from fleetmind.agents import FunctionAgent, SubtaskContext
from fleetmind.errors import FleetStateError, LeaseLost, StoreError
from fleetmind.orchestrator import (
    InMemoryStore,
    PostgresStore,
    Replica,
    SQLiteStore,
    Store,
    TaskHandle,
    TaskRecord,
)

pytestmark = pytest.mark.timeout(90)

DEADLINE_S = 30.0
"""How long any one awaited condition may take (generous: the machine may be busy)."""


class Wire(Store):
    """One replica's way to the shared store: ``down`` fails every call at once; ``hang``
    holds every call until ``let_go`` (then it fails)."""

    shared = True

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.down = False
        self.hang = False
        self.hanging = threading.Event()
        """Set once a call is held."""
        self.released = threading.Event()
        self.renewals = 0

    def let_go(self) -> None:
        self.released.set()

    def _through(self) -> None:
        if self.hang:
            self.hanging.set()
            self.released.wait(DEADLINE_S * 2)
            raise StoreError("the store's server went away")
        if self.down:
            raise StoreError("the store's server is out of reach")

    def create_task(
        self, record: TaskRecord, entries: Sequence[LogEntry] = (), *, lease_s: float | None = None
    ) -> None:
        self._through()
        self.inner.create_task(record, entries, lease_s=lease_s)

    def append(
        self,
        task_id: str,
        first_version: int,
        entries: Sequence[LogEntry],
        *,
        epoch: int | None = None,
    ) -> None:
        self._through()
        self.inner.append(task_id, first_version, entries, epoch=epoch)

    def set_status(self, task_id: str, status: str, *, epoch: int | None = None) -> None:
        self._through()
        self.inner.set_status(task_id, status, epoch=epoch)

    def load(self, task_id: str) -> tuple[TaskRecord, list[LogEntry]]:
        self._through()
        return self.inner.load(task_id)

    def tasks(self, limit: int = 50) -> list[TaskRecord]:
        self._through()
        return self.inner.tasks(limit)

    def claim(self, task_id: str, owner: str, lease_s: float) -> int | None:
        self._through()
        return self.inner.claim(task_id, owner, lease_s)

    def renew(self, owner: str, lease_s: float) -> dict[str, int]:
        self._through()
        held = self.inner.renew(owner, lease_s)
        self.renewals += 1
        return held

    def orphans(self, owner: str | None = None, limit: int = 100) -> list[str]:
        self._through()
        return self.inner.orphans(owner, limit)

    def release(self, task_id: str, owner: str, epoch: int) -> bool:
        self._through()
        return self.inner.release(task_id, owner, epoch)


Opener = Callable[[], Store]


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens the shared store as one more process would: the same object, or the same file
    or database."""
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


class Gated:
    """The agent ``worker``: every run counted (by the fleet it ran in); ``slow`` waits for
    the gate."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, str]] = []
        self.gate = asyncio.Event()
        self.started: dict[str, asyncio.Event] = {}

    def on(self, where: str) -> FunctionAgent:
        started = self.started.setdefault(where, asyncio.Event())

        @agent(id="worker")
        async def worker(ctx: SubtaskContext) -> str:
            self.runs.append((where, ctx.subtask.id))
            if ctx.subtask.id == "slow":
                started.set()
                await self.gate.wait()
            return f"{ctx.subtask.id} by {where}"

        return worker

    def ran(self, subtask_id: str) -> list[str]:
        return [where for where, sid in self.runs if sid == subtask_id]

    async def started_on(self, where: str) -> None:
        async with asyncio.timeout(DEADLINE_S):
            await self.started[where].wait()


def two_steps() -> TaskGraph:
    graph = TaskGraph("two-steps")
    graph.add_subtask("first", agent="worker")
    graph.add_subtask("slow", agent="worker", depends_on=["first"])
    return graph


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait, without blocking the event loop, until ``condition()`` holds."""
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out: {what}"
        await asyncio.sleep(0.02)


def taken_over(fleet: Fleet) -> list[TaskHandle]:
    handles: list[TaskHandle] = []
    fleet.on_takeover(handles.append)
    return handles


async def test_two_processes_with_one_replica_id_hand_a_task_over_once_not_every_beat(
    shared: Opener, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    worker = Gated()
    to_a, to_b = Wire(shared()), Wire(shared())
    a = Fleet([worker.on("a")], store=to_a, replica=Replica("host", 0.6))
    b = Fleet([worker.on("b")], store=to_b, replica=Replica("host", 0.6))
    b_took = taken_over(b)
    a_took = taken_over(a)
    async with a:
        handle_a = a.submit(two_steps())
        task_id = handle_a.task_id
        await worker.started_on("a")
        async with b:
            # b's first scan takes the lease it finds under its id (a restart, as far as it
            # can tell); a's next beat finds its task claimed and stops driving it.
            await until(lambda: len(b_took) == 1, "b takes the task")
            with pytest.raises(LeaseLost):
                async with asyncio.timeout(DEADLINE_S):
                    await handle_a.result()
            # Many beats of both later, the task has not moved again.
            renewed = to_a.renewals, to_b.renewals
            await until(
                lambda: to_a.renewals >= renewed[0] + 6 and to_b.renewals >= renewed[1] + 6,
                "six more beats of each",
            )
            assert to_a.load(task_id)[0].lease_epoch == 2
            worker.gate.set()
            async with asyncio.timeout(DEADLINE_S):
                result = await b_took[0].result()
    assert result.status == "done"
    assert result.outputs == {"first": "first by a", "slow": "slow by b"}
    assert a_took == []
    record = to_a.inner.load(task_id)[0]
    assert (record.status, record.lease_epoch) == ("done", 2)
    assert worker.ran("first") == ["a"]
    assert worker.ran("slow") == ["a", "b"]
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    cause = [m for m in said if "another process runs with replica id host" in m]
    assert len(cause) == 1
    assert task_id in cause[0]


async def test_a_write_the_store_fails_stops_the_engine_and_the_task_resumes_once_it_answers(
    shared: Opener, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    worker = Gated()
    wire = Wire(shared())
    fleet = Fleet([worker.on("a")], store=wire, replica=Replica("a", 0.6))
    resumed = taken_over(fleet)
    async with fleet:
        handle = fleet.submit(two_steps())
        task_id = handle.task_id
        await worker.started_on("a")
        wire.down = True  # the server goes away: slow's result cannot be written
        worker.gate.set()
        with pytest.raises(StoreError, match="out of reach") as raised:
            async with asyncio.timeout(DEADLINE_S):
                await handle.result()
        assert type(raised.value) is StoreError  # the store's own error, not a group of them
        record = wire.inner.load(task_id)[0]
        assert (record.status, record.owner) == ("running", "a")  # resumable
        wire.down = False  # the store answers again: the replica resumes its task
        await until(lambda: len(resumed) == 1, "the task resumed")
        assert resumed[0].task_id == task_id
        async with asyncio.timeout(DEADLINE_S):
            result = await resumed[0].result()
    assert result.status == "done"
    assert worker.ran("first") == ["a"]
    assert worker.ran("slow") == ["a", "a"]  # its result was never stored: it ran again
    record = wire.inner.load(task_id)[0]
    assert (record.status, record.lease_epoch) == ("done", 2)
    stopped = [r for r in caplog.records if "stopped: the store failed a write" in r.getMessage()]
    assert len(stopped) == 1
    assert stopped[0].exc_info is None  # one line, no traceback


async def test_a_replica_closes_at_once_while_the_store_hangs_and_leaves_no_error_unread(
    shared: Opener, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    wire = Wire(shared())
    fleet = Fleet([Gated().on("a")], store=wire, replica=Replica("a", 0.6))
    try:
        async with fleet:
            wire.hang = True  # a heartbeat is held up, as by a server that went away
            async with asyncio.timeout(DEADLINE_S):
                await asyncio.to_thread(wire.hanging.wait, DEADLINE_S)
        # Closed while the heartbeat's call is still held: the fleet waited for it a little
        # only, and said so.
        assert not wire.released.is_set()
        said = [r.getMessage() for r in caplog.records]
        assert any("the store did not answer within" in m for m in said)
    finally:
        wire.let_go()
    await until(lambda: not _held_threads(), "the held call's thread ends")
    gc.collect()
    await asyncio.sleep(0)
    said = [r.getMessage() for r in caplog.records]
    assert not any("never retrieved" in m for m in said)


def _held_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "replica a"]


async def test_a_task_running_on_a_replica_is_not_resumed_there_a_second_time(
    shared: Opener,
) -> None:
    worker = Gated()
    fleet = Fleet([worker.on("a")], store=shared(), replica=Replica("a", 0.6))
    async with fleet:
        handle = fleet.submit(two_steps())
        await worker.started_on("a")
        with pytest.raises(FleetStateError, match="running here already"):
            fleet.submit_resume(handle.task_id)
        with pytest.raises(FleetStateError, match="running here already"):
            await fleet.resume(handle.task_id)
        assert fleet.store.load(handle.task_id)[0].lease_epoch == 1  # nothing claimed
        worker.gate.set()
        async with asyncio.timeout(DEADLINE_S):
            assert (await handle.result()).status == "done"
    assert worker.ran("slow") == ["a"]


async def test_a_replica_creates_a_submitted_task_off_its_event_loop(shared: Opener) -> None:
    wire = Wire(shared())
    fleet = Fleet([Gated().on("a")], store=wire, replica=Replica("a", 30))
    try:
        async with fleet:
            wire.hang = True  # the store's server went away: its calls wait for it
            submitting = asyncio.ensure_future(fleet.asubmit(two_steps()))
            # The loop runs on while the task's creation waits: this very wait is on it.
            await asyncio.to_thread(wire.hanging.wait, DEADLINE_S)
            assert wire.hanging.is_set()
            assert not submitting.done()
            wire.let_go()
            with pytest.raises(StoreError, match="went away"):
                async with asyncio.timeout(DEADLINE_S):
                    await submitting
            wire.hang = False
    finally:
        wire.let_go()


async def test_a_fleet_closes_the_server_store_it_opened_itself(postgres_url: str) -> None:
    mine = PostgresStore(postgres_url)
    try:
        async with Fleet(store=mine, replica=Replica("a")):
            pass
        assert mine.tasks() == []  # given to the fleet: the caller's to close
        fleet = Fleet(store=postgres_url, replica=Replica("b"))
        async with fleet:
            assert fleet.store.tasks() == []
        with pytest.raises(StoreError):
            fleet.store.tasks()  # opened by the fleet from its URL: closed with it
    finally:
        mine.close()
