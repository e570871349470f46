"""How an engine that stops before its task ends says so, and what it leaves behind.

An engine stops driving its task, without ending it, when the store refuses or fails a write:
another replica claimed the task (:class:`LeaseLost`), its fleet closed and handed the task
over, or the store stayed out of reach past its retries. The task stays running in the
store in each case, for whoever resumes it; the checkpoints of a task that ended are
forgotten, those of one that goes on are kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fleetmind.errors import LeaseLost, StoreError
from fleetmind.orchestrator._checkpoints import Checkpoints

log = logging.getLogger("fleetmind.engine")


def report_stop(task_id: str, error: StoreError, *, handed_over: bool) -> None:
    """One log line for an engine that stopped driving its task (no traceback: the task is
    not lost, it resumes here or on another replica)."""
    if handed_over:
        log.info("task %s was handed over", task_id)
    elif isinstance(error, LeaseLost):
        log.info("task %s was taken over by another replica", task_id)
    else:
        log.warning(
            "task %s stopped: the store failed a write (%s); it stays running, to be resumed "
            "once the store answers",
            task_id,
            error,
        )


async def close_checkpoints(checkpoints: Checkpoints, task_id: str, *, ended: bool) -> None:
    """Close a task's checkpoint store; a task that ended needs its checkpoints no more."""
    if not checkpoints.opened:
        return  # no LLM agent ran: nothing to close (and no loop turn spent on it)
    try:
        if ended:
            # Stale checkpoints cost disk space only; the task's outcome stands.
            with contextlib.suppress(Exception):
                await checkpoints.forget(task_id)
    finally:
        await asyncio.shield(checkpoints.aclose())
