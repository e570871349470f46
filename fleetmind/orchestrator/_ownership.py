"""A replica's leases on its tasks: renewed by heartbeats, and the tasks of dead replicas
taken over.

Fleets that share a store as replicas (``Fleet(..., replica=Replica("a"))``) each drive the
running tasks they hold a lease on. While a fleet is open, :class:`Ownership` beats every
third of a lease: it renews what the replica holds, stops the engines of tasks it no longer
holds (another replica claimed them: their writes would be refused anyway), and claims the
tasks whose owner stopped renewing — or its own, left by this replica before a restart — so
that the fleet resumes them. The store's epochs make this safe: whoever claims a task last
is the only one that can write it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from fleetmind._ids import is_valid_id
from fleetmind._task_log import LogEntry
from fleetmind.errors import ConfigError, StoreError
from fleetmind.orchestrator._engine import Engine
from fleetmind.orchestrator._store import Store, TaskRecord

log = logging.getLogger("fleetmind.replica")


@dataclass(frozen=True)
class Replica:
    """This process as one of several orchestrator replicas sharing a store.

    Args:
        id: The replica's name among them (the same as its MQTT ``--replica-id``): the owner
            of the tasks it drives.
        lease_s: How long a task whose owner renews nothing waits before another replica
            takes it over; the owner renews every third of it.

    Raises:
        ConfigError: the id is not a valid id, or the lease is not a positive number.
    """

    id: str
    lease_s: float = 15.0

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


Adopt = Callable[[TaskRecord, list[LogEntry], int], None]
"""Resume a task this replica has just claimed, at the epoch of the claim."""


class Ownership:
    """The heartbeats of one replica's fleet (run in the fleet's task group while it is open).

    Args:
        replica: Whose leases.
        store: The store the replicas share.
        owned: The engines this fleet runs under a lease now, by task id.
        adopt: Resumes a claimed task (see :data:`Adopt`); a task that has ended meanwhile it
            skips.
    """

    def __init__(
        self,
        replica: Replica,
        store: Store,
        owned: Callable[[], Mapping[str, Engine]],
        adopt: Adopt,
    ) -> None:
        self.replica = replica
        self._store = store
        self._owned = owned
        self._adopt = adopt
        self._closing = False
        self._wake = asyncio.Event()
        self._failing = False

    def close(self) -> None:
        """The fleet is closing: claim nothing more, and stop once no task is owned (renewing
        the leases of those that still run until then)."""
        self._closing = True
        self._wake.set()

    @property
    def closing(self) -> bool:
        """Whether the fleet is closing (it may start to while a beat awaits the store)."""
        return self._closing

    def task_ended(self) -> None:
        """An owned task's engine stopped: a closing fleet may be done."""
        if self._closing:
            self._wake.set()

    async def run(self) -> None:
        """Beat until the fleet closes; a failed beat is logged and the next one tries again."""
        period = self.replica.lease_s / 3
        while True:
            self._wake.clear()
            try:
                await self.beat()
            except Exception as exc:  # the database restarting, say: the next beat retries
                self._report(exc)
            else:
                if self._failing:
                    log.info("replica %s reaches the store again", self.replica.id)
                self._failing = False
            if self._closing and not self._owned():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), period)

    def _report(self, exc: Exception) -> None:
        if isinstance(exc, StoreError):
            log.warning("replica %s could not renew or claim leases: %s", self.replica.id, exc)
        else:
            log.warning("replica %s: a heartbeat failed", self.replica.id, exc_info=True)
        self._failing = True

    async def beat(self) -> None:
        """Renew, stop what is no longer held, then claim and resume orphans."""
        replica, store = self.replica, self._store
        before = dict(self._owned())
        held = await asyncio.to_thread(store.renew, replica.id, replica.lease_s)
        for task_id, engine in before.items():
            if held.get(task_id) != engine.epoch and self._owned().get(task_id) is engine:
                engine.lose_lease()  # claimed by another replica (or ended meanwhile)
        if self._closing:
            return
        for task_id in await asyncio.to_thread(store.orphans, replica.id):
            if self.closing:
                return
            if task_id in self._owned():
                continue  # running here: its lease is this replica's own
            epoch = await asyncio.to_thread(store.claim, task_id, replica.id, replica.lease_s)
            if epoch is None:
                continue  # another replica was quicker, or the task ended
            try:
                record, entries = await asyncio.to_thread(store.load, task_id)
                if not self.closing:
                    self._adopt(record, entries, epoch)
                    continue
            except Exception as exc:
                # Not resumed: released, so that whoever comes next (this replica too) may try
                # again; the other orphans are claimed meanwhile.
                problem = str(exc) if isinstance(exc, StoreError) else repr(exc)
                log.warning(
                    "replica %s could not take task %s over: %s", replica.id, task_id, problem
                )
            await asyncio.to_thread(store.release, task_id, replica.id, epoch)
