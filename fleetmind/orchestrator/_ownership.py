"""A replica's leases on its tasks: renewed by heartbeats, and the tasks of dead replicas
taken over.

Fleets that share a store as replicas (``Fleet(..., replica=Replica("a"))``) each drive the
running tasks they hold a lease on. While a fleet is open, :class:`Ownership` beats every
third of a lease: it renews what the replica holds, stops the engines of tasks it no longer
holds (another replica claimed them: their writes would be refused anyway), and claims the
tasks whose owner stopped renewing — or its own, left by this replica before a restart — so
that the fleet resumes them. The store's epochs make this safe: whoever claims a task last
is the only one that can write it.

A fleet that closes before its tasks end hands them over: its engines stop without writing,
their attempts on devices go on (the next owner's dispatches join them), and the leases are
released at once. No message tells the other replicas: each claims such a task at its next
beat, within a third of its lease.

A replica also claims the tasks leased under its id that it runs no engine for: its own from
before a restart, and those whose engines stopped because the store failed a write. A task
claimed from under one of its engines under its own id it never claims back: two processes
started by mistake with one replica id then hand a task over once, not at every beat, and
the one that lost it says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from fleetmind._ids import is_valid_id
from fleetmind._task_log import LogEntry
from fleetmind.errors import ConfigError, FleetStateError, StoreError
from fleetmind.orchestrator._engine import Engine
from fleetmind.orchestrator._store import Store, TaskRecord

log = logging.getLogger("fleetmind.replica")

_T = TypeVar("_T")


@dataclass(frozen=True)
class Replica:
    """This process as one of several orchestrator replicas sharing a store.

    Args:
        id: The replica's name among them (the same as its MQTT ``--replica-id``): the owner
            of the tasks it drives.
        lease_s: How long a task whose owner renews nothing waits before another replica
            takes it over; the owner renews every third of it.
        adopt: Whether it takes over the tasks whose leases lapsed. A process that only
            drives the tasks it starts or resumes itself (``fleetmind run``, the console)
            leases them so that no one else runs them twice, and adopts no one's.

    Raises:
        ConfigError: the id is not a valid id, or the lease is not a positive number.
    """

    id: str
    lease_s: float = 15.0
    adopt: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not is_valid_id(self.id):
            raise ConfigError(
                f"replica id {self.id!r} is not valid: use letters, digits, '-' and '_'"
            )
        lease = self.lease_s
        if isinstance(lease, bool) or not isinstance(lease, int | float) or not lease > 0:
            raise ConfigError(f"a replica's lease is a positive number of seconds, not {lease!r}")
        if not math.isfinite(lease):
            raise ConfigError(f"a replica's lease is a finite number of seconds, not {lease!r}")


Adopt = Callable[[TaskRecord, list[LogEntry], int, str | None], Awaitable[bool]]
"""Resume a task this replica has just claimed, at the epoch of the claim (with the replica
that held it before, if any); whether an engine now drives it (False: it has ended
meanwhile, or the fleet is closing)."""

RELEASE_WITHIN_S = 5.0
"""How long a closing replica tries to release its leases: past it, they lapse by themselves."""


class Ownership:
    """The heartbeats of one replica's fleet (run in the fleet's task group while it is open).

    Args:
        replica: Whose leases.
        store: The store the replicas share.
        adopt: Resumes a claimed task (see :data:`Adopt`).
        driving: Whether the fleet's task group still drives tasks: a closing fleet renews
            its leases until it does not.
    """

    def __init__(
        self, replica: Replica, store: Store, adopt: Adopt, driving: Callable[[], bool]
    ) -> None:
        self.replica = replica
        self._store = store
        self._adopt = adopt
        self._driving = driving
        self.owned: dict[str, Engine] = {}
        """The engines that drive a task under this replica's lease, by task id."""
        self._yielded: set[str] = set()
        """Tasks claimed from under this replica's engines under its own id (by another
        process with its id): left to that process."""
        self._closing = False
        self._wake = asyncio.Event()
        self._calls: set[asyncio.Future[Any]] = set()
        self._failing = False

    def close(self) -> None:
        """The fleet is closing: claim nothing more, and stop once it runs no task (renewing
        the leases of those that still run until then)."""
        self._closing = True
        self._wake.set()

    @property
    def closing(self) -> bool:
        """Whether the fleet is closing (it may start to while a beat awaits the store)."""
        return self._closing

    def task_ended(self) -> None:
        """One of the fleet's tasks stopped: a closing fleet may be done."""
        if self._closing:
            self._wake.set()

    def running_here(self, task_id: str) -> bool:
        """Whether an engine of this replica drives the task now."""
        engine = self.owned.get(task_id)
        return engine is not None and not engine.finished

    def own(self, engine: Engine) -> None:
        """``engine`` drives its task under this replica's lease (at ``engine.epoch``).

        Raises:
            FleetStateError: another engine of this replica drives the task already.
        """
        if self.running_here(engine.task_id) and self.owned[engine.task_id] is not engine:
            raise FleetStateError(f"task {engine.task_id} is running here already")
        self.owned[engine.task_id] = engine

    def disown(self, engine: Engine) -> bool:
        """Forget an engine whose run is over; whether it was owned."""
        if self.owned.get(engine.task_id) is not engine:
            return False
        del self.owned[engine.task_id]
        self.task_ended()
        return True

    def stalled(self, engine: Engine) -> None:
        """``engine`` stopped because the store failed a write: the lease stays this
        replica's, and a beat that reaches the store again claims the task and resumes it."""
        self.disown(engine)

    async def release(self, engine: Engine) -> None:
        """End the lease of an engine that stopped (its task stays as it is in the store), so
        that another replica can take the task over at once."""
        if not self.disown(engine) or engine.epoch is None:
            return
        try:
            await self._call(self._store.release, engine.task_id, self.replica.id, engine.epoch)
        except StoreError as exc:  # it lapses by itself within a lease
            log.warning("the lease of task %s was not released: %s", engine.task_id, exc)

    async def release_all(self) -> None:
        """End every lease this replica holds: the fleet has closed, nothing runs here now.

        The store calls of the heartbeats still under way finish first (a renewal landing
        after the release would take the lease back); then every task the store says this
        replica holds is released — those whose engines were stopped, and one claimed by a
        beat that the closing cut short. A store out of reach is given up on after
        :data:`RELEASE_WITHIN_S`: the leases lapse by themselves."""
        self.owned.clear()
        replica, store = self.replica, self._store
        try:
            async with asyncio.timeout(RELEASE_WITHIN_S):
                if self._calls:
                    await asyncio.wait(set(self._calls))
                held = await self._call(store.renew, replica.id, replica.lease_s)
                for task_id, epoch in held.items():
                    await self._call(store.release, task_id, replica.id, epoch)
        except TimeoutError:
            log.warning(
                "replica %s: the store did not answer within %g s; its leases lapse by "
                "themselves within %g s",
                replica.id,
                RELEASE_WITHIN_S,
                replica.lease_s,
            )
        except StoreError as exc:  # they lapse by themselves within a lease
            log.warning("replica %s could not release its leases: %s", replica.id, exc)

    async def _call(self, function: Callable[..., _T], *args: object) -> _T:
        """``function(*args)`` in a thread of its own, awaited; if the caller is cancelled,
        the call still runs to its end (:meth:`release_all` waits for it, a while). The
        thread is a daemon: one stuck on a store out of reach holds no process's exit up."""
        loop = asyncio.get_running_loop()
        call: asyncio.Future[_T] = loop.create_future()

        def work() -> None:
            try:
                outcome: tuple[Any, BaseException | None] = (function(*args), None)
            except BaseException as exc:
                outcome = (None, exc)
            with contextlib.suppress(RuntimeError):  # the loop has closed: no one waits
                loop.call_soon_threadsafe(_settle, call, *outcome)

        self._calls.add(call)
        call.add_done_callback(self._called)
        threading.Thread(target=work, name=f"replica {self.replica.id}", daemon=True).start()
        return await asyncio.shield(call)

    def _called(self, call: asyncio.Future[Any]) -> None:
        self._calls.discard(call)
        if not call.cancelled():
            call.exception()  # retrieved: a caller that was cancelled meanwhile never will

    def _busy(self) -> bool:
        return self._driving() or any(engine.running for engine in self.owned.values())

    async def run(self) -> None:
        """Beat until the fleet closes; a failed beat is logged and the next one tries again.

        A fleet that closes with nothing left to run stops at once, even while a beat waits
        for a store out of reach."""
        period = self.replica.lease_s / 3
        while True:
            self._wake.clear()
            beat = asyncio.ensure_future(self._beat_once())
            try:
                while not beat.done():
                    woken = asyncio.ensure_future(self._wake.wait())
                    await asyncio.wait({beat, woken}, return_when=asyncio.FIRST_COMPLETED)
                    woken.cancel()
                    if not beat.done() and self._closing and not self._busy():
                        return
                    self._wake.clear()
            finally:
                if not beat.done():
                    beat.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await beat
            if self._closing and not self._busy():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), period)

    async def _beat_once(self) -> None:
        try:
            await self.beat()
        except Exception as exc:  # the database restarting, say: the next beat retries
            self._report(exc)
        else:
            if self._failing:
                log.info("replica %s reaches the store again", self.replica.id)
            self._failing = False

    def _report(self, exc: Exception) -> None:
        if isinstance(exc, StoreError):
            log.warning("replica %s could not renew or claim leases: %s", self.replica.id, exc)
        else:
            log.warning("replica %s: a heartbeat failed", self.replica.id, exc_info=True)
        self._failing = True

    async def beat(self) -> None:
        """Renew, stop what is no longer held, then claim and resume orphans (and the tasks
        whose engines the store's errors stopped)."""
        replica, store = self.replica, self._store
        before = dict(self.owned)
        held = await self._call(store.renew, replica.id, replica.lease_s)
        for task_id, engine in before.items():
            if held.get(task_id) == engine.epoch or self.owned.get(task_id) is not engine:
                continue
            if task_id in held and engine.running:
                self._yielded.add(task_id)
                log.warning(
                    "task %s was claimed under replica id %s by someone else: another process "
                    "runs with replica id %s (give each replica its own id)",
                    task_id,
                    replica.id,
                    replica.id,
                )
            engine.lose_lease()  # claimed by another replica (or ended meanwhile)
        if self._closing:
            return
        self._yielded.intersection_update(held)
        unrun = [task_id for task_id in held if task_id not in self._yielded]
        orphans = await self._call(store.orphans, None) if replica.adopt else []  # lapsed
        for task_id in dict.fromkeys([*unrun, *orphans]):
            if self.closing:
                return
            if task_id in self.owned:
                continue  # running here: its lease is this replica's own
            await self._take(task_id)

    async def _take(self, task_id: str) -> None:
        """Claim a task and resume it; released again if it cannot be resumed, so that
        whoever comes next (this replica too) may try again."""
        replica, store = self.replica, self._store
        was = (await self._call(store.load, task_id))[0].owner  # to say whose task it was
        epoch = await self._call(store.claim, task_id, replica.id, replica.lease_s)
        if epoch is None:
            return  # another replica was quicker, or the task ended
        try:
            record, entries = await self._call(store.load, task_id)
            if not self.closing and await self._adopt(record, entries, epoch, was):
                return
        except Exception as exc:
            problem = str(exc) if isinstance(exc, StoreError) else repr(exc)
            log.warning("replica %s could not take task %s over: %s", replica.id, task_id, problem)
        with contextlib.suppress(StoreError):
            await self._call(store.release, task_id, replica.id, epoch)


def _settle(call: asyncio.Future[_T], result: _T, error: BaseException | None) -> None:
    if call.done():
        return
    if error is None:
        call.set_result(result)
    else:
        call.set_exception(error)
