"""Checkpoints of LLM agents' step loops, kept beside the task store.

An LLM agent runs its loop as a LangGraph graph with a checkpointer: after every finished
step the loop's state is saved, so an agent killed mid-loop resumes from its last finished
step when the task is resumed, instead of paying for its earlier steps again. The checkpoints
of a SQLite store live in a second SQLite file next to it (``fleetmind.db`` ->
``fleetmind.checkpoints.db``), written by LangGraph's own maintained saver; a store kept in
memory keeps them in memory.

One :class:`Checkpoints` belongs to one engine run: it opens its connection on the first
agent's request, and the engine closes it when the task stops, deleting the checkpoints of the
loops that ran (:meth:`Checkpoints.thread`) once the task has ended for good.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fleetmind._extras import require
from fleetmind.errors import StoreError


class Checkpoints:
    """Opens LangGraph's checkpoint saver lazily and closes it with the engine run.

    Args:
        path: The SQLite file, or None to keep checkpoints in memory.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._saver: Any = None
        self._connection: Any = None
        self._lock: asyncio.Lock | None = None
        self._threads: set[str] = set()

    async def saver(self) -> Any:
        """The saver (``AsyncSqliteSaver`` or ``InMemorySaver``), opened on first use."""
        if self._saver is not None:
            return self._saver
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._saver is None:
                self._saver = await self._open()
        return self._saver

    async def _open(self) -> Any:
        if self.path is None:
            require("langgraph.checkpoint.memory", "llm", "checkpointing LLM agents")
            from langgraph.checkpoint.memory import InMemorySaver

            return InMemorySaver()
        require("langgraph.checkpoint.sqlite.aio", "llm", "checkpointing LLM agents")
        import aiosqlite
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = await aiosqlite.connect(str(self.path), timeout=30)
            # As the task store: WAL, and commits that survive a killed process (only a power
            # cut may lose the last ones). A checkpoint lost that way costs one step again.
            await connection.execute("PRAGMA journal_mode=WAL")
            await connection.execute("PRAGMA synchronous=NORMAL")
            saver = AsyncSqliteSaver(connection)
            await saver.setup()
        except Exception as exc:  # sqlite or OS errors: the store's own error
            raise StoreError(f"cannot open the checkpoints at {self.path}: {exc}") from exc
        self._connection = connection
        return saver

    @property
    def opened(self) -> bool:
        """Whether an agent asked for the saver (so there is something to close)."""
        return self._saver is not None or self._lock is not None

    def thread(self, thread_id: str) -> None:
        """Note a step loop's thread, so that it is deleted when its task ends."""
        self._threads.add(thread_id)

    async def forget(self, task_id: str) -> None:
        """Delete the checkpoints of the step loops that ran for ``task_id`` (it has ended)."""
        if not self._threads:
            return
        saver = await self.saver()
        for thread_id in sorted(self._threads):
            await saver.adelete_thread(thread_id)
        self._threads.clear()

    async def aclose(self) -> None:
        """Close the connection (if one was opened)."""
        connection, self._connection, self._saver = self._connection, None, None
        if connection is not None:
            await connection.close()
