"""Where the console's data comes from: a store read-only, or a fleet that runs tasks here.

Every source answers the same questions (the task list, one task's graph, the devices) and
feeds the same :class:`EventHub`. The store is read in worker threads, so a slow database
never stalls the pages' streams; tasks that other processes run in the same store are
noticed by polling it (:class:`StoreWatch`), those run here by following their event streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from fleetmind._ids import new_task_id
from fleetmind._version import __version__
from fleetmind.errors import (
    ConfigError,
    FleetmindError,
    FleetStateError,
    ModelNotConfigured,
    StoreError,
    TaskNotFound,
)
from fleetmind.orchestrator import (
    Fleet,
    Store,
    TaskFinishedEvent,
    TaskGraph,
    TaskHandle,
    TaskRecord,
    cancel_stored,
    parse_task_text,
)
from fleetmind.serve._console_events import EventHub
from fleetmind.serve._console_views import (
    device_view,
    entry_dict,
    event_dict,
    graph_view,
    task_summary,
)

log = logging.getLogger("fleetmind.console")

POLL_S = 1.0
"""How often the store is read for tasks that changed (those run elsewhere)."""

WATCHED_TASKS = 50
"""The newest tasks the store watch looks at on each poll."""

KEPT_FINISHED = 100
"""Finished tasks a fleet console keeps the live graphs of (older ones are read from the store)."""

MAX_LIMIT = 1000
"""The most tasks one list request returns."""

_ENDED = ("done", "failed", "cancelled")

_T = TypeVar("_T")


class ApiError(Exception):
    """A request the console refuses: an HTTP status and one line saying why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ConsoleSource:
    """A store read-only: the base every source builds on.

    Args:
        store: Where tasks are kept.
        fleet_name: The name the page shows.
        poll_s: How often the store is read for changes.
    """

    mode = "store"
    watch_logs = True
    """Whether the store watch streams the log entries of running tasks (a source that hears
    the tasks' own events says no)."""

    def __init__(self, store: Store, *, fleet_name: str = "default", poll_s: float = POLL_S):
        self.store = store
        self.fleet_name = fleet_name
        self.poll_s = poll_s
        self._counts: dict[tuple[str, str, float], dict[str, int]] = {}

    # What the page asks -----------------------------------------------------------------

    @property
    def read_only(self) -> bool:
        return True

    @property
    def can_plan(self) -> bool:
        return False

    def info(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "read_only": self.read_only,
            "can_plan": self.can_plan,
            "fleet": self.fleet_name,
            "version": __version__,
        }

    async def tasks(self, limit: int) -> list[dict[str, Any]]:
        """The newest tasks first, each with its subtasks counted by status.

        A live graph is read on the event loop, where its engine changes it; the store in a
        worker thread.
        """
        limit = max(1, min(limit, MAX_LIMIT))
        records = await asyncio.to_thread(self._guarded, lambda: self.store.tasks(limit))
        counts: dict[str, dict[str, int]] = {}
        for record in records:
            live = self.live_graph(record.id)
            if live is not None:
                counts[record.id] = live.counts()
        stored = [r for r in records if r.id not in counts]
        counts.update(await asyncio.to_thread(self._stored_counts, stored))
        return [task_summary(r, counts.get(r.id, {})) for r in records]

    def _stored_counts(self, records: list[TaskRecord]) -> dict[str, dict[str, int]]:
        found: dict[str, dict[str, int]] = {}
        for record in records:
            key = (record.id, record.status, record.updated_at)
            counts = self._counts.get(key)
            if counts is None:
                try:
                    _, entries = self.store.load(record.id)
                    counts = TaskGraph.from_log(entries, record.name).counts()
                except FleetmindError as exc:  # one unreadable task must not hide the others
                    log.warning("task %s cannot be read: %s", record.id, exc)
                    continue
                if record.status in _ENDED:  # a running task's counts move without its record
                    if len(self._counts) >= MAX_LIMIT * 10:
                        self._counts.clear()  # rebuilt for the tasks still asked for
                    self._counts[key] = counts
            found[record.id] = counts
        return found

    async def task(self, task_id: str) -> dict[str, Any]:
        """One task's graph: live when it runs here (read on the event loop, where its engine
        changes it), else rebuilt from the store's log in a worker thread."""
        full_id = task_id
        if self.live_graph(task_id) is None:
            full_id = await asyncio.to_thread(self._resolve, task_id)
        live = self.live_graph(full_id)
        if live is not None:
            status = live.status if live.is_finished else "running"
            return graph_view(full_id, status, live, live.log)
        return await asyncio.to_thread(self._stored_view, full_id)

    def _stored_view(self, task_id: str) -> dict[str, Any]:
        record, entries = self._guarded(lambda: self.store.load(task_id))
        return graph_view(task_id, record.status, TaskGraph.from_log(entries, record.name), entries)

    def _resolve(self, task_id: str) -> str:
        if not task_id:
            raise ApiError(404, "no task id given")
        try:
            return self.store.resolve_id(task_id)
        except TaskNotFound:
            raise ApiError(404, f"no task {task_id}") from None
        except StoreError as exc:
            raise ApiError(503, f"the store cannot be read: {exc.message}") from None

    def _guarded(self, read: Callable[[], _T]) -> _T:
        try:
            return read()
        except TaskNotFound as exc:
            raise ApiError(404, exc.message) from None
        except StoreError as exc:
            raise ApiError(503, f"the store cannot be read: {exc.message}") from None

    def live_graph(self, task_id: str) -> TaskGraph | None:
        """The graph of a task this console runs (None: read it from the store)."""
        return None

    async def devices(self) -> list[dict[str, Any]]:
        return []

    # What the page does ------------------------------------------------------------------

    async def submit_file(self, file_name: str, content: str, params: Mapping[str, Any]) -> str:
        raise ApiError(405, self._read_only_line())

    async def submit_text(self, text: str) -> str:
        raise ApiError(405, self._read_only_line())

    async def cancel(self, task_id: str) -> str:
        raise ApiError(405, self._read_only_line())

    async def resume(self, task_id: str) -> str:
        raise ApiError(405, self._read_only_line())

    def _read_only_line(self) -> str:
        return "this console only reads the store; start it with --fleet or --broker to run tasks"

    # Live feed ---------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def running(self, hub: EventHub) -> AsyncIterator[None]:
        """Feed ``hub`` while the console serves."""
        watch = StoreWatch(
            self.store, hub, self.live_graph, every_s=self.poll_s, logs=self.watch_logs
        )
        async with _background(watch.run(), "store watch"):
            yield


