"""Takeover in benchmarks/replicas.py: two replicas, a task held by a slow device subtask, its
owner SIGKILLed; how soon the other replica resumed the task and how soon the task was done."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

from _harness import _progress, _stop, _tail
from _replicas_setup import FLEET, Replica, Rig, marked, marks_of, start_replicas, stop_replicas

from fleetmind import TaskGraph
from fleetmind._ids import new_task_id
from fleetmind.errors import TaskNotFound
from fleetmind.orchestrator import PostgresStore, Store
from fleetmind.serve import SubmittedTaskResult, submit_via_broker

TRIAL_LIMIT_S = 120.0


def held_task(key: str, hold_s: float) -> TaskGraph:
    """A slow device subtask, then a quick one that needs its result."""
    graph = TaskGraph(f"takeover-{key}")
    graph.add_subtask("hold", agent="slow", inputs={"key": key, "hold": hold_s})
    graph.add_subtask("after", agent="quick", inputs={"n": 1}, depends_on=["hold"])
    return graph


async def _owner(store: Store, task_id: str, limit_s: float) -> tuple[str, int]:
    """The replica that holds the task's lease, and its epoch, once it is stored."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            record, _ = await asyncio.to_thread(store.load, task_id)
        except TaskNotFound:  # the replica has not stored it yet
            record = None
        if record is not None and record.owner:
            return record.owner, record.lease_epoch
        await asyncio.sleep(0.02)
    raise RuntimeError(f"task {task_id} never had an owner in the store")


async def _resumed_at(store: Store, task_id: str, after: float, limit_s: float) -> Any:
    """The first ``task_resumed`` entry made after ``after`` (its record then), or None."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        record, entries = await asyncio.to_thread(store.load, task_id)
        for entry in entries:
            if entry.kind == "task_resumed" and entry.at >= after:
                return entry.at, record
        await asyncio.sleep(0.02)
    return None


async def trial(
    setup: Rig, store_url: str, n: int, lease_s: float, hold_s: float
) -> dict[str, Any]:
    """One takeover: fresh replicas ``t<n>-a`` and ``t<n>-b``, the task submitted, its owner
    killed once the device runs the slow subtask; always stops both replicas."""
    key = f"t{n}"
    replicas = start_replicas(setup, store_url, [f"{key}-a", f"{key}-b"], key, lease_s)
    store = PostgresStore(store_url)
    events: list[tuple[float, dict[str, Any]]] = []
    submitted: list[float] = []
    task_id = new_task_id()
    job: asyncio.Task[SubmittedTaskResult] | None = None
    try:
        job = asyncio.create_task(
            submit_via_broker(
                setup.address(),
                held_task(key, hold_s),
                fleet_name=FLEET,
                task_id=task_id,
                on_event=lambda event: events.append((time.time(), event)),
                on_submitted=lambda: submitted.append(time.time()),
                timeout_s=TRIAL_LIMIT_S,
            )
        )
        waiting = asyncio.create_task(marked(setup, key, "start", TRIAL_LIMIT_S))
        await asyncio.wait({job, waiting}, return_when=asyncio.FIRST_COMPLETED)
        started = await waiting if waiting.done() else None
        if started is None:
            waiting.cancel()
            raise RuntimeError(
                f"trial {key}: the slow subtask never started ({_outcome(job)}); events: "
                f"{[e.get('kind') for _, e in events]}\n" + _logs(replicas)
            )
        owner, epoch = await _owner(store, task_id, 30)
        victim = next(r for r in replicas if r.id == owner)
        killed_at = time.time()
        _stop(victim.process, signal.SIGKILL)
        resumed = await _resumed_at(store, task_id, killed_at, TRIAL_LIMIT_S)
        result = await job
        done_at = time.time()
        record, entries = await asyncio.to_thread(store.load, task_id)
        ended = await marked(setup, key, "end", 0)
        first_event = next((at for at, _ in events if at > killed_at), None)
        starts = [
            e
            for e in entries
            if e.kind == "subtask_started" and getattr(e, "subtask_id", "") == "hold"
        ]
        return {
            "trial": key,
            "task_id": task_id,
            "status": result.status,
            "killed": owner,
            "killed_epoch": epoch,
            "new_owner": record.owner,
            "new_epoch": record.lease_epoch,
            "reported_by": result.replica,
            "hold_started_after_submit_s": started - submitted[0] if submitted else None,
            "resumed_s": resumed[0] - killed_at if resumed else None,
            "first_event_s": first_event - killed_at if first_event else None,
            "done_s": done_at - killed_at,
            "hold_ended_s": ended - killed_at if ended else None,
            "hold_started_in_log": len(starts),
            "hold_started_on_device": len(marks_of(setup, key, "start")),
        }
    finally:
        if job is not None:
            job.cancel()
            await asyncio.gather(job, return_exceptions=True)
        store.close()
        stop_replicas(replicas)


def _outcome(job: asyncio.Task[SubmittedTaskResult]) -> str:
    if not job.done():
        return "no result yet"
    if job.exception() is not None:
        return f"submit failed: {job.exception()!r}"
    result = job.result()
    return f"task ended {result.status}: {result.errors}"


def _logs(replicas: list[Replica]) -> str:
    return "\n".join(f"--- replica {r.id}:\n{_tail(r.log, 30)}" for r in replicas)


async def measure(setup: Rig, trials: int, lease_s: float, hold_s: float) -> dict[str, Any]:
    """``trials`` takeovers on one fresh database."""
    store_url = setup.new_database("takeover")
    results = []
    for n in range(trials):
        _progress(f"takeover {n + 1}/{trials}: lease {lease_s:g} s, device subtask {hold_s:g} s")
        results.append(await trial(setup, store_url, n + 1, lease_s, hold_s))
    return {"lease_s": lease_s, "hold_s": hold_s, "trials": results}
