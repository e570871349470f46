"""The fleet's memory as a LangGraph store, so a LangGraph graph shares it.

LangGraph keeps long-term memory in a ``BaseStore``: JSON values under (namespace tuple, key),
searched by meaning. :class:`FleetMemoryStore` implements it over a :class:`MemoryStore`: a
namespace tuple is the fleet namespace its parts name joined by ``/`` — ``("shared",)`` is the
fleet's shared namespace, ``("agent:noter",)`` an agent's — so a graph run as a fleet agent
(``LangGraphAgent``) and the fleet's other agents read and write the same memory.

A value is embedded by its ``text`` (or ``content``) field when it has one, else by its JSON.
The fleet's own facts and episodes appear to the graph too, keyed by their ids, with the value
``{"text": ...}``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from langgraph.store.base import (
    BaseStore,
    GetOp,
    Item,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
)

from fleetmind.memory._items import StoredItem
from fleetmind.memory._store import MemoryStore


def _namespace(parts: tuple[str, ...]) -> str:
    return "/".join(parts)


def _parts(namespace: str) -> tuple[str, ...]:
    return tuple(namespace.split("/"))


def _text(value: Mapping[str, Any]) -> str:
    for field in ("text", "content"):
        text = value.get(field)
        if isinstance(text, str) and text.strip():
            return text
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _when(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class FleetMemoryStore(BaseStore):
    """A LangGraph ``BaseStore`` over the fleet's :class:`MemoryStore`.

    ```python
    graph = builder.compile(store=FleetMemoryStore(fleet.memory))
    fleet.add(LangGraphAgent(graph, profile))
    ```
    """

    def __init__(self, memory: MemoryStore) -> None:
        self.memory = memory

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        return [self._one(op) for op in ops]

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        return await asyncio.to_thread(self.batch, list(ops))

    def _one(self, op: Op) -> Result:
        if isinstance(op, GetOp):
            namespace = _namespace(op.namespace)
            found = self.memory.get_key(namespace, op.key)
            if found is None:  # a fleet fact has no key: its id stands for one
                candidate = self.memory.find(op.key)
                if candidate is not None and candidate.namespace == namespace:
                    found = candidate
            return None if found is None else self._item(found)
        if isinstance(op, PutOp):
            namespace = _namespace(op.namespace)
            if op.value is None:
                current = self.memory.get_key(namespace, op.key)
                if current is not None:
                    self.memory.forget(ids=[i.id for i in self.memory.history(current.id)])
                return None
            self.memory.put(
                namespace, op.key, _text(op.value), kind="langgraph", metadata={"value": op.value}
            )
            return None
        if isinstance(op, SearchOp):
            return self._search(op)
        if isinstance(op, ListNamespacesOp):
            return self._namespaces(op)
        raise ValueError(f"unknown store operation {type(op).__name__}")

    def _search(self, op: SearchOp) -> list[SearchItem]:
        prefix = op.namespace_prefix
        wanted = [n for n in self.memory.namespaces() if _parts(n)[: len(prefix)] == tuple(prefix)]
        if not wanted:
            return []
        if op.query:
            found = self.memory.recall(
                op.query,
                namespaces=wanted,
                limit=(op.offset + op.limit) * 4,
                recency=0.0,
            )
            scored: list[tuple[StoredItem, float | None]] = [(r.item, r.similarity) for r in found]
        else:
            items = [i for n in wanted for i in self.memory.items(namespace=n)]
            items.sort(key=lambda i: -float(i.metadata.get("updated_at", i.created_at)))
            scored = [(i, None) for i in items]
        out: list[SearchItem] = []
        for item, score in scored:
            if item.superseded_by:
                continue
            value = self._value(item)
            if op.filter and any(value.get(k) != v for k, v in op.filter.items()):
                continue
            out.append(
                SearchItem(
                    namespace=_parts(item.namespace),
                    key=item.key or item.id,
                    value=value,
                    created_at=_when(item.created_at),
                    updated_at=_when(float(item.metadata.get("updated_at", item.created_at))),
                    score=score,
                )
            )
        return out[op.offset : op.offset + op.limit]

    def _namespaces(self, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        names = [_parts(n) for n in self.memory.namespaces()]
        for condition in op.match_conditions or ():
            path = tuple(condition.path)
            if condition.match_type == "prefix":
                names = [n for n in names if _matches(n[: len(path)], path)]
            else:
                names = [
                    n for n in names if len(n) >= len(path) and _matches(n[-len(path) :], path)
                ]
        if op.max_depth is not None:
            names = sorted({n[: op.max_depth] for n in names})
        return sorted(set(names))[op.offset : op.offset + op.limit]

    @staticmethod
    def _value(item: StoredItem) -> dict[str, Any]:
        value = item.metadata.get("value")
        return dict(value) if isinstance(value, dict) else {"text": item.text}

    def _item(self, found: StoredItem) -> Item:
        return Item(
            value=self._value(found),
            key=found.key or found.id,
            namespace=_parts(found.namespace),
            created_at=_when(found.created_at),
            updated_at=_when(float(found.metadata.get("updated_at", found.created_at))),
        )


def _matches(parts: tuple[str, ...], pattern: tuple[str, ...]) -> bool:
    return len(parts) == len(pattern) and all(
        p == "*" or p == q for q, p in zip(parts, pattern, strict=True)
    )