class StoreWatch:
    """Reads the store now and then, and publishes what changed: a task's status, and the
    entries added to the log of a running task (as ``graph`` events carrying the entry).

    Tasks for which ``live`` has a graph are followed otherwise and skipped here. The first
    reading is the baseline: pages fetch what exists when they connect.
    """

    def __init__(
        self,
        store: Store,
        hub: EventHub,
        live: Callable[[str], TaskGraph | None],
        *,
        every_s: float = POLL_S,
        watched: int = WATCHED_TASKS,
        logs: bool = True,
    ) -> None:
        self.store = store
        self.logs = logs
        self.hub = hub
        self.live = live
        self.every_s = every_s
        self.watched = watched
        self._states: dict[str, tuple[str, float, str | None]] | None = None
        self._lengths: dict[str, int] = {}

    async def run(self) -> None:
        while True:
            try:
                for kind, data in await asyncio.to_thread(self.poll):
                    self.hub.publish(kind, data)
            except FleetmindError as exc:  # the database went away: say so, try again later
                log.warning("the store cannot be read: %s", exc)
            await asyncio.sleep(self.every_s)

    def poll(self) -> list[tuple[str, dict[str, Any]]]:
        """What changed since the last poll, as events (none on the first)."""
        records = self.store.tasks(self.watched)
        first = self._states is None
        states = self._states or {}
        found: list[tuple[str, dict[str, Any]]] = []
        now: dict[str, tuple[str, float, str | None]] = {}
        for record in records:
            state = (record.status, record.updated_at, record.owner)
            now[record.id] = state
            changed = states.get(record.id) != state
            followed = self.live(record.id) is not None  # its follower says what changes
            if changed and not first and not followed:
                found.append(("task", {"task_id": record.id, "status": record.status}))
            if not self.logs or followed:
                continue
            if record.status == "running" or (changed and not first):
                found += self._new_entries(record.id, baseline=first)
        self._states = now
        for gone in set(self._lengths) - set(now):
            del self._lengths[gone]
        return found

    def _new_entries(self, task_id: str, *, baseline: bool) -> list[tuple[str, dict[str, Any]]]:
        try:
            _, entries = self.store.load(task_id)
        except TaskNotFound:
            return []
        known = self._lengths.get(task_id)
        self._lengths[task_id] = len(entries)
        if baseline or (known is None and not entries):
            return []
        start = 0 if known is None else known
        return [
            ("graph", {"task_id": task_id, "version": index + 1, "event": entry_dict(entry)})
            for index, entry in enumerate(entries[start:], start)
        ]


