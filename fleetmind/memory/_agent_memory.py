"""What a running agent sees of the fleet's memory: ``ctx.memory``.

A view of the fleet's :class:`MemoryStore` bound to one agent: it remembers into the agent's
own namespace (``agent:<id>``) unless told to share, and recalls from its own namespace and
the shared one. Store calls embed text, so they run in a worker thread and never block the
event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from fleetmind.memory._interface import MemoryItem
from fleetmind.memory._items import SHARED, Layer, Recalled
from fleetmind.memory._store import MemoryStore


def agent_namespace(agent_id: str) -> str:
    """The namespace an agent owns."""
    return f"agent:{agent_id}"


class AgentMemory:
    """The fleet's episodic and semantic memory, as one agent may use it.

    ```python
    await ctx.memory.remember("the staging database listens on 5433", key="staging-db-port")
    facts = await ctx.memory.recall("which port does staging use?", layer="semantic")
    ```
    """

    def __init__(self, store: MemoryStore, agent_id: str, *, task_id: str | None = None) -> None:
        self.store = store
        self.agent_id = agent_id
        self.task_id = task_id
        self.namespace = agent_namespace(agent_id)

    async def remember(
        self,
        item: MemoryItem | str,
        *,
        layer: Layer = "semantic",
        key: str | None = None,
        shared: bool = False,
        outcome: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> MemoryItem:
        """Keep a fact (``layer="semantic"``, the default) or an episode; in the agent's own
        namespace, or the fleet's shared one with ``shared=True``."""
        text = item.text if isinstance(item, MemoryItem) else item
        extra = dict(item.metadata) if isinstance(item, MemoryItem) else {}
        extra.update(metadata or {})
        namespace = SHARED if shared else self.namespace
        if layer == "semantic":
            stored = await asyncio.to_thread(
                self.store.add_fact,
                text,
                namespace=namespace,
                key=key,
                agent_id=self.agent_id,
                task_id=self.task_id,
                metadata=extra,
            )
        else:
            stored = await asyncio.to_thread(
                self.store.add_episode,
                text,
                namespace=namespace,
                kind=item.kind if isinstance(item, MemoryItem) else "note",
                agent_id=self.agent_id,
                task_id=self.task_id,
                outcome=outcome,
                metadata=extra,
            )
        return _as_item(stored)

    async def recall(
        self,
        query: str,
        *,
        limit: int = 5,
        layer: Layer | None = None,
        outcome: str | None = None,
    ) -> Sequence[MemoryItem]:
        """What the agent's namespace and the shared one hold that is most like ``query``."""
        found = await self.search(query, limit=limit, layer=layer, outcome=outcome)
        return [_as_item(r.item, r.score) for r in found]

    async def search(
        self,
        query: str,
        *,
        limit: int = 5,
        layer: Layer | None = None,
        outcome: str | None = None,
    ) -> list[Recalled]:
        """Like :meth:`recall`, with scores and the stored items."""
        return await asyncio.to_thread(
            self.store.recall,
            query,
            layer=layer,
            namespaces=(self.namespace, SHARED),
            outcome=outcome,
            limit=limit,
        )


def _as_item(stored: Any, score: float | None = None) -> MemoryItem:
    metadata = {
        "id": stored.id,
        "layer": stored.layer,
        "namespace": stored.namespace,
        **({"score": round(score, 4)} if score is not None else {}),
        **({"outcome": stored.outcome} if stored.outcome else {}),
        **({"key": stored.key} if stored.key else {}),
        **stored.metadata,
    }
    return MemoryItem(
        text=stored.text,
        kind=stored.kind,
        task_id=stored.task_id,
        agent_id=stored.agent_id,
        created_at=stored.created_at,
        metadata=metadata,
    )
