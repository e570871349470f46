"""Subtasks that no agent can take now, waiting a while for one to join.

A fleet with devices loses agents for a while (a device rebooting) and gets them back. A
subtask that nobody can take meanwhile waits, up to the fleet's ``agent_wait_s``, and is routed
again whenever an agent joins or its wait runs out; then it fails as any unroutable subtask.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any


class AgentWaits:
    """The waiting subtasks of one engine, each with its deadline (monotonic clock).

    Args:
        wait_s: How long a subtask may wait; 0 or less: none waits.
        wake: Called (on the loop) when an agent joined or a deadline passed: route again.
    """

    def __init__(self, wait_s: float, wake: Callable[[], None]) -> None:
        self._wait_s = wait_s
        self._wake = wake
        self._deadlines: dict[str, float] = {}
        self._timer: asyncio.Task[None] | None = None

    def wait(
        self, subtask_id: str, spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]]
    ) -> bool:
        """Let ``subtask_id`` wait (its first call starts the clock); False once it may not,
        or may no longer. ``spawn`` starts the timer in the engine's task group."""
        if self._wait_s <= 0:
            return False
        now = time.monotonic()
        deadline = self._deadlines.setdefault(subtask_id, now + self._wait_s)
        if now >= deadline:
            del self._deadlines[subtask_id]
            return False
        if self._timer is None or self._timer.done():
            self._timer = spawn(self._tick())
        return True

    def done(self, subtask_id: str) -> None:
        """The subtask waits no more (it was routed, started or removed)."""
        self._deadlines.pop(subtask_id, None)

    def waiting(self) -> list[str]:
        """The subtasks waiting now."""
        return list(self._deadlines)

    def joined(self) -> None:
        """An agent joined the fleet: the waiting subtasks may have one now."""
        if self._deadlines:
            self._wake()

    def stop(self) -> None:
        """The task has ended: stop the timer."""
        self._deadlines.clear()
        if self._timer is not None:
            self._timer.cancel()

    async def _tick(self) -> None:
        while self._deadlines:
            await asyncio.sleep(max(0.05, min(self._deadlines.values()) - time.monotonic()))
            self._wake()