@contextlib.asynccontextmanager
async def _background(work: Any, name: str) -> AsyncIterator[asyncio.Task[Any]]:
    """Run ``work`` while the block runs; cancel it after."""
    task = asyncio.create_task(work, name=f"console {name}")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class FleetSource(ConsoleSource):
    """A fleet opened here: tasks submitted from the page run in this process, on its agents.

    Args:
        fleet: The fleet, not yet open; the console opens it and closes it when it stops. The
            tasks still running then are marked interrupted (resumable), as Ctrl-C marks
            those of ``fleetmind run``.
        fleet_name: The name the page shows.
        no_planner: Why plain words cannot be planned (the line the page shows); None when
            the fleet has a planner.
        metadata: Kept with every task submitted here: ``fleet``, where its fleet is (as
            ``fleetmind run`` keeps it), so that ``fleetmind resume`` finds the agents again.
        task_files: Where the task files submitted here are kept (None: not kept; such tasks
            resume from the console only).
    """

    mode = "fleet"

    def __init__(
        self,
        fleet: Fleet,
        *,
        fleet_name: str = "local",
        no_planner: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        task_files: Path | None = None,
        poll_s: float = POLL_S,
    ) -> None:
        super().__init__(fleet.store, fleet_name=fleet_name, poll_s=poll_s)
        self.fleet = fleet
        self.task_files = task_files
        self.no_planner = no_planner
        self.metadata = dict(metadata or {})
        self._followed: dict[str, TaskHandle] = {}
        self._followers: set[asyncio.Task[None]] = set()
        self._hub: EventHub | None = None

    @property
    def read_only(self) -> bool:
        return False

    @property
    def can_plan(self) -> bool:
        return self.fleet.planner is not None

    def live_graph(self, task_id: str) -> TaskGraph | None:
        handle = self._followed.get(task_id)
        return handle.graph if handle is not None else None

    async def devices(self) -> list[dict[str, Any]]:
        return [device_view("local", True, time.time(), self.fleet.profiles)]

    async def submit_file(self, file_name: str, content: str, params: Mapping[str, Any]) -> str:
        try:
            parsed = parse_task_text(content, file_name, params)
            await self.fleet.acheck(parsed.graph)
        except FleetmindError as exc:
            raise ApiError(400, exc.message) from None
        metadata = {**self.metadata, "params": dict(parsed.params), "file_name": file_name}
        task_id = new_task_id()
        source = await asyncio.to_thread(self._keep, task_id, file_name, content)
        return self._start(
            lambda: self.fleet.submit(
                parsed.graph, task_id=task_id, source=source, metadata=metadata
            )
        )

    def _keep(self, task_id: str, file_name: str, content: str) -> str | None:
        """Keep a submitted task file where ``fleetmind resume`` finds it (its source)."""
        if self.task_files is None:
            return None
        path = self.task_files / f"{task_id}{Path(file_name).suffix.lower()}"
        try:
            self.task_files.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
        except OSError as exc:
            log.warning("task file of %s not kept in %s: %s", task_id, self.task_files, exc)
            return None
        return str(path)

    async def submit_text(self, text: str) -> str:
        if self.fleet.planner is None:
            raise ApiError(400, self.no_planner or "this fleet has no planner for plain words")
        try:
            plan = await self.fleet.plan(text)
        except ModelNotConfigured as exc:
            raise ApiError(400, exc.message) from None
        except ConfigError as exc:
            raise ApiError(400, exc.message) from None
        except FleetmindError as exc:  # the model could not be reached, or found no plan
            raise ApiError(502, exc.message) from None
        metadata = {**self.metadata, "request": text, "params": {}}
        fleet = self.metadata.get("fleet")  # as `fleetmind run` keeps a planned task's source
        source = fleet if isinstance(fleet, str) else None
        return self._start(lambda: self.fleet.submit(plan.graph, source=source, metadata=metadata))

    async def cancel(self, task_id: str) -> str:
        full_id = await asyncio.to_thread(self._resolve, task_id)
        handle = self._followed.get(full_id)
        if handle is None or handle.done():
            return await asyncio.to_thread(self._cancel_stored, full_id)
        result = await handle.cancel("cancelled from the console")
        return result.status

    def _cancel_stored(self, task_id: str) -> str:
        """Cancel a task no one here drives: one whose process crashed, or was interrupted
        (another process that still drives it keeps it)."""
        record, _ = self._guarded(lambda: self.store.load(task_id))
        if record.status not in ("running", "interrupted"):
            raise ApiError(409, f"task {task_id} is not running here (it is {record.status})")
        if self.fleet.replica is None and record.status == "running":
            raise ApiError(409, f"task {task_id} is not running here (it is {record.status})")
        try:
            return self._guarded(
                lambda: cancel_stored(
                    self.store, self.fleet.replica, task_id, "cancelled from the console"
                )
            )
        except FleetStateError as exc:
            raise ApiError(409, exc.message) from None

    async def resume(self, task_id: str) -> str:
        full_id = await asyncio.to_thread(self._resolve, task_id)
        handle = self._followed.get(full_id)
        if handle is not None and not handle.done():
            raise ApiError(409, f"task {full_id} is running here already")
        record, _ = await asyncio.to_thread(self._guarded, lambda: self.store.load(full_id))
        if record.status not in ("running", "interrupted"):
            raise ApiError(
                409, f"task {full_id} has already ended ({record.status}); nothing to resume"
            )
        return self._start(lambda: self.fleet.submit_resume(full_id))

    def _start(self, submit: Callable[[], TaskHandle]) -> str:
        if self._hub is None or not self.fleet.is_open:
            raise ApiError(503, "the console's fleet is not open (it is starting or stopping)")
        try:
            handle = submit()
        except FleetmindError as exc:
            raise ApiError(409 if isinstance(exc, FleetStateError) else 400, exc.message) from None
        self._followed[handle.task_id] = handle
        ended = [tid for tid, h in self._followed.items() if h.done()]
        for old in ended[: max(0, len(ended) - KEPT_FINISHED)]:  # the oldest first
            del self._followed[old]  # read from the store from now on
        follower = asyncio.create_task(self._follow(handle, self._hub))
        self._followers.add(follower)
        follower.add_done_callback(self._followers.discard)
        return handle.task_id

    async def _follow(self, handle: TaskHandle, hub: EventHub) -> None:
        """Publish a task's events as they come, and its status as it starts and ends."""
        task_id = handle.task_id
        hub.publish("task", {"task_id": task_id, "status": "running"})
        try:
            async for event in handle.events():
                data = {"task_id": task_id, "version": event.version, "event": event_dict(event)}
                hub.publish("graph", data)
                if isinstance(event, TaskFinishedEvent):
                    hub.publish("task", {"task_id": task_id, "status": event.status})
        except asyncio.CancelledError:
            raise
        except Exception:  # a follower's failure must not end the console
            log.exception("following task %s failed", task_id)

    @contextlib.asynccontextmanager
    async def running(self, hub: EventHub) -> AsyncIterator[None]:
        opened = asyncio.Event()

        async def hold_open() -> None:
            async with self.fleet:
                opened.set()
                await asyncio.Event().wait()  # until the console stops (cancelled)

        holder = asyncio.create_task(hold_open(), name="console fleet")
        waiting = asyncio.create_task(opened.wait())
        await asyncio.wait({holder, waiting}, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if holder.done():
            holder.result()  # the fleet failed to open: its error, raised here
        self._hub = hub
        try:
            async with super().running(hub):
                yield
        finally:
            self._hub = None
            running = [tid for tid, h in self._followed.items() if not h.done()]
            holder.cancel()  # the fleet closes; its tasks stop where they are
            with contextlib.suppress(asyncio.CancelledError):
                await holder
            for follower in list(self._followers):
                follower.cancel()
            await asyncio.gather(*self._followers, return_exceptions=True)
            for task_id in running:
                await asyncio.to_thread(self._interrupt, task_id)

    def _interrupt(self, task_id: str) -> None:
        try:
            status = self.store.interrupt(task_id)
        except StoreError as exc:
            log.warning("task %s could not be marked interrupted: %s", task_id, exc)
            return
        if status in ("interrupted", "running"):
            log.warning("task %s interrupted: resume it from the console", task_id)
